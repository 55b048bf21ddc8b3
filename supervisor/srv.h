/*
 * srv: NATS service discovery, the micro service API v1 (ADR-32), so NATS
 * tooling (`nats micro ls`, `nats micro info alarm-digest`, `nats micro
 * stats alarm-digest`) finds the service and shows its numbers.
 *
 * Answers $SRV.PING, $SRV.INFO and $SRV.STATS, each also in its
 * ".alarm-digest" and ".alarm-digest.<id>" form, on the supervisor's
 * connection, with the io.nats.micro.v1.{ping,info,stats}_response JSON.
 * Two endpoints: "status" (the status subject) and "request" (the request
 * subject).  Their num_requests are the messages received on the subject,
 * num_errors the malformed ones; the request endpoint's processing_time is
 * the digest latency summed (obs.h), the status endpoint's is 0 (updates
 * are applied in batches: no per-message time exists).  No queue group:
 * the inputs are read through the durable consumer, so queue_group is "".
 *
 * Replies are built from the obs snapshot on the cnats thread that
 * delivers the request; they never wait on anything else.
 */
#ifndef SRV_H
#define SRV_H

#include <nats/nats.h>

#include "../common/config.h"
#include "obs.h"

#define SRV_NAME "alarm-digest"

struct srv;

/* Subscribe on nc (borrowed).  NULL on error (logged). */
struct srv *srv_start(natsConnection *nc, const struct config *c, struct obs *o);
/* Unsubscribe; no callback runs once it returns. */
void srv_stop(struct srv *s);

#endif
