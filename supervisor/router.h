/*
 * router: cluster mode's copy of the input into the partition stream
 * (docs/DESIGN.md, issue 14).  Run by the one instance that holds the
 * "router" lease.
 *
 * A push consumer on the input stream ("<consumer>_router_<epoch>_<gen>",
 * delivering to "<deliver_subject>.<instance>.router") feeds the cnats
 * callback, which finds each message's partition (fnv1a32(UserID) %
 * partitions; a message whose user cannot be read goes to partition 0
 * unchanged, for its owner to reject) and publishes a copy, async, to
 * "<partition_subject>.<p>.status|request" with Nats-Msg-Id
 * "<input stream created>-<input seq>", in input order.
 *
 * Every copy also names the copy before it (Nats-Expected-Last-Msg-Id),
 * so the partition stream holds a prefix of the input, in order, exactly
 * once: a copy that fails breaks the chain, every later copy fails too
 * instead of overtaking it, and the router restarts after the last copy
 * the stream holds (read back from it).  The input is acked (AckAll) only
 * up to the newest message whose copy and all copies before it are
 * stored: the partition stream is the changelog the partitions' state is
 * rebuilt from.  A failed copy, a gap in the deliveries or a fence
 * reached stops routing and acking; a thread of the router then starts a
 * new consumer from the floor, as long as the router is started.
 *
 * Copies in flight are bounded (ROUTER_WINDOW in router.c): the callback
 * waits for room, which holds back the input consumer.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/config.h"

struct router;
struct jsetup;

struct router_stats {
	uint64_t received;        /* input deliveries */
	uint64_t redelivered;     /* of received: at or below what was taken already, skipped */
	uint64_t routed;          /* copies the partition stream confirmed */
	uint64_t unparsed;        /* of the copies sent: no user found, sent to partition 0 */
	uint64_t truncated;       /* copies cut to fit max_payload (Alarm-Original-Size) */
	uint64_t acked;           /* input messages covered by the router's acks */
	uint64_t publish_errors;  /* copies failed, refused or not confirmed in time */
	uint64_t fenced;          /* deliveries dropped because the fence had passed */
	uint64_t resets;          /* consumers started again after a failure or a gap */
	uint64_t in_flight;       /* copies sent and not yet confirmed, now */
	bool active;              /* started (and not stopped) */
};

/* Borrowed nc and js outlive the router.  NULL on error (logged). */
struct router *router_open(natsConnection *nc, struct jsetup *js, const struct config *c);
/*
 * Take over the input consumer as lease epoch `epoch`: a new consumer
 * from the floor of the previous ones (or after the last copy the
 * partition stream holds, if that is further), the old ones deleted,
 * then route.  Blocks for JetStream API calls.  0 when routing; -1
 * (logged) when not yet: the router tries again by itself (after 1 s,
 * 2 s, then every 4 s) until router_stop.
 */
int router_start(struct router *r, uint64_t epoch);
/* Unsubscribe; unacked input comes again to the next router.  Idempotent. */
void router_stop(struct router *r);
/*
 * The lease's fence: a monotonic clock_mono_ms() deadline after which the
 * router publishes and acks nothing (until a later fence is given).
 * Until the first call there is none: call it as soon as the lease is
 * acquired and after every renewal.
 */
void router_fence(struct router *r, int64_t fence_ms);
void router_get_stats(struct router *r, struct router_stats *st);
/* Stops it first if needed.  Before nc is closed: a subscription is never freed under live traffic. */
void router_close(struct router *r);

#endif
