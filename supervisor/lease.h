/*
 * lease: which partitions, and whether the router, this instance holds
 * in cluster mode ([cluster] partitions > 0; docs/DESIGN.md, issue 14).
 *
 * The leases are keys of a JetStream KV bucket whose TTL is the lease
 * time: "member.<instance>" (this instance is alive), "part.<p>" and
 * "router", each {"instance":"..","since":<unix ms>,"epoch":N} (no epoch
 * in the acquiring write: its revision is the epoch).  A thread of its
 * own, on a connection of its own (so a busy intake never delays a
 * renewal), acquires a free key by a write that expects the key's last
 * revision (none, or a delete marker): two instances can never both
 * succeed.  The revision that write returns is the lease's EPOCH, which
 * names the consumers the master makes for it, so a stale owner's late
 * acks hit a deleted consumer.  Every lease_ttl/4 one round renews every
 * key held, each write expecting the revision of our last one; "wrong
 * last sequence" means someone else holds it now: lost.
 *
 * The FENCE is the safety net for a paused or cut-off instance: the
 * monotonic instant (start of the last round in which every renewal got
 * an answer) + lease_ttl - lease_ttl/5.  Our keys cannot expire before
 * it, so nobody else can hold our partitions before it; after it the
 * master acts for no partition (acks nothing, publishes nothing) until
 * it reset and acquired again.
 *
 * Ownership target: partition p belongs to the live member with the
 * highest hash32("<instance>/<p>"), mixed (rendezvous hashing: a member
 * joining or leaving moves only its own share).  When another live member is the
 * target of a partition we hold, its release_wanted is set; the master
 * hands it over (quiesces, acks, deletes the consumer, records its floor)
 * and calls lease_released, and the lease thread deletes the key (a
 * conditional delete: only if still ours).  The target sees the delete
 * at once through its watcher and acquires.  A partition nobody holds
 * for lease_ttl (its target is slow or stuck) is taken by anyone.  The
 * router is first come, first served; it moves only when its holder
 * leaves or loses it.
 *
 * A hold that disappears from the view (epoch 0, or another epoch) was
 * lost or given up: the master stops acting for it at once.  The keys'
 * format and the conditional writes are common/leasekv.h's.
 *
 * Thread use: lease_open and lease_close from one thread (the master's);
 * lease_view, lease_released, lease_reset, lease_leave and
 * lease_wake_fd from any.  The master polls lease_wake_fd: it is readable
 * whenever the view changed; lease_view clears it.
 */
#ifndef LEASE_H
#define LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/config.h"

#define LEASE_ROUTER (-1)   /* lease_released's "partition" for the router lease */

struct lease;

struct lease_hold {
	uint64_t epoch;         /* KV revision of the acquiring write; 0: not held */
	int64_t since_ms;       /* wall clock (unix ms) of the acquire */
	bool release_wanted;    /* hand it over: another live member is its target (or we leave) */
};

struct lease_view {
	uint64_t gen;           /* bumps at every change below (counters excepted) */
	/*
	 * Monotonic ms (clock_mono_ms) after which nothing held may be acted
	 * on; 0 until the first round in which every renewal was answered.
	 */
	int64_t fence_ms;
	int partitions;
	int members;            /* live members seen, this one included */
	bool leaving;           /* lease_leave was called */
	struct lease_hold router;
	struct lease_hold part[CONFIG_PARTITIONS_MAX];
	uint64_t acquired, released, lost;   /* partition leases, since open */
};

/*
 * Connect (a connection of its own; waiting for NATS until stop(stop_arg)
 * says to give up), create or bind the bucket, start the thread.  Nothing
 * is held at return; the first holds come within a round.  Nothing of c
 * is kept.  NULL on error (logged).
 */
struct lease *lease_open(const struct config *c, bool (*stop)(void *), void *stop_arg);
/* The view as of now (a copy); clears the wake fd. */
void lease_view(struct lease *l, struct lease_view *v);
int lease_wake_fd(const struct lease *l);
/*
 * The master handed partition p (or LEASE_ROUTER) over or stopped acting
 * for it: delete its key if still ours, and hold it no more.  Its epoch
 * must be the one the view showed; a release for an older epoch is
 * ignored.
 */
void lease_released(struct lease *l, int p, uint64_t epoch);
/*
 * The master passed the fence and dropped everything: forget every
 * hold.  Keys still ours are acquired again with a new epoch (a write
 * expecting our last revision); keys someone else took stay theirs.
 */
void lease_reset(struct lease *l);
/*
 * Shutdown: leave the membership (others stop targeting us at once),
 * acquire nothing more, and ask for every hold to be released.
 */
void lease_leave(struct lease *l);
/*
 * Stop the thread and close.  Keys still held are left to expire: a
 * clean shutdown released them first (lease_leave, lease_released).
 */
void lease_close(struct lease *l);

/* The rendezvous target of partition p among n member names (its index), -1 when n == 0. */
int lease_target(const char *const *members, int n, int p);

#endif
