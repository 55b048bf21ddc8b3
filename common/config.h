/*
 * config: the INI configuration file (parsed with inih).
 *
 * A config is parsed into a fresh struct and only swapped in by the caller
 * once it parsed completely, so a bad file never clobbers the live one.
 * The raw text is kept: the supervisor hands it to each worker it starts,
 * so a worker always runs the exact configuration its supervisor validated,
 * even if the file on disk has changed since.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

enum intake_mode { INTAKE_JETSTREAM = 0, INTAKE_CORE = 1 };

struct config {
	char *text;                  /* raw file contents, NUL-terminated */
	size_t text_len;
	char *path;                  /* where it was read from ("<hello>" for a worker) */

	/* [nats] */
	char *servers;               /* comma-separated URLs; default nats://127.0.0.1:4222 */
	enum intake_mode intake;     /* "jetstream" (default) or "core" */
	char *stream;                /* default ALARMS */
	char *consumer;              /* durable name, default alarm-digest */
	char *deliver_subject;       /* push consumer's subject, default _ALARM_DIGEST.deliver */
	int64_t max_ack_pending;     /* default 65536 */
	int64_t ack_wait_ms;         /* default 60s */
	int64_t stream_max_age_ms;   /* default 7d; 0 = unlimited */
	int64_t stream_max_bytes;    /* default -1 = unlimited */
	int64_t stream_replicas;     /* default 1 */
	char *dead_letter_stream;    /* default ALARMS_DEAD_LETTER; "" = do not create */

	/* [subjects] */
	char *subject_status;        /* default AlarmStatusChanged */
	char *subject_request;       /* default SendAlarmDigest */
	char *subject_digest;        /* default AlarmDigest */
	char *subject_dead_letter;   /* default AlarmDeadLetter */

	/* [service] */
	int64_t workers;             /* default 0 = one per online CPU */
	char *state_dir;             /* default /var/lib/alarm-digest */
	enum log_level log_level;    /* default info */
	int64_t restart_backoff_min_ms;  /* default 1s */
	int64_t restart_backoff_max_ms;  /* default 30s */
	int64_t restart_healthy_ms;      /* a worker up this long resets its backoff; default 10s */
	int64_t crash_loop_max;          /* consecutive quick deaths before a slot is parked; default 5 */
	int64_t shutdown_timeout_ms;     /* default 10s */
	int64_t queue_max_bytes;         /* per-worker output queue; default 16MiB */

	/* [worker] */
	int64_t commit_max_msgs;         /* group commit: at most this many messages; default 1000 */
	int64_t commit_max_ms;           /* ... or this long; default 20ms */
	int64_t tombstone_retention_ms;  /* default 14d */
	int64_t map_size_bytes;          /* LMDB map size per worker; default 4GiB */

	/* [limits] */
	int64_t max_message_bytes;       /* default 65536 */
	int64_t max_id_bytes;            /* default 256, at most 500 */
};

/* Fill every field with its default (strings allocated). 0 or -1 (ENOMEM). */
int config_defaults(struct config *c);

/*
 * Parse a file.  On error returns -1 and writes "FILE:LINE: message" (or
 * "FILE: message") into err.  On success *out owns its strings.
 */
int config_load(const char *path, struct config *out, char *err, size_t errlen);

/* Same, from memory; `name` is used in error messages. */
int config_parse(const char *text, size_t len, const char *name, struct config *out,
    char *err, size_t errlen);

void config_free(struct config *c);

/* Number of workers to run: c->workers, or the online CPU count when 0. */
int config_worker_count(const struct config *c);

/*
 * Report every setting that differs between two configs, once per
 * setting: key is "section.name", restart_needed tells whether a running
 * service can apply it without a restart.
 */
typedef void (*config_change_fn)(const char *key, const char *old_value,
    const char *new_value, bool restart_needed, void *arg);
void config_diff(const struct config *old, const struct config *new,
    config_change_fn fn, void *arg);

/*
 * After a reload, copy every restart-only setting of `running` into
 * `fresh`, so the live configuration describes what actually runs.
 * 0, or -1 on ENOMEM.
 */
int config_keep_restart_only(struct config *fresh, const struct config *running);

/* Helpers shared with other parsers: "250ms", "10s", "5m", "2h", "7d"; "64KiB", "1G", "-1". */
int config_parse_duration_ms(const char *s, int64_t *out);
int config_parse_size(const char *s, int64_t *out);

#endif
