/* Unit tests for common/alarm.c: the message model's status names and order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alarm.h"

static void
test_status_names(void **state)
{
	(void)state;

	assert_string_equal(alarm_status_name(STATUS_CLEARED), "CLEARED");
	assert_string_equal(alarm_status_name(STATUS_WARNING), "WARNING");
	assert_string_equal(alarm_status_name(STATUS_CRITICAL), "CRITICAL");
}

/* SPEC rule 3 compares severities with the enum's order. */
static void
test_status_order(void **state)
{
	(void)state;

	assert_true(STATUS_CRITICAL > STATUS_WARNING && STATUS_WARNING > STATUS_CLEARED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_status_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
