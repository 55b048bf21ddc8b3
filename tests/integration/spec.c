/*
 * The SPEC's rules as small literal cases, each on a fresh user.  Every
 * case is run twice: through the model alone (scenario model_check, which
 * proves the oracle agrees with the SPEC text as written down here) and
 * against the service (scenario spec).
 *
 * Step syntax:
 *   "U alarm STATUS ts"          publish an update
 *   "J {json}"                   publish this exact update payload ($U = the user, quoted)
 *   "R expect"                   publish a digest request; the digest it must produce
 *   "Q {json} => expect"         publish this exact request payload; same
 * where expect is "-" (no digest at all) or "alarm STATUS ts, alarm STATUS ts".
 * A ts "@S[.F][zone]" is base + S seconds (base is an hour ago, so tombstone
 * retention, which counts from ChangedAt, never drops them), printed with
 * exactly the fraction digits and zone written; anything else is literal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "itest.h"

struct spec_case {
	const char *name;
	const char *steps[24];
};

static const struct spec_case spec_cases[] = {
	{ "single_alarm_exact_fields", {
		"U a1 WARNING 2021-08-17T15:33:59.1+03:00",
		"R a1 WARNING 2021-08-17T15:33:59.1+03:00" } },
	{ "timestamp_format_kept_and_trimmed", {
		"U f1 WARNING 2021-06-07T20:40:15.500Z",
		"U f2 CRITICAL 2021-06-07T20:40:16.000000000Z",
		"U f3 WARNING 2021-06-07T20:40:17.598765212Z",
		"U f4 WARNING 2021-06-07T20:40:18+00:00",
		"U f5 WARNING 2021-06-07T20:40:19.120-00:00",
		"U f6 CRITICAL 2021-06-07T23:40:20.000100+03:00",
		"U f7 WARNING 2021-06-07T15:10:21-05:30",
		"U f8 WARNING 2021-06-08T20:39:22+23:59",
		"R f1 WARNING 2021-06-07T20:40:15.5Z, f2 CRITICAL 2021-06-07T20:40:16Z, "
		"f3 WARNING 2021-06-07T20:40:17.598765212Z, f4 WARNING 2021-06-07T20:40:18Z, "
		"f5 WARNING 2021-06-07T20:40:19.12Z, f6 CRITICAL 2021-06-07T23:40:20.0001+03:00, "
		"f7 WARNING 2021-06-07T15:10:21-05:30, f8 WARNING 2021-06-08T20:39:22+23:59" } },
	{ "stale_update_ignored", {
		"U a1 WARNING @10",
		"U a1 CRITICAL @5",
		"R a1 WARNING @10" } },
	{ "stale_by_instant_not_by_string", {
		/* 16:00+05:00 is 11:00Z, older than 15:33:59+03:00 = 12:33:59Z. */
		"U a1 WARNING 2021-08-17T15:33:59+03:00",
		"U a1 CRITICAL 2021-08-17T16:00:00+05:00",
		/* 13:00Z is newer than 12:33:59Z though it sorts first as a string. */
		"U a2 WARNING 2021-08-17T15:33:59+03:00",
		"U a2 CRITICAL 2021-08-17T13:00:00Z",
		"R a1 WARNING 2021-08-17T15:33:59+03:00, a2 CRITICAL 2021-08-17T13:00:00Z" } },
	{ "duplicate_ignored", {
		"U a1 WARNING @10",
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"U a1 WARNING @10",
		"R -",
		"U a1 WARNING @10+03:00",
		"R -",
		"U zz CRITICAL @20",
		"R zz CRITICAL @20" } },
	{ "same_instant_duplicate_keeps_first_offset", {
		"U a1 WARNING @10+03:00",
		"U a1 WARNING @10",
		"R a1 WARNING @10+03:00" } },
	{ "same_instant_more_severe_wins", {
		"U a1 CRITICAL @10",
		"U a1 WARNING @10",
		"U a2 WARNING @10",
		"U a2 CRITICAL @10",
		"U a3 WARNING @10",
		"U a3 CLEARED @10",
		"U a4 CLEARED @10",
		"U a4 WARNING @10",
		"R a1 CRITICAL @10, a2 CRITICAL @10, a3 WARNING @10, a4 WARNING @10" } },
	{ "same_instant_winner_keeps_its_offset", {
		"U a1 WARNING @10+03:00",
		"U a1 CRITICAL @10-05:30",
		"R a1 CRITICAL @10-05:30" } },
	{ "cleared_not_in_digest", {
		"U a1 WARNING @10",
		"U a1 CLEARED @11",
		"U a2 CRITICAL @12",
		"U a3 CLEARED @13",
		"R a2 CRITICAL @12" } },
	{ "tombstone_rejects_older", {
		"U a1 WARNING @10",
		"U a1 CLEARED @20",
		"U a1 WARNING @15",
		"U a1 CRITICAL @19.999999999",
		"U a2 CLEARED @20",
		"U a2 CRITICAL @5",
		"R -",
		"U zz WARNING @30",
		"R zz WARNING @30" } },
	{ "no_digest_when_nothing_qualifies", {
		"R -",
		"U a1 CLEARED @10",
		"R -",
		"U zz WARNING @20",
		"R zz WARNING @20" } },
	{ "not_sent_twice", {
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"R -",
		"U zz WARNING @20",
		"R zz WARNING @20" } },
	{ "same_status_newer_not_resent", {
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"U a1 WARNING @20",
		"R -",
		"U zz CRITICAL @30",
		"R zz CRITICAL @30",
		"U a1 CRITICAL @40",
		"R a1 CRITICAL @40" } },
	{ "undelivered_shows_newest_changed_at", {
		"U a1 WARNING @10",
		"U a1 WARNING @20.25",
		"R a1 WARNING @20.25" } },
	{ "warning_to_critical_resent", {
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"U a1 CRITICAL @20",
		"R a1 CRITICAL @20",
		"U a1 WARNING @30",
		"R a1 WARNING @30" } },
	{ "cleared_then_raised_resent", {
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"U a1 CLEARED @20",
		"R -",
		"U a1 WARNING @30",
		"R a1 WARNING @30",
		"U a2 WARNING @40",
		"R a2 WARNING @40",
		"U a2 CLEARED @50",
		"U a2 WARNING @60",
		"R a2 WARNING @60" } },
	{ "changed_and_back_between_digests_resent", {
		"U a1 WARNING @10",
		"R a1 WARNING @10",
		"U a1 CRITICAL @20",
		"U a1 WARNING @30",
		"R a1 WARNING @30" } },
	{ "ordering_by_instant_offset_aware", {
		"U c WARNING 2021-08-17T12:00:00-02:00",
		"U b CRITICAL 2021-08-17T13:00:00Z",
		"U a WARNING 2021-08-17T15:33:59+03:00",
		"U d WARNING 2021-08-17T12:33:59.5Z",
		"U e CRITICAL 2021-08-17T23:59:59+11:00",
		"R a WARNING 2021-08-17T15:33:59+03:00, d WARNING 2021-08-17T12:33:59.5Z, "
		"e CRITICAL 2021-08-17T23:59:59+11:00, b CRITICAL 2021-08-17T13:00:00Z, "
		"c WARNING 2021-08-17T12:00:00-02:00" } },
	{ "ordering_ties_by_alarm_id_bytes", {
		"U b WARNING 2021-08-17T10:00:00Z",
		"U \xc3\xa9 WARNING 2021-08-17T10:00:00Z",
		"U ab CRITICAL 2021-08-17T10:00:00Z",
		"U a- WARNING 2021-08-17T10:00:00Z",
		"U a WARNING 2021-08-17T13:00:00+03:00",
		"U Z9 WARNING 2021-08-17T10:00:00Z",
		"U B CRITICAL 2021-08-17T05:30:00-04:30",
		"U 9 WARNING 2021-08-17T10:00:00Z",
		"U 10 WARNING 2021-08-17T10:00:00Z",
		"R 10 WARNING 2021-08-17T10:00:00Z, 9 WARNING 2021-08-17T10:00:00Z, "
		"B CRITICAL 2021-08-17T05:30:00-04:30, Z9 WARNING 2021-08-17T10:00:00Z, "
		"a WARNING 2021-08-17T13:00:00+03:00, a- WARNING 2021-08-17T10:00:00Z, "
		"ab CRITICAL 2021-08-17T10:00:00Z, b WARNING 2021-08-17T10:00:00Z, "
		"\xc3\xa9 WARNING 2021-08-17T10:00:00Z" } },
	{ "extra_fields_and_lookalike_keys_ignored", {
		"J {\"status\":\"CRITICAL\",\"AlarmID\":\"a1\",\"Extra\":{\"x\":[1,2,{\"y\":null}]},"
		"\"UserID\":$U,\"ChangedAt\":\"2021-08-17T15:33:59Z\",\"Status\":\"WARNING\","
		"\"userid\":\"someone-else\",\"alarmID\":\"zzz\",\"CHANGEDAT\":7}",
		"Q {\"Note\":\"hi\",\"UserID\":$U,\"userid\":\"x\"} => a1 WARNING 2021-08-17T15:33:59Z" } },
	{ "json_whitespace_accepted", {
		"J \t\r\n{ \"AlarmID\" : \"a1\" ,\n \"UserID\" : $U , \"Status\" : \"WARNING\" , "
		"\"ChangedAt\" : \"2021-08-17T15:33:59Z\" }\n",
		"Q  {\"UserID\":$U}\n => a1 WARNING 2021-08-17T15:33:59Z" } },
	{ "escaped_and_unicode_ids_round_trip", {
		"J {\"AlarmID\":\"q\\\"b\\\\s\\u00e9/\\t\",\"UserID\":$U,\"Status\":\"CRITICAL\","
		"\"ChangedAt\":\"2021-08-17T15:33:59Z\"}",
		"U alarm-\xe2\x9c\x93 WARNING 2021-08-17T15:34:00Z",
		"R q\"b\\s\xc3\xa9/\t CRITICAL 2021-08-17T15:33:59Z, "
		"alarm-\xe2\x9c\x93 WARNING 2021-08-17T15:34:00Z" } },
};
#define NCASES (sizeof(spec_cases) / sizeof(spec_cases[0]))

/* Valid timestamps at the edges, and how a digest must print them. */
const char *const itest_good_timestamps[][2] = {
	{ "2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z" },
	{ "2000-02-29T12:00:00Z", "2000-02-29T12:00:00Z" },
	{ "2021-12-31T23:59:59.999999999Z", "2021-12-31T23:59:59.999999999Z" },
	{ "2021-08-17T15:33:59+23:59", "2021-08-17T15:33:59+23:59" },
	{ "2021-08-17T15:33:59-23:59", "2021-08-17T15:33:59-23:59" },
	{ "2021-08-17T15:33:59.1-00:00", "2021-08-17T15:33:59.1Z" },
	{ "2021-01-01T00:00:00.000Z", "2021-01-01T00:00:00Z" },
	{ "2021-08-17T15:33:59.000000001+05:45", "2021-08-17T15:33:59.000000001+05:45" },
	{ "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z" },
	{ "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z" },
	{ NULL, NULL },
};

/* Each breaks exactly one rule of the SPEC's ChangedAt shape. */
const char *const itest_bad_timestamps[] = {
	"2021-08-17 15:33:59Z", "2021-08-17t15:33:59Z", "2021-08-17T15:33:59z",
	"2021-08-17T15:33:59", "2021-08-17T15:33:59.Z", "2021-08-17T15:33:59.1234567890Z",
	"2021-13-01T00:00:00Z", "2021-00-10T00:00:00Z", "2021-08-00T00:00:00Z",
	"2021-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2021-04-31T00:00:00Z",
	"2021-08-17T24:00:00Z", "2021-08-17T23:60:00Z", "2021-08-17T23:59:60Z",
	"2021-08-17T15:33:59+24:00", "2021-08-17T15:33:59+03:60", "2021-08-17T15:33:59+0300",
	"2021-08-17T15:33:59+03", "2021-8-17T15:33:59Z", "21-08-17T15:33:59Z",
	"2021-08-17T15:33Z", "2021-08-17", " 2021-08-17T15:33:59Z", "2021-08-17T15:33:59Z ",
	"2021-08-17T15:33:59ZZ", "2021-08-17T15:33:59.1.2Z", "+2021-08-17T15:33:59Z",
	"2021-08-17T15:33:59,5Z", "2021-08-17T15:33:59.-1Z", "2021-08-17T15:33:59 +03:00",
	"2021-08-17T15:33:59UTC", "1629214439", "20210817T153359Z",
	"2021-08-17T15:33:59.5+03:00:00", "2021-08-17T1a:33:59Z",
	"\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x91-08-17T15:33:59Z",
	NULL,
};

/* ---- step parsing ---- */

/* "@S[.F][zone]" relative to base, else a literal copy. */
static int
ts_expand(const char *tok, int64_t base, char *out, size_t cap)
{
	const char *p = tok + 1, *zone;
	int32_t nsec = 0;
	int digits = 0, off = 0;
	bool plus_zero = false, minus_zero = false;
	long s;
	char *end;

	if (tok[0] != '@') {
		snprintf(out, cap, "%s", tok);
		return 0;
	}
	s = strtol(p, &end, 10);
	p = end;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
			nsec = nsec * 10 + (*p - '0');
		for (int i = digits; i < 9; i++)
			nsec *= 10;
	}
	zone = p;
	if (strcmp(zone, "+00:00") == 0)
		plus_zero = true;
	else if (strcmp(zone, "-00:00") == 0)
		minus_zero = plus_zero = true;
	else if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 6)
		off = (atoi(zone + 1) * 60 + atoi(zone + 4)) * (zone[0] == '-' ? -1 : 1);
	else if (zone[0] != '\0' && strcmp(zone, "Z") != 0) {
		harness_seterr("bad relative timestamp \"%s\" in a spec case", tok);
		return -1;
	}
	model_ts_print(base + s, nsec, off, digits, plus_zero, out, cap);
	if (minus_zero)
		out[strlen(out) - 6] = '-';
	return 0;
}

/* "a STATUS ts, ..." or "-" to a canon (*canon NULL for "-"). */
static int
expect_canon(const char *text, int64_t base, char **canon)
{
	struct model_entry e[32];
	char copy[2048], ts[32][48];
	size_t n = 0;
	char *entry = copy;

	*canon = NULL;
	if (strcmp(text, "-") == 0)
		return 0;
	snprintf(copy, sizeof(copy), "%s", text);
	while (entry != NULL && n < 32) {
		char *next = strstr(entry, ", ");
		char *sp2, *sp1;

		if (next != NULL) {
			*next = '\0';
			next += 2;
		}
		/* IDs may hold spaces: status and ts are the last two words. */
		if ((sp2 = strrchr(entry, ' ')) == NULL)
			goto bad;
		*sp2 = '\0';
		if ((sp1 = strrchr(entry, ' ')) == NULL)
			goto bad;
		*sp1 = '\0';
		if (ts_expand(sp2 + 1, base, ts[n], sizeof(ts[n])) == -1)
			return -1;
		e[n].alarm = entry;
		e[n].alarm_len = strlen(entry);
		e[n].status = sp1 + 1;
		e[n].ts = ts[n];
		n++;
		entry = next;
	}
	if ((*canon = model_canon(e, n)) == NULL) {
		harness_seterr("out of memory building an expected digest");
		return -1;
	}
	return 0;
bad:
	harness_seterr("bad expectation \"%s\" in a spec case", text);
	return -1;
}

/* Template with $U replaced by the JSON string of user (malloc'd). */
static char *
raw_payload(const char *tmpl, const char *user)
{
	struct json_object *js = json_object_new_string(user);
	const char *quoted = json_object_to_json_string_ext(js, JSON_C_TO_STRING_PLAIN);
	size_t qlen = strlen(quoted), cap = strlen(tmpl) + 1;
	char *out, *o;

	for (const char *p = tmpl; (p = strstr(p, "$U")) != NULL; p += 2)
		cap += qlen;
	if ((out = malloc(cap)) == NULL) {
		json_object_put(js);
		return NULL;
	}
	for (o = out; *tmpl != '\0';) {
		if (tmpl[0] == '$' && tmpl[1] == 'U') {
			memcpy(o, quoted, qlen);
			o += qlen;
			tmpl += 2;
		} else {
			*o++ = *tmpl++;
		}
	}
	*o = '\0';
	json_object_put(js);
	return out;
}

/* Fields of a raw update, for the model (json-c is lax; the case JSON is valid). */
static int
raw_fields(const char *payload, char *alarm, char *status, char *ts, size_t cap)
{
	struct json_object *o = json_tokener_parse(payload), *v;
	const char *keys[] = { "AlarmID", "Status", "ChangedAt" };
	char *outs[] = { alarm, status, ts };

	if (o == NULL) {
		harness_seterr("spec case payload is not JSON: %s", payload);
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		if (!json_object_object_get_ex(o, keys[i], &v)) {
			json_object_put(o);
			harness_seterr("spec case payload lacks %s: %s", keys[i], payload);
			return -1;
		}
		snprintf(outs[i], cap, "%s", json_object_get_string(v));
	}
	json_object_put(o);
	return 0;
}

/* ---- running a case ---- */

/* Where a case's steps go: the model alone, or the service. */
struct case_sink {
	struct model *model;       /* model_check */
	struct bus *bus;           /* spec */
	int64_t base;
};

struct case_result {
	char user[128];
	char *expect[24];          /* canon of each digest the case must produce */
	size_t nexpect;
};

static void
case_result_free(struct case_result *r)
{
	for (size_t i = 0; i < r->nexpect; i++)
		free(r->expect[i]);
	r->nexpect = 0;
}

/* Model side of a request: its digest must equal the case's expectation. */
static int
model_request_check(struct case_sink *k, const char *user, const char *want, int stepno)
{
	char *got = NULL;
	int rc = model_request(k->model, user, &got);

	if (rc == -1) {
		harness_seterr("model: out of memory");
		return -1;
	}
	if ((want == NULL) != (rc == 0) || (want != NULL && strcmp(want, got) != 0)) {
		harness_seterr("step %d: model gives %s, case expects %s", stepno,
		    rc ? got : "no digest", want ? want : "no digest");
		free(got);
		return -1;
	}
	free(got);
	return 0;
}

static int
step_update(struct case_sink *k, const char *user, const char *alarm, const char *status,
    const char *ts, const char *raw)
{
	if (k->model != NULL) {
		enum model_result r = model_update(k->model, user, alarm, model_status_parse(status), ts);

		if (r == MR_INVALID || r == MR_NOMEM) {
			harness_seterr("model rejects %s %s %s", alarm, status, ts);
			return -1;
		}
		return 0;
	}
	if (raw != NULL)
		return bus_publish(k->bus, "AlarmStatusChanged", raw, strlen(raw));
	return bus_publish_update(k->bus, user, alarm, status, ts);
}

static int
step_request(struct case_sink *k, struct case_result *res, const char *want_text,
    const char *raw, int stepno)
{
	char *want;
	int rc;

	if (expect_canon(want_text, k->base, &want) == -1)
		return -1;
	if (k->model != NULL) {
		rc = model_request_check(k, res->user, want, stepno);
		free(want);
		return rc;
	}
	if (want != NULL)
		res->expect[res->nexpect++] = want;
	if (raw != NULL)
		return bus_publish(k->bus, "SendAlarmDigest", raw, strlen(raw));
	return bus_publish_request(k->bus, res->user);
}

static int
case_step(struct case_sink *k, struct case_result *res, const char *step, int stepno)
{
	char alarm[300], status[32], ts[64], *raw = NULL;
	const char *arrow;
	int rc = -1;

	switch (step[0]) {
	case 'U':
		if (sscanf(step + 2, "%299s %31s %63s", alarm, status, ts) != 3) {
			harness_seterr("bad step \"%s\"", step);
			return -1;
		}
		{
			char exp[64];

			if (ts_expand(ts, k->base, exp, sizeof(exp)) == -1)
				return -1;
			return step_update(k, res->user, alarm, status, exp, NULL);
		}
	case 'J':
		if ((raw = raw_payload(step + 2, res->user)) != NULL &&
		    raw_fields(raw, alarm, status, ts, sizeof(ts)) == 0)
			rc = step_update(k, res->user, alarm, status, ts, raw);
		free(raw);
		return rc;
	case 'R':
		return step_request(k, res, step + 2, NULL, stepno);
	case 'Q':
		if ((arrow = strstr(step, " => ")) == NULL) {
			harness_seterr("step \"%s\" lacks \" => \"", step);
			return -1;
		}
		{
			char tmpl[1024];

			snprintf(tmpl, sizeof(tmpl), "%.*s", (int)(arrow - step - 2), step + 2);
			if ((raw = raw_payload(tmpl, res->user)) != NULL)
				rc = step_request(k, res, arrow + 4, raw, stepno);
		}
		free(raw);
		return rc;
	default:
		harness_seterr("unknown step \"%s\"", step);
		return -1;
	}
}

static int
case_run(struct case_sink *k, const struct spec_case *c, struct case_result *res)
{
	memset(res, 0, sizeof(*res));
	snprintf(res->user, sizeof(res->user), "spec-%s", c->name);
	for (int i = 0; i < 24 && c->steps[i] != NULL; i++)
		if (case_step(k, res, c->steps[i], i + 1) == -1)
			return -1;
	return 0;
}

static int64_t
spec_base(void)
{
	return (harness_wall_sec() - 3600) / 60 * 60;
}

/* ---- model_check ---- */

static int
check_timestamps(void)
{
	struct model_ts a, b;

	for (int i = 0; itest_bad_timestamps[i] != NULL; i++) {
		const char *s = itest_bad_timestamps[i];

		if (model_ts_parse(s, strlen(s), &a) == 0) {
			harness_seterr("model accepts bad timestamp \"%s\"", s);
			return -1;
		}
	}
	for (int i = 0; itest_good_timestamps[i][0] != NULL; i++) {
		const char *s = itest_good_timestamps[i][0], *want = itest_good_timestamps[i][1];

		if (model_ts_parse(s, strlen(s), &a) == -1 || strcmp(a.canon, want) != 0) {
			harness_seterr("model parses \"%s\" as \"%s\", want \"%s\"", s,
			    model_ts_parse(s, strlen(s), &a) == 0 ? a.canon : "(rejected)", want);
			return -1;
		}
	}
	if (model_ts_parse("2021-08-17T15:33:59Z", 20, &a) == -1 || a.sec != 1629214439) {
		harness_seterr("model: 2021-08-17T15:33:59Z is not epoch 1629214439");
		return -1;
	}
	if (model_ts_parse("2021-08-17T15:33:59+03:00", 25, &a) == -1 ||
	    model_ts_parse("2021-08-17T13:00:00Z", 20, &b) == -1 || model_ts_cmp(&a, &b) >= 0) {
		harness_seterr("model: 15:33:59+03:00 is not earlier than 13:00:00Z (SPEC example)");
		return -1;
	}
	return 0;
}

/* Random generated timestamps print, parse back to the same instant, and canon is stable. */
static int
check_round_trip(void)
{
	struct rng r;
	char ts[48];

	rng_seed(&r, itest_opts.seed);
	for (int i = 0; i < 5000; i++) {
		struct model_ts a, b;

		traffic_random_ts(&r, harness_wall_sec() - 86400 * 400, 86400 * 800, ts, sizeof(ts));
		if (model_ts_parse(ts, strlen(ts), &a) == -1) {
			harness_seterr("model rejects generated timestamp \"%s\"", ts);
			return -1;
		}
		if (model_ts_parse(a.canon, strlen(a.canon), &b) == -1 || model_ts_cmp(&a, &b) != 0 ||
		    strcmp(a.canon, b.canon) != 0 || a.off_min != b.off_min) {
			harness_seterr("canon \"%s\" of \"%s\" does not round-trip", a.canon, ts);
			return -1;
		}
	}
	return 0;
}

void
scn_model_check(void)
{
	struct case_sink k = { .base = spec_base() };
	char name[160];

	if (itest_selected("model_check", "timestamps"))
		tap_report("model_check/timestamps", check_timestamps());
	if (itest_selected("model_check", "round_trip"))
		tap_report("model_check/round_trip", check_round_trip());
	if ((k.model = model_new()) == NULL) {
		tap_fail("model_check", "out of memory");
		return;
	}
	for (size_t i = 0; i < NCASES; i++) {
		struct case_result res;

		if (!itest_selected("model_check", spec_cases[i].name))
			continue;
		snprintf(name, sizeof(name), "model_check/%s", spec_cases[i].name);
		tap_report(name, case_run(&k, &spec_cases[i], &res));
		case_result_free(&res);
	}
	model_free(k.model);
}

/* ---- spec against the service ---- */

/* Many users, each an update and its request back to back: the update is in the digest. */
static int
b2b_publish(struct bus *b, struct model *m, int users, int64_t base)
{
	char user[64], ts[48];

	for (int i = 0; i < users; i++) {
		struct event up = { .request = false, .alarm = "a1", .status = "WARNING", .ts = ts };
		struct event rq = { .request = true };

		snprintf(user, sizeof(user), "spec-b2b-%04d", i);
		model_ts_print(base + i, 0, 0, 0, false, ts, sizeof(ts));
		up.user = rq.user = user;
		if (event_send(&up, b, m) == -1 || event_send(&rq, b, m) == -1)
			return -1;
	}
	return 0;
}

static int
case_verify(struct collector *c, const struct case_result *res)
{
	size_t have = collector_count(c, res->user);

	for (size_t i = 0; i < res->nexpect || i < have; i++) {
		const char *want = i < res->nexpect ? res->expect[i] : NULL;
		const char *got = i < have ? collector_get(c, res->user, i) : NULL;

		if (want != NULL && got != NULL && strcmp(want, got) == 0)
			continue;
		harness_seterr("digest #%zu: expected %s, got %s (%zu expected, %zu received)", i + 1,
		    want ? want : "no digest", got ? got : "nothing", res->nexpect, have);
		return -1;
	}
	return 0;
}

static void
spec_run_cases(struct env *e, struct model *b2b_model)
{
	struct case_sink k = { .bus = e->bus, .base = spec_base() };
	struct case_result res[NCASES];
	bool ran[NCASES] = { false }, b2b = itest_selected("spec", "update_then_request_back_to_back");
	int64_t deadline;
	char name[160], unsettled[1024] = "";

	/* Everything is published first, back to back; then all results are awaited. */
	for (size_t i = 0; i < NCASES; i++) {
		if (!itest_selected("spec", spec_cases[i].name))
			continue;
		ran[i] = true;
		snprintf(name, sizeof(name), "spec/%s", spec_cases[i].name);
		if (case_run(&k, &spec_cases[i], &res[i]) == -1) {
			tap_fail(name, "publishing: %s", harness_err());
			ran[i] = false;
			case_result_free(&res[i]);
		}
	}
	if (b2b && b2b_publish(e->bus, b2b_model, itest_scaled(50), k.base) == -1)
		tap_fail("spec/update_then_request_back_to_back", "publishing: %s", harness_err());
	deadline = harness_now_ms() + 60000;
	for (size_t i = 0; i < NCASES; i++)
		if (ran[i])
			(void)env_wait_user(e, res[i].user, res[i].nexpect, deadline);
	if (b2b)
		(void)traffic_wait(b2b_model, e->digests, false, deadline - harness_now_ms(),
		    &e->svc.proc, NULL);
	/* "No digest" cases: once all is acked and filed, a wrong extra digest is here. */
	if (env_settle(e, NULL, harness_now_ms() + 60000) == -1)
		snprintf(unsettled, sizeof(unsettled), "%s", harness_err());
	for (size_t i = 0; i < NCASES; i++) {
		if (!ran[i])
			continue;
		snprintf(name, sizeof(name), "spec/%s", spec_cases[i].name);
		tap_report(name, env_settled_rc(case_verify(e->digests, &res[i]), unsettled));
		case_result_free(&res[i]);
	}
	if (b2b)
		tap_report("spec/update_then_request_back_to_back",
		    env_settled_rc(traffic_verify(b2b_model, e->digests, false), unsettled));
}

void
scn_spec(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct env e = { 0 };

	if (m == NULL) {
		tap_fail("spec", "out of memory");
		return;
	}
	if (env_up(&e, "spec", &cfg) == -1) {
		tap_fail("spec", "environment: %s", harness_err());
	} else {
		spec_run_cases(&e, m);
		tap_report("spec/digest_json_shape", env_check_collector(&e));
		tap_report("spec/service_still_up", env_alive(&e));
	}
	env_down(&e);
	model_free(m);
}
