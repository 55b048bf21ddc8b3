/*
 * Isolation (SPEC "Limits"): trouble in one worker delays only the users
 * routed to it.  A worker is stopped (SIGSTOP) under load while the
 * others' users keep getting exact digests and acks go on past it; a
 * worker that never comes back is killed by the stall timeout; a spill
 * holding acked messages survives kill -9 of the whole service.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../../common/hash.h"
#include "itest.h"

/* Isolation settings: a small queue, spilling after half a second. */
#define ISO_SERVICE "queue_max_bytes = 64K\nspill_after = 500ms\n"

static void
iso_runner_init(struct runner *r, struct env *e, struct model *m, const char *prefix,
    uint64_t seed_mix)
{
	memset(r, 0, sizeof(*r));
	r->bus = e->bus;
	r->model = m;
	r->seed = itest_opts.seed ^ seed_mix;
	r->prefix = prefix;
	r->users = itest_scaled(200);
	r->alarms = 4;
	r->batch = 50;
	r->pause_ms = 5;
	r->max_events = (size_t)itest_scaled(60000);
	r->base_sec = harness_wall_sec() - 7200;
}

/* The idx-th name "PREFIX-N" routed to slot k of n (on) or to any other slot (!on). */
static void
iso_user(const char *prefix, int n, int k, bool on, int idx, char *out, size_t cap)
{
	for (int i = 0, found = 0;; i++) {
		snprintf(out, cap, "%s-%d", prefix, i);
		if (((int)(hash32(out, strlen(out)) % (uint32_t)n) == k) == on && found++ == idx)
			return;
	}
}

/* "... held=w1:2345(spill:2000),w3:4 ...": slot k's waiting and spilled counts; -1 when not held. */
static int
iso_title_held(const char *title, int k, uint64_t *waiting, uint64_t *spilled)
{
	const char *h = strstr(title, " held="), *end;
	char key[16];
	int len;

	*waiting = *spilled = 0;
	if (h == NULL)
		return -1;
	h += strlen(" held=");
	end = h + strcspn(h, " ");
	len = snprintf(key, sizeof(key), "w%d:", k);
	for (const char *p = h; p < end; p = p + strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
		if (strncmp(p, key, (size_t)len) != 0)
			continue;
		*waiting = strtoull(p + len, NULL, 10);
		if (strncmp(p + len + strspn(p + len, "0123456789"), "(spill:", 7) == 0)
			*spilled = strtoull(p + len + strspn(p + len, "0123456789") + 7, NULL, 10);
		return 0;
	}
	return -1;
}

static int
iso_title(struct env *e, char *buf, size_t cap)
{
	if (env_alive(e) == -1)
		return -1;
	return harness_title(e->svc.proc.pid, buf, cap);
}

/* Does the service log, past byte `from`, hold `needle`? */
static int
iso_log_has(struct env *e, size_t from, const char *needle)
{
	size_t len;
	char *log = harness_read_file(e->svc.log, &len);
	int rc = -1;

	if (log == NULL)
		return -1;
	if (from <= len && strstr(log + from, needle) != NULL)
		rc = 0;
	else
		harness_seterr("the service log has no line with \"%s\"", needle);
	free(log);
	return rc;
}

static size_t
iso_log_size(struct env *e)
{
	size_t len = 0;
	char *log = harness_read_file(e->svc.log, &len);

	free(log);
	return len;
}

/* The consumer's ack floor (stream sequence) and the stream's last sequence. */
static int
iso_ack_floor(struct env *e, uint64_t *floor, uint64_t *last)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	uint64_t msgs;
	natsStatus s;

	if (bus_stream_state(e->bus, "ALARMS", &msgs, last) == -1)
		return -1;
	if ((s = js_GetConsumerInfo(&ci, bus_js(e->bus), "ALARMS", "alarm-digest", NULL, &jerr)) != NATS_OK) {
		harness_seterr("consumer info of ALARMS/alarm-digest: %s", natsStatus_GetText(s));
		return -1;
	}
	*floor = ci->AckFloor.Stream;
	jsConsumerInfo_Destroy(ci);
	return 0;
}

/* An update and a request for `user` (another slot's): its digest, exact, within 10 s. */
static int
iso_probe(struct env *e, struct model *m, const char *user, int round)
{
	char alarm[32], ts[48];
	struct event up = { .request = false }, rq = { .request = true };
	int64_t t0 = harness_now_ms();

	snprintf(alarm, sizeof(alarm), "iso-%d", round);
	model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
	up.user = rq.user = (char *)user;
	up.alarm = alarm;
	up.status = "WARNING";
	up.ts = ts;
	if (event_send(&up, e->bus, m) == -1 || event_send(&rq, e->bus, m) == -1)
		return -1;
	if (env_wait_user(e, user, model_expected_count(m, user), harness_now_ms() + 10000) == -1) {
		harness_seterr("user %s of a running worker got no digest within 10 s while another "
		    "worker was stopped (%s)", user, harness_err());
		return -1;
	}
	printf("# probe %d: user %s of a running worker: update + request -> digest in %lld ms\n", round,
	    user, (long long)(harness_now_ms() - t0));
	return traffic_verify_user(m, e->digests, user, false);
}

static int
iso_signal(const struct harness_worker *w, int sig)
{
	if (kill(w->pid, sig) == 0)
		return 0;
	harness_seterr("kill(worker %d pid %ld, %s): %s", w->slot, (long)w->pid, strsignal(sig),
	    strerror(errno));
	return -1;
}

/* ---- stalled_worker: SIGSTOP under load, the others go on, SIGCONT catches up ---- */

struct iso_stop {
	int probes_ok, probes;
	uint64_t floor_before, floor_after;
	uint64_t waiting, spilled;
	char title[1024];
	char why[512];
};

/* While worker k is stopped: probe other users each second until k holds back enough. */
static int
iso_while_stopped(struct env *e, struct model *m, int k, uint64_t want_waiting, struct iso_stop *st)
{
	int64_t deadline = harness_now_ms() + 40000;
	uint64_t last;
	char user[64];

	if (iso_ack_floor(e, &st->floor_before, &last) == -1)
		return -1;
	while (harness_now_ms() < deadline) {
		harness_sleep_ms(1000);
		iso_user("iso-other", 2, k, false, st->probes, user, sizeof(user));
		st->probes++;
		if (iso_probe(e, m, user, st->probes) == 0)
			st->probes_ok++;
		else if (st->why[0] == '\0')
			snprintf(st->why, sizeof(st->why), "%s", harness_err());
		if (iso_title(e, st->title, sizeof(st->title)) == -1)
			return -1;
		if (iso_title_held(st->title, k, &st->waiting, &st->spilled) == 0 &&
		    st->waiting >= want_waiting && st->probes >= 3)
			return iso_ack_floor(e, &st->floor_after, &last);
	}
	harness_seterr("worker %d was stopped 40 s and the title never showed it holding back %llu "
	    "messages; last title: %s", k, (unsigned long long)want_waiting, st->title);
	return -1;
}

/* The title stops naming slot k as held back. */
static int
iso_wait_caught_up(struct env *e, int k, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	uint64_t waiting, spilled;
	char title[1024] = "";

	while (harness_now_ms() < deadline) {
		if (iso_title(e, title, sizeof(title)) == -1)
			return -1;
		if (iso_title_held(title, k, &waiting, &spilled) == -1)
			return 0;
		harness_sleep_ms(200);
	}
	harness_seterr("worker %d still holds back %llu messages (%llu spilled) %lld ms after SIGCONT: %s",
	    k, (unsigned long long)waiting, (unsigned long long)spilled, (long long)timeout_ms, title);
	return -1;
}

void
scn_stalled_worker(void)
{
	/*
	 * An ack window of 1000 messages: without isolation the stopped worker
	 * would stop everybody within 1000 messages.  It must hold back 2000.
	 */
	struct env_config cfg = { .workers = 2, .nats_extra = "max_ack_pending = 1000\n",
	    .service_extra = ISO_SERVICE "worker_stall_timeout = 10m\n" };
	const uint64_t want = 2000;
	struct harness_worker w[2];
	struct iso_stop st = { 0 };
	struct model *m = model_new();
	struct runner r;
	struct env e = { 0 };
	char needle[96];
	int k = 1;

	memset(&r, 0, sizeof(r));
	if (m == NULL || env_up(&e, "stalled_worker", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 2, 20000, 200, w) == -1) {
		tap_fail("stalled_worker", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	iso_runner_init(&r, &e, m, "sw", 0x5709);
	if (runner_start(&r) == -1 || (harness_sleep_ms(500), iso_signal(&w[k], SIGSTOP)) == -1) {
		tap_fail("stalled_worker", "%s", harness_err());
		goto out;
	}
	if (iso_while_stopped(&e, m, k, want, &st) == -1) {
		tap_fail("stalled_worker", "%s", harness_err());
		(void)iso_signal(&w[k], SIGCONT);
		goto out;
	}
	printf("# worker %d stopped: %d probes, floor %llu -> %llu, title: %s\n", k, st.probes,
	    (unsigned long long)st.floor_before, (unsigned long long)st.floor_after, st.title);
	if (st.probes_ok != st.probes)
		harness_seterr("%d of %d users of the running worker got their digest late or wrong; "
		    "first: %s", st.probes - st.probes_ok, st.probes, st.why);
	tap_report("stalled_worker/other_slots_served", st.probes_ok == st.probes ? 0 : -1);
	/* More acked than the window holds: acks went on past the stopped worker's messages. */
	if (st.floor_after < st.floor_before + 1000)
		harness_seterr("ack floor moved %llu -> %llu while worker %d was stopped; want > 1000 "
		    "(max_ack_pending)", (unsigned long long)st.floor_before,
		    (unsigned long long)st.floor_after, k);
	tap_report("stalled_worker/acks_go_on", st.floor_after >= st.floor_before + 1000 ? 0 : -1);
	if (st.waiting < want || st.spilled == 0)
		harness_seterr("title shows worker %d holding back %llu (%llu spilled): %s", k,
		    (unsigned long long)st.waiting, (unsigned long long)st.spilled, st.title);
	tap_report("stalled_worker/title_names_held_slot", st.waiting >= want && st.spilled > 0 ? 0 : -1);
	snprintf(needle, sizeof(needle), "worker %d is holding back ", k);
	if (iso_log_has(&e, 0, needle) == -1) {
		snprintf(needle, sizeof(needle), "worker %d holds back its users", k);
		tap_report("stalled_worker/log_names_held_slot", iso_log_has(&e, 0, needle));
	} else {
		tap_report("stalled_worker/log_names_held_slot", 0);
	}
	if (iso_signal(&w[k], SIGCONT) == -1) {
		tap_fail("stalled_worker/caught_up", "%s", harness_err());
		goto out;
	}
	snprintf(needle, sizeof(needle), "worker %d caught up", k);
	tap_report("stalled_worker/caught_up", iso_wait_caught_up(&e, k, 60000) == 0 &&
	    iso_log_has(&e, 0, needle) == 0 ? 0 : -1);
	/* Nothing crashed: every digest exactly once, in order. */
	tap_report("stalled_worker/digests_match_model", env_finish_and_verify(&e, m, &r, false));
	tap_report("stalled_worker/digest_json_shape", env_check_collector(&e));
out:
	(void)runner_stop(&r);
	env_down(&e);
	model_free(m);
}

/* ---- hung_worker: stopped for good, killed by the stall timeout ---- */

/* Slot `slot` runs again under another pid; *after_ms from `since`. */
static int
iso_wait_respawn(struct env *e, int slot, pid_t old, int64_t since, int64_t *after_ms)
{
	int64_t deadline = harness_now_ms() + 30000;
	struct harness_worker w[8];

	while (harness_now_ms() < deadline) {
		int have = harness_workers(e->svc.proc.pid, w, 8);

		for (int i = 0; i < have; i++) {
			if (w[i].slot == slot && w[i].pid != old) {
				*after_ms = harness_now_ms() - since;
				return 0;
			}
		}
		if (env_alive(e) == -1)
			return -1;
		harness_sleep_ms(50);
	}
	harness_seterr("worker %d (pid %ld, stopped) was not replaced within 30 s", slot, (long)old);
	return -1;
}

static int
iso_wait_title_has(struct env *e, const char *needle, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char title[1024] = "";

	while (harness_now_ms() < deadline) {
		if (iso_title(e, title, sizeof(title)) == -1)
			return -1;
		if (strstr(title, needle) != NULL)
			return 0;
		harness_sleep_ms(100);
	}
	harness_seterr("the master's title never showed \"%s\"; last: %s", needle, title);
	return -1;
}

void
scn_hung_worker(void)
{
	struct env_config cfg = { .workers = 2,
	    .service_extra = ISO_SERVICE "worker_stall_timeout = 2s\n" };
	struct harness_worker w[2];
	struct model *m = model_new();
	struct runner r;
	struct env e = { 0 };
	char needle[96];
	int64_t stopped, after = 0;
	int k = 0, rc;

	memset(&r, 0, sizeof(r));
	if (m == NULL || env_up(&e, "hung_worker", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 2, 20000, 200, w) == -1) {
		tap_fail("hung_worker", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	iso_runner_init(&r, &e, m, "hw", 0x4a46);
	if (runner_start(&r) == -1 || (harness_sleep_ms(500), iso_signal(&w[k], SIGSTOP)) == -1) {
		tap_fail("hung_worker", "%s", harness_err());
		goto out;
	}
	/* Never continued: the stall timeout (2 s of silence with work outstanding) must act. */
	stopped = harness_now_ms();
	rc = iso_wait_respawn(&e, w[k].slot, w[k].pid, stopped, &after);
	if (rc == 0 && (after < 1900 || harness_pid_alive(w[k].pid))) {
		harness_seterr("worker %d replaced %lld ms after SIGSTOP (want >= 2 s), old pid %s",
		    k, (long long)after, harness_pid_alive(w[k].pid) ? "still alive" : "gone");
		rc = -1;
	}
	if (rc == 0)
		printf("# hung worker %d replaced %lld ms after SIGSTOP\n", k, (long long)after);
	tap_report("hung_worker/killed_and_restarted", rc);
	snprintf(needle, sizeof(needle), "worker %d (pid %ld) STALLED", k, (long)w[k].pid);
	tap_report("hung_worker/log_says_stalled", iso_log_has(&e, 0, needle));
	snprintf(needle, sizeof(needle), "stall_kills=w%d:1", k);
	tap_report("hung_worker/title_says_stalled", iso_wait_title_has(&e, needle, 3000));
	harness_sleep_ms(500);
	/* Killed mid-batch, like a crash: a repeated digest is allowed, a lost one is not. */
	tap_report("hung_worker/no_update_lost", env_finish_and_verify(&e, m, &r, true));
	tap_report("hung_worker/digest_json_shape", env_check_collector(&e));
out:
	(void)runner_stop(&r);
	env_down(&e);
	model_free(m);
}

/*
 * ---- spill_crash: kill -9 of the service while a spill holds acked
 * messages, then a start with another worker count ----
 */

/* How many spill files of slot k are in the state directory. */
static int
iso_spill_files(struct env *e, int k)
{
	char dir[PATH_MAX], prefix[32];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(prefix, sizeof(prefix), "spill-%d.", k);
	if (harness_path(dir, sizeof(dir), e->dir, "state") == -1)
		return -1;
	if ((d = opendir(dir)) == NULL) {
		harness_seterr("opendir %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* Worker k stopped: wait until its spill holds >= want messages and the acks went past them. */
static int
iso_wait_spill_acked(struct env *e, int k, uint64_t want, uint64_t seq_at_stop)
{
	int64_t deadline = harness_now_ms() + 40000;
	uint64_t waiting = 0, spilled = 0, floor = 0, last = 0;
	char title[1024] = "";

	while (harness_now_ms() < deadline) {
		harness_sleep_ms(200);
		if (iso_title(e, title, sizeof(title)) == -1 || iso_ack_floor(e, &floor, &last) == -1)
			return -1;
		/* Acked past the stop by more than was routed before it: slot k's messages among them. */
		if (iso_title_held(title, k, &waiting, &spilled) == 0 && spilled >= want &&
		    floor >= seq_at_stop + want) {
			printf("# worker %d stopped: spill %llu, ack floor %llu (stream at %llu when stopped)\n",
			    k, (unsigned long long)spilled, (unsigned long long)floor,
			    (unsigned long long)seq_at_stop);
			return 0;
		}
	}
	harness_seterr("no spill of %llu acked messages within 40 s: spilled %llu, ack floor %llu, "
	    "stream at %llu when stopped; title: %s", (unsigned long long)want,
	    (unsigned long long)spilled, (unsigned long long)floor, (unsigned long long)seq_at_stop,
	    title);
	return -1;
}

void
scn_spill_crash(void)
{
	struct env_config cfg = { .workers = 2,
	    .service_extra = ISO_SERVICE "worker_stall_timeout = 10m\n" };
	struct harness_worker w[2], w3[3];
	struct model *m = model_new();
	struct runner r;
	struct env e = { 0 };
	uint64_t floor, seq;
	size_t log_at;
	int k = 1, n;

	memset(&r, 0, sizeof(r));
	if (m == NULL || env_up(&e, "spill_crash", &cfg) == -1 ||
	    harness_workers_wait(e.svc.proc.pid, 2, 20000, 200, w) == -1) {
		tap_fail("spill_crash", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	iso_runner_init(&r, &e, m, "sc", 0x5c11);
	if (runner_start(&r) == -1 || (harness_sleep_ms(500), iso_ack_floor(&e, &floor, &seq)) == -1 ||
	    iso_signal(&w[k], SIGSTOP) == -1) {
		tap_fail("spill_crash", "%s", harness_err());
		goto out;
	}
	if (iso_wait_spill_acked(&e, k, 300, seq) == -1) {
		tap_fail("spill_crash/spill_acked", "%s", harness_err());
		(void)iso_signal(&w[k], SIGCONT);
		goto out;
	}
	tap_ok("spill_crash/spill_acked");
	/* The whole service at once, the stopped worker included: the spill is those messages' only copy. */
	harness_proc_kill(&e.svc.proc);
	harness_kill_orphans();
	if ((n = iso_spill_files(&e, k)) == 0)
		harness_seterr("no spill-%d.* file in the state directory after kill -9", k);
	tap_report("spill_crash/spill_on_disk", n > 0 ? 0 : -1);
	/*
	 * Restart with another worker count: the spill was written for 2, so
	 * the service applies it with 2 workers first, then moves to 3.
	 */
	log_at = iso_log_size(&e);
	e.cfg.workers = 3;
	if (env_write_config(&e, &e.cfg) == -1 || env_restart_service(&e) == -1) {
		tap_fail("spill_crash/restart_replays_spill", "restart: %s", harness_err());
		goto out;
	}
	tap_report("spill_crash/restart_replays_spill",
	    iso_log_has(&e, log_at, "messages spilled before the last stop"));
	tap_report("spill_crash/then_moves_to_new_count",
	    iso_log_has(&e, log_at, "starting 2 to apply them, then moving to 3") == 0 &&
	    harness_workers_wait(e.svc.proc.pid, 3, 30000, 200, w3) == 0 ? 0 : -1);
	tap_report("spill_crash/no_update_lost", env_finish_and_verify(&e, m, &r, true));
	/* Everything applied: the spill files go once the worker reported them durable. */
	for (int64_t until = harness_now_ms() + 5000; (n = iso_spill_files(&e, k)) > 0 &&
	    harness_now_ms() < until;)
		harness_sleep_ms(100);
	if (n != 0)
		harness_seterr("%d spill-%d.* files left after every digest arrived", n, k);
	tap_report("spill_crash/spill_files_removed", n == 0 ? 0 : -1);
	tap_report("spill_crash/digest_json_shape", env_check_collector(&e));
out:
	(void)runner_stop(&r);
	env_down(&e);
	model_free(m);
}
