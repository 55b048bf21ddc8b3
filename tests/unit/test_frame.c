/* Framing between supervisor and workers, the output queue, and ack-subject parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>

#include "../../common/frame.h"
#include "../../supervisor/ackq.h"
#include "../../supervisor/jsack.h"
#include "../../supervisor/outq.h"

static struct alarm_msg
sample_update(void)
{
	struct alarm_msg m = {
		.kind = MSG_STATUS_CHANGED,
		.user = "10baeb6b-199f-4300-8db7-1acbe744e3fc", .user_len = 36,
		.alarm = "a\0b", .alarm_len = 3,
		.status = STATUS_CRITICAL,
		.changed_at = { 1629203639, 100000000, 180 },
	};
	return m;
}

static void
test_update_roundtrip(void **state)
{
	struct buf b = { 0 };
	struct alarm_msg in = sample_update(), out;
	struct frame f;
	const char *err;
	size_t used;

	(void)state;
	assert_int_equal(frame_put_update(&b, 42, &in), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(used, b.len);
	assert_int_equal(f.type, FRAME_UPDATE);
	assert_int_equal(f.id, 42);
	assert_int_equal(frame_get_update(&f, &out), 0);
	assert_int_equal(out.user_len, 36);
	assert_memory_equal(out.user, in.user, 36);
	assert_int_equal(out.alarm_len, 3);
	assert_memory_equal(out.alarm, "a\0b", 3);
	assert_int_equal(out.status, STATUS_CRITICAL);
	assert_int_equal(out.changed_at.sec, 1629203639);
	assert_int_equal(out.changed_at.nsec, 100000000);
	assert_int_equal(out.changed_at.off_min, 180);
	buf_free(&b);
}

static void
test_truncated_frames_wait(void **state)
{
	struct buf b = { 0 };
	struct alarm_msg in = sample_update();
	struct frame f;
	const char *err;
	size_t used;

	(void)state;
	assert_int_equal(frame_put_update(&b, 1, &in), 0);
	/* Every strict prefix asks for more bytes, never misparses. */
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(frame_next(b.data, n, &f, &used, &err), 0);
	buf_free(&b);
}

static void
test_bad_headers_rejected(void **state)
{
	uint8_t h[FRAME_HDR_LEN] = { 0 };
	struct frame f;
	const char *err;
	size_t used;
	uint32_t len;
	uint16_t type = FRAME_UPDATE;

	(void)state;
	len = 3; /* shorter than a header */
	memcpy(h, &len, 4);
	memcpy(h + 4, &type, 2);
	assert_int_equal(frame_next(h, sizeof(h), &f, &used, &err), -1);
	len = FRAME_MAX_LEN + 1; /* oversized: rejected before the body arrives */
	memcpy(h, &len, 4);
	assert_int_equal(frame_next(h, sizeof(h), &f, &used, &err), -1);
	len = FRAME_HDR_LEN;
	type = 999; /* unknown type */
	memcpy(h, &len, 4);
	memcpy(h + 4, &type, 2);
	assert_int_equal(frame_next(h, sizeof(h), &f, &used, &err), -1);
}

static void
test_bad_bodies_rejected(void **state)
{
	struct buf b = { 0 };
	struct alarm_msg in = sample_update(), out;
	struct frame f;
	const char *err;
	size_t used;

	(void)state;
	assert_int_equal(frame_put_update(&b, 1, &in), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	f.body_len -= 1; /* ID lengths no longer add up */
	assert_int_equal(frame_get_update(&f, &out), -1);
	f.body_len = 5;
	assert_int_equal(frame_get_update(&f, &out), -1);
	f.type = FRAME_DIGEST;
	assert_int_equal(frame_get_update(&f, &out), -1);
	buf_free(&b);
}

static void
test_digest_hello_stats(void **state)
{
	struct buf b = { 0 };
	struct frame f;
	const char *err, *user, *conf;
	size_t used, off = 0, ulen, clen;
	uint64_t seq;
	uint32_t slot, n;
	struct frame_stats st = { .users = 1, .alarms = 2, .tombstones = 3, .bytes = 4, .msgs = 5 }, st2;
	struct frame_progress pr = { 3, 8, 1000, 4000 }, pr2;

	(void)state;
	assert_int_equal(frame_put_digest(&b, 7, 99, "u1", 2), 0);
	assert_int_equal(frame_put_hello(&b, 2, 4, "x=1", 3), 0);
	assert_int_equal(frame_put_stats(&b, &st), 0);
	assert_int_equal(frame_put_progress(&b, &pr), 0);
	assert_int_equal(frame_next(b.data + off, b.len - off, &f, &used, &err), 1);
	assert_int_equal(frame_get_digest(&f, &seq, &user, &ulen), 0);
	assert_int_equal(f.id, 7);
	assert_int_equal(seq, 99);
	assert_int_equal(ulen, 2);
	assert_memory_equal(user, "u1", 2);
	off += used;
	assert_int_equal(frame_next(b.data + off, b.len - off, &f, &used, &err), 1);
	assert_int_equal(frame_get_hello(&f, &slot, &n, &conf, &clen), 0);
	assert_int_equal(slot, 2);
	assert_int_equal(n, 4);
	assert_int_equal(clen, 3);
	assert_memory_equal(conf, "x=1", 3);
	off += used;
	assert_int_equal(frame_next(b.data + off, b.len - off, &f, &used, &err), 1);
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_int_equal(frame_get_progress(&f, &pr2), -1);
	off += used;
	assert_int_equal(frame_next(b.data + off, b.len - off, &f, &used, &err), 1);
	assert_int_equal(f.type, FRAME_PROGRESS);
	assert_int_equal(frame_get_progress(&f, &pr2), 0);
	assert_int_equal(pr2.stores_done, 3);
	assert_int_equal(pr2.stores, 8);
	assert_int_equal(pr2.users_moved, 1000);
	assert_int_equal(pr2.users, 4000);
	off += used;
	assert_int_equal(off, b.len);
	buf_free(&b);
}

/* The extended STATS body, the 40-byte one of older workers, and a DIGEST with its receive time. */
static void
test_stats_versions_and_digest_time(void **state)
{
	struct buf b = { 0 };
	struct frame f;
	struct frame_stats st = { .users = 1, .msgs = 5, .map_size = 6, .commits = 7, .digests = 8,
	    .digest_parts = 9, .digest_bytes = 10, .overlimit = 11 }, st2;
	const char *err, *user;
	size_t used, ulen;
	uint64_t seq, old[5] = { 1, 2, 3, 4, 5 };
	uint8_t hdr[FRAME_HDR_LEN];

	(void)state;
	histo_observe(&st.commit_latency, 3000);
	histo_observe(&st.digest_latency, 40000000);
	assert_int_equal(frame_put_stats(&b, &st), 0);
	assert_int_equal(b.len, FRAME_HDR_LEN + FRAME_STATS_LEN);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_memory_equal(&st, &st2, sizeof(st));
	buf_reset(&b);

	assert_int_equal(frame_put(&b, FRAME_STATS, 0, old, sizeof(old)), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_int_equal(st2.msgs, 5);
	assert_int_equal(st2.commits, 0);
	assert_int_equal(histo_count(&st2.digest_latency), 0);
	f.body_len = 48;
	assert_int_equal(frame_get_stats(&f, &st2), -1);
	buf_reset(&b);

	assert_int_equal(frame_put_digest_at(&b, 3, 42, 1234567, 0, "user", 4), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_get_digest(&f, &seq, &user, &ulen), 0);
	assert_int_equal(seq, 42);
	assert_int_equal(ulen, 4);
	assert_memory_equal(user, "user", 4);
	assert_int_equal(frame_digest_received(&f), 1234567);
	buf_reset(&b);
	assert_int_equal(frame_put_digest(&b, 3, 42, "user", 4), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_digest_received(&f), 0);

	/* The flags belong to DIGEST alone, and no other flag is known. */
	memcpy(hdr, b.data, sizeof(hdr));
	hdr[6] = 4;
	assert_int_equal(frame_next(hdr, sizeof(hdr), &f, &used, &err), -1);
	buf_reset(&b);
	assert_int_equal(frame_put(&b, FRAME_STOP, 1, NULL, 0), 0);
	b.data[6] = FRAME_F_RECV_TIME;
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), -1);
	buf_free(&b);
}

/* A replayed DIGEST, a FENCE, and the STATS body of workers before digests_fenced. */
static void
test_replay_fence_and_fenced_stats(void **state)
{
	struct buf b = { 0 };
	struct frame f;
	struct frame_stats st = { .msgs = 5, .overlimit = 11, .digests_fenced = 12,
	    .digest_msgs_resent = 13 }, st2;
	const char *err, *user;
	size_t used, ulen;
	uint64_t seq;
	int64_t d;

	(void)state;
	assert_int_equal(frame_put_digest_at(&b, 3, 42, 1234567, FRAME_F_REPLAY, "user", 4), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(f.flags, FRAME_F_RECV_TIME | FRAME_F_REPLAY);
	assert_true(frame_digest_replay(&f));
	assert_int_equal(frame_get_digest(&f, &seq, &user, &ulen), 0);
	assert_int_equal(seq, 42);
	assert_int_equal(ulen, 4);
	assert_memory_equal(user, "user", 4);
	assert_int_equal(frame_digest_received(&f), 1234567);
	/* A replay without the receive time (written by nobody today) still decodes. */
	b.data[6] = FRAME_F_REPLAY;
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_true(frame_digest_replay(&f));
	assert_int_equal(frame_digest_received(&f), 0);
	buf_reset(&b);
	assert_int_equal(frame_put_digest_at(&b, 3, 42, 1, 0, "user", 4), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_false(frame_digest_replay(&f));
	/* Only the replay flag is the caller's to give. */
	assert_int_equal(frame_put_digest_at(&b, 3, 42, 1, FRAME_F_RECV_TIME, "user", 4), -1);
	assert_int_equal(frame_put_digest_at(&b, 3, 42, 1, 4, "user", 4), -1);
	buf_reset(&b);

	assert_int_equal(frame_put_fence(&b, 123456789), 0);
	assert_int_equal(frame_put_fence(&b, 0), 0);
	assert_int_equal(frame_put_fence(&b, -1), -1);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(f.type, FRAME_FENCE);
	assert_int_equal(f.id, 0);
	assert_int_equal(frame_get_fence(&f, &d), 0);
	assert_int_equal(d, 123456789);
	assert_false(frame_digest_replay(&f));
	assert_int_equal(frame_get_digest(&f, &seq, &user, &ulen), -1);
	assert_int_equal(frame_next(b.data + used, b.len - used, &f, &used, &err), 1);
	assert_int_equal(frame_get_fence(&f, &d), 0);
	assert_int_equal(d, 0);
	/* Exactly 8 bytes, never negative, no flags. */
	f.body_len = 7;
	assert_int_equal(frame_get_fence(&f, &d), -1);
	buf_reset(&b);
	assert_int_equal(frame_put(&b, FRAME_FENCE, 0, "\xff\xff\xff\xff\xff\xff\xff\xff", 8), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_get_fence(&f, &d), -1);
	b.data[6] = FRAME_F_REPLAY;
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), -1);
	buf_reset(&b);
	assert_int_equal(frame_put(&b, FRAME_STOP, 1, NULL, 0), 0);
	b.data[6] = FRAME_F_REPLAY;
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), -1);
	buf_reset(&b);

	/* digests_fenced, then digest_msgs_resent: a body that ends before one decodes it as 0. */
	assert_int_equal(frame_put_stats(&b, &st), 0);
	assert_int_equal(frame_next(b.data, b.len, &f, &used, &err), 1);
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_int_equal(st2.digests_fenced, 12);
	assert_int_equal(st2.digest_msgs_resent, 13);
	f.body_len = FRAME_STATS_LEN_FENCED;
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_int_equal(st2.digests_fenced, 12);
	assert_int_equal(st2.digest_msgs_resent, 0);
	f.body_len = FRAME_STATS_LEN_HISTO;
	assert_int_equal(frame_get_stats(&f, &st2), 0);
	assert_int_equal(st2.overlimit, 11);
	assert_int_equal(st2.digests_fenced, 0);
	f.body_len = FRAME_STATS_LEN_HISTO + 4;
	assert_int_equal(frame_get_stats(&f, &st2), -1);
	buf_free(&b);
}

static void
count_ref(void *ref, void *arg)
{
	(void)ref;
	(*(int *)arg)++;
}

static void
test_outq_rewind_resends_in_order(void **state)
{
	struct outq *q = outq_new(1 << 20);
	struct chan *c;
	int sv[2], acked = 0;
	uint8_t got[4096];
	ssize_t n;

	(void)state;
	assert_non_null(q);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_non_null(c = chan_new(sv[0]));
	for (uint64_t id = 1; id <= 3; id++) {
		assert_int_equal(frame_put(outq_tail(q), FRAME_STOP, id, NULL, 0), 0);
		assert_int_equal(outq_seal(q, id, &acked, 0), 0);
	}
	assert_int_equal(outq_send(q, c), 0);
	assert_int_equal(outq_unsent(q), 0);
	n = read(sv[1], got, sizeof(got));
	/* A STOP frame is its header alone: 16 bytes, the id at offset 8. */
	assert_int_equal(n, 3 * 16);
	/* Worker finished frame 1 only, then died. */
	assert_int_equal(outq_retire(q, 1, count_ref, &acked), 1);
	assert_int_equal(acked, 1);
	outq_rewind(q);
	assert_int_equal(outq_unsent(q), 2 * 16);
	assert_int_equal(outq_send(q, c), 0);
	n = read(sv[1], got, sizeof(got));
	assert_int_equal(n, 2 * 16);
	uint64_t id;
	memcpy(&id, got + 8, 8);
	assert_int_equal(id, 2);
	memcpy(&id, got + 16 + 8, 8);
	assert_int_equal(id, 3);
	/* An id beyond what was written cannot retire unwritten frames. */
	assert_int_equal(frame_put(outq_tail(q), FRAME_STOP, 4, NULL, 0), 0);
	assert_int_equal(outq_seal(q, 4, NULL, 0), 0);
	assert_int_equal(outq_retire(q, 10, count_ref, &acked), 2);
	assert_int_equal(outq_count(q), 1);
	outq_free(q, NULL);
	chan_free(c);
	close(sv[1]);
}

static int
walk_take(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg)
{
	uint64_t got;
	int *n = arg;

	/* Each entry's own frame: a STOP header carrying the entry's id. */
	assert_int_equal(len, 16);
	memcpy(&got, frame + 8, 8);
	assert_int_equal(got, id);
	if (*ref != NULL) {
		(*n)++;
		*ref = NULL;
	}
	return id == 5 ? 7 : 0;
}

/* Entries remember when they were queued; a walk sees each frame and may take its ref. */
static void
test_outq_walk_and_times(void **state)
{
	struct outq *q = outq_new(1 << 20);
	int dummy, taken = 0;

	(void)state;
	assert_int_equal(outq_oldest_ms(q), -1);
	assert_int_equal(outq_first_ref_ms(q, 0), -1);
	for (uint64_t id = 2; id <= 6; id++) {
		assert_int_equal(frame_put(outq_tail(q), FRAME_STOP, id, NULL, 0), 0);
		/* Entry 3 is a control frame: no ref. */
		assert_int_equal(outq_seal(q, id, id == 3 ? NULL : &dummy, (int64_t)id * 100), 0);
	}
	assert_int_equal(outq_oldest_ms(q), 200);
	assert_int_equal(outq_first_ref_ms(q, 0), 200);
	assert_int_equal(outq_first_ref_ms(q, 2), 400);
	assert_int_equal(outq_first_ref_ms(q, 6), -1);
	/* (2, 4]: entries 3 and 4; only 4 has a ref to take. */
	assert_int_equal(outq_walk(q, 2, 4, walk_take, &taken), 0);
	assert_int_equal(taken, 1);
	assert_int_equal(outq_first_ref_ms(q, 2), 500);
	/* A nonzero return stops the walk and comes back. */
	assert_int_equal(outq_walk(q, 0, UINT64_MAX, walk_take, &taken), 7);
	assert_int_equal(taken, 3);
	assert_int_equal(outq_first_ref_ms(q, 0), 600);
	outq_free(q, NULL);
}

/*
 * A frame composed outside the queue (a FENCE) may go out only where a
 * queued frame ends: outq_partial says how much of the one written in
 * part is left, outq_send_partial writes just that.
 */
static void
test_outq_partial_frame(void **state)
{
	struct outq *q = outq_new(1 << 20);
	static uint8_t body[3000], got[1 << 16];
	const size_t flen = FRAME_HDR_LEN + sizeof(body);
	int sv[2], sndbuf = 4096;
	struct chan *c;
	size_t total = 0;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	assert_non_null(c = chan_new(sv[0]));
	assert_int_equal(outq_partial(q), 0);
	for (uint64_t id = 1; id <= 40; id++) {
		assert_int_equal(frame_put(outq_tail(q), FRAME_CONFIG, id, body, sizeof(body)), 0);
		assert_int_equal(outq_seal(q, id, NULL, 0), 0);
	}
	/* A small socket buffer takes some frames and a piece of one. */
	assert_int_equal(outq_send(q, c), 0);
	total = 40 * flen - outq_unsent(q);
	assert_true(total > 0 && total < 40 * flen);
	assert_true(total % flen != 0);
	assert_int_equal(outq_partial(q), flen - total % flen);
	/* Make room, then finish that frame and no more. */
	while (outq_partial(q) > 0) {
		assert_true((n = read(sv[1], got, sizeof(got))) > 0);
		assert_int_equal(outq_send_partial(q, c), 0);
	}
	total = 40 * flen - outq_unsent(q);
	assert_int_equal(total % flen, 0);
	assert_true(outq_unsent(q) > 0);
	/* Retiring written frames keeps the positions right. */
	assert_int_equal(outq_retire(q, 2, NULL, NULL), 2);
	assert_int_equal(outq_partial(q), 0);
	while (outq_unsent(q) > 0) {
		assert_int_equal(outq_send(q, c), 0);
		if (outq_unsent(q) > 0 && outq_partial(q) > 0)
			assert_int_equal(outq_partial(q), flen - (40 * flen - outq_unsent(q)) % flen);
		assert_true(read(sv[1], got, sizeof(got)) > 0);
	}
	assert_int_equal(outq_partial(q), 0);
	outq_free(q, NULL);
	chan_free(c);
	close(sv[1]);
}

static void
test_outq_backpressure(void **state)
{
	struct outq *q = outq_new(64);

	(void)state;
	assert_true(outq_has_room(q, 1000)); /* empty: always room */
	assert_int_equal(frame_put(outq_tail(q), FRAME_CONFIG, 1, "0123456789012345678901234567890123456789", 40), 0);
	assert_int_equal(outq_seal(q, 1, NULL, 0), 0);
	assert_false(outq_has_room(q, 16));
	outq_free(q, NULL);
}

static void
test_jsack_parse(void **state)
{
	struct jsack_meta m;

	(void)state;
	assert_int_equal(jsack_parse("$JS.ACK.ALARMS.alarm-digest.1.42.40.1629203639000000000.7", &m), 0);
	assert_int_equal(m.stream_seq, 42);
	assert_int_equal(m.delivered, 1);
	assert_int_equal(m.consumer_seq, 40);
	assert_int_equal(jsack_parse("$JS.ACK.hub.ACCHASH.ALARMS.alarm-digest.3.1000.5.1629203639000000000.0.xyz", &m), 0);
	assert_int_equal(m.stream_seq, 1000);
	assert_int_equal(m.delivered, 3);
	assert_int_equal(m.consumer_seq, 5);
	assert_int_equal(jsack_parse("_INBOX.abc", &m), -1);
	assert_int_equal(jsack_parse("$JS.ACK.A.B.1.x.2.3.4", &m), -1);
	assert_int_equal(jsack_parse("$JS.ACK.A.B.1.2", &m), -1);
	assert_int_equal(jsack_parse(NULL, &m), -1);
}

static int released;

static void
count_release(void *ref)
{
	(void)ref;
	released++;
}

/* What ackq_advance handed out to ack, per lane (NULL: nothing). */
static void *acked[4];
static int nacked;

static void
take_ack(void *ref, int lane, uint64_t stream_seq, void *arg)
{
	(void)stream_seq;
	(void)arg;
	assert_true(lane >= 0 && lane < 4);
	assert_null(acked[lane]);
	acked[lane] = ref;
	nacked++;
}

/* The single ref ackq_advance gave to ack on lane 0, or NULL. */
static void *
advance0(struct ackq *q)
{
	memset(acked, 0, sizeof(acked));
	nacked = 0;
	ackq_advance(q, take_ack, NULL);
	assert_true(nacked <= 1);
	return acked[0];
}

static void
test_ackq_floor(void **state)
{
	struct ackq *q = ackq_new(count_release, 1);
	int a, b, c, d;
	uint64_t ha, hb, hc, hd;

	(void)state;
	released = 0;
	ha = ackq_push(q, &a, 10, 0, 0);
	hb = ackq_push(q, &b, 12, 0, 0);
	hc = ackq_push(q, &c, 11, 0, 1);   /* a dead-lettered message: done on arrival */
	hd = ackq_push(q, &d, 13, 0, 0);
	(void)hc;
	/* Done out of order: the floor waits for the first. */
	ackq_done(q, hb);
	assert_null(advance0(q));
	ackq_done(q, ha);
	/* Prefix a, b, c: ack the largest stream sequence (b: 12), release the rest. */
	assert_ptr_equal(advance0(q), &b);
	assert_int_equal(released, 2);
	assert_int_equal(ackq_count(q), 1);
	ackq_done(q, hd);
	ackq_done(q, ha);  /* stale handle: ignored */
	assert_ptr_equal(advance0(q), &d);
	assert_int_equal(ackq_count(q), 0);
	ackq_free(q);
}

/* Cluster mode: one AckAll per consumer (lane), each naming that lane's largest sequence. */
static void
test_ackq_lanes(void **state)
{
	struct ackq *q = ackq_new(count_release, 4);
	int r[6];
	uint64_t h[6];

	(void)state;
	released = 0;
	h[0] = ackq_push(q, &r[0], 5, 1, 0);
	h[1] = ackq_push(q, &r[1], 6, 3, 0);
	h[2] = ackq_push(q, &r[2], 7, 1, 0);
	h[3] = ackq_push(q, NULL, 8, 2, 1);
	h[4] = ackq_push(q, &r[4], 9, 3, 0);
	h[5] = ackq_push(q, &r[5], 10, 2, 0);
	for (int i = 0; i < 5; i++)
		ackq_done(q, h[i]);
	memset(acked, 0, sizeof(acked));
	nacked = 0;
	assert_int_equal(ackq_advance(q, take_ack, NULL), 2);
	assert_ptr_equal(acked[1], &r[2]);
	assert_ptr_equal(acked[3], &r[4]);
	assert_null(acked[2]);
	assert_int_equal(released, 2);   /* r[0] and r[1]: covered by their lane's ack */
	ackq_done(q, h[5]);
	memset(acked, 0, sizeof(acked));
	nacked = 0;
	assert_int_equal(ackq_advance(q, take_ack, NULL), 1);
	assert_ptr_equal(acked[2], &r[5]);
	ackq_free(q);
}

static void
test_ackq_grows_and_clears(void **state)
{
	struct ackq *q = ackq_new(count_release, 1);
	static int refs[10000];
	uint64_t h[10000];

	(void)state;
	released = 0;
	for (int i = 0; i < 10000; i++)
		h[i] = ackq_push(q, &refs[i], (uint64_t)i + 1, 0, 0);
	/* Handles stay valid across growth. */
	for (int i = 9999; i >= 1; i--)
		ackq_done(q, h[i]);
	assert_null(advance0(q));
	ackq_done(q, h[0]);
	assert_ptr_equal(advance0(q), &refs[9999]);
	assert_int_equal(released, 9999);
	for (int i = 0; i < 5; i++)
		ackq_push(q, &refs[i], 1, 0, 0);
	ackq_unpush(q);
	assert_int_equal(ackq_count(q), 4);
	ackq_clear(q);
	assert_int_equal(released, 9999 + 4);
	ackq_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_roundtrip),
		cmocka_unit_test(test_truncated_frames_wait),
		cmocka_unit_test(test_bad_headers_rejected),
		cmocka_unit_test(test_bad_bodies_rejected),
		cmocka_unit_test(test_digest_hello_stats),
		cmocka_unit_test(test_stats_versions_and_digest_time),
		cmocka_unit_test(test_replay_fence_and_fenced_stats),
		cmocka_unit_test(test_outq_rewind_resends_in_order),
		cmocka_unit_test(test_outq_partial_frame),
		cmocka_unit_test(test_outq_backpressure),
		cmocka_unit_test(test_outq_walk_and_times),
		cmocka_unit_test(test_jsack_parse),
		cmocka_unit_test(test_ackq_floor),
		cmocka_unit_test(test_ackq_lanes),
		cmocka_unit_test(test_ackq_grows_and_clears),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
