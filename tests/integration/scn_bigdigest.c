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

/* ---- undeliverable_digest ---- */

#define UD_MAX_PAYLOAD 4096

/*
 * An update near max_payload whose digest cannot fit in one message even
 * alone: a 480-byte AlarmID of \u0001 (2880 bytes as JSON; the digest
 * escapes it the same way) and a UserID padded the same way.  Published
 * on core NATS, without the acked publisher's header, so the input itself
 * still fits.  *user gets the decoded UserID.
 */
static char *
huge_update(const char *status, const char *ts, char *user, size_t ucap, size_t *len)
{
	size_t cap = UD_MAX_PAYLOAD + 1, n = 0, u = 0;
	char *s = malloc(cap);

	if (s == NULL)
		return NULL;
	n += (size_t)snprintf(s + n, cap - n, "{\"AlarmID\":\"");
	for (int i = 0; i < 480; i++)
		n += (size_t)snprintf(s + n, cap - n, "\\u0001");
	n += (size_t)snprintf(s + n, cap - n, "\",\"Status\":\"%s\",\"ChangedAt\":\"%s\",\"UserID\":\"ud-huge-",
	    status, ts);
	u = (size_t)snprintf(user, ucap, "ud-huge-");
	/* Pad the UserID up to 20 bytes under the limit: its digest is ~70 bytes bigger. */
	while (n + 6 + 2 <= UD_MAX_PAYLOAD - 20 && u + 1 < ucap) {
		n += (size_t)snprintf(s + n, cap - n, "\\u0001");
		user[u++] = '\x01';
	}
	user[u] = '\0';
	n += (size_t)snprintf(s + n, cap - n, "\"}");
	*len = n;
	return s;
}

/* The huge user's request: its UserID escaped as in huge_update. */
static char *
huge_request(const char *user, size_t *len)
{
	size_t cap = UD_MAX_PAYLOAD + 1, n = 0;
	char *s = malloc(cap);

	if (s == NULL)
		return NULL;
	n += (size_t)snprintf(s + n, cap - n, "{\"UserID\":\"");
	for (const char *p = user; *p != '\0'; p++)
		n += (size_t)(*p == '\x01' ? snprintf(s + n, cap - n, "\\u0001") :
		    snprintf(s + n, cap - n, "%c", *p));
	n += (size_t)snprintf(s + n, cap - n, "\"}");
	*len = n;
	return s;
}

static int
core_publish(struct env *e, const char *subject, char *data, size_t len)
{
	natsStatus s;

	if (data == NULL) {
		harness_seterr("out of memory building a message for %s", subject);
		return -1;
	}
	s = natsConnection_Publish(bus_conn(e->bus), subject, data, (int)len);
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(bus_conn(e->bus), 5000);
	free(data);
	if (s != NATS_OK) {
		harness_seterr("publishing %zu bytes to %s: %s", len, subject, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* The huge user's digest is refused: the log says why and what to raise max_payload to. */
static int
check_logged(struct env *e)
{
	char *log = harness_read_file(e->svc.log, NULL);
	const char *at;
	int rc = -1;

	if (log == NULL)
		return -1;
	if ((at = strstr(log, "cannot be published")) == NULL)
		harness_seterr("no \"cannot be published\" line in the service log");
	else if (strstr(at, "raise it to") == NULL)
		harness_seterr("the \"cannot be published\" line does not say what to raise max_payload to");
	else if (strstr(at + 1, "cannot be published") != NULL)
		harness_seterr("more than one \"cannot be published\" line: the digest was retried");
	else
		rc = 0;
	free(log);
	return rc;
}

/*
 * Its alarms stay undelivered and the user is not stuck: once the huge
 * alarm is CLEARED, its next digest holds just the new small alarm.
 */
static int
check_recovers(struct env *e, const char *user, int64_t base)
{
	char ts[48], huge_ts[48];
	struct model_entry me = { "small-1", 7, "WARNING", ts };
	const char *got;
	char *want;
	size_t len;
	int rc = -1;

	model_ts_print(base + 10, 0, 0, 0, false, huge_ts, sizeof(huge_ts));
	model_ts_print(base + 11, 0, 0, 0, false, ts, sizeof(ts));
	char same[256], *data;

	/* (Arguments are evaluated in no set order: build the message first.) */
	data = huge_update("CLEARED", huge_ts, same, sizeof(same), &len);
	if (core_publish(e, "AlarmStatusChanged", data, len) == -1 ||
	    bus_publish_update(e->bus, user, "small-1", "WARNING", ts) == -1)
		return -1;
	data = huge_request(user, &len);
	if (core_publish(e, "SendAlarmDigest", data, len) == -1)
		return -1;
	if (env_wait_user(e, user, 1, harness_now_ms() + 30000) == -1)
		return -1;
	harness_sleep_ms(300);
	if ((want = model_canon(&me, 1)) == NULL) {
		harness_seterr("out of memory");
		return -1;
	}
	if (collector_count(e->digests, user) != 1)
		harness_seterr("the huge user got %zu digests, want 1", collector_count(e->digests, user));
	else if (strcmp((got = collector_get(e->digests, user, 0)), want) != 0)
		harness_seterr("the huge user's digest is %.200s, want %s", got, want);
	else
		rc = 0;
	free(want);
	return rc;
}

/* Others' traffic, the huge user's update and request, more traffic: one worker for all. */
static int
send_around_huge(struct env *e, struct model *m, const struct plan *p1, const struct plan *p2,
    const char *ts, char *user, size_t ucap)
{
	char *data;
	size_t len;

	if (plan_send(p1, e->bus, m) == -1)
		return -1;
	data = huge_update("WARNING", ts, user, ucap, &len);
	if (core_publish(e, "AlarmStatusChanged", data, len) == -1)
		return -1;
	data = huge_request(user, &len);
	if (core_publish(e, "SendAlarmDigest", data, len) == -1)
		return -1;
	return plan_send(p2, e->bus, m);
}

void
scn_undeliverable_digest(void)
{
	struct env_config cfg = { .workers = 1, .nats_conf = "max_payload: 4096\n",
		.extra_conf = "\n[limits]\nmax_id_bytes = 480\n" };
	struct model *m = model_new();
	struct plan p1 = { 0 }, p2 = { 0 };
	struct env e = { 0 };
	struct rng rng;
	int64_t base = harness_wall_sec() - 7200;
	char user[256], ts[48];

	rng_seed(&rng, itest_opts.seed ^ 0x0dd);
	if (m == NULL || add_small_users(&p1, &rng, 20, base, 1) == -1 ||
	    add_small_users(&p2, &rng, 20, base + 60, 1) == -1 ||
	    env_up(&e, "undeliverable_digest", &cfg) == -1) {
		tap_fail("undeliverable_digest", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	plan_shuffle(&p1, &rng);
	plan_shuffle(&p2, &rng);
	model_ts_print(base, 0, 0, 0, false, ts, sizeof(ts));
	if (send_around_huge(&e, m, &p1, &p2, ts, user, sizeof(user)) == -1) {
		tap_fail("undeliverable_digest", "publishing: %s", harness_err());
		goto out;
	}
	tap_report("undeliverable_digest/others_exact", env_finish_and_verify(&e, m, NULL, false));
	tap_report("undeliverable_digest/logged_once_with_the_fix", check_logged(&e));
	tap_report("undeliverable_digest/user_gets_next_digest", check_recovers(&e, user, base));
	tap_report("undeliverable_digest/digest_json_shape", env_check_collector(&e));
out:
	plan_free(&p1);
	plan_free(&p2);
	env_down(&e);
	model_free(m);
}
