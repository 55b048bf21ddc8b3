#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "quote.h"
#include "deadletter.h"

#define DL_REASON "Alarm-Reject-Reason"
#define DL_SUBJECT "Alarm-Original-Subject"
#define DL_SIZE "Alarm-Original-Size"

/*
 * Copies the stream has not confirmed yet are held by cnats; past these
 * bounds a new copy is given up at once instead of waiting for room.  A
 * healthy stream confirms within milliseconds, so they are reached only
 * when it is slow or gone.
 */
#define DL_PENDING_MAX_MSGS 4096
#define DL_PENDING_MAX_BYTES (16 << 20)
/* A copy the stream has not confirmed by then counts as not kept. */
#define DL_CONFIRM_WAIT_MS 5000
/* What deadletter_free waits for the last confirmations. */
#define DL_CLOSE_WAIT_MS 2000

struct deadletter {
	natsConnection *nc;           /* borrowed */
	jsCtx *js;                    /* with a stream: async publishes, confirmed in dl_on_ack */
	int64_t stream_max_msg;

	pthread_mutex_t lock;
	char *subject;                /* guarded by lock: set by reload */
	struct log_limit log;         /* guarded by lock: the intake and the ack threads log */

	_Atomic uint64_t pending_msgs, pending_bytes;
	_Atomic uint64_t kept, truncated, failed;
};

size_t
deadletter_fit(size_t len, size_t hdr, size_t size_hdr, int64_t limit)
{
	if (limit < 0 || len + hdr <= (uint64_t)limit)
		return len;
	if (hdr + size_hdr >= (uint64_t)limit)
		return 0;
	return (size_t)limit - hdr - size_hdr;
}

/* As cnats encodes them: "NATS/1.0\r\n", "Key: Value\r\n" each, "\r\n". */
static size_t
dl_header_line_len(const char *key, const char *value)
{
	return strlen(key) + 2 + strlen(value) + 2;
}

/* One failure: counted always, logged at most 10 times a second. */
static void
dl_failed(struct deadletter *dl, const char *orig_subject, int len, const char *fmt, const char *why,
    int code)
{
	uint64_t n = atomic_fetch_add(&dl->failed, 1) + 1;
	char qs[256], qwhy[256];

	quote_bytes(qs, sizeof(qs), orig_subject, strlen(orig_subject));
	quote_bytes(qwhy, sizeof(qwhy), why, strlen(why));
	pthread_mutex_lock(&dl->lock);
	log_limited(&dl->log, LL_WARN, "dead-letter copy of a message on \"%s\" (%d bytes) not kept: %s%s "
	    "(code %d); the message is acked anyway (%llu copies not kept so far)",
	    qs, len, fmt, qwhy, code, (unsigned long long)n);
	pthread_mutex_unlock(&dl->lock);
}

/* On cnats' thread for the stream's replies (and its timer, for copies never confirmed). */
static void
dl_on_ack(jsCtx *js, natsMsg *copy, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct deadletter *dl = closure;
	const char *subject = NULL, *size = NULL;
	int len = natsMsg_GetDataLength(copy);

	(void)js;
	(void)pa;
	atomic_fetch_sub(&dl->pending_msgs, 1);
	atomic_fetch_sub(&dl->pending_bytes, (uint64_t)len);
	if (pae == NULL) {
		atomic_fetch_add(&dl->kept, 1);
	} else {
		if (natsMsgHeader_Get(copy, DL_SUBJECT, &subject) != NATS_OK)
			subject = "?";
		/* The original's size, as the other failure lines give it. */
		if (natsMsgHeader_Get(copy, DL_SIZE, &size) == NATS_OK)
			len = atoi(size);
		dl_failed(dl, subject, len, "the dead-letter stream answered ",
		    pae->ErrText != NULL ? pae->ErrText : natsStatus_GetText(pae->Err), (int)pae->ErrCode);
	}
	natsMsg_Destroy(copy);
}

/* Room among the unconfirmed copies for len more bytes; reserved if so. */
static bool
dl_reserve(struct deadletter *dl, size_t len)
{
	uint64_t msgs = atomic_fetch_add(&dl->pending_msgs, 1);
	uint64_t bytes = atomic_fetch_add(&dl->pending_bytes, len);

	/* One copy always goes, however big: max_payload may be set above the byte bound. */
	if (msgs >= DL_PENDING_MAX_MSGS || (bytes > 0 && bytes + len > DL_PENDING_MAX_BYTES)) {
		atomic_fetch_sub(&dl->pending_msgs, 1);
		atomic_fetch_sub(&dl->pending_bytes, len);
		return false;
	}
	return true;
}

/* Hand the copy over; its fate is counted here or in dl_on_ack. */
static void
dl_send(struct deadletter *dl, natsMsg **copy, const char *orig_subject, int orig_len, size_t len)
{
	jsPubOptions po;
	natsStatus s;

	if (dl->js == NULL) {
		if ((s = natsConnection_PublishMsg(dl->nc, *copy)) == NATS_OK)
			atomic_fetch_add(&dl->kept, 1);
		else
			dl_failed(dl, orig_subject, orig_len, "", natsStatus_GetText(s), (int)s);
		return;
	}
	if (!dl_reserve(dl, len)) {
		dl_failed(dl, orig_subject, orig_len, "", "too many copies not yet confirmed by the "
		    "dead-letter stream", 0);
		return;
	}
	jsPubOptions_Init(&po);
	po.MaxWait = DL_CONFIRM_WAIT_MS;
	/* On success cnats owns the copy and clears *copy. */
	if ((s = js_PublishMsgAsync(dl->js, copy, &po)) != NATS_OK) {
		atomic_fetch_sub(&dl->pending_msgs, 1);
		atomic_fetch_sub(&dl->pending_bytes, len);
		dl_failed(dl, orig_subject, orig_len, "", nats_GetLastError(NULL) ? nats_GetLastError(NULL) :
		    natsStatus_GetText(s), (int)s);
	}
}

void
deadletter_put(struct deadletter *dl, natsMsg *m, const char *reason)
{
	const char *orig_subject = natsMsg_GetSubject(m);
	int orig_len = natsMsg_GetDataLength(m);
	char subject[256], size[24];
	int64_t limit = natsConnection_GetMaxPayload(dl->nc);
	natsMsg *copy = NULL;
	size_t keep;
	natsStatus s;

	pthread_mutex_lock(&dl->lock);
	snprintf(subject, sizeof(subject), "%s", dl->subject);
	pthread_mutex_unlock(&dl->lock);
	if (limit <= 0)
		limit = -1;
	if (dl->stream_max_msg > 0 && (limit < 0 || dl->stream_max_msg < limit))
		limit = dl->stream_max_msg;
	snprintf(size, sizeof(size), "%d", orig_len);
	keep = deadletter_fit((size_t)orig_len, strlen("NATS/1.0\r\n") + strlen("\r\n") +
	    dl_header_line_len(DL_REASON, reason) + dl_header_line_len(DL_SUBJECT, orig_subject),
	    dl_header_line_len(DL_SIZE, size), limit);
	s = natsMsg_Create(&copy, subject, NULL, natsMsg_GetData(m), (int)keep);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(copy, DL_REASON, reason);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(copy, DL_SUBJECT, orig_subject);
	if (s == NATS_OK && keep < (size_t)orig_len) {
		s = natsMsgHeader_Set(copy, DL_SIZE, size);
		atomic_fetch_add(&dl->truncated, 1);
	}
	if (s != NATS_OK)
		dl_failed(dl, orig_subject, orig_len, "building the copy: ", natsStatus_GetText(s), (int)s);
	else
		dl_send(dl, &copy, orig_subject, orig_len, keep);
	natsMsg_Destroy(copy);
}

int
deadletter_set_subject(struct deadletter *dl, const char *subject)
{
	char *s = strdup(subject);

	if (s == NULL) {
		log_error("reload: allocating dead-letter subject %s", subject);
		return -1;
	}
	pthread_mutex_lock(&dl->lock);
	free(dl->subject);
	dl->subject = s;
	pthread_mutex_unlock(&dl->lock);
	return 0;
}

void
deadletter_get_stats(struct deadletter *dl, struct deadletter_stats *st)
{
	st->kept = atomic_load(&dl->kept);
	st->truncated = atomic_load(&dl->truncated);
	st->failed = atomic_load(&dl->failed);
}

struct deadletter *
deadletter_new(natsConnection *nc, const char *subject, bool with_stream, int64_t stream_max_msg)
{
	struct deadletter *dl;
	jsOptions jo;
	natsStatus s;

	if ((dl = calloc(1, sizeof(*dl))) == NULL || (dl->subject = strdup(subject)) == NULL) {
		log_error("allocating the dead-letter publisher");
		free(dl);
		return NULL;
	}
	dl->nc = nc;
	dl->stream_max_msg = stream_max_msg;
	if (pthread_mutex_init(&dl->lock, NULL) != 0) {
		log_errorx("pthread_mutex_init for the dead-letter publisher failed");
		free(dl->subject);
		free(dl);
		return NULL;
	}
	if (!with_stream)
		return dl;
	jsOptions_Init(&jo);
	jo.PublishAsync.AckHandler = dl_on_ack;
	jo.PublishAsync.AckHandlerClosure = dl;
	if ((s = natsConnection_JetStream(&dl->js, nc, &jo)) != NATS_OK) {
		log_errorx("JetStream context for dead letters: %s", natsStatus_GetText(s));
		deadletter_free(dl);
		return NULL;
	}
	return dl;
}

/*
 * No confirmation may run once dl is gone.  A first wait lets the last
 * ones in; what is still unconfirmed is taken back from cnats (its
 * confirmations are then dropped, not delivered), and a second wait
 * covers a confirmation that was already running.
 */
void
deadletter_free(struct deadletter *dl)
{
	jsPubOptions po;
	natsMsgList left;

	if (dl == NULL)
		return;
	if (dl->js != NULL) {
		jsPubOptions_Init(&po);
		po.MaxWait = DL_CLOSE_WAIT_MS;
		if (js_PublishAsyncComplete(dl->js, &po) != NATS_OK &&
		    js_PublishAsyncGetPendingList(&left, dl->js) == NATS_OK) {
			atomic_fetch_add(&dl->failed, (uint64_t)left.Count);
			log_warnx("stopping with %d dead-letter copies not confirmed by the stream; "
			    "they may not be kept", left.Count);
			natsMsgList_Destroy(&left);
			po.MaxWait = 1000;
			js_PublishAsyncComplete(dl->js, &po);
		}
		jsCtx_Destroy(dl->js);
	}
	pthread_mutex_destroy(&dl->lock);
	free(dl->subject);
	free(dl);
}
