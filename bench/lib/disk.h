/*
 * disk: what the filesystem under the benchmark's state directories does
 * with a commit's writes, so that the users table's largest row can be
 * read against the machine it ran on.
 *
 * A file about the size of one worker's store at a million users is
 * written, made durable, dropped from the page cache and read back in
 * base pages (as the service leaves a large store: DESIGN.md, "The store
 * file in the page cache").  Then, for each batch size, batches of
 * distinct random 4 KiB pages are written in ascending order, one pwrite
 * each (LMDB writes a commit's scattered pages so), and each batch is made
 * durable with one fdatasync.
 */
#ifndef BENCH_DISK_H
#define BENCH_DISK_H

#include <stdbool.h>

#define DISK_BATCHES 3

struct disk_batch {
	int pages;                /* distinct pages per batch */
	int rounds;
	double pages_per_s;       /* pages written and synced / seconds */
	double ms_per_batch;
};

struct disk_result {
	bool ran;
	long long file_bytes;
	struct disk_batch b[DISK_BATCHES];
};

/* Measure in a temporary directory under $TMPDIR (or /tmp); -1 with harness_err() set. */
int disk_measure(struct disk_result *out);

#endif
