/*
 * tap: TAP-like result reporting shared by itest and faulttest.  Prints
 * "ok N - name" / "not ok N - name: reason" (N counts every result), and
 * at the end "PROG: P passed, F failed".  Safe from any thread.
 */
#ifndef TAP_H
#define TAP_H

void tap_ok(const char *name);
void tap_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ok / not ok from a 0 / -1 result, the reason taken from harness_err(). */
void tap_report(const char *name, int rc);
int tap_failures(void);
/*
 * For the watchdog: one last "not ok" for PROG, then the totals, with
 * write(2) only (main may hold stdio locks).
 */
void tap_abort(const char *prog, const char *why);
/* "PROG: P passed, F failed"; returns the exit status: 0 only when F == 0. */
int tap_finish(const char *prog);
/*
 * Teardown check: "not ok TAG/sanitizers" when the service log at
 * log_path holds a sanitizer report (at most `excerpt` chars of it quoted).
 */
void tap_check_sanitizers(const char *tag, const char *log_path, int excerpt);

#endif
