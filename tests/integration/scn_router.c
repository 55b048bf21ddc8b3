/*
 * router (issue 14, supervisor/router.c) against a real nats-server,
 * without the service: the router runs in this process.
 *
 * Input of many users, malformed messages among them, is routed into the
 * partition stream while the router is stopped and started again, held
 * by a fence, and cut off by closing its connection under it; a new
 * router on a new connection then routes the rest, and more input
 * published meanwhile.  The partition stream must hold every input
 * message exactly once, in input order, each on the subject of its
 * user's partition (fnv1a32(UserID) % P, computed here independently;
 * malformed ones on partition 0, unchanged), and the input must end fully
 * acked by the one router consumer left.  The same once more after the
 * server restarted under a stopped router past the dedup window, and
 * under a routing one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/clock.h"
#include "../../common/config.h"
#include "../../common/natsconn.h"
#include "../../supervisor/jsetup.h"
#include "../../supervisor/router.h"
#include "../lib/cluster.h"
#include "itest.h"

#define RT_PARTITIONS 16
#define RT_USERS 700
#define RT_PART_STREAM "ALARM_PARTITIONS"
#define RT_PART_SUBJECT "alarm_digest.part"
#define RT_CONSUMER_PREFIX "alarm-digest_router_"

struct rt_input {
	char *data;
	size_t len;
	bool request;
	int partition;
};

struct rt {
	char dir[PATH_MAX];
	struct harness_nats nats;
	struct bus *bus;
	struct config cfg;
	bool cfg_loaded;
	struct rt_input *in;
	size_t n, cap;
};

static uint32_t
rt_fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* The i-th input message: mostly valid, every 37th malformed in one of five ways. */
static int
rt_make(struct rt *t, size_t i)
{
	char buf[512], user[32];
	struct rt_input *m;
	static const char *const status[] = { "CLEARED", "WARNING", "CRITICAL" };
	bool malformed = i % 37 == 36;

	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		struct rt_input *p = realloc(t->in, cap * sizeof(*p));
		if (p == NULL) {
			harness_seterr("out of memory");
			return -1;
		}
		t->in = p;
		t->cap = cap;
	}
	m = &t->in[t->n];
	snprintf(user, sizeof(user), "user-%04zu", (i * 7919) % RT_USERS);
	m->request = i % 5 == 4;
	m->partition = (int)(rt_fnv1a(user) % RT_PARTITIONS);
	if (malformed) {
		m->partition = 0;
		switch ((i / 37) % 5) {
		case 0:
			snprintf(buf, sizeof(buf), "{\"UserID\": \"%s\", ", user);
			break;
		case 1:
			snprintf(buf, sizeof(buf), "{\"UserID\": 42}");
			break;
		case 2:
			m->request = false;
			snprintf(buf, sizeof(buf), "{\"AlarmID\":\"a1\",\"UserID\":\"%s\",\"Status\":\"LOUD\","
			    "\"ChangedAt\":\"2021-08-17T15:33:59Z\"}", user);
			break;
		case 3:
			buf[0] = '\0';
			break;
		default:
			snprintf(buf, sizeof(buf), "[\"%s\"]", user);
			break;
		}
	} else if (m->request) {
		snprintf(buf, sizeof(buf), "{\"UserID\":\"%s\"}", user);
	} else {
		snprintf(buf, sizeof(buf), "{\"AlarmID\":\"alarm-%zu\",\"UserID\":\"%s\",\"Status\":\"%s\","
		    "\"ChangedAt\":\"2021-08-17T15:%02zu:%02zuZ\"}", i % 11, user, status[i % 3],
		    (i / 60) % 60, i % 60);
	}
	m->len = strlen(buf);
	if ((m->data = strdup(buf)) == NULL) {
		harness_seterr("out of memory");
		return -1;
	}
	t->n++;
	return 0;
}

static int
rt_publish(struct rt *t, size_t count)
{
	for (size_t k = 0; k < count; k++) {
		struct rt_input *m;

		if (rt_make(t, t->n) == -1)
			return -1;
		m = &t->in[t->n - 1];
		if (bus_publish(t->bus, m->request ? "SendAlarmDigest" : "AlarmStatusChanged", m->data,
		    m->len) == -1)
			return -1;
	}
	return 0;
}

static int
rt_config(struct rt *t, const char *servers, int replicas)
{
	char text[PATH_MAX + 2048], err[512];

	snprintf(text, sizeof(text),
	    "[nats]\nservers = %s\nstream_replicas = %d\nack_wait = 10s\nmax_ack_pending = 20000\n"
	    "[service]\nstate_dir = %s\n"
	    "[cluster]\npartitions = %d\ninstance = itest-router\n",
	    servers, replicas, t->dir, RT_PARTITIONS);
	if (config_parse(text, strlen(text), "router-test", &t->cfg, err, sizeof(err)) == -1) {
		harness_seterr("config: %s", err);
		return -1;
	}
	t->cfg_loaded = true;
	return 0;
}

/* One router on its own connection: what one instance would run. */
struct rt_side {
	natsConnection *nc;
	struct jsetup *js;
	struct router *r;
};

static int
rt_side_open(struct rt *t, struct rt_side *s)
{
	struct natsconn_opts o = {
		.servers = t->cfg.servers,
		.name = "itest-router",
		.wait_connected = true,
	};

	memset(s, 0, sizeof(*s));
	if ((s->nc = natsconn_connect(&o)) == NULL) {
		harness_seterr("connecting to %s", t->cfg.servers);
		return -1;
	}
	if ((s->js = jsetup_open(s->nc, &t->cfg)) == NULL ||
	    jsetup_partition_stream(s->js, &t->cfg) == -1 ||
	    (s->r = router_open(s->nc, s->js, &t->cfg)) == NULL) {
		harness_seterr("jsetup or router_open failed (see the log)");
		return -1;
	}
	return 0;
}

static void
rt_side_close(struct rt_side *s)
{
	router_close(s->r);
	jsetup_close(s->js);
	if (s->nc != NULL)
		natsconn_close(s->nc);
	memset(s, 0, sizeof(*s));
}

/* The copies stored reach n (in this router's count), or the deadline passes. */
static int
rt_wait_routed(struct router *r, uint64_t n, int64_t deadline_ms, struct router_stats *st)
{
	for (;;) {
		router_get_stats(r, st);
		if (st->routed >= n)
			return 0;
		if (harness_now_ms() >= deadline_ms) {
			harness_seterr("router: %" PRIu64 " copies stored, waiting for %" PRIu64 " (received %"
			    PRIu64 ", errors %" PRIu64 ", resets %" PRIu64 ")", st->routed, n, st->received,
			    st->publish_errors, st->resets);
			return -1;
		}
		harness_sleep_ms(2);
	}
}

/* The name of the only router consumer left; -1 when there is not exactly one. */
static int
rt_router_consumer(struct rt *t, char *name, size_t cap)
{
	jsConsumerNamesList *names = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int found = 0;

	if ((s = js_ConsumerNames(&names, bus_js(t->bus), "ALARMS", NULL, &jerr)) != NATS_OK) {
		harness_seterr("consumer names of ALARMS: %s (%d)", natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	for (int i = 0; i < names->Count; i++)
		if (strncmp(names->List[i], RT_CONSUMER_PREFIX, strlen(RT_CONSUMER_PREFIX)) == 0) {
			snprintf(name, cap, "%s", names->List[i]);
			found++;
		}
	jsConsumerNamesList_Destroy(names);
	if (found != 1) {
		harness_seterr("%d router consumers on ALARMS, want exactly 1", found);
		return -1;
	}
	return 0;
}

/*
 * The input fully acked by the router consumer there is: looked up again
 * and again, since a router that starts over replaces its consumer.
 */
static int
rt_wait_acked(struct rt *t, int64_t deadline_ms)
{
	char name[256];

	for (;;) {
		if (rt_router_consumer(t, name, sizeof(name)) == 0 &&
		    bus_wait_acked(t->bus, "ALARMS", name, harness_now_ms() + 500) == 0)
			return 0;
		if (harness_now_ms() >= deadline_ms)
			return -1;
	}
}

/* Every input message once, in input order, on its partition's subject, payload unchanged. */
static int
rt_check_stream(struct rt *t, int64_t created)
{
	uint64_t msgs = 0, last = 0, prev = 0;
	char want[128];
	int rc = -1;

	if (bus_stream_state(t->bus, RT_PART_STREAM, &msgs, &last) == -1)
		return -1;
	if (msgs != t->n || last != t->n) {
		harness_seterr("%s holds %" PRIu64 " copies (last %" PRIu64 "), want %zu", RT_PART_STREAM,
		    msgs, last, t->n);
		return -1;
	}
	for (uint64_t seq = 1; seq <= last; seq++) {
		natsMsg *m = NULL;
		jsErrCode jerr = 0;
		const char *id = NULL;
		const struct rt_input *in;
		unsigned long long in_seq;
		long long c;
		natsStatus s;

		if ((s = js_GetMsg(&m, bus_js(t->bus), RT_PART_STREAM, seq, NULL, &jerr)) != NATS_OK) {
			harness_seterr("message %" PRIu64 " of %s: %s (%d)", seq, RT_PART_STREAM,
			    natsStatus_GetText(s), (int)jerr);
			return -1;
		}
		if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK ||
		    sscanf(id, "%lld-%llu", &c, &in_seq) != 2 || c != created) {
			harness_seterr("copy %" PRIu64 ": Nats-Msg-Id %s, want %" PRId64 "-<input seq>", seq,
			    id != NULL ? id : "missing", created);
			goto out;
		}
		if (in_seq != prev + 1) {
			harness_seterr("copy %" PRIu64 " is of input %llu after input %" PRIu64 ": not once each "
			    "in input order", seq, in_seq, prev);
			goto out;
		}
		prev = in_seq;
		in = &t->in[in_seq - 1];
		snprintf(want, sizeof(want), "%s.%d.%s", RT_PART_SUBJECT, in->partition,
		    in->request ? "request" : "status");
		if (strcmp(natsMsg_GetSubject(m), want) != 0) {
			harness_seterr("copy of input %llu on %s, want %s", in_seq, natsMsg_GetSubject(m), want);
			goto out;
		}
		if ((size_t)natsMsg_GetDataLength(m) != in->len ||
		    (in->len > 0 && memcmp(natsMsg_GetData(m), in->data, in->len) != 0)) {
			harness_seterr("copy of input %llu is not the input's payload", in_seq);
			goto out;
		}
		natsMsg_Destroy(m);
		m = NULL;
		continue;
out:
		natsMsg_Destroy(m);
		return rc;
	}
	return 0;
}

/* Stopped and started again: it goes on after its floor; stopped ones leave no consumer behind. */
static int
rt_stop_start(struct rt *t, struct rt_side *a, size_t n)
{
	struct router_stats st;
	char name[256];
	int64_t t0 = harness_now_ms(), dt;

	if (router_start(a->r, 1) == -1) {
		harness_seterr("router_start failed (see the log)");
		return -1;
	}
	if (rt_wait_routed(a->r, n / 5, harness_now_ms() + 60000, &st) == -1)
		return -1;
	dt = harness_now_ms() - t0;
	printf("# router: %" PRIu64 " copies stored in %" PRId64 " ms from a backlog: %.0f msg/s\n",
	    st.routed, dt, dt > 0 ? 1000.0 * (double)st.routed / (double)dt : 0.0);
	router_stop(a->r);
	if (router_start(a->r, 1) == -1) {
		harness_seterr("router_start after router_stop failed (see the log)");
		return -1;
	}
	if (rt_router_consumer(t, name, sizeof(name)) == -1)
		return -1;
	if (strcmp(name, RT_CONSUMER_PREFIX "1_2") != 0) {
		harness_seterr("router consumer %s after a restart, want %s", name, RT_CONSUMER_PREFIX "1_2");
		return -1;
	}
	return rt_wait_routed(a->r, 2 * n / 5, harness_now_ms() + 60000, &st);
}

/* Past its fence a router routes and acks nothing; a later fence lets it go on by itself. */
static int
rt_fence(struct rt_side *a)
{
	struct router_stats s1, s2;

	router_stop(a->r);
	router_fence(a->r, clock_mono_ms() - 1);
	if (router_start(a->r, 1) != -1) {
		harness_seterr("router_start past the fence succeeded");
		return -1;
	}
	router_get_stats(a->r, &s1);
	harness_sleep_ms(1500);
	router_get_stats(a->r, &s2);
	if (s2.routed != s1.routed || s2.acked != s1.acked || s2.received != s1.received) {
		harness_seterr("fenced router went on: routed %" PRIu64 " -> %" PRIu64 ", acked %" PRIu64
		    " -> %" PRIu64, s1.routed, s2.routed, s1.acked, s2.acked);
		return -1;
	}
	router_fence(a->r, INT64_MAX);
	return rt_wait_routed(a->r, s2.routed + 100, harness_now_ms() + 60000, &s2);
}

/*
 * The partition stream made beforehand with a 1 s dedup window, so a
 * server restart below comes after its last copy's id has expired: the
 * chain must still pick up (the router never relies on dedup).
 */
static int
rt_short_dedup(struct rt *t)
{
	const char *subjects[1] = { RT_PART_SUBJECT ".>" };
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = RT_PART_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Duplicates = 1000000000;
	if ((s = js_AddStream(NULL, bus_js(t->bus), &sc, NULL, &jerr)) != NATS_OK) {
		harness_seterr("create %s: %s (%d)", RT_PART_STREAM, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	return 0;
}

/*
 * The server restarted while the router is stopped, past the dedup
 * window; then again while it routes.  It goes on, and acks everything.
 */
static int
rt_server_restart(struct rt *t, struct rt_side *b, size_t more)
{
	router_stop(b->r);
	harness_sleep_ms(1500);
	if (harness_nats_restart(&t->nats) == -1)
		return -1;
	if (router_start(b->r, 3) == -1)
		printf("# router: not started at once after the server restart (it retries)\n");
	if (rt_publish(t, more) == -1 || rt_wait_acked(t, harness_now_ms() + 120000) == -1)
		return -1;
	router_stop(b->r);
	if (rt_publish(t, 2 * more) == -1)
		return -1;
	if (router_start(b->r, 4) == -1) {
		harness_seterr("router_start after the first restart failed (see the log)");
		return -1;
	}
	/* Mid-routing: deliveries and confirmations are lost; the router notices and starts again. */
	harness_sleep_ms(50);
	if (harness_nats_restart(&t->nats) == -1)
		return -1;
	return rt_wait_acked(t, harness_now_ms() + 120000);
}

static void
rt_free(struct rt *t)
{
	if (t->cfg_loaded)
		config_free(&t->cfg);
	for (size_t i = 0; i < t->n; i++)
		free(t->in[i].data);
	free(t->in);
	if (t->dir[0] != '\0') {
		if (getenv("ITEST_KEEP") != NULL)
			harness_tmpdir_keep(t->dir);
		else
			harness_tmpdir_remove(t->dir);
	}
}

void
scn_router(void)
{
	struct rt t = { 0 };
	struct rt_side a = { 0 }, b = { 0 };
	struct router_stats st;
	size_t n = (size_t)itest_scaled(8000), more = n / 10;
	int64_t created = 0, t0, dt;

	if (harness_tmpdir("router", t.dir, sizeof(t.dir)) == -1 ||
	    harness_nats_start(&t.nats, t.dir) == -1 || (t.bus = bus_open(t.nats.url, true)) == NULL ||
	    rt_config(&t, t.nats.url, 1) == -1 || rt_short_dedup(&t) == -1 || rt_side_open(&t, &a) == -1 ||
	    jsetup_stream_created(a.js, &created) == -1 || rt_publish(&t, n) == -1) {
		tap_fail("router/setup", "%s", harness_err());
		goto out;
	}
	tap_ok("router/setup");
	tap_report("router/stop_start", rt_stop_start(&t, &a, n));
	tap_report("router/fence", rt_fence(&a));

	/*
	 * Cut off under the router, as a crash would: nothing more acked or
	 * confirmed.  Then a pause before the router is closed: cnats 3.4's
	 * reader thread may still be delivering to the subscription, and
	 * freeing it then crashes that thread (nats.c issue 637).
	 */
	natsConnection_Close(a.nc);
	harness_sleep_ms(500);
	router_get_stats(a.r, &st);
	printf("# router: first router cut off after %" PRIu64 " copies stored, %" PRIu64 " input acked, "
	    "%" PRIu64 " errors, %" PRIu64 " resets\n", st.routed, st.acked, st.publish_errors, st.resets);
	rt_side_close(&a);
	t0 = harness_now_ms();
	if (rt_side_open(&t, &b) == -1 || router_start(b.r, 2) == -1 || rt_publish(&t, more) == -1 ||
	    rt_wait_acked(&t, harness_now_ms() + 120000) == -1) {
		tap_fail("router/takeover", "%s", harness_err());
		goto out;
	}
	dt = harness_now_ms() - t0;
	router_get_stats(b.r, &st);
	printf("# router: the second router stored %" PRIu64 " copies in %" PRId64 " ms (%.0f msg/s, "
	    "%" PRIu64 " of them published while it ran), acked all %zu input messages\n", st.routed, dt,
	    dt > 0 ? 1000.0 * (double)st.routed / (double)dt : 0.0, (uint64_t)more, t.n);
	tap_ok("router/takeover");
	tap_report("router/server_restart", rt_server_restart(&t, &b, more));
	router_get_stats(b.r, &st);
	printf("# router: after the server restarts: %" PRIu64 " copies stored, %" PRIu64 " errors, %"
	    PRIu64 " resets\n", st.routed, st.publish_errors, st.resets);
	tap_report("router/exactly_once_in_order", rt_check_stream(&t, created));
out:
	rt_side_close(&a);
	rt_side_close(&b);
	bus_close(t.bus);
	if (t.nats.proc.pid > 0 && harness_nats_stop(&t.nats) == -1)
		printf("# router: %s\n", harness_err());
	rt_free(&t);
}

/* The partition stream's leader (0-based node), or -1. */
static int
rt_part_leader(struct rt *t)
{
	jsStreamInfo *si = NULL;
	int k = -1;

	if (js_GetStreamInfo(&si, bus_js(t->bus), RT_PART_STREAM, NULL, NULL) != NATS_OK)
		return -1;
	if (si->Cluster != NULL && si->Cluster->Leader != NULL && si->Cluster->Leader[0] == 'n')
		k = atoi(si->Cluster->Leader + 1) - 1;
	jsStreamInfo_Destroy(si);
	return k >= 0 && k < CLUSTER_NODES ? k : -1;
}

/*
 * On a 3-node cluster with R3 streams: the partition stream's leader is
 * stopped while the router routes (copies in flight fail or time out, a
 * new leader is elected), then started again.  Every input message still
 * ends in the partition stream once, in order, and the input fully acked.
 */
void
scn_router_r3(void)
{
	struct rt t = { 0 };
	struct rt_side a = { 0 };
	struct cluster cl;
	struct router_stats st;
	size_t n = (size_t)itest_scaled(4000);
	int64_t created = 0, t0;
	int k = -1;

	memset(&cl, 0, sizeof(cl));
	if (harness_tmpdir("router_r3", t.dir, sizeof(t.dir)) == -1 ||
	    cluster_start(&cl, t.dir, 60000) == -1 || (t.bus = bus_open(cl.urls, true)) == NULL ||
	    rt_config(&t, cl.urls, 3) == -1 || rt_side_open(&t, &a) == -1 ||
	    jsetup_stream_created(a.js, &created) == -1 || rt_publish(&t, n) == -1) {
		tap_fail("router_r3/setup", "%s", harness_err());
		goto out;
	}
	tap_ok("router_r3/setup");
	t0 = harness_now_ms();
	if (router_start(a.r, 1) == -1 || rt_wait_routed(a.r, n / 10, harness_now_ms() + 60000, &st) == -1 ||
	    (k = rt_part_leader(&t)) == -1) {
		tap_fail("router_r3/leader_restart", "%s", k == -1 ? "no partition stream leader found" :
		    harness_err());
		goto out;
	}
	printf("# router_r3: stopping n%d, the partition stream's leader, after %" PRIu64 " copies\n",
	    k + 1, st.routed);
	if (cluster_node_stop(&cl, k) == -1 || (harness_sleep_ms(3000), 0) ||
	    cluster_node_start(&cl, k, 60000) == -1 || rt_wait_acked(&t, harness_now_ms() + 180000) == -1) {
		tap_fail("router_r3/leader_restart", "%s", harness_err());
		goto out;
	}
	router_get_stats(a.r, &st);
	printf("# router_r3: %zu input messages routed and acked in %" PRId64 " ms; %" PRIu64 " copy "
	    "errors, %" PRIu64 " resets\n", t.n, harness_now_ms() - t0, st.publish_errors, st.resets);
	tap_ok("router_r3/leader_restart");
	tap_report("router_r3/exactly_once_in_order", rt_check_stream(&t, created));
out:
	rt_side_close(&a);
	bus_close(t.bus);
	cluster_stop(&cl);
	rt_free(&t);
}
