#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

/*
 * Chunks allocated: those holding a position in [head, tail), and the
 * head's when the ring emptied inside it (the next push goes there), that
 * is chunk numbers [head / RING_CHUNK, ceil(tail / RING_CHUNK)).
 */

/* Double the table of chunk pointers, so each chunk c moves to c & (2n - 1). */
static int
ring_grow_table(struct ring *r)
{
	size_t n = r->nchunks ? r->nchunks * 2 : 4;
	uint8_t **t;

	if (n > SIZE_MAX / sizeof(*t)) {
		errno = ENOMEM;
		return -1;
	}
	if ((t = calloc(n, sizeof(*t))) == NULL)
		return -1;
	for (uint64_t c = r->head >> RING_CHUNK_SHIFT; c < r->tail >> RING_CHUNK_SHIFT ||
	    (c == r->tail >> RING_CHUNK_SHIFT && (r->tail & (RING_CHUNK - 1)) != 0); c++)
		t[c & (n - 1)] = r->chunks[c & (r->nchunks - 1)];
	free(r->chunks);
	r->chunks = t;
	r->nchunks = n;
	return 0;
}

void *
ring_push(struct ring *r)
{
	if ((r->tail & (RING_CHUNK - 1)) == 0) {
		/* The first entry of a new chunk. */
		uint64_t c = r->tail >> RING_CHUNK_SHIFT;
		uint8_t *chunk;

		if (r->size > SIZE_MAX / RING_CHUNK) {
			errno = ENOMEM;
			return NULL;
		}
		if (c - (r->head >> RING_CHUNK_SHIFT) + 1 > r->nchunks && ring_grow_table(r) == -1)
			return NULL;
		if ((chunk = malloc((size_t)RING_CHUNK * r->size)) == NULL)
			return NULL;
		r->chunks[c & (r->nchunks - 1)] = chunk;
	}
	return ring_at(r, r->tail++);
}

void
ring_release(struct ring *r, uint64_t chunk)
{
	uint8_t **p = &r->chunks[chunk & (r->nchunks - 1)];

	free(*p);
	*p = NULL;
}

void
ring_free(struct ring *r)
{
	for (size_t i = 0; i < r->nchunks; i++)
		free(r->chunks[i]);
	free(r->chunks);
	r->chunks = NULL;
	r->nchunks = 0;
	r->head = r->tail = 0;
}
