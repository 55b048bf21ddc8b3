/* The channel over a real socketpair: reads in pieces, bad headers, EOF, a full socket, order. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/chan.h"
#include "../../common/frame.h"

struct pair {
	struct chan *a;   /* the end under test */
	int peer;         /* the other end, raw */
};

static int
pair_setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));
	int sv[2];

	if (p == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return -1;
	if ((p->a = chan_new(sv[0])) == NULL)
		return -1;
	p->peer = sv[1];
	*state = p;
	return 0;
}

static int
pair_teardown(void **state)
{
	struct pair *p = *state;

	chan_free(p->a);
	if (p->peer != -1)
		close(p->peer);
	free(p);
	return 0;
}

static void
write_all(int fd, const void *data, size_t len)
{
	assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* A 16-byte header, written by hand: the encoders never make a bad one. */
static void
put_header(uint8_t *h, uint32_t len, uint16_t type, uint64_t id)
{
	memset(h, 0, FRAME_HDR_LEN);
	memcpy(h, &len, 4);
	memcpy(h + 4, &type, 2);
	memcpy(h + 8, &id, 8);
}

static void
test_frame_split_byte_by_byte(void **state)
{
	struct pair *p = *state;
	struct buf b = { 0 };
	struct frame f;
	const char *err, *user;
	size_t ulen;
	uint64_t seq;

	assert_int_equal(frame_put_digest(&b, 7, 99, "u1", 2), 0);
	assert_int_equal(b.len, 26);
	for (size_t i = 0; i < 25; i++) {
		write_all(p->peer, b.data + i, 1);
		assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
		assert_int_equal(chan_buffered(p->a), i + 1);
		assert_int_equal(chan_next(p->a, &f, &err), 0);
	}
	write_all(p->peer, b.data + 25, 1);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.type, FRAME_DIGEST);
	assert_int_equal(f.id, 7);
	assert_int_equal(f.body_len, 10);
	assert_int_equal(frame_get_digest(&f, &seq, &user, &ulen), 0);
	assert_int_equal(seq, 99);
	assert_int_equal(ulen, 2);
	assert_memory_equal(user, "u1", 2);
	assert_int_equal(chan_pending(p->a), 26);
	assert_int_equal(chan_next(p->a, &f, &err), 0);
	chan_consume(p->a);
	assert_int_equal(chan_pending(p->a), 0);
	assert_int_equal(chan_buffered(p->a), 0);
	buf_free(&b);
}

static void
test_several_frames_in_one_read(void **state)
{
	struct pair *p = *state;
	struct buf b = { 0 };
	struct frame f;
	const char *err;

	assert_int_equal(frame_put(&b, FRAME_CONFIG, 1, "x=1", 3), 0);
	assert_int_equal(frame_put_digest(&b, 2, 5, "user", 4), 0);
	assert_int_equal(frame_put(&b, FRAME_STOP, 3, NULL, 0), 0);
	assert_int_equal(b.len, 19 + 28 + 16);
	write_all(p->peer, b.data, b.len);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_buffered(p->a), 63);

	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.type, FRAME_CONFIG);
	assert_int_equal(f.id, 1);
	assert_int_equal(f.body_len, 3);
	assert_memory_equal(f.body, "x=1", 3);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.type, FRAME_DIGEST);
	assert_int_equal(f.id, 2);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.type, FRAME_STOP);
	assert_int_equal(f.id, 3);
	assert_int_equal(f.body_len, 0);
	assert_int_equal(chan_next(p->a, &f, &err), 0);
	assert_int_equal(chan_pending(p->a), 63);
	buf_free(&b);
}

/* The worker's batch: frames taken stay until consumed, and a rewind gives them again. */
static void
test_rewind_and_consume(void **state)
{
	struct pair *p = *state;
	struct buf b = { 0 };
	struct frame f;
	const char *err;

	for (uint64_t id = 10; id <= 12; id++)
		assert_int_equal(frame_put(&b, FRAME_STOP, id, NULL, 0), 0);
	write_all(p->peer, b.data, b.len);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 11);
	chan_rewind(p->a);
	assert_int_equal(chan_pending(p->a), 0);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 10);
	chan_consume(p->a);
	assert_int_equal(chan_buffered(p->a), 32);
	/* More input arriving behind a pending frame leaves it where it was. */
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 11);
	write_all(p->peer, b.data, 16);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_pending(p->a), 16);
	assert_int_equal(chan_buffered(p->a), 48);
	chan_rewind(p->a);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 11);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 12);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 10);
	buf_free(&b);
}

/* One read at least, then a stop once a chunk waits beyond the pending frames. */
static void
test_fill_stops_at_chunk(void **state)
{
	struct pair *p = *state;
	uint8_t h[3 * FRAME_HDR_LEN];
	struct frame f;
	const char *err;

	for (int i = 0; i < 3; i++)
		put_header(h + i * FRAME_HDR_LEN, FRAME_HDR_LEN, FRAME_DONE, (uint64_t)i + 1);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(chan_fill(p->a, 32), CHAN_MORE);
	assert_int_equal(chan_buffered(p->a), 48);
	assert_int_equal(chan_fill(p->a, 32), CHAN_AGAIN);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 3);
}

static void
test_bad_length_rejected_before_body(void **state)
{
	struct pair *p = *state;
	uint8_t h[FRAME_HDR_LEN];
	struct frame f;
	const char *err = NULL;

	put_header(h, FRAME_MAX_LEN + 1, FRAME_UPDATE, 1);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	/* Only the header is there: rejected now, not after waiting for 4 MiB. */
	assert_int_equal(chan_buffered(p->a), 16);
	assert_int_equal(chan_next(p->a, &f, &err), -1);
	assert_string_equal(err, "frame length out of bounds");
	assert_int_equal(chan_pending(p->a), 0);
}

static void
test_short_length_rejected(void **state)
{
	struct pair *p = *state;
	uint8_t h[FRAME_HDR_LEN];
	struct frame f;
	const char *err = NULL;

	put_header(h, 15, FRAME_DONE, 1);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_next(p->a, &f, &err), -1);
	assert_string_equal(err, "frame length out of bounds");
}

/* The contrast for the two tests around it: a good header claiming a body waits for it. */
static void
test_good_header_waits_for_body(void **state)
{
	struct pair *p = *state;
	uint8_t h[FRAME_HDR_LEN];
	struct frame f;
	const char *err = NULL;

	put_header(h, 1000, FRAME_CONFIG, 1);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_next(p->a, &f, &err), 0);
	assert_null(err);
}

static void
test_unknown_type_rejected_before_body(void **state)
{
	struct pair *p = *state;
	uint8_t h[FRAME_HDR_LEN + 4];
	struct frame f;
	const char *err = NULL;

	put_header(h, 1000, 999, 1);
	memcpy(h + FRAME_HDR_LEN, "body", 4);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(chan_fill(p->a, 4096), CHAN_AGAIN);
	assert_int_equal(chan_buffered(p->a), 20);
	assert_int_equal(chan_next(p->a, &f, &err), -1);
	assert_string_equal(err, "unknown frame type");
}

static void
test_eof_after_frames(void **state)
{
	struct pair *p = *state;
	uint8_t h[2 * FRAME_HDR_LEN];
	struct frame f;
	const char *err;

	put_header(h, FRAME_HDR_LEN, FRAME_DONE, 41);
	put_header(h + FRAME_HDR_LEN, FRAME_HDR_LEN, FRAME_DONE, 42);
	write_all(p->peer, h, 21);  /* the second frame cut short by the close */
	close(p->peer);
	p->peer = -1;
	assert_int_equal(chan_fill(p->a, 4096), CHAN_EOF);
	assert_int_equal(chan_buffered(p->a), 21);
	/* What came before the EOF is still there to take. */
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.type, FRAME_DONE);
	assert_int_equal(f.id, 41);
	assert_int_equal(chan_next(p->a, &f, &err), 0);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_EOF);
}

/*
 * A peer that exits with bytes of ours unread resets the socket: what it
 * sent first is still read, then the reset reads as the EOF it is (a
 * worker stopping cleanly while a fence was on its way must not log a
 * read error).
 */
static void
test_reset_after_frames_is_eof(void **state)
{
	struct pair *p = *state;
	uint8_t h[FRAME_HDR_LEN];
	struct frame f;
	const char *err;

	put_header(h, FRAME_HDR_LEN, FRAME_DONE, 43);
	write_all(p->peer, h, sizeof(h));
	assert_int_equal(frame_put_fence(chan_out(p->a), 1), 0);
	assert_int_equal(chan_flush(p->a), 0);
	close(p->peer);   /* our fence unread: a reset, not a plain EOF */
	p->peer = -1;
	assert_int_equal(chan_fill(p->a, 4096), CHAN_EOF);
	assert_int_equal(chan_next(p->a, &f, &err), 1);
	assert_int_equal(f.id, 43);
	assert_int_equal(chan_fill(p->a, 4096), CHAN_EOF);
}

#define BIG_FRAMES 2000
#define BIG_BODY 1024

/* Read everything the peer can, checking each frame is the next one expected. */
static void
drain_in_order(struct chan *r, uint64_t *next_id)
{
	struct frame f;
	const char *err;
	int rc;

	assert_true(chan_fill(r, 65536) != -1);
	while ((rc = chan_next(r, &f, &err)) == 1) {
		assert_int_equal(f.id, *next_id);
		assert_int_equal(f.type, FRAME_CONFIG);
		assert_int_equal(f.body_len, BIG_BODY);
		assert_int_equal(f.body[0], (uint8_t)*next_id);
		assert_int_equal(f.body[BIG_BODY - 1], (uint8_t)*next_id);
		(*next_id)++;
	}
	assert_int_equal(rc, 0);
	chan_consume(r);
}

static void
test_flush_meets_full_socket(void **state)
{
	struct pair *p = *state;
	struct chan *r;
	uint8_t body[BIG_BODY];
	uint64_t next_id = 1;
	int rounds = 0;

	for (uint64_t id = 1; id <= BIG_FRAMES; id++) {
		memset(body, (int)(uint8_t)id, sizeof(body));
		assert_int_equal(frame_put(chan_out(p->a), FRAME_CONFIG, id, body, sizeof(body)), 0);
	}
	assert_int_equal(chan_queued(p->a), 2000 * 1040);
	/* 2 MB do not fit in the socket: the flush stops at EAGAIN and keeps the rest. */
	assert_int_equal(chan_flush(p->a), 0);
	assert_true(chan_queued(p->a) > 0);
	assert_true(chan_queued(p->a) < 2000 * 1040);
	assert_non_null(r = chan_new(p->peer));
	p->peer = -1;
	while (chan_queued(p->a) > 0) {
		drain_in_order(r, &next_id);
		assert_int_equal(chan_flush(p->a), 0);
		assert_true(++rounds < 100000);
	}
	while (next_id <= BIG_FRAMES) {
		drain_in_order(r, &next_id);
		assert_true(++rounds < 100000);
	}
	assert_int_equal(next_id, 2001);
	assert_int_equal(chan_buffered(r), 0);
	chan_free(r);
}

/* Bytes the caller keeps (outq's frames) go out only after the queue. */
static void
test_send_waits_for_queue(void **state)
{
	struct pair *p = *state;
	struct chan *r;
	struct buf held = { 0 };
	uint8_t body[BIG_BODY];
	uint64_t next_id = 1;
	size_t sent = 0;
	ssize_t n;
	int rounds = 0;

	for (uint64_t id = 1; id <= 1000; id++) {
		memset(body, (int)(uint8_t)id, sizeof(body));
		assert_int_equal(frame_put(chan_out(p->a), FRAME_CONFIG, id, body, sizeof(body)), 0);
	}
	for (uint64_t id = 1001; id <= BIG_FRAMES; id++) {
		memset(body, (int)(uint8_t)id, sizeof(body));
		assert_int_equal(frame_put(&held, FRAME_CONFIG, id, body, sizeof(body)), 0);
	}
	/* The queue alone fills the socket: nothing of the held bytes may go yet. */
	assert_int_equal(chan_send(p->a, held.data, held.len), 0);
	assert_true(chan_queued(p->a) > 0);
	assert_non_null(r = chan_new(p->peer));
	p->peer = -1;
	while (sent < held.len) {
		drain_in_order(r, &next_id);
		assert_true((n = chan_send(p->a, held.data + sent, held.len - sent)) >= 0);
		if (n > 0)
			assert_int_equal(chan_queued(p->a), 0);
		sent += (size_t)n;
		assert_true(++rounds < 100000);
	}
	while (next_id <= BIG_FRAMES) {
		drain_in_order(r, &next_id);
		assert_true(++rounds < 100000);
	}
	assert_int_equal(next_id, 2001);
	chan_free(r);
	buf_free(&held);
}

static void
test_flush_wait_and_peer_gone(void **state)
{
	struct pair *p = *state;
	uint8_t got[64];

	assert_int_equal(frame_put(chan_out(p->a), FRAME_DONE, 77, NULL, 0), 0);
	assert_int_equal(chan_flush_wait(p->a), 0);
	assert_int_equal(chan_queued(p->a), 0);
	assert_int_equal(read(p->peer, got, sizeof(got)), 16);
	assert_int_equal(got[8], 77);
	close(p->peer);
	p->peer = -1;
	assert_int_equal(frame_put(chan_out(p->a), FRAME_DONE, 78, NULL, 0), 0);
	assert_int_equal(chan_flush(p->a), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(chan_queued(p->a), 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_frame_split_byte_by_byte, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_several_frames_in_one_read, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_rewind_and_consume, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fill_stops_at_chunk, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_bad_length_rejected_before_body, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_short_length_rejected, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_good_header_waits_for_body, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_unknown_type_rejected_before_body, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_eof_after_frames, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_reset_after_frames_is_eof, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_flush_meets_full_socket, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_send_waits_for_queue, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_flush_wait_and_peer_gone, pair_setup, pair_teardown),
	};

	/* The worker and the master ignore SIGPIPE too: a dead peer is EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
