#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/ring.h"
#include "holdback.h"
#include "outq.h"
#include "slot.h"
#include "spill.h"

/* How often a slot that holds back its users says so, and a full spill complains. */
#define POOL_HELD_LOG_MS 10000

struct holdback {
	pool_ack_fn ack;
	void *ack_arg;
	int64_t stall_ms, spill_after_ms;
	uint64_t spill_max;
	bool cluster;               /* cluster mode: never spill (holdback_set_config) */
	uint64_t stall_kills;
	int64_t now_ms;           /* the pool's, for this call */
	int64_t *lag;             /* 2 per slot, scratch for holdback_check_lag */
};

struct holdback *
holdback_new(int nslots, pool_ack_fn ack, void *ack_arg)
{
	struct holdback *h;

	if ((h = calloc(1, sizeof(*h))) == NULL || (h->lag = calloc((size_t)nslots * 2, sizeof(*h->lag))) == NULL) {
		free(h);
		return NULL;
	}
	h->ack = ack;
	h->ack_arg = ack_arg;
	return h;
}

void
holdback_free(struct holdback *h)
{
	if (h == NULL)
		return;
	free(h->lag);
	free(h);
}

void
holdback_set_config(struct holdback *h, const struct config *c, struct slot *slots, int n)
{
	h->stall_ms = c->worker_stall_timeout_ms;
	h->spill_after_ms = c->spill_after_ms;
	/*
	 * Cluster mode never spills.  A spill is acked once synced, before
	 * the worker applies it; a partition that then moves reaches its next
	 * owner with those requests below the ack floor, that is, as answered
	 * by us, and they never are if we lose the lease first.  A slow
	 * worker holds back this instance's partitions instead, and one that
	 * stalls is killed as always.
	 */
	h->cluster = c->partitions > 0;
	h->spill_max = h->cluster ? 0 : (uint64_t)c->spill_max_bytes;
	for (int i = 0; i < n; i++)
		if (slots[i].sp != NULL)
			spill_set_max(slots[i].sp, h->spill_max);
}

int
holdback_open(struct holdback *h, struct slot *s, const char *state_dir)
{
	s->unacked.size = sizeof(void *);
	/* What an earlier run spilled was acked: it goes to the worker before anything new. */
	if ((s->sp = spill_open(state_dir, s->index, h->spill_max)) == NULL)
		return -1;
	if (spill_unfed(s->sp) > 0) {
		s->spilling = true;
		s->held_since_ms = s->held_logged_ms = clock_mono_ms();
	}
	return 0;
}

void
holdback_close(struct slot *s, void (*drop)(void *ref))
{
	for (; ring_count(&s->unacked) > 0; ring_shift(&s->unacked))
		if (drop != NULL)
			drop(*(void **)ring_at(&s->unacked, s->unacked.head));
	ring_free(&s->unacked);
	if (s->sp != NULL && !spill_empty(s->sp))
		log_warnx("worker %d: %llu acked messages stay in its spill (spill-%d.*) for the next start",
		    s->index, (unsigned long long)spill_records(s->sp), s->index);
	spill_close(s->sp);
	s->sp = NULL;
}

void
holdback_check_strays(const char *state_dir, int nslots)
{
	int top = spill_scan(state_dir);

	if (top > nslots)
		log_errorx("%s holds spill files (spill-K.*) of worker slots up to %d, but %d workers run: "
		    "acked messages in them will not be applied. Start with the worker count in %s/LAYOUT "
		    "once, so they are applied, then change it", state_dir, top - 1, nslots, state_dir);
}

bool
holdback_route(struct holdback *h, struct slot *s, const uint8_t *frame, size_t len, void *ref,
    int64_t now_ms)
{
	void **u;

	h->now_ms = now_ms;
	if (!spill_has_room(s->sp, len)) {
		if (h->now_ms - s->full_logged_ms >= POOL_HELD_LOG_MS) {
			s->full_logged_ms = h->now_ms;
			log_errorx("worker %d: its spill cannot take more (%llu bytes held, spill_max_bytes %llu%s): "
			    "intake waits for it, which holds back EVERY user until worker %d catches up",
			    s->index, (unsigned long long)spill_bytes(s->sp), (unsigned long long)h->spill_max,
			    spill_has_room(s->sp, 0) ? "" : ", or writing it failed", s->index);
		}
		return false;
	}
	if ((u = ring_push(&s->unacked)) == NULL || spill_append(s->sp, frame, len, h->now_ms) == -1) {
		if (u != NULL)
			ring_unpush(&s->unacked);
		log_error("spilling a frame for worker %d", s->index);
		return false;
	}
	*u = ref;
	return true;
}

void
holdback_done(struct slot *s, uint64_t id)
{
	s->done_id = id;
	spill_retire(s->sp, id);
}

/* A worker with work outstanding that sends nothing (not even STATS) is stopped or hung: restart it. */
static void
slot_watch(struct holdback *h, struct slot *s)
{
	if (s->state != SLOT_RUNNING || s->pid <= 0 || s->stopping || outq_count(s->q) == 0) {
		s->heard_ms = h->now_ms;
		return;
	}
	if (h->now_ms - s->heard_ms < h->stall_ms)
		return;
	log_errorx("worker %d (pid %ld) STALLED: nothing from it for %lld ms with %zu frames outstanding "
	    "(stopped, hung, or stuck in a system call); killing it (SIGKILL) to restart it with them",
	    s->index, (long)s->pid, (long long)(h->now_ms - s->heard_ms), outq_count(s->q));
	if (kill(s->pid, SIGKILL) == -1)
		log_error("kill worker %d (pid %ld)", s->index, (long)s->pid);
	s->stalled = true;
	s->stall_kills++;
	h->stall_kills++;
	s->heard_ms = h->now_ms;
}

/* How long the slot's oldest message not durable anywhere has waited (0: none). */
static int64_t
slot_lag(const struct holdback *h, const struct slot *s)
{
	int64_t t = outq_first_ref_ms(s->q, s->durable);

	return t < 0 ? 0 : h->now_ms - t;
}

static int
slot_copy_entry(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg)
{
	struct slot *s = arg;

	/* Control frames stay where they are: a restarted worker gets its settings from HELLO. */
	if (*ref != NULL) {
		/* Its time is never read back: fed already, and a later run counts from its own start. */
		if (!spill_has_room(s->sp, len) || spill_append_fed(s->sp, frame, len, 0, id) == -1)
			return -1;
	}
	s->copied = id;
	return 0;
}

/* Start spilling: what the queue holds goes to the spill too, so it can be acked once synced. */
static void
slot_spill_start(struct holdback *h, struct slot *s, int64_t lag)
{
	bool all = outq_walk(s->q, s->copied, UINT64_MAX, slot_copy_entry, s) == 0;

	s->spilling = true;
	if (s->held_since_ms == 0)
		s->held_since_ms = h->now_ms;
	s->held_logged_ms = h->now_ms;
	log_warnx("worker %d holds back its users: its oldest message has waited %lld ms while other "
	    "workers keep up; spilling its %zu queued and all newer messages to spill-%d.* so nobody "
	    "else waits%s", s->index, (long long)lag, outq_count(s->q), s->index,
	    all ? "" : " (its spill could not take the whole queue: see spill_max_bytes)");
}

/* How long the slot's oldest unfinished frame has waited; "forever" while it has a spill to work off. */
static int64_t
slot_behind(const struct holdback *h, const struct slot *s)
{
	int64_t t = outq_oldest_ms(s->q);

	if (s->spilling && spill_unfed(s->sp) > 0)
		return INT64_MAX;
	return t < 0 ? 0 : h->now_ms - t;
}

/*
 * The rule: spill a slot when its oldest undurable message has waited
 * spill_after and another slot keeps up: its oldest unfinished frame has
 * waited at most half as long.  Under an even overload every slot lags
 * alike and nobody spills; one stuck or slow slot stands out within
 * spill_after.
 */
static void
holdback_check_lag(struct holdback *h, struct slot *slots, int n)
{
	int64_t *lag = h->lag, *behind = h->lag + n;

	for (int i = 0; i < n; i++) {
		lag[i] = slot_lag(h, &slots[i]);
		behind[i] = slot_behind(h, &slots[i]);
	}
	for (int i = 0; i < n; i++) {
		struct slot *s = &slots[i];
		bool other_ok = false;

		for (int j = 0; j < n && !other_ok; j++)
			other_ok = j != i && behind[j] <= lag[i] / 2;
		if (lag[i] < h->spill_after_ms || !other_ok || s->spilling)
			continue;
		if (!s->stopping && spill_has_room(s->sp, 0)) {
			slot_spill_start(h, s, lag[i]);
		} else if (s->held_since_ms == 0) {
			s->held_since_ms = s->held_logged_ms = h->now_ms;
			log_warnx("worker %d holds back everybody: its oldest message has waited %lld ms while "
			    "other workers keep up (%zu queued), and it cannot spill (%s), so the ack floor "
			    "waits for it", s->index, (long long)lag[i], outq_count(s->q),
			    s->stopping ? "shutting down" : h->cluster ? "cluster mode never spills" :
			    h->spill_max == 0 ? "spill_max_bytes = 0" :
			    "its spill is full or failing");
		}
	}
}

/* The spill synced: ack what it holds (copies of queue entries first: they are older). */
static int
slot_ack_copy(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg)
{
	struct holdback *h = arg;

	(void)id;
	(void)frame;
	(void)len;
	if (*ref != NULL) {
		h->ack(*ref, h->ack_arg);
		*ref = NULL;
	}
	return 0;
}

static void
slot_sync(struct holdback *h, struct slot *s)
{
	if (spill_sync(s->sp) != 1)
		return;
	outq_walk(s->q, s->durable, s->copied, slot_ack_copy, h);
	s->durable = s->copied;
	for (; ring_count(&s->unacked) > 0; ring_shift(&s->unacked))
		h->ack(*(void **)ring_at(&s->unacked, s->unacked.head), h->ack_arg);
	spill_retire(s->sp, s->done_id);
}

/* Hand spilled messages to the worker, oldest first, as its queue makes room. */
static void
slot_feed(struct slot *s)
{
	const uint8_t *frame;
	int64_t at;
	size_t len;

	/* Copies not yet synced come first in the spill: wait for them. */
	if (s->stopping || s->durable != s->copied)
		return;
	/* With the time it was routed: the queue's oldest entry tells how far behind the worker is. */
	while (spill_next(s->sp, &frame, &len, &at) == 1 && outq_has_room(s->q, len)) {
		if (slot_queue(s, frame, len, NULL, at) == -1) {
			log_error("queueing a spilled frame for worker %d", s->index);
			return;
		}
		spill_fed(s->sp, s->next_id - 1);
		s->copied = s->durable = s->next_id - 1;
	}
}

/* Spilling ends when everything spilled was handed over and the worker keeps up again. */
static void
slot_check_caught_up(struct holdback *h, struct slot *s)
{
	int64_t oldest = outq_oldest_ms(s->q);

	if (s->spilling && spill_unfed(s->sp) == 0 &&
	    (oldest < 0 || h->now_ms - oldest < h->spill_after_ms / 2))
		s->spilling = false;
	if (s->held_since_ms == 0 || s->spilling || slot_lag(h, s) >= h->spill_after_ms)
		return;
	log_info("worker %d caught up after %lld ms holding back its users", s->index,
	    (long long)(h->now_ms - s->held_since_ms));
	s->held_since_ms = 0;
}

/* Messages routed to the slot its worker has not finished; of those, how many are in its spill. */
static void
slot_held(const struct slot *s, uint64_t *waiting, uint64_t *spilled)
{
	*waiting = outq_count(s->q) + spill_unfed(s->sp);
	/* The spill also counts records done but in a file not deleted yet. */
	*spilled = spill_records(s->sp) < *waiting ? spill_records(s->sp) : *waiting;
}

static void
slot_log_held(struct holdback *h, struct slot *s)
{
	uint64_t waiting, spilled;

	if (s->held_since_ms == 0 || h->now_ms - s->held_logged_ms < POOL_HELD_LOG_MS)
		return;
	s->held_logged_ms = h->now_ms;
	slot_held(s, &waiting, &spilled);
	log_warnx("worker %d is holding back %llu messages of its users (%llu of them in its spill, "
	    "%llu bytes) for %lld s now; %s", s->index, (unsigned long long)waiting,
	    (unsigned long long)spilled, (unsigned long long)spill_bytes(s->sp),
	    (long long)(h->now_ms - s->held_since_ms) / 1000,
	    s->state == SLOT_PARKED ? "the slot is PARKED (fix it, then SIGHUP)" :
	    s->state == SLOT_WAITING ? "its worker is waiting to be restarted" :
	    h->now_ms - s->heard_ms >= 1000 ? "its worker reports nothing" : "its worker is slow");
}

int
holdback_settle(struct holdback *h, struct slot *slots, int n, int64_t now_ms)
{
	bool busy = false;

	h->now_ms = now_ms;
	for (int i = 0; i < n; i++)
		slot_watch(h, &slots[i]);
	holdback_check_lag(h, slots, n);
	for (int i = 0; i < n; i++) {
		struct slot *s = &slots[i];

		slot_sync(h, s);
		slot_feed(s);
		slot_check_caught_up(h, s);
		slot_log_held(h, s);
		busy |= outq_count(s->q) > 0 || !spill_empty(s->sp);
	}
	/* Lags and stalls are measured in time: look again soon while anything is outstanding. */
	return busy ? 100 : -1;
}

bool
holdback_empty(const struct slot *s)
{
	return spill_empty(s->sp);
}

bool
holdback_durable(const struct slot *s)
{
	return outq_first_ref_ms(s->q, s->durable) < 0 && ring_count(&s->unacked) == 0;
}

bool
holdback_held(const struct slot *s)
{
	return s->held_since_ms != 0;
}

uint64_t
holdback_spilled(const struct slot *s)
{
	return spill_unfed(s->sp);
}

uint64_t
holdback_stall_kills(const struct holdback *h)
{
	return h->stall_kills;
}

void
holdback_slot_stats(const struct slot *s, struct pool_slot_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->held = s->held_since_ms != 0;
	slot_held(s, &st->waiting, &st->spilled);
	st->stall_kills = s->stall_kills;
}
