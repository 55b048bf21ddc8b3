#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

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
#include "fault.h"
#include "overlimit.h"
#include "publish.h"
#include "sweep.h"
#include "worker.h"

#define WORKER_READ_CHUNK (256u << 10)

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

	bool txn;
	uint64_t last_id;         /* id of the last frame applied in the transaction */
	int64_t txn_start_ms;
	size_t txn_frames;
	bool stop;                /* STOP frame or EOF: finish and exit */

	struct publish *pub;      /* digests, and the backoff of a failed batch */
	struct fault *fault;      /* the store full: the slot paused */
	bool redo_now;            /* the map grew: redo the batch without waiting */
	/*
	 * Updates refused as over max_alarms_per_user: logged and dead-lettered
	 * once per frame (a redone batch does not copy them again: frame ids
	 * only grow), flushed before the batch is reported durable.
	 */
	struct overlimit *overlimit;
	uint64_t overlimit_upto;
	bool overlimit_unflushed;
	/*
	 * FENCE (cluster mode): no request handled after this monotonic ms
	 * deadline is answered; 0: none (single instance, or no lease yet known).
	 * batch_fence_ms is the one before the batch's first frame: a redo
	 * starts from it and applies the batch's FENCE frames again in order,
	 * so no request it fenced is answered by the redo (which could take
	 * it for one handed to NATS already and only mark it).
	 */
	int64_t fence_ms, batch_fence_ms;
	struct log_limit fenced_log;
	/* Counted when the batch commits: a rewound batch is applied again and must not count twice. */
	struct worker_counts {
		uint64_t msgs, stale, duplicates, overlimit;
		uint64_t fenced, replayed;   /* digest requests not answered: past the fence, replays */
	} done, batch;
	uint64_t bad_frames;
	uint64_t commits;
	struct histo commit_latency;   /* for the supervisor's /metrics */
	int64_t last_report_ms;
	int64_t wall_ms;          /* wall clock, read once per chunk of frames: tombstone age only */
	struct sweep *sweep;
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
	struct publish_counts pc;

	store_get_stats(w->store, &ss);
	publish_get_counts(w->pub, &pc);
	fs = (struct frame_stats){ .users = ss.users, .alarms = ss.alarms, .tombstones = ss.tombstones,
	    .bytes = ss.bytes, .msgs = w->done.msgs, .map_size = (uint64_t)db_map_size(store_db(w->store)),
	    .commits = w->commits, .digests = pc.digests, .digest_parts = pc.parts, .digest_bytes = pc.bytes,
	    .overlimit = w->done.overlimit, .commit_latency = w->commit_latency,
	    .digest_latency = pc.latency, .digests_fenced = w->done.fenced,
	    .digest_msgs_resent = pc.resent };
	if (frame_put_stats(chan_out(w->ch), &fs) == -1 || chan_flush_wait(w->ch) == -1)
		log_error("sending STATS to the supervisor");
	title_set("worker %u/%u users=%llu alarms=%llu msgs=%llu digests=%llu stale=%llu dup=%llu "
	    "state=%lluB/alarm undeliverable=%llu overlimit=%llu%s%s", w->slot, w->nslots,
	    (unsigned long long)ss.users,
	    (unsigned long long)ss.alarms, (unsigned long long)w->done.msgs,
	    (unsigned long long)pc.digests, (unsigned long long)w->done.stale,
	    (unsigned long long)w->done.duplicates,
	    (unsigned long long)(ss.alarms ? ss.bytes / ss.alarms : 0),
	    (unsigned long long)pc.undeliverable, (unsigned long long)w->done.overlimit,
	    publish_failing(w->pub) ? " NATS-RETRYING" : "",
	    fault_kind(w->fault) == DB_FAULT_DISK_FULL ? " DISK-FULL" :
	    fault_kind(w->fault) == DB_FAULT_MAP_FULL ? " MAP-FULL" : "");
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

static int
worker_open(struct worker *w)
{
	char dir[PATH_MAX], err[512];

	log_set_role("worker %u/%u", w->slot, w->nslots);
	log_set_level(w->cfg.log_level);
	title_set("worker %u/%u starting", w->slot, w->nslots);
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
			return fault_park(w->ch, w->slot, w->nslots, dir, err, &worker_terminate);
		}
		log_errorx("opening state in %s: %s", dir, err);
		return -1;
	}
	db_set_map_max(store_db(w->store), w->cfg.map_size_max_bytes);
	char name[32];
	snprintf(name, sizeof(name), "worker %u", w->slot);
	struct natsconn_opts o = { .servers = w->cfg.servers, .cfg = &w->cfg, .name = name };
	if ((w->nc = natsconn_connect(&o)) == NULL ||
	    (w->overlimit = overlimit_new(w->nc, &w->cfg)) == NULL ||
	    (w->pub = publish_new(w->nc, &w->cfg)) == NULL)
		return -1;
	store_set_max_alarms(w->store, (uint64_t)w->cfg.max_alarms_per_user);
	return worker_send(w, FRAME_READY, 0);
}

static void
worker_begin(struct worker *w)
{
	if (w->txn)
		return;
	if (store_begin(w->store) == -1)
		fault_fatal("beginning a transaction");
	w->txn = true;
	w->txn_start_ms = clock_mono_ms();
	w->txn_frames = 0;
	publish_begin(w->pub);
}

/* A write of the batch failed: pause for a full store (fault.h), else exit. */
static enum publish_result
worker_store_fault(struct worker *w, const char *what)
{
	fault_pause(w->fault, store_db(w->store), what);
	return PUB_STORE;
}

/* After worker_store_fault and the rewind: grow the map and redo at once, or stay paused. */
static void
worker_store_recover(struct worker *w)
{
	if (fault_recover(w->fault, store_db(w->store), w->txn_frames))
		w->redo_now = true;
}

/* After a failed batch: when to try again. */
static void
worker_backoff(struct worker *w)
{
	if (w->redo_now) {
		/* The map grew: nothing to wait for. */
		w->redo_now = false;
		publish_retry_now(w->pub);
		return;
	}
	publish_backoff(w->pub, fault_retry_min_ms(w->fault));
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

/*
 * A request handled past the fence: this instance may have lost the
 * user's partition to another one, which answers it instead.  Skipped
 * whole (no marks, no publish, not recorded as answered), so the alarms
 * stay pending for whoever answers it.
 */
static bool
worker_fenced(struct worker *w, uint64_t seq, const char *user, size_t ulen)
{
	char quser[QUOTE_CAP(64)];
	int64_t now;

	if (w->fence_ms == 0 || (now = clock_mono_ms()) <= w->fence_ms)
		return false;
	w->batch.fenced++;
	log_limited(&w->fenced_log, LL_WARN, "lease expired: not answering the digest request of user "
	    "\"%s\" at stream sequence %llu: the fence passed %lld ms ago; its alarms stay pending",
	    quote_bytes(quser, sizeof(quser), user, ulen), (unsigned long long)seq,
	    (long long)(now - w->fence_ms));
	return true;
}

/* Apply one frame inside the open transaction; anything but PUB_OK means the batch is undone. */
static enum publish_result
worker_apply(struct worker *w, const struct frame *f)
{
	struct alarm_msg m;
	enum state_result res;
	uint64_t seq;
	const char *user;
	size_t ulen;
	enum publish_result r;

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
		if (frame_digest_replay(f)) {
			worker_begin(w);
			r = publish_replay(w->pub, w->store, seq, user, ulen);
			w->batch.replayed++;
		} else if (worker_fenced(w, seq, user, ulen)) {
			/* Handled all the same: reported done with the batch. */
			w->batch.msgs++;
			break;
		} else {
			worker_begin(w);
			r = publish_digest(w->pub, w->store, f->id, seq, frame_digest_received(f), user,
			    ulen, w->txn_frames);
		}
		if (r == PUB_STORE)
			return worker_store_fault(w, "collecting a digest");
		if (r != PUB_OK)
			return r;
		w->batch.msgs++;
		break;
	case FRAME_CONFIG:
		worker_apply_config(w, f);
		break;
	case FRAME_FENCE:
		if (frame_get_fence(f, &w->fence_ms) == -1)
			goto bad;
		log_debug("fence: requests answered until monotonic %lld ms (now %lld)",
		    (long long)w->fence_ms, (long long)clock_mono_ms());
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
	publish_rewind(w->pub, keep_handed);
	chan_rewind(w->ch);
	w->stop = false;
	w->fence_ms = w->batch_fence_ms;
	w->batch = (struct worker_counts){ .msgs = 0 };
}

/* Make the batch durable, then report it.  -1: rewound, retry later. */
static int
worker_commit(struct worker *w)
{
	int64_t start_us = clock_mono_us();

	if (chan_pending(w->ch) == 0)
		return 0;
	if (publish_flush(w->pub, w->txn_frames) == -1) {
		worker_rewind(w, false);
		return -1;
	}
	/* The flush above covered the copies when there was one; they never hold the batch back. */
	if (w->overlimit_unflushed && !publish_pending(w->pub))
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
	/* Said in this order: the store takes writes again, then NATS takes digests. */
	fault_resume(w->fault, store_db(w->store));
	publish_commit(w->pub);
	chan_consume(w->ch);
	w->batch_fence_ms = w->fence_ms;
	w->done.msgs += w->batch.msgs;
	w->done.stale += w->batch.stale;
	w->done.duplicates += w->batch.duplicates;
	w->done.overlimit += w->batch.overlimit;
	w->done.fenced += w->batch.fenced;
	w->done.replayed += w->batch.replayed;
	/*
	 * A request skipped past our fence may belong to a lease the
	 * supervisor still holds (its renewal was on its way to us): it must
	 * not ack this batch as if the request were answered.
	 */
	if (w->batch.fenced > 0 && worker_send(w, FRAME_FENCED, w->last_id) == -1)
		return -1;
	w->batch = (struct worker_counts){ .msgs = 0 };
	w->commits++;
	histo_observe(&w->commit_latency, clock_mono_us() - start_us);
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
	enum publish_result r;

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
		switch ((r = worker_apply(w, &f))) {
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
		case PUB_SKIP:
			/*
			 * Its marks are in the transaction with the rest of the batch:
			 * undo it all and apply the batch again, without this request.
			 */
			if (publish_skip(w->pub, f.id, r == PUB_REFUSED) == -1) {
				log_error("noting digest request %llu as skipped", (unsigned long long)f.id);
				worker_rewind(w, false);
				return -1;
			}
			worker_rewind(w, true);
			continue;
		}
		if (f.type == FRAME_FENCE) {
			/*
			 * Outside the queue (frame.h): it has no id to report done.
			 * Alone, it goes at once; else with the frames taken before it.
			 */
			if (!w->txn && chan_pending(w->ch) == FRAME_HDR_LEN + f.body_len) {
				chan_consume(w->ch);
				w->batch_fence_ms = w->fence_ms;
			}
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
	if (w->txn || chan_buffered(w->ch) > 0)
		return;
	sweep_step(w->sweep, w->store, w->cfg.tombstone_retention_ms, now);
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

/*
 * How long a worker whose supervisor is gone (EOF or SIGTERM) keeps trying
 * to finish a batch that cannot finish (NATS unreachable).  Nobody will
 * ack its messages any more, so giving up loses nothing: the stream
 * redelivers them to the next supervisor's worker.
 */
#define WORKER_ORPHAN_GRACE_MS 3000

static void
worker_loop(struct worker *w)
{
	bool eof = false;
	int64_t eof_at = 0;

	while (!w->stop) {
		int64_t now = clock_mono_ms();
		/* Backing off after a publish failure: wake for the retry, a hangup or a signal only. */
		bool held = publish_retry_at(w->pub) > now;
		struct pollfd pfd = { chan_fd(w->ch), held ? 0 : POLLIN, 0 };
		int timeout = held ? (int)(publish_retry_at(w->pub) - now) : worker_timeout(w);

		if (!eof && poll(&pfd, 1, timeout) == -1 && errno != EINTR)
			log_error("poll");
		if (worker_terminate)
			eof = true;  /* SIGTERM: finish what we hold, like an EOF */
		if (!eof && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) && worker_receive(w) == 1)
			eof = true;
		publish_tick(w->pub, w->fence_ms);
		now = clock_mono_ms();
		if (eof && eof_at == 0)
			eof_at = now;
		if (eof && now - eof_at >= WORKER_ORPHAN_GRACE_MS) {
			log_warnx("the supervisor is gone and %zu messages cannot finish (NATS unreachable): "
			    "leaving them uncommitted for redelivery", chan_pending(w->ch));
			break;
		}
		if (now < publish_retry_at(w->pub)) {
			if (eof) {
				int64_t left = publish_retry_at(w->pub) - now;
				if (left > eof_at + WORKER_ORPHAN_GRACE_MS - now)
					left = eof_at + WORKER_ORPHAN_GRACE_MS - now;
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
	struct publish_counts pc = { 0 };
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
	if ((w.fault = fault_new()) == NULL)
		goto out;
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
	if ((w.sweep = sweep_new(clock_mono_ms())) == NULL)
		goto out;
	worker_loop(&w);
	publish_get_counts(w.pub, &pc);
	log_info("exiting after %llu messages (%llu stale, %llu duplicates, %llu over "
	    "max_alarms_per_user, %llu malformed frames), %llu digests in %llu messages, "
	    "%llu undeliverable, %llu requests replayed, %llu past the fence",
	    (unsigned long long)w.done.msgs,
	    (unsigned long long)w.done.stale, (unsigned long long)w.done.duplicates,
	    (unsigned long long)w.done.overlimit,
	    (unsigned long long)w.bad_frames, (unsigned long long)pc.digests,
	    (unsigned long long)pc.parts, (unsigned long long)pc.undeliverable,
	    (unsigned long long)w.done.replayed, (unsigned long long)w.done.fenced);
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
	publish_free(w.pub);
	fault_free(w.fault);
	sweep_free(w.sweep);
	chan_free(w.ch);
	config_free(&w.cfg);
	if (w.lock_fd != -1)
		close(w.lock_fd);
	nats_Close();
	return rc;
}
