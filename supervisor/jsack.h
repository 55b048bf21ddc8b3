/*
 * jsack: the JetStream ack protocol, done by hand on a plain subscription
 * to the push consumer's deliver subject.
 *
 * The reply subject of a delivered message carries its stream sequence:
 *   $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
 *   $JS.ACK.<domain>.<acchash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>]
 * Acking is a publish of "+ACK" to that subject.
 */
#ifndef JSACK_H
#define JSACK_H

#include <stdint.h>

struct jsack_meta {
	uint64_t stream_seq;
	uint64_t delivered;   /* delivery count: > 1 means a redelivery */
	uint64_t consumer_seq;  /* the consumer's delivery sequence: +1 per delivery, so a gap shows a loss */
};

/* 0 on success, -1 if `reply` is not a JetStream ack subject. */
int jsack_parse(const char *reply, struct jsack_meta *out);

#endif
