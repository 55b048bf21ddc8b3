/*
 * Unit tests for common/pcache.c: a small store is left alone, the margin
 * past the data is a hole within the limit, and a file cached through
 * pcache (from PCACHE_MIN_BYTES on) costs a changed
 * 4 KiB page about 4 KiB of writes, however it was written or read
 * before.  The second is measured with the kernel's own counter
 * (/proc/self/io write_bytes), the figure that showed the problem: a
 * file written in 1 MiB runs and left cached costs ~100 KiB per 4 KiB
 * pwrite on Linux 6.18's ext4.  On a file system that counts no writes
 * (tmpfs) both figures are 0 and prove nothing; /tmp is ext4 here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../bench/lib/procinfo.h"
#include "pcache.h"

#define SCRATCH_NAME "test_pcache"
#include "scratch.h"

#define MIB (1 << 20)
#define FILE_MIB 32
/* Few writes over many folios: a folio already dirty is not counted again. */
#define WRITES 32
/* A changed page may cost its own 4 KiB and a neighbour's; large folios cost 16-64 pages. */
#define MAX_BYTES_PER_WRITE (3 * 4096)

/* A file of FILE_MIB MiB written in 1 MiB runs and synced: cached in large folios where the kernel does that. */
static void
write_runs(const char *path)
{
	char *buf = malloc(MIB);
	int fd;

	assert_non_null(buf);
	memset(buf, 0x5a, MIB);
	assert_true((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	for (int i = 0; i < FILE_MIB; i++)
		assert_int_equal(write(fd, buf, MIB), MIB);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	free(buf);
}

/* Bytes the kernel counts per 4 KiB page rewritten at random within [0, span). */
static double
cost_per_write(const char *path, off_t span)
{
	char page[4096];
	int64_t before, after;
	unsigned seed = 7;
	int fd;

	memset(page, 0xa5, sizeof(page));
	assert_true((fd = open(path, O_RDWR)) >= 0);
	before = procinfo_write_bytes(getpid());
	for (int i = 0; i < WRITES; i++) {
		off_t off = (off_t)(rand_r(&seed) % (unsigned)(span / 4096)) * 4096;

		assert_int_equal(pwrite(fd, page, sizeof(page), off), sizeof(page));
	}
	assert_int_equal(fdatasync(fd), 0);
	after = procinfo_write_bytes(getpid());
	assert_int_equal(close(fd), 0);
	return (double)(after - before) / WRITES;
}

static off_t
file_size(const char *path, blkcnt_t *blocks)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	*blocks = st.st_blocks;
	return st.st_size;
}

static void
test_small_store_left_alone(void **state)
{
	char path[PATH_MAX], data[8192];
	struct pcache *pc;
	blkcnt_t blocks;
	int fd;
	(void)state;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	/* Missing: created empty, as LMDB would. */
	assert_non_null(pc = pcache_open(path));
	assert_int_equal(file_size(path, &blocks), 0);
	memset(data, 1, sizeof(data));
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, data, sizeof(data), 0), sizeof(data));
	assert_int_equal(close(fd), 0);
	pcache_advance(pc, sizeof(data), (off_t)1 << 30);
	assert_false(pcache_active(pc));
	assert_int_equal(file_size(path, &blocks), sizeof(data));
	/* Grown to the size where it matters. */
	pcache_advance(pc, PCACHE_MIN_BYTES, (off_t)1 << 30);
	assert_true(pcache_active(pc));
	assert_int_equal(file_size(path, &blocks), PCACHE_MIN_BYTES + MIB);
	pcache_close(pc);
}

static void
test_margin_is_a_hole(void **state)
{
	char path[PATH_MAX], data[8192];
	const off_t base = PCACHE_MIN_BYTES;
	struct pcache *pc;
	blkcnt_t blocks;
	int fd;
	(void)state;

	/* A store of the size pcache acts on, all hole but its last page. */
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	memset(data, 1, sizeof(data));
	assert_true((fd = open(path, O_RDWR | O_CREAT, 0600)) >= 0);
	assert_int_equal(pwrite(fd, data, 4096, base - 4096), 4096);
	assert_int_equal(fsync(fd), 0);
	assert_non_null(pc = pcache_open(path));
	assert_true(pcache_active(pc));
	pcache_advance(pc, base, (off_t)1 << 30);
	assert_int_equal(file_size(path, &blocks), base + MIB);
	/* The margin takes no disk space. */
	assert_true(blocks * 512 <= 2 * 4096);

	/* Data within the margin, with more than half of it left: nothing changes. */
	assert_int_equal(pwrite(fd, data, sizeof(data), base), sizeof(data));
	assert_int_equal(fsync(fd), 0);
	pcache_advance(pc, base + (off_t)sizeof(data), (off_t)1 << 30);
	assert_int_equal(file_size(path, &blocks), base + MIB);

	/* Less than half left: a margin past the data again, and still a hole. */
	pcache_advance(pc, base + 700 * 1024, (off_t)1 << 30);
	assert_int_equal(file_size(path, &blocks), base + 700 * 1024 + MIB);
	assert_true(blocks * 512 <= 4 * 4096);

	/* Outrun (a commit appended past the margin): the margin doubles. */
	pcache_advance(pc, base + 4 * MIB, (off_t)1 << 30);
	assert_int_equal(file_size(path, &blocks), base + 6 * MIB);
	pcache_close(pc);

	/* Never past the limit (the map's size). */
	assert_non_null(pc = pcache_open(path));
	pcache_advance(pc, base + 6 * MIB - 4096, base + 6 * MIB + 4096);
	assert_int_equal(file_size(path, &blocks), base + 6 * MIB + 4096);
	pcache_close(pc);
	assert_int_equal(close(fd), 0);
}

static void
test_open_caches_base_pages(void **state)
{
	char path[PATH_MAX], control[PATH_MAX];
	struct pcache *pc;
	double with, without;
	(void)state;

	if (procinfo_write_bytes(getpid()) < 0)
		skip();
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	snprintf(control, sizeof(control), "%s/control", dir);
	write_runs(control);
	write_runs(path);
	without = cost_per_write(control, (off_t)FILE_MIB * MIB);
	assert_non_null(pc = pcache_open(path));
	with = cost_per_write(path, (off_t)FILE_MIB * MIB);
	pcache_close(pc);
	print_message("bytes written per 4 KiB pwrite: %.0f left as written, %.0f after pcache_open\n",
	    without, with);
	assert_true(with <= MAX_BYTES_PER_WRITE);
}

static void
test_appends_land_in_base_pages(void **state)
{
	char path[PATH_MAX], *run;
	struct pcache *pc;
	const size_t len = 256 * 1024;
	off_t end = 0;
	double cost;
	int fd;
	(void)state;

	if (procinfo_write_bytes(getpid()) < 0)
		skip();
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_non_null(run = malloc(len));
	memset(run, 0x3c, len);
	assert_non_null(pc = pcache_open(path));
	pcache_advance(pc, 0, (off_t)1 << 30);
	/* Commits that each append a run of 64 pages, as LMDB writes them, the way db.c calls pcache. */
	assert_true((fd = open(path, O_RDWR)) >= 0);
	for (int i = 0; i < FILE_MIB * 4; i++) {
		assert_int_equal(pwrite(fd, run, len, end), (ssize_t)len);
		assert_int_equal(fdatasync(fd), 0);
		end += (off_t)len;
		pcache_advance(pc, end, (off_t)1 << 30);
	}
	assert_int_equal(close(fd), 0);
	cost = cost_per_write(path, end);
	print_message("bytes written per 4 KiB pwrite into appended runs: %.0f\n", cost);
	assert_true(cost <= MAX_BYTES_PER_WRITE);
	pcache_close(pc);
	free(run);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_small_store_left_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_margin_is_a_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_caches_base_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_appends_land_in_base_pages, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
