/*
 * Unit tests for resend, against a nats-server of the test's own that is
 * restarted under the publisher: after the reconnect, what was flushed in
 * the window before it goes out again on the new connection, and nothing
 * else (not what expired, not what the open batch will publish itself).
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "clock.h"
#include "resend.h"

#define SCRATCH_NAME "test_resend"
#include "scratch.h"
#include "livenats.h"

#define SUBJECT "test.AlarmDigest"

static natsConnection *
connect_to_test_server(void)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;

	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	assert_int_equal(natsOptions_SetURL(o, nats_url), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
	assert_int_equal(natsConnection_Connect(&nc, o), NATS_OK);
	natsOptions_Destroy(o);
	return nc;
}

static natsMsg *
msg_new(const char *text)
{
	natsMsg *m = NULL;

	assert_int_equal(natsMsg_Create(&m, SUBJECT, NULL, text, (int)strlen(text)), NATS_OK);
	return m;
}

/* Publish and keep, as publish.c does for each part of a digest. */
static void
hand_over(struct resend *r, natsConnection *nc, const char *text)
{
	natsMsg *m = msg_new(text);

	assert_int_equal(natsConnection_PublishMsg(nc, m), NATS_OK);
	resend_hold(r, m);
}

static void
wait_reconnected(natsConnection *nc, uint64_t want)
{
	natsStatistics *st = NULL;
	uint64_t n = 0;

	assert_int_equal(natsStatistics_Create(&st), NATS_OK);
	for (int64_t t0 = clock_mono_ms(); clock_mono_ms() - t0 < 10000; usleep(20 * 1000)) {
		assert_int_equal(natsConnection_GetStats(nc, st), NATS_OK);
		assert_int_equal(natsStatistics_GetCounts(st, NULL, NULL, NULL, NULL, &n), NATS_OK);
		if (n >= want && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
			break;
	}
	natsStatistics_Destroy(st);
	assert_true(n >= want);
}

/* A server of the test's own, a publisher on it, and its resend queue, seen healthy. */
static struct resend *
resend_on_new_server(natsConnection **pub)
{
	struct resend *r;

	assert_int_equal(nats_start(), 0);
	*pub = connect_to_test_server();
	assert_non_null(r = resend_new(*pub));
	assert_false(resend_reconnected(r, clock_mono_ms()));
	return r;
}

/*
 * Restart the server under pub, wait for pub to reconnect, and subscribe
 * on a new connection: it sees only what goes out from now on.
 */
static natsConnection *
restart_and_listen(natsConnection *pub, natsSubscription **sub)
{
	natsConnection *listen;

	assert_int_equal(nats_restart(), 0);
	wait_reconnected(pub, 1);
	listen = connect_to_test_server();
	assert_int_equal(natsConnection_SubscribeSync(sub, listen, SUBJECT), NATS_OK);
	assert_int_equal(natsConnection_FlushTimeout(listen, 5000), NATS_OK);
	return listen;
}

static void
test_window_sent_again_after_reconnect(void **state)
{
	natsConnection *pub, *listen;
	natsSubscription *sub = NULL;
	natsMsg *got = NULL;
	struct resend *r;
	int64_t t;

	(void)state;
	r = resend_on_new_server(&pub);
	t = clock_mono_ms();
	assert_false(resend_reconnected(r, t));
	/* Flushed long before: expired by the next flush. */
	hand_over(r, pub, "old");
	resend_flushed(r, t - 5000);
	hand_over(r, pub, "recent");
	assert_int_equal(natsConnection_FlushTimeout(pub, 5000), NATS_OK);
	resend_flushed(r, t);
	/* The open batch's: a redo publishes it again by itself. */
	hand_over(r, pub, "open");
	assert_false(resend_reconnected(r, t + 10));

	listen = restart_and_listen(pub, &sub);

	assert_true(resend_reconnected(r, clock_mono_ms()));
	assert_int_equal(resend_publish(r, true), 1);
	assert_int_equal(natsConnection_FlushTimeout(pub, 5000), NATS_OK);
	resend_flushed(r, clock_mono_ms());
	assert_int_equal(resend_count(r), 1);
	assert_int_equal(natsSubscription_NextMsg(&got, sub, 5000), NATS_OK);
	assert_int_equal(natsMsg_GetDataLength(got), 6);
	assert_memory_equal(natsMsg_GetData(got), "recent", 6);
	natsMsg_Destroy(got);
	got = NULL;
	assert_int_equal(natsSubscription_NextMsg(&got, sub, 300), NATS_TIMEOUT);
	/* Nothing new: no second resend. */
	assert_false(resend_reconnected(r, clock_mono_ms()));
	assert_int_equal(resend_publish(r, true), 0);
	assert_int_equal(resend_count(r), 1);

	resend_free(r);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(listen);
	natsConnection_Destroy(pub);
}

static void
test_open_batch_dropped(void **state)
{
	natsConnection *pub;
	struct resend *r;

	(void)state;
	r = resend_on_new_server(&pub);
	hand_over(r, pub, "undone");
	resend_drop_open(r);
	hand_over(r, pub, "kept");
	resend_flushed(r, clock_mono_ms());

	assert_int_equal(nats_restart(), 0);
	wait_reconnected(pub, 1);
	assert_true(resend_reconnected(r, clock_mono_ms()));
	assert_int_equal(resend_publish(r, true), 1);
	assert_int_equal(resend_count(r), 1);

	resend_free(r);
	natsConnection_Destroy(pub);
}

/* Cluster mode past its lease fence: the partitions may have moved, nothing goes out again. */
static void
test_not_past_the_fence(void **state)
{
	natsConnection *pub, *listen;
	natsSubscription *sub = NULL;
	natsMsg *got = NULL;
	struct resend *r;

	(void)state;
	r = resend_on_new_server(&pub);
	hand_over(r, pub, "fenced");
	assert_int_equal(natsConnection_FlushTimeout(pub, 5000), NATS_OK);
	resend_flushed(r, clock_mono_ms());

	listen = restart_and_listen(pub, &sub);
	assert_true(resend_reconnected(r, clock_mono_ms()));
	assert_int_equal(resend_publish(r, false), 0);
	assert_int_equal(natsConnection_FlushTimeout(pub, 5000), NATS_OK);
	assert_int_equal(natsSubscription_NextMsg(&got, sub, 300), NATS_TIMEOUT);
	assert_int_equal(resend_count(r), 0);

	resend_free(r);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(listen);
	natsConnection_Destroy(pub);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_window_sent_again_after_reconnect, setup,
		    livenats_teardown),
		cmocka_unit_test_setup_teardown(test_open_batch_dropped, setup, livenats_teardown),
		cmocka_unit_test_setup_teardown(test_not_past_the_fence, setup, livenats_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
