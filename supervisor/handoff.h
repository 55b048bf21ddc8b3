/*
 * handoff: deliveries passed from the cnats callback thread to the main
 * loop, in batches.
 *
 * The callback appends each delivery, its worker frame already encoded,
 * to a bounded batch; the main thread swaps whole batches out (one lock
 * per batch, not per message) and routes them in place.  When the batch
 * is full the callback waits: that is the backpressure that reaches the
 * broker (MaxAckPending in jetstream mode).  An eventfd wakes the main
 * loop once per batch; while cnats already holds more deliveries the wake
 * waits for the last of them (or for HANDOFF_WAKE_ITEMS), so a burst
 * crosses as one batch instead of one eventfd write, one poll and one
 * socket write per message.
 */
#ifndef HANDOFF_H
#define HANDOFF_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include <nats/nats.h>

#include "../common/buf.h"

struct handoff;

/* A batch is read in place by the main thread, so its layout is public. */
struct handoff_item {
	uint32_t hash;        /* hash32(UserID): the routing key */
	uint32_t frame_off;   /* the frame, in handoff_batch.frames */
	uint32_t frame_len;   /* 0: nothing to route, already done (a dead-lettered message) */
	uint16_t lane;        /* which consumer delivered it (ackq.h): 0, or 1 + partition */
	uint32_t binding;     /* cluster mode: the partition's binding it came under (partset_current) */
	uint64_t stream_seq;
	natsMsg *msg;         /* held until acked (NULL: none); the router takes it by setting NULL */
};

struct handoff_batch {
	struct buf frames;
	struct handoff_item *items;
	size_t n, cap;
	size_t pos;           /* next item to route */
};

/* NULL on error (logged). */
struct handoff *handoff_new(void);
/* Releases the messages of a batch not yet taken. */
void handoff_free(struct handoff *h);

/*
 * Callback thread: append one item, waiting while the batch is full.
 * encode(frames, arg) appends the item's frame to frames, under the lock,
 * straight into the batch (encode NULL: no frame; the item only holds its
 * place in the ack order).  more: the caller knows of further deliveries
 * that will be put soon, so the main loop's wake may wait for them (it is
 * never held back past a full batch or HANDOFF_WAKE_ITEMS; a caller that
 * says more and then puts nothing leaves the batch to the main loop's
 * next poll timeout).  On success the batch owns msg.  Returns 0 if
 * queued, 1 if the handoff is shut, -1 if out of memory or encode failed;
 * then the caller still owns msg.
 */
int handoff_put(struct handoff *h, uint32_t hash, uint64_t stream_seq, uint16_t lane, uint32_t binding,
    natsMsg *msg, bool more,
    int (*encode)(struct buf *frames, const void *arg), const void *arg);

/*
 * Shut: release what waits in the batch, and from now on every put
 * (including one waiting for room) queues nothing and returns 1.
 * Open: queue again.  A handoff starts open.
 */
void handoff_shut(struct handoff *h);
void handoff_open(struct handoff *h);

/* Main thread: readable when a batch is waiting. */
int handoff_wake_fd(const struct handoff *h);
/* Swap the waiting batch into *b (which must be fully routed); 1 if it has items, else 0. */
int handoff_take(struct handoff *h, struct handoff_batch *b);
/* Releases the messages of items not yet routed. */
void handoff_batch_free(struct handoff_batch *b);

#endif
