#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "traffic.h"

/* ---- randomness ---- */

void
rng_seed(struct rng *r, uint64_t seed)
{
	r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* xorshift64*: tiny, reproducible, good enough to shuffle test traffic. */
uint64_t
rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dull;
}

uint32_t
rng_below(struct rng *r, uint32_t n)
{
	return n ? (uint32_t)((rng_next(r) >> 32) % n) : 0;
}

void
traffic_random_ts(struct rng *r, int64_t base_sec, int spread_sec, char *buf, size_t cap)
{
	static const int offsets[] = { 0, 0, 0, 180, -330, 840, -1439, 1439, 60, -600 };
	static const int digit_choices[] = { 0, 0, 1, 3, 6, 9 };
	static const int32_t unit[] = { 1000000000, 100000000, 10000000, 1000000, 100000,
		10000, 1000, 100, 10, 1 };
	int sig = digit_choices[rng_below(r, 6)];
	int digits = sig;
	int32_t nsec = 0;
	int off = offsets[rng_below(r, 10)];

	if (sig > 0)
		nsec = (int32_t)rng_below(r, (uint32_t)(1000000000 / unit[sig])) * unit[sig];
	/* Sometimes print trailing zeros the digest must trim. */
	if (sig < 9 && rng_below(r, 4) == 0)
		digits = sig + 1 + (int)rng_below(r, (uint32_t)(9 - sig));
	model_ts_print(base_sec + rng_below(r, (uint32_t)spread_sec), nsec, off, digits,
	    rng_below(r, 3) == 0, buf, cap);
}

const char *
traffic_random_status(struct rng *r)
{
	static const char *const st[] = { "CLEARED", "WARNING", "WARNING", "CRITICAL", "CRITICAL" };

	return st[rng_below(r, 5)];
}

/* ---- plans ---- */

static int
plan_push(struct plan *p, struct event *e)
{
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 256;
		struct event *ev = realloc(p->ev, ncap * sizeof(*ev));

		if (ev == NULL) {
			harness_seterr("out of memory growing a plan to %zu events", ncap);
			return -1;
		}
		p->ev = ev;
		p->cap = ncap;
	}
	p->ev[p->n++] = *e;
	return 0;
}

static void
event_free(struct event *e)
{
	free(e->user);
	free(e->alarm);
	free(e->status);
	free(e->ts);
}

int
plan_update(struct plan *p, const char *user, const char *alarm, const char *status,
    const char *ts)
{
	struct event e = { .request = false };

	e.user = strdup(user);
	e.alarm = strdup(alarm);
	e.status = strdup(status);
	e.ts = strdup(ts);
	if (e.user == NULL || e.alarm == NULL || e.status == NULL || e.ts == NULL ||
	    plan_push(p, &e) == -1) {
		event_free(&e);
		harness_seterr("out of memory adding an update for %s to a plan", user);
		return -1;
	}
	return 0;
}

int
plan_request(struct plan *p, const char *user)
{
	struct event e = { .request = true };

	if ((e.user = strdup(user)) == NULL || plan_push(p, &e) == -1) {
		event_free(&e);
		harness_seterr("out of memory adding a request for %s to a plan", user);
		return -1;
	}
	return 0;
}

void
plan_shuffle(struct plan *p, struct rng *r)
{
	for (size_t i = p->n; i > 1; i--) {
		size_t j = rng_below(r, (uint32_t)i);
		struct event t = p->ev[i - 1];

		p->ev[i - 1] = p->ev[j];
		p->ev[j] = t;
	}
}

int
plan_users(struct plan *p, struct rng *rng, const char *prefix, int users, int alarms)
{
	char user[64], alarm[24], ts[48];
	size_t updates;

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "%.40s-%04d", prefix, u);
		for (int a = 0; a < alarms; a++) {
			snprintf(alarm, sizeof(alarm), "alarm-%d", a);
			/* A 6 s window: same-instant ties and stale updates are frequent. */
			for (int k = 0; k < 4; k++) {
				traffic_random_ts(rng, harness_wall_sec() - 3600, 6, ts, sizeof(ts));
				if (plan_update(p, user, alarm, traffic_random_status(rng), ts) == -1)
					return -1;
			}
		}
	}
	updates = p->n;
	for (size_t i = 0; i < updates / 10; i++) {
		const struct event *e = &p->ev[rng_below(rng, (uint32_t)updates)];

		if (plan_update(p, e->user, e->alarm, e->status, e->ts) == -1)
			return -1;
	}
	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "%.40s-%04d", prefix, u);
		for (int k = 0; k < 3; k++)
			if (plan_request(p, user) == -1)
				return -1;
	}
	plan_shuffle(p, rng);
	return 0;
}

void
plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		event_free(&p->ev[i]);
	free(p->ev);
	memset(p, 0, sizeof(*p));
}

int
event_send(const struct event *e, struct bus *b, struct model *m)
{
	if (e->request) {
		if (bus_publish_request(b, e->user) == -1)
			return -1;
		if (model_request(m, e->user, NULL) == -1) {
			harness_seterr("model: out of memory on a request for %s", e->user);
			return -1;
		}
		return 0;
	}
	if (bus_publish_update(b, e->user, e->alarm, e->status, e->ts) == -1)
		return -1;
	switch (model_update(m, e->user, e->alarm, model_status_parse(e->status), e->ts)) {
	case MR_INVALID:
		harness_seterr("model rejects generated update %s/%s %s %s", e->user, e->alarm,
		    e->status, e->ts);
		return -1;
	case MR_NOMEM:
		harness_seterr("model: out of memory on an update for %s", e->user);
		return -1;
	default:
		return 0;
	}
}

int
plan_send(const struct plan *p, struct bus *b, struct model *m)
{
	for (size_t i = 0; i < p->n; i++)
		if (event_send(&p->ev[i], b, m) == -1)
			return -1;
	return 0;
}

/* ---- continuous traffic ---- */

/* One random event; timestamps drift forward with the count, with jitter for stale ones. */
static int
runner_step(struct runner *r, struct rng *rng, size_t n)
{
	char user[64], alarm[32], ts[48];
	struct event e = { 0 };

	snprintf(user, sizeof(user), "%s-%04u", r->prefix, rng_below(rng, (uint32_t)r->users));
	e.user = user;
	if (rng_below(rng, 100) < 15) {
		e.request = true;
		return event_send(&e, r->bus, r->model);
	}
	snprintf(alarm, sizeof(alarm), "alarm-%u", rng_below(rng, (uint32_t)r->alarms));
	traffic_random_ts(rng, r->base_sec + (int64_t)(n / 8), 4, ts, sizeof(ts));
	e.alarm = alarm;
	e.status = (char *)traffic_random_status(rng);
	e.ts = ts;
	return event_send(&e, r->bus, r->model);
}

static void *
runner_main(void *arg)
{
	struct runner *r = arg;
	struct rng rng;
	size_t n = 0;

	rng_seed(&rng, r->seed);
	while (!atomic_load(&r->stop) && n < r->max_events) {
		if (runner_step(r, &rng, n) == -1) {
			snprintf(r->err, sizeof(r->err), "traffic thread, event %zu: %s", n,
			    harness_err());
			r->failed = 1;
			break;
		}
		atomic_store(&r->sent, ++n);
		/* Paces the load on purpose: a steady stream, not one burst. */
		if (r->batch > 0 && n % (size_t)r->batch == 0)
			harness_sleep_ms(r->pause_ms);
	}
	atomic_store(&r->ended, true);
	return NULL;
}

int
runner_start(struct runner *r)
{
	int rc;

	atomic_store(&r->stop, false);
	atomic_store(&r->ended, false);
	atomic_store(&r->sent, 0);
	r->failed = 0;
	r->err[0] = '\0';
	if ((rc = pthread_create(&r->thread, NULL, runner_main, r)) != 0) {
		harness_seterr("pthread_create(traffic): %s", strerror(rc));
		return -1;
	}
	r->started = true;
	return 0;
}

int
runner_stop(struct runner *r)
{
	if (!r->started)
		return 0;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	r->started = false;
	if (r->failed) {
		harness_seterr("%s", r->err);
		return -1;
	}
	return 0;
}

int
runner_wait_sent(struct runner *r, size_t more, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	size_t from = atomic_load(&r->sent), now;

	for (;;) {
		if ((now = atomic_load(&r->sent)) - from >= more)
			return 0;
		if (!r->started || atomic_load(&r->ended) || harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(10);
	}
	harness_seterr("the traffic thread sent %zu of %zu more events, then %s", now - from, more,
	    !r->started || atomic_load(&r->ended) ? "it ended" : "the time ran out");
	return -1;
}

/* ---- checking ---- */

int
traffic_final_round(struct bus *b, struct model *m, const char *tag)
{
	size_t n = model_user_count(m);
	char alarm[64], ts[48];

	traffic_marker(tag, alarm, sizeof(alarm));
	/* Newer than any generated traffic, and well inside the service's max_future allowance. */
	model_ts_print(harness_wall_sec() + 3 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	for (size_t i = 0; i < n; i++) {
		struct event up = { .request = false, .alarm = alarm, .status = "CRITICAL", .ts = ts };
		struct event rq = { .request = true };

		up.user = rq.user = (char *)model_user(m, i);
		if (event_send(&up, b, m) == -1 || event_send(&rq, b, m) == -1)
			return -1;
	}
	return bus_flush(b, 10000);
}

void
traffic_marker(const char *tag, char *buf, size_t cap)
{
	snprintf(buf, cap, "zz-final-%s", tag);
}

/* Does the user's last digest hold the final-round marker alarm? */
static bool
user_finished(struct collector *c, const char *u, size_t have, const char *marker)
{
	char quoted[96];
	const char *last;

	if (marker == NULL || have == 0 || (last = collector_get(c, u, have - 1)) == NULL)
		return false;
	snprintf(quoted, sizeof(quoted), "[\"%s\",", marker);
	return strstr(last, quoted) != NULL;
}

static bool
user_done(struct model *m, struct collector *c, const char *u, bool allow_dup,
    const char *marker)
{
	size_t have = allow_dup ? collector_distinct(c, u) : collector_count(c, u);

	return have >= model_expected_count(m, u) ||
	    user_finished(c, u, collector_count(c, u), marker);
}

int
traffic_wait(struct model *m, struct collector *c, bool allow_dup, int64_t timeout_ms,
    struct harness_proc *producer, const char *marker)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	size_t n = model_user_count(m), lagging = 0, i = 0;
	const char *u;
	char st[64];

	for (;;) {
		/* Resume from the first lagging user: earlier ones are done for good. */
		while (i < n && user_done(m, c, model_user(m, i), allow_dup, marker))
			i++;
		if (i == n)
			return 0;
		if (harness_now_ms() >= deadline)
			break;
		if (producer != NULL && !harness_proc_alive(producer)) {
			harness_seterr("the supervisor exited (%s) while %s still missed digests",
			    harness_status_str(producer->status, st, sizeof(st)), model_user(m, i));
			return -1;
		}
		harness_sleep_ms(20);
	}
	for (size_t j = i; j < n; j++)
		lagging += !user_done(m, c, model_user(m, j), allow_dup, marker);
	u = model_user(m, i);
	harness_seterr("after %lld ms %zu of %zu users still miss digests; first: %s has %zu of %zu",
	    (long long)timeout_ms, lagging, n, u,
	    allow_dup ? collector_distinct(c, u) : collector_count(c, u), model_expected_count(m, u));
	return -1;
}

/* Received digests of u, exact repeats dropped when allow_dup; n returned. */
static size_t
received_list(struct collector *c, const char *u, bool allow_dup, const char **out, size_t max)
{
	size_t n = 0, count = collector_count(c, u);

	for (size_t i = 0; i < count && n < max; i++) {
		const char *d = collector_get(c, u, i);
		bool seen = false;

		for (size_t j = 0; allow_dup && j < n && !seen; j++)
			seen = strcmp(out[j], d) == 0;
		if (!seen)
			out[n++] = d;
	}
	return n;
}

/* Requests whose digests may be lost (traffic_verify_lossy), and how many were. */
struct loss_window {
	int64_t from_ms, to_ms;
	size_t lost;
};

/* First difference for one user, described in why; 0 when equal. */
static int
user_verify(struct model *m, struct collector *c, const char *u, bool allow_dup,
    struct loss_window *w, char *why, size_t cap)
{
	enum { MAXD = 4096 };
	static _Thread_local const char *got[MAXD];
	size_t want = model_expected_count(m, u);
	size_t have = received_list(c, u, allow_dup, got, MAXD);
	size_t i = 0, j = 0;

	while (i < want || j < have) {
		int64_t ms = -1;
		const char *e = i < want ? model_expected_at(m, u, i, &ms) : NULL;
		const char *g = j < have ? got[j] : NULL;

		if (e != NULL && g != NULL && strcmp(e, g) == 0) {
			i++;
			j++;
			continue;
		}
		if (e != NULL && w != NULL && ms >= w->from_ms && ms <= w->to_ms) {
			printf("# lost in the window: user %s digest #%zu of %zu, requested %lld ms "
			    "after the window opened: %s\n", u, i + 1, want, (long long)(ms - w->from_ms), e);
			w->lost++;
			i++;
			continue;
		}
		snprintf(why, cap, "user %s digest #%zu of %zu expected %s, got %s (%zu received)",
		    u, i + 1, want, e ? e : "no digest", g ? g : "nothing", have);
		return -1;
	}
	return 0;
}

int
traffic_verify_user(struct model *m, struct collector *c, const char *user, bool allow_dup)
{
	char why[2048];

	if (user_verify(m, c, user, allow_dup, NULL, why, sizeof(why)) == 0)
		return 0;
	harness_seterr("%s", why);
	return -1;
}

static int
verify_all(struct model *m, struct collector *c, bool allow_dup, struct loss_window *w)
{
	size_t n = model_user_count(m), bad = 0;
	char why[2048], first[2048] = "";

	for (size_t i = 0; i < n; i++) {
		if (user_verify(m, c, model_user(m, i), allow_dup, w, why, sizeof(why)) == 0)
			continue;
		if (bad++ == 0)
			snprintf(first, sizeof(first), "%s", why);
		if (bad <= 5)
			printf("# mismatch: %s\n", why);
	}
	if (bad == 0)
		return 0;
	harness_seterr("%zu of %zu users got digests that differ from the model; first: %s",
	    bad, n, first);
	return -1;
}

int
traffic_verify(struct model *m, struct collector *c, bool allow_dup)
{
	return verify_all(m, c, allow_dup, NULL);
}

int
traffic_verify_lossy(struct model *m, struct collector *c, bool allow_dup, int64_t from_ms,
    int64_t to_ms, size_t *lost)
{
	struct loss_window w = { .from_ms = from_ms, .to_ms = to_ms };
	int rc = verify_all(m, c, allow_dup, &w);

	*lost = w.lost;
	return rc;
}
