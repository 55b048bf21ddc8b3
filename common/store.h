/*
 * store: a worker's durable state, one LMDB environment per worker slot.
 *
 * One record per user (key: the UserID; a tag byte + 16 bytes when it is a UUID),
 * holding all that user's alarms: a digest reads one record, and moving a
 * user to another worker moves one record.  Writes happen inside a write
 * transaction opened with store_begin(); store_commit() returns only when
 * the transaction is on disk (fdatasync), which is what lets the worker
 * report "durable up to" to its supervisor.
 */
#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alarm.h"
#include "rfc3339.h"
#include "state.h"

struct store;

struct store_stats {
	uint64_t users;       /* users with at least one record */
	uint64_t alarms;      /* alarm records, tombstones included */
	uint64_t tombstones;  /* CLEARED records kept to reject stale updates */
	uint64_t bytes;       /* bytes of LMDB pages in use */
};

/* Open (creating the directory if missing) the environment in `dir`. NULL on error, with err filled. */
struct store *store_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen);
void store_close(struct store *s);
/*
 * The environment under the store, for what concerns it rather than
 * records: why a write failed, growing the map (db.h).
 */
struct db *store_db(struct store *s);

/* Write transactions.  All return 0, or -1 after logging what failed. */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_abort(struct store *s);

/*
 * The most alarms one user may hold, tombstones included (SPEC, malformed
 * input: max_alarms_per_user); 0, the default of a fresh store, is no limit.
 * Takes effect from the next store_apply, so a reload can change it.
 */
void store_set_max_alarms(struct store *s, uint64_t max);

/*
 * Apply one AlarmStatusChanged inside the open transaction.  Expired
 * tombstones of that user are dropped while its record is rewritten.
 * An update of an alarm the user does not hold while the user already
 * holds the maximum (store_set_max_alarms; counted after dropping the
 * expired tombstones, as the write would) changes nothing and sets
 * STATE_OVER_LIMIT; updates of alarms the user holds still apply.
 * Returns 0 and sets *res, or -1 on a storage error.
 */
int store_apply(struct store *s, const struct alarm_msg *m, int64_t now_ms,
    int64_t tombstone_retention_ms, enum state_result *res);

/* One alarm handed out by store_take_pending: 0, or -1 to stop (ENOMEM). */
typedef int (*store_alarm_fn)(void *arg, const char *alarm, size_t alarm_len,
    enum alarm_status status, const struct rfc3339_time *changed_at);

/*
 * Pass each of the user's pending alarms to fn, in stored order, and mark
 * them delivered inside the open transaction.  If the digest then cannot
 * be published, store_abort() undoes the marks.
 *
 * request_seq is the request's stream sequence (0 when unknown: core
 * intake).  A request at or below the last one answered for this user is
 * a replay after a crash: it was answered (its digest went out before its
 * commit), so *replayed is set and fn is not called.  Answering it again
 * against today's state would send alarms that arrived after it early.
 */
int store_take_pending(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    store_alarm_fn fn, void *arg, bool *replayed);

/*
 * Inside a write transaction: drop expired tombstones from up to max_users
 * records, continuing where the previous call stopped.  *wrapped is set
 * when the walk reached the end (the next call starts over).  Tombstones
 * also go whenever their user's record is rewritten; this reaches users
 * who are never written again.
 */
int store_sweep(struct store *s, int64_t now_ms, int64_t retention_ms, size_t max_users, bool *wrapped);

/* Counters, kept up to date by commits (not a scan). */
void store_get_stats(const struct store *s, struct store_stats *out);

/*
 * For moving users between stores when the worker count changes.
 * store_foreach_user walks all users in a read transaction (no write
 * transaction may be open); the record bytes are opaque to the caller and
 * valid only during the callback.  A non-zero return from fn stops the walk
 * and is returned.
 */
typedef int (*store_user_fn)(void *arg, const char *user, size_t user_len,
    const void *rec, size_t rec_len);
int store_foreach_user(struct store *s, store_user_fn fn, void *arg);
/* Inside a write transaction: merge a record (from store_foreach_user) into this store. */
int store_merge_user(struct store *s, const char *user, size_t user_len,
    const void *rec, size_t rec_len);
/* Inside a write transaction: remove a user's record. */
int store_delete_user(struct store *s, const char *user, size_t user_len);

#endif
