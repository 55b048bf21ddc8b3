/*
 * bench: end-to-end benchmark of alarm-supervisor against the broker's own
 * ceiling, measured in the same run on the same messages.
 *
 *   bench --bin build/alarm-supervisor [-u USERS] [-a ALARMS] [-r ROUNDS] [-w WORKERS] ...
 *
 * It starts its own nats-server (JetStream, temp store) for every
 * measurement, and the real service (config in a temp dir), publishes
 * U x A x R status updates then one digest request per user with plain
 * core-NATS publishes, and checks every digest against the SPEC model of
 * tests/lib/model.h.  Figures are printed as "BENCH {json}" lines
 * and as a table; see docs/PERFORMANCE.md.  Exit status: 0 every digest
 * checked and exact, 1 a wrong, missing, extra or malformed digest in any
 * mode (core included: nothing the service says about itself excuses
 * one), 2 the benchmark could not run or could not measure (a ceiling
 * run that did not receive every message it published is never used as a
 * denominator).  Speed never fails a run.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "../tests/lib/bus.h"
#include "../tests/lib/harness.h"
#include "../tests/lib/model.h"
#include "lib/ceiling.h"
#include "lib/load.h"
#include "lib/pace.h"
#include "lib/procinfo.h"
#include "lib/pub.h"
#include "lib/scale.h"
#include "lib/sink.h"
#include "lib/svc.h"

#define MAX_WORKERS SVC_MAX_WORKERS
#define PHASE_BURST 0
#define PHASE_RATE 1
#define PHASE_SOAK_FILL 2
#define PHASE_SOAK 3

enum { EXIT_OK = 0, EXIT_WRONG = 1, EXIT_INFRA = 2 };

/*
 * Core intake is not durable: past its backlog cap (supervisor/intake.c,
 * INTAKE_CORE_PENDING_*: 2M messages, 512 MiB) the service drops by
 * design.  Core mode's burst is kept below it (the readiness probe's
 * messages included), so nothing is lost for a reason of the service's own
 * and every digest must be exact.
 */
#define CORE_MAX_MSGS 1999000
#define CORE_MAX_BYTES ((size_t)500 << 20)

/* ---- options ---- */

static struct {
	const char *bin;
	int users, alarms, rounds, workers;
	double dup;
	int rate_seconds;
	double rate_fraction;
	int req_every;
	bool mode_js, mode_core, ceilings;
	bool rate_js, rate_core;    /* which modes get the paced phase */
	int soak_seconds;
	double soak_rate;
	int ack_every;          /* ceiling (b): 1 = AckExplicit each, N = AckAll every N-th */
	int ceiling_runs;       /* best of this many */
	int stall_seconds;
	int timeout_seconds;
	uint64_t seed;
	bool keep;
	bool scaling;           /* the alarms-per-user and users tables */
	int scale_apu[SCALE_MAX_ROWS], n_scale_apu;
	int scale_users[SCALE_MAX_ROWS], n_scale_users;
	long scale_updates;
	int scale_rounds, scale_user_alarms;
} opt = {
	.users = 5000, .alarms = 10, .rounds = 10, .workers = 2, .dup = 0.05,
	.rate_seconds = 10, .rate_fraction = 0.5, .req_every = 100,
	.mode_js = true, .mode_core = true, .ceilings = true, .rate_js = true,
	.ack_every = 1000, .ceiling_runs = 1, .stall_seconds = 20, .seed = 1,
	.scaling = true,
	.scale_apu = { 10, 100, 1000, 10000 }, .n_scale_apu = 4,
	.scale_users = { 5000, 100000, 1000000 }, .n_scale_users = 3,
	.scale_updates = 600000, .scale_rounds = 10, .scale_user_alarms = 10,
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: bench --bin PATH/alarm-supervisor [options]\n"
	    "  -u, --users N             users (default 5000)\n"
	    "  -a, --alarms N            alarms per user (default 10)\n"
	    "  -r, --rounds N            status updates per alarm (default 10)\n"
	    "  -w, --workers N           service workers (default 2)\n"
	    "      --dup F               fraction of exact duplicates (default 0.05)\n"
	    "      --modes LIST          jetstream,core (default both; also: none)\n"
	    "      --no-ceilings         skip the broker ceilings\n"
	    "      --ceiling-ack N       ceiling (b) acks: 1 = AckExplicit each message,\n"
	    "                            N > 1 = AckAll every N-th (default 1000)\n"
	    "      --ceiling-runs N      measure each ceiling N times, keep the best (default 1)\n"
	    "      --rate-phase-seconds S  paced phase at a fraction of the durable peak (default 10; 0: skip)\n"
	    "      --rate-fraction F     that fraction (default 0.5)\n"
	    "      --rate-modes LIST     modes with a paced phase (default jetstream; core runs at\n"
	    "                            the same rate as jetstream when both run)\n"
	    "      --request-every N     paced phases: one digest request per N messages (default 100)\n"
	    "      --soak SECONDS        constant-state run sampling RSS every 5 s (default off)\n"
	    "      --soak-rate MSGS      its rate (default: the rate phase's, else 20000)\n"
	    "      --stall-seconds S     give up waiting when nothing moves for S s (default 20)\n"
	    "      --timeout S           global watchdog (default: sized from the options)\n"
	    "      --seed N              traffic seed (default 1)\n"
	    "      --scaling, --no-scaling  the two scaling tables (default on)\n"
	    "      --scale-alarms LIST   alarms-per-user rows, the first the reference\n"
	    "                            (default 10,100,1000,10000; none: skip the table)\n"
	    "      --scale-users LIST    users rows, seeded state (default 5000,100000,1000000;\n"
	    "                            none: skip the table)\n"
	    "      --scale-updates N     updates per row of both tables (default 600000)\n"
	    "      --scale-rounds N      alarms-per-user table: updates per alarm (default 10)\n"
	    "      --scale-user-alarms N users table: alarms per seeded user (default 10)\n"
	    "      --keep                keep temp dirs of the service runs\n"
	    "exit status: 0 every digest checked and exact; 1 a wrong, missing or extra digest\n"
	    "(core mode included); 2 could not run, or a ceiling run did not receive every\n"
	    "message it published.  Speed never fails a run.\n");
}

static long
num_arg(const char *name, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "bench: %s must be an integer in [%ld, %ld], not \"%s\"\n", name, min,
		    max, s);
		exit(EXIT_INFRA);
	}
	return v;
}

static double
real_arg(const char *name, const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, "bench: %s must be a number in [%g, %g], not \"%s\"\n", name, min, max, s);
		exit(EXIT_INFRA);
	}
	return v;
}

static void
parse_modes(const char *s, bool *js, bool *core)
{
	char buf[128], *save = NULL;

	*js = *core = false;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "jetstream") == 0 || strcmp(t, "durable") == 0)
			*js = true;
		else if (strcmp(t, "core") == 0)
			*core = true;
		else if (strcmp(t, "none") != 0) {
			fprintf(stderr, "bench: unknown mode \"%s\" (jetstream, core, none)\n", t);
			exit(EXIT_INFRA);
		}
	}
}

/* "10,100,1000" into v (at most SCALE_MAX_ROWS); "none" is no rows. */
static int
parse_rows(const char *name, const char *s, int *v, long max)
{
	char buf[256], *save = NULL;
	int n = 0;

	if (strcmp(s, "none") == 0)
		return 0;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (n == SCALE_MAX_ROWS) {
			fprintf(stderr, "bench: %s: at most %d rows, not \"%s\"\n", name, SCALE_MAX_ROWS, s);
			exit(EXIT_INFRA);
		}
		v[n++] = (int)num_arg(name, t, 1, max);
	}
	return n;
}

static void
parse_options(int argc, char **argv)
{
	enum { O_DUP = 256, O_MODES, O_RATE_MODES, O_NOCEIL, O_CACK, O_CRUNS, O_RATE_S, O_RATE_F, O_REQ_EVERY, O_SOAK,
		O_SOAK_RATE, O_STALL, O_TIMEOUT, O_SEED, O_KEEP, O_BIN, O_SCALING, O_NOSCALING,
		O_SC_APU, O_SC_USERS, O_SC_UPD, O_SC_ROUNDS, O_SC_UALARMS };
	static const struct option longopts[] = {
		{ "users", required_argument, NULL, 'u' },
		{ "alarms", required_argument, NULL, 'a' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "workers", required_argument, NULL, 'w' },
		{ "dup", required_argument, NULL, O_DUP },
		{ "modes", required_argument, NULL, O_MODES },
		{ "rate-modes", required_argument, NULL, O_RATE_MODES },
		{ "no-ceilings", no_argument, NULL, O_NOCEIL },
		{ "ceiling-ack", required_argument, NULL, O_CACK },
		{ "ceiling-runs", required_argument, NULL, O_CRUNS },
		{ "rate-phase-seconds", required_argument, NULL, O_RATE_S },
		{ "rate-fraction", required_argument, NULL, O_RATE_F },
		{ "request-every", required_argument, NULL, O_REQ_EVERY },
		{ "soak", required_argument, NULL, O_SOAK },
		{ "soak-rate", required_argument, NULL, O_SOAK_RATE },
		{ "stall-seconds", required_argument, NULL, O_STALL },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "seed", required_argument, NULL, O_SEED },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "bin", required_argument, NULL, O_BIN },
		{ "scaling", no_argument, NULL, O_SCALING },
		{ "no-scaling", no_argument, NULL, O_NOSCALING },
		{ "scale-alarms", required_argument, NULL, O_SC_APU },
		{ "scale-users", required_argument, NULL, O_SC_USERS },
		{ "scale-updates", required_argument, NULL, O_SC_UPD },
		{ "scale-rounds", required_argument, NULL, O_SC_ROUNDS },
		{ "scale-user-alarms", required_argument, NULL, O_SC_UALARMS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "u:a:r:w:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': opt.users = (int)num_arg("-u", optarg, 1, 10000000); break;
		case 'a': opt.alarms = (int)num_arg("-a", optarg, 1, 10000); break;
		case 'r': opt.rounds = (int)num_arg("-r", optarg, 1, 1000); break;
		case 'w': opt.workers = (int)num_arg("-w", optarg, 1, MAX_WORKERS); break;
		case O_DUP: opt.dup = real_arg("--dup", optarg, 0, 0.9); break;
		case O_MODES: parse_modes(optarg, &opt.mode_js, &opt.mode_core); break;
		case O_RATE_MODES: parse_modes(optarg, &opt.rate_js, &opt.rate_core); break;
		case O_NOCEIL: opt.ceilings = false; break;
		case O_CACK: opt.ack_every = (int)num_arg("--ceiling-ack", optarg, 1, 60000); break;
		case O_CRUNS: opt.ceiling_runs = (int)num_arg("--ceiling-runs", optarg, 1, 20); break;
		case O_RATE_S: opt.rate_seconds = (int)num_arg("--rate-phase-seconds", optarg, 0, 86400); break;
		case O_RATE_F: opt.rate_fraction = real_arg("--rate-fraction", optarg, 0.001, 1); break;
		case O_REQ_EVERY: opt.req_every = (int)num_arg("--request-every", optarg, 2, 1000000); break;
		case O_SOAK: opt.soak_seconds = (int)num_arg("--soak", optarg, 0, 7 * 86400); break;
		case O_SOAK_RATE: opt.soak_rate = real_arg("--soak-rate", optarg, 1, 1e8); break;
		case O_STALL: opt.stall_seconds = (int)num_arg("--stall-seconds", optarg, 1, 3600); break;
		case O_TIMEOUT: opt.timeout_seconds = (int)num_arg("--timeout", optarg, 10, 30 * 86400); break;
		case O_SEED: opt.seed = (uint64_t)num_arg("--seed", optarg, 0, 0x7fffffff); break;
		case O_KEEP: opt.keep = true; break;
		case O_BIN: opt.bin = optarg; break;
		case O_SCALING: opt.scaling = true; break;
		case O_NOSCALING: opt.scaling = false; break;
		case O_SC_APU:
			opt.n_scale_apu = parse_rows("--scale-alarms", optarg, opt.scale_apu, 100000);
			break;
		case O_SC_USERS:
			opt.n_scale_users = parse_rows("--scale-users", optarg, opt.scale_users, 10000000);
			break;
		case O_SC_UPD:
			opt.scale_updates = num_arg("--scale-updates", optarg, 1, 100000000);
			break;
		case O_SC_ROUNDS:
			opt.scale_rounds = (int)num_arg("--scale-rounds", optarg, 1, 1000);
			break;
		case O_SC_UALARMS:
			opt.scale_user_alarms = (int)num_arg("--scale-user-alarms", optarg, 1, 10000);
			break;
		case 'h': usage(stdout); exit(EXIT_OK);
		default: usage(stderr); exit(EXIT_INFRA);
		}
	}
	if (optind < argc && opt.bin == NULL)
		opt.bin = argv[optind++];
	if (optind < argc || opt.bin == NULL) {
		usage(stderr);
		exit(EXIT_INFRA);
	}
	if ((uint64_t)opt.users * (uint64_t)opt.alarms * (uint64_t)opt.rounds > 200000000ull) {
		fprintf(stderr, "bench: -u x -a x -r above 200M updates\n");
		exit(EXIT_INFRA);
	}
	for (int i = 0; i < opt.n_scale_users; i++)
		if ((uint64_t)opt.scale_users[i] * (uint64_t)opt.scale_user_alarms > 100000000ull) {
			fprintf(stderr, "bench: --scale-users x --scale-user-alarms above 100M alarms\n");
			exit(EXIT_INFRA);
		}
	if (opt.timeout_seconds == 0) {
		double updates = (double)opt.users * opt.alarms * opt.rounds;
		/* Generous: 10k msg/s for every measurement, plus the paced phases. */
		opt.timeout_seconds = 300 + (int)(updates / 10000.0 * 4) + 3 * opt.rate_seconds +
		    2 * opt.soak_seconds;
		/* Scaling rows: a minute each plus the burst at 2k msg/s, and seeding at 20k alarms/s. */
		if (opt.scaling) {
			opt.timeout_seconds += (opt.n_scale_apu + opt.n_scale_users) *
			    (60 + (int)(opt.scale_updates / 2000));
			for (int i = 0; i < opt.n_scale_users; i++)
				opt.timeout_seconds += (int)((double)opt.scale_users[i] *
				    opt.scale_user_alarms / 20000.0);
			/* The disk table after the users rows: 41,000 synced pages at 1,000 a second. */
			if (opt.n_scale_users > 0)
				opt.timeout_seconds += 60;
		}
	}
}

/* ---- small helpers ---- */

static double
secs(int64_t ns)
{
	return (double)ns / 1e9;
}

static void
json_lat(FILE *f, const char *key, const struct lat *l)
{
	fprintf(f, "\"%s\":{\"n\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}", key, l->n,
	    l->p50, l->p99, l->max);
}

static void
on_abort(const char *why)
{
	static const char pre[] = "\nbench: ABORTED: ";

	(void)!write(STDOUT_FILENO, pre, sizeof(pre) - 1);
	(void)!write(STDOUT_FILENO, why, strlen(why));
	(void)!write(STDOUT_FILENO, "\n", 1);
}

static void
on_stray(int sig, const char *who)
{
	static const char pre[] = "bench: ODD: a service process signalled the benchmark: ";
	const char *name = sig == SIGTERM ? "SIGTERM " : sig == SIGINT ? "SIGINT " : "SIGHUP ";

	(void)!write(STDOUT_FILENO, pre, sizeof(pre) - 1);
	(void)!write(STDOUT_FILENO, name, strlen(name));
	(void)!write(STDOUT_FILENO, who, strlen(who));
	(void)!write(STDOUT_FILENO, "\n", 1);
}

/*
 * How busy the CPUs are (0..1) over `ms`, from /proc/stat: other work on
 * the machine skews every figure, so it is measured before the run.
 */
static double
cpu_busy(int64_t ms)
{
	uint64_t b0, t0, b1, t1;

	if (procinfo_machine_ticks(&b0, &t0, NULL) == -1)
		return -1;
	harness_sleep_ms(ms);
	if (procinfo_machine_ticks(&b1, &t1, NULL) == -1 || t1 <= t0)
		return -1;
	return (double)(b1 - b0) / (double)(t1 - t0);
}

/* ---- progress lines: "# [  12.3 s] ..." ---- */

static int64_t run_start_ns;

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
step(const char *fmt, ...)
{
	va_list ap;

	printf("# [%6.1f s] ", secs(pub_now_ns() - run_start_ns));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ---- odd things seen, printed at the end ---- */

static char odd[32][512];
static int nodd;

static void note_odd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
note_odd(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (nodd < (int)(sizeof(odd) / sizeof(odd[0])))
		vsnprintf(odd[nodd++], sizeof(odd[0]), fmt, ap);
	va_end(ap);
	printf("# odd: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/*
 * A note on what a log scan found, with its first line in the note itself
 * (the summary at the end repeats notes only), then the other lines kept.
 */
static void __attribute__((format(printf, 2, 3)))
note_scan(const struct logscan *ls, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	note_odd("%s, the first: %s", what, ls->nfirst > 0 ? ls->first[0] : "(not kept)");
	for (int i = 1; i < ls->nfirst; i++)
		printf("#   %s\n", ls->first[i]);
}

/* ---- ceilings ---- */

/*
 * A ceiling is a denominator only when its run received every message it
 * published: a run the broker dropped from measured something else.  best
 * is the fastest complete run (best.ran false: there was none); short_run
 * the last incomplete one, reported and never used.  Any incomplete run
 * makes the benchmark exit 2, "could not measure".
 */
struct ceil_result {
	const char *name;
	struct ceiling best, short_run;
	int runs, incomplete;
};

static struct ceil_result ceil_core = { .name = "ceiling (a)" },
    ceil_js = { .name = "ceiling (b)" }, ceil_js_rate = { .name = "ceiling (b) paced" };

static struct ceiling_opts
ceiling_options(void)
{
	return (struct ceiling_opts){ .ack_every = opt.ack_every, .stall_seconds = opt.stall_seconds,
		.rate_seconds = opt.rate_seconds, .req_every = opt.req_every };
}

static void
ceiling_keep(struct ceil_result *cr, const struct ceiling *c)
{
	cr->runs++;
	if (!c->complete) {
		cr->incomplete++;
		cr->short_run = *c;
		step("%s: COULD NOT MEASURE: %zu of the %zu messages published arrived (dropped by the "
		    "subscriber's client library %" PRId64 ", disconnects %d, slow consumers in the "
		    "broker's log %d); this run is not used as a ceiling", cr->name, c->received,
		    c->sent, c->dropped, c->disconnects, c->broker_slow);
		return;
	}
	if (!cr->best.ran || c->rate > cr->best.rate)
		cr->best = *c;
}

static int
ceilings_incomplete(void)
{
	return ceil_core.incomplete + ceil_js.incomplete + ceil_js_rate.incomplete;
}

/* (a) and (b) on the burst, each the best of opt.ceiling_runs complete runs. */
static int
run_ceilings(const struct burst *b)
{
	struct ceiling_opts o = ceiling_options();

	for (int i = 0; i < opt.ceiling_runs; i++) {
		struct ceiling c = { 0 };

		step("ceiling (a): core publish -> subscriber, %zu messages", b->n);
		if (ceiling_core(b, &o, &c) == -1)
			return -1;
		ceiling_keep(&ceil_core, &c);
	}
	for (int i = 0; i < opt.ceiling_runs; i++) {
		struct ceiling c = { 0 };

		step("ceiling (b): core publish -> JetStream stream -> push consumer (%s), %zu messages",
		    opt.ack_every == 1 ? "AckExplicit, each acked" : "AckAll, every N-th acked", b->n);
		if (ceiling_js(b, &o, 0, &c) == -1)
			return -1;
		ceiling_keep(&ceil_js, &c);
	}
	return 0;
}

/* (b) paced at the rate of the durable paced phase: the broker's share of digest latency. */
static int
run_ceiling_rate(const struct burst *b, double rate)
{
	struct ceiling_opts o = ceiling_options();
	struct ceiling c = { 0 };

	step("ceiling (b) latency: the same, paced at %.0f msgs/s for %d s", rate, opt.rate_seconds);
	if (ceiling_js(b, &o, rate, &c) == -1)
		return -1;
	/* Latencies pair the k-th request delivered with the k-th published: all must arrive. */
	ceiling_keep(&ceil_js_rate, &c);
	return 0;
}

/* ---- RSS ---- */

struct rss_series {
	int64_t first, last, max;
	int samples;
};

static void
rss_add(struct rss_series *s, int64_t kib)
{
	if (kib < 0)
		return;
	if (s->samples++ == 0)
		s->first = kib;
	s->last = kib;
	if (kib > s->max)
		s->max = kib;
}

/* ---- one mode ---- */

struct mode_result {
	const char *mode;
	bool ran, complete, core;
	bool verified, correct;           /* every digest was checked; all matched exactly */
	size_t msgs;                      /* burst: updates + requests */
	int probe_msgs;                   /* published by the readiness probe */
	size_t expected, received;
	double seconds, rate, pub_seconds;
	struct lat lat;
	int64_t rss_master, rss_workers[MAX_WORKERS], rss_nats;
	int nworkers;
	double state_title, state_du, state_du_apparent;
	int64_t disk_svc, disk_nats;      /* bytes written to storage during the burst */
	int64_t master_in;                /* the service's own count (title in=): shown, never judged by */
	int broker_slow;                  /* "Slow Consumer Detected" lines in the broker's own log */
	uint64_t stream_msgs;
	bool have_stream;
	struct feed_stats feed;
	struct verify v;
	bool have_rate;
	struct paced rate_phase;
	struct lat rate_lat;
	double rate_drain_ms;
	struct logscan log, nlog;
	int restarts;
	char exit_status[128];
	int64_t sink_dropped;
	int pub_disconnects, sink_disconnects;
};

static struct mode_result res_js = { .mode = "jetstream" }, res_core = { .mode = "core", .core = true };

/* Peak RSS, disk writes and state size after the burst (the processes started with the mode). */
static void
measure_footprint(struct svc_run *r, struct mode_result *m, size_t nalarms)
{
	char title[4096];
	uint64_t alloc = 0, apparent = 0;
	double bytes = 0;
	int64_t alarms = 0;

	m->rss_master = procinfo_status_kib(r->svc.proc.pid, "VmHWM:");
	m->rss_nats = procinfo_status_kib(r->nats.proc.pid, "VmHWM:");
	m->disk_svc = procinfo_write_bytes(r->svc.proc.pid);
	m->disk_nats = procinfo_write_bytes(r->nats.proc.pid);
	m->nworkers = r->nw;
	for (int i = 0; i < r->nw; i++) {
		int64_t wb = procinfo_write_bytes(r->w[i].pid);

		if (wb > 0 && m->disk_svc >= 0)
			m->disk_svc += wb;
		m->rss_workers[i] = procinfo_status_kib(r->w[i].pid, "VmHWM:");
		if (!procinfo_title(r->w[i].pid, title, sizeof(title)))
			continue;
		int64_t a = procinfo_title_u64(title, "alarms="), b = procinfo_title_u64(title, "state=");
		if (a > 0 && b >= 0) {
			bytes += (double)b * (double)a;
			alarms += a;
		}
	}
	m->state_title = alarms > 0 ? bytes / (double)alarms : -1;
	if (procinfo_du(r->state, &alloc, &apparent) == 0 && nalarms > 0) {
		m->state_du = (double)alloc / (double)nalarms;
		m->state_du_apparent = (double)apparent / (double)nalarms;
	} else {
		m->state_du = m->state_du_apparent = -1;
	}
}

static void
check_restarts(struct svc_run *r, struct mode_result *m)
{
	struct harness_worker now[MAX_WORKERS];
	int n = harness_workers(r->svc.proc.pid, now, MAX_WORKERS);

	for (int i = 0; i < r->nw; i++) {
		bool same = false;

		for (int j = 0; j < n; j++)
			same = same || (now[j].pid == r->w[i].pid);
		if (!same)
			m->restarts++;
	}
	if (m->restarts > 0)
		note_odd("%s: %d worker(s) were replaced during the run (crash or restart)", m->mode,
		    m->restarts);
}

static void
print_verify(const char *mode, const struct verify *v)
{
	printf("# %s: digests expected %zu, received %zu, matched %zu, missing %zu, extra %zu, "
	    "different %zu, malformed %zu, unknown user %zu, users wrong %zu\n", mode, v->expected,
	    v->digests, v->matched, v->missing, v->extra, v->differ, v->malformed, v->unknown_user,
	    v->users_bad);
	for (int i = 0; i < v->nfirst; i++)
		printf("#   %s\n", v->first[i]);
}

static int
run_mode(struct load *L, struct burst *b, struct mode_result *m)
{
	size_t nalarms = (size_t)L->users * (size_t)L->alarms;
	struct svc_run r;
	struct svc_counts counts;
	struct logscan slow;
	int64_t t0, tpub;
	size_t have;
	int rc = -1;

	step("%s mode: starting nats-server and alarm-supervisor (%d workers)", m->mode,
	    opt.workers);
	m->ran = true;
	if (svc_start(&r, opt.bin, m->core ? "bench-core" : "bench-js", m->core, opt.workers,
	    opt.stall_seconds, NULL, NULL) == -1)
		goto out;
	load_reset(L, (uint32_t)opt.rounds);
	if (load_feed(L, b, r.model, &m->feed) == -1)
		goto out;
	m->msgs = b->n;
	m->expected = m->feed.digests;
	step("%s mode: publishing %zu messages", m->mode, b->n);
	if (pub_burst(r.pub, b, L, PHASE_BURST, &t0, &tpub) == -1)
		goto out;
	m->pub_seconds = secs(tpub - t0);
	have = svc_wait_digests(&r, m->expected);
	m->received = have;
	m->complete = have >= m->expected;
	m->seconds = have > 0 ? secs(dsink_arrival_ns(r.sink, have) - t0) : 0;
	m->rate = m->seconds > 0 ? (double)m->msgs / m->seconds : 0;
	if (!m->complete)
		step("%s mode: %zu of %zu digests arrived; nothing moved for %d s", m->mode, have,
		    m->expected, opt.stall_seconds);
	/* Titles refresh once a second. */
	harness_sleep_ms(1100);
	measure_footprint(&r, m, nalarms);
	svc_counts(&r, &counts);
	m->master_in = counts.master_in;
	m->probe_msgs = r.probe_msgs;
	if (!m->core) {
		struct bus *bb = bus_open(r.nats.url, false);
		uint64_t last;

		if (bb != NULL && bus_stream_state(bb, "ALARMS", &m->stream_msgs, &last) == 0)
			m->have_stream = true;
		bus_close(bb);
	}

	/* Phase 2: paced at a fraction of the measured durable peak (core: the same rate). */
	if ((m->core ? opt.rate_core : opt.rate_js) && opt.rate_seconds > 0 && m->complete &&
	    m->rate > 0) {
		double rate = (res_js.rate > 0 ? res_js.rate : m->rate) * opt.rate_fraction;

		step("%s mode: paced phase at %.0f msgs/s for %d s", m->mode, rate, opt.rate_seconds);
		if (svc_paced(&r, L, rate, opt.rate_seconds, opt.req_every, PHASE_RATE, NULL, NULL,
		    &m->rate_phase) == -1)
			goto out;
		m->have_rate = true;
		if (m->rate_phase.achieved_rate < 0.95 * rate || m->rate_phase.max_lag_ms > 100)
			note_odd("%s: the paced phase fell behind its schedule (%.0f of %.0f msgs/s, the "
			    "publisher up to %.0f ms late): the rate was not sustained on this machine",
			    m->mode, m->rate_phase.achieved_rate, rate, m->rate_phase.max_lag_ms);
		size_t want = model_expected_total(r.model);
		have = svc_wait_digests(&r, want);
		if (have >= want)
			m->rate_drain_ms = (double)(dsink_arrival_ns(r.sink, have) - m->rate_phase.last_ns) / 1e6;
		else
			m->complete = false;
	}
	/* Late extras (duplicates) would show up here. */
	harness_sleep_ms(300);
	check_restarts(&r, m);
	m->sink_dropped = dsink_dropped(r.sink);
	m->sink_disconnects = dsink_disconnects(r.sink);
	m->pub_disconnects = atomic_load(&r.pub_ev.disconnects);
	if (sink_verify(r.sink, L, r.model, &m->v) == -1)
		goto out;
	m->verified = true;
	m->correct = verify_ok(&m->v);
	m->lat = lat_summary(m->v.lat[PHASE_BURST], m->v.nlat[PHASE_BURST]);
	m->rate_lat = lat_summary(m->v.lat[PHASE_RATE], m->v.nlat[PHASE_RATE]);
	print_verify(m->mode, &m->v);
	if (m->sink_dropped > 0 || m->sink_disconnects > 0)
		note_odd("%s: the benchmark's digest subscriber dropped %" PRId64 " and was disconnected %d times",
		    m->mode, m->sink_dropped, m->sink_disconnects);
	rc = 0;
out:
	if (rc == -1)
		step("%s mode: FAILED TO RUN: %s", m->mode, harness_err());
	if (r.died)
		note_odd("%s: the supervisor exited while digests were awaited", m->mode);
	svc_scan_log(r.svc.log, ": error: ", ": warn: ", &m->log);
	svc_scan_log(r.nats.log, "[ERR]", "[WRN]", &m->nlog);
	svc_scan_log(r.nats.log, "Slow Consumer Detected", NULL, &slow);
	m->broker_slow = slow.error;
	if (rc == -1 && r.svc.log[0] != '\0')
		harness_dump_tail("service log", r.svc.log, 30);
	svc_stop(&r, opt.keep, m->exit_status, sizeof(m->exit_status));
	if (strcmp(m->exit_status, "exit 0") != 0)
		note_odd("%s: the supervisor ended with %s after SIGTERM", m->mode, m->exit_status);
	if (m->log.error + m->log.warn > 0)
		note_scan(&m->log, "%s: service log has %d error and %d warn lines", m->mode,
		    m->log.error, m->log.warn);
	if (m->nlog.error + m->nlog.warn > 0)
		note_scan(&m->nlog, "%s: nats-server log has %d [ERR] and %d [WRN] lines", m->mode,
		    m->nlog.error, m->nlog.warn);
	if (m->broker_slow > 0)
		note_scan(&slow, "%s: nats-server's log reports %d slow consumer(s): the broker dropped "
		    "messages to a subscriber", m->mode, m->broker_slow);
	return rc;
}

/* ---- soak ---- */

/* One sample, every 5 s: RSS now, CPU ticks so far. */
struct soak_point {
	int64_t ns;
	int64_t master, workers[MAX_WORKERS], nats;          /* VmRSS KiB */
	int64_t cpu_svc, cpu_nats, cpu_self;                 /* ticks */
	int64_t disk_svc, disk_nats;                         /* bytes written */
	uint64_t busy, total, steal;                         /* machine ticks */
};

struct soak_result {
	bool ran, verified, correct;
	double rate, seconds;
	struct rss_series master, workers[MAX_WORKERS], nats;
	int nworkers;
	struct lat lat;
	double worst_window_p99;
	struct verify v;
	struct soak_point *pt;
	size_t npt, cappt;
	char exit_status[128];
};

static struct soak_result soak;

static void
soak_sample(struct svc_run *r, void *arg)
{
	struct soak_result *s = arg;
	struct soak_point p = { .ns = pub_now_ns() };

	p.master = procinfo_status_kib(r->svc.proc.pid, "VmRSS:");
	p.nats = procinfo_status_kib(r->nats.proc.pid, "VmRSS:");
	p.cpu_svc = procinfo_cpu_ticks(r->svc.proc.pid);
	p.cpu_nats = procinfo_cpu_ticks(r->nats.proc.pid);
	p.cpu_self = procinfo_cpu_ticks(getpid());
	p.disk_svc = procinfo_write_bytes(r->svc.proc.pid);
	p.disk_nats = procinfo_write_bytes(r->nats.proc.pid);
	rss_add(&s->master, p.master);
	rss_add(&s->nats, p.nats);
	for (int i = 0; i < r->nw; i++) {
		p.workers[i] = procinfo_status_kib(r->w[i].pid, "VmRSS:");
		p.cpu_svc += procinfo_cpu_ticks(r->w[i].pid);
		p.disk_svc += procinfo_write_bytes(r->w[i].pid);
		rss_add(&s->workers[i], p.workers[i]);
	}
	s->nworkers = r->nw;
	(void)procinfo_machine_ticks(&p.busy, &p.total, &p.steal);
	if (s->npt == s->cappt) {
		size_t ncap = s->cappt ? s->cappt * 2 : 64;
		struct soak_point *np = realloc(s->pt, ncap * sizeof(*np));

		if (np == NULL)
			return;
		s->pt = np;
		s->cappt = ncap;
	}
	s->pt[s->npt++] = p;
}

/*
 * One line per 5 s window: RSS at its end; CPU of the service (master and
 * workers), nats-server, the benchmark and everything else, as a share of
 * the whole machine; digest latency of the requests published in it.
 */
static void
soak_windows(const struct verify *v)
{
	const int64_t *at = v->lat_at[PHASE_SOAK], *lat = v->lat[PHASE_SOAK];
	size_t n = v->nlat[PHASE_SOAK];
	int64_t *tmp = malloc((n ? n : 1) * sizeof(*tmp));

	printf("# soak windows:    t   master  workers...      nats MiB |   svc  nats bench steal other CPU%% |"
	    "  svc  nats MB/s |  digests   p50 ms   p99 ms\n");
	for (size_t i = 1; i < soak.npt && tmp != NULL; i++) {
		const struct soak_point *a = &soak.pt[i - 1], *b = &soak.pt[i];
		double dt = (double)(b->total - a->total);
		size_t k = 0;

		/* The closing sample right after a periodic one adds nothing. */
		if (b->ns - a->ns < 1000000000)
			continue;

		for (size_t j = 0; j < n; j++)
			if (at[j] >= a->ns && at[j] < b->ns)
				tmp[k++] = lat[j];
		struct lat l = lat_summary(tmp, k);
		if (k > 0 && l.p99 > soak.worst_window_p99)
			soak.worst_window_p99 = l.p99;
		double svc = dt > 0 ? 100.0 * (double)(b->cpu_svc - a->cpu_svc) / dt : 0;
		double nats = dt > 0 ? 100.0 * (double)(b->cpu_nats - a->cpu_nats) / dt : 0;
		double self = dt > 0 ? 100.0 * (double)(b->cpu_self - a->cpu_self) / dt : 0;
		double busy = dt > 0 ? 100.0 * (double)(b->busy - a->busy) / dt : 0;
		double steal = dt > 0 ? 100.0 * (double)(b->steal - a->steal) / dt : 0;
		double other = busy - steal - svc - nats - self;

		printf("# soak windows: %4.0f %8.1f", secs(b->ns - soak.pt[0].ns), b->master / 1024.0);
		for (int w = 0; w < soak.nworkers; w++)
			printf(" %7.1f", b->workers[w] / 1024.0);
		double secs_w = secs(b->ns - a->ns);

		printf(" %9.1f | %5.0f %5.0f %5.0f %5.0f %5.0f      | %5.1f %5.1f      | %8zu %8.2f %8.2f\n",
		    b->nats / 1024.0, svc, nats, self, steal, other < 0 ? 0 : other,
		    (double)(b->disk_svc - a->disk_svc) / 1e6 / secs_w,
		    (double)(b->disk_nats - a->disk_nats) / 1e6 / secs_w, k, l.p50, l.p99);
	}
	free(tmp);
}

static int
run_soak(struct load *L, double rate)
{
	struct svc_run r;
	struct burst fill = { 0 };
	struct feed_stats fs;
	struct paced p;
	int64_t t0, tpub;
	int rc = -1;

	soak.ran = true;
	soak.rate = rate;
	step("soak: %d users x %d alarms, %.0f msgs/s for %d s, RSS sampled every 5 s",
	    L->users, L->alarms, rate, opt.soak_seconds);
	if (svc_start(&r, opt.bin, "bench-soak", false, opt.workers, opt.stall_seconds, NULL,
	    NULL) == -1)
		goto out;
	/* Every alarm once, so the state is at its full size before sampling starts. */
	if (load_burst(L, &fill, 1, true) == -1)
		goto out;
	load_reset(L, 1);
	if (load_feed(L, &fill, r.model, &fs) == -1 ||
	    pub_burst(r.pub, &fill, L, PHASE_SOAK_FILL, &t0, &tpub) == -1)
		goto out;
	if (svc_wait_digests(&r, fs.digests) < fs.digests) {
		harness_seterr("soak: the state fill did not complete");
		goto out;
	}
	if (svc_paced(&r, L, rate, opt.soak_seconds, opt.req_every, PHASE_SOAK, soak_sample, &soak,
	    &p) == -1)
		goto out;
	soak.seconds = p.seconds;
	size_t want = model_expected_total(r.model);
	(void)svc_wait_digests(&r, want);
	harness_sleep_ms(300);
	if (sink_verify(r.sink, L, r.model, &soak.v) == -1)
		goto out;
	soak.verified = true;
	soak.correct = verify_ok(&soak.v);
	soak_windows(&soak.v);
	soak.lat = lat_summary(soak.v.lat[PHASE_SOAK], soak.v.nlat[PHASE_SOAK]);
	print_verify("soak", &soak.v);
	rc = 0;
out:
	if (rc == -1)
		step("soak: FAILED TO RUN: %s", harness_err());
	if (r.died)
		note_odd("soak: the supervisor exited while digests were awaited");
	burst_free(&fill);
	svc_stop(&r, opt.keep, soak.exit_status, sizeof(soak.exit_status));
	return rc;
}

/* ---- report ---- */

/*
 * A run's digests are exact, or the run fails with the first differences.
 * Nothing the service reports about itself excuses a difference; the
 * broker's own slow-consumer count is shown as a likely cause, no more.
 */
static bool
verdict(const char *what, bool verified, bool correct, const struct verify *v, int broker_slow)
{
	if (!verified || correct)
		return true;
	printf("bench: FAIL: %s: digests differ from the SPEC model: expected %zu, received %zu, "
	    "exact %zu, missing %zu, extra %zu, different %zu, malformed %zu, unknown user %zu; "
	    "first differences:\n", what, v->expected, v->digests, v->matched, v->missing, v->extra,
	    v->differ, v->malformed, v->unknown_user);
	for (int i = 0; i < v->nfirst; i++)
		printf("bench:   %s\n", v->first[i]);
	if (broker_slow > 0)
		printf("bench:   nats-server's log reports %d slow consumer(s) during %s: the broker "
		    "dropped messages under this load; that may explain it, but it is still a "
		    "failure (make the load smaller so it is lossless)\n", broker_slow, what);
	return false;
}

/* One line per ceiling used; an incomplete run gets its own line with no rate. */
static void
json_ceiling(const char *name, const struct ceil_result *cr, const char *what)
{
	const struct ceiling *c = &cr->best;

	if (cr->runs == 0)
		return;
	if (c->ran)
		printf("BENCH {\"kind\":\"ceiling\",\"name\":\"%s\",\"what\":\"%s\",\"msgs\":%zu,"
		    "\"received\":%zu,\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"complete\":true,"
		    "\"client_dropped\":%" PRId64 ",\"disconnects\":%d,\"broker_slow_consumers\":%d,"
		    "\"best_of\":%d}\n", name, what, c->sent, c->received, c->seconds, c->rate, c->dropped,
		    c->disconnects, c->broker_slow, cr->runs - cr->incomplete);
	if (cr->incomplete == 0)
		return;
	c = &cr->short_run;
	printf("BENCH {\"kind\":\"ceiling\",\"name\":\"%s\",\"what\":\"%s\",\"msgs\":%zu,"
	    "\"received\":%zu,\"msgs_per_s\":null,\"complete\":false,\"client_dropped\":%" PRId64
	    ",\"disconnects\":%d,\"broker_slow_consumers\":%d,\"incomplete_runs\":%d}\n", name, what,
	    c->sent, c->received, c->dropped, c->disconnects, c->broker_slow, cr->incomplete);
}

/* The paced broker-only run: its latencies only when every message arrived. */
static void
json_ceiling_rate(const struct ceil_result *cr)
{
	const struct ceiling *c = cr->best.ran ? &cr->best : &cr->short_run;

	if (cr->runs == 0)
		return;
	printf("BENCH {\"kind\":\"ceiling_rate\",\"name\":\"jetstream_broker\","
	    "\"target_msgs_per_s\":%.0f,\"achieved_msgs_per_s\":%.0f,\"seconds\":%.3f,"
	    "\"publisher_max_lag_ms\":%.1f,\"msgs\":%zu,\"received\":%zu,\"complete\":%s,",
	    c->paced.target_rate, c->paced.achieved_rate, c->paced.seconds, c->paced.max_lag_ms,
	    c->sent, c->received, c->complete ? "true" : "false");
	if (c->complete)
		json_lat(stdout, "latency", &c->lat);
	else
		printf("\"latency\":null,\"broker_slow_consumers\":%d", c->broker_slow);
	printf("}\n");
}

static void
json_mode(const struct mode_result *m, const struct ceiling *c, const char *cname)
{
	printf("BENCH {\"kind\":\"mode\",\"mode\":\"%s\",\"workers\":%d,\"users\":%d,\"alarms\":%d,"
	    "\"rounds\":%d,\"dup\":%.3f,\"msgs\":%zu,\"seconds\":%.3f,\"msgs_per_s\":%.0f,"
	    "\"publish_seconds\":%.3f,\"ceiling\":\"%s\",\"ratio\":%.3f,",
	    m->mode, opt.workers, opt.users, opt.alarms, opt.rounds, opt.dup, m->msgs, m->seconds,
	    m->rate, m->pub_seconds, cname, c->ran && c->complete && c->rate > 0 ? m->rate / c->rate : 0);
	json_lat(stdout, "latency", &m->lat);
	printf(",\"rss_kib\":{\"master\":%" PRId64 ",\"workers\":[", m->rss_master);
	for (int i = 0; i < m->nworkers; i++)
		printf("%s%" PRId64, i ? "," : "", m->rss_workers[i]);
	printf("],\"nats_server\":%" PRId64 "},", m->rss_nats);
	printf("\"state_bytes_per_alarm\":{\"title\":%.1f,\"du\":%.1f,\"apparent\":%.1f},",
	    m->state_title, m->state_du, m->state_du_apparent);
	printf("\"disk_write_bytes\":{\"service\":%" PRId64 ",\"nats_server\":%" PRId64
	    ",\"service_per_msg\":%.0f,\"nats_server_per_msg\":%.0f},", m->disk_svc, m->disk_nats,
	    m->msgs ? (double)m->disk_svc / (double)m->msgs : 0,
	    m->msgs ? (double)m->disk_nats / (double)m->msgs : 0);
	printf("\"stale\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"less_severe\":%" PRIu64 ",",
	    m->feed.stale, m->feed.duplicate, m->feed.less_severe);
	printf("\"digests_expected\":%zu,\"digests_received\":%zu,\"matched\":%zu,\"missing\":%zu,"
	    "\"extra\":%zu,\"different\":%zu,\"malformed\":%zu,\"correct\":%s,",
	    m->v.expected, m->v.digests, m->v.matched, m->v.missing, m->v.extra, m->v.differ,
	    m->v.malformed, m->correct ? "true" : "false");
	printf("\"service_received\":%" PRId64 ",\"broker_slow_consumers\":%d,", m->master_in,
	    m->broker_slow);
	if (m->have_stream)
		printf("\"stream_msgs\":%" PRIu64 ",", m->stream_msgs);
	printf("\"log_errors\":%d,\"log_warnings\":%d,\"worker_restarts\":%d,\"exit\":\"%s\"}\n",
	    m->log.error, m->log.warn, m->restarts, m->exit_status);
	if (m->have_rate) {
		printf("BENCH {\"kind\":\"rate\",\"mode\":\"%s\",\"fraction\":%.2f,\"target_msgs_per_s\":%.0f,"
		    "\"achieved_msgs_per_s\":%.0f,\"seconds\":%.3f,\"msgs\":%zu,\"requests\":%zu,"
		    "\"publisher_max_lag_ms\":%.1f,\"drain_ms\":%.1f,", m->mode, opt.rate_fraction,
		    m->rate_phase.target_rate, m->rate_phase.achieved_rate, m->rate_phase.seconds,
		    m->rate_phase.msgs, m->rate_phase.requests, m->rate_phase.max_lag_ms, m->rate_drain_ms);
		json_lat(stdout, "latency", &m->rate_lat);
		printf(",\"correct\":%s}\n", m->correct ? "true" : "false");
	}
}

static void
json_soak(void)
{
	printf("BENCH {\"kind\":\"soak\",\"msgs_per_s\":%.0f,\"seconds\":%.1f,\"users\":%d,\"alarms\":%d,",
	    soak.rate, soak.seconds, opt.users, opt.alarms);
	printf("\"rss_kib\":{\"master\":[%" PRId64 ",%" PRId64 ",%" PRId64 "],", soak.master.first,
	    soak.master.last, soak.master.max);
	for (int i = 0; i < soak.nworkers; i++)
		printf("\"worker%d\":[%" PRId64 ",%" PRId64 ",%" PRId64 "],", i, soak.workers[i].first,
		    soak.workers[i].last, soak.workers[i].max);
	printf("\"nats_server\":[%" PRId64 ",%" PRId64 ",%" PRId64 "]},\"samples\":%d,",
	    soak.nats.first, soak.nats.last, soak.nats.max, soak.master.samples);
	json_lat(stdout, "latency", &soak.lat);
	printf(",\"worst_window_p99_ms\":%.3f,\"correct\":%s}\n", soak.worst_window_p99,
	    soak.correct ? "true" : "false");
}

static void
human_rate(char *buf, size_t cap, double v)
{
	if (v >= 1e6)
		snprintf(buf, cap, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, cap, "%.1fk", v / 1e3);
	else
		snprintf(buf, cap, "%.0f", v);
}

static void
table_mode(const struct mode_result *m, const struct ceiling *c)
{
	char r[32], ratio[16];

	if (!m->ran)
		return;
	human_rate(r, sizeof(r), m->rate);
	if (c->ran && c->complete && c->rate > 0)
		snprintf(ratio, sizeof(ratio), "%5.0f%%", 100 * m->rate / c->rate);
	else
		snprintf(ratio, sizeof(ratio), "%6s", "-");
	printf("%-30s %10s/s %s  %9.1f %9.1f %9.1f  %s\n",
	    !m->core ? "jetstream (durable) e2e" : "core e2e", r, ratio, m->lat.p50, m->lat.p99, m->lat.max,
	    !m->verified ? "not checked" : m->correct ? "correct" : "WRONG");
	if (m->have_rate) {
		char label[64];

		snprintf(label, sizeof(label), "  paced at %.0f%% of durable peak", opt.rate_fraction * 100);
		human_rate(r, sizeof(r), m->rate_phase.achieved_rate);
		printf("%-30s %10s/s %6s  %9.2f %9.2f %9.2f  (%zu timed requests)\n",
		    label, r, "", m->rate_lat.p50, m->rate_lat.p99, m->rate_lat.max,
		    m->rate_lat.n);
	}
}

static void
table_ceiling(const char *name, const struct ceil_result *cr)
{
	char r[32];

	if (cr->best.ran) {
		human_rate(r, sizeof(r), cr->best.rate);
		printf("%-30s %10s/s\n", name, r);
	}
	if (cr->incomplete > 0)
		printf("%-30s %12s %6s  COULD NOT MEASURE: %d of %d runs incomplete (last: %zu of %zu "
		    "messages arrived); not used\n", cr->best.ran ? "" : name, "-", "", cr->incomplete,
		    cr->runs, cr->short_run.received, cr->short_run.sent);
}

static void
table_ceiling_rate(const struct ceil_result *cr)
{
	const struct ceiling *c = &cr->best;
	char r[32];

	if (c->ran && c->lat.n > 0) {
		human_rate(r, sizeof(r), c->paced.achieved_rate);
		printf("%-30s %10s/s %6s  %9.2f %9.2f %9.2f  (publish -> delivery, %zu timed)\n",
		    "  paced, broker only", r, "", c->lat.p50, c->lat.p99, c->lat.max, c->lat.n);
	}
	if (cr->incomplete > 0)
		printf("%-30s %12s %6s  COULD NOT MEASURE: %zu of %zu messages arrived; no latency "
		    "shown\n", "  paced, broker only", "-", "", cr->short_run.received, cr->short_run.sent);
}

static void
table_footprint(const struct mode_result *m)
{
	if (!m->ran)
		return;
	printf("%-10s master %7.1f MiB, workers", m->mode, (double)m->rss_master / 1024);
	for (int i = 0; i < m->nworkers; i++)
		printf(" %7.1f", (double)m->rss_workers[i] / 1024);
	printf(" MiB, nats-server %7.1f MiB;  state %.1f B/alarm (title), %.1f B/alarm on disk (du)\n",
	    (double)m->rss_nats / 1024, m->state_title, m->state_du);
	if (m->msgs > 0)
		printf("%-10s disk writes during the burst: service %.1f MB (%.0f B/msg), nats-server "
		    "%.1f MB (%.0f B/msg)\n", "", (double)m->disk_svc / 1e6,
		    (double)m->disk_svc / (double)m->msgs, (double)m->disk_nats / 1e6,
		    (double)m->disk_nats / (double)m->msgs);
	if (m->core)
		printf("%-10s the service counts %" PRId64 " received of %zu published + %d probe (its "
		    "title's in=, not used to judge); nats-server's log: %d slow consumer(s)\n", "",
		    m->master_in, m->msgs, m->probe_msgs, m->broker_slow);
}

/* ---- scaling tables and targets ---- */

static struct scale_result scale;
static bool scale_ran;

static struct scale_opts
scale_options(void)
{
	struct scale_opts o = {
		.bin = opt.bin, .workers = opt.workers, .stall_seconds = opt.stall_seconds,
		.dup = opt.dup, .seed = opt.seed, .keep = opt.keep,
		.napu = opt.n_scale_apu, .apu_updates = opt.scale_updates, .apu_rounds = opt.scale_rounds,
		.nusers = opt.n_scale_users, .users_alarms = opt.scale_user_alarms,
		.users_updates = opt.scale_updates, .users_req_every = opt.req_every, .step = step,
	};

	memcpy(o.apu, opt.scale_apu, sizeof(o.apu));
	memcpy(o.users, opt.scale_users, sizeof(o.users));
	return o;
}

/*
 * Issue 11's targets, each met, not met, or not measured (its run was
 * skipped or incomplete).  Ratios are taken within this run only.
 */
#define FLAT_FACTOR 1.5          /* "flat": every row within 1.5x of the reference row */

struct target {
	const char *name, *what;
	char measured[160];
	double value, limit;
	int met;                 /* 1 met, 0 not met, -1 not measured */
};

static struct target targets[8];
static int ntargets;

static struct target *
target_add(const char *name, const char *what, double limit)
{
	struct target *t = &targets[ntargets++];

	*t = (struct target){ .name = name, .what = what, .limit = limit, .met = -1 };
	snprintf(t->measured, sizeof(t->measured), "not measured");
	return t;
}

static const struct scale_row *
apu_row(int alarms)
{
	for (int i = 0; i < scale.napu; i++)
		if (scale.apu[i].alarms == alarms && scale.apu[i].complete && scale.apu[i].rate > 0)
			return &scale.apu[i];
	return NULL;
}

static void
targets_compute(void)
{
	const struct ceiling *ca = &ceil_core.best, *cb = &ceil_js.best, *cp = &ceil_js_rate.best;
	struct target *t;

	ntargets = 0;
	t = target_add("core_vs_ceiling_a", "core e2e >= 40% of ceiling (a)", 0.40);
	if (res_core.complete && ca->ran && ca->complete && ca->rate > 0) {
		t->value = res_core.rate / ca->rate;
		t->met = t->value >= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1fk / %.1fk = %.0f%%", res_core.rate / 1e3,
		    ca->rate / 1e3, 100 * t->value);
	}
	t = target_add("durable_vs_ceiling_b", "durable e2e >= 95% of ceiling (b)", 0.95);
	if (res_js.complete && cb->ran && cb->complete && cb->rate > 0) {
		t->value = res_js.rate / cb->rate;
		t->met = t->value >= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1fk / %.1fk = %.0f%%", res_js.rate / 1e3,
		    cb->rate / 1e3, 100 * t->value);
	}
	t = target_add("alarms_per_user_ratio", "durable msgs/s at 1,000 alarms/user >= 70% of 10", 0.70);
	const struct scale_row *r10 = apu_row(10), *r1000 = apu_row(1000);
	if (r10 != NULL && r1000 != NULL) {
		t->value = r1000->rate / r10->rate;
		t->met = t->value >= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1fk / %.1fk = %.0f%%", r1000->rate / 1e3,
		    r10->rate / 1e3, 100 * t->value);
	}
	t = target_add("alarms_per_user_bytes_flat",
	    "bytes written/msg flat: every row <= 1.5x the 10-alarm row", FLAT_FACTOR);
	if (r10 != NULL && r10->write_per_msg > 0 && scale.napu > 1) {
		const struct scale_row *worst = r10;

		for (int i = 0; i < scale.napu; i++)
			if (scale.apu[i].complete && scale.apu[i].write_per_msg > worst->write_per_msg)
				worst = &scale.apu[i];
		t->value = worst->write_per_msg / r10->write_per_msg;
		t->met = t->value <= t->limit;
		snprintf(t->measured, sizeof(t->measured), "worst %d alarms/user: %.0f / %.0f B = %.2fx",
		    worst->alarms, worst->write_per_msg, r10->write_per_msg, t->value);
	}
	t = target_add("users_ratio", "durable msgs/s at the largest state >= 70% of the smallest",
	    0.70);
	if (scale.nusers > 1 && scale.users[0].complete && scale.users[0].rate > 0 &&
	    scale.users[scale.nusers - 1].complete) {
		const struct scale_row *a = &scale.users[0], *z = &scale.users[scale.nusers - 1];

		t->value = z->rate / a->rate;
		t->met = t->value >= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%d users %.1fk / %d users %.1fk = %.0f%%",
		    z->users, z->rate / 1e3, a->users, a->rate / 1e3, 100 * t->value);
	}
	t = target_add("state_bytes_per_alarm", "state on disk (du) <= 64 B per alarm", 64);
	const struct scale_row *z = NULL;
	for (int i = 0; i < scale.nusers; i++)
		if (scale.users[i].du_per_alarm > 0)
			z = &scale.users[i];     /* the largest state measured */
	if (z != NULL) {
		t->value = z->du_per_alarm;
		t->met = t->value <= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1f B at %d users x %d alarms", t->value,
		    z->users, z->alarms);
	} else if (res_js.ran && res_js.state_du > 0) {
		t->value = res_js.state_du;
		t->met = t->value <= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1f B (durable run, %d x %d)", t->value,
		    opt.users, opt.alarms);
	}
	t = target_add("paced_p99", "digest p99 at 50% of peak <= broker-only paced p99 + 5 ms", 5);
	if (res_js.have_rate && res_js.rate_lat.n > 0 && cp->ran && cp->complete && cp->lat.n > 0) {
		t->value = res_js.rate_lat.p99 - cp->lat.p99;
		t->met = t->value <= t->limit;
		snprintf(t->measured, sizeof(t->measured), "%.1f ms vs %.1f + 5 ms", res_js.rate_lat.p99,
		    cp->lat.p99);
	}
}

static const char *
target_verdict(const struct target *t)
{
	return t->met == 1 ? "met" : t->met == 0 ? "not met" : "not measured";
}

static void
targets_json(void)
{
	for (int i = 0; i < ntargets; i++) {
		const struct target *t = &targets[i];

		printf("BENCH {\"kind\":\"target\",\"name\":\"%s\",\"what\":\"%s\",\"measured\":\"%s\","
		    "\"limit\":%g,", t->name, t->what, t->measured, t->limit);
		if (t->met == -1)
			printf("\"value\":null,\"met\":null}\n");
		else
			printf("\"value\":%.4f,\"met\":%s}\n", t->value, t->met ? "true" : "false");
	}
}

static void
targets_table(void)
{
	printf("\ntargets (issue 11; never a failure of make bench):\n");
	for (int i = 0; i < ntargets; i++)
		printf("  %-62s %-46s %s\n", targets[i].what, targets[i].measured,
		    target_verdict(&targets[i]));
}

static void
report(double total_s, double busy_before)
{
	printf("\n");
	printf("BENCH {\"kind\":\"run\",\"users\":%d,\"alarms\":%d,\"rounds\":%d,\"dup\":%.3f,"
	    "\"workers\":%d,\"cpus\":%ld,\"seed\":%" PRIu64 ",\"cpu_busy_before\":%.2f,"
	    "\"seconds\":%.1f}\n", opt.users, opt.alarms, opt.rounds, opt.dup, opt.workers,
	    sysconf(_SC_NPROCESSORS_ONLN), opt.seed, busy_before, total_s);
	json_ceiling("core_pubsub", &ceil_core, "core publish -> subscriber on both subjects");
	json_ceiling("jetstream_broker", &ceil_js, opt.ack_every == 1 ?
	    "core publish -> stream -> push consumer, AckExplicit each" :
	    "core publish -> stream -> push consumer, AckAll every N-th");
	json_ceiling_rate(&ceil_js_rate);
	if (res_js.ran)
		json_mode(&res_js, &ceil_js.best, "jetstream_broker");
	if (res_core.ran)
		json_mode(&res_core, &ceil_core.best, "core_pubsub");
	if (soak.ran)
		json_soak();
	if (scale_ran) {
		struct scale_opts so = scale_options();

		scale_json(&so, &scale);
	}
	targets_compute();
	targets_json();

	printf("\n%d users x %d alarms x %d updates (%.0f%% duplicates) + %d digest requests, "
	    "%d workers, seed %" PRIu64 "\n", opt.users, opt.alarms, opt.rounds, opt.dup * 100,
	    opt.users, opt.workers, opt.seed);
	if (ceil_core.runs > 0 || ceil_js.runs > 0 || res_js.ran || res_core.ran)
		printf("%-30s %12s %6s  %9s %9s %9s\n", "", "msgs/s", "ratio", "p50 ms", "p99 ms",
		    "max ms");
	table_ceiling("ceiling (a) core pub->sub", &ceil_core);
	table_ceiling(opt.ack_every == 1 ? "ceiling (b) JetStream, ack each" :
	    "ceiling (b) JetStream, AckAll", &ceil_js);
	table_ceiling_rate(&ceil_js_rate);
	table_mode(&res_js, &ceil_js.best);
	table_mode(&res_core, &ceil_core.best);
	if (res_js.ran || res_core.ran) {
		printf("(ratio: durable vs ceiling (b), core vs ceiling (a); latency: request publish -> "
		    "digest; e2e rows include queueing behind the burst)\n");
		printf("peak RSS (VmHWM), state and disk writes:\n");
	}
	table_footprint(&res_js);
	table_footprint(&res_core);
	if (soak.ran) {
		printf("soak %.0f s at %.0f msgs/s, VmRSS first/last/max MiB: master %.1f/%.1f/%.1f",
		    soak.seconds, soak.rate, soak.master.first / 1024.0, soak.master.last / 1024.0,
		    soak.master.max / 1024.0);
		for (int i = 0; i < soak.nworkers; i++)
			printf(", worker %d %.1f/%.1f/%.1f", i, soak.workers[i].first / 1024.0,
			    soak.workers[i].last / 1024.0, soak.workers[i].max / 1024.0);
		printf(", nats-server %.1f/%.1f/%.1f; digest p50 %.2f p99 %.2f ms; %s\n",
		    soak.nats.first / 1024.0, soak.nats.last / 1024.0, soak.nats.max / 1024.0,
		    soak.lat.p50, soak.lat.p99, soak.correct ? "correct" : "WRONG");
	}
	if (scale_ran) {
		struct scale_opts so = scale_options();

		scale_print(&so, &scale);
	}
	targets_table();
	if (nodd > 0) {
		printf("odd things seen:\n");
		for (int i = 0; i < nodd; i++)
			printf("  - %s\n", odd[i]);
	}
	printf("total %.1f s; CPUs %.0f%% busy with other work before the run\n", total_s,
	    busy_before * 100);
}

int
main(int argc, char **argv)
{
	struct burst b = { 0 };
	struct load L = { 0 };
	int64_t start = pub_now_ns(), t;
	double busy_before;
	int rc = EXIT_OK;
	bool infra = false, main_load;

	parse_options(argc, argv);
	run_start_ns = start;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(opt.bin, X_OK) == -1) {
		fprintf(stderr, "bench: %s is not executable: %s\n", opt.bin, strerror(errno));
		return EXIT_INFRA;
	}
	if (harness_init((int64_t)opt.timeout_seconds * 1000, on_abort, on_stray) == -1) {
		fprintf(stderr, "bench: %s\n", harness_err());
		return EXIT_INFRA;
	}
	printf("# bench: %s, %ld CPUs, cnats %s, watchdog %d s\n", opt.bin, sysconf(_SC_NPROCESSORS_ONLN),
	    nats_GetVersion(), opt.timeout_seconds);
	busy_before = cpu_busy(500);
	if (busy_before > 0.2)
		note_odd("the CPUs were %.0f%% busy with other work before the run: the figures are skewed",
		    busy_before * 100);
	t = pub_now_ns();
	/* A scaling-only run (--modes none --no-ceilings) builds its own loads. */
	main_load = opt.mode_js || opt.mode_core || opt.ceilings || opt.soak_seconds > 0;
	if (main_load && (load_init(&L, opt.users, opt.alarms, opt.dup, opt.seed, 0) == -1 ||
	    load_burst(&L, &b, opt.rounds, true) == -1)) {
		fprintf(stderr, "bench: %s\n", harness_err());
		harness_fini();
		return EXIT_INFRA;
	}
	if (main_load)
		step("generated %zu updates (%zu exact duplicates) + %zu requests, %.1f MB, in %.1f s",
	    b.updates, b.duplicates, b.requests, (double)b.alen / 1e6, secs(pub_now_ns() - t));
	if (opt.mode_core && (b.n > CORE_MAX_MSGS || b.alen > CORE_MAX_BYTES)) {
		printf("bench: core mode: a burst of %zu messages (%.1f MB) is more than core intake "
		    "holds without dropping by design (%d messages, %.1f MB here); every core digest "
		    "must be exact, so use fewer users, alarms or rounds, or --modes jetstream\n", b.n,
		    (double)b.alen / 1e6, CORE_MAX_MSGS, (double)CORE_MAX_BYTES / 1e6);
		burst_free(&b);
		load_free(&L);
		harness_fini();
		return EXIT_INFRA;
	}

	if (opt.ceilings) {
		if (run_ceilings(&b) == -1) {
			step("ceiling: FAILED TO RUN: %s", harness_err());
			infra = true;
		}
	}
	if (opt.mode_js && run_mode(&L, &b, &res_js) == -1)
		infra = true;
	if (opt.mode_core && run_mode(&L, &b, &res_core) == -1)
		infra = true;
	/* The broker's own latency at the rate of the durable paced phase. */
	if (opt.ceilings && res_js.have_rate && run_ceiling_rate(&b, res_js.rate_phase.target_rate) == -1) {
		step("ceiling (b) latency: FAILED TO RUN: %s", harness_err());
		infra = true;
	}
	if (opt.scaling && opt.n_scale_apu + opt.n_scale_users > 0) {
		struct scale_opts so = scale_options();

		/* The main burst is done with: its memory goes to the larger states. */
		burst_free(&b);
		scale_ran = true;
		if (scale_run(&so, &scale) == -1)
			infra = true;
	}
	if (opt.soak_seconds > 0) {
		double rate = opt.soak_rate > 0 ? opt.soak_rate :
		    res_js.have_rate ? res_js.rate_phase.target_rate : 20000;

		burst_free(&b);
		if (run_soak(&L, rate) == -1)
			infra = true;
	}
	report(secs(pub_now_ns() - start), busy_before);

	if (!verdict("jetstream mode", res_js.verified, res_js.correct, &res_js.v, res_js.broker_slow))
		rc = EXIT_WRONG;
	if (!verdict("core mode", res_core.verified, res_core.correct, &res_core.v,
	    res_core.broker_slow))
		rc = EXIT_WRONG;
	if (!verdict("soak", soak.verified, soak.correct, &soak.v, 0))
		rc = EXIT_WRONG;
	if (scale_ran && !scale_verdict(&scale))
		rc = EXIT_WRONG;
	if (ceilings_incomplete() > 0) {
		printf("bench: COULD NOT MEASURE: %d ceiling run(s) did not receive every message they "
		    "published (see above); none of them is used as a ceiling\n", ceilings_incomplete());
		infra = true;
	}
	if (rc == EXIT_OK && infra) {
		printf("bench: could not complete (see above)\n");
		rc = EXIT_INFRA;
	}
	/* Only here is every digest of every run that ran checked and exact. */
	if (rc == EXIT_OK)
		printf("bench: OK: %zu digests checked against the SPEC model, all exact\n",
		    res_js.v.matched + res_core.v.matched + soak.v.matched + scale_matched(&scale));
	verify_free(&res_js.v);
	verify_free(&res_core.v);
	verify_free(&soak.v);
	scale_free(&scale);
	free(soak.pt);
	burst_free(&b);
	load_free(&L);
	harness_fini();
	return rc;
}
