/*
 * bus: the test's side of NATS.  A publisher (JetStream, acked, retried
 * with a Nats-Msg-Id so a retry never duplicates; or core NATS), a
 * collector that parses every AlarmDigest strictly and files it per user,
 * and a capture that keeps raw messages plus one header (dead letters).
 *
 * Everything here is thread-safe; every wait takes a deadline
 * (harness_now_ms() based) and fails with harness_err() set.
 */
#ifndef BUS_H
#define BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

struct bus;

/* Connect to url; jetstream selects how bus_publish sends. */
struct bus *bus_open(const char *url, bool jetstream);
/* The same over TLS: trust ca_file, present cert_file + key_file (PEM paths). */
struct bus *bus_open_tls(const char *url, bool jetstream, const char *ca_file,
    const char *cert_file, const char *key_file);
/* The same as the user of a creds file (JWT + seed; a server in operator mode). */
struct bus *bus_open_creds(const char *url, bool jetstream, const char *creds_file);
void bus_close(struct bus *b);
natsConnection *bus_conn(struct bus *b);
jsCtx *bus_js(struct bus *b);

/* JetStream: stored and acked before it returns.  Core: queued (bus_flush). */
int bus_publish(struct bus *b, const char *subject, const void *data, size_t len);
int bus_flush(struct bus *b, int64_t timeout_ms);
/* Payloads as the SPEC shows them, built with json-c. */
int bus_publish_update(struct bus *b, const char *user, const char *alarm,
    const char *status, const char *ts);
int bus_publish_request(struct bus *b, const char *user);
uint64_t bus_published(struct bus *b);

/* Poll js_GetConsumerInfo until the durable exists. */
int bus_wait_consumer(struct bus *b, const char *stream, const char *consumer,
    int64_t timeout_ms);
/*
 * Wait until the durable has acked the whole stream (nothing undelivered,
 * nothing unacked, ack floor at the last sequence): the service has done
 * everything it will ever do for what was published before the call.
 */
int bus_wait_acked(struct bus *b, const char *stream, const char *consumer,
    int64_t deadline_ms);
/* Messages stored in a stream and its last sequence. */
int bus_stream_state(struct bus *b, const char *stream, uint64_t *msgs, uint64_t *last_seq);
/* The payload of message `seq` of a stream (malloc'd; *data may be NULL when empty). */
int bus_stream_get(struct bus *b, const char *stream, uint64_t seq, char **data, size_t *len);

/* ---- digests ---- */

struct collector;

/* Subscribes (and flushes) before returning, so nothing published later is missed. */
struct collector *collector_new(struct bus *b, const char *subject);
void collector_free(struct collector *c);

/* Digests received for a user, duplicates included; the i-th as a model_canon string. */
size_t collector_count(struct collector *c, const char *user);
/* Same, an exact repeat of an earlier digest of that user not counted. */
size_t collector_distinct(struct collector *c, const char *user);
const char *collector_get(struct collector *c, const char *user, size_t i);
/* All users together; distinct counts each (user, digest) once. */
size_t collector_total(struct collector *c, bool distinct);
int collector_wait_user(struct collector *c, const char *user, size_t n, int64_t deadline_ms);
int collector_wait_total(struct collector *c, size_t n, bool distinct, int64_t deadline_ms);
/*
 * Once it returns 0, every digest the server had taken in before the call
 * has been filed (a round trip on b, the collector's connection, then its
 * queue drained): what has not arrived by then was never published.
 */
int collector_sync(struct collector *c, struct bus *b, int64_t deadline_ms);
/* Payloads that broke the output contract; the first one's description in buf. */
size_t collector_errors(struct collector *c, char *buf, size_t cap);
/*
 * Digests sent in parts (PROTOCOL.md "Limits"): the collector joins a
 * user's parts 1..n ("Digest-Part: k/n", back to back, Nats-Msg-Id
 * <id>/k) and files them as one digest; a part out of sequence, a bad
 * header, or any message over the server's max_payload (headers counted)
 * is an error (collector_errors).
 */
struct collector_parts {
	size_t split;       /* digests that came in parts */
	size_t parts;       /* messages of such digests */
	size_t max_n;       /* most parts of one digest */
	size_t biggest;     /* largest message, payload plus headers */
	size_t abandoned;   /* part 1 again before the last part (a crash in between) */
};
void collector_get_parts(struct collector *c, struct collector_parts *out);
/* Messages the client library dropped (slow consumer); -1 if unknown. */
int64_t collector_dropped(struct collector *c);

/* ---- raw capture ---- */

struct capture;

/* Keeps every message on subject with the value of header `header` ("" if absent). */
struct capture *capture_new(struct bus *b, const char *subject, const char *header);
void capture_free(struct capture *c);
size_t capture_count(struct capture *c);
int capture_wait(struct capture *c, size_t n, int64_t deadline_ms);
/* As collector_sync, for a capture made on b. */
int capture_sync(struct capture *c, struct bus *b, int64_t deadline_ms);
/*
 * How many captured messages carry exactly these payload bytes; the header
 * of the first such one is copied to hdr.
 */
size_t capture_find(struct capture *c, const void *data, size_t len, char *hdr, size_t cap);
/* The i-th captured message; pointers stay valid until capture_free. */
int capture_get(struct capture *c, size_t i, const char **data, size_t *len, const char **hdr);

#endif
