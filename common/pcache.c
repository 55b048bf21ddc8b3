#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "pcache.h"

/* Reads of this size fill the cache in base pages as fast as read-ahead would. */
#define PCACHE_CHUNK (1u << 20)

void
pcache_drop(int fd, off_t off, off_t len, const char *path)
{
	int rc;

	/* posix_fadvise returns the error rather than setting errno. */
	if ((rc = posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED)) != 0) {
		errno = rc;
		log_warn("%s: dropping %lld cached bytes at %lld", path, (long long)len,
		    (long long)off);
	}
}

void
pcache_reset(const char *path)
{
	char *buf;
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("%s: opening to cache it in base pages", path);
		return;
	}
	/* Advice on this descriptor only: it makes its reads allocate base pages. */
	if ((rc = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)) != 0) {
		errno = rc;
		log_warn("%s: advising random reads", path);
		close(fd);
		return;
	}
	pcache_drop(fd, 0, 0, path);
	if ((buf = malloc(PCACHE_CHUNK)) == NULL) {
		log_warn("%s: a read buffer of %u bytes", path, PCACHE_CHUNK);
		close(fd);
		return;
	}
	while ((n = read(fd, buf, PCACHE_CHUNK)) > 0 || (n == -1 && errno == EINTR))
		;
	if (n == -1)
		log_warn("%s: reading it into the cache", path);
	free(buf);
	close(fd);
}
