/*
 * slot: one worker slot, as pool.c and holdback.c see it.  INTERNAL:
 * included by those two files only; everybody else uses pool.h.
 *
 * pool.c owns the process (state, pid, channel, restarts), the queue and
 * its ids; holdback.c owns the isolation fields (from sp on), and reads
 * the process fields to judge a slot.  The few fields both write say so.
 */
#ifndef SLOT_H
#define SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/frame.h"
#include "../common/ring.h"

enum slot_state {
	SLOT_RUNNING,   /* a process is (or should be) alive */
	SLOT_WAITING,   /* dead, restart due at next_start_ms */
	SLOT_PARKED,    /* crash loop: no restart until SIGHUP */
	SLOT_STOPPED,   /* exited on STOP */
};

struct slot {
	int index;
	enum slot_state state;
	pid_t pid;
	struct chan *ch;          /* our end of the channel (its queue: the HELLO), NULL when closed */
	bool stopping;            /* STOP queued: an exit is expected */
	bool ready;               /* this process sent READY: store open, connected to NATS */
	bool fence_due;           /* pool_fence changed the deadline: a FENCE is still to go out */
	struct outq *q;
	uint64_t next_id;
	int64_t started_ms, next_start_ms, backoff_ms;
	int quick_deaths;
	struct frame_stats stats;
	struct frame_stats carry;  /* counters of the slot's earlier processes (pool_get_slot_report) */
	char exit_why[128];        /* how its last process ended ("" while none has) */

	/*
	 * Isolation (holdback.c).  Queue entries up to id `copied` are in the
	 * spill (or are control frames), up to `durable` synced there and
	 * acked; refs of messages appended to the spill wait in `unacked` for
	 * its sync.
	 */
	struct spill *sp;
	bool spilling;            /* new messages go to the spill (pool_route) until the worker catches up */
	uint64_t copied, durable;
	struct ring unacked;      /* of void *: acked once the spill has synced */
	uint64_t done_id;         /* the worker's last DONE */
	int64_t heard_ms;         /* its last frame (or when it last had nothing to do); pool.c sets it too */
	bool stalled;             /* killed for stalling: explains its exit (pool.c clears it) */
	uint64_t stall_kills;
	int64_t held_since_ms;    /* holding back its users since then; 0: not */
	int64_t held_logged_ms, full_logged_ms;
};

/* Queue a frame encoded elsewhere (with any id), routed at at_ms: it gets the slot's next id (pool.c). */
int slot_queue(struct slot *s, const uint8_t *frame, size_t len, void *ref, int64_t at_ms);

#endif
