#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_TRACKED 64

/* ---- errors and time ---- */

static _Thread_local char harness_errbuf[2048];

void
harness_seterr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(harness_errbuf, sizeof(harness_errbuf), fmt, ap);
	va_end(ap);
}

const char *
harness_err(void)
{
	return harness_errbuf[0] ? harness_errbuf : "unknown error";
}

int64_t
harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
harness_wall_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

void
harness_sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * ---- registries ----
 * What must be undone on any exit path.  The SIGALRM backstop reads the
 * pgid array without the lock: it only calls kill(2) on what it finds.
 */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile pid_t reg_pids[MAX_TRACKED];      /* spawned, not yet reaped */
static char reg_dirs[MAX_TRACKED][PATH_MAX];

/*
 * -1 when the table is full: an untracked child would be taken for an
 * orphan and reaped by the sweeps, and its real exit status lost.
 */
static int
reg_add_pid(pid_t pid)
{
	int rc = -1;

	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++) {
		if (reg_pids[i] == 0) {
			reg_pids[i] = pid;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	if (rc == -1)
		harness_seterr("too many child processes tracked (max %d) adding pid %ld",
		    MAX_TRACKED, (long)pid);
	return rc;
}

static void
reg_del_pid(pid_t pid)
{
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++)
		if (reg_pids[i] == pid)
			reg_pids[i] = 0;
	pthread_mutex_unlock(&reg_lock);
}

static bool
reg_has_pid(pid_t pid)
{
	bool found = false;

	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++)
		if (reg_pids[i] == pid)
			found = true;
	pthread_mutex_unlock(&reg_lock);
	return found;
}

static int
reg_add_dir(const char *path)
{
	int rc = -1;

	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++) {
		if (reg_dirs[i][0] == '\0') {
			snprintf(reg_dirs[i], sizeof(reg_dirs[i]), "%s", path);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	if (rc == -1)
		harness_seterr("too many temp dirs registered (max %d) adding %s", MAX_TRACKED, path);
	return rc;
}

static void
reg_del_dir(const char *path)
{
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++)
		if (strcmp(reg_dirs[i], path) == 0)
			reg_dirs[i][0] = '\0';
	pthread_mutex_unlock(&reg_lock);
}

/* ---- /proc ---- */

/* State letter and ppid of a pid; -1 when it does not exist. */
static int
proc_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd, pp;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %c %d", state, &pp) != 2)
		return -1;
	*ppid = (pid_t)pp;
	return 0;
}

/* Children of ppid (zombies included when with_zombies); returns count. */
static int
proc_children(pid_t ppid, pid_t *out, int max, bool with_zombies)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir("/proc")) == NULL) {
		harness_seterr("opendir /proc: %s", strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL && n < max) {
		char state;
		pid_t pp;
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atol(de->d_name);
		if (proc_stat(pid, &state, &pp) == -1 || pp != ppid)
			continue;
		if (state == 'Z' && !with_zombies)
			continue;
		out[n++] = pid;
	}
	closedir(d);
	return n;
}

bool
harness_pid_alive(pid_t pid)
{
	char state;
	pid_t pp;

	if (pid <= 0 || proc_stat(pid, &state, &pp) == -1)
		return false;
	return state != 'Z' && state != 'X';
}

void
harness_reap_orphans(void)
{
	pid_t kids[256];
	int n = proc_children(getpid(), kids, 256, true);

	for (int i = 0; i < n; i++) {
		char state;
		pid_t pp;

		if (reg_has_pid(kids[i]))
			continue;
		if (proc_stat(kids[i], &state, &pp) == 0 && state == 'Z')
			(void)waitpid(kids[i], NULL, WNOHANG);
	}
}

void
harness_kill_orphans(void)
{
	int64_t deadline = harness_now_ms() + 10000;
	pid_t kids[256];
	int n, left;

	do {
		left = 0;
		n = proc_children(getpid(), kids, 256, true);
		for (int i = 0; i < n; i++) {
			if (reg_has_pid(kids[i]))
				continue;
			left++;
			(void)kill(kids[i], SIGKILL);
			(void)waitpid(kids[i], NULL, WNOHANG);
		}
		if (left > 0)
			harness_sleep_ms(10);
	} while (left > 0 && harness_now_ms() < deadline);
}

/* ---- kill everything ---- */

void
harness_kill_all(void)
{
	int64_t deadline = harness_now_ms() + 10000;
	pid_t kids[256];
	int n;

	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < MAX_TRACKED; i++) {
		if (reg_pids[i] > 0) {
			/* Group first: it holds a supervisor's workers too. */
			(void)kill(-reg_pids[i], SIGKILL);
			(void)kill(reg_pids[i], SIGKILL);
		}
	}
	pthread_mutex_unlock(&reg_lock);
	/* As a subreaper we inherit orphaned workers: sweep until none is left. */
	while ((n = proc_children(getpid(), kids, 256, true)) > 0 &&
	    harness_now_ms() < deadline) {
		for (int i = 0; i < n; i++) {
			(void)kill(kids[i], SIGKILL);
			if (waitpid(kids[i], NULL, WNOHANG) == kids[i])
				reg_del_pid(kids[i]);
		}
		harness_sleep_ms(10);
	}
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) == -1 && errno != ENOENT)
		fprintf(stderr, "# itest: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

void
harness_tmpdir_keep(const char *path)
{
	reg_del_dir(path);
}

int
harness_tmpdir_remove(const char *path)
{
	reg_del_dir(path);
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) == -1 && errno != ENOENT) {
		harness_seterr("remove %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void
remove_all_dirs(void)
{
	char path[PATH_MAX];

	for (int i = 0; i < MAX_TRACKED; i++) {
		pthread_mutex_lock(&reg_lock);
		memcpy(path, reg_dirs[i], sizeof(path));
		pthread_mutex_unlock(&reg_lock);
		if (path[0] != '\0')
			(void)harness_tmpdir_remove(path);
	}
}

/* ---- watchdog ---- */

static pthread_t watchdog_thread;
static bool watchdog_running;
static int64_t watchdog_deadline;
static void (*watchdog_on_abort)(const char *why);
static void (*watchdog_on_stray)(int sig, const char *who);
static volatile sig_atomic_t watchdog_stopping;

static void
write_str(const char *s)
{
	(void)!write(STDOUT_FILENO, s, strlen(s));
}

static __attribute__((noreturn)) void
watchdog_abort(const char *why)
{
	if (watchdog_on_abort != NULL)
		watchdog_on_abort(why);
	else {
		write_str("Bail out! ");
		write_str(why);
		write_str("\n");
	}
	harness_kill_all();
	remove_all_dirs();
	_exit(1);
}

/* Is pid one of our descendants (a service process), not whoever runs us? */
static bool
is_descendant(pid_t pid)
{
	for (int depth = 0; depth < 16 && pid > 1; depth++) {
		char state;
		pid_t pp;

		if (proc_stat(pid, &state, &pp) == -1)
			return false;
		if (pp == getpid())
			return true;
		pid = pp;
	}
	return false;
}

static void
describe_pid(pid_t pid, char *buf, size_t cap)
{
	char path[64], cmd[256];
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
	}
	if (n <= 0)
		snprintf(cmd, sizeof(cmd), "gone");
	else {
		for (ssize_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[n] = '\0';
	}
	snprintf(buf, cap, "pid %ld (%s)", (long)pid, cmd);
}

static void *
watchdog_main(void *arg)
{
	char why[512], who[300];
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		int64_t left = watchdog_deadline - harness_now_ms();
		struct timespec ts;
		siginfo_t si;
		int sig;

		if (left <= 0)
			watchdog_abort("watchdog: global deadline passed (ITEST_TIMEOUT)");
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		memset(&si, 0, sizeof(si));
		sig = sigtimedwait(&set, &si, &ts);
		if (sig == SIGUSR1 && watchdog_stopping)
			return NULL;
		if (sig != SIGINT && sig != SIGTERM && sig != SIGHUP)
			continue;
		describe_pid(si.si_pid, who, sizeof(who));
		/* A service process signalling us is a service bug, not a reason to stop. */
		if (si.si_code == SI_USER && is_descendant(si.si_pid) && watchdog_on_stray != NULL) {
			watchdog_on_stray(sig, who);
			continue;
		}
		snprintf(why, sizeof(why), "%s from %s", sig == SIGINT ? "interrupted by SIGINT" :
		    sig == SIGTERM ? "terminated by SIGTERM" : "hung up (SIGHUP)",
		    si.si_code == SI_USER ? who : "the kernel or terminal");
		watchdog_abort(why);
	}
}

/* Last resort if the watchdog thread itself is stuck: async-signal-safe only. */
static void
alarm_backstop(int sig)
{
	(void)sig;
	for (int i = 0; i < MAX_TRACKED; i++) {
		pid_t pid = reg_pids[i];

		if (pid > 0) {
			(void)kill(-pid, SIGKILL);
			(void)kill(pid, SIGKILL);
		}
	}
	write_str("Bail out! itest: SIGALRM backstop fired; watchdog did not end the run\n");
	_exit(1);
}

int
harness_init(int64_t deadline_ms, void (*on_abort)(const char *why),
    void (*on_stray)(int sig, const char *who))
{
	struct sigaction sa;
	sigset_t set;
	int rc;

	/* Orphaned workers reparent to us, so a crashed supervisor leaks nothing. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1) {
		harness_seterr("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
		return -1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	if ((rc = pthread_sigmask(SIG_BLOCK, &set, NULL)) != 0) {
		harness_seterr("pthread_sigmask: %s", strerror(rc));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1) {
		harness_seterr("sigaction(SIGPIPE): %s", strerror(errno));
		return -1;
	}
	sa.sa_handler = alarm_backstop;
	if (sigaction(SIGALRM, &sa, NULL) == -1) {
		harness_seterr("sigaction(SIGALRM): %s", strerror(errno));
		return -1;
	}
	watchdog_deadline = harness_now_ms() + deadline_ms;
	watchdog_on_abort = on_abort;
	watchdog_on_stray = on_stray;
	if ((rc = pthread_create(&watchdog_thread, NULL, watchdog_main, NULL)) != 0) {
		harness_seterr("pthread_create(watchdog): %s", strerror(rc));
		return -1;
	}
	watchdog_running = true;
	alarm((unsigned)(deadline_ms / 1000 + 30));
	return 0;
}

void
harness_fini(void)
{
	if (watchdog_running) {
		watchdog_stopping = 1;
		pthread_kill(watchdog_thread, SIGUSR1);
		pthread_join(watchdog_thread, NULL);
		watchdog_running = false;
	}
	alarm(0);
	harness_kill_all();
	remove_all_dirs();
}

/* ---- files ---- */

int
harness_tmpdir(const char *tag, char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if ((size_t)snprintf(out, cap, "%s/itest-%s-XXXXXX", base, tag) >= cap) {
		harness_seterr("temp dir path too long under %s", base);
		return -1;
	}
	if (mkdtemp(out) == NULL) {
		harness_seterr("mkdtemp %s: %s", out, strerror(errno));
		return -1;
	}
	return reg_add_dir(out);
}

int
harness_path(char *out, size_t cap, const char *dir, const char *file)
{
	int n = snprintf(out, cap, "%s/%s", dir, file);

	if (n < 0 || (size_t)n >= cap) {
		harness_seterr("path %s/%s longer than %zu bytes", dir, file, cap);
		return -1;
	}
	return 0;
}

int
harness_write_file(const char *path, const char *text)
{
	size_t len = strlen(text);
	char tmp[PATH_MAX + 8];
	FILE *f;

	/* Write aside and rename: a SIGHUP'd reader never sees half a file. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		harness_seterr("fopen %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		harness_seterr("write %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (rename(tmp, path) == -1) {
		harness_seterr("rename %s -> %s: %s", tmp, path, strerror(errno));
		return -1;
	}
	return 0;
}

char *
harness_read_file(const char *path, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *data = malloc(cap);
	FILE *f;

	if (data == NULL) {
		harness_seterr("out of memory reading %s", path);
		return NULL;
	}
	if ((f = fopen(path, "r")) == NULL) {
		harness_seterr("fopen %s: %s", path, strerror(errno));
		free(data);
		return NULL;
	}
	for (;;) {
		size_t n = fread(data + len, 1, cap - len - 1, f);

		len += n;
		if (len < cap - 1)
			break;
		char *p = realloc(data, cap * 2);
		if (p == NULL) {
			harness_seterr("out of memory reading %s", path);
			free(data);
			fclose(f);
			return NULL;
		}
		data = p;
		cap *= 2;
	}
	fclose(f);
	data[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return data;
}

void
harness_dump_tail(const char *title, const char *path, int lines)
{
	size_t len;
	char *data = harness_read_file(path, &len);
	const char *start;
	int seen = 0;

	if (data == NULL) {
		printf("# %s: (cannot read %s: %s)\n", title, path, harness_err());
		return;
	}
	start = data;
	for (size_t i = len; i > 0; i--) {
		if (data[i - 1] == '\n' && i != len && ++seen >= lines) {
			start = data + i;
			break;
		}
	}
	printf("# ---- %s (%s, last %d lines) ----\n", title, path, lines);
	for (const char *p = start; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		printf("#   %.*s\n", n, p);
		p += n + (nl ? 1 : 0);
	}
	free(data);
}

/* ---- processes ---- */

/* execvp's PATH search, done before fork: the child only calls execv. */
static int
resolve_exe(const char *name, char *out, size_t cap)
{
	const char *path = getenv("PATH");
	char dir[PATH_MAX];

	if (strchr(name, '/') != NULL) {
		snprintf(out, cap, "%s", name);
		if (access(out, X_OK) == -1) {
			harness_seterr("%s is not executable: %s", name, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");

		snprintf(dir, sizeof(dir), "%.*s", (int)n, path);
		if ((size_t)snprintf(out, cap, "%s/%s", dir[0] ? dir : ".", name) < cap &&
		    access(out, X_OK) == 0)
			return 0;
		path += n + (path[n] == ':');
	}
	harness_seterr("%s not found in PATH", name);
	return -1;
}

/* Only async-signal-safe calls between fork and exec: the parent has threads. */
static __attribute__((noreturn)) void
child_exec(const char *exe, char *const argv[], int nullfd, int logfd)
{
	struct sigaction sa;
	sigset_t none;

	(void)setpgid(0, 0);
	if (dup2(nullfd, STDIN_FILENO) == -1 || dup2(logfd, STDOUT_FILENO) == -1 ||
	    dup2(logfd, STDERR_FILENO) == -1)
		_exit(126);
	if (close_range(3, ~0U, 0) == -1)
		for (int fd = 3; fd < 1024; fd++)
			(void)close(fd);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	(void)sigaction(SIGPIPE, &sa, NULL);
	(void)sigaction(SIGALRM, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	execv(exe, argv);
	(void)!write(STDERR_FILENO, "itest: execv failed\n", 20);
	_exit(127);
}

int
harness_spawn(struct harness_proc *p, char *const argv[], const char *log_path)
{
	char exe[PATH_MAX];
	int logfd, nullfd;
	pid_t pid;

	memset(p, 0, sizeof(*p));
	if (resolve_exe(argv[0], exe, sizeof(exe)) == -1)
		return -1;
	if ((logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) == -1) {
		harness_seterr("open log %s: %s", log_path, strerror(errno));
		return -1;
	}
	if ((nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1) {
		harness_seterr("open /dev/null: %s", strerror(errno));
		close(logfd);
		return -1;
	}
	if ((pid = fork()) == -1) {
		harness_seterr("fork for %s: %s", exe, strerror(errno));
		close(logfd);
		close(nullfd);
		return -1;
	}
	if (pid == 0)
		child_exec(exe, argv, nullfd, logfd);
	/* Also from the parent, so a kill(-pid) right after fork cannot miss. */
	(void)setpgid(pid, pid);
	close(logfd);
	close(nullfd);
	if (reg_add_pid(pid) == -1) {
		(void)kill(-pid, SIGKILL);
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		return -1;
	}
	p->pid = pid;
	return 0;
}

static void
proc_mark_reaped(struct harness_proc *p, int status)
{
	reg_del_pid(p->pid);
	p->reaped = true;
	p->status = status;
}

int
harness_proc_wait(struct harness_proc *p, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	if (p->pid <= 0 || p->reaped)
		return 0;
	for (;;) {
		int status;
		pid_t r = waitpid(p->pid, &status, WNOHANG);

		if (r == p->pid) {
			proc_mark_reaped(p, status);
			return 0;
		}
		if (r == -1 && errno != EINTR) {
			/* Gone, but reaped elsewhere: no check may read that as exit 0. */
			proc_mark_reaped(p, HARNESS_STATUS_LOST);
			return 0;
		}
		if (harness_now_ms() >= deadline) {
			harness_seterr("pid %ld still running after %lld ms", (long)p->pid,
			    (long long)timeout_ms);
			return -1;
		}
		harness_sleep_ms(5);
	}
}

bool
harness_proc_alive(struct harness_proc *p)
{
	if (p->pid <= 0 || p->reaped)
		return false;
	return harness_proc_wait(p, 0) == -1;
}

/*
 * Wait until process group pgid has no member left, zombies included:
 * members orphaned to us (we are a subreaper) are reaped on the way.
 */
static int
group_wait_gone(pid_t pgid, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		harness_reap_orphans();
		if (kill(-pgid, 0) == -1 && errno == ESRCH)
			return 0;
		if (harness_now_ms() >= deadline)
			return -1;
		harness_sleep_ms(5);
	}
}

void
harness_proc_kill(struct harness_proc *p)
{
	if (p->pid <= 0)
		return;
	/* The group goes even if its leader is already reaped (leftover workers). */
	(void)kill(-p->pid, SIGKILL);
	if (!p->reaped) {
		(void)kill(p->pid, SIGKILL);
		if (harness_proc_wait(p, 10000) == -1)
			fprintf(stderr, "# itest: pid %ld survived SIGKILL for 10 s\n", (long)p->pid);
	}
	if (group_wait_gone(p->pid, 10000) == -1)
		fprintf(stderr, "# itest: process group %ld still has members 10 s after SIGKILL\n",
		    (long)p->pid);
}

const char *
harness_status_str(int status, char *buf, size_t cap)
{
	if (status == HARNESS_STATUS_LOST)
		snprintf(buf, cap, "exit status lost (reaped outside harness_proc_wait)");
	else if (WIFEXITED(status))
		snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(buf, cap, "wait status 0x%x", status);
	return buf;
}

int
harness_run(char *const argv[], const char *out_path, int64_t timeout_ms, int *status)
{
	struct harness_proc p;

	if (truncate(out_path, 0) == -1 && errno != ENOENT) {
		harness_seterr("truncate %s: %s", out_path, strerror(errno));
		return -1;
	}
	if (harness_spawn(&p, argv, out_path) == -1)
		return -1;
	if (harness_proc_wait(&p, timeout_ms) == -1) {
		harness_proc_kill(&p);
		harness_seterr("%s did not finish within %lld ms", argv[0], (long long)timeout_ms);
		return -1;
	}
	*status = p.status;
	return 0;
}

/* ---- nats-server ---- */

/*
 * nats-server picks its own port (-p -1) and names it in a ports file
 * once its client listener is up (--ports_file_dir): no port is ever free
 * between our choice and its bind, so runs side by side cannot take each
 * other's.  Only a restart names the port (clients reconnect to the URL
 * they know); it was free while the server was down, so that start is
 * retried until it binds.
 */

static bool
port_accepts(int port)
{
	struct sockaddr_in sa;
	int fd, rc;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc == 0;
}

static const char *
nats_server_exe(void)
{
	const char *env = getenv("NATS_SERVER");

	if (env != NULL && env[0] != '\0')
		return env;
	if (access("/usr/sbin/nats-server", X_OK) == 0)
		return "/usr/sbin/nats-server";
	return "nats-server";
}

/*
 * The client port in the ports file of nats-server `pid` (started as
 * `exe`): DIR/<basename of exe>_<pid>.ports, {"nats":["nats://HOST:PORT"]}.
 * 0 while there is none, or only part of one (it is not written
 * atomically).
 */
static int
nats_ports_file(const char *dir, const char *exe, pid_t pid)
{
	const char *base = strrchr(exe, '/'), *p, *end, *colon;
	char path[PATH_MAX], *text;
	long port = 0;

	base = base != NULL ? base + 1 : exe;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s_%ld.ports", dir, base, (long)pid) >=
	    sizeof(path) || access(path, F_OK) == -1 ||
	    (text = harness_read_file(path, NULL)) == NULL)
		return 0;
	if ((p = strstr(text, "\"nats\":[\"")) != NULL &&
	    (end = strchr(p += strlen("\"nats\":[\""), '"')) != NULL) {
		colon = NULL;
		for (const char *q = p; q < end; q++)
			if (*q == ':')
				colon = q;
		if (colon != NULL)
			port = strtol(colon + 1, NULL, 10);
	}
	free(text);
	return port > 0 && port < 65536 ? (int)port : 0;
}

/* The log's last line, for an error message ("" if none). */
static void
log_last_line(const char *path, char *buf, size_t cap)
{
	size_t len;
	char *text = harness_read_file(path, &len);
	char *line;

	buf[0] = '\0';
	if (text == NULL)
		return;
	while (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	line = strrchr(text, '\n');
	snprintf(buf, cap, "%s", line != NULL ? line + 1 : text);
	free(text);
}

/*
 * Start nats-server on n->port (0: a port it picks) and wait until it
 * really listens there: its own ports file names the port and a
 * connection to it is accepted.  0 when up (n->port and n->url set); 1
 * when it exited before listening (the port was taken: another try may
 * do); -1 otherwise.
 */
static int
nats_launch(struct harness_nats *n, int64_t timeout_ms)
{
	const char *exe = nats_server_exe();
	char port[16];
	char *argv[] = { (char *)exe, "-js", "-a", "127.0.0.1", "-p", port, "-sd", n->store,
		"--ports_file_dir", n->dir, n->conf[0] != '\0' ? "-c" : NULL, n->conf, NULL };
	int64_t deadline = harness_now_ms() + timeout_ms;
	char st[64], last[256];
	int got = 0;

	snprintf(port, sizeof(port), "%d", n->port > 0 ? n->port : -1);
	if (harness_spawn(&n->proc, argv, n->log) == -1)
		return -1;
	while (harness_now_ms() < deadline) {
		if (!harness_proc_alive(&n->proc)) {
			log_last_line(n->log, last, sizeof(last));
			harness_seterr("nats-server (-p %s) exited before listening (%s); its log "
			    "%s ends: %s", port, harness_status_str(n->proc.status, st, sizeof(st)),
			    n->log, last);
			return 1;
		}
		if (got == 0)
			got = nats_ports_file(n->dir, exe, n->proc.pid);
		if (got > 0 && port_accepts(got)) {
			if (n->port > 0 && got != n->port) {
				harness_proc_kill(&n->proc);
				harness_seterr("nats-server was asked for port %d but listens on %d",
				    n->port, got);
				return -1;
			}
			n->port = got;
			snprintf(n->url, sizeof(n->url), "nats://127.0.0.1:%d", n->port);
			return 0;
		}
		harness_sleep_ms(20);
	}
	harness_proc_kill(&n->proc);
	harness_seterr("nats-server pid %ld (-p %s) was not listening within %lld ms (%s); see %s",
	    (long)n->proc.pid, port, (long long)timeout_ms, got > 0 ?
	    "its port refused connections" : "no ports file", n->log);
	return -1;
}

int
harness_nats_start_conf(struct harness_nats *n, const char *dir, const char *conf_text)
{
	memset(n, 0, sizeof(*n));
	snprintf(n->dir, sizeof(n->dir), "%s", dir);
	if (harness_path(n->store, sizeof(n->store), dir, "js") == -1 ||
	    harness_path(n->log, sizeof(n->log), dir, "nats-server.log") == -1)
		return -1;
	if (conf_text != NULL &&
	    (harness_path(n->conf, sizeof(n->conf), dir, "nats-server.conf") == -1 ||
	    harness_write_file(n->conf, conf_text) == -1))
		return -1;
	/* A JetStream start on a busy machine can take seconds: wait generously. */
	return nats_launch(n, 30000) == 0 ? 0 : -1;
}

int
harness_nats_start(struct harness_nats *n, const char *dir)
{
	return harness_nats_start_conf(n, dir, NULL);
}

int
harness_nats_stop(struct harness_nats *n)
{
	if (n->proc.pid <= 0 || n->proc.reaped)
		return 0;
	if (kill(n->proc.pid, SIGTERM) == -1 && errno != ESRCH) {
		harness_seterr("kill(nats-server %ld, SIGTERM): %s", (long)n->proc.pid, strerror(errno));
		return -1;
	}
	if (harness_proc_wait(&n->proc, 20000) == -1) {
		harness_proc_kill(&n->proc);
		harness_seterr("nats-server pid %ld ignored SIGTERM for 20 s (killed)",
		    (long)n->proc.pid);
		return -1;
	}
	return 0;
}

int
harness_nats_restart(struct harness_nats *n)
{
	int64_t t0, deadline;
	int attempts = 0, rc;
	char why[sizeof(harness_errbuf)];

	if (harness_nats_stop(n) == -1)
		return -1;
	/*
	 * Same port, same store.  The port was free while the server was down:
	 * a connection of anyone's that got it as its local port, or another
	 * program, may hold it for a while.  Try again until it binds.
	 */
	t0 = harness_now_ms();
	deadline = t0 + 30000;
	for (;;) {
		int64_t left = deadline - harness_now_ms();

		attempts++;
		if ((rc = nats_launch(n, left > 5000 ? left : 5000)) != 1 ||
		    harness_now_ms() >= deadline)
			break;
		/* Paces the retries: whoever holds the port needs time to let go. */
		harness_sleep_ms(100);
	}
	if (rc == 0) {
		if (attempts > 1)
			printf("# harness: nats-server listening on 127.0.0.1:%d again after %d "
			    "attempts in %lld ms\n", n->port, attempts,
			    (long long)(harness_now_ms() - t0));
		return 0;
	}
	snprintf(why, sizeof(why), "%s", harness_err());
	harness_seterr("nats-server could not listen on 127.0.0.1:%d again (%d attempts in "
	    "%lld ms); last: %s", n->port, attempts, (long long)(harness_now_ms() - t0), why);
	return -1;
}

/* ---- the service ---- */

int
harness_service_start(struct harness_service *s)
{
	char *argv[] = { s->bin, "-c", s->conf, NULL };
	char marker[128];
	FILE *f;

	s->starts++;
	if ((f = fopen(s->log, "a")) != NULL) {
		snprintf(marker, sizeof(marker), "==== itest: start #%d of the supervisor ====\n",
		    s->starts);
		fputs(marker, f);
		fclose(f);
	}
	if (harness_spawn(&s->proc, argv, s->log) == -1)
		return -1;
	return 0;
}

int
harness_service_signal(struct harness_service *s, int sig)
{
	if (s->proc.pid <= 0 || s->proc.reaped) {
		harness_seterr("cannot send signal %d: supervisor is not running", sig);
		return -1;
	}
	if (kill(s->proc.pid, sig) == -1) {
		harness_seterr("kill(supervisor %ld, %d): %s", (long)s->proc.pid, sig, strerror(errno));
		return -1;
	}
	return 0;
}

int
harness_service_stop(struct harness_service *s, int64_t timeout_ms)
{
	if (s->proc.pid <= 0 || s->proc.reaped)
		return 0;
	if (harness_service_signal(s, SIGTERM) == -1)
		return -1;
	if (harness_proc_wait(&s->proc, timeout_ms) == -1) {
		harness_proc_kill(&s->proc);
		harness_seterr("supervisor pid %ld did not exit within %lld ms of SIGTERM (killed)",
		    (long)s->proc.pid, (long long)timeout_ms);
		return -1;
	}
	return 0;
}

int
harness_title(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if (cap < 2 || (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		harness_seterr("open %s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0) {
		harness_seterr("read %s: %s", path, n == 0 ? "empty" : strerror(errno));
		return -1;
	}
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return 0;
}

int
harness_title_number(pid_t pid, const char *key, unsigned long long *v)
{
	char buf[4096];
	const char *p;

	if (harness_title(pid, buf, sizeof(buf)) == -1)
		return -1;
	if ((p = strstr(buf, key)) == NULL || sscanf(p + strlen(key), "%llu", v) != 1) {
		harness_seterr("no number after \"%s\" in the title of pid %ld", key, (long)pid);
		return -1;
	}
	return 0;
}

/* "alarm-supervisor: worker K/N ..." in /proc/PID/cmdline; -1 if not a worker. */
static int
worker_title(pid_t pid, int *slot, int *nslots)
{
	char buf[4096];
	const char *p;

	if (harness_title(pid, buf, sizeof(buf)) == -1)
		return -1;
	if ((p = strstr(buf, "alarm-supervisor: worker ")) == NULL)
		return -1;
	if (sscanf(p + strlen("alarm-supervisor: worker "), "%d/%d", slot, nslots) != 2)
		return -1;
	return 0;
}

static int
worker_cmp(const void *a, const void *b)
{
	const struct harness_worker *x = a, *y = b;

	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

int
harness_workers(pid_t ppid, struct harness_worker *out, int max)
{
	pid_t kids[256];
	int n = proc_children(ppid, kids, 256, false), w = 0;

	if (n == -1)
		return -1;
	for (int i = 0; i < n && w < max; i++) {
		if (worker_title(kids[i], &out[w].slot, &out[w].nslots) == 0) {
			out[w].pid = kids[i];
			w++;
		}
	}
	qsort(out, (size_t)w, sizeof(*out), worker_cmp);
	return w;
}

static void
workers_describe(const struct harness_worker *w, int n, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%d/%d=pid %ld", i ? ", " : "",
		    w[i].slot, w[i].nslots, (long)w[i].pid);
	if (n == 0)
		snprintf(buf, cap, "none");
}

static bool
workers_same(const struct harness_worker *a, const struct harness_worker *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i].pid != b[i].pid || a[i].slot != b[i].slot)
			return false;
	return true;
}

int
harness_workers_wait(pid_t ppid, int n, int64_t timeout_ms, int64_t settle_ms,
    struct harness_worker *out)
{
	int64_t deadline = harness_now_ms() + timeout_ms, stable_since = 0;
	struct harness_worker cur[64], prev[64];
	int have = -1, prev_n = -1;
	char desc[1024];

	while (harness_now_ms() < deadline) {
		bool good;

		if (!harness_pid_alive(ppid)) {
			harness_seterr("supervisor pid %ld is gone while waiting for %d workers",
			    (long)ppid, n);
			return -1;
		}
		have = harness_workers(ppid, cur, 64);
		good = have == n;
		for (int i = 0; good && i < have; i++)
			good = cur[i].nslots == n;
		if (good && prev_n == have && workers_same(cur, prev, have)) {
			if (harness_now_ms() - stable_since >= settle_ms) {
				memcpy(out, cur, sizeof(*out) * (size_t)n);
				return 0;
			}
		} else {
			stable_since = harness_now_ms();
		}
		if (have >= 0)
			memcpy(prev, cur, sizeof(*cur) * (size_t)have);
		prev_n = have;
		harness_sleep_ms(50);
	}
	workers_describe(cur, have < 0 ? 0 : have, desc, sizeof(desc));
	harness_seterr("expected %d workers titled \"worker K/%d\" under supervisor pid %ld "
	    "within %lld ms; found %d: %s", n, n, (long)ppid, (long long)timeout_ms, have, desc);
	return -1;
}
