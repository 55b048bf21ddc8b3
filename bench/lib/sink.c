#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "../../tests/lib/harness.h"
#include "sink.h"

#define PROBE_PREFIX "bench-probe"

struct dsink {
	natsConnection *nc;
	natsSubscription *sub;
	struct conn_events ev;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct drec *rec;
	size_t n, cap;
	size_t probes;
	bool oom;
};

static void
dsink_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct dsink *d = arg;
	int64_t now = pub_now_ns();
	uint32_t len = (uint32_t)natsMsg_GetDataLength(msg);
	char *copy = malloc(len ? len : 1);

	(void)nc;
	(void)sub;
	/* Readiness probes of the benchmark are not part of any measurement. */
	if (memmem(natsMsg_GetData(msg), len, PROBE_PREFIX, strlen(PROBE_PREFIX)) != NULL) {
		pthread_mutex_lock(&d->lock);
		d->probes++;
		pthread_mutex_unlock(&d->lock);
		free(copy);
		natsMsg_Destroy(msg);
		return;
	}
	if (copy != NULL)
		memcpy(copy, natsMsg_GetData(msg), len);
	pthread_mutex_lock(&d->lock);
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16384;
		struct drec *r = realloc(d->rec, ncap * sizeof(*r));

		if (r != NULL) {
			d->rec = r;
			d->cap = ncap;
		}
	}
	if (copy != NULL && d->n < d->cap) {
		d->rec[d->n++] = (struct drec){ .ns = now, .data = copy, .len = len };
		copy = NULL;
	} else {
		d->oom = true;
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	free(copy);
	natsMsg_Destroy(msg);
}

struct dsink *
dsink_open(const char *url, const char *subject)
{
	struct dsink *d = calloc(1, sizeof(*d));
	pthread_condattr_t ca;
	natsStatus s;

	if (d == NULL) {
		harness_seterr("out of memory opening the digest sink");
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((d->nc = pub_connect(url, "bench-digests", false, &d->ev)) == NULL) {
		dsink_close(d);
		return NULL;
	}
	s = natsConnection_Subscribe(&d->sub, d->nc, subject, dsink_on_msg, d);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(d->sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(d->nc, 5000);
	if (s != NATS_OK) {
		harness_seterr("subscribe to %s: %s", subject, natsStatus_GetText(s));
		dsink_close(d);
		return NULL;
	}
	return d;
}

void
dsink_close(struct dsink *d)
{
	if (d == NULL)
		return;
	if (d->sub != NULL) {
		if (natsSubscription_Drain(d->sub) == NATS_OK)
			(void)natsSubscription_WaitForDrainCompletion(d->sub, 5000);
		natsSubscription_Destroy(d->sub);
	}
	pub_close(d->nc, &d->ev);
	for (size_t i = 0; i < d->n; i++)
		free(d->rec[i].data);
	free(d->rec);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

size_t
dsink_count(struct dsink *d)
{
	size_t n;

	pthread_mutex_lock(&d->lock);
	n = d->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}

size_t
dsink_wait(struct dsink *d, size_t target, int64_t until_ms)
{
	size_t n;

	pthread_mutex_lock(&d->lock);
	while (d->n < target && harness_now_ms() < until_ms) {
		struct timespec ts = { .tv_sec = until_ms / 1000, .tv_nsec = until_ms % 1000 * 1000000 };

		(void)pthread_cond_timedwait(&d->cv, &d->lock, &ts);
	}
	n = d->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}

int64_t
dsink_arrival_ns(struct dsink *d, size_t n)
{
	int64_t ns = 0;

	pthread_mutex_lock(&d->lock);
	if (n >= 1 && n <= d->n)
		ns = d->rec[n - 1].ns;
	pthread_mutex_unlock(&d->lock);
	return ns;
}

int64_t
dsink_dropped(struct dsink *d)
{
	int64_t n = -1;

	if (natsSubscription_GetDropped(d->sub, &n) != NATS_OK)
		return -1;
	return n + (d->oom ? 1 : 0);
}

int
dsink_disconnects(struct dsink *d)
{
	return atomic_load(&d->ev.disconnects);
}

/* ---- verification ---- */

static void
verify_note(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
verify_note(struct verify *v, const char *fmt, ...)
{
	va_list ap;

	if (v->nfirst >= 3)
		return;
	va_start(ap, fmt);
	vsnprintf(v->first[v->nfirst++], sizeof(v->first[0]), fmt, ap);
	va_end(ap);
}

static const char *
member_string(struct json_object *o, const char *key, size_t *len)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

/* Parse a digest strictly into user and canonical string (see model_canon). */
static int
parse_digest(struct json_tokener *tok, const char *data, size_t len, char **user, char **canon,
    const char **why)
{
	struct json_object *o, *arr;
	struct model_entry *e = NULL;
	const char *uid;
	size_t ulen, n, end, slen, tlen;
	int rc = -1;

	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, data, (int)len);
	end = json_tokener_get_parse_end(tok);
	while (end < len && strchr(" \t\r\n", data[end]) != NULL)
		end++;
	*why = "not one JSON object";
	if (o == NULL || end != len || !json_object_is_type(o, json_type_object))
		goto out;
	*why = "not exactly the fields UserID and ActiveAlarms";
	if (json_object_object_length(o) != 2 || (uid = member_string(o, "UserID", &ulen)) == NULL ||
	    !json_object_object_get_ex(o, "ActiveAlarms", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		goto out;
	*why = "empty ActiveAlarms (nothing qualifies: nothing may be published)";
	if ((n = json_object_array_length(arr)) == 0)
		goto out;
	if ((e = calloc(n, sizeof(*e))) == NULL) {
		*why = "out of memory";
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *el = json_object_array_get_idx(arr, i);

		*why = "an ActiveAlarms entry is not exactly {AlarmID, Status, LatestChangedAt} strings";
		if (!json_object_is_type(el, json_type_object) || json_object_object_length(el) != 3 ||
		    (e[i].alarm = member_string(el, "AlarmID", &e[i].alarm_len)) == NULL ||
		    (e[i].status = member_string(el, "Status", &slen)) == NULL ||
		    (e[i].ts = member_string(el, "LatestChangedAt", &tlen)) == NULL)
			goto out;
		*why = "a Status that is not WARNING or CRITICAL";
		if (strcmp(e[i].status, "WARNING") != 0 && strcmp(e[i].status, "CRITICAL") != 0)
			goto out;
	}
	*why = "out of memory";
	if ((*canon = model_canon(e, n)) == NULL)
		goto out;
	if ((*user = strndup(uid, ulen)) == NULL) {
		free(*canon);
		goto out;
	}
	rc = 0;
out:
	free(e);
	json_object_put(o);
	return rc;
}

static int
lat_add(struct verify *v, int phase, int64_t at, int64_t ns)
{
	if (phase < 0 || phase >= SINK_PHASES)
		return 0;
	if (v->nlat[phase] == v->caplat[phase]) {
		size_t ncap = v->caplat[phase] ? v->caplat[phase] * 2 : 4096;
		int64_t *p = realloc(v->lat[phase], ncap * sizeof(*p));

		if (p != NULL)
			v->lat[phase] = p;
		int64_t *q = realloc(v->lat_at[phase], ncap * sizeof(*q));
		if (q != NULL)
			v->lat_at[phase] = q;
		if (p == NULL || q == NULL) {
			harness_seterr("out of memory collecting latencies");
			return -1;
		}
		v->caplat[phase] = ncap;
	}
	v->lat_at[phase][v->nlat[phase]] = at;
	v->lat[phase][v->nlat[phase]++] = ns;
	return 0;
}

int
sink_verify(struct dsink *d, struct load *L, struct model *m, struct verify *v)
{
	struct json_tokener *tok = json_tokener_new();
	size_t n;
	int rc = 0;

	if (tok == NULL) {
		harness_seterr("out of memory for a JSON tokener");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	v->expected = model_expected_total(m);
	for (int i = 0; i < L->users; i++)
		L->u[i].nrecv = 0;
	pthread_mutex_lock(&d->lock);
	n = d->n;
	pthread_mutex_unlock(&d->lock);
	for (size_t i = 0; i < n && rc == 0; i++) {
		/* Records below n are never moved by the callback except on realloc: copy under the lock. */
		struct drec r;
		char *user = NULL, *canon = NULL;
		const char *why, *want;
		struct buser *u;

		pthread_mutex_lock(&d->lock);
		r = d->rec[i];
		pthread_mutex_unlock(&d->lock);
		if (parse_digest(tok, r.data, r.len, &user, &canon, &why) == -1) {
			v->malformed++;
			verify_note(v, "malformed digest (%s): %.*s", why, (int)(r.len > 300 ? 300 : r.len),
			    r.data);
			continue;
		}
		if (strncmp(user, PROBE_PREFIX, strlen(PROBE_PREFIX)) == 0)
			goto next;
		v->digests++;
		if ((u = load_user(L, user, strlen(user))) == NULL) {
			v->unknown_user++;
			verify_note(v, "digest for a user the benchmark never used: %s", user);
			goto next;
		}
		want = model_expected(m, user, u->nrecv);
		if (want == NULL) {
			v->extra++;
			verify_note(v, "user %s: digest #%zu not expected (the model has %zu): %s", user,
			    u->nrecv + 1, model_expected_count(m, user), canon);
		} else if (strcmp(want, canon) != 0) {
			size_t at = 0, from;

			while (want[at] != '\0' && want[at] == canon[at])
				at++;
			from = at > 80 ? at - 80 : 0;
			v->differ++;
			verify_note(v, "user %s: digest #%zu differs from byte %zu of its canonical form "
			    "(%zu vs %zu bytes):\n#     got  ...%.200s\n#     want ...%.200s", user,
			    u->nrecv + 1, at, strlen(canon), strlen(want), canon + from, want + from);
		} else {
			v->matched++;
		}
		if (u->nrecv < u->nreq && lat_add(v, u->req[u->nrecv].phase, u->req[u->nrecv].ns,
		    r.ns - u->req[u->nrecv].ns) == -1)
			rc = -1;
		u->nrecv++;
next:
		free(user);
		free(canon);
	}
	for (int i = 0; i < L->users; i++) {
		size_t want = model_expected_count(m, L->u[i].id);

		if (L->u[i].nrecv < want) {
			if (v->missing == 0)
				verify_note(v, "user %s: %zu of %zu digests received", L->u[i].id,
				    L->u[i].nrecv, want);
			v->missing += want - L->u[i].nrecv;
		}
		if (L->u[i].nrecv != want)
			v->users_bad++;
	}
	json_tokener_free(tok);
	return rc;
}

void
verify_free(struct verify *v)
{
	for (int i = 0; i < SINK_PHASES; i++) {
		free(v->lat[i]);
		free(v->lat_at[i]);
	}
	memset(v, 0, sizeof(*v));
}

bool
verify_ok(const struct verify *v)
{
	return v->missing == 0 && v->extra == 0 && v->differ == 0 && v->malformed == 0 &&
	    v->unknown_user == 0 && v->matched == v->expected;
}

/* ---- counting sink ---- */

static void
csink_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct csink *c = arg;
	size_t n = atomic_fetch_add(&c->count, 1) + 1;
	int64_t now = pub_now_ns();
	const char *reply;

	(void)sub;
	atomic_store(&c->last_ns, now);
	if (c->timed_subject != NULL && strcmp(natsMsg_GetSubject(msg), c->timed_subject) == 0) {
		size_t k = atomic_fetch_add(&c->timed, 1);

		if (k < c->timed_cap)
			c->timed_ns[k] = now;
	}
	if (c->ack_every > 0 && (n % (size_t)c->ack_every == 0 || n >= c->target) &&
	    (reply = natsMsg_GetReply(msg)) != NULL)
		(void)natsConnection_Publish(nc, reply, "+ACK", 4);
	natsMsg_Destroy(msg);
}

int
csink_open(struct csink *c, const char *url, const char *const *subjects, int n,
    int ack_every, size_t target, bool global_delivery, const char *timed_subject,
    size_t timed_cap)
{
	natsStatus s = NATS_OK;

	memset(c, 0, sizeof(*c));
	c->ack_every = ack_every;
	c->target = target;
	if (timed_subject != NULL && timed_cap > 0) {
		if ((c->timed_ns = calloc(timed_cap, sizeof(*c->timed_ns))) == NULL) {
			harness_seterr("out of memory for %zu arrival times", timed_cap);
			return -1;
		}
		c->timed_subject = timed_subject;
		c->timed_cap = timed_cap;
	}
	if ((c->nc = pub_connect(url, "bench-ceiling-sub", global_delivery, &c->ev)) == NULL)
		return -1;
	for (int i = 0; i < n && s == NATS_OK; i++) {
		s = natsConnection_Subscribe(&c->sub[i], c->nc, subjects[i], csink_on_msg, c);
		if (s == NATS_OK) {
			c->nsub++;
			s = natsSubscription_SetPendingLimits(c->sub[i], -1, -1);
		}
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(c->nc, 5000);
	if (s != NATS_OK) {
		harness_seterr("ceiling subscriber: %s", natsStatus_GetText(s));
		csink_close(c);
		return -1;
	}
	return 0;
}

int64_t
csink_dropped(struct csink *c)
{
	int64_t total = 0;

	for (int i = 0; i < c->nsub; i++) {
		int64_t d = 0;

		if (natsSubscription_GetDropped(c->sub[i], &d) == NATS_OK)
			total += d;
	}
	return total;
}

void
csink_close(struct csink *c)
{
	for (int i = 0; i < c->nsub; i++) {
		(void)natsSubscription_Unsubscribe(c->sub[i]);
		natsSubscription_Destroy(c->sub[i]);
		c->sub[i] = NULL;
	}
	c->nsub = 0;
	if (c->nc != NULL)
		pub_close(c->nc, &c->ev);
	c->nc = NULL;
	free(c->timed_ns);
	c->timed_ns = NULL;
}
