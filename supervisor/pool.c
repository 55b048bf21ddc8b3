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
#include "holdback.h"
#include "outq.h"
#include "pool.h"
#include "proc.h"
#include "slot.h"

struct pool {
	struct slot *slots;
	int n;
	char *conf_text;
	size_t conf_len;
	int64_t backoff_min_ms, backoff_max_ms, healthy_ms, crash_loop_max;
	pool_ack_fn ack;
	void *ack_arg;
	uint64_t restarts;
	int64_t now_ms;           /* read once per loop pass: queue entries are stamped with it */
	struct holdback *h;       /* the isolation policy: spills, stalls */
	int64_t fence_ms;         /* pool_fence: every running worker has it, or has it due */
	bool fenced;              /* a worker sent FENCED since pool_take_fenced */
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
	for (int i = 0; i < p->n; i++)
		if (p->slots[i].q != NULL)
			outq_set_max(p->slots[i].q, (size_t)c->queue_max_bytes);
	holdback_set_config(p->h, c, p->slots, p->n);
	return 0;
}

static void
slot_close(struct slot *s)
{
	chan_free(s->ch);
	s->ch = NULL;
}

/*
 * A new process counts from 0: keep what the last one counted, so the
 * slot's counters only grow (Prometheus counters must not go back).
 * Gauges (users, alarms, map) stay until the new process reports.
 */
static void
slot_carry(struct slot *s)
{
	struct frame_stats *c = &s->carry, *st = &s->stats;

	c->msgs += st->msgs;
	c->commits += st->commits;
	c->digests += st->digests;
	c->digest_parts += st->digest_parts;
	c->digest_bytes += st->digest_bytes;
	c->overlimit += st->overlimit;
	c->digests_fenced += st->digests_fenced;
	c->digest_msgs_resent += st->digest_msgs_resent;
	histo_add(&c->commit_latency, &st->commit_latency);
	histo_add(&c->digest_latency, &st->digest_latency);
	st->msgs = st->commits = st->digests = st->digest_parts = st->digest_bytes = st->overlimit = 0;
	st->digests_fenced = st->digest_msgs_resent = 0;
	memset(&st->commit_latency, 0, sizeof(st->commit_latency));
	memset(&st->digest_latency, 0, sizeof(st->digest_latency));
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
	/* The fence right after the HELLO: ahead of every frame replayed or fed from a spill. */
	if (frame_put_hello(chan_out(s->ch), (uint32_t)s->index, (uint32_t)p->n, p->conf_text, p->conf_len) == -1 ||
	    (p->fence_ms != 0 && frame_put_fence(chan_out(s->ch), p->fence_ms) == -1)) {
		log_error("encoding HELLO and FENCE for worker %d", s->index);
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
	slot_carry(s);
	s->pid = pid;
	s->state = SLOT_RUNNING;
	s->ready = false;
	s->fence_due = false;
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
	    (p->h = holdback_new(nslots, ack, ack_arg)) == NULL) {
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
		if ((s->q = outq_new((size_t)c->queue_max_bytes)) == NULL) {
			log_error("allocating queue for worker %d", i);
			goto fail;
		}
		if (holdback_open(p->h, s, c->state_dir) == -1)
			goto fail;
	}
	holdback_check_strays(c->state_dir, nslots);
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
		holdback_close(s, drop);
	}
	free(p->slots);
	holdback_free(p->h);
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

int
slot_queue(struct slot *s, const uint8_t *frame, size_t len, void *ref, int64_t at_ms)
{
	struct buf *t = outq_tail(s->q);

	if (buf_append(t, frame, len) == -1)
		return -1;
	/* Not an offset saved before the append: appending may compact the buffer. */
	frame_set_id(t->data + t->len - len, s->next_id);
	return slot_seal(s, ref, at_ms);
}

bool
pool_route(struct pool *p, uint32_t hash, const uint8_t *frame, size_t len, void *ref)
{
	/* The routing rule of the service: FNV-1a of the UserID, modulo the slot count. */
	struct slot *s = &p->slots[hash % (uint32_t)p->n];

	/* Behind its spill, never beside it: a user's messages keep their order. */
	if (s->spilling)
		return holdback_route(p->h, s, frame, len, ref, p->now_ms);
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
		if (chan_queued(s->ch) > 0 || outq_unsent(s->q) > 0 || s->fence_due)
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
		holdback_done(s, f->id);
		break;
	case FRAME_STATS:
		if (frame_get_stats(f, &s->stats) == -1)
			log_warnx("worker %d sent a malformed STATS frame", s->index);
		break;
	case FRAME_READY:
		log_debug("worker %d ready", s->index);
		s->ready = true;
		break;
	case FRAME_FENCED:
		log_warnx("worker %d skipped digest requests past its lease fence; acking none of "
		    "its frames up to %llu", s->index, (unsigned long long)f->id);
		p->fenced = true;
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

/*
 * A new fence goes out ahead of the queue (frame.h: it is no user
 * message, and a worker judging requests by a stale one would skip them),
 * though never inside a frame half written: that one is finished first.
 * 1: the queue may follow; 0: it waits for the fence; -1 with errno.
 */
static int
slot_fence(struct pool *p, struct slot *s)
{
	if (outq_send_partial(s->q, s->ch) == -1)
		return -1;
	if (outq_partial(s->q) > 0)
		return 0;
	if (frame_put_fence(chan_out(s->ch), p->fence_ms) == -1) {
		/* Kept due: the next pass tries again. */
		log_error("encoding FENCE %lld for worker %d", (long long)p->fence_ms, s->index);
		return 1;
	}
	s->fence_due = false;
	return chan_flush(s->ch) == -1 ? -1 : 1;
}

void
pool_send_fence(struct pool *p)
{
	for (int i = 0; i < p->n; i++) {
		struct slot *s = &p->slots[i];

		if (s->ch != NULL && s->fence_due && slot_fence(p, s) == -1) {
			log_warn("write to worker %d", s->index);
			slot_close(s);
		}
	}
}

static void
slot_flush(struct pool *p, struct slot *s)
{
	int rc = 1;

	/* The HELLO in the channel's queue goes out first: chan_send holds the outq's bytes back until then. */
	if (chan_flush(s->ch) == -1 || (s->fence_due && (rc = slot_fence(p, s)) == -1) ||
	    (rc == 1 && outq_send(s->q, s->ch) == -1)) {
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
		if (s->ch != NULL && (chan_queued(s->ch) > 0 || outq_unsent(s->q) > 0 || s->fence_due))
			slot_flush(p, s);
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
	snprintf(s->exit_why, sizeof(s->exit_why), "%s", why);
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
		if (outq_count(p->slots[i].q) > 0 || !holdback_empty(&p->slots[i]))
			return false;
	return true;
}

bool
pool_take_fenced(struct pool *p)
{
	bool was = p->fenced;

	p->fenced = false;
	return was;
}

bool
pool_durable(const struct pool *p)
{
	for (int i = 0; i < p->n; i++)
		if (!holdback_durable(&p->slots[i]))
			return false;
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
pool_fence(struct pool *p, int64_t deadline_ms)
{
	if (deadline_ms == p->fence_ms)
		return;
	p->fence_ms = deadline_ms;
	/* A worker not running gets it after its HELLO (slot_spawn). */
	for (int i = 0; i < p->n; i++)
		if (p->slots[i].ch != NULL)
			p->slots[i].fence_due = true;
}

void
pool_get_stats(const struct pool *p, struct pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->slots = p->n;
	st->restarts = p->restarts;
	st->stall_kills = holdback_stall_kills(p->h);
	for (int i = 0; i < p->n; i++) {
		const struct slot *s = &p->slots[i];
		if (s->state == SLOT_RUNNING && s->pid > 0)
			st->running++;
		if (s->state == SLOT_RUNNING && s->pid > 0 && s->ready)
			st->ready++;
		if (s->state == SLOT_PARKED)
			st->parked++;
		if (holdback_held(s))
			st->held++;
		st->inflight += outq_count(s->q);
		st->spilled += holdback_spilled(s);
		st->users += s->stats.users;
		st->alarms += s->stats.alarms;
		st->tombstones += s->stats.tombstones;
		st->bytes += s->stats.bytes;
		st->msgs += s->stats.msgs;
		st->digests_fenced += s->stats.digests_fenced + s->carry.digests_fenced;
	}
}


int
pool_settle(struct pool *p)
{
	p->now_ms = clock_mono_ms();
	return holdback_settle(p->h, p->slots, p->n, p->now_ms);
}

void
pool_get_slot_report(const struct pool *p, int slot, struct pool_slot_report *r)
{
	const struct slot *s = &p->slots[slot];
	struct frame_stats *t = &r->stats;

	r->running = s->state == SLOT_RUNNING && s->pid > 0;
	r->parked = s->state == SLOT_PARKED;
	r->queued = outq_count(s->q);
	snprintf(r->exit_why, sizeof(r->exit_why), "%s", s->exit_why);
	*t = s->stats;
	t->msgs += s->carry.msgs;
	t->commits += s->carry.commits;
	t->digests += s->carry.digests;
	t->digest_parts += s->carry.digest_parts;
	t->digest_bytes += s->carry.digest_bytes;
	t->overlimit += s->carry.overlimit;
	t->digests_fenced += s->carry.digests_fenced;
	t->digest_msgs_resent += s->carry.digest_msgs_resent;
	histo_add(&t->commit_latency, &s->carry.commit_latency);
	histo_add(&t->digest_latency, &s->carry.digest_latency);
	holdback_slot_stats(s, &r->hold);
}

void
pool_get_slot_stats(const struct pool *p, int slot, struct pool_slot_stats *st)
{
	holdback_slot_stats(&p->slots[slot], st);
}
