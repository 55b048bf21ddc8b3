/*
 * cluster: a 3-node JetStream cluster of Debian nats-server processes on
 * 127.0.0.1 (issue 14).  Each node is a harness_nats (its own client
 * port, picked by nats-server; its own store, log and config in DIR/nK)
 * with server_name nK, a route port of its own and routes to all three
 * (itself included: nats-server drops the route to itself, and a
 * JetStream cluster refuses to start without configured routes).
 *
 * A node stopped with cluster_node_stop comes back with
 * cluster_node_start on the same client and route ports with the same
 * store, so clients and the other nodes find it where they left it.
 *
 * Failing calls return -1 with harness_err() set.
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <limits.h>
#include <stdint.h>

#include "harness.h"

#define CLUSTER_NODES 3

struct cluster {
	struct harness_nats node[CLUSTER_NODES];
	int route_port[CLUSTER_NODES];
	char dir[PATH_MAX];
	char urls[CLUSTER_NODES * 64];   /* the client URLs, comma-separated */
};

/* Start all nodes (configs and stores under dir) and wait for a meta leader. */
int cluster_start(struct cluster *c, const char *dir, int64_t timeout_ms);
/*
 * Wait until every running node answers $JS.API.INFO without an error
 * (the cluster has a metadata leader and each node knows it) and, when
 * all nodes run, an R3 stream can be created (every peer is current).
 */
int cluster_wait_ready(struct cluster *c, int64_t timeout_ms);
int cluster_node_stop(struct cluster *c, int i);
/* Start a stopped node again (same ports, same store) and wait until it is ready. */
int cluster_node_start(struct cluster *c, int i, int64_t timeout_ms);
/*
 * The JetStream metadata leader as the first running node's log last
 * named it (0-based), or -1: for messages, and to pick a node to stop.
 */
int cluster_meta_leader(const struct cluster *c);
/* The node listening for clients on port, or -1. */
int cluster_node_of_port(const struct cluster *c, int port);
/* Stop every node (SIGTERM, then SIGKILL after a bound); the dirs stay. */
void cluster_stop(struct cluster *c);

#endif
