#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "rec.h"
#include "varint.h"

#define REC_VERSION 1
#define REC_VERSION_REQ 2   /* with the last answered request's stream sequence */

/* Smallest encoded alarm: flags, raw length 0, sec, nsec, offset. */
#define REC_MIN_ALARM 5
/* Largest encoded alarm apart from its raw ID bytes. */
#define REC_MAX_ALARM_OVERHEAD (1 + 10 + 10 + 10 + 10)

#define FLAG_STATUS_MASK 0x03u
#define FLAG_DELIVERED 0x04u
#define FLAG_KIND_SHIFT 3
#define FLAG_KIND_MASK 0x18u
#define FLAG_RESERVED 0xe0u

/*
 * Instants a valid RFC 3339 timestamp can name: local years 0000..9999,
 * widened by a day each way for the offset.
 */
#define SEC_MIN (-62167219200LL - 86400)
#define SEC_MAX (253402300799LL + 86400)

struct rec_alarm {
	size_t id_off;          /* into rec.ids */
	size_t id_len;
	uint8_t kind;
	struct alarm_state st;
};

struct rec {
	struct rec_alarm *a;
	size_t n, cap;
	struct buf ids;
	uint64_t last_request;   /* stream sequence of the last digest request answered, 0: none */
	struct buf text;         /* an AlarmID as text, for rec_take_pending */
};

/* ---- reading ---------------------------------------------------------- */

struct rd {
	const uint8_t *p, *end;
};

static int
rd_byte(struct rd *r, uint8_t *out)
{
	if (r->p >= r->end)
		return -1;
	*out = *r->p++;
	return 0;
}

static int
rd_uvarint(struct rd *r, uint64_t *out)
{
	return varint_get(&r->p, r->end, out);
}

static int
rd_svarint(struct rd *r, int64_t *out)
{
	uint64_t u;

	if (varint_get(&r->p, r->end, &u) == -1)
		return -1;
	*out = varint_unzigzag(u);
	return 0;
}

static int
rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
	if ((size_t)(r->end - r->p) < n)
		return -1;
	*out = r->p;
	r->p += n;
	return 0;
}

/* ---- the alarm array --------------------------------------------------- */

struct rec *
rec_new(void)
{
	return calloc(1, sizeof(struct rec));
}

void
rec_free(struct rec *rec)
{
	if (rec == NULL)
		return;
	free(rec->a);
	buf_free(&rec->ids);
	buf_free(&rec->text);
	free(rec);
}

void
rec_clear(struct rec *rec)
{
	rec->n = 0;
	rec->last_request = 0;
	buf_reset(&rec->ids);
}

static int
rec_reserve(struct rec *rec, size_t n)
{
	struct rec_alarm *p;
	size_t ncap;

	if (n <= rec->cap)
		return 0;
	ncap = rec->cap ? rec->cap : 16;
	while (ncap < n) {
		if (ncap > SIZE_MAX / 2 / sizeof(*p)) {
			errno = ENOMEM;
			return -1;
		}
		ncap *= 2;
	}
	if ((p = realloc(rec->a, ncap * sizeof(*p))) == NULL)
		return -1;
	rec->a = p;
	rec->cap = ncap;
	return 0;
}

static int
rec_alarm_cmp(const struct rec *rec, const struct rec_alarm *x, uint8_t kind,
    const uint8_t *bytes, size_t len)
{
	return id_cmp(x->kind, rec->ids.data + x->id_off, x->id_len, kind, bytes, len);
}

/* Binary search; *pos is the match or the insertion point. */
static bool
rec_find(const struct rec *rec, uint8_t kind, const uint8_t *bytes, size_t len, size_t *pos)
{
	size_t lo = 0, hi = rec->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = rec_alarm_cmp(rec, &rec->a[mid], kind, bytes, len);

		if (c == 0) {
			*pos = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

static int
rec_insert(struct rec *rec, size_t pos, uint8_t kind, const uint8_t *bytes, size_t len,
    const struct alarm_state *st)
{
	size_t off = rec->ids.len;

	if (rec_reserve(rec, rec->n + 1) == -1 || buf_append(&rec->ids, bytes, len) == -1)
		return -1;
	memmove(&rec->a[pos + 1], &rec->a[pos], (rec->n - pos) * sizeof(rec->a[0]));
	rec->a[pos].id_off = off;
	rec->a[pos].id_len = len;
	rec->a[pos].kind = kind;
	rec->a[pos].st = *st;
	rec->n++;
	return 0;
}

/* ---- decoding ---------------------------------------------------------- */

/* Would id_encode store these bytes as a UUID kind? */
static bool
id_is_uuid_text(const uint8_t *id, size_t len)
{
	struct id_enc e;

	id_encode((const char *)id, len, &e);
	return e.kind != ID_RAW;
}

/* Has the UUID a hex digit a-f?  Without one, id_encode calls it lower case. */
static bool
uuid_has_letter(const uint8_t *id)
{
	for (size_t i = 0; i < ID_UUID_BYTES; i++)
		if ((id[i] >> 4) > 9 || (id[i] & 0x0f) > 9)
			return true;
	return false;
}

/* Read one alarm; *why names the first check that failed. */
static int
rec_decode_alarm(struct rd *r, struct rec_alarm *x, const uint8_t **id, const char **why)
{
	uint8_t flags;
	uint64_t len, nsec;
	int64_t sec, off;

	*why = "truncated";
	if (rd_byte(r, &flags) == -1)
		return -1;
	x->kind = (uint8_t)((flags & FLAG_KIND_MASK) >> FLAG_KIND_SHIFT);
	if ((flags & FLAG_RESERVED) || (flags & FLAG_STATUS_MASK) > STATUS_CRITICAL ||
	    x->kind > ID_KIND_MAX) {
		*why = "bad flags byte";
		return -1;
	}
	x->st.status = (enum alarm_status)(flags & FLAG_STATUS_MASK);
	x->st.delivered = (flags & FLAG_DELIVERED) != 0;
	len = ID_UUID_BYTES;
	if (x->kind == ID_RAW && rd_uvarint(r, &len) == -1)
		return -1;
	if (len > (uint64_t)(r->end - r->p) || rd_bytes(r, (size_t)len, id) == -1)
		return -1;
	x->id_len = (size_t)len;
	/* The validator refuses an empty AlarmID, so no store holds one. */
	if (x->kind == ID_RAW && x->id_len == 0) {
		*why = "empty AlarmID";
		return -1;
	}
	/*
	 * Each ID has one stored form, id_encode's: a one-case UUID is never
	 * raw, and one of digits only is lower case.  Any other form could not
	 * be found by its text, and an update would add the alarm twice.
	 */
	if (x->kind == ID_RAW && id_is_uuid_text(*id, x->id_len)) {
		*why = "raw AlarmID in UUID form";
		return -1;
	}
	if (x->kind == ID_UUID_UPPER && !uuid_has_letter(*id)) {
		*why = "upper-case UUID AlarmID without a letter";
		return -1;
	}
	if (rd_svarint(r, &sec) == -1 || rd_uvarint(r, &nsec) == -1 || rd_svarint(r, &off) == -1)
		return -1;
	if (sec < SEC_MIN || sec > SEC_MAX || nsec > 999999999 || off < -1439 || off > 1439) {
		*why = "timestamp out of range";
		return -1;
	}
	x->st.changed_at.sec = sec;
	x->st.changed_at.nsec = (int32_t)nsec;
	x->st.changed_at.off_min = (int16_t)off;
	return 0;
}

int
rec_decode(struct rec *rec, const void *data, size_t len, const char **why)
{
	struct rd r = { data, (const uint8_t *)data + len };
	uint64_t count;
	uint8_t version;

	rec_clear(rec);
	errno = 0;
	*why = "truncated";
	if (rd_byte(&r, &version) == -1)
		return -1;
	if (version != REC_VERSION && version != REC_VERSION_REQ) {
		*why = "unknown format version";
		return -1;
	}
	if (version == REC_VERSION_REQ && (rd_uvarint(&r, &rec->last_request) == -1 || rec->last_request == 0)) {
		*why = "bad last request sequence";
		return -1;
	}
	if (rd_uvarint(&r, &count) == -1)
		return -1;
	/* Bound the allocation by what the bytes could possibly hold. */
	if (count > (uint64_t)(r.end - r.p) / REC_MIN_ALARM) {
		*why = "alarm count larger than the record";
		return -1;
	}
	if (rec_reserve(rec, (size_t)count) == -1) {
		*why = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		struct rec_alarm *x = &rec->a[i];
		const uint8_t *id;

		if (rec_decode_alarm(&r, x, &id, why) == -1)
			return -1;
		if (i > 0 && rec_alarm_cmp(rec, &rec->a[i - 1], x->kind, id, x->id_len) >= 0) {
			*why = "alarms out of order or duplicated";
			return -1;
		}
		x->id_off = rec->ids.len;
		if (buf_append(&rec->ids, id, x->id_len) == -1) {
			*why = "out of memory";
			return -1;
		}
		rec->n = i + 1;
	}
	if (r.p != r.end) {
		*why = "trailing bytes";
		return -1;
	}
	return 0;
}

/* ---- encoding ---------------------------------------------------------- */

static bool
rec_kept(const struct rec_keep *k, const struct rec_alarm *x)
{
	return !k->drop_expired || !state_expired(&x->st, k->now_ms, k->retention_ms);
}

static uint8_t *
rec_encode_alarm(const struct rec *rec, const struct rec_alarm *x, uint8_t *p)
{
	*p++ = (uint8_t)((unsigned)x->st.status | (x->st.delivered ? FLAG_DELIVERED : 0) |
	    ((unsigned)x->kind << FLAG_KIND_SHIFT));
	if (x->kind == ID_RAW)
		p = varint_put(p, x->id_len);
	if (x->id_len > 0)
		memcpy(p, rec->ids.data + x->id_off, x->id_len);
	p += x->id_len;
	p = varint_put(p, varint_zigzag(x->st.changed_at.sec));
	p = varint_put(p, (uint64_t)x->st.changed_at.nsec);
	return varint_put(p, varint_zigzag(x->st.changed_at.off_min));
}

int
rec_encode(const struct rec *rec, const struct rec_keep *keep, struct buf *out,
    struct rec_counts *kept)
{
	size_t need = 1 + 10 + 10;
	uint8_t *p;

	kept->alarms = kept->tombstones = 0;
	for (size_t i = 0; i < rec->n; i++) {
		if (!rec_kept(keep, &rec->a[i]))
			continue;
		kept->alarms++;
		if (rec->a[i].st.status == STATUS_CLEARED)
			kept->tombstones++;
		need += REC_MAX_ALARM_OVERHEAD + rec->a[i].id_len;
	}
	buf_reset(out);
	if (buf_reserve(out, need) == -1)
		return -1;
	p = out->data;
	if (rec->last_request > 0) {
		*p++ = REC_VERSION_REQ;
		p = varint_put(p, rec->last_request);
	} else {
		*p++ = REC_VERSION;
	}
	p = varint_put(p, (uint64_t)kept->alarms);
	for (size_t i = 0; i < rec->n; i++)
		if (rec_kept(keep, &rec->a[i]))
			p = rec_encode_alarm(rec, &rec->a[i], p);
	out->len = (size_t)(p - out->data);
	return 0;
}

/* ---- what a record holds ------------------------------------------------- */

void
rec_count(const struct rec *rec, struct rec_counts *c)
{
	c->alarms = (int64_t)rec->n;
	c->tombstones = 0;
	for (size_t i = 0; i < rec->n; i++)
		if (rec->a[i].st.status == STATUS_CLEARED)
			c->tombstones++;
}

size_t
rec_size(const struct rec *rec)
{
	return rec->n;
}

void
rec_at(const struct rec *rec, size_t i, struct rec_item *out)
{
	const struct rec_alarm *x = &rec->a[i];

	out->kind = x->kind;
	out->id = rec->ids.data + x->id_off;
	out->id_len = x->id_len;
	out->st = x->st;
}

int
rec_add(struct rec *rec, const struct rec_item *it)
{
	size_t pos = rec->n;

	/* In order, the common case, costs no search. */
	if (rec->n > 0 && rec_alarm_cmp(rec, &rec->a[rec->n - 1], it->kind, it->id, it->id_len) >= 0 &&
	    rec_find(rec, it->kind, it->id, it->id_len, &pos))
		return 0;
	return rec_insert(rec, pos, it->kind, it->id, it->id_len, &it->st);
}

bool
rec_any_dropped(const struct rec *rec, const struct rec_keep *keep)
{
	for (size_t i = 0; i < rec->n; i++)
		if (!rec_kept(keep, &rec->a[i]))
			return true;
	return false;
}

size_t
rec_count_kept(const struct rec *rec, const struct rec_keep *keep)
{
	size_t n = 0;

	if (!keep->drop_expired)
		return rec->n;  /* no walk: the store asks this before every new alarm */
	for (size_t i = 0; i < rec->n; i++)
		if (rec_kept(keep, &rec->a[i]))
			n++;
	return n;
}

bool
rec_holds(const struct rec *rec, const char *alarm, size_t alarm_len)
{
	struct id_enc a;
	size_t pos;

	id_encode(alarm, alarm_len, &a);
	return rec_find(rec, a.kind, a.bytes, a.len, &pos);
}

uint64_t
rec_last_request(const struct rec *rec)
{
	return rec->last_request;
}

void
rec_set_last_request(struct rec *rec, uint64_t seq)
{
	rec->last_request = seq;
}

/* ---- changes ------------------------------------------------------------- */

static bool
rec_accepted(enum state_result r)
{
	return r == STATE_NEW || r == STATE_CHANGED || r == STATE_REFRESHED;
}

int
rec_apply(struct rec *rec, const char *alarm, size_t alarm_len, enum alarm_status status,
    const struct rfc3339_time *changed_at, enum state_result *res)
{
	struct alarm_state st = { STATUS_CLEARED, { 0, 0, 0 }, false };
	struct id_enc a;
	bool found;
	size_t pos;

	id_encode(alarm, alarm_len, &a);
	found = rec_find(rec, a.kind, a.bytes, a.len, &pos);
	if (found)
		st = rec->a[pos].st;
	*res = state_apply(&st, found, status, changed_at);
	if (!rec_accepted(*res))
		return 0;
	if (found)
		rec->a[pos].st = st;
	else if (rec_insert(rec, pos, a.kind, a.bytes, a.len, &st) == -1)
		return -1;
	return 1;
}

int
rec_take_pending(struct rec *rec, rec_alarm_fn fn, void *arg, size_t *taken)
{
	*taken = 0;
	for (size_t i = 0; i < rec->n; i++) {
		struct rec_alarm *x = &rec->a[i];

		if (!state_pending(&x->st))
			continue;
		buf_reset(&rec->text);
		if (id_decode(x->kind, rec->ids.data + x->id_off, x->id_len, &rec->text) == -1 ||
		    fn(arg, (const char *)rec->text.data, rec->text.len, x->st.status, &x->st.changed_at) == -1)
			return -1;
		x->st.delivered = true;
		(*taken)++;
	}
	return 0;
}

static bool
rec_state_equal(const struct alarm_state *a, const struct alarm_state *b)
{
	return a->status == b->status && a->delivered == b->delivered &&
	    a->changed_at.sec == b->changed_at.sec && a->changed_at.nsec == b->changed_at.nsec &&
	    a->changed_at.off_min == b->changed_at.off_min;
}

int
rec_merge(struct rec *dst, const struct rec *src, bool *changed)
{
	*changed = false;
	if (src->last_request > dst->last_request) {
		dst->last_request = src->last_request;
		*changed = true;
	}
	for (size_t i = 0; i < src->n; i++) {
		const struct rec_alarm *x = &src->a[i];
		const uint8_t *id = src->ids.data + x->id_off;
		size_t pos;

		if (rec_find(dst, x->kind, id, x->id_len, &pos)) {
			struct alarm_state old = dst->a[pos].st;

			state_merge(&dst->a[pos].st, &x->st);
			if (!rec_state_equal(&old, &dst->a[pos].st))
				*changed = true;
		} else {
			if (rec_insert(dst, pos, x->kind, id, x->id_len, &x->st) == -1)
				return -1;
			*changed = true;
		}
	}
	return 0;
}
