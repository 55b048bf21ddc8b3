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
#include <uuid/uuid.h>

#include "../common/chan.h"
#include "../common/clock.h"
#include "../common/config.h"
#include "../common/frame.h"
#include "../common/layout.h"
#include "../common/lockfile.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "../common/store.h"
#include "../common/title.h"
#include "digest.h"
#include "worker.h"

#define WORKER_READ_CHUNK (256u << 10)
#define WORKER_FLUSH_TIMEOUT_MS 5000
/* Tombstone sweep: a pass a minute after start, then hourly, 1000 users per idle moment. */
#define WORKER_SWEEP_FIRST_MS (60 * 1000)
#define WORKER_SWEEP_EVERY_MS (3600 * 1000)
#define WORKER_SWEEP_USERS 1000

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
	struct buf json;
	/* Counted when the batch commits: a rewound batch is applied again and must not count twice. */
	struct worker_counts { uint64_t msgs, stale, duplicates; } done, batch;
	uint64_t digests, bad_frames;
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
	    "state=%lluB/alarm", w->slot, w->nslots, (unsigned long long)ss.users,
	    (unsigned long long)ss.alarms, (unsigned long long)w->done.msgs,
	    (unsigned long long)w->digests, (unsigned long long)w->done.stale,
	    (unsigned long long)w->done.duplicates,
	    (unsigned long long)(ss.alarms ? ss.bytes / ss.alarms : 0));
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
	if ((w->store = store_open(dir, w->cfg.map_size_bytes, err, sizeof(err))) == NULL) {
		log_errorx("opening state in %s: %s", dir, err);
		return -1;
	}
	struct natsconn_opts o = { .servers = w->cfg.servers, .name = "alarm-supervisor worker" };
	if ((w->nc = natsconn_connect(&o)) == NULL)
		return -1;
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

static int
worker_publish(struct worker *w, uint64_t stream_seq, const char *user, size_t user_len)
{
	char msgid[160];
	natsMsg *m = NULL;
	natsStatus s;

	buf_reset(&w->json);
	if (digest_write_json(&w->digest, user, user_len, &w->json) == -1) {
		log_error("building a digest of %zu alarms", w->digest.n);
		return -1;
	}
	/* A JetStream stream on the digest subject drops a replay's repeat by this id. */
	if (stream_seq > 0) {
		snprintf(msgid, sizeof(msgid), "%s-%llu", w->stream, (unsigned long long)stream_seq);
	} else {
		uuid_t u;
		uuid_generate(u);
		uuid_unparse_lower(u, msgid);
	}
	s = natsMsg_Create(&m, w->cfg.subject_digest, NULL, (const char *)w->json.data, (int)w->json.len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(w->nc, m);
	natsMsg_Destroy(m);
	if (s != NATS_OK) {
		log_errorx("publishing digest %s to %s: %s", msgid, w->cfg.subject_digest, natsStatus_GetText(s));
		return -1;
	}
	w->published = true;
	w->digests++;
	return 0;
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
	free(w->cfg.subject_digest);
	w->cfg.subject_digest = c.subject_digest;
	c.subject_digest = NULL;
	config_free(&c);
	return 0;
}

/* Apply one frame inside the open transaction.  -1: NATS failure, redo the batch. */
static int
worker_apply(struct worker *w, const struct frame *f)
{
	struct alarm_msg m;
	enum state_result res;
	uint64_t seq;
	const char *user;
	size_t ulen;
	bool replayed;

	switch (f->type) {
	case FRAME_UPDATE:
		if (frame_get_update(f, &m) == -1)
			goto bad;
		worker_begin(w);
		if (store_apply(w->store, &m, w->wall_ms, w->cfg.tombstone_retention_ms, &res) == -1)
			worker_storage_failed("applying an update");
		if (res == STATE_STALE || res == STATE_LESS_SEVERE)
			w->batch.stale++;
		else if (res == STATE_DUPLICATE)
			w->batch.duplicates++;
		w->batch.msgs++;
		break;
	case FRAME_DIGEST:
		if (frame_get_digest(f, &seq, &user, &ulen) == -1)
			goto bad;
		worker_begin(w);
		if (store_take_digest(w->store, user, ulen, seq, &w->digest, &replayed) == -1)
			worker_storage_failed("collecting a digest");
		if (replayed)
			log_debug("digest request at stream sequence %llu was answered before; not again",
			    (unsigned long long)seq);
		if (w->digest.n > 0 && worker_publish(w, seq, user, ulen) == -1)
			return -1;
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
	return 0;
bad:
	/* The supervisor encoded it; skipping keeps one bad frame from wedging the slot. */
	w->bad_frames++;
	log_errorx("skipping malformed frame id %llu type %u (%u bytes)", (unsigned long long)f->id,
	    f->type, f->body_len);
	return 0;
}

/* Undo the open transaction and go back to its first frame. */
static void
worker_rewind(struct worker *w)
{
	if (w->txn)
		store_abort(w->store);
	w->txn = false;
	w->published = false;
	chan_rewind(w->ch);
	w->stop = false;
	w->batch = (struct worker_counts){ 0, 0, 0 };
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
			log_warnx("flushing digests to NATS: %s; will redo the batch of %zu frames",
			    natsStatus_GetText(s), w->txn_frames);
			worker_rewind(w);
			return -1;
		}
	}
	if (w->txn && store_commit(w->store) == -1)
		worker_storage_failed("committing");
	w->txn = false;
	chan_consume(w->ch);
	w->done.msgs += w->batch.msgs;
	w->done.stale += w->batch.stale;
	w->done.duplicates += w->batch.duplicates;
	w->batch = (struct worker_counts){ 0, 0, 0 };
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
		if (worker_apply(w, &f) == -1) {
			worker_rewind(w);
			return -1;
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
	    WORKER_SWEEP_USERS, &wrapped) == -1) {
		store_abort(w->store);
		worker_storage_failed("sweeping tombstones");
	}
	if (store_commit(w->store) == -1)
		worker_storage_failed("committing a tombstone sweep");
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

	if (chan_pending(w->ch) == 0 || !w->txn)
		return 1000;
	left = w->txn_start_ms + w->cfg.commit_max_ms - clock_mono_ms();
	return left <= 0 ? 0 : left > 1000 ? 1000 : (int)left;
}

static void
worker_loop(struct worker *w)
{
	bool eof = false;
	int retry_ms = 0;

	while (!w->stop) {
		int timeout = worker_timeout(w);
		struct pollfd pfd = { chan_fd(w->ch), POLLIN, 0 };
		int64_t now;

		if (retry_ms > 0)
			timeout = retry_ms;
		if (!eof && poll(&pfd, 1, timeout) == -1 && errno != EINTR)
			log_error("poll");
		if (worker_terminate)
			eof = true;  /* SIGTERM: finish what we hold, like an EOF */
		if (!eof && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) && worker_receive(w) == 1)
			eof = true;
		retry_ms = 0;
		if (worker_process(w) == -1 ||
		    (worker_commit_due(w, eof, clock_mono_ms()) && worker_commit(w) == -1)) {
			/* NATS unreachable: hold the batch and try again shortly. */
			retry_ms = 500;
			if (eof)
				nanosleep(&(struct timespec){ 0, 500 * 1000000 }, NULL);
			continue;
		}
		now = clock_mono_ms();
		if (!eof && !(pfd.revents & POLLIN))
			worker_sweep(w, now);
		if (now - w->last_report_ms >= 1000) {
			worker_report(w);
			w->last_report_ms = now;
		}
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
	if (worker_hello(&w) == -1 || worker_open(&w) == -1)
		goto out;
	log_info("ready: state in %s/worker-%u, publishing digests on %s", w.cfg.state_dir, w.slot,
	    w.cfg.subject_digest);
	worker_report(&w);
	w.next_sweep_ms = clock_mono_ms() + WORKER_SWEEP_FIRST_MS;
	worker_loop(&w);
	log_info("exiting after %llu messages (%llu stale, %llu duplicates, %llu malformed frames), "
	    "%llu digests", (unsigned long long)w.done.msgs, (unsigned long long)w.done.stale,
	    (unsigned long long)w.done.duplicates, (unsigned long long)w.bad_frames,
	    (unsigned long long)w.digests);
	rc = 0;
out:
	if (w.txn)
		store_abort(w.store);
	store_close(w.store);
	if (w.nc != NULL) {
		natsConnection_FlushTimeout(w.nc, 2000);
		natsConnection_Destroy(w.nc);
	}
	digest_free(&w.digest);
	buf_free(&w.json);
	chan_free(w.ch);
	config_free(&w.cfg);
	if (w.lock_fd != -1)
		close(w.lock_fd);
	nats_Close();
	return rc;
}
