/*
 * outq: one worker's queue of frames, from routing until the worker has
 * reported them durable.
 *
 * A frame is appended once and then moves through two states: unsent
 * (still to be written to the socket) and sent (written, not yet reported
 * done).  When a worker dies, outq_rewind() turns every sent frame back
 * into unsent, so its replacement gets exactly the frames the old one had
 * not finished, in their original order, followed by the newer ones.
 * The size bound is what turns a slow worker into backpressure on intake
 * (or, in the pool, into a spill: see spill.h).
 *
 * Each entry remembers when it was queued, so the pool can tell how long
 * a worker has kept its oldest message waiting.
 */
#ifndef OUTQ_H
#define OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/chan.h"

struct outq;

struct outq *outq_new(size_t max_bytes);
/* drop(ref) is called for every entry still held (e.g. to release a NATS message). */
void outq_free(struct outq *q, void (*drop)(void *ref));

/* Room for `len` more bytes?  An empty queue always has room, so one big frame cannot wedge it. */
bool outq_has_room(const struct outq *q, size_t len);

/*
 * Appending a frame: encode it into outq_tail(q), then outq_seal() records
 * everything appended since the previous seal as one entry, queued at
 * at_ms (monotonic).  Ids must increase from one entry to the next.
 */
struct buf *outq_tail(struct outq *q);
int outq_seal(struct outq *q, uint64_t id, void *ref, int64_t at_ms);

/* Write what the channel takes of the unsent bytes (they stay queued until retired).  0, or -1 with errno. */
int outq_send(struct outq *q, struct chan *c);
size_t outq_unsent(const struct outq *q);
/*
 * Bytes still to write of a frame written in part (0: the bytes written end
 * where a frame does), and writing those only: then a frame composed
 * elsewhere may go out between two of the queue's.  0, or -1 with errno.
 */
size_t outq_partial(const struct outq *q);
int outq_send_partial(struct outq *q, struct chan *c);

/* Retire, in order, every entry with id <= upto; done(ref, arg) for each. */
size_t outq_retire(struct outq *q, uint64_t upto, void (*done)(void *ref, void *arg), void *arg);

void outq_rewind(struct outq *q);
size_t outq_count(const struct outq *q);
void outq_set_max(struct outq *q, size_t max_bytes);

/* When the oldest entry was queued; -1 when the queue is empty. */
int64_t outq_oldest_ms(const struct outq *q);
/* When the first entry with id > after that holds a ref was queued; -1 if there is none. */
int64_t outq_first_ref_ms(const struct outq *q, uint64_t after);
/*
 * Visit, in order, every entry with after < id <= upto: fn gets its frame
 * and a pointer to its ref (it may take the ref by setting it to NULL).
 * Stops at the first nonzero return of fn and returns it; else 0.
 */
int outq_walk(struct outq *q, uint64_t after, uint64_t upto,
    int (*fn)(uint64_t id, const uint8_t *frame, size_t len, void **ref, void *arg), void *arg);

#endif
