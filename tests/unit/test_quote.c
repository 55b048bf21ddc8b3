/* Unit tests for common/quote.c: untrusted bytes in log lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "quote.h"

static void
test_plain_and_escapes(void **state)
{
	char out[64];
	(void)state;

	assert_string_equal(quote_bytes(out, sizeof(out), "abc-123", 7), "abc-123");
	assert_string_equal(quote_bytes(out, sizeof(out), "a\"b\\c", 5), "a\\\"b\\\\c");
	assert_string_equal(quote_bytes(out, sizeof(out), "\x1b[2J\a\n", 6), "\\x1b[2J\\x07\\x0a");
	assert_string_equal(quote_bytes(out, sizeof(out), "\xff\x00z", 3), "\\xff\\x00z");
	assert_string_equal(quote_bytes(out, sizeof(out), "", 0), "");
}

/* A cut never splits an escape and always says so; an exact fit is not cut. */
static void
test_cut(void **state)
{
	char out[8];
	(void)state;

	assert_string_equal(quote_bytes(out, sizeof(out), "abcdefg", 7), "abcdefg");
	assert_string_equal(quote_bytes(out, sizeof(out), "abcdefgh", 8), "abcd...");
	assert_string_equal(quote_bytes(out, sizeof(out), "\n\n\n", 3), "\\x0a...");
	assert_string_equal(quote_bytes(out, 4, "\n", 1), "...");
	assert_string_equal(quote_bytes(out, 5, "\n", 1), "\\x0a");
	assert_int_equal(strlen(quote_bytes(out, sizeof(out), "\"\"\"\"\"\"\"\"", 8)), 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_escapes),
		cmocka_unit_test(test_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
