/*
 * pool_fence (supervisor/pool.c) with real worker processes: this program
 * re-executed as a stand-in worker ("--worker", as proc_spawn starts the
 * real one) that reads the channel frame by frame and reports what it saw
 * in its STATS.  A FENCE must reach a new worker right after its HELLO,
 * before any queued frame; a changed one must overtake the frames already
 * queued, yet never land inside a frame half written (the stand-in would
 * see a protocol error and exit, which the pool counts as a restart).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/chan.h"
#include "../../common/clock.h"
#include "../../common/config.h"
#include "../../common/frame.h"
#include "../../supervisor/pool.h"
#include "../../supervisor/proc.h"

#define SCRATCH_NAME "test_pool"
#include "scratch.h"

/* The stand-in sleeps this long after READY, so queued frames pile up in the socket. */
#define FAKE_NAP_MS 1000
/* A CONFIG frame makes the stand-in exit (once: it leaves this file in the state dir). */
#define FAKE_DIED "died-once"

/*
 * What the stand-in reports, in STATS fields of its own meaning:
 * digests_fenced: FENCE frames it got (a counter, as the real one);
 * users: the last fence; alarms: the fence when its first UPDATE came;
 * tombstones: UPDATEs that came before its last FENCE; msgs: UPDATEs.
 */
static int
fake_worker(void)
{
	struct chan *ch = chan_new(FRAME_CHANNEL_FD);
	struct frame_stats st = { 0 };
	char died[PATH_MAX] = "";
	bool hello = false;
	int64_t fence;

	if (ch == NULL)
		return 2;
	for (;;) {
		struct pollfd pfd = { FRAME_CHANNEL_FD, POLLIN, 0 };
		uint64_t last = 0;
		struct frame f;
		const char *err;
		int rc;

		if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
			return 2;
		if ((rc = chan_fill(ch, 65536)) == -1)
			return 2;
		while ((rc = chan_next(ch, &f, &err)) == 1) {
			if (!hello) {
				const char *conf;
				size_t conf_len;
				uint32_t slot, n;

				if (f.type != FRAME_HELLO ||
				    frame_get_hello(&f, &slot, &n, &conf, &conf_len) == -1)
					return 3;
				/* The config's first line, "# DIR", names the state dir (test_fence). */
				const char *nl = memchr(conf, '\n', conf_len);
				if (nl == NULL || nl - conf < 2)
					return 3;
				snprintf(died, sizeof(died), "%.*s/" FAKE_DIED, (int)(nl - conf - 2),
				    conf + 2);
				hello = true;
				if (frame_put(chan_out(ch), FRAME_READY, 0, NULL, 0) == -1 ||
				    chan_flush_wait(ch) == -1)
					return 2;
				nanosleep(&(struct timespec){ FAKE_NAP_MS / 1000,
				    (FAKE_NAP_MS % 1000) * 1000000L }, NULL);
				continue;
			}
			switch (f.type) {
			case FRAME_FENCE:
				if (frame_get_fence(&f, &fence) == -1)
					return 3;
				st.users = (uint64_t)fence;
				st.digests_fenced++;
				st.tombstones = st.msgs;
				break;
			case FRAME_UPDATE:
				if (st.msgs++ == 0)
					st.alarms = st.users;
				last = f.id;
				break;
			case FRAME_CONFIG:
				if (access(died, F_OK) == -1) {
					close(open(died, O_WRONLY | O_CREAT, 0600));
					_exit(9);
				}
				last = f.id;
				break;
			case FRAME_STOP:
				if (frame_put(chan_out(ch), FRAME_DONE, f.id, NULL, 0) == -1 ||
				    chan_flush_wait(ch) == -1)
					return 2;
				return 0;
			default:
				return 3;
			}
		}
		/* A FENCE spliced into another frame shows here. */
		if (rc == -1)
			return 4;
		chan_consume(ch);
		if ((last > 0 && frame_put(chan_out(ch), FRAME_DONE, last, NULL, 0) == -1) ||
		    frame_put_stats(chan_out(ch), &st) == -1 || chan_flush_wait(ch) == -1)
			return 2;
	}
}

static int acked;

/* Control frames (the CONFIG) come back with no ref. */
static void
count_ack(void *ref, void *arg)
{
	(void)arg;
	acked += ref != NULL;
}

/* Serve the pool as the master's loop does, until cond holds or timeout_ms pass. */
static bool
pump(struct pool *p, bool (*cond)(struct pool *), int64_t timeout_ms)
{
	int64_t end = clock_mono_ms() + timeout_ms;
	struct pollfd fds[4];

	while (clock_mono_ms() < end) {
		int n = pool_pollfds(p, fds, 4);

		if (cond != NULL && cond(p))
			return true;
		if (poll(fds, (nfds_t)n, 10) == -1 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		pool_handle(p, fds, n);
		pool_reap(p);
		pool_tick(p);
		pool_settle(p);
	}
	return cond == NULL;
}

static int nrouted;

static bool
all_done(struct pool *p)
{
	struct pool_slot_report r;

	pool_get_slot_report(p, 0, &r);
	return pool_idle(p) && acked == nrouted && r.stats.msgs == (uint64_t)nrouted &&
	    r.stats.users == 2222;
}

static bool
restarted_and_done(struct pool *p)
{
	struct pool_slot_report r;
	struct pool_stats st;

	pool_get_stats(p, &st);
	pool_get_slot_report(p, 0, &r);
	return st.restarts == 1 && pool_idle(p) && acked == nrouted && r.stats.digests_fenced == 3;
}

static void
route_updates(struct pool *p, int n)
{
	struct alarm_msg m = {
		.kind = MSG_STATUS_CHANGED, .user = "u", .user_len = 1, .alarm = "a", .alarm_len = 1,
		.status = STATUS_WARNING, .changed_at = { 1, 0, 0 },
	};
	struct buf b = { 0 };

	for (int i = 0; i < n; i++) {
		buf_reset(&b);
		assert_int_equal(frame_put_update(&b, 0, &m), 0);
		assert_true(pool_route(p, 0, b.data, b.len, &acked));
		nrouted++;
	}
	buf_free(&b);
}

static void
test_fence(void **state)
{
	char text[512], err[256];
	struct config c;
	struct pool *p;
	struct pool_slot_report r;
	struct pool_stats st;
	const int n = 40000;   /* about 1.5 MB: more than the socket holds while the worker naps */

	(void)state;
	snprintf(text, sizeof(text), "# %s\n[service]\nstate_dir = %s\nworkers = 1\n"
	    "restart_backoff_min = 10ms\nrestart_backoff_max = 20ms\nqueue_max_bytes = 64M\n"
	    "spill_after = 1h\n", dir, dir);
	assert_int_equal(config_parse(text, strlen(text), "test_pool", &c, err, sizeof(err)), 0);
	assert_int_equal(proc_init(), 0);
	assert_non_null(p = pool_new(&c, 1, count_ack, NULL));
	/* Set before the HELLO went out: it follows the HELLO, ahead of every UPDATE. */
	pool_fence(p, 1111);
	route_updates(p, n);
	/* The worker naps: the socket fills, the queue stops part way into a frame. */
	pump(p, NULL, FAKE_NAP_MS / 10);
	pool_fence(p, 2222);
	pool_fence(p, 2222);    /* unchanged: not sent again */
	assert_true(pump(p, all_done, 30000));
	pool_get_slot_report(p, 0, &r);
	pool_get_stats(p, &st);
	assert_int_equal(st.restarts, 0);
	assert_int_equal(r.stats.alarms, 1111);
	assert_int_equal(r.stats.digests_fenced, 2);
	assert_int_equal(st.digests_fenced, 2);
	/* The second fence overtook the frames still queued. */
	assert_true(r.stats.tombstones < (uint64_t)n);

	/* A restarted worker gets the fence right after its HELLO, before the queue's frames. */
	pool_reload(p, &c);
	route_updates(p, 10);
	assert_true(pump(p, restarted_and_done, 30000));
	pool_get_slot_report(p, 0, &r);
	pool_get_stats(p, &st);
	assert_int_equal(r.stats.alarms, 2222);
	assert_int_equal(r.stats.users, 2222);
	assert_int_equal(r.stats.msgs, (uint64_t)n + 10);
	/* Counters carry over from the dead process: 2 + 1. */
	assert_int_equal(st.digests_fenced, 3);
	pool_stop_wait(p);
	assert_true(pool_exited(p));
	pool_free(p, NULL);
	config_free(&c);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fence, setup, teardown),
	};

	if (argc > 1 && strcmp(argv[1], "--worker") == 0)
		return fake_worker();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
