/*
 * model: an independent, in-memory reading of docs/PROTOCOL.md's "State" and
 * "Digest" sections, used as the oracle of the integration and fault tests
 * and of the benchmark.  It is written from the SPEC text only (not from
 * the service's code), and has its own RFC 3339 parser/printer so a bug
 * shared with common/rfc3339.c cannot hide.
 *
 * Feed it every message in the order the service receives them (the order
 * of one publisher on one connection); each digest request records the
 * digest the service must publish, so a run is checked by comparing, per
 * user, the list of digests received with the list recorded here.
 *
 * Digests are compared as canonical strings (model_canon): a JSON array of
 * [AlarmID, Status, LatestChangedAt] triples in digest order.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- timestamps ---- */

struct model_ts {
	int64_t sec;         /* the instant: seconds since the epoch, UTC */
	int32_t nsec;
	int32_t off_min;     /* offset it arrived with */
	char canon[40];      /* as a digest must print it (Go's RFC3339Nano) */
};

/* Exactly the SPEC's form; 0, or -1 when `s` (len bytes) is not valid. */
int model_ts_parse(const char *s, size_t len, struct model_ts *out);
/* Instants only: <0, 0, >0. */
int model_ts_cmp(const struct model_ts *a, const struct model_ts *b);
/*
 * Input-side printer for generated traffic: the instant (sec, nsec) as
 * wall time at off_min, with exactly `digits` fraction digits (trailing
 * zeros kept; nsec is truncated to them), zero offset as "Z" or, when
 * plus_zero, "+00:00".  cap >= 40.
 */
void model_ts_print(int64_t sec, int32_t nsec, int off_min, int digits, bool plus_zero,
    char *buf, size_t cap);

/* ---- statuses ---- */

enum model_status { MS_CLEARED = 0, MS_WARNING = 1, MS_CRITICAL = 2, MS_INVALID = -1 };

enum model_status model_status_parse(const char *s);
const char *model_status_name(enum model_status s);

/* ---- canonical digests ---- */

struct model_entry {
	const char *alarm;
	size_t alarm_len;
	const char *status;
	const char *ts;
};

/* malloc'd canonical string of n entries in the given order; NULL on ENOMEM. */
char *model_canon(const struct model_entry *e, size_t n);

/* ---- the model ---- */

enum model_result {
	MR_NEW,          /* first record for this alarm */
	MR_CHANGED,      /* accepted, status changed */
	MR_REFRESHED,    /* accepted, newer instant, same status */
	MR_STALE,        /* older instant: ignored */
	MR_DUPLICATE,    /* same instant, same status: ignored */
	MR_LESS_SEVERE,  /* same instant, less severe: ignored */
	MR_INVALID,      /* bad status or timestamp (the service dead-letters it) */
	MR_NOMEM
};

struct model;

struct model *model_new(void);
void model_free(struct model *m);

/* Thread-safe (one lock); `ts` NUL-terminated. */
enum model_result model_update(struct model *m, const char *user, const char *alarm,
    enum model_status status, const char *ts);
/*
 * A SendAlarmDigest for user: returns 1 and records the expected digest
 * (and, if canon != NULL, a malloc'd copy), 0 when nothing qualifies, -1 on
 * ENOMEM.
 */
int model_request(struct model *m, const char *user, char **canon);

/* Expected digests recorded for a user, oldest first. */
size_t model_expected_count(struct model *m, const char *user);
/* The i-th expected canon (valid until model_free), NULL past the end. */
const char *model_expected(struct model *m, const char *user, size_t i);
/* The same, and (ms != NULL) when its request was modelled (CLOCK_MONOTONIC ms, as harness_now_ms). */
const char *model_expected_at(struct model *m, const char *user, size_t i, int64_t *ms);
size_t model_expected_total(struct model *m);
/*
 * Forget every digest recorded so far, keeping the state: for a state
 * seeded straight into the stores, whose digests the service never sends.
 */
void model_forget_expected(struct model *m);

/*
 * Each alarm the model holds for user, CLEARED ones included, in the order
 * first seen: ts is its canonical ChangedAt, delivered whether a digest
 * sent it since its status last changed.  A non-zero return from fn stops
 * and is returned; 0 (also for an unknown user).
 */
typedef int (*model_alarm_fn)(void *arg, const char *alarm, enum model_status status,
    const char *ts, bool delivered);
int model_alarms(struct model *m, const char *user, model_alarm_fn fn, void *arg);

/* Users seen (updates or requests), in first-seen order; valid until model_free. */
size_t model_user_count(struct model *m);
const char *model_user(struct model *m, size_t i);

#endif
