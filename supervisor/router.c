#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/clock.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "../common/quote.h"
#include "../common/validate.h"
#include "jsack.h"
#include "jsetup.h"
#include "router.h"

/*
 * Copies in flight.  One ordered publisher is bound by the stream's
 * round trips, so the window is what lets it go faster than one copy per
 * round trip; cnats is allowed more (ROUTER_CNATS_PENDING) so that
 * confirmations of a stopped generation never stall a new one.
 */
#define ROUTER_WINDOW 4096
#define ROUTER_CNATS_PENDING (4 * ROUTER_WINDOW)
/* Input acks are AckAll: one per this many messages, or when nothing is left in flight. */
#define ROUTER_ACK_EVERY 256
/* A copy the partition stream has not confirmed by then counts as failed. */
#define ROUTER_CONFIRM_WAIT_MS 5000
/* A router that could not start tries again after 1 s, then 2 s, then every 4 s: a long outage logs little. */
#define ROUTER_RETRY_MAX_S 4
#define ROUTER_DRAIN_WAIT_MS 5000
#define ROUTER_UNSUB_GRACE_MS 200
/* What a graceful stop waits for the last confirmations, so their input can be acked. */
#define ROUTER_STOP_WAIT_MS 1000
/* "<int64>-<uint64>" */
#define ROUTER_ID_MAX 48
/* Room for the copy's headers (two ids, a size, the framing) under max_payload. */
#define ROUTER_HDR_ROOM 192
#define ROUTER_SIZE_HDR "Alarm-Original-Size"
#define ROUTER_PENDING_MIN_BYTES (64 << 20)

struct router_slot {
	uint64_t seq;         /* input stream sequence */
	natsMsg *input;       /* held until acked */
	const natsMsg *copy;  /* identity only (cnats owns it); NULL once answered */
	bool stored;
};

struct router {
	natsConnection *nc;           /* borrowed */
	struct jsetup *js;            /* borrowed */
	jsCtx *pub;                   /* async copies, answered in router_on_ack; API calls */
	char *stream, *partition_stream, *prefix, *deliver;
	char *part_subject, *subject_status, *subject_request;
	uint32_t partitions;
	int64_t max_ack_pending;

	/* Start, stop and the retry thread: under ctl. */
	pthread_mutex_t ctl;
	pthread_cond_t ctl_cond;
	pthread_t retry;
	bool retry_started, quit;
	bool running;                 /* started, not stopped: the retry thread restarts it */
	natsSubscription *sub;
	uint64_t epoch, gen;
	char start_id[ROUTER_ID_MAX]; /* the stream's last copy when this generation started */

	/* The window, between the delivery callback and the confirmations: under lock. */
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct router_slot *ring;
	size_t head, n;
	bool open;                    /* deliveries are routed */
	bool broken;                  /* a failure: nothing more routed or acked until a restart */
	bool unchain;                 /* the stream refuses the chain at its own last copy */
	int64_t created;              /* the input stream's, for the copies' ids */
	uint64_t last_seq;            /* input taken up to here */
	uint64_t last_consumer_seq;
	uint64_t gen_stored;          /* copies of this generation confirmed */
	char last_id[ROUTER_ID_MAX];  /* the copy the next one must follow; "": none */
	natsMsg *to_ack;              /* newest input whose copies up to it are all stored */
	uint64_t unacked;             /* input messages below to_ack not acked yet */

	struct validator *validator;  /* delivery callback only */

	atomic_bool restart_wanted;
	_Atomic int64_t fence_ms;
	_Atomic uint64_t received, redelivered, routed, unparsed, truncated, acked;
	_Atomic uint64_t publish_errors, fenced, resets, in_flight;
};

static bool
router_fenced(struct router *r)
{
	return clock_mono_ms() > atomic_load(&r->fence_ms);
}

/* Under lock: stop routing and acking; the retry thread starts a new consumer. */
static void
router_break(struct router *r, const char *why)
{
	if (r->broken)
		return;
	r->broken = true;
	atomic_store(&r->restart_wanted, true);
	pthread_cond_broadcast(&r->room);
	pthread_cond_signal(&r->ctl_cond);
	log_warnx("router (epoch %" PRIu64 ", generation %" PRIu64 "): %s; routing and acks stop "
	    "until the consumer starts again after its floor", r->epoch, r->gen, why);
}

/* AckAll up to m.  0, or -1 (logged: not fatal, the input comes again and its copies are found stored). */
static int
router_ack_msg(struct router *r, natsMsg *m)
{
	const char *reply = natsMsg_GetReply(m);
	natsStatus s;

	if (reply != NULL && (s = natsConnection_Publish(r->nc, reply, "+ACK", 4)) != NATS_OK) {
		char qr[256];
		log_warnx("router: ack to \"%s\" failed: %s", quote_bytes(qr, sizeof(qr), reply,
		    strlen(reply)), natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* Under lock: AckAll up to to_ack, unless something failed or the fence passed. */
static void
router_ack(struct router *r)
{
	if (r->to_ack == NULL || r->broken || router_fenced(r) || router_ack_msg(r, r->to_ack) == -1)
		return;
	atomic_fetch_add(&r->acked, r->unacked);
	r->unacked = 0;
	natsMsg_Destroy(r->to_ack);
	r->to_ack = NULL;
}

/* Under lock: the stored head of the window moves to to_ack; acked now and then. */
static void
router_advance(struct router *r)
{
	bool moved = false;

	while (r->n > 0 && r->ring[r->head].stored) {
		struct router_slot *sl = &r->ring[r->head];

		natsMsg_Destroy(r->to_ack);
		r->to_ack = sl->input;
		memset(sl, 0, sizeof(*sl));
		r->head = (r->head + 1) % ROUTER_WINDOW;
		r->n--;
		r->unacked++;
		moved = true;
	}
	if (!moved)
		return;
	pthread_cond_broadcast(&r->room);
	if (r->unacked >= ROUTER_ACK_EVERY || r->n == 0)
		router_ack(r);
}

/* Under lock: the window's slot of input sequence seq, or NULL (an earlier generation's). */
static struct router_slot *
router_find(struct router *r, uint64_t seq)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct router_slot *sl = &r->ring[(r->head + mid) % ROUTER_WINDOW];

		if (sl->seq == seq)
			return sl;
		if (sl->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* "<created>-<seq>": the input sequence, or 0. */
static uint64_t
router_id_seq(const char *id, int64_t *created)
{
	const char *dash = id != NULL ? strchr(id, '-') : NULL;
	char *end;
	uint64_t seq;

	if (dash == NULL)
		return 0;
	errno = 0;
	*created = strtoll(id, &end, 10);
	if (end != dash || errno != 0)
		return 0;
	seq = strtoull(dash + 1, &end, 10);
	return *end == '\0' && errno == 0 ? seq : 0;
}

/* On cnats' thread for the partition stream's answers (and its timer, for copies never answered). */
static void
router_on_ack(jsCtx *js, natsMsg *copy, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct router *r = closure;
	struct router_slot *sl;
	const char *id = NULL;
	int64_t created = 0;
	uint64_t seq = 0;

	(void)js;
	(void)pa;
	atomic_fetch_sub(&r->in_flight, 1);
	if (natsMsgHeader_Get(copy, "Nats-Msg-Id", &id) == NATS_OK)
		seq = router_id_seq(id, &created);
	pthread_mutex_lock(&r->lock);
	/* A copy of a stopped generation tells nothing about this one's. */
	if ((sl = router_find(r, seq)) != NULL && sl->copy == copy) {
		sl->copy = NULL;
		if (pae == NULL) {
			sl->stored = true;
			r->gen_stored++;
			atomic_fetch_add(&r->routed, 1);
			router_advance(r);
		} else {
			char why[512];

			atomic_fetch_add(&r->publish_errors, 1);
			if (pae->ErrCode == JSStreamWrongLastMsgIDErr && r->gen_stored == 0 && !r->broken)
				r->unchain = true;
			snprintf(why, sizeof(why), "the copy of input %" PRIu64 " to %s was not stored: %s "
			    "(code %d)", seq, natsMsg_GetSubject(copy), pae->ErrText != NULL ? pae->ErrText :
			    natsStatus_GetText(pae->Err), (int)pae->ErrCode);
			router_break(r, why);
		}
	}
	pthread_mutex_unlock(&r->lock);
	natsMsg_Destroy(copy);
}

/*
 * The copy of m: to its user's partition, or unchanged to partition 0
 * when no user can be read (its owner rejects it there, as intake does).
 * The limits are the widest: whether a message is too big, or too far in
 * the future, is the owner's call; here only the user counts.
 */
static natsMsg *
router_copy(struct router *r, natsMsg *m)
{
	static const struct msg_limits lax = { SIZE_MAX, SIZE_MAX, INT64_MAX };
	const char *subject = natsMsg_GetSubject(m), *kind = "other";
	const char *data = natsMsg_GetData(m);
	int len = natsMsg_GetDataLength(m), keep = len;
	int64_t limit = natsConnection_GetMaxPayload(r->nc);
	enum msg_kind mk = MSG_STATUS_CHANGED;
	char to[512], size[24];
	struct alarm_msg am;
	natsMsg *copy = NULL;
	uint32_t p = 0;
	bool known = true;
	natsStatus s;

	if (strcmp(subject, r->subject_status) == 0) {
		kind = "status";
	} else if (strcmp(subject, r->subject_request) == 0) {
		kind = "request";
		mk = MSG_DIGEST_REQUEST;
	} else {
		known = false;
	}
	if (known && validate_message(r->validator, mk, data, (size_t)len, &lax, clock_wall_ms(), &am) == MSG_OK)
		p = hash32(am.user, am.user_len) % r->partitions;
	else
		atomic_fetch_add(&r->unparsed, 1);
	/* Too big to copy with its headers: the first bytes, and the size it had (as dead letters do). */
	if (limit > 0 && (int64_t)len + ROUTER_HDR_ROOM > limit) {
		keep = limit > ROUTER_HDR_ROOM ? (int)(limit - ROUTER_HDR_ROOM) : 0;
		atomic_fetch_add(&r->truncated, 1);
	}
	snprintf(to, sizeof(to), "%s.%" PRIu32 ".%s", r->part_subject, p, kind);
	s = natsMsg_Create(&copy, to, NULL, data, keep);
	if (s == NATS_OK && keep < len) {
		snprintf(size, sizeof(size), "%d", len);
		s = natsMsgHeader_Set(copy, ROUTER_SIZE_HDR, size);
	}
	if (s != NATS_OK) {
		log_errorx("router: building the copy for %s: %s", to, natsStatus_GetText(s));
		natsMsg_Destroy(copy);
		return NULL;
	}
	return copy;
}

/* Under lock: room in the window, unless the generation ends meanwhile. */
static bool
router_wait_room(struct router *r)
{
	while (r->open && !r->broken && r->n == ROUTER_WINDOW) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&r->room, &r->lock, &ts);
	}
	return r->open && !r->broken;
}

/* Under lock: into the window and out to the partition stream.  0, or -1 (the caller still owns both). */
static int
router_send(struct router *r, natsMsg *m, natsMsg **copy, uint64_t seq)
{
	struct router_slot *sl = &r->ring[(r->head + r->n) % ROUTER_WINDOW];
	char id[ROUTER_ID_MAX], why[256];
	jsPubOptions po;
	natsStatus s;

	snprintf(id, sizeof(id), "%" PRId64 "-%" PRIu64, r->created, seq);
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = ROUTER_CONFIRM_WAIT_MS;
	/* The chain: stored only right after the copy before it, so none overtakes a failed one. */
	if (r->last_id[0] != '\0')
		po.ExpectLastMsgId = r->last_id;
	sl->seq = seq;
	sl->input = m;
	sl->copy = *copy;
	sl->stored = false;
	r->n++;
	atomic_fetch_add(&r->in_flight, 1);
	/* On success cnats owns the copy and clears *copy; its answer waits for the lock. */
	if ((s = js_PublishMsgAsync(r->pub, copy, &po)) != NATS_OK) {
		atomic_fetch_sub(&r->in_flight, 1);
		r->n--;
		memset(sl, 0, sizeof(*sl));
		atomic_fetch_add(&r->publish_errors, 1);
		snprintf(why, sizeof(why), "publishing the copy of input %" PRIu64 ": %s", seq,
		    nats_GetLastError(NULL) != NULL ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		router_break(r, why);
		return -1;
	}
	snprintf(r->last_id, sizeof(r->last_id), "%s", id);
	r->last_seq = seq;
	return 0;
}

static void
router_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct router *r = arg;
	struct jsack_meta meta = { 0, 0, 0 };
	natsMsg *copy = NULL;
	char why[128];

	(void)nc;
	(void)sub;
	atomic_fetch_add(&r->received, 1);
	if (jsack_parse(natsMsg_GetReply(m), &meta) == -1) {
		/* Not from our consumer: nothing to ack, nothing to route. */
		natsMsg_Destroy(m);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (!r->open || r->broken)
		goto drop;
	/* TCP keeps order, so a skipped delivery means one was lost: nothing may overtake it. */
	if (meta.consumer_seq != r->last_consumer_seq + 1) {
		snprintf(why, sizeof(why), "consumer delivery %" PRIu64 " arrived, %" PRIu64 " expected",
		    meta.consumer_seq, r->last_consumer_seq + 1);
		router_break(r, why);
		goto drop;
	}
	r->last_consumer_seq = meta.consumer_seq;
	if (meta.stream_seq <= r->last_seq) {
		atomic_fetch_add(&r->redelivered, 1);
		/*
		 * Below every copy in flight its copy is stored, and the ack that
		 * covered it was lost (a reconnect): ack it again, or nothing
		 * would when no new input comes.  Otherwise the next ack covers it.
		 */
		if ((r->n == 0 || meta.stream_seq < r->ring[r->head].seq) && !router_fenced(r))
			router_ack_msg(r, m);
		goto drop;
	}
	if (router_fenced(r)) {
		atomic_fetch_add(&r->fenced, 1);
		router_break(r, "the lease's fence has passed");
		goto drop;
	}
	if (!router_wait_room(r))
		goto drop;
	pthread_mutex_unlock(&r->lock);
	/* The parse, outside the lock: the confirmations need it meanwhile. */
	copy = router_copy(r, m);
	pthread_mutex_lock(&r->lock);
	if (copy == NULL) {
		router_break(r, "a copy could not be built");
		goto drop;
	}
	/* The window only fills on this thread: the room waited for is still there. */
	if (!r->open || r->broken || router_send(r, m, &copy, meta.stream_seq) == -1)
		goto drop;
	pthread_mutex_unlock(&r->lock);
	return;
drop:
	pthread_mutex_unlock(&r->lock);
	natsMsg_Destroy(copy);
	natsMsg_Destroy(m);
}

/*
 * The copy the partition stream holds last: its id, and the input
 * sequence it copies when it is of this input stream (else 0).  0, or -1
 * (logged).
 */
static int
router_last_copy(struct router *r, int64_t created, char *id, size_t idlen, uint64_t *seq)
{
	jsStreamInfo *si = NULL;
	natsMsg *last = NULL;
	const char *v = NULL;
	jsErrCode jerr = 0;
	uint64_t last_seq;
	int64_t c = 0;
	natsStatus s;

	id[0] = '\0';
	*seq = 0;
	if ((s = js_GetStreamInfo(&si, r->pub, r->partition_stream, NULL, &jerr)) != NATS_OK) {
		natsconn_log_js_error("look up partition stream", r->partition_stream, s, jerr, NULL);
		return -1;
	}
	last_seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	if (last_seq == 0)
		return 0;
	if ((s = js_GetMsg(&last, r->pub, r->partition_stream, last_seq, NULL, &jerr)) != NATS_OK) {
		char what[64];
		snprintf(what, sizeof(what), "read message %" PRIu64 " of stream", last_seq);
		natsconn_log_js_error(what, r->partition_stream, s, jerr, NULL);
		return -1;
	}
	if (natsMsgHeader_Get(last, "Nats-Msg-Id", &v) == NATS_OK && v != NULL) {
		snprintf(id, idlen, "%s", v);
		*seq = router_id_seq(v, &c);
		if (c != created)
			*seq = 0;
	}
	natsMsg_Destroy(last);
	return 0;
}

/*
 * The deliveries cnats may hold before the callback takes them: the
 * consumer lets out max_ack_pending; twice that leaves room for
 * redeliveries.  Past it cnats drops one, the gap shows, and the router
 * starts again.
 */
static natsStatus
router_pending_limits(struct router *r, natsSubscription *sub)
{
	int64_t msgs = 2 * r->max_ack_pending, bytes = 4 * natsConnection_GetMaxPayload(r->nc);

	if (bytes < ROUTER_PENDING_MIN_BYTES)
		bytes = ROUTER_PENDING_MIN_BYTES;
	return natsSubscription_SetPendingLimits(sub, msgs > INT_MAX ? INT_MAX : (int)msgs,
	    bytes > INT_MAX ? INT_MAX : (int)bytes);
}

/* Under ctl: a new consumer after the floor (or the last stored copy), then subscribe. */
static int
router_do_start(struct router *r)
{
	char name[512], last_id[ROUTER_ID_MAX];
	uint64_t floor = 0, copied = 0, copied_upto, start;
	natsSubscription *sub = NULL;
	bool unchain;
	int64_t created;
	natsStatus s;

	atomic_store(&r->restart_wanted, false);
	if (router_fenced(r)) {
		log_warnx("router (epoch %" PRIu64 "): not started: the lease's fence has passed", r->epoch);
		return -1;
	}
	if (jsetup_stream_created(r->js, &created) == -1 ||
	    jsetup_consumer_floor(r->js, r->stream, r->prefix, &floor) == -1 ||
	    router_last_copy(r, created, last_id, sizeof(last_id), &copied) == -1)
		return -1;
	/*
	 * From the ack floor, even when copies past it are stored (confirmed
	 * after the generation broke): those come again and are only acked
	 * (router_on_msg, below last_seq), or no consumer would ever ack them.
	 */
	start = floor + 1;
	/* Inputs up to here are copied already: they are only acked when they come again. */
	copied_upto = copied > floor ? copied : floor;
	r->gen++;
	snprintf(name, sizeof(name), "%s%" PRIu64 "_%" PRIu64, r->prefix, r->epoch, r->gen);
	if (jsetup_consumer_replace(r->js, r->stream, r->prefix, name, NULL, r->deliver, start, 0) == -1)
		return -1;

	pthread_mutex_lock(&r->lock);
	/*
	 * The stream refused the chain at the very copy it holds last (it
	 * lost track of its last id, e.g. after a restart past the dedup
	 * window): the first copy goes without the expectation, once.
	 */
	unchain = r->unchain && strcmp(last_id, r->start_id) == 0;
	r->unchain = false;
	snprintf(r->start_id, sizeof(r->start_id), "%s", last_id);
	snprintf(r->last_id, sizeof(r->last_id), "%s", unchain ? "" : last_id);
	r->head = r->n = 0;
	r->created = created;
	r->last_seq = copied_upto;
	r->last_consumer_seq = 0;
	r->gen_stored = 0;
	r->unacked = 0;
	r->broken = false;
	r->open = true;
	pthread_mutex_unlock(&r->lock);

	s = natsConnection_Subscribe(&sub, r->nc, r->deliver, router_on_msg, r);
	if (s == NATS_OK)
		s = router_pending_limits(r, sub);
	if (s != NATS_OK) {
		log_errorx("router: subscribe to %s: %s", r->deliver, natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		pthread_mutex_lock(&r->lock);
		r->open = false;
		pthread_mutex_unlock(&r->lock);
		return -1;
	}
	r->sub = sub;
	log_info("router: consumer %s on stream %s routes into %s from input %" PRIu64 " (ack floor "
	    "%" PRIu64 ", last copy stored %s%s)", name, r->stream, r->partition_stream,
	    copied_upto + 1, floor, last_id[0] != '\0' ? last_id : "none",
	    unchain ? ", not chained to it" : "");
	return 0;
}

/* Under ctl: unsubscribe, ack what is stored (when allowed), and empty the window. */
static void
router_do_stop(struct router *r)
{
	jsPubOptions po;
	natsStatus s;

	pthread_mutex_lock(&r->lock);
	r->open = false;
	pthread_cond_broadcast(&r->room);
	pthread_mutex_unlock(&r->lock);
	if (r->sub != NULL) {
		/* The callback drops what is left: the next consumer delivers it again. */
		s = natsSubscription_Drain(r->sub);
		if (s == NATS_OK)
			s = natsSubscription_WaitForDrainCompletion(r->sub, ROUTER_DRAIN_WAIT_MS);
		if (s != NATS_OK && s != NATS_INVALID_SUBSCRIPTION && s != NATS_CONNECTION_CLOSED)
			log_warnx("router: draining the subscription to %s: %s", r->deliver, natsStatus_GetText(s));
		if (s != NATS_OK) {
			/*
			 * Not drained: cnats 3.4's reader may still be handing it a
			 * message, and freeing it then crashes that thread (nats.c
			 * issue 637, fixed in 3.6).  Off the connection first, freed
			 * a moment later.
			 */
			natsSubscription_Unsubscribe(r->sub);
			nats_Sleep(ROUTER_UNSUB_GRACE_MS);
		}
		natsSubscription_Destroy(r->sub);
		r->sub = NULL;
	}
	/* Let the last confirmations in, so the next router repeats less. */
	if (!router_fenced(r)) {
		jsPubOptions_Init(&po);
		po.MaxWait = ROUTER_STOP_WAIT_MS;
		js_PublishAsyncComplete(r->pub, &po);
	}
	pthread_mutex_lock(&r->lock);
	router_ack(r);
	natsMsg_Destroy(r->to_ack);
	r->to_ack = NULL;
	r->unacked = 0;
	for (size_t i = 0; i < r->n; i++)
		natsMsg_Destroy(r->ring[(r->head + i) % ROUTER_WINDOW].input);
	memset(r->ring, 0, ROUTER_WINDOW * sizeof(*r->ring));
	r->head = r->n = 0;
	pthread_mutex_unlock(&r->lock);
}

/* The retry thread: a router that broke, or could not start, starts again while it should run. */
static void *
router_retry_main(void *arg)
{
	struct router *r = arg;
	int wait_s = 1, next_s = 1;

	pthread_mutex_lock(&r->ctl);
	while (!r->quit) {
		struct timespec ts;

		if (r->running && atomic_load(&r->restart_wanted)) {
			if (r->sub != NULL) {
				router_do_stop(r);
				atomic_fetch_add(&r->resets, 1);
			}
			if (router_do_start(r) == 0) {
				next_s = 1;
				continue;
			}
			atomic_store(&r->restart_wanted, true);
			wait_s = next_s;
			next_s = next_s < ROUTER_RETRY_MAX_S ? 2 * next_s : ROUTER_RETRY_MAX_S;
		} else {
			wait_s = next_s = 1;
		}
		/* A wake-up lost between the flag and this wait costs at most the timeout. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_s;
		pthread_cond_timedwait(&r->ctl_cond, &r->ctl, &ts);
	}
	pthread_mutex_unlock(&r->ctl);
	return NULL;
}

int
router_start(struct router *r, uint64_t epoch)
{
	int rc;

	pthread_mutex_lock(&r->ctl);
	if (r->sub != NULL)
		router_do_stop(r);
	r->epoch = epoch;
	r->running = true;
	if ((rc = router_do_start(r)) == -1) {
		log_warnx("router (epoch %" PRIu64 "): not started yet; it tries again by itself",
		    epoch);
		atomic_store(&r->restart_wanted, true);
	}
	pthread_cond_signal(&r->ctl_cond);
	pthread_mutex_unlock(&r->ctl);
	return rc;
}

void
router_stop(struct router *r)
{
	pthread_mutex_lock(&r->ctl);
	if (r->running || r->sub != NULL)
		log_info("router (epoch %" PRIu64 "): stopped", r->epoch);
	r->running = false;
	atomic_store(&r->restart_wanted, false);
	router_do_stop(r);
	pthread_mutex_unlock(&r->ctl);
}

void
router_fence(struct router *r, int64_t fence_ms)
{
	atomic_store(&r->fence_ms, fence_ms);
}

void
router_get_stats(struct router *r, struct router_stats *st)
{
	st->received = atomic_load(&r->received);
	st->redelivered = atomic_load(&r->redelivered);
	st->routed = atomic_load(&r->routed);
	st->unparsed = atomic_load(&r->unparsed);
	st->truncated = atomic_load(&r->truncated);
	st->acked = atomic_load(&r->acked);
	st->publish_errors = atomic_load(&r->publish_errors);
	st->fenced = atomic_load(&r->fenced);
	st->resets = atomic_load(&r->resets);
	st->in_flight = atomic_load(&r->in_flight);
	pthread_mutex_lock(&r->ctl);
	st->active = r->running;
	pthread_mutex_unlock(&r->ctl);
}

static char *
router_strdup(const char *s, bool *ok)
{
	char *d = strdup(s);
	if (d == NULL)
		*ok = false;
	return d;
}

struct router *
router_open(natsConnection *nc, struct jsetup *js, const struct config *c)
{
	char instance[128], buf[512];
	struct router *r;
	jsOptions jo;
	natsStatus s;
	bool ok = true;

	if (c->partitions <= 0) {
		log_errorx("router: [cluster] partitions is 0: there is nothing to route to");
		return NULL;
	}
	if (config_instance(c, instance, sizeof(instance)) == -1) {
		log_error("router: reading the host name for the instance name");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_error("allocating the router");
		return NULL;
	}
	r->nc = nc;
	r->js = js;
	r->partitions = (uint32_t)c->partitions;
	r->max_ack_pending = c->max_ack_pending;
	atomic_init(&r->fence_ms, INT64_MAX);
	r->stream = router_strdup(c->stream, &ok);
	r->partition_stream = router_strdup(c->partition_stream, &ok);
	r->part_subject = router_strdup(c->partition_subject, &ok);
	r->subject_status = router_strdup(c->subject_status, &ok);
	r->subject_request = router_strdup(c->subject_request, &ok);
	snprintf(buf, sizeof(buf), "%s_router_", c->consumer);
	r->prefix = router_strdup(buf, &ok);
	snprintf(buf, sizeof(buf), "%s.%s.router", c->deliver_subject, instance);
	r->deliver = router_strdup(buf, &ok);
	r->ring = calloc(ROUTER_WINDOW, sizeof(*r->ring));
	if (!ok || r->ring == NULL || (r->validator = validator_new()) == NULL) {
		log_error("allocating the router");
		goto fail;
	}
	if (pthread_mutex_init(&r->lock, NULL) != 0 || pthread_mutex_init(&r->ctl, NULL) != 0 ||
	    pthread_cond_init(&r->room, NULL) != 0 || pthread_cond_init(&r->ctl_cond, NULL) != 0) {
		/* Linux's never fail; a leak on a path never taken beats four flags. */
		log_errorx("router: initialising its locks failed");
		goto fail;
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.AckHandler = router_on_ack;
	jo.PublishAsync.AckHandlerClosure = r;
	jo.PublishAsync.MaxPending = ROUTER_CNATS_PENDING;
	if ((s = natsConnection_JetStream(&r->pub, nc, &jo)) != NATS_OK) {
		log_errorx("router: JetStream context: %s", natsStatus_GetText(s));
		goto fail;
	}
	if ((errno = pthread_create(&r->retry, NULL, router_retry_main, r)) != 0) {
		log_error("router: starting its retry thread");
		goto fail;
	}
	r->retry_started = true;
	return r;
fail:
	router_close(r);
	return NULL;
}

/*
 * No confirmation may run once r is gone.  A first wait lets the last
 * ones in; what is still unconfirmed is taken back from cnats (its
 * confirmations are then dropped), and a second wait covers one that
 * was already running.
 */
static void
router_pub_close(struct router *r)
{
	jsPubOptions po;
	natsMsgList left;

	if (r->pub == NULL)
		return;
	jsPubOptions_Init(&po);
	po.MaxWait = ROUTER_STOP_WAIT_MS;
	if (js_PublishAsyncComplete(r->pub, &po) != NATS_OK &&
	    js_PublishAsyncGetPendingList(&left, r->pub) == NATS_OK) {
		natsMsgList_Destroy(&left);
		js_PublishAsyncComplete(r->pub, &po);
	}
	jsCtx_Destroy(r->pub);
	r->pub = NULL;
}

void
router_close(struct router *r)
{
	if (r == NULL)
		return;
	if (r->retry_started) {
		pthread_mutex_lock(&r->ctl);
		r->quit = true;
		r->running = false;
		router_do_stop(r);
		pthread_cond_signal(&r->ctl_cond);
		pthread_mutex_unlock(&r->ctl);
		pthread_join(r->retry, NULL);
	}
	router_pub_close(r);
	validator_free(r->validator);
	free(r->ring);
	free(r->stream);
	free(r->partition_stream);
	free(r->prefix);
	free(r->deliver);
	free(r->part_subject);
	free(r->subject_status);
	free(r->subject_request);
	free(r);
}
