/*
 * id: a UserID or AlarmID in the form the store keeps it.
 *
 * A canonical UUID in one letter case is kept as 16 bytes and a kind that
 * says which case, since uuid_unparse_lower/_upper give back exactly the
 * same text; anything else (mixed case, braces, no dashes) stays raw,
 * because a digest must echo the ID byte for byte.  The kinds are part of
 * the on-disk format: never renumber them.
 */
#ifndef ID_H
#define ID_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

#define ID_UUID_BYTES 16

enum id_kind { ID_RAW = 0, ID_UUID_LOWER = 1, ID_UUID_UPPER = 2 };
#define ID_KIND_MAX ID_UUID_UPPER

/* An ID in its stored form; a value the caller owns. */
struct id_enc {
	uint8_t kind;
	const uint8_t *bytes;   /* uuid below, or the caller's raw bytes */
	size_t len;
	uint8_t uuid[ID_UUID_BYTES];
};

/* Fill e from id[0..len); e->bytes may point into id. */
void id_encode(const char *id, size_t len, struct id_enc *e);

/* Append the original text of a stored ID to out: 0, or -1 on ENOMEM. */
int id_decode(uint8_t kind, const uint8_t *bytes, size_t len, struct buf *out);

/*
 * The order records keep their alarms in: kind, then length, then bytes.
 * Any total order would do; this one is cheap.  Inline: a record lookup
 * calls it at every step of its binary search.
 */
static inline int
id_cmp(uint8_t ak, const uint8_t *a, size_t alen, uint8_t bk, const uint8_t *b, size_t blen)
{
	if (ak != bk)
		return ak < bk ? -1 : 1;
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return alen == 0 ? 0 : memcmp(a, b, alen);
}

#endif
