/*
 * resend: publish again the digests a NATS server may have read but not
 * passed on when it went away.
 *
 * Digests are core NATS publishes.  The commit's flush proves that the
 * server this worker is connected to read them, not that it passed them
 * to the subscribers' servers, which it does a moment later.  A server
 * that exits or restarts in that moment takes them with it, and their
 * requests, answered and acked, never come again.  So the messages whose
 * flush returned in the last RESEND_WINDOW_MS before the connection was
 * last seen healthy are kept, and once cnats has reconnected they are
 * published again on the new connection: at least once, as after a crash
 * (docs/PROTOCOL.md), each with its Nats-Msg-Id, so that a stream on the
 * subject drops the repeat.
 *
 * A server that hangs instead of exiting is noticed by pings only
 * (minutes), and what it read in its last moments is not covered.
 */
#ifndef RESEND_H
#define RESEND_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

/* How long after its flush a message may still be with a server that dies. */
#define RESEND_WINDOW_MS 2000
/* Past this many payload bytes held, the oldest messages are let go (and counted). */
#define RESEND_MAX_BYTES ((size_t)32 << 20)

struct resend;

/* Messages go out again on nc (borrowed).  NULL: logged. */
struct resend *resend_new(natsConnection *nc);
void resend_free(struct resend *r);

/* A message of the open batch, handed to NATS: kept (owned) from now on. */
void resend_hold(struct resend *r, natsMsg *m);
/* The open batch is undone and will publish its digests again: forget them. */
void resend_drop_open(struct resend *r);
/* A flush returned: what was handed to NATS before it reached the server at now_ms. */
void resend_flushed(struct resend *r, int64_t now_ms);

/*
 * Call often (each turn of the worker's loop, and before each flush):
 * true when cnats reconnected since the last call.  Anything handed to
 * NATS before then is in doubt, and the window is due to go out again.
 */
bool resend_reconnected(struct resend *r, int64_t now_ms);
/*
 * After a reconnect: publish the window again (a flush must follow to
 * stamp it), or, when !allowed (cluster mode past the lease fence: the
 * partitions may have another owner by now), say so and let it be.  The
 * messages published; 0 when no reconnect is due.
 */
size_t resend_publish(struct resend *r, bool allowed);

/* Messages published again so far. */
uint64_t resend_count(const struct resend *r);

#endif
