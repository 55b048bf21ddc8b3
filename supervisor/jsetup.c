#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/natsconn.h"
#include "jsetup.h"

struct jsetup {
	natsConnection *nc;          /* borrowed */
	jsCtx *js;
	char *stream, *consumer, *deliver_subject;
	int64_t ack_wait_ms, max_ack_pending;
	bool dead_letter_stream;
};

/* Stream holding both input subjects; created if missing, checked if present. */
static int
jsetup_stream(struct jsetup *js, const struct config *c)
{
	const char *subjects[2] = { c->subject_status, c->subject_request };
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetStreamInfo(&si, js->js, c->stream, NULL, &jerr);
	if (s == NATS_OK) {
		int found = 0;
		for (int i = 0; i < si->Config->SubjectsLen; i++)
			for (int j = 0; j < 2; j++)
				if (strcmp(si->Config->Subjects[i], subjects[j]) == 0)
					found |= 1 << j;
		jsStreamInfo_Destroy(si);
		if (found != 3) {
			log_errorx("stream %s exists but does not hold both %s and %s; "
			    "add the subjects to it or configure another [nats] stream",
			    c->stream, c->subject_status, c->subject_request);
			return -1;
		}
		return 0;
	}
	if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
		natsconn_log_js_error("look up stream", c->stream, s, jerr, c->servers);
		return -1;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = c->stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 2;
	sc.Storage = js_FileStorage;
	sc.Retention = js_LimitsPolicy;
	sc.Discard = js_DiscardOld;
	sc.MaxAge = c->stream_max_age_ms * 1000000;
	sc.MaxBytes = c->stream_max_bytes;
	sc.Replicas = c->stream_replicas;
	s = js_AddStream(NULL, js->js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		natsconn_log_js_error("create stream", c->stream, s, jerr, c->servers);
		return -1;
	}
	log_info("created stream %s for %s and %s", c->stream, c->subject_status, c->subject_request);
	return 0;
}

static int
jsetup_dead_letter(struct jsetup *js, const struct config *c)
{
	const char *subjects[1] = { c->subject_dead_letter };
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;
	natsStatus s;

	if (c->dead_letter_stream[0] == '\0')
		return 0;
	if (js_GetStreamInfo(&si, js->js, c->dead_letter_stream, NULL, &jerr) == NATS_OK) {
		jsStreamInfo_Destroy(si);
		js->dead_letter_stream = true;
		return 0;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = c->dead_letter_stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.MaxAge = c->stream_max_age_ms * 1000000;
	sc.Replicas = c->stream_replicas;
	s = js_AddStream(NULL, js->js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		natsconn_log_js_error("create dead-letter stream", c->dead_letter_stream, s, jerr, c->servers);
		return -1;
	}
	js->dead_letter_stream = true;
	return 0;
}

/*
 * Re-delivering something that was acked out of order above the floor is
 * harmless: applying an update twice is a no-op by the SPEC's rules.
 */
int
jsetup_reset_consumer(struct jsetup *js)
{
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	uint64_t floor = 0;
	natsStatus s;

	/* Acks are plain publishes: let the server see them before reading the floor. */
	if ((s = natsConnection_FlushTimeout(js->nc, 5000)) != NATS_OK)
		log_warnx("flushing acks before the consumer reset: %s; some acked messages come again",
		    natsStatus_GetText(s));
	s = js_GetConsumerInfo(&ci, js->js, js->stream, js->consumer, NULL, &jerr);
	if (s == NATS_OK) {
		floor = ci->AckFloor.Stream;
		jsConsumerInfo_Destroy(ci);
		s = js_DeleteConsumer(js->js, js->stream, js->consumer, NULL, &jerr);
		if (s != NATS_OK) {
			natsconn_log_js_error("delete consumer", js->consumer, s, jerr, NULL);
			return -1;
		}
	} else if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
		natsconn_log_js_error("look up consumer", js->consumer, s, jerr, NULL);
		return -1;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = js->consumer;
	cc.DeliverSubject = js->deliver_subject;
	cc.AckPolicy = js_AckAll;
	cc.AckWait = js->ack_wait_ms * 1000000;
	cc.MaxAckPending = js->max_ack_pending;
	cc.MaxDeliver = -1;
	if (floor > 0) {
		cc.DeliverPolicy = js_DeliverByStartSequence;
		cc.OptStartSeq = floor + 1;
	} else {
		cc.DeliverPolicy = js_DeliverAll;
	}
	s = js_AddConsumer(NULL, js->js, js->stream, &cc, NULL, &jerr);
	if (s != NATS_OK) {
		natsconn_log_js_error("create consumer", js->consumer, s, jerr, NULL);
		return -1;
	}
	log_info("consumer %s on stream %s delivers from stream sequence %llu",
	    js->consumer, js->stream, (unsigned long long)floor + 1);
	return 0;
}

jsCtx *
jsetup_dead_letter_ctx(const struct jsetup *js)
{
	return js->dead_letter_stream ? js->js : NULL;
}

struct jsetup *
jsetup_open(natsConnection *nc, const struct config *c)
{
	struct jsetup *js;
	natsStatus s;

	if ((js = calloc(1, sizeof(*js))) == NULL) {
		log_error("allocating the JetStream setup");
		return NULL;
	}
	js->nc = nc;
	js->ack_wait_ms = c->ack_wait_ms;
	js->max_ack_pending = c->max_ack_pending;
	if ((js->stream = strdup(c->stream)) == NULL ||
	    (js->consumer = strdup(c->consumer)) == NULL ||
	    (js->deliver_subject = strdup(c->deliver_subject)) == NULL) {
		log_error("allocating the JetStream setup");
		goto fail;
	}
	if ((s = natsConnection_JetStream(&js->js, nc, NULL)) != NATS_OK) {
		log_errorx("JetStream context: %s", natsStatus_GetText(s));
		goto fail;
	}
	if (jsetup_stream(js, c) == -1 || jsetup_dead_letter(js, c) == -1)
		goto fail;
	return js;
fail:
	jsetup_close(js);
	return NULL;
}

void
jsetup_close(struct jsetup *js)
{
	if (js == NULL)
		return;
	jsCtx_Destroy(js->js);
	free(js->stream);
	free(js->consumer);
	free(js->deliver_subject);
	free(js);
}
