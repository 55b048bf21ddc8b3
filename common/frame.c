#include <errno.h>
#include <string.h>

#include "frame.h"

/* Both ends run on the same host; memcpy keeps unaligned access defined. */
static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, sizeof(v)); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, sizeof(v)); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof(v)); }
static uint16_t get_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, sizeof(v)); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, sizeof(v)); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, sizeof(v)); return v; }

static int
frame_type_known(uint16_t type)
{
	switch (type) {
	case FRAME_HELLO: case FRAME_UPDATE: case FRAME_DIGEST: case FRAME_CONFIG:
	case FRAME_STOP: case FRAME_FENCE: case FRAME_READY: case FRAME_DONE: case FRAME_STATS:
	case FRAME_PROGRESS: case FRAME_FENCED:
		return 1;
	}
	return 0;
}

/* Flags only a DIGEST may carry, in any combination; every other frame has 0. */
static int
frame_flags_valid(uint16_t type, uint16_t flags)
{
	if (type == FRAME_DIGEST)
		return (flags & ~(FRAME_F_RECV_TIME | FRAME_F_REPLAY)) == 0;
	return flags == 0;
}

int
frame_next(const uint8_t *p, size_t len, struct frame *f, size_t *used, const char **err)
{
	uint32_t flen;
	uint16_t type;

	if (len < FRAME_HDR_LEN)
		return 0;
	flen = get_u32(p);
	type = get_u16(p + 4);
	/* Validate the header before waiting for the body: a bad length must
	 * not make the reader buffer gigabytes first. */
	if (flen < FRAME_HDR_LEN || flen > FRAME_MAX_LEN) {
		*err = "frame length out of bounds";
		return -1;
	}
	if (!frame_type_known(type)) {
		*err = "unknown frame type";
		return -1;
	}
	if (!frame_flags_valid(type, get_u16(p + 6))) {
		*err = "reserved frame flags set";
		return -1;
	}
	if (len < flen)
		return 0;
	f->type = type;
	f->flags = get_u16(p + 6);
	f->id = get_u64(p + 8);
	f->body = p + FRAME_HDR_LEN;
	f->body_len = flen - FRAME_HDR_LEN;
	*used = flen;
	return 1;
}

/* Reserve a whole frame and write its header; returns the body pointer. */
static uint8_t *
frame_begin(struct buf *b, enum frame_type type, uint64_t id, size_t body_len)
{
	uint8_t *p;

	if (body_len > FRAME_MAX_LEN - FRAME_HDR_LEN) {
		errno = EMSGSIZE;
		return NULL;
	}
	if (buf_reserve(b, FRAME_HDR_LEN + body_len) == -1)
		return NULL;
	p = b->data + b->len;
	put_u32(p, (uint32_t)(FRAME_HDR_LEN + body_len));
	put_u16(p + 4, (uint16_t)type);
	put_u16(p + 6, 0);
	put_u64(p + 8, id);
	b->len += FRAME_HDR_LEN + body_len;
	return p + FRAME_HDR_LEN;
}

int
frame_put(struct buf *b, enum frame_type type, uint64_t id, const void *body, size_t body_len)
{
	uint8_t *p;

	if ((p = frame_begin(b, type, id, body_len)) == NULL)
		return -1;
	if (body_len > 0)
		memcpy(p, body, body_len);
	return 0;
}

void
frame_set_id(uint8_t *p, uint64_t id)
{
	put_u64(p + 8, id);
}

int
frame_put_hello(struct buf *b, uint32_t slot, uint32_t nslots, const char *conf, size_t conf_len)
{
	uint8_t *p;

	if ((p = frame_begin(b, FRAME_HELLO, 0, 8 + conf_len)) == NULL)
		return -1;
	put_u32(p, slot);
	put_u32(p + 4, nslots);
	memcpy(p + 8, conf, conf_len);
	return 0;
}

int
frame_get_hello(const struct frame *f, uint32_t *slot, uint32_t *nslots,
    const char **conf, size_t *conf_len)
{
	if (f->type != FRAME_HELLO || f->body_len < 8)
		return -1;
	*slot = get_u32(f->body);
	*nslots = get_u32(f->body + 4);
	if (*nslots == 0 || *slot >= *nslots)
		return -1;
	*conf = (const char *)f->body + 8;
	*conf_len = f->body_len - 8;
	return 0;
}

/*
 * UPDATE body: u16 user_len, u16 alarm_len, u8 status, u8 pad,
 * i16 off_min, i64 sec, i32 nsec, then the two IDs.
 */
#define UPDATE_FIXED 20

int
frame_put_update(struct buf *b, uint64_t id, const struct alarm_msg *m)
{
	uint8_t *p;

	if (m->user_len > UINT16_MAX || m->alarm_len > UINT16_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if ((p = frame_begin(b, FRAME_UPDATE, id, UPDATE_FIXED + m->user_len + m->alarm_len)) == NULL)
		return -1;
	put_u16(p, (uint16_t)m->user_len);
	put_u16(p + 2, (uint16_t)m->alarm_len);
	p[4] = (uint8_t)m->status;
	p[5] = 0;
	put_u16(p + 6, (uint16_t)m->changed_at.off_min);
	put_u64(p + 8, (uint64_t)m->changed_at.sec);
	put_u32(p + 16, (uint32_t)m->changed_at.nsec);
	memcpy(p + UPDATE_FIXED, m->user, m->user_len);
	memcpy(p + UPDATE_FIXED + m->user_len, m->alarm, m->alarm_len);
	return 0;
}

int
frame_get_update(const struct frame *f, struct alarm_msg *m)
{
	const uint8_t *p = f->body;
	size_t ulen, alen;
	int32_t nsec;
	int16_t off;

	if (f->type != FRAME_UPDATE || f->body_len < UPDATE_FIXED)
		return -1;
	ulen = get_u16(p);
	alen = get_u16(p + 2);
	if ((size_t)f->body_len != UPDATE_FIXED + ulen + alen || ulen == 0 || alen == 0)
		return -1;
	if (p[4] > STATUS_CRITICAL)
		return -1;
	off = (int16_t)get_u16(p + 6);
	nsec = (int32_t)get_u32(p + 16);
	if (off < -1439 || off > 1439 || nsec < 0 || nsec > 999999999)
		return -1;
	m->kind = MSG_STATUS_CHANGED;
	m->status = (enum alarm_status)p[4];
	m->changed_at.off_min = off;
	m->changed_at.sec = (int64_t)get_u64(p + 8);
	m->changed_at.nsec = nsec;
	m->user = (const char *)p + UPDATE_FIXED;
	m->user_len = ulen;
	m->alarm = (const char *)p + UPDATE_FIXED + ulen;
	m->alarm_len = alen;
	return 0;
}

int
frame_put_digest(struct buf *b, uint64_t id, uint64_t stream_seq, const char *user, size_t user_len)
{
	uint8_t *p;

	if ((p = frame_begin(b, FRAME_DIGEST, id, 8 + user_len)) == NULL)
		return -1;
	put_u64(p, stream_seq);
	memcpy(p + 8, user, user_len);
	return 0;
}

int
frame_put_digest_at(struct buf *b, uint64_t id, uint64_t stream_seq, int64_t received,
    uint16_t flags, const char *user, size_t user_len)
{
	uint8_t *p;

	if ((flags & ~FRAME_F_REPLAY) != 0) {
		errno = EINVAL;
		return -1;
	}
	if ((p = frame_begin(b, FRAME_DIGEST, id, 16 + user_len)) == NULL)
		return -1;
	put_u16(p - FRAME_HDR_LEN + 6, FRAME_F_RECV_TIME | flags);
	put_u64(p, stream_seq);
	put_u64(p + 8, (uint64_t)received);
	memcpy(p + 16, user, user_len);
	return 0;
}

int
frame_get_digest(const struct frame *f, uint64_t *stream_seq, const char **user, size_t *user_len)
{
	size_t fixed = (f->flags & FRAME_F_RECV_TIME) ? 16 : 8;

	if (f->type != FRAME_DIGEST || f->body_len <= fixed)
		return -1;
	*stream_seq = get_u64(f->body);
	*user = (const char *)f->body + fixed;
	*user_len = f->body_len - fixed;
	return 0;
}

int64_t
frame_digest_received(const struct frame *f)
{
	if (f->type != FRAME_DIGEST || !(f->flags & FRAME_F_RECV_TIME) || f->body_len <= 16)
		return 0;
	return (int64_t)get_u64(f->body + 8);
}

bool
frame_digest_replay(const struct frame *f)
{
	return f->type == FRAME_DIGEST && (f->flags & FRAME_F_REPLAY) != 0;
}

int
frame_put_fence(struct buf *b, int64_t deadline_ms)
{
	uint8_t *p;

	if (deadline_ms < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((p = frame_begin(b, FRAME_FENCE, 0, 8)) == NULL)
		return -1;
	put_u64(p, (uint64_t)deadline_ms);
	return 0;
}

int
frame_get_fence(const struct frame *f, int64_t *deadline_ms)
{
	int64_t d;

	if (f->type != FRAME_FENCE || f->body_len != 8)
		return -1;
	if ((d = (int64_t)get_u64(f->body)) < 0)
		return -1;
	*deadline_ms = d;
	return 0;
}

static uint8_t *
put_histo(uint8_t *p, const struct histo *h)
{
	for (int i = 0; i < HISTO_BUCKETS; i++, p += 8)
		put_u64(p, h->bucket[i]);
	put_u64(p, h->sum_us);
	return p + 8;
}

static const uint8_t *
get_histo(const uint8_t *p, struct histo *h)
{
	for (int i = 0; i < HISTO_BUCKETS; i++, p += 8)
		h->bucket[i] = get_u64(p);
	h->sum_us = get_u64(p);
	return p + 8;
}

int
frame_put_stats(struct buf *b, const struct frame_stats *st)
{
	const uint64_t v[11] = { st->users, st->alarms, st->tombstones, st->bytes, st->msgs,
	    st->map_size, st->commits, st->digests, st->digest_parts, st->digest_bytes, st->overlimit };
	uint8_t *p;

	if ((p = frame_begin(b, FRAME_STATS, 0, FRAME_STATS_LEN)) == NULL)
		return -1;
	for (int i = 0; i < 11; i++, p += 8)
		put_u64(p, v[i]);
	p = put_histo(p, &st->commit_latency);
	p = put_histo(p, &st->digest_latency);
	put_u64(p, st->digests_fenced);
	put_u64(p + 8, st->digest_msgs_resent);
	return 0;
}

/*
 * The 40-byte body of older workers, the one up to the histograms, the
 * one up to digests_fenced, or the whole one: nothing in between.
 */
int
frame_get_stats(const struct frame *f, struct frame_stats *st)
{
	uint64_t *v[11] = { &st->users, &st->alarms, &st->tombstones, &st->bytes, &st->msgs,
	    &st->map_size, &st->commits, &st->digests, &st->digest_parts, &st->digest_bytes,
	    &st->overlimit };
	const uint8_t *p = f->body;

	if (f->type != FRAME_STATS || (f->body_len != 40 && f->body_len != FRAME_STATS_LEN_HISTO &&
	    f->body_len != FRAME_STATS_LEN_FENCED && f->body_len != FRAME_STATS_LEN))
		return -1;
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < (f->body_len == 40 ? 5 : 11); i++, p += 8)
		*v[i] = get_u64(p);
	if (f->body_len == 40)
		return 0;
	p = get_histo(p, &st->commit_latency);
	p = get_histo(p, &st->digest_latency);
	if (f->body_len >= FRAME_STATS_LEN_FENCED)
		st->digests_fenced = get_u64(p);
	if (f->body_len == FRAME_STATS_LEN)
		st->digest_msgs_resent = get_u64(p + 8);
	return 0;
}

int
frame_put_progress(struct buf *b, const struct frame_progress *pr)
{
	uint8_t *p;

	if ((p = frame_begin(b, FRAME_PROGRESS, 0, 32)) == NULL)
		return -1;
	put_u64(p, pr->stores_done);
	put_u64(p + 8, pr->stores);
	put_u64(p + 16, pr->users_moved);
	put_u64(p + 24, pr->users);
	return 0;
}

int
frame_get_progress(const struct frame *f, struct frame_progress *pr)
{
	if (f->type != FRAME_PROGRESS || f->body_len != 32)
		return -1;
	pr->stores_done = get_u64(f->body);
	pr->stores = get_u64(f->body + 8);
	pr->users_moved = get_u64(f->body + 16);
	pr->users = get_u64(f->body + 24);
	return 0;
}
