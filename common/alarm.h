/*
 * alarm: the service's message model and the parser that turns a NATS
 * payload into it, enforcing every "malformed input" rule of the SPEC.
 */
#ifndef ALARM_H
#define ALARM_H

#include <stddef.h>
#include <stdint.h>

#include "rfc3339.h"

/* Ordered by severity: a larger value is more severe (SPEC rule 3). */
enum alarm_status { STATUS_CLEARED = 0, STATUS_WARNING = 1, STATUS_CRITICAL = 2 };

enum msg_kind { MSG_STATUS_CHANGED = 1, MSG_DIGEST_REQUEST = 2 };

/* Why a payload was rejected; each has a counter in the supervisor. */
enum msg_error {
	MSG_OK = 0,
	MSG_E_SIZE,         /* payload over max_message_bytes */
	MSG_E_UTF8,         /* not valid UTF-8 */
	MSG_E_JSON,         /* not parseable JSON, trailing bytes, or empty */
	MSG_E_NOT_OBJECT,   /* JSON, but not an object */
	MSG_E_MISSING,      /* required field absent */
	MSG_E_TYPE,         /* required field not a string */
	MSG_E_EMPTY,        /* required field is "" */
	MSG_E_ID_LENGTH,    /* UserID or AlarmID over max_id_bytes */
	MSG_E_STATUS,       /* Status not CLEARED/WARNING/CRITICAL */
	MSG_E_TIMESTAMP,    /* ChangedAt not the SPEC's RFC 3339 form */
	MSG_E_COUNT
};

/* Short stable name for logs, counters and the dead-letter header: "bad_json", ... */
const char *msg_error_name(enum msg_error e);

/*
 * A parsed message.  String fields point into memory owned by whoever
 * produced the struct (the parser until its next call, or a decoded frame)
 * and are NOT NUL-terminated; use the lengths.
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

struct msg_limits {
	size_t max_message_bytes;  /* default 65536 */
	size_t max_id_bytes;       /* default 256 */
};

/* Reuses one json-c tokener across calls; use from one thread at a time. */
struct msg_parser;

struct msg_parser *msg_parser_new(void);
void msg_parser_free(struct msg_parser *p);

/*
 * Parse and validate `len` bytes as a message of `kind`.  On MSG_OK, *out
 * is filled and its strings stay valid until the next call on `p`.  On
 * error, msg_parser_detail(p) gives a human sentence naming the field and
 * the problem, e.g. "field ChangedAt: \"2021-13-01T00:00:00Z\" is not a valid RFC 3339 timestamp".
 */
enum msg_error msg_parse(struct msg_parser *p, enum msg_kind kind, const void *data,
    size_t len, const struct msg_limits *lim, struct alarm_msg *out);
const char *msg_parser_detail(const struct msg_parser *p);

/* "CLEARED", "WARNING", "CRITICAL" */
const char *alarm_status_name(enum alarm_status s);

#endif
