#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "lockfile.h"
#include "log.h"

int
lockfile_take(const char *path, int wait_ms)
{
	char pid[32];
	int fd, waited = 0;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_error("open lock file %s", path);
		return -1;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			log_error("flock %s", path);
			close(fd);
			return -1;
		}
		if (waited >= wait_ms) {
			ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
			pid[n > 0 ? n : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			log_errorx("%s is held by another process (pid %s)", path, pid[0] ? pid : "unknown");
			close(fd);
			return -1;
		}
		if (waited % 1000 == 0)
			log_info("waiting for %s (held by a process that is still finishing)", path);
		nanosleep(&(struct timespec){ 0, 50 * 1000000 }, NULL);
		waited += 50;
	}
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, pid, (size_t)len, 0) != len)
		log_warn("writing pid to %s", path);
	return fd;
}
