/* Unit tests for common/layout.c: the state directory's LAYOUT file and worker-N paths. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"

#define SCRATCH_NAME "test_layout"
#include "scratch.h"

static void
put_file(const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void
test_paths(void **state)
{
	char p[64], small[12];
	(void)state;

	assert_int_equal(layout_path(p, sizeof(p), "/var/lib/x", "LAYOUT"), 0);
	assert_string_equal(p, "/var/lib/x/LAYOUT");
	assert_int_equal(layout_slot_path(p, sizeof(p), "/s", 7, NULL), 0);
	assert_string_equal(p, "/s/worker-7");
	assert_int_equal(layout_slot_path(p, sizeof(p), "/s", 12, "worker.lock"), 0);
	assert_string_equal(p, "/s/worker-12/worker.lock");
	/* Too long is an error, never a silently cut path. */
	assert_int_equal(layout_slot_path(small, sizeof(small), "/s", 7, NULL), 0);
	assert_int_equal(layout_slot_path(small, sizeof(small), "/state", 7, NULL), -1);
	assert_int_equal(layout_path(small, sizeof(small), "/state", "LAYOUT"), -1);
}

/* Spill file names: written zero-padded, read back exactly, nothing else taken for one. */
static void
test_spill_names(void **state)
{
	static const char *const not_spill[] = {
		"spill-1", "spill-1.", "spill-.5", "spill-1.5.tmp", "spill-1.-5", "spill--1.5",
		"spill-+1.5", "spill-1.+5", "spill-4096.1", "spill-1.18446744073709551616",
		"worker-1", "xspill-1.5", "spill-1.5 ",
	};
	char p[64];
	uint64_t seq;
	int slot;
	(void)state;

	assert_int_equal(layout_spill_path(p, sizeof(p), "/s", 3, 42), 0);
	assert_string_equal(p, "/s/spill-3.0000000042");
	assert_int_equal(layout_spill_parse("spill-3.0000000042", &slot, &seq), 1);
	assert_int_equal(slot, 3);
	assert_int_equal(seq, 42);
	assert_int_equal(layout_spill_parse("spill-4095.18446744073709551615", &slot, &seq), 1);
	assert_int_equal(slot, 4095);
	assert_true(seq == UINT64_MAX);
	for (size_t i = 0; i < sizeof(not_spill) / sizeof(not_spill[0]); i++)
		if (layout_spill_parse(not_spill[i], &slot, &seq) != 0)
			fail_msg("\"%s\" taken for a spill file", not_spill[i]);
	assert_int_equal(layout_spill_path(p, 16, "/state", 3, 42), -1);
}

/* A new directory is FRESH until LAYOUT is written; then only its own count matches. */
static void
test_fresh_then_written(void **state)
{
	char path[PATH_MAX];
	struct stat st;
	(void)state;

	assert_int_equal(layout_check(dir, 4), LAYOUT_FRESH);
	assert_int_equal(layout_count(dir), 0);
	assert_int_equal(layout_write(dir, 4), 0);
	assert_int_equal(layout_count(dir), 4);
	assert_int_equal(layout_check(dir, 4), LAYOUT_MATCH);
	assert_int_equal(layout_check(dir, 3), LAYOUT_DIFFERS);
	assert_int_equal(layout_write(dir, 3), 0);
	assert_int_equal(layout_check(dir, 3), LAYOUT_MATCH);
	snprintf(path, sizeof(path), "%s/LAYOUT.tmp", dir);
	assert_int_equal(stat(path, &st), -1);
	/* A missing directory is fresh too (the supervisor creates it). */
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(layout_check(path, 2), LAYOUT_FRESH);
}

/* Stores without a LAYOUT, or an unreadable LAYOUT, are never taken as a match. */
static void
test_stores_without_layout(void **state)
{
	char path[PATH_MAX];
	(void)state;

	snprintf(path, sizeof(path), "%s/worker-0", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(layout_check(dir, 1), LAYOUT_DIFFERS);
	put_file("LAYOUT", "garbage\n");
	assert_int_equal(layout_check(dir, 1), LAYOUT_DIFFERS);
	put_file("LAYOUT", "workers 0\n");
	assert_int_equal(layout_check(dir, 1), LAYOUT_DIFFERS);
	put_file("LAYOUT", "workers 1\n");
	assert_int_equal(layout_check(dir, 1), LAYOUT_MATCH);
}

static void
test_scan(void **state)
{
	static const char *const names[] = { "worker-10", "worker-2", "worker-0", "worker-x",
	    "worker-3.old", "workers", "worker--1", "worker-4096" };
	char path[PATH_MAX];
	int slots[8];
	(void)state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(mkdir(path, 0700), 0);
	}
	assert_int_equal(layout_scan(dir, slots, 8), 3);
	assert_int_equal(slots[0], 0);
	assert_int_equal(slots[1], 2);
	assert_int_equal(slots[2], 10);
	assert_int_equal(layout_scan(dir, slots, 1), 1);
}

/*
 * LAYOUT.tmp is opened with O_NOFOLLOW: a link planted there (pointing at
 * a file the service must never write, or at nothing yet) is refused, and
 * neither its target nor LAYOUT changes.
 */
static void
test_tmp_symlink_refused(void **state)
{
	char target[PATH_MAX], absent[PATH_MAX], tmp[PATH_MAX], buf[32] = "";
	FILE *f;
	(void)state;

	put_file("precious", "precious\n");
	snprintf(target, sizeof(target), "%s/precious", dir);
	snprintf(absent, sizeof(absent), "%s/absent", dir);
	snprintf(tmp, sizeof(tmp), "%s/LAYOUT.tmp", dir);
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(layout_write(dir, 4), -1);
	assert_non_null(f = fopen(target, "r"));
	assert_non_null(fgets(buf, sizeof(buf), f));
	assert_int_equal(fclose(f), 0);
	assert_string_equal(buf, "precious\n");
	assert_int_equal(layout_count(dir), 0);

	assert_int_equal(unlink(tmp), 0);
	assert_int_equal(symlink(absent, tmp), 0);
	assert_int_equal(layout_write(dir, 4), -1);
	assert_int_equal(access(absent, F_OK), -1);
	assert_int_equal(layout_count(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_spill_names),
		cmocka_unit_test_setup_teardown(test_fresh_then_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stores_without_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmp_symlink_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
