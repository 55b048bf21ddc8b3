/*
 * telemetry: the supervisor's outward face, in one place for master.c:
 * the obs snapshot (obs.h) and those who show it: the HTTP endpoints
 * (http.h), NATS service discovery (srv.h), and the consumer lag poller
 * (lag.h).  master.c calls these few functions and nothing else of them.
 */
#ifndef TELEMETRY_H
#define TELEMETRY_H

#include "../common/config.h"
#include "intake.h"
#include "obs.h"
#include "pool.h"

struct telemetry;

/*
 * Create the snapshot and bind [http] listen (unless ""): /readyz says
 * "starting" from here on.  NULL on error (logged: a bind failure names
 * the address), which is fatal to the start.
 */
struct telemetry *telemetry_open(const struct config *c);
/* Intake is connected: answer $SRV requests on its connection, poll the consumer's lag. */
void telemetry_attach(struct telemetry *t, struct intake *in, const struct config *c);
/* Main loop, every pass (cheap: throttled to OBS_UPDATE_MS unless the phase changed). */
void telemetry_update(struct telemetry *t, enum obs_phase phase, struct intake *in, struct pool *p);
/* Cluster mode, main loop: the leases held and the router (cheap: a copy under the snapshot's lock). */
struct lease_view;
void telemetry_cluster(struct telemetry *t, const struct lease_view *v, const bool *served,
    bool router_active);
/* The pool is about to be freed (reshard). */
void telemetry_pool_retire(struct telemetry *t, struct pool *p);
/* Reshard progress (the main loop waits for the reshard meanwhile). */
void telemetry_reshard(struct telemetry *t, uint64_t stores_done, uint64_t stores);
/* Stop everything; before intake closes.  NULL is fine. */
void telemetry_close(struct telemetry *t);

#endif
