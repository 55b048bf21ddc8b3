/*
 * ring: a growable FIFO of fixed-size entries, each named by its position.
 *
 * Positions count up from 0 and are never reused; the entry at position p
 * lives in slot p & (cap - 1).  Growing moves every entry to its slot in
 * the larger array, so a position stays the name of its entry for as long
 * as the entry is queued: ackq hands positions out as handles, outq only
 * pushes and shifts.  A value embedded in its owner, like struct buf.
 */
#ifndef RING_H
#define RING_H

#include <stddef.h>
#include <stdint.h>

struct ring {
	uint8_t *slots;
	size_t size;             /* bytes per entry: set before the first push */
	size_t cap;              /* entries, a power of two (0 before the first push) */
	uint64_t head, tail;     /* positions [head, tail) are queued */
};

/* Queue one entry at position r->tail; returns it for the caller to fill, or NULL on ENOMEM. */
void *ring_push(struct ring *r);
void ring_free(struct ring *r);

static inline size_t ring_count(const struct ring *r) { return (size_t)(r->tail - r->head); }
/* pos must be queued: head <= pos < tail. */
static inline void *ring_at(const struct ring *r, uint64_t pos)
{
	return r->slots + (size_t)(pos & (r->cap - 1)) * r->size;
}
/* Drop the oldest entry (the queue must not be empty). */
static inline void ring_shift(struct ring *r) { r->head++; }
/* Take back the newest entry, if any. */
static inline void ring_unpush(struct ring *r) { if (r->tail > r->head) r->tail--; }

#endif
