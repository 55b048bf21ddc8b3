/*
 * validate: turn a NATS payload into a struct alarm_msg, or say exactly why not.
 *
 * Checks run cheapest and most basic first: size, UTF-8, JSON grammar,
 * top-level type, then each required field.  The first failure decides the
 * error, so every payload gets exactly one, stable classification.
 *
 * No object tree is built: the messages have two fixed shapes, so one
 * pass of an RFC 8259 grammar scanner (after a UTF-8 pass) both judges the
 * payload and notes where the message object's own fields' values lie;
 * the few values a message reads are then decoded straight from the
 * payload into one buffer the validator keeps (no allocation per message).
 * This replaced json-c, which built a tree, a hash table and a locale per
 * message, and which was never trusted to judge validity anyway: even
 * with JSON_TOKENER_STRICT, json-c 0.16 accepts 'single quotes', NaN,
 * Infinity, "1." and raw control characters in strings, and its
 * JSON_TOKENER_VALIDATE_UTF8 passes overlong forms, surrogates and code
 * points above U+10FFFF.  json-c stays the reference of fuzz/fuzz_validate,
 * which checks that a field is read here exactly as json-c reads it.  The
 * scanner also rejects what json-c would quietly paper over: an escaped
 * lone surrogate (json-c writes U+FFFD, so two different IDs would become
 * one) and a field name given twice (json-c keeps the last).
 */
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"
#include "rfc3339.h"
#include "validate.h"

/* A detail line shows at most the first MSG_QUOTE_MAX quoted bytes of an offending value, then "...". */
#define MSG_QUOTE_MAX 64
/* quote_bytes keeps room for "..." and the NUL, so a cut in this buffer comes after MSG_QUOTE_MAX bytes. */
#define MSG_QUOTE_CAP (MSG_QUOTE_MAX + 4)

/*
 * Containers nested deeper are refused: json-c's default depth
 * (JSON_TOKENER_DEFAULT_DEPTH), which the service used to parse with.
 */
#define MSG_JSON_MAX_DEPTH 32

struct validator {
	char *text;        /* the last message's decoded field values; alarm_msg strings point here */
	size_t text_len, text_cap;
	char detail[512];
};

static const char *const msg_error_names[MSG_E_COUNT] = {
	[MSG_OK] = "ok",
	[MSG_E_SIZE] = "oversized",
	[MSG_E_UTF8] = "bad_utf8",
	[MSG_E_JSON] = "bad_json",
	[MSG_E_NOT_OBJECT] = "not_object",
	[MSG_E_SURROGATE] = "lone_surrogate",
	[MSG_E_DUPLICATE] = "duplicate_field",
	[MSG_E_MISSING] = "missing_field",
	[MSG_E_TYPE] = "wrong_type",
	[MSG_E_EMPTY] = "empty_field",
	[MSG_E_ID_LENGTH] = "id_too_long",
	[MSG_E_STATUS] = "bad_status",
	[MSG_E_TIMESTAMP] = "bad_timestamp",
	[MSG_E_FUTURE] = "future_timestamp",
};

/* The four field names the SPEC gives a meaning; a message of each kind reads some of them. */
enum msg_field { FIELD_ALARM, FIELD_USER, FIELD_STATUS, FIELD_TIME, FIELD_COUNT };

static const struct {
	const char *name;
	size_t len;
} msg_fields[FIELD_COUNT] = {
	[FIELD_ALARM] = { "AlarmID", 7 },
	[FIELD_USER] = { "UserID", 6 },
	[FIELD_STATUS] = { "Status", 6 },
	[FIELD_TIME] = { "ChangedAt", 9 },
};

/* Longest of msg_fields: a key that decodes to more bytes is none of them. */
#define FIELD_NAME_MAX 9

const char *
msg_error_name(enum msg_error e)
{
	if ((unsigned)e >= MSG_E_COUNT)
		return "unknown";
	return msg_error_names[e];
}

struct validator *
validator_new(void)
{
	struct validator *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	return p;
}

void
validator_free(struct validator *p)
{
	if (p == NULL)
		return;
	free(p->text);
	free(p);
}

const char *
validator_detail(const struct validator *p)
{
	return p->detail;
}

/* Record why a payload failed; a truncated detail is still useful, so vsnprintf's result is moot. */
static enum msg_error __attribute__((format(printf, 3, 4)))
msg_fail(struct validator *p, enum msg_error e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(p->detail, sizeof(p->detail), fmt, ap) < 0)
		p->detail[0] = '\0';
	va_end(ap);
	return e;
}

/* ---- UTF-8 ---- */

/* Offset of the first byte that does not start a valid UTF-8 sequence, or len. */
static size_t
utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c;
		unsigned char lo = 0x80, hi = 0xbf;
		size_t need;
		uint64_t w;

		/* Payloads are almost all ASCII: skip it eight bytes at a time. */
		while (len - i >= sizeof(w)) {
			memcpy(&w, s + i, sizeof(w));
			if (w & UINT64_C(0x8080808080808080))
				break;
			i += sizeof(w);
		}
		if (i == len)
			break;
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0;   /* overlong */
			else if (c == 0xed)
				hi = 0x9f;   /* UTF-16 surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90;   /* overlong */
			else if (c == 0xf4)
				hi = 0x8f;   /* above U+10FFFF */
		} else {
			return i;    /* continuation byte, C0/C1 overlong, or F5..FF */
		}
		if (len - i <= need)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= need; k++) {
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return i;
		}
		i += need + 1;
	}
	return len;
}

/* ---- RFC 8259 grammar ---- */

struct json_scan {
	const unsigned char *s;
	size_t len;
	size_t pos;            /* on failure: the offending byte */
	int depth;
	const char *why;       /* on failure */
	size_t key_nul_at;     /* first top-level key holding \u0000, or SIZE_MAX */
	size_t lone_at;        /* first escaped lone surrogate in any string, or SIZE_MAX */
	unsigned fields_seen;  /* bit f: msg_fields[f] seen as a top-level key */
	size_t dup_at[FIELD_COUNT];   /* where msg_fields[f] came a second time, or SIZE_MAX */
	/* The value of msg_fields[f]'s last occurrence: s[val_at[f]..val_end[f]), if seen. */
	size_t val_at[FIELD_COUNT], val_end[FIELD_COUNT];
};

/* What scan_string saw in a string, for the checks that need more than its grammar. */
#define STR_NUL     0x01u  /* an escaped \u0000 */
#define STR_ESCAPED 0x02u  /* any escape: the raw bytes are not the decoded ones */

static bool
scan_fail(struct json_scan *sc, const char *why)
{
	sc->why = why;
	return false;
}

static bool
scan_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void
scan_ws(struct json_scan *sc)
{
	while (sc->pos < sc->len && scan_is_ws(sc->s[sc->pos]))
		sc->pos++;
}

static bool
scan_peek(const struct json_scan *sc, unsigned char c)
{
	return sc->pos < sc->len && sc->s[sc->pos] == c;
}

static bool
scan_is_digit(const struct json_scan *sc)
{
	return sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9';
}

static bool scan_value(struct json_scan *sc);

/* The value of four hex digits at p (at least 4 bytes readable), or -1. */
static long
hex4_value(const unsigned char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];

		if (c >= '0' && c <= '9')
			v = v * 16 + (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (c - 'A' + 10);
		else
			return -1;
	}
	return v;
}

/* After "\u": four hex digits, their value in *v. */
static bool
scan_hex4(struct json_scan *sc, long *v)
{
	if (sc->len - sc->pos < 4)
		return scan_fail(sc, "truncated \\u escape");
	if ((*v = hex4_value(sc->s + sc->pos)) < 0)
		return scan_fail(sc, "invalid hex digit in \\u escape");
	sc->pos += 4;
	return true;
}

static bool
scan_is_low_surrogate(long v)
{
	return v >= 0xdc00 && v <= 0xdfff;
}

/*
 * An escape \uD800-\uDFFF that began at `at` was just read.  A high half
 * must be followed at once by an escaped low half, which is taken here as
 * the pair's second part; anything else leaves it lone, as is a low half
 * met on its own.  A lone one is only noted: the grammar check goes on, so
 * a payload that is not even JSON is still called bad_json.
 */
static void
scan_surrogate(struct json_scan *sc, long v, size_t at)
{
	if (!scan_is_low_surrogate(v) && sc->len - sc->pos >= 6 && sc->s[sc->pos] == '\\' &&
	    sc->s[sc->pos + 1] == 'u' && scan_is_low_surrogate(hex4_value(sc->s + sc->pos + 2))) {
		sc->pos += 6;
		return;
	}
	if (sc->lone_at == SIZE_MAX)
		sc->lone_at = at;
}

static bool
scan_string(struct json_scan *sc, unsigned *flags)
{
	sc->pos++;   /* opening quote */
	for (;;) {
		unsigned char c;
		long v;

		if (sc->pos >= sc->len)
			return scan_fail(sc, "unterminated string");
		c = sc->s[sc->pos];
		if (c == '"') {
			sc->pos++;
			return true;
		}
		if (c < 0x20)
			return scan_fail(sc, "unescaped control character in string");
		sc->pos++;
		if (c != '\\')
			continue;
		if (sc->pos >= sc->len)
			return scan_fail(sc, "unterminated string");
		*flags |= STR_ESCAPED;
		switch (sc->s[sc->pos]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			sc->pos++;
			break;
		case 'u':
			sc->pos++;
			if (!scan_hex4(sc, &v))
				return false;
			if (v == 0)
				*flags |= STR_NUL;
			else if (v >= 0xd800 && v <= 0xdfff)
				scan_surrogate(sc, v, sc->pos - 6);
			break;
		default:
			return scan_fail(sc, "invalid escape in string");
		}
	}
}

static bool
scan_digits(struct json_scan *sc, const char *why)
{
	if (!scan_is_digit(sc))
		return scan_fail(sc, why);
	while (scan_is_digit(sc))
		sc->pos++;
	return true;
}

static bool
scan_number(struct json_scan *sc)
{
	if (scan_peek(sc, '-'))
		sc->pos++;
	if (scan_peek(sc, '0'))
		sc->pos++;   /* a leading zero stands alone: "01" fails at the '1' later */
	else if (!scan_digits(sc, "invalid number"))
		return false;
	if (scan_peek(sc, '.')) {
		sc->pos++;
		if (!scan_digits(sc, "digit expected after decimal point"))
			return false;
	}
	if (scan_peek(sc, 'e') || scan_peek(sc, 'E')) {
		sc->pos++;
		if (scan_peek(sc, '+') || scan_peek(sc, '-'))
			sc->pos++;
		if (!scan_digits(sc, "digit expected in exponent"))
			return false;
	}
	return true;
}

static bool
scan_literal(struct json_scan *sc, const char *word)
{
	size_t n = strlen(word);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
		return scan_fail(sc, "invalid literal");
	sc->pos += n;
	return true;
}

/*
 * Which of msg_fields the key s[0..n) (between its quotes, already
 * scanned) names once decoded as json-c decodes it, or -1.  The names are
 * ASCII letters, so only \uXXXX escapes can spell one; the rare escaped key
 * is decoded here, and given up once longer than any name.
 */
static int
scan_field_of(const unsigned char *s, size_t n, unsigned flags)
{
	char name[FIELD_NAME_MAX];
	size_t len = 0;

	if (flags & STR_ESCAPED) {
		for (size_t i = 0; i < n; len++) {
			long v = s[i];

			if (len == FIELD_NAME_MAX)
				return -1;
			if (v != '\\') {
				i++;
			} else if (s[i + 1] == 'u') {
				v = hex4_value(s + i + 2);
				i += 6;
			} else {
				return -1;   /* \" \\ \/ \b \f \n \r \t: in no name */
			}
			if (v <= 0 || v >= 0x80)
				return -1;
			name[len] = (char)v;
		}
		s = (const unsigned char *)name;
		n = len;
	}
	for (int f = 0; f < FIELD_COUNT; f++)
		if (n == msg_fields[f].len && memcmp(s, msg_fields[f].name, n) == 0)
			return f;
	return -1;
}

static bool
scan_object(struct json_scan *sc)
{
	if (++sc->depth > MSG_JSON_MAX_DEPTH)
		return scan_fail(sc, "nesting too deep");
	sc->pos++;   /* '{' */
	scan_ws(sc);
	if (scan_peek(sc, '}')) {
		sc->pos++;
		sc->depth--;
		return true;
	}
	for (;;) {
		size_t key_at = sc->pos;
		unsigned key_flags = 0;
		int f = -1;

		if (!scan_peek(sc, '"'))
			return scan_fail(sc, "quoted object key expected");
		if (!scan_string(sc, &key_flags))
			return false;
		/* Only the message object's own keys are fields; deeper ones belong to unknown fields. */
		if (sc->depth == 1) {
			if ((key_flags & STR_NUL) && sc->key_nul_at == SIZE_MAX)
				sc->key_nul_at = key_at;
			f = scan_field_of(sc->s + key_at + 1, sc->pos - key_at - 2, key_flags);
			if (f >= 0 && (sc->fields_seen & (1u << f)) && sc->dup_at[f] == SIZE_MAX)
				sc->dup_at[f] = key_at;
			if (f >= 0)
				sc->fields_seen |= 1u << f;
		}
		scan_ws(sc);
		if (!scan_peek(sc, ':'))
			return scan_fail(sc, "':' expected after object key");
		sc->pos++;
		scan_ws(sc);
		if (sc->depth == 1 && f >= 0)
			sc->val_at[f] = sc->pos;
		if (!scan_value(sc))
			return false;
		if (sc->depth == 1 && f >= 0)
			sc->val_end[f] = sc->pos;
		scan_ws(sc);
		if (scan_peek(sc, '}')) {
			sc->pos++;
			sc->depth--;
			return true;
		}
		if (!scan_peek(sc, ','))
			return scan_fail(sc, "',' or '}' expected in object");
		sc->pos++;
		scan_ws(sc);
	}
}

static bool
scan_array(struct json_scan *sc)
{
	if (++sc->depth > MSG_JSON_MAX_DEPTH)
		return scan_fail(sc, "nesting too deep");
	sc->pos++;   /* '[' */
	scan_ws(sc);
	if (scan_peek(sc, ']')) {
		sc->pos++;
		sc->depth--;
		return true;
	}
	for (;;) {
		if (!scan_value(sc))
			return false;
		scan_ws(sc);
		if (scan_peek(sc, ']')) {
			sc->pos++;
			sc->depth--;
			return true;
		}
		if (!scan_peek(sc, ','))
			return scan_fail(sc, "',' or ']' expected in array");
		sc->pos++;
	}
}

static bool
scan_value(struct json_scan *sc)
{
	unsigned ignored = 0;

	scan_ws(sc);
	if (sc->pos >= sc->len)
		return scan_fail(sc, "unexpected end of input");
	switch (sc->s[sc->pos]) {
	case '{':
		return scan_object(sc);
	case '[':
		return scan_array(sc);
	case '"':
		return scan_string(sc, &ignored);
	case 't':
		return scan_literal(sc, "true");
	case 'f':
		return scan_literal(sc, "false");
	case 'n':
		return scan_literal(sc, "null");
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return scan_number(sc);
	default:
		return scan_fail(sc, "unexpected character");
	}
}

/* The whole payload is one JSON value, with only whitespace around it. */
static bool
scan_document(struct json_scan *sc)
{
	if (!scan_value(sc))
		return false;
	scan_ws(sc);
	if (sc->pos != sc->len)
		return scan_fail(sc, "unexpected bytes after the JSON value");
	return true;
}

/* What the scanned document is, from its first non-blank byte. */
static const char *
scan_type_name(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len && scan_is_ws(s[i]))
		i++;
	switch (i < len ? s[i] : 0) {
	case '{':
		return "object";
	case '[':
		return "array";
	case '"':
		return "string";
	case 't': case 'f':
		return "boolean";
	case 'n':
		return "null";
	default:
		return "number";
	}
}

/* ---- message ---- */

/* Whether a message of `kind` reads field f (the others are unknown fields to it). */
static bool
msg_reads(enum msg_kind kind, int f)
{
	return kind == MSG_STATUS_CHANGED || f == FIELD_USER;
}

/*
 * A field the message reads, given twice: json-c would keep the last,
 * another reader of the same bytes may keep the first.  Which one counts
 * is ambiguous, so neither does.
 */
static enum msg_error
msg_check_duplicates(struct validator *p, enum msg_kind kind, const struct json_scan *sc)
{
	size_t at = SIZE_MAX;
	int which = -1;

	for (int f = 0; f < FIELD_COUNT; f++) {
		if (msg_reads(kind, f) && sc->dup_at[f] < at) {
			at = sc->dup_at[f];
			which = f;
		}
	}
	if (which < 0)
		return MSG_OK;
	return msg_fail(p, MSG_E_DUPLICATE, "field %s appears more than once (again at byte %zu)",
	    msg_fields[which].name, at);
}

static enum msg_error
msg_check_bytes(struct validator *p, enum msg_kind kind, struct json_scan *sc,
    const struct msg_limits *lim)
{
	const unsigned char *s = sc->s;
	size_t len = sc->len;
	const char *type;
	size_t bad;

	if (len > lim->max_message_bytes)
		return msg_fail(p, MSG_E_SIZE, "payload of %zu bytes exceeds max_message_bytes %zu",
		    len, lim->max_message_bytes);
	/* Offsets and lengths downstream (frames, detail lines) stay within an int. */
	if (len > INT_MAX)
		return msg_fail(p, MSG_E_SIZE, "payload of %zu bytes exceeds the JSON parser's limit",
		    len);
	if (len == 0)
		return msg_fail(p, MSG_E_JSON, "empty payload");
	if ((bad = utf8_invalid_at(s, len)) < len) {
		char shown[MSG_QUOTE_CAP];

		quote_bytes(shown, sizeof(shown), s + bad, len - bad < 4 ? len - bad : 4);
		return msg_fail(p, MSG_E_UTF8, "invalid UTF-8 at byte %zu: \"%s\"", bad, shown);
	}
	if (!scan_document(sc))
		return msg_fail(p, MSG_E_JSON, "invalid JSON at byte %zu: %s", sc->pos, sc->why);
	type = scan_type_name(s, len);
	if (strcmp(type, "object") != 0)
		return msg_fail(p, MSG_E_NOT_OBJECT, "payload is a JSON %s, not an object", type);
	/*
	 * A reader that keeps object keys as C strings (json-c does) would turn
	 * "UserID\u0000x" into "UserID", which could shadow the real field.  A
	 * key like that is valid JSON but not one every reader of the same
	 * bytes reads alike: reject it.
	 */
	if (sc->key_nul_at != SIZE_MAX)
		return msg_fail(p, MSG_E_JSON,
		    "invalid JSON at byte %zu: object key containing \\u0000 is not supported",
		    sc->key_nul_at);
	/* The escape is 6 bytes the scanner checked: a backslash, 'u' and four hex digits. */
	if (sc->lone_at != SIZE_MAX)
		return msg_fail(p, MSG_E_SURROGATE, "escaped lone surrogate at byte %zu: %.6s %s",
		    sc->lone_at, (const char *)s + sc->lone_at,
		    scan_is_low_surrogate(hex4_value(s + sc->lone_at + 2)) ?
		    "does not follow an escaped high surrogate \\ud800-\\udbff" :
		    "is not followed by an escaped low surrogate \\udc00-\\udfff");
	return msg_check_duplicates(p, kind, sc);
}

/* Append code point v (no surrogate, <= U+10FFFF) to d as UTF-8; returns the bytes written. */
static size_t
text_put_utf8(char *d, long v)
{
	if (v < 0x80) {
		d[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		d[0] = (char)(0xc0 | (v >> 6));
		d[1] = (char)(0x80 | (v & 0x3f));
		return 2;
	}
	if (v < 0x10000) {
		d[0] = (char)(0xe0 | (v >> 12));
		d[1] = (char)(0x80 | ((v >> 6) & 0x3f));
		d[2] = (char)(0x80 | (v & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | (v >> 18));
	d[1] = (char)(0x80 | ((v >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((v >> 6) & 0x3f));
	d[3] = (char)(0x80 | (v & 0x3f));
	return 4;
}

/*
 * Decode the string s[0..n) (between its quotes, already scanned: every
 * escape is well formed and every surrogate paired) into d, which has room
 * for n bytes: no escape decodes to more bytes than it takes.  Returns the
 * decoded length.
 */
static size_t
text_decode(char *d, const unsigned char *s, size_t n)
{
	const unsigned char *bs;
	size_t o = 0, i = 0;

	while (i < n) {
		long v;

		if ((bs = memchr(s + i, '\\', n - i)) == NULL) {
			memcpy(d + o, s + i, n - i);
			return o + n - i;
		}
		memcpy(d + o, s + i, (size_t)(bs - (s + i)));
		o += (size_t)(bs - (s + i));
		i = (size_t)(bs - s) + 2;
		switch (bs[1]) {
		case 'b': d[o++] = '\b'; break;
		case 'f': d[o++] = '\f'; break;
		case 'n': d[o++] = '\n'; break;
		case 'r': d[o++] = '\r'; break;
		case 't': d[o++] = '\t'; break;
		case 'u':
			v = hex4_value(s + i);
			i += 4;
			if (v >= 0xd800 && v <= 0xdbff) {
				/* The scanner saw its low half follow at once. */
				v = 0x10000 + ((v - 0xd800) << 10) + (hex4_value(s + i + 2) - 0xdc00);
				i += 6;
			}
			o += text_put_utf8(d + o, v);
			break;
		default:     /* '"', '\\', '/' stand for themselves */
			d[o++] = (char)bs[1];
			break;
		}
	}
	return o;
}

/*
 * A value of another type than string, for a detail line: its text as it
 * arrived with the blanks outside strings left out ({"a": [1]} shows as
 * {"a":[1]}, as json-c printed it), cut where quote_bytes would cut it
 * anyway.  Unlike json-c's, numbers are not reformatted (-0 stays -0) and
 * escapes in nested strings are not decoded.
 */
static const char *
msg_shown_value(char *shown, size_t cap, const unsigned char *s, size_t n)
{
	char text[MSG_QUOTE_CAP + 8];
	size_t o = 0;
	bool in_str = false;

	for (size_t i = 0; i < n && o < sizeof(text); i++) {
		unsigned char c = s[i];

		if (in_str) {
			if (c == '\\' && i + 1 < n) {
				text[o++] = (char)c;
				c = s[++i];
				if (o == sizeof(text))
					break;
			} else if (c == '"') {
				in_str = false;
			}
		} else if (c == '"') {
			in_str = true;
		} else if (scan_is_ws(c)) {
			continue;
		}
		text[o++] = (char)c;
	}
	return quote_bytes(shown, cap, text, o);
}

/* A required field that must be a non-empty string: decoded into p->text. */
static enum msg_error
msg_field(struct validator *p, const struct json_scan *sc, int f, const char **s, size_t *n)
{
	const char *name = msg_fields[f].name;
	const unsigned char *v;
	size_t vlen;

	if (!(sc->fields_seen & (1u << f)))
		return msg_fail(p, MSG_E_MISSING, "field %s is missing", name);
	v = sc->s + sc->val_at[f];
	vlen = sc->val_end[f] - sc->val_at[f];
	if (v[0] != '"') {
		char shown[MSG_QUOTE_CAP];

		msg_shown_value(shown, sizeof(shown), v, vlen);
		/* null, true and false name their own type. */
		if (v[0] == 'n' || v[0] == 't' || v[0] == 'f')
			return msg_fail(p, MSG_E_TYPE, "field %s: expected a string, got %s", name,
			    shown);
		return msg_fail(p, MSG_E_TYPE, "field %s: expected a string, got %s %s", name,
		    v[0] == '{' ? "object" : v[0] == '[' ? "array" : "number", shown);
	}
	/* Never strlen: an escaped \u0000 is part of the value. */
	*s = p->text + p->text_len;
	*n = text_decode(p->text + p->text_len, v + 1, vlen - 2);
	p->text_len += *n;
	if (*n == 0)
		return msg_fail(p, MSG_E_EMPTY, "field %s is empty", name);
	return MSG_OK;
}

static enum msg_error
msg_id(struct validator *p, const struct json_scan *sc, int f, const struct msg_limits *lim,
    const char **s, size_t *n)
{
	enum msg_error e;

	if ((e = msg_field(p, sc, f, s, n)) != MSG_OK)
		return e;
	if (*n > lim->max_id_bytes)
		return msg_fail(p, MSG_E_ID_LENGTH, "field %s: %zu bytes exceeds max_id_bytes %zu",
		    msg_fields[f].name, *n, lim->max_id_bytes);
	return MSG_OK;
}

static bool
msg_status_from(const char *s, size_t n, enum alarm_status *out)
{
	static const enum alarm_status all[] = { STATUS_CLEARED, STATUS_WARNING, STATUS_CRITICAL };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *name = alarm_status_name(all[i]);

		if (n == strlen(name) && memcmp(s, name, n) == 0) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

/* "24h", "90s", "1500ms": a max_future as an operator would write it. */
static void
msg_duration(char *buf, size_t len, int64_t ms)
{
	if (ms != 0 && ms % (3600 * 1000) == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / (3600 * 1000)));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
}

/* The instant `ms` milliseconds after the epoch (floored, so negative ones work too), in UTC. */
static struct rfc3339_time
msg_instant(int64_t ms)
{
	struct rfc3339_time t = { .sec = ms / 1000, .nsec = (int32_t)(ms % 1000), .off_min = 0 };

	if (t.nsec < 0) {
		t.sec--;
		t.nsec += 1000;
	}
	t.nsec *= 1000000;
	return t;
}

/*
 * No real update is ever newer than a ChangedAt in year 9999, so one that
 * far ahead would freeze its alarm for good.  Exactly now + max_future is
 * still accepted; one nanosecond later is not.
 */
static enum msg_error
msg_check_future(struct validator *p, const struct rfc3339_time *t, int64_t now_ms,
    const struct msg_limits *lim, const char *text, size_t n)
{
	char shown[MSG_QUOTE_CAP], allow[32], wall[RFC3339_MAXLEN + 1];
	int64_t max = lim->max_future_ms > 0 ? lim->max_future_ms : 0;
	struct rfc3339_time latest, current;

	/* Past INT64_MAX ms (292 million years) nothing the grammar allows is too far ahead. */
	if (now_ms > 0 && max > INT64_MAX - now_ms)
		return MSG_OK;
	latest = msg_instant(now_ms + max);
	if (rfc3339_cmp(t, &latest) <= 0)
		return MSG_OK;
	current = msg_instant(now_ms);
	quote_bytes(shown, sizeof(shown), text, n);
	msg_duration(allow, sizeof(allow), max);
	rfc3339_format(&current, wall, sizeof(wall));
	return msg_fail(p, MSG_E_FUTURE, "field ChangedAt: \"%s\" is more than max_future %s "
	    "ahead of the service's clock, %s", shown, allow, wall);
}

static enum msg_error
msg_status_changed(struct validator *p, const struct json_scan *sc, const struct msg_limits *lim,
    int64_t now_ms, struct alarm_msg *m)
{
	char shown[MSG_QUOTE_CAP];
	const char *s;
	size_t n;
	enum msg_error e;

	if ((e = msg_id(p, sc, FIELD_ALARM, lim, &m->alarm, &m->alarm_len)) != MSG_OK)
		return e;
	if ((e = msg_id(p, sc, FIELD_USER, lim, &m->user, &m->user_len)) != MSG_OK)
		return e;
	if ((e = msg_field(p, sc, FIELD_STATUS, &s, &n)) != MSG_OK)
		return e;
	if (!msg_status_from(s, n, &m->status)) {
		quote_bytes(shown, sizeof(shown), s, n);
		return msg_fail(p, MSG_E_STATUS,
		    "field Status: \"%s\" is not CLEARED, WARNING or CRITICAL", shown);
	}
	if ((e = msg_field(p, sc, FIELD_TIME, &s, &n)) != MSG_OK)
		return e;
	if (rfc3339_parse(s, n, &m->changed_at) != 0) {
		quote_bytes(shown, sizeof(shown), s, n);
		return msg_fail(p, MSG_E_TIMESTAMP,
		    "field ChangedAt: \"%s\" is not a valid RFC 3339 timestamp", shown);
	}
	return msg_check_future(p, &m->changed_at, now_ms, lim, s, n);
}

enum msg_error
validate_message(struct validator *p, enum msg_kind kind, const void *data, size_t len,
    const struct msg_limits *lim, int64_t now_ms, struct alarm_msg *out)
{
	static const struct msg_limits defaults = {
		.max_message_bytes = MSG_DEFAULT_MAX_MESSAGE_BYTES,
		.max_id_bytes = MSG_DEFAULT_MAX_ID_BYTES,
		.max_future_ms = MSG_DEFAULT_MAX_FUTURE_MS,
	};
	struct alarm_msg m = { .kind = kind, .status = STATUS_CLEARED };
	struct json_scan sc = { .s = data, .len = len, .key_nul_at = SIZE_MAX, .lone_at = SIZE_MAX,
		.dup_at = { SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX } };
	enum msg_error e;

	/* The previous message's strings die here, as the header promises. */
	p->text_len = 0;
	p->detail[0] = '\0';
	if (lim == NULL)
		lim = &defaults;
	if (kind != MSG_STATUS_CHANGED && kind != MSG_DIGEST_REQUEST)
		return msg_fail(p, MSG_E_JSON, "internal error: unknown message kind %d", (int)kind);

	if ((e = msg_check_bytes(p, kind, &sc, lim)) != MSG_OK)
		return e;
	/* Decoded values never outgrow their payload: one buffer the size of the largest so far. */
	if (len > p->text_cap) {
		char *t = realloc(p->text, len);

		if (t == NULL)
			return msg_fail(p, MSG_E_SIZE, "no memory to read a payload of %zu bytes", len);
		p->text = t;
		p->text_cap = len;
	}
	if (kind == MSG_STATUS_CHANGED)
		e = msg_status_changed(p, &sc, lim, now_ms, &m);
	else
		e = msg_id(p, &sc, FIELD_USER, lim, &m.user, &m.user_len);
	if (e != MSG_OK)
		return e;
	*out = m;
	return MSG_OK;
}
