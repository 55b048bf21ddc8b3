#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <nats/nats.h>

#include "harness.h"
#include "owners.h"
#include "webget.h"

struct inst {
	char name[72];
	int port;
	bool watched;
	int64_t grace_until;
};

struct owners {
	natsConnection *nc;
	jsCtx *js;
	kvStore *kv;
	char bucket[128];
	int parts;                 /* partitions; index parts is the router */
	int64_t period_ms, double_ms, lag_ms;

	pthread_t thread;
	bool started;
	atomic_bool stop;

	pthread_mutex_t mu;        /* everything below */
	struct inst inst[OWNERS_MAX_INST];
	int ninst;
	struct owners_view view;
	struct owners_stats st;
	char phase[64];
	int64_t phase_bound_ms;
	int64_t phase_max_unowned_ms;
	uint64_t phase_moves, moves;
	int last_holder[OWNERS_MAX_PARTS + 1];
	int64_t unowned_since[OWNERS_MAX_PARTS + 1];
	int64_t double_since[OWNERS_MAX_PARTS + 1];
	bool double_told[OWNERS_MAX_PARTS + 1];
	int64_t stale_since[OWNERS_MAX_INST][OWNERS_MAX_PARTS + 1];
	bool stale_told[OWNERS_MAX_INST][OWNERS_MAX_PARTS + 1];
};

struct owners *
owners_new(natsConnection *conn, const char *bucket, int partitions, int64_t period_ms,
    int64_t double_ms, int64_t lag_ms)
{
	struct owners *o;

	if (partitions < 1 || partitions > OWNERS_MAX_PARTS) {
		harness_seterr("owners: %d partitions, want 1 to %d", partitions, OWNERS_MAX_PARTS);
		return NULL;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		harness_seterr("owners: out of memory");
		return NULL;
	}
	o->nc = conn;
	o->parts = partitions;
	o->period_ms = period_ms;
	o->double_ms = double_ms;
	o->lag_ms = lag_ms;
	snprintf(o->bucket, sizeof(o->bucket), "%s", bucket);
	snprintf(o->phase, sizeof(o->phase), "start");
	pthread_mutex_init(&o->mu, NULL);
	for (int p = 0; p <= OWNERS_MAX_PARTS; p++)
		o->last_holder[p] = OWNERS_NONE;
	return o;
}

int
owners_add(struct owners *o, const char *name, int http_port)
{
	int idx;

	pthread_mutex_lock(&o->mu);
	if ((idx = o->ninst) == OWNERS_MAX_INST) {
		pthread_mutex_unlock(&o->mu);
		harness_seterr("owners: more than %d instances", OWNERS_MAX_INST);
		return -1;
	}
	snprintf(o->inst[idx].name, sizeof(o->inst[idx].name), "%s", name);
	o->inst[idx].port = http_port;
	o->inst[idx].watched = false;
	o->ninst++;
	pthread_mutex_unlock(&o->mu);
	return idx;
}

void
owners_watch(struct owners *o, int idx, bool on, int64_t grace_ms)
{
	pthread_mutex_lock(&o->mu);
	o->inst[idx].watched = on;
	o->inst[idx].grace_until = grace_ms > 0 ? harness_now_ms() + grace_ms : 0;
	/* A claim seen before it went away proves nothing about the next one. */
	o->view.claims[idx] = 0;
	for (int p = 0; p <= o->parts; p++)
		o->stale_since[idx][p] = 0;
	pthread_mutex_unlock(&o->mu);
}

const char *
owners_name(struct owners *o, int idx)
{
	return idx >= 0 && idx < o->ninst ? o->inst[idx].name : idx == OWNERS_NONE ? "nobody" :
	    idx == OWNERS_STRANGER ? "a stranger" : "unknown";
}

void
owners_mask_str(uint64_t mask, int parts, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int p = 0; p <= parts && n < cap; p++) {
		if (!(mask & (UINT64_C(1) << p)))
			continue;
		if (p == parts)
			n += (size_t)snprintf(buf + n, cap - n, "%srouter", n ? "," : "");
		else
			n += (size_t)snprintf(buf + n, cap - n, "%sp%d", n ? "," : "", p);
	}
	if (buf[0] == '\0')
		snprintf(buf, cap, "none");
}

/* Caller holds mu: the first problem is kept for the report. */
static void
owners_problem(struct owners *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
owners_problem(struct owners *o, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("# owners: %s\n", line);
	if (o->st.first_problem[0] == '\0')
		snprintf(o->st.first_problem, sizeof(o->st.first_problem), "%s", line);
}

void
owners_phase(struct owners *o, const char *name, int64_t unowned_bound_ms)
{
	int64_t now = harness_now_ms();

	pthread_mutex_lock(&o->mu);
	printf("# owners: phase %s: %llu partition moves, longest unowned window %lld ms\n",
	    o->phase, (unsigned long long)o->phase_moves, (long long)o->phase_max_unowned_ms);
	snprintf(o->phase, sizeof(o->phase), "%s", name);
	o->phase_bound_ms = unowned_bound_ms;
	o->phase_moves = 0;
	o->phase_max_unowned_ms = 0;
	/* A window open at a phase change is measured from now, under the new bound. */
	for (int p = 0; p <= o->parts; p++)
		if (o->unowned_since[p] != 0)
			o->unowned_since[p] = now;
	pthread_mutex_unlock(&o->mu);
}

/* The holder of one key: an instance index, OWNERS_NONE, _STRANGER or _UNKNOWN. */
static int
owners_kv_holder(struct owners *o, const struct inst *inst, int ninst, const char *key,
    uint64_t *epoch)
{
	kvEntry *e = NULL;
	natsStatus s;
	json_object *root, *name;
	const char *who;
	int holder = OWNERS_STRANGER;

	*epoch = 0;
	if ((s = kvStore_Get(&e, o->kv, key)) == NATS_NOT_FOUND)
		return OWNERS_NONE;
	if (s != NATS_OK)
		return OWNERS_UNKNOWN;
	*epoch = kvEntry_Revision(e);
	if ((root = json_tokener_parse(kvEntry_ValueString(e))) == NULL) {
		kvEntry_Destroy(e);
		return OWNERS_STRANGER;
	}
	if (!json_object_object_get_ex(root, "instance", &name) ||
	    (who = json_object_get_string(name)) == NULL || who[0] == '\0') {
		holder = OWNERS_NONE;    /* released: {"instance":"","released":true} */
	} else {
		for (int i = 0; i < ninst; i++)
			if (strcmp(inst[i].name, who) == 0)
				holder = i;
	}
	json_object_put(root);
	kvEntry_Destroy(e);
	return holder;
}

/* What an instance's /metrics claims, as a mask; -1 when it did not answer. */
static int
owners_http_claims(const struct owners *o, int port, uint64_t *mask, bool *has)
{
	struct webget_reply r;
	char series[96];
	double v;

	*mask = 0;
	*has = false;
	if (webget(port, "GET", "/metrics", 1000, &r) == -1)
		return -1;
	if (r.status != 200) {
		webget_free(&r);
		return -1;
	}
	*has = webget_metric(r.body, "alarm_digest_cluster_partitions", &v) == 0;
	for (int p = 0; p < o->parts; p++) {
		snprintf(series, sizeof(series), "alarm_digest_partition_owned{partition=\"%d\"}", p);
		if (webget_metric(r.body, series, &v) == 0 && v == 1)
			*mask |= UINT64_C(1) << p;
	}
	if (webget_metric(r.body, "alarm_digest_router_active", &v) == 0 && v == 1)
		*mask |= UINT64_C(1) << o->parts;
	webget_free(&r);
	return 0;
}

/* Caller holds mu: judge round v, the windows measured from the rounds before. */
static void
owners_judge(struct owners *o, struct owners_view *v, const bool judged[OWNERS_MAX_INST])
{
	int64_t now = v->at_ms;

	for (int p = 0; p <= o->parts; p++) {
		uint64_t bit = UINT64_C(1) << p;
		int h = v->holder[p];
		int first = -1, second = -1;

		for (int i = 0; i < o->ninst; i++) {
			if (!judged[i] || !(v->claims[i] & bit))
				continue;
			if (first == -1)
				first = i;
			else if (second == -1)
				second = i;
			/* A claim against the bucket's holder may lag, but not for long. */
			if (h >= 0 && h != i) {
				if (o->stale_since[i][p] == 0)
					o->stale_since[i][p] = now;
				if (now - o->stale_since[i][p] > o->st.max_stale_ms)
					o->st.max_stale_ms = now - o->stale_since[i][p];
				if (now - o->stale_since[i][p] > o->lag_ms && !o->stale_told[i][p]) {
					o->stale_told[i][p] = true;
					o->st.stale++;
					owners_problem(o, "phase %s: %s claims %s%d for %lld ms while the "
					    "bucket gives it to %s", o->phase, o->inst[i].name,
					    p == o->parts ? "the router" : "partition ", p == o->parts ? 0 : p,
					    (long long)(now - o->stale_since[i][p]), owners_name(o, h));
				}
			} else {
				o->stale_since[i][p] = 0;
				o->stale_told[i][p] = false;
			}
		}
		for (int i = 0; i < o->ninst; i++)
			if (!(v->claims[i] & bit) || !judged[i])
				o->stale_since[i][p] = 0, o->stale_told[i][p] = false;
		/* Each /metrics is a snapshot of its own: a hand-over shows both for a moment. */
		if (second == -1) {
			o->double_since[p] = 0;
			o->double_told[p] = false;
		} else if (o->double_since[p] == 0) {
			o->double_since[p] = now;
			o->st.overlaps++;
		} else if (now - o->double_since[p] > o->double_ms && !o->double_told[p]) {
			o->double_told[p] = true;
			o->st.doubles++;
			owners_problem(o, "phase %s: %s%d claimed by both %s and %s for %lld ms (bucket: "
			    "%s, epoch %llu)", o->phase, p == o->parts ? "router" : "partition ",
			    p == o->parts ? 0 : p, o->inst[first].name, o->inst[second].name,
			    (long long)(now - o->double_since[p]), owners_name(o, h),
			    (unsigned long long)v->epoch[p]);
		}

		if (h == OWNERS_UNKNOWN)
			continue;
		if (h == OWNERS_NONE) {
			if (o->unowned_since[p] == 0)
				o->unowned_since[p] = now;
		} else if (o->unowned_since[p] != 0) {
			int64_t w = now - o->unowned_since[p];

			o->unowned_since[p] = 0;
			if (w > o->phase_max_unowned_ms)
				o->phase_max_unowned_ms = w;
			if (o->phase_bound_ms > 0 && w > o->phase_bound_ms) {
				o->st.long_unowned++;
				owners_problem(o, "phase %s: %s%d had no holder for %lld ms (bound %lld)",
				    o->phase, p == o->parts ? "router" : "partition ", p == o->parts ? 0 : p,
				    (long long)w, (long long)o->phase_bound_ms);
			}
		}
		if (h >= 0) {
			if (o->last_holder[p] >= 0 && o->last_holder[p] != h)
				o->moves++, o->phase_moves++;
			o->last_holder[p] = h;
		}
	}
}

static void
owners_round(struct owners *o)
{
	struct inst inst[OWNERS_MAX_INST];
	struct owners_view v;
	bool judged[OWNERS_MAX_INST] = { false };
	char key[32];
	int ninst;
	int64_t t0;

	pthread_mutex_lock(&o->mu);
	ninst = o->ninst;
	memcpy(inst, o->inst, sizeof(inst));
	v = o->view;
	pthread_mutex_unlock(&o->mu);

	t0 = harness_now_ms();
	for (int p = 0; p <= o->parts; p++) {
		if (p == o->parts)
			snprintf(key, sizeof(key), "router");
		else
			snprintf(key, sizeof(key), "part.%d", p);
		v.holder[p] = owners_kv_holder(o, inst, ninst, key, &v.epoch[p]);
	}
	for (int i = 0; i < ninst; i++) {
		v.answered[i] = false;
		v.claims[i] = 0;
		if (!inst[i].watched)
			continue;
		if (owners_http_claims(o, inst[i].port, &v.claims[i], &v.has_metrics[i]) == 0)
			v.answered[i] = true;
	}
	v.at_ms = harness_now_ms();

	pthread_mutex_lock(&o->mu);
	for (int p = 0; p <= o->parts; p++)
		o->st.kv_errors += v.holder[p] == OWNERS_UNKNOWN;
	for (int i = 0; i < ninst; i++) {
		/* owners_watch may have changed it while we asked. */
		if (!o->inst[i].watched) {
			v.answered[i] = false;
			v.claims[i] = 0;
			continue;
		}
		o->st.http_errors += !v.answered[i];
		judged[i] = v.answered[i] && o->inst[i].grace_until <= t0;
	}
	v.rounds = ++o->st.rounds;
	owners_judge(o, &v, judged);
	o->view = v;
	pthread_mutex_unlock(&o->mu);
}

static void *
owners_main(void *arg)
{
	struct owners *o = arg;

	while (!atomic_load(&o->stop)) {
		int64_t t0 = harness_now_ms(), left;

		owners_round(o);
		if ((left = o->period_ms - (harness_now_ms() - t0)) > 0)
			harness_sleep_ms(left);
	}
	return NULL;
}

int
owners_start(struct owners *o, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	jsOptions jo;
	natsStatus s;
	int rc;

	if (o->started)
		return 0;
	jsOptions_Init(&jo);
	/* A round must not hang on a node that went away. */
	jo.Wait = 500;
	if (o->js == NULL && (s = natsConnection_JetStream(&o->js, o->nc, &jo)) != NATS_OK) {
		harness_seterr("owners: JetStream context: %s", natsStatus_GetText(s));
		return -1;
	}
	while ((s = js_KeyValue(&o->kv, o->js, o->bucket)) != NATS_OK) {
		if (harness_now_ms() >= deadline) {
			harness_seterr("owners: the lease bucket %s did not appear within %lld ms (%s)",
			    o->bucket, (long long)timeout_ms, natsStatus_GetText(s));
			return -1;
		}
		harness_sleep_ms(200);
	}
	atomic_store(&o->stop, false);
	if ((rc = pthread_create(&o->thread, NULL, owners_main, o)) != 0) {
		harness_seterr("owners: pthread_create: %s", strerror(rc));
		return -1;
	}
	o->started = true;
	return 0;
}

void
owners_stop(struct owners *o)
{
	if (o == NULL || !o->started)
		return;
	atomic_store(&o->stop, true);
	pthread_join(o->thread, NULL);
	o->started = false;
	/* Windows still open count too. */
	pthread_mutex_lock(&o->mu);
	for (int p = 0; p <= o->parts; p++) {
		int64_t w;

		if (o->unowned_since[p] == 0)
			continue;
		w = harness_now_ms() - o->unowned_since[p];
		if (o->phase_bound_ms > 0 && w > o->phase_bound_ms) {
			o->st.long_unowned++;
			owners_problem(o, "phase %s: %s%d still had no holder after %lld ms (bound %lld)",
			    o->phase, p == o->parts ? "router" : "partition ", p == o->parts ? 0 : p,
			    (long long)w, (long long)o->phase_bound_ms);
		}
	}
	pthread_mutex_unlock(&o->mu);
}

void
owners_free(struct owners *o)
{
	if (o == NULL)
		return;
	owners_stop(o);
	if (o->kv != NULL)
		kvStore_Destroy(o->kv);
	if (o->js != NULL)
		jsCtx_Destroy(o->js);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

void
owners_view(struct owners *o, struct owners_view *v)
{
	pthread_mutex_lock(&o->mu);
	*v = o->view;
	pthread_mutex_unlock(&o->mu);
}

int
owners_next(struct owners *o, struct owners_view *v, int64_t timeout_ms)
{
	int64_t from = harness_now_ms(), deadline = from + timeout_ms;

	pthread_mutex_lock(&o->mu);
	while (o->view.at_ms <= from && harness_now_ms() < deadline) {
		pthread_mutex_unlock(&o->mu);
		harness_sleep_ms(10);
		pthread_mutex_lock(&o->mu);
	}
	*v = o->view;
	pthread_mutex_unlock(&o->mu);
	if (v->at_ms <= from) {
		harness_seterr("owners: no sample within %lld ms", (long long)timeout_ms);
		return -1;
	}
	return 0;
}

void
owners_stats(struct owners *o, struct owners_stats *st)
{
	pthread_mutex_lock(&o->mu);
	*st = o->st;
	pthread_mutex_unlock(&o->mu);
}

uint64_t
owners_moves(struct owners *o)
{
	uint64_t n;

	pthread_mutex_lock(&o->mu);
	n = o->moves;
	pthread_mutex_unlock(&o->mu);
	return n;
}
