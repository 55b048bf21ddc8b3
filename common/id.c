#include <uuid/uuid.h>

#include "id.h"

#define UUID_TEXT_LEN 36

/*
 * Per byte: ID_HEX_OK for a hex digit, with its value in the low nibble
 * and ID_HEX_LOWER or ID_HEX_UPPER for a letter; 0 for anything else.  A
 * table and no branch per character: random UUIDs mix digits and letters
 * at random, and the branches of a per-character test were mispredicted
 * about half the time (id_encode was 13% of the store's instructions per
 * update, more of its time).
 */
#define ID_HEX_OK 0x40
#define ID_HEX_LOWER 0x10
#define ID_HEX_UPPER 0x20

static const uint8_t id_hex[256] = {
	['0'] = ID_HEX_OK | 0, ['1'] = ID_HEX_OK | 1, ['2'] = ID_HEX_OK | 2, ['3'] = ID_HEX_OK | 3,
	['4'] = ID_HEX_OK | 4, ['5'] = ID_HEX_OK | 5, ['6'] = ID_HEX_OK | 6, ['7'] = ID_HEX_OK | 7,
	['8'] = ID_HEX_OK | 8, ['9'] = ID_HEX_OK | 9,
	['a'] = ID_HEX_OK | ID_HEX_LOWER | 10,
	['b'] = ID_HEX_OK | ID_HEX_LOWER | 11,
	['c'] = ID_HEX_OK | ID_HEX_LOWER | 12,
	['d'] = ID_HEX_OK | ID_HEX_LOWER | 13,
	['e'] = ID_HEX_OK | ID_HEX_LOWER | 14,
	['f'] = ID_HEX_OK | ID_HEX_LOWER | 15,
	['A'] = ID_HEX_OK | ID_HEX_UPPER | 10,
	['B'] = ID_HEX_OK | ID_HEX_UPPER | 11,
	['C'] = ID_HEX_OK | ID_HEX_UPPER | 12,
	['D'] = ID_HEX_OK | ID_HEX_UPPER | 13,
	['E'] = ID_HEX_OK | ID_HEX_UPPER | 14,
	['F'] = ID_HEX_OK | ID_HEX_UPPER | 15,
};

/* Where each of the 16 bytes' two hex digits start in the canonical text. */
static const uint8_t id_digit_at[ID_UUID_BYTES] = {
	0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34
};

/*
 * Hand-parsed: this runs twice for every update, and uuid_parse (strtoul
 * per field plus a round trip to check the case) cost a tenth of a
 * worker's time.
 */
void
id_encode(const char *id, size_t len, struct id_enc *e)
{
	const uint8_t *t = (const uint8_t *)id;
	unsigned seen = 0, ok = ID_HEX_OK;

	e->kind = ID_RAW;
	e->bytes = t;
	e->len = len;
	if (len != UUID_TEXT_LEN || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-')
		return;
	for (size_t i = 0; i < ID_UUID_BYTES; i++) {
		uint8_t hi = id_hex[t[id_digit_at[i]]], lo = id_hex[t[id_digit_at[i] + 1]];

		seen |= hi | lo;
		ok &= hi & lo;
		e->uuid[i] = (uint8_t)((hi & 0x0f) << 4 | (lo & 0x0f));
	}
	if (!ok || (seen & (ID_HEX_LOWER | ID_HEX_UPPER)) == (ID_HEX_LOWER | ID_HEX_UPPER))
		return;
	/* All digits: either spelling prints it back; call it lower case. */
	e->kind = (seen & ID_HEX_UPPER) ? ID_UUID_UPPER : ID_UUID_LOWER;
	e->bytes = e->uuid;
	e->len = ID_UUID_BYTES;
}

int
id_decode(uint8_t kind, const uint8_t *bytes, size_t len, struct buf *out)
{
	char text[UUID_TEXT_LEN + 1];

	if (kind == ID_RAW)
		return buf_append(out, bytes, len);
	if (kind == ID_UUID_LOWER)
		uuid_unparse_lower(bytes, text);
	else
		uuid_unparse_upper(bytes, text);
	return buf_append(out, text, UUID_TEXT_LEN);
}
