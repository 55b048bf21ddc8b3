/*
 * lockfile: exclusive advisory locks (flock) that live as long as the
 * process.  The supervisor holds STATE_DIR/supervisor.lock so two services
 * never share a state directory; each worker holds worker-N/worker.lock so
 * a replacement never writes beside a predecessor that is still finishing
 * (after a supervisor crash, old workers drain for a moment on their own).
 */
#ifndef LOCKFILE_H
#define LOCKFILE_H

/*
 * Take the lock, waiting up to wait_ms (0: do not wait), and write our pid
 * into the file.  Returns the descriptor to keep open (close-on-exec;
 * closing it releases the lock), or -1 (logged, naming the path and the
 * holder's pid when it is busy).  A symlink at path is refused.
 */
int lockfile_take(const char *path, int wait_ms);

/* The pid the holder wrote into path; 0 if it wrote none (yet) or not a pid. */
long lockfile_holder(const char *path);

#endif
