/*
 * alarm-supervisor: the one program an operator starts.
 *
 *   alarm-supervisor -c FILE      run the service (master process)
 *   alarm-supervisor -t -c FILE   check FILE and exit 0 (valid) or 1
 *
 * The same binary re-executes itself for its children, with flags an
 * operator does not use: --worker (channel on fd 3) and --reshard.  This
 * file only picks the role; each role lives in its own folder:
 * supervisor/ (master), worker/, reshard/.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "../common/title.h"
#include "../common/version.h"
#include "../reshard/reshard.h"
#include "../supervisor/master.h"
#include "../supervisor/priv.h"
#include "../worker/worker.h"


#define DEFAULT_CONF "/etc/alarm-digest/alarm-supervisor.conf"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: alarm-supervisor [-t] [-c FILE]\n"
	    "  -c FILE    configuration file (default %s)\n"
	    "  -t         check the configuration and exit: 0 valid, 1 invalid\n"
	    "  -h         this help\n"
	    "  --version  print the version\n"
	    "Signals: SIGHUP reloads FILE; SIGTERM or SIGINT drains and exits.\n",
	    DEFAULT_CONF);
}

/* How the service authenticates, by method name only. */
static const char *
check_auth_name(const struct config *c)
{
	if (*c->nats_user != '\0')
		return "user+password";
	if (*c->token_file != '\0')
		return "token";
	if (*c->nkey_seed_file != '\0')
		return "nkey";
	if (*c->creds_file != '\0')
		return "creds";
	return config_servers_have_userinfo(c->servers) ? "from the URL" : "none";
}

static int
check_config(const char *path)
{
	struct config c;
	struct priv *p;
	char err[1024], servers[1024];

	if (config_load(path, &c, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* Names are checked too: an unknown user would only show at start. */
	if ((p = priv_new(&c)) == NULL) {
		config_free(&c);
		return 1;
	}
	/* Shown to whoever runs -t: never a password from a URL. */
	config_redact_servers(c.servers, servers, sizeof(servers));
	natsconn_warn_exposed(&c);
	printf("%s: ok (%d workers, intake %s, servers %s, auth %s, tls %s, state in %s, runs as %s)\n",
	    path, config_worker_count(&c), c.intake == INTAKE_JETSTREAM ? "jetstream" : "core",
	    servers, check_auth_name(&c),
	    c.tls_required ? "required" : *c.tls_ca_file != '\0' || *c.tls_cert_file != '\0' ?
	    "with [nats] tls files" : "only for tls:// URLs", c.state_dir,
	    c.user[0] != '\0' ? priv_name(p) : "whoever starts it");
	priv_free(p);
	config_free(&c);
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "worker", no_argument, NULL, 'W' },
		{ "reshard", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	char *conf = NULL;
	int test = 0, worker = 0, reshard = 0, ch, rc;

	while ((ch = getopt_long(argc, argv, "c:th", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			free(conf);
			conf = strdup(optarg);
			break;
		case 't': test = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("alarm-supervisor %s (cnats %s)\n", ALARM_DIGEST_VERSION, NATS_VERSION_STRING); return 0;
		case 'W': worker = 1; break;
		case 'R': reshard = 1; break;
		default: usage(stderr); return 2;
		}
	}
	if (conf == NULL && (conf = strdup(DEFAULT_CONF)) == NULL) {
		perror("strdup");
		return 1;
	}
	if (test) {
		rc = check_config(conf);
		free(conf);
		return rc;
	}
	if (reshard) {
		/* --reshard STATE_DIR NSLOTS MAP_SIZE, from the supervisor only */
		if (argc - optind != 3) {
			fprintf(stderr, "--reshard takes STATE_DIR NSLOTS MAP_SIZE\n");
			free(conf);
			return 2;
		}
		char *dir = strdup(argv[optind]);
		int n = atoi(argv[optind + 1]);
		long long map = atoll(argv[optind + 2]);
		title_init(argc, argv);
		rc = dir ? reshard_main(dir, n, map) : 1;
		free(dir);
		free(conf);
		return rc;
	}
	title_init(argc, argv);
	if (worker) {
		free(conf);
		return worker_main();
	}
	rc = master_main(conf);
	free(conf);
	return rc;
}
