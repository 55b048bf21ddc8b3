/*
 * lag: the consumer's lag (num_pending, num_ack_pending) for /metrics.
 *
 * Asking the server is a request with a timeout, so it runs on a thread of
 * its own, every LAG_POLL_MS: never on the main loop (it must not wait on
 * the network) nor on the cnats delivery thread (a request there would
 * wait on the thread that delivers its reply).  Jetstream intake only.
 */
#ifndef LAG_H
#define LAG_H

#include "jsetup.h"
#include "obs.h"

#define LAG_POLL_MS 5000

struct lag;

/* Start polling js (borrowed: stop the poller before closing it) into o.  NULL on error (logged). */
struct lag *lag_start(struct jsetup *js, struct obs *o);
/* Stop and join the thread (at most one request's timeout). */
void lag_stop(struct lag *l);

#endif
