/*
 * Scenarios about the limits of "one message never stops the others"
 * (docs/PROTOCOL.md, "Limits") and resuming at the true floor:
 *
 *   big_message       a message of exactly the broker's max_payload, and one
 *                     just over max_message_bytes, among valid traffic
 *   dead_letter_fail  the dead-letter stream refuses copies (MaxMsgs 1,
 *                     discard new) while valid traffic goes on
 *   restart_floor     restarts, a kill -9 and an interrupted consumer reset
 *                     with nothing acked in between: only the unacked tail
 *                     comes again, never the whole stream
 *   wire_escape       a subject and a reply holding ESC and BEL: the log
 *                     shows \x1b and \x07, never the raw bytes
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "itest.h"

#define UPD "AlarmStatusChanged"
#define REQ "SendAlarmDigest"
#define DL_STREAM "ALARMS_DEAD_LETTER"

/* ---- helpers ---- */

static int
lim_consumer(struct env *e, jsConsumerInfo **ci)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetConsumerInfo(ci, bus_js(e->bus), "ALARMS", "alarm-digest", NULL, &jerr);

	if (s != NATS_OK) {
		harness_seterr("consumer info: %s (jetstream error %d)", natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	return 0;
}

/* Every message of the input stream acked, and no consumer reset since the start. */
static int
lim_wait_acked(struct env *e, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	uint64_t msgs, last, floor = 0;
	int64_t pending = -1;

	while (harness_now_ms() < deadline) {
		jsConsumerInfo *ci = NULL;

		if (bus_stream_state(e->bus, "ALARMS", &msgs, &last) == -1 || lim_consumer(e, &ci) == -1)
			return -1;
		floor = ci->AckFloor.Stream;
		pending = ci->NumAckPending;
		jsConsumerInfo_Destroy(ci);
		if (floor == last && pending == 0)
			return 0;
		if (env_alive(e) == -1)
			return -1;
		harness_sleep_ms(200);
	}
	harness_seterr("ack floor %" PRIu64 ", %" PRId64 " acks pending, stream at %" PRIu64
	    " after %lld ms", floor, pending, last, (long long)timeout_ms);
	return -1;
}

/* The whole service log, or NULL (harness_err). */
static char *
lim_log(struct env *e, size_t *len)
{
	return harness_read_file(e->svc.log, len);
}

static int
lim_log_has(struct env *e, const char *needle, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		size_t len;
		char *log = lim_log(e, &len);
		bool found = log != NULL && strstr(log, needle) != NULL;

		free(log);
		if (found)
			return 0;
		if (harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(200);
	}
	harness_seterr("the service log has no line with \"%s\"", needle);
	return -1;
}

/* The supervisor's process title (setproctitle rewrites its cmdline). */
static int
lim_title(struct env *e, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)e->svc.proc.pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		harness_seterr("open %s failed", path);
		return -1;
	}
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0) {
		harness_seterr("read %s: nothing", path);
		return -1;
	}
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return 0;
}

/* Every message acked, and never by way of a consumer reset: bad input does not pause acks. */
static int
lim_acked_without_reset(struct env *e)
{
	size_t len;
	char *log;
	bool reset;

	if (lim_wait_acked(e, 15000) == -1)
		return -1;
	if ((log = lim_log(e, &len)) == NULL)
		return -1;
	reset = strstr(log, "resetting the consumer") != NULL || strstr(log, "acks paused") != NULL;
	free(log);
	if (reset) {
		harness_seterr("the consumer was reset (the log says so): bad input must not pause acks");
		return -1;
	}
	return 0;
}

/* `total` bytes of JSON: members plus a "Pad" member; a valid update if members are. */
static char *
lim_padded(const char *members, size_t total)
{
	size_t head = strlen(members) + strlen("{,\"Pad\":\"\"}");
	char *s;

	if (total < head || (s = malloc(total + 1)) == NULL)
		return NULL;
	snprintf(s, total + 1, "{%s,\"Pad\":\"", members);
	memset(s + strlen(s), 'p', total - head);
	memcpy(s + total - 2, "\"}", 3);
	return s;
}

/* A plain publish (no headers: a JetStream publish would add Nats-Msg-Id), then stored. */
static int
lim_publish_raw(struct env *e, const char *subject, const char *reply, const void *data, size_t len)
{
	uint64_t msgs, before, after;
	int64_t deadline;
	natsStatus s;

	if (bus_stream_state(e->bus, "ALARMS", &msgs, &before) == -1)
		return -1;
	if (reply != NULL)
		s = natsConnection_PublishRequest(bus_conn(e->bus), subject, reply, data, (int)len);
	else
		s = natsConnection_Publish(bus_conn(e->bus), subject, data, (int)len);
	if (s != NATS_OK) {
		harness_seterr("publish %zu bytes: %s", len, natsStatus_GetText(s));
		return -1;
	}
	if (bus_flush(e->bus, 5000) == -1)
		return -1;
	if (reply != NULL)
		return 0;   /* a request to the deliver subject: not for the stream */
	/* Stored before the next message, so the stream keeps the order the model has. */
	for (deadline = harness_now_ms() + 5000; harness_now_ms() < deadline; harness_sleep_ms(20)) {
		if (bus_stream_state(e->bus, "ALARMS", &msgs, &after) == -1)
			return -1;
		if (after > before)
			return 0;
	}
	harness_seterr("a %zu-byte message on %s never reached stream ALARMS", len, subject);
	return -1;
}

static int
lim_update(struct env *e, struct model *m, const char *user, const char *alarm, int64_t sec)
{
	char ts[48];
	struct event up = { .request = false, .user = (char *)user, .alarm = (char *)alarm,
		.status = "WARNING", .ts = ts };

	model_ts_print(sec, 0, 0, 0, false, ts, sizeof(ts));
	return event_send(&up, e->bus, m);
}

static int
lim_request(struct env *e, struct model *m, const char *user)
{
	struct event rq = { .request = true, .user = (char *)user };

	return event_send(&rq, e->bus, m);
}

/* ---- big_message ---- */

struct big {
	char *data[3];
	size_t len[3];
	const char *subject[3];
};

/*
 * Two messages of exactly max_payload bytes (an update and a request) and
 * one of max_message_bytes + 1, each between valid traffic of 20 users.
 */
static int
big_send(struct env *e, struct model *m, struct big *b, int64_t base)
{
	size_t max_payload = (size_t)natsConnection_GetMaxPayload(bus_conn(e->bus));
	char user[32], members[256];
	int k = 0;

	for (int u = 0; u < 20; u++) {
		snprintf(user, sizeof(user), "bm-%03d", u);
		if (lim_update(e, m, user, "a1", base + u) == -1)
			return -1;
		if (u == 5 || u == 10 || u == 15) {
			if (u == 15)
				snprintf(members, sizeof(members), "\"UserID\":\"%s\"", user);
			else
				snprintf(members, sizeof(members), "\"AlarmID\":\"big\",\"UserID\":\"%s\","
				    "\"Status\":\"CRITICAL\",\"ChangedAt\":\"2021-08-17T15:33:59Z\"", user);
			b->len[k] = u == 10 ? 65537 : max_payload;
			b->subject[k] = u == 15 ? REQ : UPD;
			if ((b->data[k] = lim_padded(members, b->len[k])) == NULL) {
				harness_seterr("out of memory");
				return -1;
			}
			if (lim_publish_raw(e, b->subject[k], NULL, b->data[k], b->len[k]) == -1)
				return -1;
			k++;
		}
		if (lim_request(e, m, user) == -1)
			return -1;
	}
	return 0;
}

/* The dead-letter copy of original i, from the stream (NULL if none). */
static natsMsg *
big_copy(struct env *e, const struct big *b, int i)
{
	uint64_t msgs, last;

	if (bus_stream_state(e->bus, DL_STREAM, &msgs, &last) == -1)
		return NULL;
	for (uint64_t seq = 1; seq <= last; seq++) {
		natsMsg *msg = NULL;
		jsErrCode jerr = 0;
		size_t n;

		if (js_GetMsg(&msg, bus_js(e->bus), DL_STREAM, seq, NULL, &jerr) != NATS_OK)
			continue;
		n = (size_t)natsMsg_GetDataLength(msg);
		/* The first 200 bytes tell the three apart (the user differs). */
		if (n >= 200 && n <= b->len[i] && memcmp(natsMsg_GetData(msg), b->data[i], n) == 0)
			return msg;
		natsMsg_Destroy(msg);
	}
	harness_seterr("no copy of the %zu-byte message in %s (%" PRIu64 " messages)", b->len[i],
	    DL_STREAM, msgs);
	return NULL;
}

static int
big_check_header(natsMsg *msg, const char *key, const char *want_prefix)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(msg, key, &v) != NATS_OK || v == NULL) {
		if (want_prefix == NULL)
			return 0;
		harness_seterr("copy has no %s header", key);
		return -1;
	}
	if (want_prefix == NULL) {
		harness_seterr("copy has %s: %s, want no such header", key, v);
		return -1;
	}
	if (strncmp(v, want_prefix, strlen(want_prefix)) != 0) {
		harness_seterr("copy has %s: %.100s, want \"%s...\"", key, v, want_prefix);
		return -1;
	}
	return 0;
}

/* Both max_payload messages: the first bytes kept, the original size in a header. */
static int
big_check_truncated(struct env *e, const struct big *b)
{
	char size[32];

	for (int i = 0; i < 3; i += 2) {
		natsMsg *msg = big_copy(e, b, i);
		size_t n;
		int rc = 0;

		if (msg == NULL)
			return -1;
		n = (size_t)natsMsg_GetDataLength(msg);
		snprintf(size, sizeof(size), "%zu", b->len[i]);
		if (big_check_header(msg, "Alarm-Reject-Reason", "oversized: ") == -1 ||
		    big_check_header(msg, "Alarm-Original-Subject", b->subject[i]) == -1 ||
		    big_check_header(msg, "Alarm-Original-Size", size) == -1)
			rc = -1;
		/* The headers take a few hundred bytes of max_payload; the rest is the payload's start. */
		else if (n >= b->len[i] || n + 2048 < b->len[i]) {
			harness_seterr("copy of the %zu-byte message keeps %zu bytes, want a little less",
			    b->len[i], n);
			rc = -1;
		}
		natsMsg_Destroy(msg);
		if (rc == -1)
			return -1;
	}
	return 0;
}

/* Just over max_message_bytes: the copy fits, so it is whole and has no size header. */
static int
big_check_whole(struct env *e, const struct big *b)
{
	natsMsg *msg = big_copy(e, b, 1);
	int rc = 0;

	if (msg == NULL)
		return -1;
	if ((size_t)natsMsg_GetDataLength(msg) != b->len[1]) {
		harness_seterr("copy of the %zu-byte message keeps %d bytes, want all", b->len[1],
		    natsMsg_GetDataLength(msg));
		rc = -1;
	} else if (big_check_header(msg, "Alarm-Reject-Reason", "oversized: ") == -1 ||
	    big_check_header(msg, "Alarm-Original-Size", NULL) == -1) {
		rc = -1;
	}
	natsMsg_Destroy(msg);
	return rc;
}

void
scn_big_message(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct big b = { { NULL }, { 0 }, { NULL } };
	struct env e = { 0 };
	uint64_t msgs, last;

	if (m == NULL || env_up(&e, "big_message", &cfg) == -1) {
		tap_fail("big_message", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	if (big_send(&e, m, &b, harness_wall_sec() - 3600) == -1) {
		tap_fail("big_message", "publishing: %s", harness_err());
		goto out;
	}
	tap_report("big_message/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	for (int64_t t = harness_now_ms() + 10000; harness_now_ms() < t; harness_sleep_ms(100))
		if (bus_stream_state(e.bus, DL_STREAM, &msgs, &last) == 0 && msgs >= 3)
			break;
	tap_report("big_message/max_payload_copy_truncated", big_check_truncated(&e, &b));
	tap_report("big_message/over_limit_copy_whole", big_check_whole(&e, &b));
	tap_report("big_message/acked_without_consumer_reset", lim_acked_without_reset(&e));
	tap_report("big_message/digest_json_shape", env_check_collector(&e));
out:
	for (int i = 0; i < 3; i++)
		free(b.data[i]);
	env_down(&e);
	model_free(m);
}

/* ---- dead_letter_fail ---- */

/* The stream keeps one copy and refuses every other: each later copy fails. */
static int
dlf_shrink(struct env *e)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if ((s = js_GetStreamInfo(&si, bus_js(e->bus), DL_STREAM, NULL, &jerr)) != NATS_OK) {
		harness_seterr("stream info of %s: %s", DL_STREAM, natsStatus_GetText(s));
		return -1;
	}
	si->Config->MaxMsgs = 1;
	si->Config->Discard = js_DiscardNew;
	s = js_UpdateStream(NULL, bus_js(e->bus), si->Config, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		harness_seterr("update %s: %s (jetstream error %d)", DL_STREAM, natsStatus_GetText(s),
		    (int)jerr);
		return -1;
	}
	return 0;
}

static int
dlf_send(struct env *e, struct model *m, int users, int64_t base)
{
	char user[32], bad[96];

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "df-%03d", u);
		snprintf(bad, sizeof(bad), "{\"AlarmID\":1,\"UserID\":\"%s\"}", user);
		if (lim_update(e, m, user, "a1", base + u) == -1 ||
		    bus_publish(e->bus, UPD, bad, strlen(bad)) == -1 ||
		    lim_request(e, m, user) == -1)
			return -1;
	}
	return 0;
}

/* The master's title counts them: dlfail=N. */
static int
dlf_counted(struct env *e, int want)
{
	char title[4096], needle[32];
	int64_t deadline = harness_now_ms() + 10000;

	snprintf(needle, sizeof(needle), " dlfail=%d ", want);
	while (harness_now_ms() < deadline) {
		if (lim_title(e, title, sizeof(title)) == -1)
			return -1;
		if (strstr(title, needle) != NULL)
			return 0;
		harness_sleep_ms(250);
	}
	harness_seterr("title \"%s\" lacks \"%s\"", title, needle);
	return -1;
}

void
scn_dead_letter_fail(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct env e = { 0 };
	int users = 10;

	if (m == NULL || env_up(&e, "dead_letter_fail", &cfg) == -1 || dlf_shrink(&e) == -1) {
		tap_fail("dead_letter_fail", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	if (dlf_send(&e, m, users, harness_wall_sec() - 3600) == -1) {
		tap_fail("dead_letter_fail", "publishing: %s", harness_err());
		goto out;
	}
	tap_report("dead_letter_fail/digests_match_model", env_finish_and_verify(&e, m, NULL, false));
	/* The first copy fills the stream; the others are refused. */
	tap_report("dead_letter_fail/failures_counted", dlf_counted(&e, users - 1));
	tap_report("dead_letter_fail/failures_logged",
	    lim_log_has(&e, "not kept: the dead-letter stream answered", 5000));
	tap_report("dead_letter_fail/acked_without_consumer_reset", lim_acked_without_reset(&e));
out:
	env_down(&e);
	model_free(m);
}

/* ---- restart_floor ---- */

/* Held by the test, the workers' lock files keep them from ever making anything durable. */
struct locks {
	int fd[8];
	int n;
};

static int
locks_take(struct env *e, struct locks *l, int workers)
{
	char path[PATH_MAX + 64];

	for (l->n = 0; l->n < workers; l->n++) {
		snprintf(path, sizeof(path), "%s/state/worker-%d/worker.lock", e->dir, l->n);
		if ((l->fd[l->n] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1 ||
		    flock(l->fd[l->n], LOCK_EX | LOCK_NB) == -1) {
			harness_seterr("locking %s failed", path);
			if (l->fd[l->n] != -1)
				close(l->fd[l->n]);
			return -1;
		}
	}
	return 0;
}

static void
locks_release(struct locks *l)
{
	for (int i = 0; i < l->n; i++)
		close(l->fd[i]);
	l->n = 0;
}

struct floor_seen {
	int64_t created;     /* the consumer's creation time, to tell a new one */
	uint64_t start;      /* its first stream sequence */
	uint64_t delivered;  /* deliveries it made */
};

/* Wait for a consumer created after `prev`, and for it to deliver everything there is. */
static int
floor_observe(struct env *e, int64_t prev, struct floor_seen *out)
{
	int64_t deadline = harness_now_ms() + 30000;
	uint64_t last_delivered = UINT64_MAX;

	while (harness_now_ms() < deadline) {
		jsConsumerInfo *ci = NULL;

		if (env_alive(e) == -1)
			return -1;
		if (lim_consumer(e, &ci) == 0) {
			bool fresh = ci->Created != prev, settled;

			out->created = ci->Created;
			out->start = ci->Config->DeliverPolicy == js_DeliverByStartSequence ?
			    ci->Config->OptStartSeq : 1;
			out->delivered = ci->Delivered.Consumer;
			settled = fresh && ci->NumPending == 0 && out->delivered == last_delivered;
			last_delivered = fresh ? out->delivered : UINT64_MAX;
			jsConsumerInfo_Destroy(ci);
			if (settled)
				return 0;
		}
		harness_sleep_ms(300);
	}
	harness_seterr("no new consumer that delivered everything within 30 s");
	return -1;
}

/*
 * Only the unacked tail comes again: the consumer starts after the floor
 * (never below floor, the last sequence the test saw acked) and delivers
 * exactly what lies after its start.
 */
static int
floor_check(struct env *e, int64_t *prev, uint64_t floor)
{
	struct floor_seen fs;
	uint64_t msgs, last;

	if (floor_observe(e, *prev, &fs) == -1 || bus_stream_state(e->bus, "ALARMS", &msgs, &last) == -1)
		return -1;
	*prev = fs.created;
	printf("# restart_floor: consumer starts at %" PRIu64 ", delivered %" PRIu64
	    " (acked floor %" PRIu64 ", stream at %" PRIu64 ")\n", fs.start, fs.delivered, floor, last);
	if (fs.start <= floor) {
		harness_seterr("consumer starts at stream sequence %" PRIu64 ", at or below the acked "
		    "floor %" PRIu64 ": %" PRIu64 " acked messages come again", fs.start, floor,
		    floor + 1 - fs.start);
		return -1;
	}
	if (fs.delivered != last + 1 - fs.start) {
		harness_seterr("consumer starting at %" PRIu64 " delivered %" PRIu64 " messages, the "
		    "tail is %" PRIu64, fs.start, fs.delivered, last + 1 - fs.start);
		return -1;
	}
	return 0;
}

/* What the service leaves behind when it dies between deleting and creating the consumer. */
static int
floor_interrupt(struct env *e, uint64_t floor)
{
	char path[PATH_MAX + 64], text[64];
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if ((s = js_GetStreamInfo(&si, bus_js(e->bus), "ALARMS", NULL, &jerr)) != NATS_OK) {
		harness_seterr("stream info: %s", natsStatus_GetText(s));
		return -1;
	}
	snprintf(text, sizeof(text), "%" PRId64 " %" PRIu64 "\n", si->Created, floor);
	jsStreamInfo_Destroy(si);
	if ((s = js_DeleteConsumer(bus_js(e->bus), "ALARMS", "alarm-digest", NULL, &jerr)) != NATS_OK) {
		harness_seterr("delete consumer: %s", natsStatus_GetText(s));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/state/consumer-reset", e->dir);
	return harness_write_file(path, text);
}

/* Up to `floor`, everything acked; then a tail published while the service is down. */
static int
floor_setup(struct env *e, struct model *m, uint64_t *floor, int64_t base)
{
	char user[32];
	uint64_t msgs;

	for (int u = 0; u < 20; u++) {
		snprintf(user, sizeof(user), "rf-%03d", u);
		if (lim_update(e, m, user, "first", base + u) == -1 || lim_request(e, m, user) == -1)
			return -1;
	}
	if (traffic_wait(m, e->digests, false, 30000, &e->svc.proc, NULL) == -1 ||
	    lim_wait_acked(e, 15000) == -1 || bus_stream_state(e->bus, "ALARMS", &msgs, floor) == -1)
		return -1;
	if (harness_service_stop(&e->svc, 15000) == -1)
		return -1;
	for (int u = 0; u < 20; u++) {
		snprintf(user, sizeof(user), "rf-%03d", u);
		if (lim_update(e, m, user, "tail", base + 100 + u) == -1 || lim_request(e, m, user) == -1)
			return -1;
	}
	return 0;
}

static void
floor_run(struct env *e, struct model *m, struct locks *l)
{
	jsConsumerInfo *ci = NULL;
	uint64_t floor;
	int64_t prev;
	int rc;

	if (floor_setup(e, m, &floor, harness_wall_sec() - 3600) == -1 || locks_take(e, l, 2) == -1 ||
	    lim_consumer(e, &ci) == -1) {
		tap_fail("restart_floor", "setup: %s", harness_err());
		return;
	}
	/* The consumer of the first run, still there: each restart must replace it. */
	prev = ci->Created;
	jsConsumerInfo_Destroy(ci);
	/* Two clean stops, a kill -9, then a reset cut short: nothing acked all along. */
	for (int i = 1; i <= 4; i++) {
		static const char *const name[] = { NULL, "restart_floor/first_restart_tail_only",
			"restart_floor/second_restart_tail_only",
			"restart_floor/restart_after_kill_tail_only",
			"restart_floor/interrupted_reset_tail_only" };

		if (i == 4 && floor_interrupt(e, floor) == -1)
			rc = -1;
		else
			rc = harness_service_start(&e->svc) == 0 && floor_check(e, &prev, floor) == 0 ? 0 : -1;
		tap_report(name[i], rc);
		if (i == 2)
			harness_proc_kill(&e->svc.proc);
		else if (i < 4 && harness_service_stop(&e->svc, 15000) == -1)
			printf("# restart_floor: %s\n", harness_err());
		harness_kill_orphans();
	}
	/* The workers get their locks and everything is applied, in order. */
	locks_release(l);
	tap_report("restart_floor/digests_match_model", env_finish_and_verify(e, m, NULL, false));
}

void
scn_restart_floor(void)
{
	struct env_config cfg = { .workers = 2, .shutdown_timeout_s = 2 };
	struct model *m = model_new();
	struct locks l = { .n = 0 };
	struct env e = { 0 };

	if (m == NULL || env_up(&e, "restart_floor", &cfg) == -1) {
		tap_fail("restart_floor", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	floor_run(&e, m, &l);
out:
	locks_release(&l);
	env_down(&e);
	model_free(m);
}

/* ---- wire_escape ---- */

#define ESC_SUBJECT UPD ".\x1b[31mred\x07"
#define ESC_REPLY "evil.\x1b]0;title\x07"

/* Let the stream take a second form of the status subject, as an operator might. */
static int
esc_widen(struct env *e)
{
	const char *subjects[3] = { UPD, REQ, UPD ".>" }, **had;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	int nhad;
	natsStatus s;

	if ((s = js_GetStreamInfo(&si, bus_js(e->bus), "ALARMS", NULL, &jerr)) != NATS_OK) {
		harness_seterr("stream info: %s", natsStatus_GetText(s));
		return -1;
	}
	had = si->Config->Subjects;
	nhad = si->Config->SubjectsLen;
	si->Config->Subjects = subjects;
	si->Config->SubjectsLen = 3;
	s = js_UpdateStream(NULL, bus_js(e->bus), si->Config, NULL, &jerr);
	/* The info frees what it allocated, not our literals. */
	si->Config->Subjects = had;
	si->Config->SubjectsLen = nhad;
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		harness_seterr("widen stream ALARMS: %s (jetstream error %d)", natsStatus_GetText(s),
		    (int)jerr);
		return -1;
	}
	return 0;
}

static int
esc_no_raw_bytes(struct env *e)
{
	size_t len;
	char *log = lim_log(e, &len);
	int rc = 0;

	if (log == NULL)
		return -1;
	for (size_t i = 0; i < len && rc == 0; i++) {
		if (log[i] == '\x1b' || log[i] == '\x07') {
			harness_seterr("raw byte 0x%02x at offset %zu of the service log", log[i], i);
			rc = -1;
		}
	}
	free(log);
	return rc;
}

/* The copy names the subject exactly as it came: headers are for machines. */
static int
esc_copy_subject(struct env *e)
{
	uint64_t msgs, last;

	for (int64_t t = harness_now_ms() + 10000; harness_now_ms() < t; harness_sleep_ms(100)) {
		if (bus_stream_state(e->bus, DL_STREAM, &msgs, &last) == -1)
			return -1;
		for (uint64_t seq = 1; seq <= last; seq++) {
			natsMsg *msg = NULL;
			jsErrCode jerr = 0;
			const char *v = NULL;
			bool match;

			if (js_GetMsg(&msg, bus_js(e->bus), DL_STREAM, seq, NULL, &jerr) != NATS_OK)
				continue;
			match = natsMsgHeader_Get(msg, "Alarm-Original-Subject", &v) == NATS_OK &&
			    strcmp(v, ESC_SUBJECT) == 0;
			natsMsg_Destroy(msg);
			if (match)
				return 0;
		}
	}
	harness_seterr("no copy in %s names the raw subject", DL_STREAM);
	return -1;
}

void
scn_wire_escape(void)
{
	struct env_config cfg = { .workers = 2 };
	struct model *m = model_new();
	struct env e = { 0 };
	static const char bad[] = "{\"x\":1}";

	if (m == NULL || env_up(&e, "wire_escape", &cfg) == -1 || esc_widen(&e) == -1) {
		tap_fail("wire_escape", "environment: %s", m ? harness_err() : "out of memory");
		goto out;
	}
	if (lim_publish_raw(&e, ESC_SUBJECT, NULL, bad, strlen(bad)) == -1 ||
	    lim_publish_raw(&e, "_ALARM_DIGEST.deliver", ESC_REPLY, bad, strlen(bad)) == -1) {
		tap_fail("wire_escape", "publishing: %s", harness_err());
		goto out;
	}
	tap_report("wire_escape/subject_escaped", lim_log_has(&e,
	    "rejected message on \"AlarmStatusChanged.\\x1b[31mred\\x07\" (7 bytes): bad_json: ", 10000));
	tap_report("wire_escape/reply_escaped", lim_log_has(&e,
	    "ignoring non-JetStream message on \"_ALARM_DIGEST.deliver\" "
	    "(reply \"evil.\\x1b]0;title\\x07\")", 10000));
	tap_report("wire_escape/no_raw_control_bytes", esc_no_raw_bytes(&e));
	tap_report("wire_escape/dead_letter_keeps_subject", esc_copy_subject(&e));
out:
	env_down(&e);
	model_free(m);
}
