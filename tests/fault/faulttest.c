/*
 * faulttest: fault-injection tests of alarm-supervisor against a real
 * nats-server (issue 3: nothing lost).
 *
 *   faulttest [SUPERVISOR_BINARY] [SCENARIO ...]
 *
 * The binary defaults to $ALARM_SUPERVISOR, then the alarm-supervisor of
 * the build this program belongs to (../alarm-supervisor next to
 * BUILD/tests/faulttest), then build/plain/alarm-supervisor.  Scenarios:
 * worker_kill9 supervisor_kill9 nats_restart down_while_publishing
 * reshard_under_load replay_requests (all by default).  FAULT_ONLY=a,b
 * selects too.  Knobs: FAULT_SCALE (traffic and
 * fault counts, default 1), FAULT_SEED, FAULT_TIMEOUT (global watchdog,
 * seconds, default 420), FAULT_KEEP=1 (keep every temp dir) or
 * FAULT_KEEP=fail (keep a failed scenario's), NATS_SERVER.
 *
 * scripts/check.sh (make check, make test) ignores the selecting and
 * scaling ones.
 *
 * Prints the plan "1..N" first (the checks the selected scenarios plan,
 * from the scenario table below), "# <scenario>: F faults, W updates
 * checked inside fault windows, M alarms checked", "ok N - name" / "not ok N - name: reason", and ends with
 * "faulttest: P passed, F failed (N planned)"; exits 0 only when F == 0 and
 * P == N > 0.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fault.h"

struct fault_opts fault_opts;

/* ---- options ---- */

int
fault_scaled(int n, int min)
{
	double v = n * fault_opts.scale;

	return v < min ? min : (int)v;
}

/* On the watchdog thread: tap_abort writes with write(2) only. */
static void
on_abort(const char *why)
{
	tap_abort("faulttest", why);
}

static void
on_stray(int sig, const char *who)
{
	tap_fail("faulttest/stray_signal", "signal %d (%s) sent to the test program by %s", sig,
	    strsignal(sig), who);
}

/* ---- scenarios ---- */

/*
 * The scenarios, each with the checks a passing run of it reports: the
 * plan.  A scenario reports `checks` plus `per_fault` for each fault it
 * injects, and injects fault_scaled(faults, faults_min) of them (the same
 * call as in fault_scn.c).  Add a check to a scenario, bump its number; a
 * run that reports another count fails, so a check that stops running
 * cannot go unnoticed.  Every scenario counts its teardown
 * (TAG/sigterm_teardown).
 */
static const struct scenario {
	const char *name;
	void (*run)(void);
	bool by_default;
	int checks;
	int per_fault;
	int faults, faults_min;
} scenarios[] = {
	/* Every scenario also reports window_updates_checked (fault_win.c). */
	/* all_workers_back, kills_landed_during_replay, mid_fault_digests, 3 of
	 * fault_finish, service_still_up, sigterm_teardown (a kill reports only a failure) */
	{ "worker_kill9", scn_worker_kill9, true, 9, 0, 0, 0 },
	/* kill_K_workers_exit + restart_K per kill; mid_fault_digests, 3 of fault_finish,
	 * sigterm_teardown */
	{ "supervisor_kill9", scn_supervisor_kill9, true, 6, 2, 4, 3 },
	/* restart_K per restart; mid_fault_digests, 3 of fault_finish, service_still_up,
	 * sigterm_teardown */
	{ "nats_restart", scn_nats_restart, true, 7, 1, 4, 2 },
	/* sigterm_K_exit_0 + restart_K per round; 3 of fault_finish, sigterm_teardown */
	{ "down_while_publishing", scn_down_while_publishing, true, 5, 2, 2, 2 },
	/* 3 worker-count changes, 3 of fault_finish, supervisor_kept_running,
	 * sigterm_teardown */
	{ "reshard_under_load", scn_reshard_under_load, true, 9, 0, 0, 0 },
	/* as supervisor_kill9 */
	{ "replay_requests", scn_replay_requests, true, 6, 2, 6, 3 },
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static bool
is_scenario(const char *s)
{
	for (size_t i = 0; i < NSCENARIOS; i++)
		if (strcmp(s, scenarios[i].name) == 0)
			return true;
	return false;
}

static int
add_only(const char *name)
{
	if (!is_scenario(name)) {
		fprintf(stderr, "faulttest: unknown scenario \"%s\"; known:", name);
		for (size_t i = 0; i < NSCENARIOS; i++)
			fprintf(stderr, " %s", scenarios[i].name);
		fprintf(stderr, "\n");
		return -1;
	}
	/* Named twice runs once. */
	for (int i = 0; i < fault_opts.nonly; i++)
		if (strcmp(fault_opts.only[i], name) == 0)
			return 0;
	if (fault_opts.nonly == FAULT_MAX_ONLY) {
		fprintf(stderr, "faulttest: too many scenarios selected\n");
		return -1;
	}
	fault_opts.only[fault_opts.nonly++] = name;
	return 0;
}

static bool
selected(const struct scenario *s)
{
	if (fault_opts.nonly == 0)
		return s->by_default;
	for (int i = 0; i < fault_opts.nonly; i++)
		if (strcmp(fault_opts.only[i], s->name) == 0)
			return true;
	return false;
}

/* Checks a selected scenario plans; 0 when it is not selected. */
static int
scenario_plan(const struct scenario *s)
{
	if (!selected(s))
		return 0;
	return s->checks + (s->per_fault > 0 ? s->per_fault * fault_scaled(s->faults,
	    s->faults_min) : 0);
}

/* The alarm-supervisor of our own build: BUILD/tests/faulttest -> BUILD/alarm-supervisor. */
static const char *
sibling_binary(const char *argv0)
{
	static char path[PATH_MAX];
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", argv0);
	if (strchr(copy, '/') == NULL)
		return NULL;
	if ((size_t)snprintf(path, sizeof(path), "%s/../alarm-supervisor", dirname(copy)) >=
	    sizeof(path) || access(path, X_OK) == -1)
		return NULL;
	return path;
}

static int
parse_args(int argc, char **argv)
{
	static char only_copy[1024];
	const char *env;
	int i = 1;

	fault_opts.bin = getenv("ALARM_SUPERVISOR");
	if (fault_opts.bin == NULL || fault_opts.bin[0] == '\0')
		fault_opts.bin = sibling_binary(argv[0]);
	if (fault_opts.bin == NULL)
		fault_opts.bin = "build/plain/alarm-supervisor";
	/* The first argument is the binary unless it names a scenario. */
	if (argc > 1 && !is_scenario(argv[1]))
		fault_opts.bin = argv[i++];
	for (; i < argc; i++)
		if (add_only(argv[i]) == -1)
			return -1;
	if ((env = getenv("FAULT_ONLY")) != NULL && env[0] != '\0') {
		snprintf(only_copy, sizeof(only_copy), "%s", env);
		for (char *save = NULL, *t = strtok_r(only_copy, ", ", &save); t != NULL;
		    t = strtok_r(NULL, ", ", &save))
			if (add_only(t) == -1)
				return -1;
	}
	env = getenv("FAULT_SCALE");
	fault_opts.scale = env != NULL ? strtod(env, NULL) : 1.0;
	if (!(fault_opts.scale > 0))
		fault_opts.scale = 1.0;
	env = getenv("FAULT_SEED");
	fault_opts.seed = env != NULL ? strtoull(env, NULL, 0) :
	    (uint64_t)harness_wall_sec() ^ ((uint64_t)getpid() << 32);
	env = getenv("FAULT_KEEP");
	if (env == NULL)
		env = getenv("ITEST_KEEP");
	fault_opts.keep = env != NULL && env[0] != '\0' && strcmp(env, "fail") != 0 &&
	    strcmp(env, "0") != 0;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *env = getenv("FAULT_TIMEOUT");
	int64_t timeout_s = env != NULL ? strtoll(env, NULL, 10) : 420, t_all;
	int planned = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(argc, argv) == -1)
		return 2;
	for (size_t i = 0; i < NSCENARIOS; i++)
		planned += scenario_plan(&scenarios[i]);
	tap_plan(planned);
	if (timeout_s <= 0)
		timeout_s = 420;
	if (harness_init(timeout_s * 1000, on_abort, on_stray) == -1) {
		fprintf(stderr, "faulttest: %s\n", harness_err());
		return 2;
	}
	printf("# faulttest: supervisor %s, scale %.2f, seed %llu (FAULT_SEED to replay)\n",
	    fault_opts.bin, fault_opts.scale, (unsigned long long)fault_opts.seed);
	t_all = harness_now_ms();
	if (access(fault_opts.bin, X_OK) == -1) {
		tap_fail("faulttest", "supervisor binary %s is not executable (build it, or pass its "
		    "path as the first argument or in ALARM_SUPERVISOR)", fault_opts.bin);
	} else {
		for (size_t i = 0; i < NSCENARIOS; i++) {
			const struct scenario *s = &scenarios[i];
			int planned_here = scenario_plan(s), before = tap_count(), ran;
			int64_t t0;

			if (!selected(s))
				continue;
			printf("# scenario %s (%d checks planned)\n", s->name, planned_here);
			t0 = harness_now_ms();
			s->run();
			printf("# scenario %s took %.1f s\n", s->name, (harness_now_ms() - t0) / 1000.0);
			/* Says which number to look at when the total is off. */
			if ((ran = tap_count() - before) != planned_here)
				printf("# scenario %s reported %d checks, planned %d (its row in the "
				    "table of tests/fault/faulttest.c)\n", s->name, ran, planned_here);
		}
	}
	harness_fini();
	/* Lets cnats' own threads end, so LeakSanitizer sees a clean exit. */
	nats_CloseAndWait(5000);
	printf("# faulttest took %.1f s\n", (harness_now_ms() - t_all) / 1000.0);
	return tap_finish("faulttest");
}
