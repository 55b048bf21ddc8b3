#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "lease.h"
#include "obs.h"

struct obs {
	pthread_mutex_t mu;
	struct obs_snap s;           /* under mu */
	int cap;                     /* of s.slot */
	/* Main thread only. */
	int64_t last_ms, down_since_ms;
	struct frame_stats base;     /* counters of pools gone (resharded away) */
	struct frame_stats last;     /* the current pool's sums at the last update */
	char *subject_status, *subject_request;
};

struct obs *
obs_new(const struct config *c)
{
	struct obs *o;

	if ((o = calloc(1, sizeof(*o))) == NULL || (o->subject_status = strdup(c->subject_status)) == NULL ||
	    (o->subject_request = strdup(c->subject_request)) == NULL) {
		log_error("allocating the metrics snapshot");
		if (o != NULL)
			free(o->subject_status);
		free(o);
		return NULL;
	}
	o->s.subject_status = o->subject_status;
	o->s.subject_request = o->subject_request;
	if (c->partitions > 0) {
		if ((o->s.part_since_ms = calloc((size_t)c->partitions, sizeof(int64_t))) == NULL) {
			log_error("allocating the metrics snapshot");
			obs_free(o);
			return NULL;
		}
		o->s.partitions = (int)c->partitions;
	}
	pthread_mutex_init(&o->mu, NULL);
	o->s.started_wall_ms = clock_wall_ms();
	return o;
}

void
obs_free(struct obs *o)
{
	if (o == NULL)
		return;
	pthread_mutex_destroy(&o->mu);
	free(o->s.slot);
	free(o->s.part_since_ms);
	free(o->subject_status);
	free(o->subject_request);
	free(o);
}

static void
obs_add_counters(struct frame_stats *dst, const struct frame_stats *src)
{
	dst->commits += src->commits;
	dst->digests += src->digests;
	dst->digest_parts += src->digest_parts;
	dst->digest_bytes += src->digest_bytes;
	dst->overlimit += src->overlimit;
	dst->digests_fenced += src->digests_fenced;
	dst->digest_msgs_resent += src->digest_msgs_resent;
	histo_add(&dst->commit_latency, &src->commit_latency);
	histo_add(&dst->digest_latency, &src->digest_latency);
}

static enum obs_nats
obs_nats_state(natsConnection *nc)
{
	if (nc == NULL)
		return OBS_NATS_DISCONNECTED;
	switch (natsConnection_Status(nc)) {
	case NATS_CONN_STATUS_CONNECTED:
		return OBS_NATS_CONNECTED;
	case NATS_CONN_STATUS_RECONNECTING:
		return OBS_NATS_RECONNECTING;
	case NATS_CONN_STATUS_CLOSED:
		return OBS_NATS_CLOSED;
	default:
		return OBS_NATS_DISCONNECTED;
	}
}

/* The slot table grows to the pool's size; only ever under the lock. */
static int
obs_slots_fit(struct obs *o, int n)
{
	struct obs_slot *ns;

	if (n <= o->cap)
		return 0;
	if ((ns = realloc(o->s.slot, (size_t)n * sizeof(*ns))) == NULL) {
		log_error("growing the metrics snapshot to %d slots", n);
		return -1;
	}
	o->s.slot = ns;
	o->cap = n;
	return 0;
}

void
obs_update(struct obs *o, enum obs_phase phase, struct intake *in, struct pool *p, bool force)
{
	int64_t now = clock_mono_ms();
	struct intake_stats is;
	struct pool_stats ps;
	struct frame_stats sum;
	enum obs_nats nats;
	int n;

	if (!force && phase == o->s.phase && now - o->last_ms < OBS_UPDATE_MS)
		return;
	o->last_ms = now;
	/* Without intake (a pool retiring), the connection's state stays as last seen. */
	nats = in != NULL ? obs_nats_state(intake_conn(in)) : o->s.nats;
	if (nats == OBS_NATS_CONNECTED)
		o->down_since_ms = 0;
	else if (o->down_since_ms == 0)
		o->down_since_ms = now;
	if (in != NULL)
		intake_get_stats(in, &is);
	if (p != NULL) {
		pool_get_stats(p, &ps);
	}
	n = p != NULL ? pool_size(p) : 0;

	pthread_mutex_lock(&o->mu);
	o->s.phase = phase;
	o->s.nats = nats;
	o->s.nats_down_ms = o->down_since_ms ? now - o->down_since_ms : 0;
	if (in != NULL) {
		o->s.in = is;
		o->s.jetstream = intake_jsetup(in) != NULL;
		o->s.bound = intake_bound(in);
	}
	if (p != NULL && obs_slots_fit(o, n) == 0) {
		memset(&sum, 0, sizeof(sum));
		o->s.nslots = n;
		o->s.restarts = ps.restarts;
		o->s.stall_kills = ps.stall_kills;
		for (int i = 0; i < n; i++) {
			struct pool_slot_report r;
			struct obs_slot *os = &o->s.slot[i];

			pool_get_slot_report(p, i, &r);
			os->running = r.running;
			os->parked = r.parked;
			os->held = r.hold.held;
			os->queued = r.hold.waiting;
			os->spilled = r.hold.spilled;
			os->stall_kills = r.hold.stall_kills;
			os->users = r.stats.users;
			os->alarms = r.stats.alarms;
			os->tombstones = r.stats.tombstones;
			os->map_used = r.stats.bytes;
			os->map_size = r.stats.map_size;
			snprintf(os->exit_why, sizeof(os->exit_why), "%s", r.exit_why);
			obs_add_counters(&sum, &r.stats);
		}
		o->last = sum;
		obs_add_counters(&sum, &o->base);
		o->s.commits = sum.commits;
		o->s.digests = sum.digests;
		o->s.digest_parts = sum.digest_parts;
		o->s.digest_bytes = sum.digest_bytes;
		o->s.overlimit = sum.overlimit;
		o->s.digests_fenced = sum.digests_fenced;
		o->s.digest_msgs_resent = sum.digest_msgs_resent;
		o->s.commit_latency = sum.commit_latency;
		o->s.digest_latency = sum.digest_latency;
	}
	pthread_mutex_unlock(&o->mu);
}

void
obs_pool_retire(struct obs *o, struct pool *p)
{
	/* Its last numbers first: what it counted since the last update must not be lost. */
	obs_update(o, o->s.phase, NULL, p, true);
	obs_add_counters(&o->base, &o->last);
	memset(&o->last, 0, sizeof(o->last));
}

void
obs_reshard(struct obs *o, uint64_t stores_done, uint64_t stores)
{
	pthread_mutex_lock(&o->mu);
	o->s.phase = OBS_RESHARDING;
	o->s.reshard_done = stores_done;
	o->s.reshard_total = stores;
	pthread_mutex_unlock(&o->mu);
}

void
obs_cluster(struct obs *o, const struct lease_view *v, const bool *served, bool router_active)
{
	pthread_mutex_lock(&o->mu);
	for (int p = 0; p < o->s.partitions && p < v->partitions; p++)
		o->s.part_since_ms[p] = served[p] && v->part[p].epoch != 0 ? v->part[p].since_ms : 0;
	o->s.part_acquired = v->acquired;
	o->s.part_released = v->released;
	o->s.part_lost = v->lost;
	o->s.router_active = router_active;
	o->s.fence_ms = v->fence_ms;
	o->s.members = v->members;
	pthread_mutex_unlock(&o->mu);
}

void
obs_set_lag(struct obs *o, bool known, uint64_t pending, uint64_t ack_pending)
{
	pthread_mutex_lock(&o->mu);
	o->s.lag_known = known;
	o->s.num_pending = pending;
	o->s.num_ack_pending = ack_pending;
	pthread_mutex_unlock(&o->mu);
}

void
obs_read(struct obs *o, void (*fn)(const struct obs_snap *s, void *arg), void *arg)
{
	pthread_mutex_lock(&o->mu);
	fn(&o->s, arg);
	pthread_mutex_unlock(&o->mu);
}

static const char *
obs_nats_name(enum obs_nats n)
{
	switch (n) {
	case OBS_NATS_CONNECTED:
		return "connected";
	case OBS_NATS_RECONNECTING:
		return "reconnecting";
	case OBS_NATS_CLOSED:
		return "closed";
	default:
		return "not connected";
	}
}

bool
obs_healthy(const struct obs_snap *s, char *why, size_t len)
{
	if (s->nats == OBS_NATS_CLOSED) {
		snprintf(why, len, "NATS connection closed");
		return false;
	}
	/* Before the first connection the service is starting, not broken: readiness says so. */
	if (s->nats != OBS_NATS_CONNECTED && s->phase != OBS_STARTING &&
	    s->nats_down_ms >= OBS_RECONNECT_GRACE_MS) {
		snprintf(why, len, "NATS %s for %lld s", obs_nats_name(s->nats),
		    (long long)(s->nats_down_ms / 1000));
		return false;
	}
	for (int i = 0; i < s->nslots; i++) {
		if (s->slot[i].parked) {
			snprintf(why, len, "slot %d parked: %s", i,
			    s->slot[i].exit_why[0] ? s->slot[i].exit_why : "crash loop");
			return false;
		}
	}
	snprintf(why, len, "ok");
	return true;
}

bool
obs_ready(const struct obs_snap *s, char *why, size_t len)
{
	int running = 0;

	switch (s->phase) {
	case OBS_STARTING:
		snprintf(why, len, "starting");
		return false;
	case OBS_RESETTING:
		snprintf(why, len, "resetting the consumer to its ack floor");
		return false;
	case OBS_RESHARDING:
		if (s->reshard_total == 0)
			snprintf(why, len, "resharding: waiting for in-flight messages, then moving users");
		else
			snprintf(why, len, "resharding %llu/%llu stores", (unsigned long long)s->reshard_done,
			    (unsigned long long)s->reshard_total);
		return false;
	case OBS_DRAINING:
		snprintf(why, len, "draining: shutting down");
		return false;
	case OBS_RUNNING:
		break;
	}
	if (s->nats != OBS_NATS_CONNECTED) {
		snprintf(why, len, "NATS %s", obs_nats_name(s->nats));
		return false;
	}
	if (!s->bound) {
		snprintf(why, len, s->jetstream ? "consumer not bound" : "not subscribed");
		return false;
	}
	for (int i = 0; i < s->nslots; i++) {
		if (s->slot[i].parked) {
			snprintf(why, len, "slot %d parked: %s", i,
			    s->slot[i].exit_why[0] ? s->slot[i].exit_why : "crash loop");
			return false;
		}
		running += s->slot[i].running;
	}
	if (running < s->nslots) {
		snprintf(why, len, "%d of %d workers running", running, s->nslots);
		return false;
	}
	snprintf(why, len, "ok");
	return true;
}
