/*
 * Unit tests for common/lockfile.c: the lock is exclusive, carries the
 * holder's pid, is not inherited across exec, and a symbolic link at the
 * path is refused without touching whatever it points at.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lockfile.h"

#define SCRATCH_NAME "test_lockfile"
#include "scratch.h"

static void
read_text(const char *path, char *buf, size_t cap)
{
	FILE *f;

	buf[0] = '\0';
	assert_non_null(f = fopen(path, "r"));
	if (fgets(buf, (int)cap, f) == NULL)
		buf[0] = '\0';
	assert_int_equal(fclose(f), 0);
}

static void
test_exclusive_with_pid(void **state)
{
	char path[PATH_MAX], text[32], want[32];
	struct stat st;
	int fd;
	(void)state;

	snprintf(path, sizeof(path), "%s/x.lock", dir);
	assert_true((fd = lockfile_take(path, 0)) >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	read_text(path, text, sizeof(text));
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	assert_string_equal(text, want);
	/* A second taker fails, and leaves the holder's pid in place. */
	assert_int_equal(lockfile_take(path, 0), -1);
	read_text(path, text, sizeof(text));
	assert_string_equal(text, want);
	assert_int_equal(close(fd), 0);
	assert_true((fd = lockfile_take(path, 0)) >= 0);
	assert_int_equal(close(fd), 0);
}

/* O_NOFOLLOW: a link to a file is not followed, truncated or locked. */
static void
test_symlink_refused(void **state)
{
	char path[PATH_MAX], target[PATH_MAX], absent[PATH_MAX], text[32];
	FILE *f;
	(void)state;

	snprintf(path, sizeof(path), "%s/supervisor.lock", dir);
	snprintf(target, sizeof(target), "%s/precious", dir);
	snprintf(absent, sizeof(absent), "%s/absent", dir);
	assert_non_null(f = fopen(target, "w"));
	assert_true(fputs("precious\n", f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(lockfile_take(path, 0), -1);
	assert_int_equal(lockfile_take(path, 200), -1);
	read_text(target, text, sizeof(text));
	assert_string_equal(text, "precious\n");

	/* A dangling link does not create its target either. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(absent, path), 0);
	assert_int_equal(lockfile_take(path, 0), -1);
	assert_int_equal(access(absent, F_OK), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exclusive_with_pid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
