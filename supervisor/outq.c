#include <stdlib.h>

#include "../common/ring.h"
#include "outq.h"

struct outq_entry {
	uint64_t id;
	size_t len;
	void *ref;
};

struct outq {
	struct buf bytes;          /* frames of all entries not yet retired, in order */
	size_t sealed;             /* bytes (after bytes.off) that belong to entries */
	size_t sent;               /* bytes (after bytes.off) already written */
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
outq_seal(struct outq *q, uint64_t id, void *ref)
{
	size_t len = buf_unread(&q->bytes) - q->sealed;
	struct outq_entry *e;

	if ((e = ring_push(&q->entries)) == NULL) {
		/* Forget the unsealed bytes so the queue stays consistent. */
		q->bytes.len -= len;
		return -1;
	}
	*e = (struct outq_entry){ id, len, ref };
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
