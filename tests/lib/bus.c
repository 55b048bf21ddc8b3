#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "../../common/natsconn.h"
#include "bus.h"
#include "harness.h"
#include "itmap.h"
#include "model.h"

struct bus {
	natsConnection *nc;
	jsCtx *js;
	bool jetstream;
	atomic_uint_fast64_t published;
	atomic_uint_fast64_t msg_ids;
};

/* ---- condition variables on the monotonic clock ---- */

static void
cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

/* Wait on cv until deadline_ms (harness_now_ms scale); false once it passed. */
static bool
cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
	struct timespec ts;

	if (harness_now_ms() >= deadline_ms)
		return false;
	ts.tv_sec = deadline_ms / 1000;
	ts.tv_nsec = (deadline_ms % 1000) * 1000000;
	(void)pthread_cond_timedwait(cv, mu, &ts);
	return true;
}

/* ---- connection and publishing ---- */

/*
 * One URL, or a comma-separated list (the nodes of a cluster): cnats'
 * SetURL takes only one, SetServers a list.
 */
static natsStatus
bus_set_urls(natsOptions *opts, const char *url)
{
	char copy[1024], *v[16], *save = NULL;
	int n = 0;

	if (strchr(url, ',') == NULL)
		return natsOptions_SetURL(opts, url);
	if ((size_t)snprintf(copy, sizeof(copy), "%s", url) >= sizeof(copy))
		return NATS_INVALID_ARG;
	for (char *t = strtok_r(copy, ",", &save); t != NULL && n < 16;
	    t = strtok_r(NULL, ",", &save))
		v[n++] = t;
	return natsOptions_SetServers(opts, (const char **)v, n);
}

static struct bus *
bus_connect(const char *url, bool jetstream, const char *ca_file, const char *cert_file,
    const char *key_file, const char *creds_file)
{
	natsOptions *opts = NULL;
	struct bus *b;
	natsStatus s;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		harness_seterr("out of memory opening bus to %s", url);
		return NULL;
	}
	b->jetstream = jetstream;
	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = bus_set_urls(opts, url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 10000);
	if (s == NATS_OK && ca_file != NULL)
		s = natsOptions_LoadCATrustedCertificates(opts, ca_file);
	if (s == NATS_OK && cert_file != NULL)
		s = natsOptions_LoadCertificatesChain(opts, cert_file, key_file);
	if (s == NATS_OK && creds_file != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(opts, creds_file, NULL);
	/* Ride out a nats-server restart: reconnect for up to a minute. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, 600);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 100);
	/* As the service does: cnats now and then leaves out the nonce's signature. */
	if (s == NATS_OK)
		s = natsconn_connect_once(&b->nc, opts);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&b->js, b->nc, NULL);
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		harness_seterr("connect to %s: %s", url, natsStatus_GetText(s));
		bus_close(b);
		return NULL;
	}
	return b;
}

struct bus *
bus_open(const char *url, bool jetstream)
{
	return bus_connect(url, jetstream, NULL, NULL, NULL, NULL);
}

struct bus *
bus_open_tls(const char *url, bool jetstream, const char *ca_file, const char *cert_file,
    const char *key_file)
{
	return bus_connect(url, jetstream, ca_file, cert_file, key_file, NULL);
}

struct bus *
bus_open_creds(const char *url, bool jetstream, const char *creds_file)
{
	return bus_connect(url, jetstream, NULL, NULL, NULL, creds_file);
}

void
bus_close(struct bus *b)
{
	if (b == NULL)
		return;
	jsCtx_Destroy(b->js);
	natsConnection_Destroy(b->nc);
	free(b);
}

natsConnection *
bus_conn(struct bus *b)
{
	return b->nc;
}

jsCtx *
bus_js(struct bus *b)
{
	return b->js;
}

uint64_t
bus_published(struct bus *b)
{
	return atomic_load(&b->published);
}

/*
 * Acked publish.  A retry after a lost ack carries the same Nats-Msg-Id,
 * so the stream drops the copy: a retry can never reorder or duplicate.
 */
static int
publish_js(struct bus *b, const char *subject, const void *data, size_t len)
{
	char msg_id[64];
	jsPubOptions po;
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	snprintf(msg_id, sizeof(msg_id), "itest-%ld-%llu", (long)getpid(),
	    (unsigned long long)atomic_fetch_add(&b->msg_ids, 1));
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	/* A slow ack only costs time: a busy machine must not fail a publish. */
	po.MaxWait = 10000;
	for (int attempt = 0; attempt < 4; attempt++) {
		s = js_Publish(NULL, b->js, subject, data, (int)len, &po, &jerr);
		if (s == NATS_OK)
			return 0;
		/* Paces the retries: a server that just came back gets a moment. */
		harness_sleep_ms(100 * (attempt + 1));
	}
	harness_seterr("js_Publish to %s (%zu bytes) failed 4 times: %s (jetstream error %d)",
	    subject, len, natsStatus_GetText(s), (int)jerr);
	return -1;
}

int
bus_publish(struct bus *b, const char *subject, const void *data, size_t len)
{
	natsStatus s;

	if (b->jetstream) {
		if (publish_js(b, subject, data, len) == -1)
			return -1;
	} else if ((s = natsConnection_Publish(b->nc, subject, data, (int)len)) != NATS_OK) {
		harness_seterr("publish to %s (%zu bytes): %s", subject, len, natsStatus_GetText(s));
		return -1;
	}
	atomic_fetch_add(&b->published, 1);
	return 0;
}

int
bus_flush(struct bus *b, int64_t timeout_ms)
{
	natsStatus s = natsConnection_FlushTimeout(b->nc, timeout_ms);

	if (s != NATS_OK) {
		harness_seterr("flush: %s", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

static int
publish_object(struct bus *b, const char *subject, struct json_object *o)
{
	const char *text;
	int rc;

	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text == NULL) {
		harness_seterr("json-c could not serialise a %s payload", subject);
		json_object_put(o);
		return -1;
	}
	rc = bus_publish(b, subject, text, strlen(text));
	json_object_put(o);
	return rc;
}

static int
add_string(struct json_object *o, const char *key, const char *val)
{
	struct json_object *s = json_object_new_string(val);

	if (s == NULL || json_object_object_add(o, key, s) != 0) {
		json_object_put(s);
		harness_seterr("out of memory building field %s", key);
		return -1;
	}
	return 0;
}

int
bus_publish_update(struct bus *b, const char *user, const char *alarm,
    const char *status, const char *ts)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL || add_string(o, "AlarmID", alarm) == -1 ||
	    add_string(o, "UserID", user) == -1 || add_string(o, "Status", status) == -1 ||
	    add_string(o, "ChangedAt", ts) == -1) {
		json_object_put(o);
		return -1;
	}
	return publish_object(b, "AlarmStatusChanged", o);
}

int
bus_publish_request(struct bus *b, const char *user)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL || add_string(o, "UserID", user) == -1) {
		json_object_put(o);
		return -1;
	}
	return publish_object(b, "SendAlarmDigest", o);
}

/* ---- JetStream inspection ---- */

int
bus_wait_consumer(struct bus *b, const char *stream, const char *consumer,
    int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	natsStatus s = NATS_OK;
	jsErrCode jerr = 0;

	while (harness_now_ms() < deadline) {
		jsConsumerInfo *ci = NULL;

		s = js_GetConsumerInfo(&ci, b->js, stream, consumer, NULL, &jerr);
		if (s == NATS_OK) {
			jsConsumerInfo_Destroy(ci);
			return 0;
		}
		harness_sleep_ms(100);
	}
	harness_seterr("consumer %s on stream %s not there after %lld ms: %s (jetstream error %d)",
	    consumer, stream, (long long)timeout_ms, natsStatus_GetText(s), (int)jerr);
	return -1;
}

int
bus_wait_acked(struct bus *b, const char *stream, const char *consumer, int64_t deadline_ms)
{
	uint64_t msgs = 0, last = 0, floor = 0, pending = 0, unacked = 0;
	char why[1024] = "";
	bool known = false;

	for (;;) {
		jsConsumerInfo *ci = NULL;
		jsErrCode jerr = 0;
		natsStatus s;

		if (bus_stream_state(b, stream, &msgs, &last) == -1) {
			snprintf(why, sizeof(why), "%s", harness_err());
		} else if ((s = js_GetConsumerInfo(&ci, b->js, stream, consumer, NULL, &jerr)) !=
		    NATS_OK) {
			snprintf(why, sizeof(why), "consumer info of %s: %s (jetstream error %d)",
			    consumer, natsStatus_GetText(s), (int)jerr);
		} else {
			known = true;
			floor = ci->AckFloor.Stream;
			pending = ci->NumPending;
			unacked = (uint64_t)ci->NumAckPending;
			jsConsumerInfo_Destroy(ci);
			if (pending == 0 && unacked == 0 && floor >= last)
				return 0;
		}
		if (harness_now_ms() >= deadline_ms)
			break;
		harness_sleep_ms(20);
	}
	if (!known)
		harness_seterr("consumer %s on stream %s: no state before the deadline: %s",
		    consumer, stream, why);
	else
		harness_seterr("stream %s ends at %llu but consumer %s acked up to %llu (%llu "
		    "undelivered, %llu unacked) at the deadline", stream, (unsigned long long)last,
		    consumer, (unsigned long long)floor, (unsigned long long)pending,
		    (unsigned long long)unacked);
	return -1;
}

int
bus_stream_state(struct bus *b, const char *stream, uint64_t *msgs, uint64_t *last_seq)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if ((s = js_GetStreamInfo(&si, b->js, stream, NULL, &jerr)) != NATS_OK) {
		harness_seterr("stream info of %s: %s (jetstream error %d)", stream,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	*msgs = si->State.Msgs;
	*last_seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return 0;
}

int
bus_stream_get(struct bus *b, const char *stream, uint64_t seq, char **data, size_t *len)
{
	natsMsg *msg = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int n;

	if ((s = js_GetMsg(&msg, b->js, stream, seq, NULL, &jerr)) != NATS_OK) {
		harness_seterr("get message %llu of stream %s: %s (jetstream error %d)",
		    (unsigned long long)seq, stream, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	n = natsMsg_GetDataLength(msg);
	*len = (size_t)n;
	*data = NULL;
	if (n > 0) {
		if ((*data = malloc((size_t)n)) == NULL) {
			natsMsg_Destroy(msg);
			harness_seterr("out of memory copying message %llu of %s",
			    (unsigned long long)seq, stream);
			return -1;
		}
		memcpy(*data, natsMsg_GetData(msg), (size_t)n);
	}
	natsMsg_Destroy(msg);
	return 0;
}

static int
subscribe(struct bus *b, natsSubscription **sub, const char *subject, natsMsgHandler cb,
    void *arg)
{
	natsStatus s = natsConnection_Subscribe(sub, b->nc, subject, cb, arg);

	/* A test burst must never be dropped on our side as a slow consumer. */
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(*sub, 10000000, 1024 * 1024 * 1024);
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(b->nc, 10000);
	if (s != NATS_OK) {
		harness_seterr("subscribe to %s: %s", subject, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/*
 * Wait until every message the server queued for `sub` before this call
 * has been through its callback: a PING/PONG round trip first (the server
 * answers after everything it queued for this connection, and the client
 * files those messages before it reads the PONG), then the subscription's
 * queue empty and as many callbacks returned (*handled, counted under mu,
 * cv broadcast) as messages were delivered.  The client dequeues and
 * counts a delivery under one lock, so an empty queue read before the
 * delivered count means that count covers the whole backlog.
 */
static int
sub_sync(struct bus *b, natsSubscription *sub, const char *what, pthread_mutex_t *mu,
    pthread_cond_t *cv, const uint64_t *handled, int64_t deadline_ms)
{
	int64_t delivered = 0, left = deadline_ms - harness_now_ms();
	uint64_t done = 0;
	int pending = -1;

	if (bus_flush(b, left > 1 ? left : 1) == -1)
		return -1;
	for (;;) {
		/* A callback signals cv; the client's queue signals nothing: poll it. */
		int64_t slice = harness_now_ms() + 20;

		if (natsSubscription_GetPending(sub, &pending, NULL) != NATS_OK ||
		    natsSubscription_GetDelivered(sub, &delivered) != NATS_OK) {
			harness_seterr("the %s's subscription is closed", what);
			return -1;
		}
		pthread_mutex_lock(mu);
		if (pending == 0 && *handled < (uint64_t)delivered)
			(void)cond_wait_until(cv, mu, slice < deadline_ms ? slice : deadline_ms);
		done = *handled;
		pthread_mutex_unlock(mu);
		if (pending == 0 && done >= (uint64_t)delivered)
			return 0;
		if (harness_now_ms() >= deadline_ms)
			break;
		if (pending > 0)
			harness_sleep_ms(5);
	}
	harness_seterr("the %s's subscription: %d messages still queued, %llu of %lld handled "
	    "at the deadline", what, pending, (unsigned long long)done, (long long)delivered);
	return -1;
}

/* ---- digests ---- */

struct user_digests {
	char **canon;
	size_t n, cap;
	size_t distinct;
	/* A digest coming in parts: the canon of parts 1..k so far. */
	char *pending;
	size_t pending_k, pending_n;
};

struct collector {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	natsSubscription *sub;
	int64_t max_payload;      /* the server's, read when subscribing */
	struct itmap users;
	size_t total, total_distinct;
	size_t errors;
	char first_error[1024];
	struct collector_parts parts;
	uint64_t handled;      /* callbacks done (collector_sync) */
};

static void
user_digests_free(void *p)
{
	struct user_digests *u = p;

	for (size_t i = 0; i < u->n; i++)
		free(u->canon[i]);
	free(u->canon);
	free(u->pending);
	free(u);
}

/* A required string member; NULL (and err) if absent or not a string. */
static const char *
member_string(struct json_object *o, const char *key, size_t *len, char *err, size_t cap)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, cap, "field %s missing or not a string", key);
		return NULL;
	}
	*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

/* Exactly the keys listed (NULL-terminated), nothing else. */
static bool
keys_exactly(struct json_object *o, const char *const *keys, char *err, size_t cap)
{
	size_t want = 0;

	while (keys[want] != NULL)
		want++;
	json_object_object_foreach(o, key, val) {
		bool known = false;

		(void)val;
		for (size_t i = 0; i < want; i++)
			known = known || strcmp(key, keys[i]) == 0;
		if (!known) {
			snprintf(err, cap, "unexpected field \"%s\"", key);
			return false;
		}
	}
	if ((size_t)json_object_object_length(o) != want) {
		snprintf(err, cap, "expected exactly %zu fields, got %d", want,
		    json_object_object_length(o));
		return false;
	}
	return true;
}

static int
digest_entry(struct json_object *el, struct model_entry *e, char *err, size_t cap)
{
	static const char *const keys[] = { "AlarmID", "Status", "LatestChangedAt", NULL };
	size_t slen, tlen;

	if (!json_object_is_type(el, json_type_object)) {
		snprintf(err, cap, "ActiveAlarms element is not an object");
		return -1;
	}
	if (!keys_exactly(el, keys, err, cap) ||
	    (e->alarm = member_string(el, "AlarmID", &e->alarm_len, err, cap)) == NULL ||
	    (e->status = member_string(el, "Status", &slen, err, cap)) == NULL ||
	    (e->ts = member_string(el, "LatestChangedAt", &tlen, err, cap)) == NULL)
		return -1;
	if (strcmp(e->status, "WARNING") != 0 && strcmp(e->status, "CRITICAL") != 0) {
		snprintf(err, cap, "Status \"%s\" is not WARNING or CRITICAL", e->status);
		return -1;
	}
	return 0;
}

/* Parse a digest strictly; 0 with *user and *canon malloc'd, or -1 with err. */
static int
digest_parse(const char *data, size_t len, char **user, char **canon, char *err, size_t cap)
{
	static const char *const keys[] = { "UserID", "ActiveAlarms", NULL };
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL, *arr;
	struct model_entry *e = NULL;
	const char *uid;
	size_t ulen, n, end;
	int rc = -1;

	if (tok == NULL) {
		snprintf(err, cap, "out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, data, (int)len);
	end = json_tokener_get_parse_end(tok);
	while (end < len && strchr(" \t\r\n", data[end]) != NULL)
		end++;
	if (o == NULL || end != len) {
		snprintf(err, cap, "not one JSON document (%s)",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, cap, "not a JSON object");
		goto out;
	}
	if (!keys_exactly(o, keys, err, cap) ||
	    (uid = member_string(o, "UserID", &ulen, err, cap)) == NULL)
		goto out;
	if (!json_object_object_get_ex(o, "ActiveAlarms", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		snprintf(err, cap, "ActiveAlarms is not an array");
		goto out;
	}
	if ((n = json_object_array_length(arr)) == 0) {
		snprintf(err, cap, "empty ActiveAlarms (SPEC: nothing qualifies, nothing published)");
		goto out;
	}
	if ((e = calloc(n, sizeof(*e))) == NULL) {
		snprintf(err, cap, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (digest_entry(json_object_array_get_idx(arr, i), &e[i], err, cap) == -1)
			goto out;
	if ((*canon = model_canon(e, n)) == NULL || (*user = strndup(uid, ulen)) == NULL) {
		free(*canon);
		snprintf(err, cap, "out of memory");
		goto out;
	}
	rc = 0;
out:
	free(e);
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

static void
collector_error(struct collector *c, const char *what, const char *data, size_t len)
{
	c->errors++;
	if (c->errors == 1)
		snprintf(c->first_error, sizeof(c->first_error), "%s in digest payload %.*s", what,
		    (int)(len > 600 ? 600 : len), data);
}

/* Caller holds the lock.  NULL on ENOMEM. */
static struct user_digests *
collector_user(struct collector *c, const char *user)
{
	struct user_digests *u = itmap_get(&c->users, user, strlen(user));

	if (u != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	if (itmap_put(&c->users, user, strlen(user), u) == -1) {
		free(u);
		return NULL;
	}
	return u;
}

/* Caller holds the lock. */
static int
collector_file(struct collector *c, const char *user, char *canon)
{
	struct user_digests *u = collector_user(c, user);
	bool dup = false;

	if (u == NULL)
		return -1;
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 4;
		char **p = realloc(u->canon, ncap * sizeof(*p));

		if (p == NULL)
			return -1;
		u->canon = p;
		u->cap = ncap;
	}
	for (size_t i = 0; i < u->n && !dup; i++)
		dup = strcmp(u->canon[i], canon) == 0;
	u->canon[u->n++] = canon;
	c->total++;
	if (!dup) {
		u->distinct++;
		c->total_distinct++;
	}
	return 0;
}

/* A header's value, "" when absent. */
static const char *
header_value(natsMsg *msg, const char *key)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(msg, key, &v) != NATS_OK || v == NULL)
		return "";
	return v;
}

/* The headers as NATS encodes and counts them: NATS/1.0\r\n, "K: V\r\n" each, \r\n. */
static size_t
header_bytes(natsMsg *msg)
{
	const char **keys = NULL;
	int nkeys = 0;
	size_t n = 0;

	if (natsMsgHeader_Keys(msg, &keys, &nkeys) != NATS_OK || nkeys == 0) {
		free(keys);
		return 0;
	}
	n = strlen("NATS/1.0\r\n") + 2;
	for (int i = 0; i < nkeys; i++) {
		const char **vals = NULL;
		int nvals = 0;

		if (natsMsgHeader_Values(msg, keys[i], &vals, &nvals) == NATS_OK)
			for (int j = 0; j < nvals; j++)
				n += strlen(keys[i]) + 2 + strlen(vals[j]) + 2;
		free(vals);
	}
	free(keys);
	return n;
}

/* canon "[A]" + "[B]" -> "[A,B]" (model_canon prints plain JSON arrays, never empty here). */
static char *
canon_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb);

	if (s == NULL)
		return NULL;
	memcpy(s, a, la - 1);
	s[la - 1] = ',';
	memcpy(s + la, b + 1, lb - 1);
	s[la + lb - 1] = '\0';
	return s;
}

/*
 * One message of a digest sent in parts ("Digest-Part: k/n"): parts come
 * back to back, 1..n, each with Nats-Msg-Id <id>/k; the joined lists are
 * filed as one digest once part n is in.  *canon is taken.  Caller holds
 * the lock; 0, or -1 with err set (a break of the output contract).
 */
static int
collector_part(struct collector *c, natsMsg *msg, const char *part, const char *user,
    char **canon, char *err, size_t cap)
{
	struct user_digests *u = collector_user(c, user);
	const char *id = header_value(msg, "Nats-Msg-Id"), *slash;
	unsigned long k, n;
	char tail[64], *joined;
	int used = 0;

	if (u == NULL) {
		snprintf(err, cap, "out of memory filing");
		return -1;
	}
	if (sscanf(part, "%lu/%lu%n", &k, &n, &used) != 2 || part[used] != '\0' || k < 1 ||
	    n < 2 || k > n || part[0] == '0' || strchr(part, '/')[1] == '0') {
		snprintf(err, cap, "bad Digest-Part header \"%.40s\" (want k/n, 1 <= k <= n, n >= 2)", part);
		return -1;
	}
	snprintf(tail, sizeof(tail), "/%lu", k);
	if ((slash = strrchr(id, '/')) == NULL || strcmp(slash, tail) != 0) {
		snprintf(err, cap, "part %s carries Nats-Msg-Id \"%.80s\", want <digest id>/%lu", part,
		    id, k);
		return -1;
	}
	if (k == 1 && u->pending != NULL) {
		/* A digest begun again from part 1 (a worker crashed mid-way: at-least-once). */
		c->parts.abandoned++;
		free(u->pending);
		u->pending = NULL;
	}
	if (k != 1 && (u->pending == NULL || k != u->pending_k + 1 || n != u->pending_n)) {
		snprintf(err, cap, "part %s of user %s out of sequence (after %zu/%zu)", part, user,
		    u->pending_k, u->pending_n);
		return -1;
	}
	if (k == 1) {
		u->pending = *canon;
	} else {
		if ((joined = canon_join(u->pending, *canon)) == NULL) {
			snprintf(err, cap, "out of memory filing");
			return -1;
		}
		free(u->pending);
		free(*canon);
		u->pending = joined;
	}
	*canon = NULL;
	u->pending_k = k;
	u->pending_n = n;
	c->parts.parts++;
	if (k < n)
		return 0;
	c->parts.split++;
	if (n > c->parts.max_n)
		c->parts.max_n = n;
	joined = u->pending;
	u->pending = NULL;
	if (collector_file(c, user, joined) == -1) {
		free(joined);
		snprintf(err, cap, "out of memory filing");
		return -1;
	}
	return 0;
}

/* A digest in one message: parts still pending for its user were abandoned (a crash). */
static int
collector_unsplit(struct collector *c, const char *user)
{
	struct user_digests *u = itmap_get(&c->users, user, strlen(user));

	if (u != NULL && u->pending != NULL) {
		c->parts.abandoned++;
		free(u->pending);
		u->pending = NULL;
	}
	return 0;
}

static void
collector_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct collector *c = arg;
	const char *data = natsMsg_GetData(msg);
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	size_t size = len + header_bytes(msg);
	const char *part = header_value(msg, "Digest-Part");
	char *user = NULL, *canon = NULL, err[256];

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&c->lock);
	if (size > c->parts.biggest)
		c->parts.biggest = size;
	if (c->max_payload > 0 && (int64_t)size > c->max_payload) {
		snprintf(err, sizeof(err), "message of %zu bytes with headers, over max_payload %lld",
		    size, (long long)c->max_payload);
		collector_error(c, err, data, len);
	} else if (digest_parse(data, len, &user, &canon, err, sizeof(err)) == -1) {
		collector_error(c, err, data, len);
	} else if (part[0] != '\0') {
		if (collector_part(c, msg, part, user, &canon, err, sizeof(err)) == -1)
			collector_error(c, err, data, len);
		free(canon);
	} else if (collector_unsplit(c, user) == -1 || collector_file(c, user, canon) == -1) {
		collector_error(c, "out of memory filing", data, len);
		free(canon);
	}
	c->handled++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
	free(user);
	natsMsg_Destroy(msg);
}

struct collector *
collector_new(struct bus *b, const char *subject)
{
	struct collector *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		harness_seterr("out of memory creating the digest collector");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	cond_init_monotonic(&c->cv);
	c->max_payload = natsConnection_GetMaxPayload(b->nc);
	if (subscribe(b, &c->sub, subject, collector_on_msg, c) == -1) {
		collector_free(c);
		return NULL;
	}
	return c;
}

void
collector_free(struct collector *c)
{
	if (c == NULL)
		return;
	/* Unsubscribe first so no callback runs on freed memory. */
	if (c->sub != NULL) {
		/* Drain: completes only once no callback is running or pending. */
		if (natsSubscription_Drain(c->sub) == NATS_OK)
			(void)natsSubscription_WaitForDrainCompletion(c->sub, 5000);
		natsSubscription_Destroy(c->sub);
	}
	itmap_free(&c->users, user_digests_free);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static size_t
collector_user_count(struct collector *c, const char *user, bool distinct)
{
	struct user_digests *u;
	size_t n;

	pthread_mutex_lock(&c->lock);
	u = itmap_get(&c->users, user, strlen(user));
	n = u == NULL ? 0 : distinct ? u->distinct : u->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

size_t
collector_count(struct collector *c, const char *user)
{
	return collector_user_count(c, user, false);
}

size_t
collector_distinct(struct collector *c, const char *user)
{
	return collector_user_count(c, user, true);
}

const char *
collector_get(struct collector *c, const char *user, size_t i)
{
	struct user_digests *u;
	const char *s = NULL;

	pthread_mutex_lock(&c->lock);
	u = itmap_get(&c->users, user, strlen(user));
	if (u != NULL && i < u->n)
		s = u->canon[i];
	pthread_mutex_unlock(&c->lock);
	return s;
}

size_t
collector_total(struct collector *c, bool distinct)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = distinct ? c->total_distinct : c->total;
	pthread_mutex_unlock(&c->lock);
	return n;
}

int
collector_wait_user(struct collector *c, const char *user, size_t n, int64_t deadline_ms)
{
	struct user_digests *u;
	size_t have = 0;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		u = itmap_get(&c->users, user, strlen(user));
		have = u != NULL ? u->n : 0;
		if (have >= n || !cond_wait_until(&c->cv, &c->lock, deadline_ms))
			break;
	}
	pthread_mutex_unlock(&c->lock);
	if (have >= n)
		return 0;
	harness_seterr("user %s: %zu of %zu digests arrived before the deadline", user, have, n);
	return -1;
}

int
collector_wait_total(struct collector *c, size_t n, bool distinct, int64_t deadline_ms)
{
	size_t have = 0;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		have = distinct ? c->total_distinct : c->total;
		if (have >= n || !cond_wait_until(&c->cv, &c->lock, deadline_ms))
			break;
	}
	pthread_mutex_unlock(&c->lock);
	if (have >= n)
		return 0;
	harness_seterr("%zu of %zu %sdigests arrived before the deadline", have, n,
	    distinct ? "distinct " : "");
	return -1;
}

int
collector_sync(struct collector *c, struct bus *b, int64_t deadline_ms)
{
	return sub_sync(b, c->sub, "digest collector", &c->lock, &c->cv, &c->handled, deadline_ms);
}

size_t
collector_errors(struct collector *c, char *buf, size_t cap)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->errors;
	snprintf(buf, cap, "%s", c->first_error);
	pthread_mutex_unlock(&c->lock);
	return n;
}

void
collector_get_parts(struct collector *c, struct collector_parts *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->parts;
	pthread_mutex_unlock(&c->lock);
}

int64_t
collector_dropped(struct collector *c)
{
	int64_t dropped = -1;

	if (natsSubscription_GetDropped(c->sub, &dropped) != NATS_OK)
		return -1;
	return dropped;
}

/* ---- raw capture ---- */

struct captured {
	char *data;
	size_t len;
	char *hdr;
};

struct capture {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	natsSubscription *sub;
	char header[64];
	struct captured *msgs;
	size_t n, cap;
	uint64_t handled;      /* callbacks done (capture_sync) */
};

static void
capture_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct capture *c = arg;
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	const char *hdr = NULL;
	struct captured m = { 0 };

	(void)nc;
	(void)sub;
	if (natsMsgHeader_Get(msg, c->header, &hdr) != NATS_OK || hdr == NULL)
		hdr = "";
	m.len = len;
	m.data = malloc(len + 1);
	m.hdr = strdup(hdr);
	pthread_mutex_lock(&c->lock);
	if (m.data != NULL && m.hdr != NULL && c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 32;
		struct captured *p = realloc(c->msgs, ncap * sizeof(*p));

		if (p != NULL) {
			c->msgs = p;
			c->cap = ncap;
		}
	}
	if (m.data != NULL && m.hdr != NULL && c->n < c->cap) {
		memcpy(m.data, natsMsg_GetData(msg), len);
		m.data[len] = '\0';
		c->msgs[c->n++] = m;
		m.data = m.hdr = NULL;
	}
	c->handled++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
	free(m.data);
	free(m.hdr);
	natsMsg_Destroy(msg);
}

struct capture *
capture_new(struct bus *b, const char *subject, const char *header)
{
	struct capture *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		harness_seterr("out of memory creating a capture on %s", subject);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	cond_init_monotonic(&c->cv);
	snprintf(c->header, sizeof(c->header), "%s", header);
	if (subscribe(b, &c->sub, subject, capture_on_msg, c) == -1) {
		capture_free(c);
		return NULL;
	}
	return c;
}

void
capture_free(struct capture *c)
{
	if (c == NULL)
		return;
	if (c->sub != NULL) {
		/* Drain: completes only once no callback is running or pending. */
		if (natsSubscription_Drain(c->sub) == NATS_OK)
			(void)natsSubscription_WaitForDrainCompletion(c->sub, 5000);
		natsSubscription_Destroy(c->sub);
	}
	for (size_t i = 0; i < c->n; i++) {
		free(c->msgs[i].data);
		free(c->msgs[i].hdr);
	}
	free(c->msgs);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

size_t
capture_count(struct capture *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

int
capture_wait(struct capture *c, size_t n, int64_t deadline_ms)
{
	size_t have;

	pthread_mutex_lock(&c->lock);
	while ((have = c->n) < n && cond_wait_until(&c->cv, &c->lock, deadline_ms))
		;
	pthread_mutex_unlock(&c->lock);
	if (have >= n)
		return 0;
	harness_seterr("%zu of %zu messages captured before the deadline", have, n);
	return -1;
}

int
capture_sync(struct capture *c, struct bus *b, int64_t deadline_ms)
{
	return sub_sync(b, c->sub, "capture", &c->lock, &c->cv, &c->handled, deadline_ms);
}

size_t
capture_find(struct capture *c, const void *data, size_t len, char *hdr, size_t cap)
{
	size_t found = 0;

	if (cap > 0)
		hdr[0] = '\0';
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++) {
		if (c->msgs[i].len != len || (len > 0 && memcmp(c->msgs[i].data, data, len) != 0))
			continue;
		if (found++ == 0 && cap > 0)
			snprintf(hdr, cap, "%s", c->msgs[i].hdr);
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

int
capture_get(struct capture *c, size_t i, const char **data, size_t *len, const char **hdr)
{
	int rc = -1;

	pthread_mutex_lock(&c->lock);
	if (i < c->n) {
		*data = c->msgs[i].data;
		*len = c->msgs[i].len;
		*hdr = c->msgs[i].hdr;
		rc = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}
