#include <stdlib.h>

#include <nats/nats.h>

#include "../common/log.h"
#include "../common/ring.h"
#include "resend.h"

/*
 * One message kept.  stamp: when the flush covering it returned; 0 while
 * none has (handed in the open batch, or published again after a
 * reconnect).  open: handed in the open batch, which a redo publishes
 * again by itself.
 */
struct resend_msg {
	natsMsg *m;
	int64_t stamp;
	bool open;
	size_t bytes;
};

struct resend {
	natsConnection *nc;
	natsStatistics *stats;
	struct ring q;              /* of struct resend_msg, oldest first */
	size_t bytes;
	uint64_t reconnects;        /* cnats's count when last looked at */
	int64_t ok_ms;              /* last seen connected with no reconnect since */
	bool due;                   /* reconnected: the window is to be published again */
	int64_t due_from_ms;        /* from which flush time on */
	uint64_t resent, dropped;
	struct log_limit drop_log;
};

struct resend *
resend_new(natsConnection *nc)
{
	struct resend *r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_error("allocating the digest resend queue");
		return NULL;
	}
	if (natsStatistics_Create(&r->stats) != NATS_OK) {
		log_errorx("creating a NATS statistics object for the digest resend queue");
		free(r);
		return NULL;
	}
	r->nc = nc;
	r->q.size = sizeof(struct resend_msg);
	if (natsConnection_GetStats(nc, r->stats) == NATS_OK)
		(void)natsStatistics_GetCounts(r->stats, NULL, NULL, NULL, NULL, &r->reconnects);
	return r;
}

static struct resend_msg *
resend_at(const struct resend *r, uint64_t pos)
{
	return ring_at(&r->q, pos);
}

static void
resend_pop(struct resend *r)
{
	struct resend_msg *e = resend_at(r, r->q.head);

	r->bytes -= e->bytes;
	natsMsg_Destroy(e->m);
	ring_shift(&r->q);
}

void
resend_free(struct resend *r)
{
	if (r == NULL)
		return;
	while (ring_count(&r->q) > 0)
		resend_pop(r);
	ring_free(&r->q);
	natsStatistics_Destroy(r->stats);
	free(r);
}

void
resend_hold(struct resend *r, natsMsg *m)
{
	size_t bytes = (size_t)natsMsg_GetDataLength(m);
	struct resend_msg *e = ring_push(&r->q);

	if (e == NULL) {
		/* It went out; only the copy for a reconnect is lost. */
		r->dropped++;
		log_limited(&r->drop_log, LL_WARN, "out of memory keeping a digest for a resend "
		    "after a reconnect (%llu not kept so far)", (unsigned long long)r->dropped);
		natsMsg_Destroy(m);
		return;
	}
	*e = (struct resend_msg){ .m = m, .stamp = 0, .open = true, .bytes = bytes };
	r->bytes += bytes;
	while (r->bytes > RESEND_MAX_BYTES && ring_count(&r->q) > 1) {
		r->dropped++;
		log_limited(&r->drop_log, LL_WARN, "more than %zu bytes of digests in %d ms: the "
		    "oldest are no longer kept for a resend after a reconnect (%llu so far)",
		    RESEND_MAX_BYTES, RESEND_WINDOW_MS, (unsigned long long)r->dropped);
		resend_pop(r);
	}
}

void
resend_drop_open(struct resend *r)
{
	/* The open batch's messages are the newest: all at the end. */
	while (ring_count(&r->q) > 0) {
		struct resend_msg *e = resend_at(r, r->q.tail - 1);

		if (!e->open)
			break;
		r->bytes -= e->bytes;
		natsMsg_Destroy(e->m);
		ring_unpush(&r->q);
	}
}

void
resend_flushed(struct resend *r, int64_t now_ms)
{
	int64_t oldest = (r->ok_ms < now_ms ? r->ok_ms : now_ms) - RESEND_WINDOW_MS;

	/* Still to go out again: keep what the due resend covers. */
	if (r->due && r->due_from_ms < oldest)
		oldest = r->due_from_ms;

	for (uint64_t pos = r->q.head; pos < r->q.tail; pos++) {
		struct resend_msg *e = resend_at(r, pos);

		if (e->stamp == 0) {
			e->stamp = now_ms;
			e->open = false;
		}
	}
	while (ring_count(&r->q) > 0 && resend_at(r, r->q.head)->stamp < oldest)
		resend_pop(r);
}

bool
resend_reconnected(struct resend *r, int64_t now_ms)
{
	uint64_t cur = r->reconnects;

	if (natsConnection_GetStats(r->nc, r->stats) == NATS_OK)
		(void)natsStatistics_GetCounts(r->stats, NULL, NULL, NULL, NULL, &cur);
	if (cur == r->reconnects) {
		if (natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED)
			r->ok_ms = now_ms;
		return false;
	}
	r->reconnects = cur;
	/* From the last healthy look on: what was flushed since may be in doubt too. */
	if (!r->due)
		r->due_from_ms = r->ok_ms - RESEND_WINDOW_MS;
	r->due = true;
	r->ok_ms = now_ms;
	return true;
}

size_t
resend_publish(struct resend *r, bool allowed)
{
	size_t msgs = 0, bytes = 0, failed = 0;

	if (!r->due)
		return 0;
	r->due = false;
	for (uint64_t pos = r->q.head; pos < r->q.tail; pos++) {
		struct resend_msg *e = resend_at(r, pos);

		/* Older than the window: passed on long before the server went. */
		if (e->open || (e->stamp != 0 && e->stamp < r->due_from_ms))
			continue;
		if (!allowed) {
			msgs++;
			continue;
		}
		if (natsConnection_PublishMsg(r->nc, e->m) != NATS_OK) {
			failed++;
			continue;
		}
		e->stamp = 0;
		msgs++;
		bytes += e->bytes;
	}
	if (!allowed) {
		if (msgs > 0)
			log_warnx("NATS reconnected, but this instance's leases may have passed to "
			    "another (its fence is past): the %zu digest messages flushed just before "
			    "are not published again", msgs);
		return 0;
	}
	r->resent += msgs;
	if (msgs > 0 || failed > 0)
		log_warnx("NATS reconnected: published again the %zu digest messages (%zu bytes) whose "
		    "flush returned up to %d ms before the old connection was last seen healthy, in case "
		    "its server did not pass them on%s", msgs, bytes, RESEND_WINDOW_MS,
		    failed > 0 ? "; some could not be handed to NATS again" : "");
	return msgs;
}

uint64_t
resend_count(const struct resend *r)
{
	return r->resent;
}
