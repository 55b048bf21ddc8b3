/*
 * store: a worker's durable state, one LMDB environment per worker slot.
 *
 * Per user (key: the UserID; a tag byte + 16 bytes when it is a UUID) a
 * list of cells, kept in chunks of LMDB sorted duplicates (db.h): a head
 * cell with the user's counts and last answered request, then one small
 * cell per alarm (cell.h).  An
 * update reads and rewrites that alarm's cell and at most the head,
 * whatever the number of alarms the user holds; a digest reads the head
 * and walks the user's cells only when the head says some are pending.
 * A state directory of format 1 (one record per user, rec.h) or format 2
 * (a duplicate per cell) is migrated by store_open.  Writes happen inside a write
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
	uint64_t written;     /* bytes of cells written since open (a measure of work per update) */
};

/*
 * Open (creating the directory if missing) the environment in `dir`.  A
 * store of format 1 is migrated first, a bounded batch of users per
 * transaction, with its progress logged; an interrupted migration goes on
 * at the next open.  NULL on error, with err filled.
 */
struct store *store_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen);
/*
 * Open an existing store to read while its worker runs (operator tools):
 * LMDB read transactions only, nothing written, no worker.lock taken.  A
 * store still in format 1 is refused (err says to start the service once,
 * which migrates it).  Only store_get_stats, store_user_alarms and
 * store_close apply to it.
 */
struct store *store_open_readonly(const char *dir, char *err, size_t errlen);
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
 * Apply one AlarmStatusChanged inside the open transaction.  An expired
 * tombstone of that alarm counts as absent and is replaced.  An update of
 * an alarm the user does not hold while the user already holds the
 * maximum (store_set_max_alarms) changes nothing and sets
 * STATE_OVER_LIMIT; before refusing, the user's expired tombstones are
 * dropped (a walk over its cells, only when its head says one may have
 * expired), so they never count.  Updates of alarms the user holds still
 * apply.  Returns 0 and sets *res, or -1 on a storage error.
 */
int store_apply(struct store *s, const struct alarm_msg *m, int64_t now_ms,
    int64_t tombstone_retention_ms, enum state_result *res);

/* One alarm handed out by store_take_pending: 0, or -1 to stop (ENOMEM). */
typedef int (*store_alarm_fn)(void *arg, const char *alarm, size_t alarm_len,
    enum alarm_status status, const struct rfc3339_time *changed_at);

/*
 * Pass each of the user's pending alarms to fn, in stored order (not the
 * digest's: digest.c sorts), and mark
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
 * Inside a write transaction: drop expired tombstones of up to max_users
 * users, continuing where the previous call stopped.  *wrapped is set
 * when the walk reached the end (the next call starts over).  This is
 * what removes the tombstones of alarms that are never updated again.
 */
int store_sweep(struct store *s, int64_t now_ms, int64_t retention_ms, size_t max_users, bool *wrapped);

/* Counters, kept up to date by commits (not a scan). */
void store_get_stats(const struct store *s, struct store_stats *out);

/*
 * For moving users between stores when the worker count changes.
 * store_foreach_user walks all users in a read transaction (no write
 * transaction may be open), handing out each user's alarms and last
 * answered request as one record (rec.h's encoding, so a user travels as
 * one blob); the bytes are opaque to the caller and valid only during the
 * callback.  A non-zero return from fn stops the walk
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

/*
 * One stored alarm, as an operator sees it: the AlarmID as it arrived,
 * the stored state, and whether it is a tombstone (CLEARED).
 */
struct store_alarm {
	const char *id;
	size_t id_len;
	enum alarm_status status;
	struct rfc3339_time changed_at;   /* as stored: the offset it arrived with */
	bool delivered;
	bool tombstone;
};
typedef int (*store_each_alarm_fn)(void *arg, const struct store_alarm *a);

/*
 * Hand each stored alarm of the user to fn in digest order (ChangedAt's
 * instant, then AlarmID bytewise), tombstones included, in one read
 * transaction (or the open write transaction); *last_request gets the
 * stream sequence of the last digest request answered (0: none).  A user
 * the store does not hold has no alarms and 0.  A non-zero return from fn
 * stops and is returned; 0; -1 on a storage error or ENOMEM.  A corrupt
 * cell is logged and skipped.
 */
int store_user_alarms(struct store *s, const char *user, size_t user_len, store_each_alarm_fn fn,
    void *arg, uint64_t *last_request);

#endif
