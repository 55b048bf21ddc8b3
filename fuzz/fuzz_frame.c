/*
 * fuzz_frame: the supervisor <-> worker frame decoder (common/frame.c) on
 * arbitrary bytes, as a reader would meet them on the channel.
 *
 * frame_next walks the buffer frame by frame; every frame_get_* decoder
 * runs on every frame, whatever its type, and must never read outside the
 * frame.  A body a decoder accepts is encoded again and must decode to the
 * same values.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"

#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "fuzz_frame: " __VA_ARGS__);            \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The one frame an encoder wrote into b. */
static void
reread(const struct buf *b, struct frame *f)
{
	const char *err = NULL;
	size_t used = 0;

	FUZZ_CHECK(frame_next(b->data, b->len, f, &used, &err) == 1 && used == b->len,
	    "an encoded frame does not read back whole (%s)", err != NULL ? err : "short");
}

static void
check_hello(const struct frame *f)
{
	struct buf b = { 0 };
	struct frame g;
	uint32_t slot, nslots, slot2, nslots2;
	const char *conf, *conf2;
	size_t conf_len, conf_len2;

	if (frame_get_hello(f, &slot, &nslots, &conf, &conf_len) != 0)
		return;
	FUZZ_CHECK(slot < nslots && conf_len == f->body_len - 8, "hello: slot %u of %u", slot, nslots);
	FUZZ_CHECK(frame_put_hello(&b, slot, nslots, conf, conf_len) == 0, "frame_put_hello failed");
	reread(&b, &g);
	FUZZ_CHECK(frame_get_hello(&g, &slot2, &nslots2, &conf2, &conf_len2) == 0 &&
	    slot2 == slot && nslots2 == nslots && conf_len2 == conf_len &&
	    memcmp(conf2, conf, conf_len) == 0, "hello does not survive a round trip");
	buf_free(&b);
}

static void
check_update(const struct frame *f)
{
	struct alarm_msg m, m2;
	struct buf b = { 0 };
	struct frame g;

	if (frame_get_update(f, &m) != 0)
		return;
	FUZZ_CHECK(m.user_len > 0 && m.alarm_len > 0 && m.status <= STATUS_CRITICAL &&
	    (const uint8_t *)m.alarm + m.alarm_len == f->body + f->body_len,
	    "update: IDs of %zu and %zu bytes in a body of %u", m.user_len, m.alarm_len,
	    (unsigned)f->body_len);
	FUZZ_CHECK(frame_put_update(&b, f->id, &m) == 0, "frame_put_update failed");
	reread(&b, &g);
	FUZZ_CHECK(g.id == f->id && frame_get_update(&g, &m2) == 0 &&
	    m2.user_len == m.user_len && memcmp(m2.user, m.user, m.user_len) == 0 &&
	    m2.alarm_len == m.alarm_len && memcmp(m2.alarm, m.alarm, m.alarm_len) == 0 &&
	    m2.status == m.status && m2.changed_at.sec == m.changed_at.sec &&
	    m2.changed_at.nsec == m.changed_at.nsec && m2.changed_at.off_min == m.changed_at.off_min,
	    "update does not survive a round trip");
	buf_free(&b);
}

static void
check_digest(const struct frame *f)
{
	struct buf b = { 0 };
	struct frame g;
	uint64_t seq, seq2;
	const char *user, *user2;
	size_t len, len2;

	/* With FRAME_F_RECV_TIME the receive time sits between the sequence and the user. */
	bool timed = (f->flags & FRAME_F_RECV_TIME) != 0;
	int64_t received = frame_digest_received(f);

	if (frame_get_digest(f, &seq, &user, &len) != 0)
		return;
	FUZZ_CHECK(len > 0 && len == f->body_len - (timed ? 16 : 8), "digest: user of %zu bytes", len);
	/* A replay is written with a receive time: without one, received is 0 either way. */
	FUZZ_CHECK((timed || frame_digest_replay(f) ? frame_put_digest_at(&b, f->id, seq, received,
	    f->flags & FRAME_F_REPLAY, user, len) :
	    frame_put_digest(&b, f->id, seq, user, len)) == 0, "frame_put_digest failed");
	reread(&b, &g);
	FUZZ_CHECK(frame_get_digest(&g, &seq2, &user2, &len2) == 0 && seq2 == seq &&
	    len2 == len && memcmp(user2, user, len) == 0 && frame_digest_received(&g) == received &&
	    frame_digest_replay(&g) == frame_digest_replay(f),
	    "digest does not survive a round trip");
	buf_free(&b);
}

static void
check_fence(const struct frame *f)
{
	struct buf b = { 0 };
	struct frame g;
	int64_t d, d2;

	if (frame_get_fence(f, &d) != 0)
		return;
	FUZZ_CHECK(d >= 0 && f->body_len == 8, "fence: deadline %lld in %u bytes", (long long)d,
	    (unsigned)f->body_len);
	FUZZ_CHECK(frame_put_fence(&b, d) == 0, "frame_put_fence failed");
	reread(&b, &g);
	FUZZ_CHECK(frame_get_fence(&g, &d2) == 0 && d2 == d, "fence does not survive a round trip");
	buf_free(&b);
}

static void
check_counters(const struct frame *f)
{
	struct frame_progress pr, pr2;
	struct frame_stats st, st2;
	struct buf b = { 0 };
	struct frame g;

	if (frame_get_stats(f, &st) == 0) {
		FUZZ_CHECK(frame_put_stats(&b, &st) == 0, "frame_put_stats failed");
		reread(&b, &g);
		FUZZ_CHECK(frame_get_stats(&g, &st2) == 0 && memcmp(&st, &st2, sizeof(st)) == 0,
		    "stats do not survive a round trip");
	}
	buf_reset(&b);
	if (frame_get_progress(f, &pr) == 0) {
		FUZZ_CHECK(frame_put_progress(&b, &pr) == 0, "frame_put_progress failed");
		reread(&b, &g);
		FUZZ_CHECK(frame_get_progress(&g, &pr2) == 0 && memcmp(&pr, &pr2, sizeof(pr)) == 0,
		    "progress does not survive a round trip");
	}
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	for (;;) {
		struct frame f;
		const char *err = NULL;
		size_t used = 0;
		int rc = frame_next(data + off, size - off, &f, &used, &err);

		if (rc == 0)
			break;
		if (rc == -1) {
			FUZZ_CHECK(err != NULL && *err != '\0', "protocol error without a reason");
			break;
		}
		FUZZ_CHECK(rc == 1 && used >= FRAME_HDR_LEN && used <= size - off &&
		    used == FRAME_HDR_LEN + (size_t)f.body_len && f.body == data + off + FRAME_HDR_LEN,
		    "frame_next: rc %d, %zu bytes used of %zu", rc, used, size - off);
		check_hello(&f);
		check_update(&f);
		check_digest(&f);
		check_fence(&f);
		check_counters(&f);
		off += used;
	}
	return 0;
}
