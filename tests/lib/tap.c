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

static atomic_int n_passed, n_failed, n_points, n_planned = -1;

void
tap_plan(int planned)
{
	atomic_store(&n_planned, planned);
	printf("1..%d\n", planned);
}

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

int
tap_count(void)
{
	return atomic_load(&n_points);
}

/*
 * The closing line; 0 when the run passed.  snprintf only (no stdio
 * stream), so the watchdog can use it too.
 */
static int
tally(const char *prog, int passed, int failed, char *line, size_t cap)
{
	int planned = atomic_load(&n_planned), ran = passed + failed;
	char why[128] = "";

	if (planned < 0)
		snprintf(why, sizeof(why), ": FAILED, no plan was declared");
	else if (ran == 0)
		snprintf(why, sizeof(why), ": FAILED, nothing was checked");
	else if (ran < planned)
		snprintf(why, sizeof(why), ": FAILED, %d planned checks did not run", planned - ran);
	else if (ran > planned)
		snprintf(why, sizeof(why), ": FAILED, %d more checks than planned", ran - planned);
	snprintf(line, cap, "%s: %d passed, %d failed (%d planned)%s\n", prog, passed, failed,
	    planned < 0 ? 0 : planned, why);
	return failed == 0 && why[0] == '\0' ? 0 : 1;
}

/* Runs on the watchdog thread while main may hold stdio locks: write(2) only. */
void
tap_abort(const char *prog, const char *why)
{
	char line[768], total[256];
	int n;

	(void)tally(prog, atomic_load(&n_passed), atomic_load(&n_failed) + 1, total, sizeof(total));
	n = snprintf(line, sizeof(line), "not ok %d - %s: %s\n%s", atomic_load(&n_points) + 1,
	    prog, why, total);
	if (n > 0)
		(void)!write(STDOUT_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
}

int
tap_finish(const char *prog)
{
	char line[256];
	int rc = tally(prog, atomic_load(&n_passed), atomic_load(&n_failed), line, sizeof(line));

	fputs(line, stdout);
	fflush(stdout);
	return rc;
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
