/*
 * db: the LMDB environment under one state directory: one unnamed
 * database, and at most one write transaction at a time.
 *
 * db_commit returns only when the transaction is on disk (LMDB's default
 * flags sync every commit), which is what lets a worker report "durable
 * up to" to its supervisor.  Everything here logs what failed, naming the
 * LMDB call and the directory, before it returns -1.  Keys and values are
 * bytes; a value got from the database is valid until the next change or
 * the end of the transaction.
 */
#ifndef DB_H
#define DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/*
 * Open the environment in dir, creating the directory and its missing
 * parents.  NULL on error, with err filled.
 */
struct db *db_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen);
void db_close(struct db *db);   /* aborts an open write transaction */

/* For log lines: the directory the environment lives in. */
const char *db_dir(const struct db *db);
/* The longest key the database takes. */
size_t db_max_key(const struct db *db);
/* Bytes of pages in use, into *out: 0, or -1. */
int db_bytes(const struct db *db, uint64_t *out);

int db_begin(struct db *db);
int db_commit(struct db *db);
void db_abort(struct db *db);   /* nothing to do when no transaction is open */
bool db_in_txn(const struct db *db);

/* Inside the write transaction.  db_get: 1 found, 0 not found, -1 error. */
int db_get(struct db *db, const void *key, size_t klen, const void **val, size_t *vlen);
int db_put(struct db *db, const void *key, size_t klen, const void *val, size_t vlen);
int db_del(struct db *db, const void *key, size_t klen);

/*
 * Walk the records in key order from the first key >= from (all when
 * fromlen is 0), inside the open write transaction or, when none is open,
 * a read-only one of the walk's own.  from is read before fn is first
 * called, so fn may reuse its memory.  The walk must not change records.
 * A non-zero return from fn stops the walk and is returned; 0 when it
 * reached the end; -1 on a storage error.
 */
typedef int (*db_walk_fn)(void *arg, const void *key, size_t klen, const void *val, size_t vlen);
int db_walk(struct db *db, const void *from, size_t fromlen, db_walk_fn fn, void *arg);

#endif
