/*
 * spill: one worker slot's durable overflow, so that a worker which falls
 * behind (stopped, hung, crash-looping, parked, slow) holds back only its
 * own users.
 *
 * Acks are cumulative (AckAll at the durable floor, ackq.h): a message
 * that no worker has made durable pins the floor, and once the window of
 * unacked messages (max_ack_pending) is full the broker stops delivering
 * to everybody.  So the pool writes such a slot's frames here instead:
 * appended to STATE_DIR/spill-K.SEQ files, written and fdatasync'd once
 * per main-loop pass (group commit), and only then counted durable for
 * the floor.  The spill IS their only copy from then on: they have been
 * acked.  They go to the worker oldest first, before anything newer for
 * the slot, as its queue makes room ("feeding"); a file is deleted only
 * when every record in it was fed and the worker reported all of them
 * durable.  After a supervisor crash, spill_open() reads the files back
 * and every record is fed again: applying a message twice is harmless
 * (docs/DESIGN.md, "Durability").
 *
 * Records keep their order.  Those copied from the slot's queue (already
 * sent to the worker) are appended as fed; only when nothing waits to be
 * fed, so the fed records are always a prefix.
 *
 * On disk: a file is an 8-byte magic then records, each a u32 FNV-1a of
 * the rest of the record, an i64 routing time (ms, monotonic: it tells
 * when the slot has caught up) and the frame (whose header holds its
 * length).  A torn tail (written, never synced, so never acked) is cut
 * off at open.
 */
#ifndef SPILL_H
#define SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spill;

/*
 * Slot `slot`'s spill in state_dir, with whatever an earlier run left
 * there (all of it to be fed).  NULL on error (logged).
 */
struct spill *spill_open(const char *state_dir, int slot, uint64_t max_bytes);
/* Closes the files; records not yet done stay on disk for the next start. */
void spill_close(struct spill *sp);
void spill_set_max(struct spill *sp, uint64_t max_bytes);

/* Room for a frame of len bytes (and not failing)?  max_bytes 0: spilling is off. */
bool spill_has_room(const struct spill *sp, size_t len);
/* Append a frame to be fed later, routed at at_ms (monotonic).  0, or -1 (ENOMEM, logged). */
int spill_append(struct spill *sp, const uint8_t *frame, size_t len, int64_t at_ms);
/* Append a frame the worker's queue already holds, as entry `id`; only when spill_unfed() is 0. */
int spill_append_fed(struct spill *sp, const uint8_t *frame, size_t len, int64_t at_ms, uint64_t id);
/*
 * Write and fdatasync everything appended since the last sync: 1 when
 * that made records durable, 0 when there was nothing to do, -1 when it
 * failed (logged; the records are kept and retried a second later).
 */
int spill_sync(struct spill *sp);

/*
 * The next durable record not yet fed: 1 with *frame (valid until the
 * next call on sp), *len and *at_ms (when it was routed; for a record an
 * earlier run left, when the spill was opened), or 0.  Then spill_fed()
 * with the queue id it was given.
 */
int spill_next(struct spill *sp, const uint8_t **frame, size_t *len, int64_t *at_ms);
void spill_fed(struct spill *sp, uint64_t id);
/* The worker reported every queue id <= upto durable: delete the files that are all done. */
void spill_retire(struct spill *sp, uint64_t upto);

/*
 * Records not fed yet (synced or not); records held (fed or not, until
 * their file is deleted); bytes held (files and unsynced); nothing held.
 */
uint64_t spill_unfed(const struct spill *sp);
uint64_t spill_records(const struct spill *sp);
uint64_t spill_bytes(const struct spill *sp);
bool spill_empty(const struct spill *sp);

/* 1 + the highest slot with a spill file in state_dir; 0 when there is none; -1 (logged). */
int spill_scan(const char *state_dir);

#endif
