#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/hash.h"
#include "../common/leasekv.h"
#include "../common/log.h"
#include "../common/natsconn.h"
#include "lease.h"

#define LEASE_TICK_MS 50            /* longest the thread waits before looking at requests again */
#define LEASE_RETRY_MS 250          /* a failed round or acquire is tried again this soon */
#define LEASE_RECHECK_MS 100        /* a value past its TTL still there: looked at again so soon */
#define LEASE_NAME_MAX (CONFIG_INSTANCE_MAX + 1)
#define LEASE_VALUE_MAX 256

/* The thread's picture of one part.<p> or router key, from its watcher. */
struct lease_key {
	bool live;                  /* a put not yet expired (by our estimate) */
	char holder[LEASE_NAME_MAX];
	int64_t expires_ms;         /* monotonic: when that put expires */
	int64_t free_since_ms;      /* monotonic: when we saw it free first; 0 while live */
	int64_t next_try_ms;        /* monotonic: no acquire attempt before */
};

/* A key this instance holds. */
struct lease_own {
	uint64_t epoch;             /* revision of the acquiring write; 0: not held */
	uint64_t rev;               /* revision of our last write */
	int64_t since_ms;           /* wall ms of the acquire, in the value */
};

enum lease_target { LEASE_TARGET_OTHER, LEASE_TARGET_ME };

struct lease_member {
	char name[LEASE_NAME_MAX];
	int64_t expires_ms;
};

struct lease {
	/* Fixed at open. */
	char instance[LEASE_NAME_MAX];
	char bucket[256];
	int partitions;             /* keys 0..partitions-1 are part.<p>, key [partitions] is the router */
	int64_t ttl_ms;
	natsConnection *nc;
	jsCtx *js_kv;               /* the bucket and its watcher (cnats' default waits) */
	jsCtx *js;                  /* our reads and writes (waits of lease_ttl/8) */
	kvStore *kv;
	int wake_fd;
	pthread_t thread;
	bool thread_started;

	/* The thread's own. */
	kvWatcher *watcher;
	bool loaded;                /* the watcher delivered the bucket's state as of its start */
	int64_t echo_due_ms;        /* monotonic: member key written, not shown by the watcher since (0: shown) */
	struct lease_key *keys;
	struct lease_own *own;
	struct lease_own member;
	struct lease_member *members;
	int nmembers, members_cap;
	unsigned char *target;      /* per key: enum lease_target */
	bool *release_wanted;       /* per key, as lease_balance last found it */
	uint64_t *release;          /* per key: the epoch the master released (this pass) */
	bool targets_stale;         /* the membership changed since target[] was worked out */
	int64_t next_round_ms;
	int64_t fence_ms;
	bool leaving;
	uint64_t acquired, released, lost;
	struct log_limit round_limit;

	/* Shared with callers, under lock. */
	pthread_mutex_t lock;
	bool stop_req, reset_req, leave_req;
	uint64_t *release_req;      /* per key: the epoch to release, 0: none */
	struct lease_view view;
};

static int
lease_nkeys(const struct lease *l)
{
	return l->partitions + 1;
}

static void
lease_key_name(const struct lease *l, int k, char *buf, size_t len)
{
	if (k == l->partitions)
		snprintf(buf, len, "router");
	else
		snprintf(buf, len, "part.%d", k);
}

/* "partition 7" or "the router", for log lines. */
static const char *
lease_what(const struct lease *l, int k, char *buf, size_t len)
{
	if (k == l->partitions)
		snprintf(buf, len, "the router");
	else
		snprintf(buf, len, "partition %d", k);
	return buf;
}

/*
 * FNV-1a of "<instance>/<p>" alone ranks names that differ in one byte
 * the same way for most p (its last bytes barely mix): with i1, i2, i3
 * and 12 partitions, i1 was the target of 10.  Murmur3's finaliser
 * spreads them.
 */
static uint32_t
lease_mix(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

int
lease_target(const char *const *members, int n, int p)
{
	char buf[LEASE_NAME_MAX + 16];
	uint32_t best = 0;
	int t = -1;

	for (int i = 0; i < n; i++) {
		int len = snprintf(buf, sizeof(buf), "%s/%d", members[i], p);
		uint32_t h = lease_mix(hash32(buf, (size_t)len < sizeof(buf) ? (size_t)len : sizeof(buf) - 1));
		/* Ties (rare) go to the smaller name, so every member picks the same one. */
		if (t == -1 || h > best || (h == best && strcmp(members[i], members[t]) < 0)) {
			best = h;
			t = i;
		}
	}
	return t;
}

/* ---- the bucket ---- */

/*
 * Our value under key (this instance, since since_ms, the epoch: 0 in
 * the acquiring write), stored only if the key's last revision is expect.
 */
/* Our value: this instance, since since_ms, the epoch (0 in the acquiring write).  -1: too long. */
static int
lease_value(const struct lease *l, int64_t since_ms, uint64_t epoch, char *buf, size_t len)
{
	struct leasekv_value v = { .since_ms = since_ms, .epoch = epoch };

	snprintf(v.instance, sizeof(v.instance), "%s", l->instance);
	return leasekv_format(buf, len, &v);
}

static natsStatus
lease_put(struct lease *l, const char *key, int64_t since_ms, uint64_t epoch, uint64_t expect,
    uint64_t *rev, jsErrCode *jerr)
{
	char text[LEASE_VALUE_MAX];

	if (lease_value(l, since_ms, epoch, text, sizeof(text)) == -1) {
		*jerr = 0;
		return NATS_INVALID_ARG;
	}
	return leasekv_write(l->nc, l->bucket, key, text, expect, l->ttl_ms / 8, rev, jerr);
}

/* A delete marker under key, only if its last revision is expect (still ours). */
static natsStatus
lease_del(struct lease *l, const char *key, uint64_t expect, jsErrCode *jerr)
{
	uint64_t rev;

	return leasekv_write(l->nc, l->bucket, key, NULL, expect, l->ttl_ms / 8, &rev, jerr);
}

/* The key's last revision and value.  0, or -1 (logged at debug: the caller tries again later). */
static int
lease_read(struct lease *l, const char *key, struct leasekv_last *last)
{
	jsErrCode jerr;
	natsStatus s;

	if ((s = leasekv_read(l->js, l->bucket, key, last, &jerr)) != NATS_OK) {
		log_debug("lease: reading key %s of bucket %s: %s (JetStream error %d)", key, l->bucket,
		    natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	return 0;
}

/*
 * Instances started together all find no bucket and create it at once.
 * The server takes one create and may refuse the others (seen: "subjects
 * overlap with an existing stream" while the winner's stream was being
 * made), so a refused create binds the bucket another instance made,
 * waiting a while for it to appear.  0 when bound.
 */
#define LEASE_BUCKET_RACE_MS 3000

static int
lease_bucket_bind_raced(struct lease *l)
{
	int64_t until = clock_mono_ms() + LEASE_BUCKET_RACE_MS;
	natsStatus s;

	log_warnx("lease: creating KV bucket %s: %s; binding it if another instance created it "
	    "meanwhile", l->bucket, nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "refused");
	for (;;) {
		if ((s = js_KeyValue(&l->kv, l->js_kv, l->bucket)) == NATS_OK) {
			log_info("lease: bound KV bucket %s, created by another instance", l->bucket);
			return 0;
		}
		if (s != NATS_NOT_FOUND || clock_mono_ms() >= until)
			return -1;
		nats_Sleep(100);
	}
}

static int
lease_bucket_open(struct lease *l, const struct config *c)
{
	kvConfig kc;
	jsOptions jo;
	kvStatus *st = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if (natsConnection_JetStream(&l->js_kv, l->nc, NULL) != NATS_OK) {
		log_errorx("lease: JetStream context: %s", nats_GetLastError(NULL));
		return -1;
	}
	s = js_KeyValue(&l->kv, l->js_kv, l->bucket);
	if (s == NATS_NOT_FOUND) {
		kvConfig_Init(&kc);
		kc.Bucket = l->bucket;
		kc.Description = "alarm-digest cluster leases (members, partitions, router)";
		kc.History = 1;
		kc.TTL = l->ttl_ms * 1000000;
		kc.StorageType = js_FileStorage;
		kc.Replicas = (int)c->stream_replicas;
		s = js_CreateKeyValue(&l->kv, l->js_kv, &kc);
		if (s == NATS_OK)
			log_info("lease: created KV bucket %s (TTL %lld ms, %d replicas)", l->bucket,
			    (long long)l->ttl_ms, kc.Replicas);
		else if (lease_bucket_bind_raced(l) == 0)
			s = NATS_OK;
	}
	if (s != NATS_OK) {
		natsconn_log_js_error("open the lease KV bucket", l->bucket, s, jerr, c->servers);
		return -1;
	}
	if (kvStore_Status(&st, l->kv) != NATS_OK) {
		log_errorx("lease: status of KV bucket %s: %s", l->bucket, nats_GetLastError(NULL));
		return -1;
	}
	/*
	 * The bucket's TTL is what expires our keys: renewals and the fence
	 * must go by it, whatever our own lease_ttl says.
	 */
	int64_t ttl = kvStatus_TTL(st) / 1000000;
	kvStatus_Destroy(st);
	if (ttl != l->ttl_ms) {
		if (ttl <= 0) {
			log_errorx("lease: KV bucket %s keeps values for ever (no TTL): leases would never "
			    "expire; delete it (nats kv del %s) and restart", l->bucket, l->bucket);
			return -1;
		}
		log_warnx("lease: KV bucket %s has a TTL of %lld ms, [cluster] lease_ttl is %lld ms: "
		    "using the bucket's; every instance must have the same lease_ttl", l->bucket,
		    (long long)ttl, (long long)l->ttl_ms);
		l->ttl_ms = ttl;
	}
	/*
	 * Our reads and writes wait at most lease_ttl/8: a round must fit well
	 * inside the fence's margin (lease_ttl/5), and a shutdown with NATS
	 * gone must not wait seconds per key.
	 */
	jsOptions_Init(&jo);
	jo.Wait = l->ttl_ms / 8;
	if (natsConnection_JetStream(&l->js, l->nc, &jo) != NATS_OK) {
		log_errorx("lease: JetStream context: %s", nats_GetLastError(NULL));
		return -1;
	}
	return 0;
}

/* ---- the thread's view of the bucket ---- */

/* How long ago a value was written, as far as its expiry goes: 0 to lease_ttl. */
static int64_t
lease_age_clamp(const struct lease *l, int64_t age_ms)
{
	return age_ms < 0 ? 0 : age_ms > l->ttl_ms ? l->ttl_ms : age_ms;
}

static struct lease_member *
lease_member_find(struct lease *l, const char *name)
{
	for (int i = 0; i < l->nmembers; i++)
		if (strcmp(l->members[i].name, name) == 0)
			return &l->members[i];
	return NULL;
}

static void
lease_member_put(struct lease *l, const char *name, int64_t expires_ms)
{
	struct lease_member *m = lease_member_find(l, name);

	if (m == NULL) {
		if (l->nmembers == l->members_cap) {
			int cap = l->members_cap == 0 ? 16 : l->members_cap * 2;
			struct lease_member *n = realloc(l->members, (size_t)cap * sizeof(*n));
			if (n == NULL) {
				log_error("lease: growing the member list to %d", cap);
				return;
			}
			l->members = n;
			l->members_cap = cap;
		}
		m = &l->members[l->nmembers++];
		snprintf(m->name, sizeof(m->name), "%s", name);
		l->targets_stale = true;
		log_info("lease: member %s joined", name);
	}
	m->expires_ms = expires_ms;
}

static void
lease_member_drop(struct lease *l, int i, const char *why)
{
	log_info("lease: member %s %s", l->members[i].name, why);
	l->members[i] = l->members[--l->nmembers];
	l->targets_stale = true;
}

/* Members whose key expired are gone: nobody tells us, the TTL does. */
static void
lease_members_expire(struct lease *l, int64_t now)
{
	for (int i = 0; i < l->nmembers; i++)
		if (l->members[i].expires_ms <= now && strcmp(l->members[i].name, l->instance) != 0)
			lease_member_drop(l, i--, "left (its lease expired)");
}

static void lease_lose(struct lease *l, int k, const char *why);

/* lease_close is waiting: long loops of writes stop early. */
static bool
lease_stop_wanted(struct lease *l)
{
	bool stop;

	pthread_mutex_lock(&l->lock);
	stop = l->stop_req;
	pthread_mutex_unlock(&l->lock);
	return stop;
}

/* One watcher entry into the view. */
static void
lease_watch_apply(struct lease *l, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	kvOperation op = kvEntry_Operation(e);
	int64_t now = clock_mono_ms();
	int64_t age = clock_wall_ms() - kvEntry_Created(e) / 1000000;
	struct leasekv_value v;
	char *end;
	int k;

	/*
	 * A put seen late expires that much sooner.  One older than the TTL is
	 * due now (the server removes expired values a little late); an
	 * acquire attempt then finds out.
	 */
	age = lease_age_clamp(l, age);
	if (strncmp(key, "member.", 7) == 0) {
		key += 7;
		if (op == kvOp_Put) {
			lease_member_put(l, key, now + l->ttl_ms - age);
			if (strcmp(key, l->instance) == 0)
				l->echo_due_ms = 0;
		} else {
			for (int i = 0; i < l->nmembers; i++)
				if (strcmp(l->members[i].name, key) == 0 && strcmp(key, l->instance) != 0)
					lease_member_drop(l, i--, "left");
		}
		return;
	}
	if (strcmp(key, "router") == 0)
		k = l->partitions;
	else if (strncmp(key, "part.", 5) == 0) {
		errno = 0;
		long p = strtol(key + 5, &end, 10);
		if (errno != 0 || *end != '\0' || end == key + 5 || p < 0 || p >= l->partitions) {
			log_debug("lease: ignoring key %s of bucket %s (partitions = %d)", key, l->bucket,
			    l->partitions);
			return;
		}
		k = (int)p;
	} else
		return;

	struct lease_key *lk = &l->keys[k];
	if (op == kvOp_Put) {
		leasekv_parse(kvEntry_Value(e), kvEntry_ValueLen(e), &v);
		lk->live = true;
		snprintf(lk->holder, sizeof(lk->holder), "%s", v.instance);
		lk->expires_ms = now + l->ttl_ms - age;
		lk->free_since_ms = 0;
		/* Someone else wrote a key we hold: it expired on us and was taken. */
		if (l->own[k].epoch != 0 && kvEntry_Revision(e) > l->own[k].rev &&
		    strcmp(v.instance, l->instance) != 0) {
			char why[160];
			snprintf(why, sizeof(why), "%s holds it now (revision %" PRIu64 ")", v.instance,
			    kvEntry_Revision(e));
			lease_lose(l, k, why);
		}
	} else {
		lk->live = false;
		lk->holder[0] = '\0';
		lk->free_since_ms = now;
		lk->next_try_ms = 0;
	}
}

static int
lease_watch_open(struct lease *l)
{
	natsStatus s;

	kvWatcher_Destroy(l->watcher);
	l->watcher = NULL;
	l->loaded = false;
	if ((s = kvStore_WatchAll(&l->watcher, l->kv, NULL)) != NATS_OK) {
		log_warnx("lease: watching KV bucket %s: %s", l->bucket, nats_GetLastError(NULL));
		l->watcher = NULL;
		return -1;
	}
	l->echo_due_ms = 0;
	return 0;
}

/* Apply what the watcher has, waiting up to wait_ms for the first entry. */
static void
lease_watch(struct lease *l, int64_t wait_ms)
{
	kvEntry *e = NULL;
	natsStatus s;

	if (l->watcher == NULL && lease_watch_open(l) == -1) {
		usleep((useconds_t)wait_ms * 1000);
		return;
	}
	for (int n = 0; n < 1000; n++) {
		s = kvWatcher_Next(&e, l->watcher, n == 0 ? (wait_ms > 0 ? wait_ms : 1) : 1);
		if (s == NATS_TIMEOUT)
			return;
		if (s != NATS_OK) {
			log_warnx("lease: watcher of KV bucket %s: %s: watching again", l->bucket,
			    natsStatus_GetText(s));
			kvWatcher_Destroy(l->watcher);
			l->watcher = NULL;
			return;
		}
		if (e == NULL) {
			/* The bucket as of the watch's start is in: acquiring may start. */
			l->loaded = true;
			continue;
		}
		lease_watch_apply(l, e);
		kvEntry_Destroy(e);
	}
}

/* ---- holding ---- */

static void
lease_lose(struct lease *l, int k, const char *why)
{
	char what[32];

	log_warnx("lease: lost %s (epoch %" PRIu64 "): %s", lease_what(l, k, what, sizeof(what)),
	    l->own[k].epoch, why);
	memset(&l->own[k], 0, sizeof(l->own[k]));
	if (k < l->partitions)
		l->lost++;
}

/*
 * Acquire key k: read its last revision, then write expecting it.  A
 * live value of another instance means not now; one of ours (an earlier
 * run, or a write we gave up waiting for) is ours again, with a new epoch.
 */
static void
lease_acquire(struct lease *l, int k, int64_t now)
{
	char key[32], what[32];
	struct lease_key *lk = &l->keys[k];
	struct leasekv_last last;
	int64_t since = clock_wall_ms();
	uint64_t rev;
	jsErrCode jerr;
	natsStatus s;

	lease_key_name(l, k, key, sizeof(key));
	lk->next_try_ms = now + LEASE_RETRY_MS;
	if (lease_read(l, key, &last) == -1)
		return;
	if (last.live && strcmp(last.value.instance, l->instance) != 0) {
		/*
		 * Held after all: our view was behind, or the server removes the
		 * expired value a little late.  Try again when it should be gone.
		 */
		lk->live = true;
		snprintf(lk->holder, sizeof(lk->holder), "%s", last.value.instance);
		lk->expires_ms = now + l->ttl_ms - lease_age_clamp(l, last.age_ms);
		lk->free_since_ms = 0;
		lk->next_try_ms = lk->expires_ms > now + LEASE_RECHECK_MS ? lk->expires_ms :
		    now + LEASE_RECHECK_MS;
		return;
	}
	if ((s = lease_put(l, key, since, 0, last.rev, &rev, &jerr)) != NATS_OK) {
		if (jerr != JSStreamWrongLastSequenceErr)
			log_debug("lease: acquiring %s: %s (JetStream error %d)", key, natsStatus_GetText(s),
			    (int)jerr);
		return;
	}
	l->own[k] = (struct lease_own){ .epoch = rev, .rev = rev, .since_ms = since };
	if (k < l->partitions)
		l->acquired++;
	if (last.live)
		log_info("lease: acquired %s, epoch %" PRIu64 " (held by this instance before: an earlier "
		    "run, or a write whose answer was lost)", lease_what(l, k, what, sizeof(what)), rev);
	else
		log_info("lease: acquired %s, epoch %" PRIu64 " (free for %lld ms)",
		    lease_what(l, k, what, sizeof(what)), rev,
		    (long long)(lk->free_since_ms > 0 ? now - lk->free_since_ms : 0));
}

/* Renew a key we hold.  1 renewed, 0 lost, -1 no answer (then the round moves no fence). */
static int
lease_renew_one(struct lease *l, const char *key, struct lease_own *o)
{
	struct leasekv_last last;
	uint64_t rev;
	jsErrCode jerr;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (lease_put(l, key, o->since_ms, o->epoch, o->rev, &rev, &jerr) == NATS_OK) {
			o->rev = rev;
			return 1;
		}
		if (jerr != JSStreamWrongLastSequenceErr)
			return -1;
		/*
		 * A write we stopped waiting for may have been stored after all:
		 * the key holds our very value (holder and since) at a revision
		 * we did not see, so it never stopped being ours.  Anything else
		 * (no value, another holder, another process with our name) is lost.
		 */
		if (lease_read(l, key, &last) == -1)
			return -1;
		if (!last.live || strcmp(last.value.instance, l->instance) != 0 ||
		    last.value.since_ms != o->since_ms || last.rev <= o->rev)
			return 0;
		o->rev = last.rev;
	}
	return -1;
}

/*
 * Renew every key held, all writes in flight at once (leasekv_write_all):
 * one round trip however many partitions we hold.  A write that found
 * another revision gets the careful one-by-one look of lease_renew_one.
 * Returns how many went unanswered.
 */
static int
lease_renew_all(struct lease *l)
{
	int n = 0, unanswered = 0, *which = calloc((size_t)lease_nkeys(l), sizeof(int));
	struct leasekv_put *puts = calloc((size_t)lease_nkeys(l), sizeof(*puts));
	char (*keys)[LEASE_NAME_MAX + 8] = calloc((size_t)lease_nkeys(l), sizeof(*keys));
	char (*texts)[LEASE_VALUE_MAX] = calloc((size_t)lease_nkeys(l), sizeof(*texts));

	if (which == NULL || puts == NULL || keys == NULL || texts == NULL) {
		log_error("lease: allocating a renewal round");
		unanswered = 1;
		goto out;
	}
	for (int k = 0; k < lease_nkeys(l); k++) {
		if (l->own[k].epoch == 0 ||
		    lease_value(l, l->own[k].since_ms, l->own[k].epoch, texts[n], sizeof(texts[n])) == -1)
			continue;
		lease_key_name(l, k, keys[n], sizeof(keys[n]));
		puts[n] = (struct leasekv_put){ .key = keys[n], .value = texts[n], .expect = l->own[k].rev };
		which[n++] = k;
	}
	if (n == 0)
		goto out;
	(void)leasekv_write_all(l->nc, l->bucket, puts, n, l->ttl_ms / 4);
	for (int i = 0; i < n; i++) {
		int k = which[i], rc;

		if (puts[i].status == NATS_OK) {
			l->own[k].rev = puts[i].rev;
			continue;
		}
		if (puts[i].status != NATS_ERR || puts[i].jerr != JSStreamWrongLastSequenceErr) {
			unanswered++;
			continue;
		}
		if ((rc = lease_renew_one(l, keys[i], &l->own[k])) == -1)
			unanswered++;
		else if (rc == 0)
			lease_lose(l, k, "its renewal found another revision (it expired and was taken)");
	}
out:
	free(which);
	free(puts);
	free(keys);
	free(texts);
	return unanswered;
}

/* The member key: written over whatever an earlier run of ours left. */
static int
lease_member_join(struct lease *l)
{
	char key[LEASE_NAME_MAX + 8];
	struct leasekv_last last;
	int64_t since = clock_wall_ms();
	uint64_t rev;
	jsErrCode jerr;

	snprintf(key, sizeof(key), "member.%s", l->instance);
	if (lease_read(l, key, &last) == -1 ||
	    lease_put(l, key, since, 0, last.rev, &rev, &jerr) != NATS_OK)
		return -1;
	l->member = (struct lease_own){ .epoch = rev, .rev = rev, .since_ms = since };
	lease_member_put(l, l->instance, clock_mono_ms() + l->ttl_ms);
	log_info("lease: joined as member %s of bucket %s (revision %" PRIu64 ")", l->instance,
	    l->bucket, rev);
	return 0;
}

/*
 * Renew every key held, in one round.  The fence moves when every held
 * partition's renewal was answered: each one then holds until at least
 * start + lease_ttl.  The member key is no part of it: it only steers
 * the others' targets.
 */
static void
lease_round(struct lease *l, int64_t start)
{
	char key[LEASE_NAME_MAX + 8];
	int unanswered = 0, rc;

	if (!l->leaving) {
		if (l->member.epoch == 0)
			rc = lease_member_join(l) == 0 ? 1 : -1;
		else {
			snprintf(key, sizeof(key), "member.%s", l->instance);
			if ((rc = lease_renew_one(l, key, &l->member)) == 0) {
				log_warnx("lease: member key %s expired or was overwritten (this instance was "
				    "paused or cut off for longer than lease_ttl): joining again", key);
				memset(&l->member, 0, sizeof(l->member));
				rc = lease_member_join(l) == 0 ? 1 : -1;
			}
		}
		if (rc == 1 && l->echo_due_ms == 0)
			l->echo_due_ms = clock_mono_ms();
	}
	if (!lease_stop_wanted(l))
		unanswered += lease_renew_all(l);
	else
		unanswered++;
	if (unanswered == 0) {
		l->fence_ms = start + l->ttl_ms - l->ttl_ms / 5;
		l->next_round_ms = start + l->ttl_ms / 4;
	} else {
		log_limited(&l->round_limit, LL_WARN, "lease: renewal round: %d of our keys in KV bucket "
		    "%s unanswered (%s); fence stays %lld ms from now", unanswered, l->bucket,
		    nats_GetLastError(NULL), (long long)(l->fence_ms - clock_mono_ms()));
		l->next_round_ms = clock_mono_ms() + LEASE_RETRY_MS;
	}
	/* Our member key was written a TTL ago and the watcher never showed it: it is stuck. */
	if (l->watcher != NULL && l->echo_due_ms != 0 && clock_mono_ms() - l->echo_due_ms > l->ttl_ms) {
		log_warnx("lease: watcher of KV bucket %s did not show our writes for %lld ms: watching "
		    "again", l->bucket, (long long)(clock_mono_ms() - l->echo_due_ms));
		lease_watch_open(l);
	}
}

/* 0, or -1 when the delete got no answer (the key expires instead). */
static int
lease_release(struct lease *l, int k)
{
	char key[32], what[32];
	jsErrCode jerr;
	natsStatus s;

	lease_key_name(l, k, key, sizeof(key));
	/* Only if still ours: a delete expecting our last revision. */
	if ((s = lease_del(l, key, l->own[k].rev, &jerr)) != NATS_OK)
		log_warnx("lease: releasing %s (epoch %" PRIu64 "): %s (JetStream error %d): it expires "
		    "within %lld ms instead", lease_what(l, k, what, sizeof(what)), l->own[k].epoch,
		    natsStatus_GetText(s), (int)jerr, (long long)l->ttl_ms);
	else
		log_info("lease: released %s (epoch %" PRIu64 ")", lease_what(l, k, what, sizeof(what)),
		    l->own[k].epoch);
	memset(&l->own[k], 0, sizeof(l->own[k]));
	if (k < l->partitions)
		l->released++;
	return s == NATS_OK || jerr == JSStreamWrongLastSequenceErr ? 0 : -1;
}

/*
 * Re-acquire, with a new epoch, every key still ours (after the master's
 * reset).  Like a round, it moves the fence when every write was answered.
 */
static void
lease_reepoch(struct lease *l)
{
	char key[32], what[32];
	int64_t start = clock_mono_ms();
	int unanswered = 0;
	uint64_t rev;
	jsErrCode jerr;

	for (int k = 0; k < lease_nkeys(l); k++) {
		if (l->own[k].epoch == 0)
			continue;
		lease_key_name(l, k, key, sizeof(key));
		int64_t since = clock_wall_ms();
		if (lease_put(l, key, since, 0, l->own[k].rev, &rev, &jerr) == NATS_OK) {
			log_info("lease: %s held again after the reset, epoch %" PRIu64 " (was %" PRIu64 ")",
			    lease_what(l, k, what, sizeof(what)), rev, l->own[k].epoch);
			l->own[k] = (struct lease_own){ .epoch = rev, .rev = rev, .since_ms = since };
			if (k < l->partitions)
				l->acquired++;
		} else if (jerr == JSStreamWrongLastSequenceErr) {
			lease_lose(l, k, "not ours any more at the reset");
		} else {
			/* Maybe stored, maybe not: an acquire finds out (our value is taken back). */
			unanswered++;
			lease_lose(l, k, "no answer to its write at the reset");
		}
	}
	if (unanswered == 0)
		l->fence_ms = start + l->ttl_ms - l->ttl_ms / 5;
}

static void
lease_leave_now(struct lease *l)
{
	char key[LEASE_NAME_MAX + 8];
	jsErrCode jerr;

	l->leaving = true;
	l->targets_stale = true;
	if (l->member.epoch == 0)
		return;
	snprintf(key, sizeof(key), "member.%s", l->instance);
	/* First, so the others stop targeting us before our partitions come free. */
	if (lease_del(l, key, l->member.rev, &jerr) != NATS_OK)
		log_warnx("lease: leaving: deleting member key %s: %s", key, nats_GetLastError(NULL));
	else
		log_info("lease: left the membership of bucket %s", l->bucket);
	memset(&l->member, 0, sizeof(l->member));
}

/*
 * Each partition's target among the live members, worked out again only
 * when the membership changed: with 1024 partitions and many members it
 * is too much for every tick.
 */
static void
lease_targets(struct lease *l)
{
	const char **names;
	int n = 0, me = -1;

	if (!l->targets_stale)
		return;
	if ((names = calloc((size_t)l->nmembers + 1, sizeof(*names))) == NULL) {
		log_error("lease: allocating %d member names", l->nmembers);
		return;
	}
	for (int i = 0; i < l->nmembers; i++) {
		if (strcmp(l->members[i].name, l->instance) == 0) {
			if (l->leaving)
				continue;
			me = n;
		}
		names[n++] = l->members[i].name;
	}
	for (int k = 0; k < l->partitions; k++)
		l->target[k] = me != -1 && lease_target(names, n, k) == me ? LEASE_TARGET_ME :
		    LEASE_TARGET_OTHER;
	/* The router is anyone's who comes first. */
	l->target[l->partitions] = me != -1 ? LEASE_TARGET_ME : LEASE_TARGET_OTHER;
	free(names);
	l->targets_stale = false;
}

/* Take free keys that are ours by target, or free for a whole TTL; want releases. */
static void
lease_balance(struct lease *l, int64_t now, bool *release_wanted)
{
	lease_members_expire(l, now);
	lease_targets(l);
	for (int k = 0; k < lease_nkeys(l); k++) {
		struct lease_key *lk = &l->keys[k];
		bool mine = l->target[k] == LEASE_TARGET_ME;

		if (l->own[k].epoch != 0) {
			release_wanted[k] = l->leaving || (k < l->partitions && !mine);
			continue;
		}
		release_wanted[k] = false;
		if (lk->live && lk->expires_ms <= now) {
			lk->live = false;
			lk->free_since_ms = lk->expires_ms;
		}
		if (lk->live || l->leaving || !l->loaded || l->member.epoch == 0 || now < lk->next_try_ms)
			continue;
		if (lk->free_since_ms == 0)
			lk->free_since_ms = now;
		if ((mine || now - lk->free_since_ms >= l->ttl_ms) && !lease_stop_wanted(l))
			lease_acquire(l, k, now);
	}
}

/* ---- the thread ---- */

static void
lease_publish(struct lease *l, const bool *release_wanted)
{
	struct lease_view *v = &l->view;
	bool changed = false;

	pthread_mutex_lock(&l->lock);
	for (int k = 0; k < lease_nkeys(l); k++) {
		struct lease_hold *h = k < l->partitions ? &v->part[k] : &v->router;
		struct lease_hold now = {
			.epoch = l->own[k].epoch,
			.since_ms = l->own[k].epoch != 0 ? l->own[k].since_ms : 0,
			.release_wanted = l->own[k].epoch != 0 && release_wanted[k],
		};
		if (h->epoch != now.epoch || h->since_ms != now.since_ms ||
		    h->release_wanted != now.release_wanted) {
			*h = now;
			changed = true;
		}
	}
	if (v->fence_ms != l->fence_ms || v->members != l->nmembers || v->leaving != l->leaving) {
		v->fence_ms = l->fence_ms;
		v->members = l->nmembers;
		v->leaving = l->leaving;
		changed = true;
	}
	v->acquired = l->acquired;
	v->released = l->released;
	v->lost = l->lost;
	if (changed)
		v->gen++;
	pthread_mutex_unlock(&l->lock);
	if (changed) {
		uint64_t one = 1;
		if (write(l->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
			log_warn("lease: waking the master (eventfd)");
	}
}

static void *
lease_main(void *arg)
{
	struct lease *l = arg;
	size_t n = (size_t)lease_nkeys(l);
	bool stop = false, reset, leave;

	while (!stop) {
		pthread_mutex_lock(&l->lock);
		stop = l->stop_req;
		reset = l->reset_req;
		leave = l->leave_req && !l->leaving;
		l->reset_req = false;
		memcpy(l->release, l->release_req, n * sizeof(*l->release));
		memset(l->release_req, 0, n * sizeof(*l->release_req));
		pthread_mutex_unlock(&l->lock);

		/*
		 * Even when stopping: a shutdown releases, then closes at once.
		 * But with NATS gone it does not wait for each key in turn.
		 */
		if (leave)
			lease_leave_now(l);
		bool unanswered = false;
		for (size_t k = 0; k < n; k++) {
			if (l->release[k] == 0 || l->release[k] != l->own[k].epoch)
				continue;
			if (stop && unanswered)
				memset(&l->own[k], 0, sizeof(l->own[k]));
			else if (lease_release(l, (int)k) == -1)
				unanswered = true;
		}
		if (stop)
			break;
		if (reset)
			lease_reepoch(l);
		int64_t now = clock_mono_ms();
		if (now >= l->next_round_ms)
			lease_round(l, now);
		lease_balance(l, clock_mono_ms(), l->release_wanted);
		lease_publish(l, l->release_wanted);

		int64_t wait = l->next_round_ms - clock_mono_ms();
		lease_watch(l, wait < 1 ? 1 : wait > LEASE_TICK_MS ? LEASE_TICK_MS : wait);
	}
	return NULL;
}

/* ---- the API ---- */

struct lease *
lease_open(const struct config *c, bool (*stop)(void *), void *stop_arg)
{
	struct lease *l;
	int n = (int)c->partitions + 1, err;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		log_error("lease: allocating");
		return NULL;
	}
	l->wake_fd = -1;
	l->partitions = (int)c->partitions;
	l->ttl_ms = c->lease_ttl_ms;
	if (config_instance(c, l->instance, sizeof(l->instance)) == -1) {
		log_error("lease: reading the host name for [cluster] instance");
		free(l);
		return NULL;
	}
	snprintf(l->bucket, sizeof(l->bucket), "%s", c->lease_bucket);
	if ((err = pthread_mutex_init(&l->lock, NULL)) != 0) {
		errno = err;
		log_error("lease: pthread_mutex_init");
		free(l);
		return NULL;
	}
	l->keys = calloc((size_t)n, sizeof(*l->keys));
	l->own = calloc((size_t)n, sizeof(*l->own));
	l->release_req = calloc((size_t)n, sizeof(*l->release_req));
	l->target = calloc((size_t)n, sizeof(*l->target));
	l->release_wanted = calloc((size_t)n, sizeof(*l->release_wanted));
	l->release = calloc((size_t)n, sizeof(*l->release));
	if (l->keys == NULL || l->own == NULL || l->release_req == NULL || l->target == NULL ||
	    l->release_wanted == NULL || l->release == NULL) {
		log_error("lease: allocating tables for %d partitions", l->partitions);
		goto fail;
	}
	l->view.partitions = l->partitions;
	if ((l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_error("lease: eventfd");
		goto fail;
	}
	struct natsconn_opts o = {
		.servers = c->servers,
		.cfg = c,
		.name = "lease",
		.wait_connected = true,
		.stop = stop,
		.stop_arg = stop_arg,
	};
	if ((l->nc = natsconn_connect(&o)) == NULL || lease_bucket_open(l, c) == -1)
		goto fail;
	if ((err = pthread_create(&l->thread, NULL, lease_main, l)) != 0) {
		errno = err;
		log_error("lease: pthread_create");
		goto fail;
	}
	l->thread_started = true;
	log_info("lease: instance %s, %d partitions, lease_ttl %lld ms, bucket %s", l->instance,
	    l->partitions, (long long)l->ttl_ms, l->bucket);
	return l;
fail:
	lease_close(l);
	return NULL;
}

void
lease_view(struct lease *l, struct lease_view *v)
{
	uint64_t n;

	if (read(l->wake_fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_warn("lease: reading the wake eventfd");
	pthread_mutex_lock(&l->lock);
	*v = l->view;
	pthread_mutex_unlock(&l->lock);
}

int
lease_wake_fd(const struct lease *l)
{
	return l->wake_fd;
}

void
lease_released(struct lease *l, int p, uint64_t epoch)
{
	int k = p == LEASE_ROUTER ? l->partitions : p;

	if (k < 0 || k > l->partitions || epoch == 0)
		return;
	pthread_mutex_lock(&l->lock);
	l->release_req[k] = epoch;
	pthread_mutex_unlock(&l->lock);
}

void
lease_reset(struct lease *l)
{
	pthread_mutex_lock(&l->lock);
	l->reset_req = true;
	pthread_mutex_unlock(&l->lock);
}

void
lease_leave(struct lease *l)
{
	pthread_mutex_lock(&l->lock);
	l->leave_req = true;
	pthread_mutex_unlock(&l->lock);
}

void
lease_close(struct lease *l)
{
	if (l == NULL)
		return;
	if (l->thread_started) {
		pthread_mutex_lock(&l->lock);
		l->stop_req = true;
		pthread_mutex_unlock(&l->lock);
		/* It looks at stop_req at least every LEASE_TICK_MS (plus a round's writes). */
		pthread_join(l->thread, NULL);
	}
	kvWatcher_Destroy(l->watcher);
	kvStore_Destroy(l->kv);
	jsCtx_Destroy(l->js);
	jsCtx_Destroy(l->js_kv);
	if (l->nc != NULL)
		natsconn_close(l->nc);
	if (l->wake_fd != -1)
		close(l->wake_fd);
	pthread_mutex_destroy(&l->lock);
	free(l->keys);
	free(l->own);
	free(l->release_req);
	free(l->target);
	free(l->release_wanted);
	free(l->release);
	free(l->members);
	free(l);
}
