/*
 * Unit tests for common/deadletter.c: how much of a rejected payload
 * its dead-letter copy keeps.  The end-to-end side (a copy of a message
 * at the broker's max_payload) is the integration scenario "limits".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "deadletter.h"

/* A copy that fits, headers and all, keeps every byte and needs no size header. */
static void
test_fits_whole(void **state)
{
	(void)state;
	assert_int_equal(deadletter_fit(100, 80, 30, 1048576), 100);
	/* Exactly the limit fits. */
	assert_int_equal(deadletter_fit(1048576 - 80, 80, 30, 1048576), 1048576 - 80);
	/* No limit at all. */
	assert_int_equal(deadletter_fit(5000000, 80, 30, -1), 5000000);
	assert_int_equal(deadletter_fit(0, 80, 30, 100), 0);
}

/* One byte over: the size header joins, and the payload gives way to it and the rest. */
static void
test_truncates_to_limit(void **state)
{
	(void)state;
	assert_int_equal(deadletter_fit(1048576 - 79, 80, 30, 1048576), 1048576 - 80 - 30);
	/* The broker's default max_payload, a message of exactly that size. */
	assert_int_equal(deadletter_fit(1048576, 150, 30, 1048576), 1048576 - 180);
	assert_int_equal(deadletter_fit(70000, 100, 28, 65536), 65536 - 128);
}

/* Headers alone too big: an empty copy, which still carries the reason. */
static void
test_headers_alone_too_big(void **state)
{
	(void)state;
	assert_int_equal(deadletter_fit(500, 90, 10, 100), 0);
	assert_int_equal(deadletter_fit(500, 100, 30, 100), 0);
	assert_int_equal(deadletter_fit(500, 70, 29, 100), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fits_whole),
		cmocka_unit_test(test_truncates_to_limit),
		cmocka_unit_test(test_headers_alone_too_big),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
