/*
 * layout: what lives where in the state directory, in one place.
 *
 *     STATE_DIR/supervisor.lock   held by the one supervisor using STATE_DIR (its pid inside)
 *     STATE_DIR/reload-status     the last SIGHUP's outcome (common/reloadstat.h)
 *     STATE_DIR/LAYOUT            "workers N": the worker count the stores are
 *                                 laid out for (every user in worker-(hash % N))
 *     STATE_DIR/worker-K/         slot K's LMDB store and its worker.lock
 *     STATE_DIR/spill-K.SEQ       slot K's spill files (supervisor/spill.h): acked
 *                                 messages its worker has not made durable yet,
 *                                 written under the count in LAYOUT
 *
 * LAYOUT is written last by a reshard, atomically (write, fsync, rename,
 * fsync the directory), so it is either the old count or the new one and
 * never claims a layout the stores do not have.
 */
#ifndef LAYOUT_H
#define LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define LAYOUT_MAX_SLOTS 4096

enum layout_state {
	LAYOUT_FRESH,     /* no LAYOUT and no store: a new state directory */
	LAYOUT_MATCH,     /* laid out for the count asked about */
	LAYOUT_DIFFERS,   /* another count, or stores without a readable LAYOUT */
	LAYOUT_ERROR,     /* the directory cannot be read (logged) */
};

/* STATE_DIR/FILE into dst; 0, or -1 (logged) when it does not fit. */
int layout_path(char *dst, size_t len, const char *state_dir, const char *file);
/* STATE_DIR/worker-SLOT, or STATE_DIR/worker-SLOT/FILE when file is not NULL. */
int layout_slot_path(char *dst, size_t len, const char *state_dir, int slot, const char *file);

/* STATE_DIR/spill-SLOT.SEQ (SEQ zero-padded, so names sort by it). */
int layout_spill_path(char *dst, size_t len, const char *state_dir, int slot, uint64_t seq);
/* Is a directory entry a spill file?  1 with *slot and *seq set, else 0. */
int layout_spill_parse(const char *name, int *slot, uint64_t *seq);

/* How STATE_DIR stands against a worker count.  Reads only. */
enum layout_state layout_check(const char *state_dir, int nslots);
/*
 * Replace the file at path with text, whole or not at all: a temp file
 * beside it, fsync, rename, fsync the directory.  0 or -1 (logged).
 */
int layout_write_file(const char *path, const char *text);
/* The worker count LAYOUT records; 0 when there is none, -1 when it cannot be read (logged). */
int layout_count(const char *state_dir);
/* Record that STATE_DIR is laid out for nslots workers.  0 or -1 (logged). */
int layout_write(const char *state_dir, int nslots);
/* Slot numbers of the worker-K stores present, ascending, at most max; count or -1 (logged). */
int layout_scan(const char *state_dir, int *slots, int max);

#endif
