/*
 * spec_ref: the SPEC's state rules restated for the unit tests, written from
 * SPEC.md ("State", "Digest") and docs/PROTOCOL.md alone, so that no expected
 * value comes from worker/state.c, from rfc3339_cmp, or from the numeric order
 * of enum alarm_status (all three are what the code under test relies on).
 *
 * Instants are compared as epoch nanoseconds, severity by a table of its own.
 * The only things taken from the service's headers are names: the enum
 * constants a result or status is reported as, and the rfc3339_time fields a
 * test reads its inputs from.  Header-only, so each test binary stays one file.
 */
#ifndef SPEC_REF_H
#define SPEC_REF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "state.h"

#define REF_NS_PER_SEC INT64_C(1000000000)
#define REF_NS_PER_MS INT64_C(1000000)

/* The instant of t as nanoseconds since the epoch (the offset plays no part). */
static inline int64_t
ref_ns(const struct rfc3339_time *t)
{
	return t->sec * REF_NS_PER_SEC + t->nsec;
}

/* SPEC rule 3: CRITICAL > WARNING > CLEARED. */
static inline int
ref_rank(enum alarm_status s)
{
	switch (s) {
	case STATUS_CLEARED:
		return 0;
	case STATUS_WARNING:
		return 1;
	case STATUS_CRITICAL:
		return 2;
	}
	return -1;
}

/* What the service keeps for one (UserID, AlarmID). */
struct ref_alarm {
	bool exists;
	enum alarm_status status;
	struct rfc3339_time at;   /* newest accepted ChangedAt, with the offset it arrived with */
	bool delivered;           /* in a digest since its status last changed */
};

static inline void
ref_set(struct ref_alarm *r, enum alarm_status status, const struct rfc3339_time *at)
{
	r->exists = true;
	r->status = status;
	r->at = *at;
	r->delivered = false;
}

/* One AlarmStatusChanged; returns how the service must classify it. */
static inline enum state_result
ref_apply(struct ref_alarm *r, enum alarm_status status, const struct rfc3339_time *at)
{
	int64_t now, was;

	if (!r->exists) {
		/* Rule 4: a first CLEARED update makes a tombstone too. */
		ref_set(r, status, at);
		return STATE_NEW;
	}
	now = ref_ns(at);
	was = ref_ns(&r->at);
	if (now < was)
		return STATE_STALE;                  /* rule 2 */
	if (now == was) {                            /* rule 3 */
		if (status == r->status)
			return STATE_DUPLICATE;      /* the stored offset stays */
		if (ref_rank(status) < ref_rank(r->status))
			return STATE_LESS_SEVERE;
		ref_set(r, status, at);
		return STATE_CHANGED;
	}
	if (status == r->status) {
		/* Rule 1, but "the same status with a newer ChangedAt" is no change. */
		r->at = *at;
		return STATE_REFRESHED;
	}
	/* PROTOCOL.md: any accepted status change makes the alarm undelivered. */
	ref_set(r, status, at);
	return STATE_CHANGED;
}

/* Would it go into the next digest: active and not yet delivered in this status. */
static inline bool
ref_pending(const struct ref_alarm *r)
{
	return r->exists && r->status != STATUS_CLEARED && !r->delivered;
}

/*
 * PROTOCOL.md: a tombstone is dropped once its ChangedAt is older than the
 * retention; exactly at now - retention it is kept.
 */
static inline bool
ref_expired(const struct ref_alarm *r, int64_t now_ms, int64_t retention_ms)
{
	return r->exists && r->status == STATUS_CLEARED &&
	    ref_ns(&r->at) < (now_ms - retention_ms) * REF_NS_PER_MS;
}

/*
 * Merging two copies of one alarm (state.h's contract): the newer instant
 * wins, a tie goes to the more severe status, an exact tie keeps dst.
 */
static inline bool
ref_merge_takes_src(enum alarm_status dst_status, const struct rfc3339_time *dst_at,
    enum alarm_status src_status, const struct rfc3339_time *src_at)
{
	int64_t d = ref_ns(dst_at), s = ref_ns(src_at);

	return s > d || (s == d && ref_rank(src_status) > ref_rank(dst_status));
}

/* Digest order: instant, oldest first; ties by AlarmID bytewise, a proper prefix first. */
static inline int
ref_digest_cmp(int64_t a_ns, const void *a_id, size_t a_len, int64_t b_ns, const void *b_id,
    size_t b_len)
{
	int c;

	if (a_ns != b_ns)
		return a_ns < b_ns ? -1 : 1;
	c = memcmp(a_id, b_id, a_len < b_len ? a_len : b_len);
	if (c != 0)
		return c;
	return (a_len > b_len) - (a_len < b_len);
}

#endif
