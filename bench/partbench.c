/*
 * partbench: the intake-partitioning choice of issue 14, measured on a
 * 3-node JetStream cluster (tests/lib/cluster.c).  Not part of make test.
 *
 *   partbench [-n MESSAGES] [-u USERS] [-i INSTANCES] [-p PARTITIONS] [-r ROUNDS]
 *
 * The same load each time: N status updates of U users, stored in an R3
 * input stream before the clock starts.  I instances (one thread and one
 * connection each, on node k mod 3) own P/I partitions each (partition =
 * FNV-1a(user) mod P).  Measured: from the creation of the consumers to
 * the moment every instance has received every message of its own
 * partitions, and acked what it read.
 *
 *   whole:  every instance has its own durable on the whole input stream
 *           (no filter: the input subjects do not carry the partition),
 *           keeps its partitions' messages and acks the rest unread;
 *   router: one router consumes the input stream, republishes each message
 *           to part.<p> of an R3 partitioned stream with Nats-Msg-Id
 *           in-<input seq> (a router restart cannot duplicate), acks the
 *           input only once the copies are stored; each instance has one
 *           durable per owned partition (nats-server 2.9 takes one filter
 *           subject per consumer).
 *
 * The modes alternate (whole, router, whole, router, ...) on one cluster
 * so machine noise falls on both; every round is printed, then the
 * medians.  Consumers are push, AckAll, acked every ACK_EVERY messages and
 * at the end, as the service's intake does.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "../tests/lib/cluster.h"
#include "../tests/lib/harness.h"

#define ACK_EVERY 256
#define ROUTER_WINDOW 2048
#define MAX_INSTANCES 16
#define MAX_PARTITIONS 64
#define IDLE_TIMEOUT_MS 30000

struct opts {
	int messages, users, instances, partitions, rounds;
};

static struct opts opt = { 20000, 1000, 3, 12, 3 };
static struct cluster cl;

/* ---- load ---- */

static uint32_t
fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* The partition of a payload's user (its "user_id" value); -1 if it has none. */
static int
payload_partition(const char *data, int len)
{
	static const char key[] = "\"user_id\":\"";
	const char *p = memmem(data, (size_t)len, key, sizeof(key) - 1), *end;

	if (p == NULL)
		return -1;
	p += sizeof(key) - 1;
	if ((end = memchr(p, '"', (size_t)(data + len - p))) == NULL)
		return -1;
	return (int)(fnv1a(p, (size_t)(end - p)) % (uint32_t)opt.partitions);
}

static int
owner_of(int part)
{
	return part % opt.instances;
}

static void
payload_make(int i, char *buf, size_t cap)
{
	static const char *st[] = { "WARNING", "CRITICAL", "CLEARED" };

	snprintf(buf, cap, "{\"user_id\":\"user-%05d\",\"alarm_id\":\"alarm-%d\",\"status\":\"%s\","
	    "\"changed_at\":\"2026-11-30T04:%02d:%02d.%03dZ\"}", i % opt.users, i % 7, st[i % 3],
	    (i / 60000) % 60, (i / 1000) % 60, i % 1000);
}

/* ---- JetStream plumbing ---- */

static natsConnection *
connect_node(int node)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsStatus s;

	s = natsOptions_Create(&o);
	if (s == NATS_OK) s = natsOptions_SetURL(o, cl.node[node % CLUSTER_NODES].url);
	if (s == NATS_OK) s = natsOptions_SetTimeout(o, 10000);
	/* Deliveries outrun the thread in bursts: never drop as a slow consumer. */
	if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(o, 1 << 20);
	if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		harness_seterr("connect to node n%d: %s", node % CLUSTER_NODES + 1,
		    natsStatus_GetText(s));
		return NULL;
	}
	return nc;
}

static atomic_int async_errors;

static void
on_pub_err(jsCtx *js, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	(void)pae;
	atomic_fetch_add(&async_errors, 1);
}

static jsCtx *
js_of(natsConnection *nc)
{
	jsOptions jo;
	jsCtx *js = NULL;
	natsStatus s;

	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 4096;
	/* At MaxPending a publish waits for acks; the default 200 ms is too short on busy cores. */
	jo.PublishAsync.StallWait = 10000;
	jo.PublishAsync.ErrHandler = on_pub_err;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
		harness_seterr("JetStream context: %s", natsStatus_GetText(s));
		return NULL;
	}
	return js;
}

static int
stream_fresh(jsCtx *js, const char *name, const char *subject)
{
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;
	const char *subjects[1] = { subject };

	(void)js_DeleteStream(js, name, NULL, &jerr);
	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = 3;
	if ((s = js_AddStream(NULL, js, &sc, NULL, &jerr)) != NATS_OK) {
		harness_seterr("create stream %s (R3): %s (jetstream error %d)", name,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	return 0;
}

/* A push durable, AckAll, delivering to `deliver`; filter may be NULL. */
static int
consumer_add(jsCtx *js, const char *stream, const char *name, const char *filter,
    const char *deliver)
{
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus s;

	jsConsumerConfig_Init(&cc);
	cc.Durable = name;
	cc.DeliverSubject = deliver;
	cc.FilterSubject = filter;
	cc.AckPolicy = js_AckAll;
	cc.AckWait = (int64_t)60 * 1000000000;
	cc.MaxAckPending = 8192;
	cc.DeliverPolicy = js_DeliverAll;
	if ((s = js_AddConsumer(NULL, js, stream, &cc, NULL, &jerr)) != NATS_OK) {
		harness_seterr("create consumer %s on %s: %s (jetstream error %d)", name, stream,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	return 0;
}

/* The stream sequence in a JetStream ack subject ($JS.ACK.<stream>.<consumer>.<n>.<sseq>...). */
static uint64_t
ack_stream_seq(const char *reply)
{
	const char *p = reply;

	for (int dots = 0; p != NULL && dots < 5; dots++)
		if ((p = strchr(p, '.')) != NULL)
			p++;
	return p != NULL ? strtoull(p, NULL, 10) : 0;
}

/* ---- the two modes ---- */

struct worker {
	pthread_t th;
	int id;
	bool router;              /* mode router: the router thread */
	bool whole;               /* mode whole */
	int expect;               /* messages to receive */
	int owned_expect;         /* of them, own partitions' */
	atomic_int got, owned;
	int64_t done_ms;
	bool started;
	char err[256];
	natsConnection *nc;
	natsSubscription *sub;
	jsCtx *js;
};

static int expect_owned[MAX_INSTANCES];

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	natsMsg *last = NULL;
	int since_ack = 0, inflight = 0;
	jsPubOptions po;
	char msgid[48];

	while (atomic_load(&w->got) < w->expect) {
		natsMsg *m = NULL;
		natsStatus s = natsSubscription_NextMsg(&m, w->sub, IDLE_TIMEOUT_MS);
		const char *data;
		int len, part;

		if (s != NATS_OK) {
			snprintf(w->err, sizeof(w->err), "worker %d: %s after %d of %d messages", w->id,
			    natsStatus_GetText(s), atomic_load(&w->got), w->expect);
			natsMsg_Destroy(last);
			return NULL;
		}
		data = natsMsg_GetData(m);
		len = natsMsg_GetDataLength(m);
		part = payload_partition(data, len);
		if (w->router) {
			/* The copy, keyed by the input sequence: a router that crashes and reads it again stores it once. */
			jsPubOptions_Init(&po);
			snprintf(msgid, sizeof(msgid), "in-%" PRIu64, ack_stream_seq(natsMsg_GetReply(m)));
			po.MsgId = msgid;
			char subj[32];
			snprintf(subj, sizeof(subj), "part.%d", part < 0 ? 0 : part);
			if ((s = js_PublishAsync(w->js, subj, data, len, &po)) != NATS_OK) {
				snprintf(w->err, sizeof(w->err), "router: publish to %s: %s", subj,
				    natsStatus_GetText(s));
				natsMsg_Destroy(m);
				natsMsg_Destroy(last);
				return NULL;
			}
			inflight++;
		} else if (part >= 0 && owner_of(part) == w->id) {
			atomic_fetch_add(&w->owned, 1);
		}
		natsMsg_Destroy(last);
		last = m;
		atomic_fetch_add(&w->got, 1);
		if (++since_ack >= (w->router ? ROUTER_WINDOW : ACK_EVERY) ||
		    atomic_load(&w->got) == w->expect) {
			/* The router acks its input only once every copy so far is stored. */
			if (w->router && inflight > 0 &&
			    (s = js_PublishAsyncComplete(w->js, NULL)) != NATS_OK) {
				snprintf(w->err, sizeof(w->err), "router: waiting for copies: %s",
				    natsStatus_GetText(s));
				break;
			}
			inflight = 0;
			natsConnection_PublishString(w->nc, natsMsg_GetReply(last), "+ACK");
			since_ack = 0;
		}
	}
	natsMsg_Destroy(last);
	natsConnection_Flush(w->nc);
	w->done_ms = harness_now_ms();
	return NULL;
}

/* One measurement; *rate = messages per second of the whole input. */
static int
run_mode(bool router, double *rate, double *router_rate, double *load_rate)
{
	struct worker w[MAX_INSTANCES * MAX_PARTITIONS + 1];
	int nw = 0, rc = -1;
	natsConnection *admin = connect_node(0);
	jsCtx *js = admin != NULL ? js_of(admin) : NULL;
	char name[64], deliver[64], filter[64];
	int64_t t0, end = 0;

	memset(w, 0, sizeof(w));
	atomic_store(&async_errors, 0);
	if (js == NULL || stream_fresh(js, "PB_IN", "pbin.>") == -1 ||
	    stream_fresh(js, "PB_PARTS", "part.>") == -1)
		goto out;
	if (router) {
		w[nw].router = true;
		w[nw].expect = opt.messages;
		nw++;
		for (int p = 0; p < opt.partitions; p++) {
			w[nw].id = owner_of(p);
			w[nw].expect = 0;     /* set below, per partition */
			nw++;
		}
	} else {
		for (int i = 0; i < opt.instances; i++) {
			w[nw].id = i;
			w[nw].whole = true;
			w[nw].expect = opt.messages;
			nw++;
		}
	}
	/* Per-partition counts for the router's consumers. */
	if (router) {
		int per[MAX_PARTITIONS] = { 0 };

		for (int i = 0; i < opt.messages; i++) {
			char buf[256];

			payload_make(i, buf, sizeof(buf));
			per[payload_partition(buf, (int)strlen(buf))]++;
		}
		for (int p = 0; p < opt.partitions; p++)
			w[1 + p].expect = per[p];
	}
	/*
	 * Consumers first, while nobody listens: a push consumer delivers
	 * nothing without interest, so creating them (R3, one at a time, which
	 * takes a while) stays off the clock.
	 */
	for (int k = 0; k < nw; k++) {
		snprintf(deliver, sizeof(deliver), "pb.deliver.%d", k);
		snprintf(name, sizeof(name), "pb-%d", k);
		if (w[k].router || w[k].whole) {
			if (consumer_add(js, "PB_IN", name, NULL, deliver) == -1)
				goto out;
		} else {
			snprintf(filter, sizeof(filter), "part.%d", k - 1);
			if (consumer_add(js, "PB_PARTS", name, filter, deliver) == -1)
				goto out;
		}
	}
	/* The load, stored before the clock starts (its rate: the R3 publish ceiling). */
	t0 = harness_now_ms();
	for (int i = 0; i < opt.messages; i++) {
		char buf[256];

		payload_make(i, buf, sizeof(buf));
		if (js_PublishAsync(js, "pbin.status", buf, (int)strlen(buf), NULL) != NATS_OK) {
			harness_seterr("publishing the load (message %d)", i);
			goto out;
		}
	}
	if (js_PublishAsyncComplete(js, NULL) != NATS_OK || atomic_load(&async_errors) > 0) {
		harness_seterr("the load was not all stored (%d errors)", atomic_load(&async_errors));
		goto out;
	}
	*load_rate = opt.messages * 1000.0 / (double)(harness_now_ms() - t0);
	/* The clock: subscribing is what starts the deliveries. */
	t0 = harness_now_ms();
	for (int k = 0; k < nw; k++) {
		natsStatus s;

		w[k].err[0] = '\0';
		/* Instance i on node i mod 3; the router on node 0. */
		if ((w[k].nc = connect_node(w[k].router ? 0 : w[k].id)) == NULL)
			goto out_join;
		if (w[k].router && (w[k].js = js_of(w[k].nc)) == NULL)
			goto out_join;
		snprintf(deliver, sizeof(deliver), "pb.deliver.%d", k);
		if ((s = natsConnection_SubscribeSync(&w[k].sub, w[k].nc, deliver)) != NATS_OK ||
		    (s = natsSubscription_SetPendingLimits(w[k].sub, -1, -1)) != NATS_OK ||
		    (s = natsConnection_Flush(w[k].nc)) != NATS_OK) {
			harness_seterr("subscribe %s: %s", deliver, natsStatus_GetText(s));
			goto out_join;
		}
		if (w[k].expect > 0 && pthread_create(&w[k].th, NULL, worker_main, &w[k]) != 0) {
			harness_seterr("pthread_create");
			goto out_join;
		}
		w[k].started = true;
	}
	rc = 0;
	/* A failure above still joins the threads it started (they end within IDLE_TIMEOUT_MS). */
out_join:
	for (int k = 0; k < nw; k++) {
		if (w[k].expect == 0 || !w[k].started)
			continue;
		pthread_join(w[k].th, NULL);
		if (w[k].err[0] != '\0') {
			harness_seterr("%s", w[k].err);
			rc = -1;
		}
		if (w[k].done_ms > end && !w[k].router)
			end = w[k].done_ms;
		if (w[k].router)
			*router_rate = opt.messages * 1000.0 / (double)(w[k].done_ms - t0);
	}
	if (rc == 0 && !router)
		for (int k = 0; k < nw; k++)
			if (atomic_load(&w[k].owned) != expect_owned[w[k].id]) {
				harness_seterr("instance %d kept %d messages, want %d", w[k].id,
				    atomic_load(&w[k].owned), expect_owned[w[k].id]);
				rc = -1;
			}
	if (rc == 0 && atomic_load(&async_errors) > 0) {
		harness_seterr("%d copies were not stored", atomic_load(&async_errors));
		rc = -1;
	}
	if (rc == 0)
		*rate = opt.messages * 1000.0 / (double)(end - t0);
out:
	for (int k = 0; k < nw; k++) {
		natsSubscription_Destroy(w[k].sub);
		jsCtx_Destroy(w[k].js);
		natsConnection_Destroy(w[k].nc);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(admin);
	return rc;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
on_abort(const char *why)
{
	(void)write(2, "partbench: ", 11);
	(void)write(2, why, strlen(why));
	(void)write(2, "\n", 1);
}

static void
on_stray(int sig, const char *who)
{
	(void)sig;
	(void)who;
}

int
main(int argc, char **argv)
{
	double whole[32], router[32], rrate[32], load[64], dummy;
	char dir[PATH_MAX];
	int c, rc = 2;

	while ((c = getopt(argc, argv, "n:u:i:p:r:")) != -1) {
		switch (c) {
		case 'n': opt.messages = atoi(optarg); break;
		case 'u': opt.users = atoi(optarg); break;
		case 'i': opt.instances = atoi(optarg); break;
		case 'p': opt.partitions = atoi(optarg); break;
		case 'r': opt.rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: partbench [-n MESSAGES] [-u USERS] [-i INSTANCES] "
			    "[-p PARTITIONS] [-r ROUNDS]\n");
			return 2;
		}
	}
	if (opt.messages < 1 || opt.users < 1 || opt.instances < 1 ||
	    opt.instances > MAX_INSTANCES || opt.partitions < opt.instances ||
	    opt.partitions > MAX_PARTITIONS || opt.rounds < 1 || opt.rounds > 32) {
		fprintf(stderr, "partbench: bad sizes (1 <= instances <= partitions <= %d, "
		    "rounds <= 32)\n", MAX_PARTITIONS);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (harness_init((int64_t)(120 + 60 * opt.rounds) * 1000, on_abort, on_stray) == -1 ||
	    harness_tmpdir("partbench", dir, sizeof(dir)) == -1 ||
	    cluster_start(&cl, dir, 60000) == -1) {
		fprintf(stderr, "partbench: %s\n", harness_err());
		goto out;
	}
	for (int i = 0; i < opt.messages; i++) {
		char buf[256];

		payload_make(i, buf, sizeof(buf));
		expect_owned[owner_of(payload_partition(buf, (int)strlen(buf)))]++;
	}
	printf("# partbench: %d messages, %d users, %d instances, %d partitions, 3-node cluster, "
	    "R3 streams\n", opt.messages, opt.users, opt.instances, opt.partitions);
	for (int r = 0; r < opt.rounds; r++) {
		if (run_mode(false, &whole[r], &dummy, &load[2 * r]) == -1) {
			fprintf(stderr, "partbench: round %d, whole: %s\n", r + 1, harness_err());
			goto out;
		}
		if (run_mode(true, &router[r], &rrate[r], &load[2 * r + 1]) == -1) {
			fprintf(stderr, "partbench: round %d, router: %s\n", r + 1, harness_err());
			goto out;
		}
		printf("round %d: whole %.0f msg/s, router %.0f msg/s (router alone %.0f msg/s; "
		    "loading the R3 input: %.0f and %.0f msg/s)\n", r + 1, whole[r], router[r],
		    rrate[r], load[2 * r], load[2 * r + 1]);
	}
	qsort(whole, (size_t)opt.rounds, sizeof(double), cmp_double);
	qsort(router, (size_t)opt.rounds, sizeof(double), cmp_double);
	printf("median: whole %.0f msg/s, router %.0f msg/s\n", whole[opt.rounds / 2],
	    router[opt.rounds / 2]);
	rc = 0;
out:
	cluster_stop(&cl);
	harness_fini();
	nats_CloseAndWait(5000);
	return rc;
}
