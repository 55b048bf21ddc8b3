/*
 * ctl: what every alarmctl command shares: the loaded configuration, the
 * output mode, error lines and the small formatters the commands print
 * with.  Each command group lives in its own file (dlq.c: the dead-letter
 * stream; daemon.c: signalling the running supervisor) and is listed in
 * main.c's command table.
 *
 * Exit status of every command: 0 done, 1 failed (the line on stderr says
 * what and on which input), 2 a usage error.
 */
#ifndef CTL_H
#define CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2

struct ctl {
	const char *conf_path;
	struct config cfg;
	bool json;              /* --json: one JSON document on stdout */
};

/* What a command's --help prints, and how main.c finds and runs it. */
struct ctl_cmd {
	const char *name;       /* "dead-letter list", "reload" */
	const char *args;       /* "[--reason R] [--since T]" */
	const char *summary;    /* one line for alarmctl --help */
	const char *help;       /* the rest of COMMAND --help, each line ending in \n */
	/*
	 * Runs even when the file does not load, with the defaults and what
	 * ctl_load_lenient could read: a signal still reaches the supervisor,
	 * which judges the file itself (reload, stop).
	 */
	bool lenient;
	/* argv[0] is the command's last word; options are the command's own. */
	int (*run)(struct ctl *c, int argc, char *argv[]);
};

/*
 * For a file config_load refuses: the defaults, with [service] state_dir
 * and shutdown_timeout as the file gives them (when it does).  0, or -1
 * (reported) when even that cannot be read.
 */
int ctl_load_lenient(const char *path, struct config *cfg);

/* "alarmctl: " + the message + "\n" on stderr. */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One option of a command, as getopt_long knows it (--name, with or without a value). */
struct ctl_opt {
	const char *name;
	bool has_arg;
	int val;
};
/*
 * The command's options: --json and --help are handled here (help
 * prints cmd's text and returns 0 with *done set); others go to on_opt
 * (getopt_long style, returns -1 on a bad value, after ctl_err).  Returns
 * the index of the first operand, or -1 after a usage line on stderr.
 */
int ctl_getopt(struct ctl *c, const struct ctl_cmd *cmd, int argc, char *argv[],
    const struct ctl_opt *opts, int (*on_opt)(int val, const char *arg, void *arg2), void *arg2,
    bool *done);

/* UTC, seconds: 2026-11-30T03:30:49Z (nanoseconds since the epoch). */
void ctl_time(int64_t ns, char *buf, size_t cap);
/* "2026-11-30T03:30:49Z" (any RFC 3339 form) or a duration ago ("90m", "2h"): ns since the epoch. */
int ctl_parse_since(const char *s, int64_t *ns);

/* A table printed with its columns aligned: rows added, then printed once. */
struct ctl_table;
struct ctl_table *ctl_table_new(int ncols, const char *const *heads);
/* One row of ncols strings (copied).  0 or -1 (out of memory, reported). */
int ctl_table_add(struct ctl_table *t, const char *const *cells);
void ctl_table_print(struct ctl_table *t);
void ctl_table_free(struct ctl_table *t);

#endif
