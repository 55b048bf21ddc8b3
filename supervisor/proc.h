/*
 * proc: starting child processes from the (threaded) supervisor.
 *
 * cnats runs threads, so a forked child may hold a lock some other thread
 * owned at fork time: between fork and exec it only calls async-signal-
 * safe functions.  Children are this same binary, re-executed with a role
 * flag, and find their channel on a fixed descriptor.
 */
#ifndef PROC_H
#define PROC_H

#include <sys/types.h>

/* Remember /proc/self/exe; call once at start.  0 or -1. */
int proc_init(void);

/*
 * fork + exec this binary (/proc/self/exe, read by proc_init) with argv
 * (argv[0] included, NULL-terminated).
 * chan_fd, if >= 0, becomes FRAME_CHANNEL_FD in the child.  The child gets
 * an empty signal mask and SIGTERM when the supervisor dies.  Returns the
 * pid, or -1 (logged).
 */
pid_t proc_spawn(char *const argv[], int chan_fd);

/* Describe a wait status: "exited with status 1", "killed by signal 9 (Killed)". */
const char *proc_status_str(int status, char *buf, size_t len);

#endif
