/*
 * log: one line per event on stderr, with timestamp (or, to the journal,
 * a priority prefix), level and role.
 *
 * Modelled on OpenBSD's log.c: log_warn() appends strerror(errno),
 * log_warnx() does not.  errno is preserved across every call so a caller
 * can log and then still inspect it.
 */
#ifndef LOG_H
#define LOG_H

#include <stdint.h>

enum log_level { LL_ERROR = 0, LL_WARN = 1, LL_INFO = 2, LL_DEBUG = 3 };

/*
 * Role appears in every line: "master", "worker 2/4", "reshard".  Each
 * process calls it first; it also looks whether stderr is the journal
 * (JOURNAL_STREAM names stderr's device and inode): then lines start with
 * a syslog priority ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug)
 * and carry no timestamp, so `journalctl -p warning` selects by level.
 */
void log_set_role(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_set_level(enum log_level level);
/* "error", "warn", "info", "debug"; returns 0 or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* + strerror */
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* + strerror */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Rate limiting for lines an outsider can trigger (bad input): at most
 * `burst` lines per second per limiter; the suppressed count is reported
 * on the next line that gets through.  A limiter is a value owned by the
 * caller, zero-initialised.
 */
struct log_limit {
	int64_t window_start_ms;
	uint32_t in_window;
	uint64_t suppressed;
};
void log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
