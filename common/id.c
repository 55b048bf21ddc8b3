#include <uuid/uuid.h>

#include "id.h"

#define UUID_TEXT_LEN 36

static int
hex_value(char c, int *upper)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f') {
		*upper |= 1;
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		*upper |= 2;
		return c - 'A' + 10;
	}
	return -1;
}

/*
 * Hand-parsed: this runs for every update, and uuid_parse (strtoul per
 * field plus a round trip to check the case) cost a tenth of a worker's
 * time.
 */
void
id_encode(const char *id, size_t len, struct id_enc *e)
{
	int cases = 0;
	size_t o = 0;

	e->kind = ID_RAW;
	e->bytes = (const uint8_t *)id;
	e->len = len;
	if (len != UUID_TEXT_LEN)
		return;
	for (size_t i = 0; i < UUID_TEXT_LEN; i += 2) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i] != '-')
				return;
			i--;  /* the loop's += 2 lands on the next digit pair */
			continue;
		}
		int hi = hex_value(id[i], &cases), lo = hex_value(id[i + 1], &cases);
		if (hi < 0 || lo < 0)
			return;
		e->uuid[o++] = (uint8_t)(hi << 4 | lo);
	}
	if (cases == 3 || o != ID_UUID_BYTES)
		return;
	/* All digits: either spelling prints it back; call it lower case. */
	e->kind = cases == 2 ? ID_UUID_UPPER : ID_UUID_LOWER;
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
