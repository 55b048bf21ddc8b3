#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Process-wide logging settings: set once per process, read everywhere. */
static char log_role[64] = "main";
static enum log_level log_level = LL_INFO;
/* stderr is the journal: lines carry a syslog priority and no timestamp of their own. */
static int log_journal;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/*
 * systemd sets JOURNAL_STREAM=DEV:INO for the stream it connects to
 * stderr; comparing it with stderr itself tells a redirect (2>file under
 * systemd) apart from the journal, as sd_journal_stream_fd(3) advises.
 */
static int
log_stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	if (env == NULL || sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_set_role(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(log_role, sizeof(log_role), fmt, ap);
	va_end(ap);
	log_journal = log_stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

static void
log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char msg[1024], line[1280];
	struct timespec ts;
	struct tm tm;
	int n;

	/* SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG of sd-daemon.h, by level. */
	static const char prio[] = { '3', '4', '6', '7' };

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_journal) {
		/* The journal stamps each line itself; a second time would only be noise. */
		if (errnum != 0)
			n = snprintf(line, sizeof(line), "<%c>alarm-supervisor[%ld] %s: %s: %s: %s\n",
			    prio[level], (long)getpid(), log_role, level_names[level], msg,
			    strerror(errnum));
		else
			n = snprintf(line, sizeof(line), "<%c>alarm-supervisor[%ld] %s: %s: %s\n",
			    prio[level], (long)getpid(), log_role, level_names[level], msg);
		goto write;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (errnum != 0)
		n = snprintf(line, sizeof(line),
		    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ alarm-supervisor[%ld] %s: %s: %s: %s\n",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec, ts.tv_nsec / 1000000, (long)getpid(), log_role,
		    level_names[level], msg, strerror(errnum));
	else
		n = snprintf(line, sizeof(line),
		    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ alarm-supervisor[%ld] %s: %s: %s\n",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec, ts.tv_nsec / 1000000, (long)getpid(), log_role,
		    level_names[level], msg);
write:
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write(2) per line so lines from many processes never interleave. */
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

static void __attribute__((format(printf, 2, 3)))
log_plain(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, 0, fmt, ap);
	va_end(ap);
}

#define LOG_BODY(level, errnum)                     \
	do {                                        \
		int saved = errno;                  \
		va_list ap;                         \
		va_start(ap, fmt);                  \
		log_vwrite(level, errnum, fmt, ap); \
		va_end(ap);                         \
		errno = saved;                      \
	} while (0)

void log_error(const char *fmt, ...) { LOG_BODY(LL_ERROR, saved); }
void log_errorx(const char *fmt, ...) { LOG_BODY(LL_ERROR, 0); }
void log_warn(const char *fmt, ...) { LOG_BODY(LL_WARN, saved); }
void log_warnx(const char *fmt, ...) { LOG_BODY(LL_WARN, 0); }
void log_info(const char *fmt, ...) { LOG_BODY(LL_INFO, 0); }
void log_debug(const char *fmt, ...) { LOG_BODY(LL_DEBUG, 0); }

void
log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
	enum { BURST = 10 };
	struct timespec ts;
	int64_t now_ms;
	int saved = errno;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now_ms - lim->window_start_ms >= 1000) {
		lim->window_start_ms = now_ms;
		lim->in_window = 0;
	}
	if (lim->in_window >= BURST) {
		lim->suppressed++;
		errno = saved;
		return;
	}
	lim->in_window++;
	if (lim->suppressed > 0) {
		log_plain(level, "%llu similar lines suppressed in the last second",
		    (unsigned long long)lim->suppressed);
		lim->suppressed = 0;
	}
	va_start(ap, fmt);
	log_vwrite(level, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}
