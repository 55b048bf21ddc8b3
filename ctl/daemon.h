/*
 * daemon: the commands that talk to the running supervisor by signal.
 * It is found through STATE_DIR/supervisor.lock (common/lockfile.h): the
 * lock is held for the supervisor's life and the file holds its pid.
 */
#ifndef CTL_DAEMON_H
#define CTL_DAEMON_H

#include "ctl.h"

/* SIGHUP, then wait for STATE_DIR/reload-status to advance and report it. */
extern const struct ctl_cmd daemon_reload_cmd;
/* SIGTERM, then wait for the pid to go and the lock to be free. */
extern const struct ctl_cmd daemon_stop_cmd;

#endif
