#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int
buf_reserve(struct buf *b, size_t more)
{
	size_t need, ncap;
	uint8_t *p;

	if (more > SIZE_MAX - b->len) {
		errno = ENOMEM;
		return -1;
	}
	need = b->len + more;
	if (need <= b->cap)
		return 0;
	/* Reclaim read space before growing: a queue that drains keeps its size. */
	if (b->off > 0 && need - b->off <= b->cap) {
		buf_compact(b);
		return 0;
	}
	ncap = b->cap ? b->cap : 256;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2) {
			errno = ENOMEM;
			return -1;
		}
		ncap *= 2;
	}
	if ((p = realloc(b->data, ncap)) == NULL)
		return -1;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) == -1)
		return -1;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

int
buf_append_byte(struct buf *b, uint8_t c)
{
	if (b->len == b->cap && buf_reserve(b, 1) == -1)
		return -1;
	b->data[b->len++] = c;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void
buf_compact(struct buf *b)
{
	if (b->off == 0)
		return;
	memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

void
buf_reset(struct buf *b)
{
	b->off = b->len = 0;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
