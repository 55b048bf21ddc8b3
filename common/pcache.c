#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pcache.h"

/* Reads of this size fill the cache in base pages as fast as read-ahead would. */
#define PCACHE_CHUNK (1 << 20)
/* The margin kept cached past the data; doubled when a commit outruns it. */
#define PCACHE_MARGIN_MIN ((off_t)1 << 20)
#define PCACHE_MARGIN_MAX ((off_t)64 << 20)

struct pcache {
	int fd;              /* read-write, advised POSIX_FADV_RANDOM */
	off_t cached;        /* [0, cached) was read in base pages; 0: below PCACHE_MIN_BYTES so far */
	off_t margin;        /* 0: extending failed once; not tried again */
	char *path;
};

/* posix_fadvise returns its error instead of setting errno. */
static int
pcache_advise(struct pcache *pc, off_t off, off_t len, int advice, const char *what)
{
	int rc;

	if ((rc = posix_fadvise(pc->fd, off, len, advice)) == 0)
		return 0;
	errno = rc;
	log_warn("%s: %s", pc->path, what);
	return -1;
}

/* Drop [off, end) from the cache and read it back in base pages (rare: the buffer is not kept). */
static void
pcache_fill(struct pcache *pc, off_t off, off_t end)
{
	char *buf;
	ssize_t n;

	if (pcache_advise(pc, off, end - off, POSIX_FADV_DONTNEED, "dropping cached pages") == -1)
		return;
	if ((buf = malloc(PCACHE_CHUNK)) == NULL) {
		log_warn("%s: a read buffer of %d bytes", pc->path, PCACHE_CHUNK);
		return;
	}
	while (off < end) {
		size_t want = end - off < PCACHE_CHUNK ? (size_t)(end - off) : PCACHE_CHUNK;

		if ((n = pread(pc->fd, buf, want, off)) == -1 && errno == EINTR)
			continue;
		if (n == -1)
			log_warn("%s: reading %zu bytes at %lld into the cache", pc->path, want,
			    (long long)off);
		if (n <= 0)
			break;
		off += n;
	}
	free(buf);
}

struct pcache *
pcache_open(const char *path)
{
	struct pcache *pc;
	struct stat sb;

	if ((pc = calloc(1, sizeof(*pc))) == NULL || (pc->path = strdup(path)) == NULL) {
		log_warn("%s: page cache state", path);
		free(pc);
		return NULL;
	}
	pc->fd = -1;
	pc->margin = PCACHE_MARGIN_MIN;
	if ((pc->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1 ||
	    fstat(pc->fd, &sb) == -1) {
		log_warn("%s: opening to keep it cached in base pages", path);
		pcache_close(pc);
		return NULL;
	}
	/* Advice on this descriptor only: its reads then allocate base pages. */
	if (pcache_advise(pc, 0, 0, POSIX_FADV_RANDOM, "advising random reads") == -1) {
		pcache_close(pc);
		return NULL;
	}
	if (sb.st_size >= PCACHE_MIN_BYTES) {
		pcache_fill(pc, 0, sb.st_size);
		pc->cached = sb.st_size;
	}
	return pc;
}

void
pcache_advance(struct pcache *pc, off_t end, off_t limit)
{
	off_t want;
	struct stat sb;

	if (pc == NULL || pc->margin == 0 || (pc->cached == 0 && end < PCACHE_MIN_BYTES))
		return;
	if (pc->cached == 0) {
		/* Grown to the size where it matters: the whole file so far, in base pages. */
		pc->cached = fstat(pc->fd, &sb) == 0 && sb.st_size > end ? sb.st_size : end;
		pcache_fill(pc, 0, pc->cached);
	}
	if (end > pc->cached) {
		/* Written past the margin, in runs: cached large.  A bigger margin next time. */
		pcache_fill(pc, pc->cached, end);
		pc->cached = end;
		if (pc->margin < PCACHE_MARGIN_MAX)
			pc->margin *= 2;
	}
	if (pc->cached - end >= pc->margin / 2)
		return;
	if ((want = end + pc->margin) > limit)
		want = limit;
	if (want <= pc->cached)
		return;
	/* A hole: no disk space until LMDB writes there. */
	if (fstat(pc->fd, &sb) == -1 || (sb.st_size < want && ftruncate(pc->fd, want) == -1)) {
		log_warn("%s: extending the file to %lld bytes; appends are no longer cached ahead",
		    pc->path, (long long)want);
		pc->margin = 0;
		return;
	}
	pcache_fill(pc, pc->cached, want);
	pc->cached = want;
}

bool
pcache_active(const struct pcache *pc)
{
	return pc != NULL && pc->cached != 0;
}

void
pcache_close(struct pcache *pc)
{
	if (pc == NULL)
		return;
	if (pc->fd != -1)
		close(pc->fd);
	free(pc->path);
	free(pc);
}
