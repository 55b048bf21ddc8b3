/*
 * Built on libbsd's flopen(3), which opens and flocks in one call and
 * starts over if the file is unlinked or replaced between the two, and
 * passes our open flags through: O_NOFOLLOW refuses a symlink at the path
 * (ELOOP), O_NONBLOCK asks for LOCK_NB, and O_TRUNC is applied only once
 * the lock is held, so a holder's pid is never wiped by a loser.
 *
 * Not pidfile_open(3): it takes no flags.  libbsd 0.11.7 (checked with
 * strace) opens with O_WRONLY|O_CREAT|O_NONBLOCK only, so it follows a
 * symlink planted at the path and creates, locks and later truncates
 * whatever the link points to, and, despite its manual page, it does not
 * set O_CLOEXEC, so every worker the master execs would inherit
 * supervisor.lock.  Its reader of the holder's pid is private, hence
 * lockfile_holder below.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/libutil.h>
#include <bsd/stdlib.h>

#include "lockfile.h"
#include "log.h"

#define LOCKFILE_FLAGS (O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
#define LOCKFILE_POLL_MS 50

long
lockfile_holder(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return (long)strtonum(buf, 1, INT_MAX, NULL);
}

int
lockfile_take(const char *path, int wait_ms)
{
	int fd, waited = 0;

	while ((fd = flopen(path, LOCKFILE_FLAGS, 0600)) == -1) {
		if (errno == EINTR)
			continue;
		if (errno == ELOOP) {
			log_errorx("lock file %s is a symbolic link; refusing to follow it (the service "
			    "never makes one): see where it points, then remove it", path);
			return -1;
		}
		if (errno != EWOULDBLOCK) {
			log_error("opening and locking %s", path);
			return -1;
		}
		if (waited >= wait_ms) {
			long pid = lockfile_holder(path);

			if (pid > 0)
				log_errorx("%s is held by another process (pid %ld)", path, pid);
			else
				log_errorx("%s is held by another process (pid unknown)", path);
			return -1;
		}
		if (waited % 1000 == 0)
			log_info("waiting for %s (held by a process that is still finishing)", path);
		nanosleep(&(struct timespec){ 0, LOCKFILE_POLL_MS * 1000000 }, NULL);
		waited += LOCKFILE_POLL_MS;
	}
	/* Only for the message of whoever loses; not worth failing over. */
	if (dprintf(fd, "%ld\n", (long)getpid()) < 0)
		log_warn("writing pid to %s", path);
	return fd;
}
