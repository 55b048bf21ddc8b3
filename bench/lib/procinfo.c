#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "procinfo.h"

int64_t
procinfo_status_kib(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	int64_t kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) == 0) {
			kib = strtoll(line + klen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

bool
procinfo_title(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	if (cap == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return true;
}

int64_t
procinfo_title_u64(const char *title, const char *key)
{
	size_t klen = strlen(key);
	const char *p = title;

	/* The key must start a word: "in=" must not match inside "min=". */
	while ((p = strstr(p, key)) != NULL) {
		if (p == title || p[-1] == ' ') {
			if (p[klen] < '0' || p[klen] > '9')
				return -1;
			return (int64_t)strtoull(p + klen, NULL, 10);
		}
		p += klen;
	}
	return -1;
}

int64_t
procinfo_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long ut, st;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* Fields resume after the last ')' (comm may hold anything); utime and stime are 14 and 15. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (int64_t)(ut + st);
}

int64_t
procinfo_write_bytes(pid_t pid)
{
	char path[64], line[256];
	int64_t bytes = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/io", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "write_bytes:", 12) == 0) {
			bytes = strtoll(line + 12, NULL, 10);
			break;
		}
	}
	fclose(f);
	return bytes;
}

int
procinfo_machine_ticks(uint64_t *busy, uint64_t *total, uint64_t *steal)
{
	unsigned long long v[8];
	FILE *f = fopen("/proc/stat", "r");
	int n = 0;

	if (f != NULL) {
		n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		    &v[4], &v[5], &v[6], &v[7]);
		fclose(f);
	}
	if (n != 8)
		return -1;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	/* user nice system idle iowait irq softirq steal: idle and iowait are not busy */
	*busy = *total - v[3] - v[4];
	if (steal != NULL)
		*steal = v[7];
	return 0;
}

static uint64_t du_allocated, du_apparent;

static int
du_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F) {
		du_allocated += (uint64_t)sb->st_blocks * 512;
		du_apparent += (uint64_t)sb->st_size;
	}
	return 0;
}

int
procinfo_du(const char *dir, uint64_t *allocated, uint64_t *apparent)
{
	/* nftw has no closure argument; the benchmark calls this from one thread. */
	du_allocated = du_apparent = 0;
	if (nftw(dir, du_entry, 16, FTW_PHYS) == -1)
		return -1;
	*allocated = du_allocated;
	*apparent = du_apparent;
	return 0;
}
