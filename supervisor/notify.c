#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "notify.h"

struct notify {
	int fd;                      /* -1: no manager to tell */
	struct sockaddr_un addr;
	socklen_t addr_len;
	int64_t watchdog_ms;         /* WATCHDOG_USEC in ms; 0: no watchdog */
	int64_t last_ping_ms;
	int64_t last_status_ms;
	char status[512];            /* last STATUS= sent */
	bool warned;                 /* a failed send was logged */
};

/* "@name" is an abstract socket (a leading NUL), as sd_notify reads it. */
static int
notify_addr(struct notify *n, const char *path)
{
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(n->addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
		log_errorx("NOTIFY_SOCKET=\"%s\" is not an absolute path or @abstract name "
		    "of at most %zu bytes; not notifying the service manager", path,
		    sizeof(n->addr.sun_path) - 1);
		return -1;
	}
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@')
		n->addr.sun_path[0] = '\0';
	n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
	return 0;
}

/* sd_watchdog_enabled(3): WATCHDOG_USEC set, and WATCHDOG_PID unset or ours. */
static int64_t
notify_watchdog_env(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (usec == NULL)
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno != 0 || end == usec || *end != '\0' || v == 0) {
		log_errorx("WATCHDOG_USEC=\"%s\" is not a positive number; no watchdog pings", usec);
		return 0;
	}
	if (pid != NULL) {
		long long p = strtoll(pid, &end, 10);
		if (end == pid || *end != '\0' || p != (long long)getpid())
			return 0;
	}
	return v / 1000 > 0 ? (int64_t)(v / 1000) : 1;
}

struct notify *
notify_open(void)
{
	struct notify *n;
	const char *path = getenv("NOTIFY_SOCKET");

	if ((n = calloc(1, sizeof(*n))) == NULL) {
		log_error("allocating the service manager notifier");
		return NULL;
	}
	n->fd = -1;
	if (path != NULL && notify_addr(n, path) == 0) {
		if ((n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
			log_error("socket for NOTIFY_SOCKET %s; not notifying the service manager", path);
		else if ((n->watchdog_ms = notify_watchdog_env()) > 0)
			log_info("service manager watchdog: %lld ms, pinging every %lld ms",
			    (long long)n->watchdog_ms, (long long)n->watchdog_ms / 2);
	}
	n->last_ping_ms = clock_mono_ms();
	/* Children must not speak for the service (nor inherit a watchdog that is not theirs). */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return n;
}

void
notify_close(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->fd != -1)
		close(n->fd);
	free(n);
}

static void
notify_send(struct notify *n, const char *msg)
{
	if (n == NULL || n->fd == -1)
		return;
	if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&n->addr,
	    n->addr_len) == -1 && !n->warned) {
		/*
		 * Once: a manager that is gone (or a reader that fell behind:
		 * MSG_DONTWAIT, the main loop never blocks here) must neither
		 * stop nor flood us.
		 */
		log_warn("notifying the service manager (\"%.*s\")", (int)strcspn(msg, "\n"), msg);
		n->warned = true;
	}
}

bool
notify_enabled(const struct notify *n)
{
	return n != NULL && n->fd != -1;
}

void
notify_ready(struct notify *n)
{
	char msg[600];

	if (n == NULL || n->fd == -1)
		return;
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", n->status);
	notify_send(n, msg);
}

void
notify_reloading(struct notify *n)
{
	struct timespec ts;
	char msg[96];

	if (n == NULL || n->fd == -1)
		return;
	/* systemd matches MONOTONIC_USEC against its own clock to order the reload. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
	notify_send(n, msg);
}

void
notify_stopping(struct notify *n)
{
	notify_send(n, "STOPPING=1");
}

void
notify_status(struct notify *n, const char *text, bool force)
{
	char msg[600];
	int64_t now;

	if (n == NULL || n->fd == -1 || strncmp(text, n->status, sizeof(n->status) - 1) == 0)
		return;
	now = clock_mono_ms();
	if (!force && now - n->last_status_ms < 1000)
		return;
	n->last_status_ms = now;
	snprintf(n->status, sizeof(n->status), "%s", text);
	snprintf(msg, sizeof(msg), "STATUS=%s", n->status);
	notify_send(n, msg);
}

void
notify_watchdog(struct notify *n)
{
	int64_t now;

	if (n == NULL || n->fd == -1 || n->watchdog_ms == 0)
		return;
	now = clock_mono_ms();
	if (now - n->last_ping_ms < n->watchdog_ms / 2)
		return;
	n->last_ping_ms = now;
	notify_send(n, "WATCHDOG=1");
}

int
notify_watchdog_due(const struct notify *n)
{
	int64_t left;

	if (n == NULL || n->fd == -1 || n->watchdog_ms == 0)
		return -1;
	left = n->last_ping_ms + n->watchdog_ms / 2 - clock_mono_ms();
	return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}
