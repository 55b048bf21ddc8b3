/*
 * obs: what the supervisor shows about itself, for the threads that show
 * it (http.h: /metrics, /healthz, /readyz; srv.h: $SRV.STATS) without
 * touching main-loop state.
 *
 * The main loop copies its numbers into a snapshot (obs_update, at most
 * every OBS_UPDATE_MS, and at once when the phase changes); the consumer
 * lag poller (lag.h) adds its own; readers look at the snapshot under the
 * same mutex (obs_read), so what they see is one consistent moment.
 * Reading is rendering a page of text: the main loop waits microseconds
 * at most.
 *
 * Worker counters only grow: a restarted worker counts from 0 (the pool
 * adds up a slot's processes), and a reshard replaces the pool (obs adds
 * up pools, told by obs_pool_retire).
 */
#ifndef OBS_H
#define OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/histo.h"
#include "intake.h"
#include "pool.h"

#define OBS_UPDATE_MS 250
/* NATS reconnecting this long still counts as healthy: cnats keeps trying, and usually gets there. */
#define OBS_RECONNECT_GRACE_MS 60000

enum obs_phase {
	OBS_STARTING,      /* connecting, setting up, starting workers */
	OBS_RUNNING,
	OBS_RESETTING,     /* the consumer is being reset to its ack floor */
	OBS_RESHARDING,    /* moving users between stores: no worker runs */
	OBS_DRAINING,      /* shutting down */
};

/* The NATS connection as /metrics shows it (alarm_digest_nats_connected and friends). */
enum obs_nats { OBS_NATS_DISCONNECTED, OBS_NATS_CONNECTED, OBS_NATS_RECONNECTING, OBS_NATS_CLOSED };

struct obs_slot {
	bool running, parked, held;
	uint64_t queued, spilled, stall_kills;
	uint64_t users, alarms, tombstones, map_used, map_size;
	char exit_why[128];
};

struct obs_snap {
	enum obs_phase phase;
	uint64_t reshard_done, reshard_total;   /* stores, while resharding */
	bool jetstream;
	bool bound;                 /* intake subscribed (the consumer bound, in jetstream mode) */
	enum obs_nats nats;
	int64_t nats_down_ms;       /* how long NATS has not been connected (0: it is) */
	struct intake_stats in;
	uint64_t restarts, stall_kills;
	/* Summed over slots, processes and pools. */
	uint64_t commits, digests, digest_parts, digest_bytes, overlimit;
	uint64_t digest_msgs_resent;   /* published again after a NATS reconnect */
	struct histo commit_latency, digest_latency;
	bool lag_known;
	uint64_t num_pending, num_ack_pending;
	int64_t started_wall_ms;
	const char *subject_status, *subject_request;   /* restart-only: fixed for the process */
	int nslots;
	struct obs_slot *slot;      /* nslots of them */
	uint64_t digests_fenced;    /* requests workers skipped past the lease fence */
	/* Cluster mode ([cluster] partitions > 0; 0: none of these). */
	int partitions;
	int64_t *part_since_ms;     /* [partitions]: held since (wall ms); 0: not held here */
	uint64_t part_acquired, part_released, part_lost;
	bool router_active;
	/*
	 * Monotonic ms (clock_mono_ms) past which nothing held is acted on
	 * (lease.h's fence): /metrics then shows nothing owned, even while the
	 * main thread has not yet caught up (say, just after a SIGCONT).
	 */
	int64_t fence_ms;
	int members;
};

struct obs;

/* Subjects from c are kept (they label the received counters). */
struct obs *obs_new(const struct config *c);
void obs_free(struct obs *o);

/*
 * Main loop: take the numbers of intake (its connection's state too) and
 * pool, if OBS_UPDATE_MS passed or the phase changed.  Either may be NULL:
 * what it would give stays as last taken.
 */
void obs_update(struct obs *o, enum obs_phase phase, struct intake *in, struct pool *p, bool force);
/* Main thread: p is about to be freed (a reshard replaces it); keep what it counted. */
void obs_pool_retire(struct obs *o, struct pool *p);
/* Main thread, during a reshard (the main loop waits for it): only phase and progress. */
void obs_reshard(struct obs *o, uint64_t stores_done, uint64_t stores);
/* Lag poller thread: the consumer's lag, or known = false when it could not be read. */
void obs_set_lag(struct obs *o, bool known, uint64_t pending, uint64_t ack_pending);
/* Main thread, cluster mode: the leases held now (lease.h's view) and whether the router runs. */
struct lease_view;
/* served: whether each partition is served here now (bound, not handed over). */
void obs_cluster(struct obs *o, const struct lease_view *v, const bool *served, bool router_active);
/* Any thread: call fn with the snapshot, under the lock (keep fn short; never call obs_* in it). */
void obs_read(struct obs *o, void (*fn)(const struct obs_snap *s, void *arg), void *arg);

/*
 * The verdicts on a snapshot, with a one-line reason in why ("ok", "slot
 * 3 parked: ...", "resharding 2/4 stores"): /healthz and /readyz.
 * healthy: NATS connected or reconnecting for less than
 * OBS_RECONNECT_GRACE_MS, and no slot parked.  ready: running, the
 * consumer bound, NATS connected, every slot's worker running.
 */
bool obs_healthy(const struct obs_snap *s, char *why, size_t len);
bool obs_ready(const struct obs_snap *s, char *why, size_t len);

#endif
