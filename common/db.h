/*
 * db: the LMDB environment under one state directory, and at most one
 * write transaction at a time.  Two databases: the main one (format 1
 * stores kept one record per user there; db_get/db_put/db_del/db_walk
 * reach it, for migrating them), and "cells", each key's cells (cell.h
 * says what the store keeps there), reached by the db_dup_* calls.
 *
 * The cells of a key are kept in chunks (store format 3): each LMDB
 * duplicate holds a run of consecutive cells, at most 511 bytes, so a
 * user of ten alarms is one or two duplicates where format 2 made one per
 * cell, each with LMDB's 10 bytes of node and index.  Chunks sort by their
 * first cells, so the chunk that holds a cell is found by LMDB's search,
 * and a change rewrites one chunk: bounded, whatever the user holds.  A
 * chunk that outgrows 511 bytes splits in two; one left small by a delete
 * takes in the next.  The caller's db_cell_len_fn says where each cell
 * ends.
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
 * The length of the cell that starts at p, avail bytes on: 0 when it does
 * not parse (the rest of the chunk is then taken as one cell).
 */
typedef size_t (*db_cell_len_fn)(const void *p, size_t avail);

/*
 * Open the environment in dir, creating the directory and its missing
 * parents.  NULL on error, with err filled.  An existing data.mdb is
 * checked first (db_check): a corrupt one is refused with errno EBADMSG
 * and err naming the file, so it never reaches LMDB's assertions here.
 */
struct db *db_open(const char *dir, int64_t map_size_bytes, db_cell_len_fn cell_len, char *err,
    size_t errlen);
/*
 * Open an existing store to read while its worker runs: LMDB's
 * MDB_RDONLY, sharing LMDB's lock file (its reader table) with the
 * writer, no check, no directory created, no write transaction ever.
 * NULL on error, with err filled.  A format 2 store not migrated yet
 * reads as it is (its duplicates are chunks of one cell); one being
 * migrated shows the users moved so far.
 */
struct db *db_open_readonly(const char *dir, db_cell_len_fn cell_len, char *err, size_t errlen);
void db_close(struct db *db);   /* aborts an open write transaction */

/*
 * Read every page of the main database and the free list of dir's
 * data.mdb in a child process: LMDB aborts on some corruptions, and a
 * child's death is an answer where ours would not be.  1 when the store
 * is sound or does not exist yet, 0 when it is corrupt (err says how), -1
 * when the check itself could not run (err says why).  The caller must be
 * single-threaded and must not hold dir open (LMDB forbids using an
 * environment across fork).
 */
int db_check(const char *dir, char *err, size_t errlen);

/*
 * The map grows, when full, up to max_bytes (never below the size it has).
 * Until this is called the maximum is the initial size: no growth.
 */
void db_set_map_max(struct db *db, int64_t max_bytes);
/* The map's size now. */
int64_t db_map_size(const struct db *db);

/*
 * What the last failed call ran into.  Two kinds pass by themselves or by
 * a bigger map, so the caller may wait instead of giving up: the map full
 * (db_grow), and the file system full (ENOSPC, EDQUOT, or a short write
 * there: LMDB reports the latter as EIO).  Reset by db_begin.
 */
enum db_fault {
	DB_FAULT_NONE,
	DB_FAULT_MAP_FULL,
	DB_FAULT_DISK_FULL,
	DB_FAULT_OTHER,
};
enum db_fault db_fault(const struct db *db);
/*
 * With no transaction open (LMDB's rule for mdb_env_set_mapsize): double
 * the map, at most to the maximum.  1 grown (logged), 0 already at the
 * maximum, -1 on error (db_fault says which kind).
 */
int db_grow(struct db *db);

/* For log lines: the directory the environment lives in. */
const char *db_dir(const struct db *db);
/* The longest key the database takes. */
size_t db_max_key(const struct db *db);
/* Bytes of pages in use, into *out: 0, or -1. */
int db_bytes(struct db *db, uint64_t *out);

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

/*
 * The cells.  A prefix names one cell: no cell's prefix may be the prefix
 * of another's (cell.h).  Inside the write transaction; values got are
 * valid until the next change.
 *
 * db_dup_find: 1 with the key's cell that starts with prefix, 0 when
 * there is none, -1 on error.  db_dup_set: replace the cell that starts
 * with val's first plen bytes by val, or add val (nothing is written when
 * it is there already).  db_dup_del: remove the cell starting with
 * prefix, if any.  db_dup_del_key: remove the key and all its cells, if
 * any.
 */
int db_dup_find(struct db *db, const void *key, size_t klen, const void *prefix, size_t plen,
    const void **val, size_t *vlen);
int db_dup_set(struct db *db, const void *key, size_t klen, size_t plen, const void *val, size_t vlen);
int db_dup_del(struct db *db, const void *key, size_t klen, const void *prefix, size_t plen);
int db_dup_del_key(struct db *db, const void *key, size_t klen);
/*
 * Walk (key, cell) pairs in order, as db_walk does: every pair from the
 * first key >= from, only the first cell of each such key, or only the
 * cells of the key `from`.
 */
enum db_dup_walk { DB_DUP_ALL, DB_DUP_FIRSTS, DB_DUP_ONE_KEY };
int db_dup_walk(struct db *db, const void *from, size_t fromlen, enum db_dup_walk how,
    db_walk_fn fn, void *arg);

/*
 * Store format 2 kept a cell per duplicate, in a database of its own.
 * db_migrating: is such a database left?  db_migrate: move up to `users`
 * of its users into chunks, inside the open write transaction; the one
 * that finds none left replaces the old database by format 3's marker.
 * 0 (*moved: the users moved), or -1.
 */
bool db_migrating(const struct db *db);
int db_migrate(struct db *db, size_t users, size_t *moved);

#endif
