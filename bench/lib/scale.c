#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procinfo.h"
#include "scale.h"
#include "seed.h"
#include "svc.h"

#define SCALE_PHASE 0

struct seed_arg {
	struct load *L;
	int workers;
	struct seed_stats st;
};

/* svc_start's prepare hook: the stores are written before the service opens them. */
static int
scale_seed(struct svc_run *r, void *arg)
{
	struct seed_arg *sa = arg;

	return seed_state(sa->L, r->state, sa->workers, r->model, &sa->st);
}

/* Workers' CPU ticks and bytes written so far, summed. */
static void
workers_io(struct svc_run *r, int64_t *ticks, int64_t *written)
{
	*ticks = *written = 0;
	for (int i = 0; i < r->nw; i++) {
		int64_t t = procinfo_cpu_ticks(r->w[i].pid), w = procinfo_write_bytes(r->w[i].pid);

		*ticks += t > 0 ? t : 0;
		*written += w > 0 ? w : 0;
	}
}

/* One row: a fresh nats-server and service, the burst, every digest checked. */
static int
scale_row_run(const struct scale_opts *o, struct scale_row *row, bool seeded)
{
	struct seed_arg sa = { 0 };
	struct feed_stats fs;
	struct load L;
	struct burst b = { 0 };
	struct svc_run r;
	struct logscan ls;
	struct svc_counts counts;
	int64_t t0, tpub, tick0, wr0, tick1, wr1;
	uint64_t alloc = 0, apparent = 0;
	size_t have;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	row->ran = true;
	if (load_init(&L, row->users, row->alarms, o->dup, o->seed, seeded ? 0 : o->workers) == -1)
		return -1;
	if (seeded) {
		load_reset(&L, 1);
		if (load_spread(&L, &b, (size_t)o->users_updates, o->users_req_every) == -1)
			goto out;
		sa.L = &L;
		sa.workers = o->workers;
		o->step("users %d x %d alarms: seeding the stores, then starting the service",
		    row->users, row->alarms);
	} else {
		if (load_burst(&L, &b, row->rounds, true) == -1)
			goto out;
		o->step("%d alarms per user (%d users x %d rounds): starting the service", row->alarms,
		    row->users, row->rounds);
	}
	row->msgs = b.n;
	row->updates = b.updates;
	row->requests = b.requests;
	if (svc_start(&r, o->bin, seeded ? "bench-users" : "bench-apu", false, o->workers,
	    o->stall_seconds, seeded ? scale_seed : NULL, &sa) == -1)
		goto out;
	row->seed_seconds = sa.st.seconds;
	if (seeded)
		o->step("  seeded %" PRIu64 " alarms in %.1f s (stores %.1f s, commits %.1f s, model "
		    "%.1f s); the service answered", sa.st.alarms, sa.st.seconds, sa.st.store_seconds,
		    sa.st.commit_seconds, sa.st.model_seconds);
	load_reset(&L, 1);
	if (load_feed(&L, &b, r.model, &fs) == -1)
		goto out;
	o->step("  publishing %zu messages (%zu digests expected)", b.n, (size_t)fs.digests);
	workers_io(&r, &tick0, &wr0);
	if (pub_burst(r.pub, &b, &L, SCALE_PHASE, &t0, &tpub) == -1)
		goto out;
	have = svc_wait_digests(&r, (size_t)fs.digests);
	row->complete = have >= fs.digests;
	row->seconds = have > 0 ? (double)(dsink_arrival_ns(r.sink, have) - t0) / 1e9 : 0;
	row->pub_seconds = (double)(tpub - t0) / 1e9;
	row->rate = row->seconds > 0 ? (double)b.n / row->seconds : 0;
	if (!row->complete)
		o->step("  %zu of %zu digests arrived; nothing moved for %d s", have,
		    (size_t)fs.digests, o->stall_seconds);
	/* The last batch commits up to commit_max_ms after its digests went out. */
	harness_sleep_ms(500);
	workers_io(&r, &tick1, &wr1);
	row->write_per_msg = (double)(wr1 - wr0) / (double)b.n;
	row->cpu_us_per_msg = (double)(tick1 - tick0) * 1e6 / (double)sysconf(_SC_CLK_TCK) /
	    (double)b.n;
	for (int i = 0; i < r.nw; i++) {
		int64_t kib = procinfo_status_kib(r.w[i].pid, "VmHWM:");

		if (kib > row->rss_worker_max_kib)
			row->rss_worker_max_kib = kib;
	}
	if (procinfo_du(r.state, &alloc, &apparent) == 0)
		row->du_per_alarm = (double)alloc / ((double)row->users * (double)row->alarms);
	else
		row->du_per_alarm = -1;
	if (sink_verify(r.sink, &L, r.model, &row->v) == -1)
		goto out;
	row->verified = true;
	row->correct = verify_ok(&row->v);
	o->step("  %.0f msgs/s, workers wrote %.0f B and used %.1f us of CPU per message; digests "
	    "expected %zu, matched %zu%s", row->rate, row->write_per_msg, row->cpu_us_per_msg,
	    row->v.expected, row->v.matched, row->correct ? "" : ": WRONG");
	/* More frames than messages: the broker redelivered what was not acked within ack_wait. */
	svc_counts(&r, &counts);
	row->worker_msgs = counts.worker_msgs;
	if (counts.worker_msgs > (int64_t)(b.n + (size_t)r.probe_msgs))
		printf("# odd: the workers handled %" PRId64 " messages for %zu published: JetStream "
		    "redelivered messages not acked within ack_wait\n", counts.worker_msgs, b.n);
	rc = 0;
out:
	if (rc == -1)
		o->step("  FAILED TO RUN: %s", harness_err());
	if (r.svc.log[0] != '\0') {
		svc_scan_log(r.svc.log, ": error: ", ": warn: ", &ls);
		row->log_errors = ls.error;
		row->log_warns = ls.warn;
		for (int i = 0; i < ls.nfirst; i++)
			printf("# odd: service log: %s\n", ls.first[i]);
	}
	svc_stop(&r, o->keep, row->exit_status, sizeof(row->exit_status));
	burst_free(&b);
	load_free(&L);
	return rc;
}

int
scale_run(const struct scale_opts *o, struct scale_result *res)
{
	int rc = 0;

	memset(res, 0, sizeof(*res));
	for (int i = 0; i < o->napu; i++) {
		struct scale_row *row = &res->apu[res->napu++];
		long per_user = (long)o->apu[i] * o->apu_rounds;

		row->alarms = o->apu[i];
		row->rounds = o->apu_rounds;
		row->users = (int)(o->apu_updates / per_user > 0 ? o->apu_updates / per_user : 1);
		if (scale_row_run(o, row, false) == -1)
			rc = -1;
		if (res->apu[0].rate > 0)
			row->ratio = row->rate / res->apu[0].rate;
	}
	for (int i = 0; i < o->nusers; i++) {
		struct scale_row *row = &res->users[res->nusers++];

		row->users = o->users[i];
		row->alarms = o->users_alarms;
		if (scale_row_run(o, row, true) == -1)
			rc = -1;
		if (res->users[0].rate > 0)
			row->ratio = row->rate / res->users[0].rate;
	}
	if (o->nusers > 0) {
		o->step("disk: scattered page writes on the state's filesystem");
		if (disk_measure(&res->disk) == -1) {
			o->step("  FAILED TO RUN: %s", harness_err());
			rc = -1;
		}
	}
	return rc;
}

static const char *
row_digests(const struct scale_row *r, char *buf, size_t cap)
{
	if (!r->verified)
		snprintf(buf, cap, "not checked");
	else
		snprintf(buf, cap, "%zu/%zu %s", r->v.matched, r->v.expected,
		    r->correct ? "exact" : "WRONG");
	return buf;
}

static void
row_rate(const struct scale_row *r, char *rate, size_t rcap, char *ratio, size_t qcap)
{
	if (r->rate >= 1e3)
		snprintf(rate, rcap, "%.1fk", r->rate / 1e3);
	else
		snprintf(rate, rcap, "%.0f", r->rate);
	if (r->ratio > 0)
		snprintf(ratio, qcap, "%.0f%%", r->ratio * 100);
	else
		snprintf(ratio, qcap, "-");
}

/*
 * The burst's publishing rate alone.  The publisher shares the CPUs and
 * the broker with the service, so a row whose msgs/s is close to it was
 * paced by the broker's intake, not by the service.
 */
static double
row_pub_rate(const struct scale_row *r)
{
	return r->pub_seconds > 0 ? (double)r->msgs / r->pub_seconds : 0;
}

/*
 * The disk against the largest row: a message there costs about one
 * scattered page (its user's leaf), so pages/s over pages per message is
 * what the disk allows when it does nothing else (the broker writes to it
 * too, and the workers' own CPU comes on top).
 */
static void
disk_print(const struct disk_result *d, const struct scale_row *big)
{
	double per_msg = big->write_per_msg / 4096;

	if (!d->ran)
		return;
	printf("\ndisk (a %lld MiB file on the state's filesystem, cached in base pages; batches of random "
	    "4 KiB pages written in ascending order, one fdatasync each, as a commit writes):\n",
	    d->file_bytes >> 20);
	printf("%11s %10s %9s  msgs/s it allows the %d-user row (%.0f B = %.2f pages written per msg)\n",
	    "pages/batch", "pages/s", "ms/batch", big->users, big->write_per_msg, per_msg);
	for (int k = 0; k < DISK_BATCHES; k++) {
		const struct disk_batch *b = &d->b[k];
		char allows[32] = "-";

		if (per_msg > 0)
			snprintf(allows, sizeof(allows), "%.1fk", b->pages_per_s / per_msg / 1e3);
		printf("%11d %9.1fk %9.1f  %s\n", b->pages, b->pages_per_s / 1e3, b->ms_per_batch, allows);
	}
	printf("(a worker's commit at a million users held 5,000 to 10,000 updates on the machine "
	    "of docs/PERFORMANCE.md; the broker writes to the same disk)\n");
}

void
scale_print(const struct scale_opts *o, const struct scale_result *res)
{
	char rate[32], ratio[16], dig[64];

	if (res->napu > 0) {
		printf("\nalarms per user (durable, about %ld updates per row, %d per alarm, shuffled, + one "
		    "request per user, from an empty state, %d workers):\n", o->apu_updates, o->apu_rounds,
		    o->workers);
		printf("%11s %7s %10s %6s %12s %14s %17s  %s\n", "alarms/user", "users", "msgs/s", "ratio",
		    "published/s", "B written/msg", "worker CPU us/msg", "digests");
		for (int i = 0; i < res->napu; i++) {
			const struct scale_row *r = &res->apu[i];

			row_rate(r, rate, sizeof(rate), ratio, sizeof(ratio));
			printf("%11d %7d %8s/s %6s %10.1fk %14.0f %17.1f  %s\n", r->alarms, r->users, rate,
			    ratio, row_pub_rate(r) / 1e3, r->write_per_msg, r->cpu_us_per_msg,
			    row_digests(r, dig, sizeof(dig)));
		}
		printf("(ratio: msgs/s / the %d-alarm row; published/s: the burst's publishing alone, "
		    "a row near it was paced by the broker's intake; B written: /proc/PID/io "
		    "write_bytes of the workers, burst start to 0.5 s after its last digest)\n",
		    res->apu[0].alarms);
	}
	if (res->nusers > 0) {
		printf("\nusers (durable, a state of USERS x %d alarms seeded into the stores, then %ld "
		    "updates + a request every %d on top, %d workers):\n", o->users_alarms,
		    o->users_updates, o->users_req_every, o->workers);
		printf("%9s %10s %7s %10s %6s %12s %14s %19s %15s  %s\n", "users", "alarms", "seed s",
		    "msgs/s", "ratio", "published/s", "B written/msg", "worker RSS max MiB", "state B/alarm",
		    "digests");
		for (int i = 0; i < res->nusers; i++) {
			const struct scale_row *r = &res->users[i];

			row_rate(r, rate, sizeof(rate), ratio, sizeof(ratio));
			printf("%9d %10lld %7.1f %8s/s %6s %10.1fk %14.0f %19.1f %15.1f  %s\n", r->users,
			    (long long)r->users * r->alarms, r->seed_seconds, rate, ratio,
			    row_pub_rate(r) / 1e3, r->write_per_msg, (double)r->rss_worker_max_kib / 1024,
			    r->du_per_alarm, row_digests(r, dig, sizeof(dig)));
		}
		printf("(ratio: msgs/s / the %d-user row; published/s: as above; B written: /proc/PID/io "
		    "write_bytes of the workers; RSS: VmHWM, LMDB's mapped pages included; state: du "
		    "of STATE_DIR after the load / alarms)\n", res->users[0].users);
		disk_print(&res->disk, &res->users[res->nusers - 1]);
	}
}

static void
json_row(const char *table, const struct scale_row *r)
{
	printf("BENCH {\"kind\":\"scale\",\"table\":\"%s\",\"users\":%d,\"alarms_per_user\":%d,"
	    "\"rounds\":%d,\"msgs\":%zu,\"updates\":%zu,\"requests\":%zu,\"seconds\":%.3f,"
	    "\"publish_seconds\":%.3f,\"msgs_per_s\":%.0f,\"ratio\":%.3f,"
	    "\"worker_write_bytes_per_msg\":%.1f,"
	    "\"worker_cpu_us_per_msg\":%.2f,\"worker_rss_max_kib\":%" PRId64 ","
	    "\"state_du_bytes_per_alarm\":%.1f,\"seed_seconds\":%.1f,\"complete\":%s,"
	    "\"digests_expected\":%zu,\"matched\":%zu,\"correct\":%s,\"log_errors\":%d,"
	    "\"log_warnings\":%d,\"worker_msgs\":%" PRId64 ",\"exit\":\"%s\"}\n", table, r->users,
	    r->alarms, r->rounds, r->msgs,
	    r->updates, r->requests, r->seconds, r->pub_seconds, r->rate, r->ratio, r->write_per_msg,
	    r->cpu_us_per_msg, r->rss_worker_max_kib, r->du_per_alarm, r->seed_seconds,
	    r->complete ? "true" : "false", r->v.expected, r->v.matched,
	    r->verified && r->correct ? "true" : "false", r->log_errors, r->log_warns,
	    r->worker_msgs, r->exit_status);
}

void
scale_json(const struct scale_opts *o, const struct scale_result *res)
{
	(void)o;
	for (int i = 0; i < res->napu; i++)
		json_row("alarms_per_user", &res->apu[i]);
	for (int i = 0; i < res->nusers; i++)
		json_row("users", &res->users[i]);
	for (int k = 0; res->disk.ran && k < DISK_BATCHES; k++)
		printf("BENCH {\"kind\":\"disk\",\"file_bytes\":%lld,\"pages_per_batch\":%d,"
		    "\"rounds\":%d,\"pages_per_s\":%.0f,\"ms_per_batch\":%.1f}\n", res->disk.file_bytes,
		    res->disk.b[k].pages, res->disk.b[k].rounds, res->disk.b[k].pages_per_s,
		    res->disk.b[k].ms_per_batch);
}

static bool
row_verdict(const char *table, const struct scale_row *r)
{
	if (!r->verified || r->correct)
		return true;
	printf("bench: FAIL: %s table, %d users x %d alarms: digests differ from the SPEC model: "
	    "expected %zu, received %zu, exact %zu, missing %zu, extra %zu, different %zu, "
	    "malformed %zu; first differences:\n", table, r->users, r->alarms, r->v.expected,
	    r->v.digests, r->v.matched, r->v.missing, r->v.extra, r->v.differ, r->v.malformed);
	for (int i = 0; i < r->v.nfirst; i++)
		printf("bench:   %s\n", r->v.first[i]);
	return false;
}

bool
scale_verdict(const struct scale_result *res)
{
	bool ok = true;

	for (int i = 0; i < res->napu; i++)
		ok = row_verdict("alarms-per-user", &res->apu[i]) && ok;
	for (int i = 0; i < res->nusers; i++)
		ok = row_verdict("users", &res->users[i]) && ok;
	return ok;
}

size_t
scale_matched(const struct scale_result *res)
{
	size_t n = 0;

	for (int i = 0; i < res->napu; i++)
		n += res->apu[i].v.matched;
	for (int i = 0; i < res->nusers; i++)
		n += res->users[i].v.matched;
	return n;
}

void
scale_free(struct scale_result *res)
{
	for (int i = 0; i < res->napu; i++)
		verify_free(&res->apu[i].v);
	for (int i = 0; i < res->nusers; i++)
		verify_free(&res->users[i].v);
}
