#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "../common/log.h"
#include "../common/version.h"
#include "srv.h"

enum srv_verb { SRV_PING, SRV_INFO, SRV_STATS, SRV_NVERBS };

static const char *const srv_verbs[SRV_NVERBS] = { "PING", "INFO", "STATS" };
static const char *const srv_types[SRV_NVERBS] = {
	"io.nats.micro.v1.ping_response",
	"io.nats.micro.v1.info_response",
	"io.nats.micro.v1.stats_response",
};

/* Each verb bare, with the name, and with name and id. */
#define SRV_NSUBS (SRV_NVERBS * 3)

struct srv {
	natsConnection *nc;
	struct obs *obs;
	natsSubscription *subs[SRV_NSUBS];
	/* The callback's argument per subscription: which verb. */
	struct srv_sub { struct srv *srv; enum srv_verb verb; } arg[SRV_NSUBS];
	char id[33];
	char intake[16];
	char *subject_status, *subject_request, *stream, *consumer;
};

/* What a STATS reply needs, copied from the snapshot under its lock. */
struct srv_numbers {
	uint64_t received[2], rejected[2];
	uint64_t latency_sum_us, latency_count;
	int64_t started_wall_ms;
};

static void
srv_copy(const struct obs_snap *s, void *arg)
{
	struct srv_numbers *n = arg;

	n->received[0] = s->in.received_status;
	n->received[1] = s->in.received_request;
	n->rejected[0] = s->in.rejected_status;
	n->rejected[1] = s->in.rejected_request;
	n->latency_sum_us = s->digest_latency.sum_us;
	n->latency_count = histo_count(&s->digest_latency);
	n->started_wall_ms = s->started_wall_ms;
}

static void
srv_add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static json_object *
srv_metadata(const struct srv *s)
{
	json_object *m = json_object_new_object();

	srv_add_str(m, "intake", s->intake);
	if (strcmp(s->intake, "jetstream") == 0) {
		srv_add_str(m, "stream", s->stream);
		srv_add_str(m, "consumer", s->consumer);
	}
	return m;
}

/* RFC 3339 in UTC with nanoseconds, as Go's time.Time marshals. */
static void
srv_time(int64_t wall_ms, char *buf, size_t len)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)(wall_ms % 1000) * 1000000);
}

static json_object *
srv_reply(const struct srv *s, enum srv_verb verb)
{
	static const char *const names[2] = { "status", "request" };
	const char *subjects[2] = { s->subject_status, s->subject_request };
	json_object *o = json_object_new_object(), *eps;
	struct srv_numbers n;
	char started[64];

	if (o == NULL)
		return NULL;
	srv_add_str(o, "type", srv_types[verb]);
	srv_add_str(o, "name", SRV_NAME);
	srv_add_str(o, "id", s->id);
	srv_add_str(o, "version", ALARM_DIGEST_VERSION);
	json_object_object_add(o, "metadata", srv_metadata(s));
	if (verb == SRV_PING)
		return o;
	if (verb == SRV_INFO)
		srv_add_str(o, "description", "alarm digests: AlarmStatusChanged and SendAlarmDigest in, "
		    "AlarmDigest out");
	obs_read(s->obs, srv_copy, &n);
	eps = json_object_new_array();
	for (int i = 0; i < 2; i++) {
		json_object *e = json_object_new_object();

		srv_add_str(e, "name", names[i]);
		srv_add_str(e, "subject", subjects[i]);
		srv_add_str(e, "queue_group", "");
		if (verb == SRV_INFO) {
			json_object_object_add(e, "metadata", NULL);
		} else {
			uint64_t ns = i == 1 ? n.latency_sum_us * 1000 : 0;
			uint64_t cnt = i == 1 ? n.latency_count : 0;

			json_object_object_add(e, "num_requests", json_object_new_int64((int64_t)n.received[i]));
			json_object_object_add(e, "num_errors", json_object_new_int64((int64_t)n.rejected[i]));
			srv_add_str(e, "last_error", "");
			json_object_object_add(e, "processing_time", json_object_new_int64((int64_t)ns));
			json_object_object_add(e, "average_processing_time",
			    json_object_new_int64(cnt ? (int64_t)(ns / cnt) : 0));
		}
		json_object_array_add(eps, e);
	}
	json_object_object_add(o, "endpoints", eps);
	if (verb == SRV_STATS) {
		srv_time(n.started_wall_ms, started, sizeof(started));
		srv_add_str(o, "started", started);
	}
	return o;
}

static void
srv_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct srv_sub *a = arg;
	const char *reply = natsMsg_GetReply(m);
	json_object *o;
	const char *text;
	natsStatus st;

	(void)sub;
	if (reply == NULL || *reply == '\0') {
		natsMsg_Destroy(m);
		return;
	}
	if ((o = srv_reply(a->srv, a->verb)) == NULL ||
	    (text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) == NULL) {
		log_warnx("$SRV.%s: out of memory building the reply", srv_verbs[a->verb]);
	} else if ((st = natsConnection_PublishString(nc, reply, text)) != NATS_OK) {
		log_warnx("$SRV.%s: replying: %s", srv_verbs[a->verb], natsStatus_GetText(st));
	}
	json_object_put(o);
	natsMsg_Destroy(m);
}

static char *
srv_dup(const char *s, bool *ok)
{
	char *d = strdup(s);

	if (d == NULL)
		*ok = false;
	return d;
}

struct srv *
srv_start(natsConnection *nc, const struct config *c, struct obs *o)
{
	struct srv *s;
	uuid_t u;
	bool ok = true;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_error("allocating the $SRV responder");
		return NULL;
	}
	s->nc = nc;
	s->obs = o;
	s->subject_status = srv_dup(c->subject_status, &ok);
	s->subject_request = srv_dup(c->subject_request, &ok);
	s->stream = srv_dup(c->stream, &ok);
	s->consumer = srv_dup(c->consumer, &ok);
	if (!ok) {
		log_error("allocating the $SRV responder");
		srv_stop(s);
		return NULL;
	}
	snprintf(s->intake, sizeof(s->intake), "%s", c->intake == INTAKE_JETSTREAM ? "jetstream" : "core");
	/* One id per process: a restarted service is another instance. */
	uuid_generate(u);
	for (int i = 0; i < 16; i++)
		snprintf(s->id + 2 * i, 3, "%02X", u[i]);
	for (int v = 0, k = 0; v < SRV_NVERBS; v++) {
		for (int form = 0; form < 3; form++, k++) {
			char subj[128];
			natsStatus st;

			if (form == 0)
				snprintf(subj, sizeof(subj), "$SRV.%s", srv_verbs[v]);
			else if (form == 1)
				snprintf(subj, sizeof(subj), "$SRV.%s.%s", srv_verbs[v], SRV_NAME);
			else
				snprintf(subj, sizeof(subj), "$SRV.%s.%s.%s", srv_verbs[v], SRV_NAME, s->id);
			s->arg[k] = (struct srv_sub){ s, (enum srv_verb)v };
			if ((st = natsConnection_Subscribe(&s->subs[k], nc, subj, srv_on_msg, &s->arg[k])) != NATS_OK) {
				log_errorx("subscribe to %s (service discovery): %s", subj, natsStatus_GetText(st));
				srv_stop(s);
				return NULL;
			}
		}
	}
	log_info("answering $SRV.PING, $SRV.INFO and $SRV.STATS as %s id %s", SRV_NAME, s->id);
	return s;
}

void
srv_stop(struct srv *s)
{
	if (s == NULL)
		return;
	for (int k = 0; k < SRV_NSUBS; k++) {
		if (s->subs[k] == NULL)
			continue;
		/* A drain that completed means no callback of it runs, or will: then s may go. */
		if (natsSubscription_Drain(s->subs[k]) == NATS_OK &&
		    natsSubscription_WaitForDrainCompletion(s->subs[k], 2000) != NATS_OK)
			log_warnx("$SRV: a subscription did not drain within 2 s");
		natsSubscription_Destroy(s->subs[k]);
	}
	free(s->subject_status);
	free(s->subject_request);
	free(s->stream);
	free(s->consumer);
	free(s);
}
