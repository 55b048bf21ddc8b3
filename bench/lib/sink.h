/*
 * sink: the receiving side.  A digest sink that only timestamps and copies
 * every AlarmDigest (parsing and checking happen after the clock stops, so
 * they take no CPU from the service while it is measured), the check of
 * every digest against the SPEC model, and a counting sink for the broker
 * ceilings.
 */
#ifndef BENCH_SINK_H
#define BENCH_SINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "load.h"
#include "pub.h"

#define SINK_PHASES 4

struct drec {
	int64_t ns;
	char *data;
	uint32_t len;
};

struct dsink;

struct dsink *dsink_open(const char *url, const char *subject);
void dsink_close(struct dsink *d);
size_t dsink_count(struct dsink *d);
/* Wait until count >= target or until_ms (harness_now_ms scale) passes; returns the count. */
size_t dsink_wait(struct dsink *d, size_t target, int64_t until_ms);
/* Arrival time of the n-th digest (1-based), 0 if not there. */
int64_t dsink_arrival_ns(struct dsink *d, size_t n);
/* Messages dropped by the client library (slow consumer), disconnects seen. */
int64_t dsink_dropped(struct dsink *d);
int dsink_disconnects(struct dsink *d);

struct verify {
	size_t digests;          /* received (for bench users) */
	size_t expected;         /* the model's total */
	size_t matched;          /* equal to the model's, in order */
	size_t missing, extra, differ, malformed, unknown_user;
	size_t users_bad;
	char first[3][768];      /* the first problems, described */
	int nfirst;
	int64_t *lat[SINK_PHASES];   /* ns, request publish -> digest arrival */
	int64_t *lat_at[SINK_PHASES];  /* the request's publish time, same index */
	size_t nlat[SINK_PHASES], caplat[SINK_PHASES];
};

/*
 * Check every digest received against the model (per user, in order) and
 * collect latencies by the phase of the request each one answers.
 * Digests for users named "bench-probe..." are ignored.
 */
int sink_verify(struct dsink *d, struct load *L, struct model *m, struct verify *v);
void verify_free(struct verify *v);
bool verify_ok(const struct verify *v);

/* ---- counting sink (ceilings) ---- */

struct csink {
	natsConnection *nc;
	natsSubscription *sub[2];
	int nsub;
	int ack_every;           /* 0: no acks; 1: each (AckExplicit); N: every N-th and the last (AckAll) */
	size_t target;
	atomic_size_t count;
	_Atomic int64_t last_ns;
	struct conn_events ev;
	/* Optional: arrival time of each message on timed_subject, in order. */
	const char *timed_subject;
	int64_t *timed_ns;
	size_t timed_cap;
	atomic_size_t timed;
};

/*
 * Subscribe to subjects (1 or 2) on a new connection; flushes before
 * returning.  Set timed_subject/timed_ns/timed_cap after the memset this
 * does, i.e. pass them here.
 */
int csink_open(struct csink *c, const char *url, const char *const *subjects, int n,
    int ack_every, size_t target, bool global_delivery, const char *timed_subject,
    size_t timed_cap);
void csink_close(struct csink *c);
int64_t csink_dropped(struct csink *c);

#endif
