/*
 * load: the benchmark's traffic.  U users x A alarms with UUID IDs; a
 * burst of R status updates per alarm (ChangedAt increasing per alarm with
 * random offsets and fractions, delivered shuffled within each alarm so
 * stale updates occur, a fraction of exact duplicates), serialized up front
 * in publish order; and a generator for paced traffic on the same alarms.
 *
 * The SPEC model (tests/lib/model.h) is fed every message in the
 * order it is published; each digest request that must produce a digest
 * is remembered per user with its publish time, so a received digest is
 * matched with its request (the k-th digest of a user answers that user's
 * k-th such request).
 */
#ifndef BENCH_LOAD_H
#define BENCH_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../tests/lib/itmap.h"
#include "../../tests/lib/model.h"
#include "../../tests/lib/traffic.h"

#define LOAD_SUBJECT_STATUS "AlarmStatusChanged"
#define LOAD_SUBJECT_REQUEST "SendAlarmDigest"

enum msg_kind_bench { MK_UPDATE, MK_REQUEST, MK_REQUEST_DIGEST };

struct breq {
	int64_t ns;             /* publish time, CLOCK_MONOTONIC */
	int phase;
};

struct buser {
	char id[40];
	struct breq *req;       /* requests that must produce a digest, in order */
	size_t nreq, capreq;
	size_t nrecv;           /* digests matched so far (verification) */
};

struct msgref {
	uint64_t off;
	uint32_t len;
	uint32_t user;
	uint32_t alarm;         /* index within the user */
	uint8_t kind;           /* enum msg_kind_bench */
	uint8_t status;         /* enum model_status */
	uint8_t ts_off, ts_len; /* ChangedAt within the payload */
};

struct burst {
	char *arena;
	size_t alen, acap;
	struct msgref *m;
	size_t n;
	size_t updates, requests, duplicates;
};

/* What the model said about a burst's messages. */
struct feed_stats {
	uint64_t fresh, changed, refreshed, stale, duplicate, less_severe;
	uint64_t digests;       /* requests that must produce a digest */
};

/* One generated message of paced traffic (pointers valid until the next call). */
struct gen_msg {
	const char *subject;
	const char *data;
	size_t len;
	uint32_t user;
	bool request;
	bool expects;           /* a request that must produce a digest */
};

struct load {
	int users, alarms;
	double dup;
	int64_t base_sec;
	int slot_sec;
	struct buser *u;
	char (*alarm_id)[40];   /* users * alarms */
	uint32_t *slot;         /* next ChangedAt slot per alarm */
	struct itmap by_id;
	struct rng rng;
	/* paced generator */
	char buf[512];
	char last[512];
	size_t last_len;
	uint32_t last_user, last_alarm;
	uint8_t last_status;
	char last_ts[48];
	bool have_last;
	int64_t pending_user;
};

/*
 * route_slots > 0: user i is drawn so the service routes it to worker
 * i % route_slots (hash32(UserID) % N), so a handful of users still load
 * every worker evenly (the alarms-per-user table); 0: plain random UUIDs.
 */
int load_init(struct load *L, int users, int alarms, double dup, uint64_t seed, int route_slots);
void load_free(struct load *L);

/* Build a burst: `rounds` updates per alarm, then (if requests) one request per user. */
int load_burst(struct load *L, struct burst *b, int rounds, bool requests);
void burst_free(struct burst *b);
static inline const char *
burst_subject(const struct msgref *r)
{
	return r->kind == MK_UPDATE ? LOAD_SUBJECT_STATUS : LOAD_SUBJECT_REQUEST;
}

/*
 * A burst of n updates on alarms drawn at random over all users, each at
 * its alarm's next ChangedAt slot (newer than anything before it), a
 * fraction of exact repeats of the previous update, and after every
 * req_every-th update a request for the user of the last one: the load
 * put on top of a seeded state (the users table).
 */
int load_spread(struct load *L, struct burst *b, size_t n, int req_every);

/* Feed a burst to the model in publish order (marks which requests expect a digest). */
int load_feed(struct load *L, struct burst *b, struct model *m, struct feed_stats *st);

/* Forget request records and start paced ChangedAt slots at next_slot (a fresh service). */
void load_reset(struct load *L, uint32_t next_slot);

/* Remember a request that must produce a digest, published at ns. */
int load_mark_request(struct load *L, uint32_t user, int phase, int64_t ns);

/* Paced traffic: the next update (or a request), already applied to the model. */
int load_next(struct load *L, struct model *m, bool request, struct gen_msg *out);

struct buser *load_user(struct load *L, const char *id, size_t len);

#endif
