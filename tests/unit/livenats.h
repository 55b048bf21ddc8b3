/*
 * livenats: a nats-server of the test's own (JetStream on, loopback, its
 * store and log in the scratch directory `dir`), for unit tests of code
 * that talks to a real broker.  Include after scratch.h and clock.h.
 * nats_start picks a free port; nats_restart starts a new server on the
 * same port and store, so clients reconnect to it; livenats_teardown
 * stops it with the scratch directory.  Inline: a test need not use
 * every one.
 */
#ifndef LIVENATS_H
#define LIVENATS_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t nats_pid = -1;
static char nats_url[64];

/* port -1: a free one, read back from the ports file into nats_url. */
static inline int
nats_start_on(int port)
{
	char store[128], ports[PATH_MAX], logf[128], portarg[16];
	int64_t deadline = clock_mono_ms() + 10000;

	snprintf(store, sizeof(store), "%s/js", dir);
	snprintf(logf, sizeof(logf), "%s/nats.log", dir);
	snprintf(portarg, sizeof(portarg), "%d", port);
	if ((nats_pid = fork()) == -1)
		return -1;
	if (nats_pid == 0) {
		const char *exe = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server" :
		    "nats-server";
		execlp(exe, "nats-server", "-js", "-a", "127.0.0.1", "-p", portarg, "-sd", store,
		    "--ports_file_dir", dir, "-l", logf, (char *)NULL);
		_exit(127);
	}
	snprintf(ports, sizeof(ports), "%s/nats-server_%ld.ports", dir, (long)nats_pid);
	while (clock_mono_ms() < deadline) {
		char text[512] = "", *p;
		FILE *f = fopen(ports, "r");
		if (f != NULL) {
			size_t n = fread(text, 1, sizeof(text) - 1, f);
			text[n] = '\0';
			fclose(f);
		}
		if ((p = strstr(text, "nats://127.0.0.1:")) != NULL && strchr(p, '"') != NULL) {
			snprintf(nats_url, sizeof(nats_url), "%.*s", (int)(strchr(p, '"') - p), p);
			usleep(100 * 1000);
			return 0;
		}
		if (waitpid(nats_pid, NULL, WNOHANG) == nats_pid) {
			nats_pid = -1;
			return -1;
		}
		usleep(20 * 1000);
	}
	return -1;
}

static inline int
nats_start(void)
{
	return nats_start_on(-1);
}

static inline void
nats_stop(void)
{
	if (nats_pid > 0) {
		kill(nats_pid, SIGTERM);
		waitpid(nats_pid, NULL, 0);
		nats_pid = -1;
	}
}

/* The same port and store: the clients of the old server reconnect to this one. */
static inline int
nats_restart(void)
{
	const char *colon = strrchr(nats_url, ':');
	int port = colon != NULL ? atoi(colon + 1) : -1;

	nats_stop();
	return port > 0 ? nats_start_on(port) : -1;
}

/* cmocka teardown: the server goes with the scratch directory. */
static inline int
livenats_teardown(void **state)
{
	nats_stop();
	return teardown(state);
}

#endif
