/*
 * Unit tests for common/config.c: defaults against the shipped file, every
 * error kind with its exact FILE:LINE message, durations and sizes, diff.
 * Run under ASan too: every error path must leave nothing allocated.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ini.h>

#include "config.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NKEYS 57   /* settings in conf/alarm-supervisor.conf */

/* The shipped file, found from this source file so any working directory works. */
static void
shipped_conf_path(char *buf, size_t len)
{
	const char *file = __FILE__;
	const char *tail = strstr(file, "tests/unit/test_config.c");

	if (tail == NULL)
		snprintf(buf, len, "conf/alarm-supervisor.conf");
	else
		snprintf(buf, len, "%.*sconf/alarm-supervisor.conf", (int)(tail - file), file);
}

static void
assert_zeroed(const struct config *c)
{
	static const struct config zero;

	assert_memory_equal(c, &zero, sizeof(zero));
}

static void
parse_ok(const char *text, struct config *c)
{
	char err[512] = "";
	int rc = config_parse(text, strlen(text), "x.conf", c, err, sizeof(err));

	if (rc != 0)
		fail_msg("unexpected error: %s", err);
}

static void
expect_error(const char *text, size_t len, const char *want)
{
	struct config c;
	char err[512] = "";

	assert_int_equal(config_parse(text, len, "x.conf", &c, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	assert_zeroed(&c);
}

static void
expect_error_str(const char *text, const char *want)
{
	expect_error(text, strlen(text), want);
}

/* ---- diff collection ---- */

struct change {
	char key[64];
	char old_value[128];
	char new_value[128];
	bool restart;
};

struct changes {
	struct change v[64];
	size_t n;
};

static void
changes_add(const char *key, const char *old_value, const char *new_value, bool restart,
    void *arg)
{
	struct changes *cs = arg;
	struct change *c;

	assert_true(cs->n < NELEM(cs->v));
	c = &cs->v[cs->n++];
	snprintf(c->key, sizeof(c->key), "%s", key);
	snprintf(c->old_value, sizeof(c->old_value), "%s", old_value);
	snprintf(c->new_value, sizeof(c->new_value), "%s", new_value);
	c->restart = restart;
}

static const struct change *
changes_find(const struct changes *cs, const char *key)
{
	for (size_t i = 0; i < cs->n; i++)
		if (strcmp(cs->v[i].key, key) == 0)
			return &cs->v[i];
	return NULL;
}

/* ---- defaults ---- */

/*
 * Every key, and whether changing it needs a restart.  Restart-only: all of
 * [nats], the subscriptions, and where state lives.
 */
static const struct {
	const char *key;
	bool restart;
} key_table[] = {
	{ "nats.servers", true }, { "nats.intake", true }, { "nats.stream", true },
	{ "nats.consumer", true }, { "nats.deliver_subject", true },
	{ "nats.max_ack_pending", true }, { "nats.ack_wait", true },
	{ "nats.stream_max_age", true }, { "nats.stream_max_bytes", true },
	{ "nats.stream_replicas", true }, { "nats.dead_letter_stream", true },
	{ "nats.stream_max_msg_size", true }, { "nats.dead_letter_max_bytes", true },
	{ "nats.dead_letter_max_msg_size", true },
	{ "nats.user", true }, { "nats.password_file", true }, { "nats.token_file", true },
	{ "nats.nkey_seed_file", true }, { "nats.creds_file", true }, { "nats.tls_ca_file", true },
	{ "nats.tls_cert_file", true }, { "nats.tls_key_file", true }, { "nats.tls_required", true },
	{ "subjects.status", true }, { "subjects.request", true },
	{ "subjects.digest", false }, { "subjects.dead_letter", false },
	{ "service.workers", false }, { "service.state_dir", true },
	{ "service.user", true }, { "service.group", true },
	{ "service.log_level", false }, { "service.restart_backoff_min", false },
	{ "service.restart_backoff_max", false }, { "service.restart_healthy", false },
	{ "service.crash_loop_max", false }, { "service.shutdown_timeout", false },
	{ "service.queue_max_bytes", false }, { "service.worker_stall_timeout", false },
	{ "service.spill_after", false }, { "service.spill_max_bytes", false },
	{ "worker.commit_max_msgs", false },
	{ "worker.commit_max_ms", false }, { "worker.tombstone_retention", false },
	{ "worker.map_size", false }, { "worker.map_size_max", false },
	{ "limits.max_message_bytes", false },
	{ "limits.max_id_bytes", false }, { "limits.max_future", false },
	{ "limits.max_alarms_per_user", false },
	{ "http.listen", true },
	{ "cluster.partitions", true }, { "cluster.instance", true }, { "cluster.lease_ttl", true },
	{ "cluster.lease_bucket", true }, { "cluster.partition_stream", true },
	{ "cluster.partition_subject", true },
};

/*
 * The values the header's comments promise, as literals: the restart-only
 * keys (state_dir passed in, as the shipped file sets its own) ...
 */
static void
assert_restart_only_defaults(const struct config *c, const char *state_dir)
{
	assert_string_equal(c->servers, "nats://127.0.0.1:4222");
	assert_int_equal(c->intake, INTAKE_JETSTREAM);
	assert_string_equal(c->stream, "ALARMS");
	assert_string_equal(c->consumer, "alarm-digest");
	assert_string_equal(c->deliver_subject, "_ALARM_DIGEST.deliver");
	assert_int_equal(c->max_ack_pending, 65536);
	assert_int_equal(c->ack_wait_ms, 60000);
	assert_int_equal(c->stream_max_age_ms, INT64_C(7) * 24 * 3600 * 1000);
	assert_int_equal(c->stream_max_bytes, -1);
	assert_int_equal(c->stream_replicas, 1);
	assert_int_equal(c->stream_max_msg_size, 0);
	assert_string_equal(c->dead_letter_stream, "ALARMS_DEAD_LETTER");
	assert_int_equal(c->dead_letter_max_bytes, INT64_C(1) << 30);
	assert_int_equal(c->dead_letter_max_msg_size, 0);
	assert_string_equal(c->subject_status, "AlarmStatusChanged");
	assert_string_equal(c->subject_request, "SendAlarmDigest");
	assert_string_equal(c->state_dir, state_dir);
	assert_string_equal(c->user, "");
	assert_string_equal(c->group, "");
}

/* ... and the ones a reload changes. */
static void
assert_reloadable_defaults(const struct config *c)
{
	assert_string_equal(c->subject_digest, "AlarmDigest");
	assert_string_equal(c->subject_dead_letter, "AlarmDeadLetter");
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->log_level, LL_INFO);
	assert_int_equal(c->restart_backoff_min_ms, 1000);
	assert_int_equal(c->restart_backoff_max_ms, 30000);
	assert_int_equal(c->restart_healthy_ms, 10000);
	assert_int_equal(c->crash_loop_max, 5);
	assert_int_equal(c->shutdown_timeout_ms, 10000);
	assert_int_equal(c->queue_max_bytes, 16 << 20);
	assert_int_equal(c->worker_stall_timeout_ms, 30000);
	assert_int_equal(c->spill_after_ms, 2000);
	assert_int_equal(c->spill_max_bytes, INT64_C(1) << 30);
	assert_int_equal(c->commit_max_msgs, 10000);
	assert_int_equal(c->commit_max_ms, 100);
	assert_int_equal(c->tombstone_retention_ms, INT64_C(14) * 24 * 3600 * 1000);
	assert_int_equal(c->map_size_bytes, INT64_C(4) << 30);
	assert_int_equal(c->map_size_max_bytes, INT64_C(64) << 30);
	assert_int_equal(c->max_message_bytes, 65536);
	assert_int_equal(c->max_id_bytes, 256);
	assert_int_equal(c->max_future_ms, 86400000);
	assert_int_equal(c->max_alarms_per_user, 100000);
}

static void
test_defaults_match_header(void **state)
{
	struct config c;

	(void)state;
	assert_int_equal(config_defaults(&c), 0);
	assert_restart_only_defaults(&c, "/var/lib/alarm-digest");
	assert_reloadable_defaults(&c);
	assert_non_null(c.text);
	assert_int_equal(c.text_len, 0);
	assert_non_null(c.path);
	config_free(&c);
	assert_zeroed(&c);
}

/* Every key in the shipped file equals its built-in default, except state_dir. */
static void
test_shipped_conf_matches_defaults(void **state)
{
	struct config def, c;
	struct changes cs = { .n = 0 };
	char path[1024], err[512] = "";

	(void)state;
	shipped_conf_path(path, sizeof(path));
	assert_int_equal(config_defaults(&def), 0);
	if (config_load(path, &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	/* Against the literals, not only against config_defaults through config_diff. */
	assert_restart_only_defaults(&c, "./state");
	assert_reloadable_defaults(&c);
	config_diff(&def, &c, changes_add, &cs);
	assert_int_equal(cs.n, 1);
	assert_string_equal(cs.v[0].key, "service.state_dir");
	assert_string_equal(cs.v[0].old_value, "/var/lib/alarm-digest");
	assert_string_equal(cs.v[0].new_value, "./state");
	assert_true(cs.v[0].restart);
	config_free(&def);
	config_free(&c);
}

/* The shipped file lists every key we know, each once, and no other. */
static void
test_shipped_conf_lists_every_key(void **state)
{
	bool seen[NELEM(key_table)] = { false };
	char path[1024], line[256], section[32] = "", key[96];
	FILE *f;
	size_t keys = 0;

	(void)state;
	assert_int_equal(NELEM(key_table), NKEYS);
	shipped_conf_path(path, sizeof(path));
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t i;

		if (line[0] == '[') {
			snprintf(section, sizeof(section), "%.*s", (int)strcspn(line + 1, "]"),
			    line + 1);
			continue;
		}
		if (line[0] == '#' || strchr(line, '=') == NULL)
			continue;
		snprintf(key, sizeof(key), "%s.%.*s", section, (int)strcspn(line, " ="), line);
		for (i = 0; i < NELEM(key_table); i++)
			if (strcmp(key_table[i].key, key) == 0)
				break;
		if (i == NELEM(key_table))
			fail_msg("%s is not a known key", key);
		assert_false(seen[i]);
		seen[i] = true;
		keys++;
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(keys, NKEYS);
}

/*
 * The three example instances of README "Running several instances" load,
 * form one deployment (same partitions and servers, R3) and can run side
 * by side on one machine (distinct names, state dirs and HTTP ports).
 */
static void
test_cluster_examples_load(void **state)
{
	struct config c[3];
	char path[1024], err[512];

	(void)state;
	for (int i = 0; i < 3; i++) {
		char want[16], *dir;

		/* Beside the shipped file: its path with the last name replaced. */
		shipped_conf_path(path, sizeof(path));
		dir = strrchr(path, '/') + 1;
		snprintf(dir, sizeof(path) - (size_t)(dir - path), "cluster-%d.conf", i + 1);
		err[0] = '\0';
		if (config_load(path, &c[i], err, sizeof(err)) != 0)
			fail_msg("%s: %s", path, err);
		snprintf(want, sizeof(want), "alarm-%d", i + 1);
		assert_string_equal(c[i].instance, want);
		assert_int_equal(c[i].partitions, 12);
		assert_int_equal(c[i].stream_replicas, 3);
		assert_non_null(strstr(c[i].servers, "4222"));
		assert_non_null(strstr(c[i].servers, "4223"));
		assert_non_null(strstr(c[i].servers, "4224"));
		for (int j = 0; j < i; j++) {
			assert_string_equal(c[i].servers, c[j].servers);
			assert_string_not_equal(c[i].state_dir, c[j].state_dir);
			assert_string_not_equal(c[i].http_listen, c[j].http_listen);
		}
	}
	for (int i = 0; i < 3; i++)
		config_free(&c[i]);
}

/* ---- durations and sizes ---- */

static void
test_duration_parse(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
		{ "0", 0 }, { "00", 0 }, { "0ms", 0 }, { "0d", 0 }, { "1ms", 1 }, { "250ms", 250 },
		{ "10s", 10000 }, { "5m", 300000 }, { "2h", 7200000 }, { "7d", 604800000 },
		{ "9223372036854775807ms", INT64_MAX },
		{ "106751991167d", INT64_C(106751991167) * 86400000 },
	};
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		{ "", EINVAL }, { "10", EINVAL }, { "1", EINVAL }, { "s", EINVAL },
		{ "-1s", EINVAL }, { "+1s", EINVAL }, { "1.5s", EINVAL }, { "10 s", EINVAL },
		{ " 10s", EINVAL }, { "10S", EINVAL }, { "10sec", EINVAL }, { "10us", EINVAL },
		{ "10M", EINVAL }, { "1d1h", EINVAL }, { "0x10s", EINVAL },
		{ "9223372036854775808ms", ERANGE }, { "9223372036854775807s", ERANGE },
		{ "106751991168d", ERANGE }, { "99999999999999999999999d", ERANGE },
	};
	int64_t v;

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++) {
		v = -42;
		if (config_parse_duration_ms(good[i].s, &v) != 0)
			fail_msg("rejected \"%s\"", good[i].s);
		assert_int_equal(v, good[i].ms);
	}
	for (size_t i = 0; i < NELEM(bad); i++) {
		v = -42;
		errno = 0;
		if (config_parse_duration_ms(bad[i].s, &v) != -1)
			fail_msg("accepted \"%s\"", bad[i].s);
		assert_int_equal(errno, bad[i].err);
		assert_int_equal(v, -42);
	}
}

static void
test_size_parse(void **state)
{
	static const struct {
		const char *s;
		int64_t bytes;
	} good[] = {
		{ "0", 0 }, { "17", 17 }, { "-1", -1 }, { "64K", 65536 }, { "64KiB", 65536 },
		{ "1M", 1 << 20 }, { "16MiB", 16 << 20 }, { "4G", INT64_C(4) << 30 },
		{ "4GiB", INT64_C(4) << 30 }, { "9223372036854775807", INT64_MAX },
		{ "8589934591G", INT64_C(8589934591) << 30 },
	};
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		{ "", EINVAL }, { "K", EINVAL }, { "1T", EINVAL }, { "1k", EINVAL },
		{ "1KB", EINVAL }, { "1Ki", EINVAL }, { "1 K", EINVAL }, { "-2", EINVAL },
		{ "-1K", EINVAL }, { "1.5M", EINVAL }, { "1MiB ", EINVAL }, { "+1", EINVAL },
		{ "9223372036854775808", ERANGE }, { "8589934592G", ERANGE },
		{ "9007199254740992K", ERANGE },
	};
	int64_t v;

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++) {
		v = -42;
		if (config_parse_size(good[i].s, &v) != 0)
			fail_msg("rejected \"%s\"", good[i].s);
		assert_int_equal(v, good[i].bytes);
	}
	for (size_t i = 0; i < NELEM(bad); i++) {
		v = -42;
		errno = 0;
		if (config_parse_size(bad[i].s, &v) != -1)
			fail_msg("accepted \"%s\"", bad[i].s);
		assert_int_equal(errno, bad[i].err);
		assert_int_equal(v, -42);
	}
}

/* ---- parsing ---- */

static void
test_parse_values(void **state)
{
	struct config c;

	(void)state;
	parse_ok("[nats]\n"
	    "servers = nats://a:4222,nats://b:4222\n"
	    "intake = core\n"
	    "ack_wait = 1500ms\n"
	    "stream_max_bytes = 2G\n"
	    "dead_letter_stream =\n"
	    "[service]\n"
	    "workers = 3\n"
	    "state_dir = /srv/alarm digest\n"
	    "log_level = debug\n"
	    "[limits]\n"
	    "max_message_bytes = 1M\n"
	    "max_future = 90s\n", &c);
	assert_string_equal(c.servers, "nats://a:4222,nats://b:4222");
	assert_int_equal(c.intake, INTAKE_CORE);
	assert_int_equal(c.ack_wait_ms, 1500);
	assert_int_equal(c.stream_max_bytes, INT64_C(2) << 30);
	assert_string_equal(c.dead_letter_stream, "");
	assert_int_equal(c.workers, 3);
	assert_int_equal(config_worker_count(&c), 3);
	assert_string_equal(c.state_dir, "/srv/alarm digest");
	assert_int_equal(c.log_level, LL_DEBUG);
	assert_int_equal(c.max_message_bytes, 1 << 20);
	assert_int_equal(c.max_future_ms, 90000);
	/* Untouched keys keep their defaults. */
	assert_string_equal(c.stream, "ALARMS");
	assert_int_equal(c.max_id_bytes, 256);
	config_free(&c);
}

/* Inline ';' comments, '#'/';' line comments, CRLF, a BOM, `""` for empty, name: value. */
static void
test_parse_syntax_variants(void **state)
{
	struct config c;

	(void)state;
	parse_ok("\xef\xbb\xbf; leading comment\r\n"
	    "[nats]\r\n"
	    "   # indented comment\r\n"
	    "stream = S1 ; the stream\r\n"
	    "dead_letter_stream = \"\"\r\n"
	    "\r\n"
	    "[service] ; section comment\r\n"
	    "workers: 2\r\n"
	    "[nats]\r\n"
	    "consumer = C1", &c);
	assert_string_equal(c.stream, "S1");
	assert_string_equal(c.dead_letter_stream, "");
	assert_int_equal(c.workers, 2);
	assert_string_equal(c.consumer, "C1");
	config_free(&c);

	parse_ok("", &c);
	assert_string_equal(c.text, "");
	assert_int_equal(c.text_len, 0);
	config_free(&c);
}

/* From memory: no NUL needed, the text is copied, `name` appears in errors. */
static void
test_parse_from_memory(void **state)
{
	static const char buf[] = "[service]\nworkers = 7\nXXXXXXXX";
	size_t len = strlen("[service]\nworkers = 7\n");
	struct config c;
	char err[256] = "";

	(void)state;
	assert_int_equal(config_parse(buf, len, "<hello>", &c, err, sizeof(err)), 0);
	assert_int_equal(c.workers, 7);
	assert_int_equal(c.text_len, len);
	assert_ptr_not_equal(c.text, buf);
	assert_memory_equal(c.text, buf, len);
	assert_int_equal(c.text[len], '\0');
	assert_string_equal(c.path, "<hello>");
	config_free(&c);

	assert_int_equal(config_parse("[service]\nworkers = x\n", 22, "<hello>", &c, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "<hello>:2: [service] workers: \"x\" is not an integer");
	assert_zeroed(&c);
}

static void
test_load_keeps_text(void **state)
{
	char path[] = "/tmp/test_config_XXXXXX";
	const char *text = "# comment\n[service]\nworkers = 5\n";
	struct config c;
	char err[256] = "";
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	if (config_load(path, &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.text, text);
	assert_int_equal(c.text_len, strlen(text));
	assert_string_equal(c.path, path);
	assert_int_equal(c.workers, 5);
	config_free(&c);
	assert_int_equal(unlink(path), 0);
}

static void
test_load_errors(void **state)
{
	char path[] = "/tmp/test_config_XXXXXX";
	const char *text = "[service]\n\nworkers = many\n";
	struct config c;
	char err[256] = "", want[512];
	int fd;

	(void)state;
	assert_int_equal(config_load("/nonexistent/alarm.conf", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/alarm.conf: No such file or directory");
	assert_zeroed(&c);

	assert_int_equal(config_load("/", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "/: Is a directory");
	assert_zeroed(&c);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:3: [service] workers: \"many\" is not an integer", path);
	assert_string_equal(err, want);
	assert_zeroed(&c);
	assert_int_equal(unlink(path), 0);
}

/* ---- errors: exact message and line for each kind ---- */

static void
test_errors_structure(void **state)
{
	(void)state;
	expect_error_str("[natz]\nservers = x\n", "x.conf:1: \"[natz]\": unknown section");
	/* A section with no keys never reaches inih's handler; we still catch it. */
	expect_error_str("[nats]\n\n[limit]\n", "x.conf:3: \"[limit]\": unknown section");
	expect_error_str("\xef\xbb\xbf[natz]\n", "x.conf:1: \"[natz]\": unknown section");
	expect_error_str("[nats]\nsever = x\n", "x.conf:2: [nats] sever: unknown key");
	expect_error_str("[nats]\nworkers = 1\n", "x.conf:2: [nats] workers: unknown key");
	expect_error_str("# c\nworkers = 4\n", "x.conf:2: workers: setting outside any [section]");
	expect_error_str("[nats]\nstream = A\n\nstream = B\n",
	    "x.conf:4: [nats] stream: duplicate key (first set on line 2)");
	expect_error_str("[nats]\nstream = A\n[service]\nworkers = 1\n[nats]\nstream = A\n",
	    "x.conf:6: [nats] stream: duplicate key (first set on line 2)");
	expect_error_str("[nats]\nstream = A\nnoeq\n",
	    "x.conf:3: \"noeq\" is not a setting (expected \"name = value\" or \"[section]\")");
	expect_error_str("[nats\nstream = A\n",
	    "x.conf:1: \"[nats\" is not a valid section header (expected \"[name]\")");
	expect_error_str("[nats] junk\n",
	    "x.conf:1: \"[nats] junk\" is not a valid section header (expected \"[name]\")");
	/* inih would glue this onto workers' value (multi-line mode). */
	expect_error_str("[service]\nworkers = 1\n  log_level = debug\n",
	    "x.conf:3: \"  log_level = debug\" is indented (continuation lines are not "
	    "supported; remove the leading blanks)");
	expect_error("[nats]\nstream = A\0B\n", 19, "x.conf:2: line contains a NUL byte");
	/* CRLF and comments do not shift line numbers. */
	expect_error_str("# c\r\n\r\n[service]\r\n; c\r\nworkers = x\r\n",
	    "x.conf:5: [service] workers: \"x\" is not an integer");
	expect_error_str("[service]\nworkers = 4 # four\n",
	    "x.conf:2: [service] workers: \"4 # four\" is not an integer "
	    "(inline comments start with ';', not '#')");
	/* [http] listen: numeric host:port, named in the error; "" turns it off. */
	expect_error_str("[cluster]\ninstance = a.b\n", "x.conf:2: [cluster] instance \"a.b\": use 1 to 64 of A-Z a-z 0-9 _ -");
	expect_error_str("[http]\nlisten = localhost:9465\n",
	    "x.conf:2: [http] listen: \"localhost:9465\" has no numeric IPv4 address before the port "
	    "(IPv6 goes in brackets)");
	expect_error_str("[http]\nlisten = 127.0.0.1:0\n",
	    "x.conf:2: [http] listen: \"127.0.0.1:0\" has a port that is not 1..65535");
}

/* inih would split an over-long line into pieces; we refuse it instead. */
static void
test_error_long_line(void **state)
{
	char text[1024];
	size_t n;

	(void)state;
	/* The limits below are literals for inih's line buffer of 200 bytes (Debian's build). */
	if (ini_max_line != 200)
		fail_msg("inih's ini_max_line is %d, these literals assume 200", ini_max_line);
	n = (size_t)snprintf(text, sizeof(text), "[nats]\nservers = ");
	memset(text + n, 'a', 300);
	snprintf(text + n + 300, sizeof(text) - n - 300, "\n");
	expect_error_str(text, "x.conf:2: line is too long (at most 198 bytes)");

	/* Exactly at the limit is fine: 198 bytes, of which 12 are "state_dir = ". */
	n = (size_t)snprintf(text, sizeof(text), "[service]\nstate_dir = ");
	memset(text + n, 'd', 186);
	snprintf(text + n + 186, sizeof(text) - n - 186, "\n");
	struct config c;
	parse_ok(text, &c);
	assert_int_equal(strlen(c.state_dir), 186);
	config_free(&c);
}

static void
test_errors_values(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[service]\nworkers = abc\n",
		  "x.conf:2: [service] workers: \"abc\" is not an integer" },
		{ "[service]\nworkers = 2000\n",
		  "x.conf:2: [service] workers: \"2000\" is out of range (0..1024)" },
		{ "[service]\nworkers = -1\n",
		  "x.conf:2: [service] workers: \"-1\" is out of range (0..1024)" },
		{ "[service]\nworkers = 99999999999999999999\n",
		  "x.conf:2: [service] workers: \"99999999999999999999\" is too large" },
		{ "[service]\nworkers =\n",
		  "x.conf:2: [service] workers: \"\" is not an integer" },
		{ "[nats]\nack_wait = 60\n",
		  "x.conf:2: [nats] ack_wait: \"60\" has no unit (use ms, s, m, h or d)" },
		{ "[nats]\nack_wait = 5x\n",
		  "x.conf:2: [nats] ack_wait: \"5x\" has an unknown unit (use ms, s, m, h or d)" },
		{ "[nats]\nack_wait = soon\n",
		  "x.conf:2: [nats] ack_wait: \"soon\" is not a duration "
		  "(an integer and a unit: 250ms, 10s, 5m, 2h, 7d)" },
		{ "[nats]\nack_wait = 99999999999999999999s\n",
		  "x.conf:2: [nats] ack_wait: \"99999999999999999999s\" is too large" },
		{ "[nats]\nack_wait = 9223372036854775807d\n",
		  "x.conf:2: [nats] ack_wait: \"9223372036854775807d\" is too large" },
		{ "[nats]\nack_wait = 2d\n",
		  "x.conf:2: [nats] ack_wait: \"2d\" is out of range (100ms..1d)" },
		{ "[worker]\nmap_size = 4T\n",
		  "x.conf:2: [worker] map_size: \"4T\" has an unknown suffix "
		  "(use K, KiB, M, MiB, G or GiB)" },
		{ "[worker]\nmap_size = big\n",
		  "x.conf:2: [worker] map_size: \"big\" is not a size "
		  "(an integer, optionally with K, KiB, M, MiB, G or GiB)" },
		{ "[worker]\nmap_size = -1\n",
		  "x.conf:2: [worker] map_size: \"-1\": unlimited (-1) is not allowed here" },
		{ "[worker]\nmap_size = 1K\n",
		  "x.conf:2: [worker] map_size: \"1K\" is out of range (1MiB..16384GiB)" },
		{ "[worker]\nmap_size = 99999999999G\n",
		  "x.conf:2: [worker] map_size: \"99999999999G\" is too large" },
		{ "[service]\nqueue_max_bytes = 1K\n",
		  "x.conf:2: [service] queue_max_bytes: \"1K\" is out of range (64KiB..64GiB)" },
		{ "[limits]\nmax_message_bytes = 9M\n",
		  "x.conf:2: [limits] max_message_bytes: \"9M\" is out of range (64..8MiB)" },
		{ "[nats]\nintake = turbo\n",
		  "x.conf:2: [nats] intake: \"turbo\" is not an intake mode (jetstream or core)" },
		{ "[service]\nlog_level = loud\n",
		  "x.conf:2: [service] log_level: \"loud\" is not a log level "
		  "(error, warn, info or debug)" },
		{ "[nats]\nstream = A.B\n",
		  "x.conf:2: [nats] stream: \"A.B\" contains '.', '*' or '>' "
		  "(not allowed in a stream or consumer name)" },
		{ "[nats]\nconsumer = c*\n",
		  "x.conf:2: [nats] consumer: \"c*\" contains '.', '*' or '>' "
		  "(not allowed in a stream or consumer name)" },
		{ "[nats]\ndead_letter_stream = DL>\n",
		  "x.conf:2: [nats] dead_letter_stream: \"DL>\" contains '.', '*' or '>' "
		  "(not allowed in a stream or consumer name)" },
		{ "[nats]\nstream =\n", "x.conf:2: [nats] stream: \"\" must not be empty" },
		{ "[nats]\nstream = \"\"\n", "x.conf:2: [nats] stream: \"\" must not be empty" },
		{ "[nats]\nstream = \"S\"\n",
		  "x.conf:2: [nats] stream: \"\\\"S\\\"\" contains '\"' "
		  "(values are not quoted; write \"\" alone for empty)" },
		{ "[nats]\nconsumer = my consumer\n",
		  "x.conf:2: [nats] consumer: \"my consumer\" contains whitespace" },
		{ "[nats]\nservers = nats://a,,nats://b\n",
		  "x.conf:2: [nats] servers: \"nats://a,,nats://b\" has an empty server URL" },
		{ "[nats]\nservers =\n", "x.conf:2: [nats] servers: \"\" must not be empty" },
		{ "[subjects]\ndigest = Alarm Digest\n",
		  "x.conf:2: [subjects] digest: \"Alarm Digest\" contains whitespace" },
		{ "[subjects]\nstatus = alarms.*\n",
		  "x.conf:2: [subjects] status: \"alarms.*\" contains a wildcard "
		  "(a literal subject is needed)" },
		{ "[subjects]\nrequest = a..b\n",
		  "x.conf:2: [subjects] request: \"a..b\" has an empty token" },
		{ "[nats]\ndeliver_subject = deliver.\n",
		  "x.conf:2: [nats] deliver_subject: \"deliver.\" has an empty token" },
		{ "[subjects]\ndead_letter =\n",
		  "x.conf:2: [subjects] dead_letter: \"\" must not be empty" },
		{ "[service]\nstate_dir =\n",
		  "x.conf:2: [service] state_dir: \"\" must not be empty" },
		{ "[service]\nstate_dir = a\tb\n",
		  "x.conf:2: [service] state_dir: \"a\\x09b\" contains a control character" },
		{ "[service]\nuser = -alarm\n",
		  "x.conf:2: [service] user: \"-alarm\" starts with '-' (not a user or group name)" },
		{ "[service]\nuser = alarm/digest\n",
		  "x.conf:2: [service] user: \"alarm/digest\" contains a byte other than letters, "
		  "digits, '.', '_' and '-' (not a user or group name)" },
		{ "[service]\ngroup = alarm digest\n",
		  "x.conf:2: [service] group: \"alarm digest\" contains whitespace" },
		{ "[service]\ngroup = a23456789012345678901234567890123\n",
		  "x.conf:2: [service] group: \"a23456789012345678901234567890123\" is longer than "
		  "32 bytes (not a user or group name)" },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++)
		expect_error_str(cases[i].text, cases[i].want);
}

/* Relations between keys, checked after the whole file is read. */
static void
test_errors_cross_key(void **state)
{
	(void)state;
	expect_error_str("[service]\nrestart_backoff_min = 1m\n",
	    "x.conf:2: [service] restart_backoff_min (1m) is greater than "
	    "restart_backoff_max (30s)");
	expect_error_str("# x\n[service]\nrestart_backoff_max = 1m\nrestart_backoff_min = 2m\n",
	    "x.conf:4: [service] restart_backoff_min (2m) is greater than "
	    "restart_backoff_max (1m)");
	expect_error_str("[subjects]\ndigest = AlarmStatusChanged\n",
	    "x.conf:2: [subjects] digest: \"AlarmStatusChanged\" is also [subjects] status; "
	    "they must differ");
	expect_error_str("[nats]\ndeliver_subject = X\n[subjects]\nrequest = Y\n"
	    "\ndigest = X\n",
	    "x.conf:6: [subjects] digest: \"X\" is also [nats] deliver_subject; "
	    "they must differ");
	expect_error_str("[nats]\ndead_letter_stream = ALARMS\n",
	    "x.conf:2: [nats] dead_letter_stream: \"ALARMS\" is also [nats] stream; "
	    "they must differ");

	/* Equal limits are fine; an empty dead-letter stream clashes with nothing. */
	struct config c;
	parse_ok("[service]\nrestart_backoff_min = 5s\nrestart_backoff_max = 5s\n", &c);
	config_free(&c);
}

/* Only the first error is reported, whichever of inih and us finds it. */
static void
test_first_error_only(void **state)
{
	(void)state;
	expect_error_str("[service]\nworkers = abc\nlog_level = loud\n",
	    "x.conf:2: [service] workers: \"abc\" is not an integer");
	/* inih's syntax error comes first; it keeps going, and then we fail too. */
	expect_error_str("[nats]\nnoeq\n[service]\nworkers = abc\n",
	    "x.conf:2: \"noeq\" is not a setting (expected \"name = value\" or \"[section]\")");
	expect_error_str("[nats]\nnoeq\n[bogus]\n",
	    "x.conf:2: \"noeq\" is not a setting (expected \"name = value\" or \"[section]\")");
	/* Ours comes first: parsing stops there, inih never sees the bad line. */
	expect_error_str("[service]\nworkers = abc\nnoeq\n",
	    "x.conf:2: [service] workers: \"abc\" is not an integer");
	/* A per-key error beats a cross-key one found later. */
	expect_error_str("[subjects]\ndigest = AlarmStatusChanged\n[service]\nworkers = x\n",
	    "x.conf:4: [service] workers: \"x\" is not an integer");
}

/* Every numeric bound, just inside and just outside. */
static void
test_bounds(void **state)
{
	static const struct {
		const char *section, *key, *ok_lo, *ok_hi, *bad_lo, *bad_hi;
	} cases[] = {
		{ "nats", "max_ack_pending", "1", "10000000", "0", "10000001" },
		{ "nats", "stream_replicas", "1", "5", "0", "6" },
		{ "nats", "stream_max_age", "0", "3650d", NULL, "3651d" },
		{ "nats", "stream_max_bytes", "1M", "-1", "1048575", NULL },
		{ "nats", "stream_max_msg_size", "1K", "1G", "1023", "1073741825" },
		{ "nats", "stream_max_msg_size", "0", "-1", "1", NULL },
		{ "nats", "dead_letter_max_bytes", "1M", "-1", "1048575", NULL },
		{ "nats", "dead_letter_max_msg_size", "1K", "1G", "1023", "1073741825" },
		{ "nats", "dead_letter_max_msg_size", "0", "-1", "1", NULL },
		{ "service", "workers", "0", "1024", "-1", "1025" },
		{ "service", "crash_loop_max", "1", "1000000", "0", "1000001" },
		{ "service", "queue_max_bytes", "64K", "64G", "65535", "68719476737" },
		{ "service", "shutdown_timeout", "0", "1h", NULL, "3600001ms" },
		{ "service", "worker_stall_timeout", "1s", "1d", "999ms", "86400001ms" },
		{ "service", "spill_after", "10ms", "1h", "9ms", "3600001ms" },
		{ "service", "spill_max_bytes", "0", "1024G", NULL, "1025G" },
		{ "worker", "commit_max_msgs", "1", "1000000", "0", "1000001" },
		{ "worker", "commit_max_ms", "0", "1m", NULL, "60001ms" },
		{ "worker", "map_size", "1MiB", "16384G", "1048575", "16385G" },
		{ "worker", "map_size_max", "1MiB", "16384G", "1048575", "16385G" },
		{ "worker", "tombstone_retention", "1s", "3650d", "999ms", "3651d" },
		{ "limits", "max_message_bytes", "64", "8MiB", "63", "8388609" },
		{ "limits", "max_id_bytes", "1", "480", "0", "481" },
		{ "limits", "max_future", "0", "3650d", NULL, "3651d" },
		{ "limits", "max_alarms_per_user", "1", "100000000", "0", "100000001" },
	};
	char text[256];
	struct config c;

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		const char *vals[] = { cases[i].ok_lo, cases[i].ok_hi, cases[i].bad_lo,
		    cases[i].bad_hi };

		for (size_t v = 0; v < 4; v++) {
			char err[512] = "";
			int rc;

			if (vals[v] == NULL)
				continue;
			snprintf(text, sizeof(text), "[%s]\n%s = %s\n", cases[i].section,
			    cases[i].key, vals[v]);
			rc = config_parse(text, strlen(text), "x.conf", &c, err, sizeof(err));
			if (v < 2 && rc != 0)
				fail_msg("%s", err);
			if (v >= 2 && (rc != -1 || strstr(err, "is out of range") == NULL))
				fail_msg("%s.%s = %s: rc %d, \"%s\"", cases[i].section, cases[i].key,
				    vals[v], rc, err);
			config_free(&c);
		}
	}
}

/* Error paths after many strings were already replaced must free them all. */
static void
test_error_after_strings_leaks_nothing(void **state)
{
	(void)state;
	expect_error_str("[nats]\nservers = nats://x\nstream = S\nconsumer = C\n"
	    "[subjects]\nstatus = a\nrequest = b\ndigest = c\ndead_letter = d\n"
	    "[service]\nstate_dir = /x\nworkers = nope\n",
	    "x.conf:12: [service] workers: \"nope\" is not an integer");
	expect_error_str("[nats]\nservers = nats://x\n[subjects]\ndigest = SendAlarmDigest\n",
	    "x.conf:4: [subjects] digest: \"SendAlarmDigest\" is also [subjects] request; "
	    "they must differ");
}

/* ---- diff ---- */

static const char all_changed[] =
	"[nats]\n"
	"servers = nats://10.0.0.1:4222,nats://10.0.0.2:4222\n"
	"intake = core\n"
	"stream = S2\n"
	"consumer = c2\n"
	"deliver_subject = d2.deliver\n"
	"max_ack_pending = 1000\n"
	"ack_wait = 30s\n"
	"stream_max_age = 1d\n"
	"stream_max_bytes = 1G\n"
	"stream_replicas = 3\n"
	"stream_max_msg_size = 2M\n"
	"dead_letter_stream =\n"
	"dead_letter_max_bytes = -1\n"
	"dead_letter_max_msg_size = -1\n"
	"user = svc\n"
	"password_file = /dev/null\n"
	"tls_ca_file = /dev/null\n"
	"tls_cert_file = /dev/null\n"
	"tls_key_file = /dev/null\n"
	"tls_required = yes\n"
	"[subjects]\n"
	"status = st2\n"
	"request = rq2\n"
	"digest = dg2\n"
	"dead_letter = dl2\n"
	"[service]\n"
	"workers = 4\n"
	"state_dir = /tmp/state\n"
	"user = alarm-digest\n"
	"group = alarm.digest_2\n"
	"log_level = debug\n"
	"restart_backoff_min = 2s\n"
	"restart_backoff_max = 1m\n"
	"restart_healthy = 20s\n"
	"crash_loop_max = 3\n"
	"shutdown_timeout = 5s\n"
	"queue_max_bytes = 1M\n"
	"worker_stall_timeout = 5s\n"
	"spill_after = 250ms\n"
	"spill_max_bytes = 0\n"
	"[worker]\n"
	"commit_max_msgs = 10\n"
	"commit_max_ms = 5ms\n"
	"tombstone_retention = 1d\n"
	"map_size = 1G\n"
	"map_size_max = 2G\n"
	"[limits]\n"
	"max_message_bytes = 1K\n"
	"max_id_bytes = 64\n"
	"max_future = 1h\n"
	"max_alarms_per_user = 7\n"
	"[http]\n"
	"listen = [::1]:9466\n"
	"[cluster]\n"
	"partitions = 12\n"
	"instance = node-a\n"
	"lease_ttl = 5s\n"
	"lease_bucket = LEASES2\n"
	"partition_stream = PARTS2\n"
	"partition_subject = part2\n";

/* The reloadable values all_changed sets, as literals. */
static void
assert_reloadable_all_changed(const struct config *c)
{
	assert_string_equal(c->subject_digest, "dg2");
	assert_string_equal(c->subject_dead_letter, "dl2");
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->log_level, LL_DEBUG);
	assert_int_equal(c->restart_backoff_min_ms, 2000);
	assert_int_equal(c->restart_backoff_max_ms, 60000);
	assert_int_equal(c->restart_healthy_ms, 20000);
	assert_int_equal(c->crash_loop_max, 3);
	assert_int_equal(c->shutdown_timeout_ms, 5000);
	assert_int_equal(c->queue_max_bytes, 1 << 20);
	assert_int_equal(c->worker_stall_timeout_ms, 5000);
	assert_int_equal(c->spill_after_ms, 250);
	assert_int_equal(c->spill_max_bytes, 0);
	assert_int_equal(c->commit_max_msgs, 10);
	assert_int_equal(c->commit_max_ms, 5);
	assert_int_equal(c->tombstone_retention_ms, 86400000);
	assert_int_equal(c->map_size_bytes, INT64_C(1) << 30);
	assert_int_equal(c->map_size_max_bytes, INT64_C(2) << 30);
	assert_int_equal(c->max_message_bytes, 1024);
	assert_int_equal(c->max_id_bytes, 64);
	assert_int_equal(c->max_future_ms, 3600000);
	assert_int_equal(c->max_alarms_per_user, 7);
}

static void
test_diff_every_key(void **state)
{
	struct config a, b, c;
	struct changes cs = { .n = 0 };
	const struct change *ch;

	(void)state;
	assert_int_equal(NELEM(key_table), NKEYS);
	assert_int_equal(config_defaults(&a), 0);
	parse_ok(all_changed, &b);
	config_diff(&a, &b, changes_add, &cs);
	/* Only one way to authenticate at a time: the other three are diffed below. */
	parse_ok("[nats]\ntoken_file = /dev/null\n", &c);
	config_diff(&a, &c, changes_add, &cs);
	config_free(&c);
	parse_ok("[nats]\nnkey_seed_file = /dev/null\n", &c);
	config_diff(&a, &c, changes_add, &cs);
	config_free(&c);
	parse_ok("[nats]\ncreds_file = /dev/null\n", &c);
	config_diff(&a, &c, changes_add, &cs);
	config_free(&c);
	assert_int_equal(cs.n, NKEYS);
	for (size_t i = 0; i < NELEM(key_table); i++) {
		ch = changes_find(&cs, key_table[i].key);
		if (ch == NULL)
			fail_msg("no change reported for %s", key_table[i].key);
		if (ch->restart != key_table[i].restart)
			fail_msg("%s: restart_needed %d", key_table[i].key, ch->restart);
	}

	/* Values are reported formatted, in the units an operator writes. */
	ch = changes_find(&cs, "nats.ack_wait");
	assert_string_equal(ch->old_value, "1m");
	assert_string_equal(ch->new_value, "30s");
	ch = changes_find(&cs, "service.queue_max_bytes");
	assert_string_equal(ch->old_value, "16MiB");
	assert_string_equal(ch->new_value, "1MiB");
	ch = changes_find(&cs, "nats.stream_max_bytes");
	assert_string_equal(ch->old_value, "-1");
	assert_string_equal(ch->new_value, "1GiB");
	ch = changes_find(&cs, "nats.dead_letter_stream");
	assert_string_equal(ch->old_value, "ALARMS_DEAD_LETTER");
	assert_string_equal(ch->new_value, "");
	ch = changes_find(&cs, "nats.intake");
	assert_string_equal(ch->old_value, "jetstream");
	assert_string_equal(ch->new_value, "core");
	ch = changes_find(&cs, "service.log_level");
	assert_string_equal(ch->old_value, "info");
	assert_string_equal(ch->new_value, "debug");
	ch = changes_find(&cs, "worker.commit_max_ms");
	assert_string_equal(ch->old_value, "100ms");
	assert_string_equal(ch->new_value, "5ms");
	ch = changes_find(&cs, "limits.max_future");
	assert_string_equal(ch->old_value, "1d");
	assert_string_equal(ch->new_value, "1h");

	/* The reverse direction reports the same keys. */
	cs.n = 0;
	config_diff(&b, &a, changes_add, &cs);
	assert_int_equal(cs.n, NKEYS - 3);
	config_free(&a);
	config_free(&b);
}

/* Same value spelled differently is no change; an identical config reports nothing. */
static void
test_diff_compares_values(void **state)
{
	struct config a, b;
	struct changes cs = { .n = 0 };

	(void)state;
	assert_int_equal(config_defaults(&a), 0);
	parse_ok("[nats]\nack_wait = 60000ms\nstream_max_age = 168h\n"
	    "[service]\nqueue_max_bytes = 16777216\nrestart_backoff_min = 1000ms\n"
	    "[worker]\nmap_size = 4096MiB\n[limits]\nmax_message_bytes = 64K\n", &b);
	config_diff(&a, &b, changes_add, &cs);
	assert_int_equal(cs.n, 0);
	config_diff(&a, &a, changes_add, &cs);
	assert_int_equal(cs.n, 0);
	config_free(&b);

	parse_ok("[service]\nworkers = 2\nlog_level = warn\n", &b);
	config_diff(&a, &b, changes_add, &cs);
	assert_int_equal(cs.n, 2);
	assert_string_equal(cs.v[0].key, "service.workers");
	assert_string_equal(cs.v[0].old_value, "0");
	assert_string_equal(cs.v[0].new_value, "2");
	assert_false(cs.v[0].restart);
	assert_string_equal(cs.v[1].key, "service.log_level");
	assert_false(cs.v[1].restart);
	config_free(&a);
	config_free(&b);
}

/* After a reload the restart-only keys keep their running values; the rest move. */
static void
test_keep_restart_only(void **state)
{
	struct config running, fresh;
	struct changes cs = { .n = 0 };
	size_t reloadable = 0;

	(void)state;
	assert_int_equal(config_defaults(&running), 0);
	parse_ok(all_changed, &fresh);
	assert_int_equal(config_keep_restart_only(&fresh, &running), 0);
	config_diff(&running, &fresh, changes_add, &cs);
	for (size_t i = 0; i < NELEM(key_table); i++) {
		const struct change *ch = changes_find(&cs, key_table[i].key);

		if (key_table[i].restart && ch != NULL)
			fail_msg("%s changed: %s -> %s", ch->key, ch->old_value, ch->new_value);
		if (!key_table[i].restart && ch == NULL)
			fail_msg("%s did not change", key_table[i].key);
		reloadable += !key_table[i].restart;
	}
	assert_int_equal(cs.n, reloadable);
	/* The same, field by field against literals rather than through config_diff. */
	assert_restart_only_defaults(&fresh, "/var/lib/alarm-digest");
	assert_reloadable_all_changed(&fresh);
	/* Own copies, not shared pointers: both free cleanly (ASan checks). */
	assert_ptr_not_equal(fresh.servers, running.servers);
	assert_string_equal(fresh.servers, running.servers);
	assert_string_equal(fresh.subject_digest, "dg2");

	/*
	 * Workers parse the text, not the struct: it must now describe the
	 * kept settings (state_dir especially), and parse back to the same values.
	 */
	struct config again;
	char err[512] = "";
	if (config_parse(fresh.text, fresh.text_len, "<hello>", &again, err, sizeof(err)) != 0)
		fail_msg("%s\n%s", err, fresh.text);
	cs.n = 0;
	config_diff(&fresh, &again, changes_add, &cs);
	assert_int_equal(cs.n, 0);
	assert_restart_only_defaults(&again, "/var/lib/alarm-digest");
	assert_reloadable_all_changed(&again);
	assert_int_equal(strlen(fresh.text), fresh.text_len);
	config_free(&again);
	config_free(&running);
	config_free(&fresh);

	/* Nothing restart-only changed: the file's own text (comments and all) stays. */
	parse_ok("[service]\nworkers = 2 ; two\n", &running);
	parse_ok("[service]\nworkers = 3 ; three\n", &fresh);
	assert_int_equal(config_keep_restart_only(&fresh, &running), 0);
	assert_string_equal(fresh.text, "[service]\nworkers = 3 ; three\n");
	assert_int_equal(fresh.workers, 3);
	config_free(&running);
	config_free(&fresh);

	/* An empty string kept from the running config renders as "" and reads back. */
	parse_ok("[nats]\ndead_letter_stream =\n", &running);
	parse_ok("[nats]\ndead_letter_stream = DL2\n", &fresh);
	assert_int_equal(config_keep_restart_only(&fresh, &running), 0);
	assert_non_null(strstr(fresh.text, "\ndead_letter_stream=\"\"\n"));
	if (config_parse(fresh.text, fresh.text_len, "<hello>", &again, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(again.dead_letter_stream, "");
	config_free(&again);
	config_free(&running);
	config_free(&fresh);
}

/* Online CPUs as the kernel lists them in /sys ("0-3,6"); -1 if unreadable. */
static long
online_cpus_sys(void)
{
	char list[1024];
	FILE *f = fopen("/sys/devices/system/cpu/online", "r");
	long n = 0;

	if (f == NULL)
		return -1;
	if (fgets(list, sizeof(list), f) == NULL) {
		fclose(f);
		return -1;
	}
	fclose(f);
	for (char *p = list; *p != '\0' && *p != '\n'; ) {
		char *end;
		long lo = strtol(p, &end, 10), hi = lo;

		if (end == p)
			return -1;
		if (*end == '-') {
			p = end + 1;
			hi = strtol(p, &end, 10);
			if (end == p || hi < lo)
				return -1;
		}
		n += hi - lo + 1;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

/* Without /sys: the "cpuN" lines of /proc/stat; -1 if unreadable. */
static long
online_cpus_proc(void)
{
	char line[512];
	FILE *f = fopen("/proc/stat", "r");
	long n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9';
	fclose(f);
	return n > 0 ? n : -1;
}

/*
 * The online CPU count read by the test itself, not with sysconf(), which is
 * what config_worker_count asks.
 */
static long
online_cpus(void)
{
	long n = online_cpus_sys();

	return n > 0 ? n : online_cpus_proc();
}

/* Secrets come from files that must be readable, in combinations that make sense. */
static void
test_auth_rules(void **state)
{
	struct config c;

	(void)state;
	expect_error_str("[nats]\nuser = u\n",
	    "x.conf:2: [nats] user is set but password_file is not; they go together");
	expect_error_str("[nats]\npassword_file = /dev/null\n",
	    "x.conf:2: [nats] password_file is set but user is not; they go together");
	expect_error_str("[nats]\ntls_cert_file = /dev/null\n",
	    "x.conf:2: [nats] tls_cert_file is set but tls_key_file is not; they go together");
	expect_error_str("[nats]\ntoken_file = /dev/null\ncreds_file = /dev/null\n",
	    "x.conf:3: [nats] token_file and creds_file are both set; choose one way to "
	    "authenticate (user + password_file, token_file, nkey_seed_file or creds_file)");
	expect_error_str("[nats]\ntoken_file = /nonexistent/token\n",
	    "x.conf:2: [nats] token_file: cannot read \"/nonexistent/token\": "
	    "No such file or directory");
	expect_error_str("[nats]\ntls_required = maybe\n",
	    "x.conf:2: [nats] tls_required: \"maybe\" is not yes or no");
	expect_error_str("[nats]\nuser = a b\n",
	    "x.conf:2: [nats] user: \"a b\" contains whitespace");
	parse_ok("[nats]\nuser = svc\npassword_file = /dev/null\ntls_required = yes\n", &c);
	assert_string_equal(c.nats_user, "svc");
	assert_string_equal(c.password_file, "/dev/null");
	assert_true(c.tls_required);
	config_free(&c);
}

/* Passwords written into URLs never reach a log line through a diff. */
static void
test_redact_servers(void **state)
{
	struct config a, b;
	struct changes cs = { .n = 0 };
	char buf[256];

	(void)state;
	config_redact_servers("nats://u:secret@h:4222, tls://tok@h2,nats://h3", buf, sizeof(buf));
	assert_string_equal(buf, "nats://***@h:4222, tls://***@h2,nats://h3");
	config_redact_servers("u:p@w@host", buf, sizeof(buf));
	assert_string_equal(buf, "***@host");
	config_redact_servers("nats://h/a@b", buf, sizeof(buf));
	assert_string_equal(buf, "nats://h/a@b");
	config_redact_servers("nats://u:secret@h:4222", buf, 12);
	assert_null(strstr(buf, "secret"));
	assert_true(config_servers_have_userinfo("nats://h,nats://x:y@h"));
	assert_false(config_servers_have_userinfo("nats://h,nats://h2"));
	parse_ok("[nats]\nservers = nats://u:old@h\n", &a);
	parse_ok("[nats]\nservers = nats://u:new@h\n", &b);
	config_diff(&a, &b, changes_add, &cs);
	assert_int_equal(cs.n, 1);
	assert_string_equal(cs.v[0].old_value, "nats://***@h");
	assert_string_equal(cs.v[0].new_value, "nats://***@h");
	config_free(&a);
	config_free(&b);
}

static void
test_worker_count(void **state)
{
	struct config c;
	long cpus = online_cpus();

	(void)state;
	if (cpus < 1) {
		print_message("neither /sys nor /proc lists the CPUs: count not checked\n");
		skip();
	}
	assert_int_equal(config_defaults(&c), 0);
	assert_int_equal(config_worker_count(&c), cpus > 1024 ? 1024 : cpus);
	c.workers = 12;
	assert_int_equal(config_worker_count(&c), 12);
	config_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_match_header),
		cmocka_unit_test(test_shipped_conf_matches_defaults),
		cmocka_unit_test(test_shipped_conf_lists_every_key),
		cmocka_unit_test(test_cluster_examples_load),
		cmocka_unit_test(test_duration_parse),
		cmocka_unit_test(test_size_parse),
		cmocka_unit_test(test_parse_values),
		cmocka_unit_test(test_parse_syntax_variants),
		cmocka_unit_test(test_parse_from_memory),
		cmocka_unit_test(test_load_keeps_text),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_errors_structure),
		cmocka_unit_test(test_error_long_line),
		cmocka_unit_test(test_errors_values),
		cmocka_unit_test(test_errors_cross_key),
		cmocka_unit_test(test_first_error_only),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_error_after_strings_leaks_nothing),
		cmocka_unit_test(test_diff_every_key),
		cmocka_unit_test(test_diff_compares_values),
		cmocka_unit_test(test_keep_restart_only),
		cmocka_unit_test(test_auth_rules),
		cmocka_unit_test(test_redact_servers),
		cmocka_unit_test(test_worker_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
