/*
 * The environment of one fault scenario (temp dir, nats-server, the
 * service, the test's own NATS connection and digest collector), the
 * outage-tolerant publisher, and the checks every scenario ends with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json.h>

#include "fault.h"
#include "hash.h"

#define FAULT_STREAM "ALARMS"
#define FAULT_CONSUMER "alarm-digest"
/* A publish is retried (same Nats-Msg-Id) this long before the test gives up. */
#define FPUB_GIVE_UP_MS 60000
#define FPUB_MAX_WAIT_MS 2000

/* ---- publishing ---- */

static atomic_uint_fast64_t fpub_ids, fpub_retries;

uint64_t
fpub_retried(void)
{
	return atomic_load(&fpub_retries);
}

/*
 * Stored and acked before it returns.  Every attempt carries the same
 * Nats-Msg-Id, so an attempt whose ack was lost (the broker went away
 * after storing it) is dropped by the stream's duplicate window instead of
 * stored twice; one publisher thread per user keeps that user's order.
 */
static int
fpub_raw(struct bus *b, const char *subject, const char *data, size_t len)
{
	int64_t give_up = harness_now_ms() + FPUB_GIVE_UP_MS;
	char msg_id[64];
	jsPubOptions po;
	jsErrCode jerr = 0;
	natsStatus s;

	snprintf(msg_id, sizeof(msg_id), "ft-%ld-%llu", (long)getpid(),
	    (unsigned long long)atomic_fetch_add(&fpub_ids, 1));
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = FPUB_MAX_WAIT_MS;
	for (int attempt = 0;; attempt++) {
		jerr = 0;
		s = js_Publish(NULL, bus_js(b), subject, data, (int)len, &po, &jerr);
		if (s == NATS_OK) {
			if (attempt > 0)
				atomic_fetch_add(&fpub_retries, 1);
			return 0;
		}
		if (harness_now_ms() >= give_up)
			break;
		harness_sleep_ms(attempt < 10 ? 20 * (attempt + 1) : 250);
	}
	harness_seterr("js_Publish to %s (id %s) failed for %d s: %s (jetstream error %d)",
	    subject, msg_id, FPUB_GIVE_UP_MS / 1000, natsStatus_GetText(s), (int)jerr);
	return -1;
}

int
fpub_update(struct bus *b, struct model *m, const char *user, const char *alarm,
    const char *status, const char *ts)
{
	char payload[1024];
	int n;

	/* Test IDs are plain ASCII: no escaping needed. */
	n = snprintf(payload, sizeof(payload),
	    "{\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"%s\",\"ChangedAt\":\"%s\"}",
	    alarm, user, status, ts);
	if (n < 0 || (size_t)n >= sizeof(payload)) {
		harness_seterr("update payload for %s/%s too long", user, alarm);
		return -1;
	}
	if (fpub_raw(b, "AlarmStatusChanged", payload, (size_t)n) == -1)
		return -1;
	if (m == NULL)
		return 0;
	switch (model_update(m, user, alarm, model_status_parse(status), ts)) {
	case MR_INVALID:
		harness_seterr("model rejects generated update %s/%s %s %s", user, alarm, status, ts);
		return -1;
	case MR_NOMEM:
		harness_seterr("model: out of memory on an update for %s", user);
		return -1;
	default:
		return 0;
	}
}

int
fpub_request(struct bus *b, struct model *m, const char *user)
{
	char payload[512];
	int n = snprintf(payload, sizeof(payload), "{\"UserID\":\"%s\"}", user);

	if (n < 0 || (size_t)n >= sizeof(payload)) {
		harness_seterr("request payload for %s too long", user);
		return -1;
	}
	if (fpub_raw(b, "SendAlarmDigest", payload, (size_t)n) == -1)
		return -1;
	if (m != NULL && model_request(m, user, NULL) == -1) {
		harness_seterr("model: out of memory on a request for %s", user);
		return -1;
	}
	return 0;
}

/* ---- environment ---- */

int
fenv_write_config(struct fenv *e, int workers)
{
	char text[4096];
	int n;

	/*
	 * Fast restarts and no crash-loop parking: the test kills workers on
	 * purpose, often while they are still starting.
	 */
	n = snprintf(text, sizeof(text),
	    "# faulttest config for %s\n"
	    "[nats]\n"
	    "servers = %s\n"
	    "intake = jetstream\n"
	    "\n"
	    "[service]\n"
	    "state_dir = %s/state\n"
	    "log_level = info\n"
	    "workers = %d\n"
	    "shutdown_timeout = 10s\n"
	    "restart_backoff_min = 100ms\n"
	    "restart_backoff_max = 1s\n"
	    "restart_healthy = 2s\n"
	    "crash_loop_max = 1000\n"
	    "\n"
	    "[worker]\n"
	    "commit_max_ms = 20ms\n"
	    "map_size = 256M\n"
	    "\n"
	    "[http]\n"
	    "listen = \"\"\n",
	    e->tag, e->nats.url, e->dir, workers);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		harness_seterr("config text for %s too long", e->tag);
		return -1;
	}
	e->workers = workers;
	return harness_write_file(e->svc.conf, text);
}

int
fenv_alive(struct fenv *e)
{
	char st[64];

	if (harness_proc_alive(&e->svc.proc))
		return 0;
	harness_seterr("the supervisor is not running (%s); see its log %s",
	    e->svc.proc.pid > 0 ? harness_status_str(e->svc.proc.status, st, sizeof(st)) :
	    "never started", e->svc.log);
	return -1;
}

int
fenv_workers(struct fenv *e, struct harness_worker *out, int max)
{
	if (fenv_alive(e) == -1)
		return -1;
	return harness_workers(e->svc.proc.pid, out, max);
}

static int
fenv_probe(struct fenv *e, int64_t deadline)
{
	char user[96], ts[48];
	int64_t until;

	snprintf(user, sizeof(user), "probe-%s-%d", e->tag, ++e->probes);
	model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
	if (fpub_update(e->bus, NULL, user, "probe", "WARNING", ts) == -1 ||
	    fpub_request(e->bus, NULL, user) == -1)
		return -1;
	until = harness_now_ms() + 5000;
	if (until > deadline)
		until = deadline;
	for (;;) {
		int64_t slice = harness_now_ms() + 100;

		if (collector_wait_user(e->digests, user, 1, slice < until ? slice : until) == 0)
			return 0;
		if (fenv_alive(e) == -1)
			return -1;
		if (harness_now_ms() >= until) {
			harness_seterr("no digest for probe user %s within 5 s", user);
			return -1;
		}
	}
}

int
fenv_wait_ready(struct fenv *e, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char last[1024] = "";

	while (harness_now_ms() < deadline) {
		if (fenv_alive(e) == -1)
			return -1;
		if (fenv_probe(e, deadline) == 0)
			return 0;
		snprintf(last, sizeof(last), "%s", harness_err());
	}
	harness_seterr("service not answering after %lld ms (%d probes; last: %s)",
	    (long long)timeout_ms, e->probes, last);
	return -1;
}

int
fenv_start(struct fenv *e)
{
	e->down = false;
	if (harness_service_start(&e->svc) == -1)
		return -1;
	return fenv_wait_ready(e, 30000);
}

int
fenv_up(struct fenv *e, const char *tag, int workers)
{
	memset(e, 0, sizeof(*e));
	e->failures_at_start = tap_failures();
	snprintf(e->tag, sizeof(e->tag), "%s", tag);
	if (harness_tmpdir(tag, e->dir, sizeof(e->dir)) == -1)
		return -1;
	snprintf(e->svc.bin, sizeof(e->svc.bin), "%s", fault_opts.bin);
	if (harness_path(e->svc.conf, sizeof(e->svc.conf), e->dir, "alarm-supervisor.conf") == -1 ||
	    harness_path(e->svc.log, sizeof(e->svc.log), e->dir, "service.log") == -1)
		return -1;
	if (harness_nats_start(&e->nats, e->dir) == -1)
		return -1;
	if ((e->bus = bus_open(e->nats.url, true)) == NULL)
		return -1;
	if ((e->digests = collector_new(e->bus, "AlarmDigest")) == NULL)
		return -1;
	if (fenv_write_config(e, workers) == -1)
		return -1;
	return fenv_start(e);
}

int
fenv_wait_acked(struct fenv *e, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	uint64_t msgs = 0, last = 0, floor = 0, pending = 0, unacked = 0;

	for (;;) {
		jsConsumerInfo *ci = NULL;
		jsErrCode jerr = 0;

		if (bus_stream_state(e->bus, FAULT_STREAM, &msgs, &last) == 0 &&
		    js_GetConsumerInfo(&ci, bus_js(e->bus), FAULT_STREAM, FAULT_CONSUMER, NULL,
		    &jerr) == NATS_OK) {
			floor = ci->AckFloor.Stream;
			pending = ci->NumPending;
			unacked = (uint64_t)ci->NumAckPending;
			jsConsumerInfo_Destroy(ci);
			if (pending == 0 && unacked == 0 && floor >= last)
				return 0;
		}
		if (harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(50);
	}
	harness_seterr("after %lld ms stream %s ends at %llu but consumer %s acked up to %llu "
	    "(%llu undelivered, %llu unacked)", (long long)timeout_ms, FAULT_STREAM,
	    (unsigned long long)last, FAULT_CONSUMER, (unsigned long long)floor,
	    (unsigned long long)pending, (unsigned long long)unacked);
	return -1;
}

/* Shutdown is part of the contract: exit 0 on SIGTERM and leave no worker. */
static void
fenv_stop_service(struct fenv *e)
{
	struct harness_worker w[64];
	char name[64], st[64];
	int nw;

	snprintf(name, sizeof(name), "%s/sigterm_teardown", e->tag);
	if (e->svc.proc.pid <= 0 || e->svc.proc.reaped) {
		if (!e->down)
			tap_fail(name, "the supervisor was not running at teardown (%s)",
			    e->svc.proc.pid > 0 ? harness_status_str(e->svc.proc.status, st,
			    sizeof(st)) : "never started");
		goto out;
	}
	nw = harness_workers(e->svc.proc.pid, w, 64);
	if (harness_service_stop(&e->svc, 15000) == -1) {
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
	harness_proc_kill(&e->svc.proc);
	harness_kill_orphans();
}

void
fenv_down(struct fenv *e)
{
	const char *keep = getenv("FAULT_KEEP");
	bool failed;

	if (e->dir[0] == '\0')
		return;
	fenv_stop_service(e);
	tap_check_sanitizers(e->tag, e->svc.log, 300);
	failed = tap_failures() > e->failures_at_start;
	collector_free(e->digests);
	e->digests = NULL;
	bus_close(e->bus);
	e->bus = NULL;
	if (harness_nats_stop(&e->nats) == -1)
		printf("# %s: %s\n", e->tag, harness_err());
	if (failed) {
		harness_dump_tail("service log", e->svc.log, 80);
		harness_dump_tail("nats-server log", e->nats.log, 15);
	}
	if (fault_opts.keep || (failed && keep != NULL && strcmp(keep, "fail") == 0)) {
		harness_tmpdir_keep(e->dir);
		printf("# %s: kept %s (service.log, nats-server.log, state/, js/)\n", e->tag, e->dir);
	} else {
		if (failed)
			printf("# %s: FAULT_KEEP=1 (or =fail) keeps the temp dir for a look\n", e->tag);
		if (harness_tmpdir_remove(e->dir) == -1)
			printf("# %s: %s\n", e->tag, harness_err());
	}
	e->dir[0] = '\0';
}

/* ---- seeding ---- */

int
fault_seed(struct fenv *e, struct model *m, const char *prefix, int users, int alarms,
    int64_t base_sec)
{
	char user[64], alarm[32], ts[48];
	struct plan p = { 0 };
	struct rng rng;
	size_t updates;
	int rc = -1;

	rng_seed(&rng, fault_opts.seed ^ hash32(prefix, strlen(prefix)) ^ 0x5eed);
	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "%s-%04d", prefix, u);
		for (int a = 0; a < alarms; a++) {
			int times = 1 + (rng_below(&rng, 3) == 0);

			snprintf(alarm, sizeof(alarm), "alarm-%d", a);
			for (int k = 0; k < times; k++) {
				traffic_random_ts(&rng, base_sec, 6, ts, sizeof(ts));
				if (plan_update(&p, user, alarm, traffic_random_status(&rng), ts) == -1)
					goto out;
			}
		}
		if (plan_request(&p, user) == -1)
			goto out;
	}
	/* Exact repeats: the broker delivers at least once. */
	updates = p.n;
	for (size_t i = 0; i < updates / 10; i++) {
		const struct event *ev = &p.ev[rng_below(&rng, (uint32_t)updates)];

		if (!ev->request && plan_update(&p, ev->user, ev->alarm, ev->status, ev->ts) == -1)
			goto out;
	}
	plan_shuffle(&p, &rng);
	for (size_t i = 0; i < p.n; i++) {
		const struct event *ev = &p.ev[i];

		if ((ev->request ? fpub_request(e->bus, m, ev->user) :
		    fpub_update(e->bus, m, ev->user, ev->alarm, ev->status, ev->ts)) == -1)
			goto out;
	}
	/* Every seed digest in, and every seed message acked: none comes back later. */
	if (traffic_wait(m, e->digests, false, 60000, &e->svc.proc, NULL) == -1 ||
	    fenv_wait_acked(e, 30000) == -1)
		goto out;
	printf("# %s: seeded %d users x %d alarms (%zu messages, %zu digests)\n", e->tag, users,
	    alarms, p.n, model_expected_total(m));
	rc = 0;
out:
	plan_free(&p);
	return rc;
}

/* ---- the final check ---- */

static size_t
canon_entries(const char *canon)
{
	struct json_object *o = json_tokener_parse(canon);
	size_t n = 0;

	if (o != NULL && json_object_is_type(o, json_type_array))
		n = json_object_array_length(o);
	json_object_put(o);
	return n;
}

/* The test's own connection must be up (and its subscription back) before the final round. */
static int
fault_bus_ready(struct fenv *e)
{
	int64_t deadline = harness_now_ms() + 30000;

	while (bus_flush(e->bus, 2000) == -1) {
		if (harness_now_ms() >= deadline)
			return -1;
		harness_sleep_ms(100);
	}
	return 0;
}

static int
fault_final_round(struct fenv *e, struct model *m, const char *marker)
{
	size_t n = model_user_count(m);
	char ts[48];

	/* Newer than any generated traffic, so the marker is always accepted. */
	model_ts_print(harness_wall_sec() + 3 * 3600, 0, 0, 0, false, ts, sizeof(ts));
	for (size_t i = 0; i < n; i++) {
		const char *u = model_user(m, i);

		if (fpub_update(e->bus, m, u, marker, "CRITICAL", ts) == -1 ||
		    fpub_request(e->bus, m, u) == -1)
			return -1;
	}
	return 0;
}

/*
 * For the lead reading a failure: around a user's first difference, the
 * expected digests and the received ones (exact repeats dropped when allowed).
 */
static void
fault_explain(struct fenv *e, struct model *m, bool allow_dup, int max_users)
{
	enum { MAXD = 4096 };
	static const char *got[MAXD];
	size_t n = model_user_count(m);
	int shown = 0;

	for (size_t i = 0; i < n && shown < max_users; i++) {
		const char *u = model_user(m, i);
		size_t want = model_expected_count(m, u), count = collector_count(e->digests, u);
		size_t have = 0, at = 0, lo, hi;

		if (traffic_verify_user(m, e->digests, u, allow_dup) == 0)
			continue;
		for (size_t k = 0; k < count && have < MAXD; k++) {
			const char *d = collector_get(e->digests, u, k);
			bool seen = false;

			for (size_t j = 0; allow_dup && j < have && !seen; j++)
				seen = strcmp(got[j], d) == 0;
			if (!seen)
				got[have++] = d;
		}
		while (at < want && at < have && strcmp(model_expected(m, u, at), got[at]) == 0)
			at++;
		lo = at > 2 ? at - 2 : 0;
		hi = at + 3;
		printf("# user %s: first difference at digest #%zu (%zu expected, %zu received%s)\n",
		    u, at + 1, want, have, allow_dup ? " without exact repeats" : "");
		for (size_t k = lo; k < hi && k < want; k++)
			printf("#   expected #%zu %s\n", k + 1, model_expected(m, u, k));
		for (size_t k = lo; k < hi && k < have; k++)
			printf("#   received #%zu %s\n", k + 1, got[k]);
		shown++;
	}
}

void
fault_finish(struct fenv *e, struct model *m, struct load *l, bool allow_dup,
    struct fault_result *res)
{
	char name[96], marker[64], first[1200];
	size_t errors, n;
	int64_t dropped, t0;
	int rc;

	memset(res, 0, sizeof(*res));
	snprintf(name, sizeof(name), "%s/no_alarm_lost_or_wrong", e->tag);
	if (l != NULL && load_stop(l) == -1) {
		tap_fail(name, "load generator: %s", harness_err());
		return;
	}
	if (l != NULL)
		printf("# %s: load generator published %zu messages\n", e->tag, load_sent(l));
	traffic_marker(e->tag, marker, sizeof(marker));
	t0 = harness_now_ms();
	if (fault_bus_ready(e) == -1 || fault_final_round(e, m, marker) == -1) {
		tap_fail(name, "final round: %s", harness_err());
		return;
	}
	rc = traffic_wait(m, e->digests, allow_dup, 90000, &e->svc.proc, marker);
	if (rc == 0) {
		/* A wrong extra digest would come right behind the last expected one. */
		harness_sleep_ms(300);
		rc = traffic_verify(m, e->digests, allow_dup);
	}
	n = model_user_count(m);
	for (size_t i = 0; i < n; i++) {
		const char *u = model_user(m, i);
		size_t want = model_expected_count(m, u);

		for (size_t k = 0; k < want; k++)
			res->alarms_checked += canon_entries(model_expected(m, u, k));
		res->digests_checked += want;
		res->repeats += collector_count(e->digests, u) - collector_distinct(e->digests, u);
	}
	res->users = n;
	if (rc == -1) {
		char why[4096];

		snprintf(why, sizeof(why), "%s", harness_err());
		res->alarms_checked = 0;
		fault_explain(e, m, allow_dup, 3);
		tap_fail(name, "%s", why);
	} else {
		tap_ok(name);
	}
	printf("# %s: final round for %zu users took %lld ms; %zu digests (%zu alarms) compared, "
	    "%zu exact repeats received\n", e->tag, n, (long long)(harness_now_ms() - t0),
	    res->digests_checked, res->alarms_checked, res->repeats);
	snprintf(name, sizeof(name), "%s/all_acked", e->tag);
	tap_report(name, fenv_wait_acked(e, 20000));
	snprintf(name, sizeof(name), "%s/digest_json_shape", e->tag);
	errors = collector_errors(e->digests, first, sizeof(first));
	dropped = collector_dropped(e->digests);
	if (errors > 0)
		tap_fail(name, "%zu digests broke the output contract; first: %s", errors, first);
	else if (dropped != 0)
		tap_fail(name, "the test's digest subscription dropped %lld messages",
		    (long long)dropped);
	else
		tap_ok(name);
}
