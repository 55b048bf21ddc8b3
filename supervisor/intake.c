#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/frame.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "intake.h"
#include "jsack.h"
#include "jsetup.h"
#include "../common/natsconn.h"

/* A batch the callback may fill before it waits for the main thread. */
#define INTAKE_BATCH_ITEMS 8192
#define INTAKE_BATCH_BYTES (4u << 20)
/* Core intake's client-side backlog cap (per subscription). */
#define INTAKE_CORE_PENDING_MSGS 2000000
#define INTAKE_CORE_PENDING_BYTES (512 << 20)

struct intake {
	natsConnection *nc;
	struct jsetup *jsetup;      /* jetstream mode only */
	jsCtx *dead_letter_js;      /* publish dead letters through it and wait for the stream's ack; or NULL */
	natsSubscription *subs[2];
	int nsubs;
	enum intake_mode mode;
	char *deliver_subject, *subject_status, *subject_request;

	/* Used only on the callback thread. */
	struct validator *validator;
	struct log_limit bad_log;

	int wake_fd;
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct intake_batch fill;   /* guarded by lock */
	bool discard;               /* guarded by lock: release instead of queueing */
	char *dead_letter_subject;  /* guarded by lock */
	/* Read per message by the callback, set by reload: atomics, not the lock. */
	_Atomic size_t max_message_bytes, max_id_bytes;

	atomic_bool reset_wanted;
	uint64_t last_consumer_seq;  /* callback thread only */
	_Atomic uint64_t received, accepted, rejected, dead_lettered, dead_letter_failed, redelivered;
	_Atomic uint64_t by_reason[MSG_E_COUNT];
};

static void
intake_batch_clear(struct intake_batch *b, bool release)
{
	if (release)
		for (size_t i = b->pos; i < b->n; i++)
			intake_release(b->items[i].msg);
	b->n = b->pos = 0;
	buf_reset(&b->frames);
}

void
intake_batch_free(struct intake_batch *b)
{
	intake_batch_clear(b, true);
	free(b->items);
	buf_free(&b->frames);
	memset(b, 0, sizeof(*b));
}

void
intake_release(void *m)
{
	if (m != NULL)
		natsMsg_Destroy(m);
}

static void
intake_want_reset(struct intake *in, const char *why)
{
	if (!atomic_exchange(&in->reset_wanted, true))
		log_warnx("%s: acks paused until the consumer is reset to its ack floor", why);
}

/* Publish the payload unchanged with the reason in a header (and keep it, if a stream captures the subject). */
static int
intake_dead_letter(struct intake *in, natsMsg *m, enum msg_error e, const char *detail)
{
	char subject[256], reason[512];
	natsMsg *dl = NULL;
	natsStatus s;

	pthread_mutex_lock(&in->lock);
	snprintf(subject, sizeof(subject), "%s", in->dead_letter_subject);
	pthread_mutex_unlock(&in->lock);
	snprintf(reason, sizeof(reason), "%s: %s", msg_error_name(e), detail);
	for (char *p = reason; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';

	s = natsMsg_Create(&dl, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(dl, "Alarm-Reject-Reason", reason);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(dl, "Alarm-Original-Subject", natsMsg_GetSubject(m));
	if (s == NATS_OK && in->dead_letter_js != NULL) {
		jsErrCode jerr = 0;
		/* Wait for the stream's ack: only then may the original be acked. */
		s = js_PublishMsg(NULL, in->dead_letter_js, dl, NULL, &jerr);
	} else if (s == NATS_OK) {
		s = natsConnection_PublishMsg(in->nc, dl);
	}
	natsMsg_Destroy(dl);
	if (s != NATS_OK) {
		atomic_fetch_add(&in->dead_letter_failed, 1);
		log_errorx("dead-letter publish to %s failed: %s; the message stays unacked and will be redelivered",
		    subject, natsStatus_GetText(s));
		return -1;
	}
	atomic_fetch_add(&in->dead_lettered, 1);
	return 0;
}

static bool
intake_batch_full(const struct intake_batch *b)
{
	return b->n >= INTAKE_BATCH_ITEMS || buf_unread(&b->frames) >= INTAKE_BATCH_BYTES;
}

static int
intake_batch_push(struct intake_batch *b, const struct alarm_msg *am, uint64_t stream_seq, natsMsg *keep)
{
	size_t off = b->frames.len;
	int rc = 0;

	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 256;
		struct intake_item *n = realloc(b->items, ncap * sizeof(*n));
		if (n == NULL)
			return -1;
		b->items = n;
		b->cap = ncap;
	}
	/* am == NULL: nothing to route, the item only holds its place in the ack order. */
	if (am != NULL && am->kind == MSG_STATUS_CHANGED)
		rc = frame_put_update(&b->frames, 0, am);
	else if (am != NULL)
		rc = frame_put_digest(&b->frames, 0, stream_seq, am->user, am->user_len);
	if (rc == -1)
		return -1;
	b->items[b->n++] = (struct intake_item){
		.hash = am ? hash32(am->user, am->user_len) : 0,
		.frame_off = (uint32_t)off,
		.frame_len = (uint32_t)(b->frames.len - off),
		.stream_seq = stream_seq,
		.msg = keep,
	};
	return 0;
}

/* Hand a message (am == NULL: already done) to the main thread, waiting while the batch is full. */
static void
intake_queue(struct intake *in, const struct alarm_msg *am, uint64_t stream_seq, natsMsg *m)
{
	uint64_t one = 1;

	pthread_mutex_lock(&in->lock);
	while (intake_batch_full(&in->fill) && !in->discard)
		pthread_cond_wait(&in->room, &in->lock);
	if (in->discard) {
		pthread_mutex_unlock(&in->lock);
		natsMsg_Destroy(m);
		return;
	}
	bool was_empty = in->fill.n == 0;
	natsMsg *keep = in->mode == INTAKE_JETSTREAM ? m : NULL;
	if (intake_batch_push(&in->fill, am, stream_seq, keep) == -1) {
		pthread_mutex_unlock(&in->lock);
		log_error("out of memory queueing a message on %s", natsMsg_GetSubject(m));
		if (in->mode == INTAKE_JETSTREAM)
			intake_want_reset(in, "a message could not be queued");
		natsMsg_Destroy(m);
		return;
	}
	pthread_mutex_unlock(&in->lock);
	if (am != NULL)
		atomic_fetch_add(&in->accepted, 1);
	if (keep == NULL)
		natsMsg_Destroy(m);
	if (was_empty && write(in->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_error("write to intake eventfd");
}

static void
intake_reject(struct intake *in, natsMsg *m, enum msg_error e, const char *detail, uint64_t stream_seq)
{
	atomic_fetch_add(&in->rejected, 1);
	atomic_fetch_add(&in->by_reason[e], 1);
	log_limited(&in->bad_log, LL_WARN, "rejected message on %s (%d bytes): %s: %s",
	    natsMsg_GetSubject(m), natsMsg_GetDataLength(m), msg_error_name(e), detail);
	if (intake_dead_letter(in, m, e, detail) == -1) {
		/* Not kept anywhere yet: it must come again, so nothing past it may be acked. */
		if (in->mode == INTAKE_JETSTREAM)
			intake_want_reset(in, "dead-letter publish failed");
		natsMsg_Destroy(m);
		return;
	}
	/* Done already; it still takes its place in the ack order. */
	intake_queue(in, NULL, stream_seq, m);
}

static void
intake_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct intake *in = arg;
	struct jsack_meta meta = { 0, 0, 0 };
	const char *subject = natsMsg_GetSubject(m);
	struct msg_limits limits;
	struct alarm_msg am;
	enum msg_kind kind;
	enum msg_error e;

	(void)nc;
	(void)sub;
	atomic_fetch_add(&in->received, 1);
	if (in->mode == INTAKE_JETSTREAM) {
		if (jsack_parse(natsMsg_GetReply(m), &meta) == -1) {
			/* Not from our consumer: nothing to ack, nothing to route. */
			log_limited(&in->bad_log, LL_WARN, "ignoring non-JetStream message on %s (reply %s)",
			    subject, natsMsg_GetReply(m) ? natsMsg_GetReply(m) : "none");
			natsMsg_Destroy(m);
			return;
		}
		if (meta.delivered > 1)
			atomic_fetch_add(&in->redelivered, 1);
		/* TCP keeps order, so a skipped delivery sequence means deliveries were lost. */
		if (meta.consumer_seq != in->last_consumer_seq + 1) {
			char why[128];
			snprintf(why, sizeof(why), "consumer delivery %llu arrived, %llu expected",
			    (unsigned long long)meta.consumer_seq, (unsigned long long)in->last_consumer_seq + 1);
			intake_want_reset(in, why);
		}
		in->last_consumer_seq = meta.consumer_seq;
	}
	/* The stream's subject is what tells the two kinds apart. */
	if (strcmp(subject, in->subject_status) == 0)
		kind = MSG_STATUS_CHANGED;
	else if (strcmp(subject, in->subject_request) == 0)
		kind = MSG_DIGEST_REQUEST;
	else {
		intake_reject(in, m, MSG_E_JSON, "subject is neither the status nor the request subject",
		    meta.stream_seq);
		return;
	}

	limits.max_message_bytes = atomic_load_explicit(&in->max_message_bytes, memory_order_relaxed);
	limits.max_id_bytes = atomic_load_explicit(&in->max_id_bytes, memory_order_relaxed);
	e = validate_message(in->validator, kind, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &limits, &am);
	if (e != MSG_OK) {
		intake_reject(in, m, e, validator_detail(in->validator), meta.stream_seq);
		return;
	}
	intake_queue(in, &am, meta.stream_seq, m);
}

int
intake_take(struct intake *in, struct intake_batch *b)
{
	uint64_t v;

	if (read(in->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_error("read from intake eventfd");
	intake_batch_clear(b, true);
	pthread_mutex_lock(&in->lock);
	struct intake_batch t = in->fill;
	in->fill = *b;
	*b = t;
	pthread_cond_broadcast(&in->room);
	pthread_mutex_unlock(&in->lock);
	return b->n > 0;
}

void
intake_ack(struct intake *in, natsMsg *m)
{
	const char *reply;
	natsStatus s;

	if (m == NULL)
		return;
	reply = natsMsg_GetReply(m);
	if (reply != NULL && (s = natsConnection_Publish(in->nc, reply, "+ACK", 4)) != NATS_OK)
		/* Not fatal: the message is redelivered and re-applying it is harmless. */
		log_warnx("ack to %s failed: %s", reply, natsStatus_GetText(s));
}

static void
intake_on_reconnected(natsConnection *nc, void *arg)
{
	struct intake *in = arg;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	log_info("reconnected to NATS at %s", url);
	/* Deliveries in flight on the old connection are gone; the reset sends them again now. */
	if (in->mode == INTAKE_JETSTREAM)
		intake_want_reset(in, "reconnected");
}

bool
intake_reset_wanted(struct intake *in)
{
	return atomic_load(&in->reset_wanted);
}

static char *
intake_strdup(const char *s, bool *ok)
{
	char *d = strdup(s);
	if (d == NULL)
		*ok = false;
	return d;
}

struct intake *
intake_open(const struct config *c, bool (*stop)(void *), void *arg)
{
	struct intake *in;
	bool ok = true;

	if ((in = calloc(1, sizeof(*in))) == NULL) {
		log_error("allocating intake");
		return NULL;
	}
	in->wake_fd = -1;
	in->mode = c->intake;
	atomic_init(&in->max_message_bytes, (size_t)c->max_message_bytes);
	atomic_init(&in->max_id_bytes, (size_t)c->max_id_bytes);
	in->deliver_subject = intake_strdup(c->deliver_subject, &ok);
	in->subject_status = intake_strdup(c->subject_status, &ok);
	in->subject_request = intake_strdup(c->subject_request, &ok);
	in->dead_letter_subject = intake_strdup(c->subject_dead_letter, &ok);
	if (!ok || (in->validator = validator_new()) == NULL) {
		log_error("allocating intake");
		goto fail;
	}
	if (pthread_mutex_init(&in->lock, NULL) != 0 || pthread_cond_init(&in->room, NULL) != 0) {
		log_errorx("pthread init failed");
		goto fail;
	}
	if ((in->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_error("eventfd");
		goto fail;
	}
	struct natsconn_opts o = {
		.servers = c->servers,
		.name = "alarm-supervisor",
		/* One delivery thread for both core subscriptions keeps their order. */
		.global_delivery = c->intake == INTAKE_CORE,
		.reconnected_cb = intake_on_reconnected,
		.closure = in,
		.wait_connected = true,
		.stop = stop,
		.stop_arg = arg,
	};
	if ((in->nc = natsconn_connect(&o)) == NULL)
		goto fail;
	if (c->intake == INTAKE_JETSTREAM) {
		if ((in->jsetup = jsetup_open(in->nc, c)) == NULL)
			goto fail;
		in->dead_letter_js = jsetup_dead_letter_ctx(in->jsetup);
	} else {
		log_warnx("intake = core: NOT durable; messages published while the service is down "
		    "or in flight at a crash are lost. Use intake = jetstream in production");
	}
	return in;
fail:
	intake_close(in);
	return NULL;
}

static int
intake_subscribe(struct intake *in, const char *subject)
{
	natsSubscription *sub = NULL;
	natsStatus s;

	s = natsConnection_Subscribe(&sub, in->nc, subject, intake_on_msg, in);
	/*
	 * Jetstream: no client-side limit; max_ack_pending bounds what the
	 * server lets out, and a dropped push message would force a consumer
	 * reset.  Core: nothing upstream bounds a backlog, so cap it; past the
	 * cap cnats drops and reports a slow consumer (logged), which is what
	 * core intake, not durable, accepts.
	 */
	if (s == NATS_OK && in->mode == INTAKE_JETSTREAM)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	else if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, INTAKE_CORE_PENDING_MSGS, INTAKE_CORE_PENDING_BYTES);
	if (s != NATS_OK) {
		log_errorx("subscribe to %s: %s", subject, natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		return -1;
	}
	in->subs[in->nsubs++] = sub;
	return 0;
}

int
intake_start(struct intake *in)
{
	pthread_mutex_lock(&in->lock);
	in->discard = false;
	pthread_mutex_unlock(&in->lock);
	if (in->mode == INTAKE_JETSTREAM) {
		if (jsetup_reset_consumer(in->jsetup) == -1)
			return -1;
		/* A new consumer numbers its deliveries from 1; no callback runs now. */
		in->last_consumer_seq = 0;
		atomic_store(&in->reset_wanted, false);
		return intake_subscribe(in, in->deliver_subject);
	}
	if (intake_subscribe(in, in->subject_status) == -1 ||
	    intake_subscribe(in, in->subject_request) == -1)
		return -1;
	log_info("subscribed to %s and %s (core intake)", in->subject_status, in->subject_request);
	return 0;
}

static void
intake_unsubscribe_all(struct intake *in)
{
	for (int i = 0; i < in->nsubs; i++) {
		natsStatus s = natsSubscription_Drain(in->subs[i]);
		if (s == NATS_OK)
			s = natsSubscription_WaitForDrainCompletion(in->subs[i], 5000);
		/* Invalid: the connection already closed it, which is what we wanted. */
		if (s != NATS_OK && s != NATS_INVALID_SUBSCRIPTION)
			log_warnx("draining subscription %d: %s", i, natsStatus_GetText(s));
		natsSubscription_Destroy(in->subs[i]);
		in->subs[i] = NULL;
	}
	in->nsubs = 0;
}

int
intake_reset(struct intake *in)
{
	/* Callbacks still running must not block or queue: they release. */
	pthread_mutex_lock(&in->lock);
	in->discard = true;
	pthread_cond_broadcast(&in->room);
	pthread_mutex_unlock(&in->lock);
	intake_unsubscribe_all(in);
	pthread_mutex_lock(&in->lock);
	intake_batch_clear(&in->fill, true);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

int
intake_drain_begin(struct intake *in)
{
	for (int i = 0; i < in->nsubs; i++) {
		natsStatus s = natsSubscription_Drain(in->subs[i]);
		if (s != NATS_OK)
			log_warnx("draining subscription %d: %s", i, natsStatus_GetText(s));
	}
	return 0;
}

bool
intake_drain_done(struct intake *in)
{
	for (int i = 0; i < in->nsubs; i++) {
		if (in->subs[i] == NULL)
			continue;
		if (natsSubscription_WaitForDrainCompletion(in->subs[i], 1) == NATS_TIMEOUT)
			return false;
		natsSubscription_Destroy(in->subs[i]);
		in->subs[i] = NULL;
	}
	in->nsubs = 0;
	return true;
}

int
intake_wake_fd(const struct intake *in)
{
	return in->wake_fd;
}

int
intake_reload(struct intake *in, const struct config *c)
{
	char *dl = strdup(c->subject_dead_letter);

	if (dl == NULL) {
		log_error("reload: allocating dead-letter subject");
		return -1;
	}
	pthread_mutex_lock(&in->lock);
	free(in->dead_letter_subject);
	in->dead_letter_subject = dl;
	pthread_mutex_unlock(&in->lock);
	atomic_store(&in->max_message_bytes, (size_t)c->max_message_bytes);
	atomic_store(&in->max_id_bytes, (size_t)c->max_id_bytes);
	return 0;
}

void
intake_get_stats(struct intake *in, struct intake_stats *st)
{
	st->received = atomic_load(&in->received);
	st->accepted = atomic_load(&in->accepted);
	st->rejected = atomic_load(&in->rejected);
	st->dead_lettered = atomic_load(&in->dead_lettered);
	st->dead_letter_failed = atomic_load(&in->dead_letter_failed);
	st->redelivered = atomic_load(&in->redelivered);
	for (int i = 0; i < MSG_E_COUNT; i++)
		st->by_reason[i] = atomic_load(&in->by_reason[i]);
}

void
intake_close(struct intake *in)
{
	if (in == NULL)
		return;
	if (in->nsubs > 0)
		intake_reset(in);
	intake_batch_free(&in->fill);
	if (in->nc != NULL) {
		natsStatus s = natsConnection_FlushTimeout(in->nc, 2000);
		if (s != NATS_OK)
			log_warnx("flushing acks at close: %s", natsStatus_GetText(s));
	}
	jsetup_close(in->jsetup);
	natsConnection_Destroy(in->nc);
	validator_free(in->validator);
	if (in->wake_fd != -1)
		close(in->wake_fd);
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->room);
	free(in->deliver_subject);
	free(in->subject_status);
	free(in->subject_request);
	free(in->dead_letter_subject);
	free(in);
}
