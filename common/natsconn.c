#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "natsconn.h"

#define NATSCONN_MAX_SERVERS 32

static void
natsconn_on_disconnected(natsConnection *nc, void *arg)
{
	(void)arg;
	/* Our own close also reports a disconnect; only a lost connection is news. */
	if (natsConnection_IsClosed(nc))
		return;
	log_warnx("disconnected from NATS; reconnecting (publishes are buffered meanwhile)");
}

static void
natsconn_on_connected(natsConnection *nc, void *arg)
{
	char url[256] = "";

	(void)arg;
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	log_info("connected to NATS at %s", url);
}

static void
natsconn_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	int64_t dropped = 0;

	(void)nc;
	(void)arg;
	if (err == NATS_SLOW_CONSUMER && sub != NULL && natsSubscription_GetDropped(sub, &dropped) == NATS_OK) {
		log_errorx("slow consumer on %s: %lld messages dropped so far (core intake backlog full)",
		    natsSubscription_GetSubject(sub), (long long)dropped);
		return;
	}
	log_warnx("NATS asynchronous error: %s", natsStatus_GetText(err));
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

static natsStatus
natsconn_options(natsOptions **opts, const struct natsconn_opts *o, char *list)
{
	const char *urls[NATSCONN_MAX_SERVERS];
	int n = natsconn_split(list, urls, NATSCONN_MAX_SERVERS);
	natsStatus s;

	if (n == 0)
		return NATS_INVALID_ARG;
	s = natsOptions_Create(opts);
	if (s == NATS_OK) s = natsOptions_SetServers(*opts, urls, n);
	if (s == NATS_OK) s = natsOptions_SetName(*opts, o->name);
	if (s == NATS_OK) s = natsOptions_SetMaxReconnect(*opts, -1);
	if (s == NATS_OK) s = natsOptions_SetReconnectWait(*opts, 250);
	/* Enough to ride out a broker restart under load without dropping publishes. */
	if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(*opts, 64 << 20);
	if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(*opts, 1 << 20);
	/* With a callback the first connect is asynchronous; without one it would retry forever inside Connect. */
	if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(*opts, true, natsconn_on_connected, NULL);
	if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(*opts, natsconn_on_disconnected, NULL);
	if (s == NATS_OK) s = natsOptions_SetErrorHandler(*opts, natsconn_on_error, NULL);
	if (s == NATS_OK && o->reconnected_cb != NULL)
		s = natsOptions_SetReconnectedCB(*opts, o->reconnected_cb, o->closure);
	if (s == NATS_OK && o->global_delivery)
		s = natsOptions_UseGlobalMessageDelivery(*opts, true);
	return s;
}

natsConnection *
natsconn_connect(const struct natsconn_opts *o)
{
	natsConnection *nc = NULL;
	natsOptions *opts = NULL;
	char *list;
	natsStatus s;

	if ((list = strdup(o->servers)) == NULL) {
		log_error("natsconn: strdup");
		return NULL;
	}
	s = natsconn_options(&opts, o, list);
	if (s == NATS_OK) {
		s = natsConnection_Connect(&nc, opts);
		if (s == NATS_NOT_YET_CONNECTED)
			s = NATS_OK;
	}
	natsOptions_Destroy(opts);
	free(list);
	if (s != NATS_OK) {
		log_errorx("connecting to NATS at %s: %s", o->servers, natsStatus_GetText(s));
		natsConnection_Destroy(nc);
		return NULL;
	}
	for (int waited_ms = 0; o->wait_connected; waited_ms += 50) {
		if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
			break;
		if (o->stop != NULL && o->stop(o->stop_arg)) {
			natsConnection_Destroy(nc);
			return NULL;
		}
		if (waited_ms % 5000 == 0)
			log_warnx("waiting for NATS at %s", o->servers);
		nanosleep(&(struct timespec){ 0, 50 * 1000000 }, NULL);
	}
	return nc;
}

void
natsconn_log_js_error(const char *what, const char *name, natsStatus s, int jerr, const char *servers)
{
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
