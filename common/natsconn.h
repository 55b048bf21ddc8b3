/*
 * natsconn: how every process of the service connects to NATS, so the
 * supervisor and the workers reconnect and report errors the same way.
 */
#ifndef NATSCONN_H
#define NATSCONN_H

#include <stdbool.h>

#include <nats/nats.h>

struct config;

struct natsconn_opts {
	const char *servers;          /* comma-separated URLs */
	const struct config *cfg;     /* [nats] authentication and TLS; NULL = none */
	const char *name;             /* role: the server shows "alarm-digest/VERSION <name>" */
	bool global_delivery;         /* one shared delivery thread for all subscriptions */
	natsConnectionHandler reconnected_cb;
	void *closure;
	/*
	 * Block until connected (retrying, logging every few seconds), or until
	 * stop(stop_arg) returns true.  Otherwise return at once and let cnats
	 * connect in the background; publishes are buffered meanwhile.
	 */
	bool wait_connected;
	bool (*stop)(void *arg);
	void *stop_arg;
};

/*
 * NULL on error (logged).  Reconnects forever once connected.  With
 * wait_connected, a refused or unreachable server is waited for, but a
 * server that rejects our credentials or whose certificate we do not trust
 * is an error at once: waiting would not fix it.
 */
natsConnection *natsconn_connect(const struct natsconn_opts *o);

/*
 * natsConnection_Connect, but a refusal of our credentials is believed on
 * the third in a row, 250 ms apart.  cnats 3.4.1 now and then sends its
 * CONNECT without the signature of the server's nonce (nats-server 2.9.10
 * logs "Signature missing"): 2 of 500 connects with one valid creds file
 * were refused that way, and 4 of 300 runs of the security_creds test.
 */
natsStatus natsconn_connect_once(natsConnection **nc, natsOptions *opts);

/* Close and free; a close we asked for is never mistaken for one cnats gave up on. */
void natsconn_close(natsConnection *nc);

/* Log a failed JetStream API call, naming the likely fix for the usual causes. */
void natsconn_log_js_error(const char *what, const char *name, natsStatus s, int jerr,
    const char *servers);

/*
 * Warn about secrets other users can read: a config file with a password
 * in a servers URL, or a secret file, readable by others.
 */
void natsconn_warn_exposed(const struct config *c);

#endif
