/*
 * ctl: the operator's tool, alarmctl, against the real service.
 *
 * With max_alarms_per_user = 2, five users each send two alarms that
 * apply and two that the workers dead-letter (too_many_alarms), and one
 * malformed message is dead-lettered by intake.  Then:
 *
 *   dead_letter_list   `dead-letter list --json` shows every copy with its
 *                      reason and user; --reason selects the ten
 *   reload_reports     the limit raised to 10 in the file; `reload --json`
 *                      reports limits.max_alarms_per_user applied
 *   replay             `dead-letter replay --reason too_many_alarms`:
 *                      ten replayed, the malformed one not matching
 *   replayed_apply     each user's next digest holds exactly its two
 *                      formerly rejected alarms (the model's digest)
 *   replay_again       a second replay publishes nothing: ten skipped as
 *                      already replayed (Nats-Msg-Id within the window)
 *   exactly_once       the final round: every digest ever published equals
 *                      the model's, so nothing applied twice
 *   reload_bad_file    `reload` of an invalid file: exit 1, the parser's
 *                      error on stderr, the service still up and serving
 *   stop               `stop`: exit 0 once the drain is over, the pid gone
 *                      and the lock free; teardown then sees exit 0
 */
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "itest.h"

#define CTL_USERS 5
#define CTL_DL_STREAM "ALARMS_DEAD_LETTER"
#define CTL_LIMIT_LOW "\n[limits]\nmax_alarms_per_user = 2\n"
#define CTL_LIMIT_HIGH "\n[limits]\nmax_alarms_per_user = 10\n"

struct ctl_run {
	int status;
	char *out;      /* stdout */
	char *err;      /* stderr */
	json_object *json;
};

static void
ctl_run_free(struct ctl_run *r)
{
	free(r->out);
	free(r->err);
	json_object_put(r->json);
	memset(r, 0, sizeof(*r));
}

/* alarmctl sits beside the supervisor binary. */
static void
ctl_bin(char *buf, size_t cap)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", itest_opts.bin);
	snprintf(buf, cap, "%s/alarmctl", dirname(copy));
}

/*
 * alarmctl -c CONF ARGS... (NULL-terminated), stdout and stderr kept
 * apart; with json, stdout parsed.  0 when it ran (whatever its exit), -1
 * (harness_err) when it could not.
 */
static int
ctl_run(struct env *e, struct ctl_run *r, bool json, ...)
{
	char bin[PATH_MAX], outp[PATH_MAX], errp[PATH_MAX], cmd[8192];
	const char *a;
	size_t o;
	va_list ap;

	memset(r, 0, sizeof(*r));
	ctl_bin(bin, sizeof(bin));
	if (harness_path(outp, sizeof(outp), e->dir, "ctl.out") == -1 ||
	    harness_path(errp, sizeof(errp), e->dir, "ctl.err") == -1)
		return -1;
	/* A shell only to split the streams; every word is ours, no quoting needed beyond ''. */
	o = (size_t)snprintf(cmd, sizeof(cmd), "exec '%s' -c '%s'%s", bin, e->svc.conf,
	    json ? " --json" : "");
	va_start(ap, json);
	while ((a = va_arg(ap, const char *)) != NULL && o < sizeof(cmd))
		o += (size_t)snprintf(cmd + o, sizeof(cmd) - o, " '%s'", a);
	va_end(ap);
	if (o < sizeof(cmd))
		o += (size_t)snprintf(cmd + o, sizeof(cmd) - o, " 2>'%s'", errp);
	if (o >= sizeof(cmd)) {
		harness_seterr("alarmctl command line longer than %zu bytes", sizeof(cmd));
		return -1;
	}
	char *const argv[] = { "/bin/sh", "-c", cmd, NULL };
	if (harness_run(argv, outp, 120000, &r->status) == -1)
		return -1;
	r->out = harness_read_file(outp, NULL);
	r->err = harness_read_file(errp, NULL);
	if (r->out == NULL || r->err == NULL) {
		ctl_run_free(r);
		return -1;
	}
	printf("# alarmctl%s ...: %s%s", json ? " --json" : "", r->out, r->err);
	if (json && WIFEXITED(r->status) && (r->json = json_tokener_parse(r->out)) == NULL) {
		harness_seterr("alarmctl printed no JSON: %.200s%.200s", r->out, r->err);
		ctl_run_free(r);
		return -1;
	}
	return 0;
}

static bool
ctl_exit(const struct ctl_run *r, int code)
{
	return WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

static int64_t
ctl_int(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static const char *
ctl_str(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
}

static void
ctl_user(char *buf, size_t cap, int u)
{
	snprintf(buf, cap, "ctl-user-%02d", u);
}

/* Wait until the dead-letter stream holds n messages. */
static int
ctl_wait_dead_letters(struct env *e, uint64_t n, int64_t deadline)
{
	uint64_t msgs = 0, last = 0;

	while (harness_now_ms() < deadline) {
		if (bus_stream_state(e->bus, CTL_DL_STREAM, &msgs, &last) == 0 && msgs >= n)
			return msgs == n ? 0 : (harness_seterr("%llu dead letters, want %llu",
			    (unsigned long long)msgs, (unsigned long long)n), -1);
		harness_sleep_ms(50);
	}
	harness_seterr("%llu dead letters after the wait, want %llu", (unsigned long long)msgs,
	    (unsigned long long)n);
	return -1;
}

/* Request every user's digest, recorded in the model; wait for the count each should have. */
static int
ctl_request_all(struct env *e, struct model *m)
{
	char user[64];

	for (int u = 0; u < CTL_USERS; u++) {
		ctl_user(user, sizeof(user), u);
		if (model_request(m, user, NULL) == -1 || bus_publish_request(e->bus, user) == -1)
			return -1;
	}
	for (int u = 0; u < CTL_USERS; u++) {
		ctl_user(user, sizeof(user), u);
		if (env_wait_user(e, user, model_expected_count(m, user), harness_now_ms() + 30000) == -1)
			return -1;
	}
	return 0;
}

/* Alarms a0, a1 apply; a2, a3 are over the limit of 2: dead-lettered. */
static int
ctl_send(struct env *e, struct model *m, char ts[CTL_USERS][4][48])
{
	static const char *const st[] = { "WARNING", "CRITICAL", "WARNING", "CRITICAL" };
	char user[64], alarm[16];

	for (int u = 0; u < CTL_USERS; u++) {
		ctl_user(user, sizeof(user), u);
		for (int a = 0; a < 4; a++) {
			snprintf(alarm, sizeof(alarm), "a%d", a);
			model_ts_print(harness_wall_sec() - 600 + u * 10 + a, 0, 0, 0, false, ts[u][a], 48);
			if (bus_publish_update(e->bus, user, alarm, st[a], ts[u][a]) == -1)
				return -1;
			if (a < 2 && model_update(m, user, alarm, model_status_parse(st[a]), ts[u][a]) != MR_NEW) {
				harness_seterr("model refused %s/%s", user, alarm);
				return -1;
			}
		}
	}
	return bus_publish(e->bus, "AlarmStatusChanged", "{not json", 9);
}

static void
ctl_check_list(struct env *e)
{
	struct ctl_run all, sel, since;
	size_t n, found = 0;
	int bad = 0;
	char why[512] = "";

	memset(&sel, 0, sizeof(sel));
	memset(&since, 0, sizeof(since));
	if (ctl_run(e, &all, true, "dead-letter", "list", NULL) == -1 ||
	    ctl_run(e, &sel, true, "dead-letter", "list", "--reason", "too_many_alarms", NULL) == -1 ||
	    ctl_run(e, &since, true, "dead-letter", "list", "--since", "1h", "--reason", "bad_json", NULL) == -1) {
		tap_fail("ctl/dead_letter_list", "%s", harness_err());
		goto out;
	}
	if (!ctl_exit(&all, 0) || !ctl_exit(&sel, 0) || !ctl_exit(&since, 0) ||
	    !json_object_is_type(all.json, json_type_array) ||
	    !json_object_is_type(sel.json, json_type_array) ||
	    !json_object_is_type(since.json, json_type_array)) {
		tap_fail("ctl/dead_letter_list", "alarmctl dead-letter list failed: %s%s%s", all.err,
		    sel.err, since.err);
		goto out;
	}
	n = json_object_array_length(all.json);
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(all.json, i);
		const char *reason = ctl_str(it, "reason"), *user = ctl_str(it, "user");

		if (strcmp(reason, "too_many_alarms") == 0 && strncmp(user, "ctl-user-", 9) == 0 &&
		    strcmp(ctl_str(it, "subject"), "AlarmStatusChanged") == 0)
			found++;
		else if (strcmp(reason, "too_many_alarms") == 0 || *user != '\0')
			bad++;
	}
	if (n != 2 * CTL_USERS + 1)
		snprintf(why, sizeof(why), "%zu dead letters listed, want %d", n, 2 * CTL_USERS + 1);
	else if (found != 2 * CTL_USERS || bad != 0)
		snprintf(why, sizeof(why), "%zu listed as too_many_alarms of a ctl-user on AlarmStatusChanged "
		    "(want %d), %d other entries look wrong", found, 2 * CTL_USERS, bad);
	else if (json_object_array_length(sel.json) != 2 * CTL_USERS)
		snprintf(why, sizeof(why), "--reason too_many_alarms listed %zu, want %d",
		    json_object_array_length(sel.json), 2 * CTL_USERS);
	else if (json_object_array_length(since.json) != 1 ||
	    strcmp(ctl_str(json_object_array_get_idx(since.json, 0), "reason"), "bad_json") != 0)
		snprintf(why, sizeof(why), "--since 1h --reason bad_json listed %zu, want the one",
		    json_object_array_length(since.json));
	if (*why != '\0')
		tap_fail("ctl/dead_letter_list", "%s", why);
	else
		tap_ok("ctl/dead_letter_list");
out:
	ctl_run_free(&all);
	ctl_run_free(&sel);
	ctl_run_free(&since);
}

static void
ctl_check_reload(struct env *e, struct env_config *cfg)
{
	struct ctl_run r;
	json_object *ap;
	bool applied = false;

	cfg->extra_conf = CTL_LIMIT_HIGH;
	if (env_write_config(e, cfg) == -1 || ctl_run(e, &r, true, "reload", NULL) == -1) {
		tap_fail("ctl/reload_reports", "%s", harness_err());
		return;
	}
	if (json_object_object_get_ex(r.json, "applied", &ap))
		for (size_t i = 0; i < json_object_array_length(ap); i++)
			applied |= strcmp(json_object_get_string(json_object_array_get_idx(ap, i)),
			    "limits.max_alarms_per_user") == 0;
	if (!ctl_exit(&r, 0) || !applied)
		tap_fail("ctl/reload_reports", "exit %d, limits.max_alarms_per_user %s: %s%s",
		    WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1, applied ? "applied" : "not reported",
		    r.out, r.err);
	else
		tap_ok("ctl/reload_reports");
	ctl_run_free(&r);
}

/* `dead-letter replay --reason too_many_alarms`: 1 if it went as want_replayed/want_dup say. */
static int
ctl_replay(struct env *e, const char *name, int64_t want_replayed, int64_t want_dup)
{
	struct ctl_run r;
	json_object *sk = NULL;
	int64_t replayed, dup = -1, nm = -1;
	int rc = -1;

	if (ctl_run(e, &r, true, "dead-letter", "replay", "--reason", "too_many_alarms", NULL) == -1) {
		tap_fail(name, "%s", harness_err());
		return -1;
	}
	replayed = ctl_int(r.json, "replayed");
	if (json_object_object_get_ex(r.json, "skipped_by_cause", &sk)) {
		dup = ctl_int(sk, "already_replayed");
		nm = ctl_int(sk, "not_matching");
	}
	/* The malformed copy never matches; a replay's own rejects would add to the stream. */
	if (!ctl_exit(&r, 0) || replayed != want_replayed || dup != want_dup || nm != 1)
		tap_fail(name, "replayed %lld (want %lld), already replayed %lld (want %lld), not "
		    "matching %lld (want 1): %s%s", (long long)replayed, (long long)want_replayed,
		    (long long)dup, (long long)want_dup, (long long)nm, r.out, r.err);
	else {
		tap_ok(name);
		rc = 0;
	}
	ctl_run_free(&r);
	return rc;
}

static void
ctl_check_bad_reload(struct env *e, struct env_config *cfg)
{
	struct env_config bad = *cfg;
	struct ctl_run r;

	bad.bad_workers = "banana";
	if (env_write_config(e, &bad) == -1 || ctl_run(e, &r, false, "reload", NULL) == -1) {
		tap_fail("ctl/reload_bad_file", "%s", harness_err());
		return;
	}
	if (!ctl_exit(&r, 1) || strstr(r.err, "reload rejected") == NULL || strstr(r.err, "banana") == NULL)
		tap_fail("ctl/reload_bad_file", "want exit 1 and the error naming \"banana\" on stderr: "
		    "status %d, %s%s", r.status, r.out, r.err);
	else if (env_alive(e) == -1 || env_small_traffic(e, "ctl-after-bad", 0xc71) == -1)
		tap_fail("ctl/reload_bad_file", "the service after the rejected reload: %s", harness_err());
	else
		tap_ok("ctl/reload_bad_file");
	ctl_run_free(&r);
	/* Put the good file back: teardown and anyone after read it. */
	if (env_write_config(e, cfg) == -1)
		printf("# ctl: %s\n", harness_err());
}

static void
ctl_check_stop(struct env *e)
{
	struct ctl_run r;
	pid_t pid = e->svc.proc.pid;

	if (ctl_run(e, &r, false, "stop", NULL) == -1) {
		tap_fail("ctl/stop", "%s", harness_err());
		return;
	}
	/* It returns once the supervisor is gone: a zombie of ours until teardown reaps it. */
	if (!ctl_exit(&r, 0) || strstr(r.out, "stopped after") == NULL)
		tap_fail("ctl/stop", "status %d: %s%s", r.status, r.out, r.err);
	else if (harness_pid_alive(pid))
		tap_fail("ctl/stop", "alarmctl stop returned but supervisor pid %ld still runs", (long)pid);
	else
		tap_ok("ctl/stop");
	ctl_run_free(&r);
}

void
scn_ctl(void)
{
	struct env_config cfg = { .workers = 2, .extra_conf = CTL_LIMIT_LOW };
	static char ts[CTL_USERS][4][48];
	struct model *m = model_new();
	struct env e = { 0 };
	char user[64], bin[PATH_MAX];

	ctl_bin(bin, sizeof(bin));
	if (m == NULL || access(bin, X_OK) == -1) {
		tap_fail("ctl/environment", "%s: %s", bin, m == NULL ? "out of memory" : "not executable");
		goto out;
	}
	if (env_up(&e, "ctl", &cfg) == -1 || ctl_send(&e, m, ts) == -1 || ctl_request_all(&e, m) == -1 ||
	    ctl_wait_dead_letters(&e, 2 * CTL_USERS + 1, harness_now_ms() + 30000) == -1) {
		tap_fail("ctl/environment", "%s", harness_err());
		goto out;
	}
	ctl_check_list(&e);
	ctl_check_reload(&e, &cfg);
	if (ctl_replay(&e, "ctl/replay", 2 * CTL_USERS, 0) == 0) {
		/* Applied now, in the order they were published. */
		for (int u = 0; u < CTL_USERS; u++) {
			ctl_user(user, sizeof(user), u);
			model_update(m, user, "a2", MS_WARNING, ts[u][2]);
			model_update(m, user, "a3", MS_CRITICAL, ts[u][3]);
		}
	}
	if (ctl_request_all(&e, m) == -1 || env_settle(&e, NULL, harness_now_ms() + 30000) == -1) {
		tap_fail("ctl/replayed_apply", "%s", harness_err());
	} else {
		int bad = 0;
		for (int u = 0; u < CTL_USERS; u++) {
			ctl_user(user, sizeof(user), u);
			bad += traffic_verify_user(m, e.digests, user, false) == -1;
		}
		if (bad)
			tap_fail("ctl/replayed_apply", "%d users' digests differ from the model", bad);
		else
			tap_ok("ctl/replayed_apply");
	}
	ctl_replay(&e, "ctl/replay_again", 0, 2 * CTL_USERS);
	if (ctl_request_all(&e, m) == -1)
		tap_fail("ctl/exactly_once", "%s", harness_err());
	else
		tap_report("ctl/exactly_once", env_finish_and_verify(&e, m, NULL, false));
	ctl_check_bad_reload(&e, &cfg);
	ctl_check_stop(&e);
out:
	env_down(&e);
	model_free(m);
}

/*
 * ctl_user: `alarmctl user` and `stats` read the stores while the service
 * runs, checked against the SPEC model after shuffled traffic with
 * duplicates:
 *
 *   alarms        for every user, `user --json` holds exactly the model's
 *                 alarms: statuses, ChangedAt, delivered (half the users
 *                 asked for a digest between two rounds of updates) and
 *                 tombstones (each user's a0 is CLEARED last); the slot
 *                 and directory agree
 *   unknown_user  a user never seen: exit 0, an empty list
 *   text          the aligned text form: the slot line and every AlarmID
 *   stats         `stats --json`: one entry per worker, totals of users,
 *                 alarms and tombstones equal to the model's (plus env_up's
 *                 probe users, one alarm each)
 *   exactly       the final round: every digest equals the model's
 */
#define CTLU_USERS 8
#define CTLU_ALARMS 5
#define CTLU_WORKERS 3

static void
ctlu_user(char *buf, size_t cap, int u)
{
	snprintf(buf, cap, "ctlu-user-%02d", u);
}

/* The model's view of one user, as sorted "alarm|status|ts|delivered|tombstone" lines. */
struct ctlu_lines {
	char **v;
	size_t n, cap;
	size_t cleared;
};

static int
ctlu_add(struct ctlu_lines *l, const char *alarm, const char *status, const char *ts, bool delivered,
    bool tombstone)
{
	char line[1024];

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		char **nv = realloc(l->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		l->v = nv;
		l->cap = ncap;
	}
	snprintf(line, sizeof(line), "%s|%s|%s|%s|%s", alarm, status, ts, delivered ? "delivered" :
	    "pending", tombstone ? "tombstone" : "live");
	if ((l->v[l->n] = strdup(line)) == NULL)
		return -1;
	l->n++;
	l->cleared += tombstone;
	return 0;
}

static int
ctlu_model_one(void *arg, const char *alarm, enum model_status status, const char *ts, bool delivered)
{
	return ctlu_add(arg, alarm, model_status_name(status), ts, delivered, status == MS_CLEARED);
}

static int
ctlu_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
ctlu_free(struct ctlu_lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* The first difference of two sorted line sets into why; 0 when equal. */
static int
ctlu_diff(struct ctlu_lines *want, struct ctlu_lines *got, char *why, size_t cap)
{
	qsort(want->v, want->n, sizeof(char *), ctlu_cmp);
	qsort(got->v, got->n, sizeof(char *), ctlu_cmp);
	for (size_t i = 0; i < want->n || i < got->n; i++) {
		const char *w = i < want->n ? want->v[i] : "(nothing)";
		const char *g = i < got->n ? got->v[i] : "(nothing)";

		if (strcmp(w, g) != 0) {
			snprintf(why, cap, "alarm %zu: model %s, alarmctl %s (%zu alarms vs %zu)", i, w, g,
			    want->n, got->n);
			return -1;
		}
	}
	return 0;
}

static bool
ctlu_bool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/*
 * One user through `alarmctl --json user`, compared with the model.  The
 * last digest's delivered marks become durable with the commit after it
 * went out, so a difference is looked at again for a while.  0 or -1 (why).
 */
static int
ctlu_check_user(struct env *e, struct model *m, const char *user, char *why, size_t cap,
    struct ctlu_lines *want_out)
{
	int64_t deadline = harness_now_ms() + 15000;
	struct ctlu_lines want = { 0 }, got = { 0 };
	struct ctl_run r;
	json_object *arr;
	char tail[32];
	int64_t slot;
	int rc;

	for (;;) {
		ctlu_free(&want);
		ctlu_free(&got);
		rc = -1;
		if (model_alarms(m, user, ctlu_model_one, &want) != 0) {
			snprintf(why, cap, "%s: the model's alarms: out of memory", user);
			break;
		}
		if (ctl_run(e, &r, true, "user", user, NULL) == -1) {
			snprintf(why, cap, "%s: %s", user, harness_err());
			break;
		}
		slot = ctl_int(r.json, "slot");
		snprintf(tail, sizeof(tail), "/worker-%lld", (long long)slot);
		if (!ctl_exit(&r, 0) || !json_object_object_get_ex(r.json, "alarms", &arr) ||
		    !json_object_is_type(arr, json_type_array)) {
			snprintf(why, cap, "%s: status %d, %.300s%.300s", user, r.status, r.out, r.err);
		} else if (strcmp(ctl_str(r.json, "user"), user) != 0 || slot < 0 || slot >= CTLU_WORKERS ||
		    ctl_int(r.json, "workers") != CTLU_WORKERS ||
		    strlen(ctl_str(r.json, "dir")) < strlen(tail) ||
		    strcmp(ctl_str(r.json, "dir") + strlen(ctl_str(r.json, "dir")) - strlen(tail), tail) != 0) {
			snprintf(why, cap, "%s: user/slot/workers/dir wrong: %.300s", user, r.out);
		} else {
			rc = 0;
			for (size_t i = 0; i < json_object_array_length(arr) && rc == 0; i++) {
				json_object *a = json_object_array_get_idx(arr, i);

				rc = ctlu_add(&got, ctl_str(a, "alarm_id"), ctl_str(a, "status"),
				    ctl_str(a, "changed_at"), ctlu_bool(a, "delivered"), ctlu_bool(a, "tombstone"));
			}
			if (rc == -1)
				snprintf(why, cap, "%s: out of memory", user);
			else
				rc = ctlu_diff(&want, &got, why, cap);
			if (rc == -1 && strncmp(why, "alarm ", 6) == 0) {
				/* Name the user in front of what differs. */
				char d[1024];

				snprintf(d, sizeof(d), "%s", why);
				snprintf(why, cap, "%s: %s", user, d);
			}
		}
		ctl_run_free(&r);
		if (rc == 0 || harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(200);
	}
	ctlu_free(&got);
	if (want_out != NULL && rc == 0)
		*want_out = want;
	else
		ctlu_free(&want);
	return rc;
}

/* One round of updates for every user, shuffled, each message sent twice somewhere. */
static int
ctlu_round(struct env *e, struct model *m, struct rng *rng, int64_t base, bool clear_a0)
{
	struct plan p = { 0 };
	char user[64], alarm[16], ts[48];
	int rc = -1;

	for (int u = 0; u < CTLU_USERS; u++) {
		ctlu_user(user, sizeof(user), u);
		for (int a = 0; a < CTLU_ALARMS; a++) {
			const char *st = traffic_random_status(rng);

			snprintf(alarm, sizeof(alarm), "a%d", a);
			traffic_random_ts(rng, base, 300, ts, sizeof(ts));
			if (plan_update(&p, user, alarm, st, ts) == -1 ||
			    plan_update(&p, user, alarm, st, ts) == -1)
				goto out;
			/* An older one too: stale, ignored by both. */
			traffic_random_ts(rng, base - 400, 300, ts, sizeof(ts));
			if (plan_update(&p, user, alarm, traffic_random_status(rng), ts) == -1)
				goto out;
		}
	}
	plan_shuffle(&p, rng);
	if (plan_send(&p, e->bus, m) == -1)
		goto out;
	if (clear_a0) {
		/* Newest of all: every a0 ends CLEARED, a tombstone. */
		model_ts_print(base + 600, 0, 0, 3, false, ts, sizeof(ts));
		for (int u = 0; u < CTLU_USERS; u++) {
			ctlu_user(user, sizeof(user), u);
			struct event ev = { false, user, "a0", "CLEARED", ts };
			if (event_send(&ev, e->bus, m) == -1)
				goto out;
		}
	}
	rc = 0;
out:
	plan_free(&p);
	return rc;
}

static void
ctlu_check_stats(struct env *e, size_t want_alarms, size_t want_tomb)
{
	/* env_up's readiness probes: a user with one WARNING alarm each. */
	int64_t want_users = CTLU_USERS + e->probes;
	struct ctl_run r;
	json_object *slots, *total;
	int64_t users, alarms, tomb;

	want_alarms += (size_t)e->probes;
	if (ctl_run(e, &r, true, "stats", NULL) == -1) {
		tap_fail("ctl_user/stats", "%s", harness_err());
		return;
	}
	if (!ctl_exit(&r, 0) || !json_object_object_get_ex(r.json, "slots", &slots) ||
	    !json_object_object_get_ex(r.json, "total", &total)) {
		tap_fail("ctl_user/stats", "status %d: %.300s%.300s", r.status, r.out, r.err);
		goto out;
	}
	users = ctl_int(total, "users");
	alarms = ctl_int(total, "alarms");
	tomb = ctl_int(total, "tombstones");
	if (json_object_array_length(slots) != CTLU_WORKERS || users != want_users ||
	    alarms != (int64_t)want_alarms || tomb != (int64_t)want_tomb ||
	    ctl_int(total, "used_bytes") <= 0 || ctl_int(total, "map_bytes") < ctl_int(total, "used_bytes"))
		tap_fail("ctl_user/stats", "%zu slots (want %d), users %lld (want %lld), alarms %lld "
		    "(want %zu), tombstones %lld (want %zu): %.500s", json_object_array_length(slots),
		    CTLU_WORKERS, (long long)users, (long long)want_users, (long long)alarms, want_alarms,
		    (long long)tomb, want_tomb, r.out);
	else
		tap_ok("ctl_user/stats");
out:
	ctl_run_free(&r);
}

void
scn_ctl_user(void)
{
	struct env_config cfg = { .workers = CTLU_WORKERS };
	struct model *m = model_new();
	struct env e = { 0 };
	struct rng rng;
	struct ctl_run r;
	char user[64], bin[PATH_MAX], why[2048] = "";
	size_t alarms = 0, tomb = 0;
	int64_t base = harness_wall_sec() - 3600;
	int bad = 0;

	rng_seed(&rng, itest_opts.seed ^ 0xc7105e);
	ctl_bin(bin, sizeof(bin));
	if (m == NULL || access(bin, X_OK) == -1) {
		tap_fail("ctl_user/environment", "%s: %s", bin, m == NULL ? "out of memory" :
		    "not executable");
		goto out;
	}
	if (env_up(&e, "ctl_user", &cfg) == -1 || ctlu_round(&e, m, &rng, base, false) == -1) {
		tap_fail("ctl_user/environment", "%s", harness_err());
		goto out;
	}
	/* Half the users take a digest: their alarms so far are delivered. */
	for (int u = 0; u < CTLU_USERS; u += 2) {
		ctlu_user(user, sizeof(user), u);
		if (model_request(m, user, NULL) == -1 || bus_publish_request(e.bus, user) == -1 ||
		    env_wait_user(&e, user, model_expected_count(m, user), harness_now_ms() + 30000) == -1) {
			tap_fail("ctl_user/environment", "%s", harness_err());
			goto out;
		}
	}
	/* A second round changes some again (pending once more) and clears every a0. */
	if (ctlu_round(&e, m, &rng, base + 1000, true) == -1 ||
	    env_settle(&e, NULL, harness_now_ms() + 30000) == -1) {
		tap_fail("ctl_user/environment", "%s", harness_err());
		goto out;
	}
	for (int u = 0; u < CTLU_USERS; u++) {
		struct ctlu_lines want = { 0 };

		ctlu_user(user, sizeof(user), u);
		if (ctlu_check_user(&e, m, user, why, sizeof(why), &want) == -1) {
			if (bad++ == 0)
				printf("# %s\n", why);
			continue;
		}
		alarms += want.n;
		tomb += want.cleared;
		ctlu_free(&want);
	}
	if (bad)
		tap_fail("ctl_user/alarms", "%d of %d users differ from the model: %s", bad, CTLU_USERS, why);
	else
		tap_ok("ctl_user/alarms");

	if (ctl_run(&e, &r, true, "user", "ctlu-nobody", NULL) == -1) {
		tap_fail("ctl_user/unknown_user", "%s", harness_err());
	} else {
		json_object *arr;

		if (!ctl_exit(&r, 0) || !json_object_object_get_ex(r.json, "alarms", &arr) ||
		    json_object_array_length(arr) != 0 || ctl_int(r.json, "last_request") != 0)
			tap_fail("ctl_user/unknown_user", "want exit 0 and no alarms: status %d, %.300s%.300s",
			    r.status, r.out, r.err);
		else
			tap_ok("ctl_user/unknown_user");
		ctl_run_free(&r);
	}

	ctlu_user(user, sizeof(user), 1);
	if (ctl_run(&e, &r, false, "user", user, NULL) == -1) {
		tap_fail("ctl_user/text", "%s", harness_err());
	} else {
		bool all = strstr(r.out, "slot ") != NULL && strstr(r.out, "ALARM") != NULL;

		for (int a = 0; a < CTLU_ALARMS && all; a++) {
			char id[16];

			snprintf(id, sizeof(id), "\na%d ", a);
			all = strstr(r.out, id) != NULL;
		}
		if (!ctl_exit(&r, 0) || !all)
			tap_fail("ctl_user/text", "status %d, want the slot line and a0..a%d: %.500s%.300s",
			    r.status, CTLU_ALARMS - 1, r.out, r.err);
		else
			tap_ok("ctl_user/text");
		ctl_run_free(&r);
	}
	if (bad == 0)
		ctlu_check_stats(&e, alarms, tomb);
	else
		tap_fail("ctl_user/stats", "not checked: the users differ from the model");
	tap_report("ctl_user/exactly", env_finish_and_verify(&e, m, NULL, false));
out:
	env_down(&e);
	model_free(m);
}
