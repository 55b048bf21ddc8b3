/* Unit tests for common/rfc3339.c: the SPEC's timestamp form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rfc3339.h"

/* Reproducible pseudo-random numbers (xorshift64*); state lives in each test. */
static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static int64_t
rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static int
parse_str(const char *s, struct rfc3339_time *t)
{
	return rfc3339_parse(s, strlen(s), t);
}

static void
assert_format(const struct rfc3339_time *t, const char *want)
{
	char buf[RFC3339_MAXLEN + 1];
	size_t n = rfc3339_format(t, buf, sizeof(buf));

	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
}

struct valid_case {
	const char *in;
	int64_t sec;
	int32_t nsec;
	int16_t off_min;
	const char *out;   /* Go RFC3339Nano form of the same instant and offset */
};

static void
test_parse_valid_table(void **state)
{
	static const struct valid_case cases[] = {
		{ "1970-01-01T00:00:00Z", 0, 0, 0, "1970-01-01T00:00:00Z" },
		{ "2021-08-17T15:33:59Z", 1629214439, 0, 0, "2021-08-17T15:33:59Z" },
		{ "2021-08-17T15:33:59+03:00", 1629203639, 0, 180, "2021-08-17T15:33:59+03:00" },
		{ "2021-08-17T15:33:59.1+03:00", 1629203639, 100000000, 180,
		    "2021-08-17T15:33:59.1+03:00" },
		{ "2021-08-17T15:33:59.100+03:00", 1629203639, 100000000, 180,
		    "2021-08-17T15:33:59.1+03:00" },
		{ "2021-06-07T20:40:15.598765212Z", 1623098415, 598765212, 0,
		    "2021-06-07T20:40:15.598765212Z" },
		{ "2021-06-07T20:40:15.000000000Z", 1623098415, 0, 0, "2021-06-07T20:40:15Z" },
		{ "2021-06-07T20:40:15.000000001Z", 1623098415, 1, 0,
		    "2021-06-07T20:40:15.000000001Z" },
		{ "2021-06-07T20:40:15.0Z", 1623098415, 0, 0, "2021-06-07T20:40:15Z" },
		/* "+00:00" and RFC 3339's "-00:00" are both offset 0: Go prints "Z". */
		{ "2021-06-07T20:40:15+00:00", 1623098415, 0, 0, "2021-06-07T20:40:15Z" },
		{ "2021-06-07T20:40:15-00:00", 1623098415, 0, 0, "2021-06-07T20:40:15Z" },
		{ "2021-06-07T20:40:15-05:30", 1623098415 + 5 * 3600 + 1800, 0, -330,
		    "2021-06-07T20:40:15-05:30" },
		{ "2021-06-07T20:40:15+23:59", 1623098415 - 1439 * 60, 0, 1439,
		    "2021-06-07T20:40:15+23:59" },
		{ "2021-06-07T20:40:15-23:59", 1623098415 + 1439 * 60, 0, -1439,
		    "2021-06-07T20:40:15-23:59" },
		{ "1969-12-31T23:59:59.5Z", -1, 500000000, 0, "1969-12-31T23:59:59.5Z" },
		{ "2024-02-29T12:00:00Z", 1709208000, 0, 0, "2024-02-29T12:00:00Z" },
		{ "2000-02-29T00:00:00Z", 951782400, 0, 0, "2000-02-29T00:00:00Z" },
		{ "0000-01-01T00:00:00Z", -62167219200LL, 0, 0, "0000-01-01T00:00:00Z" },
		{ "0000-02-29T00:00:00Z", -62167219200LL + 59 * 86400, 0, 0,
		    "0000-02-29T00:00:00Z" },
		{ "0000-01-01T00:00:00+23:59", -62167219200LL - 1439 * 60, 0, 1439,
		    "0000-01-01T00:00:00+23:59" },
		{ "9999-12-31T23:59:59.999999999Z", 253402300799LL, 999999999, 0,
		    "9999-12-31T23:59:59.999999999Z" },
		{ "9999-12-31T23:59:59.999999999-23:59", 253402300799LL + 1439 * 60, 999999999,
		    -1439, "9999-12-31T23:59:59.999999999-23:59" },
		{ "2021-12-31T23:59:59Z", 1640995199, 0, 0, "2021-12-31T23:59:59Z" },
		{ "2038-01-19T03:14:08Z", 2147483648LL, 0, 0, "2038-01-19T03:14:08Z" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rfc3339_time t;

		if (parse_str(cases[i].in, &t) != 0)
			fail_msg("rejected valid %s", cases[i].in);
		if (t.sec != cases[i].sec || t.nsec != cases[i].nsec ||
		    t.off_min != cases[i].off_min)
			fail_msg("%s: got sec=%lld nsec=%d off=%d", cases[i].in,
			    (long long)t.sec, (int)t.nsec, (int)t.off_min);
		assert_format(&t, cases[i].out);
	}
}

static void
test_parse_invalid_table(void **state)
{
	static const char *const cases[] = {
		"",
		"2021",
		"2021-08-17",
		"2021-08-17T15:33:59",           /* no offset */
		"2021-08-17T15:33Z",
		"2021-08-17t15:33:59Z",          /* lower-case t */
		"2021-08-17T15:33:59z",          /* lower-case z */
		"2021-08-17 15:33:59Z",          /* space for T */
		"2021-08-17T15:33:59.Z",         /* '.' with no digits */
		"2021-08-17T15:33:59.1234567890Z", /* 10 fraction digits */
		"2021-08-17T15:33:59,5Z",
		"2021-02-29T00:00:00Z",          /* not a leap year */
		"2023-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z",          /* century, not a leap year */
		"2021-04-31T00:00:00Z",
		"2021-13-01T00:00:00Z",
		"2021-00-01T00:00:00Z",
		"2021-01-00T00:00:00Z",
		"2021-01-32T00:00:00Z",
		"2021-08-17T24:00:00Z",          /* hour 24 */
		"2021-08-17T23:60:00Z",
		"2021-08-17T23:59:60Z",          /* leap second */
		"2021-08-17T15:33:59+24:00",     /* offset hour 24 */
		"2021-08-17T15:33:59+23:60",
		"2021-08-17T15:33:59+0300",
		"2021-08-17T15:33:59+03",
		"2021-08-17T15:33:59+3:00",
		"2021-08-17T15:33:59+03:0",
		"2021-08-17T15:33:59+03:00 ",    /* trailing space */
		" 2021-08-17T15:33:59Z",         /* leading space */
		"2021-08-17T15:33:59ZZ",
		"2021-08-17T15:33:59Z0",
		"2021-08-17T15:33:59+03:00Z",
		"2021-08-17T15:33:59UTC",
		"21-08-17T15:33:59Z",
		"+2021-08-17T15:33:59Z",
		"12021-08-17T15:33:59Z",
		"2021-8-17T15:33:59Z",
		"2021-08-17T5:33:59Z",
		"2021/08/17T15:33:59Z",
		"2021-08-17T15-33-59Z",
		"2021-08-17T15:33:59.-1Z",
		"2021-08-17T15:33:59.+1Z",
		"2021-08-17T15:33:59.1.2Z",
		"2021-08-17T15:33:59\357\274\23200Z",   /* U+FF1A fullwidth colon */
		"２021-08-17T15:33:59Z",
		"2021-08-17T15:33:59.1e3Z",
		"2021-0x-17T15:33:59Z",
		"2021-08-17T15:33:59-",
		"2021-08-17T15:33:59+",
		"2021-08-17T15:33:59+03:",
		"2021-08-17T15:33:59Z\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rfc3339_time t;

		if (parse_str(cases[i], &t) != -1)
			fail_msg("accepted invalid \"%s\"", cases[i]);
	}
}

/* The length is authoritative: no NUL terminator is needed and NULs are bytes. */
static void
test_parse_length_and_nul(void **state)
{
	static const char good[] = "2021-08-17T15:33:59Z";
	char buf[64];
	struct rfc3339_time t;
	(void)state;

	/* Not NUL-terminated: followed by junk that must not be read as part of it. */
	memcpy(buf, good, sizeof(good) - 1);
	memset(buf + sizeof(good) - 1, '9', sizeof(buf) - (sizeof(good) - 1));
	assert_int_equal(rfc3339_parse(buf, sizeof(good) - 1, &t), 0);
	assert_int_equal(t.sec, 1629214439);

	/* A trailing NUL that is inside the length is an extra byte. */
	assert_int_equal(rfc3339_parse(good, sizeof(good), &t), -1);

	/* A NUL anywhere inside. */
	for (size_t i = 0; i < sizeof(good) - 1; i++) {
		memcpy(buf, good, sizeof(good));
		buf[i] = '\0';
		assert_int_equal(rfc3339_parse(buf, sizeof(good) - 1, &t), -1);
	}

	/* Every proper prefix of valid forms is invalid. */
	static const char *const full[] = {
		"2021-08-17T15:33:59.123456789+03:00",
		"2021-08-17T15:33:59.5Z",
		"2021-08-17T15:33:59-01:30",
	};
	for (size_t k = 0; k < sizeof(full) / sizeof(full[0]); k++) {
		for (size_t n = 0; n < strlen(full[k]); n++) {
			if (rfc3339_parse(full[k], n, &t) != -1)
				fail_msg("accepted prefix %zu of %s", n, full[k]);
		}
		assert_int_equal(rfc3339_parse(full[k], strlen(full[k]), &t), 0);
	}
}

/* SPEC: timestamps are compared as instants, never as strings. */
static void
test_cmp_instants(void **state)
{
	struct rfc3339_time a, b, c, d;
	(void)state;

	assert_int_equal(parse_str("2021-08-17T15:33:59+03:00", &a), 0);
	assert_int_equal(parse_str("2021-08-17T13:00:00Z", &b), 0);
	assert_true(rfc3339_cmp(&a, &b) < 0);
	assert_true(rfc3339_cmp(&b, &a) > 0);

	/* Same instant, different offsets: equal, offset ignored. */
	assert_int_equal(parse_str("2021-08-17T12:33:59Z", &c), 0);
	assert_int_equal(rfc3339_cmp(&a, &c), 0);
	assert_int_not_equal(a.off_min, c.off_min);

	/* Fractions break ties in seconds, including across a zero fraction. */
	assert_int_equal(parse_str("2021-08-17T12:33:59.000000001Z", &d), 0);
	assert_true(rfc3339_cmp(&c, &d) < 0);
	assert_true(rfc3339_cmp(&d, &c) > 0);
	assert_int_equal(parse_str("2021-08-17T15:33:58.999999999+03:00", &d), 0);
	assert_true(rfc3339_cmp(&d, &a) < 0);

	/* Bigger seconds win over bigger fractions. */
	c = (struct rfc3339_time){ .sec = -1, .nsec = 999999999 };
	d = (struct rfc3339_time){ .sec = 0, .nsec = 0 };
	assert_true(rfc3339_cmp(&c, &d) < 0);
	assert_int_equal(rfc3339_cmp(&c, &c), 0);
}

static void
test_format_trims_and_offsets(void **state)
{
	struct rfc3339_time t = { .sec = 1629203639, .nsec = 0, .off_min = 180 };
	(void)state;

	assert_format(&t, "2021-08-17T15:33:59+03:00");
	t.nsec = 100000000;
	assert_format(&t, "2021-08-17T15:33:59.1+03:00");
	t.nsec = 120000000;
	assert_format(&t, "2021-08-17T15:33:59.12+03:00");
	t.nsec = 1000;
	assert_format(&t, "2021-08-17T15:33:59.000001+03:00");
	t.nsec = 999999999;
	assert_format(&t, "2021-08-17T15:33:59.999999999+03:00");
	t.off_min = 0;
	assert_format(&t, "2021-08-17T12:33:59.999999999Z");
	t.off_min = -1;
	assert_format(&t, "2021-08-17T12:32:59.999999999-00:01");
	t.off_min = -600;
	t.nsec = 0;
	assert_format(&t, "2021-08-17T02:33:59-10:00");
	/* Local wall time crosses a day, month and year boundary. */
	t = (struct rfc3339_time){ .sec = 1640995199, .nsec = 0, .off_min = 1 };
	assert_format(&t, "2022-01-01T00:00:59+00:01");
	t.off_min = -1439;
	assert_format(&t, "2021-12-31T00:00:59-23:59");
	/* The longest form fits exactly. */
	t = (struct rfc3339_time){ .sec = 1629203639, .nsec = 123456789, .off_min = 180 };
	assert_format(&t, "2021-08-17T15:33:59.123456789+03:00");
	assert_int_equal(strlen("2021-08-17T15:33:59.123456789+03:00"), RFC3339_MAXLEN);
}

/* Values no parser could have produced print as "" rather than garbage. */
static void
test_format_out_of_contract(void **state)
{
	static const struct rfc3339_time bad[] = {
		{ .sec = 0, .nsec = -1, .off_min = 0 },
		{ .sec = 0, .nsec = 1000000000, .off_min = 0 },
		{ .sec = 0, .nsec = 0, .off_min = 1440 },
		{ .sec = 0, .nsec = 0, .off_min = -1440 },
		{ .sec = 253402300800LL, .nsec = 0, .off_min = 0 },   /* 10000-01-01 */
		{ .sec = -62167219201LL, .nsec = 0, .off_min = 0 },   /* year -1 */
		{ .sec = INT64_MAX, .nsec = 0, .off_min = 1439 },
		{ .sec = INT64_MIN, .nsec = 0, .off_min = -1439 },
	};
	char buf[RFC3339_MAXLEN + 1], small[RFC3339_MAXLEN];
	struct rfc3339_time ok = { .sec = 0, .nsec = 0, .off_min = 0 };
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		assert_int_equal(rfc3339_format(&bad[i], buf, sizeof(buf)), 0);
		assert_string_equal(buf, "");
	}
	memset(small, 'x', sizeof(small));
	assert_int_equal(rfc3339_format(&ok, small, sizeof(small)), 0);
	assert_int_equal(small[0], '\0');
	assert_int_equal(rfc3339_format(&ok, small, 0), 0);
	assert_int_equal(small[0], '\0');
	/* The edges of the range still print. */
	ok.sec = 253402300799LL;
	assert_format(&ok, "9999-12-31T23:59:59Z");
	ok.sec = -62167219200LL;
	assert_format(&ok, "0000-01-01T00:00:00Z");
}

/* Every day of 0000..9999 parses, to exactly one day after the previous one. */
static void
test_parse_every_day(void **state)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	char s[] = "YYYY-MM-DDT00:00:00Z";
	struct rfc3339_time t;
	int64_t prev = -62167219200LL - 86400;
	(void)state;

	for (int y = 0; y <= 9999; y++) {
		int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

		s[0] = (char)('0' + y / 1000);
		s[1] = (char)('0' + y / 100 % 10);
		s[2] = (char)('0' + y / 10 % 10);
		s[3] = (char)('0' + y % 10);
		for (int m = 1; m <= 12; m++) {
			int last = mdays[m - 1] + (m == 2 && leap);

			s[5] = (char)('0' + m / 10);
			s[6] = (char)('0' + m % 10);
			for (int d = 1; d <= last + 1; d++) {
				int rc;

				s[8] = (char)('0' + d / 10);
				s[9] = (char)('0' + d % 10);
				rc = rfc3339_parse(s, sizeof(s) - 1, &t);
				if (d > last) {
					if (rc != -1)
						fail_msg("accepted %s", s);
					continue;
				}
				if (rc != 0 || t.sec != prev + 86400)
					fail_msg("%s: rc=%d sec=%lld prev=%lld", s, rc,
					    (long long)t.sec, (long long)prev);
				prev = t.sec;
			}
		}
	}
	assert_int_equal(prev, 253402300800LL - 86400);
}

/* Random wall times checked against glibc's timegm as an independent oracle. */
static void
test_parse_random_vs_timegm(void **state)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	(void)state;

	for (int i = 0; i < 200000; i++) {
		char s[64];
		struct tm tm = { 0 };
		struct rfc3339_time t;
		int y = (int)rng_range(&rng, 0, 9999), mo = (int)rng_range(&rng, 1, 12);
		int d = (int)rng_range(&rng, 1, 28), h = (int)rng_range(&rng, 0, 23);
		int mi = (int)rng_range(&rng, 0, 59), se = (int)rng_range(&rng, 0, 59);
		int off = (int)rng_range(&rng, -1439, 1439);
		int aoff = off < 0 ? -off : off;
		time_t want;

		snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", y, mo, d,
		    h, mi, se, off < 0 ? '-' : '+', aoff / 60, aoff % 60);
		tm.tm_year = y - 1900;
		tm.tm_mon = mo - 1;
		tm.tm_mday = d;
		tm.tm_hour = h;
		tm.tm_min = mi;
		tm.tm_sec = se;
		want = timegm(&tm) - (time_t)off * 60;
		if (parse_str(s, &t) != 0 || t.sec != (int64_t)want || t.off_min != off ||
		    t.nsec != 0)
			fail_msg("%s: sec=%lld want %lld", s, (long long)t.sec, (long long)want);
	}
}

/*
 * Go's RFC3339Nano form of t, built with glibc's gmtime_r and snprintf rather
 * than rfc3339.c's own calendar code: the oracle for the random round trip.
 */
static void
ref_format(const struct rfc3339_time *t, char *buf, size_t cap)
{
	time_t local = (time_t)(t->sec + (int64_t)t->off_min * 60);
	struct tm tm;
	char frac[16] = "", zone[8] = "Z";
	int aoff = t->off_min < 0 ? -t->off_min : t->off_min;

	assert_non_null(gmtime_r(&local, &tm));
	if (t->nsec != 0) {
		size_t n;

		snprintf(frac, sizeof(frac), ".%09d", (int)t->nsec);
		for (n = strlen(frac); frac[n - 1] == '0'; n--)
			frac[n - 1] = '\0';
	}
	if (t->off_min != 0)
		snprintf(zone, sizeof(zone), "%c%02d:%02d", t->off_min < 0 ? '-' : '+', aoff / 60,
		    aoff % 60);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d%s%s", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac, zone);
}

/* format(t) is what an independent printer makes of t, and parse(format(t)) == t. */
static void
test_roundtrip_random(void **state)
{
	static const int32_t nsec_shapes[] = { 0, 100000000, 10, 1, 999999999, 500000 };
	uint64_t rng = 0x243f6a8885a308d3ULL;
	(void)state;

	for (int i = 0; i < 300000; i++) {
		struct rfc3339_time t, back;
		char buf[RFC3339_MAXLEN + 1], again[RFC3339_MAXLEN + 1], want[64];
		size_t n;

		t.off_min = (int16_t)(i % 5 == 0 ? 0 : rng_range(&rng, -1439, 1439));
		/* Keep the local wall time inside years 0000..9999. */
		t.sec = rng_range(&rng, -62167219200LL, 253402300799LL) - t.off_min * 60;
		t.nsec = i % 3 == 0 ? nsec_shapes[rng_next(&rng) % 6] :
		    (int32_t)rng_range(&rng, 0, 999999999);

		n = rfc3339_format(&t, buf, sizeof(buf));
		ref_format(&t, want, sizeof(want));
		if (strcmp(buf, want) != 0)
			fail_msg("sec=%lld nsec=%d off=%d: printed %s, want %s", (long long)t.sec,
			    (int)t.nsec, (int)t.off_min, buf, want);
		assert_int_equal(n, strlen(want));
		if (rfc3339_parse(buf, n, &back) != 0)
			fail_msg("own output rejected: %s", buf);
		if (back.sec != t.sec || back.nsec != t.nsec || back.off_min != t.off_min)
			fail_msg("%s: round trip changed the value", buf);
		assert_int_equal(rfc3339_format(&back, again, sizeof(again)), n);
		assert_string_equal(again, want);
		/* Go's form: no trailing zero in a fraction, "Z" iff offset 0. */
		assert_true(strchr(buf, '.') == NULL || buf[n - (t.off_min ? 7 : 2)] != '0');
		assert_true((buf[n - 1] == 'Z') == (t.off_min == 0));
	}
}

/*
 * Single-byte mutations of valid strings never crash, and whatever is
 * accepted survives a round trip (so it was genuinely in range).
 */
static void
test_mutations(void **state)
{
	static const char *const seeds[] = {
		"2021-08-17T15:33:59.123456789+03:00",
		"2024-02-29T23:59:59Z",
		"0000-01-01T00:00:00-23:59",
	};
	uint64_t rng = 0x13198a2e03707344ULL;
	(void)state;

	for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
		size_t len = strlen(seeds[k]);

		for (size_t pos = 0; pos < len; pos++) {
			for (int c = 0; c < 256; c++) {
				char s[64];
				struct rfc3339_time t, back;
				char buf[RFC3339_MAXLEN + 1];

				memcpy(s, seeds[k], len);
				s[pos] = (char)c;
				if (rfc3339_parse(s, len, &t) != 0)
					continue;
				assert_true(rfc3339_format(&t, buf, sizeof(buf)) > 0);
				assert_int_equal(parse_str(buf, &back), 0);
				/* The same instant and offset, field by field (not by rfc3339_cmp). */
				assert_int_equal(back.sec, t.sec);
				assert_int_equal(back.nsec, t.nsec);
				assert_int_equal(back.off_min, t.off_min);
			}
		}
	}
	/* Random bytes of random length: no crash, no out-of-bounds read. */
	for (int i = 0; i < 100000; i++) {
		size_t len = (size_t)rng_range(&rng, 0, 40);
		char *s = malloc(len ? len : 1);
		struct rfc3339_time t;

		assert_non_null(s);
		for (size_t j = 0; j < len; j++)
			s[j] = (char)("0123456789-:T.Z+ zt"[rng_next(&rng) % 19]);
		(void)rfc3339_parse(s, len, &t);
		free(s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid_table),
		cmocka_unit_test(test_parse_invalid_table),
		cmocka_unit_test(test_parse_length_and_nul),
		cmocka_unit_test(test_cmp_instants),
		cmocka_unit_test(test_format_trims_and_offsets),
		cmocka_unit_test(test_format_out_of_contract),
		cmocka_unit_test(test_parse_every_day),
		cmocka_unit_test(test_parse_random_vs_timegm),
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
