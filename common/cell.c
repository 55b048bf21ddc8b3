#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cell.h"
#include "varint.h"

#define FLAG_STATUS_MASK 0x03u
#define FLAG_DELIVERED 0x04u
#define FLAG_EXTRA 0x08u       /* a fraction or a non-zero offset follows */
#define FLAG_BITS 4

/* Offsets -1439..1439 minutes zigzag to 0..2878. */
#define OFF_CODES 2879

/*
 * Instants a valid RFC 3339 timestamp can name: local years 0000..9999,
 * widened by a day each way for the offset.
 */
#define SEC_MIN (-62167219200LL - 86400)
#define SEC_MAX (253402300799LL + 86400)

/* Skip one varint: 0, or -1 when it runs past end. */
static int
cell_skip_varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v;

	return varint_get(p, end, &v);
}

size_t
cell_len(const void *data, size_t avail)
{
	const uint8_t *p = data, *end = p + avail;
	uint64_t head;
	size_t id_len = ID_UUID_BYTES;

	if (avail < 1)
		return 0;
	if (*p++ == CELL_HEAD_TAG) {
		for (int i = 0; i < 5; i++)
			if (cell_skip_varint(&p, end) == -1)
				return 0;
		return (size_t)(p - (const uint8_t *)data);
	}
	if (p[-1] > 1 + ID_KIND_MAX)
		return 0;
	if (p[-1] == 1 + ID_RAW) {
		if (end - p < 2)
			return 0;
		id_len = (size_t)p[0] << 8 | p[1];
		p += 2;
	}
	if ((size_t)(end - p) < id_len)
		return 0;
	p += id_len;
	if (varint_get(&p, end, &head) == -1 || ((head & FLAG_EXTRA) && cell_skip_varint(&p, end) == -1))
		return 0;
	return (size_t)(p - (const uint8_t *)data);
}

bool
cell_is_head(const void *data, size_t len)
{
	return len > 0 && *(const uint8_t *)data == CELL_HEAD_TAG;
}

int
cell_head_encode(const struct cell_head *h, struct buf *out)
{
	uint8_t *p;

	buf_reset(out);
	if (buf_reserve(out, 1 + 5 * VARINT_MAX) == -1)
		return -1;
	p = out->data;
	*p++ = CELL_HEAD_TAG;
	p = varint_put(p, h->last_request);
	p = varint_put(p, h->alarms);
	p = varint_put(p, h->tombstones);
	p = varint_put(p, h->pending);
	p = varint_put(p, varint_zigzag(h->tomb_floor));
	out->len = (size_t)(p - out->data);
	return 0;
}

int
cell_head_decode(const void *data, size_t len, struct cell_head *h, const char **why)
{
	const uint8_t *p = data, *end = p + len;
	uint64_t floor;

	*why = "truncated head";
	if (len < 1 || *p++ != CELL_HEAD_TAG) {
		*why = "not a head cell";
		return -1;
	}
	if (varint_get(&p, end, &h->last_request) == -1 || varint_get(&p, end, &h->alarms) == -1 ||
	    varint_get(&p, end, &h->tombstones) == -1 || varint_get(&p, end, &h->pending) == -1 ||
	    varint_get(&p, end, &floor) == -1)
		return -1;
	h->tomb_floor = varint_unzigzag(floor);
	if (p != end) {
		*why = "trailing bytes in head";
		return -1;
	}
	if (h->tombstones > h->alarms || h->pending > h->alarms - h->tombstones) {
		*why = "head counts inconsistent";
		return -1;
	}
	return 0;
}

int
cell_prefix(uint8_t kind, const uint8_t *id, size_t id_len, struct buf *out)
{
	buf_reset(out);
	if (kind > ID_KIND_MAX || (kind != ID_RAW && id_len != ID_UUID_BYTES) || id_len > CELL_MAX_ID) {
		errno = EINVAL;
		return -1;
	}
	if (buf_reserve(out, CELL_MAX) == -1)
		return -1;
	out->data[out->len++] = (uint8_t)(1 + kind);
	if (kind == ID_RAW) {
		out->data[out->len++] = (uint8_t)(id_len >> 8);
		out->data[out->len++] = (uint8_t)id_len;
	}
	if (id_len > 0)
		memcpy(out->data + out->len, id, id_len);
	out->len += id_len;
	return 0;
}

int
cell_alarm_encode(uint8_t kind, const uint8_t *id, size_t id_len, const struct alarm_state *st,
    struct buf *out)
{
	const struct rfc3339_time *t = &st->changed_at;
	bool extra = t->nsec != 0 || t->off_min != 0;
	uint64_t head;
	uint8_t *p;

	if (cell_prefix(kind, id, id_len, out) == -1)
		return -1;
	head = varint_zigzag(t->sec - CELL_EPOCH) << FLAG_BITS | (extra ? FLAG_EXTRA : 0) |
	    (st->delivered ? FLAG_DELIVERED : 0) | (unsigned)st->status;
	p = varint_put(out->data + out->len, head);
	if (extra)
		p = varint_put(p, (uint64_t)t->nsec * OFF_CODES + varint_zigzag(t->off_min));
	out->len = (size_t)(p - out->data);
	return 0;
}

/* Would id_encode store these bytes as a UUID kind? */
static bool
cell_uuid_text(const uint8_t *id, size_t len)
{
	struct id_enc e;

	id_encode((const char *)id, len, &e);
	return e.kind != ID_RAW;
}

/* Has the UUID a hex digit a-f?  Without one, id_encode calls it lower case. */
static bool
cell_uuid_letter(const uint8_t *id)
{
	for (size_t i = 0; i < ID_UUID_BYTES; i++)
		if ((id[i] >> 4) > 9 || (id[i] & 0x0f) > 9)
			return true;
	return false;
}

int
cell_alarm_decode(const void *data, size_t len, struct cell_alarm *a, const char **why)
{
	const uint8_t *p = data, *end = p + len;
	uint64_t head, extra = 0;
	int64_t sec, off = 0;

	*why = "truncated alarm";
	if (len < 1)
		return -1;
	if (*p == CELL_HEAD_TAG || *p > 1 + ID_KIND_MAX) {
		*why = "bad alarm tag";
		return -1;
	}
	a->kind = (uint8_t)(*p++ - 1);
	a->id_len = ID_UUID_BYTES;
	if (a->kind == ID_RAW) {
		if (end - p < 2)
			return -1;
		a->id_len = (size_t)p[0] << 8 | p[1];
		p += 2;
		/* The validator refuses an empty AlarmID, so no store holds one. */
		if (a->id_len == 0 || a->id_len > CELL_MAX_ID) {
			*why = "bad AlarmID length";
			return -1;
		}
	}
	if ((size_t)(end - p) < a->id_len)
		return -1;
	a->id = p;
	p += a->id_len;
	a->prefix_len = (size_t)(p - (const uint8_t *)data);
	/*
	 * Each ID has one stored form, id_encode's: a one-case UUID is never
	 * raw, and one of digits only is lower case.  Any other form could not
	 * be found by its text, and an update would add the alarm twice.
	 */
	if (a->kind == ID_RAW && cell_uuid_text(a->id, a->id_len)) {
		*why = "raw AlarmID in UUID form";
		return -1;
	}
	if (a->kind == ID_UUID_UPPER && !cell_uuid_letter(a->id)) {
		*why = "upper-case UUID AlarmID without a letter";
		return -1;
	}
	if (varint_get(&p, end, &head) == -1)
		return -1;
	if ((head & FLAG_STATUS_MASK) > STATUS_CRITICAL) {
		*why = "bad status";
		return -1;
	}
	if ((head & FLAG_EXTRA) && varint_get(&p, end, &extra) == -1)
		return -1;
	if (p != end) {
		*why = "trailing bytes in alarm";
		return -1;
	}
	sec = varint_unzigzag(head >> FLAG_BITS);
	if (sec < SEC_MIN - CELL_EPOCH || sec > SEC_MAX - CELL_EPOCH || extra / OFF_CODES > 999999999) {
		*why = "timestamp out of range";
		return -1;
	}
	off = varint_unzigzag(extra % OFF_CODES);
	if ((head & FLAG_EXTRA) && extra == 0) {
		/* The flag says a fraction or offset follows; a zero is not one. */
		*why = "empty timestamp extension";
		return -1;
	}
	a->st.status = (enum alarm_status)(head & FLAG_STATUS_MASK);
	a->st.delivered = (head & FLAG_DELIVERED) != 0;
	a->st.changed_at.sec = sec + CELL_EPOCH;
	a->st.changed_at.nsec = (int32_t)(extra / OFF_CODES);
	a->st.changed_at.off_min = (int16_t)off;
	return 0;
}
