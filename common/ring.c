#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define RING_FIRST_CAP 1024

static int
ring_grow(struct ring *r)
{
	size_t ncap = r->cap ? r->cap * 2 : RING_FIRST_CAP;
	uint8_t *n;

	if (ncap > SIZE_MAX / r->size) {
		errno = ENOMEM;
		return -1;
	}
	if ((n = malloc(ncap * r->size)) == NULL)
		return -1;
	for (uint64_t p = r->head; p < r->tail; p++)
		memcpy(n + (size_t)(p & (ncap - 1)) * r->size, ring_at(r, p), r->size);
	free(r->slots);
	r->slots = n;
	r->cap = ncap;
	return 0;
}

void *
ring_push(struct ring *r)
{
	if (ring_count(r) == r->cap && ring_grow(r) == -1)
		return NULL;
	return ring_at(r, r->tail++);
}

void
ring_free(struct ring *r)
{
	free(r->slots);
	r->slots = NULL;
	r->cap = 0;
	r->head = r->tail = 0;
}
