#include <stdlib.h>
#include <string.h>

#include "ackq.h"

struct ackq_entry {
	void *ref;
	uint64_t stream_seq;
	int done;
};

struct ackq {
	struct ackq_entry *ring;   /* entry of handle h is ring[h % cap] */
	size_t cap;                /* a power of two */
	uint64_t head, tail;       /* handles [head, tail) are held */
	void (*release)(void *ref);
};

struct ackq *
ackq_new(void (*release)(void *ref))
{
	struct ackq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->cap = 4096;
	if ((q->ring = calloc(q->cap, sizeof(*q->ring))) == NULL) {
		free(q);
		return NULL;
	}
	q->release = release;
	return q;
}

void
ackq_clear(struct ackq *q)
{
	for (uint64_t h = q->head; h < q->tail; h++) {
		struct ackq_entry *e = &q->ring[h & (q->cap - 1)];
		if (e->ref != NULL && q->release != NULL)
			q->release(e->ref);
		e->ref = NULL;
	}
	q->head = q->tail;
}

void
ackq_free(struct ackq *q)
{
	if (q == NULL)
		return;
	ackq_clear(q);
	free(q->ring);
	free(q);
}

/* Handles stay valid across growth: each entry moves to h % new_cap. */
static int
ackq_grow(struct ackq *q)
{
	size_t ncap = q->cap * 2;
	struct ackq_entry *n = calloc(ncap, sizeof(*n));

	if (n == NULL)
		return -1;
	for (uint64_t h = q->head; h < q->tail; h++)
		n[h & (ncap - 1)] = q->ring[h & (q->cap - 1)];
	free(q->ring);
	q->ring = n;
	q->cap = ncap;
	return 0;
}

uint64_t
ackq_push(struct ackq *q, void *ref, uint64_t stream_seq, int done)
{
	if (q->tail - q->head == q->cap && ackq_grow(q) == -1)
		return UINT64_MAX;
	q->ring[q->tail & (q->cap - 1)] = (struct ackq_entry){ ref, stream_seq, done };
	return q->tail++;
}

void
ackq_unpush(struct ackq *q)
{
	if (q->tail > q->head)
		q->tail--;
}

void
ackq_done(struct ackq *q, uint64_t handle)
{
	if (handle >= q->head && handle < q->tail)
		q->ring[handle & (q->cap - 1)].done = 1;
}

void *
ackq_advance(struct ackq *q)
{
	void *best = NULL;
	uint64_t best_seq = 0;

	while (q->head < q->tail) {
		struct ackq_entry *e = &q->ring[q->head & (q->cap - 1)];
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
		e->ref = NULL;
		q->head++;
	}
	return best;
}

size_t
ackq_count(const struct ackq *q)
{
	return (size_t)(q->tail - q->head);
}
