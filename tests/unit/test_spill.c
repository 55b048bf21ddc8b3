/*
 * Unit tests for supervisor/spill.c: a slot's durable overflow.  Frames go
 * in, come out in order only once synced, survive a close and reopen (a
 * supervisor crash), lose only a torn tail, and their files go only when
 * every record in them was fed and reported done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/buf.h"
#include "../../common/frame.h"
#include "../../supervisor/spill.h"

#define SCRATCH_NAME "test_spill"
#include "scratch.h"

/* A CONFIG frame whose body is `n` bytes of the letter for `tag`, with id `tag`. */
static void
make_frame(struct buf *b, uint64_t tag, size_t n)
{
	char body[8192];

	assert_true(n <= sizeof(body));
	memset(body, 'a' + (int)(tag % 26), n);
	buf_reset(b);
	assert_int_equal(frame_put(b, FRAME_CONFIG, tag, body, n), 0);
}

static void
append(struct spill *sp, uint64_t tag, size_t n)
{
	struct buf b = { 0 };

	make_frame(&b, tag, n);
	assert_int_equal(spill_append(sp, b.data, b.len, (int64_t)tag * 10), 0);
	buf_free(&b);
}

/* The next record is frame `tag` of n body bytes; feed it as queue id `id`. */
static void
expect_next(struct spill *sp, uint64_t tag, size_t n, uint64_t id)
{
	const uint8_t *p;
	size_t len;
	int64_t at;
	struct buf b = { 0 };

	make_frame(&b, tag, n);
	assert_int_equal(spill_next(sp, &p, &len, &at), 1);
	assert_int_equal(len, b.len);
	/* Its routing time comes back, except from a file an earlier run left (checked there). */
	if (at != (int64_t)tag * 10)
		assert_true(at > 1000);
	assert_memory_equal(p, b.data, len);
	spill_fed(sp, id);
	buf_free(&b);
}

static int
count_files(int slot)
{
	char prefix[32];
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	snprintf(prefix, sizeof(prefix), "spill-%d.", slot);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* Records are fed only once synced, in order; the file goes when the worker has them all. */
static void
test_order_sync_retire(void **state)
{
	struct spill *sp = spill_open(dir, 0, 1 << 20);
	const uint8_t *p;
	int64_t at;
	size_t len;

	(void)state;
	assert_non_null(sp);
	assert_true(spill_empty(sp));
	assert_int_equal(spill_sync(sp), 0);
	append(sp, 1, 10);
	append(sp, 2, 300);
	append(sp, 3, 0);
	assert_int_equal(spill_unfed(sp), 3);
	/* Not durable yet: not to be fed, and no file before the first sync. */
	assert_int_equal(spill_next(sp, &p, &len, &at), 0);
	assert_int_equal(count_files(0), 0);
	assert_int_equal(spill_sync(sp), 1);
	assert_int_equal(count_files(0), 1);
	expect_next(sp, 1, 10, 100);
	expect_next(sp, 2, 300, 101);
	/* Newer than the fed ones, not synced: it waits. */
	append(sp, 4, 20);
	expect_next(sp, 3, 0, 102);
	assert_int_equal(spill_next(sp, &p, &len, &at), 0);
	assert_int_equal(spill_sync(sp), 1);
	expect_next(sp, 4, 20, 103);
	assert_int_equal(spill_unfed(sp), 0);
	/* The worker has them up to 102 only: the file stays. */
	spill_retire(sp, 102);
	assert_false(spill_empty(sp));
	assert_int_equal(count_files(0), 1);
	spill_retire(sp, 103);
	assert_true(spill_empty(sp));
	assert_int_equal(spill_bytes(sp), 0);
	assert_int_equal(count_files(0), 0);
	spill_close(sp);
}

/* After a crash every record left is fed again, in order; a torn tail is cut off. */
static void
test_reopen_and_torn_tail(void **state)
{
	char path[PATH_MAX];
	struct spill *sp = spill_open(dir, 1, 1 << 20);
	const uint8_t *p;
	int64_t at;
	size_t len;
	int fd;

	(void)state;
	assert_non_null(sp);
	append(sp, 5, 40);
	append(sp, 6, 50);
	assert_int_equal(spill_sync(sp), 1);
	expect_next(sp, 5, 40, 7);
	/* Appended but never synced (never acked): lost with the process, and that is right. */
	append(sp, 7, 60);
	spill_close(sp);
	assert_int_equal(count_files(1), 1);
	/* Half a record at the end, as a crash in the middle of a write leaves it. */
	snprintf(path, sizeof(path), "%s/spill-1.0000000001", dir);
	assert_true((fd = open(path, O_WRONLY | O_APPEND)) != -1);
	assert_int_equal(write(fd, "\x01\x02\x03\x04\x40\x00\x00\x00\x04", 9), 9);
	assert_int_equal(close(fd), 0);

	assert_non_null(sp = spill_open(dir, 1, 1 << 20));
	assert_int_equal(spill_scan(dir), 2);
	/* Fed and maybe done before the crash, but nobody knows: fed again (harmless). */
	assert_int_equal(spill_unfed(sp), 2);
	expect_next(sp, 5, 40, 1);
	expect_next(sp, 6, 50, 2);
	assert_int_equal(spill_next(sp, &p, &len, &at), 0);
	/* New appends go to a new file, after the adopted one. */
	append(sp, 8, 70);
	assert_int_equal(spill_sync(sp), 1);
	assert_int_equal(count_files(1), 2);
	expect_next(sp, 8, 70, 3);
	spill_retire(sp, 2);
	assert_int_equal(count_files(1), 1);
	spill_retire(sp, 3);
	assert_int_equal(count_files(1), 0);
	assert_true(spill_empty(sp));
	spill_close(sp);
	assert_int_equal(spill_scan(dir), 0);
}

/* A replayed DIGEST (cluster mode) keeps its flag through a spill and a restart. */
static void
test_replay_digest_kept(void **state)
{
	struct spill *sp = spill_open(dir, 2, 1 << 20);
	struct buf b = { 0 };
	struct frame f;
	const uint8_t *p;
	const char *err;
	int64_t at;
	size_t len, used;

	(void)state;
	assert_non_null(sp);
	assert_int_equal(frame_put_digest_at(&b, 9, 77, 1234, FRAME_F_REPLAY, "user", 4), 0);
	assert_int_equal(spill_append(sp, b.data, b.len, 5), 0);
	assert_int_equal(spill_sync(sp), 1);
	spill_close(sp);
	assert_non_null(sp = spill_open(dir, 2, 1 << 20));
	assert_int_equal(spill_next(sp, &p, &len, &at), 1);
	assert_int_equal(len, b.len);
	assert_memory_equal(p, b.data, len);
	assert_int_equal(frame_next(p, len, &f, &used, &err), 1);
	assert_true(frame_digest_replay(&f));
	assert_int_equal(frame_digest_received(&f), 1234);
	spill_fed(sp, 1);
	spill_retire(sp, 1);
	assert_true(spill_empty(sp));
	spill_close(sp);
	buf_free(&b);
}

/* Frames the queue already holds are written as fed; only while nothing waits to be fed. */
static void
test_fed_prefix(void **state)
{
	struct spill *sp = spill_open(dir, 2, 1 << 20);
	struct buf b = { 0 };
	const uint8_t *p;
	int64_t at;
	size_t len;

	(void)state;
	assert_non_null(sp);
	make_frame(&b, 9, 30);
	assert_int_equal(spill_append_fed(sp, b.data, b.len, 0, 40), 0);
	assert_int_equal(spill_append_fed(sp, b.data, b.len, 0, 41), 0);
	assert_int_equal(spill_unfed(sp), 0);
	append(sp, 10, 30);
	/* A queued frame after an unfed one would break the order. */
	assert_int_equal(spill_append_fed(sp, b.data, b.len, 0, 42), -1);
	assert_int_equal(spill_sync(sp), 1);
	expect_next(sp, 10, 30, 50);
	assert_int_equal(spill_next(sp, &p, &len, &at), 0);
	/* The copies were done at 41, the fed one at 50. */
	spill_retire(sp, 41);
	assert_false(spill_empty(sp));
	spill_retire(sp, 50);
	assert_true(spill_empty(sp));
	spill_close(sp);
	buf_free(&b);
}

/* Files roll over as they fill; each goes once it is done, the newest keeps the rest. */
static void
test_rollover_and_bound(void **state)
{
	struct spill *sp = spill_open(dir, 3, 64 << 20);
	uint64_t id = 0, files;
	const uint8_t *p;
	int64_t at;
	size_t len;

	(void)state;
	assert_non_null(sp);
	for (uint64_t i = 0; i < 3000; i++) {
		append(sp, i, 4096);
		if (i % 100 == 99)
			assert_int_equal(spill_sync(sp), 1);
	}
	assert_int_equal(spill_sync(sp), 0);
	files = (uint64_t)count_files(3);
	assert_true(files >= 2);
	for (uint64_t i = 0; i < 2500; i++)
		expect_next(sp, i, 4096, ++id);
	spill_retire(sp, id);
	assert_true((uint64_t)count_files(3) < files);
	assert_int_equal(spill_unfed(sp), 500);
	while (spill_next(sp, &p, &len, &at) == 1)
		spill_fed(sp, ++id);
	spill_retire(sp, id);
	assert_true(spill_empty(sp));
	assert_int_equal(count_files(3), 0);
	spill_close(sp);

	/* The bound: a spill holds at most max bytes (one record always fits when empty). */
	assert_non_null(sp = spill_open(dir, 4, 10000));
	assert_true(spill_has_room(sp, 20000));
	append(sp, 1, 4000);
	assert_true(spill_has_room(sp, 4000));
	append(sp, 2, 4000);
	assert_false(spill_has_room(sp, 4000));
	spill_set_max(sp, 0);
	/* 0: spilling is off. */
	assert_false(spill_has_room(sp, 1));
	spill_close(sp);
}

/* A file that is not a spill is never deleted (it might be a damaged one): moved aside, loudly. */
static void
test_not_a_spill_file(void **state)
{
	char path[PATH_MAX], bad[PATH_MAX + 8];
	struct spill *sp;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/spill-5.0000000003", dir);
	snprintf(bad, sizeof(bad), "%s.bad", path);
	assert_non_null(f = fopen(path, "w"));
	assert_true(fputs("not a spill at all", f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(sp = spill_open(dir, 5, 1 << 20));
	assert_int_equal(spill_unfed(sp), 0);
	assert_true(spill_empty(sp));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(access(bad, F_OK), 0);
	/* Its sequence is not reused for a new file either way: names differ. */
	append(sp, 1, 10);
	assert_int_equal(spill_sync(sp), 1);
	assert_int_equal(count_files(5), 2);
	spill_close(sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_sync_retire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_and_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fed_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollover_and_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_spill_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_digest_kept, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
