#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "lag.h"

struct lag {
	struct jsetup *js;
	struct obs *obs;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* signalled by lag_stop */
	bool stop;                  /* under mu */
};

static void *
lag_run(void *arg)
{
	struct lag *l = arg;
	bool failing = false;

	for (;;) {
		uint64_t pending = 0, ack_pending = 0;
		struct timespec until;
		bool ok;

		/* Wait first: at start the consumer is created only after this thread is. */
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += LAG_POLL_MS / 1000;
		pthread_mutex_lock(&l->mu);
		while (!l->stop && pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
			;
		if (l->stop) {
			pthread_mutex_unlock(&l->mu);
			return NULL;
		}
		pthread_mutex_unlock(&l->mu);

		ok = jsetup_consumer_lag(l->js, &pending, &ack_pending) == 0;
		if (!ok && !failing)
			log_warnx("consumer info: cannot read the consumer's lag; /metrics leaves it out "
			    "until it can (said once)");
		else if (ok && failing)
			log_info("consumer info: the consumer's lag can be read again");
		failing = !ok;
		obs_set_lag(l->obs, ok, pending, ack_pending);
	}
}

struct lag *
lag_start(struct jsetup *js, struct obs *o)
{
	pthread_condattr_t ca;
	struct lag *l;
	int rc;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		log_error("allocating the consumer lag poller");
		return NULL;
	}
	l->js = js;
	l->obs = o;
	pthread_mutex_init(&l->mu, NULL);
	/* Timed waits on the monotonic clock: a wall clock step must not stop the polling. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = pthread_create(&l->thread, NULL, lag_run, l)) != 0) {
		errno = rc;
		log_error("starting the consumer lag poller thread");
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
		free(l);
		return NULL;
	}
	return l;
}

void
lag_stop(struct lag *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
