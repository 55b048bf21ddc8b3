#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <uuid/uuid.h>

#include "../common/chan.h"
#include "../common/clock.h"
#include "../common/config.h"
#include "../common/db.h"
#include "../common/frame.h"
#include "../common/layout.h"
#include "../common/lockfile.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "../common/quote.h"
#include "../common/store.h"
#include "../common/title.h"
#include "digest.h"
#include "overlimit.h"
#include "parts.h"
#include "worker.h"

#define WORKER_READ_CHUNK (256u << 10)
#define WORKER_FLUSH_TIMEOUT_MS 5000
/* Tombstone sweep: a pass a minute after start, then hourly, 1000 users per idle moment. */
#define WORKER_SWEEP_FIRST_MS (60 * 1000)
#define WORKER_SWEEP_EVERY_MS (3600 * 1000)
#define WORKER_SWEEP_USERS 1000
/* After a transient publish failure the batch is redone after 100 ms, doubling to 5 s. */
#define WORKER_RETRY_MIN_MS 100
#define WORKER_RETRY_MAX_MS 5000
/* While publishing keeps failing, one log line per this many ms. */
#define WORKER_RETRY_LOG_MS 10000
/* A full disk or a map at its maximum: the batch is redone after 1 s, doubling to 5 s. */
#define WORKER_STORE_RETRY_MIN_MS 1000
/* A store found corrupt: how often to look whether the operator moved it aside. */
#define WORKER_CORRUPT_POLL_MS 2000

static volatile sig_atomic_t worker_terminate;

static void
worker_on_sigterm(int sig)
{
	(void)sig;
	worker_terminate = 1;
}

struct worker {
	struct chan *ch;          /* to the supervisor; its pending frames are the open batch */
	int lock_fd;              /* worker.lock, held for life */
	uint32_t slot, nslots;
	struct config cfg;
	struct store *store;
	natsConnection *nc;
	char stream[128];

	bool txn;
	bool published;           /* a digest went out in the open transaction */
	uint64_t last_id;         /* id of the last frame applied in the transaction */
	int64_t txn_start_ms;
	size_t txn_frames;
	bool stop;                /* STOP frame or EOF: finish and exit */

	struct digest digest;
	struct parts *parts;
	/*
	 * Digest requests of the open batch whose digest can never be
	 * published (worker_publish_failed): the batch is applied again
	 * without taking them, so their alarms stay undelivered.  From
	 * refuse_from on (0: unset) every request of the batch is skipped: the
	 * server refuses the subject itself.  Digests of requests up to
	 * handed_upto were handed to NATS before the batch was redone for a
	 * skip; the commit's flush covers them, so they are not sent twice.
	 * All three last until the batch commits.
	 */
	uint64_t *skip;
	size_t nskip, cap_skip;
	uint64_t refuse_from, handed_upto;
	/* Transient publish failures in a row: backoff and a log line now and then. */
	struct worker_retry {
		uint64_t attempts;
		int delay_ms;
		int64_t since_ms, logged_ms, next_ms;   /* monotonic */
	} retry;
	/*
	 * The store refused the batch for a reason that passes (a full disk,
	 * the map at map_size_max): the batch's frames are held, nothing is
	 * reported durable, and the batch is redone after a backoff.
	 */
	struct worker_paused {
		enum db_fault fault;      /* DB_FAULT_NONE while not paused */
		uint64_t attempts;
		int64_t since_ms, logged_ms;
	} paused;
	bool redo_now;            /* the map grew: redo the batch without waiting */
	struct log_limit undeliverable_log;
	/*
	 * Updates refused as over max_alarms_per_user: logged and dead-lettered
	 * once per frame (a redone batch does not copy them again: frame ids
	 * only grow), flushed before the batch is reported durable.
	 */
	struct overlimit *overlimit;
	uint64_t overlimit_upto;
	bool overlimit_unflushed;
	/* Counted when the batch commits: a rewound batch is applied again and must not count twice. */
	struct worker_counts { uint64_t msgs, stale, duplicates, overlimit; } done, batch;
	uint64_t digests, digest_parts, undeliverable, bad_frames;
	int64_t last_report_ms;
	int64_t next_sweep_ms;    /* monotonic; when the next tombstone pass may start */
	int64_t wall_ms;          /* wall clock, read once per chunk of frames: tombstone age only */
	bool sweeping;
};

/* Frames to the supervisor are small and rare: wait until each is written. */
static int
worker_send(struct worker *w, enum frame_type type, uint64_t id)
{
	if (frame_put(chan_out(w->ch), type, id, NULL, 0) == -1 || chan_flush_wait(w->ch) == -1) {
		if (errno == EPIPE || errno == ECONNRESET) {
			/* Everything applied is committed; the next supervisor replays the rest. */
			log_info("supervisor is gone; exiting");
			w->stop = true;
			return 0;
		}
		log_error("sending frame type %d to the supervisor", type);
		return -1;
	}
	return 0;
}

static void
worker_report(struct worker *w)
{
	struct store_stats ss;
	struct frame_stats fs;

	store_get_stats(w->store, &ss);
	fs = (struct frame_stats){ ss.users, ss.alarms, ss.tombstones, ss.bytes, w->done.msgs };
	if (frame_put_stats(chan_out(w->ch), &fs) == -1 || chan_flush_wait(w->ch) == -1)
		log_error("sending STATS to the supervisor");
	title_set("worker %u/%u users=%llu alarms=%llu msgs=%llu digests=%llu stale=%llu dup=%llu "
	    "state=%lluB/alarm undeliverable=%llu overlimit=%llu%s%s", w->slot, w->nslots,
	    (unsigned long long)ss.users,
	    (unsigned long long)ss.alarms, (unsigned long long)w->done.msgs,
	    (unsigned long long)w->digests, (unsigned long long)w->done.stale,
	    (unsigned long long)w->done.duplicates,
	    (unsigned long long)(ss.alarms ? ss.bytes / ss.alarms : 0),
	    (unsigned long long)w->undeliverable, (unsigned long long)w->done.overlimit,
	    w->retry.attempts > 0 ? " NATS-RETRYING" : "",
	    w->paused.fault == DB_FAULT_DISK_FULL ? " DISK-FULL" :
	    w->paused.fault == DB_FAULT_MAP_FULL ? " MAP-FULL" : "");
}

/* Once a second, also while publishing is failing: the title says so. */
static void
worker_report_due(struct worker *w, int64_t now)
{
	if (now - w->last_report_ms < 1000)
		return;
	worker_report(w);
	w->last_report_ms = now;
}

/* Wait for the HELLO frame: it carries our slot and the configuration. */
static int
worker_hello(struct worker *w)
{
	struct frame f;
	const char *err, *conf;
	size_t conf_len;
	char errbuf[512];

	for (;;) {
		int rc = chan_next(w->ch, &f, &err);
		if (rc == 1)
			break;
		if (rc == -1) {
			log_errorx("bad first frame from the supervisor: %s", err);
			return -1;
		}
		struct pollfd pfd = { chan_fd(w->ch), POLLIN, 0 };
		if (poll(&pfd, 1, -1) == -1 && errno != EINTR) {
			log_error("poll for HELLO");
			return -1;
		}
		rc = chan_fill(w->ch, 65536);
		if (rc == CHAN_EOF) {
			log_errorx("supervisor closed the channel before HELLO");
			return -1;
		}
		if (rc == -1) {
			log_error("read HELLO");
			return -1;
		}
	}
	if (f.type != FRAME_HELLO || frame_get_hello(&f, &w->slot, &w->nslots, &conf, &conf_len) == -1) {
		log_errorx("first frame from the supervisor is not a valid HELLO (type %u)", f.type);
		return -1;
	}
	if (config_parse(conf, conf_len, "<supervisor>", &w->cfg, errbuf, sizeof(errbuf)) == -1) {
		log_errorx("configuration from the supervisor: %s", errbuf);
		return -1;
	}
	chan_consume(w->ch);
	return 0;
}

/* Parked on a corrupt store: say so to the supervisor now and then, with empty counters. */
static void
worker_report_parked(struct worker *w)
{
	struct frame_stats fs = { 0, 0, 0, 0, 0 };

	if (frame_put_stats(chan_out(w->ch), &fs) == -1 || chan_flush_wait(w->ch) == -1)
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
static int
worker_park_corrupt(struct worker *w, const char *dir, const char *why)
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
	    WORKER_CORRUPT_POLL_MS / 1000);
	title_set("worker %u/%u STORE-CORRUPT %s", w->slot, w->nslots, path);
	while (!worker_terminate) {
		struct pollfd pfd = { chan_fd(w->ch), POLLIN, 0 };
		struct frame f;
		const char *err;
		int rc;

		if (poll(&pfd, 1, WORKER_CORRUPT_POLL_MS) == -1 && errno != EINTR)
			log_error("poll");
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if ((rc = chan_fill(w->ch, WORKER_READ_CHUNK)) == CHAN_EOF || rc == -1)
				return 0;
			while ((rc = chan_next(w->ch, &f, &err)) == 1)
				if (f.type == FRAME_STOP)
					return 0;
			if (rc == -1) {
				log_errorx("protocol error from the supervisor: %s; exiting", err);
				return -1;
			}
			chan_consume(w->ch);
		}
		if (clock_mono_ms() < next)
			continue;
		next = clock_mono_ms() + WORKER_CORRUPT_POLL_MS;
		worker_report_parked(w);
		if (stat(path, &now) == -1 || now.st_ino != bad.st_ino || now.st_dev != bad.st_dev) {
			log_warnx("%s was moved away; exiting so that the supervisor starts this slot "
			    "afresh on an empty store", path);
			exit(1);
		}
	}
	return 0;
}

static int
worker_open(struct worker *w)
{
	char dir[PATH_MAX], err[512];

	log_set_role("worker %u/%u", w->slot, w->nslots);
	log_set_level(w->cfg.log_level);
	title_set("worker %u/%u starting", w->slot, w->nslots);
	snprintf(w->stream, sizeof(w->stream), "%s", w->cfg.stream);
	if (layout_slot_path(dir, sizeof(dir), w->cfg.state_dir, (int)w->slot, NULL) == -1)
		return -1;
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_error("mkdir %s", dir);
		return -1;
	}
	char lock[PATH_MAX];
	if (layout_slot_path(lock, sizeof(lock), w->cfg.state_dir, (int)w->slot, "worker.lock") == -1 ||
	    (w->lock_fd = lockfile_take(lock, 30000)) == -1)
		return -1;
	log_info("checking the store in %s", dir);
	if ((w->store = store_open(dir, w->cfg.map_size_bytes, err, sizeof(err))) == NULL) {
		if (errno == EBADMSG) {
			w->stop = true;   /* parked, then exits 0 (STOP, EOF, SIGTERM) unless moved away */
			return worker_park_corrupt(w, dir, err);
		}
		log_errorx("opening state in %s: %s", dir, err);
		return -1;
	}
	db_set_map_max(store_db(w->store), w->cfg.map_size_max_bytes);
	struct natsconn_opts o = { .servers = w->cfg.servers, .cfg = &w->cfg,
	    .name = "alarm-supervisor worker" };
	if ((w->nc = natsconn_connect(&o)) == NULL ||
	    (w->overlimit = overlimit_new(w->nc, &w->cfg)) == NULL)
		return -1;
	store_set_max_alarms(w->store, (uint64_t)w->cfg.max_alarms_per_user);
	return worker_send(w, FRAME_READY, 0);
}

/* The store failing is not something a retry fixes: exit, be restarted, replay. */
static void __attribute__((noreturn))
worker_storage_failed(const char *what)
{
	log_errorx("state store failed while %s; exiting so the supervisor restarts this worker "
	    "and replays its unfinished messages", what);
	exit(1);
}

static void
worker_begin(struct worker *w)
{
	if (w->txn)
		return;
	if (store_begin(w->store) == -1)
		worker_storage_failed("beginning a transaction");
	w->txn = true;
	w->txn_start_ms = clock_mono_ms();
	w->txn_frames = 0;
	w->published = false;
}

/*
 * What a digest publish came to.  A transient failure (not connected, a
 * timeout, a full buffer) redoes the batch after a backoff; a permanent one
 * must not: retrying it forever stalls every user of this worker.
 */
enum worker_pub {
	PUB_OK,
	PUB_RETRY,       /* transient: redo the batch later */
	PUB_SKIP,        /* this digest cannot be published: apply the batch again without it */
	PUB_REFUSED,     /* the server refuses digests at all: skip every request left in the batch */
	PUB_STORE,       /* the store is full (disk or map): redo the batch later, or now if the map grew */
};

/*
 * A write of the batch failed.  A full map or disk passes (a bigger map,
 * space freed): the caller undoes the batch and holds it.  Anything else
 * is not for a retry to fix: exit.
 */
static enum worker_pub
worker_store_fault(struct worker *w, const char *what)
{
	enum db_fault f = db_fault(store_db(w->store));

	if (f != DB_FAULT_MAP_FULL && f != DB_FAULT_DISK_FULL)
		worker_storage_failed(what);
	if (w->paused.fault == DB_FAULT_NONE) {
		w->paused.since_ms = clock_mono_ms();
		w->paused.attempts = 0;
		w->paused.logged_ms = 0;
	}
	w->paused.fault = f;
	w->paused.attempts++;
	return PUB_STORE;
}

/*
 * After worker_store_fault and the rewind (no transaction is open): grow
 * a full map and redo the batch at once, else pause, saying why now and
 * then.  A map at map_size_max stays full until a reload raises it.
 */
static void
worker_store_recover(struct worker *w)
{
	struct db *db = store_db(w->store);
	int64_t now = clock_mono_ms();
	int rc;

	if (w->paused.fault == DB_FAULT_MAP_FULL) {
		if ((rc = db_grow(db)) == 1) {
			w->redo_now = true;
			return;
		}
		if (rc == -1 && db_fault(db) != DB_FAULT_DISK_FULL)
			worker_storage_failed("growing the LMDB map");
		if (rc == -1)
			w->paused.fault = DB_FAULT_DISK_FULL;
	}
	if (w->paused.logged_ms != 0 && now - w->paused.logged_ms < WORKER_RETRY_LOG_MS)
		return;
	w->paused.logged_ms = now;
	if (w->paused.fault == DB_FAULT_DISK_FULL)
		log_errorx("disk full: %s: this slot is paused: its batch of %zu frames is held, not "
		    "reported durable, and redone every %d s at most until space is freed (paused for "
		    "%.1f s, %llu attempts)", db_dir(db), w->txn_frames, WORKER_RETRY_MAX_MS / 1000,
		    (now - w->paused.since_ms) / 1000.0, (unsigned long long)w->paused.attempts);
	else
		log_errorx("map full: %s: the LMDB map is at [worker] map_size_max (%lld bytes); this "
		    "slot is paused: its batch of %zu frames is held, not reported durable, and redone "
		    "every %d s at most; raise map_size_max and send SIGHUP (paused for %.1f s, %llu "
		    "attempts)", db_dir(db), (long long)db_map_size(db), w->txn_frames,
		    WORKER_RETRY_MAX_MS / 1000, (now - w->paused.since_ms) / 1000.0,
		    (unsigned long long)w->paused.attempts);
}

/* A transient failure: rate-limited, since it repeats until NATS is back. */
static void __attribute__((format(printf, 2, 3)))
worker_trouble(struct worker *w, const char *fmt, ...)
{
	int64_t now = clock_mono_ms();
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (w->retry.attempts++ == 0)
		w->retry.since_ms = now;
	else if (now - w->retry.logged_ms < WORKER_RETRY_LOG_MS)
		return;
	w->retry.logged_ms = now;
	log_warnx("%s; will redo the batch of %zu frames (attempt %llu, failing for %.1f s; "
	    "retrying every %d ms at most)", what, w->txn_frames, (unsigned long long)w->retry.attempts,
	    (now - w->retry.since_ms) / 1000.0, WORKER_RETRY_MAX_MS);
}

/* After a transient failure: when to try again, 100 ms doubling to 5 s. */
static void
worker_backoff(struct worker *w)
{
	int d = w->retry.delay_ms, min = w->paused.fault != DB_FAULT_NONE ?
	    WORKER_STORE_RETRY_MIN_MS : WORKER_RETRY_MIN_MS;

	if (w->redo_now) {
		/* The map grew: nothing to wait for. */
		w->redo_now = false;
		w->retry.next_ms = 0;
		return;
	}
	d = d < min ? min : d >= WORKER_RETRY_MAX_MS / 2 ? WORKER_RETRY_MAX_MS : d * 2;
	w->retry.delay_ms = d;
	w->retry.next_ms = clock_mono_ms() + d;
}

/* A batch committed: publishing works again, and the store takes writes. */
static void
worker_recovered(struct worker *w)
{
	if (w->paused.fault != DB_FAULT_NONE)
		log_info("%s: %s; this slot resumed after %.1f s paused, %llu attempts; the held "
		    "batch is committed", db_dir(store_db(w->store)),
		    w->paused.fault == DB_FAULT_DISK_FULL ? "disk space is back" : "the map has room again",
		    (clock_mono_ms() - w->paused.since_ms) / 1000.0,
		    (unsigned long long)w->paused.attempts);
	w->paused = (struct worker_paused){ DB_FAULT_NONE, 0, 0, 0 };
	if (w->retry.attempts > 0)
		log_info("digests are published again, after %llu failed attempts over %.1f s",
		    (unsigned long long)w->retry.attempts,
		    (clock_mono_ms() - w->retry.since_ms) / 1000.0);
	w->retry = (struct worker_retry){ 0, 0, 0, 0, 0 };
}

/* A digest that cannot go out: said loudly (but rate-limited) and counted. */
static void __attribute__((format(printf, 5, 6)))
worker_undeliverable(struct worker *w, const char *user, size_t user_len, const char *msgid,
    const char *fmt, ...)
{
	char why[512], quser[QUOTE_CAP(64)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	w->undeliverable++;
	log_limited(&w->undeliverable_log, LL_ERROR, "digest %s of user \"%s\" (%zu alarms) cannot be "
	    "published to %s: %s; skipped: its alarms stay undelivered and go out with the user's "
	    "next digest (%llu digests skipped so far)", msgid,
	    quote_bytes(quser, sizeof(quser), user, user_len), w->digest.n, w->cfg.subject_digest, why,
	    (unsigned long long)w->undeliverable);
}

/* Sort a failed publish into transient and permanent (see enum worker_pub). */
static enum worker_pub
worker_publish_failed(struct worker *w, natsStatus s, int64_t max_payload, const char *user,
    size_t user_len, const char *msgid, const struct parts_msg *pm)
{
	const char *part = pm->part != NULL ? pm->part : "1/1";

	switch (s) {
	case NATS_MAX_PAYLOAD:
		/* Cut for a limit that changed since: a reconnect to another server. */
		if (natsConnection_GetMaxPayload(w->nc) != max_payload) {
			worker_trouble(w, "publishing digest %s: the server's max_payload changed from %lld "
			    "to %lld bytes", pm->msgid, (long long)max_payload,
			    (long long)natsConnection_GetMaxPayload(w->nc));
			return PUB_RETRY;
		}
		worker_undeliverable(w, user, user_len, msgid, "part %s of %zu bytes is over the server's "
		    "max_payload of %lld bytes", part, pm->len, (long long)max_payload);
		return PUB_SKIP;
	case NATS_NOT_PERMITTED:
	case NATS_INVALID_SUBJECT:
	case NATS_NO_SERVER_SUPPORT:
		worker_undeliverable(w, user, user_len, msgid, "%s (part %s)%s", natsStatus_GetText(s), part,
		    s == NATS_NO_SERVER_SUPPORT ? ": the server does not support headers (NATS 2.2 or later does)" :
		    s == NATS_NOT_PERMITTED ? ": grant this connection publish permission on the subject" : "");
		return PUB_REFUSED;
	case NATS_CONNECTION_CLOSED:
		/* cnats never reopens a closed connection (it reconnects forever otherwise). */
		log_errorx("publishing digest %s: the NATS connection is closed for good (%s); exiting so "
		    "the supervisor starts this worker afresh and replays its unfinished messages",
		    pm->msgid, nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		exit(1);
	default:
		worker_trouble(w, "publishing digest %s (part %s) to %s: %s", pm->msgid, part,
		    w->cfg.subject_digest, natsStatus_GetText(s));
		return PUB_RETRY;
	}
}

/*
 * Publish the collected digest, in parts when it would exceed the
 * server's max_payload.  The limit is read from the connection each time:
 * a reconnect may land on a server with another one.
 */
static enum worker_pub
worker_publish(struct worker *w, uint64_t stream_seq, const char *user, size_t user_len)
{
	char msgid[PARTS_MSGID_MAX + 1];
	int64_t max_payload = natsConnection_GetMaxPayload(w->nc);
	size_t n;

	/* A JetStream stream on the digest subject drops a replay's repeat by this id. */
	if (stream_seq > 0) {
		snprintf(msgid, sizeof(msgid), "%s-%llu", w->stream, (unsigned long long)stream_seq);
	} else {
		uuid_t u;
		uuid_generate(u);
		uuid_unparse_lower(u, msgid);
	}
	if (max_payload <= 0) {
		worker_trouble(w, "publishing digest %s: not connected to NATS yet (the server's "
		    "max_payload is unknown)", msgid);
		return PUB_RETRY;
	}
	if (parts_plan(w->parts, &w->digest, user, user_len, msgid, max_payload) == -1) {
		if (errno == EMSGSIZE) {
			worker_undeliverable(w, user, user_len, msgid, "one of its alarms alone does not fit "
			    "in the server's max_payload of %lld bytes; raise it to %lld or more",
			    (long long)max_payload, (long long)parts_min_payload(w->parts));
			return PUB_SKIP;
		}
		log_error("building digest %s of %zu alarms", msgid, w->digest.n);
		worker_trouble(w, "building digest %s", msgid);
		return PUB_RETRY;
	}
	n = parts_count(w->parts);
	for (size_t k = 0; k < n; k++) {
		struct parts_msg pm;
		natsMsg *m = NULL;
		natsStatus s;

		if (parts_get(w->parts, k, &pm) == -1) {
			log_error("building part %zu/%zu of digest %s", k + 1, n, msgid);
			worker_trouble(w, "building digest %s", msgid);
			return PUB_RETRY;
		}
		s = natsMsg_Create(&m, w->cfg.subject_digest, NULL, (const char *)pm.data, (int)pm.len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, PARTS_HDR_MSGID, pm.msgid);
		if (s == NATS_OK && pm.part != NULL)
			s = natsMsgHeader_Set(m, PARTS_HDR_PART, pm.part);
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(w->nc, m);
		natsMsg_Destroy(m);
		if (s != NATS_OK)
			return worker_publish_failed(w, s, max_payload, user, user_len, msgid, &pm);
		/* Even if a later part fails, this one went out: the commit must flush it. */
		w->published = true;
	}
	if (n > 1)
		log_debug("digest %s of %zu alarms published in %zu parts (max_payload %lld)", msgid,
		    w->digest.n, n, (long long)max_payload);
	w->digests++;
	w->digest_parts += n;
	return PUB_OK;
}

static int
worker_apply_config(struct worker *w, const struct frame *f)
{
	struct config c;
	char err[512];

	if (config_parse((const char *)f->body, f->body_len, "<reload>", &c, err, sizeof(err)) == -1) {
		log_errorx("new configuration from the supervisor: %s; keeping the old one", err);
		return 0;
	}
	/* Only reloadable settings change here; the rest needs a restart anyway. */
	log_set_level(c.log_level);
	w->cfg.commit_max_msgs = c.commit_max_msgs;
	w->cfg.commit_max_ms = c.commit_max_ms;
	w->cfg.tombstone_retention_ms = c.tombstone_retention_ms;
	w->cfg.max_alarms_per_user = c.max_alarms_per_user;
	store_set_max_alarms(w->store, (uint64_t)c.max_alarms_per_user);
	overlimit_set_subject(w->overlimit, c.subject_dead_letter);
	w->cfg.map_size_max_bytes = c.map_size_max_bytes;
	db_set_map_max(store_db(w->store), c.map_size_max_bytes);
	free(w->cfg.subject_digest);
	w->cfg.subject_digest = c.subject_digest;
	c.subject_digest = NULL;
	config_free(&c);
	return 0;
}

static bool
worker_skipped(const struct worker *w, uint64_t id)
{
	for (size_t i = 0; i < w->nskip; i++)
		if (w->skip[i] == id)
			return true;
	return false;
}

/* Remember a request to skip when the batch is applied again.  -1 on ENOMEM. */
static int
worker_skip(struct worker *w, uint64_t id)
{
	if (w->nskip == w->cap_skip) {
		size_t ncap = w->cap_skip ? w->cap_skip * 2 : 16;
		uint64_t *p = realloc(w->skip, ncap * sizeof(*p));

		if (p == NULL)
			return -1;
		w->skip = p;
		w->cap_skip = ncap;
	}
	w->skip[w->nskip++] = id;
	return 0;
}

/*
 * A digest request: collect, publish, and mark delivered (in the open
 * transaction).  A request skipped after a permanent failure is not taken
 * at all, so its alarms stay undelivered and it is not recorded as answered.
 */
static enum worker_pub
worker_digest(struct worker *w, uint64_t id, uint64_t seq, const char *user, size_t ulen)
{
	char quser[QUOTE_CAP(64)];
	bool replayed;

	if (worker_skipped(w, id))
		return PUB_OK;
	if (w->refuse_from != 0 && id >= w->refuse_from) {
		if (worker_skip(w, id) == -1) {
			log_error("noting digest request %llu as skipped", (unsigned long long)id);
			return PUB_RETRY;
		}
		w->undeliverable++;
		log_limited(&w->undeliverable_log, LL_ERROR, "digest request of user \"%s\" skipped: the "
		    "server refused an earlier digest of this batch on %s; its alarms stay undelivered",
		    quote_bytes(quser, sizeof(quser), user, ulen), w->cfg.subject_digest);
		return PUB_OK;
	}
	if (store_take_digest(w->store, user, ulen, seq, &w->digest, &replayed) == -1)
		return worker_store_fault(w, "collecting a digest");
	if (replayed)
		log_debug("digest request at stream sequence %llu was answered before; not again",
		    (unsigned long long)seq);
	if (w->digest.n == 0)
		return PUB_OK;
	if (id <= w->handed_upto) {
		/* Handed to NATS before the batch was redone: the flush at commit covers it. */
		w->published = true;
		return PUB_OK;
	}
	return worker_publish(w, seq, user, ulen);
}

/* Apply one frame inside the open transaction; anything but PUB_OK means the batch is undone. */
static enum worker_pub
worker_apply(struct worker *w, const struct frame *f)
{
	struct alarm_msg m;
	enum state_result res;
	uint64_t seq;
	const char *user;
	size_t ulen;
	enum worker_pub r;

	switch (f->type) {
	case FRAME_UPDATE:
		if (frame_get_update(f, &m) == -1)
			goto bad;
		worker_begin(w);
		if (store_apply(w->store, &m, w->wall_ms, w->cfg.tombstone_retention_ms, &res) == -1)
			return worker_store_fault(w, "applying an update");
		if (res == STATE_STALE || res == STATE_LESS_SEVERE)
			w->batch.stale++;
		else if (res == STATE_DUPLICATE)
			w->batch.duplicates++;
		else if (res == STATE_OVER_LIMIT) {
			w->batch.overlimit++;
			if (f->id > w->overlimit_upto) {
				overlimit_reject(w->overlimit, &m, w->cfg.subject_status,
				    w->cfg.max_alarms_per_user);
				w->overlimit_upto = f->id;
				w->overlimit_unflushed = true;
			}
		}
		w->batch.msgs++;
		break;
	case FRAME_DIGEST:
		if (frame_get_digest(f, &seq, &user, &ulen) == -1)
			goto bad;
		worker_begin(w);
		if ((r = worker_digest(w, f->id, seq, user, ulen)) != PUB_OK)
			return r;
		/*
		 * Every digest of the batch up to here is handed over (or had
		 * nothing to send).  Only ever raised: applied again after a skip,
		 * the frames before the failed one must not lower it.
		 */
		if (f->id > w->handed_upto)
			w->handed_upto = f->id;
		w->batch.msgs++;
		break;
	case FRAME_CONFIG:
		worker_apply_config(w, f);
		break;
	case FRAME_STOP:
		w->stop = true;
		break;
	default:
		goto bad;
	}
	return PUB_OK;
bad:
	/* The supervisor encoded it; skipping keeps one bad frame from wedging the slot. */
	w->bad_frames++;
	log_errorx("skipping malformed frame id %llu type %u (%u bytes)", (unsigned long long)f->id,
	    f->type, f->body_len);
	return PUB_OK;
}

/*
 * Undo the open transaction and go back to its first frame.  keep_handed:
 * the digests handed to NATS so far still go out (the batch is redone only
 * to skip a request), so they are not published again.
 */
static void
worker_rewind(struct worker *w, bool keep_handed)
{
	if (w->txn)
		store_abort(w->store);
	w->txn = false;
	w->published = false;
	if (!keep_handed)
		w->handed_upto = 0;
	chan_rewind(w->ch);
	w->stop = false;
	w->batch = (struct worker_counts){ 0, 0, 0, 0 };
}

/* Make the batch durable, then report it.  -1: rewound, retry later. */
static int
worker_commit(struct worker *w)
{
	if (chan_pending(w->ch) == 0)
		return 0;
	if (w->published) {
		natsStatus s = natsConnection_FlushTimeout(w->nc, WORKER_FLUSH_TIMEOUT_MS);
		if (s != NATS_OK) {
			worker_trouble(w, "flushing digests to NATS: %s", natsStatus_GetText(s));
			worker_rewind(w, false);
			return -1;
		}
	}
	/* The flush above covered the copies when there was one; they never hold the batch back. */
	if (w->overlimit_unflushed && !w->published)
		overlimit_flush(w->overlimit);
	w->overlimit_unflushed = false;
	if (w->txn && store_commit(w->store) == -1) {
		/* LMDB freed the transaction; the digests went out with the flush above. */
		worker_store_fault(w, "committing");
		worker_rewind(w, true);
		worker_store_recover(w);
		return -1;
	}
	w->txn = false;
	w->nskip = 0;
	w->refuse_from = 0;
	w->handed_upto = 0;
	worker_recovered(w);
	chan_consume(w->ch);
	w->done.msgs += w->batch.msgs;
	w->done.stale += w->batch.stale;
	w->done.duplicates += w->batch.duplicates;
	w->done.overlimit += w->batch.overlimit;
	w->batch = (struct worker_counts){ 0, 0, 0, 0 };
	return worker_send(w, FRAME_DONE, w->last_id);
}

/*
 * Group commit: a batch is committed when it is commit_max_ms old or holds
 * commit_max_msgs frames, not each time the input runs dry.  Under a
 * steady trickle, committing whenever the channel is empty meant one
 * fsync and a rewrite of every touched page per handful of messages.
 * Waiting costs no digest latency (digests are published as their
 * requests are applied), only ack latency.
 */
static bool
worker_commit_due(const struct worker *w, bool eof, int64_t now)
{
	if (chan_pending(w->ch) == 0)
		return false;
	if (eof || w->stop || !w->txn)
		return true;
	return w->txn_frames >= (size_t)w->cfg.commit_max_msgs ||
	    now - w->txn_start_ms >= w->cfg.commit_max_ms;
}

/* Apply every complete frame read, committing in groups. */
static int
worker_process(struct worker *w)
{
	int64_t now = clock_mono_ms();
	unsigned n = 0;

	w->wall_ms = clock_wall_ms();
	for (;;) {
		struct frame f;
		const char *err;
		int rc = chan_next(w->ch, &f, &err);
#ifdef ALARM_FAULT_ACK_EARLY
		/* Test-only (make check-broken): report applied frames durable before committing them. */
		if (rc == 0 && w->txn && worker_send(w, FRAME_DONE, w->last_id) == -1)
			return -1;
#endif
		if (rc == 0)
			return 0;
		if (rc == -1) {
			log_errorx("protocol error from the supervisor: %s; exiting", err);
			exit(1);
		}
		switch (worker_apply(w, &f)) {
		case PUB_OK:
			break;
		case PUB_RETRY:
			worker_rewind(w, false);
			return -1;
		case PUB_STORE:
			/* Digests handed to NATS so far go out anyway: not again when redone. */
			worker_rewind(w, true);
			worker_store_recover(w);
			if (w->redo_now) {
				w->redo_now = false;
				continue;
			}
			return -1;
		case PUB_REFUSED:
			w->refuse_from = f.id;
			/* FALLTHROUGH */
		case PUB_SKIP:
			/*
			 * Its marks are in the transaction with the rest of the batch:
			 * undo it all and apply the batch again, without this request.
			 */
			if (worker_skip(w, f.id) == -1) {
				log_error("noting digest request %llu as skipped", (unsigned long long)f.id);
				worker_rewind(w, false);
				return -1;
			}
			worker_rewind(w, true);
			continue;
		}
		w->last_id = f.id;
		w->txn_frames++;
		/* The clock is read every 64 frames: per frame it was 5% of a worker. */
		if (++n % 64 == 0)
			now = clock_mono_ms();
		/* Control frames alone make no transaction: the loop reports those. */
		if (w->txn && worker_commit_due(w, false, now) && worker_commit(w) == -1)
			return -1;
		if (w->stop)
			return 0;
	}
}

/*
 * Take what the supervisor sent, up to a chunk beyond the open batch (the
 * batch's frames stay in the channel until they commit).  Returns 1 if the
 * supervisor closed the channel.
 */
static int
worker_receive(struct worker *w)
{
	int rc = chan_fill(w->ch, WORKER_READ_CHUNK);

	if (rc == -1)
		log_error("read from the supervisor");
	return rc == CHAN_EOF || rc == -1;
}

/* When idle, drop expired tombstones of users nobody writes to any more. */
static void
worker_sweep(struct worker *w, int64_t now)
{
	bool wrapped = false;

	if (w->txn || chan_buffered(w->ch) > 0)
		return;
	if (!w->sweeping && now < w->next_sweep_ms)
		return;
	w->sweeping = true;
	if (store_begin(w->store) == -1)
		worker_storage_failed("beginning a tombstone sweep");
	if (store_sweep(w->store, clock_wall_ms(), w->cfg.tombstone_retention_ms,
	    WORKER_SWEEP_USERS, &wrapped) == -1 || store_commit(w->store) == -1) {
		enum db_fault f = db_fault(store_db(w->store));

		store_abort(w->store);
		if (f != DB_FAULT_MAP_FULL && f != DB_FAULT_DISK_FULL)
			worker_storage_failed("sweeping tombstones");
		/* Only housekeeping: grow if we may, else try again later. */
		if (f == DB_FAULT_MAP_FULL && db_grow(store_db(w->store)) == 1)
			return;
		w->sweeping = false;
		w->next_sweep_ms = now + WORKER_SWEEP_FIRST_MS;
		return;
	}
	if (wrapped) {
		w->sweeping = false;
		w->next_sweep_ms = now + WORKER_SWEEP_EVERY_MS;
	}
}

/* How long poll may wait: until the open batch is due, else a second. */
static int
worker_timeout(const struct worker *w)
{
	int64_t left;

	if (chan_pending(w->ch) == 0)
		return 1000;
	if (!w->txn)
		return 0;   /* a batch undone, to be redone now (the map grew) */
	left = w->txn_start_ms + w->cfg.commit_max_ms - clock_mono_ms();
	return left <= 0 ? 0 : left > 1000 ? 1000 : (int)left;
}

static void
worker_loop(struct worker *w)
{
	bool eof = false;

	while (!w->stop) {
		int64_t now = clock_mono_ms();
		/* Backing off after a publish failure: wake for the retry, a hangup or a signal only. */
		bool held = w->retry.next_ms > now;
		struct pollfd pfd = { chan_fd(w->ch), held ? 0 : POLLIN, 0 };
		int timeout = held ? (int)(w->retry.next_ms - now) : worker_timeout(w);

		if (!eof && poll(&pfd, 1, timeout) == -1 && errno != EINTR)
			log_error("poll");
		if (worker_terminate)
			eof = true;  /* SIGTERM: finish what we hold, like an EOF */
		if (!eof && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) && worker_receive(w) == 1)
			eof = true;
		if ((now = clock_mono_ms()) < w->retry.next_ms) {
			if (eof) {
				int64_t left = w->retry.next_ms - now;
				nanosleep(&(struct timespec){ left / 1000, (left % 1000) * 1000000 }, NULL);
			}
			continue;
		}
		if (worker_process(w) == -1 ||
		    (worker_commit_due(w, eof, clock_mono_ms()) && worker_commit(w) == -1)) {
			/* NATS unreachable: hold the batch and try again after a backoff. */
			worker_backoff(w);
			worker_report_due(w, clock_mono_ms());
			continue;
		}
		now = clock_mono_ms();
		if (!eof && !(pfd.revents & POLLIN))
			worker_sweep(w, now);
		worker_report_due(w, now);
		if (eof)
			break;
	}
}

int
worker_main(void)
{
	struct worker w = { .lock_fd = -1 };
	struct sigaction sa = { 0 };
	int rc = 1;

	log_set_role("worker");
	/* The terminal's ^C and hangup go to the whole process group: the supervisor decides. */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sa.sa_handler = worker_on_sigterm;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) == -1)
		log_error("sigaction SIGTERM");
	if (fcntl(FRAME_CHANNEL_FD, F_GETFD) == -1) {
		log_errorx("no channel on descriptor %d: the worker role is started by alarm-supervisor only",
		    FRAME_CHANNEL_FD);
		return 2;
	}
	if ((w.ch = chan_new(FRAME_CHANNEL_FD)) == NULL) {
		log_error("channel on descriptor %d", FRAME_CHANNEL_FD);
		return 1;
	}
	if ((w.parts = parts_new()) == NULL) {
		log_error("allocating the digest splitter");
		goto out;
	}
	if (worker_hello(&w) == -1 || worker_open(&w) == -1)
		goto out;
	if (w.store == NULL) {
		/* Parked on a corrupt store, and stopped. */
		rc = 0;
		goto out;
	}
	log_info("ready: state in %s/worker-%u, publishing digests on %s", w.cfg.state_dir, w.slot,
	    w.cfg.subject_digest);
	worker_report(&w);
	w.next_sweep_ms = clock_mono_ms() + WORKER_SWEEP_FIRST_MS;
	worker_loop(&w);
	log_info("exiting after %llu messages (%llu stale, %llu duplicates, %llu over "
	    "max_alarms_per_user, %llu malformed frames), %llu digests in %llu messages, "
	    "%llu undeliverable", (unsigned long long)w.done.msgs,
	    (unsigned long long)w.done.stale, (unsigned long long)w.done.duplicates,
	    (unsigned long long)w.done.overlimit,
	    (unsigned long long)w.bad_frames, (unsigned long long)w.digests,
	    (unsigned long long)w.digest_parts, (unsigned long long)w.undeliverable);
	rc = 0;
out:
	if (w.txn)
		store_abort(w.store);
	store_close(w.store);
	overlimit_free(w.overlimit);
	if (w.nc != NULL) {
		natsConnection_FlushTimeout(w.nc, 2000);
		natsconn_close(w.nc);
	}
	digest_free(&w.digest);
	parts_free(w.parts);
	free(w.skip);
	chan_free(w.ch);
	config_free(&w.cfg);
	if (w.lock_fd != -1)
		close(w.lock_fd);
	nats_Close();
	return rc;
}
