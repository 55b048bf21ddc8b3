/*
 * chan: one end of the supervisor <-> worker socketpair, buffered both
 * ways; the only code that reads or writes a channel descriptor (like
 * OpenBSD's imsgbuf_read / imsg_get / imsgbuf_write).
 *
 * Reading: chan_fill() reads what the socket holds into the input buffer;
 * chan_next() takes the complete frames from it one after another, each
 * header checked (frame_next) before the reader waits for its body.  A
 * frame taken stays in the buffer, pending, until chan_consume() drops
 * every pending frame; chan_rewind() instead makes chan_next() start over
 * at the first pending one.  The worker takes a whole batch that way and
 * redoes it, without copying a frame, if the batch has to be rolled back.
 *
 * Writing: compose frames into chan_out() with the frame encoders, then
 * chan_flush() writes what the socket takes and keeps the rest.  Bytes
 * the caller must keep itself (outq holds frames until the worker reports
 * them durable) go out with chan_send(), always after the composed ones.
 *
 * The descriptor is non-blocking from chan_new() on and closed by chan_free().
 */
#ifndef CHAN_H
#define CHAN_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "frame.h"

struct chan;

/* Take over fd (made non-blocking).  NULL with errno on failure; fd is then left open. */
struct chan *chan_new(int fd);
/* Closes the descriptor; anything still queued is dropped. */
void chan_free(struct chan *c);
int chan_fd(const struct chan *c);

/* chan_fill() results (or -1 on a read error, with errno). */
#define CHAN_AGAIN 0   /* the socket is empty for now */
#define CHAN_MORE  1   /* chunk bytes wait to be taken: take frames, then read again */
#define CHAN_EOF   2   /* the peer closed its end (or reset it); what came before is buffered */

/*
 * Read until the socket is empty, the peer closes it, or at least `chunk`
 * bytes wait after the pending frames (each read has room for `chunk`
 * bytes, and one read always happens).  The pointers of frames taken
 * before are invalid afterwards.
 */
int chan_fill(struct chan *c, size_t chunk);
/*
 * Take the next complete frame after the pending ones: 1 with *f pointing
 * into the buffer, 0 if more bytes are needed, -1 on a protocol error
 * (*err: a static string; the channel cannot be trusted any more).
 */
int chan_next(struct chan *c, struct frame *f, const char **err);
/* Drop the pending frames. */
void chan_consume(struct chan *c);
/* Forget that the pending frames were taken: chan_next() returns them again. */
void chan_rewind(struct chan *c);
/* Bytes of pending frames; bytes read and not yet consumed (pending included). */
size_t chan_pending(const struct chan *c);
size_t chan_buffered(const struct chan *c);

/* The output queue: frame encoders append here. */
struct buf *chan_out(struct chan *c);
/* Bytes composed and not yet written. */
size_t chan_queued(const struct chan *c);
/* Write what the socket takes of the queue, keep the rest.  0, or -1 with errno (EPIPE: peer gone). */
int chan_flush(struct chan *c);
/* Flush, waiting for the peer to read, until the queue is empty.  0, or -1 with errno. */
int chan_flush_wait(struct chan *c);
/*
 * Write p[0..len) after the queue: returns how many bytes went out (0 while
 * the queue is not empty or the socket is full), or -1 with errno.
 */
ssize_t chan_send(struct chan *c, const void *p, size_t len);

#endif
