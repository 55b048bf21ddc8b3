/*
 * Scenarios on a 3-node JetStream cluster (issue 14 groundwork): today's
 * single-instance service with every node's URL in `servers` and its
 * stream replicated 3 ways; and the same while the node it is connected
 * to goes away and comes back under load.
 */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../lib/cluster.h"
#include "../lib/owners.h"
#include "../lib/webget.h"
#include "itest.h"
#include "lease.h"

#define CLUSTER_NATS "stream_replicas = 3\n"

/*
 * A node stop may lose the digests of requests made from
 * CL_LOSS_BEFORE_MS before it to CL_LOSS_AFTER_MS after it, at most
 * CL_LOSS_MAX of them (a few batches' worth: more is a bug, not a
 * window), and only for a collector that may sit on the stopped node: a
 * digest on its way to it dies with its server (core NATS; DESIGN.md,
 * "Durability").  Requests are answered well within the window here,
 * even under ASan.
 */
#define CL_LOSS_BEFORE_MS 5000
#define CL_LOSS_AFTER_MS 1000
#define CL_LOSS_MAX 30

/*
 * A collector on each node.  One on a node that stays up must get every
 * digest, also those a worker's server took just before it stopped
 * (resend.h).  Opened before the service starts: its readiness probe
 * takes long enough for the subscriptions to reach every node.
 */
struct cl_pins {
	struct bus *bus[CLUSTER_NODES];
	struct collector *c[CLUSTER_NODES];
};

static int
cl_pins_open(struct cl_pins *pins, const struct cluster *c)
{
	for (int i = 0; i < CLUSTER_NODES; i++)
		if ((pins->bus[i] = bus_open(c->node[i].url, false)) == NULL ||
		    (pins->c[i] = collector_new(pins->bus[i], "AlarmDigest")) == NULL)
			return -1;
	return 0;
}

static void
cl_pins_close(struct cl_pins *pins)
{
	for (int i = 0; i < CLUSTER_NODES; i++) {
		collector_free(pins->c[i]);
		bus_close(pins->bus[i]);
	}
}

/*
 * After a node stop: the shared collector, which may sit on the stopped
 * node, may lose the stop's window (lost at most CL_LOSS_MAX); every
 * pinned collector on a node that stayed up must have every digest.
 * Exact repeats allowed.  The shared collector already has the marker.
 */
static int
cl_verify_after_stop(const char *tag, struct model *m, struct collector *shared,
    struct cl_pins *pins, int stopped, int64_t stop_ms, const char *marker)
{
	size_t lost = 0;

	if (traffic_verify_lossy(m, shared, true, stop_ms - CL_LOSS_BEFORE_MS,
	    stop_ms + CL_LOSS_AFTER_MS, &lost) == -1)
		return -1;
	printf("# %s: %zu digests lost with the stopped node (requested from %d ms before its "
	    "stop to %d ms after)\n", tag, lost, CL_LOSS_BEFORE_MS, CL_LOSS_AFTER_MS);
	if (lost > CL_LOSS_MAX) {
		harness_seterr("%zu digests lost with the stopped node, more than %d", lost,
		    CL_LOSS_MAX);
		return -1;
	}
	for (int i = 0; i < CLUSTER_NODES; i++) {
		if (i == stopped)
			continue;
		if (traffic_wait(m, pins->c[i], true, 30000, NULL, marker) == -1 ||
		    traffic_verify(m, pins->c[i], true) == -1) {
			char why[512];

			snprintf(why, sizeof(why), "%s", harness_err());
			harness_seterr("the collector on n%d, which stayed up: %s", i + 1, why);
			return -1;
		}
		printf("# %s: the collector on n%d, which stayed up, got every digest\n", tag, i + 1);
	}
	return 0;
}

/* The cluster in its own temp dir (env_down removes the env's while nodes may still write). */
struct cl_env {
	struct env e;
	struct cluster c;
	struct cl_pins pins;   /* opened when cl_up is asked to */
	char dir[PATH_MAX];
};

static int
cl_up(struct cl_env *ce, const char *tag, struct env_config *cfg, bool pins)
{
	memset(ce, 0, sizeof(*ce));
	if (harness_tmpdir(tag, ce->dir, sizeof(ce->dir)) == -1 ||
	    cluster_start(&ce->c, ce->dir, 60000) == -1)
		return -1;
	printf("# %s: cluster up at %s\n", tag, ce->c.urls);
	if (pins && cl_pins_open(&ce->pins, &ce->c) == -1)
		return -1;
	cfg->servers = ce->c.urls;
	cfg->nats_extra = CLUSTER_NATS;
	return env_up(&ce->e, tag, cfg);
}

static void
cl_down(struct cl_env *ce)
{
	bool failed = tap_failures() > ce->e.failures_at_start;

	env_down(&ce->e);
	cl_pins_close(&ce->pins);
	cluster_stop(&ce->c);
	if (ce->dir[0] == '\0')
		return;
	if (failed)
		for (int i = 0; i < CLUSTER_NODES; i++)
			if (ce->c.node[i].log[0] != '\0')
				harness_dump_tail("cluster node log", ce->c.node[i].log, 8);
	if (getenv("ITEST_KEEP") != NULL)
		harness_tmpdir_keep(ce->dir);
	else if (harness_tmpdir_remove(ce->dir) == -1)
		printf("# cluster: %s\n", harness_err());
}

/* The service's input stream really is replicated: 3 replicas configured, 2 peers besides the leader. */
static int
cl_check_replicas(struct env *e)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int rc = -1;

	if ((s = js_GetStreamInfo(&si, bus_js(e->bus), "ALARMS", NULL, &jerr)) != NATS_OK) {
		harness_seterr("stream info of ALARMS: %s (jetstream error %d)",
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	if (si->Config->Replicas != 3)
		harness_seterr("stream ALARMS has %ld replicas, want 3", (long)si->Config->Replicas);
	else if (si->Cluster == NULL || si->Cluster->ReplicasLen != 2)
		harness_seterr("stream ALARMS has %d peers besides its leader, want 2",
		    si->Cluster != NULL ? si->Cluster->ReplicasLen : -1);
	else
		rc = 0;
	jsStreamInfo_Destroy(si);
	return rc;
}

/* The node a test connection is on, -1 when it is between servers. */
static int
cl_bus_node(struct cl_env *ce, struct bus *b)
{
	char url[256];
	const char *colon;

	if (natsConnection_GetConnectedUrl(bus_conn(b), url, sizeof(url)) != NATS_OK ||
	    (colon = strrchr(url, ':')) == NULL)
		return -1;
	return cluster_node_of_port(&ce->c, atoi(colon + 1));
}

/* ---- cluster_r3 ---- */

void
scn_cluster_r3(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct plan p = { 0 };
	struct cl_env ce = { 0 };
	struct rng rng;
	int64_t t0;

	rng_seed(&rng, itest_opts.seed ^ 0xc1a3);
	if (m == NULL || plan_users(&p, &rng, "cr", itest_scaled(60), 4) == -1 ||
	    cl_up(&ce, "cluster_r3", &cfg, false) == -1 || cl_check_replicas(&ce.e) == -1) {
		tap_fail("cluster_r3", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	t0 = harness_now_ms();
	if (plan_send(&p, ce.e.bus, m) == -1) {
		tap_fail("cluster_r3", "publishing: %s", harness_err());
		goto out;
	}
	printf("# cluster_r3: published %zu messages in %lld ms to an R3 stream\n", p.n,
	    (long long)(harness_now_ms() - t0));
	tap_report("cluster_r3/digests_match_model", env_finish_and_verify(&ce.e, m, NULL, false));
	tap_report("cluster_r3/digest_json_shape", env_check_collector(&ce.e));
out:
	plan_free(&p);
	cl_down(&ce);
	model_free(m);
}

/* ---- cluster_node_restart ---- */

/*
 * The node the service is connected to, from the last "connected to NATS
 * at URL" line of its log (written on every connect and reconnect); -1
 * when there is none yet.
 */
static int
cl_connected_node(struct cl_env *ce)
{
	const char *key = "connected to NATS at nats://127.0.0.1:";
	char *log = harness_read_file(ce->e.svc.log, NULL), *p, *last = NULL;
	int node;

	if (log == NULL)
		return -1;
	for (p = log; (p = strstr(p, key)) != NULL; p += strlen(key))
		last = p;
	node = last != NULL ? cluster_node_of_port(&ce->c, atoi(last + strlen(key))) : -1;
	free(log);
	return node;
}

void
scn_cluster_node_restart(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct runner r;
	struct cl_env ce = { 0 };
	char marker[64];
	int64_t t0;
	int k;

	memset(&r, 0, sizeof(r));
	if (m == NULL || cl_up(&ce, "cluster_node_restart", &cfg, true) == -1 ||
	    cl_check_replicas(&ce.e) == -1) {
		tap_fail("cluster_node_restart", "setup: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	r.bus = ce.e.bus;
	r.model = m;
	r.seed = itest_opts.seed ^ 0xc1e5;
	r.prefix = "cn";
	r.users = itest_scaled(100);
	r.alarms = 4;
	r.batch = 20;
	r.pause_ms = 20;
	r.max_events = (size_t)itest_scaled(20000);
	r.base_sec = harness_wall_sec() - 7200;
	if (runner_start(&r) == -1 || runner_wait_sent(&r, 300, 30000) == -1) {
		tap_fail("cluster_node_restart", "load: %s", harness_err());
		goto out;
	}
	if ((k = cl_connected_node(&ce)) == -1) {
		printf("# cluster_node_restart: no connected URL in the service log; stopping n1\n");
		k = 0;
	}
	t0 = harness_now_ms();
	printf("# cluster_node_restart: stopping n%d (%s), the service's node; metadata leader "
	    "n%d; the test's publisher and collector on n%d\n", k + 1, ce.c.node[k].url,
	    cluster_meta_leader(&ce.c) + 1, cl_bus_node(&ce, ce.e.bus) + 1);
	if (cluster_node_stop(&ce.c, k) == -1 || runner_wait_sent(&r, 300, 30000) == -1) {
		tap_fail("cluster_node_restart", "publishing through the other nodes: %s",
		    harness_err());
		goto out;
	}
	printf("# cluster_node_restart: 300 more sent with n%d down (%lld ms)\n", k + 1,
	    (long long)(harness_now_ms() - t0));
	if (cluster_node_start(&ce.c, k, 30000) == -1 || runner_wait_sent(&r, 300, 30000) == -1) {
		tap_fail("cluster_node_restart", "n%d back: %s", k + 1, harness_err());
		goto out;
	}
	printf("# cluster_node_restart: n%d back and 300 more sent after %lld ms; service now on "
	    "n%d\n", k + 1, (long long)(harness_now_ms() - t0), cl_connected_node(&ce) + 1);
	tap_report("cluster_node_restart/still_up", env_alive(&ce.e));
	/*
	 * Exact repeats allowed: a worker whose flush fails when its node
	 * goes away redoes the batch, and digests the node had taken
	 * before it died go out again (PROTOCOL.md, "a failed flush").
	 * The test's own collector may sit on the stopped node (a CI run
	 * lost one digest so); the pinned ones on the others must have all.
	 */
	tap_report("cluster_node_restart/digests_match_model",
	    env_finish(&ce.e, m, &r, true, marker, sizeof(marker)) == -1 ? -1 :
	    cl_verify_after_stop("cluster_node_restart", m, ce.e.digests, &ce.pins, k, t0, marker));
	tap_report("cluster_node_restart/digest_json_shape", env_check_collector(&ce.e));
out:
	if (r.started)
		(void)runner_stop(&r);
	cl_down(&ce);
	model_free(m);
}

/* ---- cluster_partitions: several instances in cluster mode (issue 14) ---- */

/*
 * Four instances (i1..i3 at first, i4 joins later) with 12 partitions and a
 * 2 s lease on the 3-node cluster, one story under continuous load:
 *   a) three instances: every partition owned, digests exact;
 *   b) kill -9 of the router's instance (master and workers): its
 *      partitions and the router owned again within CP_TAKEOVER_MS;
 *   c) i4 joins and gets a share; then one leaves with SIGTERM and its
 *      partitions move within one lease_ttl;
 *   d) the lease bucket's stream leader node stopped and started again;
 *   e) the instance with the most partitions SIGSTOPped for 3 x lease_ttl:
 *      the others take its partitions; after SIGCONT it claims none it
 *      lost, publishes nothing twice once it has seen that (a digest its
 *      NATS client held at the stop may go out once more), and rejoins.
 * tests/lib/owners.c samples the lease bucket and every /metrics all along
 * (no partition claimed twice, none without a holder past its bound).  At
 * the end every user's digests are compared with the model (repeats
 * allowed: a kill is a crash, and a digest may come twice after one).
 */
#define CP_PARTS 12
#define CP_NINST 4
#define CP_TTL_MS 2000
/* The stated takeover bound: the lease expires within lease_ttl, one renewal round later it is taken. */
#define CP_TAKEOVER_MS (2 * CP_TTL_MS + 2000)
/*
 * A leaving instance waits until what its workers hold is durable, acks it
 * and releases (what it was delivered but had not routed goes to the next
 * owner unacked): its partitions move well before its leases could expire,
 * typically in 0.1-0.5 s here.  That the leases were released, not left to
 * expire, is checked in the leaver's log; the bound only catches a hang.
 * It is twice the expiry path's: the release takes 0.2 s even then, but on
 * two starved cores (ASan, other work) the cluster's JetStream API stalled
 * for 5 s once, and the next owners' binds with it (6.4 s).
 */
#define CP_LEAVE_MS (2 * CP_TAKEOVER_MS)
#define CP_LEAVE_LOG "left the cluster: every lease released"
/* With a node down the lease bucket may lose its leader: fences pass, all re-acquire. */
#define CP_NODE_UNOWNED_MS 20000
/*
 * Two /metrics may both claim a partition this long during a hand-over: each
 * is a snapshot refreshed every 250 ms, the new owner acquires on its
 * watcher's news or within a lease round (lease_ttl/4).
 */
#define CP_DOUBLE_MS 1000
/* How soon a resumed instance must stop claiming what it lost. */
#define CP_STALE_MS 5000
/* Past this, the steps left fail as not run (a passing run takes about a minute). */
#define CP_BUDGET_MS 200000
#define CP_TAG "cluster_partitions"

struct cp_inst {
	struct env e;          /* dir, tag and svc only: env_config_text's input */
	char name[16];
	int port;
	int idx;               /* in the sampler: the same as its index in cp.in */
	bool running;          /* started and not stopped, killed or gone */
};

struct cp {
	struct cluster c;
	char dir[PATH_MAX];
	struct bus *bus;
	struct collector *digests;
	struct bus *sbus;      /* the sampler's connection */
	struct owners *own;
	struct cp_inst in[CP_NINST];
	struct model *m;
	struct runner r;
	int failures_at_start;
	int64_t t_start;
	int probes;
	char why[512];         /* set: the story cannot go on; later checks fail with it */
	int64_t takeover_max[3];  /* kill, leave, pause */
	int64_t node_stop_ms;     /* when the node phase stopped a nats-server; 0: it did not */
	int node_stopped;         /* which one */
	struct cl_pins pins;      /* only cp->digests may lose the node phase's window */
};

static const char *const cp_events[3] = { "kill -9", "SIGTERM leave", "SIGSTOP" };

static void
cp_halt(struct cp *cp, const char *what)
{
	if (cp->why[0] == '\0')
		snprintf(cp->why, sizeof(cp->why), "%s: %s", what, harness_err());
}

/*
 * False (and the check failed) when an earlier step stopped the story, or
 * the scenario's time is spent: a broken cluster mode must not eat the
 * whole suite's watchdog (ITEST_TIMEOUT) wait by wait.
 */
static bool
cp_can(struct cp *cp, const char *check)
{
	if (cp->why[0] == '\0' && harness_now_ms() - cp->t_start > CP_BUDGET_MS)
		snprintf(cp->why, sizeof(cp->why), "the scenario's %d s are spent",
		    CP_BUDGET_MS / 1000);
	if (cp->why[0] == '\0')
		return true;
	tap_fail(check, "not run, an earlier step failed: %s", cp->why);
	return false;
}

/* owners_phase, when the sampler exists. */
static void
cp_phase(struct cp *cp, const char *name, int64_t bound_ms)
{
	if (cp->own != NULL)
		owners_phase(cp->own, name, bound_ms);
}

static uint64_t
cp_bit(int p)
{
	return UINT64_C(1) << p;
}

/* What the bucket gives instance idx (router included), as a mask. */
static uint64_t
cp_held(const struct owners_view *v, int idx)
{
	uint64_t mask = 0;

	for (int p = 0; p <= CP_PARTS; p++)
		if (v->holder[p] == idx)
			mask |= cp_bit(p);
	return mask;
}

static int
cp_count(uint64_t mask)
{
	return __builtin_popcountll(mask & (cp_bit(CP_PARTS) - 1));
}

/* Every partition and the router held by a running instance. */
static bool
cp_all_held(struct cp *cp, const struct owners_view *v)
{
	for (int p = 0; p <= CP_PARTS; p++) {
		int h = v->holder[p];

		if (h < 0 || !cp->in[h].running)
			return false;
	}
	return true;
}

/*
 * Every running instance's /metrics says what the bucket says.  One
 * without the cluster series at all is judged by the bucket alone (so the
 * story goes on); title_and_metrics and pause_no_stale_claim fail on it.
 */
static bool
cp_claims_agree(struct cp *cp, const struct owners_view *v)
{
	for (int k = 0; k < CP_NINST; k++)
		if (cp->in[k].running && (!v->answered[k] ||
		    (v->has_metrics[k] && v->claims[k] != cp_held(v, k))))
			return false;
	return true;
}

static void
cp_print_view(struct cp *cp, const char *when, const struct owners_view *v)
{
	char buf[256];

	for (int k = 0; k < CP_NINST; k++) {
		if (!cp->in[k].running)
			continue;
		owners_mask_str(cp_held(v, k), CP_PARTS, buf, sizeof(buf));
		printf("# " CP_TAG ": %s: %s holds %s\n", when, cp->in[k].name, buf);
	}
}

static int
cp_inst_start(struct cp *cp, int k)
{
	struct cp_inst *in = &cp->in[k];
	char listen[64], extra[256], text[4096];
	struct env_config cfg = {
		.workers = 2,
		.servers = cp->c.urls,
		.nats_extra = CLUSTER_NATS,
		.shutdown_timeout_s = 10,
	};

	if (in->name[0] == '\0') {
		snprintf(in->name, sizeof(in->name), "i%d", k + 1);
		snprintf(in->e.tag, sizeof(in->e.tag), CP_TAG "/i%d", k + 1);
		if (harness_path(in->e.dir, sizeof(in->e.dir), cp->dir, in->name) == -1)
			return -1;
		if (mkdir(in->e.dir, 0700) == -1) {
			harness_seterr("mkdir %s: %s", in->e.dir, strerror(errno));
			return -1;
		}
		if ((in->port = webget_free_port()) == -1 ||
		    (in->idx = owners_add(cp->own, in->name, in->port)) == -1)
			return -1;
		snprintf(in->e.svc.bin, sizeof(in->e.svc.bin), "%s", itest_opts.bin);
		if (harness_path(in->e.svc.conf, sizeof(in->e.svc.conf), in->e.dir,
		    "alarm-supervisor.conf") == -1 ||
		    harness_path(in->e.svc.log, sizeof(in->e.svc.log), in->e.dir, "service.log") == -1)
			return -1;
	}
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", in->port);
	snprintf(extra, sizeof(extra), "\n[cluster]\npartitions = %d\ninstance = %s\n"
	    "lease_ttl = %dms\n", CP_PARTS, in->name, CP_TTL_MS);
	cfg.http_listen = listen;
	cfg.extra_conf = extra;
	if (env_config_text(&in->e, &cfg, text, sizeof(text), NULL) == -1 ||
	    harness_write_file(in->e.svc.conf, text) == -1 ||
	    harness_service_start(&in->e.svc) == -1)
		return -1;
	in->running = true;
	owners_watch(cp->own, in->idx, true, 0);
	printf("# " CP_TAG ": %s started (pid %ld, /metrics on port %d)\n", in->name,
	    (long)in->e.svc.proc.pid, in->port);
	return 0;
}

/* A running instance that exited on its own is a failure worth naming at once. */
static int
cp_alive(struct cp *cp)
{
	char st[64];

	for (int k = 0; k < CP_NINST; k++) {
		struct cp_inst *in = &cp->in[k];

		if (in->running && !harness_proc_alive(&in->e.svc.proc)) {
			harness_seterr("%s is not running (%s); see its log %s", in->name,
			    harness_status_str(in->e.svc.proc.status, st, sizeof(st)), in->e.svc.log);
			return -1;
		}
	}
	return 0;
}

/*
 * Wait until every partition and the router are held by running
 * instances, each running instance holds `min_each` partitions or more,
 * every /metrics agrees with the bucket, and that lasts settle_ms.
 */
static int
cp_wait_stable(struct cp *cp, int min_each, int64_t settle_ms, int64_t timeout_ms,
    struct owners_view *out)
{
	int64_t deadline = harness_now_ms() + timeout_ms, since = 0;
	struct owners_view v;
	char what[512] = "no sample yet";

	for (;;) {
		bool ok;

		if (cp_alive(cp) == -1)
			return -1;
		/* A sample is KV reads: on starved cores the cluster may not answer for seconds. */
		if (owners_next(cp->own, &v, 3000) == -1) {
			snprintf(what, sizeof(what), "%s", harness_err());
			since = 0;
			if (harness_now_ms() >= deadline)
				break;
			continue;
		}
		ok = cp_all_held(cp, &v) && cp_claims_agree(cp, &v);
		for (int k = 0; ok && k < CP_NINST; k++)
			if (cp->in[k].running && cp_count(cp_held(&v, k)) < min_each)
				ok = false;
		if (!ok) {
			since = 0;
			what[0] = '\0';
			for (int p = 0; p <= CP_PARTS; p++)
				if (v.holder[p] < 0 || !cp->in[v.holder[p]].running)
					snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s%d "
					    "held by %s", what[0] ? ", " : "", p == CP_PARTS ? "router" : "p",
					    p == CP_PARTS ? 0 : p, owners_name(cp->own, v.holder[p]));
			for (int k = 0; k < CP_NINST; k++) {
				char claimed[128], held[128];

				if (!cp->in[k].running || (v.answered[k] &&
				    (!v.has_metrics[k] || v.claims[k] == cp_held(&v, k))))
					continue;
				owners_mask_str(v.claims[k], CP_PARTS, claimed, sizeof(claimed));
				owners_mask_str(cp_held(&v, k), CP_PARTS, held, sizeof(held));
				if (!v.answered[k])
					snprintf(what + strlen(what), sizeof(what) - strlen(what),
					    "%s%s's /metrics did not answer", what[0] ? "; " : "",
					    cp->in[k].name);
				else
					snprintf(what + strlen(what), sizeof(what) - strlen(what),
					    "%s%s's /metrics claims %s, the bucket gives it %s",
					    what[0] ? "; " : "", cp->in[k].name, claimed, held);
			}
			if (what[0] == '\0') {
				snprintf(what, sizeof(what), "an instance holds fewer than %d partitions:",
				    min_each);
				for (int k = 0; k < CP_NINST; k++) {
					char held[128];

					if (!cp->in[k].running)
						continue;
					owners_mask_str(cp_held(&v, k), CP_PARTS, held, sizeof(held));
					snprintf(what + strlen(what), sizeof(what) - strlen(what), " %s holds %s;",
					    cp->in[k].name, held);
				}
			}
		} else if (since == 0) {
			since = v.at_ms;
		} else if (v.at_ms - since >= settle_ms) {
			*out = v;
			return 0;
		}
		if (harness_now_ms() >= deadline)
			break;
	}
	harness_seterr("ownership not settled after %lld ms: %s", (long long)timeout_ms, what);
	return -1;
}

/*
 * After event e (cp_events) at t0: wait until every partition of `mask`
 * has a running holder other than `from`; prints each partition's time.
 * Waits past the bound (up to 30 s) so a slow takeover is measured, not
 * only said to be slow.  -1 when the slowest took more than bound_ms.
 */
static int
cp_wait_taken(struct cp *cp, int ev, int from, uint64_t mask, int64_t t0, int64_t bound_ms)
{
	int64_t took[CP_PARTS + 1] = { 0 }, max = 0, deadline = t0 + (bound_ms > 15000 ? bound_ms : 15000);
	uint64_t left = mask;
	struct owners_view v;
	char line[1024], list[256];
	size_t n = 0;

	while (left != 0 && harness_now_ms() < deadline) {
		if (owners_next(cp->own, &v, 3000) == -1)
			continue;
		for (int p = 0; p <= CP_PARTS; p++) {
			int h = v.holder[p];

			if ((left & cp_bit(p)) && h >= 0 && h != from && cp->in[h].running) {
				took[p] = v.at_ms - t0;
				left &= ~cp_bit(p);
				if (took[p] > max)
					max = took[p];
			}
		}
	}
	line[0] = '\0';
	for (int p = 0; p <= CP_PARTS && n < sizeof(line); p++) {
		if (!(mask & cp_bit(p)))
			continue;
		if (left & cp_bit(p))
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s%d:never", p == CP_PARTS ?
			    "router" : "p", p == CP_PARTS ? 0 : p);
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s%d:%lldms", p == CP_PARTS ?
			    "router" : "p", p == CP_PARTS ? 0 : p, (long long)took[p]);
	}
	owners_mask_str(mask, CP_PARTS, list, sizeof(list));
	cp->takeover_max[ev] = left != 0 ? -1 : max;
	printf("# " CP_TAG ": takeover after %s of %s (%d partitions%s): max %lld ms (bound %lld);%s\n",
	    cp_events[ev], cp->in[from].name, cp_count(mask), (mask & cp_bit(CP_PARTS)) ?
	    " and the router" : "", (long long)max, (long long)bound_ms, line);
	if (left != 0) {
		owners_mask_str(left, CP_PARTS, list, sizeof(list));
		harness_seterr("after %s of %s, %s never got a new holder within %lld ms",
		    cp_events[ev], cp->in[from].name, list, (long long)(deadline - t0));
		/* Nothing later means much without its partitions. */
		cp_halt(cp, cp_events[ev]);
		return -1;
	}
	if (max > bound_ms) {
		harness_seterr("after %s of %s, the slowest takeover took %lld ms, bound %lld ms",
		    cp_events[ev], cp->in[from].name, (long long)max, (long long)bound_ms);
		return -1;
	}
	return 0;
}

/*
 * When messages get stuck: where.  Each stream's count and last sequence,
 * each consumer's delivered, ack floor, pending and unacked.
 */
static void
cp_dump_pipeline(struct cp *cp)
{
	static const char *const streams[] = { "ALARMS", "ALARM_PARTITIONS" };

	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
		jsConsumerInfoList *list = NULL;
		jsErrCode jerr = 0;
		uint64_t msgs = 0, last = 0;

		if (bus_stream_state(cp->bus, streams[i], &msgs, &last) == 0)
			printf("# " CP_TAG ": stream %s: %llu messages, last sequence %llu\n", streams[i],
			    (unsigned long long)msgs, (unsigned long long)last);
		else
			printf("# " CP_TAG ": stream %s: %s\n", streams[i], harness_err());
		if (js_Consumers(&list, bus_js(cp->bus), streams[i], NULL, &jerr) != NATS_OK)
			continue;
		for (int k = 0; k < list->Count; k++) {
			jsConsumerInfo *ci = list->List[k];

			printf("# " CP_TAG ":   consumer %s to %s: delivered stream seq %llu, ack floor "
			    "%llu, pending %llu, unacked %lld, redelivered %lld, push bound %s\n", ci->Name,
			    ci->Config != NULL && ci->Config->DeliverSubject != NULL ?
			    ci->Config->DeliverSubject : "(pull)",
			    (unsigned long long)ci->Delivered.Stream, (unsigned long long)ci->AckFloor.Stream,
			    (unsigned long long)ci->NumPending, (long long)ci->NumAckPending,
			    (long long)ci->NumRedelivered, ci->PushBound ? "yes" : "no");
			/* Seen here: a wildcard subscription left every partition consumer unbound. */
			if (!ci->PushBound && ci->NumPending > 0)
				printf("# " CP_TAG ":     nobody subscribes to its deliver subject now (note: "
				    "nats-server 2.9.10 counts only a subscription to that very subject as a "
				    "push consumer's interest, not a wildcard that covers it)\n");
		}
		jsConsumerInfoList_Destroy(list);
	}
}

/* One probe user's update and request: the pipeline answers end to end. */
static int
cp_probe(struct cp *cp, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char user[64], ts[48];

	while (harness_now_ms() < deadline) {
		int64_t until = harness_now_ms() + 3000;

		snprintf(user, sizeof(user), "probe-cp-%d", ++cp->probes);
		model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
		if (bus_publish_update(cp->bus, user, "probe", "WARNING", ts) == -1 ||
		    bus_publish_request(cp->bus, user) == -1)
			return -1;
		if (collector_wait_user(cp->digests, user, 1, until < deadline ? until : deadline) == 0)
			return 0;
		if (cp_alive(cp) == -1)
			return -1;
	}
	harness_seterr("no probe digest came back within %lld ms (%d probes)",
	    (long long)timeout_ms, cp->probes);
	return -1;
}

/* The index of the running instance holding the most partitions, skipping `not`; -1 if none. */
static int
cp_busiest(struct cp *cp, const struct owners_view *v, int not)
{
	int best = -1;

	for (int k = 0; k < CP_NINST; k++)
		if (cp->in[k].running && k != not && cp_count(cp_held(v, k)) > 0 &&
		    (best == -1 || cp_count(cp_held(v, k)) > cp_count(cp_held(v, best))))
			best = k;
	return best;
}

/* The partition's rendezvous target among the running instances (lease.c's rule). */
static int
cp_rendezvous(struct cp *cp, int p)
{
	const char *names[CP_NINST];
	int idx[CP_NINST], n = 0, t;

	for (int k = 0; k < CP_NINST; k++)
		if (cp->in[k].running) {
			idx[n] = k;
			names[n++] = cp->in[k].name;
		}
	return (t = lease_target(names, n, p)) == -1 ? -1 : idx[t];
}

/* ---- the story's steps ---- */

/* Start, ownership, what the instances show of it. */
static void
cp_start(struct cp *cp)
{
	struct owners_view v;
	int rc = -1;

	/*
	 * All three at once, as an operator's deployment starts them: they race
	 * to create the streams and the lease bucket, and each must come up.
	 */
	for (int k = 0; k < 3 && cp->why[0] == '\0'; k++)
		if (cp_inst_start(cp, k) == -1)
			cp_halt(cp, "starting the instances");
	for (int64_t until = harness_now_ms() + 60000; cp->why[0] == '\0';) {
		uint64_t msgs, last;

		if (cp_alive(cp) == -1)
			cp_halt(cp, "waiting for the lease bucket");
		else if (owners_start(cp->own, 1000) == 0 &&
		    bus_stream_state(cp->bus, "ALARMS", &msgs, &last) == 0 &&
		    bus_stream_state(cp->bus, "ALARM_PARTITIONS", &msgs, &last) == 0)
			break;
		else if (harness_now_ms() >= until)
			cp_halt(cp, "the streams and the lease bucket");
		else
			harness_sleep_ms(200);
	}
	/* An ASan build starting 3 x 3 processes on two busy cores takes a while. */
	if (cp_can(cp, CP_TAG "/owned_at_start")) {
		rc = cp_wait_stable(cp, 1, 1000, 60000, &v);
		if (rc == 0) {
			cp_print_view(cp, "at start", &v);
			for (int k = 0; k < 3; k++)
				if (!v.has_metrics[k])
					printf("# " CP_TAG ": %s's /metrics has no cluster series: its "
					    "claims cannot be checked, only the bucket's\n", cp->in[k].name);
		} else
			cp_halt(cp, "ownership at start");
		tap_report(CP_TAG "/owned_at_start", rc);
	}
	if (cp->why[0] == '\0' && cp_probe(cp, 30000) == -1) {
		cp_dump_pipeline(cp);
		cp_halt(cp, "the first digest");
	}
	cp_phase(cp, "three instances", CP_TAKEOVER_MS);
}

/* One look at every title and /metrics, against the bucket as sampled last. */
static int
cp_observability_once(struct cp *cp)
{
	struct owners_view v;
	int routers = 0;

	owners_view(cp->own, &v);
	for (int k = 0; k < 3; k++) {
		struct cp_inst *in = &cp->in[k];
		struct webget_reply r;
		char title[512], want[64];
		double val;
		const char *miss = NULL;

		snprintf(want, sizeof(want), "cluster %s", in->name);
		if (harness_title(in->e.svc.proc.pid, title, sizeof(title)) == -1)
			goto fail;
		if (strstr(title, want) == NULL) {
			harness_seterr("%s's title \"%s\" does not say \"%s\"", in->name, title, want);
			goto fail;
		}
		if (webget(in->port, "GET", "/metrics", 5000, &r) == -1)
			goto fail;
		if (webget_metric(r.body, "alarm_digest_cluster_partitions", &val) == -1 ||
		    val != CP_PARTS)
			miss = "alarm_digest_cluster_partitions 12";
		else if (webget_metric(r.body, "alarm_digest_partitions_acquired_total", &val) == -1)
			miss = "alarm_digest_partitions_acquired_total";
		else if (webget_metric(r.body, "alarm_digest_partitions_released_total", &val) == -1)
			miss = "alarm_digest_partitions_released_total";
		else if (webget_metric(r.body, "alarm_digest_partitions_lost_total", &val) == -1)
			miss = "alarm_digest_partitions_lost_total";
		else if (webget_metric(r.body, "alarm_digest_digests_fenced_total", &val) == -1)
			miss = "alarm_digest_digests_fenced_total";
		else if (webget_metric(r.body, "alarm_digest_digest_messages_resent_total", &val) == -1)
			miss = "alarm_digest_digest_messages_resent_total";
		for (int p = 0; miss == NULL && p < CP_PARTS; p++) {
			char series[96];

			snprintf(series, sizeof(series),
			    "alarm_digest_partition_owned_since_seconds{partition=\"%d\"}", p);
			if ((webget_metric(r.body, series, &val) == 0) != (v.holder[p] == k))
				miss = v.holder[p] == k ? "owned_since_seconds of a partition it holds" :
				    "no owned_since_seconds for a partition it does not hold";
			else if (v.holder[p] == k && (val < harness_wall_sec() - 600 ||
			    val > harness_wall_sec() + 5))
				miss = "an owned_since_seconds within the last 10 minutes";
		}
		if (webget_metric(r.body, "alarm_digest_router_active", &val) == 0 && val == 1)
			routers++;
		webget_free(&r);
		if (miss != NULL) {
			harness_seterr("%s's /metrics lacks %s", in->name, miss);
			goto fail;
		}
		printf("# " CP_TAG ": %s's title: %s\n", in->name, title);
	}
	if (routers != 1) {
		harness_seterr("%d instances say alarm_digest_router_active 1, want exactly one",
		    routers);
		goto fail;
	}
	return 0;
fail:
	return -1;
}

/*
 * Title and /metrics of every instance say what it holds; exactly one runs
 * the router.  Shares may still move just after the start settled, and a
 * look spans several requests: a few looks, the last one's result.
 */
static void
cp_observability(struct cp *cp)
{
	int rc = -1;

	if (!cp_can(cp, CP_TAG "/title_and_metrics"))
		return;
	for (int i = 0; i < 5 && rc == -1; i++) {
		if (i > 0)
			harness_sleep_ms(500);
		rc = cp_observability_once(cp);
	}
	tap_report(CP_TAG "/title_and_metrics", rc);
}

/* alarmctl partitions --json names every partition's holder. */
static int
cp_alarmctl_once(struct cp *cp)
{
	char bin[PATH_MAX], copy[PATH_MAX], out[PATH_MAX];
	struct owners_view v;
	json_object *root = NULL, *parts;
	char *text = NULL;
	int status, rc = -1;

	snprintf(copy, sizeof(copy), "%s", itest_opts.bin);
	snprintf(bin, sizeof(bin), "%s/alarmctl", dirname(copy));
	if (harness_path(out, sizeof(out), cp->dir, "alarmctl.out") == -1)
		goto out;
	char *const argv[] = { bin, "-c", cp->in[0].e.svc.conf, "--json", "partitions", NULL };
	if (harness_run(argv, out, 30000, &status) == -1 ||
	    (text = harness_read_file(out, NULL)) == NULL)
		goto out;
	printf("# " CP_TAG ": alarmctl --json partitions: %.600s\n", text);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		harness_seterr("alarmctl --json partitions exited %d: %.300s", WIFEXITED(status) ?
		    WEXITSTATUS(status) : -1, text);
		goto out;
	}
	if ((root = json_tokener_parse(text)) == NULL) {
		harness_seterr("alarmctl --json partitions printed no JSON: %.300s", text);
		goto out;
	}
	/* {partitions: [{partition, instance, since, since_ms, epoch}], router, members} */
	if (!json_object_object_get_ex(root, "partitions", &parts) ||
	    !json_object_is_type(parts, json_type_array) ||
	    json_object_array_length(parts) != CP_PARTS) {
		harness_seterr("alarmctl --json partitions: no \"partitions\" array of %d", CP_PARTS);
		goto out;
	}
	owners_view(cp->own, &v);
	for (size_t i = 0; i < CP_PARTS; i++) {
		json_object *e = json_object_array_get_idx(parts, i), *jp, *ji;
		const char *who;
		int p;

		if (!json_object_object_get_ex(e, "partition", &jp) ||
		    !json_object_object_get_ex(e, "instance", &ji) ||
		    (p = json_object_get_int(jp)) < 0 || p >= CP_PARTS) {
			harness_seterr("alarmctl --json partitions: entry %zu has no partition and "
			    "instance: %s", i, json_object_to_json_string(e));
			goto out;
		}
		who = json_object_get_string(ji);
		/* The bucket was read a moment apart: compare only while nothing moves. */
		if (v.holder[p] >= 0 && (who == NULL || strcmp(who, cp->in[v.holder[p]].name) != 0)) {
			harness_seterr("alarmctl says partition %d is %s's, the bucket %s's", p,
			    who != NULL ? who : "nobody", cp->in[v.holder[p]].name);
			goto out;
		}
	}
	rc = 0;
out:
	if (root != NULL)
		json_object_put(root);
	free(text);
	return rc;
}

/* As cp_observability: a partition may move between alarmctl's read and ours. */
static void
cp_alarmctl(struct cp *cp)
{
	int rc = -1;

	if (!cp_can(cp, CP_TAG "/alarmctl_partitions"))
		return;
	for (int i = 0; i < 3 && rc == -1; i++) {
		if (i > 0)
			harness_sleep_ms(500);
		rc = cp_alarmctl_once(cp);
	}
	tap_report(CP_TAG "/alarmctl_partitions", rc);
}

static bool
cp_prefixed(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* a) The shuffled plan with repeats, sent while the runner's load flows: exact. */
static void
cp_plan_phase(struct cp *cp)
{
	struct plan p = { 0 };
	struct rng rng;
	int64_t deadline;
	int rc = -1;

	if (!cp_can(cp, CP_TAG "/digests_exact_3"))
		return;
	rng_seed(&rng, itest_opts.seed ^ 0xc9a7);
	if (plan_users(&p, &rng, "cs", itest_scaled(60), 4) == -1) {
		harness_seterr("plan: out of memory");
		goto out;
	}
	if (plan_send(&p, cp->bus, cp->m) == -1)
		goto out;
	printf("# " CP_TAG ": plan of %zu messages sent with 3 instances\n", p.n);
	deadline = harness_now_ms() + 30000;
	for (size_t i = 0; i < model_user_count(cp->m); i++) {
		const char *u = model_user(cp->m, i);

		if (!cp_prefixed(u, "cs-"))
			continue;
		if (collector_wait_user(cp->digests, u, model_expected_count(cp->m, u), deadline) == -1)
			goto out;
		if (traffic_verify_user(cp->m, cp->digests, u, false) == -1)
			goto out;
	}
	rc = 0;
out:
	tap_report(CP_TAG "/digests_exact_3", rc);
	plan_free(&p);
}

/* b) kill -9 of the router's instance, workers and all, under load. */
static void
cp_kill_phase(struct cp *cp)
{
	struct owners_view v;
	int victim;
	uint64_t mask;
	int64_t t0;

	if (!cp_can(cp, CP_TAG "/kill_takeover"))
		return;
	owners_view(cp->own, &v);
	if ((victim = v.holder[CP_PARTS]) < 0 || !cp->in[victim].running)
		victim = cp_busiest(cp, &v, -1);
	if (victim == -1) {
		tap_fail(CP_TAG "/kill_takeover", "no running instance holds anything");
		cp_halt(cp, "kill -9");
		return;
	}
	mask = cp_held(&v, victim);
	cp_phase(cp, "kill -9", CP_TAKEOVER_MS);
	owners_watch(cp->own, cp->in[victim].idx, false, 0);
	t0 = harness_now_ms();
	harness_proc_kill(&cp->in[victim].e.svc.proc);
	cp->in[victim].running = false;
	tap_report(CP_TAG "/kill_takeover", cp_wait_taken(cp, 0, victim, mask, t0, CP_TAKEOVER_MS));
	if (runner_wait_sent(&cp->r, 200, 30000) == -1)
		cp_halt(cp, "load after the kill");
}

/* c) i4 joins and gets a share; then one instance leaves with SIGTERM. */
static void
cp_join_leave_phase(struct cp *cp)
{
	struct owners_view v;
	char st[64];
	int leaver, match = 0, rc;
	uint64_t mask;
	int64_t t0;

	if (cp_can(cp, CP_TAG "/join_rebalance")) {
		cp_phase(cp, "join", CP_TAKEOVER_MS);
		if (cp_inst_start(cp, 3) == -1)
			rc = -1;
		else
			rc = cp_wait_stable(cp, 1, CP_TTL_MS, 30000, &v);
		if (rc == 0) {
			cp_print_view(cp, "after i4 joined", &v);
			for (int p = 0; p < CP_PARTS; p++)
				match += v.holder[p] == cp_rendezvous(cp, p);
			printf("# " CP_TAG ": %d of %d partitions with their rendezvous owner\n", match,
			    CP_PARTS);
		} else {
			cp_halt(cp, "i4 joining");
		}
		tap_report(CP_TAG "/join_rebalance", rc);
	}
	if (!cp_can(cp, CP_TAG "/leave_moves"))
		return;
	owners_view(cp->own, &v);
	/* Not the router's: the partitions' hand-over is what this step is about. */
	if ((leaver = cp_busiest(cp, &v, v.holder[CP_PARTS])) == -1) {
		tap_fail(CP_TAG "/leave_moves", "no running instance but the router's holds a partition");
		return;
	}
	mask = cp_held(&v, leaver);
	cp_phase(cp, "SIGTERM leave", CP_TAKEOVER_MS);
	t0 = harness_now_ms();
	if (harness_service_signal(&cp->in[leaver].e.svc, SIGTERM) == -1) {
		tap_report(CP_TAG "/leave_moves", -1);
		return;
	}
	rc = cp_wait_taken(cp, 1, leaver, mask, t0, CP_LEAVE_MS);
	/* Handed over: what a draining process still shows is no claim any more. */
	owners_watch(cp->own, cp->in[leaver].idx, false, 0);
	if (harness_proc_wait(&cp->in[leaver].e.svc.proc, 25000) == -1) {
		harness_seterr("%s still running 25 s after SIGTERM", cp->in[leaver].name);
		rc = -1;
	} else if (!WIFEXITED(cp->in[leaver].e.svc.proc.status) ||
	    WEXITSTATUS(cp->in[leaver].e.svc.proc.status) != 0) {
		harness_seterr("%s ended with %s after SIGTERM, want exit 0", cp->in[leaver].name,
		    harness_status_str(cp->in[leaver].e.svc.proc.status, st, sizeof(st)));
		rc = -1;
	} else {
		char *log = harness_read_file(cp->in[leaver].e.svc.log, NULL);

		printf("# " CP_TAG ": %s exited 0 %lld ms after SIGTERM\n", cp->in[leaver].name,
		    (long long)(harness_now_ms() - t0));
		if (log == NULL || strstr(log, CP_LEAVE_LOG) == NULL) {
			harness_seterr("%s's log does not say \"" CP_LEAVE_LOG "\": its leases "
			    "expired instead of being handed over", cp->in[leaver].name);
			rc = -1;
		}
		free(log);
	}
	cp->in[leaver].running = false;
	tap_report(CP_TAG "/leave_moves", rc);
}

/* The node leading the lease bucket's stream, else the metadata leader, else n1. */
static int
cp_bucket_leader(struct cp *cp)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	int node = -1;

	if (js_GetStreamInfo(&si, bus_js(cp->bus), "KV_ALARM_LEASES", NULL, &jerr) == NATS_OK) {
		if (si->Cluster != NULL && si->Cluster->Leader != NULL &&
		    si->Cluster->Leader[0] == 'n')
			node = atoi(si->Cluster->Leader + 1) - 1;
		jsStreamInfo_Destroy(si);
	}
	if (node < 0 || node >= CLUSTER_NODES)
		node = cluster_meta_leader(&cp->c);
	return node >= 0 && node < CLUSTER_NODES ? node : 0;
}

/* d) A nats-server node stopped and started again under load. */
static void
cp_node_phase(struct cp *cp)
{
	struct owners_view v;
	int64_t t0;
	int k, rc = -1;

	if (!cp_can(cp, CP_TAG "/node_restart"))
		return;
	k = cp_bucket_leader(cp);
	cp_phase(cp, "node restart", CP_NODE_UNOWNED_MS);
	cp->node_stop_ms = t0 = harness_now_ms();
	cp->node_stopped = k;
	printf("# " CP_TAG ": stopping n%d, the lease bucket's leader\n", k + 1);
	if (cluster_node_stop(&cp->c, k) == -1)
		goto out;
	if (runner_wait_sent(&cp->r, 200, 15000) == -1) {
		char why[512];

		/* harness_err is the buffer harness_seterr writes: copy it first. */
		snprintf(why, sizeof(why), "%s", harness_err());
		harness_seterr("with n%d down: %s%s%s", k + 1, why, cp->r.failed ? ": " : "",
		    cp->r.failed ? cp->r.err : "");
		goto out;
	}
	if (cluster_node_start(&cp->c, k, 30000) == -1 || runner_wait_sent(&cp->r, 200, 15000) == -1)
		goto out;
	printf("# " CP_TAG ": n%d back after %lld ms, 400 messages sent meanwhile\n", k + 1,
	    (long long)(harness_now_ms() - t0));
	if (cp_wait_stable(cp, 0, 1000, 20000, &v) == -1)
		goto out;
	printf("# " CP_TAG ": ownership settled %lld ms after the stop\n",
	    (long long)(harness_now_ms() - t0));
	rc = 0;
out:
	tap_report(CP_TAG "/node_restart", rc);
	if (rc == -1)
		cp_halt(cp, "node restart");
	cp_phase(cp, "after the node restart", CP_TAKEOVER_MS);
}

/* A received digest of u at or after `from` that repeats an earlier one more often than the model has it. */
static int
cp_repeat(struct cp *cp, const char *u, size_t from)
{
	size_t n = collector_count(cp->digests, u), want = model_expected_count(cp->m, u);

	for (size_t i = from; i < n; i++) {
		const char *d = collector_get(cp->digests, u, i);
		size_t got = 0, expected = 0;

		for (size_t j = 0; j <= i; j++)
			got += strcmp(collector_get(cp->digests, u, j), d) == 0;
		for (size_t j = 0; j < want; j++)
			expected += strcmp(model_expected(cp->m, u, j), d) == 0;
		if (got > 1 && got > expected) {
			harness_seterr("user %s: digest #%zu %s arrived after the paused instance saw "
			    "its leases gone and repeats an earlier one", u, i + 1, d);
			return -1;
		}
	}
	return 0;
}

/* e) SIGSTOP the busiest instance past its lease, then SIGCONT. */
static void
cp_pause_phase(struct cp *cp, size_t **snap, size_t *nsnap)
{
	struct owners_view v;
	int victim, rc;
	uint64_t mask;
	int64_t t0, t1;
	pid_t pg;

	if (!cp_can(cp, CP_TAG "/pause_takeover")) {
		(void)cp_can(cp, CP_TAG "/pause_no_stale_claim");
		(void)cp_can(cp, CP_TAG "/pause_rejoins");
		return;
	}
	owners_view(cp->own, &v);
	if ((victim = cp_busiest(cp, &v, -1)) == -1) {
		harness_seterr("no running instance holds a partition");
		tap_report(CP_TAG "/pause_takeover", -1);
		cp_halt(cp, "SIGSTOP");
		(void)cp_can(cp, CP_TAG "/pause_no_stale_claim");
		(void)cp_can(cp, CP_TAG "/pause_rejoins");
		return;
	}
	mask = cp_held(&v, victim);
	pg = cp->in[victim].e.svc.proc.pid;
	cp_phase(cp, "SIGSTOP", CP_TAKEOVER_MS);
	owners_watch(cp->own, cp->in[victim].idx, false, 0);
	/* Taken over, it counts as gone until SIGCONT. */
	cp->in[victim].running = false;
	t0 = harness_now_ms();
	if (kill(-pg, SIGSTOP) == -1) {
		harness_seterr("kill(-%ld, SIGSTOP): %s", (long)pg, strerror(errno));
		tap_report(CP_TAG "/pause_takeover", -1);
		cp_halt(cp, "SIGSTOP");
		(void)cp_can(cp, CP_TAG "/pause_no_stale_claim");
		(void)cp_can(cp, CP_TAG "/pause_rejoins");
		return;
	}
	tap_report(CP_TAG "/pause_takeover", cp_wait_taken(cp, 2, victim, mask, t0, CP_TAKEOVER_MS));
	if (harness_now_ms() < t0 + 3 * CP_TTL_MS)
		harness_sleep_ms(t0 + 3 * CP_TTL_MS - harness_now_ms());
	(void)collector_sync(cp->digests, cp->bus, harness_now_ms() + 10000);
	t1 = harness_now_ms();
	if (kill(-pg, SIGCONT) == -1) {
		harness_seterr("kill(-%ld, SIGCONT): %s", (long)pg, strerror(errno));
		cp_halt(cp, "SIGCONT");
	}
	cp->in[victim].running = true;
	owners_watch(cp->own, cp->in[victim].idx, true, CP_STALE_MS);
	printf("# " CP_TAG ": %s SIGCONT after %lld ms stopped\n", cp->in[victim].name,
	    (long long)(t1 - t0));

	/* Its own view may lag until its lease thread runs, then must match the bucket. */
	rc = -1;
	if (cp_can(cp, CP_TAG "/pause_no_stale_claim")) {
		char claimed[256], held[256];

		claimed[0] = held[0] = '\0';
		while (harness_now_ms() < t1 + CP_STALE_MS) {
			if (owners_next(cp->own, &v, 3000) == -1 || !v.answered[victim])
				continue;
			if (!v.has_metrics[victim]) {
				snprintf(claimed, sizeof(claimed), "(nothing: its /metrics has no "
				    "cluster series, so it cannot tell)");
				continue;
			}
			if ((v.claims[victim] & ~cp_held(&v, victim)) == 0) {
				rc = 0;
				break;
			}
			owners_mask_str(v.claims[victim], CP_PARTS, claimed, sizeof(claimed));
			owners_mask_str(cp_held(&v, victim), CP_PARTS, held, sizeof(held));
		}
		if (rc == 0)
			printf("# " CP_TAG ": %s's /metrics matched the bucket %lld ms after SIGCONT\n",
			    cp->in[victim].name, (long long)(v.at_ms - t1));
		else
			harness_seterr("%s still claims %s %d ms after SIGCONT, the bucket gives it %s",
			    cp->in[victim].name, claimed[0] ? claimed : "(no answer)", CP_STALE_MS,
			    held[0] ? held : "?");
		tap_report(CP_TAG "/pause_no_stale_claim", rc);
	}
	/*
	 * From here on nothing may repeat: the instance has seen its leases
	 * gone.  Before, a digest its NATS client held when it stopped goes
	 * out on SIGCONT, and may repeat the answer the request's new owner
	 * gave (at least once, as after a crash): the fence stops requests
	 * handled past it, not publishes already handed over.
	 */
	(void)collector_sync(cp->digests, cp->bus, harness_now_ms() + 10000);
	*nsnap = model_user_count(cp->m);
	if ((*snap = calloc(*nsnap + 1, sizeof(**snap))) == NULL)
		*nsnap = 0;
	for (size_t i = 0; i < *nsnap; i++)
		(*snap)[i] = collector_count(cp->digests, model_user(cp->m, i));
	if (cp_can(cp, CP_TAG "/pause_rejoins")) {
		rc = cp_wait_stable(cp, 1, CP_TTL_MS, 20000, &v);
		if (rc == 0) {
			cp_print_view(cp, "after the SIGCONT", &v);
			printf("# " CP_TAG ": %s rejoined %lld ms after SIGCONT\n", cp->in[victim].name,
			    (long long)(harness_now_ms() - t1));
		}
		tap_report(CP_TAG "/pause_rejoins", rc);
	}
}

/*
 * Nothing left to do anywhere: the newest consumer of each group (router,
 * each partition; older ones may linger after a kill) has nothing pending
 * or unacked.  The name's tail is "<epoch>_<gen>": the newest has the
 * greatest pair.
 */
static int
cp_drained(struct cp *cp, const char *stream, const char *prefix, int groups, char *why, size_t cap)
{
	jsConsumerInfoList *list = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int best[CP_PARTS + 1];
	unsigned long long be[CP_PARTS + 1], bg[CP_PARTS + 1];
	int rc = 0;

	if ((s = js_Consumers(&list, bus_js(cp->bus), stream, NULL, &jerr)) != NATS_OK) {
		snprintf(why, cap, "consumers of %s: %s (jetstream error %d)", stream,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	for (int g = 0; g < groups; g++)
		best[g] = -1, be[g] = bg[g] = 0;
	for (int i = 0; i < list->Count; i++) {
		const char *name = list->List[i]->Name, *tail;
		unsigned long long e, gen;
		int g = 0;

		if (!cp_prefixed(name, prefix))
			continue;
		tail = name + strlen(prefix);
		if (groups > 1) {
			char *end;

			g = (int)strtol(tail, &end, 10);
			if (end == tail || *end != '_' || g < 0 || g >= groups)
				continue;
			tail = end + 1;
		}
		if (sscanf(tail, "%llu_%llu", &e, &gen) != 2)
			continue;
		if (best[g] == -1 || e > be[g] || (e == be[g] && gen > bg[g]))
			best[g] = i, be[g] = e, bg[g] = gen;
	}
	for (int g = 0; g < groups && rc == 0; g++) {
		jsConsumerInfo *ci;

		if (best[g] == -1) {
			if (groups > 1)
				snprintf(why, cap, "no consumer %s%d_* on %s", prefix, g, stream);
			else
				snprintf(why, cap, "no consumer %s* on %s", prefix, stream);
			rc = -1;
			break;
		}
		ci = list->List[best[g]];
		if (ci->NumPending != 0 || ci->NumAckPending != 0) {
			snprintf(why, cap, "consumer %s on %s: %llu pending, %lld unacked", ci->Name,
			    stream, (unsigned long long)ci->NumPending, (long long)ci->NumAckPending);
			rc = -1;
		}
	}
	jsConsumerInfoList_Destroy(list);
	return rc;
}

static int
cp_settle(struct cp *cp, int64_t deadline)
{
	char why[512] = "", router[96], part[96];

	snprintf(router, sizeof(router), "alarm-digest_router_");
	snprintf(part, sizeof(part), "alarm-digest_p");
	for (;;) {
		if (cp_drained(cp, "ALARMS", router, 1, why, sizeof(why)) == 0 &&
		    cp_drained(cp, "ALARM_PARTITIONS", part, CP_PARTS, why, sizeof(why)) == 0)
			break;
		if (harness_now_ms() >= deadline) {
			harness_seterr("not settled: %s", why);
			return -1;
		}
		harness_sleep_ms(250);
	}
	return collector_sync(cp->digests, cp->bus, deadline);
}

static int
cp_count_alarm(void *arg, const char *alarm, enum model_status status, const char *ts,
    bool delivered)
{
	(void)alarm, (void)status, (void)ts, (void)delivered;
	(*(size_t *)arg)++;
	return 0;
}

/* The final round, every digest against the model, and no repeat once the paused instance resumed. */
static void
cp_verify(struct cp *cp, const size_t *snap, size_t nsnap)
{
	char marker[64];
	size_t alarms = 0;
	int rc = -1;

	if (!cp_can(cp, CP_TAG "/digests_match_model")) {
		(void)cp_can(cp, CP_TAG "/pause_no_repeat");
		return;
	}
	if (runner_stop(&cp->r) == -1)
		goto out;
	printf("# " CP_TAG ": traffic thread sent %zu messages\n", atomic_load(&cp->r.sent));
	if (traffic_final_round(cp->bus, cp->m, CP_TAG) == -1)
		goto out;
	traffic_marker(CP_TAG, marker, sizeof(marker));
	if (traffic_wait(cp->m, cp->digests, true, 60000, NULL, marker) == -1 ||
	    cp_settle(cp, harness_now_ms() + 30000) == -1) {
		cp_dump_pipeline(cp);
		goto out;
	}
	/* Exact repeats allowed: a takeover or a failed flush redoes a batch. */
	if (cp->node_stop_ms > 0)
		rc = cl_verify_after_stop(CP_TAG, cp->m, cp->digests, &cp->pins, cp->node_stopped,
		    cp->node_stop_ms, marker);
	else
		rc = traffic_verify(cp->m, cp->digests, true);
out:
	for (size_t i = 0; i < model_user_count(cp->m); i++)
		(void)model_alarms(cp->m, model_user(cp->m, i), cp_count_alarm, &alarms);
	printf("# " CP_TAG ": checked %zu digests of %zu users (%zu received), %zu alarms\n",
	    model_expected_total(cp->m), model_user_count(cp->m),
	    collector_total(cp->digests, false), alarms);
	tap_report(CP_TAG "/digests_match_model", rc);
	if (!cp_can(cp, CP_TAG "/pause_no_repeat"))
		return;
	rc = snap != NULL ? 0 : -1;
	if (snap == NULL)
		harness_seterr("no snapshot of the digests after SIGCONT");
	for (size_t i = 0; rc == 0 && i < nsnap; i++)
		rc = cp_repeat(cp, model_user(cp->m, i), snap[i]);
	tap_report(CP_TAG "/pause_no_repeat", rc);
}

/* What the sampler saw all along. */
static void
cp_sampler_checks(struct cp *cp)
{
	struct owners_stats st;

	owners_stop(cp->own);
	owners_stats(cp->own, &st);
	printf("# " CP_TAG ": %llu ownership samples (%llu bucket errors, %llu /metrics "
	    "errors), %llu partition moves, %llu brief double claims (hand-overs seen mid-way), "
	    "longest claim against the bucket %lld ms\n", (unsigned long long)st.rounds,
	    (unsigned long long)st.kv_errors, (unsigned long long)st.http_errors,
	    (unsigned long long)owners_moves(cp->own), (unsigned long long)st.overlaps,
	    (long long)st.max_stale_ms);
	printf("# " CP_TAG ": takeover max: kill -9 %lld ms, SIGTERM leave %lld ms, SIGSTOP "
	    "%lld ms (-1: never, -2: not measured)\n", (long long)cp->takeover_max[0], (long long)cp->takeover_max[1],
	    (long long)cp->takeover_max[2]);
	if (st.rounds == 0) {
		tap_fail(CP_TAG "/single_owner", "no ownership sample was taken");
		tap_fail(CP_TAG "/always_owned", "no ownership sample was taken");
		return;
	}
	if (st.doubles + st.stale == 0)
		tap_ok(CP_TAG "/single_owner");
	else
		tap_fail(CP_TAG "/single_owner", "%llu double claims, %llu claims against the "
		    "bucket past %d ms; first: %s", (unsigned long long)st.doubles,
		    (unsigned long long)st.stale, CP_TTL_MS, st.first_problem);
	if (st.long_unowned == 0)
		tap_ok(CP_TAG "/always_owned");
	else
		tap_fail(CP_TAG "/always_owned", "%llu windows without a holder past their bound; "
		    "first problem seen: %s", (unsigned long long)st.long_unowned, st.first_problem);
}

/* SIGTERM to every running instance at once; each exits 0 and leaves no worker. */
static void
cp_teardown(struct cp *cp)
{
	struct harness_worker w[CP_NINST][16];
	int nw[CP_NINST] = { 0 };
	char st[64], err[512] = "";

	/* harness_proc_alive sets harness_err even when all is well: our own buffer, then. */
	for (int k = 0; k < CP_NINST; k++) {
		struct cp_inst *in = &cp->in[k];

		if (!in->running)
			continue;
		if (!harness_proc_alive(&in->e.svc.proc)) {
			if (err[0] == '\0')
				snprintf(err, sizeof(err), "%s was not running at teardown (%s)", in->name,
				    harness_status_str(in->e.svc.proc.status, st, sizeof(st)));
			in->running = false;
			continue;
		}
		nw[k] = harness_workers(in->e.svc.proc.pid, w[k], 16);
		(void)harness_service_signal(&in->e.svc, SIGTERM);
	}
	for (int k = 0; k < CP_NINST; k++) {
		struct cp_inst *in = &cp->in[k];

		if (!in->running)
			continue;
		in->running = false;
		if (harness_proc_wait(&in->e.svc.proc, 25000) == -1) {
			if (err[0] == '\0')
				snprintf(err, sizeof(err), "%s still running 25 s after SIGTERM", in->name);
			continue;
		}
		if ((!WIFEXITED(in->e.svc.proc.status) || WEXITSTATUS(in->e.svc.proc.status) != 0) &&
		    err[0] == '\0')
			snprintf(err, sizeof(err), "%s ended with %s after SIGTERM, want exit 0", in->name,
			    harness_status_str(in->e.svc.proc.status, st, sizeof(st)));
		for (int i = 0; i < nw[k]; i++)
			if (harness_pid_alive(w[k][i].pid) && err[0] == '\0')
				snprintf(err, sizeof(err), "%s's worker %d pid %ld outlived it", in->name,
				    w[k][i].slot, (long)w[k][i].pid);
	}
	if (cp->in[0].name[0] == '\0')
		tap_fail(CP_TAG "/teardown", "no instance was started");
	else if (err[0] != '\0')
		tap_fail(CP_TAG "/teardown", "%s", err);
	else
		tap_ok(CP_TAG "/teardown");
}

static void
cp_down(struct cp *cp)
{
	bool failed;

	owners_free(cp->own);
	cp->own = NULL;
	for (int k = 0; k < CP_NINST; k++)
		if (cp->in[k].e.svc.proc.pid > 0)
			harness_proc_kill(&cp->in[k].e.svc.proc);
	harness_kill_orphans();
	failed = tap_failures() > cp->failures_at_start;
	for (int k = 0; k < CP_NINST; k++) {
		if (cp->in[k].name[0] == '\0')
			continue;
		tap_check_sanitizers(cp->in[k].e.tag, cp->in[k].e.svc.log, 200);
		if (failed)
			harness_dump_tail(cp->in[k].e.tag, cp->in[k].e.svc.log, 40);
	}
	collector_free(cp->digests);
	bus_close(cp->bus);
	cl_pins_close(&cp->pins);
	bus_close(cp->sbus);
	cluster_stop(&cp->c);
	if (cp->dir[0] == '\0')
		return;
	if (failed)
		for (int i = 0; i < CLUSTER_NODES; i++)
			if (cp->c.node[i].log[0] != '\0')
				harness_dump_tail("cluster node log", cp->c.node[i].log, 8);
	if (getenv("ITEST_KEEP") != NULL) {
		harness_tmpdir_keep(cp->dir);
		printf("# " CP_TAG ": kept %s\n", cp->dir);
	} else if (harness_tmpdir_remove(cp->dir) == -1) {
		printf("# " CP_TAG ": %s\n", harness_err());
	}
}

/* The cluster, the test's two connections, the sampler; instances come later. */
static int
cp_setup(struct cp *cp)
{
	if (cp->m == NULL) {
		harness_seterr("model: out of memory");
		return -1;
	}
	if (harness_tmpdir(CP_TAG, cp->dir, sizeof(cp->dir)) == -1 ||
	    cluster_start(&cp->c, cp->dir, 60000) == -1)
		return -1;
	printf("# " CP_TAG ": cluster up at %s\n", cp->c.urls);
	if ((cp->bus = bus_open(cp->c.urls, true)) == NULL ||
	    (cp->digests = collector_new(cp->bus, "AlarmDigest")) == NULL)
		return -1;
	if (cl_pins_open(&cp->pins, &cp->c) == -1)
		return -1;
	/* Its own connection: samples never queue behind the publisher. */
	if ((cp->sbus = bus_open(cp->c.urls, true)) == NULL ||
	    (cp->own = owners_new(bus_conn(cp->sbus), "ALARM_LEASES", CP_PARTS, 100,
	    CP_DOUBLE_MS, CP_TTL_MS)) == NULL)
		return -1;
	return 0;
}

void
scn_cluster_partitions(void)
{
	struct cp *cp = calloc(1, sizeof(*cp));
	size_t *snap = NULL, nsnap = 0;
	char first[1200];

	if (cp == NULL) {
		tap_fail(CP_TAG, "out of memory");
		return;
	}
	cp->failures_at_start = tap_failures();
	cp->t_start = harness_now_ms();
	for (int i = 0; i < 3; i++)
		cp->takeover_max[i] = -2;
	cp->m = model_new();
	if (cp_setup(cp) == -1)
		cp_halt(cp, "setup");
	cp_start(cp);
	cp_observability(cp);
	cp_alarmctl(cp);
	if (cp->why[0] == '\0') {
		cp->r.bus = cp->bus;
		cp->r.model = cp->m;
		cp->r.seed = itest_opts.seed ^ 0xc14;
		cp->r.prefix = "cp";
		cp->r.users = itest_scaled(200);
		cp->r.alarms = 4;
		cp->r.batch = 10;
		cp->r.pause_ms = 20;
		cp->r.max_events = (size_t)itest_scaled(200000);
		cp->r.base_sec = harness_wall_sec() - 7200;
		if (runner_start(&cp->r) == -1 || runner_wait_sent(&cp->r, 200, 30000) == -1)
			cp_halt(cp, "load");
	}
	cp_plan_phase(cp);
	cp_kill_phase(cp);
	cp_join_leave_phase(cp);
	cp_node_phase(cp);
	cp_pause_phase(cp, &snap, &nsnap);
	cp_phase(cp, "final", CP_TAKEOVER_MS);
	cp_verify(cp, snap, nsnap);
	if (cp->r.started)
		(void)runner_stop(&cp->r);
	if (cp->own != NULL)
		cp_sampler_checks(cp);
	else {
		tap_fail(CP_TAG "/single_owner", "not run: %s", cp->why);
		tap_fail(CP_TAG "/always_owned", "not run: %s", cp->why);
	}
	if (cp->bus != NULL) {
		if (collector_errors(cp->digests, first, sizeof(first)) > 0)
			tap_fail(CP_TAG "/digest_json_shape", "a digest broke the output contract: %s",
			    first);
		else if (collector_dropped(cp->digests) != 0)
			tap_fail(CP_TAG "/digest_json_shape", "the test's subscription dropped %lld "
			    "digests", (long long)collector_dropped(cp->digests));
		else
			tap_ok(CP_TAG "/digest_json_shape");
	} else {
		tap_fail(CP_TAG "/digest_json_shape", "not run: %s", cp->why);
	}
	cp_teardown(cp);
	cp_down(cp);
	free(snap);
	model_free(cp->m);
	free(cp);
}
