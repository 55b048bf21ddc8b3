#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/chan.h"
#include "../common/clock.h"
#include "../common/frame.h"
#include "../common/log.h"
#include "../common/ring.h"
#include "outq.h"
#include "pool.h"
#include "proc.h"
#include "spill.h"

/* How often a slot that holds back its users says so, and a full spill complains. */
#define POOL_HELD_LOG_MS 10000

enum slot_state {
	SLOT_RUNNING,   /* a process is (or should be) alive */
	SLOT_WAITING,   /* dead, restart due at next_start_ms */
	SLOT_PARKED,    /* crash loop: no restart until SIGHUP */
	SLOT_STOPPED,   /* exited on STOP */
};

struct slot {
	int index;
	enum slot_state state;
	pid_t pid;
	struct chan *ch;          /* our end of the channel (its queue: the HELLO), NULL when closed */
	bool stopping;            /* STOP queued: an exit is expected */
	struct outq *q;
	uint64_t next_id;
	int64_t started_ms, next_start_ms, backoff_ms;
	int quick_deaths;
	struct frame_stats stats;

	/*
	 * Isolation.  Queue entries up to id `copied` are in the spill (or
	 * are control frames), up to `durable` synced there and acked; refs
	 * of messages appended to the spill wait in `unacked` for its sync.
	 */
	struct spill *sp;
	bool spilling;            /* new messages go to the spill until the worker catches up */
	uint64_t copied, durable;
	struct ring unacked;      /* of void *: acked once the spill has synced */
	uint64_t done_id;         /* the worker's last DONE */
	int64_t heard_ms;         /* its last frame (or when it last had nothing to do) */
	bool stalled;             /* killed for stalling: explains its exit */
	uint64_t stall_kills;
	int64_t held_since_ms;    /* holding back its users since then; 0: not */
	int64_t held_logged_ms, full_logged_ms;
};

struct pool {
	struct slot *slots;
	int n;
	char *conf_text;
	size_t conf_len;
	int64_t backoff_min_ms, backoff_max_ms, healthy_ms, crash_loop_max;
	pool_ack_fn ack;
	void *ack_arg;
	uint64_t restarts, stall_kills;
	int64_t stall_ms, spill_after_ms;
	uint64_t spill_max;
	int64_t now_ms;           /* read once per loop pass: queue entries are stamped with it */
	int64_t *lag;             /* 2 per slot, scratch for pool_check_lag */
};

static int
pool_set_config(struct pool *p, const struct config *c)
{
	char *t = malloc(c->text_len + 1);

	if (t == NULL) {
		log_error("pool: copying configuration");
		return -1;
	}
	memcpy(t, c->text, c->text_len + 1);
	free(p->conf_text);
	p->conf_text = t;
	p->conf_len = c->text_len;
	p->backoff_min_ms = c->restart_backoff_min_ms;
	p->backoff_max_ms = c->restart_backoff_max_ms;
	p->healthy_ms = c->restart_healthy_ms;
	p->crash_loop_max = c->crash_loop_max;
	p->stall_ms = c->worker_stall_timeout_ms;
	p->spill_after_ms = c->spill_after_ms;
	p->spill_max = (uint64_t)c->spill_max_bytes;
	for (int i = 0; i < p->n; i++) {
		if (p->slots[i].q != NULL)
			outq_set_max(p->slots[i].q, (size_t)c->queue_max_bytes);
		if (p->slots[i].sp != NULL)
			spill_set_max(p->slots[i].sp, p->spill_max);
	}
	return 0;
}

static void
slot_close(struct slot *s)
{
	chan_free(s->ch);
	s->ch = NULL;
}

/* Spill files of slots this pool does not have would never be fed: say so loudly. */
static void
pool_check_strays(const char *state_dir, int nslots)
{
	int top = spill_scan(state_dir);

	if (top > nslots)
		log_errorx("%s holds spill files (spill-K.*) of worker slots up to %d, but %d workers run: "
		    "acked messages in them will not be applied. Start with the worker count in %s/LAYOUT "
		    "once, so they are applied, then change it", state_dir, top - 1, nslots, state_dir);
}

static int
slot_spawn(struct pool *p, struct slot *s)
{
	char *argv[] = { "alarm-supervisor", "--worker", NULL };
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_error("socketpair for worker %d", s->index);
		return -1;
	}
	if ((s->ch = chan_new(sv[0])) == NULL) {
		log_error("channel for worker %d", s->index);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (frame_put_hello(chan_out(s->ch), (uint32_t)s->index, (uint32_t)p->n, p->conf_text, p->conf_len) == -1) {
		log_error("encoding HELLO for worker %d", s->index);
		slot_close(s);
		close(sv[1]);
		return -1;
	}
	if ((pid = proc_spawn(argv, sv[1])) == -1) {
		slot_close(s);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	s->pid = pid;
	s->state = SLOT_RUNNING;
	s->started_ms = clock_mono_ms();
	s->heard_ms = s->started_ms;
	/* Whatever the last process had not finished goes to this one, first and in order. */
	outq_rewind(s->q);
	log_info("started worker %d/%d, pid %ld, %zu queued frames", s->index, p->n, (long)pid,
	    outq_count(s->q));
	return 0;
}

struct pool *
pool_new(const struct config *c, int nslots, pool_ack_fn ack, void *ack_arg)
{
	struct pool *p;

	if ((p = calloc(1, sizeof(*p))) == NULL || (p->slots = calloc((size_t)nslots, sizeof(*p->slots))) == NULL ||
	    (p->lag = calloc((size_t)nslots * 2, sizeof(*p->lag))) == NULL) {
		log_error("allocating %d worker slots", nslots);
		if (p != NULL)
			free(p->slots);
		free(p);
		return NULL;
	}
	p->n = nslots;
	p->now_ms = clock_mono_ms();
	p->ack = ack;
	p->ack_arg = ack_arg;
	if (pool_set_config(p, c) == -1)
		goto fail;
	for (int i = 0; i < nslots; i++) {
		struct slot *s = &p->slots[i];
		s->index = i;
		s->next_id = 1;
		s->backoff_ms = c->restart_backoff_min_ms;
		s->unacked.size = sizeof(void *);
		if ((s->q = outq_new((size_t)c->queue_max_bytes)) == NULL) {
			log_error("allocating queue for worker %d", i);
			goto fail;
		}
		/* What an earlier run spilled was acked: it goes to the worker before anything new. */
		if ((s->sp = spill_open(c->state_dir, i, p->spill_max)) == NULL)
			goto fail;
		if (spill_unfed(s->sp) > 0) {
			s->spilling = true;
			s->held_since_ms = s->held_logged_ms = clock_mono_ms();
		}
	}
	pool_check_strays(c->state_dir, nslots);
	for (int i = 0; i < nslots; i++) {
		if (slot_spawn(p, &p->slots[i]) == -1) {
			/* Treat like an early death: retried with backoff, parked if it keeps failing. */
			p->slots[i].state = SLOT_WAITING;
			p->slots[i].next_start_ms = clock_mono_ms() + p->backoff_min_ms;
		}
	}
	return p;
fail:
	pool_free(p, NULL);
	return NULL;
}

void
pool_free(struct pool *p, void (*drop)(void *ref))
{
	if (p == NULL)
		return;
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		slot_close(s);
		outq_free(s->q, drop);
		for (; ring_count(&s->unacked) > 0; ring_shift(&s->unacked))
			if (drop != NULL)
				drop(*(void **)ring_at(&s->unacked, s->unacked.head));
		ring_free(&s->unacked);
		if (s->sp != NULL && !spill_empty(s->sp))
			log_warnx("worker %d: %llu acked messages stay in its spill (spill-%d.*) for the next start",
			    s->index, (unsigned long long)spill_records(s->sp), s->index);
		spill_close(s->sp);
	}
	free(p->slots);
	free(p->lag);
	free(p->conf_text);
	free(p);
}

int
pool_size(const struct pool *p)
{
	return p->n;
}

/* The frame just encoded into outq_tail(s->q), with id s->next_id, becomes a queue entry. */
static int
slot_seal(struct slot *s, void *ref, int64_t at_ms)
{
	if (outq_seal(s->q, s->next_id, ref, at_ms) == -1)
		return -1;
	s->next_id++;
	return 0;
}

/* Queue a frame encoded elsewhere (with any id), routed at at_ms: it gets the slot's next id. */
static int
slot_queue(struct slot *s, const uint8_t *frame, size_t len, void *ref, int64_t at_ms)
{
	struct buf *t = outq_tail(s->q);

	if (buf_append(t, frame, len) == -1)
		return -1;
	/* Not an offset saved before the append: appending may compact the buffer. */
	frame_set_id(t->data + t->len - len, s->next_id);
	return slot_seal(s, ref, at_ms);
}

/* Into the spill; acked once the spill has synced it. */
static bool
slot_spill(struct pool *p, struct slot *s, const uint8_t *frame, size_t len, void *ref)
{
	void **u;

	if (!spill_has_room(s->sp, len)) {
		if (p->now_ms - s->full_logged_ms >= POOL_HELD_LOG_MS) {
			s->full_logged_ms = p->now_ms;
			log_errorx("worker %d: its spill cannot take more (%llu bytes held, spill_max_bytes %llu%s): "
			    "intake waits for it, which holds back EVERY user until worker %d catches up",
			    s->index, (unsigned long long)spill_bytes(s->sp), (unsigned long long)p->spill_max,
			    spill_has_room(s->sp, 0) ? "" : ", or writing it failed", s->index);
		}
		return false;
	}
	if ((u = ring_push(&s->unacked)) == NULL || spill_append(s->sp, frame, len, p->now_ms) == -1) {
		if (u != NULL)
			ring_unpush(&s->unacked);
		log_error("spilling a frame for worker %d", s->index);
		return false;
	}
	*u = ref;
	return true;
}

bool
pool_route(struct pool *p, uint32_t hash, const uint8_t *frame, size_t len, void *ref)
{
	/* The routing rule of the service: FNV-1a of the UserID, modulo the slot count. */
	struct slot *s = &p->slots[hash % (uint32_t)p->n];

	/* Behind its spill, never beside it: a user's messages keep their order. */
	if (s->spilling)
		return slot_spill(p, s, frame, len, ref);
	if (!outq_has_room(s->q, len))
		return false;
	if (slot_queue(s, frame, len, ref, p->now_ms) == -1) {
		log_error("queueing a frame for worker %d", s->index);
		return false;
	}
	return true;
}

int
pool_pollfds(struct pool *p, struct pollfd *fds, int max)
{
	int k = 0;

	for (int i = 0; i < p->n && k < max; i++) {
		struct slot *s = &p->slots[i];
		if (s->ch == NULL)
			continue;
		fds[k].fd = chan_fd(s->ch);
		fds[k].events = POLLIN;
		if (chan_queued(s->ch) > 0 || outq_unsent(s->q) > 0)
			fds[k].events |= POLLOUT;
		fds[k].revents = 0;
		k++;
	}
	return k;
}

/* A worker that breaks the protocol cannot be trusted with its queue: kill it, the restart replays. */
static void
slot_fail(struct slot *s)
{
	if (s->pid > 0)
		kill(s->pid, SIGKILL);
	slot_close(s);
}

static void
slot_on_frame(struct pool *p, struct slot *s, const struct frame *f)
{
	s->heard_ms = p->now_ms;
	switch (f->type) {
	case FRAME_DONE:
		outq_retire(s->q, f->id, p->ack, p->ack_arg);
		s->done_id = f->id;
		spill_retire(s->sp, f->id);
		break;
	case FRAME_STATS:
		if (frame_get_stats(f, &s->stats) == -1)
			log_warnx("worker %d sent a malformed STATS frame", s->index);
		break;
	case FRAME_READY:
		log_debug("worker %d ready", s->index);
		break;
	default:
		log_warnx("worker %d sent unexpected frame type %u; killing it", s->index, f->type);
		slot_fail(s);
	}
}

/* Take every complete frame read so far.  -1: the worker broke the protocol and was killed. */
static int
slot_take(struct pool *p, struct slot *s)
{
	struct frame f;
	const char *err;
	int rc;

	while ((rc = chan_next(s->ch, &f, &err)) == 1) {
		slot_on_frame(p, s, &f);
		if (s->ch == NULL)
			return -1;
	}
	if (rc == -1) {
		log_errorx("worker %d sent a bad frame (%s); killing it", s->index, err);
		slot_fail(s);
		return -1;
	}
	chan_consume(s->ch);
	return 0;
}

static void
slot_receive(struct pool *p, struct slot *s)
{
	int rc;

	do {
		if ((rc = chan_fill(s->ch, 65536)) == -1)
			log_error("read from worker %d", s->index);
		if (slot_take(p, s) == -1)
			return;
	} while (rc == CHAN_MORE);
	/* EOF: the process is going away; SIGCHLD tells us how. */
	if (rc == CHAN_EOF || rc == -1)
		slot_close(s);
}

static void
slot_flush(struct slot *s)
{
	/* The HELLO in the channel's queue goes out first: chan_send holds the outq's bytes back until then. */
	if (chan_flush(s->ch) == -1 || outq_send(s->q, s->ch) == -1) {
		/* EPIPE: it died; SIGCHLD restarts it and the queue is resent. */
		log_warn("write to worker %d", s->index);
		slot_close(s);
	}
}

void
pool_handle(struct pool *p, const struct pollfd *fds, int n)
{
	p->now_ms = clock_mono_ms();
	/* fds holds the open channels in slot order (pool_pollfds): walk both together. */
	for (int i = 0, k = 0; i < p->n && k < n; i++) {
		struct slot *s = &p->slots[i];
		if (s->ch == NULL || chan_fd(s->ch) != fds[k].fd)
			continue;
		if (fds[k].revents & (POLLIN | POLLHUP | POLLERR))
			slot_receive(p, s);
		k++;
	}
	/*
	 * Write every slot with something to send, not only those poll said
	 * were writable: frames queued since the poll mostly go out at once.
	 */
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		if (s->ch != NULL && (chan_queued(s->ch) > 0 || outq_unsent(s->q) > 0))
			slot_flush(s);
	}
}

static void
slot_on_exit(struct pool *p, struct slot *s, int status)
{
	int64_t now = clock_mono_ms(), ran = now - s->started_ms;
	char why[128];

	proc_status_str(status, why, sizeof(why));
	if (s->stalled) {
		size_t l = strlen(why);
		snprintf(why + l, sizeof(why) - l, " (stalled)");
		s->stalled = false;
	}
	/* Collect what it wrote before dying: its last DONE may be in there. */
	if (s->ch != NULL)
		slot_receive(p, s);
	slot_close(s);
	s->pid = 0;
	if (s->stopping && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		s->state = SLOT_STOPPED;
		log_info("worker %d stopped", s->index);
		return;
	}
	if (s->stopping) {
		s->state = SLOT_STOPPED;
		log_warnx("worker %d %s while stopping; %zu frames stay unacked", s->index, why, outq_count(s->q));
		return;
	}
	p->restarts++;
	if (ran >= p->healthy_ms) {
		s->quick_deaths = 0;
		s->backoff_ms = p->backoff_min_ms;
		s->next_start_ms = now;
	} else {
		/* At least backoff_min between starts of a worker that keeps dying early. */
		s->quick_deaths++;
		s->next_start_ms = now + s->backoff_ms;
		s->backoff_ms = s->backoff_ms * 2 > p->backoff_max_ms ? p->backoff_max_ms : s->backoff_ms * 2;
	}
	if (s->quick_deaths >= p->crash_loop_max) {
		s->state = SLOT_PARKED;
		log_errorx("worker %d %s after %lld ms, %d quick deaths in a row: PARKING the slot. "
		    "Its %zu queued messages wait; its users' newer ones go to its spill (other users "
		    "go on). Fix the cause (see the lines above), then send SIGHUP to retry",
		    s->index, why, (long long)ran, s->quick_deaths, outq_count(s->q));
		return;
	}
	s->state = SLOT_WAITING;
	log_warnx("worker %d %s after %lld ms; restarting in %lld ms with its %zu unfinished frames",
	    s->index, why, (long long)ran, (long long)(s->next_start_ms - now), outq_count(s->q));
}

void
pool_reap(struct pool *p)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0 || (pid == -1 && errno == ECHILD))
			return;
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			log_error("waitpid");
			return;
		}
		bool found = false;
		for (int i = 0; i < p->n && !found; i++) {
			if (p->slots[i].pid == pid) {
				slot_on_exit(p, &p->slots[i], status);
				found = true;
			}
		}
		if (!found)
			log_debug("reaped unknown child %ld", (long)pid);
	}
}

int
pool_tick(struct pool *p)
{
	int64_t now = clock_mono_ms(), next = -1;

	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		if (s->state != SLOT_WAITING)
			continue;
		if (s->next_start_ms <= now) {
			if (slot_spawn(p, s) == 0)
				continue;
			s->next_start_ms = now + p->backoff_min_ms;
		}
		if (next == -1 || s->next_start_ms - now < next)
			next = s->next_start_ms - now;
	}
	return (int)next;
}

bool
pool_idle(const struct pool *p)
{
	for (int i = 0; i < p->n; i++)
		if (outq_count(p->slots[i].q) > 0 || !spill_empty(p->slots[i].sp))
			return false;
	return true;
}

bool
pool_durable(const struct pool *p)
{
	for (int i = 0; i < p->n; i++) {
		const struct slot *s = &p->slots[i];
		if (outq_first_ref_ms(s->q, s->durable) >= 0 || ring_count(&s->unacked) > 0)
			return false;
	}
	return true;
}

void
pool_stop(struct pool *p)
{
	p->now_ms = clock_mono_ms();
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];

		if (s->stopping)
			continue;
		s->stopping = true;
		if (s->state != SLOT_RUNNING) {
			s->state = SLOT_STOPPED;
			continue;
		}
		/* Ahead of what waits in a spill: that stays on disk for the next start. */
		if (frame_put(outq_tail(s->q), FRAME_STOP, s->next_id, NULL, 0) == -1 || slot_seal(s, NULL, p->now_ms) == -1) {
			log_error("queueing STOP for worker %d; terminating it", s->index);
			if (s->pid > 0)
				kill(s->pid, SIGTERM);
		}
	}
}

bool
pool_exited(const struct pool *p)
{
	for (int i = 0; i < p->n; i++)
		if (p->slots[i].pid > 0)
			return false;
	return true;
}

void
pool_kill(struct pool *p)
{
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		if (s->pid > 0) {
			log_warnx("killing worker %d (pid %ld)", s->index, (long)s->pid);
			s->stopping = true;
			kill(s->pid, SIGKILL);
		}
	}
	/* SIGKILL cannot be caught: waiting for each is short and bounded. */
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		int status;

		while (s->pid > 0 && waitpid(s->pid, &status, 0) == -1) {
			if (errno != EINTR) {
				log_error("waitpid worker %d", s->index);
				s->pid = 0;
			}
		}
		if (s->pid > 0)
			slot_on_exit(p, s, status);
	}
}

void
pool_stop_wait(struct pool *p)
{
	struct pollfd *fds = calloc((size_t)p->n, sizeof(*fds));

	pool_stop(p);
	if (fds == NULL) {
		log_error("pool_stop_wait: allocating poll set; killing workers instead");
		pool_kill(p);
		return;
	}
	/* Keep reading: each worker's last DONE arrives just before it exits. */
	while (!pool_exited(p)) {
		int n = pool_pollfds(p, fds, p->n);
		if (poll(fds, (nfds_t)n, 100) == -1 && errno != EINTR)
			log_error("poll");
		pool_handle(p, fds, n);
		pool_reap(p);
	}
	free(fds);
}

void
pool_reload(struct pool *p, const struct config *c)
{
	if (pool_set_config(p, c) == -1)
		return;
	p->now_ms = clock_mono_ms();
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];

		if (s->state == SLOT_PARKED) {
			log_info("worker %d unparked by reload; starting it", s->index);
			s->state = SLOT_WAITING;
			s->quick_deaths = 0;
			s->backoff_ms = p->backoff_min_ms;
			s->next_start_ms = 0;
		}
		if (s->stopping)
			continue;
		/* Straight into the queue, even past a spill's backlog: settings are not user messages. */
		if (frame_put(outq_tail(s->q), FRAME_CONFIG, s->next_id, p->conf_text, p->conf_len) == -1 ||
		    slot_seal(s, NULL, p->now_ms) == -1)
			log_error("queueing CONFIG for worker %d", s->index);
	}
}

void
pool_get_stats(const struct pool *p, struct pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->slots = p->n;
	st->restarts = p->restarts;
	st->stall_kills = p->stall_kills;
	for (int i = 0; i < p->n; i++) {
		const struct slot *s = &p->slots[i];
		if (s->state == SLOT_RUNNING && s->pid > 0)
			st->running++;
		if (s->state == SLOT_PARKED)
			st->parked++;
		if (s->held_since_ms != 0)
			st->held++;
		st->inflight += outq_count(s->q);
		st->spilled += spill_unfed(s->sp);
		st->users += s->stats.users;
		st->alarms += s->stats.alarms;
		st->tombstones += s->stats.tombstones;
		st->bytes += s->stats.bytes;
		st->msgs += s->stats.msgs;
	}
}


/* ---- isolation: stalls, spills ---- */

/* A worker with work outstanding that sends nothing (not even STATS) is stopped or hung: restart it. */
static void
slot_watch(struct pool *p, struct slot *s)
{
	if (s->state != SLOT_RUNNING || s->pid <= 0 || s->stopping || outq_count(s->q) == 0) {
		s->heard_ms = p->now_ms;
		return;
	}
	if (p->now_ms - s->heard_ms < p->stall_ms)
		return;
	log_errorx("worker %d (pid %ld) STALLED: nothing from it for %lld ms with %zu frames outstanding "
	    "(stopped, hung, or stuck in a system call); killing it (SIGKILL) to restart it with them",
	    s->index, (long)s->pid, (long long)(p->now_ms - s->heard_ms), outq_count(s->q));
	if (kill(s->pid, SIGKILL) == -1)
		log_error("kill worker %d (pid %ld)", s->index, (long)s->pid);
	s->stalled = true;
	s->stall_kills++;
	p->stall_kills++;
	s->heard_ms = p->now_ms;
}

/* How long the slot's oldest message not durable anywhere has waited (0: none). */
static int64_t
slot_lag(const struct pool *p, const struct slot *s)
{
	int64_t t = outq_first_ref_ms(s->q, s->durable);

	return t < 0 ? 0 : p->now_ms - t;
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
slot_spill_start(struct pool *p, struct slot *s, int64_t lag)
{
	bool all = outq_walk(s->q, s->copied, UINT64_MAX, slot_copy_entry, s) == 0;

	s->spilling = true;
	if (s->held_since_ms == 0)
		s->held_since_ms = p->now_ms;
	s->held_logged_ms = p->now_ms;
	log_warnx("worker %d holds back its users: its oldest message has waited %lld ms while other "
	    "workers keep up; spilling its %zu queued and all newer messages to spill-%d.* so nobody "
	    "else waits%s", s->index, (long long)lag, outq_count(s->q), s->index,
	    all ? "" : " (its spill could not take the whole queue: see spill_max_bytes)");
}

/* How long the slot's oldest unfinished frame has waited; "forever" while it has a spill to work off. */
static int64_t
slot_behind(const struct pool *p, const struct slot *s)
{
	int64_t t = outq_oldest_ms(s->q);

	if (s->spilling && spill_unfed(s->sp) > 0)
		return INT64_MAX;
	return t < 0 ? 0 : p->now_ms - t;
}

/*
 * The rule: spill a slot when its oldest undurable message has waited
 * spill_after and another slot keeps up: its oldest unfinished frame has
 * waited at most half as long.  Under an even overload every slot lags
 * alike and nobody spills; one stuck or slow slot stands out within
 * spill_after.
 */
static void
pool_check_lag(struct pool *p)
{
	int64_t *lag = p->lag, *behind = p->lag + p->n;

	for (int i = 0; i < p->n; i++) {
		lag[i] = slot_lag(p, &p->slots[i]);
		behind[i] = slot_behind(p, &p->slots[i]);
	}
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];
		bool other_ok = false;

		for (int j = 0; j < p->n && !other_ok; j++)
			other_ok = j != i && behind[j] <= lag[i] / 2;
		if (lag[i] < p->spill_after_ms || !other_ok || s->spilling)
			continue;
		if (!s->stopping && spill_has_room(s->sp, 0)) {
			slot_spill_start(p, s, lag[i]);
		} else if (s->held_since_ms == 0) {
			s->held_since_ms = s->held_logged_ms = p->now_ms;
			log_warnx("worker %d holds back everybody: its oldest message has waited %lld ms while "
			    "other workers keep up (%zu queued), and it cannot spill (%s), so the ack floor "
			    "waits for it", s->index, (long long)lag[i], outq_count(s->q),
			    s->stopping ? "shutting down" : p->spill_max == 0 ? "spill_max_bytes = 0" :
			    "its spill is full or failing");
		}
	}
}

/* The spill synced: ack what it holds (copies of queue entries first: they are older). */
static int
slot_ack_copy(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg)
{
	struct pool *p = arg;

	(void)id;
	(void)frame;
	(void)len;
	if (*ref != NULL) {
		p->ack(*ref, p->ack_arg);
		*ref = NULL;
	}
	return 0;
}

static void
slot_sync(struct pool *p, struct slot *s)
{
	if (spill_sync(s->sp) != 1)
		return;
	outq_walk(s->q, s->durable, s->copied, slot_ack_copy, p);
	s->durable = s->copied;
	for (; ring_count(&s->unacked) > 0; ring_shift(&s->unacked))
		p->ack(*(void **)ring_at(&s->unacked, s->unacked.head), p->ack_arg);
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
slot_check_caught_up(struct pool *p, struct slot *s)
{
	int64_t oldest = outq_oldest_ms(s->q);

	if (s->spilling && spill_unfed(s->sp) == 0 &&
	    (oldest < 0 || p->now_ms - oldest < p->spill_after_ms / 2))
		s->spilling = false;
	if (s->held_since_ms == 0 || s->spilling || slot_lag(p, s) >= p->spill_after_ms)
		return;
	log_info("worker %d caught up after %lld ms holding back its users", s->index,
	    (long long)(p->now_ms - s->held_since_ms));
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
slot_log_held(struct pool *p, struct slot *s)
{
	uint64_t waiting, spilled;

	if (s->held_since_ms == 0 || p->now_ms - s->held_logged_ms < POOL_HELD_LOG_MS)
		return;
	s->held_logged_ms = p->now_ms;
	slot_held(s, &waiting, &spilled);
	log_warnx("worker %d is holding back %llu messages of its users (%llu of them in its spill, "
	    "%llu bytes) for %lld s now; %s", s->index, (unsigned long long)waiting,
	    (unsigned long long)spilled, (unsigned long long)spill_bytes(s->sp),
	    (long long)(p->now_ms - s->held_since_ms) / 1000,
	    s->state == SLOT_PARKED ? "the slot is PARKED (fix it, then SIGHUP)" :
	    s->state == SLOT_WAITING ? "its worker is waiting to be restarted" :
	    p->now_ms - s->heard_ms >= 1000 ? "its worker reports nothing" : "its worker is slow");
}

int
pool_settle(struct pool *p)
{
	bool busy = false;

	p->now_ms = clock_mono_ms();
	for (int i = 0; i < p->n; i++)
		slot_watch(p, &p->slots[i]);
	pool_check_lag(p);
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];

		slot_sync(p, s);
		slot_feed(s);
		slot_check_caught_up(p, s);
		slot_log_held(p, s);
		busy |= outq_count(s->q) > 0 || !spill_empty(s->sp);
	}
	/* Lags and stalls are measured in time: look again soon while anything is outstanding. */
	return busy ? 100 : -1;
}

void
pool_get_slot_stats(const struct pool *p, int slot, struct pool_slot_stats *st)
{
	const struct slot *s = &p->slots[slot];

	memset(st, 0, sizeof(*st));
	st->held = s->held_since_ms != 0;
	slot_held(s, &st->waiting, &st->spilled);
	st->stall_kills = s->stall_kills;
}
