#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <nats/nats.h>
#include <uuid/uuid.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/quote.h"
#include "digest.h"
#include "parts.h"
#include "publish.h"
#include "resend.h"

/* The commit waits this long for the server to have the batch's digests. */
#define PUBLISH_FLUSH_TIMEOUT_MS 5000

struct publish {
	natsConnection *nc;         /* borrowed */
	const struct config *cfg;   /* borrowed; subject_digest follows reloads */
	char stream[128];
	struct digest digest;       /* the one being published */
	struct parts *parts;
	struct resend *resend;      /* what went out lately, for a reconnect */
	bool published;             /* a digest went out in the open transaction */
	/*
	 * NATS reconnected after the open transaction handed a digest over:
	 * it may have died in the old connection's socket, and a flush on the
	 * new one would not tell, so the batch must be redone.
	 */
	bool in_doubt;
	/*
	 * Digest requests of the open batch whose digest can never be
	 * published (publish_failed): the batch is applied again
	 * without taking them, so their alarms stay undelivered.  From
	 * refuse_from on (0: unset) every request of the batch is skipped: the
	 * server refuses the subject itself.  Digests of requests up to
	 * handed_upto were handed to NATS before the batch was redone for a
	 * skip; the commit's flush covers them, so they are not sent twice.
	 * All three last until the batch commits.
	 */
	uint64_t *skip;
	size_t nskip, cap_skip;
	uint64_t refuse_from, handed_upto;
	/* Transient failures in a row: backoff and a log line now and then. */
	struct publish_retry {
		uint64_t attempts;
		int delay_ms;
		int64_t since_ms, logged_ms, next_ms;   /* monotonic */
	} retry;
	struct log_limit undeliverable_log;
	uint64_t digests, digest_parts, digest_bytes, undeliverable;
	struct histo latency;       /* request received by the supervisor -> digest published */
};

struct publish *
publish_new(natsConnection *nc, const struct config *cfg)
{
	struct publish *p;

	if ((p = calloc(1, sizeof(*p))) == NULL || (p->parts = parts_new()) == NULL) {
		log_error("allocating the digest splitter");
		free(p);
		return NULL;
	}
	if ((p->resend = resend_new(nc)) == NULL) {
		parts_free(p->parts);
		free(p);
		return NULL;
	}
	p->nc = nc;
	p->cfg = cfg;
	snprintf(p->stream, sizeof(p->stream), "%s", cfg->stream);
	return p;
}

void
publish_free(struct publish *p)
{
	if (p == NULL)
		return;
	digest_free(&p->digest);
	parts_free(p->parts);
	resend_free(p->resend);
	free(p->skip);
	free(p);
}

/* A transient failure: rate-limited, since it repeats until NATS is back. */
static void __attribute__((format(printf, 3, 4)))
publish_trouble(struct publish *p, size_t frames, const char *fmt, ...)
{
	int64_t now = clock_mono_ms();
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (p->retry.attempts++ == 0)
		p->retry.since_ms = now;
	else if (now - p->retry.logged_ms < PUBLISH_RETRY_LOG_MS)
		return;
	p->retry.logged_ms = now;
	log_warnx("%s; will redo the batch of %zu frames (attempt %llu, failing for %.1f s; "
	    "retrying every %d ms at most)", what, frames, (unsigned long long)p->retry.attempts,
	    (now - p->retry.since_ms) / 1000.0, PUBLISH_RETRY_MAX_MS);
}

/* A digest that cannot go out: said loudly (but rate-limited) and counted. */
static void __attribute__((format(printf, 5, 6)))
publish_undeliverable(struct publish *p, const char *user, size_t user_len, const char *msgid,
    const char *fmt, ...)
{
	char why[512], quser[QUOTE_CAP(64)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	p->undeliverable++;
	log_limited(&p->undeliverable_log, LL_ERROR, "digest %s of user \"%s\" (%zu alarms) cannot be "
	    "published to %s: %s; skipped: its alarms stay undelivered and go out with the user's "
	    "next digest (%llu digests skipped so far)", msgid,
	    quote_bytes(quser, sizeof(quser), user, user_len), p->digest.n, p->cfg->subject_digest, why,
	    (unsigned long long)p->undeliverable);
}

/* Sort a failed publish into transient and permanent (see enum publish_result). */
static enum publish_result
publish_failed(struct publish *p, size_t frames, natsStatus s, int64_t max_payload,
    const char *user, size_t user_len, const char *msgid, const struct parts_msg *pm)
{
	const char *part = pm->part != NULL ? pm->part : "1/1";

	switch (s) {
	case NATS_MAX_PAYLOAD:
		/* Cut for a limit that changed since: a reconnect to another server. */
		if (natsConnection_GetMaxPayload(p->nc) != max_payload) {
			publish_trouble(p, frames, "publishing digest %s: the server's max_payload changed from %lld "
			    "to %lld bytes", pm->msgid, (long long)max_payload,
			    (long long)natsConnection_GetMaxPayload(p->nc));
			return PUB_RETRY;
		}
		publish_undeliverable(p, user, user_len, msgid, "part %s of %zu bytes is over the server's "
		    "max_payload of %lld bytes", part, pm->len, (long long)max_payload);
		return PUB_SKIP;
	case NATS_NOT_PERMITTED:
	case NATS_INVALID_SUBJECT:
	case NATS_NO_SERVER_SUPPORT:
		publish_undeliverable(p, user, user_len, msgid, "%s (part %s)%s", natsStatus_GetText(s), part,
		    s == NATS_NO_SERVER_SUPPORT ? ": the server does not support headers (NATS 2.2 or later does)" :
		    s == NATS_NOT_PERMITTED ? ": grant this connection publish permission on the subject" : "");
		return PUB_REFUSED;
	case NATS_CONNECTION_CLOSED:
		/* cnats never reopens a closed connection (it reconnects forever otherwise). */
		log_errorx("publishing digest %s: the NATS connection is closed for good (%s); exiting so "
		    "the supervisor starts this worker afresh and replays its unfinished messages",
		    pm->msgid, nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		exit(1);
	default:
		publish_trouble(p, frames, "publishing digest %s (part %s) to %s: %s", pm->msgid, part,
		    p->cfg->subject_digest, natsStatus_GetText(s));
		return PUB_RETRY;
	}
}

/*
 * Publish the collected digest, in parts when it would exceed the
 * server's max_payload.  The limit is read from the connection each time:
 * a reconnect may land on a server with another one.
 */
static enum publish_result
publish_parts(struct publish *p, size_t frames, uint64_t stream_seq, int64_t received_us,
    const char *user, size_t user_len)
{
	char msgid[PARTS_MSGID_MAX + 1];
	int64_t max_payload = natsConnection_GetMaxPayload(p->nc);
	size_t n;

	/* A JetStream stream on the digest subject drops a replay's repeat by this id. */
	if (stream_seq > 0) {
		snprintf(msgid, sizeof(msgid), "%s-%llu", p->stream, (unsigned long long)stream_seq);
	} else {
		uuid_t u;
		uuid_generate(u);
		uuid_unparse_lower(u, msgid);
	}
	if (max_payload <= 0) {
		publish_trouble(p, frames, "publishing digest %s: not connected to NATS yet (the server's "
		    "max_payload is unknown)", msgid);
		return PUB_RETRY;
	}
	if (parts_plan(p->parts, &p->digest, user, user_len, msgid, max_payload) == -1) {
		if (errno == EMSGSIZE) {
			publish_undeliverable(p, user, user_len, msgid, "one of its alarms alone does not fit "
			    "in the server's max_payload of %lld bytes; raise it to %lld or more",
			    (long long)max_payload, (long long)parts_min_payload(p->parts));
			return PUB_SKIP;
		}
		log_error("building digest %s of %zu alarms", msgid, p->digest.n);
		publish_trouble(p, frames, "building digest %s", msgid);
		return PUB_RETRY;
	}
	n = parts_count(p->parts);
	for (size_t k = 0; k < n; k++) {
		struct parts_msg pm;
		natsMsg *m = NULL;
		natsStatus s;

		if (parts_get(p->parts, k, &pm) == -1) {
			log_error("building part %zu/%zu of digest %s", k + 1, n, msgid);
			publish_trouble(p, frames, "building digest %s", msgid);
			return PUB_RETRY;
		}
		s = natsMsg_Create(&m, p->cfg->subject_digest, NULL, (const char *)pm.data, (int)pm.len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, PARTS_HDR_MSGID, pm.msgid);
		if (s == NATS_OK && pm.part != NULL)
			s = natsMsgHeader_Set(m, PARTS_HDR_PART, pm.part);
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(p->nc, m);
		if (s != NATS_OK) {
			natsMsg_Destroy(m);
			return publish_failed(p, frames, s, max_payload, user, user_len, msgid, &pm);
		}
		resend_hold(p->resend, m);
		/* Even if a later part fails, this one went out: the commit must flush it. */
		p->published = true;
		p->digest_bytes += pm.len;
	}
	if (n > 1)
		log_debug("digest %s of %zu alarms published in %zu parts (max_payload %lld)", msgid,
		    p->digest.n, n, (long long)max_payload);
	p->digests++;
	p->digest_parts += n;
	/* From the supervisor's receipt of the request (0: an older build's frame, unknown). */
	if (received_us > 0)
		histo_observe(&p->latency, clock_wall_us() - received_us);
	return PUB_OK;
}

static bool
publish_skipped(const struct publish *p, uint64_t id)
{
	for (size_t i = 0; i < p->nskip; i++)
		if (p->skip[i] == id)
			return true;
	return false;
}

/* Remember a request to skip when the batch is applied again.  -1 on ENOMEM. */
static int
publish_note_skip(struct publish *p, uint64_t id)
{
	if (p->nskip == p->cap_skip) {
		size_t ncap = p->cap_skip ? p->cap_skip * 2 : 16;
		uint64_t *n = realloc(p->skip, ncap * sizeof(*n));

		if (n == NULL)
			return -1;
		p->skip = n;
		p->cap_skip = ncap;
	}
	p->skip[p->nskip++] = id;
	return 0;
}

/*
 * A digest request: collect, publish, and mark delivered (in the open
 * transaction).  A request skipped after a permanent failure is not taken
 * at all, so its alarms stay undelivered and it is not recorded as answered.
 */
static enum publish_result
publish_request(struct publish *p, struct store *s, uint64_t id, uint64_t seq,
    int64_t received_us, const char *user, size_t ulen, size_t frames)
{
	char quser[QUOTE_CAP(64)];
	bool replayed;

	if (publish_skipped(p, id))
		return PUB_OK;
	if (p->refuse_from != 0 && id >= p->refuse_from) {
		if (publish_note_skip(p, id) == -1) {
			log_error("noting digest request %llu as skipped", (unsigned long long)id);
			return PUB_RETRY;
		}
		p->undeliverable++;
		log_limited(&p->undeliverable_log, LL_ERROR, "digest request of user \"%s\" skipped: the "
		    "server refused an earlier digest of this batch on %s; its alarms stay undelivered",
		    quote_bytes(quser, sizeof(quser), user, ulen), p->cfg->subject_digest);
		return PUB_OK;
	}
	if (digest_take(s, user, ulen, seq, &p->digest, &replayed) == -1)
		return PUB_STORE;
	if (replayed)
		log_debug("digest request at stream sequence %llu was answered before; not again",
		    (unsigned long long)seq);
	if (p->digest.n == 0)
		return PUB_OK;
	if (id <= p->handed_upto) {
		/* Handed to NATS before the batch was redone: the flush at commit covers it. */
		p->published = true;
		return PUB_OK;
	}
	return publish_parts(p, frames, seq, received_us, user, ulen);
}


enum publish_result
publish_digest(struct publish *p, struct store *s, uint64_t id, uint64_t seq, int64_t received_us,
    const char *user, size_t user_len, size_t frames)
{
	enum publish_result r = publish_request(p, s, id, seq, received_us, user, user_len, frames);

	/*
	 * Every digest of the batch up to here is handed over (or had
	 * nothing to send).  Only ever raised: applied again after a skip,
	 * the frames before the failed one must not lower it.
	 */
	if (r == PUB_OK && id > p->handed_upto)
		p->handed_upto = id;
	return r;
}

enum publish_result
publish_replay(struct publish *p, struct store *s, uint64_t seq, const char *user, size_t user_len)
{
	bool replayed;

	/*
	 * Neither a skip nor a refusal concerns it: nothing goes out.  The
	 * earlier owner published this digest, so its alarms count as
	 * delivered here too, or the next request would repeat them.
	 */
	if (digest_take(s, user, user_len, seq, &p->digest, &replayed) == -1)
		return PUB_STORE;
	log_debug("digest request at stream sequence %llu replayed: %zu alarms marked delivered%s",
	    (unsigned long long)seq, p->digest.n, replayed ? " (answered here before)" : "");
	return PUB_OK;
}

int
publish_skip(struct publish *p, uint64_t id, bool refused)
{
	if (refused)
		p->refuse_from = id;
	return publish_note_skip(p, id);
}

void
publish_begin(struct publish *p)
{
	p->published = false;
	p->in_doubt = false;
}

void
publish_rewind(struct publish *p, bool keep_handed)
{
	p->published = false;
	if (!keep_handed) {
		p->handed_upto = 0;
		p->in_doubt = false;
		resend_drop_open(p->resend);
	}
}

/* After a reconnect the open batch's digests are in doubt. */
static void
publish_reconnected(struct publish *p)
{
	if (resend_reconnected(p->resend, clock_mono_ms()) && (p->published || p->handed_upto > 0))
		p->in_doubt = true;
}

bool
publish_pending(const struct publish *p)
{
	return p->published;
}

int
publish_flush(struct publish *p, size_t frames)
{
	natsStatus s;

	publish_reconnected(p);
	if (p->in_doubt) {
		publish_trouble(p, frames, "NATS reconnected while this batch's digests were on their way");
		return -1;
	}
	if (!p->published)
		return 0;
	if ((s = natsConnection_FlushTimeout(p->nc, PUBLISH_FLUSH_TIMEOUT_MS)) != NATS_OK) {
		publish_trouble(p, frames, "flushing digests to NATS: %s", natsStatus_GetText(s));
		return -1;
	}
	resend_flushed(p->resend, clock_mono_ms());
	return 0;
}

void
publish_tick(struct publish *p, int64_t fence_ms)
{
	int64_t now = clock_mono_ms();

	publish_reconnected(p);
	if (resend_publish(p->resend, fence_ms == 0 || now <= fence_ms) == 0 || p->in_doubt)
		return;
	/* No digest of a batch pending: flush them here, or nothing would. */
	if (natsConnection_FlushTimeout(p->nc, PUBLISH_FLUSH_TIMEOUT_MS) == NATS_OK)
		resend_flushed(p->resend, clock_mono_ms());
}

void
publish_commit(struct publish *p)
{
	p->nskip = 0;
	p->refuse_from = 0;
	p->handed_upto = 0;
	if (p->retry.attempts > 0)
		log_info("digests are published again, after %llu failed attempts over %.1f s",
		    (unsigned long long)p->retry.attempts,
		    (clock_mono_ms() - p->retry.since_ms) / 1000.0);
	p->retry = (struct publish_retry){ 0, 0, 0, 0, 0 };
}

/* 100 ms (or the floor) doubling to 5 s. */
void
publish_backoff(struct publish *p, int floor_ms)
{
	int d = p->retry.delay_ms, min = floor_ms > PUBLISH_RETRY_MIN_MS ?
	    floor_ms : PUBLISH_RETRY_MIN_MS;

	d = d < min ? min : d >= PUBLISH_RETRY_MAX_MS / 2 ? PUBLISH_RETRY_MAX_MS : d * 2;
	p->retry.delay_ms = d;
	p->retry.next_ms = clock_mono_ms() + d;
}

void
publish_retry_now(struct publish *p)
{
	p->retry.next_ms = 0;
}

int64_t
publish_retry_at(const struct publish *p)
{
	return p->retry.next_ms;
}

bool
publish_failing(const struct publish *p)
{
	return p->retry.attempts > 0;
}

void
publish_get_counts(const struct publish *p, struct publish_counts *c)
{
	c->digests = p->digests;
	c->parts = p->digest_parts;
	c->bytes = p->digest_bytes;
	c->undeliverable = p->undeliverable;
	c->resent = resend_count(p->resend);
	c->latency = p->latency;
}
