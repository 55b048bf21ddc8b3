/*
 * deadletter: a copy of each malformed message, kept for the operator.
 *
 * The copy goes to the dead-letter subject with the headers
 * Alarm-Reject-Reason and Alarm-Original-Subject.  When the copy with its
 * headers would not fit in the broker's max_payload (or in the
 * dead-letter stream's MaxMsgSize), it keeps the first bytes of the
 * payload instead and says how long the original was in the header
 * Alarm-Original-Size.
 *
 * Keeping a copy never stops or slows intake: with a dead-letter stream
 * the copy is published asynchronously and the stream's confirmation is
 * counted when it comes; a copy the stream refuses, does not confirm in
 * time, or that finds too many copies still unconfirmed, is counted and
 * logged (rate-limited), and that is all.  The caller acks the original
 * whatever happens: it is bad input, not data.  The copy is published on
 * the connection the acks use, before the original's ack, so an acked
 * original's copy has always reached the server.
 */
#ifndef DEADLETTER_H
#define DEADLETTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

struct deadletter;

/*
 * Copies of messages on nc to subject.  stream_max_msg: the dead-letter
 * stream's MaxMsgSize (-1: none); with_stream: a stream confirms copies
 * (otherwise they are plain publishes nothing confirms).  NULL on error
 * (logged).
 */
struct deadletter *deadletter_new(natsConnection *nc, const char *subject, bool with_stream,
    int64_t stream_max_msg);
/* Waits a little for copies still unconfirmed (counting those that never are); before nc goes. */
void deadletter_free(struct deadletter *dl);
/* Reload: copies from now on go to subject.  0, or -1 (logged). */
int deadletter_set_subject(struct deadletter *dl, const char *subject);

/* Keep a copy of m, rejected for reason (one line of text); m stays the caller's. */
void deadletter_put(struct deadletter *dl, natsMsg *m, const char *reason);

struct deadletter_stats {
	uint64_t kept;       /* published (core) or confirmed by the stream */
	uint64_t truncated;  /* of those sent, copies that kept only the first bytes */
	uint64_t failed;     /* not kept: counted and logged, never retried */
};
void deadletter_get_stats(struct deadletter *dl, struct deadletter_stats *st);

/*
 * How many payload bytes a copy keeps: all len of them when len + hdr
 * fits in limit (limit < 0: no limit), else as many as fit beside hdr and
 * the original-size header, size_hdr bytes more (0 when even the headers
 * alone do not fit).
 */
size_t deadletter_fit(size_t len, size_t hdr, size_t size_hdr, int64_t limit);

#endif
