/*
 * The load generator: threads, each with its own NATS connection and its
 * own share of the users, publishing updates in shuffled chunks with
 * exact repeats of recent updates mixed in (stale, duplicate and
 * same-instant updates are frequent).  Each thread publishes a user's
 * messages one by one, acked, so the stream holds them in the order the
 * model saw them.  Requests are only generated when request_pct > 0
 * (never in crash scenarios: see faulttest.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

#define LOAD_RING 256
#define LOAD_CHUNK_MAX 256

struct load_ev {
	bool request;
	char user[48];
	char alarm[32];
	const char *status;
	char ts[48];
};

static void
load_ev_new(struct load *l, struct load_thread *t, struct rng *rng, size_t n,
    struct load_ev *ev)
{
	/* Users idx, idx + threads, idx + 2 * threads, ...: each belongs to one thread. */
	int per = (l->users - t->idx + l->threads - 1) / l->threads;
	int u = t->idx + l->threads * (int)rng_below(rng, (uint32_t)(per > 0 ? per : 1));

	memset(ev, 0, sizeof(*ev));
	snprintf(ev->user, sizeof(ev->user), "%s-%04d", l->prefix, u);
	if (l->request_pct > 0 && (int)rng_below(rng, 100) < l->request_pct) {
		ev->request = true;
		return;
	}
	snprintf(ev->alarm, sizeof(ev->alarm), "alarm-%u", rng_below(rng, (uint32_t)l->alarms));
	ev->status = traffic_random_status(rng);
	/* Time moves forward with the count; a 4 s spread makes stale updates and ties. */
	traffic_random_ts(rng, l->base_sec + (int64_t)(n / 8), 4, ev->ts, sizeof(ev->ts));
}

static void *
load_main(void *arg)
{
	struct load_thread *t = arg;
	struct load *l = t->l;
	static _Thread_local struct load_ev ring[LOAD_RING], chunk[LOAD_CHUNK_MAX];
	size_t ring_n = 0, n = 0;
	int csize = l->chunk < 1 ? 1 : l->chunk > LOAD_CHUNK_MAX ? LOAD_CHUNK_MAX : l->chunk;
	struct rng rng;

	rng_seed(&rng, l->seed ^ ((uint64_t)(t->idx + 1) * 0x9e3779b97f4a7c15ull));
	while (!atomic_load(&l->stop) && n < l->max_events) {
		for (int i = 0; i < csize; i++) {
			if (ring_n > 0 && (int)rng_below(&rng, 100) < l->dup_pct)
				chunk[i] = ring[rng_below(&rng, (uint32_t)(ring_n < LOAD_RING ? ring_n :
				    LOAD_RING))];
			else
				load_ev_new(l, t, &rng, n + (size_t)i, &chunk[i]);
		}
		for (int i = csize; i > 1; i--) {
			int j = (int)rng_below(&rng, (uint32_t)i);
			struct load_ev tmp = chunk[i - 1];

			chunk[i - 1] = chunk[j];
			chunk[j] = tmp;
		}
		for (int i = 0; i < csize && !atomic_load(&l->stop); i++) {
			const struct load_ev *ev = &chunk[i];
			int rc = ev->request ? fpub_request(t->bus, l->model, ev->user) :
			    fpub_update(t->bus, l->model, ev->user, ev->alarm, ev->status, ev->ts);

			if (rc == -1) {
				snprintf(t->err, sizeof(t->err), "load thread %d, event %zu: %s", t->idx,
				    n, harness_err());
				t->failed = 1;
				return NULL;
			}
			if (!ev->request) {
				ring[ring_n++ % LOAD_RING] = *ev;
				if (l->on_update != NULL)
					l->on_update(l->on_update_arg, ev->user, ev->alarm, ev->status, ev->ts);
			}
			atomic_store(&t->sent, ++n);
		}
		if (l->pause_ms > 0)
			harness_sleep_ms(l->pause_ms);
	}
	return NULL;
}

int
load_start(struct load *l)
{
	if (l->threads < 1)
		l->threads = 1;
	if (l->threads > LOAD_MAX_THREADS)
		l->threads = LOAD_MAX_THREADS;
	if (l->threads > l->users)
		l->threads = l->users;
	atomic_store(&l->stop, false);
	for (int i = 0; i < l->threads; i++) {
		struct load_thread *t = &l->th[i];
		int rc;

		memset(t, 0, sizeof(*t));
		t->l = l;
		t->idx = i;
		if ((t->bus = bus_open(l->env->nats.url, true)) == NULL)
			goto fail;
		if ((rc = pthread_create(&t->thread, NULL, load_main, t)) != 0) {
			harness_seterr("pthread_create(load %d): %s", i, strerror(rc));
			goto fail;
		}
		t->started = true;
	}
	return 0;
fail:
	{
		char why[1024];

		snprintf(why, sizeof(why), "%s", harness_err());
		(void)load_stop(l);
		harness_seterr("%s", why);
	}
	return -1;
}

int
load_stop(struct load *l)
{
	char why[1024] = "";

	atomic_store(&l->stop, true);
	for (int i = 0; i < LOAD_MAX_THREADS; i++) {
		struct load_thread *t = &l->th[i];

		if (t->started) {
			pthread_join(t->thread, NULL);
			t->started = false;
		}
		if (t->failed && why[0] == '\0')
			snprintf(why, sizeof(why), "%s", t->err);
		bus_close(t->bus);
		t->bus = NULL;
	}
	if (why[0] != '\0') {
		harness_seterr("%s", why);
		return -1;
	}
	return 0;
}

size_t
load_sent(struct load *l)
{
	size_t n = 0;

	for (int i = 0; i < LOAD_MAX_THREADS; i++)
		n += atomic_load(&l->th[i].sent);
	return n;
}
