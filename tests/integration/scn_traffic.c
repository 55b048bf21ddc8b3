/*
 * Scenarios about message handling at volume: many users against the
 * model, every kind of malformed input, and core (non-JetStream) intake.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"

/* ---- many_users ---- */

/* users x 5 alarms x 4 updates, 10% repeated, 3 requests each, all shuffled. */
static int
many_users_plan(struct plan *p, struct rng *rng, int users)
{
	char user[64], alarm[16], ts[48];
	size_t updates;

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "mu-%04d", u);
		for (int a = 0; a < 5; a++) {
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
		snprintf(user, sizeof(user), "mu-%04d", u);
		for (int k = 0; k < 3; k++)
			if (plan_request(p, user) == -1)
				return -1;
	}
	plan_shuffle(p, rng);
	return 0;
}

void
scn_many_users(void)
{
	struct env_config cfg = { .workers = 4 };
	struct model *m = model_new();
	struct plan p = { 0 };
	struct env e = { 0 };
	struct rng rng;
	int64_t t0;

	rng_seed(&rng, itest_opts.seed ^ 0x3a9);
	if (m == NULL || many_users_plan(&p, &rng, itest_scaled(200)) == -1 ||
	    env_up(&e, "many_users", &cfg) == -1) {
		tap_fail("many_users", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	t0 = harness_now_ms();
	if (plan_send(&p, e.bus, m) == -1) {
		tap_fail("many_users", "publishing: %s", harness_err());
		goto out;
	}
	printf("# many_users: published %zu messages in %lld ms, %zu digests expected so far\n",
	    p.n, (long long)(harness_now_ms() - t0), model_expected_total(m));
	tap_report("many_users/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	tap_report("many_users/digest_json_shape", env_check_collector(&e));
out:
	plan_free(&p);
	env_down(&e);
	model_free(m);
}

/* ---- malformed ---- */

struct mcase {
	char name[200];
	const char *subject;
	char *data;
	size_t len;
	const char *reasons[3];      /* allowed reject reasons; none: a valid message */
	char user[300];              /* whose valid traffic surrounds it */
	char alarm[300], status[16], ts[48];   /* a valid update's fields, for the model */
};

struct mlist {
	struct mcase *c;
	size_t n, cap;
	int64_t base;
};

/* printf into a malloc'd string. */
static char *
mk(size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (len != NULL)
		*len = (size_t)n;
	return s;
}

static char *
repeat(const char *unit, size_t times)
{
	size_t ul = strlen(unit);
	char *s = malloc(ul * times + 1);

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < times; i++)
		memcpy(s + i * ul, unit, ul);
	s[ul * times] = '\0';
	return s;
}

static struct mcase *
mlist_next(struct mlist *l, const char *name)
{
	struct mcase *c;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct mcase *p = realloc(l->c, ncap * sizeof(*p));

		if (p == NULL)
			return NULL;
		l->c = p;
		l->cap = ncap;
	}
	c = &l->c[l->n];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->user, sizeof(c->user), "mal-%03zu", l->n);
	return c;
}

static void
mlist_free(struct mlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->c[i].data);
	free(l->c);
	memset(l, 0, sizeof(*l));
}

/*
 * A rejected payload.  fmt may use %1$s for the case's user (so a wrongly
 * accepted message would show up in that user's digest) and %2$s for a
 * valid timestamp.
 */
static int
add_bad(struct mlist *l, const char *name, const char *subject, const char *r1,
    const char *r2, const char *fmt)
{
	struct mcase *c = mlist_next(l, name);
	char ts[48];

	if (c == NULL)
		return -1;
	model_ts_print(l->base + (int64_t)l->n, 0, 0, 0, false, ts, sizeof(ts));
	if ((c->data = mk(&c->len, fmt, c->user, ts)) == NULL)
		return -1;
	c->subject = subject;
	c->reasons[0] = r1;
	c->reasons[1] = r2;
	l->n++;
	return 0;
}

/* A rejected payload given as bytes (empty, huge). */
static int
add_bad_raw(struct mlist *l, const char *name, const char *subject, const char *r1,
    const char *r2, char *data, size_t len)
{
	struct mcase *c = mlist_next(l, name);

	if (c == NULL || data == NULL) {
		free(data);
		return -1;
	}
	c->subject = subject;
	c->data = data;
	c->len = len;
	c->reasons[0] = r1;
	c->reasons[1] = r2;
	l->n++;
	return 0;
}

/* Members (no braces) plus a "Pad" member making exactly `total` bytes; NULL if too small. */
static char *
padded(const char *members, size_t total, size_t *len)
{
	size_t head = strlen(members) + strlen("{,\"Pad\":\"\"}");
	char *s;

	if (total < head || (s = malloc(total + 1)) == NULL)
		return NULL;
	snprintf(s, total + 1, "{%s,\"Pad\":\"", members);
	memset(s + strlen(s), 'p', total - head);
	memcpy(s + total - 2, "\"}", 3);
	*len = total;
	return s;
}

/*
 * A valid update at a limit (user NULL keeps the case's own user), padded
 * to exactly `total` bytes when total > 0.
 */
static int
add_good(struct mlist *l, const char *name, const char *user, const char *alarm,
    const char *ts, size_t total)
{
	struct mcase *c = mlist_next(l, name);
	char *members;

	if (c == NULL)
		return -1;
	if (user != NULL)
		snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->alarm, sizeof(c->alarm), "%s", alarm);
	snprintf(c->status, sizeof(c->status), "CRITICAL");
	snprintf(c->ts, sizeof(c->ts), "%s", ts);
	c->subject = "AlarmStatusChanged";
	members = mk(NULL, "\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%s\"", alarm, c->user, ts);
	if (members == NULL)
		return -1;
	if (total > 0)
		c->data = padded(members, total, &c->len);
	else
		c->data = mk(&c->len, "{%s}", members);
	free(members);
	if (c->data == NULL)
		return -1;
	l->n++;
	return 0;
}

#define UPD "AlarmStatusChanged"
#define REQ "SendAlarmDigest"
/* Members of a valid update of the case's user, to break one at a time. */
#define A_BAD "\"AlarmID\":\"bad\""
#define U_CASE "\"UserID\":\"%1$s\""
#define S_WARN "\"Status\":\"WARNING\""
#define T_OK "\"ChangedAt\":\"%2$s\""
#define VALID "{" A_BAD "," U_CASE "," S_WARN "," T_OK "}"

static int
build_shape_cases(struct mlist *l)
{
	static const struct { const char *name, *subject, *r1, *r2, *fmt; } t[] = {
		{ "not_object/array", UPD, "not_object", NULL, "[]" },
		{ "not_object/array_of_object", UPD, "not_object", NULL, "[" VALID "]" },
		{ "not_object/string", UPD, "not_object", NULL, "\"just a string\"" },
		{ "not_object/number", UPD, "not_object", NULL, "42" },
		{ "not_object/null", UPD, "not_object", NULL, "null" },
		{ "not_object/true", UPD, "not_object", NULL, "true" },
		{ "not_object/request_array", REQ, "not_object", NULL, "[\"%1$s\"]" },
		{ "bad_json/truncated", UPD, "bad_json", NULL, "{" A_BAD "," U_CASE },
		{ "bad_json/trailing_garbage", UPD, "bad_json", NULL, VALID "x" },
		{ "bad_json/two_objects", UPD, "bad_json", NULL, VALID "{}" },
		{ "bad_json/trailing_bracket", UPD, "bad_json", NULL, VALID " ]" },
		{ "bad_json/single_quotes", UPD, "bad_json", NULL,
		  "{'AlarmID':'bad','UserID':'%1$s','Status':'WARNING','ChangedAt':'%2$s'}" },
		{ "bad_json/trailing_comma", UPD, "bad_json", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",}" },
		{ "bad_json/missing_comma", UPD, "bad_json", NULL,
		  "{" A_BAD " " U_CASE "," S_WARN "," T_OK "}" },
		{ "bad_json/whitespace_only", UPD, "bad_json", NULL, " \n\t " },
		{ "bad_json/request_truncated", REQ, "bad_json", NULL, "{" U_CASE },
		{ "bad_utf8/byte_ff", UPD, "bad_utf8", NULL,
		  "{\"AlarmID\":\"bad\xff\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "bad_utf8/overlong_slash", UPD, "bad_utf8", NULL,
		  "{\"AlarmID\":\"bad\xc0\xaf\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "bad_utf8/surrogate", UPD, "bad_utf8", NULL,
		  "{\"AlarmID\":\"bad\xed\xa0\x80\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "bad_utf8/truncated_sequence", UPD, "bad_utf8", NULL,
		  "{\"AlarmID\":\"bad\xe2\x82\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "bad_utf8/in_unknown_field", UPD, "bad_utf8", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"X\":\"\xf8\x88\x80\x80\x80\"}" },
		{ "bad_utf8/request", REQ, "bad_utf8", NULL, "{\"UserID\":\"%1$s\xfe\"}" },
		{ "missing_field/AlarmID", UPD, "missing_field", NULL,
		  "{" U_CASE "," S_WARN "," T_OK "}" },
		{ "missing_field/UserID", UPD, "missing_field", NULL,
		  "{" A_BAD "," S_WARN "," T_OK ",\"U\":\"%1$s\"}" },
		{ "missing_field/Status", UPD, "missing_field", NULL,
		  "{" A_BAD "," U_CASE "," T_OK "}" },
		{ "missing_field/ChangedAt", UPD, "missing_field", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN "}" },
		{ "missing_field/lookalike_userid", UPD, "missing_field", NULL,
		  "{" A_BAD ",\"userid\":\"%1$s\"," S_WARN "," T_OK "}" },
		{ "missing_field/lookalike_changedAt", UPD, "missing_field", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN ",\"changedAt\":\"%2$s\"}" },
		{ "missing_field/request_empty_object", REQ, "missing_field", NULL, "{}" },
		{ "missing_field/request_lookalike", REQ, "missing_field", NULL, "{\"userID\":\"%1$s\"}" },
		{ "wrong_type/AlarmID_number", UPD, "wrong_type", NULL,
		  "{\"AlarmID\":42," U_CASE "," S_WARN "," T_OK "}" },
		{ "wrong_type/AlarmID_array", UPD, "wrong_type", NULL,
		  "{\"AlarmID\":[\"bad\"]," U_CASE "," S_WARN "," T_OK "}" },
		{ "wrong_type/UserID_null", UPD, "wrong_type", NULL,
		  "{" A_BAD ",\"UserID\":null," S_WARN "," T_OK ",\"U\":\"%1$s\"}" },
		{ "wrong_type/Status_bool", UPD, "wrong_type", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":true," T_OK "}" },
		{ "wrong_type/ChangedAt_number", UPD, "wrong_type", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":1629214439}" },
		{ "wrong_type/ChangedAt_object", UPD, "wrong_type", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":{\"t\":\"%2$s\"}}" },
		{ "wrong_type/request_number", REQ, "wrong_type", NULL, "{\"UserID\":42,\"U\":\"%1$s\"}" },
		{ "empty_field/AlarmID", UPD, "empty_field", NULL,
		  "{\"AlarmID\":\"\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "empty_field/UserID", UPD, "empty_field", NULL,
		  "{" A_BAD ",\"UserID\":\"\"," S_WARN "," T_OK ",\"U\":\"%1$s\"}" },
		{ "empty_field/Status", UPD, "empty_field", "bad_status",
		  "{" A_BAD "," U_CASE ",\"Status\":\"\"," T_OK "}" },
		{ "empty_field/ChangedAt", UPD, "empty_field", "bad_timestamp",
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":\"\"}" },
		{ "empty_field/request", REQ, "empty_field", NULL, "{\"UserID\":\"\",\"U\":\"%1$s\"}" },
		{ "bad_status/lower_case", UPD, "bad_status", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":\"warning\"," T_OK "}" },
		{ "bad_status/mixed_case", UPD, "bad_status", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":\"Critical\"," T_OK "}" },
		{ "bad_status/unknown", UPD, "bad_status", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":\"ACTIVE\"," T_OK "}" },
		{ "bad_status/trailing_space", UPD, "bad_status", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":\"CLEARED \"," T_OK "}" },
		{ "bad_status/leading_space", UPD, "bad_status", NULL,
		  "{" A_BAD "," U_CASE ",\"Status\":\" WARNING\"," T_OK "}" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (add_bad(l, t[i].name, t[i].subject, t[i].r1, t[i].r2, t[i].fmt) == -1)
			return -1;
	/* Empty is "not a single JSON object"; a size check may also claim it. */
	if (add_bad_raw(l, "empty_payload/update", UPD, "bad_json", "oversized", strdup(""), 0) == -1 ||
	    add_bad_raw(l, "empty_payload/request", REQ, "bad_json", "oversized", strdup(""), 0) == -1)
		return -1;
	return 0;
}

static int
build_timestamp_cases(struct mlist *l)
{
	char name[160], fmt[256];

	for (int i = 0; itest_bad_timestamps[i] != NULL; i++) {
		snprintf(name, sizeof(name), "bad_timestamp/%s", itest_bad_timestamps[i]);
		snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"bad\",\"UserID\":\"%%1$s\","
		    "\"Status\":\"WARNING\",\"ChangedAt\":\"%s\"}", itest_bad_timestamps[i]);
		if (add_bad(l, name, UPD, "bad_timestamp", NULL, fmt) == -1)
			return -1;
	}
	for (int i = 0; itest_good_timestamps[i][0] != NULL; i++) {
		const char *ts = itest_good_timestamps[i][0];
		struct model_ts t;

		/* The grammar takes it, but beyond max_future (24h) from now it is still malformed. */
		if (model_ts_parse(ts, strlen(ts), &t) == 0 && t.sec > harness_wall_sec() + 86400) {
			snprintf(name, sizeof(name), "future_timestamp/%s", ts);
			snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"bad\",\"UserID\":\"%%1$s\","
			    "\"Status\":\"WARNING\",\"ChangedAt\":\"%s\"}", ts);
			if (add_bad(l, name, UPD, "future_timestamp", NULL, fmt) == -1)
				return -1;
			continue;
		}
		snprintf(name, sizeof(name), "valid_timestamp/%s", ts);
		if (add_good(l, name, NULL, "edge", ts, 0) == -1)
			return -1;
	}
	return 0;
}

/*
 * A valid update given as JSON text (fmt as for add_bad): `alarm` is its
 * AlarmID as the digest must carry it, decoded, for the model.
 */
static int
add_good_json(struct mlist *l, const char *name, const char *alarm, const char *ts,
    const char *fmt)
{
	struct mcase *c = mlist_next(l, name);

	if (c == NULL)
		return -1;
	snprintf(c->alarm, sizeof(c->alarm), "%s", alarm);
	snprintf(c->status, sizeof(c->status), "CRITICAL");
	snprintf(c->ts, sizeof(c->ts), "%s", ts);
	c->subject = UPD;
	if ((c->data = mk(&c->len, fmt, c->user, ts)) == NULL)
		return -1;
	l->n++;
	return 0;
}

/*
 * What json-c would quietly take: an escaped lone surrogate (it writes
 * U+FFFD, so two different IDs become one), a field given twice (it keeps
 * the last), and a ChangedAt so far ahead that no later update could ever
 * replace it.  Each bad case names the case's user, so one wrongly
 * accepted shows in that user's digest.
 */
static int
build_ambiguous_cases(struct mlist *l)
{
	static const struct { const char *name, *subject, *r1, *fmt; } t[] = {
		{ "lone_surrogate/high_in_alarm_id", UPD, "lone_surrogate",
		  "{\"AlarmID\":\"bad\\ud800\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "lone_surrogate/low_in_alarm_id", UPD, "lone_surrogate",
		  "{\"AlarmID\":\"bad\\udc00\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "lone_surrogate/upper_case_hex", UPD, "lone_surrogate",
		  "{\"AlarmID\":\"bad\\uDBFF\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "lone_surrogate/reversed_pair", UPD, "lone_surrogate",
		  "{\"AlarmID\":\"bad\\udc00\\ud800\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "lone_surrogate/high_then_text", UPD, "lone_surrogate",
		  "{\"AlarmID\":\"bad\\ud83dx\"," U_CASE "," S_WARN "," T_OK "}" },
		{ "lone_surrogate/in_unknown_field", UPD, "lone_surrogate",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"note\":\"\\udfff\"}" },
		{ "lone_surrogate/in_unknown_key", UPD, "lone_surrogate",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"\\ud800\":1}" },
		{ "lone_surrogate/nested", UPD, "lone_surrogate",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"x\":[{\"y\":\"\\udbff\"}]}" },
		{ "lone_surrogate/request", REQ, "lone_surrogate",
		  "{\"UserID\":\"%1$s\",\"x\":\"\\ud800\"}" },
		{ "duplicate_field/AlarmID", UPD, "duplicate_field",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"AlarmID\":\"bad2\"}" },
		{ "duplicate_field/UserID_same_value", UPD, "duplicate_field",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK "," U_CASE "}" },
		{ "duplicate_field/Status", UPD, "duplicate_field",
		  "{" A_BAD "," U_CASE "," S_WARN ",\"Status\":\"CRITICAL\"," T_OK "}" },
		{ "duplicate_field/ChangedAt", UPD, "duplicate_field",
		  "{" T_OK "," A_BAD "," U_CASE "," S_WARN "," T_OK "}" },
		{ "duplicate_field/escaped_name", UPD, "duplicate_field",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"User\\u0049D\":\"%1$s\"}" },
		{ "duplicate_field/second_is_null", UPD, "duplicate_field",
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"Status\":null}" },
		{ "duplicate_field/request", REQ, "duplicate_field",
		  "{\"UserID\":\"%1$s\",\"UserID\":\"%1$s\"}" },
		{ "future_timestamp/year_9999", UPD, "future_timestamp",
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":\"9999-12-31T23:59:59Z\"}" },
		{ "future_timestamp/last_instant", UPD, "future_timestamp",
		  "{" A_BAD "," U_CASE "," S_WARN ","
		  "\"ChangedAt\":\"9999-12-31T23:59:59.999999999-23:59\"}" },
	};
	/* Members of an update of the case's user, up to ChangedAt's value (a format for add_bad). */
	static const char future_head[] = "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":\"";
	int64_t now = harness_wall_sec();
	char ts[48], fmt[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (add_bad(l, t[i].name, t[i].subject, t[i].r1, NULL, t[i].fmt) == -1)
			return -1;
	/* The allowance (max_future, 24h by default) with an hour's margin either side. */
	model_ts_print(now + 25 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	snprintf(fmt, sizeof(fmt), "%s%s\"}", future_head, ts);
	if (add_bad(l, "future_timestamp/25h_ahead", UPD, "future_timestamp", NULL, fmt) == -1)
		return -1;
	model_ts_print(now + 25 * 3600, 0, -300, 3, false, ts, sizeof(ts));
	snprintf(fmt, sizeof(fmt), "%s%s\"}", future_head, ts);
	if (add_bad(l, "future_timestamp/25h_ahead_offset", UPD, "future_timestamp", NULL,
	    fmt) == -1)
		return -1;
	model_ts_print(now + 23 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	if (add_good(l, "valid_future/23h_ahead", NULL, "soon", ts, 0) == -1)
		return -1;
	/* A surrogate pair is one character, however its hex is written. */
	model_ts_print(l->base, 0, 0, 0, false, ts, sizeof(ts));
	if (add_good_json(l, "valid_escape/surrogate_pair", "pair-\xf0\x9f\x98\x80", ts,
	    "{\"AlarmID\":\"pair-\\uD83D\\ude00\",\"UserID\":\"%1$s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%2$s\"}") == -1)
		return -1;
	/* Nothing reads an unknown field, so twice is not ambiguous. */
	if (add_good_json(l, "valid_duplicate/unknown_field", "dupx", ts,
	    "{\"AlarmID\":\"dupx\",\"x\":1,\"UserID\":\"%1$s\",\"x\":\"2\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%2$s\"}") == -1)
		return -1;
	return 0;
}

/* IDs and payloads just at and just over the limits (256-byte IDs, 65536-byte payloads). */
static int
build_limit_cases(struct mlist *l)
{
	char *x256 = repeat("x", 256), *x257 = repeat("x", 257);
	char *e128 = repeat("\xc3\xa9", 128), *e129 = repeat("\xc3\xa9", 129);
	char ts[48], fmt[1024], members[256], *data;
	size_t len = 0;
	int rc = -1;

	model_ts_print(l->base, 0, 0, 0, false, ts, sizeof(ts));
	if (x256 == NULL || x257 == NULL || e128 == NULL || e129 == NULL)
		goto out;
	if (add_good(l, "valid_limit/alarm_id_256_bytes", NULL, x256, ts, 0) == -1 ||
	    add_good(l, "valid_limit/alarm_id_256_bytes_utf8", NULL, e128, ts, 0) == -1 ||
	    add_good(l, "valid_limit/user_id_256_bytes", x256, "edge", ts, 0) == -1 ||
	    add_good(l, "valid_limit/payload_65536_bytes", NULL, "edge", ts, 65536) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"%s\",\"UserID\":\"%%1$s\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"%%2$s\"}", x257);
	if (add_bad(l, "id_too_long/alarm_id_257_bytes", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"%s\",\"UserID\":\"%%1$s\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"%%2$s\"}", e129);
	if (add_bad(l, "id_too_long/alarm_id_258_bytes_utf8", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"U\":\"%%1$s\",\"AlarmID\":\"bad\",\"UserID\":\"%s\","
	    "\"Status\":\"WARNING\",\"ChangedAt\":\"%%2$s\"}", x257);
	if (add_bad(l, "id_too_long/user_id_257_bytes", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"U\":\"%%1$s\",\"UserID\":\"%s\"}", x257);
	if (add_bad(l, "id_too_long/request_user_id_257_bytes", REQ, "id_too_long", NULL, fmt) == -1)
		goto out;
	/* One byte over the limit; otherwise a valid update of the case's user. */
	snprintf(members, sizeof(members), "\"AlarmID\":\"bad\",\"UserID\":\"mal-%03zu\","
	    "\"Status\":\"WARNING\",\"ChangedAt\":\"%s\"", l->n, ts);
	data = padded(members, 65537, &len);
	if (add_bad_raw(l, "oversized/update_65537_bytes", UPD, "oversized", NULL, data, len) == -1)
		goto out;
	snprintf(members, sizeof(members), "\"UserID\":\"mal-%03zu\"", l->n);
	data = padded(members, 200000, &len);
	if (add_bad_raw(l, "oversized/request_200000_bytes", REQ, "oversized", NULL, data, len) == -1)
		goto out;
	rc = 0;
out:
	free(x256);
	free(x257);
	free(e128);
	free(e129);
	return rc;
}

/* The valid traffic around case c: an "ok" alarm before, a request after. */
static int
malformed_send(struct env *e, struct model *m, struct mcase *c, int64_t base, size_t i)
{
	char ts[48];
	struct event ok = { .request = false, .alarm = "ok", .status = "WARNING", .ts = ts };
	struct event rq = { .request = true };

	model_ts_print(base + (int64_t)i, 0, 0, 0, false, ts, sizeof(ts));
	ok.user = rq.user = c->user;
	if (event_send(&ok, e->bus, m) == -1 ||
	    bus_publish(e->bus, c->subject, c->data, c->len) == -1)
		return -1;
	if (c->reasons[0] == NULL &&
	    model_update(m, c->user, c->alarm, model_status_parse(c->status), c->ts) >= MR_INVALID) {
		harness_seterr("model rejects valid case %s", c->name);
		return -1;
	}
	return event_send(&rq, e->bus, m);
}

static bool
reason_allowed(const struct mcase *c, const char *hdr)
{
	for (int i = 0; i < 3 && c->reasons[i] != NULL; i++) {
		size_t n = strlen(c->reasons[i]);

		if (strncmp(hdr, c->reasons[i], n) == 0 && hdr[n] == ':' && hdr[n + 1] == ' ')
			return true;
	}
	return false;
}

/* Rejected cases with exactly these bytes (the two empty payloads look alike). */
static size_t
bad_copies(const struct mlist *l, const struct mcase *c)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += l->c[i].reasons[0] != NULL && l->c[i].len == c->len &&
		    (c->len == 0 || memcmp(l->c[i].data, c->data, c->len) == 0);
	return n;
}

static int
malformed_check_case(struct env *e, struct model *m, struct capture *dl,
    const struct mlist *l, const struct mcase *c)
{
	char hdr[512];
	size_t found = capture_find(dl, c->data, c->len, hdr, sizeof(hdr));

	if (c->reasons[0] == NULL && found > 0) {
		harness_seterr("valid message was dead-lettered with reason \"%s\"", hdr);
		return -1;
	}
	if (c->reasons[0] != NULL && found != bad_copies(l, c)) {
		harness_seterr("seen %zu times on AlarmDeadLetter (payload byte-exact), want %zu",
		    found, bad_copies(l, c));
		return -1;
	}
	if (c->reasons[0] != NULL && !reason_allowed(c, hdr)) {
		harness_seterr("Alarm-Reject-Reason is \"%s\", want \"%s: ...\"%s%s", hdr, c->reasons[0],
		    c->reasons[1] ? " or " : "", c->reasons[1] ? c->reasons[1] : "");
		return -1;
	}
	/* Also: it changed no state (the user's digest holds only the valid traffic). */
	return traffic_verify_user(m, e->digests, c->user, false);
}

/* Every bad payload is kept, unchanged, in the dead-letter stream. */
static int
malformed_check_stream(struct env *e, const struct mlist *l, size_t nbad)
{
	uint64_t msgs, last;
	size_t missing = 0;
	bool *seen = calloc(l->n, sizeof(bool));
	const char *first = NULL;

	if (seen == NULL || bus_stream_state(e->bus, "ALARMS_DEAD_LETTER", &msgs, &last) == -1) {
		free(seen);
		return -1;
	}
	for (uint64_t seq = 1; seq <= last && seq <= 5000; seq++) {
		char *data;
		size_t len;

		if (bus_stream_get(e->bus, "ALARMS_DEAD_LETTER", seq, &data, &len) == -1)
			continue;
		for (size_t i = 0; i < l->n; i++)
			if (l->c[i].len == len && (len == 0 || memcmp(l->c[i].data, data, len) == 0))
				seen[i] = true;
		free(data);
	}
	for (size_t i = 0; i < l->n; i++) {
		if (l->c[i].reasons[0] != NULL && !seen[i]) {
			missing++;
			first = first ? first : l->c[i].name;
		}
	}
	free(seen);
	if (missing == 0)
		return 0;
	harness_seterr("stream ALARMS_DEAD_LETTER (%llu messages) lacks %zu of %zu rejected "
	    "payloads; first: %s", (unsigned long long)msgs, missing, nbad, first);
	return -1;
}

/* Nothing but the rejected payloads reached the dead-letter subject. */
static int
malformed_check_extras(struct capture *dl, const struct mlist *l)
{
	size_t n = capture_count(dl);

	for (size_t i = 0; i < n; i++) {
		const char *data, *hdr;
		size_t len;
		bool known = false;

		if (capture_get(dl, i, &data, &len, &hdr) == -1)
			continue;
		for (size_t j = 0; j < l->n && !known; j++)
			known = l->c[j].reasons[0] != NULL && l->c[j].len == len &&
			    (len == 0 || memcmp(l->c[j].data, data, len) == 0);
		if (!known) {
			harness_seterr("unexpected dead letter (reason \"%s\"): %.200s", hdr, data);
			return -1;
		}
	}
	return 0;
}

/* The "bad=N" of the master's title (/proc/PID/cmdline); -1 if unreadable. */
static int
master_bad_count(pid_t pid, unsigned long long *bad)
{
	char path[64], buf[4096];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	if ((p = strstr(buf, " bad=")) == NULL || sscanf(p + 5, "%llu", bad) != 1)
		return -1;
	return 0;
}

/*
 * Every rejection was counted, once: the master's title (refreshed each
 * second) comes to show exactly the number of rejected cases.
 */
static int
malformed_check_counted(struct env *e, size_t nbad)
{
	int64_t deadline = harness_now_ms() + 5000;
	unsigned long long bad = 0;

	while (harness_now_ms() < deadline) {
		if (master_bad_count(e->svc.proc.pid, &bad) == 0 && bad >= nbad)
			break;
		harness_sleep_ms(100);
	}
	if (bad == nbad)
		return 0;
	harness_seterr("master title says bad=%llu, want %zu (one per rejected case)", bad, nbad);
	return -1;
}

static void
malformed_run(struct env *e, struct mlist *l, struct model *m, struct capture *dl)
{
	struct harness_worker w[64];
	size_t nbad = 0;
	char name[256], unsettled[1024] = "";
	int64_t deadline;

	for (size_t i = 0; i < l->n; i++) {
		nbad += l->c[i].reasons[0] != NULL;
		if (malformed_send(e, m, &l->c[i], l->base, i) == -1) {
			tap_fail("malformed", "publishing case %s: %s", l->c[i].name, harness_err());
			return;
		}
	}
	deadline = harness_now_ms() + 60000;
	while (capture_wait(dl, nbad, harness_now_ms() + 250) == -1) {
		if (harness_now_ms() >= deadline || env_alive(e) == -1) {
			printf("# malformed: dead letters: %s\n", harness_err());
			break;
		}
	}
	if (traffic_wait(m, e->digests, false, deadline - harness_now_ms(), &e->svc.proc,
	        NULL) == -1)
		printf("# malformed: digests: %s\n", harness_err());
	/* Everything acked and filed: a wrong extra digest or dead letter would be here. */
	if (env_settle(e, dl, harness_now_ms() + 60000) == -1) {
		snprintf(unsettled, sizeof(unsettled), "%s", harness_err());
		printf("# malformed: the service did not settle: %s\n", unsettled);
	}
	/* Per-case results would only repeat that the service died: say it once. */
	if (env_alive(e) == -1) {
		tap_fail("malformed/service_still_up", "%s (cases not checked)", harness_err());
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		snprintf(name, sizeof(name), "malformed/%s", l->c[i].name);
		/* Every case is sent (they share the dead-letter checks); "malformed/CASE" reports one. */
		if (itest_selected("malformed", l->c[i].name))
			tap_report(name, env_settled_rc(malformed_check_case(e, m, dl, l, &l->c[i]),
			    unsettled));
	}
	tap_report("malformed/only_rejected_payloads_dead_lettered",
	    env_settled_rc(malformed_check_extras(dl, l), unsettled));
	tap_report("malformed/dead_letter_stream_keeps_copies", malformed_check_stream(e, l, nbad));
	tap_report("malformed/rejections_counted", malformed_check_counted(e, nbad));
	tap_report("malformed/digest_json_shape", env_check_collector(e));
	if (env_alive(e) == 0 && harness_workers(e->svc.proc.pid, w, 64) != e->cfg.workers)
		harness_seterr("worker count is not %d any more", e->cfg.workers);
	tap_report("malformed/service_still_up", env_alive(e) == 0 &&
	    harness_workers(e->svc.proc.pid, w, 64) == e->cfg.workers ? 0 : -1);
}

void
scn_malformed(void)
{
	struct env_config cfg = { .workers = 2 };
	struct mlist l = { .base = (harness_wall_sec() - 3600) / 60 * 60 };
	struct model *m = model_new();
	struct capture *dl = NULL;
	struct env e = { 0 };

	if (m == NULL || build_shape_cases(&l) == -1 || build_timestamp_cases(&l) == -1 ||
	    build_ambiguous_cases(&l) == -1 || build_limit_cases(&l) == -1) {
		tap_fail("malformed", "building cases: out of memory");
		goto out;
	}
	if (env_up(&e, "malformed", &cfg) == -1 ||
	    (dl = capture_new(e.bus, "AlarmDeadLetter", "Alarm-Reject-Reason")) == NULL) {
		tap_fail("malformed", "environment: %s", harness_err());
		goto out;
	}
	malformed_run(&e, &l, m, dl);
out:
	capture_free(dl);
	env_down(&e);
	mlist_free(&l);
	model_free(m);
}

/* ---- core_intake ---- */

static int
core_basic(struct env *e, struct model *m)
{
	char ts[48];
	struct event up = { .request = false, .user = "core-basic", .alarm = "a1",
		.status = "CRITICAL", .ts = ts };
	struct event rq = { .request = true, .user = "core-basic" };

	model_ts_print(harness_wall_sec() - 60, 250000000, 120, 3, false, ts, sizeof(ts));
	if (event_send(&up, e->bus, m) == -1 || event_send(&rq, e->bus, m) == -1 ||
	    bus_flush(e->bus, 10000) == -1)
		return -1;
	if (env_wait_user(e, "core-basic", 1, harness_now_ms() + 30000) == -1)
		return -1;
	return traffic_verify_user(m, e->digests, "core-basic", false);
}

/* Update then request, back to back, for many users over one connection. */
static int
core_many(struct env *e, struct model *m, int users)
{
	char user[64], ts[48];

	for (int i = 0; i < users; i++) {
		struct event up = { .request = false, .user = user, .alarm = "a1",
			.status = "WARNING", .ts = ts };
		struct event rq = { .request = true, .user = user };

		snprintf(user, sizeof(user), "core-%04d", i);
		model_ts_print(harness_wall_sec() - 600 + i, 0, 0, 0, false, ts, sizeof(ts));
		if (event_send(&up, e->bus, m) == -1 || event_send(&rq, e->bus, m) == -1)
			return -1;
	}
	if (bus_flush(e->bus, 10000) == -1 ||
	    traffic_wait(m, e->digests, false, 60000, &e->svc.proc, NULL) == -1 ||
	    env_settle(e, NULL, harness_now_ms() + 30000) == -1)
		return -1;
	return traffic_verify(m, e->digests, false);
}

void
scn_core_intake(void)
{
	struct env_config cfg = { .workers = 2, .core = true };
	struct model *m = model_new();
	struct env e = { 0 };

	if (m == NULL || env_up(&e, "core_intake", &cfg) == -1) {
		tap_fail("core_intake", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	tap_report("core_intake/basic_digest", core_basic(&e, m));
	tap_report("core_intake/update_then_request_many_users",
	    core_many(&e, m, itest_scaled(200)));
	tap_report("core_intake/digest_json_shape", env_check_collector(&e));
out:
	env_down(&e);
	model_free(m);
}
