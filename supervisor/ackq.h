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

/*
 * lanes: how many consumers feed the queue (1, or in cluster mode one per
 * partition plus one): each lane is acked on its own, since an AckAll
 * names one consumer.
 */
struct ackq *ackq_new(void (*release)(void *ref), int lanes);
/* Releases every held reference. */
void ackq_free(struct ackq *q);

/*
 * Append a delivery (ref may be NULL) of consumer `lane` with its stream
 * sequence; returns its handle, or UINT64_MAX on ENOMEM.
 */
uint64_t ackq_push(struct ackq *q, void *ref, uint64_t stream_seq, int lane, int done);
/* Take back the last push (it could not be routed after all). */
void ackq_unpush(struct ackq *q);
/* The delivery's effects are durable. */
void ackq_done(struct ackq *q, uint64_t handle);
/*
 * Drop the done prefix.  For each lane in it, ack(ref, lane, arg) gets the
 * ref of the lane's largest stream sequence (it acks it with AckAll and
 * releases it); every other ref of the prefix is released.  Returns how
 * many refs went to ack.
 */
int ackq_advance(struct ackq *q, void (*ack)(void *ref, int lane, uint64_t stream_seq, void *arg),
    void *arg);
size_t ackq_count(const struct ackq *q);
/* Release everything (the consumer is being reset). */
void ackq_clear(struct ackq *q);

#endif
