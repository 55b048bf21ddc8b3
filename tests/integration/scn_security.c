/*
 * Security scenarios: authentication methods, TLS with certificates made
 * at test time, the shipped broker permissions file, and the failures an
 * operator must see at once (wrong password, untrusted server, unreadable
 * secret file).  Every server has an unrestricted "itest" user the test's
 * own client logs in with (in operator mode, with its own creds file); the
 * service uses the method under test.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "../../common/nkey.h"
#include "../lib/bus.h"
#include "../lib/harness.h"
#include "../lib/jwt.h"
#include "../lib/tap.h"
#include "itest.h"

#define PASSWORD "Pw-9f3b7c1e-not-in-logs"
#define TOKEN    "Tok-5d2a8e44-not-in-logs"
#define ITEST_USER "{ user: itest, password: itestpw }"

/*
 * env_up, but in a dir prepared beforehand and with the test's client logged
 * in: with bus_userinfo in the URL, or as the user of bus_creds when set.
 */
static int
sec_env_up(struct env *e, const char *dir, const char *tag, const struct env_config *cfg,
    const char *bus_userinfo, bool tls, const char *bus_creds)
{
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	char url[128];

	memset(e, 0, sizeof(*e));
	e->failures_at_start = tap_failures();
	e->cfg = *cfg;
	snprintf(e->tag, sizeof(e->tag), "%s", tag);
	snprintf(e->dir, sizeof(e->dir), "%s", dir);
	snprintf(e->svc.bin, sizeof(e->svc.bin), "%s", itest_opts.bin);
	if (harness_path(e->svc.conf, sizeof(e->svc.conf), e->dir, "alarm-supervisor.conf") == -1 ||
	    harness_path(e->svc.log, sizeof(e->svc.log), e->dir, "service.log") == -1)
		return -1;
	if (harness_nats_start_conf(&e->nats, e->dir, cfg->nats_conf) == -1)
		return -1;
	if (bus_creds != NULL)
		snprintf(url, sizeof(url), "nats://127.0.0.1:%d", e->nats.port);
	else
		snprintf(url, sizeof(url), "nats://%s@127.0.0.1:%d", bus_userinfo, e->nats.port);
	if (tls && (harness_path(ca, sizeof(ca), dir, "ca.pem") == -1 ||
	    harness_path(cert, sizeof(cert), dir, "client-cert.pem") == -1 ||
	    harness_path(key, sizeof(key), dir, "client-key.pem") == -1))
		return -1;
	if (bus_creds != NULL)
		e->bus = bus_open_creds(url, !cfg->core, bus_creds);
	else if (tls)
		e->bus = bus_open_tls(url, !cfg->core, ca, cert, key);
	else
		e->bus = bus_open(url, !cfg->core);
	if (e->bus == NULL)
		return -1;
	if ((e->digests = collector_new(e->bus, "AlarmDigest")) == NULL)
		return -1;
	if (env_write_config(e, cfg) == -1 || harness_service_start(&e->svc) == -1)
		return -1;
	return env_wait_ready(e, 60000);
}

static int
sec_write(const char *dir, const char *file, const char *text, mode_t mode)
{
	char path[PATH_MAX];

	if (harness_path(path, sizeof(path), dir, file) == -1 || harness_write_file(path, text) == -1)
		return -1;
	if (chmod(path, mode) == -1) {
		harness_seterr("chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* `needle` appears nowhere in the file. */
static int
sec_file_lacks(const char *path, const char *needle)
{
	char *text = harness_read_file(path, NULL);
	int rc = 0;

	if (text == NULL)
		return -1;
	if (strstr(text, needle) != NULL) {
		harness_seterr("%s shows the secret \"%s\"", path, needle);
		rc = -1;
	}
	free(text);
	return rc;
}

/* Neither the supervisor's nor any worker's command line (its title) holds needle. */
static int
sec_titles_lack(pid_t master, const char *needle)
{
	struct harness_worker w[64];
	char title[1024];
	int n = harness_workers(master, w, 64);

	if (n <= 0) {
		harness_seterr("no workers found under pid %ld", (long)master);
		return -1;
	}
	for (int i = -1; i < n; i++) {
		pid_t pid = i < 0 ? master : w[i].pid;

		if (harness_title(pid, title, sizeof(title)) == -1)
			return -1;
		if (strstr(title, needle) != NULL) {
			harness_seterr("pid %ld's title shows the secret: %s", (long)pid, title);
			return -1;
		}
	}
	return 0;
}

/*
 * A password written into the servers URL: -t shows it redacted and warns
 * that the file is world-readable; a reload to it logs the diff redacted.
 */
static int
sec_url_password(struct env *e)
{
	char conf[PATH_MAX], out[PATH_MAX], *text = NULL, *log = NULL, *line;
	char url[128], extra[256], text_buf[5 * PATH_MAX], rest[5 * PATH_MAX];
	char *argv[] = { e->svc.bin, "-t", "-c", conf, NULL };
	struct env_config cfg = e->cfg;
	int status, rc = -1;

	snprintf(url, sizeof(url), "nats://svc:%s@127.0.0.1:%d", PASSWORD, e->nats.port);
	snprintf(extra, sizeof(extra), "# servers in the URL below\n");
	cfg.nats_extra = extra;
	if (harness_path(conf, sizeof(conf), e->dir, "url.conf") == -1 ||
	    harness_path(out, sizeof(out), e->dir, "check-url.out") == -1)
		return -1;
	/* The env's text with the servers line swapped for one with a password. */
	if (env_config_text(e, &cfg, text_buf, sizeof(text_buf), NULL) == -1)
		return -1;
	if ((line = strstr(text_buf, "servers = ")) == NULL) {
		harness_seterr("no servers line in the config text");
		return -1;
	}
	snprintf(rest, sizeof(rest), "%s", line + strcspn(line, "\n"));
	snprintf(line, sizeof(text_buf) - (size_t)(line - text_buf), "servers = %s%s", url, rest);
	if (harness_write_file(conf, text_buf) == -1 || chmod(conf, 0644) == -1)
		return -1;
	if (harness_run(argv, out, 30000, &status) == -1 || (text = harness_read_file(out, NULL)) == NULL)
		return -1;
	if (strstr(text, PASSWORD) != NULL)
		harness_seterr("-t shows the password: %s", text);
	else if (strstr(text, "nats://***@127.0.0.1") == NULL)
		harness_seterr("-t does not show the redacted URL: %s", text);
	else if (strstr(text, "readable by every user") == NULL)
		harness_seterr("-t does not warn that the file is world-readable: %s", text);
	else
		rc = 0;
	free(text);
	if (rc == -1)
		return -1;
	/* Reload to it: servers is restart-only, so the diff is logged and kept out. */
	if (harness_write_file(e->svc.conf, text_buf) == -1 ||
	    harness_service_signal(&e->svc, SIGHUP) == -1)
		return -1;
	for (int64_t end = harness_now_ms() + 15000; harness_now_ms() < end; harness_sleep_ms(100)) {
		free(log);
		if ((log = harness_read_file(e->svc.log, NULL)) == NULL)
			return -1;
		if (strstr(log, "reload: nats.servers changed") != NULL)
			break;
	}
	rc = -1;
	if (strstr(log, "reload: nats.servers changed") == NULL)
		harness_seterr("no reload diff for nats.servers in 15 s");
	else if (strstr(log, PASSWORD) != NULL)
		harness_seterr("the reload diff shows the password");
	else
		rc = 0;
	free(log);
	return rc;
}

/* ---- authentication methods that work ---- */

/*
 * The service as user svc with a password_file, on a server that knows
 * it (and the test's own client): 0 once it runs, or -1 with the reason
 * in harness_err().  dir (PATH_MAX) gets the scenario's temp dir.
 */
static int
sec_password_up(struct env *e, char *dir, const char *tag, int workers)
{
	char extra[5 * PATH_MAX], conf[5 * PATH_MAX];
	struct env_config cfg = { .workers = workers };
	int rc;

	if (harness_tmpdir(tag, dir, PATH_MAX) == -1 ||
	    sec_write(dir, "password", PASSWORD "\n", 0600) == -1)
		return -1;
	snprintf(conf, sizeof(conf), "authorization { users = [ %s, "
	    "{ user: svc, password: \"%s\" } ] }\n", ITEST_USER, PASSWORD);
	snprintf(extra, sizeof(extra), "user = svc\npassword_file = %s/password\n", dir);
	cfg.nats_conf = conf;
	cfg.nats_extra = extra;
	rc = sec_env_up(e, dir, tag, &cfg, "itest:itestpw", false, NULL);
	/* e keeps a copy of cfg: not of pointers into this frame. */
	e->cfg.nats_conf = e->cfg.nats_extra = NULL;
	return rc;
}

static void
sec_password(void)
{
	char dir[PATH_MAX];
	struct env e = { 0 };
	int rc;

	rc = sec_password_up(&e, dir, "security_password", 2);
	tap_report("security_password/round_trip", rc);
	if (rc == 0) {
		/* The log line that names the server, the titles, the config check output. */
		char out[PATH_MAX];
		char *argv[] = { e.svc.bin, "-t", "-c", e.svc.conf, NULL };
		int status;

		rc = sec_titles_lack(e.svc.proc.pid, PASSWORD);
		if (rc == 0 && harness_path(out, sizeof(out), dir, "check.out") == 0 &&
		    harness_run(argv, out, 30000, &status) == 0)
			rc = sec_file_lacks(out, PASSWORD);
		if (rc == 0)
			rc = sec_url_password(&e);
		if (rc == 0)
			rc = sec_file_lacks(e.svc.log, PASSWORD);
	}
	tap_report("security_password/no_secret_shown", rc);
	env_down(&e);
}

static void
sec_token(void)
{
	char dir[PATH_MAX], extra[5 * PATH_MAX], conf[5 * PATH_MAX];
	struct env_config cfg = { .workers = 1 };
	struct env e = { 0 };
	int rc;

	if (harness_tmpdir("security_token", dir, sizeof(dir)) == -1 ||
	    sec_write(dir, "token", TOKEN "\n", 0600) == -1) {
		tap_fail("security_token/round_trip", "setup: %s", harness_err());
		return;
	}
	/* A token server has no users: the test's client uses the token too. */
	snprintf(conf, sizeof(conf), "authorization { token: \"%s\" }\n", TOKEN);
	snprintf(extra, sizeof(extra), "token_file = %s/token\n", dir);
	cfg.nats_conf = conf;
	cfg.nats_extra = extra;
	rc = sec_env_up(&e, dir, "security_token", &cfg, TOKEN, false, NULL);
	if (rc == 0)
		rc = sec_file_lacks(e.svc.log, TOKEN);
	tap_report("security_token/round_trip", rc);
	env_down(&e);
}

static void
sec_nkey(void)
{
	char dir[PATH_MAX], extra[5 * PATH_MAX], conf[5 * PATH_MAX], seed[59], pub[NKEY_PUBLIC_LEN + 1], text[64];
	unsigned char raw[32];
	struct env_config cfg = { .workers = 1 };
	struct env e = { 0 };
	int fd, rc;

	if ((fd = open("/dev/urandom", O_RDONLY)) == -1 || read(fd, raw, sizeof(raw)) != sizeof(raw) ||
	    close(fd) == -1 || nkey_user_from_raw(raw, seed, pub) == -1) {
		tap_fail("security_nkey/round_trip", "setup: making an nkey failed");
		return;
	}
	snprintf(text, sizeof(text), "%s\n", seed);
	if (harness_tmpdir("security_nkey", dir, sizeof(dir)) == -1 ||
	    sec_write(dir, "user.nk", text, 0600) == -1) {
		tap_fail("security_nkey/round_trip", "setup: %s", harness_err());
		return;
	}
	/* The server knows only the public key: a wrong derivation fails the signature check. */
	snprintf(conf, sizeof(conf), "authorization { users = [ %s, { nkey: %s } ] }\n",
	    ITEST_USER, pub);
	snprintf(extra, sizeof(extra), "nkey_seed_file = %s/user.nk\n", dir);
	cfg.nats_conf = conf;
	cfg.nats_extra = extra;
	rc = sec_env_up(&e, dir, "security_nkey", &cfg, "itest:itestpw", false, NULL);
	if (rc == 0)
		rc = sec_file_lacks(e.svc.log, seed);
	tap_report("security_nkey/round_trip", rc);
	env_down(&e);
}

/* ---- TLS ---- */

/*
 * A CA, a server certificate for 127.0.0.1 and a client certificate, all
 * signed by it; and a second CA that signed nothing ("other-ca.pem").
 */
static int
sec_make_certs(const char *dir)
{
	char script[5 * PATH_MAX], out[PATH_MAX];
	int status;

	snprintf(script, sizeof(script),
	    "set -e; cd '%s'\n"
	    "q() { \"$@\" >/dev/null 2>&1; }\n"
	    "q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=itest-ca "
	    "-keyout ca-key.pem -out ca.pem\n"
	    "q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
	    "-keyout other-ca-key.pem -out other-ca.pem\n"
	    "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext\n"
	    "q openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
	    "-keyout server-key.pem -out server.csr\n"
	    "q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial "
	    "-days 2 -extfile san.ext -out server-cert.pem\n"
	    "q openssl req -newkey rsa:2048 -nodes -subj /CN=alarm-digest "
	    "-keyout client-key.pem -out client.csr\n"
	    "q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial "
	    "-days 2 -out client-cert.pem\n"
	    "chmod 600 *-key.pem\n", dir);
	char *argv[] = { "/bin/sh", "-c", script, NULL };
	if (harness_path(out, sizeof(out), dir, "openssl.out") == -1 ||
	    harness_run(argv, out, 60000, &status) == -1)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		harness_seterr("making certificates with openssl failed (see %s)", out);
		return -1;
	}
	return 0;
}

/* Server TLS with client certificates required (the test's client has one too). */
static void
sec_tls_conf(const char *dir, char *conf, size_t cap)
{
	snprintf(conf, cap,
	    "authorization { users = [ %s, { user: svc, password: \"%s\" } ] }\n"
	    "tls {\n"
	    "  cert_file: \"%s/server-cert.pem\"\n"
	    "  key_file: \"%s/server-key.pem\"\n"
	    "  ca_file: \"%s/ca.pem\"\n"
	    "  verify: true\n"
	    "}\n", ITEST_USER, PASSWORD, dir, dir, dir);
}

static void
sec_tls(void)
{
	char dir[PATH_MAX], extra[5 * PATH_MAX], conf[5 * PATH_MAX];
	struct env_config cfg = { .workers = 1 };
	struct env e = { 0 };
	int rc;

	if (harness_tmpdir("security_tls", dir, sizeof(dir)) == -1 || sec_make_certs(dir) == -1 ||
	    sec_write(dir, "password", PASSWORD "\n", 0600) == -1) {
		tap_fail("security_tls/round_trip", "setup: %s", harness_err());
		return;
	}
	sec_tls_conf(dir, conf, sizeof(conf));
	snprintf(extra, sizeof(extra), "user = svc\npassword_file = %s/password\n"
	    "tls_required = yes\ntls_ca_file = %s/ca.pem\n"
	    "tls_cert_file = %s/client-cert.pem\ntls_key_file = %s/client-key.pem\n",
	    dir, dir, dir, dir);
	cfg.nats_conf = conf;
	cfg.nats_extra = extra;
	rc = sec_env_up(&e, dir, "security_tls", &cfg, "itest:itestpw", true, NULL);
	tap_report("security_tls/round_trip", rc);
	env_down(&e);
}

/* ---- failures: one line, non-zero exit, within seconds ---- */

/*
 * Start the service on conf text (servers = url) and expect it to exit
 * non-zero within 10 s with a log line holding every one of want[], and
 * neither the password nor any of lacks[] (NULL-terminated; may be NULL).
 */
static int
sec_expect_fail(const char *dir, const char *name, const char *url, const char *nats_lines,
    const char *const want[], const char *const lacks[])
{
	struct harness_service svc = { 0 };
	char text[5 * PATH_MAX], st[64];
	char *log;
	int64_t t0;

	snprintf(svc.bin, sizeof(svc.bin), "%s", itest_opts.bin);
	if (harness_path(svc.conf, sizeof(svc.conf), dir, name) == -1)
		return -1;
	if (snprintf(svc.log, sizeof(svc.log), "%s.log", svc.conf) >= (int)sizeof(svc.log)) {
		harness_seterr("%s.log: path too long", svc.conf);
		return -1;
	}
	snprintf(text, sizeof(text), "[nats]\nservers = %s\n%s[service]\nstate_dir = %s/state-%s\n"
	    "workers = 1\n[http]\nlisten = \"\"\n", url, nats_lines, dir, name);
	if (harness_write_file(svc.conf, text) == -1 || chmod(svc.conf, 0600) == -1)
		return -1;
	t0 = harness_now_ms();
	if (harness_service_start(&svc) == -1)
		return -1;
	if (harness_proc_wait(&svc.proc, 10000) == -1) {
		harness_proc_kill(&svc.proc);
		harness_seterr("%s: still running after 10 s (see %s)", name, svc.log);
		return -1;
	}
	if (!WIFEXITED(svc.proc.status) || WEXITSTATUS(svc.proc.status) == 0) {
		harness_seterr("%s: ended with %s, want a non-zero exit", name,
		    harness_status_str(svc.proc.status, st, sizeof(st)));
		return -1;
	}
	if ((log = harness_read_file(svc.log, NULL)) == NULL)
		return -1;
	for (int i = 0; want[i] != NULL; i++) {
		if (strstr(log, want[i]) == NULL) {
			harness_seterr("%s: the log does not say \"%s\"; it reads: %s", name, want[i], log);
			free(log);
			return -1;
		}
	}
	if (strstr(log, PASSWORD) != NULL) {
		harness_seterr("%s: the log shows the password", name);
		free(log);
		return -1;
	}
	for (int i = 0; lacks != NULL && lacks[i] != NULL; i++) {
		if (strstr(log, lacks[i]) != NULL) {
			harness_seterr("%s: the log shows the secret \"%s\"", name, lacks[i]);
			free(log);
			return -1;
		}
	}
	free(log);
	printf("# %s: exited in %lld ms\n", name, (long long)(harness_now_ms() - t0));
	return 0;
}

/*
 * Run by root: the service started as nobody cannot read the root-only
 * secret; its output must hold want ("[nats] KEY: cannot read") and the
 * errno text.
 */
static int
sec_unreadable_as_nobody(const char *dir, const char *name, const char *url,
    const char *nats_lines, const char *want)
{
	char conf[PATH_MAX], out[PATH_MAX], text[5 * PATH_MAX], st[64], file[64], *log;
	char *argv[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		(char *)itest_opts.bin, "-c", conf, NULL };
	int status, rc = -1;

	snprintf(file, sizeof(file), "%s.conf", name);
	if (harness_path(conf, sizeof(conf), dir, file) == -1)
		return -1;
	snprintf(file, sizeof(file), "%s.log", name);
	if (harness_path(out, sizeof(out), dir, file) == -1)
		return -1;
	if (snprintf(text, sizeof(text), "[nats]\nservers = %s\n%s[service]\nstate_dir = %s/state-x\n"
	    "workers = 1\n[http]\nlisten = \"\"\n", url, nats_lines, dir) >= (int)sizeof(text)) {
		harness_seterr("config text too long");
		return -1;
	}
	/* nobody may read the config and pass through the dir, not read the secret (0000). */
	if (harness_write_file(conf, text) == -1 || chmod(conf, 0644) == -1 || chmod(dir, 0711) == -1)
		return -1;
	if (harness_run(argv, out, 10000, &status) == -1) {
		(void)chmod(dir, 0700);
		return -1;
	}
	(void)chmod(dir, 0700);
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 0) {
		harness_seterr("as nobody: ended with %s, want a non-zero exit",
		    harness_status_str(status, st, sizeof(st)));
		return -1;
	}
	if ((log = harness_read_file(out, NULL)) == NULL)
		return -1;
	if (strstr(log, want) == NULL || strstr(log, "Permission denied") == NULL)
		harness_seterr("as nobody: the output does not name the unreadable file: %s", log);
	else
		rc = 0;
	free(log);
	return rc;
}

/* Each secret-file key the service reads itself or hands to cnats, made unreadable. */
static const struct {
	const char *check;    /* security_failures/<check> */
	const char *lines;    /* [nats] lines before the key */
	const char *key;
} sec_unreadable[] = {
	{ "unreadable_secret", "user = svc\n", "password_file" },
	{ "unreadable_creds", "", "creds_file" },
};
#define SEC_NUNREADABLE (sizeof(sec_unreadable) / sizeof(sec_unreadable[0]))

static void
sec_failures_skip(const char *why)
{
	tap_fail("security_failures/wrong_password", "%s", why);
	tap_fail("security_failures/wrong_ca", "%s", why);
	tap_fail("security_failures/tls_url_untrusted", "%s", why);
	for (size_t i = 0; i < SEC_NUNREADABLE; i++) {
		char name[96];

		snprintf(name, sizeof(name), "security_failures/%s", sec_unreadable[i].check);
		tap_fail(name, "%s", why);
	}
}

static void
sec_failures(void)
{
	char dir[PATH_MAX], conf[5 * PATH_MAX], lines[5 * PATH_MAX], url[128], tls_url[128];
	char check[96], want[96], why[2200];
	struct harness_nats n = { 0 };

	if (harness_tmpdir("security_failures", dir, sizeof(dir)) == -1 || sec_make_certs(dir) == -1 ||
	    sec_write(dir, "password", PASSWORD "\n", 0600) == -1 ||
	    sec_write(dir, "wrong-password", "not-the-password\n", 0600) == -1 ||
	    sec_write(dir, "unreadable", PASSWORD "\n", 0000) == -1) {
		snprintf(why, sizeof(why), "setup: %s", harness_err());
		sec_failures_skip(why);
		return;
	}
	sec_tls_conf(dir, conf, sizeof(conf));
	if (harness_nats_start_conf(&n, dir, conf) == -1) {
		snprintf(why, sizeof(why), "nats-server: %s", harness_err());
		sec_failures_skip(why);
		return;
	}
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", n.port);

	/* Over TLS with a trusted server: only the password is wrong. */
	snprintf(lines, sizeof(lines), "user = svc\npassword_file = %s/wrong-password\n"
	    "tls_ca_file = %s/ca.pem\ntls_cert_file = %s/client-cert.pem\n"
	    "tls_key_file = %s/client-key.pem\n", dir, dir, dir, dir);
	tap_report("security_failures/wrong_password", sec_expect_fail(dir, "wrong_password", url, lines,
	    (const char *const[]){ "rejected our credentials", url, "Authorization Violation", NULL },
	    NULL));

	/* The server's certificate is signed by ca.pem; trust only other-ca.pem. */
	snprintf(lines, sizeof(lines), "user = svc\npassword_file = %s/password\ntls_required = yes\n"
	    "tls_ca_file = %s/other-ca.pem\ntls_cert_file = %s/client-cert.pem\n"
	    "tls_key_file = %s/client-key.pem\n", dir, dir, dir, dir);
	tap_report("security_failures/wrong_ca", sec_expect_fail(dir, "wrong_ca", url, lines,
	    (const char *const[]){ "TLS failed", url, "SSL handshake error", NULL }, NULL));

	/* The report: a tls:// URL to a server with its own CA waited forever. */
	snprintf(tls_url, sizeof(tls_url), "tls://127.0.0.1:%d", n.port);
	snprintf(lines, sizeof(lines), "user = svc\npassword_file = %s/password\n", dir);
	tap_report("security_failures/tls_url_untrusted", sec_expect_fail(dir, "tls_url_untrusted",
	    tls_url, lines, (const char *const[]){ "TLS failed", tls_url, NULL }, NULL));

	for (size_t i = 0; i < SEC_NUNREADABLE; i++) {
		snprintf(lines, sizeof(lines), "%s%s = %s/unreadable\n", sec_unreadable[i].lines,
		    sec_unreadable[i].key, dir);
		snprintf(check, sizeof(check), "security_failures/%s", sec_unreadable[i].check);
		snprintf(want, sizeof(want), "[nats] %s: cannot read", sec_unreadable[i].key);
		/* Root reads anything: start the service as nobody (65534) instead. */
		if (geteuid() == 0)
			tap_report(check, sec_unreadable_as_nobody(dir, sec_unreadable[i].check, url,
			    lines, want));
		else
			tap_report(check, sec_expect_fail(dir, sec_unreadable[i].check, url, lines,
			    (const char *const[]){ want, "Permission denied", NULL }, NULL));
	}
	harness_nats_stop(&n);
}

/* ---- creds files: operator mode, JWTs made at run time ---- */

/*
 * What every base64url JWT starts with: {"typ":"JWT","alg":"ed25519-nkey"}.
 * A log line or title holding any part of a JWT would show it.
 */
#define JWT_HEADER_B64 "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"

/*
 * The trust chain of an operator-mode nats-server: an operator; a system
 * account (nats-server 2.9 starts JetStream only with one, and refuses
 * JetStream in it); the service's account with JetStream; in it "svc" for
 * the service and "itest" for the test's own client.
 */
struct sec_world {
	struct jwt_key *op, *sys, *acc, *svc, *itest;
	char *svc_jwt;
};

static void
sec_world_free(struct sec_world *w)
{
	jwt_key_free(w->op);
	jwt_key_free(w->sys);
	jwt_key_free(w->acc);
	jwt_key_free(w->svc);
	jwt_key_free(w->itest);
	free(w->svc_jwt);
	memset(w, 0, sizeof(*w));
}

/* dir/file: the creds file of user_jwt with user's seed, mode 0600. */
static int
sec_write_creds(const char *dir, const char *file, const char *user_jwt, const struct jwt_key *user)
{
	char *text;
	int rc;

	if ((text = jwt_creds(user_jwt, user)) == NULL) {
		harness_seterr("%s: %s", file, jwt_err());
		return -1;
	}
	rc = sec_write(dir, file, text, 0600);
	explicit_bzero(text, strlen(text));
	free(text);
	return rc;
}

/*
 * The keys and JWTs, dir/op.jwt, dir/svc.creds and dir/itest.creds, and the
 * server's config text in conf.  The harness starts nats-server with -js
 * and -sd, so the text has no jetstream block of its own.
 */
static int
sec_world_make(struct sec_world *w, const char *dir, char *conf, size_t cap)
{
	char *op_jwt = NULL, *sys_jwt = NULL, *acc_jwt = NULL, *itest_jwt = NULL, text[4096];
	int rc = -1;

	memset(w, 0, sizeof(*w));
	if ((w->op = jwt_key_new(JWT_OPERATOR)) == NULL || (w->sys = jwt_key_new(JWT_ACCOUNT)) == NULL ||
	    (w->acc = jwt_key_new(JWT_ACCOUNT)) == NULL || (w->svc = jwt_key_new(JWT_USER)) == NULL ||
	    (w->itest = jwt_key_new(JWT_USER)) == NULL ||
	    (op_jwt = jwt_encode(w->op, "itest-operator", w->op, 0)) == NULL ||
	    (sys_jwt = jwt_encode(w->sys, "SYS", w->op, 0)) == NULL ||
	    (acc_jwt = jwt_encode(w->acc, "ALARMS", w->op, JWT_JETSTREAM)) == NULL ||
	    (w->svc_jwt = jwt_encode(w->svc, "svc", w->acc, 0)) == NULL ||
	    (itest_jwt = jwt_encode(w->itest, "itest", w->acc, 0)) == NULL) {
		harness_seterr("making the keys and JWTs: %s", jwt_err());
		goto out;
	}
	snprintf(text, sizeof(text), "%s\n", op_jwt);
	if (sec_write(dir, "op.jwt", text, 0600) == -1 ||
	    sec_write_creds(dir, "svc.creds", w->svc_jwt, w->svc) == -1 ||
	    sec_write_creds(dir, "itest.creds", itest_jwt, w->itest) == -1)
		goto out;
	if (snprintf(conf, cap, "operator: \"%s/op.jwt\"\n"
	    "system_account: %s\n"
	    "resolver: MEMORY\n"
	    "resolver_preload: {\n"
	    "  %s: \"%s\"\n"
	    "  %s: \"%s\"\n"
	    "}\n", dir, jwt_key_public(w->sys), jwt_key_public(w->sys), sys_jwt,
	    jwt_key_public(w->acc), acc_jwt) >= (int)cap) {
		harness_seterr("nats-server config text too long");
		goto out;
	}
	rc = 0;
out:
	free(op_jwt);
	free(sys_jwt);
	free(acc_jwt);
	free(itest_jwt);
	return rc;
}

/* The -t output, the service log and every process title lack the seed and any JWT. */
static int
sec_creds_not_shown(struct env *e, const struct sec_world *w)
{
	const char *const secrets[] = { jwt_key_seed(w->svc), JWT_HEADER_B64, NULL };
	char out[PATH_MAX];
	char *argv[] = { e->svc.bin, "-t", "-c", e->svc.conf, NULL };
	int status;

	if (harness_path(out, sizeof(out), e->dir, "check.out") == -1 ||
	    harness_run(argv, out, 30000, &status) == -1)
		return -1;
	for (int i = 0; secrets[i] != NULL; i++) {
		if (sec_titles_lack(e->svc.proc.pid, secrets[i]) == -1 ||
		    sec_file_lacks(out, secrets[i]) == -1 || sec_file_lacks(e->svc.log, secrets[i]) == -1)
			return -1;
	}
	return 0;
}

static void
sec_creds(void)
{
	char dir[PATH_MAX], extra[PATH_MAX + 32], conf[5 * PATH_MAX], bus_creds[PATH_MAX];
	struct env_config cfg = { .workers = 2 };
	struct sec_world w = { 0 };
	struct env e = { 0 };
	int rc;

	if (harness_tmpdir("security_creds", dir, sizeof(dir)) == -1 ||
	    sec_world_make(&w, dir, conf, sizeof(conf)) == -1 ||
	    harness_path(bus_creds, sizeof(bus_creds), dir, "itest.creds") == -1) {
		tap_fail("security_creds/round_trip", "setup: %s", harness_err());
		tap_fail("security_creds/no_secret_shown", "setup");
		sec_world_free(&w);
		return;
	}
	/* Every process (master and both workers) logs in with the same creds file. */
	snprintf(extra, sizeof(extra), "creds_file = %s/svc.creds\n", dir);
	cfg.nats_conf = conf;
	cfg.nats_extra = extra;
	rc = sec_env_up(&e, dir, "security_creds", &cfg, NULL, false, bus_creds);
	tap_report("security_creds/round_trip", rc);
	tap_report("security_creds/no_secret_shown", rc == 0 ? sec_creds_not_shown(&e, &w) : -1);
	env_down(&e);
	sec_world_free(&w);
}

/*
 * Creds the server must refuse: a user JWT signed by an account it does not
 * know, and the service's own JWT with another user's seed (the signature
 * of the server's nonce does not match the JWT's key).
 */
static void
sec_creds_bad(void)
{
	char dir[PATH_MAX], conf[5 * PATH_MAX], lines[PATH_MAX + 32], url[128];
	struct sec_world w = { 0 };
	struct jwt_key *stranger = NULL, *other = NULL;
	struct harness_nats n = { 0 };
	char *foreign_jwt = NULL;

	if (harness_tmpdir("security_creds_bad", dir, sizeof(dir)) == -1 ||
	    sec_world_make(&w, dir, conf, sizeof(conf)) == -1)
		goto setup_failed;
	if ((stranger = jwt_key_new(JWT_ACCOUNT)) == NULL || (other = jwt_key_new(JWT_USER)) == NULL ||
	    (foreign_jwt = jwt_encode(w.svc, "svc", stranger, 0)) == NULL) {
		harness_seterr("making the keys and JWTs: %s", jwt_err());
		goto setup_failed;
	}
	if (sec_write_creds(dir, "foreign.creds", foreign_jwt, w.svc) == -1 ||
	    sec_write_creds(dir, "wrong-seed.creds", w.svc_jwt, other) == -1 ||
	    harness_nats_start_conf(&n, dir, conf) == -1)
		goto setup_failed;
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", n.port);

	snprintf(lines, sizeof(lines), "creds_file = %s/foreign.creds\n", dir);
	tap_report("security_creds_bad/foreign_account", sec_expect_fail(dir, "foreign_account", url,
	    lines, (const char *const[]){ "rejected our credentials", url, "Authorization Violation",
	    NULL }, (const char *const[]){ jwt_key_seed(w.svc), JWT_HEADER_B64, NULL }));

	snprintf(lines, sizeof(lines), "creds_file = %s/wrong-seed.creds\n", dir);
	tap_report("security_creds_bad/wrong_seed", sec_expect_fail(dir, "wrong_seed", url, lines,
	    (const char *const[]){ "rejected our credentials", url, "Authorization Violation", NULL },
	    (const char *const[]){ jwt_key_seed(other), JWT_HEADER_B64, NULL }));
	goto out;
setup_failed:
	tap_fail("security_creds_bad/foreign_account", "setup: %s", harness_err());
	tap_fail("security_creds_bad/wrong_seed", "setup");
out:
	harness_nats_stop(&n);
	free(foreign_jwt);
	jwt_key_free(stranger);
	jwt_key_free(other);
	sec_world_free(&w);
}

/* ---- the shipped broker permissions ---- */

/* The shipped file, with the test's unrestricted user added to its account. */
static char *
sec_shipped_conf(void)
{
	char path[PATH_MAX], *text, *at, *out;
	const char *marker = "users: [";
	size_t len, need;

	snprintf(path, sizeof(path), "%s", __FILE__);
	if ((at = strstr(path, "tests/integration/")) == NULL) {
		harness_seterr("cannot find the repository from %s", __FILE__);
		return NULL;
	}
	snprintf(at, sizeof(path) - (size_t)(at - path), "conf/nats-server-example.conf");
	if ((text = harness_read_file(path, &len)) == NULL)
		return NULL;
	/* The harness passes -sd; the file's own store_dir would be a duplicate. */
	if ((at = strstr(text, "store_dir:")) != NULL)
		memcpy(at, "#tore_dir:", 10);
	if ((at = strstr(text, marker)) == NULL) {
		harness_seterr("%s has no \"%s\"", path, marker);
		free(text);
		return NULL;
	}
	need = len + 128;
	if ((out = malloc(need)) == NULL) {
		free(text);
		return NULL;
	}
	at += strlen(marker);
	snprintf(out, need, "%.*s\n\t\t\t%s\n%s", (int)(at - text), text, ITEST_USER, at);
	free(text);
	return out;
}

/* A client logged in as the shipped file's agents user; NULL (harness_err) if it cannot. */
static natsConnection *
sec_agents_connect(struct env *e)
{
	natsConnection *nc = NULL;
	char url[128];
	natsStatus s;

	snprintf(url, sizeof(url), "nats://agents:agentspw@127.0.0.1:%d", e->nats.port);
	if ((s = natsConnection_ConnectTo(&nc, url)) != NATS_OK) {
		harness_seterr("agents user cannot connect: %s", natsStatus_GetText(s));
		return NULL;
	}
	return nc;
}

/* An agents-user client: may publish its two subjects, may not read the deliver subject. */
static int
sec_agents_cannot_read(struct env *e)
{
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsMsg *msg = NULL;
	natsStatus s;
	int rc = -1;

	if ((nc = sec_agents_connect(e)) == NULL)
		return -1;
	s = natsConnection_SubscribeSync(&sub, nc, "_ALARM_DIGEST.deliver");
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, 2000);
	/* The violation comes back asynchronously: the subscription gets nothing. */
	if (s == NATS_OK && bus_publish_request(e->bus, "sec-user") == 0 &&
	    bus_flush(e->bus, 5000) == 0) {
		s = natsSubscription_NextMsg(&msg, sub, 2000);
		if (s == NATS_OK) {
			harness_seterr("the agents user read a message from the deliver subject");
			natsMsg_Destroy(msg);
		} else {
			const char *err = NULL;

			natsConnection_GetLastError(nc, &err);
			rc = 0;
			printf("# agents subscribe to the deliver subject: %s\n",
			    err != NULL && *err != '\0' ? err : natsStatus_GetText(s));
		}
	}
	if (rc == 0 && (s = natsConnection_PublishString(nc, "AlarmStatusChanged", "{}")) != NATS_OK) {
		harness_seterr("the agents user cannot publish AlarmStatusChanged: %s",
		    natsStatus_GetText(s));
		rc = -1;
	}
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	return rc;
}

/* Service discovery works under the shipped permissions: $SRV.PING is answered, nothing violated. */
static int
sec_srv_ping(struct env *e)
{
	natsMsg *reply = NULL;
	natsStatus s;
	int rc = -1;

	if ((s = natsConnection_RequestString(&reply, bus_conn(e->bus), "$SRV.PING.alarm-digest", "",
	    5000)) != NATS_OK) {
		harness_seterr("$SRV.PING.alarm-digest under the shipped permissions: %s", natsStatus_GetText(s));
		return -1;
	}
	if (strstr(natsMsg_GetData(reply), "io.nats.micro.v1.ping_response") == NULL)
		harness_seterr("$SRV.PING reply: %.200s", natsMsg_GetData(reply));
	else if ((rc = sec_file_lacks(e->svc.log, "Permissions Violation")) == 0)
		rc = sec_file_lacks(e->svc.log, "Not Permitted");
	natsMsg_Destroy(reply);
	return rc;
}

/*
 * The service as user alarm-digest under the shipped file (passwords from
 * nats-server's environment, as the file reads them); extra holds the
 * [nats] lines and must outlive the environment.
 */
static int
sec_shipped_up(struct env *e, const char *tag, struct env_config *cfg, char *extra, size_t extralen)
{
	char dir[PATH_MAX];
	char *conf;
	int rc;

	if (harness_tmpdir(tag, dir, sizeof(dir)) == -1 ||
	    sec_write(dir, "password", PASSWORD "\n", 0600) == -1 ||
	    (conf = sec_shipped_conf()) == NULL)
		return -1;
	setenv("ALARM_DIGEST_PASSWORD", PASSWORD, 1);
	setenv("ALARM_AGENTS_PASSWORD", "agentspw", 1);
	setenv("ALARM_DIGEST_READER_PASSWORD", "readerpw", 1);
	snprintf(extra, extralen, "user = alarm-digest\npassword_file = %s/password\n", dir);
	cfg->nats_conf = conf;
	cfg->nats_extra = extra;
	rc = sec_env_up(e, dir, tag, cfg, "itest:itestpw", false, NULL);
	cfg->nats_conf = NULL;
	free(conf);
	return rc;
}

static void
sec_shipped_down(struct env *e)
{
	env_down(e);
	unsetenv("ALARM_DIGEST_PASSWORD");
	unsetenv("ALARM_AGENTS_PASSWORD");
	unsetenv("ALARM_DIGEST_READER_PASSWORD");
}

static void
sec_permissions(void)
{
	char extra[2 * PATH_MAX];
	struct env_config cfg = { .workers = 2 };
	struct env e = { 0 };
	int rc;

	rc = sec_shipped_up(&e, "security_permissions", &cfg, extra, sizeof(extra));
	/* Anything the service lacks shows up as a violation in its log. */
	if (rc == 0 && (rc = sec_file_lacks(e.svc.log, "Permissions Violation")) == 0)
		rc = sec_file_lacks(e.svc.log, "Not Permitted");
	tap_report("security_permissions/round_trip", rc);
	tap_report("security_permissions/agents_cannot_read", rc == 0 ? sec_agents_cannot_read(&e) : -1);
	tap_report("security_permissions/srv_ping_answered", rc == 0 ? sec_srv_ping(&e) : -1);
	sec_shipped_down(&e);
}

/* ---- the shipped permissions, cluster mode ---- */

#define SEC_CL_USERS 12

/* Updates and a request for users spread over the partitions; every digest holds its alarm. */
static int
sec_cluster_round_trip(struct env *e)
{
	char user[64], ts[48];
	int64_t deadline = harness_now_ms() + 30000;

	model_ts_print(harness_wall_sec(), 0, 0, 0, false, ts, sizeof(ts));
	for (int i = 0; i < SEC_CL_USERS; i++) {
		snprintf(user, sizeof(user), "sec-cluster-%d", i);
		if (bus_publish_update(e->bus, user, "a1", "CRITICAL", ts) == -1 ||
		    bus_publish_request(e->bus, user) == -1)
			return -1;
	}
	if (bus_flush(e->bus, 10000) == -1)
		return -1;
	for (int i = 0; i < SEC_CL_USERS; i++) {
		snprintf(user, sizeof(user), "sec-cluster-%d", i);
		if (env_wait_user(e, user, 1, deadline) == -1) {
			harness_seterr("no digest for %s within 30 s under the shipped permissions", user);
			return -1;
		}
	}
	return 0;
}

/* Nothing the server or the service logged says a permission was missing: quotes the first that does. */
static int
sec_no_violation(struct env *e)
{
	const char *files[] = { e->svc.log, e->nats.log };
	static const char *const needles[] = { "Violation", "Not Permitted", "not permitted" };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *text = harness_read_file(files[i], NULL), *at = NULL, *bol;

		if (text == NULL)
			return -1;
		for (size_t k = 0; at == NULL && k < sizeof(needles) / sizeof(needles[0]); k++)
			at = strstr(text, needles[k]);
		if (at != NULL) {
			for (bol = at; bol > text && bol[-1] != '\n'; bol--)
				;
			harness_seterr("%s: %.*s", files[i], (int)strcspn(bol, "\n"), bol);
			free(text);
			return -1;
		}
		free(text);
	}
	return 0;
}

/* An agents client subscribing to the partition stream's subjects or the deliver subjects gets nothing. */
static int
sec_agents_cannot_read_parts(struct env *e)
{
	static const char *const subjects[] = { "alarm_digest.part.>", "_ALARM_DIGEST.deliver.>" };
	natsConnection *nc = NULL;
	natsSubscription *sub[2] = { NULL, NULL };
	natsMsg *msg = NULL;
	natsStatus s = NATS_OK;
	int rc = -1;

	if ((nc = sec_agents_connect(e)) == NULL)
		return -1;
	for (int i = 0; i < 2 && s == NATS_OK; i++)
		s = natsConnection_SubscribeSync(&sub[i], nc, subjects[i]);
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, 2000);
	if (s == NATS_OK && sec_cluster_round_trip(e) == 0) {
		rc = 0;
		for (int i = 0; i < 2 && rc == 0; i++) {
			if (natsSubscription_NextMsg(&msg, sub[i], 500) == NATS_OK) {
				harness_seterr("the agents user read %s from %s", natsMsg_GetSubject(msg),
				    subjects[i]);
				natsMsg_Destroy(msg);
				rc = -1;
			}
		}
	} else if (s != NATS_OK) {
		harness_seterr("agents subscribe: %s", natsStatus_GetText(s));
	}
	for (int i = 0; i < 2; i++)
		natsSubscription_Destroy(sub[i]);
	natsConnection_Destroy(nc);
	return rc;
}

static void
sec_permissions_cluster(void)
{
	char extra[2 * PATH_MAX];
	/* One instance alone holds every partition and the router: every cluster-mode call runs. */
	struct env_config cfg = { .workers = 2, .cluster = true,
	    .extra_conf = "\n[cluster]\npartitions = 4\ninstance = sec\nlease_ttl = 2s\n" };
	struct env e = { 0 };
	int rc;

	rc = sec_shipped_up(&e, "security_permissions_cluster", &cfg, extra, sizeof(extra));
	/*
	 * Then a SIGTERM (the leases released: KV deletes) and a second start,
	 * which replaces the first start's consumers (deletes): every call of
	 * cluster mode has run once under the file.
	 */
	if (rc == 0)
		rc = sec_cluster_round_trip(&e);
	if (rc == 0 && (rc = harness_service_stop(&e.svc, 25000)) == 0 &&
	    (!WIFEXITED(e.svc.proc.status) || WEXITSTATUS(e.svc.proc.status) != 0)) {
		harness_seterr("the first start did not exit 0 on SIGTERM");
		rc = -1;
	}
	if (rc == 0)
		rc = env_restart_service(&e);
	if (rc == 0)
		rc = sec_cluster_round_trip(&e);
	if (rc == 0)
		rc = sec_no_violation(&e);
	tap_report("security_permissions_cluster/round_trip", rc);
	tap_report("security_permissions_cluster/agents_cannot_read",
	    rc == 0 ? sec_agents_cannot_read_parts(&e) : -1);
	sec_shipped_down(&e);
}

/* ---- credentials revoked while running ---- */

static int
sec_revoked(struct env *e)
{
	char conf[512], want[256], st[64];
	char *log;
	int rc = -1;

	snprintf(conf, sizeof(conf), "authorization { users = [ %s, "
	    "{ user: svc, password: \"changed-%s\" } ] }\n", ITEST_USER, PASSWORD);
	if (harness_write_file(e->nats.conf, conf) == -1 || harness_nats_restart(&e->nats) == -1)
		return -1;
	/* One retry after a 1 s backoff, then cnats gives up: the process must say so and exit. */
	if (harness_proc_wait(&e->svc.proc, 20000) == -1) {
		harness_seterr("the supervisor still runs 20 s after its credentials were revoked");
		return -1;
	}
	if (!WIFEXITED(e->svc.proc.status) || WEXITSTATUS(e->svc.proc.status) == 0) {
		harness_seterr("the supervisor ended with %s, want a non-zero exit",
		    harness_status_str(e->svc.proc.status, st, sizeof(st)));
		return -1;
	}
	if ((log = harness_read_file(e->svc.log, NULL)) == NULL)
		return -1;
	snprintf(want, sizeof(want), "master: error: authorization failed at %s while reconnecting",
	    e->nats.url);
	if (strstr(log, want) == NULL)
		harness_seterr("the log does not say \"%s\"", want);
	else if (strstr(log, "twice in a row") == NULL)
		harness_seterr("the log does not say why the supervisor exited");
	else if (strstr(log, PASSWORD) != NULL)
		harness_seterr("the log shows the password");
	else
		rc = 0;
	free(log);
	return rc;
}

static void
sec_reconnect(void)
{
	char dir[PATH_MAX];
	struct env e = { 0 };
	int rc;

	rc = sec_password_up(&e, dir, "security_reconnect", 1);
	if (rc == 0)
		rc = sec_revoked(&e);
	tap_report("security_reconnect/revoked", rc);
	/* It exited, as it must: there is nothing to tear down but orphans. */
	if (e.svc.proc.reaped)
		e.svc.proc.pid = 0;
	env_down(&e);
}

void
scn_security_password(void)
{
	sec_password();
}

void
scn_security_token(void)
{
	sec_token();
}

void
scn_security_nkey(void)
{
	sec_nkey();
}

void
scn_security_creds(void)
{
	sec_creds();
}

void
scn_security_creds_bad(void)
{
	sec_creds_bad();
}

void
scn_security_tls(void)
{
	sec_tls();
}

void
scn_security_failures(void)
{
	sec_failures();
}

void
scn_security_permissions(void)
{
	sec_permissions();
}

void
scn_security_permissions_cluster(void)
{
	sec_permissions_cluster();
}

void
scn_security_reconnect(void)
{
	sec_reconnect();
}
