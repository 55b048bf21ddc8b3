/*
 * state: the SPEC's rules for one (UserID, AlarmID), as pure functions.
 * No I/O here, so every rule is unit-tested in isolation; the store keeps
 * the records on disk and calls these.
 */
#ifndef STATE_H
#define STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "alarm.h"
#include "rfc3339.h"

struct alarm_state {
	enum alarm_status status;
	struct rfc3339_time changed_at;   /* newest accepted ChangedAt, offset as it arrived */
	bool delivered;                   /* in a digest since its status last changed */
};

enum state_result {
	STATE_NEW,        /* no record existed; one was created (a CLEARED one is a tombstone) */
	STATE_CHANGED,    /* accepted and the status changed: delivered is reset */
	STATE_REFRESHED,  /* accepted, newer instant, same status: delivered kept */
	STATE_STALE,      /* older instant than stored: ignored (rule 2) */
	STATE_DUPLICATE,  /* same instant, same status: ignored (rule 3) */
	STATE_LESS_SEVERE, /* same instant, less severe status: ignored (rule 3) */
	/*
	 * A new alarm for a user who already holds the configured maximum
	 * (tombstones included): malformed input, ignored.  Decided by the
	 * store, never by state_apply, which sees one alarm only.
	 */
	STATE_OVER_LIMIT
};

/*
 * Apply an update to *st.  `exists` false means there is no record yet and
 * *st is ignored on input.  *st is modified only for NEW/CHANGED/REFRESHED.
 */
enum state_result state_apply(struct alarm_state *st, bool exists,
    enum alarm_status status, const struct rfc3339_time *changed_at);

/* Would this alarm go into the next digest? (active and not delivered) */
bool state_pending(const struct alarm_state *st);

/* A CLEARED record whose ChangedAt is older than now - retention can go. */
bool state_expired(const struct alarm_state *st, int64_t now_ms, int64_t retention_ms);

/*
 * Merge a copy of the same alarm from another store (worker-count change):
 * the newer instant wins, a tie goes to the more severe status, an exact
 * tie keeps *dst.  Idempotent, so an interrupted move can be redone.
 */
void state_merge(struct alarm_state *dst, const struct alarm_state *src);

const char *state_result_name(enum state_result r);

#endif
