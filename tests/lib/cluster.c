#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cluster.h"

#define CLUSTER_NAME "itest"

/*
 * Route ports are named in every node's config before any node runs, so
 * unlike client ports they cannot be left to nats-server: take free ones
 * from the kernel, all held open together so the three differ, then let
 * go.  Another program could take one in the moment before nats-server
 * binds it; the start then fails naming the port, and that is rare
 * enough for a test.
 */
static int
cluster_pick_ports(int *ports, int n)
{
	int fds[CLUSTER_NODES], rc = 0, i;

	for (i = 0; i < n; i++) {
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);

		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
		    bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
		    getsockname(fds[i], (struct sockaddr *)&sa, &len) == -1) {
			harness_seterr("picking a free route port on 127.0.0.1: %s", strerror(errno));
			if (fds[i] != -1)
				close(fds[i]);
			rc = -1;
			break;
		}
		ports[i] = ntohs(sa.sin_port);
	}
	while (--i >= 0)
		close(fds[i]);
	return rc;
}

/*
 * Node i's config: its name, its route port, routes to all (itself
 * included).  JetStream and its store (DIR/js) come from the command line
 * harness_nats_start_conf builds; the file must not repeat them.
 */
static int
cluster_conf_text(const struct cluster *c, int i, char *buf, size_t cap)
{
	int n = snprintf(buf, cap,
	    "server_name: n%d\n"
	    "cluster {\n"
	    "  name: " CLUSTER_NAME "\n"
	    "  listen: \"127.0.0.1:%d\"\n"
	    "  routes: [ nats://127.0.0.1:%d, nats://127.0.0.1:%d, nats://127.0.0.1:%d ]\n"
	    "}\n",
	    i + 1, c->route_port[i], c->route_port[0], c->route_port[1], c->route_port[2]);

	if (n < 0 || (size_t)n >= cap) {
		harness_seterr("config of cluster node n%d does not fit in %zu bytes", i + 1, cap);
		return -1;
	}
	return 0;
}

/* One JetStream API request to node i; 0 when it answered without an error. */
static int
cluster_node_api(const struct cluster *c, int i, const char *subject, const char *body)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	natsStatus s;
	int rc = -1;

	s = natsOptions_Create(&o);
	if (s == NATS_OK) s = natsOptions_SetURL(o, c->node[i].url);
	if (s == NATS_OK) s = natsOptions_SetTimeout(o, 1000);
	if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, false);
	if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
	if (s == NATS_OK) s = natsConnection_RequestString(&reply, nc, subject, body, 2000);
	if (s != NATS_OK) {
		harness_seterr("%s on node n%d (%s): %s", subject, i + 1, c->node[i].url,
		    natsStatus_GetText(s));
	} else if (strstr(natsMsg_GetData(reply), "\"error\"") != NULL) {
		harness_seterr("%s on node n%d (%s): %.300s", subject, i + 1, c->node[i].url,
		    natsMsg_GetData(reply));
	} else {
		rc = 0;
	}
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return rc;
}

/*
 * A metadata leader is not enough for a replicated stream: it must also
 * count every peer as current, or a create fails with "no suitable peers
 * for placement".  Creating (and deleting) a small R3 stream is the one
 * test that says so.
 */
static int
cluster_probe_r3(const struct cluster *c)
{
	if (cluster_node_api(c, 0, "$JS.API.STREAM.CREATE.ITEST_CLUSTER_PROBE",
	    "{\"name\":\"ITEST_CLUSTER_PROBE\",\"subjects\":[\"itest.cluster.probe\"],"
	    "\"storage\":\"memory\",\"num_replicas\":3}") == -1)
		return -1;
	return cluster_node_api(c, 0, "$JS.API.STREAM.DELETE.ITEST_CLUSTER_PROBE", "");
}

int
cluster_wait_ready(struct cluster *c, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		int ready = 0, running = 0;

		for (int i = 0; i < CLUSTER_NODES; i++) {
			if (c->node[i].proc.pid <= 0 || c->node[i].proc.reaped)
				continue;
			running++;
			if (cluster_node_api(c, i, "$JS.API.INFO", "") == -1)
				break;
			ready++;
		}
		if (running > 0 && ready == running &&
		    (running < CLUSTER_NODES || cluster_probe_r3(c) == 0))
			return 0;
		if (harness_now_ms() >= deadline) {
			char why[1024];

			snprintf(why, sizeof(why), "%s", running > 0 ? harness_err() :
			    "no node is running");
			harness_seterr("JetStream cluster not ready within %lld ms: %s",
			    (long long)timeout_ms, why);
			return -1;
		}
		harness_sleep_ms(200);
	}
}

int
cluster_start(struct cluster *c, const char *dir, int64_t timeout_ms)
{
	char conf[2048], nodedir[PATH_MAX], name[8];
	size_t off = 0;

	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (cluster_pick_ports(c->route_port, CLUSTER_NODES) == -1)
		return -1;
	for (int i = 0; i < CLUSTER_NODES; i++) {
		snprintf(name, sizeof(name), "n%d", i + 1);
		if (harness_path(nodedir, sizeof(nodedir), dir, name) == -1)
			return -1;
		if (mkdir(nodedir, 0700) == -1 && errno != EEXIST) {
			harness_seterr("mkdir %s: %s", nodedir, strerror(errno));
			return -1;
		}
		if (cluster_conf_text(c, i, conf, sizeof(conf)) == -1 ||
		    harness_nats_start_conf(&c->node[i], nodedir, conf) == -1) {
			char why[1024];

			snprintf(why, sizeof(why), "%s", harness_err());
			harness_seterr("cluster node n%d (route port %d): %s", i + 1,
			    c->route_port[i], why);
			return -1;
		}
		off += (size_t)snprintf(c->urls + off, sizeof(c->urls) - off, "%s%s",
		    i > 0 ? "," : "", c->node[i].url);
	}
	return cluster_wait_ready(c, timeout_ms);
}

int
cluster_node_stop(struct cluster *c, int i)
{
	return harness_nats_stop(&c->node[i]);
}

int
cluster_node_start(struct cluster *c, int i, int64_t timeout_ms)
{
	/* Stopped already, so this only starts it again where it was. */
	if (harness_nats_restart(&c->node[i]) == -1)
		return -1;
	return cluster_wait_ready(c, timeout_ms);
}

int
cluster_meta_leader(const struct cluster *c)
{
	static const char self[] = "Self is new JetStream cluster metadata leader";
	static const char other[] = "JetStream cluster new metadata leader: n";

	for (int i = 0; i < CLUSTER_NODES; i++) {
		char *log, *p, *last = NULL;
		int leader = -1;

		if (c->node[i].proc.pid <= 0 || c->node[i].proc.reaped ||
		    (log = harness_read_file(c->node[i].log, NULL)) == NULL)
			continue;
		/* The latest of either line is this node's current view. */
		for (p = log; (p = strstr(p, "metadata leader")) != NULL; p++)
			last = p;
		if (last != NULL) {
			while (last > log && last[-1] != '\n')
				last--;
			if ((p = strstr(last, self)) != NULL && strchr(last, '\n') > p)
				leader = i;
			else if ((p = strstr(last, other)) != NULL)
				leader = atoi(p + sizeof(other) - 1) - 1;
		}
		free(log);
		if (leader >= 0 && leader < CLUSTER_NODES)
			return leader;
	}
	return -1;
}

int
cluster_node_of_port(const struct cluster *c, int port)
{
	for (int i = 0; i < CLUSTER_NODES; i++)
		if (c->node[i].port == port)
			return i;
	return -1;
}

void
cluster_stop(struct cluster *c)
{
	for (int i = 0; i < CLUSTER_NODES; i++)
		if (harness_nats_stop(&c->node[i]) == -1)
			printf("# cluster: node n%d: %s\n", i + 1, harness_err());
}
