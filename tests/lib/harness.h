/*
 * harness: the processes an integration test drives (nats-server and the
 * service under test), temp dirs, /proc inspection, and the safety net that
 * makes sure nothing outlives the test program: a watchdog thread with a
 * global deadline, a subreaper so orphaned workers come back to us, and a
 * cleanup that kills every child and removes every temp dir on any exit.
 *
 * Failing calls return -1 and leave a sentence naming what failed, on
 * which input, in harness_err() (per thread).
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- errors and time ---- */

void harness_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *harness_err(void);

int64_t harness_now_ms(void);             /* CLOCK_MONOTONIC */
int64_t harness_wall_sec(void);           /* CLOCK_REALTIME, seconds */
void harness_sleep_ms(int64_t ms);

/* ---- process-wide setup ---- */

/*
 * Call first, before any thread exists (cnats starts threads): blocks the
 * termination signals in every thread so only the watchdog sees them,
 * becomes a child subreaper, and starts the watchdog, which ends the
 * program (after cleanup) when `deadline_ms` from now passes or a SIGINT/
 * SIGTERM/SIGHUP arrives.  `on_abort` prints the final summary line; it
 * runs on the watchdog thread and must only use write(2).  A signal sent
 * by one of our own descendants (a service process gone astray, e.g. an
 * orphaned worker signalling its new parent) does not end the run:
 * `on_stray` reports it (on the watchdog thread) instead.
 */
int harness_init(int64_t deadline_ms, void (*on_abort)(const char *why),
    void (*on_stray)(int sig, const char *who));
/* Stop the watchdog, kill every child, remove every temp dir. */
void harness_fini(void);
/* Kill every child process (and orphaned grandchild) and reap them. */
void harness_kill_all(void);

/* ---- temp dirs ---- */

/* mkdtemp under $TMPDIR (or /tmp), registered for removal at exit. */
int harness_tmpdir(const char *tag, char *out, size_t cap);
/* Forget it: it is left on disk (debugging). */
void harness_tmpdir_keep(const char *path);
/* rm -rf and forget it. */
int harness_tmpdir_remove(const char *path);

/* dir/file into out; -1 (harness_err) if it does not fit. */
int harness_path(char *out, size_t cap, const char *dir, const char *file);
int harness_write_file(const char *path, const char *text);
/* Whole file as a NUL-terminated malloc'd string (NULL + harness_err on failure). */
char *harness_read_file(const char *path, size_t *len);
/* Print the last `lines` lines of a file, each prefixed "# " (TAP comment). */
void harness_dump_tail(const char *title, const char *path, int lines);

/* ---- child processes ---- */

struct harness_proc {
	pid_t pid;          /* 0 when not running */
	bool reaped;
	int status;         /* waitpid status once reaped */
};

/*
 * The status of a process that was reaped elsewhere (waitpid failed): it
 * is gone, how is unknown.  Neither WIFEXITED nor WIFSIGNALED holds for
 * it, so a check for "exit 0" fails on it.
 */
#define HARNESS_STATUS_LOST (-1)

/*
 * fork + exec argv[0] (execvp) in its own process group, stdin from
 * /dev/null, stdout and stderr appended to log_path.
 */
int harness_spawn(struct harness_proc *p, char *const argv[], const char *log_path);
/*
 * Wait up to timeout_ms for it to exit; 0 when reaped (status
 * HARNESS_STATUS_LOST if someone else reaped it), -1 on timeout.
 */
int harness_proc_wait(struct harness_proc *p, int64_t timeout_ms);
/* True while the process has not exited (reaps it if it has). */
bool harness_proc_alive(struct harness_proc *p);
/* SIGKILL its whole process group; returns once no member is left (bounded). */
void harness_proc_kill(struct harness_proc *p);
/* "exit 0", "signal 9", ... for messages. */
const char *harness_status_str(int status, char *buf, size_t cap);
/* Run to completion (bounded); output to out_path; *status = waitpid status. */
int harness_run(char *const argv[], const char *out_path, int64_t timeout_ms, int *status);

/* A process exists and is not a zombie. */
bool harness_pid_alive(pid_t pid);
/* Reap zombies that were reparented to us (we are a subreaper). */
void harness_reap_orphans(void);
/*
 * Kill and reap every child we did not spawn ourselves: workers orphaned
 * by a dead supervisor, which may have left its process group.
 */
void harness_kill_orphans(void);

/* ---- nats-server ---- */

struct harness_nats {
	struct harness_proc proc;
	int port;
	char url[64];
	char dir[PATH_MAX];      /* owner's temp dir */
	char store[PATH_MAX];    /* JetStream store: DIR/js, kept across restarts */
	char log[PATH_MAX];
	char conf[PATH_MAX];     /* nats-server -c file; "" for none */
};

/*
 * Start with JetStream in dir/js on a port nats-server picks itself (read
 * back from its ports file in dir, so no other program can take it
 * between choice and bind); waits until it accepts there.
 */
int harness_nats_start(struct harness_nats *n, const char *dir);
/*
 * The same, with conf_text written to dir/nats-server.conf and passed with
 * -c (e.g. "max_payload: 65536"); the command-line options still win.
 */
int harness_nats_start_conf(struct harness_nats *n, const char *dir, const char *conf_text);
/* SIGTERM and wait (SIGKILL after a bound). */
int harness_nats_stop(struct harness_nats *n);
/*
 * Stop and start again on the same port with the same store, retrying
 * while the port is taken (bounded); returns once the new server listens.
 */
int harness_nats_restart(struct harness_nats *n);

/* ---- the service under test ---- */

struct harness_service {
	struct harness_proc proc;
	char bin[PATH_MAX];
	char conf[PATH_MAX];
	char log[PATH_MAX];
	int starts;
};

int harness_service_start(struct harness_service *s);
/* Send sig to the supervisor only (not its group). */
int harness_service_signal(struct harness_service *s, int sig);
/*
 * SIGTERM, then wait up to timeout_ms; 0 when it exited (status in
 * s->proc.status), -1 (and SIGKILL of the group) when it did not.
 */
int harness_service_stop(struct harness_service *s, int64_t timeout_ms);

/* A process's title (its /proc/PID/cmdline, NULs as blanks) into buf. */
int harness_title(pid_t pid, char *buf, size_t cap);
/* The number after key (e.g. " bad=") in a process's title; -1 if there is none. */
int harness_title_number(pid_t pid, const char *key, unsigned long long *v);

struct harness_worker {
	pid_t pid;
	int slot;     /* K of "worker K/N" */
	int nslots;   /* N */
};

/*
 * Children of `ppid` whose title reads "alarm-supervisor: worker K/N",
 * sorted by slot; returns how many (at most max), or -1.
 */
int harness_workers(pid_t ppid, struct harness_worker *out, int max);
/*
 * Wait until exactly n workers run, all titled ".../n", and the set stays
 * the same for settle_ms.  Fills out (n entries) on success.
 */
int harness_workers_wait(pid_t ppid, int n, int64_t timeout_ms, int64_t settle_ms,
    struct harness_worker *out);

#endif
