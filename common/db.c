#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "log.h"

struct db {
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *txn;           /* the open write transaction, if any */
	size_t max_key;
	char *dir;
};

static void
db_error(const struct db *db, const char *call, int rc)
{
	log_errorx("%s: %s: %s", call, db->dir, mdb_strerror(rc));
}

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

static int
db_open_env(struct db *db, int64_t map_size_bytes, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&db->env)) != 0) {
		db->env = NULL;
		snprintf(err, errlen, "mdb_env_create: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_env_set_mapsize(db->env, (size_t)map_size_bytes)) != 0) {
		snprintf(err, errlen, "mdb_env_set_mapsize: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	/* Default flags: every commit is synced, which is the durability contract. */
	if ((rc = mdb_env_open(db->env, db->dir, 0, 0600)) != 0) {
		snprintf(err, errlen, "mdb_env_open: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &db->dbi)) != 0) {
		snprintf(err, errlen, "mdb_dbi_open: %s: %s", db->dir, mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_commit: %s: %s", db->dir, mdb_strerror(rc));
		return -1;
	}
	db->max_key = (size_t)mdb_env_get_maxkeysize(db->env);
	return 0;
}

struct db *
db_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen)
{
	struct db *db;

	if (map_size_bytes <= 0 || (uint64_t)map_size_bytes > SIZE_MAX) {
		snprintf(err, errlen, "%s: map size %lld out of range", dir, (long long)map_size_bytes);
		return NULL;
	}
	if (db_mkdirs(dir, err, errlen) == -1)
		return NULL;
	if ((db = calloc(1, sizeof(*db))) == NULL || (db->dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(db);
		return NULL;
	}
	if (db_open_env(db, map_size_bytes, err, errlen) == -1) {
		db_close(db);
		return NULL;
	}
	return db;
}

void
db_close(struct db *db)
{
	if (db == NULL)
		return;
	db_abort(db);
	if (db->env != NULL)
		mdb_env_close(db->env);
	free(db->dir);
	free(db);
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
db_bytes(const struct db *db, uint64_t *out)
{
	MDB_stat st;
	int rc;

	if ((rc = mdb_env_stat(db->env, &st)) != 0) {
		db_error(db, "mdb_env_stat", rc);
		return -1;
	}
	*out = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
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
	if (rc != 0) {
		db_error(db, "mdb_txn_commit", rc);
		return -1;
	}
	return 0;
}

void
db_abort(struct db *db)
{
	if (db->txn == NULL)
		return;
	mdb_txn_abort(db->txn);
	db->txn = NULL;
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

int
db_walk(struct db *db, const void *from, size_t fromlen, db_walk_fn fn, void *arg)
{
	MDB_txn *txn = db->txn;
	MDB_cursor *cur;
	MDB_val k = { .mv_size = fromlen, .mv_data = (void *)from }, v;
	MDB_cursor_op op = fromlen > 0 ? MDB_SET_RANGE : MDB_FIRST;
	int rc, ret = 0;

	if (txn == NULL && (rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0) {
		db_error(db, "mdb_txn_begin", rc);
		return -1;
	}
	if ((rc = mdb_cursor_open(txn, db->dbi, &cur)) != 0) {
		db_error(db, "mdb_cursor_open", rc);
		if (txn != db->txn)
			mdb_txn_abort(txn);
		return -1;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if ((ret = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0)
			break;
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
