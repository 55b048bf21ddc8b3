/*
 * tap: TAP result reporting shared by itest and faulttest.  A run declares
 * first how many checks it plans ("1..N"), then prints "ok N - name" /
 * "not ok N - name: reason" (N counts every result), and ends with
 * "PROG: P passed, F failed (N planned)".  A run passes only when it
 * planned at least one check, failed none, and reported exactly as many
 * as it planned: a check that silently did not run is a failure, and so
 * is a selection that checks nothing.  Safe from any thread.
 */
#ifndef TAP_H
#define TAP_H

/* Print the plan "1..planned"; call once, before any result. */
void tap_plan(int planned);
void tap_ok(const char *name);
void tap_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ok / not ok from a 0 / -1 result, the reason taken from harness_err(). */
void tap_report(const char *name, int rc);
int tap_failures(void);
/* Results reported so far (passed + failed): a scenario's own count is the difference. */
int tap_count(void);
/*
 * For the watchdog: one last "not ok" for PROG, then the totals, with
 * write(2) only (main may hold stdio locks).
 */
void tap_abort(const char *prog, const char *why);
/*
 * "PROG: P passed, F failed (N planned)", followed by why the run failed
 * when the count is off ("K planned checks did not run", "K more checks
 * than planned", "nothing was checked").  Returns the exit status: 0 only
 * when N > 0, F == 0 and P == N.
 */
int tap_finish(const char *prog);
/*
 * Teardown check: "not ok TAG/sanitizers" when the service log at
 * log_path holds a sanitizer report (at most `excerpt` chars of it quoted).
 */
void tap_check_sanitizers(const char *tag, const char *log_path, int excerpt);

#endif
