#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../common/clock.h"
#include "../common/frame.h"
#include "../common/log.h"
#include "../common/title.h"
#include "fault.h"
#include "publish.h"

/* The paused batch is redone after 1 s at least, doubling to PUBLISH_RETRY_MAX_MS. */
#define FAULT_RETRY_MIN_MS 1000
/* A store found corrupt: how often to look whether the operator moved it aside. */
#define FAULT_CORRUPT_POLL_MS 2000
/* Parked, frames are read and dropped in the worker's chunks. */
#define FAULT_READ_CHUNK (256u << 10)

/*
 * The store refused the batch for a reason that passes (a full disk,
 * the map at map_size_max): the batch's frames are held, nothing is
 * reported durable, and the batch is redone after a backoff.
 */
struct fault {
	enum db_fault fault;      /* DB_FAULT_NONE while not paused */
	uint64_t attempts;
	int64_t since_ms, logged_ms;
};

struct fault *
fault_new(void)
{
	struct fault *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		log_error("allocating the store fault state");
	else
		f->fault = DB_FAULT_NONE;
	return f;
}

void
fault_free(struct fault *f)
{
	free(f);
}

/* The store failing is not something a retry fixes: exit, be restarted, replay. */
void
fault_fatal(const char *what)
{
	log_errorx("state store failed while %s; exiting so the supervisor restarts this worker "
	    "and replays its unfinished messages", what);
	exit(1);
}

/*
 * A write of the batch failed.  A full map or disk passes (a bigger map,
 * space freed): the caller undoes the batch and holds it.  Anything else
 * is not for a retry to fix: exit.
 */
void
fault_pause(struct fault *ft, struct db *db, const char *what)
{
	enum db_fault f = db_fault(db);

	if (f != DB_FAULT_MAP_FULL && f != DB_FAULT_DISK_FULL)
		fault_fatal(what);
	if (ft->fault == DB_FAULT_NONE) {
		ft->since_ms = clock_mono_ms();
		ft->attempts = 0;
		ft->logged_ms = 0;
	}
	ft->fault = f;
	ft->attempts++;
}

/*
 * After fault_pause and the rewind (no transaction is open): grow
 * a full map and redo the batch at once, else pause, saying why now and
 * then.  A map at map_size_max stays full until a reload raises it.
 */
bool
fault_recover(struct fault *ft, struct db *db, size_t frames)
{
	int64_t now = clock_mono_ms();
	int rc;

	if (ft->fault == DB_FAULT_MAP_FULL) {
		if ((rc = db_grow(db)) == 1)
			return true;
		if (rc == -1 && db_fault(db) != DB_FAULT_DISK_FULL)
			fault_fatal("growing the LMDB map");
		if (rc == -1)
			ft->fault = DB_FAULT_DISK_FULL;
	}
	if (ft->logged_ms != 0 && now - ft->logged_ms < PUBLISH_RETRY_LOG_MS)
		return false;
	ft->logged_ms = now;
	if (ft->fault == DB_FAULT_DISK_FULL)
		log_errorx("disk full: %s: this slot is paused: its batch of %zu frames is held, not "
		    "reported durable, and redone every %d s at most until space is freed (paused for "
		    "%.1f s, %llu attempts)", db_dir(db), frames, PUBLISH_RETRY_MAX_MS / 1000,
		    (now - ft->since_ms) / 1000.0, (unsigned long long)ft->attempts);
	else
		log_errorx("map full: %s: the LMDB map is at [worker] map_size_max (%lld bytes); this "
		    "slot is paused: its batch of %zu frames is held, not reported durable, and redone "
		    "every %d s at most; raise map_size_max and send SIGHUP (paused for %.1f s, %llu "
		    "attempts)", db_dir(db), (long long)db_map_size(db), frames,
		    PUBLISH_RETRY_MAX_MS / 1000, (now - ft->since_ms) / 1000.0,
		    (unsigned long long)ft->attempts);
	return false;
}

/* A batch committed: the store takes writes again. */
void
fault_resume(struct fault *ft, struct db *db)
{
	if (ft->fault != DB_FAULT_NONE)
		log_info("%s: %s; this slot resumed after %.1f s paused, %llu attempts; the held "
		    "batch is committed", db_dir(db),
		    ft->fault == DB_FAULT_DISK_FULL ? "disk space is back" : "the map has room again",
		    (clock_mono_ms() - ft->since_ms) / 1000.0,
		    (unsigned long long)ft->attempts);
	*ft = (struct fault){ DB_FAULT_NONE, 0, 0, 0 };
}

enum db_fault
fault_kind(const struct fault *ft)
{
	return ft->fault;
}

int
fault_retry_min_ms(const struct fault *ft)
{
	return ft->fault != DB_FAULT_NONE ? FAULT_RETRY_MIN_MS : 0;
}

/* Parked on a corrupt store: say so to the supervisor now and then, with empty counters. */
static void
fault_report_parked(struct chan *ch)
{
	static const struct frame_stats fs;  /* all zero */

	if (frame_put_stats(chan_out(ch), &fs) == -1 || chan_flush_wait(ch) == -1)
		log_error("sending STATS to the supervisor");
}

/*
 * The store is corrupt: no restart fixes that, and a crash loop would only
 * repeat the news.  Stay parked instead: log once, read and drop what the
 * supervisor sends (it keeps every frame until a worker reports it
 * durable, so a later worker gets them all again), and exit as soon as
 * data.mdb is moved away, so the supervisor starts a worker on a fresh
 * store.  STOP, EOF and SIGTERM end it like any worker.
 */
int
fault_park(struct chan *ch, uint32_t slot, uint32_t nslots, const char *dir, const char *why,
    volatile sig_atomic_t *terminate)
{
	char path[PATH_MAX + 16];
	struct stat bad, now;
	int64_t next = 0;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &bad) == -1) {
		log_error("stat %s", path);
		return -1;
	}
	log_errorx("%s. This slot's users get no digests until the store is replaced; their messages "
	    "wait unacked. To recover, move the directory aside (mv %s %s.corrupt): this worker "
	    "notices within %d s and starts on an empty store, which the stream then refills (see "
	    "\"Limits and failure modes\" in README.md for what is rebuilt and how)", why, dir, dir,
	    FAULT_CORRUPT_POLL_MS / 1000);
	title_set("worker %u/%u STORE-CORRUPT %s", slot, nslots, path);
	while (!*terminate) {
		struct pollfd pfd = { chan_fd(ch), POLLIN, 0 };
		struct frame f;
		const char *err;
		int rc;

		if (poll(&pfd, 1, FAULT_CORRUPT_POLL_MS) == -1 && errno != EINTR)
			log_error("poll");
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if ((rc = chan_fill(ch, FAULT_READ_CHUNK)) == CHAN_EOF || rc == -1)
				return 0;
			while ((rc = chan_next(ch, &f, &err)) == 1)
				if (f.type == FRAME_STOP)
					return 0;
			if (rc == -1) {
				log_errorx("protocol error from the supervisor: %s; exiting", err);
				return -1;
			}
			chan_consume(ch);
		}
		if (clock_mono_ms() < next)
			continue;
		next = clock_mono_ms() + FAULT_CORRUPT_POLL_MS;
		fault_report_parked(ch);
		if (stat(path, &now) == -1 || now.st_ino != bad.st_ino || now.st_dev != bad.st_dev) {
			log_warnx("%s was moved away; exiting so that the supervisor starts this slot "
			    "afresh on an empty store", path);
			exit(1);
		}
	}
	return 0;
}

