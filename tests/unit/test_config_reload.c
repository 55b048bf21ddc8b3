/* A reload whose kept restart-only settings clash with its new ones: what fuzz/fuzz_config found. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/config.h"

/*
 * The new file moves the consumed subject (restart-only, so the running
 * one stays) and gives its old name to the dead-letter subject (which
 * reloads).  Each file on its own is fine; the mix would publish dead
 * letters on the subject the service consumes, and no worker could parse
 * the text it is handed.  The reload is refused, the new config untouched.
 */
static void
test_kept_subject_clash_refused(void **state)
{
	static const char text[] = "[subjects]\nrequest = NewRequest\n"
	    "dead_letter = SendAlarmDigest\n";
	struct config running, fresh;
	char err[256];

	(void)state;
	assert_int_equal(config_defaults(&running), 0);
	assert_int_equal(config_parse(text, strlen(text), "new.conf", &fresh, err, sizeof(err)), 0);
	errno = 0;
	assert_int_equal(config_keep_restart_only(&fresh, &running), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(fresh.subject_request, "NewRequest");
	assert_string_equal(fresh.subject_dead_letter, "SendAlarmDigest");
	config_free(&fresh);
	config_free(&running);
}

/* Without a clash the same move is kept as before. */
static void
test_kept_subject_no_clash(void **state)
{
	static const char text[] = "[subjects]\nrequest = NewRequest\ndead_letter = Other\n";
	struct config running, fresh, again;
	char err[256];

	(void)state;
	assert_int_equal(config_defaults(&running), 0);
	assert_int_equal(config_parse(text, strlen(text), "new.conf", &fresh, err, sizeof(err)), 0);
	assert_int_equal(config_keep_restart_only(&fresh, &running), 0);
	assert_string_equal(fresh.subject_request, "SendAlarmDigest");
	assert_string_equal(fresh.subject_dead_letter, "Other");
	assert_int_equal(config_parse(fresh.text, fresh.text_len, "<hello>", &again, err,
	    sizeof(err)), 0);
	config_free(&again);
	config_free(&fresh);
	config_free(&running);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kept_subject_clash_refused),
		cmocka_unit_test(test_kept_subject_no_clash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
