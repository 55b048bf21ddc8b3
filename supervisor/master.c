#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/chan.h"
#include "../common/clock.h"
#include "../common/config.h"
#include "../common/layout.h"
#include "../common/lockfile.h"
#include "../common/log.h"
#include "../common/reloadstat.h"
#include "../common/title.h"
#include "../common/version.h"
#include "ackq.h"
#include "cluster.h"
#include "handoff.h"
#include "intake.h"
#include "master.h"
#include "notify.h"
#include "pool.h"
#include "priv.h"
#include "proc.h"
#include "spill.h"
#include "telemetry.h"

#define MASTER_MAX_FDS 1100
#define MASTER_READY_WAIT_MS 60000   /* longest READY=1 waits for a slow worker */

/* What the loop is doing besides routing. */
enum master_phase {
	PHASE_RUN,          /* route intake to workers */
	PHASE_QUIESCE,      /* no routing until every routed message is durable, then act */
	PHASE_DRAIN,        /* shutdown: let received messages through, then stop workers */
	PHASE_STOPPING,     /* shutdown: STOP sent, waiting for workers to exit */
};

enum master_action { ACTION_NONE, ACTION_RESHARD, ACTION_RESET_CONSUMER, ACTION_REBIND };

struct master {
	const char *conf_path;
	struct config cfg;
	struct intake *intake;
	struct ackq *ackq;          /* every held delivery, in order, for the floor ack */
	struct pool *pool;
	struct handoff_batch batch;
	int sigfd;
	int lock_fd;                /* STATE_DIR/supervisor.lock, held for life */
	enum master_phase phase;
	enum master_action action;
	int target_slots;
	int64_t deadline_ms;        /* shutdown bound */
	int64_t last_title_ms, last_quiesce_log_ms;
	int settle_ms;              /* when pool_settle wants to run again (-1: no hurry) */
	struct notify *notify;      /* the service manager (systemd), if any */
	bool ready_due;             /* READY=1 once the consumer is bound and every worker said READY */
	int64_t ready_due_ms;       /* since when */
	struct telemetry *tel;      /* /metrics, /healthz, /readyz, $SRV */
	struct cluster *cluster;    /* one instance of several ([cluster] partitions > 0); NULL: alone */
	int cluster_due;            /* ms until the cluster wants a look (its fence runs out) */
};

/* Pool entries carry ackq handle + 1 (control frames carry NULL). */
static void
master_done(void *ref, void *arg)
{
	struct master *m = arg;

	if (ref != NULL)
		ackq_done(m->ackq, (uint64_t)(uintptr_t)ref - 1);
}

/* ackq_advance's: one AckAll per consumer (lane) whose floor moved. */
static void
master_ack_one(void *msg, int lane, uint64_t stream_seq, void *arg)
{
	struct master *m = arg;

	/* Past the fence another instance may own the partition: not ours to ack. */
	if (lane == 0 || m->cluster == NULL || cluster_may_ack(m->cluster))
		intake_ack(m->intake, msg, lane, stream_seq);
	intake_release(msg);
}

/* Ack the durable floor, if it moved and acking is safe. */
static void
master_ack_floor(struct master *m)
{
	if (intake_reset_wanted(m->intake))
		return;
	ackq_advance(m->ackq, master_ack_one, m);
}

/* The title, mirrored to the service manager's STATUS= (rate-limited there unless forced). */
static void __attribute__((format(printf, 3, 4)))
master_show(struct master *m, bool force, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	title_set("%s", text);
	notify_status(m->notify, text, force);
}

/* Signals arrive on a signalfd; nothing runs in signal context. */
static int
master_signals(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	/* An inherited SIG_IGN would discard them before the signalfd sees them. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	/* Blocked before cnats starts threads, so every thread inherits the mask. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) {
		log_error("sigprocmask");
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		log_error("signalfd");
	return fd;
}

/* Show the reshard's progress frames until it closes its end of the channel. */
static void
master_reshard_follow(struct master *m, struct chan *ch, int nslots)
{
	struct pollfd pfd = { .fd = chan_fd(ch), .events = POLLIN };
	struct frame_progress pr;
	struct frame f;
	const char *err;
	int64_t t0 = clock_mono_ms();
	int rc;

	for (;;) {
		/* A long move is the loop's work now: it keeps the watchdog fed while progress comes. */
		notify_watchdog(m->notify);
		if ((rc = poll(&pfd, 1, notify_watchdog_due(m->notify))) == -1) {
			if (errno == EINTR)
				continue;
			log_error("poll on the reshard channel");
			return;
		}
		if (rc == 0)
			continue;   /* only the watchdog was due */
		if ((rc = chan_fill(ch, 4096)) == -1) {
			log_error("read from the reshard process");
			return;
		}
		while ((rc = chan_next(ch, &f, &err)) == 1) {
			if (frame_get_progress(&f, &pr) == -1) {
				log_errorx("reshard process sent frame type %u where progress was expected", f.type);
				return;
			}
			telemetry_reshard(m->tel, pr.stores_done, pr.stores);
			int64_t ms = clock_mono_ms() - t0;
			unsigned long long rate = ms > 0 ? pr.users_moved * 1000 / (uint64_t)ms : 0;
			master_show(m, true, "master conf=%s resharding to %d workers: store %llu/%llu, "
			    "%llu/%llu users moved, %llu users/s", m->conf_path, nslots,
			    (unsigned long long)pr.stores_done, (unsigned long long)pr.stores,
			    (unsigned long long)pr.users_moved, (unsigned long long)pr.users, rate);
			if (pr.stores_done > 0)
				log_info("reshard to %d workers: %llu of %llu stores done, %llu of %llu users "
				    "moved, %llu users/s", nslots, (unsigned long long)pr.stores_done,
				    (unsigned long long)pr.stores, (unsigned long long)pr.users_moved,
				    (unsigned long long)pr.users, rate);
		}
		chan_consume(ch);
		if (rc == -1) {
			log_errorx("reshard channel: %s", err);
			return;
		}
		if (chan_buffered(ch) == 0 && pfd.revents & (POLLHUP | POLLERR))
			return;
	}
}

/* Run `alarm-supervisor --reshard` and wait for it: no worker runs meanwhile. */
static int
master_reshard(struct master *m, int nslots)
{
	char n[16], map[32];
	char *argv[] = { "alarm-supervisor", "--reshard", m->cfg.state_dir, n, map, NULL };
	struct chan *ch;
	int status, sv[2];
	pid_t pid;

	snprintf(n, sizeof(n), "%d", nslots);
	snprintf(map, sizeof(map), "%lld", (long long)m->cfg.map_size_bytes);
	master_show(m, true, "master conf=%s resharding to %d workers", m->conf_path, nslots);
	telemetry_reshard(m->tel, 0, 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_error("socketpair for the reshard process");
		return -1;
	}
	pid = proc_spawn(argv, sv[1]);
	close(sv[1]);
	if (pid == -1) {
		close(sv[0]);
		return -1;
	}
	if ((ch = chan_new(sv[0])) == NULL) {
		log_error("channel to the reshard process");
		close(sv[0]);
	} else {
		master_reshard_follow(m, ch, nslots);
		chan_free(ch);
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			log_error("waitpid reshard");
			return -1;
		}
	}
	/* Workers start next: /readyz says "starting" until the loop runs. */
	telemetry_update(m->tel, OBS_STARTING, NULL, NULL);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char why[128];
		log_errorx("reshard to %d workers %s", nslots, proc_status_str(status, why, sizeof(why)));
		return -1;
	}
	return 0;
}

/* Bring STATE_DIR to the layout nslots workers expect before any of them starts. */
static int
master_layout(struct master *m, int nslots)
{
	switch (layout_check(m->cfg.state_dir, nslots)) {
	case LAYOUT_MATCH:
		return 0;
	case LAYOUT_FRESH:
		return layout_write(m->cfg.state_dir, nslots);
	case LAYOUT_DIFFERS:
		return master_reshard(m, nslots);
	case LAYOUT_ERROR:
		break;
	}
	return -1;
}

/*
 * Spill files hold acked messages for the slots of the layout they were
 * written under.  When the configured count differs, start with the old
 * count so they are applied where their users live, then reshard as a
 * SIGHUP would (once every spill is empty).
 */
static int
master_start_slots(struct master *m, int want)
{
	int top, have;

	m->target_slots = want;
	if ((top = spill_scan(m->cfg.state_dir)) <= 0)
		return top == -1 ? -1 : want;
	if ((have = layout_count(m->cfg.state_dir)) <= 0 || have == want)
		return want;
	log_warnx("spill files from the last run hold acked messages for %d workers, %d configured: "
	    "starting %d to apply them, then moving to %d", have, want, have, want);
	return have;
}

/* " held=w1:5230(spill:4100),w3:12 stall_kills=w1:1": who holds back how many, who was killed for stalling. */
static void
master_title_slots(struct master *m, char *buf, size_t len)
{
	struct pool_slot_stats ss;
	const char *sep = " held=";
	size_t o = 0;
	int n = pool_size(m->pool);

	buf[0] = '\0';
	for (int i = 0; i < n && o < len; i++) {
		pool_get_slot_stats(m->pool, i, &ss);
		if (!ss.held)
			continue;
		if (ss.spilled > 0)
			o += (size_t)snprintf(buf + o, len - o, "%sw%d:%llu(spill:%llu)", sep, i,
			    (unsigned long long)ss.waiting, (unsigned long long)ss.spilled);
		else
			o += (size_t)snprintf(buf + o, len - o, "%sw%d:%llu", sep, i, (unsigned long long)ss.waiting);
		sep = ",";
	}
	sep = " stall_kills=";
	for (int i = 0; i < n && o < len; i++) {
		pool_get_slot_stats(m->pool, i, &ss);
		if (ss.stall_kills == 0)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%sw%d:%llu", sep, i, (unsigned long long)ss.stall_kills);
		sep = ",";
	}
}

static void
master_title(struct master *m, bool force)
{
	struct intake_stats is;
	struct pool_stats ps;
	int64_t now = clock_mono_ms();
	char slots[160], cluster[192] = "";

	if (!force && now - m->last_title_ms < 1000)
		return;
	m->last_title_ms = now;
	intake_get_stats(m->intake, &is);
	pool_get_stats(m->pool, &ps);
	master_title_slots(m, slots, sizeof(slots));
	if (m->cluster != NULL) {
		cluster[0] = ' ';
		cluster_describe(m->cluster, cluster + 1, sizeof(cluster) - 1);
	}
	/*
	 * The slot details come early: a long conf path must not push them past
	 * the title's end.  dlfail: dead-letter copies not kept (shown once there is one).
	 */
	master_show(m, force, "master conf=%s%s workers %d/%d%s%s users=%llu alarms=%llu in=%llu bad=%llu%s%.0llu inflight=%llu%s",
	    m->conf_path, cluster, ps.running, ps.slots, ps.parked ? " PARKED" : "", slots,
	    (unsigned long long)ps.users, (unsigned long long)ps.alarms,
	    (unsigned long long)is.received, (unsigned long long)is.rejected,
	    is.dead_letter_failed ? " dlfail=" : "", (unsigned long long)is.dead_letter_failed,
	    (unsigned long long)ps.inflight,
	    m->phase == PHASE_QUIESCE ? " quiescing" : m->phase == PHASE_RUN ? "" : " stopping");
}

/* A member leaving routes nothing more (master_shutdown). */
static bool
master_routing(const struct master *m)
{
	return m->phase == PHASE_RUN || (m->phase == PHASE_DRAIN && m->cluster == NULL);
}

static void
master_route(struct master *m)
{
	if (!master_routing(m))
		return;
	for (;;) {
		if (m->batch.pos == m->batch.n && !handoff_take(intake_handoff(m->intake), &m->batch))
			return;
		while (m->batch.pos < m->batch.n) {
			struct handoff_item *it = &m->batch.items[m->batch.pos];
			uint64_t h;

			/* Its partition moved since: not ours to route or ack; its next consumer has it. */
			if (!intake_current(m->intake, it->lane, it->binding)) {
				natsMsg_Destroy(it->msg);
				it->msg = NULL;
				m->batch.pos++;
				continue;
			}
			h = ackq_push(m->ackq, it->msg, it->stream_seq, it->lane, it->frame_len == 0);
			if (h == UINT64_MAX) {
				log_error("ack queue");
				return;
			}
			if (it->frame_len > 0 && !pool_route(m->pool, it->hash, m->batch.frames.data + it->frame_off,
			    it->frame_len, (void *)(uintptr_t)(h + 1))) {
				ackq_unpush(m->ackq);
				return;  /* that worker's queue is full: wait for it */
			}
			it->msg = NULL;
			m->batch.pos++;
		}
	}
}

/* Logged, and recorded for alarmctl reload (arg: the reload's status, may be NULL). */
static void
master_log_change(const char *key, const char *old_value, const char *new_value,
    bool restart_needed, void *arg)
{
	reloadstat_change(arg, key, old_value, new_value, restart_needed);
	if (restart_needed)
		log_warnx("reload: %s changed from \"%s\" to \"%s\": needs a restart; keeping \"%s\" until then",
		    key, old_value, new_value, old_value);
	else
		log_info("reload: %s: \"%s\" -> \"%s\"", key, old_value, new_value);
}

static void
master_reload_apply(struct master *m, struct reloadstat *rs)
{
	struct config nc;
	char err[1024], why[1200];
	int nslots;

	log_info("SIGHUP: reloading %s", m->conf_path);
	if (config_load(m->conf_path, &nc, err, sizeof(err)) == -1) {
		log_errorx("reload failed, keeping the running configuration: %s", err);
		reloadstat_fail(rs, err);
		return;
	}
	config_diff(&m->cfg, &nc, master_log_change, rs);
	if (config_keep_restart_only(&nc, &m->cfg) == -1) {
		if (errno == EINVAL) {
			snprintf(why, sizeof(why), "%s: with its restart-only settings kept at their "
			    "running values, two subjects would be the same", m->conf_path);
			log_errorx("reload: %s; keeping the running configuration", why);
		} else {
			log_error("reload: keeping restart-only settings; keeping the running configuration");
			snprintf(why, sizeof(why), "keeping restart-only settings: %s", strerror(errno));
		}
		reloadstat_fail(rs, why);
		config_free(&nc);
		return;
	}
	config_free(&m->cfg);
	m->cfg = nc;
	log_set_level(m->cfg.log_level);
	intake_reload(m->intake, &m->cfg);
	pool_reload(m->pool, &m->cfg);
	nslots = config_worker_count(&m->cfg);
	if (nslots != pool_size(m->pool) && m->phase == PHASE_RUN) {
		log_info("worker count %d -> %d: pausing intake until in-flight messages are durable, "
		    "then moving users to their new workers", pool_size(m->pool), nslots);
		m->phase = PHASE_QUIESCE;
		m->action = ACTION_RESHARD;
		m->target_slots = nslots;
		m->last_quiesce_log_ms = clock_mono_ms();
	} else if (nslots != pool_size(m->pool)) {
		m->target_slots = nslots;
	}
	master_title(m, true);
}

/* Apply, then tell whoever sent the SIGHUP how it went (alarmctl reload waits for it). */
static void
master_reload(struct master *m)
{
	struct reloadstat *rs = reloadstat_new();

	master_reload_apply(m, rs);
	if (rs != NULL)
		reloadstat_write(rs, m->cfg.state_dir);
	reloadstat_free(rs);
}

static void
master_shutdown(struct master *m, int sig)
{
	if (m->phase == PHASE_DRAIN || m->phase == PHASE_STOPPING) {
		log_warnx("signal %d again during shutdown: stopping now", sig);
		m->deadline_ms = 0;
		return;
	}
	log_info("signal %d: shutting down: finishing received messages (at most %lld ms)", sig,
	    (long long)m->cfg.shutdown_timeout_ms);
	m->deadline_ms = clock_mono_ms() + m->cfg.shutdown_timeout_ms;
	m->phase = PHASE_DRAIN;
	notify_stopping(m->notify);
	if (m->cluster == NULL) {
		intake_drain_begin(m->intake);
		return;
	}
	/*
	 * A member hands its partitions over as soon as what its workers hold
	 * is durable: what is delivered but not yet routed is released unacked
	 * and comes to the next owner from the ack floor.  Draining it here
	 * first (a takeover's replay can be thousands of messages) kept the
	 * partitions from their next owners for seconds.
	 */
	cluster_leave(m->cluster);
	/*
	 * Still bound: an unbound partition counts as idle and would be
	 * released at once, before what the workers hold of it is acked.
	 */
	intake_stop(m->intake);
}

static void
master_on_signals(struct master *m)
{
	struct signalfd_siginfo si;
	bool hup = false, chld = false;
	int term = 0;

	while (read(m->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			term = (int)si.ssi_signo;
		else if (si.ssi_signo == SIGHUP)
			hup = true;
		else if (si.ssi_signo == SIGCHLD)
			chld = true;
	}
	/* Shutdown wins over reload, reload over child exits. */
	if (term)
		master_shutdown(m, term);
	else if (hup) {
		/* READY=1 follows from the loop once the reload (and any reshard) is done. */
		notify_reloading(m->notify);
		master_reload(m);
		m->ready_due = true;
		m->ready_due_ms = clock_mono_ms();
	}
	if (chld)
		pool_reap(m->pool);
}

/*
 * A member leaving, with everything routed durable: ack it and hand every
 * partition over now, not after the workers' exit (seconds under load,
 * longer than the next owners should wait).
 */
static void
master_hand_over(struct master *m)
{
	master_ack_floor(m);
	ackq_clear(m->ackq);
	/* Delivered but not routed: unacked, the next owner gets it from the floor. */
	handoff_batch_free(&m->batch);
	if (intake_flush(m->intake) == 0)
		cluster_release_all(m->cluster);
	log_info("everything routed is durable and acked; asking workers to finish");
	pool_stop(m->pool);
	m->phase = PHASE_STOPPING;
}

/* Quiesced: every routed message is durable.  Do what we paused for. */
static int
master_act(struct master *m)
{
	if (m->action == ACTION_REBIND) {
		/* Everything routed is durable: ack it before a partition changes hands. */
		master_ack_floor(m);
		if (ackq_count(m->ackq) != 0) {
			/*
			 * Not acked (past the fence, or a reset is wanted): nothing
			 * may be acked on any consumer now, so every partition starts
			 * again at its floor.  A reset wanted and still pending after
			 * the rebind is done by the main loop next (intake_start
			 * leaves it wanted).
			 */
			intake_reset(m->intake);
			ackq_clear(m->ackq);
			handoff_batch_free(&m->batch);
		}
		/*
		 * Otherwise the partitions kept go on, and what waits to be routed
		 * stays; a partition's deliveries from before it moved are dropped
		 * as they come up (master_route).
		 */
		(void)intake_flush(m->intake);
		if (cluster_rebind(m->cluster) == -1)
			log_warnx("some partitions could not be bound; trying again");
	} else if (m->action == ACTION_RESET_CONSUMER) {
		log_info("resetting the consumer to its ack floor: unacked messages come again now, in order");
		intake_reset(m->intake);
		/* Durable but not acked: they come again, and re-applying them is harmless. */
		ackq_clear(m->ackq);
		handoff_batch_free(&m->batch);
		if ((m->cluster != NULL ? cluster_start_intake(m->cluster) : intake_start(m->intake)) == -1)
			return -1;
	} else if (m->action == ACTION_RESHARD) {
		int old = pool_size(m->pool);
		master_ack_floor(m);
		pool_stop_wait(m->pool);
		telemetry_pool_retire(m->tel, m->pool);
		pool_free(m->pool, NULL);
		m->pool = NULL;
		if (master_reshard(m, m->target_slots) == 0) {
			log_info("worker count is now %d", m->target_slots);
		} else {
			/* Put every user back where the old count expects it before going on. */
			log_errorx("reshard to %d failed; restoring the layout for %d workers", m->target_slots, old);
			if (master_reshard(m, old) == -1)
				return -1;
			m->target_slots = old;
		}
		if ((m->pool = pool_new(&m->cfg, m->target_slots, master_done, m)) == NULL)
			return -1;
	}
	m->action = ACTION_NONE;
	m->phase = PHASE_RUN;
	master_title(m, true);
	return 0;
}

/* Each pass of a loop that runs: feed the watchdog; say READY when there is reason to. */
static void
master_notify(struct master *m)
{
	struct pool_stats ps;

	notify_watchdog(m->notify);
	if (!m->ready_due || m->phase != PHASE_RUN || !notify_enabled(m->notify))
		return;
	pool_get_stats(m->pool, &ps);
	/*
	 * A parked slot will not get better by waiting, and one stuck before
	 * its READY (a corrupt store parks there) delays only its own users:
	 * the manager must not fail the whole service for it, so after a
	 * while READY goes out anyway, saying so.
	 */
	if (ps.ready + ps.parked < ps.slots) {
		if (clock_mono_ms() - m->ready_due_ms < MASTER_READY_WAIT_MS)
			return;
		log_warnx("telling the service manager READY with %d of %d workers not ready after %d s: "
		    "their users wait (see their log lines)", ps.slots - ps.ready - ps.parked, ps.slots,
		    MASTER_READY_WAIT_MS / 1000);
	}
	master_title(m, true);
	notify_ready(m->notify);
	m->ready_due = false;
}

/* The phase as /readyz tells it. */
static enum obs_phase
master_obs_phase(const struct master *m)
{
	switch (m->phase) {
	case PHASE_RUN:
		return OBS_RUNNING;
	case PHASE_QUIESCE:
		return m->action == ACTION_RESHARD ? OBS_RESHARDING : OBS_RESETTING;
	case PHASE_DRAIN:
	case PHASE_STOPPING:
		break;
	}
	return OBS_DRAINING;
}

static int
master_loop(struct master *m)
{
	for (;;) {
		struct pollfd fds[MASTER_MAX_FDS];
		int n = 0, timeout = 1000, due, cluster_fd = -1;

		fds[n++] = (struct pollfd){ m->sigfd, POLLIN, 0 };
		if (m->cluster != NULL) {
			cluster_fd = n;
			fds[n++] = (struct pollfd){ cluster_wake_fd(m->cluster), POLLIN, 0 };
		}
		/* Only wait on intake when the last batch is routed, or we would spin on a full queue. */
		if (master_routing(m) && m->batch.pos == m->batch.n)
			fds[n++] = (struct pollfd){ handoff_wake_fd(intake_handoff(m->intake)), POLLIN, 0 };
		int first_pool = n;
		n += pool_pollfds(m->pool, fds + n, MASTER_MAX_FDS - n);
		if ((due = pool_tick(m->pool)) >= 0 && due < timeout)
			timeout = due;
		if (m->settle_ms >= 0 && m->settle_ms < timeout)
			timeout = m->settle_ms;
		if (m->cluster != NULL && m->cluster_due < timeout)
			timeout = m->cluster_due;
		if (m->phase != PHASE_RUN)
			timeout = timeout > 50 ? 50 : timeout;
		if ((due = notify_watchdog_due(m->notify)) >= 0 && due < timeout)
			timeout = due;
		if (poll(fds, (nfds_t)n, timeout) == -1 && errno != EINTR) {
			log_error("poll");
			return -1;
		}
		pool_handle(m->pool, fds + first_pool, n - first_pool);
		/* Before anything acks: the frames it covers must come again (cluster_worker_fenced). */
		if (pool_take_fenced(m->pool) && m->cluster != NULL)
			cluster_worker_fenced(m->cluster);
		master_on_signals(m);
		if (m->cluster != NULL) {
			bool change;

			m->cluster_due = 1000;
			change = cluster_poll(m->cluster, m->pool, &m->cluster_due,
			    cluster_fd >= 0 && (fds[cluster_fd].revents & POLLIN));

			if (change && m->phase == PHASE_RUN) {
				m->phase = PHASE_QUIESCE;
				m->action = ACTION_REBIND;
				m->last_quiesce_log_ms = clock_mono_ms();
			}
		}
		master_route(m);
		/* Group commit of the spills: one fdatasync per pass, then their messages count as durable. */
		m->settle_ms = pool_settle(m->pool);
		master_ack_floor(m);

		if (m->phase == PHASE_RUN && intake_reset_wanted(m->intake)) {
			m->phase = PHASE_QUIESCE;
			m->action = ACTION_RESET_CONSUMER;
		}
		if (m->phase == PHASE_QUIESCE) {
			/*
			 * A consumer reset needs every routed message durable (a spill
			 * will do); a reshard moves stores, so nothing may be in flight
			 * or spilled.
			 */
			if (m->action != ACTION_RESHARD ? pool_durable(m->pool) : pool_idle(m->pool)) {
				if (master_act(m) == -1)
					return -1;
			} else if (clock_mono_ms() - m->last_quiesce_log_ms >= 10000) {
				struct pool_stats ps;
				pool_get_stats(m->pool, &ps);
				m->last_quiesce_log_ms = clock_mono_ms();
				log_info("waiting for %llu in-flight messages to become durable%s%s",
				    (unsigned long long)(ps.inflight + ps.spilled),
				    ps.spilled > 0 ? " (spilled ones included)" : "",
				    ps.parked ? " (a slot is PARKED: fix it and SIGHUP)" : "");
			}
		}
		if (m->phase == PHASE_DRAIN && m->cluster != NULL && pool_durable(m->pool)) {
			master_hand_over(m);
		} else if (m->phase == PHASE_DRAIN && m->cluster == NULL && intake_drain_done(m->intake) &&
		    m->batch.pos == m->batch.n) {
			struct handoff_batch tail = { 0 };
			/* The drain may have queued a last batch after our previous take. */
			if (handoff_take(intake_handoff(m->intake), &tail)) {
				handoff_batch_free(&m->batch);
				m->batch = tail;
			} else {
				handoff_batch_free(&tail);
				log_info("intake drained; asking workers to finish");
				pool_stop(m->pool);
				m->phase = PHASE_STOPPING;
			}
		}
		if (m->phase == PHASE_STOPPING && pool_exited(m->pool)) {
			master_ack_floor(m);
			return 0;
		}
		if ((m->phase == PHASE_DRAIN || m->phase == PHASE_STOPPING) && clock_mono_ms() >= m->deadline_ms) {
			log_warnx("stopping now (shutdown_timeout reached or a second signal): killing workers; "
			    "unacked messages are redelivered at the next start");
			pool_kill(m->pool);
			master_ack_floor(m);
			return 0;
		}
		master_notify(m);
		master_title(m, false);
		telemetry_update(m->tel, master_obs_phase(m), m->intake, m->pool);
	}
}

static bool
master_stop_check(void *arg)
{
	sigset_t pending;

	(void)arg;
	/* Look without reading the signalfd, so no other signal is lost meanwhile. */
	if (sigpending(&pending) == -1)
		return false;
	return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

int
master_main(const char *conf_path)
{
	struct master m = { .conf_path = conf_path, .sigfd = -1, .lock_fd = -1, .settle_ms = -1 };
	struct priv *priv = NULL;
	char err[1024];
	int nslots, rc = 1;

	log_set_role("master");
	if (config_load(conf_path, &m.cfg, err, sizeof(err)) == -1) {
		log_errorx("%s", err);
		return 1;
	}
	log_set_level(m.cfg.log_level);
	log_info("alarm-supervisor %s starting with %s", ALARM_DIGEST_VERSION, conf_path);
	/* Before cnats starts threads: it unsets the manager's variables (setenv is not thread-safe). */
	if ((m.notify = notify_open()) == NULL)
		goto out;
	if (proc_init() == -1 || (m.sigfd = master_signals()) == -1)
		goto out;
	master_show(&m, true, "master conf=%s starting", conf_path);
	/* Before anything that may wait (NATS) or fail: a port taken is found at once. */
	if ((m.tel = telemetry_open(&m.cfg)) == NULL)
		goto out;
	/* Root's work, then root no more: nothing below runs with more than the account has. */
	if ((priv = priv_new(&m.cfg)) == NULL || priv_check(priv) == -1 ||
	    priv_state_dir(priv, m.cfg.state_dir) == -1)
		goto out;
	char lock[PATH_MAX];
	if (layout_path(lock, sizeof(lock), m.cfg.state_dir, "supervisor.lock") == -1)
		goto out;
	if ((m.lock_fd = lockfile_take(lock, 0)) == -1) {
		log_errorx("cannot lock state_dir %s (see above); refusing to start", m.cfg.state_dir);
		goto out;
	}
	if (priv_give(priv, m.lock_fd, lock) == -1 || priv_drop(priv) == -1)
		goto out;
	nslots = config_worker_count(&m.cfg);
	if ((nslots = master_start_slots(&m, nslots)) == -1 || master_layout(&m, nslots) == -1)
		goto out;
	if ((m.intake = intake_open(&m.cfg, master_stop_check, NULL)) == NULL)
		goto out;
	telemetry_attach(m.tel, m.intake, &m.cfg);
	if (m.cfg.partitions > 0 && (m.cluster = cluster_open(&m.cfg, m.intake, m.tel, master_stop_check, NULL)) == NULL)
		goto out;
	/* Lane 0: the one consumer of a single instance; 1 + p: partition p's. */
	if ((m.ackq = ackq_new(intake_release, (int)m.cfg.partitions + 1)) == NULL) {
		log_error("allocating the ack queue");
		goto out;
	}
	if ((m.pool = pool_new(&m.cfg, nslots, master_done, &m)) == NULL)
		goto out;
	if (intake_start(m.intake) == -1)
		goto out;
	if (m.target_slots != nslots) {
		m.phase = PHASE_QUIESCE;
		m.action = ACTION_RESHARD;
		m.last_quiesce_log_ms = clock_mono_ms();
	}
	char servers[1024];
	config_redact_servers(m.cfg.servers, servers, sizeof(servers));
	log_info("running: %d workers, intake %s from %s, state in %s", nslots,
	    m.cfg.intake == INTAKE_JETSTREAM ? "jetstream" : "core (not durable)", servers,
	    m.cfg.state_dir);
	master_title(&m, true);
	m.ready_due = true;
	m.ready_due_ms = clock_mono_ms();
	rc = master_loop(&m) == 0 ? 0 : 1;
	if (rc == 0 && m.cluster != NULL && intake_flush(m.intake) == 0)
		cluster_release_all(m.cluster);
	log_info("stopped");
out:
	if (m.pool != NULL)
		pool_kill(m.pool);
	handoff_batch_free(&m.batch);
	pool_free(m.pool, NULL);
	ackq_free(m.ackq);
	telemetry_close(m.tel);
	cluster_close(m.cluster);
	intake_close(m.intake);
	if (m.sigfd != -1)
		close(m.sigfd);
	if (m.lock_fd != -1)
		close(m.lock_fd);
	config_free(&m.cfg);
	priv_free(priv);
	notify_close(m.notify);
	nats_Close();
	return rc;
}
