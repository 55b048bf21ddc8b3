/*
 * cluster: the master's duties as one instance of several ([cluster]
 * partitions > 0; docs/DESIGN.md "Scaling out").
 *
 * It turns the lease thread's view (lease.h) into action on the main
 * thread: it runs the router (router.h) while this instance holds the
 * router lease, passes the fence deadline to the workers and the router,
 * and says when the partitions served must change.  The master then
 * quiesces (everything routed durable and acked) and calls cluster_rebind,
 * which binds the partition consumers (partset.h) and gives up the leases
 * of the partitions handed over.
 *
 * The fence: past fence_ms (the last full renewal + lease_ttl -
 * lease_ttl/5, before any other instance can hold our leases) nothing is
 * acked and the partitions are unbound until a renewal succeeds again.
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"

struct cluster;
struct intake;
struct pool;
struct lease_view;
struct telemetry;

/* Start the lease thread and the router (stop(arg): give up waiting for NATS).  NULL on error (logged). */
struct cluster *cluster_open(const struct config *c, struct intake *in, struct telemetry *tel,
    bool (*stop)(void *), void *stop_arg);
/* Stops the router and the lease thread (leases not released expire). */
void cluster_close(struct cluster *cl);

/* Readable when the lease view changed. */
int cluster_wake_fd(const struct cluster *cl);
/*
 * Each pass of the main loop: take the view if it changed (woke: the wake
 * fd was readable), run or stop the router, fence the workers.
 * *timeout_ms is lowered to when the fence runs out.  True when the
 * partitions served should change.
 */
bool cluster_poll(struct cluster *cl, struct pool *pool, int *timeout_ms, bool woke);
/* Quiesced, acks sent, intake reset: serve what the leases say, release what is handed over. */
int cluster_rebind(struct cluster *cl);
/* intake_start, with the workers' fence kept fresh meanwhile (a consumer reset). */
int cluster_start_intake(struct cluster *cl);
/* Whether a partition consumer may be acked now (the fence holds). */
bool cluster_may_ack(struct cluster *cl);
/* A worker skipped requests past its fence (pool_take_fenced): ack nothing, rebind from the floors. */
void cluster_worker_fenced(struct cluster *cl);

/* Shutdown begins: acquire nothing more. */
void cluster_leave(struct cluster *cl);
/* Shutdown ends (everything durable is acked): give every lease up, so others take over at once. */
void cluster_release_all(struct cluster *cl);

/* "cluster NAME: parts 0,3,7 router" for the title. */
void cluster_describe(const struct cluster *cl, char *buf, size_t len);


#endif
