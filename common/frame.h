/*
 * frame: the supervisor <-> worker protocol over a Unix-domain socketpair.
 *
 * Every frame is a 16-byte header followed by a body:
 *
 *     uint32 len    total length, header included (checked before any use)
 *     uint16 type   enum frame_type; an unknown type is fatal to the channel
 *     uint16 flags  0, or FRAME_F_RECV_TIME and FRAME_F_REPLAY on a DIGEST (nothing else
 *                   is accepted)
 *     uint64 id     supervisor-assigned, strictly increasing per channel
 *
 * little-endian (both ends are the same host).  Bodies are fixed binary
 * layouts encoded and decoded only here, so a field is never trusted
 * without a bounds check.
 */
#ifndef FRAME_H
#define FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alarm.h"
#include "buf.h"
#include "histo.h"

/* Where a worker finds its channel to the supervisor. */
#define FRAME_CHANNEL_FD 3

#define FRAME_HDR_LEN 16
#define FRAME_MAX_LEN (4u << 20)   /* 4 MiB: a HELLO carries the config file */

enum frame_type {
	/* supervisor -> worker */
	FRAME_HELLO = 1,     /* body: u32 slot, u32 nslots, config text */
	FRAME_UPDATE = 2,    /* body: an AlarmStatusChanged, see frame_put_update */
	FRAME_DIGEST = 3,    /* body: u64 stream_seq (0: none), [u64 received, wall us,] user */
	FRAME_CONFIG = 4,    /* body: config text (SIGHUP) */
	FRAME_STOP = 5,      /* empty: finish, commit, report, exit */
	FRAME_FENCE = 6,     /* body: i64 monotonic ms deadline (0: none); id 0, see below */
	/* worker -> supervisor */
	FRAME_READY = 64,    /* empty: store open, NATS connected */
	FRAME_DONE = 65,     /* id: every frame up to id is durable */
	FRAME_STATS = 66,    /* body: see struct frame_stats (FRAME_STATS_LEN, or older sizes) */
	/* reshard -> supervisor */
	FRAME_PROGRESS = 67, /* body: 4 x u64: stores done, stores in all, users moved, users in all */
	/* worker -> supervisor, cluster mode, just before a DONE */
	FRAME_FENCED = 68,   /* id: frames up to id include a request skipped past the fence */
};

/*
 * A DIGEST whose body carries the wall-clock time the supervisor received
 * the request, for the digest latency histogram.  A flag rather than a new
 * layout: DIGEST frames written to a spill by an older supervisor (flags
 * 0) still decode.
 */
#define FRAME_F_RECV_TIME 0x0001
/*
 * A DIGEST replayed to rebuild a partition's state after a takeover
 * (cluster mode): its request was answered by the partition's earlier
 * owner, so the worker marks the user's pending alarms delivered and
 * records the request as answered, exactly as for a real one, but
 * publishes nothing.  A flag for the same reason as the one above.
 */
#define FRAME_F_REPLAY 0x0002

/*
 * FENCE (cluster mode): until when this instance's leases are known to
 * hold.  A worker answers no request (a DIGEST without FRAME_F_REPLAY)
 * handled after the deadline of the last FENCE it got: an instance that
 * may have lost its partitions must not publish for them.  It is not a
 * user message: it travels outside the queue (id 0), ahead of frames
 * queued before it, and is never reported done.
 */

struct frame {
	uint16_t type;
	uint16_t flags;
	uint64_t id;
	const uint8_t *body;
	uint32_t body_len;
};

/*
 * What a worker reports about itself.  The first five are the original
 * 40-byte body; an older worker's 40-byte or FRAME_STATS_LEN_HISTO frame
 * still decodes, with the rest 0.  Counters count since the worker process started (the pool adds
 * up a slot's processes).
 */
struct frame_stats {
	uint64_t users, alarms, tombstones, bytes, msgs;
	uint64_t map_size;        /* LMDB map size now (bytes is what is in use) */
	uint64_t commits;         /* batches committed */
	uint64_t digests, digest_parts, digest_bytes;  /* published: digests, messages, payload bytes */
	uint64_t overlimit;       /* updates refused as over max_alarms_per_user */
	struct histo commit_latency;  /* commit of a batch: store commit and digest flush */
	struct histo digest_latency;  /* request received by the supervisor -> digest published */
	uint64_t digests_fenced;  /* requests not answered: handled past the FENCE deadline */
	uint64_t digest_msgs_resent;  /* digest messages published again after a NATS reconnect */
};
/*
 * The bodies before digests_fenced and before digest_msgs_resent, still
 * decoded (the rest 0), and the whole one.
 */
#define FRAME_STATS_LEN_HISTO (11 * 8 + 2 * 8 * (HISTO_BUCKETS + 1))
#define FRAME_STATS_LEN_FENCED (FRAME_STATS_LEN_HISTO + 8)
#define FRAME_STATS_LEN (FRAME_STATS_LEN_FENCED + 8)

struct frame_progress {
	uint64_t stores_done, stores, users_moved;
	uint64_t users;         /* in all stores before the move, so the master can show moved/total */
};

/*
 * Take the next complete frame from p[0..len).  Returns 1 with *f filled
 * and *used set, 0 when more bytes are needed, -1 on a protocol error
 * (length out of bounds, unknown type) with *err set to a static string.
 */
int frame_next(const uint8_t *p, size_t len, struct frame *f, size_t *used, const char **err);

/* Encoders append one whole frame to b; 0, or -1 on ENOMEM. */
int frame_put(struct buf *b, enum frame_type type, uint64_t id, const void *body, size_t body_len);
int frame_put_hello(struct buf *b, uint32_t slot, uint32_t nslots, const char *conf, size_t conf_len);
int frame_put_update(struct buf *b, uint64_t id, const struct alarm_msg *m);
int frame_put_digest(struct buf *b, uint64_t id, uint64_t stream_seq, const char *user, size_t user_len);
/*
 * The same, with FRAME_F_RECV_TIME: received is wall-clock microseconds;
 * flags: 0 or FRAME_F_REPLAY.
 */
int frame_put_digest_at(struct buf *b, uint64_t id, uint64_t stream_seq, int64_t received,
    uint16_t flags, const char *user, size_t user_len);
int frame_put_fence(struct buf *b, int64_t deadline_ms);
int frame_put_stats(struct buf *b, const struct frame_stats *st);
int frame_put_progress(struct buf *b, const struct frame_progress *pr);

/* Rewrite the id of the frame at p (used when a queued frame gets its id at routing time). */
void frame_set_id(uint8_t *p, uint64_t id);

/* Decoders: 0, or -1 if the body is malformed (strings point into f->body). */
int frame_get_hello(const struct frame *f, uint32_t *slot, uint32_t *nslots,
    const char **conf, size_t *conf_len);
int frame_get_update(const struct frame *f, struct alarm_msg *m);
int frame_get_digest(const struct frame *f, uint64_t *stream_seq, const char **user, size_t *user_len);
/* When the supervisor received a DIGEST's request (wall us), or 0 when the frame does not say. */
int64_t frame_digest_received(const struct frame *f);
/* Whether a DIGEST is a replay (FRAME_F_REPLAY): answered before, to be marked only. */
bool frame_digest_replay(const struct frame *f);
/* The deadline of a FENCE: monotonic ms, 0 for none, never negative. */
int frame_get_fence(const struct frame *f, int64_t *deadline_ms);
int frame_get_stats(const struct frame *f, struct frame_stats *st);
int frame_get_progress(const struct frame *f, struct frame_progress *pr);

#endif
