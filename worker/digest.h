/*
 * digest: the alarms of one AlarmDigest, their order, and the JSON.
 * The JSON writer is hand-rolled (json-c's object building is ~6x slower
 * for this fixed shape); it escapes strings per RFC 8259.
 */
#ifndef DIGEST_H
#define DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/alarm.h"
#include "../common/buf.h"
#include "../common/rfc3339.h"

struct digest_item {
	size_t alarm_off;          /* offset of the AlarmID in digest.ids */
	size_t alarm_len;
	enum alarm_status status;  /* WARNING or CRITICAL */
	struct rfc3339_time changed_at;
};

struct store;

/* A reusable container: reset between digests, free once. */
struct digest {
	struct digest_item *items;
	size_t n, cap;
	struct buf ids;            /* AlarmID bytes of all items */
};

void digest_reset(struct digest *d);
void digest_free(struct digest *d);
/* 0, or -1 on ENOMEM. */
int digest_add(struct digest *d, const char *alarm, size_t alarm_len,
    enum alarm_status status, const struct rfc3339_time *changed_at);
/* Oldest LatestChangedAt first (by instant); ties by AlarmID bytewise. */
void digest_sort(struct digest *d);
/*
 * Fill d (reset first) with the user's pending alarms, sorted, and mark
 * them delivered in the store's open transaction; a replayed request
 * leaves d empty (see store_take_pending).
 */
int digest_take(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    struct digest *d, bool *replayed);
/*
 * Append {"UserID":...,"ActiveAlarms":[...]} to out, in the current item
 * order.  0, or -1 on ENOMEM.
 */
int digest_write_json(const struct digest *d, const char *user, size_t user_len, struct buf *out);

/*
 * The same JSON in pieces, for cutting one digest into several messages
 * (parts.h): the head {"UserID":...,"ActiveAlarms":[, item i's object,
 * then DIGEST_JSON_TAIL, with ',' between items.  Each appends to out and
 * returns 0, or -1 on ENOMEM with out as it was.
 */
#define DIGEST_JSON_TAIL "]}"
int digest_write_head(const char *user, size_t user_len, struct buf *out);
int digest_write_item(const struct digest *d, size_t i, struct buf *out);

/*
 * Append an AlarmStatusChanged rebuilt from its fields,
 * {"AlarmID":...,"UserID":...,"Status":...,"ChangedAt":...}, strings
 * escaped and ChangedAt written as in a digest: the dead-letter copy of an
 * update only the worker can refuse (it never sees the original bytes).
 * 0, or -1 on ENOMEM with out as it was.
 */
int digest_write_update(const struct alarm_msg *m, struct buf *out);

#endif
