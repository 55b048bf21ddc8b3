/*
 * Scenarios on a 3-node JetStream cluster (issue 14 groundwork): today's
 * single-instance service with every node's URL in `servers` and its
 * stream replicated 3 ways; and the same while the node it is connected
 * to goes away and comes back under load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/cluster.h"
#include "itest.h"

#define CLUSTER_NATS "stream_replicas = 3\n"

/* The cluster in its own temp dir (env_down removes the env's while nodes may still write). */
struct cl_env {
	struct env e;
	struct cluster c;
	char dir[PATH_MAX];
};

static int
cl_up(struct cl_env *ce, const char *tag, struct env_config *cfg)
{
	memset(ce, 0, sizeof(*ce));
	if (harness_tmpdir(tag, ce->dir, sizeof(ce->dir)) == -1 ||
	    cluster_start(&ce->c, ce->dir, 60000) == -1)
		return -1;
	printf("# %s: cluster up at %s\n", tag, ce->c.urls);
	cfg->servers = ce->c.urls;
	cfg->nats_extra = CLUSTER_NATS;
	return env_up(&ce->e, tag, cfg);
}

static void
cl_down(struct cl_env *ce)
{
	bool failed = tap_failures() > ce->e.failures_at_start;

	env_down(&ce->e);
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
	    cl_up(&ce, "cluster_r3", &cfg) == -1 || cl_check_replicas(&ce.e) == -1) {
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
	int64_t t0;
	int k;

	memset(&r, 0, sizeof(r));
	if (m == NULL || cl_up(&ce, "cluster_node_restart", &cfg) == -1 ||
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
	    "n%d\n", k + 1, ce.c.node[k].url, cluster_meta_leader(&ce.c) + 1);
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
	tap_report("cluster_node_restart/digests_match_model",
	    env_finish_and_verify(&ce.e, m, &r, false));
	tap_report("cluster_node_restart/digest_json_shape", env_check_collector(&ce.e));
out:
	if (r.started)
		(void)runner_stop(&r);
	cl_down(&ce);
	model_free(m);
}
