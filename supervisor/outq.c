#include <stdlib.h>

#include "../common/ring.h"
#include "outq.h"

struct outq_entry {
	uint64_t id;
	size_t len;
	void *ref;
	uint64_t pos;              /* where its frame starts, counted like outq.base */
	int64_t at_ms;             /* when it was queued */
};

struct outq {
	struct buf bytes;          /* frames of all entries not yet retired, in order */
	size_t sealed;             /* bytes (after bytes.off) that belong to entries */
	size_t sent;               /* bytes (after bytes.off) already written */
	uint64_t base;             /* bytes retired since the start: the position of bytes.off */
	struct ring entries;       /* of struct outq_entry, oldest first */
	size_t max_bytes;
};

struct outq *
outq_new(size_t max_bytes)
{
	struct outq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->entries.size = sizeof(struct outq_entry);
	q->max_bytes = max_bytes;
	return q;
}

void
outq_free(struct outq *q, void (*drop)(void *ref))
{
	if (q == NULL)
		return;
	for (uint64_t p = q->entries.head; p < q->entries.tail; p++) {
		struct outq_entry *e = ring_at(&q->entries, p);
		if (drop != NULL && e->ref != NULL)
			drop(e->ref);
	}
	ring_free(&q->entries);
	buf_free(&q->bytes);
	free(q);
}

bool
outq_has_room(const struct outq *q, size_t len)
{
	return ring_count(&q->entries) == 0 || buf_unread(&q->bytes) + len <= q->max_bytes;
}

struct buf *
outq_tail(struct outq *q)
{
	return &q->bytes;
}

int
outq_seal(struct outq *q, uint64_t id, void *ref, int64_t at_ms)
{
	size_t len = buf_unread(&q->bytes) - q->sealed;
	struct outq_entry *e;

	if ((e = ring_push(&q->entries)) == NULL) {
		/* Forget the unsealed bytes so the queue stays consistent. */
		q->bytes.len -= len;
		return -1;
	}
	*e = (struct outq_entry){ id, len, ref, q->base + q->sealed, at_ms };
	q->sealed += len;
	return 0;
}

int
outq_send(struct outq *q, struct chan *c)
{
	ssize_t n;

	if (q->sent == q->sealed)
		return 0;
	if ((n = chan_send(c, q->bytes.data + q->bytes.off + q->sent, q->sealed - q->sent)) == -1)
		return -1;
	q->sent += (size_t)n;
	return 0;
}

size_t
outq_unsent(const struct outq *q)
{
	return q->sealed - q->sent;
}

size_t
outq_partial(const struct outq *q)
{
	uint64_t at = q->base + q->sent, lo = q->entries.head, hi = q->entries.tail;
	const struct outq_entry *e;

	if (q->sent == 0 || q->sent == q->sealed)
		return 0;
	/* Frames start at increasing positions: bisect for the last one starting at or before. */
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (((const struct outq_entry *)ring_at(&q->entries, mid))->pos <= at)
			lo = mid;
		else
			hi = mid;
	}
	e = ring_at(&q->entries, lo);
	return e->pos == at ? 0 : (size_t)(e->pos + e->len - at);
}

int
outq_send_partial(struct outq *q, struct chan *c)
{
	size_t left = outq_partial(q);
	ssize_t n;

	if (left == 0)
		return 0;
	if ((n = chan_send(c, q->bytes.data + q->bytes.off + q->sent, left)) == -1)
		return -1;
	q->sent += (size_t)n;
	return 0;
}

size_t
outq_retire(struct outq *q, uint64_t upto, void (*done)(void *ref, void *arg), void *arg)
{
	size_t n = 0, bytes = 0;

	while (ring_count(&q->entries) > 0) {
		struct outq_entry *e = ring_at(&q->entries, q->entries.head);
		/* Only written frames can be done; anything else is a confused worker. */
		if (e->id > upto || bytes + e->len > q->sent)
			break;
		if (done != NULL)
			done(e->ref, arg);
		bytes += e->len;
		ring_shift(&q->entries);
		n++;
	}
	buf_consume(&q->bytes, bytes);
	q->base += bytes;
	q->sealed -= bytes;
	q->sent -= bytes;
	return n;
}

void
outq_rewind(struct outq *q)
{
	q->sent = 0;
}

size_t
outq_count(const struct outq *q)
{
	return ring_count(&q->entries);
}

void
outq_set_max(struct outq *q, size_t max_bytes)
{
	q->max_bytes = max_bytes;
}

int64_t
outq_oldest_ms(const struct outq *q)
{
	if (ring_count(&q->entries) == 0)
		return -1;
	return ((const struct outq_entry *)ring_at(&q->entries, q->entries.head))->at_ms;
}

/* Position of the first entry with id > after (entries.tail if none): ids increase, so bisect. */
static uint64_t
outq_find(const struct outq *q, uint64_t after)
{
	uint64_t lo = q->entries.head, hi = q->entries.tail;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (((const struct outq_entry *)ring_at(&q->entries, mid))->id <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int64_t
outq_first_ref_ms(const struct outq *q, uint64_t after)
{
	for (uint64_t p = outq_find(q, after); p < q->entries.tail; p++) {
		const struct outq_entry *e = ring_at(&q->entries, p);
		if (e->ref != NULL)
			return e->at_ms;
	}
	return -1;
}

int
outq_walk(struct outq *q, uint64_t after, uint64_t upto,
    int (*fn)(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg), void *arg)
{
	for (uint64_t p = outq_find(q, after); p < q->entries.tail; p++) {
		struct outq_entry *e = ring_at(&q->entries, p);
		int rc;

		if (e->id > upto)
			break;
		if ((rc = fn(e->id, q->bytes.data + q->bytes.off + (e->pos - q->base), e->len, &e->ref,
		    arg)) != 0)
			return rc;
	}
	return 0;
}
