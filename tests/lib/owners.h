/*
 * owners: who holds which partition of a cluster-mode deployment (issue 14),
 * sampled on a thread every period_ms from both sides: the lease bucket
 * (kvStore_Get of "part.<p>" and "router": the holder, authoritative) and
 * every watched instance's /metrics (alarm_digest_partition_owned,
 * alarm_digest_router_active: what the instance itself believes).
 *
 * The sampler judges as it goes:
 *  - double ownership: two instances claim one partition for longer than
 *    double_ms.  Each /metrics is a snapshot the instance refreshes on its
 *    own (every 250 ms), and instances are asked one after the other, so a
 *    hand-over shows both for a moment; two owners acting at once show for
 *    as long as the stale one's lease thread takes to notice.
 *  - stale claims: an instance claims a partition the bucket gives to
 *    another for longer than lag_ms (its lease thread notices a loss within
 *    its fence, shorter than lease_ttl);
 *  - unowned windows: a partition with no holder in the bucket (absent,
 *    expired or released) for longer than the current phase's bound.
 * An instance just resumed from SIGSTOP may claim what it lost until its
 * lease thread runs: owners_watch gives it a grace period in which its
 * claims are not judged (the scenario checks them itself).
 *
 * Router ownership is partition index `partitions` (OWNERS_ROUTER()).
 * Failing calls return -1 with harness_err() set.
 */
#ifndef OWNERS_H
#define OWNERS_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#define OWNERS_MAX_INST 8
#define OWNERS_MAX_PARTS 63      /* partitions + the router fit one uint64_t mask */
#define OWNERS_ROUTER(P) (P)

/* Holder values besides an instance index. */
#define OWNERS_NONE (-1)         /* no value, expired or released */
#define OWNERS_STRANGER (-2)     /* a name that is none of ours */
#define OWNERS_UNKNOWN (-3)      /* the bucket did not answer */

struct owners;

struct owners_view {
	int64_t at_ms;                    /* harness_now_ms() of the round's end */
	uint64_t rounds;
	int holder[OWNERS_MAX_PARTS + 1]; /* from the bucket */
	uint64_t epoch[OWNERS_MAX_PARTS + 1]; /* the holder's lease revision */
	uint64_t claims[OWNERS_MAX_INST]; /* from each instance's /metrics, bit p */
	bool answered[OWNERS_MAX_INST];   /* its /metrics answered this round */
	bool has_metrics[OWNERS_MAX_INST]; /* ... with the cluster series in it */
};

struct owners_stats {
	uint64_t rounds;
	uint64_t kv_errors, http_errors;
	uint64_t overlaps;                /* two claimers for a moment: a hand-over seen mid-way */
	uint64_t doubles;                 /* two claimers for longer than double_ms */
	uint64_t stale;                   /* claims against the bucket past lag_ms */
	uint64_t long_unowned;            /* windows past their phase's bound */
	int64_t max_stale_ms;             /* the longest claim against the bucket */
	char first_problem[512];          /* the first double, stale claim or long window */
};

/*
 * conn: the sampler's own connection to the cluster (it keeps using it;
 * closed by the caller after owners_free).  double_ms: how long two
 * instances may both claim one partition; lag_ms: how long an instance's
 * claim may disagree with the bucket.
 */
struct owners *owners_new(natsConnection *conn, const char *bucket, int partitions,
    int64_t period_ms, int64_t double_ms, int64_t lag_ms);
/* Instance `name` with /metrics on 127.0.0.1:http_port; its index, or -1. */
int owners_add(struct owners *o, const char *name, int http_port);
/*
 * Ask it (on) or not (off: stopped, killed, gone).  grace_ms > 0: its
 * claims are not judged for that long from now.
 */
void owners_watch(struct owners *o, int idx, bool on, int64_t grace_ms);
/*
 * Name the phase that starts now and its bound on unowned windows (<= 0:
 * none, e.g. while starting).  Prints the ending phase's moves and longest
 * unowned window.
 */
void owners_phase(struct owners *o, const char *name, int64_t unowned_bound_ms);
/* Open the bucket (retried until it exists, within timeout_ms) and start sampling; 0 at once when sampling. */
int owners_start(struct owners *o, int64_t timeout_ms);
void owners_stop(struct owners *o);
void owners_free(struct owners *o);

/* The latest round (zeroed view with rounds == 0 before the first). */
void owners_view(struct owners *o, struct owners_view *v);
/* Wait for a round that ends after now; -1 when none came within timeout_ms. */
int owners_next(struct owners *o, struct owners_view *v, int64_t timeout_ms);
void owners_stats(struct owners *o, struct owners_stats *st);
/* Moves (holder A then holder B, A != B, gaps ignored) since owners_new. */
uint64_t owners_moves(struct owners *o);
const char *owners_name(struct owners *o, int idx);

/* "p0,p3,router" for a mask (parts = the partition count). */
void owners_mask_str(uint64_t mask, int parts, char *buf, size_t cap);

#endif
