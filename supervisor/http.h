/*
 * http: /metrics, /healthz and /readyz on [http] listen, served by
 * libmicrohttpd on a thread of its own.  Every answer is rendered from the
 * obs snapshot (obs.h), never from main-loop state.
 *
 *   /metrics  200, the Prometheus text format (metrics.h)
 *   /healthz  200 "ok" or 503 with the reason, one line (obs_healthy)
 *   /readyz   200 "ok" or 503 with the reason, one line (obs_ready)
 *   other     404; a method other than GET or HEAD: 405
 *
 * The address is bound at start; failing to bind is fatal and says which
 * address.  listen is restart-only: a reload that changes it says the
 * change needs a restart and keeps serving on the old address.
 */
#ifndef HTTP_H
#define HTTP_H

#include "obs.h"

struct http;

/* Bind addr ("host:port", listen.h) and start serving o.  NULL on error (logged, naming addr). */
struct http *http_start(const char *addr, struct obs *o);
/* Stop serving: waits for requests in progress (each is short). */
void http_stop(struct http *h);

#endif
