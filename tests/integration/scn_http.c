/*
 * http: the supervisor's /metrics, /healthz and /readyz over a real TCP
 * connection, and its $SRV discovery replies, against a real nats-server:
 * counters against what was sent (received per subject, rejected per
 * reason, digests), readiness before the service can run, when ready,
 * while a slot is parked and while draining, and a taken port refused at
 * start.  Every service here listens on a free port of its own.
 */
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <nats/nats.h>

#include "../../common/version.h"
#include "../lib/webget.h"
#include "itest.h"

#define HTTP_USERS 12

/* GET path; its status and whether the body holds `want` (NULL: anything). */
static int
http_expect(int port, const char *path, int status, const char *want)
{
	struct webget_reply r;
	int rc = 0;

	if (webget(port, "GET", path, 5000, &r) == -1)
		return -1;
	if (r.status != status || (want != NULL && strstr(r.body, want) == NULL)) {
		harness_seterr("GET %s: %d \"%.200s\", want %d with \"%s\"", path, r.status, r.body, status,
		    want ? want : "");
		rc = -1;
	}
	webget_free(&r);
	return rc;
}

/* Poll GET path until it answers status with `want` in its body. */
static int
http_wait(int port, const char *path, int status, const char *want, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (http_expect(port, path, status, want) == -1) {
		if (harness_now_ms() >= deadline)
			return -1;
		harness_sleep_ms(50);
	}
	return 0;
}

static char *
http_metrics(int port)
{
	struct webget_reply r;
	char *page;

	if (webget(port, "GET", "/metrics", 5000, &r) == -1)
		return NULL;
	if (r.status != 200) {
		harness_seterr("GET /metrics: %d", r.status);
		webget_free(&r);
		return NULL;
	}
	page = r.body;
	free(r.head);
	return page;
}

static double
metric_or(const char *page, const char *series, double dflt)
{
	double v;

	return page != NULL && webget_metric(page, series, &v) == 0 ? v : dflt;
}

/* The counters the traffic checks look at, one scrape. */
struct http_counts {
	double upd, req, bad_json, bad_status, digests, parts, latency, commits, bytes;
};

static int
http_counts(int port, struct http_counts *c)
{
	char *p = http_metrics(port);

	if (p == NULL)
		return -1;
	c->upd = metric_or(p, "alarm_digest_messages_received_total{subject=\"AlarmStatusChanged\"}", -1);
	c->req = metric_or(p, "alarm_digest_messages_received_total{subject=\"SendAlarmDigest\"}", -1);
	c->bad_json = metric_or(p, "alarm_digest_messages_rejected_total{reason=\"bad_json\"}", -1);
	c->bad_status = metric_or(p, "alarm_digest_messages_rejected_total{reason=\"bad_status\"}", -1);
	c->digests = metric_or(p, "alarm_digest_digests_published_total", -1);
	c->parts = metric_or(p, "alarm_digest_digest_messages_published_total", -1);
	c->latency = metric_or(p, "alarm_digest_digest_latency_seconds_count", -1);
	c->commits = metric_or(p, "alarm_digest_commits_total", -1);
	c->bytes = metric_or(p, "alarm_digest_digest_bytes_published_total", -1);
	free(p);
	return 0;
}

/*
 * A baseline the readiness probe's digest no longer moves: workers report
 * once a second, so two scrapes 1.5 s apart that agree.
 */
static int
http_counts_settled(int port, struct http_counts *c)
{
	int64_t deadline = harness_now_ms() + 15000;
	struct http_counts next;

	if (http_counts(port, c) == -1)
		return -1;
	for (;;) {
		harness_sleep_ms(1500);
		if (http_counts(port, &next) == -1)
			return -1;
		if (memcmp(c, &next, sizeof(next)) == 0)
			return 0;
		*c = next;
		if (harness_now_ms() >= deadline) {
			harness_seterr("/metrics kept changing with no traffic");
			return -1;
		}
	}
}

/* Nothing listens on the NATS port: the master waits to connect, and says it is starting. */
static int
http_check_starting(const char *dir)
{
	struct harness_service svc = { 0 };
	char text[PATH_MAX + 256];
	int port, rc = -1;

	if ((port = webget_free_port()) == -1)
		return -1;
	snprintf(svc.bin, sizeof(svc.bin), "%s", itest_opts.bin);
	if (harness_path(svc.conf, sizeof(svc.conf), dir, "starting.conf") == -1 ||
	    harness_path(svc.log, sizeof(svc.log), dir, "starting.log") == -1)
		return -1;
	if (snprintf(text, sizeof(text), "[nats]\nservers = nats://127.0.0.1:1\n[service]\nstate_dir = %s/st\n"
	    "workers = 1\n[http]\nlisten = 127.0.0.1:%d\n", dir, port) >= (int)sizeof(text)) {
		harness_seterr("config text too long");
		return -1;
	}
	if (harness_write_file(svc.conf, text) == -1 || harness_service_start(&svc) == -1)
		return -1;
	if (http_wait(port, "/readyz", 503, "starting", 20000) == 0 &&
	    http_expect(port, "/healthz", 200, "ok") == 0)
		rc = 0;
	harness_proc_kill(&svc.proc);
	return rc;
}

/* A second service on the port the first holds: refused at once, naming the address. */
static int
http_check_taken(const char *dir, const char *url, int port)
{
	struct harness_service svc = { 0 };
	char text[2 * PATH_MAX + 256], want[64], st[64];
	char *log;
	int rc = -1;

	snprintf(svc.bin, sizeof(svc.bin), "%s", itest_opts.bin);
	if (harness_path(svc.conf, sizeof(svc.conf), dir, "taken.conf") == -1 ||
	    harness_path(svc.log, sizeof(svc.log), dir, "taken.log") == -1)
		return -1;
	if (snprintf(text, sizeof(text), "[nats]\nservers = %s\n[service]\nstate_dir = %s/st2\nworkers = 1\n"
	    "[http]\nlisten = 127.0.0.1:%d\n", url, dir, port) >= (int)sizeof(text)) {
		harness_seterr("config text too long");
		return -1;
	}
	if (harness_write_file(svc.conf, text) == -1 || harness_service_start(&svc) == -1)
		return -1;
	if (harness_proc_wait(&svc.proc, 20000) == -1) {
		harness_proc_kill(&svc.proc);
		harness_seterr("a second service on the taken port 127.0.0.1:%d did not exit", port);
		return -1;
	}
	snprintf(want, sizeof(want), "http.listen 127.0.0.1:%d: bind", port);
	if ((log = harness_read_file(svc.log, NULL)) == NULL)
		return -1;
	if (!WIFEXITED(svc.proc.status) || WEXITSTATUS(svc.proc.status) == 0)
		harness_seterr("second service ended with %s, want a non-zero exit",
		    harness_status_str(svc.proc.status, st, sizeof(st)));
	else if (strstr(log, want) == NULL)
		harness_seterr("its log does not say \"%s\": %.300s", want, log);
	else
		rc = 0;
	free(log);
	return rc;
}

/* HEAD has no body, POST is 405 with Allow, an unknown path 404; the page has the format's lines. */
static int
http_check_methods(int port)
{
	struct webget_reply r;
	char *p;
	int rc = -1;

	if (webget(port, "POST", "/metrics", 5000, &r) == -1)
		return -1;
	if (r.status != 405 || strstr(r.head, "Allow: GET, HEAD") == NULL) {
		harness_seterr("POST /metrics: %d, head %.200s; want 405 with Allow", r.status, r.head);
		goto out;
	}
	webget_free(&r);
	if (webget(port, "HEAD", "/metrics", 5000, &r) == -1)
		return -1;
	if (r.status != 200 || r.body_len != 0) {
		harness_seterr("HEAD /metrics: %d with %zu body bytes", r.status, r.body_len);
		goto out;
	}
	if (http_expect(port, "/nope", 404, NULL) == -1 || (p = http_metrics(port)) == NULL)
		goto out;
	if (strstr(p, "# HELP alarm_digest_messages_received_total ") == NULL ||
	    strstr(p, "# TYPE alarm_digest_messages_received_total counter\n") == NULL ||
	    strstr(p, "# TYPE alarm_digest_digest_latency_seconds histogram\n") == NULL ||
	    metric_or(p, "alarm_digest_commit_latency_seconds_bucket{le=\"+Inf\"}", -1) !=
	    metric_or(p, "alarm_digest_commit_latency_seconds_count", -2) ||
	    metric_or(p, "alarm_digest_build_info{version=\"" ALARM_DIGEST_VERSION "\"}", 0) != 1)
		harness_seterr("/metrics lacks HELP/TYPE lines, a matching +Inf bucket or build_info");
	else
		rc = 0;
	free(p);
out:
	webget_free(&r);
	return rc;
}

/* Known traffic: every user one update and one request (one digest each), and known bad messages. */
static int
http_send(struct env *e)
{
	static const char *const bad_json[] = { "{", "[1,2", "" };
	static const char bad_status[] = "{\"AlarmID\":\"a\",\"UserID\":\"u\",\"Status\":\"MELTING\","
	    "\"ChangedAt\":\"2021-08-17T15:33:59Z\"}";
	char user[64];

	for (int i = 0; i < HTTP_USERS; i++) {
		snprintf(user, sizeof(user), "http-%d", i);
		if (bus_publish_update(e->bus, user, "alarm-1", "CRITICAL", "2021-08-17T15:33:59Z") == -1 ||
		    bus_publish_request(e->bus, user) == -1)
			return -1;
	}
	for (size_t i = 0; i < 3; i++)
		if (bus_publish(e->bus, "AlarmStatusChanged", bad_json[i], strlen(bad_json[i])) == -1)
			return -1;
	for (int i = 0; i < 2; i++)
		if (bus_publish(e->bus, "AlarmStatusChanged", bad_status, strlen(bad_status)) == -1)
			return -1;
	return 0;
}

static int
http_check_counts(const struct http_counts *a, const struct http_counts *b, const char *what)
{
	double want_upd = HTTP_USERS + 5;

	if (strcmp(what, "received") == 0 && (b->upd - a->upd != want_upd || b->req - a->req != HTTP_USERS)) {
		harness_seterr("received +%g updates and +%g requests, want +%g and +%d", b->upd - a->upd,
		    b->req - a->req, want_upd, HTTP_USERS);
		return -1;
	}
	if (strcmp(what, "rejected") == 0 && (b->bad_json - a->bad_json != 3 || b->bad_status - a->bad_status != 2)) {
		harness_seterr("rejected bad_json +%g, bad_status +%g; want +3 and +2", b->bad_json - a->bad_json,
		    b->bad_status - a->bad_status);
		return -1;
	}
	if (strcmp(what, "digests") == 0 && (b->digests - a->digests != HTTP_USERS ||
	    b->parts - a->parts != HTTP_USERS || b->latency - a->latency != HTTP_USERS ||
	    b->commits <= a->commits || b->bytes <= a->bytes)) {
		harness_seterr("digests +%g, parts +%g, latency observations +%g, commits %g -> %g, bytes "
		    "%g -> %g; want +%d each and more", b->digests - a->digests, b->parts - a->parts,
		    b->latency - a->latency, a->commits, b->commits, a->bytes, b->bytes, HTTP_USERS);
		return -1;
	}
	return 0;
}

/* One $SRV request and its reply as JSON (NULL: harness_err). */
static json_object *
srv_request(struct env *e, const char *subject)
{
	natsMsg *reply = NULL;
	json_object *o;
	natsStatus s;

	if ((s = natsConnection_RequestString(&reply, bus_conn(e->bus), subject, "", 5000)) != NATS_OK) {
		harness_seterr("request on %s: %s", subject, natsStatus_GetText(s));
		return NULL;
	}
	o = json_tokener_parse(natsMsg_GetData(reply));
	if (o == NULL)
		harness_seterr("reply on %s is not JSON: %.200s", subject, natsMsg_GetData(reply));
	natsMsg_Destroy(reply);
	return o;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
}

/* $SRV.PING in its three forms: the micro v1 shape, our name, version and one id. */
static int
srv_check_ping(struct env *e, char *id, size_t idlen)
{
	char subj[128];
	json_object *o;

	if ((o = srv_request(e, "$SRV.PING")) == NULL)
		return -1;
	snprintf(id, idlen, "%s", jstr(o, "id"));
	if (strcmp(jstr(o, "type"), "io.nats.micro.v1.ping_response") != 0 ||
	    strcmp(jstr(o, "name"), "alarm-digest") != 0 ||
	    strcmp(jstr(o, "version"), ALARM_DIGEST_VERSION) != 0 || id[0] == '\0') {
		harness_seterr("$SRV.PING reply %s", json_object_to_json_string(o));
		json_object_put(o);
		return -1;
	}
	json_object_put(o);
	for (int form = 0; form < 2; form++) {
		snprintf(subj, sizeof(subj), form == 0 ? "$SRV.PING.alarm-digest" : "$SRV.PING.alarm-digest.%s", id);
		if ((o = srv_request(e, subj)) == NULL)
			return -1;
		if (strcmp(jstr(o, "id"), id) != 0) {
			harness_seterr("%s answered by id \"%s\", want \"%s\"", subj, jstr(o, "id"), id);
			json_object_put(o);
			return -1;
		}
		json_object_put(o);
	}
	return 0;
}

static json_object *
srv_endpoint(json_object *o, int i)
{
	json_object *eps;

	if (!json_object_object_get_ex(o, "endpoints", &eps) || !json_object_is_type(eps, json_type_array) ||
	    json_object_array_length(eps) != 2)
		return NULL;
	return json_object_array_get_idx(eps, (size_t)i);
}

static int
srv_check_info(struct env *e)
{
	json_object *o = srv_request(e, "$SRV.INFO.alarm-digest"), *e0, *e1;
	int rc = -1;

	if (o == NULL)
		return -1;
	if (strcmp(jstr(o, "type"), "io.nats.micro.v1.info_response") != 0 ||
	    (e0 = srv_endpoint(o, 0)) == NULL || (e1 = srv_endpoint(o, 1)) == NULL ||
	    strcmp(jstr(e0, "subject"), "AlarmStatusChanged") != 0 ||
	    strcmp(jstr(e1, "subject"), "SendAlarmDigest") != 0 ||
	    !json_object_object_get_ex(e0, "queue_group", NULL))
		harness_seterr("$SRV.INFO reply %s", json_object_to_json_string(o));
	else
		rc = 0;
	json_object_put(o);
	return rc;
}

/* STATS numbers are the ones /metrics shows. */
static int
srv_check_stats(struct env *e, int port)
{
	json_object *o = srv_request(e, "$SRV.STATS"), *e0, *e1, *v;
	struct http_counts c;
	int rc = -1;

	if (o == NULL || http_counts(port, &c) == -1)
		goto out;
	if (strcmp(jstr(o, "type"), "io.nats.micro.v1.stats_response") != 0 || jstr(o, "started")[0] == '\0' ||
	    (e0 = srv_endpoint(o, 0)) == NULL || (e1 = srv_endpoint(o, 1)) == NULL ||
	    !json_object_object_get_ex(e0, "num_requests", &v) || json_object_get_int64(v) != (int64_t)c.upd ||
	    !json_object_object_get_ex(e1, "num_requests", &v) || json_object_get_int64(v) != (int64_t)c.req ||
	    !json_object_object_get_ex(e0, "num_errors", &v) || json_object_get_int64(v) < 5 ||
	    !json_object_object_get_ex(e1, "processing_time", &v) || json_object_get_int64(v) <= 0)
		harness_seterr("$SRV.STATS reply %s; /metrics says %g updates, %g requests",
		    json_object_to_json_string(o), c.upd, c.req);
	else
		rc = 0;
out:
	json_object_put(o);
	return rc;
}

/* Kill slot 0's worker until the breaker (crash_loop_max = 2) parks it. */
static int
http_park_slot0(struct env *e, int port)
{
	struct harness_worker w[8];
	pid_t last = 0;

	for (int kills = 0; kills < 2; kills++) {
		int64_t deadline = harness_now_ms() + 20000;
		int n;

		for (;;) {
			n = harness_workers(e->svc.proc.pid, w, 8);
			if (n > 0 && w[0].slot == 0 && w[0].pid != last)
				break;
			if (harness_now_ms() >= deadline) {
				harness_seterr("worker 0 did not come back after kill %d", kills);
				return -1;
			}
			harness_sleep_ms(50);
		}
		last = w[0].pid;
		kill(w[0].pid, SIGKILL);
	}
	if (http_wait(port, "/healthz", 503, "slot 0 parked", 20000) == -1 ||
	    http_expect(port, "/readyz", 503, "slot 0 parked") == -1)
		return -1;
	char *p = http_metrics(port);
	int rc = 0;
	if (p == NULL)
		return -1;
	if (metric_or(p, "alarm_digest_slots_parked", -1) != 1 ||
	    metric_or(p, "alarm_digest_worker_restarts_total", -1) < 2) {
		harness_seterr("parked slots %g, restarts %g; want 1 and >= 2",
		    metric_or(p, "alarm_digest_slots_parked", -1),
		    metric_or(p, "alarm_digest_worker_restarts_total", -1));
		rc = -1;
	}
	free(p);
	return rc;
}

/* SIGHUP with [http] listen moved to another port: the log says it needs a restart. */
static int
http_reload_moved(struct env *e, const struct env_config *cfg, int port)
{
	struct env_config moved = *cfg;
	char listen[64], want[160], text[4096];
	int64_t deadline = harness_now_ms() + 20000;
	int other = webget_free_port();

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", other);
	moved.http_listen = listen;
	if (other == -1 || env_config_text(e, &moved, text, sizeof(text), NULL) == -1 ||
	    harness_write_file(e->svc.conf, text) == -1 || harness_service_signal(&e->svc, SIGHUP) == -1)
		return -1;
	snprintf(want, sizeof(want), "reload: http.listen changed from \"127.0.0.1:%d\" to \"%s\": "
	    "needs a restart", port, listen);
	for (;;) {
		char *log = harness_read_file(e->svc.log, NULL);
		bool found = log != NULL && strstr(log, want) != NULL;

		free(log);
		if (found)
			return 0;
		if (harness_now_ms() >= deadline) {
			harness_seterr("the log does not say \"%s\"", want);
			return -1;
		}
		harness_sleep_ms(100);
	}
}

/*
 * SIGSTOP a worker, then reload to one worker more: the reshard waits for
 * the stopped worker to finish, and /readyz says resharding meanwhile;
 * once it runs again the move completes and /readyz is 200 again.
 */
static int
http_check_resharding(struct env *e, const struct env_config *cfg, int port)
{
	struct env_config more = *cfg;
	struct harness_worker w[8];
	char text[4096];
	int rc;

	more.workers = cfg->workers + 1;
	if (harness_workers(e->svc.proc.pid, w, 8) < 1) {
		harness_seterr("no worker to hold the reshard with");
		return -1;
	}
	if (env_config_text(e, &more, text, sizeof(text), NULL) == -1 ||
	    harness_write_file(e->svc.conf, text) == -1)
		return -1;
	kill(w[0].pid, SIGSTOP);
	if (harness_service_signal(&e->svc, SIGHUP) == -1) {
		kill(w[0].pid, SIGCONT);
		return -1;
	}
	rc = http_wait(port, "/readyz", 503, "resharding", 10000);
	kill(w[0].pid, SIGCONT);
	if (rc == 0)
		rc = http_wait(port, "/readyz", 200, "ok", 60000);
	/* The next check needs the new workers' titles, which may come a moment after. */
	if (rc == 0)
		rc = harness_workers_wait(e->svc.proc.pid, more.workers, 30000, 0, w);
	return rc;
}

/* SIGSTOP a worker so the drain waits for it: /readyz says draining meanwhile. */
static int
http_check_draining(struct env *e, int port)
{
	struct harness_worker w[8];
	int n, rc;

	if ((n = harness_workers(e->svc.proc.pid, w, 8)) < 1) {
		harness_seterr("no worker to hold the drain with");
		return -1;
	}
	kill(w[0].pid, SIGSTOP);
	harness_service_signal(&e->svc, SIGTERM);
	rc = http_wait(port, "/readyz", 503, "draining", 10000);
	kill(w[0].pid, SIGCONT);
	return rc;
}

void
scn_http(void)
{
	char listen[64], id[64] = "", unsettled[512] = "";
	struct env_config cfg = { .workers = 2, .service_extra = "crash_loop_max = 2\n" };
	struct http_counts before, after;
	struct env e = { 0 };
	int port = webget_free_port();
	int64_t deadline;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	cfg.http_listen = listen;
	if (port == -1 || env_up(&e, "http", &cfg) == -1) {
		tap_fail("http", "environment: %s", harness_err());
		goto out;
	}
	tap_report("http/starting_503", http_check_starting(e.dir));
	tap_report("http/bind_taken_is_fatal", http_check_taken(e.dir, e.nats.url, port));
	if (http_expect(port, "/readyz", 200, "ok") == 0 && http_expect(port, "/healthz", 200, "ok") == 0)
		tap_ok("http/ready_200");
	else
		tap_fail("http/ready_200", "%s", harness_err());
	tap_report("http/methods_and_format", http_check_methods(port));

	if (http_counts_settled(port, &before) == -1 || http_send(&e) == -1) {
		tap_fail("http", "traffic: %s", harness_err());
		goto out;
	}
	if (env_settle(&e, NULL, harness_now_ms() + 30000) == -1)
		snprintf(unsettled, sizeof(unsettled), "%s", harness_err());
	/* The snapshot trails by up to a quarter second, a worker's report by a second. */
	deadline = harness_now_ms() + 10000;
	while (http_counts(port, &after) == 0 && (http_check_counts(&before, &after, "received") == -1 ||
	    http_check_counts(&before, &after, "rejected") == -1 ||
	    http_check_counts(&before, &after, "digests") == -1) && harness_now_ms() < deadline)
		harness_sleep_ms(100);
	tap_report("http/received_per_subject",
	    env_settled_rc(http_check_counts(&before, &after, "received"), unsettled));
	tap_report("http/rejected_per_reason",
	    env_settled_rc(http_check_counts(&before, &after, "rejected"), unsettled));
	tap_report("http/digests_published",
	    env_settled_rc(http_check_counts(&before, &after, "digests"), unsettled));

	tap_report("http/srv_ping", srv_check_ping(&e, id, sizeof(id)));
	tap_report("http/srv_info", srv_check_info(&e));
	tap_report("http/srv_stats", srv_check_stats(&e, port));

	tap_report("http/parked_503", http_park_slot0(&e, port));
	/*
	 * SIGHUP unparks; the counters of the killed processes are kept.  The
	 * reload also moves listen, which needs a restart: said, and the old
	 * address keeps serving.
	 */
	if (http_reload_moved(&e, &cfg, port) == 0 && http_wait(port, "/readyz", 200, "ok", 30000) == 0 &&
	    http_counts(port, &before) == 0 && before.digests >= after.digests && before.commits >= after.commits)
		tap_ok("http/reload_unparks_keeps_listen_and_counters");
	else
		tap_fail("http/reload_unparks_keeps_listen_and_counters", "%s (digests %g -> %g)", harness_err(),
		    after.digests, before.digests);
	tap_report("http/resharding_503", http_check_resharding(&e, &cfg, port));
	tap_report("http/draining_503", http_check_draining(&e, port));
out:
	env_down(&e);
}
