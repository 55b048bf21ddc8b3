/*
 * Least privilege ([service] user): both scenarios need root, as CI runs
 * them, and a throwaway system account "alarmtest-PID" that the test
 * creates with useradd and always removes (at the end of the scenario, at
 * exit, and, for a run that was killed, by the next run: the PID is gone).
 *
 * priv_drop: started as root with user = the account, from a copy of the
 * binary in a directory only root may enter (as a build tree under /root
 * is), every process of the service (master, workers; /proc/PID/status
 * Uid/Gid/Groups) runs as it,
 * every file under STATE_DIR is its own, the same after a reshard to
 * another worker count (SIGHUP, so the reshard process and the new workers
 * are children of the dropped master), and digests match the model.
 *
 * priv_refuse: the service refuses to start, exiting non-zero with a line
 * that names the problem, when STATE_DIR/supervisor.lock is a symbolic
 * link (whose target stays untouched), STATE_DIR is group- or
 * other-writable, or owned by another account than the one the service
 * runs as (either way round), the user is unknown, or a user other than
 * the one starting it is asked for without root.
 */
#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define PRIV_PREFIX "alarmtest-"

/* ---- the throwaway account ---- */

static struct {
	char name[32];
	uid_t uid;
	gid_t gid;
	bool exists;
} tu;

static bool tu_atexit;

static void
tu_remove_named(const char *name)
{
	char *argv[] = { "userdel", (char *)name, NULL };
	char out[64];
	int status;

	/* Not in a scenario's temp dir: this also runs at exit, when those are gone. */
	snprintf(out, sizeof(out), "/tmp/%s.userdel.out", name);
	if (harness_run(argv, out, 30000, &status) == -1 ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		printf("# userdel %s failed (%s); remove it by hand\n", name, harness_err());
	(void)unlink(out);
}

static void
tu_remove(void)
{
	if (!tu.exists)
		return;
	tu.exists = false;
	tu_remove_named(tu.name);
}

/* Accounts left by runs that were killed before they could remove theirs. */
static void
tu_sweep_stale(void)
{
	char stale[16][32];
	int n = 0;
	struct passwd *pw;

	setpwent();
	while ((pw = getpwent()) != NULL && n < 16) {
		long pid;
		char *end;

		if (strncmp(pw->pw_name, PRIV_PREFIX, strlen(PRIV_PREFIX)) != 0)
			continue;
		pid = strtol(pw->pw_name + strlen(PRIV_PREFIX), &end, 10);
		if (*end != '\0' || pid <= 0 || pid == (long)getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(stale[n++], sizeof(stale[0]), "%s", pw->pw_name);
	}
	endpwent();
	for (int i = 0; i < n; i++) {
		printf("# removing account %s left by an earlier run\n", stale[i]);
		tu_remove_named(stale[i]);
	}
}

static int
tu_create(const char *dir)
{
	char out[PATH_MAX], st[64];
	struct passwd *pw;
	int status;

	tu_sweep_stale();
	snprintf(tu.name, sizeof(tu.name), PRIV_PREFIX "%ld", (long)getpid());
	char *argv[] = { "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
	    tu.name, NULL };
	if (!tu_atexit && atexit(tu_remove) == 0)
		tu_atexit = true;
	if (harness_path(out, sizeof(out), dir, "useradd.out") == -1 ||
	    harness_run(argv, out, 30000, &status) == -1)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = harness_read_file(out, NULL);

		harness_seterr("useradd %s ended with %s: %.200s", tu.name,
		    harness_status_str(status, st, sizeof(st)), text != NULL ? text : "");
		free(text);
		return -1;
	}
	tu.exists = true;
	if ((pw = getpwnam(tu.name)) == NULL) {
		harness_seterr("getpwnam %s after useradd: not found", tu.name);
		return -1;
	}
	tu.uid = pw->pw_uid;
	tu.gid = pw->pw_gid;
	return 0;
}

static bool
priv_need_root(const char *scenario)
{
	if (geteuid() == 0)
		return true;
	tap_fail(scenario, "needs root (it creates an account with useradd, chowns directories and "
	    "starts the service as root to see it drop); run the integration tests as root, as CI "
	    "does");
	return false;
}

/* ---- priv_drop ---- */

/* "Uid:\t1\t2\t3\t4": all four ids must be want. */
static int
ids_line_check(const char *status, const char *key, unsigned want, pid_t pid, const char *who)
{
	const char *line = strstr(status, key);
	unsigned v[4];

	if (line == NULL || sscanf(line + strlen(key), "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) != 4) {
		harness_seterr("%s pid %ld: no %s line in /proc/PID/status", who, (long)pid, key + 1);
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		if (v[i] != want) {
			harness_seterr("%s pid %ld: %s %u %u %u %u, want %u (%s) in all four", who,
			    (long)pid, key + 1, v[0], v[1], v[2], v[3], want, tu.name);
			return -1;
		}
	}
	return 0;
}

/* Real, effective, saved and file-system ids all the account's; no other group. */
static int
proc_runs_as_tu(pid_t pid, const char *who)
{
	char path[64], *status, *groups;
	int rc = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((status = harness_read_file(path, NULL)) == NULL)
		return -1;
	if (ids_line_check(status, "\nUid:", (unsigned)tu.uid, pid, who) == -1 ||
	    ids_line_check(status, "\nGid:", (unsigned)tu.gid, pid, who) == -1)
		goto out;
	if ((groups = strstr(status, "\nGroups:")) == NULL) {
		harness_seterr("%s pid %ld: no Groups line in %s", who, (long)pid, path);
		goto out;
	}
	groups += strlen("\nGroups:");
	for (char *p = groups; *p != '\n' && *p != '\0';) {
		char *end;
		unsigned long g = strtoul(p, &end, 10);

		if (end == p) {
			p++;
			continue;
		}
		if (g != (unsigned long)tu.gid) {
			harness_seterr("%s pid %ld: supplementary group %lu, want only %u (%s)", who,
			    (long)pid, g, (unsigned)tu.gid, tu.name);
			goto out;
		}
		p = end;
	}
	rc = 0;
out:
	free(status);
	return rc;
}

static int
workers_run_as_tu(struct env *e, int want)
{
	struct harness_worker w[64];
	char who[32];

	if (harness_workers_wait(e->svc.proc.pid, want, 30000, 300, w) == -1)
		return -1;
	for (int i = 0; i < want; i++) {
		snprintf(who, sizeof(who), "worker %d/%d", w[i].slot, w[i].nslots);
		if (proc_runs_as_tu(w[i].pid, who) == -1)
			return -1;
	}
	return 0;
}

static int owned_bad;
static int owned_seen;

static int
owned_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	owned_seen++;
	if (st->st_uid != tu.uid || st->st_gid != tu.gid) {
		if (owned_bad++ == 0)
			harness_seterr("%s is owned by uid %u gid %u, want %u:%u (%s)", path,
			    (unsigned)st->st_uid, (unsigned)st->st_gid, (unsigned)tu.uid,
			    (unsigned)tu.gid, tu.name);
	}
	return 0;
}

/* Every entry under STATE_DIR (itself included) is the account's; the lock and stores are there. */
static int
state_owned_by_tu(struct env *e, int workers)
{
	char state[PATH_MAX + 16], path[PATH_MAX + 48];

	snprintf(state, sizeof(state), "%s/state", e->dir);
	for (int i = -2; i < workers; i++) {
		if (i == -2)
			snprintf(path, sizeof(path), "%s/supervisor.lock", state);
		else if (i == -1)
			snprintf(path, sizeof(path), "%s/LAYOUT", state);
		else
			snprintf(path, sizeof(path), "%s/worker-%d/worker.lock", state, i);
		if (access(path, F_OK) == -1) {
			harness_seterr("%s: %s", path, strerror(errno));
			return -1;
		}
	}
	owned_bad = owned_seen = 0;
	if (nftw(state, owned_visit, 16, FTW_PHYS) == -1) {
		harness_seterr("walking %s: %s", state, strerror(errno));
		return -1;
	}
	if (owned_bad > 0) {
		char first[512];

		snprintf(first, sizeof(first), "%s", harness_err());
		harness_seterr("%d of %d entries under %s are not %s's; first: %s", owned_bad,
		    owned_seen, state, tu.name, first);
		return -1;
	}
	printf("# priv_drop: %d entries under %s, all %s's\n", owned_seen, state, tu.name);
	return 0;
}

/*
 * A copy of the supervisor in DIR/private, mode 0700, root's: the account
 * cannot reach it by its path, and its workers must start all the same.
 */
static int
priv_private_copy(const char *dir, char *bin, size_t cap)
{
	char priv[PATH_MAX], out[PATH_MAX], st[64];
	int status;

	if (harness_path(priv, sizeof(priv), dir, "private") == -1 ||
	    harness_path(bin, cap, priv, "alarm-supervisor") == -1 ||
	    harness_path(out, sizeof(out), dir, "cp.out") == -1)
		return -1;
	if (mkdir(priv, 0700) == -1 && errno != EEXIST) {
		harness_seterr("mkdir %s: %s", priv, strerror(errno));
		return -1;
	}
	char *argv[] = { "cp", (char *)itest_opts.bin, bin, NULL };
	if (harness_run(argv, out, 30000, &status) == -1)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = harness_read_file(out, NULL);

		harness_seterr("cp %s %s ended with %s: %.200s", itest_opts.bin, bin,
		    harness_status_str(status, st, sizeof(st)), text != NULL ? text : "");
		free(text);
		return -1;
	}
	return 0;
}

void
scn_priv_drop(void)
{
	char extra[96];
	struct env_config cfg = { .workers = 2, .dir_shared = true, .service_extra = extra };
	struct env e = { 0 };
	char dir[PATH_MAX], bin[PATH_MAX];

	dir[0] = '\0';
	if (!priv_need_root("priv_drop"))
		return;
	if (harness_tmpdir("priv_drop_user", dir, sizeof(dir)) == -1 || tu_create(dir) == -1) {
		tap_fail("priv_drop", "creating the account: %s", harness_err());
		goto out;
	}
	snprintf(extra, sizeof(extra), "user = %s\n", tu.name);
	if (priv_private_copy(dir, bin, sizeof(bin)) == -1) {
		tap_fail("priv_drop", "copying the supervisor: %s", harness_err());
		goto out;
	}
	cfg.bin = bin;
	if (env_up(&e, "priv_drop", &cfg) == -1) {
		tap_fail("priv_drop", "environment: %s", harness_err());
		goto out;
	}
	tap_report("priv_drop/master_runs_as_user", proc_runs_as_tu(e.svc.proc.pid, "master"));
	tap_report("priv_drop/workers_run_as_user", workers_run_as_tu(&e, 2));
	tap_report("priv_drop/state_owned_by_user", state_owned_by_tu(&e, 2));
	/* The reshard process and the new workers are children of the dropped master. */
	e.cfg.workers = 3;
	tap_report("priv_drop/reshard_keeps_user",
	    env_write_config(&e, &e.cfg) == -1 || harness_service_signal(&e.svc, SIGHUP) == -1 ||
	    workers_run_as_tu(&e, 3) == -1 || state_owned_by_tu(&e, 3) == -1 ? -1 : 0);
	tap_report("priv_drop/digests_match_model", env_small_traffic(&e, "pd", 0x9e1d));
	tap_report("priv_drop/digest_json_shape", env_check_collector(&e));
out:
	env_down(&e);
	tu_remove();
	if (dir[0] != '\0' && harness_tmpdir_remove(dir) == -1)
		printf("# priv_drop: %s\n", harness_err());
}

/* ---- priv_refuse ---- */

enum refuse_prep {
	PREP_SYMLINK_LOCK,    /* STATE/supervisor.lock -> DIR/precious */
	PREP_MODE,            /* STATE with `mode` */
	PREP_OWNED_BY_TU,     /* STATE owned by the account; the service runs as root */
	PREP_NONE,            /* STATE as root creates it */
};

struct refuse_case {
	const char *name;
	enum refuse_prep prep;
	mode_t mode;
	const char *user;       /* [service] user: NULL none, "@" the account */
	bool as_tu;             /* started by the account instead of root */
	const char *needles[3]; /* in its output; "@" = the account's name, "$" = STATE */
};

static const struct refuse_case refuse_cases[] = {
	{ "symlinked_lock", PREP_SYMLINK_LOCK, 0700, NULL, false,
	  { "is a symbolic link", "$/supervisor.lock", NULL } },
	{ "group_writable_state_dir", PREP_MODE, 0770, NULL, false,
	  { "$ has mode 0770", "chmod go-w $", NULL } },
	{ "other_writable_state_dir", PREP_MODE, 01777, NULL, false,
	  { "$ has mode 1777", "chmod go-w $", NULL } },
	{ "state_dir_of_another_user", PREP_OWNED_BY_TU, 0700, NULL, false,
	  { "$ is owned by @", "not by root", "chown -R root:root $" } },
	{ "state_dir_not_the_users", PREP_MODE, 0700, "@", false,
	  { "$ is owned by root", "not by @", "chown -R @:@ $" } },
	{ "unknown_user", PREP_NONE, 0700, "alarmtest-no-such-user", false,
	  { "[service] user alarmtest-no-such-user: no such user", NULL, NULL } },
	{ "other_user_without_root", PREP_NONE, 0700, "root", true,
	  { "[service] user is root", "only root can switch users", NULL } },
};

/* needle with "@" and "$" expanded. */
static void
refuse_expand(const char *needle, const char *state, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = '\0';
	for (const char *p = needle; *p != '\0' && len + 1 < cap; p++) {
		if (*p == '@')
			len += (size_t)snprintf(buf + len, cap - len, "%s", tu.name);
		else if (*p == '$')
			len += (size_t)snprintf(buf + len, cap - len, "%s", state);
		else
			buf[len++] = *p, buf[len] = '\0';
		if (len >= cap)
			len = cap - 1;
	}
}

static int
refuse_prepare(const struct refuse_case *c, const char *dir, const char *state, char *precious,
    size_t cap)
{
	char lock[PATH_MAX + 32];

	precious[0] = '\0';
	if (c->prep == PREP_NONE)
		return 0;
	if (mkdir(state, 0700) == -1 || chmod(state, c->mode) == -1) {
		harness_seterr("mkdir/chmod %s: %s", state, strerror(errno));
		return -1;
	}
	if (c->prep == PREP_OWNED_BY_TU && chown(state, tu.uid, tu.gid) == -1) {
		harness_seterr("chown %s to %s: %s", state, tu.name, strerror(errno));
		return -1;
	}
	if (c->prep != PREP_SYMLINK_LOCK)
		return 0;
	snprintf(precious, cap, "%s/precious", dir);
	snprintf(lock, sizeof(lock), "%s/supervisor.lock", state);
	if (harness_write_file(precious, "precious\n") == -1)
		return -1;
	if (symlink(precious, lock) == -1) {
		harness_seterr("symlink %s -> %s: %s", lock, precious, strerror(errno));
		return -1;
	}
	return 0;
}

static int
refuse_case_run(const char *dir, const struct refuse_case *c)
{
	char state[PATH_MAX], conf[PATH_MAX], out[PATH_MAX], precious[PATH_MAX];
	char text[PATH_MAX + 256], user[96] = "", needle[PATH_MAX + 128], st[64];
	char uid[32], gid[32];
	char *output = NULL, *kept = NULL;
	int status, rc = -1;

	snprintf(state, sizeof(state), "%s/state-%s", dir, c->name);
	snprintf(conf, sizeof(conf), "%s/%s.conf", dir, c->name);
	snprintf(out, sizeof(out), "%s/%s.out", dir, c->name);
	if (c->user != NULL)
		snprintf(user, sizeof(user), "user = %s\n", strcmp(c->user, "@") == 0 ? tu.name : c->user);
	/* Nothing listens on port 1: a service that does not refuse waits for NATS and times out. */
	snprintf(text, sizeof(text), "# itest priv_refuse: %s\n[nats]\nservers = nats://127.0.0.1:1\n"
	    "[service]\nstate_dir = %s\nworkers = 1\n%s[http]\nlisten = \"\"\n", c->name, state, user);
	if (harness_write_file(conf, text) == -1 || chmod(conf, 0644) == -1 ||
	    refuse_prepare(c, dir, state, precious, sizeof(precious)) == -1)
		return -1;
	snprintf(uid, sizeof(uid), "--reuid=%u", (unsigned)tu.uid);
	snprintf(gid, sizeof(gid), "--regid=%u", (unsigned)tu.gid);
	char *direct[] = { (char *)itest_opts.bin, "-c", conf, NULL };
	char *as_tu[] = { "setpriv", uid, gid, "--clear-groups", (char *)itest_opts.bin, "-c", conf,
	    NULL };
	if (harness_run(c->as_tu ? as_tu : direct, out, 20000, &status) == -1)
		return -1;
	if ((output = harness_read_file(out, NULL)) == NULL)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 0) {
		harness_seterr("the service ended with %s, want a non-zero exit; output: %.400s",
		    harness_status_str(status, st, sizeof(st)), output);
		goto out;
	}
	for (int i = 0; i < 3 && c->needles[i] != NULL; i++) {
		refuse_expand(c->needles[i], state, needle, sizeof(needle));
		if (strstr(output, needle) == NULL) {
			harness_seterr("output does not say \"%s\": %.400s", needle, output);
			goto out;
		}
	}
	if (precious[0] != '\0') {
		if ((kept = harness_read_file(precious, NULL)) == NULL)
			goto out;
		if (strcmp(kept, "precious\n") != 0) {
			harness_seterr("the lock link's target %s was changed to \"%.40s\"", precious, kept);
			goto out;
		}
	}
	rc = 0;
out:
	free(output);
	free(kept);
	return rc;
}

void
scn_priv_refuse(void)
{
	char dir[PATH_MAX], name[96];

	dir[0] = '\0';
	if (!priv_need_root("priv_refuse"))
		return;
	if (harness_tmpdir("priv_refuse", dir, sizeof(dir)) == -1 || chmod(dir, 0711) == -1 ||
	    tu_create(dir) == -1) {
		tap_fail("priv_refuse", "environment: %s", harness_err());
		goto out;
	}
	for (size_t i = 0; i < sizeof(refuse_cases) / sizeof(refuse_cases[0]); i++) {
		if (!itest_selected("priv_refuse", refuse_cases[i].name))
			continue;
		snprintf(name, sizeof(name), "priv_refuse/%s", refuse_cases[i].name);
		tap_report(name, refuse_case_run(dir, &refuse_cases[i]));
	}
out:
	tu_remove();
	/* Never left behind: it may hold a stray service's files. */
	harness_kill_orphans();
	if (dir[0] != '\0' && getenv("ITEST_KEEP") != NULL) {
		harness_tmpdir_keep(dir);
		printf("# priv_refuse: kept %s\n", dir);
	} else if (dir[0] != '\0' && harness_tmpdir_remove(dir) == -1) {
		printf("# priv_refuse: %s\n", harness_err());
	}
}
