/*
 * mcases: the generated malformed and edge-valid cases (mcases.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcases.h"

/* printf into a malloc'd string. */
char *
mcase_printf(size_t *len, const char *fmt, ...)
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

char *
mcase_repeat(const char *unit, size_t times)
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

void
mlist_user(const struct mlist *l, size_t i, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s-%03zu", l->user_prefix != NULL ? l->user_prefix : "mal", i);
}

struct mcase *
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
	mlist_user(l, l->n, c->user, sizeof(c->user));
	return c;
}

void
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
int
mlist_add_bad(struct mlist *l, const char *name, const char *subject, const char *r1,
    const char *r2, const char *fmt)
{
	struct mcase *c = mlist_next(l, name);
	char ts[48];

	if (c == NULL)
		return -1;
	model_ts_print(l->base + (int64_t)l->n, 0, 0, 0, false, ts, sizeof(ts));
	if ((c->data = mcase_printf(&c->len, fmt, c->user, ts)) == NULL)
		return -1;
	c->subject = subject;
	c->reasons[0] = r1;
	c->reasons[1] = r2;
	l->n++;
	return 0;
}

/* A rejected payload given as bytes (empty, huge). */
int
mlist_add_bad_raw(struct mlist *l, const char *name, const char *subject, const char *r1,
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
char *
mcase_padded(const char *members, size_t total, size_t *len)
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
int
mlist_add_good(struct mlist *l, const char *name, const char *user, const char *alarm,
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
	members = mcase_printf(NULL, "\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%s\"", alarm, c->user, ts);
	if (members == NULL)
		return -1;
	if (total > 0)
		c->data = mcase_padded(members, total, &c->len);
	else
		c->data = mcase_printf(&c->len, "{%s}", members);
	free(members);
	if (c->data == NULL)
		return -1;
	l->n++;
	return 0;
}


int
mlist_build_shape(struct mlist *l)
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
		if (mlist_add_bad(l, t[i].name, t[i].subject, t[i].r1, t[i].r2, t[i].fmt) == -1)
			return -1;
	/* Empty is "not a single JSON object"; a size check may also claim it. */
	if (mlist_add_bad_raw(l, "empty_payload/update", UPD, "bad_json", "oversized", strdup(""), 0) == -1 ||
	    mlist_add_bad_raw(l, "empty_payload/request", REQ, "bad_json", "oversized", strdup(""), 0) == -1)
		return -1;
	return 0;
}

int
mlist_build_timestamps(struct mlist *l)
{
	char name[160], fmt[256];

	for (int i = 0; itest_bad_timestamps[i] != NULL; i++) {
		snprintf(name, sizeof(name), "bad_timestamp/%s", itest_bad_timestamps[i]);
		snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"bad\",\"UserID\":\"%%1$s\","
		    "\"Status\":\"WARNING\",\"ChangedAt\":\"%s\"}", itest_bad_timestamps[i]);
		if (mlist_add_bad(l, name, UPD, "bad_timestamp", NULL, fmt) == -1)
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
			if (mlist_add_bad(l, name, UPD, "future_timestamp", NULL, fmt) == -1)
				return -1;
			continue;
		}
		snprintf(name, sizeof(name), "valid_timestamp/%s", ts);
		if (mlist_add_good(l, name, NULL, "edge", ts, 0) == -1)
			return -1;
	}
	return 0;
}

/*
 * A valid update given as JSON text (fmt as for add_bad): `alarm` is its
 * AlarmID as the digest must carry it, decoded, for the model.
 */
int
mlist_add_good_json(struct mlist *l, const char *name, const char *alarm, const char *ts,
    const char *fmt)
{
	struct mcase *c = mlist_next(l, name);

	if (c == NULL)
		return -1;
	snprintf(c->alarm, sizeof(c->alarm), "%s", alarm);
	snprintf(c->status, sizeof(c->status), "CRITICAL");
	snprintf(c->ts, sizeof(c->ts), "%s", ts);
	c->subject = UPD;
	if ((c->data = mcase_printf(&c->len, fmt, c->user, ts)) == NULL)
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
int
mlist_build_ambiguous(struct mlist *l)
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
		if (mlist_add_bad(l, t[i].name, t[i].subject, t[i].r1, NULL, t[i].fmt) == -1)
			return -1;
	/* The allowance (max_future, 24h by default) with an hour's margin either side. */
	model_ts_print(now + 25 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	snprintf(fmt, sizeof(fmt), "%s%s\"}", future_head, ts);
	if (mlist_add_bad(l, "future_timestamp/25h_ahead", UPD, "future_timestamp", NULL, fmt) == -1)
		return -1;
	model_ts_print(now + 25 * 3600, 0, -300, 3, false, ts, sizeof(ts));
	snprintf(fmt, sizeof(fmt), "%s%s\"}", future_head, ts);
	if (mlist_add_bad(l, "future_timestamp/25h_ahead_offset", UPD, "future_timestamp", NULL,
	    fmt) == -1)
		return -1;
	model_ts_print(now + 23 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	if (mlist_add_good(l, "valid_future/23h_ahead", NULL, "soon", ts, 0) == -1)
		return -1;
	/* A surrogate pair is one character, however its hex is written. */
	model_ts_print(l->base, 0, 0, 0, false, ts, sizeof(ts));
	if (mlist_add_good_json(l, "valid_escape/surrogate_pair", "pair-\xf0\x9f\x98\x80", ts,
	    "{\"AlarmID\":\"pair-\\uD83D\\ude00\",\"UserID\":\"%1$s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%2$s\"}") == -1)
		return -1;
	/* Nothing reads an unknown field, so twice is not ambiguous. */
	if (mlist_add_good_json(l, "valid_duplicate/unknown_field", "dupx", ts,
	    "{\"AlarmID\":\"dupx\",\"x\":1,\"UserID\":\"%1$s\",\"x\":\"2\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%2$s\"}") == -1)
		return -1;
	return 0;
}

/* IDs and payloads just at and just over the limits (256-byte IDs, max_message_bytes payloads). */
int
mlist_build_limits(struct mlist *l, size_t max_message_bytes)
{
	size_t big_request = max_message_bytes * 3 > 200000 ? max_message_bytes * 3 : 200000;
	char name[160], user[64];
	char *x256 = mcase_repeat("x", 256), *x257 = mcase_repeat("x", 257);
	char *e128 = mcase_repeat("\xc3\xa9", 128), *e129 = mcase_repeat("\xc3\xa9", 129);
	char ts[48], fmt[1024], members[256], *data;
	size_t len = 0;
	int rc = -1;

	model_ts_print(l->base, 0, 0, 0, false, ts, sizeof(ts));
	if (x256 == NULL || x257 == NULL || e128 == NULL || e129 == NULL)
		goto out;
	snprintf(name, sizeof(name), "valid_limit/payload_%zu_bytes", max_message_bytes);
	if (mlist_add_good(l, "valid_limit/alarm_id_256_bytes", NULL, x256, ts, 0) == -1 ||
	    mlist_add_good(l, "valid_limit/alarm_id_256_bytes_utf8", NULL, e128, ts, 0) == -1 ||
	    mlist_add_good(l, "valid_limit/user_id_256_bytes", x256, "edge", ts, 0) == -1 ||
	    mlist_add_good(l, name, NULL, "edge", ts, max_message_bytes) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"%s\",\"UserID\":\"%%1$s\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"%%2$s\"}", x257);
	if (mlist_add_bad(l, "id_too_long/alarm_id_257_bytes", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"AlarmID\":\"%s\",\"UserID\":\"%%1$s\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"%%2$s\"}", e129);
	if (mlist_add_bad(l, "id_too_long/alarm_id_258_bytes_utf8", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"U\":\"%%1$s\",\"AlarmID\":\"bad\",\"UserID\":\"%s\","
	    "\"Status\":\"WARNING\",\"ChangedAt\":\"%%2$s\"}", x257);
	if (mlist_add_bad(l, "id_too_long/user_id_257_bytes", UPD, "id_too_long", NULL, fmt) == -1)
		goto out;
	snprintf(fmt, sizeof(fmt), "{\"U\":\"%%1$s\",\"UserID\":\"%s\"}", x257);
	if (mlist_add_bad(l, "id_too_long/request_user_id_257_bytes", REQ, "id_too_long", NULL, fmt) == -1)
		goto out;
	/* One byte over the limit; otherwise a valid update of the case's user. */
	mlist_user(l, l->n, user, sizeof(user));
	snprintf(members, sizeof(members), "\"AlarmID\":\"bad\",\"UserID\":\"%s\","
	    "\"Status\":\"WARNING\",\"ChangedAt\":\"%s\"", user, ts);
	data = mcase_padded(members, max_message_bytes + 1, &len);
	snprintf(name, sizeof(name), "oversized/update_%zu_bytes", max_message_bytes + 1);
	if (mlist_add_bad_raw(l, name, UPD, "oversized", NULL, data, len) == -1)
		goto out;
	mlist_user(l, l->n, user, sizeof(user));
	snprintf(members, sizeof(members), "\"UserID\":\"%s\"", user);
	data = mcase_padded(members, big_request, &len);
	snprintf(name, sizeof(name), "oversized/request_%zu_bytes", big_request);
	if (mlist_add_bad_raw(l, name, REQ, "oversized", NULL, data, len) == -1)
		goto out;
	rc = 0;
out:
	free(x256);
	free(x257);
	free(e128);
	free(e129);
	return rc;
}

/* A plain publish (no headers), flushed and then stored, so the stream keeps the model's order. */
static int
mcase_publish_plain(struct env *e, const struct mcase *c)
{
	uint64_t msgs, before, after;
	int64_t deadline;
	natsStatus s;

	if (bus_stream_state(e->bus, "ALARMS", &msgs, &before) == -1)
		return -1;
	if ((s = natsConnection_Publish(bus_conn(e->bus), c->subject, c->data, (int)c->len)) != NATS_OK) {
		harness_seterr("publish %zu bytes: %s", c->len, natsStatus_GetText(s));
		return -1;
	}
	if (bus_flush(e->bus, 5000) == -1)
		return -1;
	for (deadline = harness_now_ms() + 5000; harness_now_ms() < deadline; harness_sleep_ms(20)) {
		if (bus_stream_state(e->bus, "ALARMS", &msgs, &after) == -1)
			return -1;
		if (after > before)
			return 0;
	}
	harness_seterr("a %zu-byte message on %s never reached stream ALARMS", c->len, c->subject);
	return -1;
}

/* The valid traffic around case c: an "ok" alarm before, a request after. */
int
mcase_send(struct env *e, struct model *m, struct mcase *c, int64_t base, size_t i)
{
	char ts[48];
	struct event ok = { .request = false, .alarm = "ok", .status = "WARNING", .ts = ts };
	struct event rq = { .request = true };

	model_ts_print(base + (int64_t)i, 0, 0, 0, false, ts, sizeof(ts));
	ok.user = rq.user = c->user;
	if (event_send(&ok, e->bus, m) == -1)
		return -1;
	if (c->plain ? mcase_publish_plain(e, c) : bus_publish(e->bus, c->subject, c->data, c->len))
		return -1;
	if (c->reasons[0] == NULL &&
	    model_update(m, c->user, c->alarm, model_status_parse(c->status), c->ts) >= MR_INVALID) {
		harness_seterr("model rejects valid case %s", c->name);
		return -1;
	}
	return event_send(&rq, e->bus, m);
}

bool
mcase_reason_allowed(const struct mcase *c, const char *hdr)
{
	for (int i = 0; i < 3 && c->reasons[i] != NULL; i++) {
		size_t n = strlen(c->reasons[i]);

		if (strncmp(hdr, c->reasons[i], n) == 0 && hdr[n] == ':' && hdr[n + 1] == ' ')
			return true;
	}
	return false;
}

/* Rejected cases with exactly these bytes (the two empty payloads look alike). */
size_t
mlist_bad_copies(const struct mlist *l, const struct mcase *c)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += l->c[i].reasons[0] != NULL && l->c[i].len == c->len &&
		    (c->len == 0 || memcmp(l->c[i].data, c->data, c->len) == 0);
	return n;
}