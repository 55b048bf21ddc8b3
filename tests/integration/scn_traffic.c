/*
 * Scenarios about message handling at volume: many users against the
 * model, every kind of malformed input, and core (non-JetStream) intake.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "mcases.h"

/* ---- many_users ---- */

void
scn_many_users(void)
{
	struct env_config cfg = { .workers = 4 };
	struct model *m = model_new();
	struct plan p = { 0 };
	struct env e = { 0 };
	struct rng rng;
	int64_t t0;

	rng_seed(&rng, itest_opts.seed ^ 0x3a9);
	if (m == NULL || plan_users(&p, &rng, "mu", itest_scaled(200), 5) == -1 ||
	    env_up(&e, "many_users", &cfg) == -1) {
		tap_fail("many_users", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	t0 = harness_now_ms();
	if (plan_send(&p, e.bus, m) == -1) {
		tap_fail("many_users", "publishing: %s", harness_err());
		goto out;
	}
	printf("# many_users: published %zu messages in %lld ms, %zu digests expected so far\n",
	    p.n, (long long)(harness_now_ms() - t0), model_expected_total(m));
	tap_report("many_users/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	tap_report("many_users/digest_json_shape", env_check_collector(&e));
out:
	plan_free(&p);
	env_down(&e);
	model_free(m);
}

/* ---- malformed ---- */


static int
malformed_check_case(struct env *e, struct model *m, struct capture *dl,
    const struct mlist *l, const struct mcase *c)
{
	char hdr[512];
	size_t found = capture_find(dl, c->data, c->len, hdr, sizeof(hdr));

	if (c->reasons[0] == NULL && found > 0) {
		harness_seterr("valid message was dead-lettered with reason \"%s\"", hdr);
		return -1;
	}
	if (c->reasons[0] != NULL && found != mlist_bad_copies(l, c)) {
		harness_seterr("seen %zu times on AlarmDeadLetter (payload byte-exact), want %zu",
		    found, mlist_bad_copies(l, c));
		return -1;
	}
	if (c->reasons[0] != NULL && !mcase_reason_allowed(c, hdr)) {
		harness_seterr("Alarm-Reject-Reason is \"%s\", want \"%s: ...\"%s%s", hdr, c->reasons[0],
		    c->reasons[1] ? " or " : "", c->reasons[1] ? c->reasons[1] : "");
		return -1;
	}
	/* Also: it changed no state (the user's digest holds only the valid traffic). */
	return traffic_verify_user(m, e->digests, c->user, false);
}

/* Every bad payload is kept, unchanged, in the dead-letter stream. */
static int
malformed_check_stream(struct env *e, const struct mlist *l, size_t nbad)
{
	uint64_t msgs, last;
	size_t missing = 0;
	bool *seen = calloc(l->n, sizeof(bool));
	const char *first = NULL;

	if (seen == NULL || bus_stream_state(e->bus, "ALARMS_DEAD_LETTER", &msgs, &last) == -1) {
		free(seen);
		return -1;
	}
	for (uint64_t seq = 1; seq <= last && seq <= 5000; seq++) {
		char *data;
		size_t len;

		if (bus_stream_get(e->bus, "ALARMS_DEAD_LETTER", seq, &data, &len) == -1)
			continue;
		for (size_t i = 0; i < l->n; i++)
			if (l->c[i].len == len && (len == 0 || memcmp(l->c[i].data, data, len) == 0))
				seen[i] = true;
		free(data);
	}
	for (size_t i = 0; i < l->n; i++) {
		if (l->c[i].reasons[0] != NULL && !seen[i]) {
			missing++;
			first = first ? first : l->c[i].name;
		}
	}
	free(seen);
	if (missing == 0)
		return 0;
	harness_seterr("stream ALARMS_DEAD_LETTER (%llu messages) lacks %zu of %zu rejected "
	    "payloads; first: %s", (unsigned long long)msgs, missing, nbad, first);
	return -1;
}

/* Nothing but the rejected payloads reached the dead-letter subject. */
static int
malformed_check_extras(struct capture *dl, const struct mlist *l)
{
	size_t n = capture_count(dl);

	for (size_t i = 0; i < n; i++) {
		const char *data, *hdr;
		size_t len;
		bool known = false;

		if (capture_get(dl, i, &data, &len, &hdr) == -1)
			continue;
		for (size_t j = 0; j < l->n && !known; j++)
			known = l->c[j].reasons[0] != NULL && l->c[j].len == len &&
			    (len == 0 || memcmp(l->c[j].data, data, len) == 0);
		if (!known) {
			harness_seterr("unexpected dead letter (reason \"%s\"): %.200s", hdr, data);
			return -1;
		}
	}
	return 0;
}


/*
 * Every rejection was counted, once: the master's title (refreshed each
 * second) comes to show exactly the number of rejected cases.
 */
static int
malformed_check_counted(struct env *e, size_t nbad)
{
	int64_t deadline = harness_now_ms() + 5000;
	unsigned long long bad = 0;

	while (harness_now_ms() < deadline) {
		if (harness_title_number(e->svc.proc.pid, " bad=", &bad) == 0 && bad >= nbad)
			break;
		harness_sleep_ms(100);
	}
	if (bad == nbad)
		return 0;
	harness_seterr("master title says bad=%llu, want %zu (one per rejected case)", bad, nbad);
	return -1;
}

static void
malformed_run(struct env *e, struct mlist *l, struct model *m, struct capture *dl)
{
	struct harness_worker w[64];
	size_t nbad = 0;
	char name[256], unsettled[1024] = "";
	int64_t deadline;

	for (size_t i = 0; i < l->n; i++) {
		nbad += l->c[i].reasons[0] != NULL;
		if (mcase_send(e, m, &l->c[i], l->base, i) == -1) {
			tap_fail("malformed", "publishing case %s: %s", l->c[i].name, harness_err());
			return;
		}
	}
	deadline = harness_now_ms() + 60000;
	while (capture_wait(dl, nbad, harness_now_ms() + 250) == -1) {
		if (harness_now_ms() >= deadline || env_alive(e) == -1) {
			printf("# malformed: dead letters: %s\n", harness_err());
			break;
		}
	}
	if (traffic_wait(m, e->digests, false, deadline - harness_now_ms(), &e->svc.proc,
	        NULL) == -1)
		printf("# malformed: digests: %s\n", harness_err());
	/* Everything acked and filed: a wrong extra digest or dead letter would be here. */
	if (env_settle(e, dl, harness_now_ms() + 60000) == -1) {
		snprintf(unsettled, sizeof(unsettled), "%s", harness_err());
		printf("# malformed: the service did not settle: %s\n", unsettled);
	}
	/* Per-case results would only repeat that the service died: say it once. */
	if (env_alive(e) == -1) {
		tap_fail("malformed/service_still_up", "%s (cases not checked)", harness_err());
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		snprintf(name, sizeof(name), "malformed/%s", l->c[i].name);
		/* Every case is sent (they share the dead-letter checks); "malformed/CASE" reports one. */
		if (itest_selected("malformed", l->c[i].name))
			tap_report(name, env_settled_rc(malformed_check_case(e, m, dl, l, &l->c[i]),
			    unsettled));
	}
	tap_report("malformed/only_rejected_payloads_dead_lettered",
	    env_settled_rc(malformed_check_extras(dl, l), unsettled));
	tap_report("malformed/dead_letter_stream_keeps_copies", malformed_check_stream(e, l, nbad));
	tap_report("malformed/rejections_counted", malformed_check_counted(e, nbad));
	tap_report("malformed/digest_json_shape", env_check_collector(e));
	if (env_alive(e) == 0 && harness_workers(e->svc.proc.pid, w, 64) != e->cfg.workers)
		harness_seterr("worker count is not %d any more", e->cfg.workers);
	tap_report("malformed/service_still_up", env_alive(e) == 0 &&
	    harness_workers(e->svc.proc.pid, w, 64) == e->cfg.workers ? 0 : -1);
}

void
scn_malformed(void)
{
	struct env_config cfg = { .workers = 2 };
	struct mlist l = { .base = (harness_wall_sec() - 3600) / 60 * 60 };
	struct model *m = model_new();
	struct capture *dl = NULL;
	struct env e = { 0 };

	if (m == NULL || mlist_build_shape(&l) == -1 || mlist_build_timestamps(&l) == -1 ||
	    mlist_build_ambiguous(&l) == -1 || mlist_build_limits(&l, 65536) == -1) {
		tap_fail("malformed", "building cases: out of memory");
		goto out;
	}
	if (env_up(&e, "malformed", &cfg) == -1 ||
	    (dl = capture_new(e.bus, "AlarmDeadLetter", "Alarm-Reject-Reason")) == NULL) {
		tap_fail("malformed", "environment: %s", harness_err());
		goto out;
	}
	malformed_run(&e, &l, m, dl);
out:
	capture_free(dl);
	env_down(&e);
	mlist_free(&l);
	model_free(m);
}

/* ---- core_intake ---- */

static int
core_basic(struct env *e, struct model *m)
{
	char ts[48];
	struct event up = { .request = false, .user = "core-basic", .alarm = "a1",
		.status = "CRITICAL", .ts = ts };
	struct event rq = { .request = true, .user = "core-basic" };

	model_ts_print(harness_wall_sec() - 60, 250000000, 120, 3, false, ts, sizeof(ts));
	if (event_send(&up, e->bus, m) == -1 || event_send(&rq, e->bus, m) == -1 ||
	    bus_flush(e->bus, 10000) == -1)
		return -1;
	if (env_wait_user(e, "core-basic", 1, harness_now_ms() + 30000) == -1)
		return -1;
	return traffic_verify_user(m, e->digests, "core-basic", false);
}

/* Update then request, back to back, for many users over one connection. */
static int
core_many(struct env *e, struct model *m, int users)
{
	char user[64], ts[48];

	for (int i = 0; i < users; i++) {
		struct event up = { .request = false, .user = user, .alarm = "a1",
			.status = "WARNING", .ts = ts };
		struct event rq = { .request = true, .user = user };

		snprintf(user, sizeof(user), "core-%04d", i);
		model_ts_print(harness_wall_sec() - 600 + i, 0, 0, 0, false, ts, sizeof(ts));
		if (event_send(&up, e->bus, m) == -1 || event_send(&rq, e->bus, m) == -1)
			return -1;
	}
	if (bus_flush(e->bus, 10000) == -1 ||
	    traffic_wait(m, e->digests, false, 60000, &e->svc.proc, NULL) == -1 ||
	    env_settle(e, NULL, harness_now_ms() + 30000) == -1)
		return -1;
	return traffic_verify(m, e->digests, false);
}

void
scn_core_intake(void)
{
	struct env_config cfg = { .workers = 2, .core = true };
	struct model *m = model_new();
	struct env e = { 0 };

	if (m == NULL || env_up(&e, "core_intake", &cfg) == -1) {
		tap_fail("core_intake", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	tap_report("core_intake/basic_digest", core_basic(&e, m));
	tap_report("core_intake/update_then_request_many_users",
	    core_many(&e, m, itest_scaled(200)));
	tap_report("core_intake/digest_json_shape", env_check_collector(&e));
out:
	env_down(&e);
	model_free(m);
}
