/*
 * store: the operations on a worker's durable state, over the LMDB
 * environment (db.h) and the cell codec (cell.h).
 *
 * Key:   [kind] + 16 bytes when the UserID is a canonical UUID that
 *        round-trips exactly (kind says lower or upper case, so the
 *        original spelling comes back), else [ID_RAW] + the raw bytes
 *        (id.h).
 * Cells under it, in chunks (db.h): the user's head cell, then one
 *        cell per alarm (cell.h).
 *
 * The head's counts are kept with every cell written, and the store's
 * counters are the sum of the heads: a walk over the heads at open gives
 * the starting point, every head written adds its change to the open
 * transaction's deltas, and a commit applies them.  A corrupt cell is
 * logged and, when a write meets it, saved aside and removed, and the
 * user's head counted again from the cells left (quarantine.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cell.h"
#include "db.h"
#include "id.h"
#include "log.h"
#include "quarantine.h"
#include "rec.h"
#include "store.h"

/* Users per transaction when a format 1 store is migrated. */
#define MIGRATE_BATCH 1000

struct store {
	struct db *db;
	bool readonly;

	struct store_stats stats;       /* as of the last commit */
	uint64_t max_alarms;            /* per user, tombstones included; 0: no limit */
	int64_t d_users, d_alarms, d_tombstones;   /* the open transaction's changes */
	uint64_t d_written;

	struct buf key;         /* the user's key */
	struct buf prefix;      /* an alarm cell's sort prefix */
	struct buf val;         /* an encoded cell or record */
	struct buf hval;        /* an encoded head */
	struct buf text;        /* a decoded ID */
	struct buf list;        /* cells a walk found, to write after it: u16 length + bytes each */
	struct buf keys;        /* keys a walk found, likewise */
	struct buf user;        /* the UserID of a key in s->keys */
	struct buf walk_key;    /* the user a walk is on */
	struct buf sweep_at;    /* key the next store_sweep starts from ("" = the first) */
	struct rec *rec;        /* a user in transit (store_foreach_user, merge, migration) */
};

static int
store_need_txn(const struct store *s, const char *fn)
{
	if (db_in_txn(s->db))
		return 0;
	log_errorx("%s: %s: no write transaction open", db_dir(s->db), fn);
	return -1;
}

/* ---- keys and prefixes ------------------------------------------------------ */

/* The user's key, into s->key. */
static int
store_key(struct store *s, const char *user, size_t user_len)
{
	struct id_enc e;

	id_encode(user, user_len, &e);
	/* Checked here so an over-long ID gets a clear line instead of LMDB's MDB_BAD_VALSIZE. */
	if (1 + e.len > db_max_key(s->db)) {
		log_errorx("%s: UserID of %zu bytes is longer than the store's keys allow (%zu with the tag byte)",
		    db_dir(s->db), user_len, db_max_key(s->db));
		return -1;
	}
	buf_reset(&s->key);
	if (buf_append_byte(&s->key, e.kind) == -1 || buf_append(&s->key, e.bytes, e.len) == -1) {
		log_error("%s: key buffer", db_dir(s->db));
		return -1;
	}
	return 0;
}

/* The user's original ID from a stored key, into s->text; -1 if the key is not one we wrote. */
static int
store_key_user(struct store *s, const void *key, size_t klen)
{
	const uint8_t *p = key;

	buf_reset(&s->text);
	if (klen < 1 || p[0] > ID_KIND_MAX)
		return -1;
	if (p[0] != ID_RAW && klen != 1 + ID_UUID_BYTES)
		return -1;
	if (id_decode(p[0], p + 1, klen - 1, &s->text) == -1) {
		log_error("%s: user buffer", db_dir(s->db));
		return -1;
	}
	return 0;
}

/* The sort prefix of an alarm's cell, into s->prefix. */
static int
store_prefix(struct store *s, uint8_t kind, const uint8_t *id, size_t id_len)
{
	if (cell_prefix(kind, id, id_len, &s->prefix) == 0)
		return 0;
	if (errno == EINVAL)
		log_errorx("%s: AlarmID of %zu bytes is longer than the store's cells allow (%d)",
		    db_dir(s->db), id_len, CELL_MAX_ID);
	else
		log_error("%s: prefix buffer", db_dir(s->db));
	return -1;
}

/* Remember a cell or key for after a walk, in b: u16 length + bytes. */
static int
store_note(struct store *s, struct buf *b, const void *p, size_t len)
{
	uint16_t l = (uint16_t)len;

	if (buf_append(b, &l, sizeof(l)) == -1 || buf_append(b, p, len) == -1) {
		log_error("%s: walk list buffer", db_dir(s->db));
		return -1;
	}
	return 0;
}

/* The next item noted in b at *off, or NULL at the end. */
static const uint8_t *
store_noted(const struct buf *b, size_t *off, size_t *len)
{
	uint16_t l;
	const uint8_t *p;

	if (*off >= b->len)
		return NULL;
	memcpy(&l, b->data + *off, sizeof(l));
	p = b->data + *off + sizeof(l);
	*off += sizeof(l) + l;
	*len = l;
	return p;
}

/* ---- heads ----------------------------------------------------------------- */

static void
head_add(struct cell_head *h, const struct alarm_state *st, int sign)
{
	uint64_t d = (uint64_t)(int64_t)sign;   /* unsigned wrap-around subtracts */

	h->alarms += d;
	if (st->status == STATUS_CLEARED) {
		if (sign > 0 && (h->tombstones == 0 || st->changed_at.sec < h->tomb_floor))
			h->tomb_floor = st->changed_at.sec;
		h->tombstones += d;
	}
	if (state_pending(st))
		h->pending += d;
}

/* Could a tombstone of this user have expired?  (The floor is a lower bound of their times.) */
static bool
head_may_expire(const struct cell_head *h, int64_t now_ms, int64_t retention_ms)
{
	struct alarm_state floor = { STATUS_CLEARED, { h->tomb_floor, 0, 0 }, false };

	return h->tombstones > 0 && state_expired(&floor, now_ms, retention_ms);
}

/*
 * Write the user's head h, where `old` is what the counters hold for the
 * user (zeros when !existed); a user with no alarms and no request
 * answered has no entry at all.
 */
static int
store_put_head(struct store *s, const struct cell_head *old, bool existed, const struct cell_head *h,
    bool force)
{
	bool keep = h->alarms > 0 || h->last_request > 0;

	if (!keep) {
		if (existed && db_dup_del_key(s->db, s->key.data, s->key.len) == -1)
			return -1;
	} else if (force || !existed || memcmp(old, h, sizeof(*h)) != 0) {
		if (cell_head_encode(h, &s->hval) == -1) {
			log_error("%s: head buffer", db_dir(s->db));
			return -1;
		}
		if (db_dup_set(s->db, s->key.data, s->key.len, 1, s->hval.data, s->hval.len) == -1)
			return -1;
		s->d_written += s->hval.len;
	}
	s->d_users += (keep ? 1 : 0) - (existed ? 1 : 0);
	s->d_alarms += (int64_t)(h->alarms - old->alarms);
	s->d_tombstones += (int64_t)(h->tombstones - old->tombstones);
	return 0;
}

struct recount {
	struct store *s;
	const struct cell_head *was;
	struct cell_head h;
	bool drop_expired;
	int64_t now_ms, retention_ms;
	size_t bad;
	const char *why;
};

static int
store_recount_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct recount *r = arg;
	struct cell_alarm a;
	struct cell_head h;
	const char *why;

	(void)key;
	(void)klen;
	if (cell_is_head(val, vlen)) {
		/* The request answered survives a corrupt count; a corrupt head goes aside. */
		if (cell_head_decode(val, vlen, &h, &why) == 0) {
			r->h.last_request = h.last_request;
			return 0;
		}
		r->why = why;
		r->bad++;
		quarantine_save(db_dir(r->s->db), val, vlen);
		return 0;
	}
	if (cell_alarm_decode(val, vlen, &a, &why) == -1) {
		r->why = why;
		r->bad++;
		quarantine_save(db_dir(r->s->db), val, vlen);
		return store_note(r->s, &r->s->list, val, vlen);
	}
	if (r->drop_expired && state_expired(&a.st, r->now_ms, r->retention_ms))
		return store_note(r->s, &r->s->list, val, vlen);
	head_add(&r->h, &a.st, 1);
	return 0;
}

/*
 * Count the user's head again from its cells (the key in s->key), after
 * a corrupt cell (why: logged) or to drop its expired tombstones (keep).
 * *h holds what the counters hold for the user on entry, the new head on
 * return; *kept says whether the user still has an entry.
 */
static int
store_recount(struct store *s, const char *user, size_t user_len, const char *why,
    const struct rec_keep *keep, struct cell_head *h, bool *kept)
{
	struct recount r = { s, h, { 0, 0, 0, 0, 0 }, keep->drop_expired, keep->now_ms,
	    keep->retention_ms, 0, why };
	const uint8_t *p;
	size_t off = 0, len;
	struct cell_head was = *h;

	buf_reset(&s->list);
	if (db_dup_walk(s->db, s->key.data, s->key.len, DB_DUP_ONE_KEY, store_recount_one, &r) != 0)
		return -1;
	if (why != NULL || r.bad > 0)
		quarantine_report(db_dir(s->db), user, user_len, r.why != NULL ? r.why : why);
	while ((p = store_noted(&s->list, &off, &len)) != NULL)
		if (db_dup_del(s->db, s->key.data, s->key.len, p, len) == -1)
			return -1;
	/* Whatever head is there (sound, corrupt or none) gives way to the count. */
	*kept = r.h.alarms > 0 || r.h.last_request > 0;
	*h = r.h;
	return store_put_head(s, &was, true, &r.h, true);
}

/*
 * The user's head (key in s->key) into *h: 1, or 0 when the store does
 * not hold the user (*h zeroed), -1 on error.  A missing or corrupt head
 * is counted again from the cells.
 */
static int
store_head(struct store *s, const char *user, size_t user_len, struct cell_head *h)
{
	static const struct rec_keep keep_all = { false, 0, 0 };
	const void *v;
	const char *why = "no head cell";
	size_t vlen;
	bool kept;
	int rc;

	memset(h, 0, sizeof(*h));
	if ((rc = db_dup_find(s->db, s->key.data, s->key.len, "", 0, &v, &vlen)) != 1)
		return rc;
	if (cell_is_head(v, vlen) && cell_head_decode(v, vlen, h, &why) == 0)
		return 1;
	/* The open walk counted this user with no alarms. */
	memset(h, 0, sizeof(*h));
	if (store_recount(s, user, user_len, why, &keep_all, h, &kept) == -1)
		return -1;
	return kept ? 1 : 0;
}

/*
 * The alarm's cell (prefix in s->prefix): 1 with its state, 0 when the
 * user holds no such alarm, -1 on error.  A corrupt one is set aside and
 * the head counted again (*h, *exists follow).
 */
static int
store_cell(struct store *s, const char *user, size_t user_len, struct cell_head *h, bool *exists,
    struct alarm_state *st)
{
	static const struct rec_keep keep_all = { false, 0, 0 };
	struct cell_alarm a;
	const void *v;
	const char *why;
	size_t vlen;
	int rc;

	if (!*exists)
		return 0;
	if ((rc = db_dup_find(s->db, s->key.data, s->key.len, s->prefix.data, s->prefix.len, &v,
	    &vlen)) != 1)
		return rc;
	if (cell_alarm_decode(v, vlen, &a, &why) == 0) {
		*st = a.st;
		return 1;
	}
	if (store_recount(s, user, user_len, why, &keep_all, h, exists) == -1)
		return -1;
	return 0;
}

/* Write the alarm's cell (prefix in s->prefix). */
static int
store_put_cell(struct store *s, uint8_t kind, const uint8_t *id, size_t id_len,
    const struct alarm_state *st)
{
	if (cell_alarm_encode(kind, id, id_len, st, &s->val) == -1) {
		log_error("%s: cell buffer", db_dir(s->db));
		return -1;
	}
	if (db_dup_set(s->db, s->key.data, s->key.len, s->prefix.len, s->val.data, s->val.len) == -1)
		return -1;
	s->d_written += s->val.len;
	return 0;
}

/* ---- open / close ------------------------------------------------------ */

static void
store_refresh_bytes(struct store *s)
{
	uint64_t bytes;

	if (db_bytes(s->db, &bytes) == 0)
		s->stats.bytes = bytes;
}

/* Each user's first cell, its head: the counters' starting point. */
static int
store_scan_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct store *s = arg;
	struct cell_head h;
	const char *why = "no head cell";

	/* A corrupt head still is a user: keeps the counters consistent with a later delete. */
	s->stats.users++;
	if (store_key_user(s, key, klen) == -1) {
		log_errorx("%s: entry with a malformed key (%zu bytes)", db_dir(s->db), klen);
		return 0;
	}
	if (!cell_is_head(val, vlen) || cell_head_decode(val, vlen, &h, &why) == -1) {
		quarantine_report(db_dir(s->db), (const char *)s->text.data, s->text.len, why);
		return 0;
	}
	s->stats.alarms += h.alarms;
	s->stats.tombstones += h.tombstones;
	return 0;
}

static int
store_scan(struct store *s, char *err, size_t errlen)
{
	memset(&s->stats, 0, sizeof(s->stats));
	if (db_dup_walk(s->db, NULL, 0, DB_DUP_FIRSTS, store_scan_one, s) != 0) {
		snprintf(err, errlen, "%s: counting the users failed (logged above)", db_dir(s->db));
		return -1;
	}
	store_refresh_bytes(s);
	return 0;
}

static struct store *
store_new(char *err, size_t errlen, const char *dir)
{
	struct store *s;

	if ((s = calloc(1, sizeof(*s))) == NULL || (s->rec = rec_new()) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(s);
		return NULL;
	}
	return s;
}

static int store_merge_rec(struct store *s, const char *user, size_t user_len);

/* Format 1 keys (a kind byte <= ID_KIND_MAX) sort before the named database's. */
static int
store_old_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct store *s = arg;

	(void)val;
	(void)vlen;
	if (klen < 1 || *(const uint8_t *)key > ID_KIND_MAX)
		return 1;
	return store_note(s, &s->keys, key, klen);
}

/* Note the format 1 keys in s->keys: their number, or -1. */
static long
store_old_keys(struct store *s)
{
	size_t off = 0, len;
	long n = 0;

	buf_reset(&s->keys);
	if (db_walk(s->db, NULL, 0, store_old_one, s) == -1)
		return -1;
	while (store_noted(&s->keys, &off, &len) != NULL)
		n++;
	return n;
}

/* Move one format 1 record (key in s->key, its UserID in s->user) into cells. */
static int
store_migrate_one(struct store *s)
{
	const char *user = (const char *)s->user.data;
	const void *v;
	const char *why;
	size_t vlen;
	int rc;

	if ((rc = db_get(s->db, s->key.data, s->key.len, &v, &vlen)) != 1)
		return rc;
	if (rec_decode(s->rec, v, vlen, &why) == -1) {
		if (errno == ENOMEM) {
			log_error("%s: decoding a record", db_dir(s->db));
			return -1;
		}
		/* As format 1 did: kept aside, and the user starts afresh. */
		quarantine_report(db_dir(s->db), user, s->user.len, why);
		quarantine_save(db_dir(s->db), v, vlen);
	} else {
		for (size_t i = 0; i < rec_size(s->rec); i++) {
			struct rec_item it;

			rec_at(s->rec, i, &it);
			if (it.id_len > CELL_MAX_ID) {
				/* Possible only with max_id_bytes above CELL_MAX_ID, which config now refuses. */
				quarantine_report(db_dir(s->db), user, s->user.len, "an AlarmID longer "
				    "than a cell keeps: the record is saved aside, that alarm dropped");
				quarantine_save(db_dir(s->db), v, vlen);
				break;
			}
		}
		if (store_merge_rec(s, user, s->user.len) == -1)
			return -1;
	}
	return db_del(s->db, s->key.data, s->key.len);
}

/*
 * Format 1 kept one record per user in the main database.  Move them into
 * cells, MIGRATE_BATCH users per transaction, so an interrupted migration
 * keeps what it did and the next open goes on from there.
 */
static int
store_migrate(struct store *s, char *err, size_t errlen)
{
	long total, done = 0;
	size_t off = 0, len;
	const uint8_t *k;

	if ((total = store_old_keys(s)) <= 0) {
		if (total == -1)
			snprintf(err, errlen, "%s: looking for format 1 records failed (logged above)",
			    db_dir(s->db));
		return total == -1 ? -1 : 0;
	}
	log_info("%s: migrating %ld users from store format 1 (a record per user) to format 3 "
	    "(a cell per alarm, in chunks), %d per transaction", db_dir(s->db), total, MIGRATE_BATCH);
	while ((k = store_noted(&s->keys, &off, &len)) != NULL) {
		if (done % MIGRATE_BATCH == 0 && store_begin(s) == -1)
			goto fail;
		buf_reset(&s->key);
		if (buf_append(&s->key, k, len) == -1 || store_key_user(s, k, len) == -1) {
			log_errorx("%s: a format 1 record with a malformed key (%zu bytes) stays in the "
			    "main database", db_dir(s->db), len);
			store_abort(s);
			goto fail;
		}
		buf_reset(&s->user);
		if (buf_append(&s->user, s->text.data, s->text.len) == -1 || store_migrate_one(s) == -1) {
			store_abort(s);
			goto fail;
		}
		if (++done % MIGRATE_BATCH == 0 || done == total) {
			if (store_commit(s) == -1)
				goto fail;
			log_info("%s: migrated %ld of %ld users", db_dir(s->db), done, total);
		}
	}
	log_info("%s: migration from store format 1 done", db_dir(s->db));
	return 0;
fail:
	snprintf(err, errlen, "%s: migrating from store format 1 failed after %ld of %ld users "
	    "(logged above); the next start goes on from there", db_dir(s->db),
	    done - done % MIGRATE_BATCH, total);
	return -1;
}

/*
 * Format 2 kept each cell in a duplicate of its own.  Its users move into
 * chunks MIGRATE_BATCH per transaction, as format 1's do, so an
 * interrupted migration keeps what it did.
 */
static int
store_migrate_chunks(struct store *s, char *err, size_t errlen)
{
	unsigned long long done = 0;
	size_t moved;

	if (!db_migrating(s->db))
		return 0;
	log_info("%s: migrating from store format 2 (a duplicate per cell) to format 3 (cells in "
	    "chunks), %d users per transaction", db_dir(s->db), MIGRATE_BATCH);
	do {
		if (db_begin(s->db) == -1 || db_migrate(s->db, MIGRATE_BATCH, &moved) == -1 ||
		    db_commit(s->db) == -1) {
			db_abort(s->db);
			snprintf(err, errlen, "%s: migrating from store format 2 failed after %llu users "
			    "(logged above); the next start goes on from there", db_dir(s->db), done);
			return -1;
		}
		done += moved;
		if (done % (100 * MIGRATE_BATCH) == 0 && moved > 0)
			log_info("%s: migrated %llu users", db_dir(s->db), done);
	} while (db_migrating(s->db));
	log_info("%s: migration to store format 3 done: %llu users", db_dir(s->db), done);
	return 0;
}

struct store *
store_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen)
{
	struct store *s;

	if ((s = store_new(err, errlen, dir)) == NULL)
		return NULL;
	if ((s->db = db_open(dir, map_size_bytes, cell_len, err, errlen)) == NULL) {
		int e = errno;   /* EBADMSG: a corrupt store, which the caller treats apart */

		store_close(s);
		errno = e;
		return NULL;
	}
	if (store_migrate_chunks(s, err, errlen) == -1 || store_migrate(s, err, errlen) == -1 ||
	    store_scan(s, err, errlen) == -1) {
		store_close(s);
		return NULL;
	}
	return s;
}

struct store *
store_open_readonly(const char *dir, char *err, size_t errlen)
{
	struct store *s;
	long old;

	if ((s = store_new(err, errlen, dir)) == NULL)
		return NULL;
	s->readonly = true;
	if ((s->db = db_open_readonly(dir, cell_len, err, errlen)) == NULL) {
		store_close(s);
		return NULL;
	}
	if ((old = store_old_keys(s)) != 0) {
		if (old > 0)
			snprintf(err, errlen, "%s: store format 1 (a record per user): start the "
			    "service once on this state directory, which migrates it, then read it", dir);
		else
			snprintf(err, errlen, "%s: reading the store failed (logged above)", dir);
		store_close(s);
		return NULL;
	}
	if (store_scan(s, err, errlen) == -1) {
		store_close(s);
		return NULL;
	}
	return s;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	db_close(s->db);
	buf_free(&s->key);
	buf_free(&s->prefix);
	buf_free(&s->val);
	buf_free(&s->hval);
	buf_free(&s->text);
	buf_free(&s->list);
	buf_free(&s->keys);
	buf_free(&s->user);
	buf_free(&s->walk_key);
	buf_free(&s->sweep_at);
	rec_free(s->rec);
	free(s);
}

struct db *
store_db(struct store *s)
{
	return s->db;
}

/* ---- transactions ------------------------------------------------------ */

int
store_begin(struct store *s)
{
	if (db_in_txn(s->db)) {
		log_errorx("%s: store_begin: a write transaction is already open", db_dir(s->db));
		return -1;
	}
	if (db_begin(s->db) == -1)
		return -1;
	s->d_users = s->d_alarms = s->d_tombstones = 0;
	s->d_written = 0;
	return 0;
}

static void
store_add(uint64_t *counter, int64_t delta)
{
	/* Unsigned wrap-around adds a negative delta correctly. */
	*counter += (uint64_t)delta;
}

int
store_commit(struct store *s)
{
	if (store_need_txn(s, "store_commit") == -1 || db_commit(s->db) == -1)
		return -1;
	store_add(&s->stats.users, s->d_users);
	store_add(&s->stats.alarms, s->d_alarms);
	store_add(&s->stats.tombstones, s->d_tombstones);
	s->stats.written += s->d_written;
	store_refresh_bytes(s);
	return 0;
}

void
store_abort(struct store *s)
{
	if (!db_in_txn(s->db))
		return;
	db_abort(s->db);
	s->d_users = s->d_alarms = s->d_tombstones = 0;
	s->d_written = 0;
}

void
store_set_max_alarms(struct store *s, uint64_t max)
{
	s->max_alarms = max;
}

void
store_get_stats(const struct store *s, struct store_stats *out)
{
	*out = s->stats;
}

/* ---- operations --------------------------------------------------------- */

static bool
store_accepted(enum state_result r)
{
	return r == STATE_NEW || r == STATE_CHANGED || r == STATE_REFRESHED;
}

int
store_apply(struct store *s, const struct alarm_msg *m, int64_t now_ms,
    int64_t tombstone_retention_ms, enum state_result *res)
{
	struct rec_keep expired_only = { true, now_ms, tombstone_retention_ms };
	struct cell_head h, old;
	struct alarm_state st = { STATUS_CLEARED, { 0, 0, 0 }, false }, was;
	struct id_enc e;
	bool exists, found, expired;
	int rc;

	if (store_need_txn(s, "store_apply") == -1 || store_key(s, m->user, m->user_len) == -1)
		return -1;
	id_encode(m->alarm, m->alarm_len, &e);
	if (store_prefix(s, e.kind, e.bytes, e.len) == -1 ||
	    (rc = store_head(s, m->user, m->user_len, &h)) == -1)
		return -1;
	exists = rc == 1;
	if ((rc = store_cell(s, m->user, m->user_len, &h, &exists, &st)) == -1)
		return -1;
	found = rc == 1;
	/* An expired tombstone is as good as gone: this write replaces it. */
	expired = found && state_expired(&st, now_ms, tombstone_retention_ms);
	/* Only a new alarm can cross the limit, and expired tombstones do not count. */
	if ((!found || expired) && s->max_alarms > 0 && h.alarms - expired >= s->max_alarms) {
		if (head_may_expire(&h, now_ms, tombstone_retention_ms)) {
			if (store_recount(s, m->user, m->user_len, NULL, &expired_only, &h, &exists) == -1)
				return -1;
			found = expired = false;
		}
		if (h.alarms - expired >= s->max_alarms) {
			*res = STATE_OVER_LIMIT;
			return 0;
		}
	}
	old = h;
	was = st;
	*res = state_apply(&st, found && !expired, m->status, &m->changed_at);
	if (!store_accepted(*res))
		return 0;   /* nothing to write: the common duplicate costs two reads */
	if (found)
		head_add(&h, &was, -1);
	if (state_expired(&st, now_ms, tombstone_retention_ms)) {
		/* A CLEARED already past the retention leaves no tombstone. */
		if (found && db_dup_del(s->db, s->key.data, s->key.len, s->prefix.data, s->prefix.len) == -1)
			return -1;
		return store_put_head(s, &old, exists, &h, false);
	}
	head_add(&h, &st, 1);
	if (store_put_cell(s, e.kind, e.bytes, e.len, &st) == -1)
		return -1;
	return store_put_head(s, &old, exists, &h, false);
}

struct take {
	struct store *s;
	store_alarm_fn fn;
	void *arg;
	size_t taken, bad;
	const char *why;
};

/* One cell of a digest's walk: hand a pending alarm out, note its delivered cell. */
static int
store_take_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct take *t = arg;
	struct store *s = t->s;
	struct cell_alarm a;
	const char *why;

	(void)key;
	(void)klen;
	if (cell_is_head(val, vlen))
		return 0;
	if (cell_alarm_decode(val, vlen, &a, &why) == -1) {
		t->why = why;
		t->bad++;
		return 0;
	}
	if (!state_pending(&a.st))
		return 0;
	buf_reset(&s->text);
	if (id_decode(a.kind, a.id, a.id_len, &s->text) == -1 ||
	    t->fn(t->arg, (const char *)s->text.data, s->text.len, a.st.status, &a.st.changed_at) == -1)
		return -1;
	a.st.delivered = true;
	t->taken++;
	if (cell_alarm_encode(a.kind, a.id, a.id_len, &a.st, &s->val) == -1) {
		log_error("%s: cell buffer", db_dir(s->db));
		return -1;
	}
	return store_note(s, &s->list, s->val.data, s->val.len);
}

int
store_take_pending(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    store_alarm_fn fn, void *arg, bool *replayed)
{
	static const struct rec_keep keep_all = { false, 0, 0 };
	struct take t = { s, fn, arg, 0, 0, NULL };
	struct cell_head h, old;
	bool exists;
	int rc;

	*replayed = false;
	if (store_need_txn(s, "store_take_pending") == -1 || store_key(s, user, user_len) == -1 ||
	    (rc = store_head(s, user, user_len, &h)) == -1)
		return -1;
	exists = rc == 1;
	if (request_seq > 0 && request_seq <= h.last_request) {
		/* Answered before a crash; answering again now would send later alarms early. */
		*replayed = true;
		return 0;
	}
	old = h;
	/* Nothing pending: the head alone answers, whatever the user holds. */
	if (h.pending > 0) {
		const uint8_t *p;
		size_t off = 0, len;

		buf_reset(&s->list);
		if (db_dup_walk(s->db, s->key.data, s->key.len, DB_DUP_ONE_KEY, store_take_one, &t) != 0) {
			log_error("%s: building a digest", db_dir(s->db));
			return -1;
		}
		/* After the walk, so no cursor walks cells that change. */
		while ((p = store_noted(&s->list, &off, &len)) != NULL) {
			struct cell_alarm a;
			const char *why;

			if (cell_alarm_decode(p, len, &a, &why) == -1 ||
			    db_dup_set(s->db, s->key.data, s->key.len, a.prefix_len, p, len) == -1)
				return -1;
			s->d_written += len;
		}
		h.pending = 0;
	}
	if (request_seq > 0)
		h.last_request = request_seq;
	if (store_put_head(s, &old, exists, &h, false) == -1)
		return -1;
	/* Corrupt cells the walk met: set aside, and the head counted again. */
	if (t.bad > 0 && store_recount(s, user, user_len, t.why, &keep_all, &h, &exists) == -1)
		return -1;
	return 0;
}

struct sweep_walk {
	struct store *s;
	int64_t now_ms, retention_ms;
	size_t seen, max;
	bool noted;             /* the user in s->walk_key is in s->list already */
};

/* Note the key of each user with an expired tombstone; stop after max users. */
static int
store_sweep_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct sweep_walk *w = arg;
	struct store *s = w->s;
	struct cell_alarm a;
	const char *why;

	if (w->seen == 0 || klen != s->walk_key.len || memcmp(key, s->walk_key.data, klen) != 0) {
		if (w->seen++ == w->max) {
			/* The first user not looked at: the next call starts there. */
			buf_reset(&s->sweep_at);
			if (buf_append(&s->sweep_at, key, klen) == -1) {
				log_error("%s: sweep position buffer", db_dir(s->db));
				return -1;
			}
			return 1;
		}
		buf_reset(&s->walk_key);
		if (buf_append(&s->walk_key, key, klen) == -1) {
			log_error("%s: sweep key buffer", db_dir(s->db));
			return -1;
		}
		w->noted = false;
	}
	if (w->noted || cell_is_head(val, vlen) || cell_alarm_decode(val, vlen, &a, &why) == -1 ||
	    !state_expired(&a.st, w->now_ms, w->retention_ms))
		return 0;
	w->noted = true;
	return store_note(s, &s->keys, key, klen);
}

int
store_sweep(struct store *s, int64_t now_ms, int64_t retention_ms, size_t max_users, bool *wrapped)
{
	struct rec_keep keep = { true, now_ms, retention_ms };
	struct sweep_walk w = { s, now_ms, retention_ms, 0, max_users, false };
	size_t off = 0, len;
	const uint8_t *k;
	int rc;

	*wrapped = false;
	if (store_need_txn(s, "store_sweep") == -1)
		return -1;
	buf_reset(&s->keys);
	if ((rc = db_dup_walk(s->db, s->sweep_at.data, s->sweep_at.len, DB_DUP_ALL, store_sweep_one,
	    &w)) == -1)
		return -1;
	if (rc == 0) {
		*wrapped = true;
		buf_reset(&s->sweep_at);
	}
	/* Rewrite after the walk, so no cursor is open while cells change. */
	while ((k = store_noted(&s->keys, &off, &len)) != NULL) {
		struct cell_head h;
		bool kept;

		buf_reset(&s->key);
		buf_reset(&s->user);
		if (buf_append(&s->key, k, len) == -1 || store_key_user(s, k, len) == -1 ||
		    buf_append(&s->user, s->text.data, s->text.len) == -1)
			return -1;
		if ((rc = store_head(s, (const char *)s->user.data, s->user.len, &h)) == -1)
			return -1;
		if (rc == 1 && store_recount(s, (const char *)s->user.data, s->user.len, NULL, &keep, &h,
		    &kept) == -1)
			return -1;
	}
	return 0;
}

/* ---- moving users ---------------------------------------------------------------- */

struct user_walk {
	struct store *s;
	store_user_fn fn;
	void *arg;
	bool any;
};

/* The user gathered in s->rec (key s->walk_key) to fn. */
static int
store_user_flush(struct user_walk *w)
{
	static const struct rec_keep keep_all = { false, 0, 0 };
	struct store *s = w->s;
	struct rec_counts kept;

	if (!w->any)
		return 0;
	w->any = false;
	if (store_key_user(s, s->walk_key.data, s->walk_key.len) == -1) {
		/* Not ours to interpret: leave it where an operator can look at it. */
		log_errorx("%s: skipping an entry with a malformed key (%zu bytes)", db_dir(s->db),
		    s->walk_key.len);
		return 0;
	}
	if (rec_encode(s->rec, &keep_all, &s->val, &kept) == -1) {
		log_error("%s: encoding a record", db_dir(s->db));
		return -1;
	}
	return w->fn(w->arg, (const char *)s->text.data, s->text.len, s->val.data, s->val.len);
}

static int
store_user_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct user_walk *w = arg;
	struct store *s = w->s;
	struct cell_alarm a;
	struct cell_head h;
	const char *why;
	int rc;

	if (!w->any || klen != s->walk_key.len || memcmp(key, s->walk_key.data, klen) != 0) {
		if ((rc = store_user_flush(w)) != 0)
			return rc;
		buf_reset(&s->walk_key);
		if (buf_append(&s->walk_key, key, klen) == -1) {
			log_error("%s: walk key buffer", db_dir(s->db));
			return -1;
		}
		rec_clear(s->rec);
		w->any = true;
	}
	if (cell_is_head(val, vlen)) {
		if (cell_head_decode(val, vlen, &h, &why) == 0)
			rec_set_last_request(s->rec, h.last_request);
		return 0;
	}
	if (cell_alarm_decode(val, vlen, &a, &why) == -1) {
		if (store_key_user(s, key, klen) == 0)
			quarantine_report(db_dir(s->db), (const char *)s->text.data, s->text.len, why);
		return 0;
	}
	if (rec_add(s->rec, &(struct rec_item){ a.kind, a.id, a.id_len, a.st }) == -1) {
		log_error("%s: gathering a user", db_dir(s->db));
		return -1;
	}
	return 0;
}

int
store_foreach_user(struct store *s, store_user_fn fn, void *arg)
{
	struct user_walk w = { s, fn, arg, false };
	int rc;

	if (db_in_txn(s->db)) {
		log_errorx("%s: store_foreach_user: a write transaction is open", db_dir(s->db));
		return -1;
	}
	if ((rc = db_dup_walk(s->db, NULL, 0, DB_DUP_ALL, store_user_one, &w)) != 0)
		return rc;
	return store_user_flush(&w);
}

static bool
store_state_equal(const struct alarm_state *a, const struct alarm_state *b)
{
	return a->status == b->status && a->delivered == b->delivered &&
	    a->changed_at.sec == b->changed_at.sec && a->changed_at.nsec == b->changed_at.nsec &&
	    a->changed_at.off_min == b->changed_at.off_min;
}

/* Merge the user in s->rec into its cells (key in s->key). */
static int
store_merge_rec(struct store *s, const char *user, size_t user_len)
{
	struct cell_head h, old;
	bool exists;
	int rc;

	if ((rc = store_head(s, user, user_len, &h)) == -1)
		return -1;
	exists = rc == 1;
	old = h;
	if (rec_last_request(s->rec) > h.last_request)
		h.last_request = rec_last_request(s->rec);
	for (size_t i = 0; i < rec_size(s->rec); i++) {
		struct alarm_state st, was;
		struct rec_item it;
		bool found;

		rec_at(s->rec, i, &it);
		if (it.id_len > CELL_MAX_ID)
			continue;   /* only from a format 1 record; store_migrate_one said so */
		if (store_prefix(s, it.kind, it.id, it.id_len) == -1)
			return -1;
		if ((rc = store_cell(s, user, user_len, &h, &exists, &st)) == -1)
			return -1;
		if (rc == 0)
			old = h;   /* a recount may have rewritten the head */
		found = rc == 1;
		was = st;
		if (found) {
			state_merge(&st, &it.st);
			if (store_state_equal(&was, &st))
				continue;
			head_add(&h, &was, -1);
		} else {
			st = it.st;
		}
		head_add(&h, &st, 1);
		if (store_put_cell(s, it.kind, it.id, it.id_len, &st) == -1)
			return -1;
	}
	return store_put_head(s, &old, exists, &h, false);
}

int
store_merge_user(struct store *s, const char *user, size_t user_len,
    const void *rec, size_t rec_len)
{
	const char *why;

	if (store_need_txn(s, "store_merge_user") == -1)
		return -1;
	if (rec_decode(s->rec, rec, rec_len, &why) == -1) {
		if (errno == ENOMEM)
			log_error("%s: decoding a record", db_dir(s->db));
		else
			quarantine_report(db_dir(s->db), user, user_len, why);
		return -1;
	}
	if (store_key(s, user, user_len) == -1)
		return -1;
	return store_merge_rec(s, user, user_len);
}

int
store_delete_user(struct store *s, const char *user, size_t user_len)
{
	struct cell_head h = { 0, 0, 0, 0, 0 };
	const void *v;
	const char *why;
	size_t vlen;
	int rc;

	if (store_need_txn(s, "store_delete_user") == -1 || store_key(s, user, user_len) == -1)
		return -1;
	if ((rc = db_dup_find(s->db, s->key.data, s->key.len, "", 0, &v, &vlen)) != 1)
		return rc;
	/* A corrupt head counted as a user with no alarms at open; undo exactly that. */
	if (!cell_is_head(v, vlen) || cell_head_decode(v, vlen, &h, &why) == -1)
		memset(&h, 0, sizeof(h));
	if (db_dup_del_key(s->db, s->key.data, s->key.len) == -1)
		return -1;
	s->d_users--;
	s->d_alarms -= (int64_t)h.alarms;
	s->d_tombstones -= (int64_t)h.tombstones;
	return 0;
}

/* ---- reading a user, for operators ------------------------------------------------ */

struct user_alarms {
	struct store *s;
	struct { size_t off, len; struct alarm_state st; } *v;
	size_t n, cap;
	struct buf ids;
	uint64_t last_request;
};

static int
store_ua_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct user_alarms *u = arg;
	struct cell_alarm a;
	struct cell_head h;
	const char *why;
	size_t off = u->ids.len;

	if (cell_is_head(val, vlen)) {
		if (cell_head_decode(val, vlen, &h, &why) == 0)
			u->last_request = h.last_request;
		return 0;
	}
	if (cell_alarm_decode(val, vlen, &a, &why) == -1) {
		if (store_key_user(u->s, key, klen) == 0)
			quarantine_report(db_dir(u->s->db), (const char *)u->s->text.data,
			    u->s->text.len, why);
		return 0;
	}
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 16;
		void *p = realloc(u->v, ncap * sizeof(*u->v));

		if (p == NULL)
			return -1;
		u->v = p;
		u->cap = ncap;
	}
	if (id_decode(a.kind, a.id, a.id_len, &u->ids) == -1)
		return -1;
	u->v[u->n].off = off;
	u->v[u->n].len = u->ids.len - off;
	u->v[u->n].st = a.st;
	u->n++;
	return 0;
}

/* The digest's order: instant, then AlarmID bytewise (a proper prefix first). */
static int
store_ua_cmp(const void *x, const void *y, void *arg)
{
	const struct user_alarms *u = arg;
	const __typeof__(*u->v) *a = x, *b = y;
	int c = rfc3339_cmp(&a->st.changed_at, &b->st.changed_at);

	if (c != 0)
		return c;
	c = memcmp(u->ids.data + a->off, u->ids.data + b->off, a->len < b->len ? a->len : b->len);
	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

int
store_user_alarms(struct store *s, const char *user, size_t user_len, store_each_alarm_fn fn,
    void *arg, uint64_t *last_request)
{
	struct user_alarms u = { s, NULL, 0, 0, { 0 }, 0 };
	int rc;

	*last_request = 0;
	if (store_key(s, user, user_len) == -1)
		return -1;
	if ((rc = db_dup_walk(s->db, s->key.data, s->key.len, DB_DUP_ONE_KEY, store_ua_one, &u)) == 0) {
		if (u.n > 1)
			qsort_r(u.v, u.n, sizeof(*u.v), store_ua_cmp, &u);
		for (size_t i = 0; i < u.n && rc == 0; i++) {
			struct store_alarm a = { (const char *)u.ids.data + u.v[i].off, u.v[i].len,
			    u.v[i].st.status, u.v[i].st.changed_at, u.v[i].st.delivered,
			    u.v[i].st.status == STATUS_CLEARED };

			rc = fn(arg, &a);
		}
		*last_request = u.last_request;
	} else if (rc == -1) {
		log_error("%s: reading a user's alarms", db_dir(s->db));
	}
	free(u.v);
	buf_free(&u.ids);
	return rc;
}
