/*
 * validate: turn a NATS payload into a struct alarm_msg, enforcing every
 * "malformed input" rule of the SPEC, or say exactly why not.
 */
#ifndef VALIDATE_H
#define VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "alarm.h"

/*
 * Why a payload was rejected; each has a counter in the supervisor.  In
 * the order the checks run: the first that fails decides.
 */
enum msg_error {
	MSG_OK = 0,
	MSG_E_SIZE,         /* payload over max_message_bytes */
	MSG_E_UTF8,         /* not valid UTF-8 */
	MSG_E_JSON,         /* not parseable JSON, trailing bytes, or empty */
	MSG_E_NOT_OBJECT,   /* JSON, but not an object */
	MSG_E_SURROGATE,    /* a string holds an escaped lone UTF-16 surrogate */
	MSG_E_DUPLICATE,    /* a field the message's kind reads appears twice */
	MSG_E_MISSING,      /* required field absent */
	MSG_E_TYPE,         /* required field not a string */
	MSG_E_EMPTY,        /* required field is "" */
	MSG_E_ID_LENGTH,    /* UserID or AlarmID over max_id_bytes */
	MSG_E_STATUS,       /* Status not CLEARED/WARNING/CRITICAL */
	MSG_E_TIMESTAMP,    /* ChangedAt not the SPEC's RFC 3339 form */
	MSG_E_FUTURE,       /* ChangedAt more than max_future past now */
	MSG_E_COUNT
};

/* Short stable name for logs, counters and the dead-letter header: "bad_json", ... */
const char *msg_error_name(enum msg_error e);

/* Reuses one json-c tokener across calls; use from one thread at a time. */
struct validator;

struct validator *validator_new(void);
void validator_free(struct validator *v);

/*
 * Validate `len` bytes as a message of `kind` (lim NULL: the defaults).
 * `now_ms` is the service's wall clock in ms (clock_wall_ms()): ChangedAt
 * may lie at most lim->max_future_ms past it.  It is an argument, not read
 * here, so the validator stays a pure function that tests can pin down.
 * On MSG_OK, *out is filled and its strings stay valid until the next call
 * on `v`; on error *out is untouched and validator_detail(v) gives a human
 * sentence naming the field and the problem, e.g.
 * "field ChangedAt: \"2021-13-01T00:00:00Z\" is not a valid RFC 3339 timestamp".
 */
enum msg_error validate_message(struct validator *v, enum msg_kind kind, const void *data,
    size_t len, const struct msg_limits *lim, int64_t now_ms, struct alarm_msg *out);
const char *validator_detail(const struct validator *v);

#endif
