#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/buf.h"
#include "../common/log.h"
#include "../common/quote.h"
#include "../common/deadletter.h"
#include "digest.h"
#include "overlimit.h"

#define OVERLIMIT_REASON "too_many_alarms"
/* Room for a quoted ID in the reason (longer ones end in "..."): the header stays under 512 bytes. */
#define OVERLIMIT_ID_SHOWN 180
#define OVERLIMIT_FLUSH_MS 1000

struct overlimit {
	natsConnection *nc;           /* borrowed */
	struct deadletter *dl;
	struct buf json;
	struct log_limit log, flush_log;
};

struct overlimit *
overlimit_new(natsConnection *nc, const struct config *c)
{
	struct overlimit *o;
	bool with_stream = c->intake == INTAKE_JETSTREAM && c->dead_letter_stream[0] != '\0';

	if ((o = calloc(1, sizeof(*o))) == NULL) {
		log_error("allocating the over-limit rejecter");
		return NULL;
	}
	o->nc = nc;
	/* 0 is "the broker's max_payload", which deadletter reads from nc anyway. */
	o->dl = deadletter_new(nc, c->subject_dead_letter, with_stream,
	    c->dead_letter_max_msg_size > 0 ? c->dead_letter_max_msg_size : -1);
	if (o->dl == NULL) {
		free(o);
		return NULL;
	}
	return o;
}

void
overlimit_free(struct overlimit *o)
{
	if (o == NULL)
		return;
	deadletter_free(o->dl);
	buf_free(&o->json);
	free(o);
}

int
overlimit_set_subject(struct overlimit *o, const char *subject)
{
	return deadletter_set_subject(o->dl, subject);
}

void
overlimit_reject(struct overlimit *o, const struct alarm_msg *m, const char *status_subject,
    int64_t max_alarms)
{
	char reason[512], quser[OVERLIMIT_ID_SHOWN], qalarm[OVERLIMIT_ID_SHOWN];
	char qs[256];
	natsMsg *copy = NULL;
	natsStatus s;

	/* Quoted: printable ASCII only, as the header and the log line need. */
	quote_bytes(quser, sizeof(quser), m->user, m->user_len);
	quote_bytes(qalarm, sizeof(qalarm), m->alarm, m->alarm_len);
	snprintf(reason, sizeof(reason), "%s: user \"%s\" already holds %lld alarms "
	    "(max_alarms_per_user, tombstones included) and AlarmID \"%s\" is not one of them",
	    OVERLIMIT_REASON, quser, (long long)max_alarms, qalarm);
	buf_reset(&o->json);
	if (digest_write_update(m, &o->json) == -1) {
		log_error("rejected update of user \"%s\": %s; building its dead-letter copy", quser,
		    reason);
		return;
	}
	log_limited(&o->log, LL_WARN, "rejected message on \"%s\" (%zu bytes rebuilt): %s",
	    quote_bytes(qs, sizeof(qs), status_subject, strlen(status_subject)), o->json.len, reason);
	s = natsMsg_Create(&copy, status_subject, NULL, (const char *)o->json.data, (int)o->json.len);
	if (s != NATS_OK) {
		log_errorx("dead-letter copy of a rejected update of user \"%s\": %s", quser,
		    natsStatus_GetText(s));
		return;
	}
	/* deadletter copies it; the original subject goes into Alarm-Original-Subject. */
	deadletter_put(o->dl, copy, reason);
	natsMsg_Destroy(copy);
}

void
overlimit_flush(struct overlimit *o)
{
	natsStatus s;

	/* Disconnected, a flush would wait out its timeout for nothing: the copies wait in cnats. */
	if (natsConnection_Status(o->nc) != NATS_CONN_STATUS_CONNECTED) {
		log_limited(&o->flush_log, LL_WARN, "dead-letter copies of rejected updates wait for "
		    "NATS to reconnect; the originals are acked anyway");
		return;
	}
	if ((s = natsConnection_FlushTimeout(o->nc, OVERLIMIT_FLUSH_MS)) != NATS_OK)
		log_limited(&o->flush_log, LL_WARN, "flushing dead-letter copies of rejected updates: "
		    "%s; the originals are acked anyway", natsStatus_GetText(s));
}

uint64_t
overlimit_copies_failed(struct overlimit *o)
{
	struct deadletter_stats st;

	deadletter_get_stats(o->dl, &st);
	return st.failed;
}
