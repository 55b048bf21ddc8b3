/*
 * intake: where messages enter the service.
 *
 * Owns the supervisor's NATS connection.  In jetstream mode it reads the
 * durable push consumer that jsetup keeps (one stream for both input
 * subjects, so one ordered sequence) through a plain subscription to the
 * consumer's deliver subject; in core mode it subscribes to the two subjects on one shared delivery
 * thread so their relative order is kept.
 *
 * cnats calls back on its own thread.  That thread parses and validates
 * each message (the only parse in the service), dead-letters malformed
 * ones, and appends valid ones, already encoded as worker frames, to a
 * bounded batch.  The main thread takes whole batches (one lock per batch)
 * and routes them.  When the batch is full the callback waits: that is the
 * backpressure that reaches the broker (MaxAckPending in jetstream mode).
 */
#ifndef INTAKE_H
#define INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/buf.h"
#include "../common/config.h"
#include "../common/validate.h"

struct intake;

struct intake_item {
	uint32_t hash;        /* hash32(UserID): the routing key */
	uint32_t frame_off;   /* the frame, in intake_batch.frames */
	uint32_t frame_len;   /* 0: nothing to route, already done (a dead-lettered message) */
	uint64_t stream_seq;
	natsMsg *msg;         /* jetstream: held until acked; core: NULL */
};

struct intake_batch {
	struct buf frames;
	struct intake_item *items;
	size_t n, cap;
	size_t pos;           /* next item to route */
};

struct intake_stats {
	uint64_t received;
	uint64_t accepted;
	uint64_t rejected;
	uint64_t dead_lettered;
	uint64_t dead_letter_failed;
	uint64_t redelivered;
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
 * order, instead of after ack_wait behind newer ones.
 */
int intake_start(struct intake *in);
/* Stop delivery; queued and in-flight messages are released unacked (jetstream redelivers them). */
int intake_reset(struct intake *in);
/* Graceful stop: let already-received messages through, then no more. */
int intake_drain_begin(struct intake *in);
bool intake_drain_done(struct intake *in);

/* Readable when a batch is waiting. */
int intake_wake_fd(const struct intake *in);
/* Swap the waiting batch into *b (which must be fully routed); 1 if it has items, else 0. */
int intake_take(struct intake *in, struct intake_batch *b);
void intake_batch_free(struct intake_batch *b);

/*
 * Ack (AckAll) a message once it and every delivery before it are durable.
 * The caller still releases it.
 */
void intake_ack(struct intake *in, natsMsg *m);
void intake_release(void *m);

/*
 * The consumer must be reset before anything more is acked: the
 * connection came back from a disconnect, a delivery went missing (a gap
 * in the consumer sequence), or a dead-letter publish failed.  Cleared by
 * intake_start().
 */
bool intake_reset_wanted(struct intake *in);
/* Reloadable settings: limits and dead-letter subject. */
int intake_reload(struct intake *in, const struct config *c);
void intake_get_stats(struct intake *in, struct intake_stats *st);

#endif
