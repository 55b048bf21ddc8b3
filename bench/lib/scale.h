/*
 * scale: the two scaling tables of `make bench`, both in durable mode
 * (intake = jetstream) with every digest checked against the SPEC model.
 *
 * Alarms per user: the same number of updates at 10, 100, 1,000 and
 * 10,000 alarms per user (users = updates / (alarms x rounds), drawn so
 * they spread evenly over the workers), from an empty state: msg/s, its
 * ratio to the first row, bytes the workers wrote to storage per message
 * (/proc/PID/io write_bytes) and worker CPU per message.
 *
 * Users: a state of N users x A alarms seeded straight into the stores
 * (seed.h), then the same load on top of each (updates spread at random
 * over all alarms, a request every few updates): msg/s, its ratio to the
 * first row, the bytes the workers wrote per message, their peak RSS and
 * the state on disk per alarm (du); then the disk's own rate for a
 * commit's scattered page writes (disk.h), which bounds the largest row.
 */
#ifndef BENCH_SCALE_H
#define BENCH_SCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk.h"
#include "sink.h"

#define SCALE_MAX_ROWS 8

struct scale_opts {
	const char *bin;
	int workers, stall_seconds;
	double dup;
	uint64_t seed;
	bool keep;
	int apu[SCALE_MAX_ROWS];        /* alarms per user; the first row is the reference */
	int napu;
	long apu_updates;
	int apu_rounds;
	int users[SCALE_MAX_ROWS];      /* seeded users; the first row is the reference */
	int nusers;
	int users_alarms;
	long users_updates;
	int users_req_every;
	void (*step)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
};

struct scale_row {
	int users, alarms, rounds;
	bool ran, complete, verified, correct;
	size_t msgs, updates, requests;
	double seconds, rate, ratio;    /* ratio: rate / the first row's rate (0: none) */
	double pub_seconds;             /* the burst's publishing alone: rate ~ msgs / this means paced by it */
	double write_per_msg;           /* bytes the workers wrote to storage, per message */
	double cpu_us_per_msg;          /* workers' CPU (user + system), per message */
	int64_t rss_worker_max_kib;     /* largest VmHWM among the workers */
	double du_per_alarm;            /* bytes allocated under STATE_DIR / alarms */
	double seed_seconds;
	int log_errors, log_warns;
	int64_t worker_msgs;            /* frames the workers handled (titles): > msgs is redelivery */
	struct verify v;
	char exit_status[128];
};

struct scale_result {
	struct scale_row apu[SCALE_MAX_ROWS];
	int napu;
	struct scale_row users[SCALE_MAX_ROWS];
	int nusers;
	struct disk_result disk;        /* with the users table: what bounds its largest row */
};

/* Run both tables (a table with no rows is skipped); -1 when a row could not run. */
int scale_run(const struct scale_opts *o, struct scale_result *res);
/* Human tables and their "BENCH {json}" lines. */
void scale_print(const struct scale_opts *o, const struct scale_result *res);
void scale_json(const struct scale_opts *o, const struct scale_result *res);
/* Every digest of every row that ran was checked and exact; else the first problems printed. */
bool scale_verdict(const struct scale_result *res);
size_t scale_matched(const struct scale_result *res);
void scale_free(struct scale_result *res);

#endif
