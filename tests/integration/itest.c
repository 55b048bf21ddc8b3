/*
 * itest: integration tests of alarm-supervisor against a real nats-server.
 *
 *   itest [SUPERVISOR_BINARY] [SCENARIO[/CASE] ...]
 *
 * The binary defaults to $ALARM_SUPERVISOR, then build/plain/alarm-supervisor.
 * Scenarios may also be chosen with ITEST_ONLY=a,b.  Other knobs:
 * ITEST_SCALE (traffic size, default 1), ITEST_SEED, ITEST_TIMEOUT (global
 * watchdog, seconds, default 600), ITEST_KEEP=1 (keep temp dirs), NATS_SERVER.
 * scripts/check.sh (make check, make test) ignores the selecting ones.
 *
 * Prints the plan "1..N" first (the checks the selected scenarios plan,
 * from the scenario table below), "ok N - name" / "not ok N - name: reason"
 * per check, and ends with "itest: P passed, F failed (N planned)"; exits 0
 * only when F == 0 and P == N > 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "itest.h"

struct itest_opts itest_opts;

/* ---- options ---- */

bool
itest_selected(const char *scenario, const char *sub)
{
	size_t slen = strlen(scenario);

	if (itest_opts.nonly == 0)
		return true;
	for (int i = 0; i < itest_opts.nonly; i++) {
		const char *o = itest_opts.only[i];

		if (strcmp(o, scenario) == 0)
			return true;
		if (strncmp(o, scenario, slen) != 0 || o[slen] != '/')
			continue;
		/* "spec/x" runs scenario spec, and within it only case x. */
		if (sub == NULL || strcmp(o + slen + 1, sub) == 0)
			return true;
	}
	return false;
}

int
itest_scaled(int n)
{
	double v = n * itest_opts.scale;

	return v < 1 ? 1 : (int)v;
}

/* On the watchdog thread: tap_abort writes with write(2) only. */
static void
on_abort(const char *why)
{
	tap_abort("itest", why);
}

static void
on_stray(int sig, const char *who)
{
	tap_fail("itest/stray_signal", "signal %d (%s) sent to the test program by %s", sig,
	    strsignal(sig), who);
}

/* ---- environments ---- */

int
env_config_text(const struct env *e, const struct env_config *cfg, char *buf, size_t cap,
    int *workers_line)
{
	char workers[64];
	int n;

	if (cfg->bad_workers != NULL)
		snprintf(workers, sizeof(workers), "%s", cfg->bad_workers);
	else
		snprintf(workers, sizeof(workers), "%d", cfg->workers);
	/*
	 * Line 9 (after nats_extra's lines) is "workers = ..." (callers check
	 * the error names it).  No worker counts as healthy (restart_healthy),
	 * however slow the run: a killed one always waits restart_backoff_min,
	 * as worker_kill checks.  extra_conf lands in [worker] or opens its own
	 * sections.
	 */
	n = snprintf(buf, cap,
	    "# itest config for %s\n"
	    "[nats]\n"
	    "servers = %s\n"
	    "intake = %s\n"
	    "%s"
	    "\n"
	    "[service]\n"
	    "state_dir = %s/state\n"
	    "log_level = info\n"
	    "workers = %s\n"
	    "shutdown_timeout = %ds\n"
	    "restart_backoff_min = 1s\n"
	    "restart_backoff_max = 2s\n"
	    "restart_healthy = 1h\n"
	    "%s"
	    "\n"
	    "[worker]\n"
	    "commit_max_ms = 20ms\n"
	    "%s"
	    "\n"
	    "[http]\n"
	    "listen = %s\n",
	    e->tag, cfg->servers != NULL ? cfg->servers : e->nats.url, cfg->core ? "core" : "jetstream",
	    cfg->nats_extra != NULL ? cfg->nats_extra : "", e->dir, workers,
	    cfg->shutdown_timeout_s > 0 ? cfg->shutdown_timeout_s : 10,
	    cfg->service_extra != NULL ? cfg->service_extra : "",
	    cfg->extra_conf != NULL ? cfg->extra_conf : "",
	    cfg->http_listen != NULL ? cfg->http_listen : "\"\"");
	if (workers_line != NULL) {
		*workers_line = 9;
		for (const char *x = cfg->nats_extra; x != NULL && *x != '\0'; x++)
			*workers_line += *x == '\n';
	}
	if (n < 0 || (size_t)n >= cap) {
		harness_seterr("config text for %s does not fit in %zu bytes", e->tag, cap);
		return -1;
	}
	return 0;
}

int
env_write_config(struct env *e, const struct env_config *cfg)
{
	char text[4096];

	if (env_config_text(e, cfg, text, sizeof(text), NULL) == -1 ||
	    harness_write_file(e->svc.conf, text) == -1)
		return -1;
	/* A service that dropped to its user reads the file again on SIGHUP. */
	if (cfg->dir_shared && chmod(e->svc.conf, 0644) == -1) {
		harness_seterr("chmod 0644 %s: %s", e->svc.conf, strerror(errno));
		return -1;
	}
	return 0;
}

int
env_alive(struct env *e)
{
	char st[64];

	if (harness_proc_alive(&e->svc.proc))
		return 0;
	harness_seterr("the supervisor is not running (%s); see its log",
	    e->svc.proc.pid > 0 ? harness_status_str(e->svc.proc.status, st, sizeof(st)) :
	    "never started");
	return -1;
}

int
env_wait_user(struct env *e, const char *user, size_t n, int64_t deadline_ms)
{
	for (;;) {
		int64_t slice = harness_now_ms() + 250;

		if (collector_wait_user(e->digests, user, n, slice < deadline_ms ? slice : deadline_ms) == 0)
			return 0;
		if (harness_now_ms() >= deadline_ms || env_alive(e) == -1)
			return -1;
	}
}

/* Consumer polling that gives up as soon as the supervisor dies. */
static int
env_wait_consumer(struct env *e, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - harness_now_ms();

		if (env_alive(e) == -1)
			return -1;
		if (bus_wait_consumer(e->bus, "ALARMS", "alarm-digest", left < 500 ? left : 500) == 0)
			return 0;
		if (left <= 500)
			return -1;
	}
}

int
env_settle(struct env *e, struct capture *dl, int64_t deadline_ms)
{
	if (e->cfg.core) {
		/* Core intake acks nothing, so no state says it is done: a quiet period it is. */
		harness_sleep_ms(300);
	} else {
		for (;;) {
			int64_t slice = harness_now_ms() + 500;

			if (bus_wait_acked(e->bus, "ALARMS", "alarm-digest",
			    slice < deadline_ms ? slice : deadline_ms) == 0)
				break;
			if (harness_now_ms() >= deadline_ms || env_alive(e) == -1)
				return -1;
		}
	}
	if (collector_sync(e->digests, e->bus, deadline_ms) == -1)
		return -1;
	return dl == NULL ? 0 : capture_sync(dl, e->bus, deadline_ms);
}

int
env_settled_rc(int rc, const char *unsettled)
{
	if (rc == 0 && unsettled[0] != '\0') {
		harness_seterr("as expected so far, but the service did not settle, so more may "
		    "come: %s", unsettled);
		return -1;
	}
	return rc;
}

/* One probe user: update + request, then wait for its digest. */
static int
env_probe(struct env *e, int64_t deadline)
{
	char user[96], ts[48];
	int64_t until;

	snprintf(user, sizeof(user), "probe-%s-%d", e->tag, ++e->probes);
	model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
	if (bus_publish_update(e->bus, user, "probe", "WARNING", ts) == -1 ||
	    bus_publish_request(e->bus, user) == -1 || bus_flush(e->bus, 10000) == -1)
		return -1;
	/* Core intake drops probes sent before it subscribed: retry those sooner. */
	until = harness_now_ms() + (e->cfg.core ? 1000 : 3000);
	return env_wait_user(e, user, 1, until < deadline ? until : deadline);
}

int
env_wait_ready(struct env *e, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	/* Cluster mode's consumers come and go with leases: the probe is the test. */
	if (!e->cfg.core && !e->cfg.cluster && env_wait_consumer(e, deadline) == -1)
		return -1;
	/* Core intake loses what is published before it subscribes: probe until one returns. */
	while (harness_now_ms() < deadline) {
		if (env_alive(e) == -1)
			return -1;
		if (env_probe(e, deadline) == 0)
			return 0;
	}
	harness_seterr("service not ready after %lld ms: no probe digest came back (%d probes)",
	    (long long)timeout_ms, e->probes);
	return -1;
}

int
env_up(struct env *e, const char *tag, const struct env_config *cfg)
{
	memset(e, 0, sizeof(*e));
	e->failures_at_start = tap_failures();
	e->cfg = *cfg;
	snprintf(e->tag, sizeof(e->tag), "%s", tag);
	if (harness_tmpdir(tag, e->dir, sizeof(e->dir)) == -1)
		return -1;
	if (cfg->dir_shared && chmod(e->dir, 0711) == -1) {
		harness_seterr("chmod 0711 %s: %s", e->dir, strerror(errno));
		return -1;
	}
	snprintf(e->svc.bin, sizeof(e->svc.bin), "%s", cfg->bin != NULL ? cfg->bin : itest_opts.bin);
	if (harness_path(e->svc.conf, sizeof(e->svc.conf), e->dir, "alarm-supervisor.conf") == -1 ||
	    harness_path(e->svc.log, sizeof(e->svc.log), e->dir, "service.log") == -1)
		return -1;
	if (cfg->servers == NULL && harness_nats_start_conf(&e->nats, e->dir, cfg->nats_conf) == -1)
		return -1;
	if ((e->bus = bus_open(cfg->servers != NULL ? cfg->servers : e->nats.url, !cfg->core)) == NULL)
		return -1;
	if ((e->digests = collector_new(e->bus, "AlarmDigest")) == NULL)
		return -1;
	if (env_write_config(e, cfg) == -1 || harness_service_start(&e->svc) == -1)
		return -1;
	/* An ASan build starting workers on two busy cores can take many seconds. */
	return env_wait_ready(e, 60000);
}

int
env_restart_service(struct env *e)
{
	if (harness_service_start(&e->svc) == -1)
		return -1;
	return env_wait_ready(e, 60000);
}

int
env_check_collector(struct env *e)
{
	char first[1200];
	size_t errors = collector_errors(e->digests, first, sizeof(first));
	int64_t dropped = collector_dropped(e->digests);

	if (errors > 0) {
		harness_seterr("%zu digests broke the output contract; first: %s", errors, first);
		return -1;
	}
	if (dropped != 0) {
		harness_seterr("the test's digest subscription dropped %lld messages", (long long)dropped);
		return -1;
	}
	return 0;
}

/* Stop traffic, send the final round, wait for its digests and for the service to settle. */
int
env_finish(struct env *e, struct model *m, struct runner *r, bool allow_dup, char *marker,
    size_t cap)
{
	if (r != NULL && runner_stop(r) == -1)
		return -1;
	if (r != NULL)
		printf("# %s: traffic thread sent %zu messages\n", e->tag, atomic_load(&r->sent));
	if (traffic_final_round(e->bus, m, e->tag) == -1)
		return -1;
	traffic_marker(e->tag, marker, cap);
	if (traffic_wait(m, e->digests, allow_dup, 90000, &e->svc.proc, marker) == -1)
		return -1;
	/* Everything acked and filed: a wrong extra digest would be here by now. */
	return env_settle(e, NULL, harness_now_ms() + 60000);
}

/* env_finish, then every user compared with the model. */
int
env_finish_and_verify(struct env *e, struct model *m, struct runner *r, bool allow_dup)
{
	char marker[64];

	if (env_finish(e, m, r, allow_dup, marker, sizeof(marker)) == -1)
		return -1;
	return traffic_verify(m, e->digests, allow_dup);
}

/*
 * Shutdown is part of the contract: exit 0 on SIGTERM and leave no worker.
 * One check, "TAG/teardown", for every environment whose service started.
 */
static void
env_stop_service(struct env *e)
{
	struct harness_worker w[64];
	char name[64], st[64];
	int nw;

	snprintf(name, sizeof(name), "%s/teardown", e->tag);
	/* Never started: env_up's failure was the scenario's report. */
	if (e->svc.proc.pid <= 0)
		goto out;
	if (e->svc.proc.reaped) {
		tap_fail(name, "the supervisor was not running at teardown (%s)",
		    harness_status_str(e->svc.proc.status, st, sizeof(st)));
		goto out;
	}
	nw = harness_workers(e->svc.proc.pid, w, 64);
	/* Slack past shutdown_timeout for an ASan exit (leak check) on busy cores. */
	if (harness_service_stop(&e->svc, (e->cfg.shutdown_timeout_s > 0 ?
	    e->cfg.shutdown_timeout_s : 10) * 1000 + 15000) == -1) {
		tap_fail(name, "%s", harness_err());
		goto out;
	}
	if (!WIFEXITED(e->svc.proc.status) || WEXITSTATUS(e->svc.proc.status) != 0) {
		tap_fail(name, "supervisor ended with %s after SIGTERM, want exit 0",
		    harness_status_str(e->svc.proc.status, st, sizeof(st)));
		goto out;
	}
	for (int i = 0; i < nw; i++) {
		if (harness_pid_alive(w[i].pid)) {
			tap_fail(name, "worker %d/%d pid %ld outlived the supervisor", w[i].slot,
			    w[i].nslots, (long)w[i].pid);
			goto out;
		}
	}
	tap_ok(name);
out:
	/* Whatever is left of its group, or orphaned outside it, goes now. */
	harness_proc_kill(&e->svc.proc);
	harness_kill_orphans();
}

void
env_down(struct env *e)
{
	bool failed;

	if (e->dir[0] == '\0')
		return;
	env_stop_service(e);
	tap_check_sanitizers(e->tag, e->svc.log, 200);
	failed = tap_failures() > e->failures_at_start;
	collector_free(e->digests);
	e->digests = NULL;
	bus_close(e->bus);
	e->bus = NULL;
	if (harness_nats_stop(&e->nats) == -1)
		printf("# %s: %s\n", e->tag, harness_err());
	if (failed) {
		harness_dump_tail("service log", e->svc.log, 60);
		harness_dump_tail("nats-server log", e->nats.log, 10);
	}
	if (getenv("ITEST_KEEP") != NULL) {
		harness_tmpdir_keep(e->dir);
		printf("# %s: kept %s\n", e->tag, e->dir);
	}
	else if (harness_tmpdir_remove(e->dir) == -1)
		printf("# %s: %s\n", e->tag, harness_err());
	e->dir[0] = '\0';
}

/* ---- main ---- */

/*
 * The scenarios, each with the checks a passing run of it reports
 * ("checks"): the plan.  Add a check to a scenario, bump its number; a
 * run that reports another count fails, so a check that stops running
 * cannot go unnoticed.  Counts are fixed: they depend on no option and on
 * nothing found at run time.  "fixed" is how many of them run whatever
 * cases are selected (SCENARIO/CASE plans fixed + one per named case);
 * WHOLE marks a scenario without cases.  Every scenario with a service
 * counts its teardown (TAG/teardown).
 */
#define WHOLE (-1)

static const struct scenario {
	const char *name;
	void (*run)(void);
	bool needs_service;
	int checks;
	int fixed;
} scenarios[] = {
	/* 22 SPEC cases + timestamps + round_trip */
	{ "model_check", scn_model_check, false, 24, 0 },
	{ "harness", scn_harness, false, 6, WHOLE },
	/* 8 cases + missing_file + shipped_default */
	{ "config_check", scn_config_check, true, 10, 0 },
	/* 22 SPEC cases + update_then_request_back_to_back; shape, still up, teardown */
	{ "spec", scn_spec, true, 26, 3 },
	{ "many_users", scn_many_users, true, 3, WHOLE },
	{ "worker_kill", scn_worker_kill, true, 7, WHOLE },
	/* 4_to_2, 2_to_3, progress moved/total, digests, shape, same pid; teardown is in env_down */
	{ "reload_workers", scn_reload_workers, true, 7, WHOLE },
	{ "reload_invalid", scn_reload_invalid, true, 7, WHOLE },
	/* 129 cases; 5 checks of the whole run, teardown */
	{ "malformed", scn_malformed, true, 135, 6 },
	{ "sigterm_drain", scn_sigterm_drain, true, 5, WHOLE },
	{ "core_intake", scn_core_intake, true, 4, WHOLE },
	/* parts joined = model, JSON shape, parts within max_payload, nothing logged as failed, teardown */
	{ "big_digest", scn_big_digest, true, 5, WHOLE },
	/* logged, others exact, the user's next digest, JSON shape, teardown */
	{ "undeliverable_digest", scn_undeliverable_digest, true, 5, WHOLE },
	/* scn_limits.c: each counts its teardown */
	{ "big_message", scn_big_message, true, 6, WHOLE },
	{ "dead_letter_fail", scn_dead_letter_fail, true, 5, WHOLE },
	{ "restart_floor", scn_restart_floor, true, 6, WHOLE },
	{ "wire_escape", scn_wire_escape, true, 5, WHOLE },
	/*
	 * scn_hostile.c: digests exact, dead-lettered with reasons, max_payload copies
	 * truncated, nothing else dead-lettered, counted, no stall, RSS bounded, JSON
	 * shape, teardown
	 */
	{ "hostile", scn_hostile, true, 9, WHOLE },
	/* scn_storage.c: each counts its teardown */
	{ "map_growth", scn_map_growth, true, 5, WHOLE },
	{ "disk_full", scn_disk_full, true, 8, WHOLE },
	{ "corrupt_store", scn_corrupt_store, true, 6, WHOLE },
	{ "stalled_worker", scn_stalled_worker, true, 8, WHOLE },
	{ "hung_worker", scn_hung_worker, true, 6, WHOLE },
	{ "spill_crash", scn_spill_crash, true, 8, WHOLE },
	/*
	 * scn_http.c: starting, bind taken, ready, methods and format, received,
	 * rejected, digests, $SRV ping/info/stats, parked, reload (unparks; listen
	 * needs a restart, so the old port serves on; counters kept), resharding,
	 * draining, teardown
	 */
	{ "http", scn_http, true, 15, WHOLE },
	/*
	 * scn_priv.c: master and workers as the user, state owned by it, the same
	 * after a reshard, digests exact, JSON shape, teardown; 7 refusals
	 */
	{ "priv_drop", scn_priv_drop, true, 7, WHOLE },
	{ "priv_refuse", scn_priv_refuse, true, 7, 0 },
	/* scn_security.c: round trip (+ no secret shown), teardown */
	{ "security_password", scn_security_password, true, 3, WHOLE },
	{ "security_token", scn_security_token, true, 2, WHOLE },
	{ "security_nkey", scn_security_nkey, true, 2, WHOLE },
	/* round trip, no secret shown, teardown */
	{ "security_creds", scn_security_creds, true, 3, WHOLE },
	/* a user JWT of an account the server does not know, a seed that is not the JWT's */
	{ "security_creds_bad", scn_security_creds_bad, true, 2, WHOLE },
	{ "security_tls", scn_security_tls, true, 2, WHOLE },
	/*
	 * wrong password, wrong CA, tls:// URL to an untrusted server, unreadable
	 * password and creds files
	 */
	{ "security_failures", scn_security_failures, true, 5, WHOLE },
	/* round trip, agents cannot read the deliver subject, $SRV.PING answered, teardown */
	{ "security_permissions", scn_security_permissions, true, 4, WHOLE },
	/*
	 * cluster mode under the same file: round trip with no violation, agents
	 * cannot read the partition stream or the partition deliver subjects, teardown
	 */
	{ "security_permissions_cluster", scn_security_permissions_cluster, true, 3, WHOLE },
	/* credentials revoked while running: logged as such, one retry, exit non-zero */
	{ "security_reconnect", scn_security_reconnect, true, 1, WHOLE },
	/* scn_ctl.c: list, reload, replay, applied, replay again, exactly once, bad reload, stop, teardown */
	{ "ctl", scn_ctl, true, 9, WHOLE },
	/* scn_ctl.c: user against the model, unknown user, text, stats, exactly once, teardown */
	{ "ctl_user", scn_ctl_user, true, 6, WHOLE },
	/* scn_daemon.c: READY after the consumer, RELOADING then READY, watchdog, STATUS, STOPPING, teardown */
	{ "sd_notify", scn_sd_notify, true, 6, WHOLE },
	/* make run's script with a nats-server without JetStream: says so, digest answered, stops its own */
	{ "first_run", scn_first_run, true, 3, WHOLE },
	/* systemd-analyze verify of dist/alarm-supervisor.service (a skip without systemd-analyze) */
	{ "unit_file", scn_unit_file, false, 1, WHOLE },
	/* scn_cluster.c, 3-node JetStream cluster: digests exact, JSON shape, teardown */
	{ "cluster_r3", scn_cluster_r3, true, 3, WHOLE },
	/* one node stopped and started under load: still up, digests exact, JSON shape, teardown */
	{ "cluster_node_restart", scn_cluster_node_restart, true, 4, WHOLE },
	/*
	 * cluster mode, 3 then 4 instances (scn_cluster.c): owned at start, title and
	 * metrics, alarmctl partitions, digests exact with 3, kill -9 takeover, join,
	 * leave, node restart, SIGSTOP takeover / no stale claim / rejoin, digests exact,
	 * no repeat after SIGCONT, single owner, always owned, JSON shape, teardown
	 */
	{ "cluster_partitions", scn_cluster_partitions, true, 17, WHOLE },
	/* scn_router.c, no service: setup, stop_start, fence, takeover, server_restart, exactly_once_in_order */
	{ "router", scn_router, false, 6, WHOLE },
	/* scn_worker.c, one worker driven frame by frame: replay, fence ahead, fenced, lifted, teardown */
	{ "worker_replay_fence", scn_worker_replay_fence, true, 5, WHOLE },
	/* the same on a 3-node cluster, R3, the partition stream's leader restarted: setup, restart, stream */
	{ "router_r3", scn_router_r3, false, 3, WHOLE },
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* The scenario `s` names, alone or as "scenario/case"; NULL if none. */
static const struct scenario *
scenario_of(const char *s)
{
	for (size_t i = 0; i < NSCENARIOS; i++) {
		size_t n = strlen(scenarios[i].name);

		if (strncmp(s, scenarios[i].name, n) == 0 && (s[n] == '\0' || s[n] == '/'))
			return &scenarios[i];
	}
	return NULL;
}

static bool
is_scenario_name(const char *s)
{
	return scenario_of(s) != NULL;
}

static int
add_only(const char *name)
{
	const struct scenario *s = scenario_of(name);

	if (s == NULL) {
		fprintf(stderr, "itest: unknown scenario \"%s\"; known:", name);
		for (size_t i = 0; i < NSCENARIOS; i++)
			fprintf(stderr, " %s", scenarios[i].name);
		fprintf(stderr, "\n");
		return -1;
	}
	if (s->fixed == WHOLE && strcmp(name, s->name) != 0) {
		fprintf(stderr, "itest: scenario %s has no cases to select (\"%s\")\n", s->name,
		    name);
		return -1;
	}
	/* Named twice runs once: count it once in the plan. */
	for (int i = 0; i < itest_opts.nonly; i++)
		if (strcmp(itest_opts.only[i], name) == 0)
			return 0;
	if (itest_opts.nonly == (int)(sizeof(itest_opts.only) / sizeof(itest_opts.only[0]))) {
		fprintf(stderr, "itest: too many scenarios selected\n");
		return -1;
	}
	itest_opts.only[itest_opts.nonly++] = name;
	return 0;
}

/*
 * Checks scenario s plans under the selection: all of them when it is
 * selected whole, its fixed ones plus one per named case, or none.  A
 * case name that matches nothing thus plans a check that never runs.
 */
static int
scenario_plan(const struct scenario *s)
{
	size_t slen = strlen(s->name);
	int cases = 0;

	if (itest_opts.nonly == 0)
		return s->checks;
	for (int i = 0; i < itest_opts.nonly; i++) {
		const char *o = itest_opts.only[i];

		if (strcmp(o, s->name) == 0)
			return s->checks;
		if (strncmp(o, s->name, slen) == 0 && o[slen] == '/')
			cases++;
	}
	return cases > 0 ? s->fixed + cases : 0;
}

/* ITEST_ONLY="a,b": names point into a static copy of the variable. */
static int
only_from_env(void)
{
	static char copy[1024];
	const char *env = getenv("ITEST_ONLY");

	if (env == NULL || env[0] == '\0')
		return 0;
	snprintf(copy, sizeof(copy), "%s", env);
	for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t != NULL;
	    t = strtok_r(NULL, ", ", &save))
		if (add_only(t) == -1)
			return -1;
	return 0;
}

static int
parse_args(int argc, char **argv)
{
	const char *env;
	int i = 1;

	itest_opts.bin = getenv("ALARM_SUPERVISOR");
	if (itest_opts.bin == NULL || itest_opts.bin[0] == '\0')
		itest_opts.bin = "build/plain/alarm-supervisor";
	/* The first argument is the binary unless it names a scenario. */
	if (argc > 1 && !is_scenario_name(argv[1]))
		itest_opts.bin = argv[i++];
	for (; i < argc; i++)
		if (add_only(argv[i]) == -1)
			return -1;
	if (only_from_env() == -1)
		return -1;
	env = getenv("ITEST_SCALE");
	itest_opts.scale = env != NULL ? strtod(env, NULL) : 1.0;
	if (!(itest_opts.scale > 0))
		itest_opts.scale = 1.0;
	env = getenv("ITEST_SEED");
	itest_opts.seed = env != NULL ? strtoull(env, NULL, 0) :
	    (uint64_t)harness_wall_sec() ^ ((uint64_t)getpid() << 32);
	return 0;
}

static void
run_scenario(const struct scenario *s, bool have_bin)
{
	int planned = scenario_plan(s), before = tap_count(), ran;
	int64_t t0;

	if (!itest_selected(s->name, NULL))
		return;
	printf("# scenario %s (%d checks planned)\n", s->name, planned);
	if (s->needs_service && !have_bin) {
		tap_fail(s->name, "supervisor binary %s is not executable (build it, or pass its "
		    "path as the first argument or in ALARM_SUPERVISOR)", itest_opts.bin);
		return;
	}
	t0 = harness_now_ms();
	s->run();
	printf("# scenario %s took %.1f s\n", s->name, (harness_now_ms() - t0) / 1000.0);
	/* Says which number to look at when the total is off. */
	if ((ran = tap_count() - before) != planned)
		printf("# scenario %s reported %d checks, planned %d (its row in the table of "
		    "tests/integration/itest.c)\n", s->name, ran, planned);
}

int
main(int argc, char **argv)
{
	const char *env = getenv("ITEST_TIMEOUT");
	int64_t timeout_s = env != NULL ? strtoll(env, NULL, 10) : 600;
	int planned = 0;
	bool have_bin;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(argc, argv) == -1)
		return 2;
	for (size_t i = 0; i < NSCENARIOS; i++)
		planned += scenario_plan(&scenarios[i]);
	tap_plan(planned);
	if (timeout_s <= 0)
		timeout_s = 600;
	if (harness_init(timeout_s * 1000, on_abort, on_stray) == -1) {
		fprintf(stderr, "itest: %s\n", harness_err());
		return 2;
	}
	have_bin = access(itest_opts.bin, X_OK) == 0;
	printf("# itest: supervisor %s, scale %.2f, seed %llu (ITEST_SEED to replay)\n",
	    itest_opts.bin, itest_opts.scale, (unsigned long long)itest_opts.seed);
	for (size_t i = 0; i < NSCENARIOS; i++)
		run_scenario(&scenarios[i], have_bin);
	harness_fini();
	/* Lets cnats' own threads end, so LeakSanitizer sees a clean exit. */
	nats_CloseAndWait(5000);
	return tap_finish("itest");
}
