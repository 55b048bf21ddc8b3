/*
 * pool: the worker slots.  Slot i serves the users with
 * hash32(UserID) % nslots == i, for as long as nslots does not change.
 *
 * Each slot has a process (restarted with backoff when it dies, parked by
 * a crash-loop breaker, killed when it stalls), a channel, and an output
 * queue holding every frame routed to it until the worker reports it
 * durable.  The pool acks a message (through the callback given to
 * pool_new) only then, or once the slot's spill holds it durably.
 *
 * Isolation (holdback.h): a slot whose worker keeps its oldest message
 * waiting for spill_after while another worker keeps up would pin the ack
 * floor for everybody.  Such a slot "spills" (spill.h): its queued
 * messages and every newer one for it go to its spill file, are acked
 * once synced, and reach the worker in order as it catches up.  Its users
 * wait; nobody else does.  A worker with work outstanding that sends
 * nothing for worker_stall_timeout is killed and restarted.
 */
#ifndef POOL_H
#define POOL_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"
#include "../common/frame.h"

struct pool;

typedef void (*pool_ack_fn)(void *ref, void *arg);

struct pool_stats {
	int slots, running, parked;
	int ready;                /* running and said READY (store open, NATS connected) */
	int held;                 /* slots holding back their users (see pool_slot_stats) */
	uint64_t inflight;        /* frames queued to workers, not yet reported done */
	uint64_t spilled;         /* messages in spills, not yet handed to their worker */
	uint64_t users, alarms, tombstones, bytes, msgs;  /* sums of workers' reports */
	uint64_t restarts, stall_kills;
	uint64_t digests_fenced;  /* requests workers did not answer: past the fence (pool_fence) */
};

struct pool_slot_stats {
	bool held;                /* spilling, or its oldest message has waited spill_after */
	uint64_t waiting;         /* messages routed to it that its worker has not finished */
	uint64_t spilled;         /* of those, the ones in its spill (acked, on disk) */
	uint64_t stall_kills;
};

/* One slot as /metrics shows it (obs.h). */
struct pool_slot_report {
	bool running, parked;
	uint64_t queued;          /* frames queued to its worker, not yet done */
	char exit_why[128];       /* how its last process ended; "" if none has */
	struct pool_slot_stats hold;
	/* Its worker's last STATS; counters summed over the slot's processes. */
	struct frame_stats stats;
};

/* Start nslots workers.  NULL on error (logged). */
struct pool *pool_new(const struct config *c, int nslots, pool_ack_fn ack, void *ack_arg);
/* Frees queues; entries still held are released with drop (not acked). */
void pool_free(struct pool *p, void (*drop)(void *ref));

int pool_size(const struct pool *p);

/*
 * Queue a frame for its user's slot (or append it to the slot's spill).
 * false: no room (backpressure): the queue is full, or the spill is.
 */
bool pool_route(struct pool *p, uint32_t hash, const uint8_t *frame, size_t len, void *ref);
/*
 * After routing, once per loop: kill stalled workers, start or end
 * spilling, make spills durable (then ack what they hold) and feed
 * them to their workers.  Returns ms until it wants to run again, or -1.
 */
int pool_settle(struct pool *p);

/* poll(2) plumbing: add the pool's fds at fds[0..], return how many; then handle them. */
int pool_pollfds(struct pool *p, struct pollfd *fds, int max);
void pool_handle(struct pool *p, const struct pollfd *fds, int n);
/* SIGCHLD: collect dead children, schedule restarts. */
void pool_reap(struct pool *p);
/* Start workers whose backoff expired; returns ms until the next one is due, or -1. */
int pool_tick(struct pool *p);

/* Every routed frame is done: in its worker's store, no spill left. */
bool pool_idle(const struct pool *p);
/* Every routed message is durable (in a store or a spill) and acked. */
bool pool_durable(const struct pool *p);
/*
 * Cluster mode: whether a worker said (FRAME_FENCED) that frames it
 * reported durable since the last call include a digest request it
 * skipped past its fence; the supervisor must then ack none of them.
 */
bool pool_take_fenced(struct pool *p);
/* Ask every worker to finish and exit; the queue keeps order (STOP comes last). */
void pool_stop(struct pool *p);
/* No worker process left. */
bool pool_exited(const struct pool *p);
/* pool_stop, then serve the channels until every worker has exited. */
void pool_stop_wait(struct pool *p);
/* SIGKILL every worker and reap them: on return none is left. */
void pool_kill(struct pool *p);

/*
 * Cluster mode: no worker answers a digest request (but replays, see
 * frame.h) after deadline_ms (monotonic; 0: no fence, the default).
 * Sent to every running worker when it changes, ahead of the frames
 * already queued, and to each (re)started one right after its HELLO.  A
 * new pool (a reshard's) starts with none: set it before routing to it.
 */
void pool_fence(struct pool *p, int64_t deadline_ms);
/*
 * Send a changed fence now, outside the main loop's poll: the master
 * calls it while it waits on JetStream (cluster.c), so the workers' fence
 * never goes stale behind a slow API call.
 */
void pool_send_fence(struct pool *p);
/* SIGHUP: new settings (not the slot count) to the pool and every worker; parked slots retry. */
void pool_reload(struct pool *p, const struct config *c);
void pool_get_stats(const struct pool *p, struct pool_stats *st);
void pool_get_slot_stats(const struct pool *p, int slot, struct pool_slot_stats *st);
void pool_get_slot_report(const struct pool *p, int slot, struct pool_slot_report *r);

#endif
