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

static char proc_self[PATH_MAX];

int
proc_init(void)
{
	ssize_t n = readlink("/proc/self/exe", proc_self, sizeof(proc_self) - 1);

	if (n <= 0) {
		log_error("readlink /proc/self/exe");
		return -1;
	}
	proc_self[n] = '\0';
	return 0;
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
	/* Descriptors cnats opened without O_CLOEXEC must not leak into workers. */
	syscall(SYS_close_range, FRAME_CHANNEL_FD + 1, ~0U, 0);
	execv(proc_self, argv);
	_exit(127);
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
