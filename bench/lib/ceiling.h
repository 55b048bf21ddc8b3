/*
 * ceiling: what the broker alone does with the benchmark's messages, each
 * on a fresh nats-server, so the service's figures can be read as ratios.
 *
 *  (a) core: publisher -> nats-server -> one subscriber on both subjects
 *      (one delivery thread, as the service's core intake has), counting;
 *  (b) JetStream: core publishes into a file-storage stream on both
 *      subjects -> a durable push consumer whose callback only acks
 *      (AckAll every N-th message, or AckExplicit each), first publish to
 *      last message consumed; or the same paced at a fixed rate, timing
 *      each request message from its publish to its delivery.
 */
#ifndef BENCH_CEILING_H
#define BENCH_CEILING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "load.h"
#include "pace.h"

struct ceiling_opts {
	int ack_every;            /* (b): 1 = AckExplicit each, N > 1 = AckAll every N-th */
	int stall_seconds;        /* stop waiting when nothing arrives for this long */
	double rate_seconds;      /* (b) paced */
	int req_every;            /* (b) paced */
};

struct ceiling {
	bool ran, complete;
	size_t sent, received;
	double seconds, rate;
	int64_t dropped;          /* by the subscriber's client library */
	int disconnects;
	int broker_slow;          /* "Slow Consumer Detected" lines in the broker's own log */
	/* (b) paced only */
	struct paced paced;
	struct lat lat;
};

/*
 * complete: every message published was received.  An incomplete run
 * measured something other than the broker's ceiling and must not be
 * used as one; dropped, disconnects and broker_slow say where the rest
 * went.
 */
int ceiling_core(const struct burst *b, const struct ceiling_opts *o, struct ceiling *out);
/* rate == 0: the burst as fast as it goes; rate > 0: paced, with latencies. */
int ceiling_js(const struct burst *b, const struct ceiling_opts *o, double rate,
    struct ceiling *out);

#endif
