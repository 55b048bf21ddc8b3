/*
 * frame: the supervisor <-> worker protocol over a Unix-domain socketpair.
 *
 * Every frame is a 16-byte header followed by a body:
 *
 *     uint32 len    total length, header included (checked before any use)
 *     uint16 type   enum frame_type; an unknown type is fatal to the channel
 *     uint16 flags  reserved, 0
 *     uint64 id     supervisor-assigned, strictly increasing per channel
 *
 * little-endian (both ends are the same host).  Bodies are fixed binary
 * layouts encoded and decoded only here, so a field is never trusted
 * without a bounds check.
 */
#ifndef FRAME_H
#define FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "alarm.h"
#include "buf.h"

/* Where a worker finds its channel to the supervisor. */
#define FRAME_CHANNEL_FD 3

#define FRAME_HDR_LEN 16
#define FRAME_MAX_LEN (4u << 20)   /* 4 MiB: a HELLO carries the config file */

enum frame_type {
	/* supervisor -> worker */
	FRAME_HELLO = 1,     /* body: u32 slot, u32 nslots, config text */
	FRAME_UPDATE = 2,    /* body: an AlarmStatusChanged, see frame_put_update */
	FRAME_DIGEST = 3,    /* body: u64 stream_seq (0: none), user */
	FRAME_CONFIG = 4,    /* body: config text (SIGHUP) */
	FRAME_STOP = 5,      /* empty: finish, commit, report, exit */
	/* worker -> supervisor */
	FRAME_READY = 64,    /* empty: store open, NATS connected */
	FRAME_DONE = 65,     /* id: every frame up to id is durable */
	FRAME_STATS = 66,    /* body: 5 x u64: users, alarms, tombstones, bytes, msgs */
	/* reshard -> supervisor */
	FRAME_PROGRESS = 67, /* body: 4 x u64: stores done, stores in all, users moved, users in all */
};

struct frame {
	uint16_t type;
	uint64_t id;
	const uint8_t *body;
	uint32_t body_len;
};

struct frame_stats {
	uint64_t users, alarms, tombstones, bytes, msgs;
};

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
int frame_put_stats(struct buf *b, const struct frame_stats *st);
int frame_put_progress(struct buf *b, const struct frame_progress *pr);

/* Rewrite the id of the frame at p (used when a queued frame gets its id at routing time). */
void frame_set_id(uint8_t *p, uint64_t id);

/* Decoders: 0, or -1 if the body is malformed (strings point into f->body). */
int frame_get_hello(const struct frame *f, uint32_t *slot, uint32_t *nslots,
    const char **conf, size_t *conf_len);
int frame_get_update(const struct frame *f, struct alarm_msg *m);
int frame_get_digest(const struct frame *f, uint64_t *stream_seq, const char **user, size_t *user_len);
int frame_get_stats(const struct frame *f, struct frame_stats *st);
int frame_get_progress(const struct frame *f, struct frame_progress *pr);

#endif
