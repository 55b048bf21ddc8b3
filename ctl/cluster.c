/*
 * alarmctl partitions: who holds which partition, the router and the
 * membership, read from the lease bucket (supervisor/lease.h says what
 * the keys mean, common/leasekv.h how values look).  One watcher over the
 * bucket gives every live key once; nothing is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <nats/nats.h>

#include "../common/clock.h"
#include "../common/config.h"
#include "../common/leasekv.h"
#include "../common/natsconn.h"
#include "cluster.h"

#define CLUSTER_CONNECT_MS 10000
#define CLUSTER_WAIT_MS 5000        /* for the bucket's keys */

/* One holder as a key's value says. */
struct holder {
	char instance[CONFIG_INSTANCE_MAX + 1];   /* "": nobody */
	int64_t since_ms;
	uint64_t epoch;
};

struct view {
	int partitions;
	struct holder *part;
	struct holder router;
	struct holder *member;
	int nmembers, members_cap;
	int unknown;                /* part.<p> keys beyond [cluster] partitions */
};

static int64_t cluster_deadline;

static bool
cluster_connect_stop(void *arg)
{
	(void)arg;
	return clock_mono_ms() >= cluster_deadline;
}

/* A value into h; a value naming no epoch is the acquiring write: its revision is the epoch. */
static void
cluster_holder(kvEntry *e, struct holder *h)
{
	struct leasekv_value v;

	leasekv_parse(kvEntry_Value(e), kvEntry_ValueLen(e), &v);
	snprintf(h->instance, sizeof(h->instance), "%s", v.instance);
	h->since_ms = v.since_ms;
	h->epoch = v.epoch != 0 ? v.epoch : kvEntry_Revision(e);
}

static int
cluster_add_member(struct view *vw, const struct holder *h)
{
	if (vw->nmembers == vw->members_cap) {
		int cap = vw->members_cap == 0 ? 16 : vw->members_cap * 2;
		struct holder *n = realloc(vw->member, (size_t)cap * sizeof(*n));
		if (n == NULL) {
			ctl_err("out of memory for %d members", cap);
			return -1;
		}
		vw->member = n;
		vw->members_cap = cap;
	}
	vw->member[vw->nmembers++] = *h;
	return 0;
}

static int
cluster_apply(struct view *vw, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	struct holder h;
	char *end;

	cluster_holder(e, &h);
	if (strncmp(key, "member.", 7) == 0) {
		/* The key names the member; the value may be older than a rename, the key is not. */
		snprintf(h.instance, sizeof(h.instance), "%s", key + 7);
		return cluster_add_member(vw, &h);
	}
	if (strcmp(key, "router") == 0) {
		vw->router = h;
		return 0;
	}
	if (strncmp(key, "part.", 5) == 0) {
		errno = 0;
		long p = strtol(key + 5, &end, 10);
		if (errno == 0 && *end == '\0' && end != key + 5 && p >= 0 && p < vw->partitions)
			vw->part[p] = h;
		else
			vw->unknown++;
	}
	return 0;
}

/* Every live key of the bucket into vw.  0, or -1 (reported). */
static int
cluster_read(struct ctl *c, struct view *vw)
{
	struct natsconn_opts o = {
		.servers = c->cfg.servers, .cfg = &c->cfg, .name = "alarmctl",
		.wait_connected = true, .stop = cluster_connect_stop,
	};
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	kvWatcher *w = NULL;
	kvWatchOptions wo;
	kvEntry *e;
	char where[1024];
	natsStatus s;
	int rc = -1;

	config_redact_servers(c->cfg.servers, where, sizeof(where));
	cluster_deadline = clock_mono_ms() + CLUSTER_CONNECT_MS;
	if ((nc = natsconn_connect(&o)) == NULL) {
		ctl_err("NATS unreachable at %s: no connection within %d s (a refusal, if that was it, "
		    "is logged above)", where, CLUSTER_CONNECT_MS / 1000);
		return -1;
	}
	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK) {
		ctl_err("JetStream context at %s: %s", where, natsStatus_GetText(s));
		goto out;
	}
	if ((s = js_KeyValue(&kv, js, c->cfg.lease_bucket)) != NATS_OK) {
		if (s == NATS_NOT_FOUND)
			ctl_err("lease bucket %s not found at %s (has a cluster instance run with this "
			    "configuration?)", c->cfg.lease_bucket, where);
		else
			ctl_err("opening lease bucket %s at %s: %s", c->cfg.lease_bucket, where,
			    nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
		goto out;
	}
	kvWatchOptions_Init(&wo);
	wo.IgnoreDeletes = true;
	if ((s = kvStore_WatchAll(&w, kv, &wo)) != NATS_OK) {
		ctl_err("watching lease bucket %s at %s: %s", c->cfg.lease_bucket, where, natsStatus_GetText(s));
		goto out;
	}
	/* The bucket's keys as of now, then a NULL entry. */
	for (;;) {
		if ((s = kvWatcher_Next(&e, w, CLUSTER_WAIT_MS)) != NATS_OK) {
			ctl_err("reading lease bucket %s at %s: %s", c->cfg.lease_bucket, where,
			    natsStatus_GetText(s));
			goto out;
		}
		if (e == NULL)
			break;
		int r = cluster_apply(vw, e);
		kvEntry_Destroy(e);
		if (r == -1)
			goto out;
	}
	rc = 0;
out:
	kvWatcher_Destroy(w);
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	if (nc != NULL)
		natsconn_close(nc);
	return rc;
}

static void
cluster_since(int64_t ms, char *buf, size_t cap)
{
	if (ms <= 0)
		snprintf(buf, cap, "-");
	else
		ctl_time(ms * 1000000, buf, cap);
}

/* partition < 0: not a partition's (the router, a member); epoch only for leases. */
static json_object *
cluster_holder_json(const struct holder *h, int partition, bool with_epoch)
{
	json_object *o = json_object_new_object();
	char when[64];

	if (o == NULL)
		return NULL;
	if (partition >= 0)
		json_object_object_add(o, "partition", json_object_new_int(partition));
	json_object_object_add(o, "instance", h->instance[0] != '\0' ?
	    json_object_new_string(h->instance) : NULL);
	cluster_since(h->since_ms, when, sizeof(when));
	json_object_object_add(o, "since", h->since_ms > 0 ? json_object_new_string(when) : NULL);
	json_object_object_add(o, "since_ms", json_object_new_int64(h->since_ms));
	if (with_epoch)
		json_object_object_add(o, "epoch", h->instance[0] != '\0' ?
		    json_object_new_int64((int64_t)h->epoch) : NULL);
	return o;
}

static int
cluster_print_json(const struct view *vw)
{
	json_object *root = json_object_new_object(), *parts = json_object_new_array();
	json_object *members = json_object_new_array();

	if (root == NULL || parts == NULL || members == NULL) {
		ctl_err("out of memory building the JSON output");
		json_object_put(root);
		json_object_put(parts);
		json_object_put(members);
		return -1;
	}
	for (int p = 0; p < vw->partitions; p++) {
		json_object_array_add(parts, cluster_holder_json(&vw->part[p], p, true));
	}
	for (int i = 0; i < vw->nmembers; i++)
		json_object_array_add(members, cluster_holder_json(&vw->member[i], -1, false));
	json_object_object_add(root, "partitions", parts);
	json_object_object_add(root, "router", vw->router.instance[0] != '\0' ?
	    cluster_holder_json(&vw->router, -1, true) : NULL);
	json_object_object_add(root, "members", members);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return 0;
}

static int
cluster_row(struct ctl_table *t, const char *what, const struct holder *h)
{
	char since[64], epoch[24];

	cluster_since(h->since_ms, since, sizeof(since));
	snprintf(epoch, sizeof(epoch), "%" PRIu64, h->epoch);
	const char *row[] = { what, h->instance[0] != '\0' ? h->instance : "-",
		h->instance[0] != '\0' ? since : "-", h->instance[0] != '\0' ? epoch : "-" };
	return ctl_table_add(t, row);
}

static int
cluster_by_name(const void *a, const void *b)
{
	return strcmp(((const struct holder *)a)->instance, ((const struct holder *)b)->instance);
}

static int
cluster_print(const struct view *vw)
{
	static const char *const heads[] = { "PARTITION", "INSTANCE", "SINCE", "EPOCH" };
	struct ctl_table *t = ctl_table_new(4, heads);
	char name[16], since[64];
	int held = 0;

	if (t == NULL)
		return -1;
	for (int p = 0; p < vw->partitions; p++) {
		snprintf(name, sizeof(name), "%d", p);
		if (cluster_row(t, name, &vw->part[p]) == -1) {
			ctl_table_free(t);
			return -1;
		}
		held += vw->part[p].instance[0] != '\0';
	}
	if (cluster_row(t, "router", &vw->router) == -1) {
		ctl_table_free(t);
		return -1;
	}
	ctl_table_print(t);
	ctl_table_free(t);
	printf("%d of %d partitions held; %d member%s:\n", held, vw->partitions, vw->nmembers,
	    vw->nmembers == 1 ? "" : "s");
	for (int i = 0; i < vw->nmembers; i++) {
		cluster_since(vw->member[i].since_ms, since, sizeof(since));
		printf("  %s (since %s)\n", vw->member[i].instance, since);
	}
	return 0;
}

static int
cluster_partitions(struct ctl *c, int argc, char *argv[])
{
	struct view vw = { 0 };
	bool done = false;
	int first, rc;

	if ((first = ctl_getopt(c, &cluster_partitions_cmd, argc, argv, NULL, NULL, NULL, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (first < argc) {
		ctl_err("partitions takes no operands (got \"%s\")", argv[first]);
		return CTL_EXIT_USAGE;
	}
	if (c->cfg.partitions == 0) {
		ctl_err("%s: [cluster] partitions is 0: this service runs as a single instance, "
		    "there are no partitions to show", c->conf_path);
		return CTL_EXIT_FAIL;
	}
	vw.partitions = (int)c->cfg.partitions;
	if ((vw.part = calloc((size_t)vw.partitions, sizeof(*vw.part))) == NULL) {
		ctl_err("out of memory for %d partitions", vw.partitions);
		return CTL_EXIT_FAIL;
	}
	rc = cluster_read(c, &vw);
	if (vw.nmembers > 1)
		qsort(vw.member, (size_t)vw.nmembers, sizeof(*vw.member), cluster_by_name);
	if (rc == 0 && vw.unknown > 0)
		fprintf(stderr, "alarmctl: note: lease bucket %s holds %d partition keys beyond "
		    "[cluster] partitions = %d (was partitions changed?)\n", c->cfg.lease_bucket,
		    vw.unknown, vw.partitions);
	if (rc == 0)
		rc = c->json ? cluster_print_json(&vw) : cluster_print(&vw);
	free(vw.part);
	free(vw.member);
	return rc == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

const struct ctl_cmd cluster_partitions_cmd = {
	"partitions", "",
	"who holds which partition and the router, and the live members (cluster mode)",
	"Reads the lease bucket ([cluster] lease_bucket) of a cluster deployment\n"
	"([cluster] partitions > 0): one row per partition and one for the router with\n"
	"the instance holding it, since when, and its lease epoch (the KV revision of\n"
	"the acquiring write; the versioned consumer names carry it), \"-\" when nobody\n"
	"holds it (a lease expired and not yet taken over).  Then the live members.\n"
	"Nothing is written; a lease shown may have expired a moment ago.\n"
	"  --json   {partitions: [{partition, instance, since, since_ms, epoch}],\n"
	"           router: {instance, since, since_ms, epoch} or null,\n"
	"           members: [{instance, since, since_ms}]}; instance, since and epoch\n"
	"           are null for a partition nobody holds\n",
	false,
	cluster_partitions,
};
