/*
 * intake: where messages enter the service.
 *
 * Owns the supervisor's NATS connection.  In jetstream mode it reads the
 * durable push consumer that jsetup keeps (one stream for both input
 * subjects, so one ordered sequence) through a plain subscription to the
 * consumer's deliver subject; in core mode it subscribes to the two
 * subjects on one shared delivery thread so their relative order is kept.
 *
 * cnats calls back on its own thread.  That thread parses and validates
 * each message (the only parse in the service), dead-letters malformed
 * ones (deadletter.h: a copy is kept if it can be, and the original is
 * done either way), and passes valid ones, already encoded as worker
 * frames, to the main thread through the handoff (see handoff.h for the
 * batches and the backpressure).  Wire bytes (subjects, replies, payload
 * excerpts) reach the log only escaped.
 */
#ifndef INTAKE_H
#define INTAKE_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/config.h"
#include "../common/validate.h"

struct intake;
struct handoff;
struct jsetup;
struct partset;

struct intake_stats {
	uint64_t received;
	uint64_t accepted;
	uint64_t rejected;
	uint64_t dead_lettered;          /* copies kept (confirmed by the dead-letter stream, if any) */
	uint64_t dead_letter_truncated;  /* copies that kept only the first bytes (Alarm-Original-Size) */
	uint64_t dead_letter_failed;     /* copies not kept; their originals are acked all the same */
	uint64_t redelivered;
	uint64_t replayed;               /* cluster mode: rebuilt a partition, answered before (not in received) */
	uint64_t received_status;        /* of received: on the status subject */
	uint64_t received_request;       /* on the request subject (the rest: neither) */
	uint64_t rejected_status, rejected_request;  /* of rejected: by subject */
	uint64_t by_reason[MSG_E_COUNT];
};

/*
 * Connect (waiting for the server, unless stop(arg) says to give up) and,
 * in jetstream mode, set up stream and consumer.  NULL on error (logged).
 */
struct intake *intake_open(const struct config *c, bool (*stop)(void *), void *arg);
void intake_close(struct intake *in);

/*
 * Start delivery.  In jetstream mode the consumer is first reset to its ack
 * floor, so every unacked message is delivered again now, in stream
 * order, instead of after ack_wait behind newer ones.  In cluster mode
 * only the partitions not bound yet get a new consumer (partset_bind);
 * the others go on as they are.
 */
int intake_start(struct intake *in);
/*
 * Stop delivery; queued and in-flight messages are released unacked
 * (jetstream redelivers them).  A reset wanted so far is done by this and
 * the next start (every partition unbound, the consumer reset at start).
 */
int intake_reset(struct intake *in);
/*
 * The same, but cluster mode's partitions stay bound: what the workers
 * hold of them can still be acked before they are handed over (a
 * leaving member).
 */
void intake_stop(struct intake *in);
/*
 * Cluster mode, main thread: stop serving partition p (its subscription
 * ends; the next intake_start binds it anew if it is still wanted).  What
 * its consumer delivered, wherever it waits, is stale from now on.
 */
void intake_unbind(struct intake *in, int p);
/* Any thread: a delivery of this lane and binding (handoff_item) is still to be routed and acked. */
bool intake_current(const struct intake *in, int lane, uint32_t binding);
/* Graceful stop: let already-received messages through, then no more. */
int intake_drain_begin(struct intake *in);
bool intake_drain_done(struct intake *in);

/* The supervisor's NATS connection (for $SRV replies, srv.h), and its JetStream setup (NULL: core). */
natsConnection *intake_conn(struct intake *in);
struct jsetup *intake_jsetup(struct intake *in);
/* Subscribed: messages are delivered (the consumer is bound, in jetstream mode).  Main thread. */
bool intake_bound(struct intake *in);

/* Where the main thread takes the accepted messages from; owned by intake. */
struct handoff *intake_handoff(struct intake *in);

/*
 * Ack (AckAll) a message once it and every delivery before it are durable.
 * lane and stream_seq are its ackq lane and sequence (cluster mode records
 * what the stores hold).  The caller still releases it.
 */
void intake_ack(struct intake *in, natsMsg *m, int lane, uint64_t stream_seq);
/* Make sure the acks sent so far reached the server (before a lease is given up). */
int intake_flush(struct intake *in);
/* Cluster mode: the partitions served (NULL: a single instance). */
struct partset *intake_partset(struct intake *in);
void intake_release(void *m);

/*
 * The consumer must be reset before anything more is acked: the
 * connection came back from a disconnect, or a delivery went missing (a
 * gap in the consumer sequence, e.g. cnats dropped one past the pending
 * limits).  Cleared by intake_start().
 */
bool intake_reset_wanted(struct intake *in);
/* Reloadable settings: limits, dead-letter subject, and the pending cap (workers x queue_max_bytes). */
int intake_reload(struct intake *in, const struct config *c);
void intake_get_stats(struct intake *in, struct intake_stats *st);

#endif
