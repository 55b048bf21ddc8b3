/*
 * config: the INI configuration file.
 *
 * One table (config_keys) describes every setting once; defaults,
 * parsing, validation, formatting and diffing are all driven from it, so
 * adding a setting is one row plus its struct field.
 *
 * inih splits lines into section/name/value.  We feed it through our own
 * line reader rather than ini_parse_string because the reader lets us
 * count lines exactly (the Debian build's handler gets no line number),
 * parse text that is not NUL-terminated, and reject the few inputs inih
 * would silently misread: over-long lines (inih splits them), indented
 * lines (inih's multi-line mode glues them onto the previous value) and
 * sections that hold no keys (inih never reports them).
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "listen.h"
#include "quote.h"

/*
 * The text travels to each worker inside one frame (FRAME_MAX_LEN is
 * 4 MiB); a real config is a few KiB, so anything near this is a mistake.
 */
#define CONFIG_MAX_BYTES (1u << 20)
#define WORKERS_MAX      1024

#define MS_SEC  INT64_C(1000)
#define MS_MIN  (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY  (24 * MS_HOUR)
#define KIB     INT64_C(1024)
#define MIB     (1024 * KIB)
#define GIB     (1024 * MIB)

enum key_kind {
	KIND_INT,       /* int64_t, plain decimal */
	KIND_DURATION,  /* int64_t milliseconds, unit mandatory */
	KIND_SIZE,      /* int64_t bytes, optional K/M/G suffix */
	KIND_SERVERS,   /* char *, comma-separated URLs */
	KIND_NAME,      /* char *, JetStream stream or consumer name */
	KIND_SUBJECT,   /* char *, literal NATS subject */
	KIND_PATH,      /* char *, file system path */
	KIND_ACCOUNT,   /* char *, a user or group name */
	KIND_INTAKE,    /* enum intake_mode */
	KIND_LOG_LEVEL, /* enum log_level */
	KIND_WORD,      /* char *, no blanks (a user name) */
	KIND_BOOL,      /* bool, yes or no */
	KIND_LISTEN,    /* char *, host:port to bind (listen.h) */
};

#define KEY_RESTART       0x01u  /* read at start only; SIGHUP cannot apply it */
#define KEY_EMPTY_OK      0x02u  /* "" is a meaningful value (feature off) */
#define KEY_UNLIMITED     0x04u  /* a size of -1 means unlimited */
/* Keys in the same group must differ, or the service would eat its own output. */
#define KEY_UNIQUE_SUBJECT 0x08u
#define KEY_UNIQUE_STREAM  0x10u
#define KEY_UNIQUE_MASK    (KEY_UNIQUE_SUBJECT | KEY_UNIQUE_STREAM)
/* A size of 0 means "the broker's max_payload", read from the connection at start. */
#define KEY_ZERO_BROKER    0x20u
/* A file holding a secret: must exist and be readable when the config is loaded. */
#define KEY_SECRET_FILE    0x40u

struct key_def {
	const char *section;
	const char *name;
	enum key_kind kind;
	unsigned flags;
	size_t offset;          /* of the field in struct config */
	int64_t min, max;       /* numeric kinds only */
	const char *def;        /* default, written as in the config file */
};

/*
 * Offset of a field, checked at compile time against the C type the kind
 * implies: a mismatched row is a "pointer type mismatch" error.
 */
#define FIELD(f, type) (offsetof(struct config, f) + \
	0 * sizeof(1 ? &((struct config *)0)->f : (type *)0))
#define I64(f)   FIELD(f, int64_t)
#define STR(f)   FIELD(f, char *)

#define ROW(sec, nm, kd, fl, off, lo, hi, df) { .section = sec, .name = nm, \
	.kind = kd, .flags = fl, .offset = off, .min = lo, .max = hi, .def = df }

#define R KEY_RESTART

static const struct key_def config_keys[] = {
	ROW("nats", "servers", KIND_SERVERS, R, STR(servers), 0, 0, "nats://127.0.0.1:4222"),
	ROW("nats", "intake", KIND_INTAKE, R, FIELD(intake, enum intake_mode), 0, 0, "jetstream"),
	ROW("nats", "stream", KIND_NAME, R | KEY_UNIQUE_STREAM, STR(stream), 0, 0, "ALARMS"),
	ROW("nats", "consumer", KIND_NAME, R, STR(consumer), 0, 0, "alarm-digest"),
	ROW("nats", "deliver_subject", KIND_SUBJECT, R | KEY_UNIQUE_SUBJECT, STR(deliver_subject),
	    0, 0, "_ALARM_DIGEST.deliver"),
	ROW("nats", "max_ack_pending", KIND_INT, R, I64(max_ack_pending), 1, 10000000, "65536"),
	ROW("nats", "ack_wait", KIND_DURATION, R, I64(ack_wait_ms), 100, MS_DAY, "60s"),
	ROW("nats", "stream_max_age", KIND_DURATION, R, I64(stream_max_age_ms),
	    0, 3650 * MS_DAY, "7d"),
	ROW("nats", "stream_max_bytes", KIND_SIZE, R | KEY_UNLIMITED, I64(stream_max_bytes),
	    MIB, INT64_MAX, "-1"),
	/* Not below the broker's max_payload by default: a message it refuses is never dead-lettered. */
	ROW("nats", "stream_max_msg_size", KIND_SIZE, R | KEY_UNLIMITED | KEY_ZERO_BROKER,
	    I64(stream_max_msg_size), KIB, GIB, "0"),
	ROW("nats", "stream_replicas", KIND_INT, R, I64(stream_replicas), 1, 5, "1"),
	ROW("nats", "dead_letter_stream", KIND_NAME, R | KEY_EMPTY_OK | KEY_UNIQUE_STREAM,
	    STR(dead_letter_stream), 0, 0, "ALARMS_DEAD_LETTER"),
	ROW("nats", "dead_letter_max_bytes", KIND_SIZE, R | KEY_UNLIMITED, I64(dead_letter_max_bytes),
	    MIB, INT64_MAX, "1G"),
	ROW("nats", "dead_letter_max_msg_size", KIND_SIZE, R | KEY_UNLIMITED | KEY_ZERO_BROKER,
	    I64(dead_letter_max_msg_size), KIB, GIB, "0"),
	ROW("nats", "user", KIND_WORD, R | KEY_EMPTY_OK, STR(nats_user), 0, 0, ""),
	ROW("nats", "password_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(password_file), 0, 0, ""),
	ROW("nats", "token_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(token_file), 0, 0, ""),
	ROW("nats", "nkey_seed_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(nkey_seed_file), 0, 0, ""),
	ROW("nats", "creds_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(creds_file), 0, 0, ""),
	ROW("nats", "tls_ca_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(tls_ca_file), 0, 0, ""),
	ROW("nats", "tls_cert_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(tls_cert_file), 0, 0, ""),
	ROW("nats", "tls_key_file", KIND_PATH, R | KEY_EMPTY_OK | KEY_SECRET_FILE,
	    STR(tls_key_file), 0, 0, ""),
	ROW("nats", "tls_required", KIND_BOOL, R, FIELD(tls_required, bool), 0, 0, "no"),

	/* status and request are what we subscribe to: changing them needs a restart. */
	ROW("subjects", "status", KIND_SUBJECT, R | KEY_UNIQUE_SUBJECT, STR(subject_status),
	    0, 0, "AlarmStatusChanged"),
	ROW("subjects", "request", KIND_SUBJECT, R | KEY_UNIQUE_SUBJECT, STR(subject_request),
	    0, 0, "SendAlarmDigest"),
	ROW("subjects", "digest", KIND_SUBJECT, KEY_UNIQUE_SUBJECT, STR(subject_digest),
	    0, 0, "AlarmDigest"),
	ROW("subjects", "dead_letter", KIND_SUBJECT, KEY_UNIQUE_SUBJECT, STR(subject_dead_letter),
	    0, 0, "AlarmDeadLetter"),

	ROW("service", "workers", KIND_INT, 0, I64(workers), 0, WORKERS_MAX, "0"),
	ROW("service", "state_dir", KIND_PATH, R, STR(state_dir), 0, 0, "/var/lib/alarm-digest"),
	/* Whom the service runs as once root's work is done; "" = whoever starts it. */
	ROW("service", "user", KIND_ACCOUNT, R | KEY_EMPTY_OK, STR(user), 0, 0, ""),
	ROW("service", "group", KIND_ACCOUNT, R | KEY_EMPTY_OK, STR(group), 0, 0, ""),
	ROW("service", "log_level", KIND_LOG_LEVEL, 0, FIELD(log_level, enum log_level),
	    0, 0, "info"),
	ROW("service", "restart_backoff_min", KIND_DURATION, 0, I64(restart_backoff_min_ms),
	    10, MS_HOUR, "1s"),
	ROW("service", "restart_backoff_max", KIND_DURATION, 0, I64(restart_backoff_max_ms),
	    10, MS_DAY, "30s"),
	ROW("service", "restart_healthy", KIND_DURATION, 0, I64(restart_healthy_ms),
	    100, MS_DAY, "10s"),
	ROW("service", "crash_loop_max", KIND_INT, 0, I64(crash_loop_max), 1, 1000000, "5"),
	ROW("service", "shutdown_timeout", KIND_DURATION, 0, I64(shutdown_timeout_ms),
	    0, MS_HOUR, "10s"),
	ROW("service", "queue_max_bytes", KIND_SIZE, 0, I64(queue_max_bytes),
	    64 * KIB, 64 * GIB, "16M"),
	ROW("service", "worker_stall_timeout", KIND_DURATION, 0, I64(worker_stall_timeout_ms),
	    MS_SEC, MS_DAY, "30s"),
	ROW("service", "spill_after", KIND_DURATION, 0, I64(spill_after_ms), 10, MS_HOUR, "2s"),
	ROW("service", "spill_max_bytes", KIND_SIZE, 0, I64(spill_max_bytes), 0, 1024 * GIB, "1G"),

	ROW("worker", "commit_max_msgs", KIND_INT, 0, I64(commit_max_msgs), 1, 1000000, "10000"),
	ROW("worker", "commit_max_ms", KIND_DURATION, 0, I64(commit_max_ms), 0, MS_MIN, "100ms"),
	ROW("worker", "tombstone_retention", KIND_DURATION, 0, I64(tombstone_retention_ms),
	    MS_SEC, 3650 * MS_DAY, "14d"),
	ROW("worker", "map_size", KIND_SIZE, 0, I64(map_size_bytes), MIB, 16384 * GIB, "4G"),
	/* Reloadable: a worker paused at the maximum grows on as soon as it is raised. */
	ROW("worker", "map_size_max", KIND_SIZE, 0, I64(map_size_max_bytes), MIB, 16384 * GIB, "64G"),

	ROW("limits", "max_message_bytes", KIND_SIZE, 0, I64(max_message_bytes),
	    64, 8 * MIB, "65536"),
	ROW("limits", "max_id_bytes", KIND_INT, 0, I64(max_id_bytes), 1, 480, "256"),
	ROW("limits", "max_future", KIND_DURATION, 0, I64(max_future_ms), 0, 3650 * MS_DAY, "24h"),
	/* Read by the workers: only they know what a user holds. */
	ROW("limits", "max_alarms_per_user", KIND_INT, 0, I64(max_alarms_per_user),
	    1, 100000000, "100000"),

	/* Restart-only: the HTTP thread binds once, before privileges are dropped. */
	ROW("http", "listen", KIND_LISTEN, R | KEY_EMPTY_OK, STR(http_listen), 0, 0, "127.0.0.1:9465"),

	/* Fixed for a deployment: a user's partition is hash32(UserID) % partitions. */
	ROW("cluster", "partitions", KIND_INT, R, I64(partitions), 0, CONFIG_PARTITIONS_MAX, "0"),
	ROW("cluster", "instance", KIND_WORD, R | KEY_EMPTY_OK, STR(instance), 0, 0, ""),
	ROW("cluster", "lease_ttl", KIND_DURATION, R, I64(lease_ttl_ms), MS_SEC, 300 * MS_SEC, "10s"),
	ROW("cluster", "lease_bucket", KIND_NAME, R, STR(lease_bucket), 0, 0, "ALARM_LEASES"),
	ROW("cluster", "partition_stream", KIND_NAME, R | KEY_UNIQUE_STREAM, STR(partition_stream),
	    0, 0, "ALARM_PARTITIONS"),
	ROW("cluster", "partition_subject", KIND_SUBJECT, R | KEY_UNIQUE_SUBJECT, STR(partition_subject),
	    0, 0, "alarm_digest.part"),
};

#undef R

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Pairs of [service] keys where the first may not exceed the second. */
static const struct {
	const char *section, *lo, *hi;
} config_order[] = {
	{ "service", "restart_backoff_min", "restart_backoff_max" },
};

struct unit {
	const char *suffix;
	int64_t mult;
};

/* Largest first: formatting picks the first unit that divides the value. */
static const struct unit duration_units[] = {
	{ "d", MS_DAY }, { "h", MS_HOUR }, { "m", MS_MIN }, { "s", MS_SEC }, { "ms", 1 },
};
static const struct unit size_units[] = {
	{ "GiB", GIB }, { "G", GIB }, { "MiB", MIB }, { "M", MIB },
	{ "KiB", KIB }, { "K", KIB }, { "", 1 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const intake_names[] = { "jetstream", "core" };

enum scan { SCAN_OK, SCAN_SYNTAX, SCAN_NO_UNIT, SCAN_BAD_UNIT, SCAN_RANGE };

enum set_result { SET_OK, SET_INVALID, SET_NOMEM };

struct parse_state {
	struct config *cfg;
	const char *name;          /* file name for messages */
	const char *text;          /* what inih reads, one line per call */
	size_t len, pos;
	int lineno;                /* lines handed to inih so far */
	bool failed;
	int err_line;
	int key_line[NKEYS];       /* where each key was set; 0 = default */
	char *err;
	size_t errlen;
};

/* ---- field access ---- */

static void *
key_field_mut(struct config *c, const struct key_def *k)
{
	return (char *)c + k->offset;
}

static const void *
key_field(const struct config *c, const struct key_def *k)
{
	return (const char *)c + k->offset;
}

static bool
kind_is_string(enum key_kind kind)
{
	return kind == KIND_SERVERS || kind == KIND_NAME || kind == KIND_SUBJECT ||
	    kind == KIND_PATH || kind == KIND_ACCOUNT || kind == KIND_WORD || kind == KIND_LISTEN;
}

static bool
kind_is_number(enum key_kind kind)
{
	return kind == KIND_INT || kind == KIND_DURATION || kind == KIND_SIZE;
}

static const struct key_def *
key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static bool
section_known(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(config_keys[i].section) == len &&
		    memcmp(config_keys[i].section, name, len) == 0)
			return true;
	return false;
}

/* ---- numbers ---- */

/* At least one decimal digit; advances *sp past them. */
static enum scan
digits_scan(const char **sp, int64_t *out)
{
	const char *p = *sp;
	int64_t n = 0;

	if (*p < '0' || *p > '9')
		return SCAN_SYNTAX;
	for (; *p >= '0' && *p <= '9'; p++) {
		int d = *p - '0';
		if (n > (INT64_MAX - d) / 10)
			return SCAN_RANGE;
		n = n * 10 + d;
	}
	*sp = p;
	*out = n;
	return SCAN_OK;
}

static enum scan
unit_apply(const struct unit *units, size_t nunits, const char *suffix, int64_t n,
    int64_t *out)
{
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(units[i].suffix, suffix) != 0)
			continue;
		if (n > INT64_MAX / units[i].mult)
			return SCAN_RANGE;
		*out = n * units[i].mult;
		return SCAN_OK;
	}
	return SCAN_BAD_UNIT;
}

static enum scan
int_scan(const char *s, int64_t *out)
{
	bool neg = (*s == '-');
	int64_t n;
	enum scan r;

	if (neg)
		s++;
	if ((r = digits_scan(&s, &n)) != SCAN_OK)
		return r;
	if (*s != '\0')
		return SCAN_SYNTAX;
	*out = neg ? -n : n;
	return SCAN_OK;
}

static enum scan
duration_scan(const char *s, int64_t *out)
{
	int64_t n;
	enum scan r;

	if ((r = digits_scan(&s, &n)) != SCAN_OK)
		return r;
	/* A bare number is ambiguous (ms? s?), except zero, which is zero in any unit. */
	if (*s == '\0') {
		if (n != 0)
			return SCAN_NO_UNIT;
		*out = 0;
		return SCAN_OK;
	}
	return unit_apply(duration_units, NELEM(duration_units), s, n, out);
}

static enum scan
size_scan(const char *s, int64_t *out)
{
	int64_t n;
	enum scan r;

	if (strcmp(s, "-1") == 0) {
		*out = -1;
		return SCAN_OK;
	}
	if ((r = digits_scan(&s, &n)) != SCAN_OK)
		return r;
	return unit_apply(size_units, NELEM(size_units), s, n, out);
}

static enum scan
number_scan(enum key_kind kind, const char *s, int64_t *out)
{
	switch (kind) {
	case KIND_DURATION:
		return duration_scan(s, out);
	case KIND_SIZE:
		return size_scan(s, out);
	default:
		return int_scan(s, out);
	}
}

static void
number_format(enum key_kind kind, int64_t v, char *buf, size_t len)
{
	const struct unit *units = NULL;
	size_t nunits = 0;

	if (kind == KIND_DURATION && v > 0) {
		units = duration_units;
		nunits = NELEM(duration_units);
	} else if (kind == KIND_SIZE && v > 0) {
		units = size_units;
		nunits = NELEM(size_units);
	}
	for (size_t i = 0; i < nunits; i++) {
		if (v % units[i].mult == 0) {
			snprintf(buf, len, "%" PRId64 "%s", v / units[i].mult, units[i].suffix);
			return;
		}
	}
	snprintf(buf, len, "%" PRId64, v);
}

static const char *
number_complaint(enum key_kind kind, enum scan r)
{
	if (r == SCAN_RANGE)
		return "is too large";
	switch (kind) {
	case KIND_DURATION:
		if (r == SCAN_NO_UNIT)
			return "has no unit (use ms, s, m, h or d)";
		if (r == SCAN_BAD_UNIT)
			return "has an unknown unit (use ms, s, m, h or d)";
		return "is not a duration (an integer and a unit: 250ms, 10s, 5m, 2h, 7d)";
	case KIND_SIZE:
		if (r == SCAN_BAD_UNIT)
			return "has an unknown suffix (use K, KiB, M, MiB, G or GiB)";
		return "is not a size (an integer, optionally with K, KiB, M, MiB, G or GiB)";
	default:
		return "is not an integer";
	}
}

static enum set_result
number_set(const struct key_def *k, const char *value, const char *quoted, struct config *c,
    char *why, size_t whylen)
{
	char lo[32], hi[32];
	int64_t v;
	enum scan r;

	if ((r = number_scan(k->kind, value, &v)) != SCAN_OK) {
		snprintf(why, whylen, "\"%s\" %s", quoted, number_complaint(k->kind, r));
		return SET_INVALID;
	}
	if (k->kind == KIND_SIZE && v == -1) {
		if (!(k->flags & KEY_UNLIMITED)) {
			snprintf(why, whylen, "\"%s\": unlimited (-1) is not allowed here", quoted);
			return SET_INVALID;
		}
	} else if (v == 0 && (k->flags & KEY_ZERO_BROKER)) {
		/* the broker's max_payload */
	} else if (v < k->min || v > k->max) {
		number_format(k->kind, k->min, lo, sizeof(lo));
		number_format(k->kind, k->max, hi, sizeof(hi));
		snprintf(why, whylen, "\"%s\" is out of range (%s..%s%s)", quoted, lo, hi,
		    (k->flags & KEY_ZERO_BROKER) ? "; 0: the broker's max_payload; -1: unlimited" : "");
		return SET_INVALID;
	}
	*(int64_t *)key_field_mut(c, k) = v;
	return SET_OK;
}

/* ---- strings ---- */

/* Subjects are literal: no wildcards, no empty tokens. */
static const char *
subject_complaint(const char *s)
{
	if (strpbrk(s, "*>") != NULL)
		return "contains a wildcard (a literal subject is needed)";
	if (*s == '.' || s[strlen(s) - 1] == '.' || strstr(s, "..") != NULL)
		return "has an empty token";
	return NULL;
}

/* The portable user and group names of POSIX, as useradd(8) takes them. */
static const char *
account_complaint(const char *s)
{
	if (strlen(s) > 32)
		return "is longer than 32 bytes (not a user or group name)";
	if (*s == '-')
		return "starts with '-' (not a user or group name)";
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(s))
		return "contains a byte other than letters, digits, '.', '_' and '-' (not a user or group name)";
	return NULL;
}

static const char *
string_complaint(const struct key_def *k, const char *s)
{
	if (*s == '\0')
		return (k->flags & KEY_EMPTY_OK) ? NULL : "must not be empty";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return "contains a control character";
		if (*p == ' ' && k->kind != KIND_PATH)
			return "contains whitespace";
		if (*p == '"')
			return "contains '\"' (values are not quoted; write \"\" alone for empty)";
	}
	switch (k->kind) {
	case KIND_NAME:
		if (strpbrk(s, ".*>") != NULL)
			return "contains '.', '*' or '>' (not allowed in a stream or consumer name)";
		return NULL;
	case KIND_SUBJECT:
		return subject_complaint(s);
	case KIND_ACCOUNT:
		return account_complaint(s);
	case KIND_LISTEN: {
		struct sockaddr_storage ss;
		socklen_t sslen;
		const char *why;
		return listen_parse(s, &ss, &sslen, &why) == -1 ? why : NULL;
	}
	case KIND_SERVERS:
		if (*s == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,") != NULL)
			return "has an empty server URL";
		return NULL;
	default:
		return NULL;
	}
}

static enum set_result
string_set(const struct key_def *k, const char *value, const char *quoted, struct config *c,
    char *why, size_t whylen)
{
	char **slot = key_field_mut(c, k);
	const char *complaint;
	char *copy;

	/* The shipped file documents `""` as the way to write an empty value. */
	if (strcmp(value, "\"\"") == 0) {
		value = "";
		quoted = "";
	}
	if ((complaint = string_complaint(k, value)) != NULL) {
		snprintf(why, whylen, "\"%s\" %s", quoted, complaint);
		return SET_INVALID;
	}
	if ((copy = strdup(value)) == NULL)
		return SET_NOMEM;
	free(*slot);
	*slot = copy;
	return SET_OK;
}

/* ---- one key ---- */

static enum set_result
key_set(const struct key_def *k, const char *value, struct config *c, char *why, size_t whylen)
{
	char quoted[96];
	enum log_level level;

	quote_bytes(quoted, sizeof(quoted), value, strlen(value));
	if (kind_is_number(k->kind))
		return number_set(k, value, quoted, c, why, whylen);
	if (kind_is_string(k->kind))
		return string_set(k, value, quoted, c, why, whylen);
	if (k->kind == KIND_BOOL) {
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
			snprintf(why, whylen, "\"%s\" is not yes or no", quoted);
			return SET_INVALID;
		}
		*(bool *)key_field_mut(c, k) = strcmp(value, "yes") == 0;
		return SET_OK;
	}
	if (k->kind == KIND_INTAKE) {
		for (size_t i = 0; i < NELEM(intake_names); i++) {
			if (strcmp(value, intake_names[i]) == 0) {
				*(enum intake_mode *)key_field_mut(c, k) = (enum intake_mode)i;
				return SET_OK;
			}
		}
		snprintf(why, whylen, "\"%s\" is not an intake mode (jetstream or core)", quoted);
		return SET_INVALID;
	}
	if (log_level_parse(value, &level) == -1) {
		snprintf(why, whylen, "\"%s\" is not a log level (error, warn, info or debug)", quoted);
		return SET_INVALID;
	}
	*(enum log_level *)key_field_mut(c, k) = level;
	return SET_OK;
}

/* Returns the value as text, in buf or in the config itself. */
static const char *
key_format(const struct key_def *k, const struct config *c, char *buf, size_t len)
{
	const char *s;
	unsigned mode;

	if (kind_is_string(k->kind)) {
		s = *(char *const *)key_field(c, k);
		return s != NULL ? s : "";
	}
	if (kind_is_number(k->kind)) {
		number_format(k->kind, *(const int64_t *)key_field(c, k), buf, len);
		return buf;
	}
	if (k->kind == KIND_BOOL)
		return *(const bool *)key_field(c, k) ? "yes" : "no";
	if (k->kind == KIND_INTAKE) {
		mode = (unsigned)*(const enum intake_mode *)key_field(c, k);
		return mode < NELEM(intake_names) ? intake_names[mode] : "?";
	}
	return log_level_name(*(const enum log_level *)key_field(c, k));
}

/* ---- errors ---- */

/* Record the first error only: later ones are usually fallout from it. */
static void __attribute__((format(printf, 3, 4)))
parse_fail(struct parse_state *ps, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (ps->failed)
		return;
	ps->failed = true;
	ps->err_line = line;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(ps->err, ps->errlen, "%s:%d: %s", ps->name, line, msg);
	else
		snprintf(ps->err, ps->errlen, "%s: %s", ps->name, msg);
}

/* ---- the line reader inih pulls from ---- */

static bool
line_is_blank_or_comment(const char *line, size_t n)
{
	size_t i = 0;

	while (i < n && isspace((unsigned char)line[i]))
		i++;
	return i == n || line[i] == ';' || line[i] == '#';
}

/* "[name]" optionally followed by blanks and a comment. */
static void
section_check(struct parse_state *ps, const char *line, size_t n)
{
	const char *end = memchr(line, ']', n);
	char quoted[96];

	if (end == NULL || !line_is_blank_or_comment(end + 1, n - (size_t)(end + 1 - line))) {
		quote_bytes(quoted, sizeof(quoted), line, n);
		parse_fail(ps, ps->lineno, "\"%s\" is not a valid section header (expected \"[name]\")",
		    quoted);
		return;
	}
	if (!section_known(line + 1, (size_t)(end - line - 1))) {
		quote_bytes(quoted, sizeof(quoted), line, (size_t)(end - line + 1));
		parse_fail(ps, ps->lineno, "\"%s\": unknown section", quoted);
	}
}

static void
line_check(struct parse_state *ps, const char *line, size_t n, int size)
{
	char quoted[96];

	/* Room for the line, the '\n' inih expects and the NUL. */
	if (size < 3 || n > (size_t)size - 2) {
		parse_fail(ps, ps->lineno, "line is too long (at most %d bytes)", size < 3 ? 0 : size - 2);
		return;
	}
	if (memchr(line, '\0', n) != NULL) {
		parse_fail(ps, ps->lineno, "line contains a NUL byte");
		return;
	}
	if (line_is_blank_or_comment(line, n))
		return;
	if (isspace((unsigned char)line[0])) {
		quote_bytes(quoted, sizeof(quoted), line, n);
		parse_fail(ps, ps->lineno, "\"%s\" is indented (continuation lines are not supported; "
		    "remove the leading blanks)", quoted);
		return;
	}
	if (line[0] == '[')
		section_check(ps, line, n);
}

/* fgets-style: one line per call, so inih's line count matches ours. */
static char *
parse_read_line(char *buf, int size, void *stream)
{
	struct parse_state *ps = stream;
	const char *line, *nl;
	size_t n;

	if (ps->failed || ps->pos >= ps->len)
		return NULL;
	line = ps->text + ps->pos;
	nl = memchr(line, '\n', ps->len - ps->pos);
	n = nl != NULL ? (size_t)(nl - line) : ps->len - ps->pos;
	ps->pos += n + (nl != NULL);
	ps->lineno++;
	line_check(ps, line, n, size);
	if (ps->failed)
		return NULL;
	memcpy(buf, line, n);
	buf[n] = '\n';
	buf[n + 1] = '\0';
	return buf;
}

/* ---- the inih handler ---- */

static int
parse_on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *ps = user;
	const struct key_def *k;
	char why[256];
	size_t i;

	if (ps->failed)
		return 0;
	if (*section == '\0') {
		parse_fail(ps, ps->lineno, "%s: setting outside any [section]", name);
		return 0;
	}
	if ((k = key_find(section, name)) == NULL) {
		parse_fail(ps, ps->lineno, "[%s] %s: unknown key", section, name);
		return 0;
	}
	i = (size_t)(k - config_keys);
	if (ps->key_line[i] != 0) {
		parse_fail(ps, ps->lineno, "[%s] %s: duplicate key (first set on line %d)",
		    section, name, ps->key_line[i]);
		return 0;
	}
	ps->key_line[i] = ps->lineno;
	switch (key_set(k, value, ps->cfg, why, sizeof(why))) {
	case SET_OK:
		return 1;
	case SET_NOMEM:
		parse_fail(ps, ps->lineno, "[%s] %s: %s", section, name, strerror(ENOMEM));
		return 0;
	case SET_INVALID:
		break;
	}
	/* inih only strips inline comments that start with ';'. */
	parse_fail(ps, ps->lineno, "[%s] %s: %s%s", section, name, why,
	    strstr(value, " #") != NULL || strstr(value, "\t#") != NULL ?
	    " (inline comments start with ';', not '#')" : "");
	return 0;
}

/* ---- relations between keys ---- */

static int
rules_later_line(const struct parse_state *ps, size_t a, size_t b, size_t *which)
{
	*which = ps->key_line[a] >= ps->key_line[b] ? a : b;
	return ps->key_line[*which];
}

static void
rules_check_unique(struct parse_state *ps)
{
	char buf[2][64];

	for (size_t i = 0; i < NKEYS && !ps->failed; i++) {
		unsigned group = config_keys[i].flags & KEY_UNIQUE_MASK;
		const char *a = key_format(&config_keys[i], ps->cfg, buf[0], sizeof(buf[0]));

		for (size_t j = i + 1; group != 0 && *a != '\0' && j < NKEYS; j++) {
			const struct key_def *other;
			size_t which;
			int line;

			if ((config_keys[j].flags & KEY_UNIQUE_MASK) != group ||
			    strcmp(a, key_format(&config_keys[j], ps->cfg, buf[1], sizeof(buf[1]))) != 0)
				continue;
			line = rules_later_line(ps, i, j, &which);
			other = &config_keys[which == i ? j : i];
			parse_fail(ps, line, "[%s] %s: \"%s\" is also [%s] %s; they must differ",
			    config_keys[which].section, config_keys[which].name, a,
			    other->section, other->name);
			return;
		}
	}
}

static void
rules_check_order(struct parse_state *ps)
{
	char lo_text[32], hi_text[32];

	for (size_t r = 0; r < NELEM(config_order) && !ps->failed; r++) {
		const struct key_def *lo = key_find(config_order[r].section, config_order[r].lo);
		const struct key_def *hi = key_find(config_order[r].section, config_order[r].hi);
		size_t which;
		int line;

		if (*(const int64_t *)key_field(ps->cfg, lo) <= *(const int64_t *)key_field(ps->cfg, hi))
			continue;
		key_format(lo, ps->cfg, lo_text, sizeof(lo_text));
		key_format(hi, ps->cfg, hi_text, sizeof(hi_text));
		line = rules_later_line(ps, (size_t)(lo - config_keys), (size_t)(hi - config_keys), &which);
		parse_fail(ps, line, "[%s] %s (%s) is greater than %s (%s)", lo->section,
		    lo->name, lo_text, hi->name, hi_text);
	}
}

/* ---- authentication and TLS ---- */

static const char *
rules_str(const struct parse_state *ps, const char *name, size_t *idx)
{
	const struct key_def *k = key_find("nats", name);

	*idx = (size_t)(k - config_keys);
	return *(char *const *)key_field(ps->cfg, k);
}

/* Each secret file must be readable now: -t and a reload catch it, not the first connect. */
static void
rules_check_files(struct parse_state *ps)
{
	for (size_t i = 0; i < NKEYS && !ps->failed; i++) {
		const struct key_def *k = &config_keys[i];
		const char *path;
		int fd;

		if (!(k->flags & KEY_SECRET_FILE))
			continue;
		path = *(char *const *)key_field(ps->cfg, k);
		if (*path == '\0')
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
			parse_fail(ps, ps->key_line[i], "[%s] %s: cannot read \"%s\": %s",
			    k->section, k->name, path, strerror(errno));
			continue;
		}
		(void)close(fd);   /* read-only probe */
	}
}

/* One subject token and a piece of consumer names. */
static bool
instance_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_INSTANCE_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

static void
rules_check_cluster(struct parse_state *ps)
{
	const struct key_def *k = key_find("cluster", "instance");
	const char *name = *(char *const *)key_field(ps->cfg, k);

	if (!ps->failed && *name != '\0' && !instance_name_ok(name))
		parse_fail(ps, ps->key_line[k - config_keys], "[cluster] instance \"%s\": use 1 to %d of "
		    "A-Z a-z 0-9 _ -", name, CONFIG_INSTANCE_MAX);
}

static void
rules_check_auth(struct parse_state *ps)
{
	static const char *const methods[] = { "user", "token_file", "nkey_seed_file", "creds_file" };
	const char *first = NULL;
	size_t a, b, first_i = 0;

	/* Pairs that only make sense together. */
	static const char *const pairs[][2] = {
		{ "user", "password_file" }, { "tls_cert_file", "tls_key_file" },
	};
	for (size_t p = 0; p < NELEM(pairs) && !ps->failed; p++) {
		bool has_a = *rules_str(ps, pairs[p][0], &a) != '\0';
		bool has_b = *rules_str(ps, pairs[p][1], &b) != '\0';

		if (has_a != has_b)
			parse_fail(ps, ps->key_line[has_a ? a : b], "[nats] %s is set but %s is not; "
			    "they go together", pairs[p][has_a ? 0 : 1], pairs[p][has_a ? 1 : 0]);
	}
	for (size_t m = 0; m < NELEM(methods) && !ps->failed; m++) {
		if (*rules_str(ps, methods[m], &a) == '\0')
			continue;
		if (first == NULL) {
			first = methods[m];
			first_i = a;
			continue;
		}
		parse_fail(ps, ps->key_line[a] > ps->key_line[first_i] ? ps->key_line[a] :
		    ps->key_line[first_i], "[nats] %s and %s are both set; choose one way to "
		    "authenticate (user + password_file, token_file, nkey_seed_file or creds_file)",
		    first, methods[m]);
	}
	rules_check_files(ps);
}

/* ---- public ---- */

int
config_defaults(struct config *c)
{
	char why[256];

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		enum set_result r = key_set(&config_keys[i], config_keys[i].def, c, why, sizeof(why));

		if (r != SET_OK) {
			/* SET_INVALID means a bad row in the table; the unit tests catch it. */
			config_free(c);
			errno = r == SET_NOMEM ? ENOMEM : EINVAL;
			return -1;
		}
	}
	c->text = strdup("");
	c->path = strdup("<defaults>");
	if (c->text == NULL || c->path == NULL) {
		config_free(c);
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* Takes ownership of text (malloc'd, NUL at text[len]) whatever happens. */
static int
config_parse_owned(char *text, size_t len, const char *name, struct config *out, char *err,
    size_t errlen)
{
	struct parse_state ps = { .cfg = out, .name = name, .text = text, .len = len,
	    .err = err, .errlen = errlen };
	char *path;
	size_t start;
	int rc;

	if (config_defaults(out) == -1 || (path = strdup(name)) == NULL) {
		free(text);
		config_free(out);
		snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
		return -1;
	}
	free(out->text);
	free(out->path);
	out->text = text;
	out->text_len = len;
	out->path = path;

	/* Editors on some systems write a UTF-8 byte order mark; it is not a setting. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		ps.pos = 3;
	start = ps.pos;
	rc = ini_parse_stream(parse_read_line, &ps, parse_on_pair, &ps);
	if (rc == -2) {
		ps.failed = false;
		parse_fail(&ps, 0, "%s", strerror(ENOMEM));
	} else if (rc > 0 && (!ps.failed || rc < ps.err_line)) {
		/*
		 * inih found a line that is neither a section nor a setting, before
		 * any error of ours (it keeps reading after one, so ours may be later).
		 */
		const char *line = text + start;
		char quoted[96];

		for (int l = 1; l < rc; l++)
			line = strchr(line, '\n') + 1;
		quote_bytes(quoted, sizeof(quoted), line, strcspn(line, "\r\n"));
		ps.failed = false;
		parse_fail(&ps, rc, "\"%s\" is not a setting (expected \"name = value\" or \"[section]\")",
		    quoted);
	}
	rules_check_unique(&ps);
	rules_check_order(&ps);
	rules_check_auth(&ps);
	rules_check_cluster(&ps);
	if (ps.failed) {
		config_free(out);
		return -1;
	}
	return 0;
}

int
config_parse(const char *text, size_t len, const char *name, struct config *out, char *err,
    size_t errlen)
{
	char *copy;

	memset(out, 0, sizeof(*out));
	if (len > CONFIG_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than %u bytes", name, CONFIG_MAX_BYTES);
		return -1;
	}
	if ((copy = malloc(len + 1)) == NULL) {
		snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
		return -1;
	}
	if (len > 0)
		memcpy(copy, text, len);
	copy[len] = '\0';
	return config_parse_owned(copy, len, name, out, err, errlen);
}

/* Whole file into a NUL-terminated buffer; read(2) until EOF, so pipes work too. */
static int
file_read(int fd, char **textp, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *text = malloc(cap), *bigger;
	ssize_t n;

	if (text == NULL)
		return -1;
	for (;;) {
		if (cap - len < 2) {
			if (cap > CONFIG_MAX_BYTES) {
				free(text);
				errno = EFBIG;
				return -1;
			}
			if ((bigger = realloc(text, cap * 2)) == NULL) {
				free(text);
				return -1;
			}
			text = bigger;
			cap *= 2;
		}
		n = read(fd, text + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			free(text);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_MAX_BYTES) {
		free(text);
		errno = EFBIG;
		return -1;
	}
	text[len] = '\0';
	*textp = text;
	*lenp = len;
	return 0;
}

int
config_load(const char *path, struct config *out, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int fd, rc, saved;

	memset(out, 0, sizeof(*out));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = file_read(fd, &text, &len);
	saved = errno;
	(void)close(fd);   /* read-only: a close error loses nothing */
	if (rc == -1) {
		if (saved == EFBIG)
			snprintf(err, errlen, "%s: larger than %u bytes", path, CONFIG_MAX_BYTES);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(saved));
		return -1;
	}
	return config_parse_owned(text, len, path, out, err, errlen);
}

void
config_free(struct config *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (kind_is_string(config_keys[i].kind))
			free(*(char **)key_field_mut(c, &config_keys[i]));
	free(c->text);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

int
config_instance(const struct config *c, char *buf, size_t len)
{
	char host[256];

	if (c->instance != NULL && c->instance[0] != '\0') {
		snprintf(buf, len, "%s", c->instance);
		return 0;
	}
	if (gethostname(host, sizeof(host)) == -1)
		return -1;
	host[sizeof(host) - 1] = '\0';
	host[CONFIG_INSTANCE_MAX] = '\0';
	for (char *p = host; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			*p = '-';
	snprintf(buf, len, "%s", host[0] != '\0' ? host : "localhost");
	return 0;
}

int
config_worker_count(const struct config *c)
{
	long n;

	if (c->workers > 0)
		return (int)c->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

/* Where the user-info of the URL at s ends ('@'), or NULL when it has none. */
static const char *
url_userinfo_end(const char *s, size_t n, const char **start)
{
	const char *p = s, *end = s + n, *at = NULL;

	for (const char *q = s; q + 2 < end; q++) {
		if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
			p = q + 3;
			break;
		}
	}
	*start = p;
	for (const char *q = p; q < end && *q != '/' && *q != '?' && *q != '#'; q++)
		if (*q == '@')
			at = q;   /* the last one: a password may hold '@' */
	return at;
}

void
config_redact_servers(const char *servers, char *buf, size_t len)
{
	size_t out = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (const char *s = servers; *s != '\0' && out + 1 < len; ) {
		size_t n = strcspn(s, ",");
		const char *start, *at = url_userinfo_end(s, n, &start);
		int w;

		if (at != NULL)
			w = snprintf(buf + out, len - out, "%.*s***%.*s", (int)(start - s), s,
			    (int)(s + n - at), at);
		else
			w = snprintf(buf + out, len - out, "%.*s", (int)n, s);
		if (w < 0 || (size_t)w >= len - out)
			break;   /* truncated: what is there is still redacted */
		out += (size_t)w;
		s += n;
		if (*s == ',') {
			if (out + 2 > len)
				break;
			buf[out++] = ',';
			buf[out] = '\0';
			s++;
		}
	}
}

bool
config_servers_have_userinfo(const char *servers)
{
	for (const char *s = servers; *s != '\0'; ) {
		size_t n = strcspn(s, ",");
		const char *start;

		if (url_userinfo_end(s, n, &start) != NULL)
			return true;
		s += n + (s[n] == ',');
	}
	return false;
}

void
config_diff(const struct config *old, const struct config *new, config_change_fn fn, void *arg)
{
	char a[64], b[64], key[96], ra[1024], rb[1024];

	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &config_keys[i];
		const char *was = key_format(k, old, a, sizeof(a));
		const char *now = key_format(k, new, b, sizeof(b));

		if (strcmp(was, now) == 0)
			continue;
		/* A diff is logged: never show a password written into a URL. */
		if (k->kind == KIND_SERVERS) {
			config_redact_servers(was, ra, sizeof(ra));
			config_redact_servers(now, rb, sizeof(rb));
			was = ra;
			now = rb;
		}
		snprintf(key, sizeof(key), "%s.%s", k->section, k->name);
		fn(key, was, now, (k->flags & KEY_RESTART) != 0, arg);
	}
}

/* Scalars are copied by kind so each field is copied with its own C type. */
static void
key_copy_scalar(const struct key_def *k, struct config *dst, const struct config *src)
{
	if (kind_is_number(k->kind))
		*(int64_t *)key_field_mut(dst, k) = *(const int64_t *)key_field(src, k);
	else if (k->kind == KIND_INTAKE)
		*(enum intake_mode *)key_field_mut(dst, k) =
		    *(const enum intake_mode *)key_field(src, k);
	else if (k->kind == KIND_LOG_LEVEL)
		*(enum log_level *)key_field_mut(dst, k) = *(const enum log_level *)key_field(src, k);
	else if (k->kind == KIND_BOOL)
		*(bool *)key_field_mut(dst, k) = *(const bool *)key_field(src, k);
}

/*
 * Every setting as INI text that config_parse reads back to the same values.
 * "name=value" without blanks, so no line is longer than the one it came from.
 */
static char *
config_render(const struct config *c, size_t *lenp)
{
	const char *section = "";
	char *text = NULL, buf[64];
	size_t len = 0;
	FILE *f;
	int bad;

	if ((f = open_memstream(&text, &len)) == NULL)
		return NULL;
	bad = fprintf(f, "# effective settings: the restart-only ones kept from the running "
	    "service\n") < 0;
	for (size_t i = 0; i < NKEYS && !bad; i++) {
		const struct key_def *k = &config_keys[i];
		const char *v = key_format(k, c, buf, sizeof(buf));

		if (strcmp(k->section, section) != 0) {
			section = k->section;
			bad = fprintf(f, "[%s]\n", section) < 0;
		}
		if (!bad)
			bad = fprintf(f, "%s=%s\n", k->name, *v != '\0' ? v : "\"\"") < 0;
	}
	bad |= ferror(f);
	if (fclose(f) != 0 || bad) {
		free(text);
		return NULL;
	}
	*lenp = len;
	return text;
}

static bool
restart_only_differ(const struct config *a, const struct config *b)
{
	char x[64], y[64];

	for (size_t i = 0; i < NKEYS; i++)
		if ((config_keys[i].flags & KEY_RESTART) &&
		    strcmp(key_format(&config_keys[i], a, x, sizeof(x)),
		    key_format(&config_keys[i], b, y, sizeof(y))) != 0)
			return true;
	return false;
}

/* Would the running values of restart-only keys break a rule between keys in `mix`? */
static bool
config_mix_clashes(const struct config *mix)
{
	struct parse_state ps = { .cfg = (struct config *)mix, .name = "" };
	char err[1];

	ps.err = err;
	ps.errlen = sizeof(err);
	rules_check_unique(&ps);
	return ps.failed;
}

/*
 * The text matters as much as the fields: the supervisor hands it to every
 * worker it starts.  When a restart-only setting was kept, the file's text
 * no longer describes what runs (a worker would open the new state_dir),
 * so the text is replaced by a rendering of the effective settings.
 */
int
config_keep_restart_only(struct config *fresh, const struct config *running)
{
	char *copies[NKEYS] = { NULL }, *text = NULL;
	struct config mix = *fresh;   /* borrows pointers; only read */
	size_t text_len = 0;

	if (restart_only_differ(fresh, running)) {
		for (size_t i = 0; i < NKEYS; i++) {
			if (!(config_keys[i].flags & KEY_RESTART))
				continue;
			if (kind_is_string(config_keys[i].kind))
				*(char **)key_field_mut(&mix, &config_keys[i]) =
				    *(char *const *)key_field(running, &config_keys[i]);
			else
				key_copy_scalar(&config_keys[i], &mix, running);
		}
		/*
		 * The file's own keys differ, but a kept one may now equal a new
		 * reloadable one (status kept at X, dead_letter set to X): the
		 * service would consume its own output, and no worker could
		 * parse the text it is handed.  Refuse the reload.
		 */
		if (config_mix_clashes(&mix)) {
			errno = EINVAL;
			return -1;
		}
		if ((text = config_render(&mix, &text_len)) == NULL)
			goto nomem;
	}
	/* Copy every string before touching fresh, so ENOMEM leaves it as it was. */
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &config_keys[i];
		const char *s;

		if (!(k->flags & KEY_RESTART) || !kind_is_string(k->kind))
			continue;
		s = *(char *const *)key_field(running, k);
		if ((copies[i] = strdup(s != NULL ? s : "")) == NULL)
			goto nomem;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &config_keys[i];
		char **slot;

		if (!(k->flags & KEY_RESTART))
			continue;
		if (!kind_is_string(k->kind)) {
			key_copy_scalar(k, fresh, running);
			continue;
		}
		slot = key_field_mut(fresh, k);
		free(*slot);
		*slot = copies[i];
	}
	if (text != NULL) {
		free(fresh->text);
		fresh->text = text;
		fresh->text_len = text_len;
	}
	return 0;

nomem:
	for (size_t i = 0; i < NKEYS; i++)
		free(copies[i]);
	free(text);
	errno = ENOMEM;
	return -1;
}

int
config_parse_duration_ms(const char *s, int64_t *out)
{
	enum scan r = duration_scan(s, out);

	if (r == SCAN_OK)
		return 0;
	errno = r == SCAN_RANGE ? ERANGE : EINVAL;
	return -1;
}

int
config_parse_size(const char *s, int64_t *out)
{
	enum scan r = size_scan(s, out);

	if (r == SCAN_OK)
		return 0;
	errno = r == SCAN_RANGE ? ERANGE : EINVAL;
	return -1;
}
