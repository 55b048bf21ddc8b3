#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "cluster.h"
#include "intake.h"
#include "lease.h"
#include "partset.h"
#include "pool.h"
#include "router.h"
#include "telemetry.h"

/* How often the fence is refreshed while a JetStream call runs. */
#define CLUSTER_TICK_MS 100

struct cluster {
	struct intake *intake;      /* borrowed */
	struct partset *partset;    /* borrowed from intake */
	struct lease *lease;
	struct router *router;
	struct pool *pool;          /* borrowed, as of the last cluster_poll */
	struct telemetry *tel;      /* borrowed: /metrics shows what is served */
	int64_t shown_ms;           /* when it was last told */
	struct lease_view view;     /* as of the last wake */
	uint64_t router_epoch;      /* the router runs under this lease (0: not running) */
	int64_t fence_sent;         /* what the workers and the router were told */
	bool served[CONFIG_PARTITIONS_MAX];
	uint64_t released[CONFIG_PARTITIONS_MAX];   /* the epoch lease_released was last called with */
	bool leaving;
	bool released_all;          /* cluster_release_all ran: once is enough */
	/*
	 * The fence passed while we served: a worker may have skipped a
	 * request (worker.c), which an AckAll would then cover.  Nothing is
	 * acked until every partition is bound again from its floor.
	 */
	bool lapsed;
	char instance[CONFIG_INSTANCE_MAX + 1];
};

struct cluster *
cluster_open(const struct config *c, struct intake *in, struct telemetry *tel, bool (*stop)(void *),
    void *stop_arg)
{
	struct cluster *cl;

	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		log_error("allocating the cluster state");
		return NULL;
	}
	cl->intake = in;
	cl->tel = tel;
	cl->partset = intake_partset(in);
	cl->view.partitions = (int)c->partitions;
	cl->fence_sent = -1;
	if (config_instance(c, cl->instance, sizeof(cl->instance)) == -1) {
		log_error("reading the host name for [cluster] instance");
		goto fail;
	}
	if (cl->partset == NULL) {
		log_errorx("[cluster] partitions = %lld needs [nats] intake = jetstream",
		    (long long)c->partitions);
		goto fail;
	}
	if ((cl->router = router_open(intake_conn(in), intake_jsetup(in), c)) == NULL ||
	    (cl->lease = lease_open(c, stop, stop_arg)) == NULL)
		goto fail;
	log_info("cluster instance %s: %lld partitions, lease_ttl %lld ms", cl->instance,
	    (long long)c->partitions, (long long)c->lease_ttl_ms);
	return cl;
fail:
	cluster_close(cl);
	return NULL;
}

void
cluster_close(struct cluster *cl)
{
	if (cl == NULL)
		return;
	if (cl->router_epoch != 0)
		router_stop(cl->router);
	router_close(cl->router);
	lease_close(cl->lease);
	free(cl);
}

int
cluster_wake_fd(const struct cluster *cl)
{
	return lease_wake_fd(cl->lease);
}

static bool
cluster_fenced(const struct cluster *cl)
{
	return clock_mono_ms() > cl->view.fence_ms;
}

/* The epoch p should be served under now (0: not at all). */
static uint64_t
cluster_want(const struct cluster *cl, int p)
{
	const struct lease_hold *lp = &cl->view.part[p];

	if (lp->epoch == 0 || lp->release_wanted || cl->leaving || cl->lapsed || cluster_fenced(cl))
		return 0;
	return lp->epoch;
}

static bool
cluster_serving(const struct cluster *cl)
{
	for (int p = 0; p < cl->view.partitions; p++)
		if (partset_serving(cl->partset, p) != 0)
			return true;
	return false;
}

/* Mark a lapse (once), saying why. */
static void
cluster_lapse(struct cluster *cl, const char *why)
{
	if (cl->lapsed || !cluster_serving(cl))
		return;
	log_warnx("%s: acking nothing and binding every partition again from its floor", why);
	cl->lapsed = true;
}

/* The fence passed (or was renewed only after it had), fence_ms then and now. */
static void
cluster_lapse_late(struct cluster *cl, int64_t fence, int64_t now, const char *how)
{
	char why[128];

	snprintf(why, sizeof(why), "leases not renewed in time (%s, %lld ms late)", how,
	    (long long)(now - fence));
	cluster_lapse(cl, why);
}

void
cluster_worker_fenced(struct cluster *cl)
{
	/*
	 * Its fence passed before our renewal reached it, and it skipped a
	 * request: acking the frames it reported would lose that request.
	 * A lapse acks nothing and rebinds every partition from its floor,
	 * so the request comes again and is answered.
	 */
	cluster_lapse(cl, "a worker skipped digest requests past a fence our renewal had already moved");
}

bool
cluster_may_ack(struct cluster *cl)
{
	return !cl->lapsed && !cluster_fenced(cl);
}

/*
 * Tell /metrics what is served: bound, not handed over, the fence
 * holding (past it nothing is acted on, whatever is still bound).  Also
 * while a bind runs, or a hand-over would show for its whole length.
 */
static void
cluster_show(struct cluster *cl, bool force)
{
	bool acting = !cl->lapsed && !cluster_fenced(cl);
	int64_t now = clock_mono_ms();

	if (cl->tel == NULL || (!force && now - cl->shown_ms < CLUSTER_TICK_MS))
		return;
	cl->shown_ms = now;
	for (int p = 0; p < cl->view.partitions; p++)
		cl->served[p] = acting && partset_serving(cl->partset, p) != 0;
	/* A router left running under a lease the view has lost is stopping: not shown. */
	telemetry_cluster(cl->tel, &cl->view, cl->served,
	    cl->router_epoch != 0 && cl->router_epoch == cl->view.router.epoch);
}

/* Take a changed view (woke), note a lapse, and pass a new fence on. */
static void
cluster_refresh(struct cluster *cl, bool woke)
{
	int64_t now = clock_mono_ms();

	if (woke) {
		int64_t old = cl->view.fence_ms;

		lease_view(cl->lease, &cl->view);
		/* Renewed, but only after the workers' deadline had passed. */
		if (cl->view.fence_ms != old && old != 0 && now > old)
			cluster_lapse_late(cl, old, now, "renewed after the fence");
	}
	if (cluster_fenced(cl) && cl->view.fence_ms != 0)
		cluster_lapse_late(cl, cl->view.fence_ms, now, "the fence passed");
	if (cl->view.fence_ms != cl->fence_sent && cl->pool != NULL) {
		/* 0 (nothing held yet) would mean "no fence" to a worker: 1 is long past. */
		pool_fence(cl->pool, cl->view.fence_ms > 0 ? cl->view.fence_ms : 1);
		router_fence(cl->router, cl->view.fence_ms);
		cl->fence_sent = cl->view.fence_ms;
	}
	/* Shown before the router stops: that takes seconds (its drain, or a start under way). */
	if (woke)
		cluster_show(cl, true);
}

/*
 * JetStream API calls (binding consumers, starting the router) take
 * seconds on a busy cluster.  They run on a thread of their own while
 * this thread keeps the workers' fence fresh: a worker whose fence runs
 * out skips requests, and that costs a full rebind (cluster_lapse).
 */
struct cluster_job {
	int (*fn)(void *arg);
	void *arg;
	int rc;
	int done_fd;
};

static void *
cluster_job_main(void *a)
{
	struct cluster_job *job = a;
	uint64_t one = 1;

	job->rc = job->fn(job->arg);
	if (write(job->done_fd, &one, sizeof(one)) == -1)
		log_error("cluster: writing the job's eventfd");
	return NULL;
}

static void cluster_router_check(struct cluster *cl);

static int
cluster_run(struct cluster *cl, int (*fn)(void *arg), void *arg)
{
	struct cluster_job job = { fn, arg, -1, -1 };
	pthread_t t;
	int err;

	if ((job.done_fd = eventfd(0, EFD_CLOEXEC)) == -1) {
		log_error("cluster: eventfd");
		return fn(arg);
	}
	if ((err = pthread_create(&t, NULL, cluster_job_main, &job)) != 0) {
		log_errorx("cluster: starting a thread for JetStream calls: %s", strerror(err));
		(void)close(job.done_fd);
		return fn(arg);
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ job.done_fd, POLLIN, 0 },
			{ lease_wake_fd(cl->lease), POLLIN, 0 },
		};

		if (poll(pfd, 2, CLUSTER_TICK_MS) == -1 && errno != EINTR)
			log_error("cluster: poll");
		cluster_refresh(cl, (pfd[1].revents & POLLIN) != 0);
		/*
		 * A bind takes seconds: a router whose lease went meanwhile stops
		 * now, not after it (one being started has no epoch yet: untouched).
		 */
		cluster_router_check(cl);
		if (cl->pool != NULL)
			pool_send_fence(cl->pool);
		cluster_show(cl, false);
		if (pfd[0].revents & POLLIN)
			break;
	}
	if ((err = pthread_join(t, NULL)) != 0)
		log_errorx("cluster: joining the JetStream thread: %s", strerror(err));
	(void)close(job.done_fd);
	return job.rc;
}

static int
cluster_intake_start(void *arg)
{
	return intake_start(arg);
}

struct cluster_router_start {
	struct router *router;
	uint64_t epoch;
};

static int
cluster_router_start(void *arg)
{
	struct cluster_router_start *rs = arg;

	return router_start(rs->router, rs->epoch);
}

int
cluster_start_intake(struct cluster *cl)
{
	return cluster_run(cl, cluster_intake_start, cl->intake);
}

static bool
cluster_router_wanted(struct cluster *cl)
{
	const struct lease_hold *lr = &cl->view.router;

	return lr->epoch != 0 && !lr->release_wanted && !cl->leaving && !cl->lapsed && !cluster_fenced(cl);
}

/* Stop the router if the lease it runs under is gone, fenced or asked for. */
static void
cluster_router_check(struct cluster *cl)
{
	if (cl->router_epoch == 0 ||
	    (cluster_router_wanted(cl) && cl->view.router.epoch == cl->router_epoch))
		return;
	router_stop(cl->router);
	log_info("router stopped (lease epoch %" PRIu64 ")", cl->router_epoch);
	cl->router_epoch = 0;
}

/* Run the router while we hold its lease and the fence holds; hand it over when asked. */
static void
cluster_router(struct cluster *cl)
{
	const struct lease_hold *lr = &cl->view.router;

	cluster_router_check(cl);
	if (lr->epoch != 0 && lr->release_wanted && cl->router_epoch == 0) {
		lease_released(cl->lease, LEASE_ROUTER, lr->epoch);
		return;
	}
	if (cluster_router_wanted(cl) && cl->router_epoch == 0) {
		struct cluster_router_start rs = { cl->router, lr->epoch };

		/* On failure it tries again by itself until stopped. */
		if (cluster_run(cl, cluster_router_start, &rs) == 0)
			log_info("router started (lease epoch %" PRIu64 ")", rs.epoch);
		/*
		 * The epoch it was started under: the view moves on while it
		 * starts (the lease may have been lost meanwhile), and a router
		 * left running under a lost lease must still be stopped.
		 */
		cl->router_epoch = rs.epoch;
		cluster_router_check(cl);
	}
}

/* Give partition p's lease of this epoch up, once. */
static void
cluster_release(struct cluster *cl, int p, uint64_t epoch, const char *how)
{
	if (epoch == 0 || cl->released[p] == epoch)
		return;
	log_info("partition %d: handed over%s (lease epoch %" PRIu64 ")", p, how, epoch);
	lease_released(cl->lease, p, epoch);
	cl->released[p] = epoch;
}

/* A hold asked for elsewhere and not served here has nothing in flight: give it up now. */
static void
cluster_release_idle(struct cluster *cl, int p)
{
	const struct lease_hold *lp = &cl->view.part[p];

	if (lp->release_wanted && partset_serving(cl->partset, p) == 0)
		cluster_release(cl, p, lp->epoch, " unserved");
}

bool
cluster_poll(struct cluster *cl, struct pool *pool, int *timeout_ms, bool woke)
{
	int64_t now, left;
	bool change = false;

	if (pool != cl->pool) {
		cl->pool = pool;
		cl->fence_sent = -1;
	}
	cluster_refresh(cl, woke);
	now = clock_mono_ms();
	cluster_router(cl);
	for (int p = 0; p < cl->view.partitions; p++) {
		if (!change)
			change = cluster_want(cl, p) != partset_serving(cl->partset, p);
		cluster_release_idle(cl, p);
	}
	cluster_show(cl, change);
	left = cl->view.fence_ms - now + 1;
	if (left > 0 && left < *timeout_ms)
		*timeout_ms = (int)left;
	return change;
}

int
cluster_rebind(struct cluster *cl)
{
	bool lapsed = cl->lapsed;
	int rc;

	/*
	 * Everything routed is durable and its acks are flushed: what is given
	 * up is given up now, before the binds (seconds on a busy cluster) of
	 * what is taken.  A partition kept under the same epoch is not touched:
	 * its consumer and subscription go on.
	 */
	for (int p = 0; p < cl->view.partitions; p++) {
		const struct lease_hold *lp = &cl->view.part[p];
		uint64_t was = partset_serving(cl->partset, p), want = cluster_want(cl, p);

		partset_want(cl->partset, p, want);
		if (was == 0 || was == want)
			continue;
		/* Given up, or bound again below under a new epoch: nothing of its consumer's from now on. */
		if (want == 0)
			partset_drop(cl->partset, p);
		intake_unbind(cl->intake, p);
		if (want != 0)
			continue;
		if (lp->release_wanted && lp->epoch == was)
			cluster_release(cl, p, was, "");
	}
	cluster_show(cl, true);
	rc = cluster_start_intake(cl);
	cluster_show(cl, true);
	/* Unbound after a lapse: take the leases anew (new epochs), then bind again. */
	if (lapsed) {
		lease_reset(cl->lease);
		cl->lapsed = false;
	}
	return rc;
}

void
cluster_leave(struct cluster *cl)
{
	cl->leaving = true;
	lease_leave(cl->lease);
	cluster_router(cl);
}

void
cluster_release_all(struct cluster *cl)
{
	if (cl->released_all)
		return;
	cl->released_all = true;
	for (int p = 0; p < cl->view.partitions; p++)
		partset_want(cl->partset, p, 0);
	/* Records the floors; the consumers stay for the next owners (partset.h). */
	(void)partset_bind(cl->partset);
	for (int p = 0; p < cl->view.partitions; p++)
		cluster_release(cl, p, cl->view.part[p].epoch, " at the leave");
	if (cl->router_epoch != 0) {
		router_stop(cl->router);
		cl->router_epoch = 0;
	}
	if (cl->view.router.epoch != 0)
		lease_released(cl->lease, LEASE_ROUTER, cl->view.router.epoch);
	log_info("left the cluster: every lease released");
}

void
cluster_describe(const struct cluster *cl, char *buf, size_t len)
{
	size_t o = 0;
	int n = 0;

	o += (size_t)snprintf(buf, len, "cluster %s: parts ", cl->instance);
	for (int p = 0; p < cl->view.partitions && o < len; p++) {
		if (partset_serving(cl->partset, p) == 0)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%d", n++ ? "," : "", p);
	}
	if (n == 0 && o < len)
		o += (size_t)snprintf(buf + o, len - o, "none");
	if (cl->router_epoch != 0 && o < len)
		snprintf(buf + o, len - o, " router");
}
