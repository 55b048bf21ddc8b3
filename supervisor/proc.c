#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/frame.h"
#include "../common/log.h"
#include "proc.h"

extern char **environ;

static char proc_self[PATH_MAX];
/*
 * The binary workers are started from, opened while the supervisor is
 * still root: the user it then runs as may not reach the binary's
 * directory (a build tree under /root), and a package upgrade that
 * replaces the file must not start newer workers beside this supervisor.
 * Kept above FRAME_CHANNEL_FD, which a child's dup2 takes.
 */
static int proc_self_fd = -1;

int
proc_init(void)
{
	ssize_t n = readlink("/proc/self/exe", proc_self, sizeof(proc_self) - 1);
	int fd;

	if (n <= 0) {
		log_error("readlink /proc/self/exe");
		return -1;
	}
	proc_self[n] = '\0';
	if ((fd = open("/proc/self/exe", O_PATH | O_CLOEXEC)) == -1) {
		log_error("open /proc/self/exe (%s) to start workers from", proc_self);
		return -1;
	}
	proc_self_fd = fcntl(fd, F_DUPFD_CLOEXEC, FRAME_CHANNEL_FD + 1);
	if (proc_self_fd == -1)
		log_error("fcntl F_DUPFD_CLOEXEC of /proc/self/exe (%s)", proc_self);
	close(fd);
	return proc_self_fd == -1 ? -1 : 0;
}

/* Async-signal-safe: appends s to buf at *at, within cap. */
static void
proc_put(char *buf, size_t cap, size_t *at, const char *s)
{
	size_t n = strlen(s);

	if (n > cap - *at)
		n = cap - *at;
	memcpy(buf + *at, s, n);
	*at += n;
}

/* The child could not exec: say why on stderr, the supervisor's log (async-signal-safe). */
static void __attribute__((noreturn))
proc_exec_failed(const char *role, int err)
{
	char line[PATH_MAX + 200], num[16];
	/* The one failure this process can foresee; any other is its number alone. */
	const char *why = err == EACCES ? " (EACCES: the service's user may not execute it)" : "";
	size_t at = 0;
	int i = (int)sizeof(num);

	num[--i] = '\0';
	do
		num[--i] = (char)('0' + err % 10);
	while ((err /= 10) > 0 && i > 0);
	proc_put(line, sizeof(line), &at, "alarm-supervisor: error: starting ");
	proc_put(line, sizeof(line), &at, role);
	proc_put(line, sizeof(line), &at, ": exec ");
	proc_put(line, sizeof(line), &at, proc_self);
	proc_put(line, sizeof(line), &at, " failed with errno ");
	proc_put(line, sizeof(line), &at, num + i);
	proc_put(line, sizeof(line), &at, why);
	proc_put(line, sizeof(line), &at, "\n");
	(void)!write(STDERR_FILENO, line, at);
	_exit(127);
}

/* Runs in the forked child: async-signal-safe calls only. */
static void __attribute__((noreturn))
proc_child(char *const argv[], int chan_fd, pid_t parent)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	/* No orphans: if the supervisor dies, so do we (the channel EOF is the main path). */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(126);
	if (chan_fd >= 0) {
		if (chan_fd == FRAME_CHANNEL_FD) {
			if (fcntl(chan_fd, F_SETFD, 0) == -1)
				_exit(126);
		} else if (dup2(chan_fd, FRAME_CHANNEL_FD) == -1) {
			_exit(126);
		}
	}
	/*
	 * Descriptors cnats opened without O_CLOEXEC must not leak into
	 * workers; proc_self_fd is close-on-exec.
	 */
	if (proc_self_fd > FRAME_CHANNEL_FD + 1)
		syscall(SYS_close_range, FRAME_CHANNEL_FD + 1, proc_self_fd - 1, 0);
	syscall(SYS_close_range, proc_self_fd + 1, ~0U, 0);
	fexecve(proc_self_fd, argv, environ);
	proc_exec_failed(argv[1] != NULL ? argv[1] + strspn(argv[1], "-") : argv[0], errno);
}

pid_t
proc_spawn(char *const argv[], int chan_fd)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid == -1) {
		log_error("fork for %s", argv[1] ? argv[1] : argv[0]);
		return -1;
	}
	if (pid == 0)
		proc_child(argv, chan_fd, parent);
	return pid;
}

const char *
proc_status_str(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "changed state 0x%x", (unsigned)status);
	return buf;
}
