#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/clock.h"
#include "../../tests/lib/harness.h"
#include "disk.h"

/* About one worker's store at a million users x 10 alarms (two workers). */
#define DISK_FILE_BYTES ((off_t)256 << 20)
#define DISK_PAGE 4096
#define DISK_IO_BYTES (1 << 20)

/*
 * Batch sizes around what a worker's commit writes at a million users (a
 * commit of 5,000 to 10,000 updates, about one page each), and a small
 * one, each for about half a second or more on a disk like this one.
 */
static const struct { int pages, rounds; } disk_plan[DISK_BATCHES] = {
	{ 1000, 6 }, { 5000, 3 }, { 10000, 2 },
};

static int
disk_fill(int fd, const char *path)
{
	char *buf = malloc(DISK_IO_BYTES);
	int rc = -1;

	if (buf == NULL) {
		harness_seterr("disk: no memory for a write buffer");
		return -1;
	}
	memset(buf, 'x', DISK_IO_BYTES);
	for (off_t off = 0; off < DISK_FILE_BYTES; off += DISK_IO_BYTES)
		if (pwrite(fd, buf, DISK_IO_BYTES, off) != DISK_IO_BYTES) {
			harness_seterr("disk: write %s at %lld: %s", path, (long long)off, strerror(errno));
			goto out;
		}
	if (fdatasync(fd) == -1) {
		harness_seterr("disk: fdatasync %s: %s", path, strerror(errno));
		goto out;
	}
	/* Read back in base pages, as a large store is cached (see disk.h). */
	if ((errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) != 0 ||
	    (errno = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)) != 0) {
		harness_seterr("disk: posix_fadvise %s: %s", path, strerror(errno));
		goto out;
	}
	for (off_t off = 0; off < DISK_FILE_BYTES; off += DISK_IO_BYTES)
		if (pread(fd, buf, DISK_IO_BYTES, off) != DISK_IO_BYTES) {
			harness_seterr("disk: read %s at %lld: %s", path, (long long)off, strerror(errno));
			goto out;
		}
	rc = 0;
out:
	free(buf);
	return rc;
}

static int
page_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* n distinct pages out of the file, ascending: the first n of a partial shuffle. */
static void
disk_pick(uint32_t *pages, uint32_t npages, int n, uint64_t *rng)
{
	for (int i = 0; i < n; i++) {
		uint32_t j, t;

		*rng ^= *rng << 13;
		*rng ^= *rng >> 7;
		*rng ^= *rng << 17;
		j = (uint32_t)i + (uint32_t)(*rng % (npages - (uint32_t)i));
		t = pages[i];
		pages[i] = pages[j];
		pages[j] = t;
	}
	qsort(pages, (size_t)n, sizeof(*pages), page_cmp);
}

static int
disk_batches(int fd, const char *path, struct disk_result *out)
{
	uint32_t npages = (uint32_t)(DISK_FILE_BYTES / DISK_PAGE);
	uint32_t *pages = malloc(npages * sizeof(*pages));
	char page[DISK_PAGE];
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	if (pages == NULL) {
		harness_seterr("disk: no memory for %u page numbers", npages);
		return -1;
	}
	memset(page, 'y', sizeof(page));
	for (int k = 0; k < DISK_BATCHES; k++) {
		struct disk_batch *b = &out->b[k];
		int64_t spent = 0;

		b->pages = disk_plan[k].pages;
		b->rounds = disk_plan[k].rounds;
		for (int r = 0; r < b->rounds; r++) {
			int64_t t0;

			/* Each batch a fresh draw from the whole file, as commits of random users are. */
			for (uint32_t i = 0; i < npages; i++)
				pages[i] = i;
			disk_pick(pages, npages, b->pages, &rng);
			t0 = clock_mono_us();
			for (int i = 0; i < b->pages; i++)
				if (pwrite(fd, page, sizeof(page), (off_t)pages[i] * DISK_PAGE) != DISK_PAGE) {
					harness_seterr("disk: write %s page %u: %s", path, pages[i],
					    strerror(errno));
					free(pages);
					return -1;
				}
			if (fdatasync(fd) == -1) {
				harness_seterr("disk: fdatasync %s: %s", path, strerror(errno));
				free(pages);
				return -1;
			}
			spent += clock_mono_us() - t0;
		}
		b->ms_per_batch = (double)spent / 1e3 / b->rounds;
		b->pages_per_s = spent > 0 ? (double)b->pages * b->rounds * 1e6 / (double)spent : 0;
	}
	free(pages);
	return 0;
}

int
disk_measure(struct disk_result *out)
{
	char dir[512], path[600];
	int fd, rc = -1;

	memset(out, 0, sizeof(*out));
	if (harness_tmpdir("bench-disk", dir, sizeof(dir)) == -1)
		return -1;
	if (harness_path(path, sizeof(path), dir, "pages") == -1)
		goto out_dir;
	if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1) {
		harness_seterr("disk: create %s: %s", path, strerror(errno));
		goto out_dir;
	}
	if (disk_fill(fd, path) == 0 && disk_batches(fd, path, out) == 0) {
		out->ran = true;
		out->file_bytes = (long long)DISK_FILE_BYTES;
		rc = 0;
	}
	/* Nothing of it stays in the cache to crowd the rows that follow. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (close(fd) == -1 && rc == 0) {
		harness_seterr("disk: close %s: %s", path, strerror(errno));
		rc = -1;
	}
	if (unlink(path) == -1 && rc == 0) {
		harness_seterr("disk: remove %s: %s", path, strerror(errno));
		rc = -1;
	}
out_dir:
	if (harness_tmpdir_remove(dir) == -1 && rc == 0)
		rc = -1;
	return rc;
}
