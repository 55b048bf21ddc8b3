/*
 * publish: a worker's digests onto NATS.  A digest request is taken from
 * the store (its alarms marked delivered in the open transaction), cut
 * into parts that fit the server's max_payload (parts.h), and published
 * with its headers on the worker's own connection.  The commit flushes
 * what went out before the batch is made durable (worker.h).
 *
 * A failed publish is sorted by what a retry can do, because retrying a
 * permanent failure forever stalls every user of the worker: a transient
 * one redoes the batch after a backoff; a digest that can never go out is
 * skipped (the batch is applied again without taking it, so its alarms
 * stay undelivered), and counted as undeliverable.  The skips last until
 * the batch commits.  The backoff timer here is also the one a storage
 * pause (fault.h) waits on: there is one batch to redo, whatever failed.
 */
#ifndef PUBLISH_H
#define PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/config.h"
#include "../common/histo.h"
#include "../common/store.h"

/* A transient failure redoes the batch after 100 ms at least, doubling to 5 s. */
#define PUBLISH_RETRY_MIN_MS 100
#define PUBLISH_RETRY_MAX_MS 5000
/* While the batch keeps failing, one log line per this many ms. */
#define PUBLISH_RETRY_LOG_MS 10000

/*
 * What a digest publish came to.  A transient failure (not connected, a
 * timeout, a full buffer) redoes the batch after a backoff; a permanent one
 * must not: retrying it forever stalls every user of this worker.
 */
enum publish_result {
	PUB_OK,
	PUB_RETRY,       /* transient: redo the batch later */
	PUB_SKIP,        /* this digest cannot be published: apply the batch again without it */
	PUB_REFUSED,     /* the server refuses digests at all: skip every request left in the batch */
	PUB_STORE,       /* the store is full (disk or map): redo the batch later, or now if the map grew */
};

struct publish;

struct publish_counts {
	uint64_t digests;         /* published */
	uint64_t parts;           /* messages they took */
	uint64_t bytes;           /* payload bytes of those messages */
	uint64_t undeliverable;   /* skipped for good */
	uint64_t resent;          /* messages published again after a reconnect (resend.h) */
	struct histo latency;     /* request received by the supervisor -> digest published */
};

/*
 * Digests go out on nc (borrowed).  cfg is borrowed too and read at each
 * publish, so a reload's subject_digest applies to the next digest.
 * NULL: logged.
 */
struct publish *publish_new(natsConnection *nc, const struct config *cfg);
void publish_free(struct publish *p);

/*
 * A DIGEST frame (id, the request's stream sequence, when the supervisor
 * received it (frame_digest_received), its user) inside the
 * open transaction of frames frames: collect, publish, and mark delivered.
 * PUB_STORE: collecting failed; the store's fault is the caller's to sort.
 */
enum publish_result publish_digest(struct publish *p, struct store *s, uint64_t id, uint64_t seq,
    int64_t received_us, const char *user, size_t user_len, size_t frames);
/*
 * A DIGEST frame with FRAME_F_REPLAY: a request the partition's earlier
 * owner answered, replayed to rebuild its state (cluster mode).  Mark the
 * user's pending alarms delivered and record the request as answered, as
 * publish_digest does, but publish nothing.  PUB_OK or PUB_STORE.
 */
enum publish_result publish_replay(struct publish *p, struct store *s, uint64_t seq,
    const char *user, size_t user_len);
/*
 * The batch is undone because request id returned PUB_SKIP, or PUB_REFUSED
 * (refused: every request from id on is skipped).  Remember it for when
 * the batch is applied again.  -1 on ENOMEM.
 */
int publish_skip(struct publish *p, uint64_t id, bool refused);

/* A transaction opens: nothing of it handed to NATS yet. */
void publish_begin(struct publish *p);
/*
 * The transaction is undone.  keep_handed: the digests handed to NATS so
 * far still go out (the batch is redone only to skip a request), so they
 * are not published again.
 */
void publish_rewind(struct publish *p, bool keep_handed);
/* Whether a digest went out in the open transaction. */
bool publish_pending(const struct publish *p);
/* Make the digests handed over reach the server.  -1: a transient failure, logged. */
int publish_flush(struct publish *p, size_t frames);
/*
 * Each turn of the worker's loop: after a reconnect, publish again what
 * the old connection's server may not have passed on (resend.h), and
 * flush it when no batch is open to do so.  fence_ms: the lease fence
 * (cluster mode; 0 none): past it, nothing is published again.
 */
void publish_tick(struct publish *p, int64_t fence_ms);
/* The batch committed: skips are forgotten, and publishing works again (said once). */
void publish_commit(struct publish *p);

/* After a failed batch: redo it no sooner than PUBLISH_RETRY_MIN_MS or floor_ms, doubling. */
void publish_backoff(struct publish *p, int floor_ms);
/* After a failed batch that can be redone at once. */
void publish_retry_now(struct publish *p);
/* Monotonic ms before which the batch is held (0 or past: not held). */
int64_t publish_retry_at(const struct publish *p);
/* Whether transient failures are going on: the title says so. */
bool publish_failing(const struct publish *p);

void publish_get_counts(const struct publish *p, struct publish_counts *c);

#endif
