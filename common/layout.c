#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "log.h"

int
layout_path(char *dst, size_t len, const char *state_dir, const char *file)
{
	int n = snprintf(dst, len, "%s/%s", state_dir, file);

	if (n < 0 || (size_t)n >= len) {
		log_errorx("path %s/%s is too long", state_dir, file);
		return -1;
	}
	return 0;
}

int
layout_slot_path(char *dst, size_t len, const char *state_dir, int slot, const char *file)
{
	int n = file ? snprintf(dst, len, "%s/worker-%d/%s", state_dir, slot, file)
	    : snprintf(dst, len, "%s/worker-%d", state_dir, slot);

	if (n < 0 || (size_t)n >= len) {
		log_errorx("path of worker-%d in state_dir %s is too long", slot, state_dir);
		return -1;
	}
	return 0;
}

int
layout_spill_path(char *dst, size_t len, const char *state_dir, int slot, uint64_t seq)
{
	int n = snprintf(dst, len, "%s/spill-%d.%010llu", state_dir, slot, (unsigned long long)seq);

	if (n < 0 || (size_t)n >= len) {
		log_errorx("path of spill-%d in state_dir %s is too long", slot, state_dir);
		return -1;
	}
	return 0;
}

/* Decimal digits only, at least one; *end gets the first byte after them. */
static int
layout_digits(const char *s, unsigned long long max, unsigned long long *out, const char **end)
{
	unsigned long long v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (max - (unsigned)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (p == s)
		return -1;
	*out = v;
	*end = p;
	return 0;
}

int
layout_spill_parse(const char *name, int *slot, uint64_t *seq)
{
	unsigned long long k, q;
	const char *p;

	/* Exactly what layout_spill_path writes: a stray "spill-1.5.tmp" is not ours. */
	if (strncmp(name, "spill-", 6) != 0 ||
	    layout_digits(name + 6, LAYOUT_MAX_SLOTS - 1, &k, &p) == -1 || *p != '.' ||
	    layout_digits(p + 1, UINT64_MAX, &q, &p) == -1 || *p != '\0')
		return 0;
	*slot = (int)k;
	*seq = q;
	return 1;
}

/* 1 with *nslots set, 0 when there is no LAYOUT, -1 when it cannot be read or parsed (logged). */
static int
layout_read(const char *state_dir, int *nslots)
{
	char path[PATH_MAX];
	FILE *f;
	int rc = -1;

	if (layout_path(path, sizeof(path), state_dir, "LAYOUT") == -1)
		return -1;
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("open %s", path);
		return -1;
	}
	if (fscanf(f, "workers %d", nslots) == 1 && *nslots > 0 && *nslots <= LAYOUT_MAX_SLOTS)
		rc = 1;
	else
		log_warnx("%s: unreadable; treating the layout as unknown", path);
	fclose(f);
	return rc;
}

int
layout_count(const char *state_dir)
{
	int n;

	switch (layout_read(state_dir, &n)) {
	case 1:
		return n;
	case 0:
		return 0;
	default:
		return -1;
	}
}

enum layout_state
layout_check(const char *state_dir, int nslots)
{
	int have, n, slots[1];

	switch (layout_read(state_dir, &have)) {
	case 1:
		return have == nslots ? LAYOUT_MATCH : LAYOUT_DIFFERS;
	case 0:
		break;
	default:
		/* Stores may be there: a reshard puts every user where nslots expects it. */
		return LAYOUT_DIFFERS;
	}
	if ((n = layout_scan(state_dir, slots, 1)) == -1)
		return LAYOUT_ERROR;
	return n == 0 ? LAYOUT_FRESH : LAYOUT_DIFFERS;
}

int
layout_write_file(const char *path, const char *text)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *slash;
	size_t len = strlen(text);
	int fd, dfd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		log_errorx("path %s.tmp is too long", path);
		return -1;
	}
	/* O_NOFOLLOW: a link planted here would have us truncate its target. */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) == -1) {
		if (errno == ELOOP)
			log_errorx("%s is a symbolic link; refusing to follow it (the service never "
			    "makes one): see where it points, then remove it", tmp);
		else
			log_error("open %s", tmp);
		return -1;
	}
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) == -1) {
		log_error("write %s", tmp);
		close(fd);
		return -1;
	}
	if (close(fd) == -1) {
		log_error("close %s", tmp);
		return -1;
	}
	if (rename(tmp, path) == -1) {
		log_error("rename %s to %s", tmp, path);
		return -1;
	}
	/* The rename is durable only once the directory is. */
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	if ((dfd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_error("open the directory of %s", path);
		return -1;
	}
	if (fsync(dfd) == -1) {
		log_error("fsync the directory of %s", path);
		close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
}

int
layout_write(const char *state_dir, int nslots)
{
	char path[PATH_MAX], text[32];

	if (layout_path(path, sizeof(path), state_dir, "LAYOUT") == -1)
		return -1;
	snprintf(text, sizeof(text), "workers %d\n", nslots);
	return layout_write_file(path, text);
}

static int
layout_cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

int
layout_scan(const char *state_dir, int *slots, int max)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(state_dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("opendir %s", state_dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL && n < max) {
		int k;
		char tail;

		if (sscanf(de->d_name, "worker-%d%c", &k, &tail) == 1 && k >= 0 && k < LAYOUT_MAX_SLOTS)
			slots[n++] = k;
	}
	closedir(d);
	qsort(slots, (size_t)n, sizeof(*slots), layout_cmp_int);
	return n;
}
