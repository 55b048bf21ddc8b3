#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/chan.h"
#include "../common/frame.h"
#include "../common/hash.h"
#include "../common/layout.h"
#include "../common/lockfile.h"
#include "../common/log.h"
#include "../common/store.h"
#include "../common/title.h"
#include "reshard.h"

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
	struct store *stores[LAYOUT_MAX_SLOTS];
	int locks[LAYOUT_MAX_SLOTS];     /* worker.lock of each opened store, or 0 */
	int from;
	struct moved *moved;
	size_t n, cap;
	struct chan *chan;               /* to the supervisor, for progress; NULL when run by hand */
	struct frame_progress progress;
};

/* Tell the supervisor (and ps) how far the move is; it shows both in its title and log. */
static void
reshard_report(struct reshard *r)
{
	const struct frame_progress *pr = &r->progress;

	title_set("reshard to %d workers: store %llu/%llu, %llu/%llu users moved", r->nslots,
	    (unsigned long long)pr->stores_done, (unsigned long long)pr->stores,
	    (unsigned long long)pr->users_moved, (unsigned long long)pr->users);
	if (r->chan == NULL)
		return;
	if (frame_put_progress(chan_out(r->chan), pr) == -1 || chan_flush_wait(r->chan) == -1) {
		/* Progress is only for show: losing the supervisor's ear must not stop the move. */
		log_warn("reporting progress to the supervisor");
		chan_free(r->chan);
		r->chan = NULL;
	}
}

static struct store *
reshard_store(struct reshard *r, int slot)
{
	char path[PATH_MAX], err[512];

	if (r->stores[slot] != NULL)
		return r->stores[slot];
	if (layout_slot_path(path, sizeof(path), r->dir, slot, NULL) == -1)
		return NULL;
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		log_error("mkdir %s", path);
		return NULL;
	}
	/* A worker of a crashed supervisor may still be finishing in there. */
	char lock[PATH_MAX];
	if (layout_slot_path(lock, sizeof(lock), r->dir, slot, "worker.lock") == -1 ||
	    (r->locks[slot] = lockfile_take(lock, 30000)) == -1) {
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
	static const char *const files[] = { "data.mdb", "lock.mdb", "worker.lock" };
	char path[PATH_MAX], file[PATH_MAX];
	struct store_stats st;

	store_get_stats(r->stores[slot], &st);
	if (st.users > 0)
		return 0;
	store_close(r->stores[slot]);
	r->stores[slot] = NULL;
	if (layout_slot_path(path, sizeof(path), r->dir, slot, NULL) == -1)
		return -1;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (layout_slot_path(file, sizeof(file), r->dir, slot, files[i]) == -1)
			return -1;
		if (unlink(file) == -1 && errno != ENOENT) {
			log_error("unlink %s", file);
			return -1;
		}
	}
	close(r->locks[slot]);
	r->locks[slot] = 0;
	if (rmdir(path) == -1) {
		log_error("rmdir %s", path);
		return -1;
	}
	return 0;
}

/*
 * Users in all stores, from each store's statistics (no scan), so progress
 * reads moved/total from the first report on.  Opening every store now
 * also takes every lock before anything moves.
 */
static int
reshard_count(struct reshard *r, const int *slots, int n)
{
	struct store_stats st;
	struct store *s;

	for (int i = 0; i < n; i++) {
		if ((s = reshard_store(r, slots[i])) == NULL)
			return -1;
		store_get_stats(s, &st);
		r->progress.users += st.users;
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
	r->progress.users_moved += moved;
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
	int slots[LAYOUT_MAX_SLOTS], n, rc = 1;

	log_set_role("reshard");
	title_set("reshard to %d workers in %s", nslots, dir);
	if (nslots < 1 || nslots > LAYOUT_MAX_SLOTS) {
		log_errorx("worker count %d out of range", nslots);
		return 2;
	}
	r.dir = dir;
	r.nslots = nslots;
	r.map_size = map_size;
	if ((r.chan = chan_new(FRAME_CHANNEL_FD)) == NULL)
		log_debug("no channel to a supervisor on fd %d: progress only in the title", FRAME_CHANNEL_FD);
	if ((n = layout_scan(dir, slots, LAYOUT_MAX_SLOTS)) == -1)
		goto out;
	log_info("laying out %s for %d workers (%d stores present)", dir, nslots, n);
	r.progress.stores = (uint64_t)n;
	if (reshard_count(&r, slots, n) == -1)
		goto out;
	reshard_report(&r);
	for (int i = 0; i < n; i++) {
		if (reshard_slot(&r, slots[i]) == -1)
			goto out;
		r.progress.stores_done++;
		reshard_report(&r);
	}
	if (layout_write(dir, nslots) == -1)
		goto out;
	log_info("done: %s is laid out for %d workers, %llu of %llu users moved", dir, nslots,
	    (unsigned long long)r.progress.users_moved, (unsigned long long)r.progress.users);
	rc = 0;
out:
	if (r.chan != NULL)
		chan_free(r.chan);
	reshard_clear(&r);
	free(r.moved);
	for (int i = 0; i < LAYOUT_MAX_SLOTS; i++) {
		store_close(r.stores[i]);
		if (r.locks[i] > 0)
			close(r.locks[i]);
	}
	return rc;
}
