/*
 * ring: a growable FIFO of fixed-size entries, each named by its position.
 *
 * Positions count up from 0 and are never reused.  The entries live in
 * chunks of RING_CHUNK: the entry at position p is entry p % RING_CHUNK
 * of chunk p / RING_CHUNK, found through a small table of chunk pointers.
 * A push that starts a chunk allocates it and a shift that leaves one
 * frees it, so an entry never moves: a position stays the name of its
 * entry, and a pointer to it stays valid, for as long as the entry is
 * queued (ackq hands positions out as handles, outq only pushes and
 * shifts).  Growing never copies the entries: one contiguous array
 * doubled and copied as a queue grew to hold a burst cost the master's
 * main loop a tenth of its time, in the copies and in the page faults
 * and unmaps of each new and old array.  A value embedded in its owner,
 * like struct buf.
 */
#ifndef RING_H
#define RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_CHUNK_SHIFT 10
#define RING_CHUNK ((uint64_t)1 << RING_CHUNK_SHIFT)

struct ring {
	uint8_t **chunks;        /* chunk c at chunks[c & (nchunks - 1)] */
	size_t size;             /* bytes per entry: set before the first push */
	size_t nchunks;          /* slots of the table, a power of two (0 before the first push) */
	uint64_t head, tail;     /* positions [head, tail) are queued */
};

/* Queue one entry at position r->tail; returns it for the caller to fill, or NULL on ENOMEM. */
void *ring_push(struct ring *r);
void ring_free(struct ring *r);
/* The chunk before the head was left, or the one after the tail emptied: free it. */
void ring_release(struct ring *r, uint64_t chunk);

static inline size_t ring_count(const struct ring *r) { return (size_t)(r->tail - r->head); }
/* pos must be queued: head <= pos < tail. */
static inline void *ring_at(const struct ring *r, uint64_t pos)
{
	return r->chunks[(size_t)(pos >> RING_CHUNK_SHIFT) & (r->nchunks - 1)] +
	    (size_t)(pos & (RING_CHUNK - 1)) * r->size;
}
/* Drop the oldest entry (the queue must not be empty). */
static inline void ring_shift(struct ring *r)
{
	if ((++r->head & (RING_CHUNK - 1)) == 0)
		ring_release(r, (r->head >> RING_CHUNK_SHIFT) - 1);
}
/* Take back the newest entry, if any. */
static inline void ring_unpush(struct ring *r)
{
	if (r->tail > r->head && (--r->tail & (RING_CHUNK - 1)) == 0)
		ring_release(r, r->tail >> RING_CHUNK_SHIFT);
}

#endif
