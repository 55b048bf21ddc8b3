/*
 * pace: publishing at a fixed rate, and latency summaries.
 *
 * The publisher sends whatever is due, then sleeps until the next message
 * is due (at most 1 ms), so messages go out in batches of about a
 * millisecond's worth.  Each request's latency is timed from its own
 * publish, so time it would have spent queued behind a publisher that
 * fell behind is not counted; max_lag_ms says whether it kept the schedule.
 */
#ifndef BENCH_PACE_H
#define BENCH_PACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "load.h"

struct paced {
	double target_rate, achieved_rate, seconds;
	size_t msgs, requests, timed_requests;
	double max_lag_ms;        /* worst delay behind schedule */
	int64_t first_ns, last_ns;
};

/* The i-th message to publish (a request when `request`). */
typedef int (*pace_next_fn)(void *arg, size_t i, bool request, struct gen_msg *out);
/* After a message went out; ns was taken just before its publish. */
typedef int (*pace_sent_fn)(void *arg, const struct gen_msg *g, int64_t ns);
/* Every 5 s from the start, and once at the end. */
typedef void (*pace_tick_fn)(void *arg);

struct pacer {
	natsConnection *nc;
	double rate, seconds;
	int req_every;            /* every req_every-th message is a request */
	pace_next_fn next;
	pace_sent_fn sent;        /* may be NULL */
	pace_tick_fn tick;        /* may be NULL */
	void *arg;
};

int pace_run(const struct pacer *pc, struct paced *p);

/* ---- latency summaries ---- */

struct lat {
	size_t n;
	double p50, p99, max;     /* ms */
};

/* Nearest-rank percentiles of n durations in ns (sorts v). */
struct lat lat_summary(int64_t *v, size_t n);

#endif
