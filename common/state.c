#include <stdint.h>

#include "state.h"

static void
state_set(struct alarm_state *st, enum alarm_status status, const struct rfc3339_time *t)
{
	st->status = status;
	st->changed_at = *t;
	st->delivered = false;
}

enum state_result
state_apply(struct alarm_state *st, bool exists, enum alarm_status status,
    const struct rfc3339_time *changed_at)
{
	int c;

	if (!exists) {
		/* A CLEARED first update still makes a record: the tombstone that rejects older raises. */
		state_set(st, status, changed_at);
		return STATE_NEW;
	}
	c = rfc3339_cmp(changed_at, &st->changed_at);
	if (c < 0)
		return STATE_STALE;
	if (c == 0) {
		if (status == st->status)
			return STATE_DUPLICATE;
		if (status < st->status)
			return STATE_LESS_SEVERE;
		/* The enum is ordered by severity, so every replica picks the same winner. */
		state_set(st, status, changed_at);
		return STATE_CHANGED;
	}
	if (status == st->status) {
		/* SPEC: "the same status with a newer ChangedAt does not" count as a change. */
		st->changed_at = *changed_at;
		return STATE_REFRESHED;
	}
	/*
	 * We read "its status has changed since the last digest that held it"
	 * as: ANY accepted status change since then.  So WARNING (delivered)
	 * -> CRITICAL -> WARNING, or WARNING (delivered) -> CLEARED -> WARNING,
	 * before the next digest is delivered again, even though the status is
	 * back where the last digest left it: the operator did see it go away
	 * (or get worse) in between, and an extra line beats a missed raise.
	 */
	state_set(st, status, changed_at);
	return STATE_CHANGED;
}

bool
state_pending(const struct alarm_state *st)
{
	return st->status != STATUS_CLEARED && !st->delivered;
}

/* Milliseconds of an instant, saturating so a garbage record cannot overflow. */
static int64_t
state_ms(const struct rfc3339_time *t)
{
	if (t->sec > INT64_MAX / 1000 - 1)
		return INT64_MAX;
	if (t->sec < INT64_MIN / 1000 + 1)
		return INT64_MIN;
	return t->sec * 1000 + t->nsec / 1000000;
}

bool
state_expired(const struct alarm_state *st, int64_t now_ms, int64_t retention_ms)
{
	int64_t cutoff;

	if (st->status != STATUS_CLEARED)
		return false;
	/* Saturate: a huge configured retention means "keep", not wrap-around. */
	if (retention_ms > 0 && now_ms < INT64_MIN + retention_ms)
		cutoff = INT64_MIN;
	else if (retention_ms < 0 && now_ms > INT64_MAX + retention_ms)
		cutoff = INT64_MAX;
	else
		cutoff = now_ms - retention_ms;
	return state_ms(&st->changed_at) < cutoff;
}

void
state_merge(struct alarm_state *dst, const struct alarm_state *src)
{
	int c = rfc3339_cmp(&src->changed_at, &dst->changed_at);

	/* Same outcome whichever copy arrives first, so a redone move changes nothing. */
	if (c > 0 || (c == 0 && src->status > dst->status))
		*dst = *src;
}

const char *
state_result_name(enum state_result r)
{
	switch (r) {
	case STATE_NEW:
		return "new";
	case STATE_CHANGED:
		return "changed";
	case STATE_REFRESHED:
		return "refreshed";
	case STATE_STALE:
		return "stale";
	case STATE_DUPLICATE:
		return "duplicate";
	case STATE_LESS_SEVERE:
		return "less_severe";
	case STATE_OVER_LIMIT:
		return "over_limit";
	}
	return "?";
}
