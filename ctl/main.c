/*
 * alarmctl: the operator's tool beside alarm-supervisor.
 *
 *   alarmctl [-c FILE] [--json] COMMAND [ARGS]
 *
 * It reads the service's own configuration file (same default) to find
 * the NATS servers and credentials, the dead-letter stream and the state
 * directory.  This file holds the command table and the options every
 * command shares; each command group lives in its own file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/version.h"
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "dlq.h"
#include "inspect.h"

#define DEFAULT_CONF "/etc/alarm-digest/alarm-supervisor.conf"

/* Every command, by its words. */
static const struct ctl_cmd *const commands[] = {
	&inspect_user_cmd,
	&inspect_stats_cmd,
	&dlq_list_cmd,
	&dlq_show_cmd,
	&dlq_replay_cmd,
	&daemon_reload_cmd,
	&daemon_stop_cmd,
	&cluster_partitions_cmd,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: alarmctl [-c FILE] [--json] COMMAND [ARGS]\n"
	    "  -c FILE    the service's configuration file (default %s)\n"
	    "  --json     output for programs: one JSON document on stdout\n"
	    "  -h, --help this help; alarmctl COMMAND --help for a command's\n"
	    "  --version  print the version\n"
	    "commands:\n", DEFAULT_CONF);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-20s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f, "Exit status: 0 done, 1 failed (stderr says why), 2 usage error.\n");
}

/* The command named by argv's first one or two words; *words gets how many. */
static const struct ctl_cmd *
find_command(int argc, char *argv[], int *words)
{
	char two[128];

	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i]->name, argv[0]) == 0) {
			*words = 1;
			return commands[i];
		}
		if (argc >= 2) {
			snprintf(two, sizeof(two), "%s %s", argv[0], argv[1]);
			if (strcmp(commands[i]->name, two) == 0) {
				*words = 2;
				return commands[i];
			}
		}
	}
	return NULL;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .conf_path = DEFAULT_CONF };
	const struct ctl_cmd *cmd;
	char err[1024];
	int ch, words, rc;

	log_set_role("alarmctl");
	/* The modules it shares with the service log progress and retries: only errors are news here. */
	log_set_level(LL_ERROR);
	while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': c.conf_path = optarg; break;
		case 'J': c.json = true; break;
		case 'h': usage(stdout); return CTL_EXIT_OK;
		case 'V': printf("alarmctl %s (cnats %s)\n", ALARM_DIGEST_VERSION, NATS_VERSION_STRING);
			return CTL_EXIT_OK;
		default: usage(stderr); return CTL_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if ((cmd = find_command(argc, argv, &words)) == NULL) {
		if (strcmp(argv[0], "dead-letter") == 0)
			ctl_err("dead-letter needs a command: list, show or replay");
		else
			ctl_err("unknown command %s (alarmctl --help lists them)", argv[0]);
		return CTL_EXIT_USAGE;
	}
	/* Help needs no configuration. */
	for (int i = words; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return cmd->run(&c, argc - words + 1, argv + words - 1);
	if (config_load(c.conf_path, &c.cfg, err, sizeof(err)) == -1) {
		if (!cmd->lenient) {
			ctl_err("cannot use the configuration: %s", err);
			return CTL_EXIT_FAIL;
		}
		if (ctl_load_lenient(c.conf_path, &c.cfg) == -1)
			return CTL_EXIT_FAIL;
	}
	rc = cmd->run(&c, argc - words + 1, argv + words - 1);
	config_free(&c.cfg);
	return rc;
}
