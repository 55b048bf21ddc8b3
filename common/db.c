#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "pcache.h"

/* An EIO with less than this free on the file system was a short write for want of space. */
#define DB_DISK_LOW (1u << 20)

/*
 * The users' cells live in DB_CELLS, in chunks (db.h): store format 3.
 * Format 2 kept one cell per duplicate in a database named DB_LEGACY.
 * A format 3 store holds a plain record under that name instead, which
 * format 2's mdb_dbi_open refuses (MDB_INCOMPATIBLE): a build from before
 * stops at open instead of taking chunks for corrupt cells.
 */
#define DB_CELLS "cells"
#define DB_LEGACY "alarms"
#define DB_MARKER "store format 3: the cells are in chunks, in the database \"cells\""

/* The largest chunk: LMDB's limit on a duplicate in the builds we know (mdb_env_get_maxkeysize). */
#define DB_CHUNK_CAP 511

struct db {
	MDB_env *env;
	MDB_dbi dbi;            /* the main database */
	MDB_dbi cells;          /* DB_CELLS; a reader of a format 2 store: DB_LEGACY */
	bool has_cells;         /* false only in a read-only store that never had one */
	MDB_dbi legacy;         /* DB_LEGACY of a format 2 store not migrated yet */
	bool has_legacy;
	db_cell_len_fn cell_len;
	size_t chunk_max;       /* bytes */
	uint8_t work[2 * DB_CHUNK_CAP];   /* a chunk being rebuilt */
	bool readonly;
	MDB_txn *txn;           /* the open write transaction, if any */
	MDB_cursor *cur;        /* on the cells in txn, opened at first use; LMDB frees it with txn */
	size_t max_key;
	int64_t map_size, map_max;
	size_t psize;           /* LMDB's page size */
	struct pcache *pc;      /* the writer's: the file kept in base pages (NULL: not) */
	enum db_fault fault;    /* of the last failed call */
	bool fault_logged;      /* a map or disk full was logged; quiet until a commit works */
	char *dir;
};

/* The free bytes of the file system dir is on, or UINT64_MAX when unknown. */
static uint64_t
db_disk_free(const char *dir)
{
	struct statvfs sv;

	if (statvfs(dir, &sv) == -1)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static enum db_fault
db_classify(const struct db *db, int rc)
{
	if (rc == MDB_MAP_FULL)
		return DB_FAULT_MAP_FULL;
	if (rc == ENOSPC || rc == EDQUOT)
		return DB_FAULT_DISK_FULL;
	/* LMDB's page flush reports a short write as EIO: on a full file system, that is what it was. */
	if (rc == EIO && db_disk_free(db->dir) < DB_DISK_LOW)
		return DB_FAULT_DISK_FULL;
	return DB_FAULT_OTHER;
}

/*
 * Log a failed call and remember its kind.  A map or disk full repeats
 * while the caller waits for it to pass: said once, the caller says the rest.
 */
static void
db_error(struct db *db, const char *call, int rc)
{
	db->fault = db_classify(db, rc);
	switch (db->fault) {
	case DB_FAULT_DISK_FULL:
		if (!db->fault_logged)
			log_errorx("disk full: %s/data.mdb: %s: %s (%llu bytes free on its file system)",
			    db->dir, call, mdb_strerror(rc), (unsigned long long)db_disk_free(db->dir));
		db->fault_logged = true;
		break;
	case DB_FAULT_MAP_FULL:
		if (!db->fault_logged)
			log_warnx("%s: %s: %s (map of %lld bytes, at most %lld)", call, db->dir,
			    mdb_strerror(rc), (long long)db->map_size, (long long)db->map_max);
		db->fault_logged = true;
		break;
	default:
		log_errorx("%s: %s: %s", call, db->dir, mdb_strerror(rc));
		break;
	}
}

static int db_read_begin(struct db *db, MDB_txn **txn);
static size_t db_cell_at(const struct db *db, const uint8_t *p, size_t avail);

static int
db_need_txn(const struct db *db, const char *fn)
{
	if (db->txn != NULL)
		return 0;
	log_errorx("%s: %s: no write transaction open", db->dir, fn);
	return -1;
}

/* ---- open / close ------------------------------------------------------ */

static int
db_mkdirs(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(path)) {
		snprintf(err, errlen, "state directory \"%s\": bad path length", dir);
		return -1;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
			return -1;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	if (stat(dir, &sb) == -1) {
		snprintf(err, errlen, "stat %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", dir);
		return -1;
	}
	return 0;
}

/*
 * The order of the keys and chunks of the cells (and of format 2's cells
 * while they are migrated): LMDB's default
 * (mdb_cmp_memn: bytewise, a proper prefix first), eight bytes at a step
 * instead of a memcmp call per comparison.  Every search of an update
 * compares about thirty times, and LMDB's comparator with its memcmp was
 * a sixth of a worker's instructions.  The same order, so the files do
 * not change, and a reader that leaves LMDB's default (db_check's child)
 * reads them alike.
 */
static int
db_cmp_bytes(const MDB_val *a, const MDB_val *b)
{
	const uint8_t *p = a->mv_data, *q = b->mv_data;
	size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;

	for (; n >= 8; p += 8, q += 8, n -= 8) {
		uint64_t x, y;

		memcpy(&x, p, 8);
		memcpy(&y, q, 8);
		if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			x = __builtin_bswap64(x);
			y = __builtin_bswap64(y);
#endif
			return x < y ? -1 : 1;
		}
	}
	for (; n > 0; p++, q++, n--)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

/* Open a database of sorted duplicates in our byte order. */
static int
db_open_dups(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi)
{
	int rc;

	if ((rc = mdb_dbi_open(txn, name, MDB_DUPSORT | flags, dbi)) != 0)
		return rc;
	if ((rc = mdb_set_compare(txn, *dbi, db_cmp_bytes)) != 0)
		return rc;
	return mdb_set_dupsort(txn, *dbi, db_cmp_bytes);
}

/*
 * Which format the store is in, by the main database's record named
 * DB_LEGACY: a database of sorted duplicates (format 2, migrated by
 * db_migrate), a plain record (format 3's marker), or nothing (a new
 * store, or format 1's, which the writer marks as format 3 now).  A
 * reader of a format 2 store reads its duplicates as chunks of one cell,
 * which is what they are.
 */
static int
db_open_cells(struct db *db, MDB_txn *txn, char *err, size_t errlen)
{
	MDB_val k = { .mv_size = strlen(DB_LEGACY), .mv_data = DB_LEGACY };
	MDB_val v = { .mv_size = strlen(DB_MARKER), .mv_data = DB_MARKER };
	int rc;

	rc = db_open_dups(txn, DB_LEGACY, 0, &db->legacy);
	if (rc != 0 && rc != MDB_INCOMPATIBLE && rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "mdb_dbi_open %s: %s: %s", DB_LEGACY, db->dir, mdb_strerror(rc));
		return -1;
	}
	db->has_legacy = rc == 0;
	if (rc == MDB_NOTFOUND && !db->readonly && (rc = mdb_put(txn, db->dbi, &k, &v, 0)) != 0) {
		snprintf(err, errlen, "mdb_put %s: %s: %s", DB_LEGACY, db->dir, mdb_strerror(rc));
		return -1;
	}
	rc = db_open_dups(txn, DB_CELLS, db->readonly ? 0 : MDB_CREATE, &db->cells);
	if (rc != 0 && !(rc == MDB_NOTFOUND && db->readonly)) {
		snprintf(err, errlen, "mdb_dbi_open %s: %s: %s", DB_CELLS, db->dir, mdb_strerror(rc));
		return -1;
	}
	db->has_cells = rc == 0;
	if (!db->has_cells && db->has_legacy) {
		db->cells = db->legacy;
		db->has_cells = true;
		db->has_legacy = false;
	}
	return 0;
}

static int
db_open_env(struct db *db, int64_t map_size_bytes, char *err, size_t errlen)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&db->env)) != 0) {
		db->env = NULL;
		snprintf(err, errlen, "mdb_env_create: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	/* 0 for a reader: the size the writer gave the map. */
	if (map_size_bytes > 0 && (rc = mdb_env_set_mapsize(db->env, (size_t)map_size_bytes)) != 0) {
		snprintf(err, errlen, "mdb_env_set_mapsize: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(db->env, 3)) != 0) {
		snprintf(err, errlen, "mdb_env_set_maxdbs: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	/*
	 * Every commit is synced, which is the durability contract.  A
	 * reader, and the writer of a store pcache keeps in base pages, do
	 * not read ahead: that caches the file in large folios, which the
	 * writer's scattered pages then dirty whole (pcache.h).  A store
	 * that grows to that size gets the flag at its next open.  A reader
	 * shares LMDB's lock file with the writer (its reader table
	 * is what keeps the pages it reads from being reused).
	 */
	if ((rc = mdb_env_open(db->env, db->dir, db->readonly ? MDB_RDONLY | MDB_NORDAHEAD :
	    pcache_active(db->pc) ? MDB_NORDAHEAD : 0, 0600)) != 0) {
		snprintf(err, errlen, "mdb_env_open: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_txn_begin(db->env, NULL, db->readonly ? MDB_RDONLY : 0, &txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &db->dbi)) != 0) {
		snprintf(err, errlen, "mdb_dbi_open: %s: %s", db->dir, mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	if (db_open_cells(db, txn, err, errlen) == -1) {
		mdb_txn_abort(txn);
		return -1;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_commit: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	db->max_key = (size_t)mdb_env_get_maxkeysize(db->env);
	db->chunk_max = db->max_key < DB_CHUNK_CAP ? db->max_key : DB_CHUNK_CAP;
	/* LMDB raises a map smaller than the data to the data's size. */
	if ((rc = mdb_env_info(db->env, &info)) != 0) {
		snprintf(err, errlen, "mdb_env_info: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	db->map_size = (int64_t)info.me_mapsize;
	db->map_max = db->map_size;
	if ((rc = mdb_env_stat(db->env, &st)) != 0) {
		snprintf(err, errlen, "mdb_env_stat: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	db->psize = st.ms_psize;
	return 0;
}

/* Where the data ends now, for the page cache (pcache.h). */
static void
db_cache_advance(struct db *db)
{
	MDB_envinfo info;

	if (db->pc != NULL && mdb_env_info(db->env, &info) == 0)
		pcache_advance(db->pc, (off_t)((info.me_last_pgno + 1) * db->psize),
		    (off_t)db->map_size);
}

/* ---- checking a store before it is used ----------------------------- */

/* A corruption found: the child's answer, with a sentence for the parent. */
#define DB_CHECK_CORRUPT 3
#define DB_CHECK_FAILED 4

static int __attribute__((format(printf, 3, 4)))
db_check_say(int fd, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n > 0 && write(fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1) == -1)
		return DB_CHECK_FAILED;
	return code;
}

/*
 * Walk the main database in key order, touching every page of every
 * record (so overflow pages are read too), and the free list; the keys
 * must ascend and their number match what the root says.  The cursor
 * finds a page that is not where the tree says (MDB_CORRUPTED,
 * MDB_PAGE_NOTFOUND); garbage inside a page shows as disorder or a wrong
 * count, or kills the process, which the parent reports.
 */
static int
db_check_walk(MDB_txn *txn, MDB_dbi dbi, bool dups, size_t last_pg, int fd)
{
	unsigned char prevv[512];
	size_t prevvlen = 0;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_val k, v;
	unsigned char prev[512];
	size_t prevlen = 0, n = 0, maxkey = (size_t)mdb_env_get_maxkeysize(mdb_txn_env(txn));
	volatile unsigned char sink = 0;
	int rc;

	if ((rc = mdb_stat(txn, dbi, &st)) != 0)
		return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_stat: %s", mdb_strerror(rc));
	if (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages > last_pg + 1)
		return db_check_say(fd, DB_CHECK_CORRUPT, "the main database claims %zu pages, the "
		    "file has %zu", st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages,
		    last_pg + 1);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_cursor_open: %s", mdb_strerror(rc));
	for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
		int cmp;

		if (++n > st.ms_entries)
			return db_check_say(fd, DB_CHECK_CORRUPT, "more records than the %zu the "
			    "database holds", st.ms_entries);
		if (k.mv_size == 0 || k.mv_size > maxkey || k.mv_size > sizeof(prev))
			return db_check_say(fd, DB_CHECK_CORRUPT, "record %zu has a key of %zu bytes", n,
			    k.mv_size);
		cmp = memcmp(prev, k.mv_data, prevlen < k.mv_size ? prevlen : k.mv_size);
		if (cmp == 0)
			cmp = (prevlen > k.mv_size) - (prevlen < k.mv_size);
		if (n > 1 && (cmp > 0 || (cmp == 0 && !dups)))
			return db_check_say(fd, DB_CHECK_CORRUPT, "record %zu is out of key order", n);
		/* Duplicates of one key: strictly ascending, and no longer than a key. */
		if (dups && v.mv_size > maxkey)
			return db_check_say(fd, DB_CHECK_CORRUPT, "record %zu has a duplicate of %zu "
			    "bytes", n, v.mv_size);
		if (dups && n > 1 && cmp == 0) {
			int vc = memcmp(prevv, v.mv_data, prevvlen < v.mv_size ? prevvlen : v.mv_size);

			if (vc > 0 || (vc == 0 && prevvlen >= v.mv_size))
				return db_check_say(fd, DB_CHECK_CORRUPT, "record %zu is out of "
				    "duplicate order", n);
		}
		if (dups) {
			memcpy(prevv, v.mv_data, v.mv_size);
			prevvlen = v.mv_size;
		}
		memcpy(prev, k.mv_data, k.mv_size);
		prevlen = k.mv_size;
		/* A byte of every page the value spans: enough to fault in a page outside the file. */
		for (size_t i = 0; i < v.mv_size; i += 4096)
			sink ^= ((const unsigned char *)v.mv_data)[i];
		if (v.mv_size > 0)
			sink ^= ((const unsigned char *)v.mv_data)[v.mv_size - 1];
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_cursor_get after record %zu: %s", n,
		    mdb_strerror(rc));
	if (n != st.ms_entries)
		return db_check_say(fd, DB_CHECK_CORRUPT, "%zu records found, the database holds %zu",
		    n, st.ms_entries);
	(void)sink;
	return 0;
}

/* The free list: each record a list of page numbers, all inside the file. */
static int
db_check_free(MDB_txn *txn, size_t last_pg, int fd)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, 0, &cur)) != 0)
		return db_check_say(fd, DB_CHECK_CORRUPT, "free list: mdb_cursor_open: %s",
		    mdb_strerror(rc));
	for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
		const size_t *ids = v.mv_data;

		if (v.mv_size < sizeof(size_t) || v.mv_size % sizeof(size_t) != 0 ||
		    ids[0] != v.mv_size / sizeof(size_t) - 1)
			return db_check_say(fd, DB_CHECK_CORRUPT, "free list: a record of %zu bytes "
			    "is malformed", v.mv_size);
		for (size_t i = 1; i <= ids[0]; i++)
			if (ids[i] < 2 || ids[i] > last_pg)
				return db_check_say(fd, DB_CHECK_CORRUPT, "free list: page %zu is "
				    "outside the file (last page %zu)", ids[i], last_pg);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return db_check_say(fd, DB_CHECK_CORRUPT, "free list: mdb_cursor_get: %s",
		    mdb_strerror(rc));
	return 0;
}

/* In the child: the exit code is the answer, fd gets the sentence. */
static int
db_check_child(const char *dir, off_t size, int fd)
{
	MDB_env *env;
	MDB_envinfo info;
	MDB_stat est;
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 3)) != 0)
		return db_check_say(fd, DB_CHECK_FAILED, "mdb_env_create: %s", mdb_strerror(rc));
	/* The whole file, mapped: a page number past it is LMDB's to refuse. */
	if ((rc = mdb_env_set_mapsize(env, (size_t)size + (1u << 20))) != 0)
		return db_check_say(fd, DB_CHECK_FAILED, "mdb_env_set_mapsize: %s", mdb_strerror(rc));
	/* Read-only, no lock file: the caller holds the store's own lock (worker.lock). */
	if ((rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600)) != 0) {
		if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED)
			return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_env_open: %s", mdb_strerror(rc));
		return db_check_say(fd, DB_CHECK_FAILED, "mdb_env_open: %s", mdb_strerror(rc));
	}
	if ((rc = mdb_env_info(env, &info)) != 0 || (rc = mdb_env_stat(env, &est)) != 0)
		return db_check_say(fd, DB_CHECK_FAILED, "mdb_env_info: %s", mdb_strerror(rc));
	if ((off_t)((info.me_last_pgno + 1) * est.ms_psize) > size)
		return db_check_say(fd, DB_CHECK_CORRUPT, "its header says %zu pages, the file holds "
		    "%lld bytes", info.me_last_pgno + 1, (long long)size);
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0)
		return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_txn_begin: %s", mdb_strerror(rc));
	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0)
		return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_dbi_open: %s", mdb_strerror(rc));
	if ((rc = db_check_walk(txn, dbi, false, info.me_last_pgno, fd)) != 0 ||
	    (rc = db_check_free(txn, info.me_last_pgno, fd)) != 0)
		return rc;
	/*
	 * The cells, and format 2's database while it is migrated (format 1
	 * kept everything in the main database).  Under DB_LEGACY, a plain
	 * record is format 3's marker: LMDB says MDB_INCOMPATIBLE.
	 */
	static const char *const dups[] = { DB_CELLS, DB_LEGACY };
	for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
		if ((rc = mdb_dbi_open(txn, dups[i], MDB_DUPSORT, &dbi)) == 0) {
			if ((rc = db_check_walk(txn, dbi, true, info.me_last_pgno, fd)) != 0)
				return rc;
		} else if (rc != MDB_NOTFOUND && !(rc == MDB_INCOMPATIBLE && i == 1)) {
			return db_check_say(fd, DB_CHECK_CORRUPT, "mdb_dbi_open %s: %s", dups[i],
			    mdb_strerror(rc));
		}
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return 0;
}

int
db_check(const char *dir, char *err, size_t errlen)
{
	char path[4096], msg[512];
	struct stat sb;
	int fds[2], status;
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	if ((size_t)snprintf(path, sizeof(path), "%s/data.mdb", dir) >= sizeof(path)) {
		snprintf(err, errlen, "%s/data.mdb: path too long", dir);
		return -1;
	}
	if (stat(path, &sb) == -1) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "stat %s: %s", path, strerror(errno));
		return -1;
	}
	if (sb.st_size == 0)
		return 1;
	if (pipe(fds) == -1) {
		snprintf(err, errlen, "checking %s: pipe: %s", path, strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "checking %s: fork: %s", path, strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		/* Die of the signal itself (a sanitizer's handler would exit instead): that is the answer. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		_exit(db_check_child(dir, sb.st_size, fds[1]));
	}
	close(fds[1]);
	while (got < sizeof(msg) - 1 && ((n = read(fds[0], msg + got, sizeof(msg) - 1 - got)) > 0 ||
	    (n == -1 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	msg[got] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			snprintf(err, errlen, "checking %s: waitpid: %s", path, strerror(errno));
			return -1;
		}
	}
	if (WIFSIGNALED(status)) {
		snprintf(err, errlen, "%s is corrupt: reading it killed the checking process with "
		    "signal %d (%s%s)", path, WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WTERMSIG(status) == SIGABRT ? ": an LMDB assertion failed" : "");
		return 0;
	}
	switch (WIFEXITED(status) ? WEXITSTATUS(status) : DB_CHECK_FAILED) {
	case 0:
		return 1;
	case DB_CHECK_CORRUPT:
		snprintf(err, errlen, "%s is corrupt: %s", path, msg);
		return 0;
	case DB_CHECK_FAILED:
		snprintf(err, errlen, "checking %s: %s", path, got > 0 ? msg : "the check failed");
		return -1;
	default:
		snprintf(err, errlen, "%s is corrupt: the process reading it died with exit status %d",
		    path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 0;
	}
}

struct db *
db_open_readonly(const char *dir, db_cell_len_fn cell_len, char *err, size_t errlen)
{
	struct db *db;
	struct stat sb;

	/* Never creates anything: a reader of a store that is not there is told so. */
	if (stat(dir, &sb) == -1) {
		snprintf(err, errlen, "stat %s: %s", dir, strerror(errno));
		return NULL;
	}
	if ((db = calloc(1, sizeof(*db))) == NULL || (db->dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(db);
		return NULL;
	}
	db->readonly = true;
	db->cell_len = cell_len;
	if (db_open_env(db, 0, err, errlen) == -1) {
		db_close(db);
		return NULL;
	}
	return db;
}

struct db *
db_open(const char *dir, int64_t map_size_bytes, db_cell_len_fn cell_len, char *err, size_t errlen)
{
	char path[4096];
	struct pcache *pc;
	struct db *db;

	if (map_size_bytes <= 0 || (uint64_t)map_size_bytes > SIZE_MAX) {
		snprintf(err, errlen, "%s: map size %lld out of range", dir, (long long)map_size_bytes);
		return NULL;
	}
	if (db_mkdirs(dir, err, errlen) == -1)
		return NULL;
	if ((size_t)snprintf(path, sizeof(path), "%s/data.mdb", dir) >= sizeof(path)) {
		snprintf(err, errlen, "%s/data.mdb: path too long", dir);
		return NULL;
	}
	/* Before the check, which then reads it from the cache. */
	pc = pcache_open(path);
	switch (db_check(dir, err, errlen)) {
	case 1:
		break;
	case 0:
		pcache_close(pc);
		errno = EBADMSG;
		return NULL;
	default:
		pcache_close(pc);
		return NULL;
	}
	if ((db = calloc(1, sizeof(*db))) == NULL || (db->dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		pcache_close(pc);
		free(db);
		return NULL;
	}
	db->pc = pc;
	db->cell_len = cell_len;
	if (db_open_env(db, map_size_bytes, err, errlen) == -1) {
		db_close(db);
		return NULL;
	}
	db_cache_advance(db);
	return db;
}

void
db_close(struct db *db)
{
	if (db == NULL)
		return;
	db_abort(db);
	pcache_close(db->pc);
	if (db->env != NULL)
		mdb_env_close(db->env);
	free(db->dir);
	free(db);
}

void
db_set_map_max(struct db *db, int64_t max_bytes)
{
	db->map_max = max_bytes > db->map_size ? max_bytes : db->map_size;
}

int64_t
db_map_size(const struct db *db)
{
	return db->map_size;
}

enum db_fault
db_fault(const struct db *db)
{
	return db->fault;
}

int
db_grow(struct db *db)
{
	int64_t to;
	int rc;

	if (db->txn != NULL) {
		log_errorx("%s: db_grow: a write transaction is open", db->dir);
		db->fault = DB_FAULT_OTHER;
		return -1;
	}
	if (db->map_size >= db->map_max)
		return 0;
	to = db->map_size > db->map_max / 2 ? db->map_max : db->map_size * 2;
	if ((rc = mdb_env_set_mapsize(db->env, (size_t)to)) != 0) {
		db_error(db, "mdb_env_set_mapsize", rc);
		return -1;
	}
	log_info("%s: LMDB map grown from %lld to %lld bytes (at most %lld)", db->dir,
	    (long long)db->map_size, (long long)to, (long long)db->map_max);
	db->map_size = to;
	db->fault = DB_FAULT_NONE;
	return 1;
}

const char *
db_dir(const struct db *db)
{
	return db->dir;
}

size_t
db_max_key(const struct db *db)
{
	return db->max_key;
}

int
db_bytes(struct db *db, uint64_t *out)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn = db->txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t free_pages = 0;
	int rc;

	/*
	 * The pages the file holds less the free ones (and the two meta
	 * pages): mdb_stat's counts leave out the pages of a user's
	 * duplicates once they outgrow a sub-page into a tree of their own.
	 */
	if ((rc = mdb_env_info(db->env, &info)) != 0 || (rc = mdb_env_stat(db->env, &st)) != 0) {
		log_errorx("mdb_env_info: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if (txn == NULL && db_read_begin(db, &txn) == -1)
		return -1;
	if ((rc = mdb_cursor_open(txn, 0, &cur)) == 0) {
		for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0;
		    op = MDB_NEXT)
			if (v.mv_size >= sizeof(size_t))
				free_pages += *(const size_t *)v.mv_data;
		mdb_cursor_close(cur);
	}
	if (txn != db->txn)
		mdb_txn_abort(txn);
	if (rc != MDB_NOTFOUND) {
		log_errorx("reading the free list: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	free_pages += 2;   /* the meta pages */
	*out = info.me_last_pgno + 1 > free_pages ?
	    (uint64_t)(info.me_last_pgno + 1 - free_pages) * st.ms_psize : 0;
	return 0;
}

/* ---- transactions ------------------------------------------------------ */

int
db_begin(struct db *db)
{
	int rc;

	if (db->txn != NULL) {
		log_errorx("%s: db_begin: a write transaction is already open", db->dir);
		return -1;
	}
	if (db->readonly) {
		log_errorx("%s: db_begin: the store is open read-only", db->dir);
		return -1;
	}
	db->fault = DB_FAULT_NONE;
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &db->txn)) != 0) {
		db->txn = NULL;
		db_error(db, "mdb_txn_begin", rc);
		return -1;
	}
	return 0;
}

int
db_commit(struct db *db)
{
	int rc;

	if (db_need_txn(db, "db_commit") == -1)
		return -1;
	/* mdb_txn_commit frees the transaction whether or not it succeeds. */
	rc = mdb_txn_commit(db->txn);
	db->txn = NULL;
	db->cur = NULL;
	if (rc != 0) {
		db_error(db, "mdb_txn_commit", rc);
		return -1;
	}
	db->fault_logged = false;
	db_cache_advance(db);
	return 0;
}

void
db_abort(struct db *db)
{
	if (db->txn == NULL)
		return;
	mdb_txn_abort(db->txn);
	db->txn = NULL;
	db->cur = NULL;
}

bool
db_in_txn(const struct db *db)
{
	return db->txn != NULL;
}

/* ---- records ------------------------------------------------------------ */

int
db_get(struct db *db, const void *key, size_t klen, const void **val, size_t *vlen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key }, v;
	int rc;

	if (db_need_txn(db, "db_get") == -1)
		return -1;
	rc = mdb_get(db->txn, db->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		db_error(db, "mdb_get", rc);
		return -1;
	}
	*val = v.mv_data;
	*vlen = v.mv_size;
	return 1;
}

int
db_put(struct db *db, const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
	MDB_val v = { .mv_size = vlen, .mv_data = (void *)val };
	int rc;

	if (db_need_txn(db, "db_put") == -1)
		return -1;
	if ((rc = mdb_put(db->txn, db->dbi, &k, &v, 0)) != 0) {
		db_error(db, "mdb_put", rc);
		return -1;
	}
	return 0;
}

int
db_del(struct db *db, const void *key, size_t klen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
	int rc;

	if (db_need_txn(db, "db_del") == -1)
		return -1;
	if ((rc = mdb_del(db->txn, db->dbi, &k, NULL)) != 0) {
		db_error(db, "mdb_del", rc);
		return -1;
	}
	return 0;
}

/* What a walk hands its callback: each record whole, or each cell of each chunk, or a key's first cell. */
enum db_each {
	DB_EACH_RECORD,
	DB_EACH_CELL,
	DB_EACH_FIRST_CELL,
};

/* Walk dbi from `from` with first, then next, in the open or a new read transaction. */
static int
db_cursor_walk(struct db *db, MDB_dbi dbi, const void *from, size_t fromlen, MDB_cursor_op first,
    MDB_cursor_op next, enum db_each each, db_walk_fn fn, void *arg)
{
	MDB_txn *txn = db->txn;
	MDB_cursor *cur;
	MDB_val k = { .mv_size = fromlen, .mv_data = (void *)from }, v;
	MDB_cursor_op op = first;
	int rc, ret = 0;

	if (txn == NULL && db_read_begin(db, &txn) == -1)
		return -1;
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		db_error(db, "mdb_cursor_open", rc);
		if (txn != db->txn)
			mdb_txn_abort(txn);
		return -1;
	}
	while (ret == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		const uint8_t *p = v.mv_data;

		op = next;
		if (each == DB_EACH_RECORD) {
			ret = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
			continue;
		}
		for (size_t o = 0, c; ret == 0 && o < v.mv_size; o += c) {
			c = db_cell_at(db, p + o, v.mv_size - o);
			ret = fn(arg, k.mv_data, k.mv_size, p + o, c);
			if (each == DB_EACH_FIRST_CELL)
				break;
		}
	}
	if (ret == 0 && rc != MDB_NOTFOUND) {
		db_error(db, "mdb_cursor_get", rc);
		ret = -1;
	}
	mdb_cursor_close(cur);
	if (txn != db->txn)
		mdb_txn_abort(txn);
	return ret;
}

int
db_walk(struct db *db, const void *from, size_t fromlen, db_walk_fn fn, void *arg)
{
	return db_cursor_walk(db, db->dbi, from, fromlen, fromlen > 0 ? MDB_SET_RANGE : MDB_FIRST,
	    MDB_NEXT, DB_EACH_RECORD, fn, arg);
}

/* ---- the cells: chunks of them, sorted duplicates under each user's key ---------- */

/*
 * A read transaction of its own, for a walk with no write transaction
 * open.  A writer that grew the map makes a reader's begin fail with
 * MDB_MAP_RESIZED; adopting the new size (which LMDB allows only with no
 * transaction of ours open, as here) and retrying is LMDB's documented
 * answer.
 */
static int
db_read_begin(struct db *db, MDB_txn **txn)
{
	int rc;

	if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn)) == MDB_MAP_RESIZED &&
	    (rc = mdb_env_set_mapsize(db->env, 0)) == 0)
		rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn);
	if (rc != 0) {
		db_error(db, "mdb_txn_begin", rc);
		return -1;
	}
	return 0;
}

static int
db_need_cells(struct db *db, const char *fn)
{
	if (db_need_txn(db, fn) == -1)
		return -1;
	if (!db->has_cells) {
		log_errorx("%s: %s: the store has no %s database", db->dir, fn, DB_CELLS);
		return -1;
	}
	return 0;
}

static int
db_cells_cursor(struct db *db, const char *fn, MDB_cursor **cur)
{
	int rc;

	if (db_need_cells(db, fn) == -1)
		return -1;
	if (db->cur == NULL && (rc = mdb_cursor_open(db->txn, db->cells, &db->cur)) != 0) {
		db->cur = NULL;
		db_error(db, "mdb_cursor_open", rc);
		return -1;
	}
	*cur = db->cur;
	return 0;
}

/*
 * The length of the cell at p, with avail bytes left in its chunk.  A
 * cell that does not parse takes the rest of the chunk: the store then
 * refuses it, and removes it, as one.
 */
static size_t
db_cell_at(const struct db *db, const uint8_t *p, size_t avail)
{
	size_t n = db->cell_len(p, avail);

	return n == 0 || n > avail ? avail : n;
}

/*
 * In chunk v: the cell that starts with prefix (true, *off and *len), or
 * where it would go (false, *off).  A sorted search stops at the first
 * cell above the prefix; an unsorted one (for a chunk whose cells are not
 * in order, which only corruption makes) looks at every cell.
 */
static bool
db_chunk_find(const struct db *db, const MDB_val *v, const void *prefix, size_t plen, bool sorted,
    size_t *off, size_t *len)
{
	const uint8_t *p = v->mv_data;
	size_t o, n;

	for (o = 0; o < v->mv_size; o += n) {
		int cmp;

		n = db_cell_at(db, p + o, v->mv_size - o);
		cmp = memcmp(p + o, prefix, n < plen ? n : plen);
		if (cmp == 0 && n >= plen) {
			*off = o;
			*len = n;
			return true;
		}
		if (cmp > 0 && sorted)
			break;
	}
	*off = o;
	*len = 0;
	return false;
}

/*
 * Position cur on the chunk of key that holds the cell starting with
 * prefix, or would: chunks sort by their first cells, so that is the
 * last chunk whose first cell is not above the prefix, else the first.
 * 1 with v the chunk, 0 when the key has none, -1 on error.
 */
static int
db_chunk_seek(struct db *db, MDB_cursor *cur, const void *key, size_t klen, const void *prefix,
    size_t plen, MDB_val *v)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
	int rc = MDB_NOTFOUND;

	/* LMDB refuses an empty duplicate to search by: the empty prefix is the first cell. */
	if (plen > 0) {
		v->mv_size = plen;
		v->mv_data = (void *)prefix;
		rc = mdb_cursor_get(cur, &k, v, MDB_GET_BOTH_RANGE);
		if (rc == 0 && v->mv_size >= plen && memcmp(v->mv_data, prefix, plen) == 0)
			return 1;
		if (rc == 0) {
			/* v's first cell is above the prefix: the one before, if any. */
			rc = mdb_cursor_get(cur, &k, v, MDB_PREV_DUP);
		} else if (rc == MDB_NOTFOUND) {
			/* Every chunk is below the prefix, or the key has none. */
			if ((rc = mdb_cursor_get(cur, &k, v, MDB_SET_KEY)) == 0)
				rc = mdb_cursor_get(cur, &k, v, MDB_LAST_DUP);
			else if (rc == MDB_NOTFOUND)
				return 0;
		}
		if (rc == 0)
			return 1;
	}
	if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(cur, &k, v, MDB_SET_KEY);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		db_error(db, "mdb_cursor_get", rc);
		return -1;
	}
	return 1;
}

/* Add one chunk of n bytes at p under k. */
static int
db_chunk_add(struct db *db, MDB_cursor *cur, MDB_val *k, const uint8_t *p, size_t n)
{
	MDB_val v = { .mv_size = n, .mv_data = (void *)p };
	int rc;

	if (n == 0)
		return 0;
	if ((rc = mdb_cursor_put(cur, k, &v, 0)) != 0) {
		db_error(db, "mdb_cursor_put", rc);
		return -1;
	}
	return 0;
}

static size_t
db_distance(size_t a, size_t b)
{
	return a > b ? a - b : b - a;
}

/*
 * Add the cells in the n bytes at p under k: one chunk when they fit,
 * else two halves split at the cell boundary nearest the middle, else
 * (a big cell in the middle) as many as it takes, filled in order.
 */
static int
db_chunks_add(struct db *db, MDB_cursor *cur, MDB_val *k, const uint8_t *p, size_t n)
{
	size_t best = 0, start = 0, o, c;

	if (n <= db->chunk_max)
		return db_chunk_add(db, cur, k, p, n);
	for (o = 0; o < n; o += c) {
		c = db_cell_at(db, p + o, n - o);
		if (o > 0 && (best == 0 || db_distance(2 * o, n) < db_distance(2 * best, n)))
			best = o;
	}
	if (best > 0 && best <= db->chunk_max && n - best <= db->chunk_max)
		return db_chunk_add(db, cur, k, p, best) == -1 ? -1 :
		    db_chunk_add(db, cur, k, p + best, n - best);
	for (o = 0; o < n; o += c) {
		c = db_cell_at(db, p + o, n - o);
		if (o > start && o + c - start > db->chunk_max) {
			if (db_chunk_add(db, cur, k, p + start, o - start) == -1)
				return -1;
			start = o;
		}
	}
	return db_chunk_add(db, cur, k, p + start, n - start);
}

/* A chunk read from the store that is longer than any we write. */
static bool
db_chunk_oversized(struct db *db, const MDB_val *v, const char *fn)
{
	if (v->mv_size <= DB_CHUNK_CAP)
		return false;
	log_errorx("%s: %s: a chunk of %zu bytes, more than the %d a chunk holds", db->dir, fn,
	    v->mv_size, DB_CHUNK_CAP);
	return true;
}

int
db_dup_find(struct db *db, const void *key, size_t klen, const void *prefix, size_t plen,
    const void **val, size_t *vlen)
{
	MDB_cursor *cur;
	MDB_val v;
	size_t off, len;
	int rc;

	if (db_cells_cursor(db, "db_dup_find", &cur) == -1)
		return -1;
	if ((rc = db_chunk_seek(db, cur, key, klen, prefix, plen, &v)) != 1)
		return rc;
	if (!db_chunk_find(db, &v, prefix, plen, true, &off, &len))
		return 0;
	*val = (const uint8_t *)v.mv_data + off;
	*vlen = len;
	return 1;
}

int
db_dup_set(struct db *db, const void *key, size_t klen, size_t plen, const void *val, size_t vlen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key }, v, nv;
	MDB_cursor *cur;
	size_t off, len;
	bool found;
	int rc;

	if (db_cells_cursor(db, "db_dup_set", &cur) == -1)
		return -1;
	if (vlen == 0 || vlen > db->chunk_max || plen > vlen) {
		log_errorx("%s: db_dup_set: a cell of %zu bytes (prefix %zu) does not fit a chunk "
		    "of %zu", db->dir, vlen, plen, db->chunk_max);
		return -1;
	}
	if ((rc = db_chunk_seek(db, cur, key, klen, val, plen, &v)) != 1)
		return rc == -1 ? -1 : db_chunk_add(db, cur, &k, val, vlen);
	if (db_chunk_oversized(db, &v, "db_dup_set"))
		return -1;
	found = db_chunk_find(db, &v, val, plen, true, &off, &len);
	if (found && len == vlen) {
		/* Unchanged: no write at all. */
		if (memcmp((const uint8_t *)v.mv_data + off, val, vlen) == 0)
			return 0;
		/*
		 * The same size: overwritten where it lies.  The chunk keeps its
		 * first cell's prefix, so it sorts into the same place, which is
		 * what MDB_CURRENT asks of a sorted duplicate.  A delete and an
		 * insert rewrote the user's whole sub-page in its leaf, twice.
		 */
		memcpy(db->work, v.mv_data, v.mv_size);
		memcpy(db->work + off, val, vlen);
		nv = (MDB_val){ .mv_size = v.mv_size, .mv_data = db->work };
		if ((rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT)) != 0) {
			db_error(db, "mdb_cursor_put", rc);
			return -1;
		}
		return 0;
	}
	memcpy(db->work, v.mv_data, off);
	memcpy(db->work + off, val, vlen);
	memcpy(db->work + off + vlen, (const uint8_t *)v.mv_data + off + len, v.mv_size - off - len);
	if ((rc = mdb_cursor_del(cur, 0)) != 0) {
		db_error(db, "mdb_cursor_del", rc);
		return -1;
	}
	return db_chunks_add(db, cur, &k, db->work, v.mv_size - len + vlen);
}

/*
 * After a cell went: the chunk just put (its n bytes in db->work) takes in
 * the next one when both fit in three quarters of a chunk, so deletes do
 * not leave a user's cells spread thin, and the next insert does not
 * split what was just merged.
 */
static int
db_chunk_merge(struct db *db, MDB_cursor *cur, MDB_val *k, size_t n)
{
	MDB_val sk, nx, cv = { .mv_size = n, .mv_data = db->work };
	int rc;

	if ((rc = mdb_cursor_get(cur, &sk, &nx, MDB_NEXT_DUP)) == MDB_NOTFOUND)
		return 0;
	if (rc == 0 && n + nx.mv_size > db->chunk_max * 3 / 4)
		return 0;
	if (rc == 0) {
		memcpy(db->work + n, nx.mv_data, nx.mv_size);
		n += nx.mv_size;
		sk = *k;
		if ((rc = mdb_cursor_del(cur, 0)) == 0 &&
		    (rc = mdb_cursor_get(cur, &sk, &cv, MDB_GET_BOTH)) == 0)
			rc = mdb_cursor_del(cur, 0);
	}
	if (rc != 0) {
		db_error(db, "merging chunks: mdb_cursor", rc);
		return -1;
	}
	return db_chunk_add(db, cur, k, db->work, n);
}

int
db_dup_del(struct db *db, const void *key, size_t klen, const void *prefix, size_t plen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key }, sk, v;
	MDB_cursor *cur;
	size_t off, len;
	bool found;
	int rc;

	if (db_cells_cursor(db, "db_dup_del", &cur) == -1)
		return -1;
	if ((rc = db_chunk_seek(db, cur, key, klen, prefix, plen, &v)) != 1)
		return rc;
	found = db_chunk_find(db, &v, prefix, plen, true, &off, &len);
	/* Not where order says: a corrupt chunk's cells may be anywhere, so look at them all. */
	for (MDB_cursor_op op = MDB_SET_KEY; !found; op = MDB_NEXT_DUP) {
		sk = k;
		if ((rc = mdb_cursor_get(cur, &sk, &v, op)) == MDB_NOTFOUND)
			return 0;
		if (rc != 0) {
			db_error(db, "mdb_cursor_get", rc);
			return -1;
		}
		found = db_chunk_find(db, &v, prefix, plen, false, &off, &len);
	}
	if (db_chunk_oversized(db, &v, "db_dup_del"))
		return -1;
	memcpy(db->work, v.mv_data, off);
	memcpy(db->work + off, (const uint8_t *)v.mv_data + off + len, v.mv_size - off - len);
	if ((rc = mdb_cursor_del(cur, 0)) != 0) {
		db_error(db, "mdb_cursor_del", rc);
		return -1;
	}
	if (v.mv_size == len)
		return 0;
	if (db_chunk_add(db, cur, &k, db->work, v.mv_size - len) == -1)
		return -1;
	return db_chunk_merge(db, cur, &k, v.mv_size - len);
}

int
db_dup_del_key(struct db *db, const void *key, size_t klen)
{
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
	int rc;

	if (db_need_cells(db, "db_dup_del_key") == -1)
		return -1;
	if ((rc = mdb_del(db->txn, db->cells, &k, NULL)) != 0 && rc != MDB_NOTFOUND) {
		db_error(db, "mdb_del", rc);
		return -1;
	}
	return 0;
}

int
db_dup_walk(struct db *db, const void *from, size_t fromlen, enum db_dup_walk how, db_walk_fn fn,
    void *arg)
{
	MDB_cursor_op op = how == DB_DUP_ONE_KEY ? MDB_SET_KEY : fromlen > 0 ? MDB_SET_RANGE : MDB_FIRST;
	MDB_cursor_op next = how == DB_DUP_ONE_KEY ? MDB_NEXT_DUP : how == DB_DUP_FIRSTS ?
	    MDB_NEXT_NODUP : MDB_NEXT;

	if (!db->has_cells)
		return 0;   /* a reader's view of a store that never had cells */
	return db_cursor_walk(db, db->cells, from, fromlen, op, next,
	    how == DB_DUP_FIRSTS ? DB_EACH_FIRST_CELL : DB_EACH_CELL, fn, arg);
}

/* ---- format 2 to 3 ------------------------------------------------------- */

bool
db_migrating(const struct db *db)
{
	return db->has_legacy;
}

/*
 * One format 2 user, under the legacy cursor lc, into chunks: its
 * duplicates are its cells in order, so chunks are runs of them.  A
 * duplicate that is not one whole cell (corrupt) gets a chunk of its own,
 * so it cannot take its neighbours with it when the store sets it aside.
 */
static int
db_migrate_one(struct db *db, MDB_cursor *lc, MDB_cursor *cur, MDB_val *k, MDB_val *v)
{
	MDB_val sk;
	size_t n = 0;
	int rc;

	do {
		bool whole = v->mv_size > 0 && db->cell_len(v->mv_data, v->mv_size) == v->mv_size;

		if (db_chunk_oversized(db, v, "db_migrate"))
			return -1;
		if (n > 0 && (!whole || n + v->mv_size > db->chunk_max)) {
			if (db_chunk_add(db, cur, k, db->work, n) == -1)
				return -1;
			n = 0;
		}
		memcpy(db->work + n, v->mv_data, v->mv_size);
		n += v->mv_size;
		if (!whole) {
			if (db_chunk_add(db, cur, k, db->work, n) == -1)
				return -1;
			n = 0;
		}
	} while ((rc = mdb_cursor_get(lc, &sk, v, MDB_NEXT_DUP)) == 0);
	if (rc != MDB_NOTFOUND) {
		db_error(db, "mdb_cursor_get", rc);
		return -1;
	}
	if (db_chunk_add(db, cur, k, db->work, n) == -1)
		return -1;
	if ((rc = mdb_cursor_del(lc, MDB_NODUPDATA)) != 0) {
		db_error(db, "mdb_cursor_del", rc);
		return -1;
	}
	return 0;
}

int
db_migrate(struct db *db, size_t users, size_t *moved)
{
	MDB_val mk = { .mv_size = strlen(DB_LEGACY), .mv_data = DB_LEGACY };
	MDB_val mv = { .mv_size = strlen(DB_MARKER), .mv_data = DB_MARKER };
	MDB_cursor *lc, *cur;
	uint8_t key[512];
	MDB_val k, v;
	int rc;

	*moved = 0;
	if (!db->has_legacy)
		return 0;
	if (db_cells_cursor(db, "db_migrate", &cur) == -1)
		return -1;
	if ((rc = mdb_cursor_open(db->txn, db->legacy, &lc)) != 0) {
		db_error(db, "mdb_cursor_open", rc);
		return -1;
	}
	/* Each user moved is deleted, so the next is always the first. */
	while (*moved < users && (rc = mdb_cursor_get(lc, &k, &v, MDB_FIRST)) == 0) {
		if (k.mv_size > sizeof(key)) {
			log_errorx("%s: db_migrate: a key of %zu bytes", db->dir, k.mv_size);
			mdb_cursor_close(lc);
			return -1;
		}
		memcpy(key, k.mv_data, k.mv_size);
		k.mv_data = key;
		if (db_migrate_one(db, lc, cur, &k, &v) == -1) {
			mdb_cursor_close(lc);
			return -1;
		}
		(*moved)++;
	}
	mdb_cursor_close(lc);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		db_error(db, "mdb_cursor_get", rc);
		return -1;
	}
	if (rc == MDB_NOTFOUND) {
		/* All moved: the old database gives way to the marker, in the same transaction. */
		if ((rc = mdb_drop(db->txn, db->legacy, 1)) != 0 ||
		    (rc = mdb_put(db->txn, db->dbi, &mk, &mv, 0)) != 0) {
			db_error(db, "replacing the format 2 database: mdb", rc);
			return -1;
		}
		db->has_legacy = false;
	}
	return 0;
}
