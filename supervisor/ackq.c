#include <stdlib.h>

#include "../common/ring.h"
#include "ackq.h"

struct ackq_entry {
	void *ref;
	uint64_t stream_seq;
	int done;
};

struct ackq {
	struct ring ring;          /* of struct ackq_entry; a handle is its entry's position */
	void (*release)(void *ref);
};

struct ackq *
ackq_new(void (*release)(void *ref))
{
	struct ackq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->ring.size = sizeof(struct ackq_entry);
	q->release = release;
	return q;
}

void
ackq_clear(struct ackq *q)
{
	for (; ring_count(&q->ring) > 0; ring_shift(&q->ring)) {
		struct ackq_entry *e = ring_at(&q->ring, q->ring.head);
		if (e->ref != NULL && q->release != NULL)
			q->release(e->ref);
	}
}

void
ackq_free(struct ackq *q)
{
	if (q == NULL)
		return;
	ackq_clear(q);
	ring_free(&q->ring);
	free(q);
}

uint64_t
ackq_push(struct ackq *q, void *ref, uint64_t stream_seq, int done)
{
	uint64_t h = q->ring.tail;
	struct ackq_entry *e;

	if ((e = ring_push(&q->ring)) == NULL)
		return UINT64_MAX;
	*e = (struct ackq_entry){ ref, stream_seq, done };
	return h;
}

void
ackq_unpush(struct ackq *q)
{
	ring_unpush(&q->ring);
}

void
ackq_done(struct ackq *q, uint64_t handle)
{
	if (handle >= q->ring.head && handle < q->ring.tail)
		((struct ackq_entry *)ring_at(&q->ring, handle))->done = 1;
}

void *
ackq_advance(struct ackq *q)
{
	void *best = NULL;
	uint64_t best_seq = 0;

	while (ring_count(&q->ring) > 0) {
		struct ackq_entry *e = ring_at(&q->ring, q->ring.head);
		if (!e->done)
			break;
		if (e->ref != NULL) {
			if (best == NULL || e->stream_seq > best_seq) {
				if (best != NULL && q->release != NULL)
					q->release(best);
				best = e->ref;
				best_seq = e->stream_seq;
			} else if (q->release != NULL) {
				q->release(e->ref);
			}
		}
		ring_shift(&q->ring);
	}
	return best;
}

size_t
ackq_count(const struct ackq *q)
{
	return ring_count(&q->ring);
}
