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

/* The last callback cnats runs for a connection: after it, ev may be freed. */
static void
on_closed(natsConnection *nc, void *arg)
{
	struct conn_events *ev = arg;

	(void)nc;
	atomic_store(&ev->closed, 1);
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
	if (s == NATS_OK && ev != NULL)
		s = natsOptions_SetClosedCB(o, on_closed, ev);
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

void
pub_close(natsConnection *nc, struct conn_events *ev)
{
	int64_t until = harness_now_ms() + 5000;

	if (nc == NULL)
		return;
	natsConnection_Close(nc);
	/*
	 * cnats runs the disconnected and closed callbacks on its own thread
	 * after Close returns; ev (often inside the caller's frame or a struct
	 * about to be freed) must outlive them.
	 */
	while (ev != NULL && atomic_load(&ev->closed) == 0 && harness_now_ms() < until)
		harness_sleep_ms(5);
	natsConnection_Destroy(nc);
}
