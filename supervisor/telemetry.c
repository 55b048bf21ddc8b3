#include <stdlib.h>

#include "../common/log.h"
#include "http.h"
#include "lag.h"
#include "srv.h"
#include "telemetry.h"

struct telemetry {
	struct obs *obs;
	struct http *http;
	struct srv *srv;
	struct lag *lag;
};

struct telemetry *
telemetry_open(const struct config *c)
{
	struct telemetry *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		log_error("allocating telemetry");
		return NULL;
	}
	if ((t->obs = obs_new(c)) == NULL) {
		free(t);
		return NULL;
	}
	if (c->http_listen[0] == '\0') {
		log_info("[http] listen is empty: no /metrics, /healthz or /readyz");
		return t;
	}
	if ((t->http = http_start(c->http_listen, t->obs)) == NULL) {
		obs_free(t->obs);
		free(t);
		return NULL;
	}
	return t;
}

void
telemetry_attach(struct telemetry *t, struct intake *in, const struct config *c)
{
	/* Neither is needed to do the job: without them the service runs on, less visible. */
	if ((t->srv = srv_start(intake_conn(in), c, t->obs)) == NULL)
		log_warnx("service discovery ($SRV) is off (see above)");
	/* Cluster mode has a consumer per partition, none of the single instance's to poll. */
	if (intake_jsetup(in) != NULL && c->partitions == 0 &&
	    (t->lag = lag_start(intake_jsetup(in), t->obs)) == NULL)
		log_warnx("consumer lag is not measured (see above)");
}

void
telemetry_update(struct telemetry *t, enum obs_phase phase, struct intake *in, struct pool *p)
{
	obs_update(t->obs, phase, in, p, false);
}

void
telemetry_cluster(struct telemetry *t, const struct lease_view *v, const bool *served, bool router_active)
{
	obs_cluster(t->obs, v, served, router_active);
}

void
telemetry_pool_retire(struct telemetry *t, struct pool *p)
{
	obs_pool_retire(t->obs, p);
}

void
telemetry_reshard(struct telemetry *t, uint64_t stores_done, uint64_t stores)
{
	obs_reshard(t->obs, stores_done, stores);
}

void
telemetry_close(struct telemetry *t)
{
	if (t == NULL)
		return;
	lag_stop(t->lag);
	srv_stop(t->srv);
	http_stop(t->http);
	obs_free(t->obs);
	free(t);
}
