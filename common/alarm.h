/*
 * alarm: the service's message model, what every role shares: the two
 * kinds of input, a message's fields, the statuses and their order, and
 * the limits a message must keep.
 *
 * Turning a payload into this model is common/validate's job; carrying
 * it to a worker is common/frame's.
 */
#ifndef ALARM_H
#define ALARM_H

#include <stddef.h>
#include <stdint.h>

#include "rfc3339.h"

/* Ordered by severity: a larger value is more severe (SPEC rule 3). */
enum alarm_status { STATUS_CLEARED = 0, STATUS_WARNING = 1, STATUS_CRITICAL = 2 };

enum msg_kind { MSG_STATUS_CHANGED = 1, MSG_DIGEST_REQUEST = 2 };

/*
 * A message.  String fields point into memory owned by whoever produced
 * the struct (the validator until its next call, or a decoded frame) and
 * are NOT NUL-terminated; use the lengths.
 */
struct alarm_msg {
	enum msg_kind kind;
	const char *user;
	size_t user_len;
	const char *alarm;     /* MSG_STATUS_CHANGED only */
	size_t alarm_len;
	enum alarm_status status;
	struct rfc3339_time changed_at;
};

#define MSG_DEFAULT_MAX_MESSAGE_BYTES 65536
#define MSG_DEFAULT_MAX_ID_BYTES 256
/* How far past the service's clock a ChangedAt may lie. */
#define MSG_DEFAULT_MAX_FUTURE_MS (INT64_C(24) * 3600 * 1000)

struct msg_limits {
	size_t max_message_bytes;  /* default MSG_DEFAULT_MAX_MESSAGE_BYTES */
	size_t max_id_bytes;       /* default MSG_DEFAULT_MAX_ID_BYTES */
	int64_t max_future_ms;     /* >= 0; default MSG_DEFAULT_MAX_FUTURE_MS */
};

/* "CLEARED", "WARNING", "CRITICAL" */
const char *alarm_status_name(enum alarm_status s);

#endif
