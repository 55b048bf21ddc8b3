#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ini.h>

#include "../common/rfc3339.h"
#include "ctl.h"

#define CTL_MAX_OPTS 16

void
ctl_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("alarmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
ctl_lenient_pair(void *arg, const char *section, const char *name, const char *value)
{
	struct config *cfg = arg;
	char *s;
	int64_t ms;

	if (strcmp(section, "service") != 0)
		return 1;
	if (strcmp(name, "state_dir") == 0 && *value != '\0' && (s = strdup(value)) != NULL) {
		free(cfg->state_dir);
		cfg->state_dir = s;
	} else if (strcmp(name, "shutdown_timeout") == 0 && config_parse_duration_ms(value, &ms) == 0) {
		cfg->shutdown_timeout_ms = ms;
	}
	return 1;
}

int
ctl_load_lenient(const char *path, struct config *cfg)
{
	int rc;

	if (config_defaults(cfg) == -1) {
		ctl_err("configuration defaults: out of memory");
		return -1;
	}
	/* Keeps going past lines it cannot parse: those are the supervisor's to report. */
	if ((rc = ini_parse(path, ctl_lenient_pair, cfg)) == -1) {
		ctl_err("cannot read %s: %s", path, strerror(errno));
		config_free(cfg);
		return -1;
	}
	return 0;
}

static void
ctl_cmd_usage(FILE *f, const struct ctl_cmd *cmd)
{
	fprintf(f, "usage: alarmctl [-c FILE] %s [--json]%s%s\n", cmd->name, *cmd->args ? " " : "",
	    cmd->args);
}

int
ctl_getopt(struct ctl *c, const struct ctl_cmd *cmd, int argc, char *argv[],
    const struct ctl_opt *opts, int (*on_opt)(int val, const char *arg, void *arg2), void *arg2,
    bool *done)
{
	struct option lo[CTL_MAX_OPTS + 3];
	int n = 0, ch;

	*done = false;
	for (; opts != NULL && opts[n].name != NULL && n < CTL_MAX_OPTS; n++)
		lo[n] = (struct option){ opts[n].name, opts[n].has_arg ? required_argument : no_argument,
		    NULL, opts[n].val };
	lo[n++] = (struct option){ "json", no_argument, NULL, 'J' };
	lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
	/* 0, not 1: glibc then forgets where it was inside main's options too. */
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (ch) {
		case 'J':
			c->json = true;
			break;
		case 'h':
			ctl_cmd_usage(stdout, cmd);
			printf("%s\n%s", cmd->summary, cmd->help);
			*done = true;
			return 0;
		case '?':
			ctl_err("%s: unknown option or missing value: %s", cmd->name, argv[optind - 1]);
			ctl_cmd_usage(stderr, cmd);
			return -1;
		default:
			if (on_opt == NULL || on_opt(ch, optarg, arg2) == -1) {
				ctl_cmd_usage(stderr, cmd);
				return -1;
			}
		}
	}
	return optind;
}

void
ctl_time(int64_t ns, char *buf, size_t cap)
{
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;

	if (ns <= 0 || gmtime_r(&sec, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "-");
}

int
ctl_parse_since(const char *s, int64_t *ns)
{
	struct rfc3339_time t;
	int64_t ms;

	if (rfc3339_parse(s, strlen(s), &t) == 0) {
		*ns = t.sec * 1000000000 + t.nsec;
		return 0;
	}
	if (config_parse_duration_ms(s, &ms) == 0 && ms >= 0) {
		*ns = ((int64_t)time(NULL) * 1000 - ms) * 1000000;
		return 0;
	}
	ctl_err("--since %s: neither an RFC 3339 time (2026-11-30T03:00:00Z) nor a duration "
	    "ago (90s, 30m, 2h, 7d)", s);
	return -1;
}

struct ctl_table {
	int ncols;
	size_t nrows, cap;
	char **cells;           /* nrows * ncols, row-major; row 0 the heads */
};

struct ctl_table *
ctl_table_new(int ncols, const char *const *heads)
{
	struct ctl_table *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		ctl_err("allocating an output table: out of memory");
		return NULL;
	}
	t->ncols = ncols;
	if (ctl_table_add(t, heads) == -1) {
		ctl_table_free(t);
		return NULL;
	}
	return t;
}

int
ctl_table_add(struct ctl_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		char **n = reallocarray(t->cells, ncap * (size_t)t->ncols, sizeof(*n));

		if (n == NULL) {
			ctl_err("growing an output table to %zu rows: out of memory", ncap);
			return -1;
		}
		t->cells = n;
		t->cap = ncap;
	}
	for (int i = 0; i < t->ncols; i++) {
		if ((t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = strdup(cells[i])) == NULL) {
			ctl_err("copying a table cell: out of memory");
			while (i-- > 0)
				free(t->cells[t->nrows * (size_t)t->ncols + (size_t)i]);
			return -1;
		}
	}
	t->nrows++;
	return 0;
}

void
ctl_table_print(struct ctl_table *t)
{
	size_t w[32] = { 0 };
	int nc = t->ncols < 32 ? t->ncols : 32;

	for (size_t r = 0; r < t->nrows; r++)
		for (int i = 0; i < nc; i++) {
			size_t l = strlen(t->cells[r * (size_t)t->ncols + (size_t)i]);
			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int i = 0; i < nc; i++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
			/* The last column is not padded: no trailing blanks. */
			if (i == nc - 1)
				printf("%s\n", s);
			else
				printf("%-*s  ", (int)w[i], s);
		}
	}
}

void
ctl_table_free(struct ctl_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
