#include <stdlib.h>

#include "../common/ring.h"
#include "ackq.h"

struct ackq_entry {
	void *ref;
	uint64_t stream_seq;
	uint16_t lane;
	uint8_t done;
};

struct ackq {
	struct ring ring;          /* of struct ackq_entry; a handle is its entry's position */
	void (*release)(void *ref);
	int lanes;
	/* ackq_advance's scratch: each lane's best so far, and which lanes have one. */
	void **best;
	uint64_t *best_seq;
	uint16_t *touched;
};

struct ackq *
ackq_new(void (*release)(void *ref), int lanes)
{
	struct ackq *q = calloc(1, sizeof(*q));

	if (q == NULL || lanes < 1 || lanes > UINT16_MAX)
		goto fail;
	q->ring.size = sizeof(struct ackq_entry);
	q->release = release;
	q->lanes = lanes;
	q->best = calloc((size_t)lanes, sizeof(*q->best));
	q->best_seq = calloc((size_t)lanes, sizeof(*q->best_seq));
	q->touched = calloc((size_t)lanes, sizeof(*q->touched));
	if (q->best == NULL || q->best_seq == NULL || q->touched == NULL)
		goto fail;
	return q;
fail:
	ackq_free(q);
	return NULL;
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
	free(q->best);
	free(q->best_seq);
	free(q->touched);
	free(q);
}

uint64_t
ackq_push(struct ackq *q, void *ref, uint64_t stream_seq, int lane, int done)
{
	uint64_t h = q->ring.tail;
	struct ackq_entry *e;

	if ((e = ring_push(&q->ring)) == NULL)
		return UINT64_MAX;
	*e = (struct ackq_entry){ ref, stream_seq, (uint16_t)(lane < q->lanes ? lane : 0), done != 0 };
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

int
ackq_advance(struct ackq *q, void (*ack)(void *ref, int lane, uint64_t stream_seq, void *arg), void *arg)
{
	int ntouched = 0;

	while (ring_count(&q->ring) > 0) {
		struct ackq_entry *e = ring_at(&q->ring, q->ring.head);
		uint16_t l = e->lane;

		if (!e->done)
			break;
		if (e->ref != NULL) {
			if (q->best[l] == NULL) {
				q->best[l] = e->ref;
				q->best_seq[l] = e->stream_seq;
				q->touched[ntouched++] = l;
			} else if (e->stream_seq > q->best_seq[l]) {
				if (q->release != NULL)
					q->release(q->best[l]);
				q->best[l] = e->ref;
				q->best_seq[l] = e->stream_seq;
			} else if (q->release != NULL) {
				q->release(e->ref);
			}
		}
		ring_shift(&q->ring);
	}
	for (int i = 0; i < ntouched; i++) {
		uint16_t l = q->touched[i];

		ack(q->best[l], l, q->best_seq[l], arg);
		q->best[l] = NULL;
	}
	return ntouched;
}

size_t
ackq_count(const struct ackq *q)
{
	return ring_count(&q->ring);
}
