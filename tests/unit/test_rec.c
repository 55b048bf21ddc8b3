/* The record codec on bytes a real store never writes: what the fuzzer (fuzz/fuzz_record.c) found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/rec.h"

/*
 * A raw-kind AlarmID spelling a one-case UUID: id_encode would have stored
 * it as 16 bytes, so rec_holds and rec_apply could never find it by its
 * text, and an update would have added the same AlarmID a second time.
 */
static void
test_raw_uuid_refused(void **state)
{
	static const char uuid[] = "00000000-0000-0000-0000-000000000000";
	/* format 1, one alarm: WARNING, raw kind, 36 bytes of ID, sec 0, nsec 0, offset 0 */
	uint8_t bytes[4 + 36 + 3] = { 1, 1, 0x01, 36 };
	struct rec *rec = rec_new();
	const char *why = NULL;

	(void)state;
	assert_non_null(rec);
	memcpy(bytes + 4, uuid, 36);
	assert_int_equal(rec_decode(rec, bytes, sizeof(bytes), &why), -1);
	assert_string_equal(why, "raw AlarmID in UUID form");

	/* The same bytes with one upper- and one lower-case letter are no UUID kind: kept raw. */
	memcpy(bytes + 4, "0000000a-0000-0000-0000-00000000000A", 36);
	assert_int_equal(rec_decode(rec, bytes, sizeof(bytes), &why), 0);
	assert_true(rec_holds(rec, "0000000a-0000-0000-0000-00000000000A", 36));
	rec_free(rec);
}

/*
 * An empty raw AlarmID (the validator refuses one, so no store holds it)
 * left the ID buffer unallocated: rec_merge and rec_take_pending then
 * computed NULL + 0, undefined behaviour (UBSan, clang).
 */
static void
test_empty_id_refused(void **state)
{
	/* format 1, one alarm: WARNING, raw kind, length 0, sec 0, nsec 0, offset 0 */
	static const uint8_t bytes[] = { 1, 1, 0x01, 0, 0, 0, 0 };
	struct rec *rec = rec_new();
	const char *why = NULL;

	(void)state;
	assert_non_null(rec);
	assert_int_equal(rec_decode(rec, bytes, sizeof(bytes), &why), -1);
	assert_string_equal(why, "empty AlarmID");
	rec_free(rec);
}

/* The same for a UUID of digits only stored as upper case: id_encode calls it lower case. */
static void
test_upper_digits_refused(void **state)
{
	/* format 1, one alarm: WARNING, upper-case UUID kind, 16 bytes, sec 0, nsec 0, offset 0 */
	uint8_t bytes[3 + 16 + 3] = { 1, 1, 0x01 | (2 << 3) };
	struct rec *rec = rec_new();
	const char *why = NULL;

	(void)state;
	assert_non_null(rec);
	memset(bytes + 3, 0x12, 16);
	assert_int_equal(rec_decode(rec, bytes, sizeof(bytes), &why), -1);
	assert_string_equal(why, "upper-case UUID AlarmID without a letter");

	/* One letter makes it a real upper-case UUID. */
	bytes[3] = 0xab;
	assert_int_equal(rec_decode(rec, bytes, sizeof(bytes), &why), 0);
	assert_true(rec_holds(rec, "AB121212-1212-1212-1212-121212121212", 36));
	rec_free(rec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw_uuid_refused),
		cmocka_unit_test(test_empty_id_refused),
		cmocka_unit_test(test_upper_digits_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
