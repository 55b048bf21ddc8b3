/*
 * worker_replay_fence: one real worker process (alarm-supervisor --worker)
 * driven frame by frame over its channel, the test standing in for the
 * supervisor, against a real nats-server: the worker side of cluster mode
 * (issue 14), before any supervisor sends these frames.
 *
 * - A DIGEST with FRAME_F_REPLAY (a request the partition's earlier owner
 *   answered) publishes nothing, marks the user's alarms delivered and
 *   records the request as answered: the same request again is not
 *   answered, and the next one holds only alarms changed after it.
 * - Under a FENCE in the future requests are answered; past its deadline
 *   a request is skipped whole (nothing published, the alarms stay
 *   pending, counted in STATS, logged, and a FENCED frame ahead of the
 *   DONE that covers it), while updates are applied; after
 *   FENCE 0 the same request delivers them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../common/chan.h"
#include "../../common/frame.h"
#include "itest.h"

#define WF_TAG "worker_replay_fence"
#define WF_USER "wf-user"

struct wf {
	char dir[PATH_MAX], log[PATH_MAX];
	struct harness_nats nats;
	struct bus *bus;
	struct collector *digests;
	struct harness_proc proc;
	struct chan *ch;
	uint64_t next_id;          /* of the next UPDATE or DIGEST */
	uint64_t done;             /* the worker's last DONE */
	uint64_t fenced;           /* the id of its last FENCED (0: none) */
	bool fenced_after_done;    /* a FENCED came with an id the DONEs already covered */
	struct frame_stats stats;  /* its last STATS */
	bool ready;
};

/*
 * fork + exec of the worker role with the channel on FRAME_CHANNEL_FD, as
 * proc_spawn does for the supervisor (which always execs itself).  The
 * test is threaded: only async-signal-safe calls after the fork.
 */
static int
wf_spawn(struct wf *w)
{
	char *argv[] = { (char *)itest_opts.bin, "--worker", NULL };
	int sv[2], logfd, nullfd;
	sigset_t none;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		harness_seterr("socketpair for the worker: %s", strerror(errno));
		return -1;
	}
	if ((logfd = open(w->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) == -1 ||
	    (nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1) {
		harness_seterr("opening %s or /dev/null: %s", w->log, strerror(errno));
		return -1;
	}
	sigemptyset(&none);
	if ((pid = fork()) == -1) {
		harness_seterr("fork for the worker: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &none, NULL);
		setpgid(0, 0);
		if (dup2(nullfd, 0) == -1 || dup2(logfd, 1) == -1 || dup2(logfd, 2) == -1 ||
		    dup2(sv[1], FRAME_CHANNEL_FD) == -1)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(sv[1]);
	close(logfd);
	close(nullfd);
	w->proc = (struct harness_proc){ .pid = pid };
	if ((w->ch = chan_new(sv[0])) == NULL) {
		harness_seterr("channel to the worker: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	return 0;
}

/* Write what was composed into the channel, waiting for the worker to read it. */
static int
wf_flush(struct wf *w, const char *what)
{
	if (chan_flush_wait(w->ch) == -1) {
		harness_seterr("sending %s to the worker: %s", what, strerror(errno));
		return -1;
	}
	return 0;
}

/* Take what the worker sent: READY, DONE, STATS, FENCED. */
static int
wf_take(struct wf *w)
{
	struct frame f;
	const char *err;
	int rc;

	while ((rc = chan_next(w->ch, &f, &err)) == 1) {
		if (f.type == FRAME_READY)
			w->ready = true;
		else if (f.type == FRAME_DONE && f.id > w->done)
			w->done = f.id;
		else if (f.type == FRAME_FENCED) {
			/* It must come before the DONE covering the same frames, or that DONE gets acked. */
			w->fenced_after_done |= f.id <= w->done;
			w->fenced = f.id;
		}
		else if (f.type == FRAME_STATS && frame_get_stats(&f, &w->stats) == -1) {
			harness_seterr("the worker sent a malformed STATS (%u bytes)", f.body_len);
			return -1;
		} else if (f.type != FRAME_DONE && f.type != FRAME_STATS && f.type != FRAME_FENCED) {
			harness_seterr("the worker sent an unexpected frame type %u", f.type);
			return -1;
		}
	}
	chan_consume(w->ch);
	if (rc == -1) {
		harness_seterr("bad frame from the worker: %s", err);
		return -1;
	}
	return 0;
}

/* Read frames until done(w) holds; -1 at the deadline or when the worker is gone. */
static int
wf_wait(struct wf *w, bool (*done)(const struct wf *, uint64_t), uint64_t arg, int64_t timeout_ms,
    const char *what)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (!done(w, arg)) {
		struct pollfd pfd = { chan_fd(w->ch), POLLIN, 0 };
		int64_t left = deadline - harness_now_ms();
		int rc;

		if (left <= 0) {
			harness_seterr("%s: not within %lld ms", what, (long long)timeout_ms);
			return -1;
		}
		if (poll(&pfd, 1, left > 200 ? 200 : (int)left) == -1 && errno != EINTR) {
			harness_seterr("poll on the worker's channel: %s", strerror(errno));
			return -1;
		}
		if ((rc = chan_fill(w->ch, 65536)) == -1 || rc == CHAN_EOF) {
			harness_seterr("%s: the worker closed its channel (see %s)", what, w->log);
			return -1;
		}
		if (wf_take(w) == -1)
			return -1;
	}
	return 0;
}

static bool wf_is_ready(const struct wf *w, uint64_t arg) { (void)arg; return w->ready; }
static bool wf_is_done(const struct wf *w, uint64_t id) { return w->done >= id; }
static bool wf_fenced_seen(const struct wf *w, uint64_t n) { return w->stats.digests_fenced >= n; }

static int
wf_update(struct wf *w, const char *alarm, enum alarm_status status, int64_t sec)
{
	struct alarm_msg m = {
		.kind = MSG_STATUS_CHANGED, .user = WF_USER, .user_len = strlen(WF_USER),
		.alarm = alarm, .alarm_len = strlen(alarm), .status = status,
		.changed_at = { .sec = sec, .nsec = 0, .off_min = 0 },
	};

	if (frame_put_update(chan_out(w->ch), w->next_id++, &m) == -1) {
		harness_seterr("encoding an UPDATE of %s: %s", alarm, strerror(errno));
		return -1;
	}
	return wf_flush(w, "an UPDATE");
}

static int
wf_digest(struct wf *w, uint64_t seq, bool replay)
{
	if (frame_put_digest_at(chan_out(w->ch), w->next_id++, seq, harness_wall_sec() * 1000000,
	    replay ? FRAME_F_REPLAY : 0, WF_USER, strlen(WF_USER)) == -1) {
		harness_seterr("encoding a DIGEST at sequence %llu: %s", (unsigned long long)seq,
		    strerror(errno));
		return -1;
	}
	return wf_flush(w, "a DIGEST");
}

static int
wf_fence(struct wf *w, int64_t deadline_ms)
{
	if (frame_put_fence(chan_out(w->ch), deadline_ms) == -1) {
		harness_seterr("encoding FENCE %lld: %s", (long long)deadline_ms, strerror(errno));
		return -1;
	}
	return wf_flush(w, "a FENCE");
}

/*
 * Every frame sent so far is done, and every digest the worker published
 * for them is filed: it flushes them to the server before it says DONE.
 */
static int
wf_settle(struct wf *w)
{
	return wf_wait(w, wf_is_done, w->next_id - 1, 30000, "DONE of every frame sent") == -1 ||
	    collector_sync(w->digests, w->bus, harness_now_ms() + 10000) == -1 ? -1 : 0;
}

/*
 * The user has exactly n digests (`when`: after what); the last one holds
 * `want` and none of `absent` (NULL-ended).
 */
static int
wf_expect(struct wf *w, const char *when, size_t n, const char *const want[],
    const char *const absent[])
{
	size_t have = collector_count(w->digests, WF_USER);
	const char *d;
	char q[64];

	if (have != n) {
		harness_seterr("%s: user %s has %zu digests, want %zu (last: %s)", when, WF_USER, have,
		    n, have > 0 ? collector_get(w->digests, WF_USER, have - 1) : "none");
		return -1;
	}
	if (n == 0)
		return 0;
	d = collector_get(w->digests, WF_USER, n - 1);
	for (size_t i = 0; want != NULL && want[i] != NULL; i++) {
		snprintf(q, sizeof(q), "\"%s\"", want[i]);
		if (d == NULL || strstr(d, q) == NULL) {
			harness_seterr("%s: digest %zu of %s lacks %s: %s", when, n, WF_USER, want[i],
			    d ? d : "(none)");
			return -1;
		}
	}
	for (size_t i = 0; absent != NULL && absent[i] != NULL; i++) {
		snprintf(q, sizeof(q), "\"%s\"", absent[i]);
		if (strstr(d, q) != NULL) {
			harness_seterr("%s: digest %zu of %s holds %s: %s", when, n, WF_USER, absent[i], d);
			return -1;
		}
	}
	return 0;
}

static int
wf_up(struct wf *w)
{
	struct env e = { 0 };
	struct env_config cfg = { .workers = 1 };
	char conf[4096], state[PATH_MAX];

	if (harness_tmpdir(WF_TAG, w->dir, sizeof(w->dir)) == -1 ||
	    harness_path(w->log, sizeof(w->log), w->dir, "worker.log") == -1 ||
	    harness_path(state, sizeof(state), w->dir, "state") == -1 ||
	    harness_nats_start(&w->nats, w->dir) == -1)
		return -1;
	if (mkdir(state, 0700) == -1) {
		harness_seterr("mkdir %s: %s", state, strerror(errno));
		return -1;
	}
	if ((w->bus = bus_open(w->nats.url, false)) == NULL ||
	    (w->digests = collector_new(w->bus, "AlarmDigest")) == NULL)
		return -1;
	/* The service's config, as the supervisor would hand it over in the HELLO. */
	snprintf(e.dir, sizeof(e.dir), "%s", w->dir);
	snprintf(e.tag, sizeof(e.tag), "%s", WF_TAG);
	e.nats = w->nats;
	if (env_config_text(&e, &cfg, conf, sizeof(conf), NULL) == -1 || wf_spawn(w) == -1)
		return -1;
	if (frame_put_hello(chan_out(w->ch), 0, 1, conf, strlen(conf)) == -1) {
		harness_seterr("encoding HELLO: %s", strerror(errno));
		return -1;
	}
	w->next_id = 1;
	/* An ASan build connecting on two busy cores can take a while. */
	return wf_flush(w, "HELLO") == -1 ? -1 :
	    wf_wait(w, wf_is_ready, 0, 60000, "READY (store open, NATS connected)");
}

/* Replayed request: marked and recorded, nothing published. */
static int
wf_replay(struct wf *w)
{
	static const char *const want[] = { "a2", "a3", NULL }, *const absent[] = { "a1", NULL };

	if (wf_update(w, "a1", STATUS_WARNING, 1700000001) == -1 ||
	    wf_digest(w, 10, true) == -1 ||
	    wf_update(w, "a3", STATUS_CRITICAL, 1700000003) == -1 ||
	    /* The replayed request again, for real: recorded as answered, so not answered again. */
	    wf_digest(w, 10, false) == -1 || wf_settle(w) == -1)
		return -1;
	if (wf_expect(w, "a replayed request, then that request again", 0, NULL, NULL) == -1)
		return -1;
	/* The next request: a1 went out with the replayed one, so only a3 and a2. */
	if (wf_update(w, "a2", STATUS_WARNING, 1700000002) == -1 || wf_digest(w, 11, false) == -1 ||
	    collector_wait_user(w->digests, WF_USER, 1, harness_now_ms() + 10000) == -1 ||
	    wf_settle(w) == -1)
		return -1;
	return wf_expect(w, "the request after the replay", 1, want, absent);
}

/* A fence ahead does not hold requests back. */
static int
wf_fence_ahead(struct wf *w)
{
	static const char *const want[] = { "b1", NULL }, *const absent[] = { "a1", "a2", "a3", NULL };

	if (wf_fence(w, harness_now_ms() + 600000) == -1 ||
	    wf_update(w, "b1", STATUS_WARNING, 1700000011) == -1 || wf_digest(w, 20, false) == -1 ||
	    collector_wait_user(w->digests, WF_USER, 2, harness_now_ms() + 10000) == -1 ||
	    wf_settle(w) == -1)
		return -1;
	return wf_expect(w, "a request under a fence ahead", 2, want, absent);
}

/* Past the fence: nothing published, counted, logged; the update applied all the same. */
static int
wf_fenced(struct wf *w)
{
	char *log;
	int rc = 0;

	/* Monotonic ms 1 is long past (0 would mean no fence). */
	if (wf_fence(w, 1) == -1 ||
	    wf_update(w, "b2", STATUS_CRITICAL, 1700000012) == -1 || wf_digest(w, 21, false) == -1 ||
	    wf_settle(w) == -1)
		return -1;
	if (wf_expect(w, "a request past the fence", 2, NULL, NULL) == -1)
		return -1;
	/* The supervisor must ack none of it: a FENCED ahead of the DONE says so. */
	if (w->fenced != w->done || w->fenced_after_done) {
		harness_seterr("after the fenced request (frames up to %llu durable), the worker's FENCED "
		    "said %llu%s", (unsigned long long)w->done, (unsigned long long)w->fenced,
		    w->fenced_after_done ? ", after the DONE that covered them" : "");
		return -1;
	}
	/* The worker reports once a second. */
	if (wf_wait(w, wf_fenced_seen, 1, 10000, "STATS with digests_fenced 1") == -1)
		return -1;
	if (w->stats.digests_fenced != 1) {
		harness_seterr("STATS says %llu requests fenced, want 1",
		    (unsigned long long)w->stats.digests_fenced);
		return -1;
	}
	if ((log = harness_read_file(w->log, NULL)) == NULL)
		return -1;
	if (strstr(log, "lease expired: not answering the digest request of user \"" WF_USER "\" at "
	    "stream sequence 21") == NULL) {
		harness_seterr("%s has no \"lease expired: not answering\" line for sequence 21", w->log);
		rc = -1;
	}
	free(log);
	return rc;
}

/* The fence lifted: the same request delivers what it left pending. */
static int
wf_lifted(struct wf *w)
{
	static const char *const want[] = { "b2", NULL }, *const absent[] = { "b1", "a1", NULL };

	if (wf_fence(w, 0) == -1 || wf_digest(w, 21, false) == -1 ||
	    collector_wait_user(w->digests, WF_USER, 3, harness_now_ms() + 10000) == -1 ||
	    wf_settle(w) == -1)
		return -1;
	return wf_expect(w, "the request again after FENCE 0", 3, want, absent);
}

/* STOP: the worker commits, reports and exits 0. */
static int
wf_stop(struct wf *w)
{
	char st[64];

	if (frame_put(chan_out(w->ch), FRAME_STOP, w->next_id++, NULL, 0) == -1 ||
	    wf_flush(w, "STOP") == -1)
		return -1;
	if (harness_proc_wait(&w->proc, 30000) == -1)
		return -1;
	if (!WIFEXITED(w->proc.status) || WEXITSTATUS(w->proc.status) != 0) {
		harness_seterr("the worker ended with %s after STOP, want exit 0",
		    harness_status_str(w->proc.status, st, sizeof(st)));
		return -1;
	}
	return 0;
}

static void
wf_down(struct wf *w, int failures_at_start)
{
	harness_proc_kill(&w->proc);
	chan_free(w->ch);
	collector_free(w->digests);
	bus_close(w->bus);
	if (w->nats.proc.pid > 0 && harness_nats_stop(&w->nats) == -1)
		printf("# %s: %s\n", WF_TAG, harness_err());
	if (w->log[0] != '\0') {
		tap_check_sanitizers(WF_TAG, w->log, 200);
		if (tap_failures() > failures_at_start)
			harness_dump_tail("worker log", w->log, 40);
	}
	if (w->dir[0] == '\0')
		return;
	if (getenv("ITEST_KEEP") != NULL) {
		harness_tmpdir_keep(w->dir);
		printf("# %s: kept %s\n", WF_TAG, w->dir);
	} else if (harness_tmpdir_remove(w->dir) == -1) {
		printf("# %s: %s\n", WF_TAG, harness_err());
	}
}

void
scn_worker_replay_fence(void)
{
	static const struct {
		const char *name;
		int (*run)(struct wf *);
	} steps[] = {
		{ WF_TAG "/replay", wf_replay },
		{ WF_TAG "/fence_ahead", wf_fence_ahead },
		{ WF_TAG "/fenced", wf_fenced },
		{ WF_TAG "/lifted", wf_lifted },
		{ WF_TAG "/teardown", wf_stop },
	};
	struct wf w = { 0 };
	int failures = tap_failures();
	size_t i = 0;

	if (wf_up(&w) == -1) {
		tap_fail(WF_TAG "/up", "%s", harness_err());
		i = 1;  /* the up counts for the first step */
	}
	/* After a failed step the worker's state is unknown: the rest fail with it. */
	for (bool failed = i > 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (failed) {
			tap_fail(steps[i].name, "not run: an earlier step failed");
			continue;
		}
		failed = steps[i].run(&w) == -1;
		tap_report(steps[i].name, failed ? -1 : 0);
	}
	wf_down(&w, failures);
}
