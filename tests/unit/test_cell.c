/* Unit tests for common/cell.c, the store's value codec (formats 2 and 3). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/cell.h"

static struct alarm_state
st_of(enum alarm_status status, bool delivered, int64_t sec, int32_t nsec, int16_t off)
{
	struct alarm_state st = { status, { sec, nsec, off }, delivered };

	return st;
}

/*
 * cell_len finds where a cell ends in a chunk (db.h): its length with
 * more cells after it, and 0 for every cut of it.
 */
static void
len_checks(const struct buf *b)
{
	uint8_t chunk[2 * CELL_MAX];

	memcpy(chunk, b->data, b->len);
	memcpy(chunk + b->len, b->data, b->len);
	assert_int_equal(cell_len(chunk, 2 * b->len), b->len);
	assert_int_equal(cell_len(chunk, b->len), b->len);
	for (size_t n = 0; n < b->len; n++)
		assert_int_equal(cell_len(chunk, n), 0);
}

static void
round_trip(uint8_t kind, const uint8_t *id, size_t len, const struct alarm_state *st, size_t want_len)
{
	struct buf b = { 0 }, p = { 0 };
	struct cell_alarm a;
	const char *why = NULL;

	assert_int_equal(cell_alarm_encode(kind, id, len, st, &b), 0);
	if (want_len > 0)
		assert_int_equal(b.len, want_len);
	assert_true(b.len <= CELL_MAX);
	len_checks(&b);
	assert_int_equal(cell_alarm_decode(b.data, b.len, &a, &why), 0);
	assert_int_equal(a.kind, kind);
	assert_int_equal(a.id_len, len);
	assert_memory_equal(a.id, id, len);
	assert_int_equal(a.st.status, st->status);
	assert_int_equal(a.st.delivered, st->delivered);
	assert_int_equal(a.st.changed_at.sec, st->changed_at.sec);
	assert_int_equal(a.st.changed_at.nsec, st->changed_at.nsec);
	assert_int_equal(a.st.changed_at.off_min, st->changed_at.off_min);
	/* The prefix is the cell's start, and is what cell_prefix gives. */
	assert_int_equal(cell_prefix(kind, id, len, &p), 0);
	assert_int_equal(a.prefix_len, p.len);
	assert_memory_equal(b.data, p.data, p.len);
	buf_free(&b);
	buf_free(&p);
}

static void
test_alarm_round_trip(void **state)
{
	static const uint8_t uuid[16] = { 0x6f, 0x1c, 0x8a, 0x3e, 0x9c, 0x1e, 0x4b, 0x8e,
	    0x8d, 0x4a, 0x2f, 0x0e, 0x5b, 0x6c, 0x7d, 0x8e };
	uint8_t big[CELL_MAX_ID];
	struct alarm_state st;

	(void)state;
	memset(big, 'x', sizeof(big));
	/* The common case: a UUID, a whole-second UTC time of this era: 22 bytes. */
	st = st_of(STATUS_WARNING, false, 1629201600, 0, 0);
	round_trip(ID_UUID_LOWER, uuid, 16, &st, 22);
	st = st_of(STATUS_CRITICAL, true, 1629201600, 0, 0);
	round_trip(ID_UUID_UPPER, uuid, 16, &st, 22);
	/* A fraction or an offset costs an extension. */
	st = st_of(STATUS_CLEARED, false, 1629201600, 598765212, -1439);
	round_trip(ID_RAW, (const uint8_t *)"a", 1, &st, 0);
	st = st_of(STATUS_WARNING, true, 1629201600, 0, 180);
	round_trip(ID_RAW, (const uint8_t *)"plain", 5, &st, 1 + 2 + 5 + 5 + 2);
	/* The widest: the longest raw ID with the extremes of time. */
	st = st_of(STATUS_CRITICAL, true, 253402300799LL + 86400, 999999999, 1439);
	round_trip(ID_RAW, big, sizeof(big), &st, 0);
	st = st_of(STATUS_CRITICAL, true, -62167219200LL - 86400, 999999999, -1439);
	round_trip(ID_RAW, big, sizeof(big), &st, 0);
}

static void
test_head_round_trip(void **state)
{
	struct cell_head h = { 123456789, 100000, 40, 99960, 1629201600 }, g;
	struct buf b = { 0 };
	const char *why;

	(void)state;
	assert_int_equal(cell_head_encode(&h, &b), 0);
	assert_true(cell_is_head(b.data, b.len));
	len_checks(&b);
	assert_int_equal(cell_head_decode(b.data, b.len, &g, &why), 0);
	assert_memory_equal(&h, &g, sizeof(h));
	/* Inconsistent counts are corruption. */
	h.pending = h.alarms;
	assert_int_equal(cell_head_encode(&h, &b), 0);
	assert_int_equal(cell_head_decode(b.data, b.len, &g, &why), -1);
	assert_string_equal(why, "head counts inconsistent");
	buf_free(&b);
}

/* Cells sort as id_cmp orders IDs, after the head, and no prefix is another's prefix. */
static void
test_order_prefix_free(void **state)
{
	static const struct { uint8_t kind; const char *id; size_t len; } ids[] = {
		{ ID_RAW, "a", 1 }, { ID_RAW, "b", 1 }, { ID_RAW, "ab", 2 },
		{ ID_RAW, "\xff\xff", 2 }, { ID_RAW, "abc", 3 },
		{ ID_UUID_LOWER, "0123456789abcdef", 16 }, { ID_UUID_LOWER, "1123456789abcdef", 16 },
		{ ID_UUID_UPPER, "0123456789abcdef", 16 },
	};
	size_t n = sizeof(ids) / sizeof(ids[0]);
	struct buf a = { 0 }, b = { 0 };

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(cell_prefix(ids[i].kind, (const uint8_t *)ids[i].id, ids[i].len, &a), 0);
		assert_true(a.data[0] > CELL_HEAD_TAG);
		for (size_t j = i + 1; j < n; j++) {
			size_t m;

			assert_int_equal(cell_prefix(ids[j].kind, (const uint8_t *)ids[j].id, ids[j].len,
			    &b), 0);
			m = a.len < b.len ? a.len : b.len;
			/* Strictly increasing, and differing within the shorter one. */
			assert_true(memcmp(a.data, b.data, m) < 0);
		}
	}
	/* Too long for a cell, or a UUID kind of the wrong length. */
	assert_int_equal(cell_prefix(ID_RAW, (const uint8_t *)"x", CELL_MAX_ID + 1, &a), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(cell_prefix(ID_UUID_LOWER, (const uint8_t *)"x", 1, &a), -1);
	buf_free(&a);
	buf_free(&b);
}

static void
test_refused(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *why;
	} bad[] = {
		{ "", 0, "truncated alarm" },
		{ "\x00", 1, "bad alarm tag" },
		{ "\x04", 1, "bad alarm tag" },
		{ "\x01\x00", 2, "truncated alarm" },
		{ "\x01\x00\x00\x01", 4, "bad AlarmID length" },
		{ "\x01\x01\xe1", 3, "bad AlarmID length" },
		{ "\x01\x00\x02" "a", 4, "truncated alarm" },
		{ "\x01\x00\x01" "a\x03", 5, "bad status" },
		{ "\x01\x00\x01" "a\x08\x00", 6, "empty timestamp extension" },
		{ "\x01\x00\x01" "a\x01\x00", 6, "trailing bytes in alarm" },
		{ "\x01\x00\x24" "00000000-0000-0000-0000-000000000000\x01", 40, "raw AlarmID in UUID form" },
		{ "\x03" "0123456789012345\x01", 18, "upper-case UUID AlarmID without a letter" },
		{ "\x01\x00\x01" "a\xf1\xff\xff\xff\xff\xff\xff\xff\x7f", 13, "timestamp out of range" },
	};
	struct cell_alarm a;
	struct cell_head h;
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		assert_int_equal(cell_alarm_decode(bad[i].bytes, bad[i].len, &a, &why), -1);
		if (why == NULL || strcmp(why, bad[i].why) != 0)
			fail_msg("case %zu: why \"%s\", want \"%s\"", i, why ? why : "(null)", bad[i].why);
	}
	assert_int_equal(cell_head_decode("\x01", 1, &h, &why), -1);
	assert_int_equal(cell_head_decode("\x00\x01\x01\x00\x00\x00\x00", 7, &h, &why), -1);
	assert_string_equal(why, "trailing bytes in head");
	assert_int_equal(cell_head_decode("\x00\x01\x01\x00", 4, &h, &why), -1);
	assert_string_equal(why, "truncated head");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alarm_round_trip),
		cmocka_unit_test(test_head_round_trip),
		cmocka_unit_test(test_order_prefix_free),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
