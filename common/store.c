/*
 * store: the operations on a worker's durable state, over the LMDB
 * environment (db.h) and the record codec (rec.h).
 *
 * Key:   [kind] + 16 bytes when the UserID is a canonical UUID that
 *        round-trips exactly (kind says lower or upper case, so the
 *        original spelling comes back), else [ID_RAW] + the raw bytes
 *        (id.h).
 * Value: the user's record (rec.h).
 *
 * The counters are kept incrementally: a walk at open gives the starting
 * point, every write adds its change to the open transaction's deltas,
 * and a commit applies them.  A corrupt record is logged and, when a
 * write meets it, quarantined (quarantine.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "db.h"
#include "id.h"
#include "log.h"
#include "quarantine.h"
#include "rec.h"
#include "store.h"

struct store {
	struct db *db;

	struct store_stats stats;       /* as of the last commit */
	uint64_t max_alarms;            /* per user, tombstones included; 0: no limit */
	int64_t d_users, d_alarms, d_tombstones;   /* the open transaction's changes */

	struct buf key, val;
	struct buf text;        /* a decoded UserID */
	struct rec *cur, *other;
	struct buf sweep_at;    /* key the next store_sweep starts from ("" = the first) */
	struct buf sweep_keys;  /* keys to rewrite, each as u16 length + bytes */
};

static int
store_need_txn(const struct store *s, const char *fn)
{
	if (db_in_txn(s->db))
		return 0;
	log_errorx("%s: %s: no write transaction open", db_dir(s->db), fn);
	return -1;
}

/* ---- keys -------------------------------------------------------------- */

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

/* ---- records inside the write transaction -------------------------------- */

/*
 * Load the user's record into rec.  *exists says whether there was one.
 * -1 on a storage error; a corrupt record is quarantined and rec left
 * empty, so the user starts afresh.
 */
static int
store_load(struct store *s, const char *user, size_t user_len, const void *key, size_t klen,
    struct rec *rec, bool *exists)
{
	const void *v;
	const char *why;
	size_t vlen;
	int rc;

	*exists = false;
	if ((rc = db_get(s->db, key, klen, &v, &vlen)) != 1) {
		rec_clear(rec);
		return rc;
	}
	*exists = true;
	if (rec_decode(rec, v, vlen, &why) == -1) {
		if (errno == ENOMEM) {
			log_error("%s: decoding a record", db_dir(s->db));
			return -1;
		}
		quarantine_report(db_dir(s->db), user, user_len, why);
		quarantine_save(db_dir(s->db), v, vlen);
		rec_clear(rec);
	}
	return 0;
}

/* Rewrite (or delete, when nothing is kept) the record and account for it. */
static int
store_save(struct store *s, const void *key, size_t klen, const struct rec *rec,
    const struct rec_keep *keep, bool existed, const struct rec_counts *before)
{
	struct rec_counts after;
	bool keep_record;

	if (rec_encode(rec, keep, &s->val, &after) == -1) {
		log_error("%s: encoding a record", db_dir(s->db));
		return -1;
	}
	keep_record = after.alarms > 0 || rec_last_request(rec) > 0;
	if (!keep_record) {
		if (existed && db_del(s->db, key, klen) == -1)
			return -1;
	} else if (db_put(s->db, key, klen, s->val.data, s->val.len) == -1) {
		return -1;
	}
	s->d_users += (keep_record ? 1 : 0) - (existed ? 1 : 0);
	s->d_alarms += after.alarms - before->alarms;
	s->d_tombstones += after.tombstones - before->tombstones;
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

static int
store_scan_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct store *s = arg;
	struct rec_counts c;
	const char *why;

	/* A corrupt record still is a user: keeps the counters consistent with a later delete. */
	s->stats.users++;
	if (store_key_user(s, key, klen) == -1) {
		log_errorx("%s: record with a malformed key (%zu bytes)", db_dir(s->db), klen);
		return 0;
	}
	if (rec_decode(s->cur, val, vlen, &why) == -1) {
		quarantine_report(db_dir(s->db), (const char *)s->text.data, s->text.len, why);
		return 0;
	}
	rec_count(s->cur, &c);
	s->stats.alarms += (uint64_t)c.alarms;
	s->stats.tombstones += (uint64_t)c.tombstones;
	return 0;
}

struct store *
store_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen)
{
	struct store *s;

	if ((s = calloc(1, sizeof(*s))) == NULL || (s->cur = rec_new()) == NULL ||
	    (s->other = rec_new()) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		store_close(s);
		return NULL;
	}
	if ((s->db = db_open(dir, map_size_bytes, err, errlen)) == NULL) {
		int e = errno;   /* EBADMSG: a corrupt store, which the caller treats apart */

		store_close(s);
		errno = e;
		return NULL;
	}
	/* The counters are kept incrementally; a walk at open gives the starting point. */
	if (db_walk(s->db, NULL, 0, store_scan_one, s) != 0) {
		snprintf(err, errlen, "%s: counting the records failed (logged above)", dir);
		store_close(s);
		return NULL;
	}
	store_refresh_bytes(s);
	return s;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	db_close(s->db);
	buf_free(&s->key);
	buf_free(&s->val);
	buf_free(&s->text);
	buf_free(&s->sweep_at);
	buf_free(&s->sweep_keys);
	rec_free(s->cur);
	rec_free(s->other);
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

int
store_apply(struct store *s, const struct alarm_msg *m, int64_t now_ms,
    int64_t tombstone_retention_ms, enum state_result *res)
{
	struct rec_keep keep = { true, now_ms, tombstone_retention_ms };
	struct rec_counts before;
	bool exists;
	int changed;

	if (store_need_txn(s, "store_apply") == -1 ||
	    store_key(s, m->user, m->user_len) == -1 ||
	    store_load(s, m->user, m->user_len, s->key.data, s->key.len, s->cur, &exists) == -1)
		return -1;
	/*
	 * Only a new alarm can cross the limit.  Expired tombstones do not
	 * count: the write this update makes would drop them.  The cheap tests
	 * go first, the walk over the record last.
	 */
	if (s->max_alarms > 0 && rec_count_kept(s->cur, &(struct rec_keep){ false, 0, 0 }) >=
	    s->max_alarms && !rec_holds(s->cur, m->alarm, m->alarm_len) &&
	    rec_count_kept(s->cur, &keep) >= s->max_alarms) {
		*res = STATE_OVER_LIMIT;
		return 0;
	}
	rec_count(s->cur, &before);
	if ((changed = rec_apply(s->cur, m->alarm, m->alarm_len, m->status, &m->changed_at, res)) == -1) {
		log_error("%s: adding an alarm", db_dir(s->db));
		return -1;
	}
	if (!changed && !rec_any_dropped(s->cur, &keep))
		return 0;   /* nothing to write: the common duplicate costs one read */
	return store_save(s, s->key.data, s->key.len, s->cur, &keep, exists, &before);
}

int
store_take_pending(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    store_alarm_fn fn, void *arg, bool *replayed)
{
	struct rec_keep keep = { false, 0, 0 };
	struct rec_counts before;
	bool exists;
	size_t taken;

	*replayed = false;
	if (store_need_txn(s, "store_take_pending") == -1 ||
	    store_key(s, user, user_len) == -1 ||
	    store_load(s, user, user_len, s->key.data, s->key.len, s->cur, &exists) == -1)
		return -1;
	if (request_seq > 0 && request_seq <= rec_last_request(s->cur)) {
		/* Answered before a crash; answering again now would send later alarms early. */
		*replayed = true;
		return 0;
	}
	if (rec_take_pending(s->cur, fn, arg, &taken) == -1) {
		log_error("%s: building a digest", db_dir(s->db));
		return -1;
	}
	if (request_seq > 0)
		rec_set_last_request(s->cur, request_seq);
	else if (taken == 0)
		return 0;
	rec_count(s->cur, &before);
	return store_save(s, s->key.data, s->key.len, s->cur, &keep, exists, &before);
}

struct sweep_walk {
	struct store *s;
	const struct rec_keep *keep;
	size_t seen, max;
};

/* Note the key if its record holds expired tombstones; stop after max keys. */
static int
store_sweep_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct sweep_walk *w = arg;
	struct store *s = w->s;
	uint16_t len = (uint16_t)klen;
	const char *why;

	if (w->seen++ == w->max) {
		/* The first key not looked at: the next call starts there. */
		buf_reset(&s->sweep_at);
		if (buf_append(&s->sweep_at, key, klen) == -1) {
			log_error("%s: sweep position buffer", db_dir(s->db));
			return -1;
		}
		return 1;
	}
	if (rec_decode(s->other, val, vlen, &why) == -1 || !rec_any_dropped(s->other, w->keep))
		return 0;
	if (buf_append(&s->sweep_keys, &len, sizeof(len)) == -1 ||
	    buf_append(&s->sweep_keys, key, klen) == -1) {
		log_error("%s: sweep key buffer", db_dir(s->db));
		return -1;
	}
	return 0;
}

int
store_sweep(struct store *s, int64_t now_ms, int64_t retention_ms, size_t max_users, bool *wrapped)
{
	struct rec_keep keep = { true, now_ms, retention_ms };
	struct sweep_walk w = { s, &keep, 0, max_users };
	struct rec_counts before;
	const char *why;
	size_t off = 0;
	int rc;

	*wrapped = false;
	if (store_need_txn(s, "store_sweep") == -1)
		return -1;
	buf_reset(&s->sweep_keys);
	if ((rc = db_walk(s->db, s->sweep_at.data, s->sweep_at.len, store_sweep_one, &w)) == -1)
		return -1;
	if (rc == 0) {
		*wrapped = true;
		buf_reset(&s->sweep_at);
	}
	/* Rewrite after the walk, so no cursor is open while records change. */
	while (off < s->sweep_keys.len) {
		const uint8_t *key;
		const void *v;
		size_t vlen;
		uint16_t len;

		memcpy(&len, s->sweep_keys.data + off, sizeof(len));
		key = s->sweep_keys.data + off + sizeof(len);
		off += sizeof(len) + len;
		if ((rc = db_get(s->db, key, len, &v, &vlen)) == -1)
			return -1;
		if (rc == 0 || rec_decode(s->cur, v, vlen, &why) == -1)
			continue;
		rec_count(s->cur, &before);
		if (store_save(s, key, len, s->cur, &keep, true, &before) == -1)
			return -1;
	}
	return 0;
}

struct user_walk {
	struct store *s;
	store_user_fn fn;
	void *arg;
};

static int
store_user_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct user_walk *w = arg;
	struct store *s = w->s;

	if (store_key_user(s, key, klen) == -1) {
		/* Not ours to interpret: leave it where an operator can look at it. */
		log_errorx("%s: skipping a record with a malformed key (%zu bytes)", db_dir(s->db), klen);
		return 0;
	}
	return w->fn(w->arg, (const char *)s->text.data, s->text.len, val, vlen);
}

int
store_foreach_user(struct store *s, store_user_fn fn, void *arg)
{
	struct user_walk w = { s, fn, arg };

	if (db_in_txn(s->db)) {
		log_errorx("%s: store_foreach_user: a write transaction is open", db_dir(s->db));
		return -1;
	}
	return db_walk(s->db, NULL, 0, store_user_one, &w);
}

int
store_merge_user(struct store *s, const char *user, size_t user_len,
    const void *rec, size_t rec_len)
{
	struct rec_keep keep = { false, 0, 0 };
	struct rec_counts before;
	const char *why;
	bool exists, changed;

	if (store_need_txn(s, "store_merge_user") == -1)
		return -1;
	if (rec_decode(s->other, rec, rec_len, &why) == -1) {
		if (errno == ENOMEM)
			log_error("%s: decoding a record", db_dir(s->db));
		else
			quarantine_report(db_dir(s->db), user, user_len, why);
		return -1;
	}
	if (store_key(s, user, user_len) == -1 ||
	    store_load(s, user, user_len, s->key.data, s->key.len, s->cur, &exists) == -1)
		return -1;
	rec_count(s->cur, &before);
	if (rec_merge(s->cur, s->other, &changed) == -1) {
		log_error("%s: merging a record", db_dir(s->db));
		return -1;
	}
	if (!changed)
		return 0;
	return store_save(s, s->key.data, s->key.len, s->cur, &keep, exists, &before);
}

int
store_delete_user(struct store *s, const char *user, size_t user_len)
{
	struct rec_counts before = { 0, 0 };
	const void *v;
	const char *why;
	size_t vlen;
	int rc;

	if (store_need_txn(s, "store_delete_user") == -1 || store_key(s, user, user_len) == -1)
		return -1;
	if ((rc = db_get(s->db, s->key.data, s->key.len, &v, &vlen)) != 1)
		return rc;
	/* A corrupt record counted as a user with no alarms at open; undo exactly that. */
	if (rec_decode(s->cur, v, vlen, &why) == 0)
		rec_count(s->cur, &before);
	if (db_del(s->db, s->key.data, s->key.len) == -1)
		return -1;
	s->d_users--;
	s->d_alarms -= before.alarms;
	s->d_tombstones -= before.tombstones;
	return 0;
}
