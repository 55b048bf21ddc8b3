/*
 * Scenarios about the process side of the service: config checking,
 * worker crashes, reloads, and shutdown; plus a self-test of the harness
 * that needs no service at all.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* ---- harness self-test (no service) ---- */

static int
harness_check_collector(struct bus *b, struct collector *c)
{
	static const char good[] = "{\"UserID\":\"h-1\",\"ActiveAlarms\":[{\"AlarmID\":\"a\","
	    "\"Status\":\"WARNING\",\"LatestChangedAt\":\"2021-08-17T15:33:59Z\"}]}";
	static const char bad[] = "{\"UserID\":\"h-2\",\"ActiveAlarms\":[],\"Extra\":1}";
	struct model_entry e = { "a", 1, "WARNING", "2021-08-17T15:33:59Z" };
	char *want = model_canon(&e, 1), first[256];
	const char *got;
	int rc = -1;

	if (natsConnection_PublishString(bus_conn(b), "AlarmDigest", good) != NATS_OK ||
	    natsConnection_PublishString(bus_conn(b), "AlarmDigest", bad) != NATS_OK) {
		harness_seterr("core publish to AlarmDigest failed");
		goto out;
	}
	/* Both went out on b, so once b is synced both have been filed. */
	if (collector_wait_user(c, "h-1", 1, harness_now_ms() + 30000) == -1 ||
	    collector_sync(c, b, harness_now_ms() + 30000) == -1)
		goto out;
	if ((got = collector_get(c, "h-1", 0)) == NULL || strcmp(got, want) != 0) {
		harness_seterr("collector filed %s, want %s", got ? got : "nothing", want);
		goto out;
	}
	if (collector_errors(c, first, sizeof(first)) != 1) {
		harness_seterr("collector did not flag the malformed digest exactly once");
		goto out;
	}
	rc = 0;
out:
	free(want);
	return rc;
}

static int
harness_check_capture(struct bus *b, struct capture *cap)
{
	natsMsg *msg = NULL;
	char hdr[128];
	natsStatus s;

	s = natsMsg_Create(&msg, "AlarmDeadLetter", NULL, "\x00\xff", 2);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "Alarm-Reject-Reason", "bad_utf8: test");
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(bus_conn(b), msg);
	natsMsg_Destroy(msg);
	if (s != NATS_OK) {
		harness_seterr("publishing a message with a header: %s", natsStatus_GetText(s));
		return -1;
	}
	if (capture_wait(cap, 1, harness_now_ms() + 30000) == -1)
		return -1;
	if (capture_find(cap, "\x00\xff", 2, hdr, sizeof(hdr)) != 1 ||
	    strcmp(hdr, "bad_utf8: test") != 0) {
		harness_seterr("capture lost the payload or header (header \"%s\")", hdr);
		return -1;
	}
	return 0;
}

/* A file-backed stream keeps its messages across a nats-server restart. */
static int
harness_check_restart(struct harness_nats *n, struct bus *b)
{
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	const char *subjects[] = { "itest.x" };
	uint64_t msgs = 0, last = 0;
	int64_t deadline;
	char *data = NULL;
	size_t len;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = "ITEST";
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	if ((s = js_AddStream(&si, bus_js(b), &sc, NULL, NULL)) != NATS_OK) {
		harness_seterr("js_AddStream ITEST: %s", natsStatus_GetText(s));
		return -1;
	}
	jsStreamInfo_Destroy(si);
	for (int i = 0; i < 10; i++)
		if (bus_publish(b, "itest.x", "hello", 5) == -1)
			return -1;
	if (harness_nats_restart(n) == -1)
		return -1;
	/* The client reconnects by itself; poll until the stream answers again. */
	deadline = harness_now_ms() + 30000;
	while (bus_stream_state(b, "ITEST", &msgs, &last) == -1 && harness_now_ms() < deadline)
		harness_sleep_ms(100);
	if (msgs != 10 || last != 10) {
		harness_seterr("after restart stream ITEST has %llu messages (last %llu), want 10",
		    (unsigned long long)msgs, (unsigned long long)last);
		return -1;
	}
	if (bus_stream_get(b, "ITEST", 3, &data, &len) == -1)
		return -1;
	if (len != 5 || memcmp(data, "hello", 5) != 0) {
		free(data);
		harness_seterr("message 3 of ITEST changed across the restart");
		return -1;
	}
	free(data);
	return 0;
}

/*
 * A fake supervisor (bash) with two children titled like workers: checks
 * worker discovery, and that orphans come back to us and get cleaned up.
 */
static int
harness_check_workers(const char *dir)
{
	char *argv[] = { "/bin/bash", "-c",
		"(exec -a 'alarm-supervisor: worker 1/2 fake' sleep 60) & "
		"(exec -a 'alarm-supervisor: worker 2/2 fake' sleep 60) & wait", NULL };
	struct harness_worker w[2];
	struct harness_proc p;
	char log[PATH_MAX];
	int rc = -1;

	/* Always there on Debian (scripts/deps.sh installs it): missing is a failure. */
	if (access("/bin/bash", X_OK) == -1) {
		harness_seterr("/bin/bash: %s (the fake supervisor needs bash's exec -a; "
		    "scripts/deps.sh installs it)", strerror(errno));
		return -1;
	}
	if (harness_path(log, sizeof(log), dir, "fake.log") == -1 ||
	    harness_spawn(&p, argv, log) == -1)
		return -1;
	if (harness_workers_wait(p.pid, 2, 20000, 100, w) == -1)
		goto out;
	if (w[0].slot != 1 || w[1].slot != 2 || w[1].nslots != 2) {
		harness_seterr("worker titles parsed as %d/%d and %d/%d", w[0].slot, w[0].nslots,
		    w[1].slot, w[1].nslots);
		goto out;
	}
	/* bash dies of SIGTERM while its children live on: they must be seen as left over. */
	if (kill(p.pid, SIGTERM) == -1 || harness_proc_wait(&p, 20000) == -1)
		goto out;
	if (!harness_pid_alive(w[0].pid)) {
		harness_seterr("orphaned fake worker %ld not visible after its parent died",
		    (long)w[0].pid);
		goto out;
	}
	/* It returns once the group is gone: no grace period here. */
	harness_proc_kill(&p);
	if (harness_pid_alive(w[0].pid) || harness_pid_alive(w[1].pid)) {
		harness_seterr("fake workers survived harness_proc_kill");
		goto out;
	}
	rc = 0;
out:
	harness_proc_kill(&p);
	return rc;
}

static int
harness_check_run_timeout(const char *dir)
{
	char *argv[] = { "/bin/sleep", "60", NULL };
	char out[PATH_MAX];
	int64_t t0 = harness_now_ms();
	int status;

	if (harness_path(out, sizeof(out), dir, "sleep.out") == -1)
		return -1;
	if (harness_run(argv, out, 200, &status) == 0) {
		harness_seterr("harness_run did not time out on sleep 60");
		return -1;
	}
	/* Far below the 60 s it would take to run out, however busy the machine. */
	if (harness_now_ms() - t0 > 20000) {
		harness_seterr("harness_run took %lld ms to give up", (long long)(harness_now_ms() - t0));
		return -1;
	}
	return 0;
}

void
scn_harness(void)
{
	struct harness_nats n = { 0 };
	struct collector *c = NULL;
	struct capture *cap = NULL;
	struct bus *b = NULL;
	char dir[PATH_MAX];

	if (harness_tmpdir("harness", dir, sizeof(dir)) == -1) {
		tap_fail("harness", "%s", harness_err());
		return;
	}
	tap_report("harness/run_timeout", harness_check_run_timeout(dir));
	tap_report("harness/worker_discovery_and_orphans", harness_check_workers(dir));
	if (harness_nats_start(&n, dir) == -1 || (b = bus_open(n.url, true)) == NULL ||
	    (c = collector_new(b, "AlarmDigest")) == NULL ||
	    (cap = capture_new(b, "AlarmDeadLetter", "Alarm-Reject-Reason")) == NULL) {
		tap_fail("harness/nats", "%s", harness_err());
	} else {
		tap_ok("harness/nats");
		tap_report("harness/collector", harness_check_collector(b, c));
		tap_report("harness/capture_with_header", harness_check_capture(b, cap));
		tap_report("harness/nats_restart_keeps_stream", harness_check_restart(&n, b));
	}
	capture_free(cap);
	collector_free(c);
	bus_close(b);
	if (harness_nats_stop(&n) == -1)
		tap_fail("harness/nats_stop", "%s", harness_err());
	if (harness_tmpdir_remove(dir) == -1)
		tap_fail("harness/cleanup", "%s", harness_err());
}

/* ---- config_check ---- */

struct config_case {
	const char *name;
	const char *section;     /* where `line` goes; NULL for none */
	const char *line;
	int want_exit;
};

static const struct config_case config_cases[] = {
	{ "valid_minimal", NULL, NULL, 0 },
	{ "valid_core_intake", "nats", "intake = core", 0 },
	{ "valid_durations_and_sizes", "service", "shutdown_timeout = 250ms", 0 },
	{ "bad_workers", "service", "workers = banana", 1 },
	{ "bad_duration", "service", "shutdown_timeout = 10 parsecs", 1 },
	{ "bad_log_level", "service", "log_level = loud", 1 },
	{ "bad_intake", "nats", "intake = carrier-pigeon", 1 },
	{ "bad_size", "limits", "max_message_bytes = lots", 1 },
};

/* A small config with `line` in its section; *lineno gets its line number. */
static void
config_case_text(const char *dir, const struct config_case *c, char *buf, size_t cap,
    int *lineno)
{
	static const char *const sections[] = { "nats", "service", "limits" };
	size_t len = 0;
	int line = 1;

	*lineno = 0;
	len += (size_t)snprintf(buf + len, cap - len, "# itest config_check: %s\n", c->name);
	for (int s = 0; s < 3; s++) {
		len += (size_t)snprintf(buf + len, cap - len, "[%s]\n", sections[s]);
		line++;
		if (s == 0) {
			/* Nothing listens there: -t must not need NATS. */
			len += (size_t)snprintf(buf + len, cap - len, "servers = nats://127.0.0.1:1\n");
			line++;
		} else if (s == 1) {
			len += (size_t)snprintf(buf + len, cap - len, "state_dir = %s/state\n", dir);
			line++;
		}
		if (c->section != NULL && strcmp(c->section, sections[s]) == 0) {
			len += (size_t)snprintf(buf + len, cap - len, "%s\n", c->line);
			*lineno = ++line;
		}
	}
}

/* Run `BIN -t -c path`; status and output. */
static int
config_run_check(const char *dir, const char *path, int *status, char **out)
{
	char *argv[] = { (char *)itest_opts.bin, "-t", "-c", (char *)path, NULL };
	char out_path[PATH_MAX];

	if (harness_path(out_path, sizeof(out_path), dir, "check.out") == -1 ||
	    harness_run(argv, out_path, 30000, status) == -1)
		return -1;
	return (*out = harness_read_file(out_path, NULL)) == NULL ? -1 : 0;
}

static int
config_check_case(const char *dir, const struct config_case *c)
{
	char text[2048], file[128], path[PATH_MAX], where[PATH_MAX + 16], st[64];
	char *out = NULL;
	int lineno, status, rc = -1;

	config_case_text(dir, c, text, sizeof(text), &lineno);
	snprintf(file, sizeof(file), "%s.conf", c->name);
	if (harness_path(path, sizeof(path), dir, file) == -1 ||
	    harness_write_file(path, text) == -1 || config_run_check(dir, path, &status, &out) == -1)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != c->want_exit) {
		harness_seterr("-t on %s ended with %s, want exit %d; output: %.300s", path,
		    harness_status_str(status, st, sizeof(st)), c->want_exit, out);
		goto out;
	}
	snprintf(where, sizeof(where), "%s:%d:", path, lineno);
	if (c->want_exit != 0 && strstr(out, where) == NULL) {
		harness_seterr("-t output does not name \"%s\": %.300s", where, out);
		goto out;
	}
	rc = 0;
out:
	free(out);
	return rc;
}

static int
config_check_file(const char *dir, const char *path, int want_exit)
{
	char *out = NULL, st[64];
	int status, rc = -1;

	if (config_run_check(dir, path, &status, &out) == -1)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != want_exit)
		harness_seterr("-t on %s ended with %s, want exit %d; output: %.300s", path,
		    harness_status_str(status, st, sizeof(st)), want_exit, out);
	else if (want_exit != 0 && strstr(out, path) == NULL)
		harness_seterr("-t output does not name %s: %.300s", path, out);
	else
		rc = 0;
	free(out);
	return rc;
}

void
scn_config_check(void)
{
	char dir[PATH_MAX], name[128], missing[PATH_MAX];

	if (harness_tmpdir("config", dir, sizeof(dir)) == -1) {
		tap_fail("config_check", "%s", harness_err());
		return;
	}
	for (size_t i = 0; i < sizeof(config_cases) / sizeof(config_cases[0]); i++) {
		if (!itest_selected("config_check", config_cases[i].name))
			continue;
		snprintf(name, sizeof(name), "config_check/%s", config_cases[i].name);
		tap_report(name, config_check_case(dir, &config_cases[i]));
	}
	if (itest_selected("config_check", "missing_file")) {
		tap_report("config_check/missing_file",
		    harness_path(missing, sizeof(missing), dir, "no-such.conf") == -1 ? -1 :
		    config_check_file(dir, missing, 1));
	}
	/* The shipped file documents every default: it must pass as is. */
	if (itest_selected("config_check", "shipped_default")) {
		char cwd[PATH_MAX];

		if (access("conf/alarm-supervisor.conf", R_OK) == -1)
			tap_fail("config_check/shipped_default", "conf/alarm-supervisor.conf: %s "
			    "(in %s; run itest from the repository root)", strerror(errno),
			    getcwd(cwd, sizeof(cwd)) != NULL ? cwd : "an unknown directory");
		else
			tap_report("config_check/shipped_default",
			    config_check_file(dir, "conf/alarm-supervisor.conf", 0));
	}
	if (harness_tmpdir_remove(dir) == -1)
		printf("# config_check: %s\n", harness_err());
}

/* ---- worker_kill ---- */

static void
runner_init(struct runner *r, struct env *e, struct model *m, const char *prefix,
    uint64_t seed_mix)
{
	memset(r, 0, sizeof(*r));
	r->bus = e->bus;
	r->model = m;
	r->seed = itest_opts.seed ^ seed_mix;
	r->prefix = prefix;
	r->users = itest_scaled(150);
	r->alarms = 4;
	r->batch = itest_scaled(10);
	r->pause_ms = 20;
	r->max_events = (size_t)itest_scaled(20000);
	r->base_sec = harness_wall_sec() - 7200;
}

/*
 * Between two faults: wait until the traffic thread has sent `events` more
 * (it sends about 400 a second on an idle machine), so every fault meets
 * load however slow the machine is.
 */
static int
load_flows(struct runner *r, int events)
{
	return runner_wait_sent(r, (size_t)itest_scaled(events), 30000);
}

/*
 * Wait for slot `slot` to run again under a new pid (n workers in all);
 * *after_ms gets the time from the kill to when it was seen.
 */
static int
wait_respawn(struct env *e, int n, int slot, pid_t old, int64_t killed_at, int64_t *after_ms)
{
	int64_t deadline = harness_now_ms() + 20000;
	struct harness_worker w[64];

	while (harness_now_ms() < deadline) {
		int have = harness_workers(e->svc.proc.pid, w, 64);

		for (int i = 0; i < have; i++) {
			if (w[i].slot == slot && w[i].pid != old && have == n) {
				*after_ms = harness_now_ms() - killed_at;
				return 0;
			}
		}
		if (env_alive(e) == -1)
			return -1;
		harness_sleep_ms(20);
	}
	harness_seterr("worker slot %d (pid %ld killed) not restarted within 20 s", slot, (long)old);
	return -1;
}

/* SIGKILL the worker in slot index k and check it comes back after >= 1 s. */
static int
kill_one_worker(struct env *e, int nworkers, int k)
{
	struct harness_worker w[64];
	int64_t killed_at, after;

	if (harness_workers_wait(e->svc.proc.pid, nworkers, 20000, 0, w) == -1)
		return -1;
	killed_at = harness_now_ms();
	if (kill(w[k].pid, SIGKILL) == -1) {
		harness_seterr("kill(worker %d pid %ld, SIGKILL): %s", w[k].slot, (long)w[k].pid,
		    strerror(errno));
		return -1;
	}
	if (wait_respawn(e, nworkers, w[k].slot, w[k].pid, killed_at, &after) == -1)
		return -1;
	/* Detection is polled: allow 100 ms of slack below the 1 s backoff. */
	if (after < 900) {
		harness_seterr("worker slot %d restarted %lld ms after SIGKILL; want >= 1 s backoff",
		    w[k].slot, (long long)after);
		return -1;
	}
	printf("# worker slot %d back %lld ms after SIGKILL\n", w[k].slot, (long long)after);
	return 0;
}

void
scn_worker_kill(void)
{
	struct env_config cfg = { .workers = 4 };
	struct model *m = model_new();
	struct runner r;
	char name[64];
	struct env e = { 0 };

	memset(&r, 0, sizeof(r));
	if (m == NULL || env_up(&e, "worker_kill", &cfg) == -1) {
		tap_fail("worker_kill", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	runner_init(&r, &e, m, "wk", 0x4b11);
	if (runner_start(&r) == -1) {
		tap_fail("worker_kill", "%s", harness_err());
		goto out;
	}
	for (int k = 0; k < 3; k++) {
		snprintf(name, sizeof(name), "worker_kill/restart_%d", k + 1);
		if (load_flows(&r, 250) == -1)
			tap_fail(name, "before the kill: %s", harness_err());
		else
			tap_report(name, kill_one_worker(&e, cfg.workers, k));
	}
	/* Traffic for the last one restarted too; a stalled thread fails the next check. */
	(void)load_flows(&r, 200);
	/* At-least-once after a crash: a repeated digest is allowed, a lost one is not. */
	tap_report("worker_kill/no_update_lost", env_finish_and_verify(&e, m, &r, true));
	tap_report("worker_kill/digest_json_shape", env_check_collector(&e));
	tap_report("worker_kill/service_still_up", env_alive(&e));
out:
	(void)runner_stop(&r);
	env_down(&e);
	model_free(m);
}

/* ---- reload_workers ---- */

static int
reload_to(struct env *e, int workers)
{
	struct harness_worker w[64];

	e->cfg.workers = workers;
	if (env_write_config(e, &e->cfg) == -1 || harness_service_signal(&e->svc, SIGHUP) == -1)
		return -1;
	return harness_workers_wait(e->svc.proc.pid, workers, 30000, 500, w);
}

/*
 * The master's title and log show a reshard's progress from the same
 * frame; the title lasts only as long as the move, so the log is what a
 * test can read: "users moved" as moved/total, total > 0, and a rate.
 */
static int
reshard_progress_logged(struct env *e)
{
	size_t len;
	char *log = harness_read_file(e->svc.log, &len);
	const char *p;
	unsigned long long done, stores, moved, total, rate;
	int found = 0;

	if (log == NULL)
		return -1;
	for (p = log; (p = strstr(p, "master: info: reshard to ")) != NULL; p++) {
		int nw;
		if (sscanf(p, "master: info: reshard to %d workers: %llu of %llu stores done, "
		    "%llu of %llu users moved, %llu users/s", &nw, &done, &stores, &moved, &total,
		    &rate) != 6)
			continue;
		if (total == 0 || moved > total) {
			harness_seterr("reshard progress with %llu of %llu users moved", moved, total);
			free(log);
			return -1;
		}
		found += done == stores && moved > 0;
	}
	free(log);
	if (found < 2) {
		harness_seterr("%d reshard progress lines \"N of N stores done, M of T users moved, "
		    "R users/s\" with M > 0 in the log, want one per reload (2)", found);
		return -1;
	}
	return 0;
}

void
scn_reload_workers(void)
{
	struct env_config cfg = { .workers = 4 };
	struct harness_worker w[64];
	struct model *m = model_new();
	struct runner r;
	struct env e = { 0 };
	pid_t sup;

	memset(&r, 0, sizeof(r));
	if (m == NULL || env_up(&e, "reload_workers", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 4, 20000, 200, w) == -1) {
		tap_fail("reload_workers", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	sup = e.svc.proc.pid;
	runner_init(&r, &e, m, "rw", 0x7e10ad);
	if (runner_start(&r) == -1) {
		tap_fail("reload_workers", "%s", harness_err());
		goto out;
	}
	tap_report("reload_workers/4_to_2", load_flows(&r, 300) == -1 ? -1 : reload_to(&e, 2));
	tap_report("reload_workers/2_to_3", load_flows(&r, 300) == -1 ? -1 : reload_to(&e, 3));
	tap_report("reload_workers/progress_moved_of_total", reshard_progress_logged(&e));
	/* Traffic for the new pool too; a stalled thread fails the next check. */
	(void)load_flows(&r, 300);
	/* A reload is no crash: every digest exactly once, in order. */
	tap_report("reload_workers/digests_match_model", env_finish_and_verify(&e, m, &r, false));
	tap_report("reload_workers/digest_json_shape", env_check_collector(&e));
	if (env_alive(&e) == 0 && e.svc.proc.pid != sup)
		harness_seterr("supervisor pid changed from %ld to %ld", (long)sup, (long)e.svc.proc.pid);
	tap_report("reload_workers/supervisor_kept_running",
	    env_alive(&e) == 0 && e.svc.proc.pid == sup ? 0 : -1);
out:
	(void)runner_stop(&r);
	env_down(&e);
	model_free(m);
}

/* ---- reload_invalid ---- */

/*
 * Wait until the log, past offset `from`, names "conf:LINE": the rejected
 * reload is over.  Gives up early when the supervisor is gone.
 */
static int
log_wait_line(struct env *e, size_t from, int line, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char where[64];

	snprintf(where, sizeof(where), "alarm-supervisor.conf:%d", line);
	for (;;) {
		size_t len;
		char *log = harness_read_file(e->svc.log, &len);
		bool found = log != NULL && from <= len && strstr(log + from, where) != NULL;

		free(log);
		if (found)
			return 0;
		if (env_alive(e) == -1)
			return -1;
		if (harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(20);
	}
	harness_seterr("no log line named \"%s\" within %lld ms of the SIGHUP", where,
	    (long long)timeout_ms);
	return -1;
}

int
env_small_traffic(struct env *e, const char *prefix, uint64_t seed_mix)
{
	struct model *m = model_new();
	struct plan p = { 0 };
	struct rng rng;
	char user[64], alarm[16], ts[48];
	int rc = -1;

	if (m == NULL) {
		harness_seterr("out of memory");
		return -1;
	}
	rng_seed(&rng, itest_opts.seed ^ seed_mix);
	for (int u = 0; u < 30; u++) {
		snprintf(user, sizeof(user), "%s-%02d", prefix, u);
		for (int a = 0; a < 3; a++) {
			snprintf(alarm, sizeof(alarm), "a%d", a);
			traffic_random_ts(&rng, harness_wall_sec() - 3600, 10, ts, sizeof(ts));
			if (plan_update(&p, user, alarm, traffic_random_status(&rng), ts) == -1)
				goto out;
		}
		if (plan_request(&p, user) == -1)
			goto out;
	}
	if (plan_send(&p, e->bus, m) == -1)
		goto out;
	rc = env_finish_and_verify(e, m, NULL, false);
out:
	plan_free(&p);
	model_free(m);
	return rc;
}

void
scn_reload_invalid(void)
{
	struct env_config cfg = { .workers = 2 }, bad;
	struct harness_worker before[64], after[64];
	char text[4096];
	size_t log_len = 0;
	int line, n, logged;
	char logged_why[1024] = "";
	struct env e = { 0 };
	char *log;

	if (env_up(&e, "reload_invalid", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 2, 20000, 200, before) == -1) {
		tap_fail("reload_invalid", "environment: %s", harness_err());
		goto out;
	}
	if ((log = harness_read_file(e.svc.log, &log_len)) != NULL)
		free(log);
	bad = cfg;
	bad.bad_workers = "banana";
	if (env_config_text(&e, &bad, text, sizeof(text), &line) == -1 ||
	    harness_write_file(e.svc.conf, text) == -1 ||
	    harness_service_signal(&e.svc, SIGHUP) == -1) {
		tap_fail("reload_invalid", "%s", harness_err());
		goto out;
	}
	/* The error line ends the reload: whatever it changed has changed by then. */
	if ((logged = log_wait_line(&e, log_len, line, 30000)) == -1)
		snprintf(logged_why, sizeof(logged_why), "%s", harness_err());
	tap_report("reload_invalid/service_still_up", env_alive(&e));
	n = harness_workers(e.svc.proc.pid, after, 64);
	if (n != 2)
		tap_fail("reload_invalid/same_worker_count", "%d workers after the bad reload, want 2", n);
	else
		tap_ok("reload_invalid/same_worker_count");
	/* A rejected file leaves the running config in place: no worker is replaced. */
	if (n != 2)
		tap_fail("reload_invalid/workers_not_restarted", "cannot compare: %d workers", n);
	else if (after[0].pid != before[0].pid || after[1].pid != before[1].pid)
		tap_fail("reload_invalid/workers_not_restarted", "worker pids %ld, %ld became %ld, %ld "
		    "on a rejected reload", (long)before[0].pid, (long)before[1].pid,
		    (long)after[0].pid, (long)after[1].pid);
	else
		tap_ok("reload_invalid/workers_not_restarted");
	if (logged == -1)
		tap_fail("reload_invalid/error_logged", "%s", logged_why);
	else
		tap_ok("reload_invalid/error_logged");
	tap_report("reload_invalid/still_produces_digests", env_small_traffic(&e, "ri", 0x5a11));
	/* And a good file is taken again afterwards. */
	if (env_write_config(&e, &cfg) == -1 || harness_service_signal(&e.svc, SIGHUP) == -1)
		tap_fail("reload_invalid/valid_reload_after", "%s", harness_err());
	else
		tap_report("reload_invalid/valid_reload_after", env_wait_ready(&e, 30000));
out:
	env_down(&e);
}

/* ---- sigterm_drain ---- */

/* Per user: three alarms, three updates each, two requests, all shuffled. */
static int
burst_plan(struct plan *p, struct rng *rng, const char *prefix, int users, int updates)
{
	char user[64], alarm[16], ts[48];

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "%s-%04d", prefix, u);
		for (int k = 0; k < updates; k++) {
			snprintf(alarm, sizeof(alarm), "a%u", rng_below(rng, 3));
			traffic_random_ts(rng, harness_wall_sec() - 3600, 20, ts, sizeof(ts));
			if (plan_update(p, user, alarm, traffic_random_status(rng), ts) == -1)
				return -1;
		}
		if (plan_request(p, user) == -1 || plan_request(p, user) == -1)
			return -1;
	}
	plan_shuffle(p, rng);
	return 0;
}

/* The instant a service log line starts with, in ms; -1 if it has none. */
static int64_t
log_line_ms(const char *line)
{
	struct model_ts ts;

	if (model_ts_parse(line, strcspn(line, " \n"), &ts) == -1)
		return -1;
	return ts.sec * 1000 + ts.nsec / 1000000;
}

/*
 * How long the supervisor's last shutdown took by its own clock: from its
 * last "shutting down" line to the "stopped" line after it; -1 (and
 * harness_err) when the log lacks either.
 */
static int64_t
log_shutdown_ms(const char *path)
{
	static const char begin[] = ": shutting down: ", end[] = "master: info: stopped\n";
	char *log = harness_read_file(path, NULL), *from = NULL, *to = NULL;
	int64_t t0 = -1, t1 = -1;

	if (log == NULL)
		return -1;
	for (char *p = log; (p = strstr(p, begin)) != NULL; p++)
		from = p;
	if (from != NULL && (to = strstr(from, end)) != NULL) {
		while (from > log && from[-1] != '\n')
			from--;
		while (to > log && to[-1] != '\n')
			to--;
		t0 = log_line_ms(from);
		t1 = log_line_ms(to);
	}
	free(log);
	if (t0 == -1 || t1 == -1) {
		harness_seterr("%s has no timestamped \"shutting down\" line followed by \"stopped\"",
		    path);
		return -1;
	}
	return t1 - t0;
}

static int
sigterm_check_exit(struct env *e, const struct harness_worker *w, int nw)
{
	int64_t bound = e->cfg.shutdown_timeout_s * 1000, t0 = harness_now_ms(), took;
	char st[64];

	/*
	 * The bound is checked on the service's own clock (its log) below; the
	 * wait here also covers the exit itself, which for an ASan build runs a
	 * leak check, on two busy cores.
	 */
	if (harness_service_stop(&e->svc, bound + 15000) == -1)
		return -1;
	if (!WIFEXITED(e->svc.proc.status) || WEXITSTATUS(e->svc.proc.status) != 0) {
		harness_seterr("supervisor ended with %s after SIGTERM, want exit 0",
		    harness_status_str(e->svc.proc.status, st, sizeof(st)));
		return -1;
	}
	for (int i = 0; i < nw; i++) {
		if (harness_pid_alive(w[i].pid)) {
			harness_seterr("worker %d pid %ld still running after the supervisor exited",
			    w[i].slot, (long)w[i].pid);
			harness_proc_kill(&e->svc.proc);
			return -1;
		}
	}
	/* Past the bound the master kills its workers: 2 s for that and its polling. */
	if ((took = log_shutdown_ms(e->svc.log)) == -1)
		return -1;
	printf("# sigterm_drain: shutdown took %lld ms by the service's log, %lld ms to exit\n",
	    (long long)took, (long long)(harness_now_ms() - t0));
	if (took > bound + 2000) {
		harness_seterr("shutdown took %lld ms by the service's log; shutdown_timeout is "
		    "%lld ms", (long long)took, (long long)bound);
		return -1;
	}
	return 0;
}

void
scn_sigterm_drain(void)
{
	struct env_config cfg = { .workers = 3, .shutdown_timeout_s = 5 };
	struct plan burst = { 0 }, down = { 0 };
	struct harness_worker w[64];
	struct model *m = model_new();
	struct rng rng;
	struct env e = { 0 };

	rng_seed(&rng, itest_opts.seed ^ 0x51671);
	if (m == NULL || env_up(&e, "sigterm_drain", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 3, 20000, 200, w) == -1) {
		tap_fail("sigterm_drain", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	if (burst_plan(&burst, &rng, "sd", itest_scaled(150), 9) == -1 ||
	    burst_plan(&down, &rng, "sd", itest_scaled(150), 2) == -1 ||
	    plan_send(&burst, e.bus, m) == -1) {
		tap_fail("sigterm_drain", "%s", harness_err());
		goto out;
	}
	tap_report("sigterm_drain/exits_0_within_timeout_no_worker_left",
	    sigterm_check_exit(&e, w, 3));
	/* Published while the service is down: the stream must hold them for it. */
	if (plan_send(&down, e.bus, m) == -1) {
		tap_fail("sigterm_drain", "publishing while down: %s", harness_err());
		goto out;
	}
	if (env_restart_service(&e) == -1) {
		tap_fail("sigterm_drain/restart", "%s", harness_err());
		goto out;
	}
	tap_ok("sigterm_drain/restart");
	tap_report("sigterm_drain/nothing_lost", env_finish_and_verify(&e, m, NULL, false));
	tap_report("sigterm_drain/digest_json_shape", env_check_collector(&e));
out:
	plan_free(&burst);
	plan_free(&down);
	env_down(&e);
	model_free(m);
}
