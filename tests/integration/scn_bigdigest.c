/*
 * big_digest: PROTOCOL.md "Limits", digest parts.  A nats-server with a
 * small max_payload (64 KiB), two users whose digests are several times
 * that (one with 200-byte alarm IDs, one with UUIDs), mixed into other
 * users' traffic.  Their digests must come in parts ("Digest-Part: k/n",
 * each a valid digest within max_payload with its headers) that join into
 * exactly the model's digest, and every other user's digests stay exact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define BD_MAX_PAYLOAD 65536

/* A long alarm ID: 200 bytes, so one part holds about 230 entries. */
static void
long_id(int i, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "bd-alarm-%05d-", i);

	for (; n < 200 && (size_t)n + 1 < cap; n++)
		buf[n] = (char)('a' + (i + n) % 26);
	buf[n] = '\0';
}

/* A UUID-shaped alarm ID (the common case): about 470 entries a part. */
static void
uuid_id(struct rng *rng, int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)i,
	    (unsigned)rng_below(rng, 0x10000), (unsigned)rng_below(rng, 0x1000),
	    (unsigned)rng_below(rng, 0x1000), (unsigned long long)rng_next(rng) & 0xffffffffffffULL);
}

/* Other users: a few alarms, a few updates each, requests now and then. */
static int
add_small_users(struct plan *p, struct rng *rng, int users, int64_t base, int requests)
{
	char user[32], alarm[16], ts[48];

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "bd-small-%03d", u);
		for (int a = 0; a < 4; a++) {
			snprintf(alarm, sizeof(alarm), "alarm-%d", a);
			for (int k = 0; k < 2; k++) {
				traffic_random_ts(rng, base, 60, ts, sizeof(ts));
				if (plan_update(p, user, alarm, traffic_random_status(rng), ts) == -1)
					return -1;
			}
		}
		for (int k = 0; k < requests; k++)
			if (plan_request(p, user) == -1)
				return -1;
	}
	return 0;
}

/*
 * Phase 1: every big alarm raised (WARNING), among the small users'
 * traffic; then a request for each big user: one digest several times
 * max_payload.  Phase 2: a third of the big alarms turn CRITICAL, with
 * requests of big and small users mixed in anywhere.
 */
static int
big_digest_plan(struct plan *p1, struct plan *p2, struct rng *rng, int nlong, int nuuid)
{
	int64_t base = harness_wall_sec() - 7200;
	char **ids = calloc((size_t)(nlong + nuuid), sizeof(*ids));
	char id[256], ts[48];
	int rc = -1;

	if (ids == NULL)
		return -1;
	for (int i = 0; i < nlong + nuuid; i++) {
		if (i < nlong)
			long_id(i, id, sizeof(id));
		else
			uuid_id(rng, i, id, sizeof(id));
		if ((ids[i] = strdup(id)) == NULL)
			goto out;
	}
	for (int i = 0; i < nlong + nuuid; i++) {
		traffic_random_ts(rng, base, 600, ts, sizeof(ts));
		if (plan_update(p1, i < nlong ? "bd-big-long" : "bd-big-uuid", ids[i], "WARNING", ts) == -1)
			goto out;
	}
	if (add_small_users(p1, rng, 40, base, 2) == -1)
		goto out;
	plan_shuffle(p1, rng);
	if (plan_request(p1, "bd-big-long") == -1 || plan_request(p1, "bd-big-uuid") == -1)
		goto out;
	for (int i = 0; i < nlong + nuuid; i += 3) {
		traffic_random_ts(rng, base + 3600, 600, ts, sizeof(ts));
		if (plan_update(p2, i < nlong ? "bd-big-long" : "bd-big-uuid", ids[i], "CRITICAL", ts) == -1)
			goto out;
	}
	if (add_small_users(p2, rng, 40, base + 3600, 2) == -1 ||
	    plan_request(p2, "bd-big-long") == -1 || plan_request(p2, "bd-big-uuid") == -1)
		goto out;
	plan_shuffle(p2, rng);
	rc = 0;
out:
	for (int i = 0; i < nlong + nuuid; i++)
		free(ids[i]);
	free(ids);
	return rc;
}

/* The split digests arrived, within the limit, none left half-way. */
static int
check_parts(struct env *e)
{
	struct collector_parts cp;

	collector_get_parts(e->digests, &cp);
	printf("# big_digest: %zu digests came in %zu parts, at most %zu parts each; largest "
	    "message %zu bytes with headers (max_payload %d)\n", cp.split, cp.parts, cp.max_n,
	    cp.biggest, BD_MAX_PAYLOAD);
	if (cp.split < 2 || cp.max_n < 3) {
		harness_seterr("%zu digests came in parts, at most %zu parts each; want the two big "
		    "users' first digests in 3 parts or more", cp.split, cp.max_n);
		return -1;
	}
	if (cp.biggest > BD_MAX_PAYLOAD) {
		harness_seterr("a message of %zu bytes, over max_payload %d", cp.biggest, BD_MAX_PAYLOAD);
		return -1;
	}
	if (cp.abandoned > 0) {
		harness_seterr("%zu split digests stopped before their last part", cp.abandoned);
		return -1;
	}
	return 0;
}

/* No digest skipped as unpublishable, no publish retried. */
static int
check_log(struct env *e)
{
	static const char *const bad[] = { "cannot be published", "will redo the batch", NULL };
	char *log = harness_read_file(e->svc.log, NULL);

	if (log == NULL)
		return -1;
	for (int i = 0; bad[i] != NULL; i++) {
		const char *at = strstr(log, bad[i]);

		if (at != NULL) {
			const char *bol = at;

			while (bol > log && bol[-1] != '\n')
				bol--;
			harness_seterr("the service log says \"%s\": %.300s", bad[i], bol);
			free(log);
			return -1;
		}
	}
	free(log);
	return 0;
}

void
scn_big_digest(void)
{
	struct env_config cfg = { .workers = 2, .nats_conf = "max_payload: 65536\n" };
	struct model *m = model_new();
	struct plan p1 = { 0 }, p2 = { 0 };
	struct env e = { 0 };
	struct rng rng;
	int64_t t0;

	rng_seed(&rng, itest_opts.seed ^ 0xb16d);
	if (m == NULL || big_digest_plan(&p1, &p2, &rng, itest_scaled(1000), itest_scaled(1500)) == -1 ||
	    env_up(&e, "big_digest", &cfg) == -1) {
		tap_fail("big_digest", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	if (natsConnection_GetMaxPayload(bus_conn(e.bus)) != BD_MAX_PAYLOAD) {
		tap_fail("big_digest", "setup: nats-server runs with max_payload %lld, want %d",
		    (long long)natsConnection_GetMaxPayload(bus_conn(e.bus)), BD_MAX_PAYLOAD);
		goto out;
	}
	t0 = harness_now_ms();
	if (plan_send(&p1, e.bus, m) == -1 || plan_send(&p2, e.bus, m) == -1) {
		tap_fail("big_digest", "publishing: %s", harness_err());
		goto out;
	}
	printf("# big_digest: published %zu messages in %lld ms, %zu digests expected so far\n",
	    p1.n + p2.n, (long long)(harness_now_ms() - t0), model_expected_total(m));
	tap_report("big_digest/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	tap_report("big_digest/digest_json_shape", env_check_collector(&e));
	tap_report("big_digest/parts_within_max_payload", check_parts(&e));
	tap_report("big_digest/no_publish_failure_logged", check_log(&e));
out:
	plan_free(&p1);
	plan_free(&p2);
	env_down(&e);
	model_free(m);
}
