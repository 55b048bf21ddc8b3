/*
 * cell: the store's value codec (store formats 2 and 3).
 *
 * A user's entry in the store's "cells" database (db.h) is a list of
 * cells under the user's key, in chunks: one head cell, then one alarm
 * cell per alarm.  Cells sort bytewise, so the first byte puts the head
 * first and the alarms in id_cmp order (kind, length, bytes); and since
 * no alarm cell's ID part is a prefix of another's, the first cell >= an
 * ID part is that alarm's cell or proves it absent.  Each cell says where
 * it ends (cell_len), which is how db.c finds the cells in a chunk.
 * An update therefore reads and rewrites one small cell, whatever the
 * number of alarms the user holds.
 *
 *   head:  u8 0
 *          uvarint stream sequence of the last digest request answered (0: none)
 *          uvarint alarms (tombstones included), uvarint tombstones,
 *          uvarint pending alarms (state_pending)
 *          svarint a lower bound of the tombstones' ChangedAt seconds
 *   alarm: u8 1 + AlarmID kind (id.h)
 *          AlarmID: 16 bytes for a UUID kind, else u16 big-endian length + bytes
 *          uvarint zigzag(sec - CELL_EPOCH) << 4 | has-fraction-or-offset << 3 |
 *                  delivered << 2 | status
 *          (has-fraction-or-offset only) uvarint nsec * 2879 + zigzag(offset minutes)
 *
 * A UUID alarm with a whole-second UTC ChangedAt between 1986 and 2054
 * (CELL_EPOCH +- 2^30 s) costs 22 bytes.  The largest cell, a CELL_MAX_ID-byte raw AlarmID with
 * the widest timestamp, is CELL_MAX bytes, within LMDB's 511-byte limit on
 * a duplicate.
 *
 * Decoding trusts nothing: every length, field and range is checked, so a
 * corrupt cell is refused with a reason instead of being half-applied.
 */
#ifndef CELL_H
#define CELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "id.h"
#include "state.h"

/* The longest raw AlarmID a cell holds (config's max_id_bytes stays within it). */
#define CELL_MAX_ID 480
#define CELL_MAX (1 + 2 + CELL_MAX_ID + 7 + 6)
#define CELL_EPOCH INT64_C(1577836800)   /* 2020-01-01T00:00:00Z */
#define CELL_HEAD_TAG 0x00

struct cell_head {
	uint64_t last_request;   /* 0: no request answered */
	uint64_t alarms;         /* tombstones included */
	uint64_t tombstones;
	uint64_t pending;        /* alarms a digest would take now */
	int64_t tomb_floor;      /* <= every tombstone's ChangedAt.sec (when tombstones > 0) */
};

struct cell_alarm {
	uint8_t kind;            /* enum id_kind */
	const uint8_t *id;       /* into the decoded bytes */
	size_t id_len;
	size_t prefix_len;       /* bytes of the cell that name the alarm (its sort prefix) */
	struct alarm_state st;
};

/* The length of the cell (head or alarm) that starts at p, with avail bytes on: 0 when it does not parse (db.h). */
size_t cell_len(const void *p, size_t avail);

/* Is this a head cell (by its first byte)? */
bool cell_is_head(const void *data, size_t len);

/* The head cell: encode into out (replaced), 0 or -1 on ENOMEM; decode: 0, or -1 with *why. */
int cell_head_encode(const struct cell_head *h, struct buf *out);
int cell_head_decode(const void *data, size_t len, struct cell_head *h, const char **why);

/* The sort prefix naming an alarm (tag byte and ID), into out (replaced): 0, or -1 (ENOMEM, or EINVAL: ID too long). */
int cell_prefix(uint8_t kind, const uint8_t *id, size_t id_len, struct buf *out);
/* A whole alarm cell into out (replaced): 0, or -1 as cell_prefix. */
int cell_alarm_encode(uint8_t kind, const uint8_t *id, size_t id_len, const struct alarm_state *st,
    struct buf *out);
/* 0 with *a filled (a->id points into data), or -1 with *why naming the first check that failed. */
int cell_alarm_decode(const void *data, size_t len, struct cell_alarm *a, const char **why);

#endif
