#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../common/clock.h"
#include "../common/layout.h"
#include "../common/lockfile.h"
#include "../common/reloadstat.h"
#include "daemon.h"

#define DAEMON_POLL_MS 50
#define DAEMON_RELOAD_WAIT_S 30
/* Beyond shutdown_timeout: the master kills its workers then, and closes NATS after. */
#define DAEMON_STOP_MARGIN_S 10

struct daemon_opts {
	int64_t timeout_s;      /* 0: the command's default */
};

static void
daemon_sleep(void)
{
	nanosleep(&(struct timespec){ 0, DAEMON_POLL_MS * 1000000 }, NULL);
}

/*
 * Is the lock at path held?  1 held, 0 free, -1 (reported) unreadable.
 * A shared lock taken for a moment tells: the supervisor takes its lock
 * exclusively and without waiting, so this look must be short, and is.
 */
static int
daemon_lock_held(const char *path)
{
	int fd, held;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		ctl_err("cannot open %s: %s%s", path, strerror(errno), errno == EACCES ?
		    " (run alarmctl as root or as the service's user)" : "");
		return -1;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		held = 0;
		flock(fd, LOCK_UN);
	} else if (errno == EWOULDBLOCK) {
		held = 1;
	} else {
		ctl_err("flock %s: %s", path, strerror(errno));
		held = -1;
	}
	close(fd);
	return held;
}

/* Gone, or a zombie its parent has not reaped yet: either way it runs no more. */
static bool
daemon_pid_gone(long pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	bool zombie = false;

	if (kill((pid_t)pid, 0) == -1 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return errno == ENOENT;
	/* "PID (comm) S ...": the state follows the last ')', as comm may hold one. */
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		zombie = p[1] == ' ' && p[2] == 'Z';
	fclose(f);
	return zombie;
}

/* The running supervisor's pid and its lock's path; -1 (reported) when there is none. */
static int
daemon_find(const struct ctl *c, long *pid, char *lock, size_t cap)
{
	int held;

	if ((size_t)snprintf(lock, cap, "%s/supervisor.lock", c->cfg.state_dir) >= cap) {
		ctl_err("state_dir %s: path too long", c->cfg.state_dir);
		return -1;
	}
	if (access(lock, F_OK) == -1 && errno == ENOENT) {
		ctl_err("no running supervisor: %s does not exist (state_dir of %s; is the service "
		    "running with this configuration?)", lock, c->conf_path);
		return -1;
	}
	if ((held = daemon_lock_held(lock)) == -1)
		return -1;
	*pid = lockfile_holder(lock);
	if (held == 0) {
		if (*pid > 0)
			ctl_err("no running supervisor: %s is not locked (stale pid %ld from a "
			    "supervisor that has exited)", lock, *pid);
		else
			ctl_err("no running supervisor: %s is not locked", lock);
		return -1;
	}
	if (*pid == 0) {
		ctl_err("%s is locked but holds no pid (a supervisor still starting?)", lock);
		return -1;
	}
	if (kill((pid_t)*pid, 0) == -1) {
		if (errno == EPERM)
			ctl_err("not allowed to signal the supervisor (pid %ld, from %s): run alarmctl "
			    "as root or as the service's user", *pid, lock);
		else
			ctl_err("no running supervisor: pid %ld from %s: %s", *pid, lock, strerror(errno));
		return -1;
	}
	return 0;
}

static int
daemon_on_opt(int val, const char *arg, void *arg2)
{
	struct daemon_opts *o = arg2;
	int64_t ms;

	if (val != 't')
		return -1;
	if (config_parse_duration_ms(arg, &ms) == -1 || ms <= 0) {
		/* A bare number is seconds, as shutdown_timeout reads "10s". */
		char *end;
		long long s = strtoll(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || s <= 0 || s > 86400) {
			ctl_err("--timeout %s: not a duration (30, 30s, 2m)", arg);
			return -1;
		}
		ms = s * 1000;
	}
	o->timeout_s = (ms + 999) / 1000;
	return 0;
}

static const struct ctl_opt daemon_opts[] = {
	{ "timeout", true, 't' },
	{ NULL, false, 0 },
};

/* ---- reload ---- */

static void
daemon_reload_text(const struct ctl *c, const struct reloadstat *rs)
{
	struct ctl_table *t;
	const char *key, *was, *now;
	const char *heads[] = { "SETTING", "OLD", "NEW", "EFFECT" };
	size_t n = reloadstat_changes(rs);
	bool restart;

	printf("reload of %s accepted (generation %llu, supervisor pid %ld)\n", c->conf_path,
	    (unsigned long long)reloadstat_generation(rs), reloadstat_pid(rs));
	if (n == 0) {
		printf("no setting changed\n");
		return;
	}
	if ((t = ctl_table_new(4, heads)) == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		reloadstat_change_at(rs, i, &key, &was, &now, &restart);
		const char *row[] = { key, *was ? was : "\"\"", *now ? now : "\"\"",
		    restart ? "needs a restart (old value kept)" : "applied" };
		if (ctl_table_add(t, row) == -1)
			break;
	}
	ctl_table_print(t);
	ctl_table_free(t);
}

static void
daemon_reload_json(const struct reloadstat *rs)
{
	json_object *o = json_object_new_object(), *ch = json_object_new_array(),
	    *ap = json_object_new_array(), *rn = json_object_new_array();
	const char *key, *was, *now;
	bool restart;

	for (size_t i = 0; i < reloadstat_changes(rs); i++) {
		json_object *e = json_object_new_object();

		reloadstat_change_at(rs, i, &key, &was, &now, &restart);
		json_object_object_add(e, "key", json_object_new_string(key));
		json_object_object_add(e, "old", json_object_new_string(was));
		json_object_object_add(e, "new", json_object_new_string(now));
		json_object_object_add(e, "needs_restart", json_object_new_boolean(restart));
		json_object_array_add(ch, e);
		json_object_array_add(restart ? rn : ap, json_object_new_string(key));
	}
	json_object_object_add(o, "ok", json_object_new_boolean(reloadstat_ok(rs)));
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)reloadstat_generation(rs)));
	json_object_object_add(o, "pid", json_object_new_int64(reloadstat_pid(rs)));
	json_object_object_add(o, "message", json_object_new_string(reloadstat_message(rs)));
	json_object_object_add(o, "changes", ch);
	json_object_object_add(o, "applied", ap);
	json_object_object_add(o, "needs_restart", rn);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static int
daemon_reload(struct ctl *c, int argc, char *argv[])
{
	struct daemon_opts o = { 0 };
	struct reloadstat *rs = NULL;
	char lock[PATH_MAX], err[512];
	uint64_t before = 0;
	int64_t deadline;
	long pid;
	bool done;
	int i;

	if ((i = ctl_getopt(c, &daemon_reload_cmd, argc, argv, daemon_opts, daemon_on_opt, &o, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (i != argc) {
		ctl_err("reload takes no operands (got %s)", argv[i]);
		return CTL_EXIT_USAGE;
	}
	if (daemon_find(c, &pid, lock, sizeof(lock)) == -1)
		return CTL_EXIT_FAIL;
	/* The generation now: the answer to our SIGHUP is the first one above it. */
	switch (reloadstat_read(c->cfg.state_dir, &rs, err, sizeof(err))) {
	case 1:
		before = reloadstat_generation(rs);
		reloadstat_free(rs);
		rs = NULL;
		break;
	case -1:
		ctl_err("%s (waiting for a first status instead)", err);
		break;
	}
	if (kill((pid_t)pid, SIGHUP) == -1) {
		ctl_err("sending SIGHUP to the supervisor (pid %ld): %s", pid, strerror(errno));
		return CTL_EXIT_FAIL;
	}
	deadline = clock_mono_ms() + (o.timeout_s ? o.timeout_s : DAEMON_RELOAD_WAIT_S) * 1000;
	for (;;) {
		if (reloadstat_read(c->cfg.state_dir, &rs, err, sizeof(err)) == 1) {
			if (reloadstat_generation(rs) > before)
				break;
			reloadstat_free(rs);
			rs = NULL;
		}
		if (daemon_pid_gone(pid)) {
			ctl_err("the supervisor (pid %ld) exited before reporting the reload's outcome", pid);
			return CTL_EXIT_FAIL;
		}
		if (clock_mono_ms() >= deadline) {
			ctl_err("sent SIGHUP to the supervisor (pid %ld) but it reported no outcome in "
			    "%s/%s within %lld s (still starting, or busy resharding?); its log says more",
			    pid, c->cfg.state_dir, RELOADSTAT_FILE,
			    (long long)(o.timeout_s ? o.timeout_s : DAEMON_RELOAD_WAIT_S));
			return CTL_EXIT_FAIL;
		}
		daemon_sleep();
	}
	if (c->json)
		daemon_reload_json(rs);
	else if (reloadstat_ok(rs))
		daemon_reload_text(c, rs);
	if (!reloadstat_ok(rs))
		ctl_err("reload rejected; the service keeps running with its previous configuration: %s",
		    reloadstat_message(rs));
	i = reloadstat_ok(rs) ? CTL_EXIT_OK : CTL_EXIT_FAIL;
	reloadstat_free(rs);
	return i;
}

const struct ctl_cmd daemon_reload_cmd = {
	"reload", "[--timeout T]",
	"reload the configuration of the running supervisor and report the outcome",
	"Sends SIGHUP to the supervisor found through STATE_DIR/supervisor.lock and waits\n"
	"(default 30 s, --timeout) for it to write the outcome to STATE_DIR/reload-status.\n"
	"Accepted: lists each changed setting, applied or needing a restart; exit 0.\n"
	"Rejected: prints the error on stderr, exit 1; the service keeps its running\n"
	"configuration.  --json prints {ok, generation, pid, message, changes, applied,\n"
	"needs_restart}.\n",
	true,
	daemon_reload,
};

/* ---- stop ---- */

static int
daemon_stop(struct ctl *c, int argc, char *argv[])
{
	struct daemon_opts o = { 0 };
	char lock[PATH_MAX];
	int64_t start, deadline, limit_s;
	long pid;
	bool done;
	int i, held = 1;

	if ((i = ctl_getopt(c, &daemon_stop_cmd, argc, argv, daemon_opts, daemon_on_opt, &o, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (i != argc) {
		ctl_err("stop takes no operands (got %s)", argv[i]);
		return CTL_EXIT_USAGE;
	}
	if (daemon_find(c, &pid, lock, sizeof(lock)) == -1)
		return CTL_EXIT_FAIL;
	limit_s = o.timeout_s ? o.timeout_s : (c->cfg.shutdown_timeout_ms + 999) / 1000 + DAEMON_STOP_MARGIN_S;
	start = clock_mono_ms();
	if (kill((pid_t)pid, SIGTERM) == -1) {
		ctl_err("sending SIGTERM to the supervisor (pid %ld): %s", pid, strerror(errno));
		return CTL_EXIT_FAIL;
	}
	deadline = start + limit_s * 1000;
	/* Its lock goes with its last descriptor; the pid may linger as a zombie. */
	while (!daemon_pid_gone(pid) || (held = daemon_lock_held(lock)) == 1) {
		if (held == -1)
			return CTL_EXIT_FAIL;
		if (clock_mono_ms() >= deadline) {
			ctl_err("the supervisor (pid %ld) is still running %lld s after SIGTERM "
			    "(shutdown_timeout %lld ms); not waiting longer", pid, (long long)limit_s,
			    (long long)c->cfg.shutdown_timeout_ms);
			return CTL_EXIT_FAIL;
		}
		daemon_sleep();
	}
	double took = (double)(clock_mono_ms() - start) / 1000.0;
	if (c->json)
		printf("{\"pid\":%ld,\"stopped\":true,\"seconds\":%.3f}\n", pid, took);
	else
		printf("supervisor pid %ld stopped after %.2f s (drained; lock %s free)\n", pid, took, lock);
	return CTL_EXIT_OK;
}

const struct ctl_cmd daemon_stop_cmd = {
	"stop", "[--timeout T]",
	"stop the running supervisor and wait for its drain to finish",
	"Sends SIGTERM to the supervisor found through STATE_DIR/supervisor.lock and waits\n"
	"until its pid is gone and the lock is free: by default shutdown_timeout + 10 s,\n"
	"or --timeout.  Prints how long the drain took; exit 1 if it did not end in time.\n"
	"--json prints {pid, stopped, seconds}.\n",
	true,
	daemon_stop,
};
