/*
 * quote: untrusted bytes (wire payloads, IDs, subjects, config text) made
 * safe for one log line.
 *
 * Printable ASCII is kept, except '"' and '\' which get a backslash; every
 * other byte becomes \xNN, so a hostile value can neither end a log line,
 * move the cursor, nor pass for a quote.  Output that would not fit in
 * dst ends in "..." instead.  The result is always NUL-terminated.
 */
#ifndef QUOTE_H
#define QUOTE_H

#include <stddef.h>

/* Room for quoting n bytes without a cut: each byte can take 4, plus "..." and NUL. */
#define QUOTE_CAP(n) ((n) * 4 + 4)

/* Quote src[0..n) into dst[0..dstlen) (dstlen >= 4); returns dst. */
const char *quote_bytes(char *dst, size_t dstlen, const void *src, size_t n);

#endif
