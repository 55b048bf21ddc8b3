/* Unit tests for common/log.c: the line format, on a terminal or file and to the journal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * Log `n` lines with stderr sent to a fresh temp file; JOURNAL_STREAM names
 * that file (journal), another file, or nothing.  Returns what was written.
 */
enum stream { TO_JOURNAL, TO_OTHER, NO_ENV };

static char *
logged(enum stream how)
{
	char path[] = "/tmp/test_log.XXXXXX", env[64];
	static char out[4096];
	struct stat st;
	int fd, saved;
	ssize_t n;

	assert_true((fd = mkstemp(path)) != -1);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino + (how == TO_OTHER));
	if (how == NO_ENV)
		assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
	else
		assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
	assert_true((saved = dup(STDERR_FILENO)) != -1);
	assert_true(dup2(fd, STDERR_FILENO) != -1);
	/* Each process names its role first; that is when the journal is detected. */
	log_set_role("worker %d/%d", 2, 4);
	log_set_level(LL_INFO);
	log_errorx("e %d", 1);
	log_warnx("w");
	log_info("i");
	log_debug("d (filtered out)");
	assert_true(dup2(saved, STDERR_FILENO) != -1);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	assert_true(n > 0);
	out[n] = '\0';
	unsetenv("JOURNAL_STREAM");
	return out;
}

/* Priorities of sd-daemon.h (SD_ERR 3, SD_WARNING 4, SD_INFO 6), no timestamp. */
static void
test_journal(void **state)
{
	char expect[512];
	long pid = (long)getpid();
	(void)state;

	snprintf(expect, sizeof(expect),
	    "<3>alarm-supervisor[%ld] worker 2/4: error: e 1\n"
	    "<4>alarm-supervisor[%ld] worker 2/4: warn: w\n"
	    "<6>alarm-supervisor[%ld] worker 2/4: info: i\n", pid, pid, pid);
	assert_string_equal(logged(TO_JOURNAL), expect);
}

/* JOURNAL_STREAM naming another stream (stderr redirected under systemd), or none: timestamps. */
static void
test_not_journal(void **state)
{
	const enum stream hows[] = { TO_OTHER, NO_ENV };
	(void)state;

	for (size_t i = 0; i < sizeof(hows) / sizeof(hows[0]); i++) {
		char *out = logged(hows[i]), *line = out;
		int lines = 0;

		for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++) {
			assert_true(nl - line > 25);
			/* 2026-11-30T03:29:36.123Z alarm-supervisor[...] */
			assert_true(line[4] == '-' && line[10] == 'T' && line[23] == 'Z' && line[24] == ' ');
			assert_true(line[0] != '<');
		}
		assert_int_equal(lines, 3);
		assert_non_null(strstr(out, " alarm-supervisor["));
		assert_non_null(strstr(out, "] worker 2/4: warn: w\n"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal),
		cmocka_unit_test(test_not_journal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
