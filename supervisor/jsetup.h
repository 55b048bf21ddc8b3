/*
 * jsetup: the JetStream objects intake reads from and writes to.
 *
 * One stream holds both input subjects, so the service sees one ordered
 * sequence; it is created if missing and checked if present.  An optional
 * dead-letter stream keeps rejected messages.  The limits the
 * configuration gives both streams (MaxAge, MaxBytes, MaxMsgSize) are set
 * at creation and brought up to date on an existing stream at start.  One
 * durable push consumer reads the input stream; it is (re)created
 * explicitly, never by a subscribe call, which would delete it on
 * unsubscribe.
 */
#ifndef JSETUP_H
#define JSETUP_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "../common/config.h"

struct jsetup;

/*
 * A JetStream context on nc (which must outlive it), with the input
 * stream and the dead-letter stream created or checked.  NULL on error
 * (logged).
 */
struct jsetup *jsetup_open(natsConnection *nc, const struct config *c);
void jsetup_close(struct jsetup *js);

/*
 * Recreate the consumer starting just after its ack floor, so every
 * unacked message is delivered again now, in stream order, instead of
 * after ack_wait behind newer ones.  The floor survives any number of
 * resets and restarts, including one cut short between deleting the old
 * consumer and creating the new one; only a stream whose history is
 * unacked from its start is read from its start.  0, or -1 (logged).
 */
int jsetup_reset_consumer(struct jsetup *js);

/* A dead-letter stream keeps the copies (configured, and created or found at open). */
bool jsetup_dead_letter_stream(const struct jsetup *js);
/*
 * The largest copy, headers included, the dead-letter stream stores (its
 * MaxMsgSize as the server reports it), or -1 when it sets no limit of
 * its own or there is no such stream.
 */
int64_t jsetup_dead_letter_max_msg(const struct jsetup *js);

/*
 * The consumer's lag, from the server: messages not yet delivered, and
 * delivered but not acked.  A request to the server (up to the connection's
 * timeout): call it from a thread that may wait, never the main loop.
 * Safe beside the main thread's use of js (cnats locks the context).
 * 0, or -1 (logged at debug: the poller says it once).
 */
int jsetup_consumer_lag(struct jsetup *js, uint64_t *pending, uint64_t *ack_pending);

/* The input stream's creation time (ns): it tells this stream from an earlier one of its name. 0, or -1 (logged). */
int jsetup_stream_created(struct jsetup *js, int64_t *created);

/* ---- cluster mode (docs/DESIGN.md, issue 14) ---- */

/*
 * The partition stream ([cluster] partition_stream, subjects
 * "<partition_subject>.>"), created if missing, checked if present.  It
 * is the changelog a partition's state is rebuilt from, so it keeps
 * everything: no age or byte limit; copies carry the input's
 * Nats-Msg-Id, deduplicated over a 2-minute window.  0, or -1 (logged).
 */
int jsetup_partition_stream(struct jsetup *js, const struct config *c);

/*
 * Consumers that follow one another under versioned names
 * ("<consumer>_p3_<epoch>_<gen>"): a stale owner's late acks hit a
 * deleted consumer.  The floor is the highest ack floor over every
 * consumer of stream whose name starts with prefix (0 when there is
 * none), each read by the rule jsetup_reset_consumer uses.  0, or -1
 * (logged).
 */
int jsetup_consumer_floor(struct jsetup *js, const char *stream, const char *prefix, uint64_t *floor);
/*
 * Create the push consumer `name` (AckAll, ack_wait and max_ack_pending
 * from the configuration, filter NULL for none, delivering to deliver
 * from start_seq, or from the stream's start when start_seq <= 1), then
 * delete every other consumer whose name starts with prefix, except one
 * of a newer lease epoch (names are "<prefix><epoch>_<gen>").  In that
 * order, so a crash in between leaves an extra consumer, never a lost
 * floor.  A consumer that cannot be deleted is logged and left (the next
 * replace tries again).  floor (>= start_seq: a replay) is carried in the
 * new consumer's description, and jsetup_consumer_floor counts it.  0, or
 * -1 (logged) when `name` was not created.
 */
int jsetup_consumer_replace(struct jsetup *js, const char *stream, const char *prefix,
    const char *name, const char *filter, const char *deliver, uint64_t start_seq, uint64_t floor);

#endif
