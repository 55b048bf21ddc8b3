/*
 * Unit tests for common/db.c's cells in chunks (store format 3): random
 * sets, deletes and finds against a model, with commits and reopens;
 * chunks never over 511 bytes and kept full; a user of ten alarms in one
 * chunk; a corrupt cell taken as one; and the migration of a format 2
 * store (a duplicate per cell), read as it is before, moved in batches
 * that survive a stop, and marked so a format 2 build refuses it after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell.h"
#include "db.h"

#define SCRATCH_NAME "test_db"
#include "scratch.h"

#define MAP_SIZE (256LL << 20)
#define USERS 6
#define MAX_CELLS 400

struct mcell {
	uint8_t bytes[CELL_MAX];
	size_t len, plen;
};

/* The model: each user's cells in order. */
struct muser {
	struct mcell c[MAX_CELLS];
	int n;
};

static struct muser model[USERS];
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void
user_key(int u, char *key, size_t *klen)
{
	*klen = (size_t)snprintf(key, 16, "%cuser%d", 0, u);
}

static int
mcell_cmp(const struct mcell *a, const uint8_t *p, size_t plen)
{
	size_t n = a->plen < plen ? a->plen : plen;
	int c = memcmp(a->bytes, p, n);

	return c != 0 ? c : (a->plen > plen) - (a->plen < plen);
}

/* Index of the model's cell with this prefix, or -(insertion point) - 1. */
static int
model_find(const struct muser *m, const uint8_t *p, size_t plen)
{
	for (int i = 0; i < m->n; i++) {
		int c = mcell_cmp(&m->c[i], p, plen);

		if (c == 0)
			return i;
		if (c > 0)
			return -i - 1;
	}
	return -m->n - 1;
}

/* An alarm cell into c. */
static void
make_cell(struct mcell *c, uint8_t kind, const uint8_t *id, size_t id_len, const struct alarm_state *st)
{
	struct buf b = { 0 }, p = { 0 };

	assert_int_equal(cell_alarm_encode(kind, id, id_len, st, &b), 0);
	assert_int_equal(cell_prefix(kind, id, id_len, &p), 0);
	assert_true(b.len <= CELL_MAX);
	memcpy(c->bytes, b.data, b.len);
	c->len = b.len;
	c->plen = p.len;
	buf_free(&b);
	buf_free(&p);
}

/* A raw LMDB write transaction (flags 0) or read one (MDB_RDONLY) on the store, behind db.c's back. */
static MDB_txn *
raw_begin(unsigned flags, MDB_env **env)
{
	MDB_txn *txn;

	assert_int_equal(mdb_env_create(env), 0);
	assert_int_equal(mdb_env_set_mapsize(*env, MAP_SIZE), 0);
	assert_int_equal(mdb_env_set_maxdbs(*env, 3), 0);
	assert_int_equal(mdb_env_open(*env, dir, flags, 0600), 0);
	assert_int_equal(mdb_txn_begin(*env, NULL, flags, &txn), 0);
	return txn;
}

/* A random alarm cell: IDs from a small set so updates hit existing ones, some very long. */
static void
random_cell(struct mcell *c)
{
	static const char alphabet[] = "abcdefghij";
	uint8_t id[CELL_MAX_ID];
	size_t id_len = 1 + rnd(6);
	struct alarm_state st = { (enum alarm_status)rnd(4), { 1600000000 + rnd(1000), 0, 0 }, rnd(2) };

	for (size_t i = 0; i < id_len; i++)
		id[i] = (uint8_t)alphabet[rnd(i == 0 ? 10 : 3)];
	if (rnd(40) == 0) {
		/* A long ID: cells of 100 to CELL_MAX bytes, a chunk's worth alone. */
		id_len = 90 + rnd(CELL_MAX_ID - 90 + 1);
		memset(id + 1, 'z', id_len - 1);
	}
	if (rnd(3) == 0)
		st.changed_at.nsec = (int32_t)rnd(1000000000);
	make_cell(c, ID_RAW, id, id_len, &st);
}

static void
random_head(struct mcell *c)
{
	struct cell_head h = { rnd(1000000), 5 + rnd(100), rnd(5), rnd(5), 1600000000 };
	struct buf b = { 0 };

	assert_int_equal(cell_head_encode(&h, &b), 0);
	memcpy(c->bytes, b.data, b.len);
	c->len = b.len;
	c->plen = 1;
	buf_free(&b);
}

/* One cell of a walk into the struct muser at arg. */
static int
collect_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct muser *w = arg;

	(void)key;
	(void)klen;
	assert_true(w->n < MAX_CELLS && vlen <= CELL_MAX);
	memcpy(w->c[w->n].bytes, val, vlen);
	w->c[w->n].len = vlen;
	w->n++;
	return 0;
}

/* The cells of key, walked, into `walked`: their number. */
static struct muser walked;

static int
walk_key(struct db *db, const char *key, size_t klen)
{
	walked.n = 0;
	assert_int_equal(db_dup_walk(db, key, klen, DB_DUP_ONE_KEY, collect_one, &walked), 0);
	return walked.n;
}

/* The user's cells, walked, are the model's, in order. */
static void
check_user(struct db *db, int u)
{
	char key[16];
	size_t klen;

	user_key(u, key, &klen);
	assert_int_equal(walk_key(db, key, klen), model[u].n);
	for (int i = 0; i < walked.n; i++) {
		assert_int_equal(walked.c[i].len, model[u].c[i].len);
		assert_memory_equal(walked.c[i].bytes, model[u].c[i].bytes, walked.c[i].len);
	}
}

/* Every chunk in the file, read with raw LMDB: at most 511 bytes; *chunks and *bytes per key. */
static void
raw_chunks(int u, size_t *chunks, size_t *bytes)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	char key[16];
	MDB_val k, v;
	int rc;

	user_key(u, key, &k.mv_size);
	k.mv_data = key;
	*chunks = *bytes = 0;
	txn = raw_begin(MDB_RDONLY, &env);
	assert_int_equal(mdb_dbi_open(txn, "cells", MDB_DUPSORT, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	for (MDB_cursor_op op = MDB_SET_KEY; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0;
	    op = MDB_NEXT_DUP) {
		assert_true(v.mv_size > 0 && v.mv_size <= 511);
		(*chunks)++;
		*bytes += v.mv_size;
	}
	assert_int_equal(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static struct db *
open_db(void)
{
	char err[256];
	struct db *db = db_open(dir, MAP_SIZE, cell_len, err, sizeof(err));

	if (db == NULL)
		fail_msg("db_open %s: %s", dir, err);
	return db;
}

/* Commit, check user 0 against the model, close, and count its chunks in the file. */
static void
commit_close_count(struct db *db, size_t want)
{
	size_t chunks, bytes;

	assert_int_equal(db_commit(db), 0);
	check_user(db, 0);
	db_close(db);
	raw_chunks(0, &chunks, &bytes);
	assert_int_equal(chunks, want);
}

static void
test_chunks_model(void **state)
{
	enum { OPS = 30000, PER_COMMIT = 50, PER_REOPEN = 3000 };
	struct db *db = open_db();
	int sets = 0, dels = 0, finds = 0, found = 0;

	(void)state;
	memset(model, 0, sizeof(model));
	assert_int_equal(db_begin(db), 0);
	for (int op = 1; op <= OPS; op++) {
		int u = (int)rnd(USERS), i;
		struct muser *m = &model[u];
		struct mcell c;
		char key[16];
		size_t klen;
		uint32_t what = rnd(10);

		user_key(u, key, &klen);
		if (what < 5 || m->n == 0) {
			if (rnd(20) == 0)
				random_head(&c);
			else
				random_cell(&c);
			if ((i = model_find(m, c.bytes, c.plen)) >= 0) {
				m->c[i] = c;
			} else if (m->n < MAX_CELLS) {
				i = -i - 1;
				memmove(&m->c[i + 1], &m->c[i], (size_t)(m->n - i) * sizeof(c));
				m->c[i] = c;
				m->n++;
			} else {
				continue;
			}
			assert_int_equal(db_dup_set(db, key, klen, c.plen, c.bytes, c.len), 0);
			sets++;
		} else if (what < 7) {
			i = (int)rnd((uint32_t)m->n);
			c = m->c[i];
			assert_int_equal(db_dup_del(db, key, klen, c.bytes, c.plen), 0);
			memmove(&m->c[i], &m->c[i + 1], (size_t)(m->n - i - 1) * sizeof(c));
			m->n--;
			dels++;
		} else {
			const void *v;
			size_t vlen;
			int rc;

			random_cell(&c);
			i = model_find(m, c.bytes, c.plen);
			rc = db_dup_find(db, key, klen, c.bytes, c.plen, &v, &vlen);
			assert_int_equal(rc, i >= 0 ? 1 : 0);
			if (rc == 1) {
				assert_int_equal(vlen, m->c[i].len);
				assert_memory_equal(v, m->c[i].bytes, vlen);
				found++;
			}
			finds++;
		}
		if (op % PER_COMMIT == 0) {
			assert_int_equal(db_commit(db), 0);
			check_user(db, u);
			if (op % PER_REOPEN == 0) {
				db_close(db);
				db = open_db();
			}
			assert_int_equal(db_begin(db), 0);
		}
	}
	assert_int_equal(db_commit(db), 0);
	for (int u = 0; u < USERS; u++)
		check_user(db, u);
	db_close(db);
	for (int u = 0; u < USERS; u++) {
		size_t chunks, bytes;

		raw_chunks(u, &chunks, &bytes);
		/* Splits leave halves, merges take in small neighbours: chunks stay well filled. */
		assert_true(chunks <= bytes / 150 + 2);
		print_message("user %d: %d cells, %zu bytes in %zu chunks\n", u, model[u].n, bytes,
		    chunks);
	}
	print_message("%d sets, %d deletes, %d finds (%d found)\n", sets, dels, finds, found);
	assert_true(found > 100 && dels > 1000);
}

/* A user of ten UUID alarms and a head: one chunk, where format 2 made eleven duplicates. */
static void
test_small_user_one_chunk(void **state)
{
	struct db *db = open_db();
	char key[16];
	size_t klen;

	(void)state;
	memset(model, 0, sizeof(model));
	user_key(0, key, &klen);
	assert_int_equal(db_begin(db), 0);
	for (int a = 0; a <= 10; a++) {
		struct mcell *c = &model[0].c[model[0].n++];
		struct alarm_state st = { STATUS_WARNING, { 1700000000, 0, 0 }, false };
		uint8_t id[ID_UUID_BYTES];

		memset(id, 0x11 * a, sizeof(id));
		if (a == 0)
			random_head(c);
		else
			make_cell(c, ID_UUID_LOWER, id, sizeof(id), &st);
		assert_int_equal(db_dup_set(db, key, klen, c->plen, c->bytes, c->len), 0);
	}
	commit_close_count(db, 1);
}

/*
 * A cell of the longest ID lands between two runs that fill a chunk: no
 * split in two fits both halves in 511 bytes, so the chunk becomes three.
 */
static void
test_big_cell_split(void **state)
{
	struct db *db = open_db();
	struct muser *m = &model[0];
	char key[16];
	size_t klen, chunks, bytes;

	(void)state;
	memset(model, 0, sizeof(model));
	user_key(0, key, &klen);
	random_head(&m->c[m->n++]);
	/* Raw IDs sort before UUIDs, and by length: nine short ones, nine UUIDs, then the long one. */
	for (int i = 0; i < 19; i++) {
		struct alarm_state st = { STATUS_WARNING, { 1700000000, 0, 0 }, false };
		uint8_t id[CELL_MAX_ID];
		size_t id_len = i < 9 ? 17 : i < 18 ? ID_UUID_BYTES : CELL_MAX_ID;
		uint8_t kind = i >= 9 && i < 18 ? ID_UUID_LOWER : ID_RAW;
		struct mcell c;
		int at;

		memset(id, 'a' + i % 9, id_len);
		make_cell(&c, kind, id, id_len, &st);
		at = -model_find(m, c.bytes, c.plen) - 1;
		assert_true(at >= 0);
		memmove(&m->c[at + 1], &m->c[at], (size_t)(m->n - at) * sizeof(c));
		m->c[at] = c;
		m->n++;
	}
	assert_int_equal(db_begin(db), 0);
	/* The long one last, into the one chunk the others fill. */
	for (int i = 0; i < m->n; i++)
		if (m->c[i].len < 400)
			assert_int_equal(db_dup_set(db, key, klen, m->c[i].plen, m->c[i].bytes,
			    m->c[i].len), 0);
	/* Not checked against the model yet: it holds the long cell too. */
	assert_int_equal(db_commit(db), 0);
	db_close(db);
	raw_chunks(0, &chunks, &bytes);
	assert_int_equal(chunks, 1);
	db = open_db();
	assert_int_equal(db_begin(db), 0);
	for (int i = 0; i < m->n; i++)
		if (m->c[i].len >= 400)
			assert_int_equal(db_dup_set(db, key, klen, m->c[i].plen, m->c[i].bytes,
			    m->c[i].len), 0);
	commit_close_count(db, 3);
}

/* Replace every chunk of key by one holding x, then y, with raw LMDB. */
static void
raw_put_chunk(const char *key, size_t klen, const struct mcell *x, const struct mcell *y)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t chunk[2 * CELL_MAX];
	MDB_val k = { klen, (void *)key }, v = { x->len + y->len, chunk };

	memcpy(chunk, x->bytes, x->len);
	memcpy(chunk + x->len, y->bytes, y->len);
	txn = raw_begin(0, &env);
	assert_int_equal(mdb_dbi_open(txn, "cells", MDB_DUPSORT, &dbi), 0);
	assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/*
 * A cell that does not parse takes the rest of its chunk: the walk hands
 * it over as one, and deleting it by its bytes leaves the cells before.
 */
static void
test_corrupt_cell(void **state)
{
	struct db *db = open_db();
	struct mcell a, b;
	uint8_t junk[] = { 0x7f, 'j', 'u', 'n', 'k' };
	char key[16];
	size_t klen;

	(void)state;
	user_key(1, key, &klen);
	random_head(&a);
	do
		random_cell(&b);
	while (b.len > 200);
	assert_int_equal(db_begin(db), 0);
	assert_int_equal(db_dup_set(db, key, klen, a.plen, a.bytes, a.len), 0);
	assert_int_equal(db_dup_set(db, key, klen, b.plen, b.bytes, b.len), 0);
	/* Appended by the store's rules it would not be: a tag no cell has, after b. */
	assert_int_equal(db_dup_set(db, key, klen, 1, junk, sizeof(junk)), 0);
	assert_int_equal(walk_key(db, key, klen), 3);
	assert_int_equal(walked.c[2].len, sizeof(junk));
	assert_int_equal(db_dup_del(db, key, klen, junk, sizeof(junk)), 0);
	assert_int_equal(walk_key(db, key, klen), 2);
	assert_memory_equal(walked.c[1].bytes, b.bytes, b.len);
	assert_int_equal(db_commit(db), 0);
	db_close(db);

	/* Cells out of order in a chunk (only corruption does that): a delete still finds its cell. */
	raw_put_chunk(key, klen, &b, &a);
	db = open_db();
	assert_int_equal(db_begin(db), 0);
	assert_int_equal(db_dup_del(db, key, klen, a.bytes, a.plen), 0);
	assert_int_equal(walk_key(db, key, klen), 1);
	assert_memory_equal(walked.c[0].bytes, b.bytes, b.len);
	assert_int_equal(db_commit(db), 0);
	db_close(db);
}

/* ---- format 2 ----------------------------------------------------------------------------- */

enum { F2_USERS = 2500, F2_BIG = 300 };

/* A format 2 store: "alarms", a duplicate per cell; user 7 holds F2_BIG alarms, user 9 a bad cell. */
static void
format2_store(void)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	memset(model, 0, sizeof(model));
	txn = raw_begin(0, &env);
	assert_int_equal(mdb_dbi_open(txn, "alarms", MDB_DUPSORT | MDB_CREATE, &dbi), 0);
	for (int u = 0; u < F2_USERS; u++) {
		int n = u == 7 ? F2_BIG : 1 + u % 12;
		char key[16];
		size_t klen;
		MDB_val k, v;

		user_key(u, key, &klen);
		k = (MDB_val){ klen, key };
		for (int a = 0; a <= n; a++) {
			struct mcell c;
			struct muser *m = u < USERS ? &model[u] : NULL;

			if (a == 0) {
				random_head(&c);
			} else if (u == 9 && a == 2) {
				memcpy(c.bytes, "\x7fjunk", 5);
				c.len = 5;
			} else {
				struct alarm_state st = { STATUS_CRITICAL, { 1700000000 + a, 0, 0 }, false };
				uint8_t id[ID_UUID_BYTES];

				memset(id, 0, sizeof(id));
				id[0] = (uint8_t)(a >> 8);
				id[1] = (uint8_t)a;
				make_cell(&c, ID_UUID_LOWER, id, sizeof(id), &st);
			}
			v = (MDB_val){ c.len, c.bytes };
			assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
			if (u == 7 || u == 9)
				continue;
			if (m != NULL)
				m->c[m->n++] = c;
		}
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static int
count_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(size_t *)arg)++;
	return 0;
}

static size_t
count_cells(struct db *db)
{
	size_t n = 0;

	assert_int_equal(db_dup_walk(db, NULL, 0, DB_DUP_ALL, count_one, &n), 0);
	return n;
}

/* Cells in a format 2 store built above: heads, alarms (the bad cell is one). */
static size_t
format2_cells(void)
{
	size_t n = 0;

	for (int u = 0; u < F2_USERS; u++)
		n += 1 + (size_t)(u == 7 ? F2_BIG : 1 + u % 12);
	return n;
}

/* A format 2 build opens "alarms" as sorted duplicates: LMDB refuses that on a format 3 store. */
static void
assert_format2_refused(void)
{
	MDB_env *env;
	MDB_txn *txn = raw_begin(0, &env);
	MDB_dbi dbi;

	assert_int_equal(mdb_dbi_open(txn, "alarms", MDB_DUPSORT | MDB_CREATE, &dbi), MDB_INCOMPATIBLE);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static void
test_migrate_format2(void **state)
{
	char err[256];
	struct db *db;
	size_t moved, total = 0, chunks, bytes;

	(void)state;
	format2_store();
	/* A reader before the migration reads the duplicates as chunks of one cell. */
	assert_non_null(db = db_open_readonly(dir, cell_len, err, sizeof(err)));
	assert_int_equal(count_cells(db), format2_cells());
	for (int u = 0; u < USERS; u++)
		if (u != 7 && u != 9)
			check_user(db, u);
	db_close(db);

	/* One batch, then a stop: the next open goes on from there. */
	db = open_db();
	assert_true(db_migrating(db));
	assert_int_equal(db_begin(db), 0);
	assert_int_equal(db_migrate(db, 1000, &moved), 0);
	assert_int_equal(moved, 1000);
	assert_int_equal(db_commit(db), 0);
	db_close(db);
	total += moved;
	db = open_db();
	while (db_migrating(db)) {
		assert_int_equal(db_begin(db), 0);
		assert_int_equal(db_migrate(db, 1000, &moved), 0);
		assert_int_equal(db_commit(db), 0);
		total += moved;
	}
	assert_int_equal(total, F2_USERS);
	assert_int_equal(count_cells(db), format2_cells());
	for (int u = 0; u < USERS; u++)
		if (u != 7 && u != 9)
			check_user(db, u);
	db_close(db);
	/* Packed: a user of 12 UUID alarms is one chunk; 300 alarms fill chunks of 511. */
	raw_chunks(5, &chunks, &bytes);
	assert_int_equal(chunks, 1);
	raw_chunks(7, &chunks, &bytes);
	assert_true(chunks <= bytes / 480 + 1);
	/* The bad cell (last, by its tag) kept a chunk of its own: the cells before it are whole. */
	raw_chunks(9, &chunks, &bytes);
	assert_int_equal(chunks, 2);

	assert_format2_refused();

	/* And a store checked at open (db_check) with the marker in place is sound. */
	assert_int_equal(db_check(dir, err, sizeof(err)), 1);
}

/* A new store is marked as format 3 from its first open. */
static void
test_new_store_marked(void **state)
{
	(void)state;
	db_close(open_db());
	assert_format2_refused();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chunks_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_user_one_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_cell_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_cell, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_format2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_store_marked, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
