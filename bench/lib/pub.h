/*
 * pub: connections and publishing.  Every publish is a plain core-NATS
 * publish (natsConnection_Publish), as monitoring agents send them; the
 * payloads of a burst were serialized before the clock starts.
 */
#ifndef BENCH_PUB_H
#define BENCH_PUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "load.h"

struct conn_events {
	atomic_int disconnects;
	atomic_int reconnects;
	atomic_int closed;          /* cnats ran its last callback */
};

/* Connected, or NULL with harness_err().  ev (may be NULL) counts disconnects. */
natsConnection *pub_connect(const char *url, const char *name, bool global_delivery,
    struct conn_events *ev);

/*
 * Close and destroy a connection made by pub_connect with ev (may be
 * NULL), once cnats is done calling back into ev.
 */
void pub_close(natsConnection *nc, struct conn_events *ev);

/* CLOCK_MONOTONIC in ns. */
int64_t pub_now_ns(void);

/*
 * Publish a whole burst in order, then flush.  Requests that expect a
 * digest are recorded (load_mark_request) with their publish time when
 * L is not NULL.  *first_ns and *end_ns: first publish, flush done.
 */
int pub_burst(natsConnection *nc, const struct burst *b, struct load *L, int phase,
    int64_t *first_ns, int64_t *end_ns);

#endif
