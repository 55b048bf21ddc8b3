#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/layout.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "jsetup.h"

/*
 * STATE_DIR/consumer-reset exists only while a reset is between deleting
 * the consumer and creating its successor: it holds the floor the new one
 * must start after.  Without it, a crash in that window would leave no
 * consumer, and the next start would read the stream from sequence 1.
 */
#define JSETUP_INTENT "consumer-reset"

/* A consumer create that finds the name still in use after its delete: how often, how far apart. */
#define JSETUP_CREATE_TRIES 5
#define JSETUP_CREATE_PAUSE_MS 500

/* How long a consumer call of a bind may take. */
#define JSETUP_CONSUMER_WAIT_MS 5000

/* How long a JetStream API call may take (cnats' default: 5 s). */
#define JSETUP_API_WAIT_MS 20000

/*
 * Instances of a cluster started together race for the streams (see
 * jsetup_find_or_create): how long a lookup may keep timing out, how long
 * a refused create may wait for the other instance's stream to show, and
 * the pause between tries.
 */
#define JSETUP_START_MS 60000
#define JSETUP_RACE_MS 3000
#define JSETUP_RETRY_PAUSE_MS 250

struct jsetup {
	natsConnection *nc;          /* borrowed */
	jsCtx *js;
	char *stream, *consumer, *deliver_subject;
	char intent[PATH_MAX];
	int64_t ack_wait_ms, max_ack_pending;
	bool dead_letter_stream;
	int64_t dead_letter_max_msg;  /* the dead-letter stream's MaxMsgSize; -1: none */
};

/* The limits a stream should have, from the configuration. */
struct jsetup_limits {
	int64_t max_age_ns;
	int64_t max_bytes;
	int64_t max_msg_size;         /* -1: none */
	int64_t duplicates_ns;        /* the dedup window at creation; 0: the server's default */
};

/* 0 in the configuration means the broker's max_payload, as this connection sees it. */
static int64_t
jsetup_msg_size(natsConnection *nc, int64_t configured)
{
	int64_t mp;

	if (configured != 0)
		return configured;
	mp = natsConnection_GetMaxPayload(nc);
	return mp > 0 && mp <= INT32_MAX ? mp : -1;
}

/* The stream's MaxMsgSize as a plain number: the server reports "none" as -1 or 0 alike. */
static int64_t
jsetup_stream_msg_size(const jsStreamConfig *sc)
{
	return sc->MaxMsgSize > 0 ? sc->MaxMsgSize : -1;
}

/*
 * Bring an existing stream's limits to the configured ones.  Only these
 * three: the rest (subjects, discard policy, MaxMsgs, ...) is the
 * operator's to set.  A failed update is logged and the stream keeps the
 * limits it has; intake works either way.
 */
static void
jsetup_update_limits(struct jsetup *js, jsStreamInfo *si, const struct jsetup_limits *want)
{
	jsStreamConfig *sc = si->Config;
	char change[256] = "";
	size_t n = 0;
	jsErrCode jerr = 0;
	natsStatus s;

	if (sc->MaxAge != want->max_age_ns)
		n += (size_t)snprintf(change + n, sizeof(change) - n, " max_age %" PRId64 "s -> %" PRId64 "s",
		    sc->MaxAge / 1000000000, want->max_age_ns / 1000000000);
	if (sc->MaxBytes != want->max_bytes && n < sizeof(change))
		n += (size_t)snprintf(change + n, sizeof(change) - n, " max_bytes %" PRId64 " -> %" PRId64,
		    sc->MaxBytes, want->max_bytes);
	if (jsetup_stream_msg_size(sc) != want->max_msg_size && n < sizeof(change))
		n += (size_t)snprintf(change + n, sizeof(change) - n, " max_msg_size %" PRId64 " -> %" PRId64,
		    jsetup_stream_msg_size(sc), want->max_msg_size);
	if (n == 0)
		return;
	sc->MaxAge = want->max_age_ns;
	sc->MaxBytes = want->max_bytes;
	sc->MaxMsgSize = (int32_t)want->max_msg_size;
	s = js_UpdateStream(NULL, js->js, sc, NULL, &jerr);
	if (s != NATS_OK) {
		natsconn_log_js_error("update the limits of stream", sc->Name, s, jerr, NULL);
		log_warnx("stream %s keeps its limits; wanted:%s", sc->Name, change);
		return;
	}
	log_info("stream %s: limits updated to the configuration:%s", sc->Name, change);
}

/* A file-backed stream that drops its oldest messages past its limits. */
static natsStatus
jsetup_create(struct jsetup *js, const struct config *c, const char *name, const char **subjects,
    int nsubjects, const struct jsetup_limits *want, jsErrCode *jerr)
{
	jsStreamConfig sc;

	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subjects;
	sc.SubjectsLen = nsubjects;
	sc.Storage = js_FileStorage;
	sc.Retention = js_LimitsPolicy;
	sc.Discard = js_DiscardOld;
	sc.MaxAge = want->max_age_ns;
	sc.MaxBytes = want->max_bytes;
	sc.MaxMsgSize = (int32_t)want->max_msg_size;
	sc.Replicas = c->stream_replicas;
	sc.Duplicates = want->duplicates_ns;
	return js_AddStream(NULL, js->js, &sc, NULL, jerr);
}

/* The meta layer is not there yet (a cluster forming, a leader election): ask again. */
static bool
jsetup_transient(natsStatus s, jsErrCode jerr)
{
	return s == NATS_TIMEOUT || jerr == JSClusterNotAvailErr || jerr == JSClusterNoPeersErr;
}

/*
 * The stream `name` (what: how the log names it): 0 when it exists (*si
 * set, the caller checks it), 1 when created here, -1 on error (logged).
 *
 * Instances of a cluster started together race here.  A lookup can time
 * out while the meta leader places another instance's replicated stream,
 * or before the cluster has one; it is asked again for up to
 * JSETUP_START_MS.  A create can be refused (name in use, subjects
 * overlap) because another instance's create of the same stream won; the
 * stream then shows within JSETUP_RACE_MS.  Exiting instead would leave
 * it to the service manager to start us again, and an instance run by
 * hand would just stay down.
 */
static int
jsetup_find_or_create(struct jsetup *js, const struct config *c, const char *what,
    const char *name, const char **subjects, int nsubjects, const struct jsetup_limits *want,
    jsStreamInfo **si)
{
	int64_t start = clock_mono_ms(), refused = 0;
	const char *act, *perm = NULL;
	jsErrCode jerr;
	natsStatus s;

	for (;;) {
		char failed[64];
		int64_t now;

		jerr = 0;
		*si = NULL;
		act = "look up";
		s = js_GetStreamInfo(si, js->js, name, NULL, &jerr);
		if (s == NATS_OK)
			return 0;
		if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
			jerr = 0;
			act = "create";
			if ((s = jsetup_create(js, c, name, subjects, nsubjects, want, &jerr)) == NATS_OK)
				return 1;
			if (!jsetup_transient(s, jerr) && refused == 0) {
				log_warnx("create %s %s: %s (JetStream error %d); another instance may be "
				    "creating it: looking it up again", what, name,
				    nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s),
				    (int)jerr);
				refused = clock_mono_ms();
			}
		}
		now = clock_mono_ms();
		/* A request the account may not publish is dropped by the server: a timeout here. */
		if (s == NATS_TIMEOUT && natsConnection_GetLastError(js->nc, &perm) == NATS_NOT_PERMITTED) {
			log_errorx("%s %s %s: %s: the service's NATS user needs that "
			    "subject (README, \"The broker's permissions\")", act, what, name, perm);
			return -1;
		}
		if (jsetup_transient(s, jerr) && now - start < JSETUP_START_MS) {
			log_warnx("%s %s %s: %s (JetStream error %d): the cluster is not ready; asking again",
			    act, what, name, natsStatus_GetText(s), (int)jerr);
		} else if (refused == 0 || now - refused >= JSETUP_RACE_MS) {
			snprintf(failed, sizeof(failed), "%s %s", act, what);
			natsconn_log_js_error(failed, name, s, jerr, c->servers);
			return -1;
		}
		nats_Sleep(JSETUP_RETRY_PAUSE_MS);
	}
}

/* The input stream (both input subjects): created if missing, checked and its limits updated if present. */
static int
jsetup_stream(struct jsetup *js, const struct config *c)
{
	const char *subjects[2] = { c->subject_status, c->subject_request };
	struct jsetup_limits want = {
		.max_age_ns = c->stream_max_age_ms * 1000000,
		.max_bytes = c->stream_max_bytes,
		.max_msg_size = jsetup_msg_size(js->nc, c->stream_max_msg_size),
	};
	int64_t mp = natsConnection_GetMaxPayload(js->nc);
	jsStreamInfo *si = NULL;
	int found = 0, rc;

	if (want.max_msg_size > 0 && want.max_msg_size < mp)
		log_warnx("stream %s: stream_max_msg_size %" PRId64 " is below the broker's max_payload "
		    "%" PRId64 ": a larger message is refused by the stream and never dead-lettered",
		    c->stream, want.max_msg_size, mp);
	if ((rc = jsetup_find_or_create(js, c, "stream", c->stream, subjects, 2, &want, &si)) == -1)
		return -1;
	if (rc == 1) {
		log_info("created stream %s for %s and %s", c->stream, c->subject_status, c->subject_request);
		return 0;
	}
	for (int i = 0; i < si->Config->SubjectsLen; i++)
		for (int j = 0; j < 2; j++)
			if (strcmp(si->Config->Subjects[i], subjects[j]) == 0)
				found |= 1 << j;
	if (found != 3) {
		jsStreamInfo_Destroy(si);
		log_errorx("stream %s exists but does not hold both %s and %s; "
		    "add the subjects to it or configure another [nats] stream",
		    c->stream, c->subject_status, c->subject_request);
		return -1;
	}
	jsetup_update_limits(js, si, &want);
	jsStreamInfo_Destroy(si);
	return 0;
}

/* Where copies would go: warn if the existing stream does not take the dead-letter subject. */
static void
jsetup_dead_letter_check(const jsStreamConfig *sc, const char *subject)
{
	for (int i = 0; i < sc->SubjectsLen; i++)
		if (strcmp(sc->Subjects[i], subject) == 0)
			return;
	log_warnx("dead-letter stream %s does not list the subject %s: unless a wildcard of it "
	    "matches, no copy is kept (each failure is counted and logged)", sc->Name, subject);
}

/*
 * Discard old, by age and size, so a flood of bad input ages out old
 * copies instead of refusing new ones.
 */
static int
jsetup_dead_letter(struct jsetup *js, const struct config *c)
{
	const char *subjects[1] = { c->subject_dead_letter };
	struct jsetup_limits want = {
		.max_age_ns = c->stream_max_age_ms * 1000000,
		.max_bytes = c->dead_letter_max_bytes,
		.max_msg_size = jsetup_msg_size(js->nc, c->dead_letter_max_msg_size),
	};
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;
	natsStatus s;
	int rc;

	if (c->dead_letter_stream[0] == '\0')
		return 0;
	rc = jsetup_find_or_create(js, c, "dead-letter stream", c->dead_letter_stream, subjects, 1,
	    &want, &si);
	if (rc == -1)
		return -1;
	if (rc == 1) {
		log_info("created dead-letter stream %s for %s", c->dead_letter_stream,
		    c->subject_dead_letter);
		js->dead_letter_max_msg = want.max_msg_size;
		js->dead_letter_stream = true;
		return 0;
	}
	jsetup_dead_letter_check(si->Config, c->subject_dead_letter);
	jsetup_update_limits(js, si, &want);
	jsStreamInfo_Destroy(si);
	/* What the server holds now, updated or not. */
	if ((s = js_GetStreamInfo(&si, js->js, c->dead_letter_stream, NULL, &jerr)) != NATS_OK) {
		natsconn_log_js_error("look up dead-letter stream", c->dead_letter_stream, s, jerr, NULL);
		return -1;
	}
	js->dead_letter_max_msg = jsetup_stream_msg_size(si->Config);
	jsStreamInfo_Destroy(si);
	js->dead_letter_stream = true;
	return 0;
}

/* ---- the reset intent (see JSETUP_INTENT) ---- */

static int
jsetup_intent_write(struct jsetup *js, int64_t created, uint64_t floor)
{
	char text[64];

	snprintf(text, sizeof(text), "%" PRId64 " %" PRIu64 "\n", created, floor);
	return layout_write_file(js->intent, text);
}

/* The floor of an interrupted reset of this very stream: 1; none: 0. */
static int
jsetup_intent_read(struct jsetup *js, int64_t created, uint64_t *floor)
{
	char text[64];
	int64_t c;
	ssize_t n;
	int fd;

	if ((fd = open(js->intent, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("open %s; starting the consumer without it", js->intent);
		return 0;
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	if (sscanf(text, "%" SCNd64 " %" SCNu64, &c, floor) != 2) {
		log_warnx("%s does not hold \"<created> <floor>\"; ignoring it", js->intent);
		return 0;
	}
	if (c != created) {
		log_warnx("%s is about an earlier stream %s (created %" PRId64 ", now %" PRId64 "); ignoring it",
		    js->intent, js->stream, c, created);
		return 0;
	}
	return 1;
}

static void
jsetup_intent_clear(struct jsetup *js)
{
	if (unlink(js->intent) == -1 && errno != ENOENT)
		log_warn("unlink %s", js->intent);
}

/* ---- the consumer ---- */

/*
 * Everything at or below the floor is acked.  A consumer created to
 * start at sequence S reports an ack floor of 0 until its first ack,
 * although everything below S was acked before it existed, so its start
 * counts too: otherwise a second reset with nothing acked in between
 * would start over from the stream's first message.
 */
static uint64_t
jsetup_floor(const jsConsumerInfo *ci)
{
	uint64_t floor = ci->AckFloor.Stream;

	if (ci->Config->DeliverPolicy == js_DeliverByStartSequence && ci->Config->OptStartSeq > 0 &&
	    ci->Config->OptStartSeq - 1 > floor)
		floor = ci->Config->OptStartSeq - 1;
	return floor;
}

int
jsetup_stream_created(struct jsetup *js, int64_t *created)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if ((s = js_GetStreamInfo(&si, js->js, js->stream, NULL, &jerr)) != NATS_OK) {
		natsconn_log_js_error("look up stream", js->stream, s, jerr, NULL);
		return -1;
	}
	*created = si->Created;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int
jsetup_create_consumer(struct jsetup *js, uint64_t floor)
{
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus s;

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
	/*
	 * Right after a node restart a cluster may still answer "name already
	 * in use" for the consumer just deleted (the delete not applied by the
	 * new metadata leader yet): delete again and retry, a few times.
	 */
	for (int attempt = 0; ; attempt++) {
		s = js_AddConsumer(NULL, js->js, js->stream, &cc, NULL, &jerr);
		if (s == NATS_OK)
			return 0;
		if (jerr != JSConsumerNameExistErr || attempt == JSETUP_CREATE_TRIES - 1)
			break;
		log_warnx("create consumer %s: the name is still in use after its delete; trying again",
		    js->consumer);
		(void)js_DeleteConsumer(js->js, js->stream, js->consumer, NULL, NULL);
		usleep(JSETUP_CREATE_PAUSE_MS * 1000);
	}
	natsconn_log_js_error("create consumer", js->consumer, s, jerr, NULL);
	return -1;
}

/*
 * Re-delivering something that was acked out of order above the floor is
 * harmless: applying an update twice is a no-op by the SPEC's rules.
 */
int
jsetup_reset_consumer(struct jsetup *js)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	uint64_t floor = 0;
	int64_t created;
	natsStatus s;

	/* Acks are plain publishes: let the server see them before reading the floor. */
	if ((s = natsConnection_FlushTimeout(js->nc, 5000)) != NATS_OK)
		log_warnx("flushing acks before the consumer reset: %s; some acked messages come again",
		    natsStatus_GetText(s));
	if (jsetup_stream_created(js, &created) == -1)
		return -1;
	s = js_GetConsumerInfo(&ci, js->js, js->stream, js->consumer, NULL, &jerr);
	if (s == NATS_OK) {
		floor = jsetup_floor(ci);
		jsConsumerInfo_Destroy(ci);
		if (jsetup_intent_write(js, created, floor) == -1)
			return -1;
		s = js_DeleteConsumer(js->js, js->stream, js->consumer, NULL, &jerr);
		if (s != NATS_OK) {
			natsconn_log_js_error("delete consumer", js->consumer, s, jerr, NULL);
			return -1;
		}
	} else if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
		natsconn_log_js_error("look up consumer", js->consumer, s, jerr, NULL);
		return -1;
	} else if (jsetup_intent_read(js, created, &floor) == 1) {
		log_info("consumer %s is missing after a reset that did not finish; it resumes after "
		    "stream sequence %" PRIu64, js->consumer, floor);
	}
	if (jsetup_create_consumer(js, floor) == -1)
		return -1;
	jsetup_intent_clear(js);
	log_info("consumer %s on stream %s delivers from stream sequence %" PRIu64,
	    js->consumer, js->stream, floor + 1);
	return 0;
}

bool
jsetup_dead_letter_stream(const struct jsetup *js)
{
	return js->dead_letter_stream;
}

int64_t
jsetup_dead_letter_max_msg(const struct jsetup *js)
{
	return js->dead_letter_stream ? js->dead_letter_max_msg : -1;
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
	js->dead_letter_max_msg = -1;
	if ((js->stream = strdup(c->stream)) == NULL ||
	    (js->consumer = strdup(c->consumer)) == NULL ||
	    (js->deliver_subject = strdup(c->deliver_subject)) == NULL) {
		log_error("allocating the JetStream setup");
		goto fail;
	}
	if (layout_path(js->intent, sizeof(js->intent), c->state_dir, JSETUP_INTENT) == -1)
		goto fail;
	jsOptions jo;

	/*
	 * Creating a replicated stream waits for the cluster to place it and
	 * elect its leader: seconds, more when several instances start at
	 * once.  cnats' 5 s default gave up while the cluster was still at it.
	 */
	jsOptions_Init(&jo);
	jo.Wait = JSETUP_API_WAIT_MS;
	if ((s = natsConnection_JetStream(&js->js, nc, &jo)) != NATS_OK) {
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

int
jsetup_consumer_lag(struct jsetup *js, uint64_t *pending, uint64_t *ack_pending)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetConsumerInfo(&ci, js->js, js->stream, js->consumer, NULL, &jerr);
	if (s != NATS_OK) {
		log_debug("consumer info of %s on stream %s: %s (error code %d)", js->consumer, js->stream,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	*pending = ci->NumPending;
	*ack_pending = ci->NumAckPending < 0 ? 0 : (uint64_t)ci->NumAckPending;
	jsConsumerInfo_Destroy(ci);
	return 0;
}

/* ---- cluster mode ---- */

/*
 * A copy is the input's payload plus the router's Nats-Msg-Id header: the
 * partition stream takes that much more than the input stream does.
 */
#define JSETUP_COPY_HEADROOM 256
#define JSETUP_PARTITION_DUPLICATES_NS (120 * (int64_t)1000000000)

int
jsetup_partition_stream(struct jsetup *js, const struct config *c)
{
	char subject[256];
	const char *subjects[1] = { subject };
	struct jsetup_limits want = {
		.max_age_ns = 0,
		.max_bytes = -1,
		.max_msg_size = jsetup_msg_size(js->nc, c->stream_max_msg_size),
		.duplicates_ns = JSETUP_PARTITION_DUPLICATES_NS,
	};
	jsStreamInfo *si = NULL;
	int rc;
	bool found = false;

	if (want.max_msg_size > 0)
		want.max_msg_size += JSETUP_COPY_HEADROOM;
	if (want.max_msg_size > INT32_MAX)
		want.max_msg_size = -1;
	if ((size_t)snprintf(subject, sizeof(subject), "%s.>", c->partition_subject) >= sizeof(subject)) {
		log_errorx("partition_subject %s is too long", c->partition_subject);
		return -1;
	}
	rc = jsetup_find_or_create(js, c, "partition stream", c->partition_stream, subjects, 1, &want,
	    &si);
	if (rc == -1)
		return -1;
	if (rc == 1) {
		log_info("created partition stream %s for %s (%d replicas)", c->partition_stream, subject,
		    (int)c->stream_replicas);
		return 0;
	}
	for (int i = 0; i < si->Config->SubjectsLen; i++)
		if (strcmp(si->Config->Subjects[i], subject) == 0)
			found = true;
	if (!found) {
		jsStreamInfo_Destroy(si);
		log_errorx("partition stream %s exists but does not hold %s; add the subject to it "
		    "or configure another [cluster] partition_stream", c->partition_stream, subject);
		return -1;
	}
	if (si->Config->Duplicates < JSETUP_PARTITION_DUPLICATES_NS)
		log_warnx("partition stream %s deduplicates over %" PRId64 " s only: a router that "
		    "takes over later than that after a failure may store some copies twice",
		    c->partition_stream, si->Config->Duplicates / 1000000000);
	/* The changelog must not age out or be trimmed: the limits become none. */
	jsetup_update_limits(js, si, &want);
	jsStreamInfo_Destroy(si);
	return 0;
}

static bool
jsetup_prefixed(const char *name, const char *prefix)
{
	return name != NULL && strncmp(name, prefix, strlen(prefix)) == 0;
}

/*
 * Options for the consumer calls of a bind: a cluster electing a leader
 * can hold a call for the whole API wait; a bind that gives up sooner is
 * tried again at once (cluster.c) instead of leaving every partition
 * unserved meanwhile.
 */
static jsOptions *
jsetup_short(jsOptions *jo)
{
	jsOptions_Init(jo);
	jo->Wait = JSETUP_CONSUMER_WAIT_MS;
	return jo;
}

/*
 * A consumer that starts below the floor it took over (to replay what a
 * former owner answered) carries that floor in its description, or a
 * crash during the replay would lose it.
 */
#define JSETUP_FLOOR_FMT "ack floor %" PRIu64

static uint64_t
jsetup_floor_carried(const jsConsumerInfo *ci)
{
	const char *d = ci->Config->Description;
	unsigned long long f;

	if (d == NULL || sscanf(d, "ack floor %llu", &f) != 1)
		return 0;
	return f;
}

int
jsetup_consumer_floor(struct jsetup *js, const char *stream, const char *prefix, uint64_t *floor)
{
	jsConsumerInfoList *list = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus s;

	*floor = 0;
	/* Acks are plain publishes: let the server see ours before reading the floor. */
	if ((s = natsConnection_FlushTimeout(js->nc, 5000)) != NATS_OK)
		log_warnx("flushing acks before reading the floor of %s* on stream %s: %s; some acked "
		    "messages come again", prefix, stream, natsStatus_GetText(s));
	s = js_Consumers(&list, js->js, stream, jsetup_short(&jo), &jerr);
	if (s == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
		return 0;       /* a stream without consumers */
	if (s != NATS_OK) {
		natsconn_log_js_error("list the consumers of stream", stream, s, jerr, NULL);
		return -1;
	}
	for (int i = 0; i < list->Count; i++) {
		const jsConsumerInfo *ci = list->List[i];
		uint64_t f;

		if (!jsetup_prefixed(ci->Name, prefix) || ci->Config == NULL)
			continue;
		if ((f = jsetup_floor(ci)) > *floor)
			*floor = f;
		if ((f = jsetup_floor_carried(ci)) > *floor)
			*floor = f;
	}
	jsConsumerInfoList_Destroy(list);
	return 0;
}

/* The lease epoch in a consumer name "<prefix><epoch>_<gen>" (0: none). */
static uint64_t
jsetup_epoch(const char *name, const char *prefix)
{
	const char *p = name + strlen(prefix);
	char *end;
	unsigned long long e;

	if (*p < '0' || *p > '9')
		return 0;
	e = strtoull(p, &end, 10);
	return *end == '_' ? (uint64_t)e : 0;
}

int
jsetup_consumer_replace(struct jsetup *js, const char *stream, const char *prefix,
    const char *name, const char *filter, const char *deliver, uint64_t start_seq, uint64_t floor)
{
	jsConsumerNamesList *names = NULL;
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus s;
	char carried[64];

	jsConsumerConfig_Init(&cc);
	if (floor >= start_seq) {
		snprintf(carried, sizeof(carried), JSETUP_FLOOR_FMT, floor);
		cc.Description = carried;
	}
	cc.Durable = name;
	cc.DeliverSubject = deliver;
	cc.FilterSubject = filter;
	cc.AckPolicy = js_AckAll;
	cc.AckWait = js->ack_wait_ms * 1000000;
	cc.MaxAckPending = js->max_ack_pending;
	cc.MaxDeliver = -1;
	if (start_seq > 1) {
		cc.DeliverPolicy = js_DeliverByStartSequence;
		cc.OptStartSeq = start_seq;
	} else {
		cc.DeliverPolicy = js_DeliverAll;
	}
	if ((s = js_AddConsumer(NULL, js->js, stream, &cc, jsetup_short(&jo), &jerr)) != NATS_OK) {
		natsconn_log_js_error("create consumer", name, s, jerr, NULL);
		return -1;
	}
	s = js_ConsumerNames(&names, js->js, stream, jsetup_short(&jo), &jerr);
	if (s != NATS_OK) {
		/* The new one is there; the old ones go at the next replace. */
		natsconn_log_js_error("list the consumers of stream", stream, s, jerr, NULL);
		return 0;
	}
	for (int i = 0; i < names->Count; i++) {
		const char *old = names->List[i];

		if (!jsetup_prefixed(old, prefix) || strcmp(old, name) == 0)
			continue;
		/*
		 * A newer lease's consumer is not ours to delete: a replace by an
		 * owner paused past its lease, finishing late, must not cut off
		 * the instance that took over.
		 */
		if (jsetup_epoch(old, prefix) > jsetup_epoch(name, prefix)) {
			log_warnx("consumer %s belongs to a newer lease than %s: left alone", old, name);
			continue;
		}
		s = js_DeleteConsumer(js->js, stream, old, jsetup_short(&jo), &jerr);
		if (s != NATS_OK && jerr != JSConsumerNotFoundErr)
			natsconn_log_js_error("delete old consumer", old, s, jerr, NULL);
	}
	jsConsumerNamesList_Destroy(names);
	return 0;
}
