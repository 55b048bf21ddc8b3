/*
 * traffic: generated message sequences, sent through the bus and fed to
 * the model in the same order, and the check that every user's received
 * digests are the ones the model recorded.
 *
 * Order is what makes the model exact: one thread publishes a user's
 * messages on one connection, acked one by one, so the stream holds them
 * in the order the model saw them.
 */
#ifndef TRAFFIC_H
#define TRAFFIC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "harness.h"
#include "model.h"

/* ---- randomness (reproducible from ITEST_SEED) ---- */

struct rng {
	uint64_t s;
};

void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint32_t rng_below(struct rng *r, uint32_t n);

/*
 * A random ChangedAt at base_sec + [0, spread_sec) seconds, in a random
 * but valid shape: 0-9 fraction digits (trailing zeros sometimes kept),
 * "Z", "+00:00" or a non-zero offset.
 */
void traffic_random_ts(struct rng *r, int64_t base_sec, int spread_sec, char *buf, size_t cap);
/* WARNING/CRITICAL twice as likely as CLEARED. */
const char *traffic_random_status(struct rng *r);

/* ---- plans ---- */

struct event {
	bool request;
	char *user;
	char *alarm;     /* updates only */
	char *status;
	char *ts;
};

struct plan {
	struct event *ev;
	size_t n, cap;
};

int plan_update(struct plan *p, const char *user, const char *alarm, const char *status,
    const char *ts);
int plan_request(struct plan *p, const char *user);
void plan_shuffle(struct plan *p, struct rng *r);
/*
 * users ("PREFIX-0000", ...) x alarms x 4 updates in a 6 s window, 10% of
 * them repeated, 3 digest requests per user, all shuffled.  0 or -1 (ENOMEM).
 */
int plan_users(struct plan *p, struct rng *rng, const char *prefix, int users, int alarms);
void plan_free(struct plan *p);

/* Publish one event, then apply it to the model (only once it is stored). */
int event_send(const struct event *e, struct bus *b, struct model *m);
/* All events in order; stops at the first failure. */
int plan_send(const struct plan *p, struct bus *b, struct model *m);

/* ---- continuous traffic on a thread ---- */

struct runner {
	/* set by the caller */
	struct bus *bus;
	struct model *model;
	uint64_t seed;
	const char *prefix;      /* user ids: PREFIX-NNNN */
	int users;
	int alarms;              /* per user */
	int batch;               /* messages between pauses */
	int pause_ms;
	size_t max_events;       /* hard bound, whatever happens */
	int64_t base_sec;        /* timestamps start here and move forward */
	/* state */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_bool ended;       /* the thread is done (stopped, failed or at max_events) */
	atomic_size_t sent;
	int failed;
	char err[512];
};

int runner_start(struct runner *r);
/* Stop and join; -1 (reason in harness_err) if a publish failed. */
int runner_stop(struct runner *r);
/*
 * Wait until the thread has sent `more` events past what it had sent at
 * the call: load is flowing.  -1 if it ended first or the time ran out.
 */
int runner_wait_sent(struct runner *r, size_t more, int64_t timeout_ms);

/* ---- checking ---- */

/*
 * For every model user: one marker alarm raised plus a digest request, so
 * every user's last digest is non-empty and marks the end of its stream.
 */
int traffic_final_round(struct bus *b, struct model *m, const char *tag);
/* The alarm ID the final round raises: "zz-final-TAG" (cap >= 64). */
void traffic_marker(const char *tag, char *buf, size_t cap);
/*
 * Wait until every model user has at least its expected number of digests,
 * or (marker != NULL, after a final round) its last digest holds the
 * marker alarm: a user's digests arrive in order, so nothing more is due
 * and a shortfall is reported by traffic_verify at once, not after the
 * timeout.  Gives up early once `producer` (may be NULL) has exited.
 */
int traffic_wait(struct model *m, struct collector *c, bool allow_dup, int64_t timeout_ms,
    struct harness_proc *producer, const char *marker);
/*
 * Compare every model user's expected digests with the received ones;
 * allow_dup (crash scenarios) drops exact repeats first.  Prints the first
 * differences as "# " lines; -1 with a summary in harness_err on mismatch.
 */
int traffic_verify(struct model *m, struct collector *c, bool allow_dup);
/*
 * The same, except that an expected digest whose request was modelled in
 * [from_ms, to_ms] (harness_now_ms) may be missing: a core NATS publish in
 * flight when a nats-server node dies is lost (DESIGN.md, "Durability").
 * Every other digest must be there, in order; *lost counts the missing
 * ones, each printed as a "# " line.
 */
int traffic_verify_lossy(struct model *m, struct collector *c, bool allow_dup, int64_t from_ms,
    int64_t to_ms, size_t *lost);
/* The same for one user, without printing. */
int traffic_verify_user(struct model *m, struct collector *c, const char *user, bool allow_dup);

#endif
