/*
 * leasekv: the cluster's lease bucket as data (docs/DESIGN.md, "Leases
 * as built").  Keys "member.<instance>", "part.<p>", "router"; values
 * {"instance":"..","since":<unix ms>,"epoch":N}.  And the two operations
 * every lease change is made of: a write, or a delete marker, that is
 * stored only if the key's last revision is the one expected (so of two
 * instances racing for one revision exactly one wins), and a read of a
 * key's last revision as the stream holds it.  supervisor/lease.c decides
 * what to write; alarmctl partitions only reads values.
 */
#ifndef LEASEKV_H
#define LEASEKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "config.h"

struct leasekv_value {
	char instance[CONFIG_INSTANCE_MAX + 1];   /* "": the value names nobody */
	int64_t since_ms;                         /* unix ms the holder acquired it; 0: not given */
	/*
	 * The lease's epoch: the revision of the acquiring write, which that
	 * write cannot know.  0 in it; renewals carry it.
	 */
	uint64_t epoch;
};

/* The value's text into buf.  0, or -1 when it does not fit. */
int leasekv_format(char *buf, size_t len, const struct leasekv_value *v);
/* A value as stored; what it lacks or does not parse is left zero. */
void leasekv_parse(const void *data, int len, struct leasekv_value *v);

/*
 * Store value (NUL-terminated), or a delete marker when value is NULL,
 * under key of bucket only if the key's last revision is expect (0: it
 * has none).  *rev gets the new revision.  A lost race is NATS_ERR with
 * *jerr JSStreamWrongLastSequenceErr; anything else is trouble (no
 * answer within wait_ms, no connection).
 */
natsStatus leasekv_write(natsConnection *nc, const char *bucket, const char *key, const char *value,
    uint64_t expect, int64_t wait_ms, uint64_t *rev, jsErrCode *jerr);

/* One write of leasekv_write_all: key, value, expect in; status, jerr, rev out. */
struct leasekv_put {
	const char *key;
	const char *value;
	uint64_t expect;
	natsStatus status;          /* NATS_TIMEOUT until its answer came */
	jsErrCode jerr;
	uint64_t rev;
};

/*
 * leasekv_write for n keys at once: every write goes out before the first
 * answer is awaited, so a round costs one round trip to the stream's
 * leader, not n (a holder of many partitions renewed one by one could not
 * finish in time on a busy cluster).  Waits up to wait_ms in all.
 * NATS_OK when every answer came (each put says how it went).
 */
natsStatus leasekv_write_all(natsConnection *nc, const char *bucket, struct leasekv_put *puts, int n,
    int64_t wait_ms);

struct leasekv_last {
	uint64_t rev;               /* 0: the key has no message */
	bool live;                  /* a value, not a delete marker */
	struct leasekv_value value; /* when live */
	int64_t age_ms;             /* when live: how long ago it was written, by our wall clock */
};

/* The key's last message, from the stream's leader.  NATS_OK also when it has none. */
natsStatus leasekv_read(jsCtx *js, const char *bucket, const char *key, struct leasekv_last *last,
    jsErrCode *jerr);

#endif
