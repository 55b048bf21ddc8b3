#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE   /* explicit_bzero */
#endif

#include <sys/stat.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "natsconn.h"
#include "nkey.h"
#include "version.h"

#define NATSCONN_MAX_SERVERS 32
#define SECRET_MAX 4096

/*
 * The servers as they may be shown (user-info redacted), for the callbacks,
 * which run on cnats threads.  One per process: each process holds one
 * connection.
 */
static char natsconn_where[1024] = "NATS";

static void
natsconn_on_disconnected(natsConnection *nc, void *arg)
{
	(void)arg;
	/* Our own close also reports a disconnect; only a lost connection is news. */
	if (natsConnection_IsClosed(nc))
		return;
	log_warnx("disconnected from NATS; reconnecting (publishes are buffered meanwhile)");
}

/* The connected URL carries the user-info it was configured with. */
static void
natsconn_log_connected(natsConnection *nc)
{
	char url[256] = "", shown[256];

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	config_redact_servers(url, shown, sizeof(shown));
	explicit_bzero(url, sizeof(url));
	log_info("connected to NATS at %s", shown);
}

static void
natsconn_on_connected(natsConnection *nc, void *arg)
{
	(void)arg;
	natsconn_log_connected(nc);
}

static void
natsconn_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	int64_t dropped = 0;
	const char *text = NULL;

	(void)arg;
	if (err == NATS_SLOW_CONSUMER && sub != NULL && natsSubscription_GetDropped(sub, &dropped) == NATS_OK) {
		log_errorx("slow consumer on %s: %lld messages dropped so far (core intake backlog full)",
		    natsSubscription_GetSubject(sub), (long long)dropped);
		return;
	}
	if (err == NATS_CONNECTION_AUTH_FAILED) {
		natsConnection_GetLastError(nc, &text);
		log_errorx("authorization failed at %s while reconnecting (%s): check the [nats] "
		    "credentials and the server's users; retrying", natsconn_where,
		    text != NULL && *text != '\0' ? text : natsStatus_GetText(err));
		return;
	}
	log_warnx("NATS asynchronous error: %s", natsStatus_GetText(err));
}

/*
 * cnats 3.4.1 closes a connection whose server rejects the same credentials
 * twice in a row while reconnecting, and offers no way to keep trying.
 * Exit so the supervisor (for a worker) or the service manager (for the
 * master) restarts the process with its own backoff.
 */
static atomic_bool natsconn_closing;

static void
natsconn_on_closed(natsConnection *nc, void *arg)
{
	const char *text = NULL;

	(void)arg;
	if (atomic_load(&natsconn_closing) ||
	    natsConnection_GetLastError(nc, &text) != NATS_CONNECTION_AUTH_FAILED)
		return;
	log_errorx("authorization failed at %s (%s) twice in a row: the NATS client gave the "
	    "connection up; exiting to be restarted", natsconn_where,
	    text != NULL && *text != '\0' ? text : "authorization violation");
	_exit(1);
}

/*
 * Authorization failures back off (1s, doubling, up to 30s); anything else
 * retries at the usual pace.  Called on cnats's reconnect thread only.
 */
static int
natsconn_auth_streak;

static int64_t
natsconn_reconnect_delay(natsConnection *nc, int attempts, void *arg)
{
	const char *text = NULL;
	int64_t ms = 1000;

	(void)arg;
	(void)attempts;   /* counts refused connections too, which need no backoff */
	if (natsConnection_GetLastError(nc, &text) != NATS_CONNECTION_AUTH_FAILED) {
		natsconn_auth_streak = 0;
		return 250;
	}
	for (int i = 0; i < natsconn_auth_streak && ms < 30000; i++)
		ms *= 2;
	natsconn_auth_streak++;
	return ms < 30000 ? ms : 30000;
}

/* Split "a, b,c" in place into at most max URLs. */
static int
natsconn_split(char *list, const char **urls, int max)
{
	int n = 0;

	char *save = NULL;

	for (char *tok = strtok_r(list, ",", &save); tok != NULL && n < max;
	    tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t len = strlen(tok);
		while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
			tok[--len] = '\0';
		if (len > 0)
			urls[n++] = tok;
	}
	return n;
}

/*
 * A secret file's first line, without the line end.  Errors are logged
 * naming the key and the file, never the content.
 */
static int
natsconn_read_secret(const char *key, const char *path, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		log_error("[nats] %s: cannot read \"%s\"", key, path);
		return -1;
	}
	while (n + 1 < len && (r = read(fd, buf + n, len - 1 - n)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			log_error("[nats] %s: reading \"%s\"", key, path);
			(void)close(fd);
			explicit_bzero(buf, len);
			return -1;
		}
		n += (size_t)r;
	}
	(void)close(fd);   /* read-only */
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (*buf == '\0') {
		log_errorx("[nats] %s: \"%s\" is empty (the secret is its first line)", key, path);
		return -1;
	}
	return 0;
}

/* The nats_GetLastError text of a failed option, for the log line. */
static const char *
natsconn_why(natsStatus s)
{
	const char *t = nats_GetLastError(NULL);

	if (t == NULL || *t == '\0')
		return natsStatus_GetText(s);
	/* cnats prefixes its source location: "(conn.c:1905): Authorization Violation". */
	if (*t == '(' && strstr(t, "): ") != NULL)
		t = strstr(t, "): ") + 3;
	return t;
}

/* Authentication and TLS from [nats]; -1 after logging what failed. */
static int
natsconn_auth(natsOptions *opts, const struct config *c)
{
	char secret[SECRET_MAX], pub[NKEY_PUBLIC_LEN + 1];
	natsStatus s = NATS_OK;
	const char *key = NULL, *file = NULL;

	if (*c->nats_user != '\0') {
		if (natsconn_read_secret("password_file", c->password_file, secret, sizeof(secret)) == -1)
			return -1;
		s = natsOptions_SetUserInfo(opts, c->nats_user, secret);
		explicit_bzero(secret, sizeof(secret));
		key = "password_file", file = c->password_file;
	} else if (*c->token_file != '\0') {
		if (natsconn_read_secret("token_file", c->token_file, secret, sizeof(secret)) == -1)
			return -1;
		s = natsOptions_SetToken(opts, secret);
		explicit_bzero(secret, sizeof(secret));
		key = "token_file", file = c->token_file;
	} else if (*c->nkey_seed_file != '\0') {
		char why[128];

		if (natsconn_read_secret("nkey_seed_file", c->nkey_seed_file, secret, sizeof(secret)) == -1)
			return -1;
		if (nkey_public_from_seed(secret, pub, why, sizeof(why)) == -1) {
			explicit_bzero(secret, sizeof(secret));
			log_errorx("[nats] nkey_seed_file: \"%s\": %s", c->nkey_seed_file, why);
			return -1;
		}
		explicit_bzero(secret, sizeof(secret));
		/* cnats reads the seed from the file itself each time it signs. */
		s = natsOptions_SetNKeyFromSeed(opts, pub, c->nkey_seed_file);
		key = "nkey_seed_file", file = c->nkey_seed_file;
	} else if (*c->creds_file != '\0') {
		s = natsOptions_SetUserCredentialsFromFiles(opts, c->creds_file, NULL);
		key = "creds_file", file = c->creds_file;
	}
	if (s != NATS_OK) {
		log_errorx("[nats] %s: \"%s\": %s", key, file, natsconn_why(s));
		return -1;
	}
	/*
	 * cnats 3.4.1 talks plain text to a server that does not offer TLS even
	 * for a tls:// URL given through SetServers: make the scheme mean TLS.
	 */
	if ((c->tls_required || strstr(c->servers, "tls://") != NULL) &&
	    (s = natsOptions_SetSecure(opts, true)) != NATS_OK) {
		log_errorx("[nats] tls_required: %s", natsconn_why(s));
		return -1;
	}
	if (*c->tls_ca_file != '\0' &&
	    (s = natsOptions_LoadCATrustedCertificates(opts, c->tls_ca_file)) != NATS_OK) {
		log_errorx("[nats] tls_ca_file: loading \"%s\": %s", c->tls_ca_file, natsconn_why(s));
		return -1;
	}
	if (*c->tls_cert_file != '\0' &&
	    (s = natsOptions_LoadCertificatesChain(opts, c->tls_cert_file, c->tls_key_file)) != NATS_OK) {
		log_errorx("[nats] tls_cert_file, tls_key_file: loading \"%s\" and \"%s\": %s",
		    c->tls_cert_file, c->tls_key_file, natsconn_why(s));
		return -1;
	}
	return 0;
}

static natsStatus
natsconn_options(natsOptions **opts, const struct natsconn_opts *o, char *list, bool retry)
{
	const char *urls[NATSCONN_MAX_SERVERS];
	int n = natsconn_split(list, urls, NATSCONN_MAX_SERVERS);
	natsStatus s;

	if (n == 0)
		return NATS_INVALID_ARG;
	s = natsOptions_Create(opts);
	if (s == NATS_OK) s = natsOptions_SetServers(*opts, urls, n);
	/* "alarm-digest/1.0.0 worker 3": the server's connz shows who and which release. */
	char name[128];
	snprintf(name, sizeof(name), "alarm-digest/%s %s", ALARM_DIGEST_VERSION, o->name);
	if (s == NATS_OK) s = natsOptions_SetName(*opts, name);
	if (s == NATS_OK) s = natsOptions_SetMaxReconnect(*opts, -1);
	if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(*opts, natsconn_reconnect_delay, NULL);
	/* Enough to ride out a broker restart under load without dropping publishes. */
	if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(*opts, 64 << 20);
	if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(*opts, 1 << 20);
	/* With a callback the first connect is asynchronous; without one it would retry forever inside Connect. */
	if (s == NATS_OK && retry)
		s = natsOptions_SetRetryOnFailedConnect(*opts, true, natsconn_on_connected, NULL);
	if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(*opts, natsconn_on_disconnected, NULL);
	if (s == NATS_OK) s = natsOptions_SetClosedCB(*opts, natsconn_on_closed, NULL);
	if (s == NATS_OK) s = natsOptions_SetErrorHandler(*opts, natsconn_on_error, NULL);
	if (s == NATS_OK && o->reconnected_cb != NULL)
		s = natsOptions_SetReconnectedCB(*opts, o->reconnected_cb, o->closure);
	if (s == NATS_OK && o->global_delivery)
		s = natsOptions_UseGlobalMessageDelivery(*opts, true);
	return s;
}

/* Errors a retry cannot fix: the server is there but refuses us, or we refuse it. */
static bool
natsconn_fatal(natsStatus s)
{
	return s == NATS_CONNECTION_AUTH_FAILED || s == NATS_SSL_ERROR ||
	    s == NATS_SECURE_CONNECTION_REQUIRED || s == NATS_SECURE_CONNECTION_WANTED ||
	    s == NATS_NOT_PERMITTED || s == NATS_ERR || s == NATS_PROTOCOL_ERROR;
}

static const char *
natsconn_fatal_hint(natsStatus s)
{
	switch (s) {
	case NATS_CONNECTION_AUTH_FAILED:
		return "the server rejected our credentials (check [nats] user/password_file, "
		    "token_file, nkey_seed_file or creds_file)";
	case NATS_SSL_ERROR:
		return "TLS failed (is the server's certificate signed by [nats] tls_ca_file, "
		    "and for this host?)";
	case NATS_SECURE_CONNECTION_REQUIRED:
		return "the server requires TLS";
	case NATS_SECURE_CONNECTION_WANTED:
		return "TLS is required ([nats] tls_required = yes or a tls:// URL) but the "
		    "server does not offer it";
	default:
		return "could not log in";
	}
}

/* cnats 3.4.1's stray refusals (natsconn.h): this many connects before one is believed. */
#define NATSCONN_AUTH_TRIES 3

natsStatus
natsconn_connect_once(natsConnection **nc, natsOptions *opts)
{
	natsStatus s;

	for (int tries = 1;; tries++) {
		s = natsConnection_Connect(nc, opts);
		if ((s != NATS_CONNECTION_AUTH_FAILED && s != NATS_NOT_PERMITTED) ||
		    tries == NATSCONN_AUTH_TRIES)
			return s;
		nanosleep(&(struct timespec){ 0, 250 * 1000000 }, NULL);
	}
}

/*
 * Connect once synchronously per attempt: a server that is down is waited
 * for, but an answer that says "not you" ends the wait with one line.
 */
static natsConnection *
natsconn_wait(const struct natsconn_opts *o, natsOptions *opts)
{
	natsConnection *nc = NULL;
	natsStatus s;

	for (int64_t waited_ms = 0;; waited_ms += 250) {
		s = natsconn_connect_once(&nc, opts);
		if (s == NATS_OK) {
			natsconn_log_connected(nc);
			return nc;
		}
		if (natsconn_fatal(s)) {
			log_errorx("connecting to NATS at %s: %s: %s", natsconn_where,
			    natsconn_fatal_hint(s), natsconn_why(s));
			return NULL;
		}
		if (o->stop != NULL && o->stop(o->stop_arg))
			return NULL;
		if (waited_ms % 5000 == 0)
			log_warnx("waiting for NATS at %s (%s)", natsconn_where, natsconn_why(s));
		nanosleep(&(struct timespec){ 0, 250 * 1000000 }, NULL);
	}
}

natsConnection *
natsconn_connect(const struct natsconn_opts *o)
{
	natsConnection *nc = NULL;
	natsOptions *opts = NULL;
	char *list;
	natsStatus s;

	config_redact_servers(o->servers, natsconn_where, sizeof(natsconn_where));
	if ((list = strdup(o->servers)) == NULL) {
		log_error("natsconn: strdup");
		return NULL;
	}
	s = natsconn_options(&opts, o, list, !o->wait_connected);
	if (s == NATS_OK && o->cfg != NULL && natsconn_auth(opts, o->cfg) == -1) {
		natsOptions_Destroy(opts);
		free(list);
		return NULL;
	}
	if (s == NATS_OK && o->wait_connected) {
		nc = natsconn_wait(o, opts);
		natsOptions_Destroy(opts);
		free(list);
		return nc;
	}
	if (s == NATS_OK) {
		s = natsconn_connect_once(&nc, opts);
		if (s == NATS_NOT_YET_CONNECTED)
			s = NATS_OK;
	}
	natsOptions_Destroy(opts);
	free(list);
	if (s != NATS_OK) {
		log_errorx("connecting to NATS at %s: %s", natsconn_where, natsconn_why(s));
		natsConnection_Destroy(nc);
		return NULL;
	}
	return nc;
}

void
natsconn_close(natsConnection *nc)
{
	atomic_store(&natsconn_closing, true);
	natsConnection_Destroy(nc);
}

static void
natsconn_warn_file(const char *what, const char *path, const char *why)
{
	struct stat st;

	if (*path == '\0' || stat(path, &st) == -1 || (st.st_mode & 0004) == 0)
		return;
	log_warnx("%s \"%s\" %s and is readable by every user (mode %03o): chmod o-r it",
	    what, path, why, (unsigned)(st.st_mode & 0777));
}

void
natsconn_warn_exposed(const struct config *c)
{
	if (config_servers_have_userinfo(c->servers))
		natsconn_warn_file("configuration file", c->path,
		    "holds credentials in [nats] servers");
	natsconn_warn_file("[nats] password_file", c->password_file, "holds a secret");
	natsconn_warn_file("[nats] token_file", c->token_file, "holds a secret");
	natsconn_warn_file("[nats] nkey_seed_file", c->nkey_seed_file, "holds a secret");
	natsconn_warn_file("[nats] creds_file", c->creds_file, "holds a secret");
	natsconn_warn_file("[nats] tls_key_file", c->tls_key_file, "holds a secret");
}

void
natsconn_log_js_error(const char *what, const char *name, natsStatus s, int jerr, const char *servers)
{
	char shown[1024];

	if (servers != NULL) {
		config_redact_servers(servers, shown, sizeof(shown));
		servers = shown;
	}
	if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) {
		log_errorx("%s %s: JetStream is not enabled on the NATS server%s%s: "
		    "start nats-server with -js (or jetstream {} in its config), or set [nats] intake = core",
		    what, name, servers ? " at " : "", servers ? servers : "");
		return;
	}
	log_errorx("%s %s: %s (JetStream error %d)%s", what, name,
	    nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), jerr,
	    s == NATS_TIMEOUT ? ": the server did not answer in time" : "");
}
