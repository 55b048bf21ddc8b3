/* Unit tests for common/validate.c: every "Malformed input" rule of the SPEC. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define LIT(s) s, sizeof(s) - 1

static const struct msg_limits default_limits = {
	.max_message_bytes = 65536,
	.max_id_bytes = 256,
	.max_future_ms = 86400000,
};

/* The service's clock in every test: 2026-01-01T00:00:00Z. */
#define TEST_NOW_MS INT64_C(1767225600000)

static int
setup_parser(void **state)
{
	struct validator *p = validator_new();

	if (p == NULL)
		return -1;
	*state = p;
	return 0;
}

static int
teardown_parser(void **state)
{
	validator_free(*state);
	return 0;
}

static enum msg_error
parse(void **state, enum msg_kind kind, const char *s, size_t n, struct alarm_msg *m)
{
	return validate_message(*state, kind, s, n, &default_limits, TEST_NOW_MS, m);
}

/* Reproducible pseudo-random numbers (xorshift64*); state lives in each test. */
static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void
assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len)
{
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
}

static void
test_names(void **state)
{
	static const char *const want[MSG_E_COUNT] = {
		"ok", "oversized", "bad_utf8", "bad_json", "not_object", "lone_surrogate",
		"duplicate_field", "missing_field", "wrong_type", "empty_field", "id_too_long",
		"bad_status", "bad_timestamp", "future_timestamp",
	};
	(void)state;

	for (int e = 0; e < MSG_E_COUNT; e++)
		assert_string_equal(msg_error_name((enum msg_error)e), want[e]);
	assert_string_equal(msg_error_name(MSG_E_COUNT), "unknown");
}

static void
test_valid_status_changed(void **state)
{
	static const char msg[] =
	    "{\"AlarmID\":\"10baeb6b-199f-4300-8db7-1acbe744e3fc\","
	    "\"UserID\":\"u-1\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"2021-08-17T15:33:59.1+03:00\"}";
	struct alarm_msg m;
	char ts[RFC3339_MAXLEN + 1];

	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT(msg), &m), MSG_OK);
	assert_string_equal(validator_detail(*state), "");
	assert_int_equal(m.kind, MSG_STATUS_CHANGED);
	assert_bytes(m.alarm, m.alarm_len, LIT("10baeb6b-199f-4300-8db7-1acbe744e3fc"));
	assert_bytes(m.user, m.user_len, LIT("u-1"));
	assert_int_equal(m.status, STATUS_CRITICAL);
	assert_int_equal(m.changed_at.sec, 1629203639);
	assert_int_equal(m.changed_at.nsec, 100000000);
	assert_int_equal(m.changed_at.off_min, 180);
	rfc3339_format(&m.changed_at, ts, sizeof(ts));
	assert_string_equal(ts, "2021-08-17T15:33:59.1+03:00");
}

static void
test_valid_each_status(void **state)
{
	static const struct { const char *json; enum alarm_status want; } cases[] = {
		{ "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"CLEARED\","
		  "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", STATUS_CLEARED },
		{ "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
		  "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", STATUS_WARNING },
		{ "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"CRITICAL\","
		  "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", STATUS_CRITICAL },
		/* An escape that decodes to the exact word is the exact word. */
		{ "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"CRIT\\u0049CAL\","
		  "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", STATUS_CRITICAL },
	};
	struct alarm_msg m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(state, MSG_STATUS_CHANGED, cases[i].json,
		    strlen(cases[i].json), &m), MSG_OK);
		assert_int_equal(m.status, cases[i].want);
	}
}

static void
test_valid_digest_request(void **state)
{
	struct alarm_msg m;

	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"u-42\"}"), &m),
	    MSG_OK);
	assert_int_equal(m.kind, MSG_DIGEST_REQUEST);
	assert_bytes(m.user, m.user_len, LIT("u-42"));
	assert_null(m.alarm);
	assert_int_equal(m.alarm_len, 0);

	/* Fields a digest request does not need are unknown fields to it. */
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"u\",\"AlarmID\":7,\"Status\":\"bogus\",\"ChangedAt\":null}"), &m),
	    MSG_OK);
	assert_bytes(m.user, m.user_len, LIT("u"));
}

/* Extra fields, odd spacing, key order, and look-alike keys are all fine. */
static void
test_valid_tolerated_forms(void **state)
{
	static const char *const ok[] = {
		/* unknown extra fields of every type */
		"{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
		"\"ChangedAt\":\"2021-06-07T20:40:15Z\",\"Extra\":{\"x\":[1,2.5e-3,true,null]},"
		"\"n\":-0.0,\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}",
		/* look-alike keys are ignored beside the real ones */
		"{\"userid\":\"x\",\"USERID\":5,\"UserId\":null,\"AlarmID\":\"a\",\"UserID\":\"u\","
		"\"status\":\"bad\",\"Status\":\"WARNING\",\"changedAt\":1,"
		"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}",
		/* any order, any JSON whitespace, before and after */
		" \t\r\n{ \"ChangedAt\" : \"2021-06-07T20:40:15Z\" ,\n\"Status\":\"WARNING\","
		"\"UserID\":\"u\"\t,\"AlarmID\"\r:\"a\" }\n",
		"{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
		"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}   \r\n\t",
		/* non-ASCII UTF-8 in unknown fields */
		"{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
		"\"ChangedAt\":\"2021-06-07T20:40:15Z\",\"note\":\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
		/* an unknown key twice: nothing reads it, so nothing is ambiguous */
		"{\"AlarmID\":\"a\",\"x\":1,\"UserID\":\"u\",\"x\":\"2\",\"Status\":\"WARNING\","
		"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}",
	};
	struct alarm_msg m;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		enum msg_error e = parse(state, MSG_STATUS_CHANGED, ok[i], strlen(ok[i]), &m);

		if (e != MSG_OK)
			fail_msg("case %zu: %s: %s", i, msg_error_name(e), validator_detail(*state));
		assert_bytes(m.user, m.user_len, LIT("u"));
		assert_bytes(m.alarm, m.alarm_len, LIT("a"));
		assert_int_equal(m.status, STATUS_WARNING);
	}
}

/* IDs are opaque bytes: escapes decode, and a NUL is just another byte. */
static void
test_valid_escaped_ids(void **state)
{
	struct alarm_msg m;

	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"caf\\u00e9-\\ud83d\\ude00-\xc3\xa9\"}"), &m), MSG_OK);
	assert_bytes(m.user, m.user_len, LIT("caf\xc3\xa9-\xf0\x9f\x98\x80-\xc3\xa9"));

	assert_int_equal(parse(state, MSG_STATUS_CHANGED,
	    LIT("{\"AlarmID\":\"a\\u0000b\",\"UserID\":\"\\u0000\",\"Status\":\"CLEARED\","
	    "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}"), &m), MSG_OK);
	assert_bytes(m.alarm, m.alarm_len, "a\0b", 3);
	assert_bytes(m.user, m.user_len, "\0", 1);
}

struct bad_case {
	enum msg_kind kind;
	const char *data;
	size_t len;
	enum msg_error want;
};

#define SC MSG_STATUS_CHANGED
#define DR MSG_DIGEST_REQUEST
#define BAD(kind, s, want) { kind, s, sizeof(s) - 1, want }
/* A status message with one field's JSON text replaced. */
#define WITH_ALARM(v) "{\"AlarmID\":" v ",\"UserID\":\"u\",\"Status\":\"WARNING\"," \
	"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}"
#define WITH_USER(v) "{\"AlarmID\":\"a\",\"UserID\":" v ",\"Status\":\"WARNING\"," \
	"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}"
#define WITH_STATUS(v) "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":" v "," \
	"\"ChangedAt\":\"2021-06-07T20:40:15Z\"}"
#define WITH_TIME(v) "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\"," \
	"\"ChangedAt\":" v "}"

static const struct bad_case bad_cases[] = {
	/* not a single JSON object */
	BAD(SC, "", MSG_E_JSON),
	BAD(SC, " \n\t", MSG_E_JSON),
	BAD(SC, "[]", MSG_E_NOT_OBJECT),
	BAD(SC, "[{\"UserID\":\"u\"}]", MSG_E_NOT_OBJECT),
	BAD(DR, "\"UserID\"", MSG_E_NOT_OBJECT),
	BAD(DR, "42", MSG_E_NOT_OBJECT),
	BAD(DR, "-1.5e3", MSG_E_NOT_OBJECT),
	BAD(DR, "true", MSG_E_NOT_OBJECT),
	BAD(DR, "null", MSG_E_NOT_OBJECT),
	BAD(DR, "{\"UserID\":\"u\"} x", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"}{}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"}}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"},", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"}\0", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"}\f", MSG_E_JSON),     /* \f is not JSON whitespace */
	BAD(DR, "{\"UserID\":\"u\"}\xc2\xa0", MSG_E_JSON),   /* nor is U+00A0 */
	BAD(DR, "42 x", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u", MSG_E_JSON),
	BAD(DR, "{\"UserID\":", MSG_E_JSON),
	BAD(DR, "{", MSG_E_JSON),
	BAD(DR, "}", MSG_E_JSON),
	BAD(DR, "\0{\"UserID\":\"u\"}", MSG_E_JSON),
	BAD(DR, "\xef\xbb\xbf{\"UserID\":\"u\"}", MSG_E_JSON),   /* BOM */
	/* things json-c's strict mode lets through, but JSON does not allow */
	BAD(DR, "{'UserID':'u'}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":NaN}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":Infinity}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":-Infinity}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":1.}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":.5}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":01}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":+1}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":1e}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":0x10}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":True}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"n\":nul}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\\tv\"}", MSG_OK),         /* escaped tab: fine */
	BAD(DR, "{\"UserID\":\"u\tv\"}", MSG_E_JSON),      /* raw tab: not JSON */
	BAD(DR, "{\"UserID\":\"u\x01v\"}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\\x41\"}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\\u12\"}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\\u12G4\"}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"a\":[1,]}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\",\"a\":[1 2]}", MSG_E_JSON),
	BAD(DR, "{\"UserID\" \"u\"}", MSG_E_JSON),
	BAD(DR, "{UserID:\"u\"}", MSG_E_JSON),
	BAD(DR, "{\"UserID\":\"u\"/*c*/}", MSG_E_JSON),
	BAD(DR, "//c\n{\"UserID\":\"u\"}", MSG_E_JSON),
	/* a key json-c would truncate at the NUL and confuse with UserID */
	BAD(DR, "{\"UserID\":\"u\",\"UserID\\u0000x\":\"evil\"}", MSG_E_JSON),
	/* invalid UTF-8, inside a string and outside one */
	BAD(DR, "{\"UserID\":\"u\xff\"}", MSG_E_UTF8),
	BAD(DR, "{\"UserID\":\"u\",\"x\":\"\xc0\xaf\"}", MSG_E_UTF8),            /* overlong '/' */
	BAD(DR, "{\"UserID\":\"\xe0\x80\xaf\"}", MSG_E_UTF8),                    /* overlong */
	BAD(DR, "{\"UserID\":\"\xf0\x80\x80\xaf\"}", MSG_E_UTF8),                /* overlong */
	BAD(DR, "{\"UserID\":\"\xed\xa0\x80\"}", MSG_E_UTF8),                    /* U+D800 */
	BAD(DR, "{\"UserID\":\"\xed\xbf\xbf\"}", MSG_E_UTF8),                    /* U+DFFF */
	BAD(DR, "{\"UserID\":\"\xf4\x90\x80\x80\"}", MSG_E_UTF8),                /* U+110000 */
	BAD(DR, "{\"UserID\":\"\xf5\x80\x80\x80\"}", MSG_E_UTF8),
	BAD(DR, "{\"UserID\":\"\x80\"}", MSG_E_UTF8),                            /* lone continuation */
	BAD(DR, "{\"UserID\":\"\xc3\"}", MSG_E_UTF8),                            /* truncated */
	BAD(DR, "{\"UserID\":\"\xe2\x82\"}", MSG_E_UTF8),
	BAD(DR, "{\"UserID\":\"u\"}\xe2\x82", MSG_E_UTF8),                       /* truncated at end */
	BAD(DR, "{\"UserID\":\"u\"}\xf0", MSG_E_UTF8),
	BAD(DR, "{\"UserID\":\"u\",\xff\"x\":1}", MSG_E_UTF8),                   /* between tokens */
	BAD(DR, "\xfe\xff{\"UserID\":\"u\"}", MSG_E_UTF8),
	BAD(DR, "{\"UserID\":\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"}", MSG_OK), /* edges: valid */
	/* missing fields; look-alike keys do not count */
	BAD(DR, "{}", MSG_E_MISSING),
	BAD(DR, "{\"userid\":\"u\"}", MSG_E_MISSING),
	BAD(DR, "{\"USERID\":\"u\",\"UserId\":\"u\",\"User ID\":\"u\",\"UserID \":\"u\"}", MSG_E_MISSING),
	BAD(DR, "{\"x\":{\"UserID\":\"u\"}}", MSG_E_MISSING),
	BAD(SC, "{\"UserID\":\"u\",\"Status\":\"WARNING\",\"ChangedAt\":\"2021-06-07T20:40:15Z\"}",
	    MSG_E_MISSING),
	BAD(SC, "{\"AlarmID\":\"a\",\"Status\":\"WARNING\",\"ChangedAt\":\"2021-06-07T20:40:15Z\"}",
	    MSG_E_MISSING),
	BAD(SC, "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"ChangedAt\":\"2021-06-07T20:40:15Z\"}",
	    MSG_E_MISSING),
	BAD(SC, "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\"}", MSG_E_MISSING),
	BAD(SC, "{\"alarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", MSG_E_MISSING),
	/* wrong type, for each field */
	BAD(DR, "{\"UserID\":null}", MSG_E_TYPE),
	BAD(DR, "{\"UserID\":42}", MSG_E_TYPE),
	BAD(DR, "{\"UserID\":1.5}", MSG_E_TYPE),
	BAD(DR, "{\"UserID\":true}", MSG_E_TYPE),
	BAD(DR, "{\"UserID\":{\"id\":\"u\"}}", MSG_E_TYPE),
	BAD(DR, "{\"UserID\":[\"u\"]}", MSG_E_TYPE),
	BAD(SC, WITH_ALARM("null"), MSG_E_TYPE),
	BAD(SC, WITH_ALARM("17"), MSG_E_TYPE),
	BAD(SC, WITH_ALARM("[]"), MSG_E_TYPE),
	BAD(SC, WITH_USER("null"), MSG_E_TYPE),
	BAD(SC, WITH_USER("{}"), MSG_E_TYPE),
	BAD(SC, WITH_USER("false"), MSG_E_TYPE),
	BAD(SC, WITH_STATUS("null"), MSG_E_TYPE),
	BAD(SC, WITH_STATUS("2"), MSG_E_TYPE),
	BAD(SC, WITH_STATUS("[\"CRITICAL\"]"), MSG_E_TYPE),
	BAD(SC, WITH_TIME("null"), MSG_E_TYPE),
	BAD(SC, WITH_TIME("1629203639"), MSG_E_TYPE),
	BAD(SC, WITH_TIME("{\"sec\":1}"), MSG_E_TYPE),
	/* empty strings */
	BAD(DR, "{\"UserID\":\"\"}", MSG_E_EMPTY),
	BAD(SC, WITH_ALARM("\"\""), MSG_E_EMPTY),
	BAD(SC, WITH_USER("\"\""), MSG_E_EMPTY),
	BAD(SC, WITH_STATUS("\"\""), MSG_E_EMPTY),
	BAD(SC, WITH_TIME("\"\""), MSG_E_EMPTY),
	/* Status: exactly one of three upper-case words */
	BAD(SC, WITH_STATUS("\"critical\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"Critical\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"cleared\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"CRITICAL \""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\" WARNING\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"CRIT\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"CRITICALX\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"CRITICAL\\u0000\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"OK\""), MSG_E_STATUS),
	BAD(SC, WITH_STATUS("\"ACTIVE\""), MSG_E_STATUS),
	/* ChangedAt: the SPEC's RFC 3339 form only */
	BAD(SC, WITH_TIME("\"2021-08-17t15:33:59Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59.1234567890Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-02-29T00:00:00Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T24:00:00Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59+24:00\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59+0300\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-13-01T00:00:00Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:60Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17 15:33:59Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\" 2021-08-17T15:33:59Z\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59Z\\u0000\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"yesterday\""), MSG_E_TIMESTAMP),
	BAD(SC, WITH_TIME("\"2021-08-17T15:33:59.1+03:00\""), MSG_OK),
	BAD(SC, WITH_TIME("\"2024-02-29T00:00:00-00:00\""), MSG_OK),
	/* the first failing field decides, in AlarmID, UserID, Status, ChangedAt order */
	BAD(SC, "{\"AlarmID\":1,\"UserID\":\"\",\"Status\":\"x\",\"ChangedAt\":\"y\"}", MSG_E_TYPE),
	BAD(SC, "{\"AlarmID\":\"a\",\"UserID\":\"\",\"Status\":\"x\",\"ChangedAt\":\"y\"}", MSG_E_EMPTY),
	BAD(SC, "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"x\",\"ChangedAt\":\"y\"}", MSG_E_STATUS),
	/* the three rules json-c would paper over (more in their own tests below) */
	BAD(DR, "{\"UserID\":\"\\ud800\"}", MSG_E_SURROGATE),
	BAD(DR, "{\"UserID\":\"\\udc00\"}", MSG_E_SURROGATE),
	BAD(DR, "{\"UserID\":\"a\",\"UserID\":\"b\"}", MSG_E_DUPLICATE),
	BAD(SC, WITH_TIME("\"9999-12-31T23:59:59Z\""), MSG_E_FUTURE),
};

static void
test_malformed_table(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct alarm_msg m;
		enum msg_error e = parse(state, c->kind, c->data, c->len, &m);
		const char *detail = validator_detail(*state);

		if (e != c->want)
			fail_msg("case %zu (%.*s): got %s, want %s: %s", i, (int)c->len, c->data,
			    msg_error_name(e), msg_error_name(c->want), detail);
		if (c->want == MSG_OK)
			assert_string_equal(detail, "");
		else if (detail[0] == '\0')
			fail_msg("case %zu: no detail", i);
	}
}

/* A rejected parse leaves *out alone: callers cannot act on half a message. */
static void
test_error_leaves_out_untouched(void **state)
{
	struct alarm_msg m, before;

	memset(&m, 0xa5, sizeof(m));
	before = m;
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT(WITH_TIME("\"bad\"")), &m),
	    MSG_E_TIMESTAMP);
	assert_memory_equal(&m, &before, sizeof(m));
}

static char *
make_id_msg(enum msg_kind kind, size_t user_len, size_t alarm_len, size_t *len)
{
	size_t cap = user_len + alarm_len + 256;
	char *s = malloc(cap), *user = malloc(user_len + 1), *alarm = malloc(alarm_len + 1);
	int n;

	assert_non_null(s);
	assert_non_null(user);
	assert_non_null(alarm);
	memset(user, 'u', user_len);
	user[user_len] = '\0';
	memset(alarm, 'a', alarm_len);
	alarm[alarm_len] = '\0';
	if (kind == MSG_DIGEST_REQUEST)
		n = snprintf(s, cap, "{\"UserID\":\"%s\"}", user);
	else
		n = snprintf(s, cap, "{\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"WARNING\","
		    "\"ChangedAt\":\"2021-06-07T20:40:15Z\"}", alarm, user);
	assert_true(n > 0 && (size_t)n < cap);
	free(user);
	free(alarm);
	*len = (size_t)n;
	return s;
}

static void
test_id_length_limits(void **state)
{
	static const struct { enum msg_kind kind; size_t user, alarm; enum msg_error want; } cases[] = {
		{ MSG_DIGEST_REQUEST, 256, 0, MSG_OK },
		{ MSG_DIGEST_REQUEST, 257, 0, MSG_E_ID_LENGTH },
		{ MSG_STATUS_CHANGED, 256, 256, MSG_OK },
		{ MSG_STATUS_CHANGED, 257, 1, MSG_E_ID_LENGTH },
		{ MSG_STATUS_CHANGED, 1, 257, MSG_E_ID_LENGTH },
		{ MSG_STATUS_CHANGED, 300, 1, MSG_E_ID_LENGTH },
	};
	struct alarm_msg m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *s = make_id_msg(cases[i].kind, cases[i].user, cases[i].alarm, &len);

		assert_int_equal(parse(state, cases[i].kind, s, len, &m), cases[i].want);
		if (cases[i].want == MSG_OK)
			assert_int_equal(m.user_len, cases[i].user);
		free(s);
	}
	assert_string_equal(validator_detail(*state),
	    "field UserID: 300 bytes exceeds max_id_bytes 256");

	/* The limit counts decoded bytes, so an escape counts once. */
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"\\u00e9\\u00e9\"}"), &m), MSG_OK);
	assert_int_equal(m.user_len, 4);
}

static void
test_custom_limits(void **state)
{
	const struct msg_limits lim = { .max_message_bytes = 40, .max_id_bytes = 3,
		.max_future_ms = 0 };
	static const char fits[] = "{\"UserID\":\"abc\"}";
	static const char exact[] = "{\"UserID\":\"abc\",\"pad\":\"xxxxxxxxxxx\"}    ";
	struct alarm_msg m;

	assert_int_equal(sizeof(exact) - 1, 40);
	assert_int_equal(validate_message(*state, MSG_DIGEST_REQUEST, LIT(fits), &lim, TEST_NOW_MS,
	    &m), MSG_OK);
	assert_int_equal(validate_message(*state, MSG_DIGEST_REQUEST, LIT(exact), &lim, TEST_NOW_MS,
	    &m), MSG_OK);
	assert_int_equal(validate_message(*state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"abcd\"}"),
	    &lim, TEST_NOW_MS, &m), MSG_E_ID_LENGTH);
	assert_string_equal(validator_detail(*state),
	    "field UserID: 4 bytes exceeds max_id_bytes 3");
	assert_int_equal(validate_message(*state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"abc\",\"pad\":\"xxxxxxxxxxx\"}     "), &lim, TEST_NOW_MS, &m),
	    MSG_E_SIZE);
	assert_string_equal(validator_detail(*state),
	    "payload of 41 bytes exceeds max_message_bytes 40");
	/* NULL limits mean the defaults. */
	assert_int_equal(validate_message(*state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"abcd\"}"),
	    NULL, TEST_NOW_MS, &m), MSG_OK);
}

/* Size is judged before anything else: oversized garbage is "oversized". */
static void
test_oversized(void **state)
{
	size_t len = 70000;
	char *s = malloc(len);
	struct alarm_msg m;

	assert_non_null(s);
	memset(s, 0xff, len);
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, len, &m), MSG_E_SIZE);
	assert_string_equal(validator_detail(*state),
	    "payload of 70000 bytes exceeds max_message_bytes 65536");
	free(s);

	/* Exactly 65536 bytes of a valid message is accepted. */
	len = 65536;
	s = malloc(len);
	assert_non_null(s);
	memset(s, ' ', len);
	memcpy(s, "{\"UserID\":\"u\"}", 14);
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, len, &m), MSG_OK);
	free(s);
}

static void
test_nesting_depth(void **state)
{
	char s[256];
	struct alarm_msg m;
	size_t n;

	/* Unknown fields may nest (here 31 deep inside the message object). */
	n = (size_t)snprintf(s, sizeof(s), "{\"UserID\":\"u\",\"x\":");
	for (int i = 0; i < 31; i++)
		s[n++] = '[';
	for (int i = 0; i < 31; i++)
		s[n++] = ']';
	s[n++] = '}';
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, n, &m), MSG_OK);

	/* The same with a value in the innermost: still 32 levels (json-c would count 33). */
	n = (size_t)snprintf(s, sizeof(s), "{\"UserID\":\"u\",\"x\":");
	for (int i = 0; i < 31; i++)
		s[n++] = '[';
	s[n++] = '0';
	for (int i = 0; i < 31; i++)
		s[n++] = ']';
	s[n++] = '}';
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, n, &m), MSG_OK);
	/* One level more is too deep. */
	memmove(s + 19, s + 18, n - 18);
	s[18] = '[';
	s[n + 1] = '}';
	s[n] = ']';
	n += 2;
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, n, &m), MSG_E_JSON);

	/* Far too deep is rejected cleanly, not by stack exhaustion. */
	n = (size_t)snprintf(s, sizeof(s), "{\"UserID\":\"u\",\"x\":");
	for (int i = 0; i < 100; i++)
		s[n++] = '[';
	for (int i = 0; i < 100; i++)
		s[n++] = ']';
	s[n++] = '}';
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, s, n, &m), MSG_E_JSON);
	assert_non_null(strstr(validator_detail(*state), "nesting too deep"));
}

static void
test_detail_sentences(void **state)
{
	static const struct { enum msg_kind kind; const char *json; const char *want; } cases[] = {
		{ SC, WITH_TIME("\"2021-13-01T00:00:00Z\""),
		  "field ChangedAt: \"2021-13-01T00:00:00Z\" is not a valid RFC 3339 timestamp" },
		{ SC, WITH_STATUS("\"Critical\""),
		  "field Status: \"Critical\" is not CLEARED, WARNING or CRITICAL" },
		{ DR, "{}", "field UserID is missing" },
		{ DR, "{\"userid\":\"u\"}", "field UserID is missing" },
		{ SC, WITH_ALARM("\"\""), "field AlarmID is empty" },
		{ DR, "{\"UserID\":42}", "field UserID: expected a string, got number 42" },
		{ DR, "{\"UserID\":null}", "field UserID: expected a string, got null" },
		{ DR, "{\"UserID\":{\"a\":[1]}}",
		  "field UserID: expected a string, got object {\\\"a\\\":[1]}" },
		{ DR, "", "empty payload" },
		{ DR, "[1]", "payload is a JSON array, not an object" },
		{ DR, "{\"UserID\":\"u\"} x",
		  "invalid JSON at byte 15: unexpected bytes after the JSON value" },
		{ DR, "{\"UserID\":'u'}", "invalid JSON at byte 10: unexpected character" },
		{ DR, "{\"UserID\":\"u\xc0\xaf\"}", "invalid UTF-8 at byte 12: \"\\xc0\\xaf\\\"}\"" },
	};
	struct alarm_msg m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_not_equal(parse(state, cases[i].kind, cases[i].json,
		    strlen(cases[i].json), &m), MSG_OK);
		assert_string_equal(validator_detail(*state), cases[i].want);
	}
}

/* Quoted values are cut to 64 bytes and never carry control or non-ASCII bytes. */
static void
test_detail_escaping(void **state)
{
	char json[512];
	struct alarm_msg m;
	const char *d;
	int n;

	n = snprintf(json, sizeof(json), WITH_TIME("\"%s\""),
	    "\\u0000\\n\\\"\\\\\xc3\xa9 0123456789012345678901234567890123456789012345678901234567890123456789");
	assert_true(n > 0 && (size_t)n < sizeof(json));
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, json, (size_t)n, &m), MSG_E_TIMESTAMP);
	d = validator_detail(*state);
	assert_string_equal(d, "field ChangedAt: \"\\x00\\x0a\\\"\\\\\\xc3\\xa9 "
	    "0123456789012345678901234567890123456789012...\" "
	    "is not a valid RFC 3339 timestamp");
	for (const char *c = d; *c != '\0'; c++)
		assert_true(*c >= 0x20 && *c < 0x7f);

	/* Plain text needs no escapes: its first 64 bytes are shown. */
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT(WITH_STATUS(
	    "\"0123456789012345678901234567890123456789012345678901234567890123456789\"")), &m),
	    MSG_E_STATUS);
	assert_string_equal(validator_detail(*state), "field Status: "
	    "\"0123456789012345678901234567890123456789012345678901234567890123...\" "
	    "is not CLEARED, WARNING or CRITICAL");
}

/* ---- escaped lone surrogates (json-c would write U+FFFD, merging different IDs) ---- */

static void
test_surrogate_pairs_valid(void **state)
{
	static const struct { const char *json; const char *user; size_t user_len; } ok[] = {
		/* a pair, lower- and upper-case hex, and mixed */
		{ "{\"UserID\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80", 4 },
		{ "{\"UserID\":\"\\uD800\\uDC00\"}", "\xf0\x90\x80\x80", 4 },
		{ "{\"UserID\":\"\\uD83D\\ude00\"}", "\xf0\x9f\x98\x80", 4 },
		{ "{\"UserID\":\"\\udbff\\udfff\"}", "\xf4\x8f\xbf\xbf", 4 },
		/* two pairs back to back, and a pair between other text */
		{ "{\"UserID\":\"\\ud800\\udc00\\udbff\\udfff\"}", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8 },
		{ "{\"UserID\":\"a\\ud800\\udc00b\"}", "a\xf0\x90\x80\x80" "b", 6 },
		/*
		 * pairs whose code point's low 16 bits look like a surrogate:
		 * json-c 0.16 writes U+FFFD for them, so fuzz_validate cannot
		 * check them against it
		 */
		{ "{\"UserID\":\"\\ud836\\ude00\"}", "\xf0\x9d\xa8\x80", 4 },
		{ "{\"UserID\":\"\\udbf6\\udc00\"}", "\xf4\x8d\xa0\x80", 4 },
		{ "{\"UserID\":\"\\ud8f6\\udfff\"}", "\xf1\x8d\xaf\xbf", 4 },
		/* just outside the surrogate range on both sides */
		{ "{\"UserID\":\"\\ud7ff\\ue000\"}", "\xed\x9f\xbf\xee\x80\x80", 6 },
		/* an escaped backslash before "ud800" is text, not an escape */
		{ "{\"UserID\":\"\\\\ud800\"}", "\\ud800", 6 },
	};
	struct alarm_msg m;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		enum msg_error e = parse(state, MSG_DIGEST_REQUEST, ok[i].json, strlen(ok[i].json), &m);

		if (e != MSG_OK)
			fail_msg("case %zu: %s: %s", i, msg_error_name(e), validator_detail(*state));
		assert_bytes(m.user, m.user_len, ok[i].user, ok[i].user_len);
	}
}

static void
test_surrogate_lone_rejected(void **state)
{
	static const struct bad_case cases[] = {
		/* a high half at the end of the string, before text, before another escape */
		BAD(DR, "{\"UserID\":\"\\ud800\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\uDBFF\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800x\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800 \\udc00\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800\\n\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800\\u0041\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800\\ue000\"}", MSG_E_SURROGATE),
		/* two high halves: the second pairs, the first stays lone */
		BAD(DR, "{\"UserID\":\"\\ud800\\ud800\\udc00\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800\\ud800\"}", MSG_E_SURROGATE),
		/* a low half alone, first, or after a complete pair; a reversed pair */
		BAD(DR, "{\"UserID\":\"\\udc00\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\uDFFF\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"a\\udc00\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\ud800\\udc00\\udc00\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"\\udc00\\ud800\"}", MSG_E_SURROGATE),
		/* in every field of an update */
		BAD(SC, WITH_ALARM("\"a\\ud800\""), MSG_E_SURROGATE),
		BAD(SC, WITH_USER("\"\\udfff\""), MSG_E_SURROGATE),
		BAD(SC, WITH_STATUS("\"\\ud800\""), MSG_E_SURROGATE),
		BAD(SC, WITH_TIME("\"2021-06-07T20:40:15Z\\ud800\""), MSG_E_SURROGATE),
		/* in unknown fields, their keys, and nested values: every string counts */
		BAD(DR, "{\"UserID\":\"u\",\"note\":\"\\ud800\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"u\",\"\\udc00\":1}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"u\",\"x\":[1,{\"y\":\"\\udbff\"}]}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"u\",\"x\":{\"\\ud800\":null}}", MSG_E_SURROGATE),
		BAD(SC, "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\","
		    "\"ChangedAt\":\"2021-06-07T20:40:15Z\",\"note\":[\"\\udc00\"]}", MSG_E_SURROGATE),
		/* the checks before it still decide first */
		BAD(DR, "{\"UserID\":\"\\ud800\",}", MSG_E_JSON),
		BAD(DR, "{\"UserID\":\"\\ud800\\uZZZZ\"}", MSG_E_JSON),
		BAD(DR, "{\"UserID\":\"\\ud800\\u12\"}", MSG_E_JSON),
		BAD(DR, "{\"UserID\":\"\\ud800\"} x", MSG_E_JSON),
		BAD(DR, "{\"UserID\":\"\\ud800\",\"UserID\\u0000\":1}", MSG_E_JSON),
		BAD(DR, "{\"UserID\":\"\\ud800\xff\"}", MSG_E_UTF8),
		BAD(DR, "[\"\\ud800\"]", MSG_E_NOT_OBJECT),
		/* ... and it decides before the fields are looked at */
		BAD(DR, "{\"UserID\":42,\"x\":\"\\ud800\"}", MSG_E_SURROGATE),
		BAD(SC, "{\"x\":\"\\udc00\"}", MSG_E_SURROGATE),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		struct alarm_msg m;
		enum msg_error e = parse(state, c->kind, c->data, c->len, &m);

		if (e != c->want)
			fail_msg("case %zu (%.*s): got %s, want %s: %s", i, (int)c->len, c->data,
			    msg_error_name(e), msg_error_name(c->want), validator_detail(*state));
	}
}

static void
test_surrogate_detail(void **state)
{
	struct alarm_msg m;

	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"\\ud800\"}"), &m),
	    MSG_E_SURROGATE);
	assert_string_equal(validator_detail(*state), "escaped lone surrogate at byte 11: \\ud800 "
	    "is not followed by an escaped low surrogate \\udc00-\\udfff");
	/* The first lone one is named, in the case it was written in. */
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"a\\uDC00\",\"x\":\"\\ud800\"}"), &m), MSG_E_SURROGATE);
	assert_string_equal(validator_detail(*state), "escaped lone surrogate at byte 12: \\uDC00 "
	    "does not follow an escaped high surrogate \\ud800-\\udbff");
}

/* ---- a field given twice (json-c keeps the last) ---- */

#define UPD_FIELDS "\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"WARNING\"," \
	"\"ChangedAt\":\"2021-06-07T20:40:15Z\""

static void
test_duplicate_fields(void **state)
{
	static const struct bad_case cases[] = {
		/* each of the four, before and after the others, same value or not */
		BAD(SC, "{" UPD_FIELDS ",\"AlarmID\":\"b\"}", MSG_E_DUPLICATE),
		BAD(SC, "{\"UserID\":\"v\"," UPD_FIELDS "}", MSG_E_DUPLICATE),
		BAD(SC, "{" UPD_FIELDS ",\"Status\":\"WARNING\"}", MSG_E_DUPLICATE),
		BAD(SC, "{\"ChangedAt\":\"2021-06-07T20:40:14Z\"," UPD_FIELDS "}", MSG_E_DUPLICATE),
		/* the second copy's type does not matter */
		BAD(SC, "{" UPD_FIELDS ",\"UserID\":null}", MSG_E_DUPLICATE),
		BAD(SC, "{" UPD_FIELDS ",\"Status\":{\"x\":1}}", MSG_E_DUPLICATE),
		/* three times */
		BAD(SC, "{" UPD_FIELDS ",\"AlarmID\":\"b\",\"AlarmID\":\"c\"}", MSG_E_DUPLICATE),
		/* a name spelled with escapes is that name, as json-c reads it */
		BAD(SC, "{" UPD_FIELDS ",\"User\\u0049D\":\"v\"}", MSG_E_DUPLICATE),
		BAD(SC, "{" UPD_FIELDS ",\"\\u0053\\u0074\\u0061\\u0074\\u0075\\u0073\":\"CLEARED\"}",
		    MSG_E_DUPLICATE),
		BAD(SC, "{" UPD_FIELDS ",\"\\u0043\\u0068\\u0061\\u006e\\u0067\\u0065\\u0064\\u0041"
		    "\\u0074\":\"x\"}", MSG_E_DUPLICATE),
		/* a digest request: its UserID */
		BAD(DR, "{\"UserID\":\"a\",\"UserID\":\"b\"}", MSG_E_DUPLICATE),
		BAD(DR, "{\"UserID\":\"a\",\"UserID\":\"a\"}", MSG_E_DUPLICATE),
		BAD(DR, "{\"UserID\":\"a\",\"U\\u0073erID\":\"b\"}", MSG_E_DUPLICATE),
		/* it decides before missing or bad fields, after lone surrogates */
		BAD(SC, "{\"AlarmID\":\"a\",\"AlarmID\":\"b\"}", MSG_E_DUPLICATE),
		BAD(DR, "{\"UserID\":1,\"UserID\":\"\"}", MSG_E_DUPLICATE),
		BAD(DR, "{\"UserID\":\"\\ud800\",\"UserID\":\"b\"}", MSG_E_SURROGATE),
		BAD(DR, "{\"UserID\":\"a\",\"UserID\":\"b\",}", MSG_E_JSON),

		/* fine: unknown fields twice, look-alikes, nested copies, other escapes */
		BAD(SC, "{" UPD_FIELDS ",\"x\":1,\"x\":2}", MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"userid\":\"v\",\"userid\":\"w\",\"USERID\":\"x\"}", MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"x\":{\"UserID\":\"v\",\"UserID\":\"w\"}}", MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"x\":[{\"Status\":1},{\"Status\":2}]}", MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"UserID \":\"v\",\"UserI\":\"w\",\"UserIDx\":\"y\"}", MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"UserID\\n\":\"v\",\"User\\/ID\":\"w\",\"Us\\u00e9rID\":1}",
		    MSG_OK),
		BAD(SC, "{" UPD_FIELDS ",\"\\u0055\\u0073\\u0065\\u0072\\u0049\\u0044\\u0020\":1}",
		    MSG_OK),
		/* a digest request reads only UserID: the other three are unknown fields to it */
		BAD(DR, "{\"UserID\":\"u\",\"AlarmID\":\"a\",\"AlarmID\":\"b\",\"Status\":1,\"Status\":2,"
		    "\"ChangedAt\":null,\"ChangedAt\":[]}", MSG_OK),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		struct alarm_msg m;
		enum msg_error e = parse(state, c->kind, c->data, c->len, &m);

		if (e != c->want)
			fail_msg("case %zu (%.*s): got %s, want %s: %s", i, (int)c->len, c->data,
			    msg_error_name(e), msg_error_name(c->want), validator_detail(*state));
		if (e == MSG_OK)
			assert_bytes(m.user, m.user_len, LIT("u"));
	}
}

static void
test_duplicate_detail(void **state)
{
	struct alarm_msg m;

	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"a\",\"UserID\":\"b\"}"), &m), MSG_E_DUPLICATE);
	assert_string_equal(validator_detail(*state),
	    "field UserID appears more than once (again at byte 14)");
	/* The earliest second copy is named, whichever field it is. */
	assert_int_equal(parse(state, MSG_STATUS_CHANGED,
	    LIT("{\"Status\":\"A\",\"UserID\":\"u\",\"UserID\":\"v\",\"Status\":\"B\"}"), &m),
	    MSG_E_DUPLICATE);
	assert_string_equal(validator_detail(*state),
	    "field UserID appears more than once (again at byte 27)");
}

/* ---- ChangedAt too far ahead of the clock ---- */

static enum msg_error
parse_time_at(void **state, const char *ts, int64_t now_ms, int64_t max_future_ms)
{
	const struct msg_limits lim = { .max_message_bytes = 65536, .max_id_bytes = 256,
		.max_future_ms = max_future_ms };
	char json[256];
	struct alarm_msg m;
	int n = snprintf(json, sizeof(json), WITH_TIME("\"%s\""), ts);

	assert_true(n > 0 && (size_t)n < sizeof(json));
	return validate_message(*state, MSG_STATUS_CHANGED, json, (size_t)n, &lim, now_ms, &m);
}

static void
test_future_allowance(void **state)
{
	static const struct {
		const char *ts;
		int64_t now_ms, max_future_ms;
		enum msg_error want;
	} cases[] = {
		/* the clock is 2026-01-01T00:00:00Z, the allowance 24h */
		{ "2026-01-02T00:00:00Z", TEST_NOW_MS, 86400000, MSG_OK },
		{ "2026-01-02T00:00:00.000000001Z", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		{ "2026-01-01T23:59:59.999999999Z", TEST_NOW_MS, 86400000, MSG_OK },
		{ "2026-01-02T00:00:01Z", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		/* an instant, whatever its offset */
		{ "2026-01-02T03:00:00+03:00", TEST_NOW_MS, 86400000, MSG_OK },
		{ "2026-01-02T03:00:00.000000001+03:00", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		{ "2026-01-01T23:00:00-01:00", TEST_NOW_MS, 86400000, MSG_OK },
		{ "2026-01-01T23:00:01-01:00", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		/* now and the past are fine, back to the earliest the grammar allows */
		{ "2026-01-01T00:00:00Z", TEST_NOW_MS, 86400000, MSG_OK },
		{ "2021-08-17T15:33:59Z", TEST_NOW_MS, 86400000, MSG_OK },
		{ "0000-01-01T00:00:00+23:59", TEST_NOW_MS, 86400000, MSG_OK },
		/* the year-9999 trap */
		{ "9999-12-31T23:59:59.999999999Z", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		{ "9999-12-31T23:59:59-23:59", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		{ "2027-01-01T00:00:00Z", TEST_NOW_MS, 86400000, MSG_E_FUTURE },
		/* other allowances, and milliseconds on the clock */
		{ "2026-01-01T00:00:01Z", TEST_NOW_MS, 1000, MSG_OK },
		{ "2026-01-01T00:00:01.000000001Z", TEST_NOW_MS, 1000, MSG_E_FUTURE },
		{ "2026-01-01T00:00:00.123Z", TEST_NOW_MS + 123, 0, MSG_OK },
		{ "2026-01-01T00:00:00.123000001Z", TEST_NOW_MS + 123, 0, MSG_E_FUTURE },
		/* the largest the config takes, 3650d (2026 to 2035 hold two 29 Februaries) */
		{ "2035-12-30T00:00:00Z", TEST_NOW_MS, INT64_C(3650) * 86400000, MSG_OK },
		{ "2035-12-30T00:00:00.000000001Z", TEST_NOW_MS, INT64_C(3650) * 86400000,
		  MSG_E_FUTURE },
		/* a clock before 1970 (1969-12-31T23:59:58.5Z) */
		{ "1969-12-31T23:59:58.5Z", -1500, 0, MSG_OK },
		{ "1969-12-31T23:59:58.500000001Z", -1500, 0, MSG_E_FUTURE },
		/* an allowance past what int64 milliseconds hold lets everything through */
		{ "9999-12-31T23:59:59Z", TEST_NOW_MS, INT64_MAX, MSG_OK },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum msg_error e = parse_time_at(state, cases[i].ts, cases[i].now_ms,
		    cases[i].max_future_ms);

		if (e != cases[i].want)
			fail_msg("case %zu (%s): got %s, want %s: %s", i, cases[i].ts, msg_error_name(e),
			    msg_error_name(cases[i].want), validator_detail(*state));
	}
}

static void
test_future_order_and_detail(void **state)
{
	struct alarm_msg m, before;

	/* NULL limits: 24h. */
	assert_int_equal(validate_message(*state, MSG_STATUS_CHANGED,
	    LIT(WITH_TIME("\"2026-01-02T00:00:00Z\"")), NULL, TEST_NOW_MS, &m), MSG_OK);
	assert_int_equal(validate_message(*state, MSG_STATUS_CHANGED,
	    LIT(WITH_TIME("\"2026-01-02T00:00:00.000000001Z\"")), NULL, TEST_NOW_MS, &m),
	    MSG_E_FUTURE);
	assert_string_equal(validator_detail(*state), "field ChangedAt: "
	    "\"2026-01-02T00:00:00.000000001Z\" is more than max_future 24h ahead of the "
	    "service's clock, 2026-01-01T00:00:00Z");
	assert_int_equal(parse_time_at(state, "9999-12-31T23:59:59Z", TEST_NOW_MS + 250, 90000),
	    MSG_E_FUTURE);
	assert_string_equal(validator_detail(*state), "field ChangedAt: \"9999-12-31T23:59:59Z\" "
	    "is more than max_future 90s ahead of the service's clock, 2026-01-01T00:00:00.25Z");
	assert_int_equal(parse_time_at(state, "9999-12-31T23:59:59Z", TEST_NOW_MS, 1500),
	    MSG_E_FUTURE);
	assert_non_null(strstr(validator_detail(*state), "max_future 1500ms ahead"));

	/* A timestamp the grammar rejects is bad_timestamp, not a future one. */
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT(WITH_TIME("\"9999-13-01T00:00:00Z\"")),
	    &m), MSG_E_TIMESTAMP);
	/* Every other field is checked first. */
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT("{\"AlarmID\":\"a\",\"UserID\":\"u\","
	    "\"Status\":\"bogus\",\"ChangedAt\":\"9999-12-31T23:59:59Z\"}"), &m), MSG_E_STATUS);
	/* A digest request has no ChangedAt: one among its unknown fields is ignored. */
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST,
	    LIT("{\"UserID\":\"u\",\"ChangedAt\":\"9999-12-31T23:59:59Z\"}"), &m), MSG_OK);
	/* A rejected message leaves *out alone. */
	memset(&m, 0xa5, sizeof(m));
	before = m;
	assert_int_equal(parse(state, MSG_STATUS_CHANGED, LIT(WITH_TIME("\"9999-12-31T23:59:59Z\"")),
	    &m), MSG_E_FUTURE);
	assert_memory_equal(&m, &before, sizeof(m));
}

/* Strings of one message stay valid while later messages come and go. */
static void
test_lifetime_and_reuse(void **state)
{
	struct alarm_msg a, b;
	char user_copy[16];

	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"first\"}"), &a), MSG_OK);
	assert_bytes(a.user, a.user_len, LIT("first"));
	memcpy(user_copy, a.user, a.user_len);
	/* An error in between must not break the next good parse (tokener reset). */
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":"), &b), MSG_E_JSON);
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"u"), &b), MSG_E_JSON);
	assert_int_equal(parse(state, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"second\"}"), &b),
	    MSG_OK);
	assert_bytes(b.user, b.user_len, LIT("second"));
	assert_memory_equal(user_copy, "first", 5);
	/* Many parsers coexist; each owns its own message. */
	struct validator *other = validator_new();
	assert_non_null(other);
	assert_int_equal(validate_message(other, MSG_DIGEST_REQUEST, LIT("{\"UserID\":\"third\"}"),
	    &default_limits, TEST_NOW_MS, &a), MSG_OK);
	assert_bytes(b.user, b.user_len, LIT("second"));
	assert_bytes(a.user, a.user_len, LIT("third"));
	validator_free(other);
	validator_free(NULL);
}

/* Mutate a seed: flip, insert, delete, duplicate or truncate bytes. */
static size_t
fuzz_mutate(uint64_t *rng, char *buf, size_t len, size_t cap)
{
	static const char interesting[] = "{}[]\":,\\u0 \t\nCRITICALZT+-.eE\x80\xbf\xc3\xed\xf0\xf4\xff";
	int rounds = 1 + (int)(rng_next(rng) % 4);

	for (int r = 0; r < rounds; r++) {
		size_t pos = len ? (size_t)(rng_next(rng) % len) : 0;
		char c = rng_next(rng) % 4 == 0 ? (char)rng_next(rng) :
		    interesting[rng_next(rng) % (sizeof(interesting) - 1)];

		switch (rng_next(rng) % 5) {
		case 0:   /* replace */
			if (len > 0)
				buf[pos] = c;
			break;
		case 1:   /* insert */
			if (len < cap) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = c;
				len++;
			}
			break;
		case 2:   /* delete */
			if (len > 0) {
				memmove(buf + pos, buf + pos + 1, len - pos - 1);
				len--;
			}
			break;
		case 3: { /* duplicate a chunk */
			size_t n = (size_t)(rng_next(rng) % 16);

			if (n > len - pos)
				n = len - pos;
			if (len + n <= cap) {
				memmove(buf + pos + n, buf + pos, len - pos);
				len += n;
			}
			break;
		}
		default:  /* truncate */
			len = pos;
			break;
		}
	}
	return len;
}

static size_t
fuzz_touch(const char *s, size_t n)
{
	size_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)s[i];
	return sum;
}

static bool
fuzz_check(void **state, enum msg_kind kind, const char *buf, size_t len)
{
	struct msg_limits lim = { .max_message_bytes = 4096, .max_id_bytes = 40,
		.max_future_ms = 86400000 };
	struct alarm_msg m;
	enum msg_error e = validate_message(*state, kind, buf, len, &lim, TEST_NOW_MS, &m);
	const char *d = validator_detail(*state);
	int64_t local;

	assert_true(e >= MSG_OK && e < MSG_E_COUNT);
	for (const char *c = d; *c != '\0'; c++)
		assert_true(*c >= 0x20 && *c < 0x7f);
	if (e != MSG_OK) {
		assert_true(d[0] != '\0');
		return false;
	}
	/* Anything accepted is fully within the contract, and readable (for ASan). */
	assert_true(m.user_len > 0 && m.user_len <= lim.max_id_bytes);
	assert_true(fuzz_touch(m.user, m.user_len) <= 255 * m.user_len);
	if (kind == MSG_STATUS_CHANGED) {
		assert_true(m.alarm_len > 0 && m.alarm_len <= lim.max_id_bytes);
		assert_true(fuzz_touch(m.alarm, m.alarm_len) <= 255 * m.alarm_len);
		assert_true(m.status == STATUS_CLEARED || m.status == STATUS_WARNING ||
		    m.status == STATUS_CRITICAL);
		/* SPEC: 0-9 fraction digits, offset within +-23:59, wall time in 0000..9999. */
		assert_true(m.changed_at.nsec >= 0 && m.changed_at.nsec <= 999999999);
		assert_true(m.changed_at.off_min >= -1439 && m.changed_at.off_min <= 1439);
		local = m.changed_at.sec + (int64_t)m.changed_at.off_min * 60;
		assert_true(local >= -62167219200LL && local <= 253402300799LL);
		/* ... and no later than 2026-01-02T00:00:00Z, the clock plus max_future. */
		assert_true(m.changed_at.sec < 1767312000LL ||
		    (m.changed_at.sec == 1767312000LL && m.changed_at.nsec == 0));
	}
	return true;
}

static void
test_fuzz_never_crashes(void **state)
{
	static const char *const seeds[] = {
		"{\"AlarmID\":\"10baeb6b-199f-4300-8db7-1acbe744e3fc\",\"UserID\":\"u-1\","
		"\"Status\":\"CRITICAL\",\"ChangedAt\":\"2021-08-17T15:33:59.1+03:00\"}",
		"{\"UserID\":\"u\\u0000\\ud83d\\ude00\",\"AlarmID\":\"\xc3\xa9\",\"Status\":\"WARNING\","
		"\"ChangedAt\":\"2021-06-07T20:40:15.598765212Z\",\"x\":[1,-2.5e+3,true,null,{}]}",
		"{\"UserID\":\"u\"}",
		"[\"UserID\",{\"a\":\"b\"}]",
	};
	uint64_t rng = 0x452821e638d01377ULL;
	char buf[1024];
	int accepted = 0;

	for (int i = 0; i < 100000; i++) {
		enum msg_kind kind = i % 2 ? MSG_STATUS_CHANGED : MSG_DIGEST_REQUEST;
		size_t len;

		if (i % 10 == 0) {
			/* Pure noise, sometimes long. */
			len = (size_t)(rng_next(&rng) % (i % 1000 == 0 ? sizeof(buf) : 64));
			for (size_t j = 0; j < len; j++)
				buf[j] = (char)rng_next(&rng);
		} else {
			const char *seed = seeds[rng_next(&rng) % (sizeof(seeds) / sizeof(seeds[0]))];

			len = strlen(seed);
			memcpy(buf, seed, len);
			len = fuzz_mutate(&rng, buf, len, sizeof(buf));
		}
		/* Parse from an exact-size heap copy so ASan sees any over-read. */
		char *exact = malloc(len ? len : 1);
		assert_non_null(exact);
		memcpy(exact, buf, len);
		if (fuzz_check(state, kind, exact, len))
			accepted++;
		free(exact);
	}
	/* The mutator must leave some inputs valid, or it only tests rejection. */
	assert_true(accepted > 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_valid_status_changed, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_valid_each_status, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_valid_digest_request, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_valid_tolerated_forms, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_valid_escaped_ids, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_malformed_table, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_error_leaves_out_untouched, setup_parser,
		    teardown_parser),
		cmocka_unit_test_setup_teardown(test_id_length_limits, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_custom_limits, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_oversized, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_nesting_depth, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_detail_sentences, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_detail_escaping, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_surrogate_pairs_valid, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_surrogate_lone_rejected, setup_parser,
		    teardown_parser),
		cmocka_unit_test_setup_teardown(test_surrogate_detail, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_duplicate_fields, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_duplicate_detail, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_future_allowance, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_future_order_and_detail, setup_parser,
		    teardown_parser),
		cmocka_unit_test_setup_teardown(test_lifetime_and_reuse, setup_parser, teardown_parser),
		cmocka_unit_test_setup_teardown(test_fuzz_never_crashes, setup_parser, teardown_parser),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
