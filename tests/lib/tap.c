/*
 * tap: result reporting for the test programs (itest, faulttest).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tap.h"

static atomic_int n_passed, n_failed, n_points;

void
tap_ok(const char *name)
{
	atomic_fetch_add(&n_passed, 1);
	printf("ok %d - %s\n", atomic_fetch_add(&n_points, 1) + 1, name);
}

void
tap_fail(const char *name, const char *fmt, ...)
{
	char why[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* Reasons are one line: a TAP reader must not see a continuation as a result. */
	for (char *p = why; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	atomic_fetch_add(&n_failed, 1);
	printf("not ok %d - %s: %s\n", atomic_fetch_add(&n_points, 1) + 1, name, why);
}

void
tap_report(const char *name, int rc)
{
	if (rc == 0)
		tap_ok(name);
	else
		tap_fail(name, "%s", harness_err());
}

int
tap_failures(void)
{
	return atomic_load(&n_failed);
}

/* Runs on the watchdog thread while main may hold stdio locks: write(2) only. */
void
tap_abort(const char *prog, const char *why)
{
	char line[512];
	int n;

	n = snprintf(line, sizeof(line), "not ok %d - %s: %s\n%s: %d passed, %d failed\n",
	    atomic_load(&n_points) + 1, prog, why, prog, atomic_load(&n_passed),
	    atomic_load(&n_failed) + 1);
	if (n > 0)
		(void)!write(STDOUT_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
}

int
tap_finish(const char *prog)
{
	printf("%s: %d passed, %d failed\n", prog, atomic_load(&n_passed), atomic_load(&n_failed));
	return atomic_load(&n_failed) == 0 ? 0 : 1;
}

/* Any service process's report, a worker's too (it would not show in an exit status). */
void
tap_check_sanitizers(const char *tag, const char *log_path, int excerpt)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
		"runtime error:", "WARNING: ThreadSanitizer", NULL };
	char name[64];
	char *log = harness_read_file(log_path, NULL);

	if (log == NULL)
		return;
	for (int i = 0; marks[i] != NULL; i++) {
		const char *hit = strstr(log, marks[i]);

		if (hit != NULL) {
			snprintf(name, sizeof(name), "%s/sanitizers", tag);
			tap_fail(name, "service log has a sanitizer report: %.*s", excerpt, hit);
			break;
		}
	}
	free(log);
}
