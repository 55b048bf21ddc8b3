/*
 * jsetup: the JetStream objects intake reads from and writes to.
 *
 * One stream holds both input subjects, so the service sees one ordered
 * sequence; it is created if missing and checked if present.  An optional
 * dead-letter stream keeps rejected messages.  One durable push consumer
 * reads the input stream; it is (re)created explicitly, never by a
 * subscribe call, which would delete it on unsubscribe.
 */
#ifndef JSETUP_H
#define JSETUP_H

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
 * after ack_wait behind newer ones.  0, or -1 (logged).
 */
int jsetup_reset_consumer(struct jsetup *js);

/*
 * The context to publish dead letters with, waiting for the dead-letter
 * stream's ack; NULL when no dead-letter stream is configured.
 */
jsCtx *jsetup_dead_letter_ctx(const struct jsetup *js);

#endif
