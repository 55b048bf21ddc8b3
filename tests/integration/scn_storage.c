/*
 * Storage faults: a map that must grow, a full disk, a corrupt store.
 *
 * map_growth: map_size = 1M and traffic that needs several times that:
 * the map grows (logged), no worker restarts, every digest exact.
 *
 * disk_full: worker 0's store on a small tmpfs of its own (mounted here,
 * as root), filled with a ballast file under traffic: "disk full" logged
 * naming the store, the worker pauses (same pid, title DISK-FULL) instead
 * of crash-looping, the other slot's users keep getting digests; a kill -9
 * of the paused worker loses nothing (nothing was reported durable early);
 * the ballast removed, it resumes on its own; every digest matches the
 * model.  Not root: the scenario fails and says why (CI runs as root).
 *
 * corrupt_store: a page of worker 0's data.mdb overwritten with garbage
 * while the service is stopped; at start the log names the file and the
 * recovery, worker 0 stays parked (no crash loop), the other slot serves;
 * the directory moved aside, the slot starts afresh by itself and the
 * messages held meanwhile are applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "itest.h"

#define SG_ID_LEN 200   /* long alarm IDs: many bytes of store per message */

/* The service's routing: FNV-1a 32 of the UserID, modulo the worker count. */
static uint32_t
sg_slot(const char *user, int nslots)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)user; *p != '\0'; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	return h % (uint32_t)nslots;
}

/* The n-th user name with prefix that lands on slot (of nslots). */
static void
sg_user(const char *prefix, int slot, int nslots, int n, char *buf, size_t cap)
{
	for (int i = 0, found = -1; ; i++) {
		snprintf(buf, cap, "%s-%d", prefix, i);
		if ((int)sg_slot(buf, nslots) == slot && ++found == n)
			return;
	}
}

/*
 * users x alarms updates with long IDs, shuffled, then a request per
 * user; slot < 0: users of any slot.
 */
static int
sg_plan(struct plan *p, struct rng *r, const char *prefix, int slot, int nslots, int users,
    int alarms, int64_t base_sec)
{
	char user[64], alarm[SG_ID_LEN + 1], ts[64];

	for (int u = 0; u < users; u++) {
		if (slot >= 0)
			sg_user(prefix, slot, nslots, u, user, sizeof(user));
		else
			snprintf(user, sizeof(user), "%s-%d", prefix, u);
		for (int a = 0; a < alarms; a++) {
			int n = snprintf(alarm, sizeof(alarm), "%s-alarm-%d-", user, a);

			memset(alarm + n, 'x', SG_ID_LEN - (size_t)n);
			alarm[SG_ID_LEN] = '\0';
			traffic_random_ts(r, base_sec, 3600, ts, sizeof(ts));
			if (plan_update(p, user, alarm, traffic_random_status(r), ts) == -1)
				return -1;
		}
	}
	plan_shuffle(p, r);
	for (int u = 0; u < users; u++) {
		if (slot >= 0)
			sg_user(prefix, slot, nslots, u, user, sizeof(user));
		else
			snprintf(user, sizeof(user), "%s-%d", prefix, u);
		if (plan_request(p, user) == -1)
			return -1;
	}
	return 0;
}

static int
sg_send(struct env *e, struct model *m, uint64_t seed, const char *prefix, int slot, int nslots,
    int users, int alarms)
{
	struct plan p = { 0 };
	struct rng r;
	int rc;

	rng_seed(&r, itest_opts.seed ^ seed);
	rc = sg_plan(&p, &r, prefix, slot, nslots, users, alarms, harness_wall_sec() - 7200);
	if (rc == -1)
		harness_seterr("building a plan: out of memory");
	if (rc == 0)
		rc = plan_send(&p, e->bus, m);
	if (rc == 0)
		rc = bus_flush(e->bus, 10000);
	plan_free(&p);
	return rc;
}

/* Occurrences of needle in the service's log. */
static int
sg_log_count(struct env *e, const char *needle)
{
	size_t len;
	char *text = harness_read_file(e->svc.log, &len);
	int n = 0;

	if (text == NULL)
		return -1;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

static int
sg_log_wait(struct env *e, const char *needle, int count, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (harness_now_ms() < deadline) {
		if (sg_log_count(e, needle) >= count)
			return 0;
		harness_sleep_ms(100);
	}
	harness_seterr("the service log did not say \"%s\" (%d times) within %lld ms", needle, count,
	    (long long)timeout_ms);
	return -1;
}

/* The worker of slot in *pid (0 if none runs). */
static pid_t
sg_worker_pid(struct env *e, int slot)
{
	struct harness_worker w[16];
	int n = harness_workers(e->svc.proc.pid, w, 16);

	for (int i = 0; i < n; i++)
		if (w[i].slot == slot)
			return w[i].pid;
	return 0;
}

/* A process's title (its argv area, NULs as spaces). */
static int
sg_title(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY)) == -1) {
		harness_seterr("open %s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0) {
		harness_seterr("read %s: %s", path, strerror(errno));
		return -1;
	}
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return 0;
}

/* Wait until slot's worker title holds want; *pid gets its pid. */
static int
sg_title_wait(struct env *e, int slot, const char *want, int64_t timeout_ms, pid_t *pid)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char title[512] = "";

	while (harness_now_ms() < deadline) {
		if ((*pid = sg_worker_pid(e, slot)) > 0 && sg_title(*pid, title, sizeof(title)) == 0 &&
		    strstr(title, want) != NULL)
			return 0;
		harness_sleep_ms(100);
	}
	harness_seterr("worker %d's title does not say %s within %lld ms (last: \"%s\")", slot, want,
	    (long long)timeout_ms, title);
	return -1;
}

/* ---- map_growth ---- */

void
scn_map_growth(void)
{
	struct env_config cfg = { .workers = 2, .extra_conf = "map_size = 1M\n" };
	struct model *m = model_new();
	struct env e = { 0 };
	int grown;

	if (m == NULL || env_up(&e, "map_growth", &cfg) == -1) {
		tap_fail("map_growth", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	/* 2 x 300 users x 16 alarms of 200-byte IDs: several MB a store, from a 1 MB map. */
	if (sg_send(&e, m, 0x6a0e, "mg", -1, 2, itest_scaled(600), 16) == -1) {
		tap_fail("map_growth", "traffic: %s", harness_err());
		goto out;
	}
	tap_report("map_growth/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	grown = sg_log_count(&e, "LMDB map grown");
	printf("# map_growth: %d map growths logged\n", grown);
	if (grown < 2)
		harness_seterr("%d lines \"LMDB map grown\" in the log, want one per worker at least",
		    grown);
	tap_report("map_growth/grown_logged", grown >= 2 ? 0 : -1);
	if (sg_log_count(&e, "restarting in") != 0)
		harness_seterr("a worker was restarted (see the log)");
	tap_report("map_growth/no_restart", sg_log_count(&e, "restarting in") == 0 ? 0 : -1);
	tap_report("map_growth/digest_json_shape", env_check_collector(&e));
out:
	env_down(&e);
	model_free(m);
}

/* ---- disk_full ---- */

static char sg_mount[PATH_MAX + 64];

/* Always unmounted, also when the run is cut short. */
static void
sg_unmount(void)
{
	if (sg_mount[0] == '\0')
		return;
	if (umount2(sg_mount, MNT_DETACH) == -1)
		printf("# umount %s: %s\n", sg_mount, strerror(errno));
	sg_mount[0] = '\0';
}

static int
sg_copy(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in = open(from, O_RDONLY), out = in == -1 ? -1 : open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int rc = 0;

	if (in == -1 || out == -1) {
		harness_seterr("copying %s to %s: %s", from, to, strerror(errno));
		if (in != -1)
			close(in);
		return -1;
	}
	/* Holes stay holes: the store keeps a margin past its data as one (common/pcache.h). */
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		bool zero = buf[0] == 0 && memcmp(buf, buf + 1, (size_t)n - 1) == 0;

		if (zero ? lseek(out, n, SEEK_CUR) == -1 : write(out, buf, (size_t)n) != n) {
			harness_seterr("write %s: %s", to, strerror(errno));
			rc = -1;
			break;
		}
	}
	if (n < 0) {
		harness_seterr("read %s: %s", from, strerror(errno));
		rc = -1;
	}
	if (rc == 0 && ftruncate(out, lseek(out, 0, SEEK_CUR)) == -1) {
		harness_seterr("ftruncate %s: %s", to, strerror(errno));
		rc = -1;
	}
	close(in);
	if (close(out) == -1 && rc == 0) {
		harness_seterr("close %s: %s", to, strerror(errno));
		rc = -1;
	}
	return rc;
}

/* Move worker-0's store onto a tmpfs of `size` mounted at STATE/worker-0 (service stopped). */
static int
sg_mount_slot0(struct env *e, const char *size)
{
	char dir[PATH_MAX + 32], old[PATH_MAX + 48], from[PATH_MAX + 64], to[PATH_MAX + 64], opts[64];
	static bool registered;

	snprintf(dir, sizeof(dir), "%s/state/worker-0", e->dir);
	snprintf(old, sizeof(old), "%s.old", dir);
	if (rename(dir, old) == -1 || mkdir(dir, 0700) == -1) {
		harness_seterr("moving %s aside: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
	if (mount("tmpfs", dir, "tmpfs", 0, opts) == -1) {
		harness_seterr("mount -t tmpfs -o %s tmpfs %s: %s", opts, dir, strerror(errno));
		return -1;
	}
	snprintf(sg_mount, sizeof(sg_mount), "%s", dir);
	if (!registered && atexit(sg_unmount) == 0)
		registered = true;
	snprintf(from, sizeof(from), "%s/data.mdb", old);
	snprintf(to, sizeof(to), "%s/data.mdb", dir);
	return sg_copy(from, to);
}

/* Fill the file system of path with a ballast file until it is full. */
static int
sg_fill(const char *path)
{
	static char chunk[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1) {
		harness_seterr("open %s: %s", path, strerror(errno));
		return -1;
	}
	memset(chunk, 0xb5, sizeof(chunk));
	for (size_t len = sizeof(chunk); len > 0; ) {
		ssize_t n = write(fd, chunk, len);

		if (n < 0 && errno == ENOSPC) {
			len /= 2;     /* the last bytes in smaller pieces */
			continue;
		}
		if (n < 0) {
			harness_seterr("write %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

void
scn_disk_full(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct env e = { 0 };
	char ballast[PATH_MAX + 96] = "", ballast2[PATH_MAX + 96] = "", needle[PATH_MAX + 96];
	pid_t pid0 = 0, pid_again = 0;
	int64_t t0;

	if (geteuid() != 0) {
		tap_fail("disk_full", "needs root to mount a tmpfs (mount -t tmpfs); run the "
		    "integration tests as root, as CI does");
		model_free(m);
		return;
	}
	if (m == NULL || env_up(&e, "disk_full", &cfg) == -1 ||
	    harness_service_stop(&e.svc, 30000) == -1 || sg_mount_slot0(&e, "4m") == -1 ||
	    env_restart_service(&e) == -1) {
		tap_fail("disk_full", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	snprintf(ballast, sizeof(ballast), "%s/ballast", sg_mount);
	snprintf(ballast2, sizeof(ballast2), "%s/ballast2", sg_mount);
	if (sg_fill(ballast) == -1) {
		tap_fail("disk_full", "%s", harness_err());
		goto out;
	}
	/* Slot 0's users need new pages: the commit meets the full file system. */
	snprintf(needle, sizeof(needle), "disk full: %s", sg_mount);
	if (sg_send(&e, m, 0xd15c, "df0", 0, 2, itest_scaled(100), 8) == -1) {
		tap_fail("disk_full", "traffic: %s", harness_err());
		goto out;
	}
	tap_report("disk_full/logged_as_disk_full", sg_log_wait(&e, needle, 1, 30000));
	/* Paused, not crash-looping: the same worker, saying so, seconds later. */
	if (sg_title_wait(&e, 0, "DISK-FULL", 10000, &pid0) == 0) {
		harness_sleep_ms(3000);
		if (sg_worker_pid(&e, 0) != pid0)
			harness_seterr("worker 0 changed from pid %ld to %ld while the disk was full",
			    (long)pid0, (long)sg_worker_pid(&e, 0));
		tap_report("disk_full/paused_not_restarted", sg_worker_pid(&e, 0) == pid0 &&
		    sg_log_count(&e, "restarting in") == 0 ? 0 : -1);
	} else {
		tap_report("disk_full/paused_not_restarted", -1);
	}
	/* The other slot's users go on meanwhile. */
	tap_report("disk_full/other_slot_served",
	    sg_send(&e, m, 0xd15d, "df1", 1, 2, itest_scaled(20), 4) == -1 ? -1 :
	    traffic_wait(m, e.digests, false, 30000, &e.svc.proc, NULL) == -1 ? -1 : 0);
	/*
	 * Nothing reported durable early: the paused worker dies; what it held
	 * must come again from the supervisor, into a worker that pauses again.
	 */
	/*
	 * Whatever the dead worker's file system freed (it is not always
	 * nothing) is taken again before its replacement starts (restart
	 * backoff: at least 1 s), so the replacement meets a full disk too.
	 * Fresh users for slot 0 make sure it must: the dead worker's failed
	 * commit may already have grown data.mdb over the pages the redone
	 * batch needs (how far depends on timing), and then only new pages
	 * meet the full disk.
	 */
	if (pid0 > 0 && kill(pid0, SIGKILL) == 0 && sg_fill(ballast2) == 0 &&
	    sg_send(&e, m, 0xd15e, "df2", 0, 2, itest_scaled(100), 8) == 0 &&
	    sg_title_wait(&e, 0, "DISK-FULL", 30000, &pid_again) == 0 && pid_again != pid0)
		tap_ok("disk_full/killed_while_paused_pauses_again");
	else
		tap_fail("disk_full/killed_while_paused_pauses_again", "%s", harness_err());
	/* Space back: it resumes on its own. */
	t0 = harness_now_ms();
	(void)unlink(ballast2);
	if (unlink(ballast) == -1) {
		tap_fail("disk_full/resumes_on_its_own", "unlink %s: %s", ballast, strerror(errno));
	} else if (sg_log_wait(&e, "disk space is back", 1, 30000) == 0) {
		printf("# disk_full: resumed %lld ms after the ballast was removed\n",
		    (long long)(harness_now_ms() - t0));
		tap_ok("disk_full/resumes_on_its_own");
	} else {
		tap_fail("disk_full/resumes_on_its_own", "%s", harness_err());
	}
	/* A worker was killed: a digest handed out before the kill may come twice. */
	tap_report("disk_full/digests_match_model", env_finish_and_verify(&e, m, NULL, true));
	tap_report("disk_full/digest_json_shape", env_check_collector(&e));
out:
	/*
	 * Space back before the teardown, so the worker can finish; detached
	 * now (the worker keeps its open files), so the temp dir can go.
	 */
	if (ballast[0] != '\0') {
		(void)unlink(ballast);
		(void)unlink(ballast2);
	}
	sg_unmount();
	env_down(&e);
	model_free(m);
}

/* ---- corrupt_store ---- */

/*
 * Overwrite one page of the main database with garbage: the middle child
 * of the root when the root is a branch page, else the root.  Layout (LMDB
 * 0.9, 64-bit): page header 16 bytes; meta after it: magic, version,
 * address, mapsize, then the free and main MDB_db (48 bytes each,
 * md_root last), last_pg, txnid.
 */
static int
sg_corrupt(const char *path, uint64_t seed)
{
	unsigned char meta[2][256], page[4096];
	uint64_t txnid[2], root, pgno;
	uint16_t flags, lower;
	struct rng r;
	int fd = open(path, O_RDWR), best;

	if (fd == -1) {
		harness_seterr("open %s: %s", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (pread(fd, meta[i], sizeof(meta[i]), (off_t)i * 4096) != (ssize_t)sizeof(meta[i]))
			goto io;
		memcpy(&txnid[i], meta[i] + 16 + 128, 8);
	}
	best = txnid[1] > txnid[0];
	memcpy(&root, meta[best] + 16 + 24 + 48 + 40, 8);
	if (pread(fd, page, sizeof(page), (off_t)root * 4096) != (ssize_t)sizeof(page))
		goto io;
	memcpy(&flags, page + 10, 2);
	memcpy(&lower, page + 12, 2);
	pgno = root;
	if (flags & 0x01) {
		/* A branch: node pointers follow the header; a node starts with its child's pgno. */
		unsigned nkeys = (lower - 16u) / 2u;
		uint16_t ptr, lo, hi, fl;

		memcpy(&ptr, page + 16 + 2 * (nkeys / 2), 2);
		memcpy(&lo, page + ptr, 2);
		memcpy(&hi, page + ptr + 2, 2);
		memcpy(&fl, page + ptr + 4, 2);
		pgno = (uint64_t)lo | (uint64_t)hi << 16 | (uint64_t)fl << 32;
	}
	rng_seed(&r, seed);
	for (size_t i = 0; i < sizeof(page); i += 8) {
		uint64_t x = rng_next(&r);
		memcpy(page + i, &x, 8);
	}
	if (pwrite(fd, page, sizeof(page), (off_t)pgno * 4096) != (ssize_t)sizeof(page))
		goto io;
	printf("# corrupt_store: page %llu of %s overwritten (root %llu, %s)\n",
	    (unsigned long long)pgno, path, (unsigned long long)root,
	    pgno == root ? "a leaf" : "a branch");
	close(fd);
	return 0;
io:
	harness_seterr("reading/writing %s: %s", path, errno ? strerror(errno) : "short");
	close(fd);
	return -1;
}

void
scn_corrupt_store(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *before = model_new(), *m = model_new();
	struct env e = { 0 };
	char data[PATH_MAX + 64], slot0[PATH_MAX + 32], aside[PATH_MAX + 64], needle[PATH_MAX + 96];
	pid_t pid0 = 0;
	int64_t t0;

	if (before == NULL || m == NULL || env_up(&e, "corrupt_store", &cfg) == -1) {
		tap_fail("corrupt_store", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	/* Enough users for a tree of several pages in each store. */
	if (sg_send(&e, before, 0xc0de, "cs", -1, 2, itest_scaled(200), 4) == -1 ||
	    env_settle(&e, NULL, harness_now_ms() + 60000) == -1 ||
	    harness_service_stop(&e.svc, 30000) == -1) {
		tap_fail("corrupt_store", "before the corruption: %s", harness_err());
		goto out;
	}
	snprintf(slot0, sizeof(slot0), "%s/state/worker-0", e.dir);
	snprintf(data, sizeof(data), "%s/data.mdb", slot0);
	if (sg_corrupt(data, itest_opts.seed) == -1 || env_restart_service(&e) == -1) {
		tap_fail("corrupt_store", "%s", harness_err());
		goto out;
	}
	/* Named, with what to do. */
	snprintf(needle, sizeof(needle), "%s is corrupt", data);
	if (sg_log_wait(&e, needle, 1, 20000) == 0 && sg_log_count(&e, "move the directory aside") < 1)
		harness_seterr("the log names the file but not the recovery (\"move the directory aside\")");
	tap_report("corrupt_store/log_names_file_and_recovery", sg_log_count(&e, needle) >= 1 &&
	    sg_log_count(&e, "move the directory aside") >= 1 ? 0 : -1);
	/* Parked, not crash-looping: one worker stays, saying so; no restart, no PARKING. */
	if (sg_title_wait(&e, 0, "STORE-CORRUPT", 10000, &pid0) == 0) {
		harness_sleep_ms(4000);
		if (sg_worker_pid(&e, 0) != pid0 || sg_log_count(&e, needle) != 1 ||
		    sg_log_count(&e, "restarting in") != 0)
			harness_seterr("worker 0 did not stay parked: pid %ld then %ld, %d lines "
			    "\"%s\", %d restarts", (long)pid0, (long)sg_worker_pid(&e, 0),
			    sg_log_count(&e, needle), needle, sg_log_count(&e, "restarting in"));
		tap_report("corrupt_store/parked_no_crash_loop", sg_worker_pid(&e, 0) == pid0 &&
		    sg_log_count(&e, needle) == 1 && sg_log_count(&e, "restarting in") == 0 ? 0 : -1);
	} else {
		tap_report("corrupt_store/parked_no_crash_loop", -1);
	}
	/* The other slot serves; slot 0's new users wait. */
	tap_report("corrupt_store/other_slot_served",
	    sg_send(&e, m, 0xc0df, "cs1", 1, 2, itest_scaled(20), 4) == -1 ? -1 :
	    traffic_wait(m, e.digests, false, 30000, &e.svc.proc, NULL));
	if (sg_send(&e, m, 0xc0e0, "cs0", 0, 2, itest_scaled(20), 4) == -1) {
		tap_fail("corrupt_store/moved_aside_slot_restarts", "traffic: %s", harness_err());
		goto out;
	}
	/* The documented recovery: move the directory aside; the slot starts afresh by itself. */
	snprintf(aside, sizeof(aside), "%s.corrupt", slot0);
	t0 = harness_now_ms();
	if (rename(slot0, aside) == -1) {
		tap_fail("corrupt_store/moved_aside_slot_restarts", "mv %s %s: %s", slot0, aside,
		    strerror(errno));
	} else if (traffic_wait(m, e.digests, false, 30000, &e.svc.proc, NULL) == 0) {
		printf("# corrupt_store: slot 0 served again %lld ms after the move\n",
		    (long long)(harness_now_ms() - t0));
		tap_ok("corrupt_store/moved_aside_slot_restarts");
	} else {
		tap_fail("corrupt_store/moved_aside_slot_restarts", "%s", harness_err());
	}
	/* Users of both slots after the corruption: exact; slot 0's earlier state is gone. */
	tap_report("corrupt_store/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
out:
	env_down(&e);
	model_free(before);
	model_free(m);
}
