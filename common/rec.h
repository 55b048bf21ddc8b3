/*
 * rec: the record codec of store format 1.  The store keeps cells now
 * (cell.h); a record is what format 1 kept per user, read once when an
 * old state directory is migrated, and the form a user travels in from
 * one store to another (store_foreach_user / store_merge_user).
 *
 * A record holds one user's alarms, sorted by
 * stored AlarmID (id.h), and the stream sequence of the last digest
 * request answered for that user.  A struct rec is a decoded record,
 * reused from call to call, so steady state allocates nothing.
 *
 * Encoding (format 1, or 2 once the user has asked for a digest through
 * JetStream); existing state directories depend on it, so it never changes
 * in place, only by a new version byte:
 *   u8      format version (1 or 2)
 *   uvarint (format 2 only) stream sequence of the last digest request answered
 *   uvarint alarm count
 *   per alarm, sorted by stored AlarmID (kind, length, bytes):
 *     u8       bits 0-1 status, bit 2 delivered, bits 3-4 AlarmID kind
 *     AlarmID  16 bytes for a UUID kind, else uvarint length + bytes
 *     svarint  changed_at.sec (zigzag)
 *     uvarint  changed_at.nsec
 *     svarint  changed_at.off_min (zigzag)
 * A UUID alarm with a whole-second UTC timestamp costs 24 bytes.
 *
 * Decoding trusts nothing: every length is checked against the bytes
 * left, every field against its range, and the AlarmIDs must be strictly
 * increasing (which also rules out duplicates), so a corrupt record is
 * refused with a reason instead of being half-applied.
 */
#ifndef REC_H
#define REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alarm.h"
#include "buf.h"
#include "rfc3339.h"
#include "state.h"

struct rec;

/* What a record holds, for the store's counters. */
struct rec_counts {
	int64_t alarms;       /* tombstones included */
	int64_t tombstones;
};

/* Which alarms an encode keeps: all, or all but the expired tombstones (state_expired). */
struct rec_keep {
	bool drop_expired;
	int64_t now_ms, retention_ms;
};

/* One alarm handed out by rec_take_pending: 0, or -1 to stop. */
typedef int (*rec_alarm_fn)(void *arg, const char *alarm, size_t alarm_len,
    enum alarm_status status, const struct rfc3339_time *changed_at);

/* An empty record; NULL on ENOMEM. */
struct rec *rec_new(void);
void rec_free(struct rec *rec);
/* Back to empty: no alarms, no request answered. */
void rec_clear(struct rec *rec);

/*
 * Replace rec with the decoded bytes: 0, or -1 with *why naming the first
 * check that failed.  "out of memory" is the only failure that is not
 * corruption, and errno tells it apart (ENOMEM).
 */
int rec_decode(struct rec *rec, const void *data, size_t len, const char **why);
/* Encode the alarms keep keeps into out (replaced); *kept counts them.  0, or -1 on ENOMEM. */
int rec_encode(const struct rec *rec, const struct rec_keep *keep, struct buf *out,
    struct rec_counts *kept);

void rec_count(const struct rec *rec, struct rec_counts *c);

/* One alarm of a record, in its stored form; id valid until the record changes. */
struct rec_item {
	uint8_t kind;
	const uint8_t *id;
	size_t id_len;
	struct alarm_state st;
};
size_t rec_size(const struct rec *rec);
void rec_at(const struct rec *rec, size_t i, struct rec_item *out);
/* Add an alarm the record does not hold (the store's walk gives them in order): 0, or -1 on ENOMEM. */
int rec_add(struct rec *rec, const struct rec_item *it);
/* Would encoding with keep drop an alarm? */
bool rec_any_dropped(const struct rec *rec, const struct rec_keep *keep);
/* How many alarms (tombstones included) encoding with keep would keep. */
size_t rec_count_kept(const struct rec *rec, const struct rec_keep *keep);
/* Does the record hold this alarm (as a live alarm or a tombstone)? */
bool rec_holds(const struct rec *rec, const char *alarm, size_t alarm_len);

/*
 * Apply one status change to the named alarm by the SPEC's rules
 * (state_apply), with *res set to the outcome: 1 when the update was
 * accepted and the record changed, 0 when it was ignored, -1 on ENOMEM.
 */
int rec_apply(struct rec *rec, const char *alarm, size_t alarm_len, enum alarm_status status,
    const struct rfc3339_time *changed_at, enum state_result *res);

/*
 * Pass each pending alarm (state_pending) to fn, with its original ID
 * text, in stored order, and mark it delivered; *taken counts them.  -1
 * when fn fails or on ENOMEM; the alarms already passed stay marked.
 */
int rec_take_pending(struct rec *rec, rec_alarm_fn fn, void *arg, size_t *taken);

/* Stream sequence of the last digest request answered; 0: none. */
uint64_t rec_last_request(const struct rec *rec);
void rec_set_last_request(struct rec *rec, uint64_t seq);

/*
 * Merge every alarm of src into dst (state_merge); *changed says whether
 * dst differs now.  Idempotent, so an interrupted move can be redone.
 * 0, or -1 on ENOMEM.
 */
int rec_merge(struct rec *dst, const struct rec *src, bool *changed);

#endif
