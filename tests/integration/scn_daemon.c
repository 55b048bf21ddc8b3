/*
 * Running as a daemon: sd_notify (the master talks to a service manager
 * over the datagram socket $NOTIFY_SOCKET names; here the test owns that
 * socket) and first_run (make run's script against a nats-server without
 * JetStream, as Debian's packaged nats-server.service runs).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include "itest.h"

/* ---- sd_notify ---- */

#define NOTE_MAX 4096

/* Every datagram the service sent, in order, with when it arrived. */
struct notes {
	int fd;
	pthread_t thread;
	pthread_mutex_t mu;
	bool stop, started;
	int n;
	char *text[NOTE_MAX];
	int64_t at_ms[NOTE_MAX];
};

/* A reader of its own: the kernel queues only ~10 datagrams (max_dgram_qlen) and the sender never waits. */
static void *
notes_reader(void *arg)
{
	struct notes *ns = arg;
	char buf[4096];

	for (;;) {
		struct pollfd pfd = { ns->fd, POLLIN, 0 };
		ssize_t len;

		pthread_mutex_lock(&ns->mu);
		bool stop = ns->stop;
		pthread_mutex_unlock(&ns->mu);
		if (stop)
			return NULL;
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if ((len = recv(ns->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) <= 0)
			continue;
		buf[len] = '\0';
		pthread_mutex_lock(&ns->mu);
		if (ns->n < NOTE_MAX && (ns->text[ns->n] = strdup(buf)) != NULL)
			ns->at_ms[ns->n++] = harness_now_ms();
		pthread_mutex_unlock(&ns->mu);
	}
}

static int
notes_open(struct notes *ns, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path)) {
		harness_seterr("socket path %s too long", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	pthread_mutex_init(&ns->mu, NULL);
	if ((ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(ns->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		harness_seterr("datagram socket %s: %s", path, strerror(errno));
		return -1;
	}
	if ((errno = pthread_create(&ns->thread, NULL, notes_reader, ns)) != 0) {
		harness_seterr("reader thread: %s", strerror(errno));
		return -1;
	}
	ns->started = true;
	return 0;
}

static void
notes_close(struct notes *ns)
{
	if (ns->started) {
		pthread_mutex_lock(&ns->mu);
		ns->stop = true;
		pthread_mutex_unlock(&ns->mu);
		pthread_join(ns->thread, NULL);
	}
	if (ns->fd > 0)
		close(ns->fd);
	for (int i = 0; i < ns->n; i++)
		free(ns->text[i]);
	pthread_mutex_destroy(&ns->mu);
}

/* Index of the first datagram at or after `from` holding line `line` ("READY=1"); -1 if none yet. */
static int
notes_find(struct notes *ns, int from, const char *line)
{
	size_t len = strlen(line);
	int found = -1;

	pthread_mutex_lock(&ns->mu);
	for (int i = from; i < ns->n && found == -1; i++) {
		for (const char *p = ns->text[i]; p != NULL; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
			if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0' || line[len - 1] == '=')) {
				found = i;
				break;
			}
	}
	pthread_mutex_unlock(&ns->mu);
	return found;
}

static int
notes_wait(struct notes *ns, struct env *e, int from, const char *line, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int i;

	while ((i = notes_find(ns, from, line)) == -1) {
		if (harness_now_ms() >= deadline) {
			harness_seterr("no \"%s\" datagram within %lld ms", line, (long long)timeout_ms);
			return -1;
		}
		if (e != NULL && env_alive(e) == -1)
			return -1;
		harness_sleep_ms(20);
	}
	return i;
}

/* The env_up steps, with the service started through a wrapper that sets the manager's variables. */
static int
notify_env_up(struct env *e, const struct env_config *cfg, const char *sock)
{
	char wrap[PATH_MAX], bin[PATH_MAX], text[PATH_MAX * 3];

	if (realpath(itest_opts.bin, bin) == NULL) {
		harness_seterr("realpath %s: %s", itest_opts.bin, strerror(errno));
		return -1;
	}
	if (harness_path(e->svc.conf, sizeof(e->svc.conf), e->dir, "alarm-supervisor.conf") == -1 ||
	    harness_path(e->svc.log, sizeof(e->svc.log), e->dir, "service.log") == -1 ||
	    harness_path(wrap, sizeof(wrap), e->dir, "as-systemd.sh") == -1)
		return -1;
	/* exec keeps the shell's pid: WATCHDOG_PID=$$ is the supervisor's own, as systemd sets it. */
	snprintf(text, sizeof(text), "#!/bin/sh\nNOTIFY_SOCKET='%s' WATCHDOG_USEC=2000000 WATCHDOG_PID=$$\n"
	    "export NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID\nexec '%s' \"$@\"\n", sock, bin);
	if (harness_write_file(wrap, text) == -1)
		return -1;
	if (chmod(wrap, 0755) == -1) {
		harness_seterr("chmod %s: %s", wrap, strerror(errno));
		return -1;
	}
	snprintf(e->svc.bin, sizeof(e->svc.bin), "%s", wrap);
	if (harness_nats_start_conf(&e->nats, e->dir, cfg->nats_conf) == -1 ||
	    (e->bus = bus_open(e->nats.url, !cfg->core)) == NULL ||
	    (e->digests = collector_new(e->bus, "AlarmDigest")) == NULL ||
	    env_write_config(e, cfg) == -1)
		return -1;
	return harness_service_start(&e->svc);
}

/* READY=1 came when the consumer was bound and every worker ran. */
static int
notify_check_ready(struct notes *ns, struct env *e, int *ready)
{
	struct harness_worker w[8];
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int nw;

	if ((*ready = notes_wait(ns, e, 0, "READY=1", 60000)) == -1)
		return -1;
	s = js_GetConsumerInfo(&ci, bus_js(e->bus), "ALARMS", "alarm-digest", NULL, &jerr);
	if (s != NATS_OK) {
		harness_seterr("READY=1 arrived but consumer alarm-digest is not there: %s (%d)",
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	jsConsumerInfo_Destroy(ci);
	if ((nw = harness_workers(e->svc.proc.pid, w, 8)) != 2) {
		harness_seterr("READY=1 arrived with %d of 2 workers running", nw);
		return -1;
	}
	if (notes_find(ns, 0, "RELOADING=1") != -1 || notes_find(ns, 0, "STOPPING=1") != -1) {
		harness_seterr("RELOADING=1 or STOPPING=1 before the first READY=1");
		return -1;
	}
	return 0;
}

/* SIGHUP: RELOADING=1 with a plausible MONOTONIC_USEC, then READY=1. */
static int
notify_check_reload(struct notes *ns, struct env *e, int after)
{
	struct timespec ts;
	unsigned long long usec, now;
	const char *p;
	int r, ready;

	if (harness_service_signal(&e->svc, SIGHUP) == -1)
		return -1;
	if ((r = notes_wait(ns, e, after + 1, "RELOADING=1", 20000)) == -1 ||
	    (ready = notes_wait(ns, e, r + 1, "READY=1", 30000)) == -1)
		return -1;
	pthread_mutex_lock(&ns->mu);
	p = strstr(ns->text[r], "MONOTONIC_USEC=");
	usec = p != NULL ? strtoull(p + 15, NULL, 10) : 0;
	pthread_mutex_unlock(&ns->mu);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000;
	if (usec == 0 || usec > now || now - usec > 60000000ULL) {
		harness_seterr("RELOADING=1 with MONOTONIC_USEC %llu, now %llu", usec, now);
		return -1;
	}
	return 0;
}

/* WATCHDOG_USEC=2 s: a ping at least every 2 s from READY on (every 1 s is the aim). */
static int
notify_check_watchdog(struct notes *ns, int ready)
{
	int64_t last, worst = 0;
	int pings = 0;

	harness_sleep_ms(3500);
	pthread_mutex_lock(&ns->mu);
	last = ns->at_ms[ready];
	for (int i = ready; i < ns->n; i++) {
		if (strcmp(ns->text[i], "WATCHDOG=1") != 0)
			continue;
		pings++;
		if (ns->at_ms[i] - last > worst)
			worst = ns->at_ms[i] - last;
		last = ns->at_ms[i];
	}
	if (harness_now_ms() - last > worst)
		worst = harness_now_ms() - last;
	pthread_mutex_unlock(&ns->mu);
	if (pings < 3 || worst >= 2000) {
		harness_seterr("%d WATCHDOG=1 pings since READY=1, longest gap %lld ms (want >= 3, < 2000 ms)",
		    pings, (long long)worst);
		return -1;
	}
	return 0;
}

/* STATUS= mirrors the title (without its "alarm-supervisor: " prefix). */
static int
notify_check_status(struct notes *ns, struct env *e)
{
	char title[1024], status[1024] = "";
	int i, from = 0, count = 0;

	while ((i = notes_find(ns, from, "STATUS=")) != -1) {
		pthread_mutex_lock(&ns->mu);
		const char *p = strstr(ns->text[i], "STATUS=");
		snprintf(status, sizeof(status), "%.*s", (int)strcspn(p + 7, "\n"), p + 7);
		pthread_mutex_unlock(&ns->mu);
		count++;
		from = i + 1;
	}
	if (harness_title(e->svc.proc.pid, title, sizeof(title)) == -1)
		return -1;
	if (count < 2 || strncmp(status, "master conf=", 12) != 0 || strstr(status, " workers 2/2 ") == NULL ||
	    strstr(title, status) == NULL) {
		harness_seterr("%d STATUS= datagrams, the last \"%s\"; title \"%s\"", count, status, title);
		return -1;
	}
	return 0;
}

void
scn_sd_notify(void)
{
	struct env_config cfg = { .workers = 2 };
	struct notes ns = { .fd = -1 };
	struct env e = { 0 };
	char sock[PATH_MAX];
	int ready = -1, stop;

	e.failures_at_start = tap_failures();
	e.cfg = cfg;
	snprintf(e.tag, sizeof(e.tag), "sd_notify");
	if (harness_tmpdir(e.tag, e.dir, sizeof(e.dir)) == -1 ||
	    harness_path(sock, sizeof(sock), e.dir, "notify.sock") == -1 ||
	    notes_open(&ns, sock) == -1 || notify_env_up(&e, &cfg, sock) == -1) {
		tap_fail("sd_notify", "environment: %s", harness_err());
		goto out;
	}
	tap_report("sd_notify/ready_after_consumer_and_workers", notify_check_ready(&ns, &e, &ready));
	if (ready == -1 || env_wait_ready(&e, 60000) == -1) {
		tap_fail("sd_notify", "service not serving: %s", harness_err());
		goto out;
	}
	tap_report("sd_notify/reloading_then_ready", notify_check_reload(&ns, &e, ready));
	tap_report("sd_notify/watchdog_pings", notify_check_watchdog(&ns, ready));
	tap_report("sd_notify/status_mirrors_title", notify_check_status(&ns, &e));
	env_down(&e);
	stop = notes_wait(&ns, NULL, ready + 1, "STOPPING=1", 5000);
	tap_report("sd_notify/stopping_at_sigterm", stop >= 0 ? 0 : -1);
	notes_close(&ns);
	return;
out:
	env_down(&e);
	notes_close(&ns);
}

/* ---- unit_file ---- */

/* A program on PATH (systemd-analyze lives in /usr/bin), into out; -1 if none. */
static int
find_program(const char *name, char *out, size_t cap)
{
	const char *path = getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin";

	while (*path != '\0') {
		size_t len = strcspn(path, ":");
		snprintf(out, cap, "%.*s/%s", (int)len, path, name);
		if (access(out, X_OK) == 0)
			return 0;
		path += len + (path[len] == ':');
	}
	return -1;
}

/*
 * systemd-analyze verify dist/alarm-supervisor.service, with the
 * binaries' /usr/local/bin replaced by the directory of the ones under
 * test (verify insists every Exec*= binary exists).  Unknown keys and bad values only print a line and still exit
 * 0, so any output fails the check too.
 */
void
scn_unit_file(void)
{
	char analyze[PATH_MAX], dir[PATH_MAX], unit[PATH_MAX], out[PATH_MAX], bin[PATH_MAX], st[64];
	char *text = NULL, *said = NULL;
	int status;

	if (find_program("systemd-analyze", analyze, sizeof(analyze)) == -1) {
		tap_ok("unit_file/systemd_analyze_verify # SKIP systemd-analyze is not installed here");
		return;
	}
	if (harness_tmpdir("unit_file", dir, sizeof(dir)) == -1 ||
	    harness_path(unit, sizeof(unit), dir, "alarm-supervisor.service") == -1 ||
	    harness_path(out, sizeof(out), dir, "verify.out") == -1) {
		tap_fail("unit_file/systemd_analyze_verify", "%s", harness_err());
		return;
	}
	if (realpath(itest_opts.bin, bin) == NULL ||
	    (text = harness_read_file("dist/alarm-supervisor.service", NULL)) == NULL) {
		tap_fail("unit_file/systemd_analyze_verify", "%s or dist/alarm-supervisor.service not readable "
		    "(run itest from the repository's top directory)", itest_opts.bin);
		goto out;
	}
	/* Both binaries, alarm-supervisor and alarmctl (ExecReload=), from the build directory. */
	*strrchr(bin, '/') = '\0';
	size_t cap = strlen(text) * 2 + 8 * strlen(bin) + 1, o = 0;
	char *copy = malloc(cap);
	const char *from = "/usr/local/bin", *p = text, *at;
	if (copy == NULL) {
		tap_fail("unit_file/systemd_analyze_verify", "out of memory");
		goto out;
	}
	while ((at = strstr(p, from)) != NULL) {
		o += (size_t)snprintf(copy + o, cap - o, "%.*s%s", (int)(at - p), p, bin);
		p = at + strlen(from);
	}
	snprintf(copy + o, cap - o, "%s", p);
	int wrc = harness_write_file(unit, copy);
	free(copy);
	char *argv[] = { analyze, "verify", unit, NULL };
	if (wrc == -1 || harness_run(argv, out, 60000, &status) == -1) {
		tap_fail("unit_file/systemd_analyze_verify", "%s", harness_err());
		goto out;
	}
	said = harness_read_file(out, NULL);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || said == NULL || said[0] != '\0')
		tap_fail("unit_file/systemd_analyze_verify", "%s, saying: %s",
		    harness_status_str(status, st, sizeof(st)), said ? said : "(no output file)");
	else
		tap_ok("unit_file/systemd_analyze_verify");
out:
	free(text);
	free(said);
	if (harness_tmpdir_remove(dir) == -1)
		printf("# unit_file: %s\n", harness_err());
}

/* ---- first_run ---- */

/* The INFO line a NATS server greets with on 127.0.0.1:port, into buf; -1 if none answers. */
static int
nats_greeting(int port, char *buf, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct pollfd pfd;
	ssize_t n;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		close(fd);
		return -1;
	}
	pfd = (struct pollfd){ fd, POLLIN, 0 };
	n = poll(&pfd, 1, 2000) == 1 ? read(fd, buf, cap - 1) : -1;
	close(fd);
	if (n <= 4 || strncmp(buf, "INFO", 4) != 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* A loopback port nobody listens on: `want` if it is, else one the kernel picks. */
static int
free_port(int want)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)want) };
	socklen_t len = sizeof(sa);
	int fd, one = 1, port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		sa.sin_port = 0;
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
			close(fd);
			return -1;
		}
	}
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Wait until run.log holds `what`; returns the text from there (malloc'd), or NULL. */
static char *
log_wait_for(const char *path, const char *what, struct harness_proc *p, int64_t timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		char *log = harness_read_file(path, NULL), *at;

		if (log != NULL && (at = strstr(log, what)) != NULL) {
			char *s = strdup(at);
			free(log);
			return s;
		}
		free(log);
		if (!harness_proc_alive(p)) {
			harness_seterr("run.sh ended before \"%s\" appeared in %s", what, path);
			return NULL;
		}
		if (harness_now_ms() >= deadline) {
			harness_seterr("\"%s\" not in %s after %lld ms", what, path, (long long)timeout_ms);
			return NULL;
		}
		harness_sleep_ms(50);
	}
}

/* The master's pid from its version line: "alarm-supervisor[PID] master: info: alarm-supervisor 1.0.0 starting". */
static int
first_run_master_pid(const char *runlog, struct harness_proc *run)
{
	const char *key = "] master: info: alarm-supervisor ";
	char *said = log_wait_for(runlog, key, run, 15000), *all, *at;
	int pid = 0;

	if (said == NULL)
		return 0;
	free(said);
	if ((all = harness_read_file(runlog, NULL)) == NULL)
		return 0;
	for (at = strstr(all, key); at != NULL && at > all && at[-1] != '['; at--)
		;
	if (at != NULL && at > all)
		pid = atoi(at);
	free(all);
	return pid;
}

/* The service behind run.sh answers a digest request through the server run.sh started. */
static int
first_run_round_trip(int port)
{
	char url[64], ts[48];
	struct bus *b;
	struct collector *c = NULL;
	int rc = -1;

	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	if ((b = bus_open(url, true)) == NULL)
		return -1;
	model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
	if ((c = collector_new(b, "AlarmDigest")) != NULL &&
	    bus_wait_consumer(b, "ALARMS", "alarm-digest", 30000) == 0 &&
	    bus_publish_update(b, "first-run-user", "a1", "WARNING", ts) == 0 &&
	    bus_publish_request(b, "first-run-user") == 0 && bus_flush(b, 10000) == 0)
		rc = collector_wait_user(c, "first-run-user", 1, harness_now_ms() + 30000);
	collector_free(c);
	bus_close(b);
	return rc;
}

/*
 * A plain nats-server (no JetStream) on the port the shipped config names,
 * 4222.  When that port is taken on this machine (another engineer's or the
 * system's server), the test uses a copy of the shipped config with only the
 * port changed: the code path is the same, and a busy port must not fail it.
 */
void
scn_first_run(void)
{
	struct harness_proc plain = { 0 }, run = { 0 };
	char dir[PATH_MAX], log[PATH_MAX], runlog[PATH_MAX], conf[PATH_MAX], runsh[PATH_MAX],
	    bin[PATH_MAX], greeting[2048], portstr[16];
	char *said = NULL, *text = NULL;
	const char *ns = getenv("NATS_SERVER") != NULL ? getenv("NATS_SERVER") : "nats-server";
	int port, own_port = 0, sup_pid = 0, own_pid = 0, failures = tap_failures();

	if (harness_tmpdir("first_run", dir, sizeof(dir)) == -1 ||
	    harness_path(log, sizeof(log), dir, "plain-nats.log") == -1 ||
	    harness_path(runlog, sizeof(runlog), dir, "run.log") == -1) {
		tap_fail("first_run", "%s", harness_err());
		return;
	}
	if (realpath("scripts/run.sh", runsh) == NULL || realpath("conf/alarm-supervisor.conf", conf) == NULL ||
	    realpath(itest_opts.bin, bin) == NULL) {
		tap_fail("first_run", "scripts/run.sh, conf/alarm-supervisor.conf or %s not found "
		    "(run itest from the repository's top directory): %s", itest_opts.bin, strerror(errno));
		goto out;
	}
	if ((port = free_port(4222)) == -1) {
		tap_fail("first_run", "no free loopback port: %s", strerror(errno));
		goto out;
	}
	if (port != 4222) {
		size_t len;
		char *shipped = harness_read_file(conf, &len), *at;
		if (shipped == NULL || (at = strstr(shipped, "nats://127.0.0.1:4222\n")) == NULL) {
			tap_fail("first_run", "conf/alarm-supervisor.conf does not say servers = nats://127.0.0.1:4222");
			free(shipped);
			goto out;
		}
		if (harness_path(conf, sizeof(conf), dir, "alarm-supervisor.conf") == -1 ||
		    (text = malloc(len + 16)) == NULL) {
			free(shipped);
			tap_fail("first_run", "%s", harness_err());
			goto out;
		}
		snprintf(text, len + 16, "%.*snats://127.0.0.1:%d%s", (int)(at - shipped), shipped, port,
		    at + strlen("nats://127.0.0.1:4222"));
		free(shipped);
		if (harness_write_file(conf, text) == -1) {
			tap_fail("first_run", "%s", harness_err());
			goto out;
		}
		printf("# first_run: 127.0.0.1:4222 is taken on this machine; a copy of the shipped config "
		    "with port %d instead\n", port);
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	char *pargv[] = { (char *)ns, "-a", "127.0.0.1", "-p", portstr, NULL };
	if (harness_spawn(&plain, pargv, log) == -1) {
		tap_fail("first_run", "starting a plain nats-server: %s", harness_err());
		goto out;
	}
	for (int64_t until = harness_now_ms() + 10000; nats_greeting(port, greeting, sizeof(greeting)) == -1;) {
		if (harness_now_ms() >= until || !harness_proc_alive(&plain)) {
			tap_fail("first_run", "plain nats-server on port %d did not come up", port);
			goto out;
		}
		harness_sleep_ms(50);
	}
	if (strstr(greeting, "\"jetstream\":true") != NULL) {
		tap_fail("first_run", "the plain nats-server announces JetStream: %s", greeting);
		goto out;
	}
	/* From the temp dir: the shipped config's state_dir is ./state. */
	char *rargv[] = { "/bin/sh", "-c", "cd \"$1\" && exec \"$2\" \"$3\" \"$4\"", "sh", dir, runsh, bin,
	    conf, NULL };
	if (harness_spawn(&run, rargv, runlog) == -1) {
		tap_fail("first_run", "starting run.sh: %s", harness_err());
		goto out;
	}
	if ((said = log_wait_for(runlog, "has no JetStream", &run, 15000)) != NULL) {
		free(said);
		said = log_wait_for(runlog, "run: nats-server (pid ", &run, 15000);
	}
	if (said == NULL || sscanf(said, "run: nats-server (pid %d) listens on 127.0.0.1:%d", &own_pid,
	    &own_port) != 2) {
		tap_fail("first_run/says_no_jetstream_starts_own", "%s", said ? said : harness_err());
		goto out;
	}
	tap_ok("first_run/says_no_jetstream_starts_own");
	free(said);
	said = NULL;
	sup_pid = first_run_master_pid(runlog, &run);
	tap_report("first_run/service_answers_a_digest", own_port > 0 ? first_run_round_trip(own_port) : -1);
	/* Like a TERM from the terminal's shell: run.sh passes it on and stops its nats-server. */
	if (kill(run.pid, SIGTERM) == -1 || harness_proc_wait(&run, 30000) == -1) {
		tap_fail("first_run/stops_what_it_started", "run.sh did not end within 30 s of SIGTERM");
		goto out;
	}
	if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0)
		tap_fail("first_run/stops_what_it_started", "run.sh ended with %s, want exit 0",
		    harness_status_str(run.status, greeting, sizeof(greeting)));
	else if (own_pid <= 0 || harness_pid_alive(own_pid))
		tap_fail("first_run/stops_what_it_started", "its nats-server (pid %d) is still there", own_pid);
	else if (sup_pid <= 0 || harness_pid_alive(sup_pid))
		tap_fail("first_run/stops_what_it_started", "the supervisor (pid %d) is still there", sup_pid);
	else if (!harness_proc_alive(&plain))
		tap_fail("first_run/stops_what_it_started", "the plain nats-server it should leave alone is gone");
	else
		tap_ok("first_run/stops_what_it_started");
out:
	/* The service logs into run.sh's output: an ASan build's report would land there. */
	tap_check_sanitizers("first_run", runlog, 200);
	if (tap_failures() > failures)
		harness_dump_tail("run.sh output", runlog, 40);
	free(said);
	free(text);
	harness_proc_kill(&run);
	harness_proc_kill(&plain);
	harness_kill_orphans();
	if (harness_tmpdir_remove(dir) == -1)
		printf("# first_run: %s\n", harness_err());
}
