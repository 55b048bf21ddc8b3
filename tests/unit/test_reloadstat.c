/* Unit tests for common/reloadstat.c: a SIGHUP's outcome, written by the master, read by alarmctl. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reloadstat.h"

#define SCRATCH_NAME "test_reloadstat"
#include "scratch.h"

static struct reloadstat *
read_back(void)
{
	struct reloadstat *rs = NULL;
	char err[256];

	assert_int_equal(reloadstat_read(dir, &rs, err, sizeof(err)), 1);
	assert_non_null(rs);
	return rs;
}

/* No file yet: 0, not an error, so the first waiter starts from generation 0. */
static void
test_missing(void **state)
{
	struct reloadstat *rs = (void *)1;
	char err[256];
	(void)state;

	assert_int_equal(reloadstat_read(dir, &rs, err, sizeof(err)), 0);
	assert_null(rs);
	assert_string_equal(err, "");
}

static void
test_ok_round_trip(void **state)
{
	struct reloadstat *w, *r;
	const char *key, *was, *now;
	bool restart;
	(void)state;

	assert_non_null(w = reloadstat_new());
	reloadstat_change(w, "limits.max_alarms_per_user", "2", "10", false);
	reloadstat_change(w, "nats.consumer", "a", "b \"quoted\"", true);
	assert_int_equal(reloadstat_write(w, dir), 0);
	reloadstat_free(w);

	r = read_back();
	assert_int_equal(reloadstat_generation(r), 1);
	assert_int_equal(reloadstat_pid(r), (long)getpid());
	assert_true(reloadstat_ok(r));
	assert_string_equal(reloadstat_message(r), "");
	assert_int_equal(reloadstat_changes(r), 2);
	reloadstat_change_at(r, 0, &key, &was, &now, &restart);
	assert_string_equal(key, "limits.max_alarms_per_user");
	assert_string_equal(was, "2");
	assert_string_equal(now, "10");
	assert_false(restart);
	reloadstat_change_at(r, 1, &key, &was, &now, &restart);
	assert_string_equal(key, "nats.consumer");
	assert_string_equal(now, "b \"quoted\"");
	assert_true(restart);
	reloadstat_free(r);
}

/* Each write is one generation above the file's: a waiter sees its own answer advance. */
static void
test_generation_and_failure(void **state)
{
	struct reloadstat *w, *r;
	(void)state;

	for (int i = 0; i < 3; i++) {
		assert_non_null(w = reloadstat_new());
		reloadstat_change(w, "service.log_level", "info", "debug", false);
		if (i == 2)
			reloadstat_fail(w, "conf:9: [service] workers: \"banana\" is not an integer");
		assert_int_equal(reloadstat_write(w, dir), 0);
		reloadstat_free(w);
	}
	r = read_back();
	assert_int_equal(reloadstat_generation(r), 3);
	assert_false(reloadstat_ok(r));
	assert_string_equal(reloadstat_message(r), "conf:9: [service] workers: \"banana\" is not an integer");
	/* A refused file changed nothing. */
	assert_int_equal(reloadstat_changes(r), 0);
	reloadstat_free(r);
}

static void
test_garbage_is_an_error(void **state)
{
	struct reloadstat *rs = NULL, *w;
	char path[PATH_MAX], err[256];
	FILE *f;
	(void)state;

	snprintf(path, sizeof(path), "%s/%s", dir, RELOADSTAT_FILE);
	assert_non_null(f = fopen(path, "w"));
	assert_true(fputs("{\"generation\": \"x\"}", f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(reloadstat_read(dir, &rs, err, sizeof(err)), -1);
	assert_null(rs);
	assert_non_null(strstr(err, path));
	/* The master starts over at 1 rather than fail the reload. */
	assert_non_null(w = reloadstat_new());
	assert_int_equal(reloadstat_write(w, dir), 0);
	reloadstat_free(w);
	rs = read_back();
	assert_int_equal(reloadstat_generation(rs), 1);
	reloadstat_free(rs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ok_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generation_and_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_is_an_error, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
