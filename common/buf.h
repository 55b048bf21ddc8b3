/* buf: a growable byte buffer with a read offset, for framing and JSON output. */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t off;   /* first unread byte */
	size_t len;   /* end of valid bytes */
	size_t cap;
};

/* All return 0, or -1 with errno = ENOMEM (the buffer is unchanged). */
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_append_byte(struct buf *b, uint8_t c);
/* Mark n bytes read; when everything is read the buffer resets to empty. */
void buf_consume(struct buf *b, size_t n);
/* Move unread bytes to the start, so reads can append without growing. */
void buf_compact(struct buf *b);
static inline size_t buf_unread(const struct buf *b) { return b->len - b->off; }
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
