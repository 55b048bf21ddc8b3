/*
 * faulttest: fault-injection tests of alarm-supervisor (issue 3).  Shared
 * pieces: options and reporting, the per-scenario environment (one
 * nats-server, one service, a digest collector, all in a private temp
 * dir), a publisher that rides out broker outages, an update-only load
 * generator, fault windows of fresh alarms, and the final check against
 * the model.
 *
 * Built on the shared test helpers (tests/lib: harness, bus, tap, model,
 * traffic), which it links but does not change.
 */
#ifndef FAULT_H
#define FAULT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/bus.h"
#include "../lib/harness.h"
#include "../lib/model.h"
#include "../lib/tap.h"
#include "../lib/traffic.h"

#define FAULT_MAX_ONLY 16

struct fault_opts {
	const char *bin;          /* the supervisor binary */
	double scale;             /* FAULT_SCALE */
	uint64_t seed;            /* FAULT_SEED */
	bool keep;                /* FAULT_KEEP (or ITEST_KEEP): keep temp dirs */
	const char *only[FAULT_MAX_ONLY];
	int nonly;
};

extern struct fault_opts fault_opts;

/* ---- options (reporting: ../lib/tap.h) ---- */

/* n scaled by FAULT_SCALE, at least `min`. */
int fault_scaled(int n, int min);

/* ---- environment ---- */

struct fenv {
	char dir[PATH_MAX];
	char tag[32];
	struct harness_nats nats;
	struct harness_service svc;
	struct bus *bus;               /* main connection: probes, final round, collector */
	struct collector *digests;
	int workers;
	int probes;
	int failures_at_start;
	bool down;                     /* the service was stopped on purpose */
};

/* Temp dir, nats-server, config, bus, collector, service; waits until it answers. */
int fenv_up(struct fenv *e, const char *tag, int workers);
/* SIGTERM contract (exit 0, no worker left), sanitizer scan, logs on failure, cleanup. */
void fenv_down(struct fenv *e);
/* Rewrite the config with another worker count (nothing is signalled). */
int fenv_write_config(struct fenv *e, int workers);
/* The supervisor runs; harness_err set when not. */
int fenv_alive(struct fenv *e);
/* Start the supervisor (same config, same state) and wait until it answers. */
int fenv_start(struct fenv *e);
/* A probe user's update + request makes the round trip (retried until timeout). */
int fenv_wait_ready(struct fenv *e, int64_t timeout_ms);
/*
 * Wait until the consumer has acked the whole stream (no pending, no
 * unacked, ack floor at the last sequence).  Only meaningful with no
 * publisher running.
 */
int fenv_wait_acked(struct fenv *e, int64_t timeout_ms);
/* Worker slots' pids of the running supervisor; -1 if it is not running. */
int fenv_workers(struct fenv *e, struct harness_worker *out, int max);

/* ---- publishing that survives a broker outage ---- */

/*
 * JetStream publish, acked; retried with the same Nats-Msg-Id until
 * `give_up_ms` passes, so a lost ack never loses or duplicates a message.
 * Only a stored message is applied to the model.
 */
int fpub_update(struct bus *b, struct model *m, const char *user, const char *alarm,
    const char *status, const char *ts);
int fpub_request(struct bus *b, struct model *m, const char *user);
/* Publishes that needed at least one retry (outages ridden out). */
uint64_t fpub_retried(void);

/* ---- load ---- */

#define LOAD_MAX_THREADS 4

struct load;

struct load_thread {
	struct load *l;
	int idx;
	struct bus *bus;              /* its own connection */
	pthread_t thread;
	bool started;
	atomic_size_t sent;
	int failed;
	char err[512];
};

struct load {
	/* set by the caller */
	struct fenv *env;
	struct model *model;
	const char *prefix;           /* users PREFIX-NNNN */
	int users;
	int alarms;                   /* per user */
	int threads;                  /* 1..LOAD_MAX_THREADS; a user belongs to one */
	int request_pct;              /* 0 in crash scenarios: updates only */
	int dup_pct;                  /* exact repeats of recent updates */
	int chunk;                    /* events shuffled together */
	int pause_ms;                 /* between chunks */
	size_t max_events;            /* per thread, whatever happens */
	int64_t base_sec;             /* timestamps start here, move forward */
	uint64_t seed;
	/* optional: told of every stored update (from the load threads) */
	void (*on_update)(void *arg, const char *user, const char *alarm, const char *status,
	    const char *ts);
	void *on_update_arg;
	/* state */
	atomic_bool stop;
	struct load_thread th[LOAD_MAX_THREADS];
};

int load_start(struct load *l);
/* Stop, join, close; -1 (harness_err) if a thread failed to publish. */
int load_stop(struct load *l);
size_t load_sent(struct load *l);

/*
 * Seed state before faults: every user gets every alarm (plus repeats), then
 * one request each, shuffled; waits for the digests and for the whole stream
 * to be acked, so nothing of it (a request above all) is replayed later.
 */
int fault_seed(struct fenv *e, struct model *m, const char *prefix, int users, int alarms,
    int64_t base_sec);

/* ---- the final check ---- */

struct fault_result {
	size_t alarms_checked;        /* entries in every digest compared with the model */
	size_t digests_checked;
	size_t repeats;               /* exact repeats received (at-least-once) */
	size_t users;
};

/*
 * Stop the load (l may be NULL), make sure the test's own connection is
 * up, send a marker update + a request for every model user, wait for
 * every user's last digest, and compare each user's digests with the model.
 * allow_dup accepts exact repeats of a digest (crash scenarios).  Then the
 * stream must end fully acked.  Reports "<tag>/no_alarm_lost_or_wrong",
 * "<tag>/all_acked" and "<tag>/digest_json_shape".
 */
void fault_finish(struct fenv *e, struct model *m, struct load *l, bool allow_dup,
    struct fault_result *res);

/* ---- side traffic: digests requested during faults ---- */

/*
 * Users of their own (prefix "side") that also request digests while
 * faults are injected.  What such a digest must hold depends on what a
 * crash replayed, so they are kept out of the model comparison; each one is
 * checked for what holds whatever was replayed: ordered by LatestChangedAt
 * then AlarmID, no alarm twice, and every entry an update that was really
 * published (status and instant, printed canonically).
 */
struct side;

struct side *side_start(struct fenv *e, uint64_t seed_mix);
/* Stop its load and check every digest its users received: "<tag>/mid_fault_digests". */
void side_finish(struct side *s);
void side_free(struct side *s);

/* ---- fault windows: fresh updates every fault must keep ---- */

/*
 * A publisher thread of its own for window users ("win-NN", in the
 * scenario's model m, so the final round requests and compares their
 * digests too).  While a window is open it publishes updates of fresh
 * alarms (an AlarmID never used before and never touched again, WARNING or
 * CRITICAL), and records each one the broker acked in the open window.
 * Each of them must be in its user's next digest, with exactly that status
 * and instant.
 */
struct fwin;

struct fwin *fwin_start(struct fenv *e, struct model *m, uint64_t seed_mix);
/*
 * Open the window of the next fault (the open one, if any, ends here):
 * call it just before injecting the fault.  After an idle spell it returns
 * once the window's first update is acked and some more are in flight.
 */
void fwin_open(struct fwin *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Close the open window: the service is back and answering.  Publishing pauses. */
void fwin_close(struct fwin *w);
/* Stop the publisher; before fault_finish, so its final round covers the window users. */
int fwin_stop(struct fwin *w);
/*
 * After fault_finish: "<tag>/window_updates_checked" fails when an update
 * recorded in a window is in none of its user's digests (LOST), when a
 * window recorded nothing, or when fewer than faults * min_per_fault were
 * recorded.  Prints the count per window; returns the updates checked.
 */
size_t fwin_check(struct fwin *w, int faults, size_t min_per_fault);
void fwin_free(struct fwin *w);

/* ---- scenarios ---- */

void scn_worker_kill9(void);
void scn_supervisor_kill9(void);
void scn_nats_restart(void);
void scn_down_while_publishing(void);
void scn_reshard_under_load(void);
void scn_replay_requests(void);

#endif
