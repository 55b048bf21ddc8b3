/*
 * notify: tell a service manager (systemd, Type=notify) how the master is
 * doing, over the datagram protocol of sd_notify(3): one AF_UNIX datagram
 * of "KEY=VALUE\n" lines to the socket named by $NOTIFY_SOCKET.  No
 * libsystemd: the protocol is a documented, stable wire format and one
 * sendto(2) is all it takes.
 *
 * Without $NOTIFY_SOCKET every call does nothing, so the master calls
 * them unconditionally.  notify_open() reads and then unsets
 * NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, so the workers it
 * starts never speak for the service.  Call it before any thread exists
 * (unsetenv).  Sending is best effort: a manager that went away must
 * never stop the service, so failures are logged once and ignored.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct notify;

/* NULL only when out of memory (logged); a disabled handle otherwise. */
struct notify *notify_open(void);
void notify_close(struct notify *n);

/* A service manager listens ($NOTIFY_SOCKET was set and usable). */
bool notify_enabled(const struct notify *n);
/* READY=1 (with the current STATUS=). */
void notify_ready(struct notify *n);
/* RELOADING=1 and MONOTONIC_USEC=: a reload began; READY=1 ends it. */
void notify_reloading(struct notify *n);
/* STOPPING=1: shutdown began. */
void notify_stopping(struct notify *n);
/*
 * STATUS=text, the master's process title.  At most one a second unless
 * `force` (a phase change); an unchanged text is not sent again.
 */
void notify_status(struct notify *n, const char *text, bool force);
/*
 * WATCHDOG=1 when half of WATCHDOG_USEC passed since the last one.  Only
 * the main loop calls it, once per pass, so a stuck loop stops the pings
 * and the manager restarts us.
 */
void notify_watchdog(struct notify *n);
/* Milliseconds until the next watchdog ping is due; -1 when there is no watchdog. */
int notify_watchdog_due(const struct notify *n);

#endif
