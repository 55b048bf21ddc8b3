/*
 * fuzz_validate: the message validator (common/validate.c) on arbitrary
 * payloads, as both kinds of message, with json-c as the reference for the
 * JSON grammar and for the fields.
 *
 * The validator judges the grammar itself and is deliberately stricter
 * than json-c (validate.c's header says where).  So:
 *   - a payload it takes as JSON (any verdict after bad_json) must parse
 *     with json-c's strict tokener, whole;
 *   - a payload it calls bad_json that json-c parses must be one of the
 *     documented stricter cases, checked at the byte the detail names:
 *     NaN/Infinity, single quotes, raw control characters in strings,
 *     trailing commas, "1.", "-.1", leading zeros ("00", "-01"), nesting deeper
 *     than the SPEC's limit, or an object key holding \u0000.
 * Both kinds must agree on everything up to the fields they read, and an
 * accepted message must hold what the SPEC allows.
 *
 * The validator reads the fields with its own single-pass reader; the
 * reference here reads them from json-c's object tree, as the validator
 * did before, and the two must reach the same verdict with the same
 * detail (a wrongly typed value's text aside: json-c prints it again, the
 * validator quotes it as it arrived) and extract the same bytes.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json.h>

#include "quote.h"
#include "rfc3339.h"
#include "validate.h"

#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "fuzz_validate: " __VA_ARGS__);         \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

/* 2021-08-17T15:33:59Z: a fixed clock keeps every run reproducible. */
#define FUZZ_NOW_MS INT64_C(1629214439000)
/* validate.c's limit: JSON_TOKENER_DEFAULT_DEPTH containers; json-c counts a scalar as one more. */
#define FUZZ_DEPTH (JSON_TOKENER_DEFAULT_DEPTH + 1)

static struct validator *fz_val;
static struct json_tokener *fz_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((fz_val = validator_new()) == NULL || (fz_tok = json_tokener_new_ex(FUZZ_DEPTH)) == NULL) {
		fprintf(stderr, "fuzz_validate: validator_new or json_tokener_new_ex: out of memory\n");
		exit(1);
	}
	json_tokener_set_flags(fz_tok, JSON_TOKENER_STRICT);
	return 0;
}

/* json-c's strict verdict on the whole payload: one value, then only blanks. */
static bool
jsonc_accepts(const char *s, size_t len)
{
	struct json_object *obj;
	bool ok;

	json_tokener_reset(fz_tok);
	obj = json_tokener_parse_ex(fz_tok, s, (int)len);
	/*
	 * A top-level number ends only where json-c sees the next byte, so it
	 * waits for more: one blank, which RFC 8259 allows after any value, ends it.
	 */
	if (obj == NULL && json_tokener_get_error(fz_tok) == json_tokener_continue) {
		obj = json_tokener_parse_ex(fz_tok, " ", 1);
		len = 0;   /* the blank was the rest of the input */
	}
	/* A literal null is a NULL object with success. */
	ok = json_tokener_get_error(fz_tok) == json_tokener_success;
	for (size_t i = json_tokener_get_parse_end(fz_tok); ok && i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			ok = false;
	json_object_put(obj);
	return ok;
}

/* Deepest nesting of [ and { outside strings, counted naively. */
static int
max_depth(const char *s, size_t len)
{
	int depth = 0, max = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"')
			in_str = true;
		else if (c == '[' || c == '{')
			max = ++depth > max ? depth : max;
		else if (c == ']' || c == '}')
			depth--;
	}
	return max;
}

/*
 * The validator called s bad_json at byte `at` for `why`, json-c took it:
 * only a documented stricter case may explain that, and the byte must show it.
 */
static bool
stricter_case(const char *s, size_t len, size_t at, const char *why)
{
	unsigned char c = at < len ? (unsigned char)s[at] : 0;
	size_t back = at;

	if (strstr(why, "\\u0000") != NULL)
		return true;   /* json-c would cut the key at the NUL: checked by the caller */
	if (strstr(why, "nesting too deep") != NULL)
		return max_depth(s, len) > JSON_TOKENER_DEFAULT_DEPTH;
	if (c == '\'')
		return true;   /* single quotes */
	if (strstr(why, "unescaped control character") != NULL)
		return c < 0x20;
	if (strstr(why, "digit expected after decimal point") != NULL)
		return at > 0 && s[at - 1] == '.';   /* "1." */
	/* "-.1": no digit before the point */
	if (strstr(why, "invalid number") != NULL && c == '.' && at > 0 && s[at - 1] == '-')
		return true;
	if (strstr(why, "invalid literal") != NULL || strstr(why, "unexpected character") != NULL ||
	    strstr(why, "invalid number") != NULL)
		/* NaN, Infinity, -Infinity, in json-c's spellings */
		return len - at >= 3 && (strncasecmp(s + at, "nan", 3) == 0 ||
		    strncasecmp(s + at, "inf", 3) == 0);
	/* A leading zero: json-c takes "00" and "-01"; the scanner fails at the second digit. */
	if (c >= '0' && c <= '9' && at > 0 && s[at - 1] == '0')
		return at == 1 || strchr("0123456789.eE+", s[at - 2]) == NULL;
	/* A trailing comma: "[1,]" or "{\"a\":1,}" fails at the closer after the comma. */
	if (c == ']' || c == '}') {
		while (back > 0 && strchr(" \t\n\r", s[back - 1]) != NULL)
			back--;
		return back > 0 && s[back - 1] == ',';
	}
	return false;
}

/* "invalid JSON at byte N: why" -> N and why. */
static bool
detail_position(const char *detail, size_t *at, const char **why)
{
	unsigned long long n;
	int end = 0;

	if (sscanf(detail, "invalid JSON at byte %llu: %n", &n, &end) != 1 || end == 0)
		return false;
	*at = (size_t)n;
	*why = detail + end;
	return true;
}

/* ---- the reference: the fields as json-c reads them ---- */

struct ref {
	struct json_object *obj;
	struct alarm_msg m;
	enum msg_error e;
	char detail[512];
	size_t type_prefix;   /* MSG_E_TYPE: detail bytes both readers must share */
};

static enum msg_error __attribute__((format(printf, 3, 4)))
ref_fail(struct ref *r, enum msg_error e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
	return r->e = e;
}

static enum msg_error
ref_field(struct ref *r, const char *name, const char **s, size_t *n)
{
	struct json_object *v;
	enum json_type type;
	int len;

	if (!json_object_object_get_ex(r->obj, name, &v))
		return ref_fail(r, MSG_E_MISSING, "field %s is missing", name);
	type = json_object_get_type(v);
	if (type != json_type_string) {
		/* What follows the type word is the value's text, which json-c writes its own way. */
		ref_fail(r, MSG_E_TYPE, "field %s: expected a string, got %s", name,
		    type == json_type_null ? "null" : type == json_type_boolean ?
		    (json_object_get_boolean(v) ? "true" : "false") :
		    type == json_type_int || type == json_type_double ? "number" :
		    json_type_to_name(type));
		r->type_prefix = strlen(r->detail);
		return MSG_E_TYPE;
	}
	len = json_object_get_string_len(v);
	if (len <= 0)
		return ref_fail(r, MSG_E_EMPTY, "field %s is empty", name);
	*s = json_object_get_string(v);
	*n = (size_t)len;
	return MSG_OK;
}

static enum msg_error
ref_id(struct ref *r, const char *name, const char **s, size_t *n)
{
	if (ref_field(r, name, s, n) != MSG_OK)
		return r->e;
	if (*n > MSG_DEFAULT_MAX_ID_BYTES)
		return ref_fail(r, MSG_E_ID_LENGTH, "field %s: %zu bytes exceeds max_id_bytes %d",
		    name, *n, MSG_DEFAULT_MAX_ID_BYTES);
	return MSG_OK;
}

static enum msg_error
ref_status_changed(struct ref *r)
{
	static const char *const names[] = { "CLEARED", "WARNING", "CRITICAL" };
	struct rfc3339_time latest = { .sec = FUZZ_NOW_MS / 1000 + 86400 }, now = { .sec = FUZZ_NOW_MS / 1000 };
	char shown[68], wall[RFC3339_MAXLEN + 1];
	const char *s;
	size_t n;
	int st = -1;

	if (ref_id(r, "AlarmID", &r->m.alarm, &r->m.alarm_len) != MSG_OK ||
	    ref_id(r, "UserID", &r->m.user, &r->m.user_len) != MSG_OK ||
	    ref_field(r, "Status", &s, &n) != MSG_OK)
		return r->e;
	for (int i = 0; i < 3; i++)
		if (n == strlen(names[i]) && memcmp(s, names[i], n) == 0)
			st = i;
	if (st < 0)
		return ref_fail(r, MSG_E_STATUS, "field Status: \"%s\" is not CLEARED, WARNING or CRITICAL",
		    quote_bytes(shown, sizeof(shown), s, n));
	r->m.status = (enum alarm_status)st;
	if (ref_field(r, "ChangedAt", &s, &n) != MSG_OK)
		return r->e;
	if (rfc3339_parse(s, n, &r->m.changed_at) != 0)
		return ref_fail(r, MSG_E_TIMESTAMP,
		    "field ChangedAt: \"%s\" is not a valid RFC 3339 timestamp",
		    quote_bytes(shown, sizeof(shown), s, n));
	if (rfc3339_cmp(&r->m.changed_at, &latest) > 0) {
		rfc3339_format(&now, wall, sizeof(wall));
		return ref_fail(r, MSG_E_FUTURE, "field ChangedAt: \"%s\" is more than max_future 24h "
		    "ahead of the service's clock, %s", quote_bytes(shown, sizeof(shown), s, n), wall);
	}
	return r->e = MSG_OK;
}

/* The reference verdict on a payload the validator took as a JSON object without duplicates. */
static void
ref_validate(struct ref *r, const char *s, size_t len, enum msg_kind kind)
{
	struct json_tokener *tok;

	memset(r, 0, sizeof(*r));
	r->m.kind = kind;
	/*
	 * A fresh tokener: json_tokener_reset (json-c 0.16) leaves a half-read
	 * \u escape's surrogate state behind, so an earlier payload with a lone
	 * high surrogate changes how the next one's escaped keys decode.
	 */
	FUZZ_CHECK((tok = json_tokener_new_ex(FUZZ_DEPTH)) != NULL, "json_tokener_new_ex: out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	r->obj = json_tokener_parse_ex(tok, s, (int)len);
	json_tokener_free(tok);
	FUZZ_CHECK(r->obj != NULL && json_object_is_type(r->obj, json_type_object),
	    "validator read fields, json-c has no object in \"%.*s\"", (int)len, s);
	if (kind == MSG_STATUS_CHANGED)
		ref_status_changed(r);
	else
		ref_id(r, "UserID", &r->m.user, &r->m.user_len);
}

static bool
same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* The validator's field verdict, detail and values against the reference's. */
static void
check_fields(const char *s, size_t len, enum msg_kind kind, enum msg_error e, const struct alarm_msg *m)
{
	const char *detail = validator_detail(fz_val);
	struct ref r;

	ref_validate(&r, s, len, kind);
	FUZZ_CHECK(e == r.e, "validator says %s (%s), json-c's fields %s (%s) in \"%.*s\"",
	    msg_error_name(e), detail, msg_error_name(r.e), r.detail, (int)len, s);
	if (e == MSG_E_TYPE)
		FUZZ_CHECK(strncmp(detail, r.detail, r.type_prefix) == 0 &&
		    (detail[r.type_prefix] == '\0' || detail[r.type_prefix] == ' '),
		    "detail \"%s\", json-c's \"%s\"", detail, r.detail);
	else if (e != MSG_OK)
		FUZZ_CHECK(strcmp(detail, r.detail) == 0, "detail \"%s\", json-c's \"%s\"", detail,
		    r.detail);
	else {
		FUZZ_CHECK(same_bytes(m->user, m->user_len, r.m.user, r.m.user_len),
		    "UserID differs from json-c's in \"%.*s\"", (int)len, s);
		if (kind == MSG_STATUS_CHANGED) {
			FUZZ_CHECK(same_bytes(m->alarm, m->alarm_len, r.m.alarm, r.m.alarm_len),
			    "AlarmID differs from json-c's in \"%.*s\"", (int)len, s);
			FUZZ_CHECK(m->status == r.m.status && m->changed_at.sec == r.m.changed_at.sec &&
			    m->changed_at.nsec == r.m.changed_at.nsec &&
			    m->changed_at.off_min == r.m.changed_at.off_min,
			    "Status or ChangedAt differs from json-c's in \"%.*s\"", (int)len, s);
		}
	}
	json_object_put(r.obj);
}

static void
check_accepted(const struct alarm_msg *m, enum msg_kind kind)
{
	char text[RFC3339_MAXLEN + 1];
	struct rfc3339_time back;
	size_t n;

	FUZZ_CHECK(m->kind == kind, "accepted as kind %d, asked for %d", (int)m->kind, (int)kind);
	FUZZ_CHECK(m->user != NULL && m->user_len > 0 && m->user_len <= MSG_DEFAULT_MAX_ID_BYTES,
	    "accepted a UserID of %zu bytes", m->user_len);
	if (kind != MSG_STATUS_CHANGED)
		return;
	FUZZ_CHECK(m->alarm != NULL && m->alarm_len > 0 && m->alarm_len <= MSG_DEFAULT_MAX_ID_BYTES,
	    "accepted an AlarmID of %zu bytes", m->alarm_len);
	FUZZ_CHECK(m->status <= STATUS_CRITICAL, "accepted status %d", (int)m->status);
	n = rfc3339_format(&m->changed_at, text, sizeof(text));
	FUZZ_CHECK(n > 0 && rfc3339_parse(text, n, &back) == 0 &&
	    rfc3339_cmp(&back, &m->changed_at) == 0, "accepted a ChangedAt that prints as \"%s\"",
	    text);
	FUZZ_CHECK((m->changed_at.sec - 86400) * 1000 <= FUZZ_NOW_MS,
	    "accepted a ChangedAt more than max_future ahead: %s", text);
}

static int
hex4(const char *s)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		    c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/*
 * json-c 0.16 decodes an escaped surrogate pair and then tests the code
 * point with a 16-bit surrogate mask, so a pair whose code point's low 16
 * bits lie in D800-DFFF (U+1D800-U+1DFFF, ..., U+10D800-U+10DFFF) becomes
 * U+FFFD.  json-c's strings are then wrong, not the validator's
 * (test_validate.c checks those pairs), and no field of such a payload
 * can be compared with json-c's.
 */
static bool
jsonc_misdecodes(const char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		int hi, lo;

		if (s[i] != '\\')
			continue;
		if (s[i + 1] != 'u' || i + 12 > len) {
			i++;
			continue;
		}
		hi = hex4(s + i + 2);
		if (hi >= 0xD800 && hi <= 0xDBFF && s[i + 6] == '\\' && s[i + 7] == 'u' &&
		    (lo = hex4(s + i + 8)) >= 0xDC00 && lo <= 0xDFFF &&
		    ((((hi - 0xD800) << 10) + (lo - 0xDC00)) & 0xF800) == 0xD800)
			return true;
		i += 5;
	}
	return false;
}

/*
 * One verdict against json-c's; returns the error for the cross-kind check.
 * fields: json-c's strings can stand for the payload's (jsonc_misdecodes).
 */
static enum msg_error
check_kind(const char *s, size_t len, enum msg_kind kind, bool fields)
{
	struct alarm_msg m;
	const char *why;
	size_t at;
	enum msg_error e;
	bool jsonc;

	memset(&m, 0, sizeof(m));
	e = validate_message(fz_val, kind, s, len, NULL, FUZZ_NOW_MS, &m);
	/* Past the grammar checks (bad_json ... duplicate_field) the fields were read. */
	if ((e == MSG_OK || e > MSG_E_DUPLICATE) && fields)
		check_fields(s, len, kind, e, &m);
	if (e == MSG_OK) {
		check_accepted(&m, kind);
		return e;
	}
	FUZZ_CHECK(validator_detail(fz_val)[0] != '\0', "%s with no detail", msg_error_name(e));
	FUZZ_CHECK(e > MSG_OK && e < MSG_E_COUNT, "error %d out of range", (int)e);
	/* Not UTF-8: json-c does not check, so there is nothing to compare. */
	if (e == MSG_E_SIZE || e == MSG_E_UTF8)
		return e;
	jsonc = jsonc_accepts(s, len);
	if (e != MSG_E_JSON) {
		FUZZ_CHECK(jsonc, "validator took the grammar (%s: %s), json-c refuses \"%.*s\"",
		    msg_error_name(e), validator_detail(fz_val), (int)len, s);
		return e;
	}
	if (!jsonc || len == 0)
		return e;
	FUZZ_CHECK(detail_position(validator_detail(fz_val), &at, &why),
	    "bad_json that json-c accepts, detail without a position: %s", validator_detail(fz_val));
	FUZZ_CHECK(stricter_case(s, len, at, why),
	    "bad_json (%s) is not a documented stricter case, json-c accepts \"%.*s\"",
	    validator_detail(fz_val), (int)len, s);
	return e;
}

/* A verdict reached before any field was read: the same for both kinds. */
static bool
before_fields(enum msg_error e)
{
	return e != MSG_OK && e <= MSG_E_SURROGATE;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	enum msg_error status, request;
	bool fields;

	/* validate_message refuses more than max_message_bytes anyway; json-c wants an int. */
	if (size > MSG_DEFAULT_MAX_MESSAGE_BYTES)
		return 0;
	fields = !jsonc_misdecodes(s, size);
	status = check_kind(s, size, MSG_STATUS_CHANGED, fields);
	request = check_kind(s, size, MSG_DIGEST_REQUEST, fields);
	/* Up to the fields, a payload is judged the same whatever its kind. */
	FUZZ_CHECK(before_fields(status) == before_fields(request) &&
	    (!before_fields(status) || status == request),
	    "status_changed says %s, digest_request %s", msg_error_name(status),
	    msg_error_name(request));
	return 0;
}
