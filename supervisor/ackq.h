/*
 * ackq: the messages the supervisor holds, in delivery order, and the
 * "durable floor": the longest prefix of them whose effects are durable.
 *
 * The consumer acks with AckAll, once per advance of the floor, instead of
 * one ack per message: the broker then does one ack's work per worker
 * commit rather than per message (see docs/PERFORMANCE.md).  AckAll(S)
 * acknowledges every message with stream sequence <= S, so the floor ack
 * names the largest stream sequence in the prefix: every first delivery
 * at or below it is in the prefix (first deliveries arrive in stream
 * order), and a redelivery at or below it repeats a message whose first
 * delivery is in the prefix.  That argument needs every delivery to have
 * reached us: intake checks the consumer's delivery sequence for gaps and
 * forces a consumer reset when one appears.
 */
#ifndef ACKQ_H
#define ACKQ_H

#include <stddef.h>
#include <stdint.h>

struct ackq;

struct ackq *ackq_new(void (*release)(void *ref));
/* Releases every held reference. */
void ackq_free(struct ackq *q);

/* Append a delivery (ref may be NULL) with its stream sequence; returns its handle, or UINT64_MAX on ENOMEM. */
uint64_t ackq_push(struct ackq *q, void *ref, uint64_t stream_seq, int done);
/* Take back the last push (it could not be routed after all). */
void ackq_unpush(struct ackq *q);
/* The delivery's effects are durable. */
void ackq_done(struct ackq *q, uint64_t handle);
/*
 * Drop the done prefix.  Returns the ref of its largest stream sequence
 * (the caller acks it with AckAll and releases it), or NULL if the floor
 * did not move; every other ref of the prefix is released.
 */
void *ackq_advance(struct ackq *q);
size_t ackq_count(const struct ackq *q);
/* Release everything (the consumer is being reset). */
void ackq_clear(struct ackq *q);

#endif
