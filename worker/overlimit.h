/*
 * overlimit: an update the worker refuses because its user already holds
 * max_alarms_per_user alarms (SPEC, malformed input: reason code
 * too_many_alarms).  Only the worker knows what a user holds, so the
 * worker rejects it, the way the intake rejects the rest: a rate-limited
 * log line and a dead-letter copy with the intake's headers
 * (common/deadletter.h), published on the worker's own connection.
 * The frame is still reported durable like any other, so the master acks
 * the original: it is bad input, not data.
 *
 * The UPDATE frame carries the parsed fields, not the original bytes, so
 * the copy is the update rebuilt from them (digest_write_update): the same
 * AlarmID, UserID, Status and instant with its offset, ChangedAt written
 * as a digest writes it, unknown fields gone.  Carrying every payload to
 * the workers to keep the rare refused one byte for byte was not worth it.
 */
#ifndef OVERLIMIT_H
#define OVERLIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/alarm.h"
#include "../common/config.h"

struct overlimit;

/* Copies go to c's dead-letter subject, through its stream when there is one.  NULL: logged. */
struct overlimit *overlimit_new(natsConnection *nc, const struct config *c);
/* Waits a little for copies the stream has not confirmed; before nc goes. */
void overlimit_free(struct overlimit *o);
/* Reload: copies from now on go to subject.  0, or -1 (logged). */
int overlimit_set_subject(struct overlimit *o, const char *subject);

/*
 * Log (at most 10 lines a second) and dead-letter one refused update on
 * status_subject, the subject it arrived on.  Never blocks on NATS: a
 * copy that cannot be kept is counted and logged by deadletter.
 */
void overlimit_reject(struct overlimit *o, const struct alarm_msg *m, const char *status_subject,
    int64_t max_alarms);

/*
 * Make the copies handed over so far reach the server before the batch
 * is reported durable (and so the originals acked), when connected.  A
 * failure is logged, not returned: a copy never holds back the batch.
 */
void overlimit_flush(struct overlimit *o);

/* Copies not kept (deadletter's failed count). */
uint64_t overlimit_copies_failed(struct overlimit *o);

#endif
