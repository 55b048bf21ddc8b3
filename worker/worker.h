/*
 * worker: one worker process.  Reads frames from its supervisor, applies
 * them to its store, publishes digests on its own NATS connection, and
 * reports which frames are durable.
 *
 * Ordering of effects for a batch of frames, and why:
 *   apply all frames in one LMDB write transaction
 *   -> flush published digests to the NATS server
 *   -> commit (fsync) the transaction
 *   -> report DONE up to the batch's last frame id.
 * A crash before the commit replays the batch: updates are idempotent and
 * a digest may go out twice (allowed).  A digest is never marked delivered
 * before the server has it, so it is never lost.
 */
#ifndef WORKER_H
#define WORKER_H

/* Runs the worker on FRAME_CHANNEL_FD; returns the process exit status. */
int worker_main(void);

#endif
