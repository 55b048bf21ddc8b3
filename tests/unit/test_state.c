/* Unit tests for common/state.c: every SPEC state rule, in isolation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "spec_ref.h"
#include "state.h"

static struct rfc3339_time
ts(const char *s)
{
	struct rfc3339_time t;

	assert_int_equal(rfc3339_parse(s, strlen(s), &t), 0);
	return t;
}

static struct alarm_state
mk(enum alarm_status status, const char *when, bool delivered)
{
	struct alarm_state st = { status, ts(when), delivered };

	return st;
}

static void
assert_time_equal(const struct rfc3339_time *a, const struct rfc3339_time *b)
{
	assert_int_equal(a->sec, b->sec);
	assert_int_equal(a->nsec, b->nsec);
	assert_int_equal(a->off_min, b->off_min);
}

static void
assert_state_equal(const struct alarm_state *a, const struct alarm_state *b)
{
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->delivered, b->delivered);
	assert_time_equal(&a->changed_at, &b->changed_at);
}

/* Apply and check the result; the caller inspects *st. */
static void
apply(struct alarm_state *st, bool exists, enum alarm_status status, const char *when,
    enum state_result want)
{
	struct rfc3339_time t = ts(when);
	enum state_result r = state_apply(st, exists, status, &t);

	if (r != want)
		fail_msg("state_apply(%s, %s): got %s, want %s", when,
		    status == STATUS_CLEARED ? "CLEARED" : status == STATUS_WARNING ? "WARNING" : "CRITICAL",
		    state_result_name(r), state_result_name(want));
}

static void
test_new_record(void **unused)
{
	struct alarm_state st;

	(void)unused;
	memset(&st, 0xa5, sizeof(st));   /* garbage: ignored when !exists */
	apply(&st, false, STATUS_WARNING, "2021-08-17T15:33:59+03:00", STATE_NEW);
	assert_int_equal(st.status, STATUS_WARNING);
	assert_false(st.delivered);
	assert_int_equal(st.changed_at.off_min, 180);
	assert_true(state_pending(&st));
}

static void
test_new_cleared_is_tombstone(void **unused)
{
	struct alarm_state st;

	(void)unused;
	apply(&st, false, STATUS_CLEARED, "2021-08-17T13:00:00Z", STATE_NEW);
	assert_int_equal(st.status, STATUS_CLEARED);
	assert_false(st.delivered);
	assert_false(state_pending(&st));
	/* The tombstone rejects an older raise (rule 2 + rule 4). */
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T12:59:59.999999999Z", STATE_STALE);
	assert_int_equal(st.status, STATUS_CLEARED);
}

static void
test_stale_ignored(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T13:00:00Z", true);
	struct alarm_state before = st;

	(void)unused;
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T12:00:00Z", STATE_STALE);
	assert_state_equal(&st, &before);
	apply(&st, true, STATUS_CLEARED, "2021-08-17T12:59:59.999999999Z", STATE_STALE);
	assert_state_equal(&st, &before);
}

/* SPEC: 2021-08-17T15:33:59+03:00 is earlier than 2021-08-17T13:00:00Z. */
static void
test_offset_aware_order(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T13:00:00Z", false);
	struct alarm_state before = st;

	(void)unused;
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T15:33:59+03:00", STATE_STALE);
	assert_state_equal(&st, &before);

	st = mk(STATUS_WARNING, "2021-08-17T15:33:59+03:00", false);
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T13:00:00Z", STATE_CHANGED);
	assert_int_equal(st.status, STATUS_CRITICAL);
	assert_int_equal(st.changed_at.off_min, 0);

	/* A negative offset: 10:00-05:00 is 15:00Z, later than 14:00Z. */
	st = mk(STATUS_WARNING, "2021-08-17T14:00:00Z", false);
	apply(&st, true, STATUS_CLEARED, "2021-08-17T10:00:00-05:00", STATE_CHANGED);
	assert_int_equal(st.changed_at.off_min, -300);
}

static void
test_fraction_order(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-06-07T20:40:15.598765212Z", false);

	(void)unused;
	apply(&st, true, STATUS_CRITICAL, "2021-06-07T20:40:15.598765211Z", STATE_STALE);
	apply(&st, true, STATUS_CRITICAL, "2021-06-07T20:40:15.598765213Z", STATE_CHANGED);
	/* .5 and .500000000 are the same instant. */
	st = mk(STATUS_WARNING, "2021-06-07T20:40:15.5Z", false);
	apply(&st, true, STATUS_WARNING, "2021-06-07T20:40:15.500000000Z", STATE_DUPLICATE);
}

static void
test_duplicate(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T15:33:59+03:00", true);
	struct alarm_state before = st;

	(void)unused;
	apply(&st, true, STATUS_WARNING, "2021-08-17T15:33:59+03:00", STATE_DUPLICATE);
	assert_state_equal(&st, &before);
	/* Same instant spelled with another offset is still a duplicate, and keeps the stored offset. */
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:33:59Z", STATE_DUPLICATE);
	assert_state_equal(&st, &before);
}

static void
test_same_instant_more_severe(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T12:33:59Z", true);

	(void)unused;
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T15:33:59+03:00", STATE_CHANGED);
	assert_int_equal(st.status, STATUS_CRITICAL);
	assert_false(st.delivered);
	assert_int_equal(st.changed_at.off_min, 180);   /* the winning update's offset */

	st = mk(STATUS_CLEARED, "2021-08-17T12:33:59Z", false);
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:33:59Z", STATE_CHANGED);
	assert_int_equal(st.status, STATUS_WARNING);
	assert_true(state_pending(&st));
}

static void
test_same_instant_less_severe(void **unused)
{
	struct alarm_state st = mk(STATUS_CRITICAL, "2021-08-17T12:33:59Z", false);
	struct alarm_state before = st;

	(void)unused;
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:33:59Z", STATE_LESS_SEVERE);
	apply(&st, true, STATUS_CLEARED, "2021-08-17T15:33:59+03:00", STATE_LESS_SEVERE);
	assert_state_equal(&st, &before);
}

/* Replicas seeing the same-instant updates in either order must agree. */
static void
test_same_instant_order_independent(void **unused)
{
	static const enum alarm_status all[] = { STATUS_CLEARED, STATUS_WARNING, STATUS_CRITICAL };
	/* SPEC rule 3, spelled out: the more severe of the two, CRITICAL > WARNING > CLEARED. */
	static const enum alarm_status winner[3][3] = {
		{ STATUS_CLEARED, STATUS_WARNING, STATUS_CRITICAL },
		{ STATUS_WARNING, STATUS_WARNING, STATUS_CRITICAL },
		{ STATUS_CRITICAL, STATUS_CRITICAL, STATUS_CRITICAL },
	};
	struct rfc3339_time t = { 1629203639, 0, 0 };   /* 2021-08-17T12:33:59Z */

	(void)unused;
	for (size_t i = 0; i < 3; i++) {
		for (size_t j = 0; j < 3; j++) {
			struct alarm_state a, b;

			state_apply(&a, false, all[i], &t);
			state_apply(&a, true, all[j], &t);
			state_apply(&b, false, all[j], &t);
			state_apply(&b, true, all[i], &t);
			assert_int_equal(a.status, b.status);
			assert_int_equal(a.status, winner[i][j]);
		}
	}
}

static void
test_newer_status_change(void **unused)
{
	struct alarm_state st = mk(STATUS_CRITICAL, "2021-08-17T12:00:00Z", true);

	(void)unused;
	/* Newer wins even when less severe (rule 1 beats rule 3). */
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:00:01Z", STATE_CHANGED);
	assert_int_equal(st.status, STATUS_WARNING);
	assert_false(st.delivered);
	assert_true(state_pending(&st));
}

static void
test_newer_same_status_refreshes(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);
	/* 2021-08-17T16:00:00.25+03:00 is 13:00:00.25Z. */
	const struct rfc3339_time later = { 1629205200, 250000000, 180 };

	(void)unused;
	apply(&st, true, STATUS_WARNING, "2021-08-17T16:00:00.25+03:00", STATE_REFRESHED);
	assert_true(st.delivered);                /* SPEC: not a change */
	assert_false(state_pending(&st));
	assert_time_equal(&st.changed_at, &later); /* but LatestChangedAt moves on */

	st.delivered = false;
	apply(&st, true, STATUS_WARNING, "2021-08-17T13:00:01Z", STATE_REFRESHED);
	assert_false(st.delivered);
	assert_true(state_pending(&st));
}

/* Our reading of "its status has changed since the last digest that held it". */
static void
test_redelivery_after_clear(void **unused)
{
	struct alarm_state st = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);

	(void)unused;
	assert_false(state_pending(&st));
	apply(&st, true, STATUS_CLEARED, "2021-08-17T12:01:00Z", STATE_CHANGED);
	assert_false(state_pending(&st));
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:02:00Z", STATE_CHANGED);
	assert_true(state_pending(&st));

	st = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);
	apply(&st, true, STATUS_CRITICAL, "2021-08-17T12:01:00Z", STATE_CHANGED);
	apply(&st, true, STATUS_WARNING, "2021-08-17T12:02:00Z", STATE_CHANGED);
	assert_true(state_pending(&st));
}

/*
 * Every stored state against every update, checked against spec_ref.h's
 * reading of the SPEC: the result, the state left behind, whether it is
 * pending, and when it expires.  Instants are literals, some equal under
 * different offsets, some a nanosecond apart.
 */
static void
test_apply_against_reference(void **unused)
{
	static const enum alarm_status all[] = { STATUS_CLEARED, STATUS_WARNING, STATUS_CRITICAL };
	static const struct rfc3339_time at[] = {
		{ 1629201600, 0, 0 },              /* 2021-08-17T12:00:00Z */
		{ 1629201600, 0, 180 },            /* 2021-08-17T15:00:00+03:00, the same instant */
		{ 1629201600, 1, 0 },              /* one nanosecond later */
		{ 1629201599, 999999999, -300 },   /* 2021-08-17T06:59:59.999999999-05:00 */
		{ 1629201601, 0, -90 },            /* 2021-08-17T10:30:01-01:30 */
	};
	static const int64_t retention[] = { 0, 1, 1000 };
	size_t nat = sizeof(at) / sizeof(at[0]), cases = 0;

	(void)unused;
	for (int exists = 0; exists < 2; exists++)
	for (size_t ss = 0; ss < 3; ss++)
	for (size_t sa = 0; sa < nat; sa++)
	for (int del = 0; del < 2; del++)
	for (size_t us = 0; us < 3; us++)
	for (size_t ua = 0; ua < nat; ua++) {
		struct alarm_state st;
		struct ref_alarm ref = { exists, all[ss], at[sa], del };
		enum state_result got, want;

		if (exists)
			st = (struct alarm_state){ all[ss], at[sa], del };
		else
			memset(&st, 0xa5, sizeof(st));   /* ignored when there is no record */
		got = state_apply(&st, exists, all[us], &at[ua]);
		want = ref_apply(&ref, all[us], &at[ua]);
		if (got != want)
			fail_msg("stored %s%s at %d (delivered %d), update %s at %d: got %s, want %s",
			    exists ? "" : "(no record) ", alarm_status_name(all[ss]), (int)sa, del,
			    alarm_status_name(all[us]), (int)ua, state_result_name(got),
			    state_result_name(want));
		assert_int_equal(st.status, ref.status);
		assert_int_equal(st.delivered, ref.delivered);
		assert_time_equal(&st.changed_at, &ref.at);
		assert_int_equal(state_pending(&st), ref_pending(&ref));
		/* Around the millisecond of the stored instant, for a few retentions. */
		for (size_t r = 0; r < sizeof(retention) / sizeof(retention[0]); r++) {
			int64_t ms = ref_ns(&ref.at) / REF_NS_PER_MS + retention[r];

			for (int64_t now = ms - 1; now <= ms + 2; now++)
				assert_int_equal(state_expired(&st, now, retention[r]),
				    ref_expired(&ref, now, retention[r]));
		}
		cases++;
	}
	assert_int_equal(cases, 2 * 3 * 5 * 2 * 3 * 5);
}

static void
test_pending(void **unused)
{
	struct alarm_state st = mk(STATUS_CLEARED, "2021-08-17T12:00:00Z", false);

	(void)unused;
	assert_false(state_pending(&st));
	st.delivered = true;
	assert_false(state_pending(&st));
	st.status = STATUS_WARNING;
	assert_false(state_pending(&st));
	st.delivered = false;
	assert_true(state_pending(&st));
	st.status = STATUS_CRITICAL;
	assert_true(state_pending(&st));
	st.delivered = true;
	assert_false(state_pending(&st));
}

static void
test_expired(void **unused)
{
	struct alarm_state st = mk(STATUS_CLEARED, "2021-08-17T12:00:00.5Z", false);
	int64_t at = 1629201600500LL;   /* that ChangedAt in ms */
	int64_t day = 86400000;

	(void)unused;
	assert_false(state_expired(&st, at + day, day));       /* exactly at the cutoff: kept */
	assert_true(state_expired(&st, at + day + 1, day));
	assert_false(state_expired(&st, at + day - 1, day));
	assert_false(state_expired(&st, at, 14 * day));
	/* Only tombstones expire; an active alarm is never dropped. */
	st.status = STATUS_WARNING;
	assert_false(state_expired(&st, at + 100 * day, day));
	st.status = STATUS_CRITICAL;
	assert_false(state_expired(&st, at + 100 * day, day));
	/* Extreme settings saturate instead of wrapping around. */
	st.status = STATUS_CLEARED;
	assert_false(state_expired(&st, at + day, INT64_MAX));
	assert_false(state_expired(&st, INT64_MIN, INT64_MAX));
	assert_true(state_expired(&st, INT64_MAX, 0));
	assert_true(state_expired(&st, at + 1, INT64_MIN));
}

static void
test_expired_offset(void **unused)
{
	/* Expiry is by instant: +03:00 is three hours earlier than the wall clock says. */
	struct alarm_state st = mk(STATUS_CLEARED, "2021-08-17T15:00:00+03:00", false);
	int64_t utc_ms = 1629201600000LL;   /* 2021-08-17T12:00:00Z */

	(void)unused;
	assert_true(state_expired(&st, utc_ms + 1, 0));
	assert_false(state_expired(&st, utc_ms, 0));
}

static void
test_merge(void **unused)
{
	struct alarm_state dst, src;

	(void)unused;
	/* Newer instant wins, whatever its severity. */
	dst = mk(STATUS_CRITICAL, "2021-08-17T12:00:00Z", true);
	src = mk(STATUS_CLEARED, "2021-08-17T12:00:01Z", false);
	state_merge(&dst, &src);
	assert_state_equal(&dst, &src);

	/* Older ignored. */
	dst = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);
	src = mk(STATUS_CRITICAL, "2021-08-17T14:59:59+03:00", false);
	state_merge(&dst, &src);
	assert_int_equal(dst.status, STATUS_WARNING);

	/* Tie: more severe wins. */
	dst = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);
	src = mk(STATUS_CRITICAL, "2021-08-17T15:00:00+03:00", false);
	state_merge(&dst, &src);
	assert_state_equal(&dst, &src);

	/* Tie, less severe: dst kept. */
	src = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", true);
	state_merge(&dst, &src);
	assert_int_equal(dst.status, STATUS_CRITICAL);

	/* Exact tie keeps dst, delivered flag and offset included. */
	dst = mk(STATUS_WARNING, "2021-08-17T12:00:00Z", false);
	src = mk(STATUS_WARNING, "2021-08-17T15:00:00+03:00", true);
	state_merge(&dst, &src);
	assert_false(dst.delivered);
	assert_int_equal(dst.changed_at.off_min, 0);
}

static void
test_merge_idempotent(void **unused)
{
	static const char *const when[] = {
		"2021-08-17T12:00:00Z", "2021-08-17T15:00:00+03:00", "2021-08-17T12:00:01Z",
	};
	struct alarm_state v[18];
	size_t n = 0;

	(void)unused;
	for (size_t w = 0; w < 3; w++)
		for (int s = STATUS_CLEARED; s <= STATUS_CRITICAL; s++)
			for (int d = 0; d < 2; d++)
				v[n++] = mk((enum alarm_status)s, when[w], d);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			struct alarm_state once = v[i], twice, ab = v[i], ba = v[j];
			bool takes = ref_merge_takes_src(v[i].status, &v[i].changed_at, v[j].status,
			    &v[j].changed_at);

			state_merge(&once, &v[j]);
			/* The reference's pick, whole: status, instant, offset and delivered flag. */
			assert_state_equal(&once, takes ? &v[j] : &v[i]);
			twice = once;
			state_merge(&twice, &v[j]);
			assert_state_equal(&once, &twice);
			/* Either direction agrees on status and instant. */
			state_merge(&ab, &v[j]);
			state_merge(&ba, &v[i]);
			assert_int_equal(ab.status, ba.status);
			assert_int_equal(ref_ns(&ab.changed_at), ref_ns(&ba.changed_at));
		}
	}
}

static void
test_result_names(void **unused)
{
	(void)unused;
	assert_string_equal(state_result_name(STATE_NEW), "new");
	assert_string_equal(state_result_name(STATE_CHANGED), "changed");
	assert_string_equal(state_result_name(STATE_REFRESHED), "refreshed");
	assert_string_equal(state_result_name(STATE_STALE), "stale");
	assert_string_equal(state_result_name(STATE_DUPLICATE), "duplicate");
	assert_string_equal(state_result_name(STATE_LESS_SEVERE), "less_severe");
	assert_string_equal(state_result_name((enum state_result)99), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_record),
		cmocka_unit_test(test_new_cleared_is_tombstone),
		cmocka_unit_test(test_stale_ignored),
		cmocka_unit_test(test_offset_aware_order),
		cmocka_unit_test(test_fraction_order),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_same_instant_more_severe),
		cmocka_unit_test(test_same_instant_less_severe),
		cmocka_unit_test(test_same_instant_order_independent),
		cmocka_unit_test(test_newer_status_change),
		cmocka_unit_test(test_newer_same_status_refreshes),
		cmocka_unit_test(test_redelivery_after_clear),
		cmocka_unit_test(test_apply_against_reference),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_expired_offset),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_merge_idempotent),
		cmocka_unit_test(test_result_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
