#include <stdbool.h>
#include <stdlib.h>

#include "../common/clock.h"
#include "../common/db.h"
#include "../common/log.h"
#include "fault.h"
#include "sweep.h"

/* Tombstone sweep: a pass a minute after start, then hourly, 1000 users per idle moment. */
#define SWEEP_FIRST_MS (60 * 1000)
#define SWEEP_EVERY_MS (3600 * 1000)
#define SWEEP_USERS 1000

struct sweep {
	int64_t next_ms;    /* monotonic; when the next tombstone pass may start */
	bool sweeping;
};

struct sweep *
sweep_new(int64_t now)
{
	struct sweep *sw;

	if ((sw = calloc(1, sizeof(*sw))) == NULL) {
		log_error("allocating the tombstone sweep");
		return NULL;
	}
	sw->next_ms = now + SWEEP_FIRST_MS;
	return sw;
}

void
sweep_free(struct sweep *sw)
{
	free(sw);
}

void
sweep_step(struct sweep *sw, struct store *s, int64_t retention_ms, int64_t now)
{
	bool wrapped = false;

	if (!sw->sweeping && now < sw->next_ms)
		return;
	sw->sweeping = true;
	if (store_begin(s) == -1)
		fault_fatal("beginning a tombstone sweep");
	if (store_sweep(s, clock_wall_ms(), retention_ms, SWEEP_USERS, &wrapped) == -1 ||
	    store_commit(s) == -1) {
		enum db_fault f = db_fault(store_db(s));

		store_abort(s);
		if (f != DB_FAULT_MAP_FULL && f != DB_FAULT_DISK_FULL)
			fault_fatal("sweeping tombstones");
		/* Only housekeeping: grow if we may, else try again later. */
		if (f == DB_FAULT_MAP_FULL && db_grow(store_db(s)) == 1)
			return;
		sw->sweeping = false;
		sw->next_ms = now + SWEEP_FIRST_MS;
		return;
	}
	if (wrapped) {
		sw->sweeping = false;
		sw->next_ms = now + SWEEP_EVERY_MS;
	}
}
