/*
 * procinfo: what the benchmark reads about the service from /proc and the
 * file system: peak and current RSS, the counters in process titles, and
 * the disk space a state directory takes.
 */
#ifndef BENCH_PROCINFO_H
#define BENCH_PROCINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A "Key:" line of /proc/PID/status in KiB (VmHWM, VmRSS); -1 if unreadable. */
int64_t procinfo_status_kib(pid_t pid, const char *key);

/* /proc/PID/cmdline with NULs as spaces; false if the process is gone. */
bool procinfo_title(pid_t pid, char *buf, size_t cap);

/*
 * The number after `key` (e.g. "in=", "msgs=", "state=") in a title;
 * -1 if absent.
 */
int64_t procinfo_title_u64(const char *title, const char *key);

/* CPU time (user + system) a process used so far, in clock ticks; -1 if gone. */
int64_t procinfo_cpu_ticks(pid_t pid);
/* Bytes a process caused to be written to storage (/proc/PID/io write_bytes); -1 if unreadable. */
int64_t procinfo_write_bytes(pid_t pid);
/*
 * All CPUs, clock ticks since boot (/proc/stat): busy (everything but idle
 * and iowait, steal included), steal (time the hypervisor gave to others),
 * and the total.  steal may be NULL.
 */
int procinfo_machine_ticks(uint64_t *busy, uint64_t *total, uint64_t *steal);

/* Bytes allocated on disk (st_blocks) and apparent size of all files under dir. */
int procinfo_du(const char *dir, uint64_t *allocated, uint64_t *apparent);

#endif
