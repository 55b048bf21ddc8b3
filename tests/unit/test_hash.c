/* Unit tests for common/hash.c: 32-bit FNV-1a, the routing hash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "hash.h"

static uint32_t
hash_str(const char *s)
{
	return hash32(s, strlen(s));
}

/* Published FNV-1a test vectors; routing must agree with every other implementation. */
static void
test_fnv1a_vectors(void **state)
{
	(void)state;

	assert_int_equal(hash_str(""), 0x811c9dc5u);
	assert_int_equal(hash_str("a"), 0xe40c292cu);
	assert_int_equal(hash_str("foobar"), 0xbf9cf968u);
	assert_int_equal(hash_str("10baeb6b-199f-4300-8db7-1acbe744e3fc"), 1532899497u);
}

/* The length is authoritative: NUL bytes hash, bytes past len do not. */
static void
test_length_not_nul(void **state)
{
	static const char ab[] = "a\0b";
	(void)state;

	assert_int_equal(hash32("foobarbaz", 6), 0xbf9cf968u);
	assert_int_equal(hash32(NULL, 0), 0x811c9dc5u);
	/* Literals from a separate FNV-1a: the NUL counts, so "a\0b" is neither "a" nor "ab". */
	assert_int_equal(hash32(ab, 3), 0x10f3abd2u);
	assert_int_equal(hash32("a", 1), 0xe40c292cu);
	assert_int_equal(hash32("ab", 2), 0x4d2505cau);
	/* Bytes >= 0x80 are taken as unsigned. */
	assert_int_equal(hash32("\xff", 1), (0x811c9dc5u ^ 0xffu) * 16777619u);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fnv1a_vectors),
		cmocka_unit_test(test_length_not_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
