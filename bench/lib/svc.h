/*
 * svc: one run of the real service for the benchmark: a fresh nats-server
 * (JetStream, temp store), alarm-supervisor with a config written to the
 * same temp dir, a readiness probe, the digest sink, a publisher
 * connection and a fresh SPEC model; counters read from the process
 * titles; the log scanned for warnings and errors afterwards.
 */
#ifndef BENCH_SVC_H
#define BENCH_SVC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../tests/lib/harness.h"
#include "../../tests/lib/model.h"
#include "load.h"
#include "pace.h"
#include "pub.h"
#include "sink.h"

#define SVC_MAX_WORKERS 64

struct svc_run {
	/* set by svc_start's caller through its arguments */
	const char *tag;          /* temp dir tag and probe user suffix */
	bool core;
	int workers;
	int stall_seconds;
	/* state */
	char dir[PATH_MAX], state[PATH_MAX];
	struct harness_nats nats;
	struct harness_service svc;
	struct harness_worker w[SVC_MAX_WORKERS];
	int nw;
	struct dsink *sink;
	natsConnection *pub;
	struct conn_events pub_ev;
	struct model *model;
	int probe_msgs;           /* published by the readiness probe */
	bool died;                /* the supervisor exited while digests were awaited */
};

/*
 * Everything up and answering; -1 with harness_err() (call svc_stop either way).
 * prepare (may be NULL) runs before the service starts, with r->state and
 * r->model set: a seeding step writes the state directory there.
 */
int svc_start(struct svc_run *r, const char *bin, const char *tag, bool core, int workers,
    int stall_seconds, int (*prepare)(struct svc_run *r, void *arg), void *prepare_arg);
/* SIGTERM the service (30 s bound), stop nats-server, remove (or keep) the temp dir. */
void svc_stop(struct svc_run *r, bool keep, char *status, size_t cap);

/* Counters from the titles: the master's in=, the workers' msgs= and alarms= summed. */
struct svc_counts {
	int64_t master_in, worker_msgs, worker_alarms;
};
void svc_counts(struct svc_run *r, struct svc_counts *c);

/*
 * Wait for `target` digests in the sink; give up when nothing moves (the
 * digests, the master's intake count, the workers' message counts) for
 * stall_seconds, or the supervisor exits (r->died).  Returns the count.
 */
size_t svc_wait_digests(struct svc_run *r, size_t target);

/*
 * Paced traffic into the service, generated on the fly and applied to the
 * model; requests that must produce a digest are recorded for `phase`.
 * sample (may be NULL) runs every 5 s and at the end.
 */
int svc_paced(struct svc_run *r, struct load *L, double rate, double seconds, int req_every,
    int phase, void (*sample)(struct svc_run *, void *), void *sample_arg, struct paced *p);

/* Lines containing needle_a (errors) or needle_b (warnings); the first few kept. */
struct logscan {
	int warn, error;
	char first[4][300];
	int nfirst;
};
void svc_scan_log(const char *path, const char *needle_a, const char *needle_b,
    struct logscan *ls);

#endif
