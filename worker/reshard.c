#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/hash.h"
#include "../common/lockfile.h"
#include "../common/log.h"
#include "../common/title.h"
#include "reshard.h"
#include "store.h"

#define RESHARD_MAX_SLOTS 4096

struct moved {
	char *user;
	size_t user_len;
	void *rec;
	size_t rec_len;
	int to;
};

struct reshard {
	const char *dir;
	int nslots;
	int64_t map_size;
	struct store *stores[RESHARD_MAX_SLOTS];
	int locks[RESHARD_MAX_SLOTS];     /* worker.lock of each opened store, or 0 */
	int from;
	struct moved *moved;
	size_t n, cap;
	int failed;
};

static int
reshard_read_layout(const char *dir, int *nslots)
{
	char path[PATH_MAX];
	FILE *f;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/LAYOUT", dir);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fscanf(f, "workers %d", nslots) == 1 && *nslots > 0)
		rc = 0;
	else
		log_warnx("%s: unreadable; treating the layout as unknown", path);
	fclose(f);
	return rc;
}

/* Write, fsync, rename, fsync the directory: LAYOUT is either old or new, never torn. */
static int
reshard_write_layout(const char *dir, int nslots)
{
	char path[PATH_MAX], tmp[PATH_MAX], text[32];
	int fd, dfd, len;

	snprintf(path, sizeof(path), "%s/LAYOUT", dir);
	snprintf(tmp, sizeof(tmp), "%s/LAYOUT.tmp", dir);
	len = snprintf(text, sizeof(text), "workers %d\n", nslots);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		log_error("open %s", tmp);
		return -1;
	}
	if (write(fd, text, (size_t)len) != len || fsync(fd) == -1) {
		log_error("write %s", tmp);
		close(fd);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) == -1) {
		log_error("rename %s to %s", tmp, path);
		return -1;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		if (fsync(dfd) == -1)
			log_error("fsync %s", dir);
		close(dfd);
	}
	return 0;
}

/* Slot numbers of the worker-N stores present, ascending; count or -1. */
static int
reshard_scan(const char *dir, int *slots, int max)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("opendir %s", dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		int k;
		char tail;
		if (sscanf(de->d_name, "worker-%d%c", &k, &tail) == 1 && k >= 0 && k < RESHARD_MAX_SLOTS && n < max)
			slots[n++] = k;
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && slots[j - 1] > slots[j]; j--) {
			int t = slots[j];
			slots[j] = slots[j - 1];
			slots[j - 1] = t;
		}
	return n;
}

bool
reshard_needed(const char *dir, int nslots)
{
	int slots[RESHARD_MAX_SLOTS], have, n;

	if (reshard_read_layout(dir, &have) == 0)
		return have != nslots;
	n = reshard_scan(dir, slots, RESHARD_MAX_SLOTS);
	if (n == 0) {
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			log_error("mkdir %s", dir);
		reshard_write_layout(dir, nslots);
		return false;
	}
	return true;
}

static struct store *
reshard_store(struct reshard *r, int slot)
{
	char path[PATH_MAX], err[512];

	if (r->stores[slot] != NULL)
		return r->stores[slot];
	snprintf(path, sizeof(path), "%s/worker-%d", r->dir, slot);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		log_error("mkdir %s", path);
		return NULL;
	}
	/* A worker of a crashed supervisor may still be finishing in there. */
	char lock[PATH_MAX + 16];
	snprintf(lock, sizeof(lock), "%s/worker.lock", path);
	if ((r->locks[slot] = lockfile_take(lock, 30000)) == -1) {
		r->locks[slot] = 0;
		return NULL;
	}
	if ((r->stores[slot] = store_open(path, r->map_size, err, sizeof(err))) == NULL)
		log_errorx("opening %s: %s", path, err);
	return r->stores[slot];
}

static int
reshard_collect(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	struct reshard *r = arg;
	int to = (int)(hash32(user, user_len) % (uint32_t)r->nslots);
	struct moved *m;

	if (to == r->from)
		return 0;
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1024;
		if ((m = realloc(r->moved, ncap * sizeof(*m))) == NULL)
			return -1;
		r->moved = m;
		r->cap = ncap;
	}
	m = &r->moved[r->n];
	m->user = malloc(user_len);
	m->rec = malloc(rec_len);
	if (m->user == NULL || m->rec == NULL) {
		free(m->user);
		free(m->rec);
		return -1;
	}
	memcpy(m->user, user, user_len);
	memcpy(m->rec, rec, rec_len);
	m->user_len = user_len;
	m->rec_len = rec_len;
	m->to = to;
	r->n++;
	return 0;
}

static void
reshard_clear(struct reshard *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->moved[i].user);
		free(r->moved[i].rec);
	}
	r->n = 0;
}

/* Merge everything collected into its home stores, one transaction per store. */
static int
reshard_merge(struct reshard *r)
{
	for (int to = 0; to < r->nslots; to++) {
		struct store *dst = NULL;
		for (size_t i = 0; i < r->n; i++) {
			if (r->moved[i].to != to)
				continue;
			if (dst == NULL) {
				if ((dst = reshard_store(r, to)) == NULL || store_begin(dst) == -1)
					return -1;
			}
			if (store_merge_user(dst, r->moved[i].user, r->moved[i].user_len,
			    r->moved[i].rec, r->moved[i].rec_len) == -1) {
				store_abort(dst);
				return -1;
			}
		}
		if (dst != NULL && store_commit(dst) == -1)
			return -1;
	}
	return 0;
}

static int
reshard_remove_store(struct reshard *r, int slot)
{
	char path[PATH_MAX], file[PATH_MAX + 16];
	struct store_stats st;

	store_get_stats(r->stores[slot], &st);
	if (st.users > 0)
		return 0;
	store_close(r->stores[slot]);
	r->stores[slot] = NULL;
	snprintf(path, sizeof(path), "%s/worker-%d", r->dir, slot);
	snprintf(file, sizeof(file), "%s/data.mdb", path);
	unlink(file);
	snprintf(file, sizeof(file), "%s/lock.mdb", path);
	unlink(file);
	snprintf(file, sizeof(file), "%s/worker.lock", path);
	unlink(file);
	close(r->locks[slot]);
	r->locks[slot] = 0;
	if (rmdir(path) == -1) {
		log_error("rmdir %s", path);
		return -1;
	}
	return 0;
}

static int
reshard_slot(struct reshard *r, int from)
{
	struct store *src;
	size_t moved;

	if ((src = reshard_store(r, from)) == NULL)
		return -1;
	r->from = from;
	if (store_foreach_user(src, reshard_collect, r) != 0) {
		log_errorx("reading users of worker-%d", from);
		return -1;
	}
	if (reshard_merge(r) == -1)
		return -1;
	/* Only now, with every copy committed at home, remove the originals. */
	if (r->n > 0) {
		if (store_begin(src) == -1)
			return -1;
		for (size_t i = 0; i < r->n; i++)
			if (store_delete_user(src, r->moved[i].user, r->moved[i].user_len) == -1) {
				store_abort(src);
				return -1;
			}
		if (store_commit(src) == -1)
			return -1;
	}
	moved = r->n;
	reshard_clear(r);
	if (moved > 0)
		log_info("moved %zu users out of worker-%d", moved, from);
	if (from >= r->nslots)
		return reshard_remove_store(r, from);
	return 0;
}

int
reshard_main(const char *dir, int nslots, int64_t map_size)
{
	static struct reshard r;
	int slots[RESHARD_MAX_SLOTS], n, rc = 1;

	log_set_role("reshard");
	title_set("reshard to %d workers in %s", nslots, dir);
	if (nslots < 1 || nslots > RESHARD_MAX_SLOTS) {
		log_errorx("worker count %d out of range", nslots);
		return 2;
	}
	r.dir = dir;
	r.nslots = nslots;
	r.map_size = map_size;
	if ((n = reshard_scan(dir, slots, RESHARD_MAX_SLOTS)) == -1)
		return 1;
	log_info("laying out %s for %d workers (%d stores present)", dir, nslots, n);
	for (int i = 0; i < n; i++)
		if (reshard_slot(&r, slots[i]) == -1)
			goto out;
	if (reshard_write_layout(dir, nslots) == -1)
		goto out;
	log_info("done: %s is laid out for %d workers", dir, nslots);
	rc = 0;
out:
	reshard_clear(&r);
	free(r.moved);
	for (int i = 0; i < RESHARD_MAX_SLOTS; i++) {
		store_close(r.stores[i]);
		if (r.locks[i] > 0)
			close(r.locks[i]);
	}
	return rc;
}
