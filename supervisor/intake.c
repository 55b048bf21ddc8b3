#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/frame.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "../common/quote.h"
#include "../common/deadletter.h"
#include "handoff.h"
#include "intake.h"
#include "jsack.h"
#include "jsetup.h"
#include "partset.h"

/* Core intake's client-side backlog cap (per subscription). */
#define INTAKE_CORE_PENDING_MSGS 2000000
#define INTAKE_CORE_PENDING_BYTES (512 << 20)
/* Room for at least this many of the largest messages the broker lets through. */
#define INTAKE_PENDING_MIN_PAYLOADS 4
/*
 * Core messages the callback is done with, released together: cnats frees
 * a message on its garbage-collector thread, and releasing one at a time
 * woke that thread (a futex call) for nearly every delivery.
 */
#define INTAKE_SPENT_MAX 64
/* A delivery on neither input subject (a stream set up by hand, the router's ".other"). */
#define INTAKE_WRONG_SUBJECT "subject is neither the status nor the request subject"
/* A subscription that did not drain is freed this long after its unsubscribe. */
#define INTAKE_UNDRAINED_PAUSE_MS 200

struct intake {
	natsConnection *nc;
	struct jsetup *jsetup;      /* jetstream mode only */
	struct deadletter *dead_letter;
	struct handoff *handoff;
	/* [subs_cap]: core's two, one push consumer's, or partition p's at p (NULL: none) */
	natsSubscription **subs;
	int nsubs, subs_cap;        /* nsubs: how many are not NULL */
	/*
	 * [subs_cap]: unsubscribed by intake_unbind, freed at the next start
	 * (cnats 3.4, nats.c #637); a partition is retired at most once between
	 * two starts, so it never overflows.
	 */
	natsSubscription **retired;
	int nretired;
	bool started;
	enum intake_mode mode;
	char *deliver_subject, *subject_status, *subject_request;
	int64_t max_ack_pending;
	int64_t pending_bytes;      /* main thread: the jetstream subscription's pending cap */

	/* Used only on the callback thread (and by intake_close once no callback runs). */
	struct validator *validator;
	struct log_limit bad_log;
	natsMsg *spent[INTAKE_SPENT_MAX];
	int nspent;

	/* Read per message by the callback, set by reload: atomics, not a lock. */
	_Atomic size_t max_message_bytes, max_id_bytes;
	_Atomic int64_t max_future_ms;

	atomic_bool reset_wanted;
	_Atomic uint64_t left_for_reset;  /* deliveries dropped while a reset was wanted */
	uint64_t last_consumer_seq;  /* callback thread only */
	struct partset *partset;     /* cluster mode: the partitions served (NULL: single instance) */
	_Atomic uint64_t replayed;
	_Atomic uint64_t received, accepted, rejected, redelivered;
	_Atomic uint64_t received_status, received_request, rejected_status, rejected_request;
	_Atomic uint64_t by_reason[MSG_E_COUNT];
};

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

/*
 * For a log line or a header: bytes below 0x20 or above 0x7e as \xNN, the
 * rest as it is.  The validator's details quote wire bytes already; this
 * keeps a detail that did not from reaching a terminal raw.
 */
static void
intake_printable(char *dst, size_t dstlen, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p != '\0' && o + 5 < dstlen; p++) {
		if (*p >= 0x20 && *p < 0x7f) {
			dst[o++] = (char)*p;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[*p >> 4];
			dst[o++] = hex[*p & 0xf];
		}
	}
	dst[o] = '\0';
}

/* Where a delivery came from: what its place in the ack order needs. */
struct intake_origin {
	uint64_t stream_seq;
	int lane;                   /* ackq.h: 0, or 1 + partition */
	uint32_t binding;           /* cluster mode: the partition's binding (partset_current) */
	bool replay;                /* cluster mode: answered by a former owner already (partset.h) */
};

/* The frame a worker gets for an accepted message: the only encoding, straight into the batch. */
struct intake_frame {
	const struct alarm_msg *am;
	uint64_t stream_seq;
	int64_t received_us;        /* wall clock: the worker measures digest latency from it */
	bool replay;                /* cluster mode: answered by a former owner already (partset.h) */
};

static int
intake_encode(struct buf *frames, const void *arg)
{
	const struct intake_frame *f = arg;

	if (f->am->kind == MSG_STATUS_CHANGED)
		return frame_put_update(frames, 0, f->am);
	return frame_put_digest_at(frames, 0, f->stream_seq, f->received_us,
	    f->replay ? FRAME_F_REPLAY : 0, f->am->user, f->am->user_len);
}

/* Release the core messages put aside by intake_spend. */
static void
intake_spent_release(struct intake *in)
{
	for (int i = 0; i < in->nspent; i++)
		natsMsg_Destroy(in->spent[i]);
	in->nspent = 0;
}

/* Done with m: released now, or with the next few when more deliveries are on their way. */
static void
intake_spend(struct intake *in, natsMsg *m, bool more)
{
	in->spent[in->nspent++] = m;
	if (!more || in->nspent == INTAKE_SPENT_MAX)
		intake_spent_release(in);
}

/*
 * Whether cnats holds further deliveries for sub, which will reach the
 * callback next: then waking the main loop and releasing messages can
 * wait for them.  An error (a closing subscription) counts as none.
 */
static bool
intake_more(natsSubscription *sub)
{
	int msgs = 0;

	return natsSubscription_GetPending(sub, &msgs, NULL) == NATS_OK && msgs > 0;
}

/*
 * Hand a message (am == NULL: already done) to the main thread, waiting
 * while the batch is full.  received_us is when the callback got it.
 */
static void
intake_queue(struct intake *in, natsSubscription *sub, const struct alarm_msg *am,
    const struct intake_origin *o, int64_t received_us, natsMsg *m)
{
	struct intake_frame f = { am, o->stream_seq, received_us, o->replay };
	/* Core intake has nothing to ack, so nothing to hold. */
	natsMsg *keep = in->mode == INTAKE_JETSTREAM ? m : NULL;
	bool more = intake_more(sub);
	int rc;

	if (am != NULL)
		rc = handoff_put(in->handoff, hash32(am->user, am->user_len), o->stream_seq,
		    (uint16_t)o->lane, o->binding, keep, more, intake_encode, &f);
	else
		rc = handoff_put(in->handoff, 0, o->stream_seq, (uint16_t)o->lane, o->binding, keep, more,
		    NULL, NULL);
	if (rc == 1) {
		/* Shut for a reset: jetstream delivers it again. */
		natsMsg_Destroy(m);
		return;
	}
	if (rc == -1) {
		char qs[256];
		const char *subject = natsMsg_GetSubject(m);
		log_error("out of memory queueing a message on \"%s\"",
		    quote_bytes(qs, sizeof(qs), subject, strlen(subject)));
		if (in->mode == INTAKE_JETSTREAM)
			intake_want_reset(in, "a message could not be queued");
		natsMsg_Destroy(m);
		return;
	}
	if (am != NULL)
		atomic_fetch_add(&in->accepted, 1);
	if (keep == NULL)
		intake_spend(in, m, more);
}

/*
 * Counted, logged (rate-limited), a copy kept if it can be, and done: a
 * copy that could not be kept is counted and logged by deadletter, and
 * the message is acked all the same, since it is bad input, not data.
 */
static void
intake_reject(struct intake *in, natsSubscription *sub, natsMsg *m, enum msg_error e,
    const char *detail, const struct intake_origin *o)
{
	const char *subject = natsMsg_GetSubject(m);
	char reason[512], shown[512], qs[256];

	if (o->replay) {
		/* Rejected, counted and dead-lettered when it first came: only its place in the ack order. */
		intake_queue(in, sub, NULL, o, 0, m);
		return;
	}
	atomic_fetch_add(&in->rejected, 1);
	atomic_fetch_add(&in->by_reason[e], 1);
	snprintf(shown, sizeof(shown), "%s: %s", msg_error_name(e), detail);
	for (char *p = shown; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	intake_printable(reason, sizeof(reason), shown);
	log_limited(&in->bad_log, LL_WARN, "rejected message on \"%s\" (%d bytes): %s",
	    quote_bytes(qs, sizeof(qs), subject, strlen(subject)), natsMsg_GetDataLength(m), reason);
	deadletter_put(in->dead_letter, m, reason);
	/* Done already; it still takes its place in the ack order. */
	intake_queue(in, sub, NULL, o, 0, m);
}

/* Validate a message of a known kind and pass it on (or reject it). */
static void
intake_validate(struct intake *in, natsSubscription *sub, natsMsg *m, enum msg_kind kind,
    const struct intake_origin *o)
{
	struct msg_limits limits;
	struct alarm_msg am;
	enum msg_error e;
	int64_t now_us;

	limits.max_message_bytes = atomic_load_explicit(&in->max_message_bytes, memory_order_relaxed);
	limits.max_id_bytes = atomic_load_explicit(&in->max_id_bytes, memory_order_relaxed);
	limits.max_future_ms = atomic_load_explicit(&in->max_future_ms, memory_order_relaxed);
	/*
	 * One vDSO clock read per message, cheap next to the parse and never
	 * stale: the limit on ChangedAt and the digest latency's start.
	 */
	now_us = clock_wall_us();
	e = validate_message(in->validator, kind, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
	    &limits, now_us / 1000, &am);
	if (e != MSG_OK) {
		if (!o->replay)
			atomic_fetch_add(kind == MSG_STATUS_CHANGED ? &in->rejected_status : &in->rejected_request, 1);
		intake_reject(in, sub, m, e, validator_detail(in->validator), o);
		return;
	}
	intake_queue(in, sub, &am, o, now_us, m);
}


/*
 * While a reset is wanted, a delivery is dropped unrouted and unacked: the
 * reset delivers it again, in stream order.  Routed now, it could overtake
 * one that the reconnect or gap lost, which comes again only with the
 * reset: a user's request answered before an update published ahead of it.
 */
static bool
intake_left_for_reset(struct intake *in, natsMsg *m)
{
	if (!atomic_load(&in->reset_wanted))
		return false;
	atomic_fetch_add(&in->left_for_reset, 1);
	natsMsg_Destroy(m);
	return true;
}

/*
 * Cluster mode: a delivery of one of the partition consumers.  Lane 1 + p
 * in the ack queue: each partition's consumer is acked on its own.
 */
static void
intake_on_part_msg(struct intake *in, natsSubscription *sub, natsMsg *m, const struct jsack_meta *meta)
{
	const char *subject = natsMsg_GetSubject(m);
	struct intake_origin o = { meta->stream_seq, 0, 0, false };
	enum msg_kind kind;
	bool gap;
	int p;

	if ((p = partset_classify(in->partset, subject, meta, &kind, &o.replay, &gap, &o.binding)) < 0) {
		char qs[256];

		/* A consumer of a partition given up, not deleted yet: its next owner gets it. */
		log_limited(&in->bad_log, LL_INFO, "ignoring a delivery on \"%s\": not a partition served here",
		    quote_bytes(qs, sizeof(qs), subject, strlen(subject)));
		natsMsg_Destroy(m);
		return;
	}
	if (gap) {
		char why[128];

		snprintf(why, sizeof(why), "partition %d: a consumer delivery is missing before %llu", p,
		    (unsigned long long)meta->consumer_seq);
		intake_want_reset(in, why);
	}
	if (intake_left_for_reset(in, m))
		return;
	o.lane = 1 + p;
	if (o.replay) {
		atomic_fetch_add(&in->replayed, 1);
	} else {
		atomic_fetch_add(&in->received, 1);
		if (kind != 0)
			atomic_fetch_add(kind == MSG_STATUS_CHANGED ? &in->received_status : &in->received_request, 1);
		if (meta->delivered > 1)
			atomic_fetch_add(&in->redelivered, 1);
	}
	if (kind == 0)
		intake_reject(in, sub, m, MSG_E_JSON, INTAKE_WRONG_SUBJECT, &o);
	else
		intake_validate(in, sub, m, kind, &o);
}

static void
intake_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct intake *in = arg;
	struct jsack_meta meta = { 0, 0, 0 };
	struct intake_origin o = { 0, 0, 0, false };
	const char *subject = natsMsg_GetSubject(m);
	enum msg_kind kind;

	(void)nc;
	if (in->mode == INTAKE_JETSTREAM) {
		if (jsack_parse(natsMsg_GetReply(m), &meta) == -1) {
			const char *reply = natsMsg_GetReply(m);
			char qs[256], qr[256];

			/* Not from our consumer: nothing to ack, nothing to route. */
			log_limited(&in->bad_log, LL_WARN, "ignoring non-JetStream message on \"%s\" (reply %s%s%s)",
			    quote_bytes(qs, sizeof(qs), subject, strlen(subject)), reply ? "\"" : "",
			    reply ? quote_bytes(qr, sizeof(qr), reply, strlen(reply)) : "none", reply ? "\"" : "");
			natsMsg_Destroy(m);
			return;
		}
		if (in->partset != NULL) {
			intake_on_part_msg(in, sub, m, &meta);
			return;
		}
		atomic_fetch_add(&in->received, 1);
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
		if (intake_left_for_reset(in, m))
			return;
	} else {
		atomic_fetch_add(&in->received, 1);
	}
	o.stream_seq = meta.stream_seq;
	/* The stream's subject is what tells the two kinds apart. */
	if (strcmp(subject, in->subject_status) == 0) {
		kind = MSG_STATUS_CHANGED;
		atomic_fetch_add(&in->received_status, 1);
	} else if (strcmp(subject, in->subject_request) == 0) {
		kind = MSG_DIGEST_REQUEST;
		atomic_fetch_add(&in->received_request, 1);
	} else {
		intake_reject(in, sub, m, MSG_E_JSON, INTAKE_WRONG_SUBJECT, &o);
		return;
	}
	intake_validate(in, sub, m, kind, &o);
}
void
intake_ack(struct intake *in, natsMsg *m, int lane, uint64_t stream_seq)
{
	const char *reply;
	natsStatus s;

	if (m == NULL)
		return;
	if (in->partset != NULL && lane > 0)
		partset_acked(in->partset, lane - 1, stream_seq);
	reply = natsMsg_GetReply(m);
	if (reply != NULL && (s = natsConnection_Publish(in->nc, reply, "+ACK", 4)) != NATS_OK) {
		char qr[256];
		/* Not fatal: the message is redelivered and re-applying it is harmless. */
		log_warnx("ack to \"%s\" failed: %s", quote_bytes(qr, sizeof(qr), reply, strlen(reply)),
		    natsStatus_GetText(s));
	}
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

/*
 * The jetstream subscription's cap on what cnats holds before the
 * callback takes it: the workers' queues' worth (queue_max_bytes per
 * worker), and never less than a few of the largest messages the broker
 * lets through, or one such message would be dropped at every delivery.
 */
static int64_t
intake_pending_bytes(struct intake *in, const struct config *c)
{
	int64_t floor = INTAKE_PENDING_MIN_PAYLOADS * natsConnection_GetMaxPayload(in->nc);
	int64_t workers = config_worker_count(c), bytes;

	bytes = c->queue_max_bytes > INT_MAX / workers ? INT_MAX : c->queue_max_bytes * workers;
	if (bytes < floor)
		bytes = floor;
	return bytes > INT_MAX ? INT_MAX : bytes;
}

/*
 * Jetstream: past the caps cnats drops a delivery and says so (a slow
 * consumer); the gap in the consumer's sequence that leaves makes intake
 * reset the consumer, so the dropped message comes again: memory stays
 * bounded and nothing is lost.  max_ack_pending bounds the messages the
 * server lets out; twice that leaves room for a redelivery beside its
 * first delivery.  Core: nothing upstream bounds a backlog, so cap it;
 * past the cap cnats drops and reports a slow consumer (logged), which
 * is what core intake, not durable, accepts.
 */
static natsStatus
intake_pending_limits(struct intake *in, natsSubscription *sub)
{
	int64_t msgs = 2 * in->max_ack_pending;

	if (in->mode == INTAKE_CORE)
		return natsSubscription_SetPendingLimits(sub, INTAKE_CORE_PENDING_MSGS, INTAKE_CORE_PENDING_BYTES);
	return natsSubscription_SetPendingLimits(sub, msgs > INT_MAX ? INT_MAX : (int)msgs,
	    (int)in->pending_bytes);
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
	in->mode = c->intake;
	in->max_ack_pending = c->max_ack_pending;
	atomic_init(&in->max_message_bytes, (size_t)c->max_message_bytes);
	atomic_init(&in->max_id_bytes, (size_t)c->max_id_bytes);
	atomic_init(&in->max_future_ms, c->max_future_ms);
	in->deliver_subject = intake_strdup(c->deliver_subject, &ok);
	in->subject_status = intake_strdup(c->subject_status, &ok);
	in->subject_request = intake_strdup(c->subject_request, &ok);
	/* Cluster mode subscribes to each partition's deliver subject: one callback thread for all of them. */
	in->subs_cap = c->partitions > 2 ? (int)c->partitions : 2;
	if (ok && ((in->subs = calloc((size_t)in->subs_cap, sizeof(*in->subs))) == NULL ||
	    (in->retired = calloc((size_t)in->subs_cap, sizeof(*in->retired))) == NULL))
		ok = false;
	if (!ok || (in->validator = validator_new()) == NULL) {
		log_error("allocating intake");
		goto fail;
	}
	if ((in->handoff = handoff_new()) == NULL)
		goto fail;
	struct natsconn_opts o = {
		.servers = c->servers,
		.cfg = c,
		.name = "master",
		/* One delivery thread for both core subscriptions keeps their order. */
		.global_delivery = c->intake == INTAKE_CORE || c->partitions > 0,
		.reconnected_cb = intake_on_reconnected,
		.closure = in,
		.wait_connected = true,
		.stop = stop,
		.stop_arg = arg,
	};
	natsconn_warn_exposed(c);
	if ((in->nc = natsconn_connect(&o)) == NULL)
		goto fail;
	in->pending_bytes = intake_pending_bytes(in, c);
	if (c->intake == INTAKE_JETSTREAM) {
		if ((in->jsetup = jsetup_open(in->nc, c)) == NULL)
			goto fail;
		if (c->partitions > 0 && (jsetup_partition_stream(in->jsetup, c) == -1 ||
		    (in->partset = partset_open(c, in->jsetup)) == NULL))
			goto fail;
	} else {
		log_warnx("intake = core: NOT durable; messages published while the service is down "
		    "or in flight at a crash are lost. Use intake = jetstream in production");
	}
	in->dead_letter = deadletter_new(in->nc, c->subject_dead_letter,
	    in->jsetup != NULL && jsetup_dead_letter_stream(in->jsetup),
	    in->jsetup != NULL ? jsetup_dead_letter_max_msg(in->jsetup) : -1);
	if (in->dead_letter == NULL)
		goto fail;
	return in;
fail:
	intake_close(in);
	return NULL;
}

/* Subscribe in slot i (-1: the first free one). */
static int
intake_subscribe(struct intake *in, int i, const char *subject)
{
	natsSubscription *sub = NULL;
	natsStatus s;

	for (int k = 0; i == -1 && k < in->subs_cap; k++)
		if (in->subs[k] == NULL)
			i = k;
	if (i < 0 || i >= in->subs_cap || in->subs[i] != NULL) {
		log_errorx("subscribe to %s: no free subscription slot (%d in use)", subject, in->nsubs);
		return -1;
	}
	s = natsConnection_Subscribe(&sub, in->nc, subject, intake_on_msg, in);
	if (s == NATS_OK)
		s = intake_pending_limits(in, sub);
	if (s != NATS_OK) {
		log_errorx("subscribe to %s: %s", subject, natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		return -1;
	}
	in->subs[i] = sub;
	in->nsubs++;
	return 0;
}

/* Unsubscribed a bind or more ago: cnats' reader is long done with them. */
static void
intake_free_retired(struct intake *in)
{
	for (int i = 0; i < in->nretired; i++)
		natsSubscription_Destroy(in->retired[i]);
	in->nretired = 0;
}

int
intake_start(struct intake *in)
{
	handoff_open(in->handoff);
	in->started = true;
	if (in->partset != NULL) {
		char deliver[512];

		/*
		 * A partition that cannot be bound now is tried again at the next
		 * bind.  A reset wanted stays wanted: a partition kept under its
		 * epoch is not bound again here, so only intake_reset covers it
		 * (a gap on it must never be acked over).
		 */
		(void)partset_bind(in->partset);
		/*
		 * After the consumers exist, on their exact subjects: the server
		 * tells a push consumer of a new subscription on its literal
		 * deliver subject, not of a wildcard one.
		 */
		for (int p = 0; p < partset_count(in->partset); p++)
			if (partset_serving(in->partset, p) != 0 && in->subs[p] == NULL &&
			    (partset_deliver(in->partset, p, deliver, sizeof(deliver)) == -1 ||
			    intake_subscribe(in, p, deliver) == -1))
				return -1;
		intake_free_retired(in);
		return 0;
	}
	if (in->mode == INTAKE_JETSTREAM) {
		if (jsetup_reset_consumer(in->jsetup) == -1)
			return -1;
		/* A new consumer numbers its deliveries from 1; no callback runs now. */
		in->last_consumer_seq = 0;
		return intake_subscribe(in, -1, in->deliver_subject);
	}
	if (intake_subscribe(in, -1, in->subject_status) == -1 ||
	    intake_subscribe(in, -1, in->subject_request) == -1)
		return -1;
	log_info("subscribed to %s and %s (core intake)", in->subject_status, in->subject_request);
	return 0;
}

/* Drained (what it holds goes through the callback), then freed. */
static void
intake_unsubscribe(struct intake *in, int i)
{
	natsStatus s = natsSubscription_Drain(in->subs[i]);

	if (s == NATS_OK)
		s = natsSubscription_WaitForDrainCompletion(in->subs[i], 5000);
	/* Invalid: the connection already closed it, which is what we wanted. */
	if (s != NATS_OK && s != NATS_INVALID_SUBSCRIPTION) {
		log_warnx("draining subscription %d: %s", i, natsStatus_GetText(s));
		/*
		 * cnats 3.4's reader can still touch a subscription freed while
		 * deliveries arrive (nats.c #637): unsubscribe, give it a moment.
		 */
		(void)natsSubscription_Unsubscribe(in->subs[i]);
		usleep(INTAKE_UNDRAINED_PAUSE_MS * 1000);
	}
	natsSubscription_Destroy(in->subs[i]);
	in->subs[i] = NULL;
	in->nsubs--;
}

static void
intake_unsubscribe_all(struct intake *in)
{
	for (int i = 0; i < in->subs_cap; i++)
		if (in->subs[i] != NULL)
			intake_unsubscribe(in, i);
}

void
intake_stop(struct intake *in)
{
	/* Callbacks still running must not block or queue: they release. */
	handoff_shut(in->handoff);
	intake_unsubscribe_all(in);
	intake_free_retired(in);
}

int
intake_reset(struct intake *in)
{
	uint64_t left;

	intake_stop(in);
	/*
	 * No callback runs now.  What wanted a reset so far (a reconnect, a
	 * gap, a message the stop kept from being queued) is covered by the
	 * new consumers at the floors that the next start makes; a reset
	 * wanted from here on is another one.
	 */
	atomic_store(&in->reset_wanted, false);
	left = atomic_exchange(&in->left_for_reset, 0);
	if (left > 0)
		log_info("%llu deliveries that came while the reset was wanted were left for it to "
		    "deliver again, in order", (unsigned long long)left);
	/* Every partition gets a new consumer at its floor at the next start. */
	for (int p = 0; in->partset != NULL && p < partset_count(in->partset); p++)
		partset_unbind(in->partset, p);
	return 0;
}

void
intake_unbind(struct intake *in, int p)
{
	if (in->partset == NULL || p < 0 || p >= in->subs_cap)
		return;
	partset_unbind(in->partset, p);
	if (in->subs[p] == NULL)
		return;
	/*
	 * Not drained: while the master quiesces, the one delivery thread may
	 * wait for room in the handoff with another partition's message, and
	 * a drain would wait for it.  What p's consumer still delivers, here
	 * or queued, is stale now (partset_current) and never acked: its next
	 * consumer starts at the ack floor.
	 */
	(void)natsSubscription_Unsubscribe(in->subs[p]);
	in->retired[in->nretired++] = in->subs[p];
	in->subs[p] = NULL;
	in->nsubs--;
}

bool
intake_current(const struct intake *in, int lane, uint32_t binding)
{
	return in->partset == NULL || lane == 0 || partset_current(in->partset, lane - 1, binding);
}

int
intake_drain_begin(struct intake *in)
{
	for (int i = 0; i < in->subs_cap; i++) {
		natsStatus s;

		if (in->subs[i] != NULL && (s = natsSubscription_Drain(in->subs[i])) != NATS_OK)
			log_warnx("draining subscription %d: %s", i, natsStatus_GetText(s));
	}
	return 0;
}

bool
intake_drain_done(struct intake *in)
{
	for (int i = 0; i < in->subs_cap; i++) {
		if (in->subs[i] == NULL)
			continue;
		if (natsSubscription_WaitForDrainCompletion(in->subs[i], 1) == NATS_TIMEOUT)
			return false;
		natsSubscription_Destroy(in->subs[i]);
		in->subs[i] = NULL;
		in->nsubs--;
	}
	return true;
}

natsConnection *
intake_conn(struct intake *in)
{
	return in->nc;
}

struct jsetup *
intake_jsetup(struct intake *in)
{
	return in->jsetup;
}

bool
intake_bound(struct intake *in)
{
	/* An instance of a cluster may serve no partition now, and still be up. */
	return in->partset != NULL ? in->started : in->nsubs > 0;
}

struct handoff *
intake_handoff(struct intake *in)
{
	return in->handoff;
}

struct partset *
intake_partset(struct intake *in)
{
	return in->partset;
}

int
intake_flush(struct intake *in)
{
	natsStatus s = natsConnection_FlushTimeout(in->nc, 5000);

	if (s != NATS_OK) {
		log_warnx("flushing acks: %s", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

int
intake_reload(struct intake *in, const struct config *c)
{
	int64_t bytes = intake_pending_bytes(in, c);

	if (deadletter_set_subject(in->dead_letter, c->subject_dead_letter) == -1)
		return -1;
	atomic_store(&in->max_message_bytes, (size_t)c->max_message_bytes);
	atomic_store(&in->max_id_bytes, (size_t)c->max_id_bytes);
	atomic_store(&in->max_future_ms, c->max_future_ms);
	if (in->mode == INTAKE_JETSTREAM && bytes != in->pending_bytes) {
		log_info("reload: intake holds at most %lld bytes of deliveries (was %lld)",
		    (long long)bytes, (long long)in->pending_bytes);
		in->pending_bytes = bytes;
		for (int i = 0; i < in->subs_cap; i++) {
			natsStatus s;

			if (in->subs[i] != NULL && (s = intake_pending_limits(in, in->subs[i])) != NATS_OK)
				log_warnx("reload: pending limits of subscription %d: %s", i, natsStatus_GetText(s));
		}
	}
	return 0;
}

void
intake_get_stats(struct intake *in, struct intake_stats *st)
{
	st->received = atomic_load(&in->received);
	st->accepted = atomic_load(&in->accepted);
	st->rejected = atomic_load(&in->rejected);
	struct deadletter_stats ds;

	deadletter_get_stats(in->dead_letter, &ds);
	st->dead_lettered = ds.kept;
	st->dead_letter_truncated = ds.truncated;
	st->dead_letter_failed = ds.failed;
	st->redelivered = atomic_load(&in->redelivered);
	st->replayed = atomic_load(&in->replayed);
	st->received_status = atomic_load(&in->received_status);
	st->received_request = atomic_load(&in->received_request);
	st->rejected_status = atomic_load(&in->rejected_status);
	st->rejected_request = atomic_load(&in->rejected_request);
	for (int i = 0; i < MSG_E_COUNT; i++)
		st->by_reason[i] = atomic_load(&in->by_reason[i]);
}

void
intake_close(struct intake *in)
{
	if (in == NULL)
		return;
	/* Also releases what waits in the handoff when no subscription is left. */
	if (in->handoff != NULL)
		intake_reset(in);
	if (in->nc != NULL) {
		natsStatus s = natsConnection_FlushTimeout(in->nc, 2000);
		if (s != NATS_OK)
			log_warnx("flushing acks at close: %s", natsStatus_GetText(s));
	}
	/* Its confirmations run on the connection's threads: before the connection goes. */
	deadletter_free(in->dead_letter);
	partset_close(in->partset);
	jsetup_close(in->jsetup);
	natsconn_close(in->nc);
	/* No callback runs now; the library stays open until the master's nats_Close. */
	intake_spent_release(in);
	validator_free(in->validator);
	handoff_free(in->handoff);
	free(in->subs);
	free(in->retired);
	free(in->deliver_subject);
	free(in->subject_status);
	free(in->subject_request);
	free(in);
}
