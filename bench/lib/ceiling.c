#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tests/lib/harness.h"
#include "ceiling.h"
#include "pub.h"
#include "sink.h"
#include "svc.h"

static const char *const subjects[2] = { LOAD_SUBJECT_STATUS, LOAD_SUBJECT_REQUEST };

/* Wait until the counting sink has target messages, or nothing arrives for stall_seconds. */
static void
csink_wait(struct csink *c, size_t target, int stall_seconds)
{
	int64_t last_change = harness_now_ms();
	size_t seen = 0;

	while (atomic_load(&c->count) < target) {
		size_t now = atomic_load(&c->count);

		if (now != seen) {
			seen = now;
			last_change = harness_now_ms();
		} else if (harness_now_ms() - last_change > (int64_t)stall_seconds * 1000) {
			return;
		}
		harness_sleep_ms(2);
	}
}

static void
ceiling_finish(struct ceiling *out, struct csink *c, const struct harness_nats *nats, size_t sent,
    int64_t t0)
{
	struct logscan ls;

	out->ran = true;
	out->sent = sent;
	out->received = atomic_load(&c->count);
	out->complete = out->received >= sent;
	out->seconds = (double)(atomic_load(&c->last_ns) - t0) / 1e9;
	out->rate = out->seconds > 0 ? (double)out->received / out->seconds : 0;
	out->dropped = csink_dropped(c);
	out->disconnects = atomic_load(&c->ev.disconnects);
	/* The broker's word, not the subscriber's, on what it dropped. */
	svc_scan_log(nats->log, "Slow Consumer Detected", NULL, &ls);
	out->broker_slow = ls.error;
}

int
ceiling_core(const struct burst *b, const struct ceiling_opts *o, struct ceiling *out)
{
	struct harness_nats nats;
	struct csink c = { 0 };
	natsConnection *pub = NULL;
	char dir[PATH_MAX];
	int64_t t0, tend;
	int rc = -1;

	memset(&nats, 0, sizeof(nats));
	if (harness_tmpdir("bench-ceil-core", dir, sizeof(dir)) == -1)
		return -1;
	if (harness_nats_start(&nats, dir) == -1)
		goto out;
	if (csink_open(&c, nats.url, subjects, 2, 0, b->n, true, NULL, 0) == -1)
		goto out;
	if ((pub = pub_connect(nats.url, "bench-agents", false, NULL)) == NULL)
		goto out;
	if (pub_burst(pub, b, NULL, 0, &t0, &tend) == -1)
		goto out;
	csink_wait(&c, b->n, o->stall_seconds);
	ceiling_finish(out, &c, &nats, b->n, t0);
	rc = 0;
out:
	natsConnection_Destroy(pub);
	csink_close(&c);
	(void)harness_nats_stop(&nats);
	(void)harness_tmpdir_remove(dir);
	return rc;
}

/* Paced traffic for (b): the burst's messages, cycled. */
struct ceil_pace {
	const struct burst *b;
	size_t next_update, next_request;
	int64_t *pub_ns;
	size_t npub, cap;
};

static int
ceil_next(void *arg, size_t i, bool request, struct gen_msg *out)
{
	struct ceil_pace *cp = arg;
	const struct msgref *r;

	(void)i;
	memset(out, 0, sizeof(*out));
	/* A burst holds its updates first, then its requests. */
	if (request && cp->b->requests > 0) {
		r = &cp->b->m[cp->b->updates + cp->next_request++ % cp->b->requests];
		out->request = out->expects = true;
	} else {
		r = &cp->b->m[cp->next_update++ % cp->b->updates];
	}
	out->subject = burst_subject(r);
	out->data = cp->b->arena + r->off;
	out->len = r->len;
	return 0;
}

static int
ceil_sent(void *arg, const struct gen_msg *g, int64_t ns)
{
	struct ceil_pace *cp = arg;

	if (g->request && cp->npub < cp->cap)
		cp->pub_ns[cp->npub++] = ns;
	return 0;
}

/* A stream and a push consumer as the service sets them up (file storage, limits retention). */
static int
js_setup(natsConnection *nc, const struct ceiling_opts *o, const char *deliver)
{
	jsConsumerConfig cc;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	jsCtx *js = NULL;
	natsStatus s;
	int rc = -1;

	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK) {
		harness_seterr("JetStream context: %s", natsStatus_GetText(s));
		return -1;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH";
	sc.Subjects = (const char **)subjects;
	sc.SubjectsLen = 2;
	sc.Storage = js_FileStorage;
	sc.Retention = js_LimitsPolicy;
	if ((s = js_AddStream(NULL, js, &sc, NULL, &jerr)) != NATS_OK) {
		harness_seterr("create stream BENCH: %s (jetstream error %d)", natsStatus_GetText(s),
		    (int)jerr);
		goto out;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = "bench";
	cc.DeliverSubject = deliver;
	cc.AckPolicy = o->ack_every == 1 ? js_AckExplicit : js_AckAll;
	cc.AckWait = (int64_t)60 * 1000000000;
	cc.MaxAckPending = 65536;      /* the service's default max_ack_pending */
	cc.DeliverPolicy = js_DeliverAll;
	if ((s = js_AddConsumer(NULL, js, "BENCH", &cc, NULL, &jerr)) != NATS_OK) {
		harness_seterr("create consumer: %s (jetstream error %d)", natsStatus_GetText(s), (int)jerr);
		goto out;
	}
	rc = 0;
out:
	jsCtx_Destroy(js);
	return rc;
}

int
ceiling_js(const struct burst *b, const struct ceiling_opts *o, double rate, struct ceiling *out)
{
	static const char *const deliver[1] = { "_BENCH.deliver" };
	size_t total = rate > 0 ? (size_t)(rate * o->rate_seconds) : b->n;
	size_t timed_cap = rate > 0 ? total / (size_t)o->req_every + 1 : 0;
	struct ceil_pace cp = { .b = b };
	struct harness_nats nats;
	struct csink c = { 0 };
	natsConnection *pub = NULL;
	char dir[PATH_MAX];
	int64_t t0, tend;
	int rc = -1;

	memset(&nats, 0, sizeof(nats));
	if (harness_tmpdir("bench-ceil-js", dir, sizeof(dir)) == -1)
		return -1;
	if (harness_nats_start(&nats, dir) == -1)
		goto out;
	if ((pub = pub_connect(nats.url, "bench-agents", false, NULL)) == NULL)
		goto out;
	/* Subscribed before the consumer exists: it pushes from the first message. */
	if (csink_open(&c, nats.url, deliver, 1, o->ack_every, total, false,
	    rate > 0 ? LOAD_SUBJECT_REQUEST : NULL, timed_cap) == -1)
		goto out;
	if (js_setup(pub, o, deliver[0]) == -1)
		goto out;
	if (rate <= 0) {
		if (pub_burst(pub, b, NULL, 0, &t0, &tend) == -1)
			goto out;
		csink_wait(&c, b->n, o->stall_seconds);
		ceiling_finish(out, &c, &nats, b->n, t0);
		rc = 0;
		goto out;
	}
	struct pacer pc = { pub, rate, o->rate_seconds, o->req_every, ceil_next, ceil_sent, NULL, &cp };
	cp.cap = timed_cap;
	if ((cp.pub_ns = calloc(cp.cap, sizeof(*cp.pub_ns))) == NULL) {
		harness_seterr("out of memory for %zu publish times", cp.cap);
		goto out;
	}
	if (pace_run(&pc, &out->paced) == -1)
		goto out;
	csink_wait(&c, total, o->stall_seconds);
	ceiling_finish(out, &c, &nats, total, out->paced.first_ns);
	/* Delivery keeps stream order, so the k-th request delivered is the k-th published. */
	size_t n = atomic_load(&c.timed);
	if (n > cp.npub)
		n = cp.npub;
	for (size_t k = 0; k < n; k++)
		cp.pub_ns[k] = c.timed_ns[k] - cp.pub_ns[k];
	out->lat = lat_summary(cp.pub_ns, n);
	rc = 0;
out:
	free(cp.pub_ns);
	natsConnection_Destroy(pub);
	csink_close(&c);
	(void)harness_nats_stop(&nats);
	(void)harness_tmpdir_remove(dir);
	return rc;
}
