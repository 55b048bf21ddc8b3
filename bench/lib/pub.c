#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../tests/lib/harness.h"
#include "pub.h"

int64_t
pub_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
on_disconnected(natsConnection *nc, void *arg)
{
	struct conn_events *ev = arg;

	(void)nc;
	atomic_fetch_add(&ev->disconnects, 1);
}

static void
on_reconnected(natsConnection *nc, void *arg)
{
	struct conn_events *ev = arg;

	(void)nc;
	atomic_fetch_add(&ev->reconnects, 1);
}

natsConnection *
pub_connect(const char *url, const char *name, bool global_delivery, struct conn_events *ev)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	natsStatus s;

	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, url);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, name);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 5000);
	/* Fewer, larger writes: the publisher should not be what is measured. */
	if (s == NATS_OK)
		s = natsOptions_SetIOBufSize(o, 256 * 1024);
	if (s == NATS_OK && global_delivery)
		s = natsOptions_UseGlobalMessageDelivery(o, true);
	if (s == NATS_OK && ev != NULL)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, ev);
	if (s == NATS_OK && ev != NULL)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, ev);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		harness_seterr("connect %s to %s: %s", name, url, natsStatus_GetText(s));
		return NULL;
	}
	return nc;
}

int
pub_burst(natsConnection *nc, const struct burst *b, struct load *L, int phase,
    int64_t *first_ns, int64_t *end_ns)
{
	natsStatus s = NATS_OK;

	*first_ns = pub_now_ns();
	for (size_t i = 0; i < b->n; i++) {
		const struct msgref *r = &b->m[i];

		s = natsConnection_Publish(nc, burst_subject(r), b->arena + r->off, (int)r->len);
		if (s != NATS_OK) {
			harness_seterr("publish %zu of %zu: %s", i + 1, b->n, natsStatus_GetText(s));
			return -1;
		}
		if (r->kind == MK_REQUEST_DIGEST && L != NULL &&
		    load_mark_request(L, r->user, phase, pub_now_ns()) == -1)
			return -1;
	}
	if ((s = natsConnection_FlushTimeout(nc, 60000)) != NATS_OK) {
		harness_seterr("flush after %zu publishes: %s", b->n, natsStatus_GetText(s));
		return -1;
	}
	*end_ns = pub_now_ns();
	return 0;
}
