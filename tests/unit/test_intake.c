/*
 * Unit tests for intake's consumer-reset rule in cluster mode, against a
 * nats-server of the test's own: a reset wanted (here by a reconnect) is
 * done only by intake_reset, never forgotten by a start that binds some
 * partitions and keeps others.  A kept partition's consumer may have lost
 * deliveries in the reconnect; acking it again without a reset would ack
 * over them (AckAll), and its updates would be gone from this instance.
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

#include "clock.h"
#include "config.h"
#include "intake.h"
#include "log.h"
#include "partset.h"

#define SCRATCH_NAME "test_intake"
#include "scratch.h"
#include "livenats.h"

#define NPART 2

static bool
never_stop(void *arg)
{
	(void)arg;
	return false;
}

static struct intake *
intake_for_test(struct config *c)
{
	char text[1024], err[256];

	snprintf(text, sizeof(text), "[nats]\nservers = %s\n[service]\nstate_dir = %s\n"
	    "[cluster]\npartitions = %d\ninstance = t1\n", nats_url, dir, NPART);
	if (config_parse(text, strlen(text), "test", c, err, sizeof(err)) == -1)
		fail_msg("config: %s", err);
	return intake_open(c, never_stop, NULL);
}

/* Wait up to ms for the reconnect callback to ask for a reset. */
static bool
wait_reset_wanted(struct intake *in, int64_t ms)
{
	for (int64_t t0 = clock_mono_ms(); clock_mono_ms() - t0 < ms; usleep(20 * 1000))
		if (intake_reset_wanted(in))
			return true;
	return false;
}

static void
test_rebind_keeps_reset(void **state)
{
	struct config c;
	struct intake *in;
	struct partset *ps;

	(void)state;
	if (nats_start() == -1) {
		print_message("nats-server did not start: skipped\n");
		skip();
	}
	log_set_level(getenv("INTAKE_DEBUG") ? LL_INFO : LL_ERROR);
	if ((in = intake_for_test(&c)) == NULL)
		fail_msg("intake_open failed against %s", nats_url);
	ps = intake_partset(in);
	assert_non_null(ps);

	/* Both partitions served under epoch 1. */
	for (int p = 0; p < NPART; p++)
		partset_want(ps, p, 1);
	assert_int_equal(intake_start(in), 0);
	assert_true(partset_serving(ps, 0) == 1 && partset_serving(ps, 1) == 1);
	assert_false(intake_reset_wanted(in));

	/* A reconnect: what was in flight on the old connection is gone. */
	assert_int_equal(nats_restart(), 0);
	assert_true(wait_reset_wanted(in, 15000));

	/*
	 * A rebind while the reset waits: partition 1 moves to epoch 2,
	 * partition 0 is kept.  The start binds only partition 1, so the
	 * reset must still be wanted after it.
	 */
	intake_unbind(in, 1);
	partset_want(ps, 1, 2);
	(void)intake_start(in);
	assert_int_equal(partset_serving(ps, 1), 2);
	assert_int_equal(partset_serving(ps, 0), 1);
	assert_true(intake_reset_wanted(in));

	/* The reset itself covers it: every partition unbound, bound again at the next start. */
	assert_int_equal(intake_reset(in), 0);
	assert_false(intake_reset_wanted(in));
	assert_true(partset_serving(ps, 0) == 0 && partset_serving(ps, 1) == 0);
	assert_int_equal(intake_start(in), 0);
	assert_true(partset_serving(ps, 0) == 1 && partset_serving(ps, 1) == 2);
	assert_false(intake_reset_wanted(in));

	intake_close(in);
	config_free(&c);
	nats_stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rebind_keeps_reset, setup, livenats_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
