/*
 * itest: the integration test program's shared pieces: options, result
 * reporting (TAP-like "ok N - name" lines), and an "env": one nats-server
 * plus one running service, with a bus, a digest collector and a config
 * file in a private temp dir.
 */
#ifndef ITEST_H
#define ITEST_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/bus.h"
#include "../lib/harness.h"
#include "../lib/model.h"
#include "../lib/tap.h"
#include "../lib/traffic.h"

struct itest_opts {
	const char *bin;          /* the supervisor binary */
	double scale;             /* ITEST_SCALE: multiplies traffic sizes */
	uint64_t seed;            /* ITEST_SEED */
	const char *only[32];     /* selected names (scenario or scenario/case) */
	int nonly;
};

extern struct itest_opts itest_opts;

/* ---- options (reporting: tap.h) ---- */

/* Scenario/case selection: true when nothing was selected or `name` matches. */
bool itest_selected(const char *scenario, const char *sub);
/* Traffic size scaled by ITEST_SCALE, at least 1. */
int itest_scaled(int n);

/* ---- environments ---- */

struct env_config {
	int workers;
	bool core;                /* intake = core */
	int shutdown_timeout_s;
	const char *bad_workers;  /* when set: "workers = <this>" (an invalid config) */
	const char *nats_conf;    /* when set: nats-server runs with this config file text */
	const char *extra_conf;   /* when set: appended to the service's config file */
	const char *nats_extra;   /* more [nats] lines, each ending in \n (may be NULL) */
	const char *service_extra; /* more [service] lines, the same */
	/* [http] listen; NULL: "" (off), so parallel runs never fight over a port */
	const char *http_listen;
	bool dir_shared;          /* temp dir 0711, config 0644: a [service] user can reach them */
	const char *servers;      /* when set: env_up starts no nats-server; these URLs (a cluster) */
	bool cluster;             /* extra_conf sets [cluster] partitions: no "alarm-digest" consumer */
	const char *bin;          /* when set: the supervisor to run instead of itest's */
};

struct env {
	char dir[PATH_MAX];
	char tag[32];
	struct harness_nats nats;
	struct harness_service svc;
	struct bus *bus;
	struct collector *digests;
	struct env_config cfg;
	int failures_at_start;
	int probes;
};

/* The config text for cfg; *bad_line gets the line number of "workers =". */
int env_config_text(const struct env *e, const struct env_config *cfg, char *buf,
    size_t cap, int *workers_line);
int env_write_config(struct env *e, const struct env_config *cfg);
/* Temp dir, nats-server, config, bus, collector, service, and wait until ready. */
int env_up(struct env *e, const char *tag, const struct env_config *cfg);
/* Stop everything; logs are printed if anything failed since env_up. */
void env_down(struct env *e);
/* Start the service again (same config/state) and wait until ready. */
int env_restart_service(struct env *e);
/* Consumer exists (jetstream) and a probe user's digest makes the round trip. */
int env_wait_ready(struct env *e, int64_t timeout_ms);
/* collector_wait_user that gives up as soon as the supervisor is gone. */
int env_wait_user(struct env *e, const char *user, size_t n, int64_t deadline_ms);
/*
 * Wait until the service can publish nothing more for what was sent so
 * far: its consumer has acked the whole stream, then every digest (and
 * whatever `dl`, may be NULL, captures) the server took in is filed.
 * Core intake acks nothing: a short quiet period stands in for the acks.
 */
/* 30 users' updates and requests (PREFIX-NN), then the final round, compared with the model. */
int env_small_traffic(struct env *e, const char *prefix, uint64_t seed_mix);
int env_settle(struct env *e, struct capture *dl, int64_t deadline_ms);
/*
 * The result of a check that holds only once the service settled: a pass
 * becomes a failure when `unsettled` (env_settle's error; "" when it
 * settled) is set.
 */
int env_settled_rc(int rc, const char *unsettled);
/* The supervisor is still running; sets harness_err when not. */
int env_alive(struct env *e);
/*
 * Stop the traffic thread (r may be NULL), send the final round, wait for
 * every expected digest (or the final round's, whose marker is written to
 * marker) and for the service to settle.
 */
int env_finish(struct env *e, struct model *m, struct runner *r, bool allow_dup, char *marker,
    size_t cap);
/* env_finish, then every user compared with the model. */
int env_finish_and_verify(struct env *e, struct model *m, struct runner *r, bool allow_dup);
/* Checks every scenario ends with: no malformed digest, no drops. */
int env_check_collector(struct env *e);

/* ---- shared case data (spec.c) ---- */

/* {input, as a digest prints it}, NULL-terminated. */
extern const char *const itest_good_timestamps[][2];
/* Each breaks one rule of the SPEC's ChangedAt shape; NULL-terminated. */
extern const char *const itest_bad_timestamps[];

/* ---- scenarios ---- */

void scn_model_check(void);
void scn_harness(void);
void scn_config_check(void);
void scn_spec(void);
void scn_many_users(void);
void scn_worker_kill(void);
void scn_reload_workers(void);
void scn_reload_invalid(void);
void scn_malformed(void);
void scn_sigterm_drain(void);
void scn_core_intake(void);
void scn_big_digest(void);
void scn_undeliverable_digest(void);
void scn_big_message(void);
void scn_dead_letter_fail(void);
void scn_restart_floor(void);
void scn_wire_escape(void);
void scn_hostile(void);
void scn_map_growth(void);
void scn_disk_full(void);
void scn_corrupt_store(void);
void scn_stalled_worker(void);
void scn_hung_worker(void);
void scn_spill_crash(void);
void scn_http(void);
void scn_priv_drop(void);
void scn_priv_refuse(void);
void scn_security_password(void);
void scn_security_token(void);
void scn_security_nkey(void);
void scn_security_creds(void);
void scn_security_creds_bad(void);
void scn_security_tls(void);
void scn_security_failures(void);
void scn_security_permissions(void);
void scn_security_permissions_cluster(void);
void scn_security_reconnect(void);
void scn_ctl(void);
void scn_ctl_user(void);
/* scn_daemon.c */
void scn_sd_notify(void);
void scn_first_run(void);
void scn_unit_file(void);
void scn_cluster_r3(void);
void scn_cluster_node_restart(void);
void scn_cluster_partitions(void);
void scn_router(void);
void scn_worker_replay_fence(void);
void scn_router_r3(void);

#endif
