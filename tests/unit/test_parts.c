/*
 * Unit tests for worker/parts.c: a digest cut into messages that fit
 * max_payload with their headers.  Sizes are literals worked out by hand:
 *
 *   entry  {"AlarmID":"a0","Status":"WARNING","LatestChangedAt":"2021-08-17T13:00:00Z"}
 *          12 + 2 + 12 + 7 + 21 + 20 + 2 = 76 bytes
 *   head   {"UserID":"u","ActiveAlarms":[      30 bytes;  tail ]}  2 bytes
 *   one message, Nats-Msg-Id ALARMS-7:
 *          NATS/1.0\r\n Nats-Msg-Id: ALARMS-7\r\n \r\n             10 + 23 + 2 = 35
 *   part k of n, k and n one digit:
 *          NATS/1.0\r\n Nats-Msg-Id: ALARMS-7/k\r\n Digest-Part: k/n\r\n \r\n
 *                                                                   10 + 25 + 18 + 2 = 55
 *          k one digit, n two: 56; k and n two digits: 58
 *   a part of e entries: 30 + 76e + (e - 1) + 2 = 31 + 77e
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "digest.h"
#include "parts.h"

#define ENTRY_A0 "{\"AlarmID\":\"a0\",\"Status\":\"WARNING\",\"LatestChangedAt\":\"2021-08-17T13:00:00Z\"}"
#define HEAD "{\"UserID\":\"u\",\"ActiveAlarms\":["

/* n entries "a0".."a9","b0".., WARNING, 2021-08-17T13:00:0?Z: 76 bytes each. */
static void
fill(struct digest *d, size_t n)
{
	digest_reset(d);
	for (size_t i = 0; i < n; i++) {
		char id[3] = { (char)('a' + i / 10), (char)('0' + i % 10), 0 };
		char when[32];
		struct rfc3339_time t;

		snprintf(when, sizeof(when), "2021-08-17T13:00:0%zuZ", i % 10);
		assert_int_equal(rfc3339_parse(when, strlen(when), &t), 0);
		assert_int_equal(digest_add(d, id, 2, STATUS_WARNING, &t), 0);
	}
}

/* Encoded header size, counted here from the strings the part carries. */
static size_t
hdr_bytes(const struct parts_msg *m)
{
	size_t n = strlen("NATS/1.0\r\n") + strlen("Nats-Msg-Id: \r\n") + strlen(m->msgid) + 2;

	if (m->part != NULL)
		n += strlen("Digest-Part: \r\n") + strlen(m->part);
	return n;
}

/*
 * Every part: valid JSON of user "u", within max with its headers, ids and
 * Digest-Part in sequence; the parts' lists joined equal the whole list,
 * and no part could have taken the next entry.  Returns the entry counts.
 */
static void
check_parts(struct parts *p, const struct digest *d, const char *id, int64_t max, size_t *counts)
{
	struct buf whole = { 0 }, joined = { 0 };
	size_t n = parts_count(p), body_len;
	char want_id[64], want_part[48];

	assert_int_equal(digest_write_json(d, "u", 1, &whole), 0);
	for (size_t k = 0; k < n; k++) {
		struct parts_msg m;
		struct json_object *o, *v;
		char *text;

		assert_int_equal(parts_get(p, k, &m), 0);
		counts[k] = m.alarms;
		assert_true((int64_t)(m.len + hdr_bytes(&m)) <= max);
		if (n == 1) {
			assert_string_equal(m.msgid, id);
			assert_null(m.part);
		} else {
			snprintf(want_id, sizeof(want_id), "%s/%zu", id, k + 1);
			snprintf(want_part, sizeof(want_part), "%zu/%zu", k + 1, n);
			assert_string_equal(m.msgid, want_id);
			assert_string_equal(m.part, want_part);
		}
		text = strndup((const char *)m.data, m.len);
		assert_non_null(text);
		o = json_tokener_parse(text);
		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "UserID", &v));
		assert_string_equal(json_object_get_string(v), "u");
		assert_true(json_object_object_get_ex(o, "ActiveAlarms", &v));
		assert_int_equal(json_object_array_length(v), m.alarms);
		json_object_put(o);
		free(text);
		assert_true(m.len > strlen(HEAD) + 2);
		assert_memory_equal(m.data, HEAD, strlen(HEAD));
		assert_memory_equal(m.data + m.len - 2, "]}", 2);
		if (k > 0)
			assert_int_equal(buf_append_byte(&joined, ','), 0);
		assert_int_equal(buf_append(&joined, m.data + strlen(HEAD), m.len - strlen(HEAD) - 2), 0);
		/* Greedy: the next entry (77 bytes with its comma) would not have fitted. */
		if (k + 1 < n)
			assert_true((int64_t)(m.len + hdr_bytes(&m) + 77) > max);
	}
	body_len = whole.len - strlen(HEAD) - 2;
	assert_int_equal(joined.len, body_len);
	assert_memory_equal(joined.data, whole.data + strlen(HEAD), body_len);
	buf_free(&whole);
	buf_free(&joined);
}

static void
test_entry_sizes_as_documented(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	fill(&d, 3);
	assert_int_equal(digest_write_json(&d, "u", 1, &out), 0);
	assert_int_equal(strlen(ENTRY_A0), 76);
	assert_int_equal(strlen(HEAD), 30);
	assert_int_equal(out.len, 31 + 77 * 3);
	assert_memory_equal(out.data + 30, ENTRY_A0 ",", 77);
	buf_free(&out);
	digest_free(&d);
}

/* 3 entries: 262 bytes of JSON + 35 of headers = 297 fits exactly as one message. */
static void
test_fits_exactly_one_message(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	struct parts_msg m;
	struct buf whole = { 0 };
	size_t counts[4];

	(void)unused;
	fill(&d, 3);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 297), 0);
	assert_int_equal(parts_count(p), 1);
	assert_int_equal(parts_get(p, 0, &m), 0);
	assert_int_equal(m.len, 262);
	assert_int_equal(m.alarms, 3);
	assert_null(m.part);
	assert_string_equal(m.msgid, "ALARMS-7");
	/* The one message is byte for byte what digest_write_json writes. */
	assert_int_equal(digest_write_json(&d, "u", 1, &whole), 0);
	assert_int_equal(whole.len, m.len);
	assert_memory_equal(whole.data, m.data, m.len);
	check_parts(p, &d, "ALARMS-7", 297, counts);
	buf_free(&whole);
	parts_free(p);
	digest_free(&d);
}

/* One byte less: two parts, 2 + 1 entries (240 and 163 bytes with headers). */
static void
test_one_byte_over_splits(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	struct parts_msg m;
	size_t counts[4];

	(void)unused;
	fill(&d, 3);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 296), 0);
	assert_int_equal(parts_count(p), 2);
	check_parts(p, &d, "ALARMS-7", 296, counts);
	assert_int_equal(counts[0], 2);
	assert_int_equal(counts[1], 1);
	assert_int_equal(parts_get(p, 0, &m), 0);
	assert_int_equal(m.len, 185);
	assert_string_equal(m.part, "1/2");
	assert_string_equal(m.msgid, "ALARMS-7/1");
	assert_int_equal(parts_get(p, 1, &m), 0);
	assert_int_equal(m.len, 108);
	assert_memory_equal(m.data, HEAD, 30);
	assert_string_equal(m.part, "2/2");
	assert_string_equal(m.msgid, "ALARMS-7/2");
	parts_free(p);
	digest_free(&d);
}

/* Part boundaries at exactly max_payload, headers included. */
static void
test_part_boundary_exact(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	struct parts_msg m;
	size_t counts[4];

	(void)unused;
	fill(&d, 3);
	/* 2 entries + 55 header bytes = 240: fits at 240 ... */
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 240), 0);
	assert_int_equal(parts_count(p), 2);
	check_parts(p, &d, "ALARMS-7", 240, counts);
	assert_int_equal(counts[0], 2);
	assert_int_equal(parts_get(p, 0, &m), 0);
	assert_int_equal(m.len + hdr_bytes(&m), 240);
	/* ... not at 239: one entry a part. */
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 239), 0);
	assert_int_equal(parts_count(p), 3);
	check_parts(p, &d, "ALARMS-7", 239, counts);
	assert_int_equal(counts[0], 1);
	assert_int_equal(counts[1], 1);
	assert_int_equal(counts[2], 1);
	/* One entry alone needs 108 + 55 = 163. */
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 163), 0);
	assert_int_equal(parts_count(p), 3);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 162), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_int_equal(parts_count(p), 0);
	assert_int_equal(parts_min_payload(p), 163);
	parts_free(p);
	digest_free(&d);
}

/*
 * 12 entries, one a part: parts 1-9 carry "k/12" (56 header bytes, 164 in
 * all), parts 10-12 "kk/12" (58, 166 in all).  The header's n is known only
 * once the parts are counted.
 */
static void
test_two_digit_part_numbers(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	struct parts_msg m;
	size_t counts[16];

	(void)unused;
	fill(&d, 12);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 166), 0);
	assert_int_equal(parts_count(p), 12);
	check_parts(p, &d, "ALARMS-7", 166, counts);
	assert_int_equal(parts_get(p, 8, &m), 0);
	assert_string_equal(m.part, "9/12");
	assert_int_equal(m.len + hdr_bytes(&m), 164);
	assert_int_equal(parts_get(p, 11, &m), 0);
	assert_string_equal(m.part, "12/12");
	assert_string_equal(m.msgid, "ALARMS-7/12");
	assert_int_equal(m.len + hdr_bytes(&m), 166);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 165), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_int_equal(parts_min_payload(p), 166);
	parts_free(p);
	digest_free(&d);
}

/*
 * 20 entries at 241: two a part with one-digit numbers (240) would make 10
 * parts, so numbers have two digits: parts 1-9 take two (241), parts 10 and
 * 11 one each (two would be 243).  At 240 every part holds one: 20 parts.
 */
static void
test_digit_count_refill(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	size_t counts[32];

	(void)unused;
	fill(&d, 20);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 241), 0);
	assert_int_equal(parts_count(p), 11);
	check_parts(p, &d, "ALARMS-7", 241, counts);
	for (size_t k = 0; k < 9; k++)
		assert_int_equal(counts[k], 2);
	assert_int_equal(counts[9], 1);
	assert_int_equal(counts[10], 1);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 240), 0);
	assert_int_equal(parts_count(p), 20);
	check_parts(p, &d, "ALARMS-7", 240, counts);
	parts_free(p);
	digest_free(&d);
}

/* Many entries, a realistic limit: order kept, all within, joined exact. */
static void
test_many_entries(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	size_t *counts, total = 0;

	(void)unused;
	fill(&d, 260);   /* "a0".."z9" */
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-123456", 1024), 0);
	/* 31 + 77e + 61..63 <= 1024 (headers of "ALARMS-123456/k", "k/22"): e <= 12, so 22 parts. */
	assert_int_equal(parts_count(p), 22);
	counts = calloc(parts_count(p), sizeof(*counts));
	assert_non_null(counts);
	check_parts(p, &d, "ALARMS-123456", 1024, counts);
	for (size_t k = 0; k < parts_count(p); k++)
		total += counts[k];
	assert_int_equal(total, 260);
	free(counts);
	parts_free(p);
	digest_free(&d);
}

static void
test_empty_and_bad_limits(void **unused)
{
	struct digest d = { 0 };
	struct parts *p = parts_new();
	struct parts_msg m;
	char longid[PARTS_MSGID_MAX + 2];

	(void)unused;
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 1024), 0);
	assert_int_equal(parts_count(p), 0);
	assert_int_equal(parts_get(p, 0, &m), -1);
	fill(&d, 1);
	assert_int_equal(parts_plan(p, &d, "u", 1, "ALARMS-7", 0), -1);
	assert_int_equal(errno, EINVAL);
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(parts_plan(p, &d, "u", 1, longid, 1024), -1);
	assert_int_equal(errno, EINVAL);
	parts_free(p);
	digest_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_sizes_as_documented),
		cmocka_unit_test(test_fits_exactly_one_message),
		cmocka_unit_test(test_one_byte_over_splits),
		cmocka_unit_test(test_part_boundary_exact),
		cmocka_unit_test(test_two_digit_part_numbers),
		cmocka_unit_test(test_digit_count_refill),
		cmocka_unit_test(test_many_entries),
		cmocka_unit_test(test_empty_and_bad_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
