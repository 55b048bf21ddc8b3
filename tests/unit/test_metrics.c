/*
 * The Prometheus text format (metrics.c), the histogram it draws from
 * (histo.c), the health verdicts (obs.c) and the listen address parser
 * (listen.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>

#include "clock.h"
#include "histo.h"
#include "listen.h"
#include "metrics.h"
#include "obs.h"

static char *
text_of(struct buf *b)
{
	assert_int_equal(buf_append_byte(b, '\0'), 0);
	return (char *)b->data;
}

/* An observation equal to a bound counts in that bucket (le is inclusive); past the last, +Inf. */
static void
test_histo_bucket_edges(void **state)
{
	struct histo h = { 0 }, h2 = { 0 };

	(void)state;
	histo_observe(&h, 0);
	histo_observe(&h, 1000);           /* le 0.001 */
	histo_observe(&h, 1001);           /* le 0.0025 */
	histo_observe(&h, 30000000);       /* le 30 */
	histo_observe(&h, 30000001);       /* +Inf */
	histo_observe(&h, -5);             /* a clock step back counts as 0 */
	assert_int_equal(h.bucket[0], 3);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[HISTO_BOUNDS - 1], 1);
	assert_int_equal(h.bucket[HISTO_BOUNDS], 1);
	assert_int_equal(histo_count(&h), 6);
	assert_int_equal(h.sum_us, 1000 + 1001 + 30000000 + 30000001);
	histo_add(&h2, &h);
	histo_add(&h2, &h);
	assert_int_equal(histo_count(&h2), 12);
	assert_int_equal(h2.sum_us, 2 * h.sum_us);
	for (int i = 1; i < HISTO_BOUNDS; i++)
		assert_true(histo_bound_us(i) > histo_bound_us(i - 1));
}

static void
test_label_and_help_escaping(void **state)
{
	struct buf b = { 0 };

	(void)state;
	assert_int_equal(metrics_family(&b, "x_total", "counter", "a \\ b\nc \"q\""), 0);
	assert_int_equal(metrics_sample(&b, "x_total", "subject", "a\"b\\c\nd", 7), 0);
	assert_int_equal(metrics_sample(&b, "x_total", NULL, NULL, 8), 0);
	/* Help escapes \ and newline only; label values also ". */
	assert_string_equal(text_of(&b),
	    "# HELP x_total a \\\\ b\\nc \"q\"\n"
	    "# TYPE x_total counter\n"
	    "x_total{subject=\"a\\\"b\\\\c\\nd\"} 7\n"
	    "x_total 8\n");
	buf_free(&b);
}

/* Buckets are cumulative, +Inf equals _count, _sum is in seconds. */
static void
test_histogram_lines(void **state)
{
	struct histo h = { 0 };
	struct buf b = { 0 };
	char *t;

	(void)state;
	histo_observe(&h, 500);
	histo_observe(&h, 2000);
	histo_observe(&h, 2000);
	histo_observe(&h, 60000000);
	assert_int_equal(metrics_histo(&b, "lat_seconds", "slot", "1", &h), 0);
	t = text_of(&b);
	assert_non_null(strstr(t, "lat_seconds_bucket{slot=\"1\",le=\"0.001\"} 1\n"));
	assert_non_null(strstr(t, "lat_seconds_bucket{slot=\"1\",le=\"0.0025\"} 3\n"));
	assert_non_null(strstr(t, "lat_seconds_bucket{slot=\"1\",le=\"30\"} 3\n"));
	assert_non_null(strstr(t, "lat_seconds_bucket{slot=\"1\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(t, "lat_seconds_sum{slot=\"1\"} 60.004500\n"));
	assert_non_null(strstr(t, "lat_seconds_count{slot=\"1\"} 4\n"));
	buf_free(&b);
	assert_int_equal(metrics_histo(&b, "l", NULL, NULL, &h), 0);
	assert_non_null(strstr(text_of(&b), "l_bucket{le=\"+Inf\"} 4\n"));
	buf_free(&b);
}

static void
snap_running(struct obs_snap *s, struct obs_slot *slots, int n)
{
	memset(s, 0, sizeof(*s));
	memset(slots, 0, (size_t)n * sizeof(*slots));
	for (int i = 0; i < n; i++)
		slots[i].running = true;
	s->phase = OBS_RUNNING;
	s->jetstream = true;
	s->bound = true;
	s->nats = OBS_NATS_CONNECTED;
	s->nslots = n;
	s->slot = slots;
	s->subject_status = "AlarmStatusChanged";
	s->subject_request = "SendAlarmDigest";
}

static void
test_health_and_readiness(void **state)
{
	struct obs_slot slots[4];
	struct obs_snap s;
	char why[256];

	(void)state;
	snap_running(&s, slots, 4);
	assert_true(obs_healthy(&s, why, sizeof(why)));
	assert_string_equal(why, "ok");
	assert_true(obs_ready(&s, why, sizeof(why)));
	assert_string_equal(why, "ok");

	s.phase = OBS_STARTING;
	assert_true(obs_healthy(&s, why, sizeof(why)));
	assert_false(obs_ready(&s, why, sizeof(why)));
	assert_string_equal(why, "starting");
	s.phase = OBS_RESHARDING;
	s.reshard_done = 2;
	s.reshard_total = 4;
	assert_false(obs_ready(&s, why, sizeof(why)));
	assert_string_equal(why, "resharding 2/4 stores");
	s.phase = OBS_DRAINING;
	assert_false(obs_ready(&s, why, sizeof(why)));
	assert_non_null(strstr(why, "draining"));

	snap_running(&s, slots, 4);
	slots[3].parked = true;
	slots[3].running = false;
	snprintf(slots[3].exit_why, sizeof(slots[3].exit_why), "exited with status 1");
	assert_false(obs_healthy(&s, why, sizeof(why)));
	assert_string_equal(why, "slot 3 parked: exited with status 1");
	assert_false(obs_ready(&s, why, sizeof(why)));

	snap_running(&s, slots, 4);
	slots[1].running = false;   /* restarting: still healthy, not ready */
	assert_true(obs_healthy(&s, why, sizeof(why)));
	assert_false(obs_ready(&s, why, sizeof(why)));
	assert_string_equal(why, "3 of 4 workers running");

	/* Reconnecting: healthy within the grace, not after; never ready. */
	snap_running(&s, slots, 4);
	s.nats = OBS_NATS_RECONNECTING;
	s.nats_down_ms = 1000;
	assert_true(obs_healthy(&s, why, sizeof(why)));
	assert_false(obs_ready(&s, why, sizeof(why)));
	s.nats_down_ms = OBS_RECONNECT_GRACE_MS;
	assert_false(obs_healthy(&s, why, sizeof(why)));
	s.nats = OBS_NATS_CLOSED;
	assert_false(obs_healthy(&s, why, sizeof(why)));

	snap_running(&s, slots, 4);
	s.bound = false;
	assert_false(obs_ready(&s, why, sizeof(why)));
	assert_string_equal(why, "consumer not bound");
}

/* The whole page: every counter ends in _total, and each family is announced once before its samples. */
static void
test_render_page(void **state)
{
	struct obs_slot slots[2];
	struct obs_snap s;
	struct buf b = { 0 };
	char *t, *line;

	(void)state;
	snap_running(&s, slots, 2);
	s.in.received = 10;
	s.in.received_status = 7;
	s.in.received_request = 2;
	s.in.by_reason[MSG_E_JSON] = 3;
	s.overlimit = 4;
	s.lag_known = true;
	s.num_pending = 5;
	slots[1].users = 9;
	assert_int_equal(metrics_render(&s, &b), 0);
	t = text_of(&b);
	assert_non_null(strstr(t, "alarm_digest_messages_received_total{subject=\"AlarmStatusChanged\"} 7\n"));
	assert_non_null(strstr(t, "alarm_digest_messages_received_total{subject=\"(other)\"} 1\n"));
	assert_non_null(strstr(t, "alarm_digest_messages_rejected_total{reason=\"bad_json\"} 3\n"));
	assert_non_null(strstr(t, "alarm_digest_messages_rejected_total{reason=\"too_many_alarms\"} 4\n"));
	assert_non_null(strstr(t, "alarm_digest_users{slot=\"1\"} 9\n"));
	assert_non_null(strstr(t, "alarm_digest_consumer_num_pending 5\n"));
	assert_non_null(strstr(t, "alarm_digest_ready 1\n"));
	assert_non_null(strstr(t, "alarm_digest_nats_connection_state{state=\"connected\"} 1\n"));
	for (line = strstr(t, "# TYPE "); line != NULL; line = strstr(line + 1, "# TYPE ")) {
		char name[128], type[32];
		assert_int_equal(sscanf(line, "# TYPE %127s %31s", name, type), 2);
		if (strcmp(type, "counter") == 0)
			assert_non_null(strstr(name, "_total"));
	}
	buf_free(&b);
	s.lag_known = false;
	assert_int_equal(metrics_render(&s, &b), 0);
	assert_null(strstr(text_of(&b), "num_pending"));
	buf_free(&b);
}

/*
 * Cluster mode: what is held shows only while the fence holds.  Past it
 * (a paused instance just resumed, its main thread not yet caught up)
 * the instance acts for nothing, and /metrics must not say otherwise.
 */
static void
test_render_cluster_fence(void **state)
{
	struct obs_slot slots[1];
	struct obs_snap s;
	struct buf b = { 0 };
	int64_t since[3] = { 0, 1700000000000, 0 };
	char *t;

	(void)state;
	snap_running(&s, slots, 1);
	s.partitions = 3;
	s.part_since_ms = since;
	s.router_active = true;
	s.members = 2;
	s.fence_ms = clock_mono_ms() + 60000;
	assert_int_equal(metrics_render(&s, &b), 0);
	t = text_of(&b);
	assert_non_null(strstr(t, "alarm_digest_partition_owned{partition=\"0\"} 0\n"));
	assert_non_null(strstr(t, "alarm_digest_partition_owned{partition=\"1\"} 1\n"));
	assert_non_null(strstr(t, "alarm_digest_partition_owned_since_seconds{partition=\"1\"} 1700000000"));
	assert_non_null(strstr(t, "alarm_digest_router_active 1\n"));
	buf_free(&b);

	s.fence_ms = clock_mono_ms() - 1;
	assert_int_equal(metrics_render(&s, &b), 0);
	t = text_of(&b);
	assert_non_null(strstr(t, "alarm_digest_partition_owned{partition=\"1\"} 0\n"));
	assert_null(strstr(t, "alarm_digest_partition_owned_since_seconds{"));
	assert_non_null(strstr(t, "alarm_digest_router_active 0\n"));
	assert_non_null(strstr(t, "alarm_digest_cluster_members 2\n"));
	buf_free(&b);

	/* No fence yet (no round answered): nothing is acted on either. */
	s.fence_ms = 0;
	assert_int_equal(metrics_render(&s, &b), 0);
	assert_non_null(strstr(text_of(&b), "alarm_digest_router_active 0\n"));
	buf_free(&b);
}

static void
test_listen_parse(void **state)
{
	static const char *const bad[] = { "", "9465", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
	    "127.0.0.1:65536", "localhost:9465", "::1:9465", "[::1]", "[::1]9465", "[nope]:1",
	    "1.2.3.4:12x", "[]:80" };
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why;

	(void)state;
	assert_int_equal(listen_parse("127.0.0.1:9465", &ss, &len, &why), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9465);
	assert_int_equal(listen_parse("[::1]:1", &ss, &len, &why), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(listen_parse("0.0.0.0:65535", &ss, &len, &why), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (listen_parse(bad[i], &ss, &len, &why) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(why);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_histo_bucket_edges),
		cmocka_unit_test(test_label_and_help_escaping),
		cmocka_unit_test(test_histogram_lines),
		cmocka_unit_test(test_health_and_readiness),
		cmocka_unit_test(test_render_page),
		cmocka_unit_test(test_render_cluster_fence),
		cmocka_unit_test(test_listen_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
