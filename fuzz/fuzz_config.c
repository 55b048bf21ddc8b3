/*
 * fuzz_config: the config parser (common/config.c, config_parse: the same
 * path config_load takes after reading the file) on arbitrary text.
 *
 * A refusal must say why.  An accepted config must diff cleanly against
 * the defaults and go through config_keep_restart_only against them
 * (refused only for a clash between kept and new settings), and the text
 * that leaves it (what a worker receives in its HELLO) must parse again to
 * the same settings.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "fuzz_config: " __VA_ARGS__);           \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

static struct config fz_defaults;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (config_defaults(&fz_defaults) == -1) {
		fprintf(stderr, "fuzz_config: config_defaults failed\n");
		exit(1);
	}
	return 0;
}

static void
count_change(const char *key, const char *old_value, const char *new_value,
    bool restart_needed, void *arg)
{
	(void)restart_needed;
	FUZZ_CHECK(key != NULL && old_value != NULL && new_value != NULL &&
	    strcmp(old_value, new_value) != 0, "config_diff reported %s without a change", key);
	(*(int *)arg)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c, again;
	char err[512], err2[512];
	int changes = 0;

	memset(err, 'x', sizeof(err));
	if (config_parse((const char *)data, size, "<fuzz>", &c, err, sizeof(err)) != 0) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && strncmp(err, "<fuzz>", 6) == 0,
		    "refused without a message naming the input");
		return 0;
	}
	FUZZ_CHECK(c.text != NULL && c.text_len == size && memcmp(c.text, data, size) == 0,
	    "the kept text is not the input");
	config_diff(&fz_defaults, &c, count_change, &changes);

	/*
	 * A reload onto a service running the defaults: restart-only settings
	 * are kept, unless a kept one would clash with a new one (EINVAL).
	 */
	if (config_keep_restart_only(&c, &fz_defaults) == -1) {
		FUZZ_CHECK(errno == EINVAL, "config_keep_restart_only: %s", strerror(errno));
		config_free(&c);
		return 0;
	}
	changes = 0;
	config_diff(&fz_defaults, &c, count_change, &changes);

	/* A worker parses the text it is handed; it must find what the supervisor runs. */
	FUZZ_CHECK(config_parse(c.text, c.text_len, "<hello>", &again, err2, sizeof(err2)) == 0,
	    "the text handed to workers does not parse: %s", err2);
	changes = 0;
	config_diff(&c, &again, count_change, &changes);
	FUZZ_CHECK(changes == 0, "the text handed to workers parses to %d other settings", changes);
	config_free(&again);
	config_free(&c);
	return 0;
}
