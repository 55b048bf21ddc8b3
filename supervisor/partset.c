#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/layout.h"
#include "../common/log.h"
#include "jsetup.h"
#include "partset.h"

#define PARTSET_FILE "partitions"
#define PARTSET_NAME_MAX 256

struct partset_part {
	uint64_t want;              /* epoch wanted from the next bind (0: give it up) */
	_Atomic uint64_t epoch;     /* epoch served now (0: not served); read by other threads */
	uint64_t held;              /* this instance's stores hold every message of it up to here */
	char consumer[PARTSET_NAME_MAX + 48];  /* its consumer while served: prefix, epoch, gen */
	/* Read by the callback thread; written by bind before p's subscription exists. */
	uint64_t replay_upto;
	_Atomic uint64_t last_consumer_seq;
	/*
	 * Moves on at every bind and unbind of p: a delivery classified under
	 * an older binding is stale wherever it waits (partset_current).
	 */
	_Atomic uint32_t binding;
};

struct partset {
	struct jsetup *js;          /* borrowed */
	int n;
	struct partset_part *part;
	uint64_t gen;               /* tells this process's consumers from each other */
	char *stream, *consumer, *subject_prefix, *deliver_prefix;
	size_t subject_prefix_len;
	char path[PATH_MAX];
};

static char *
partset_printf(const char *fmt, const char *a, const char *b)
{
	size_t n = strlen(fmt) + strlen(a) + strlen(b);
	char *s = malloc(n);

	if (s != NULL)
		snprintf(s, n, fmt, a, b);
	return s;
}

/*
 * STATE_DIR/partitions: "partitions N" then "P HELD" lines.  A file for
 * another partition count means the stores were split differently: the
 * floors would be wrong for every partition, so that is fatal.
 */
static int
partset_load(struct partset *ps)
{
	char line[128];
	FILE *f;
	int n = -1, lineno = 0, rc = 0;

	if ((f = fopen(ps->path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("open %s", ps->path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long held;
		int p;

		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (n == -1) {
			if (sscanf(line, "partitions %d", &n) != 1) {
				log_errorx("%s:%d: expected \"partitions N\"", ps->path, lineno);
				rc = -1;
				break;
			}
			if (n != ps->n) {
				log_errorx("%s says this state directory holds %d partitions, but [cluster] "
				    "partitions = %d: the partition count is fixed for a deployment (start "
				    "with an empty state_dir to change it)", ps->path, n, ps->n);
				rc = -1;
				break;
			}
			continue;
		}
		if (sscanf(line, "%d %llu", &p, &held) != 2 || p < 0 || p >= ps->n) {
			log_errorx("%s:%d: expected \"PARTITION HELD\"", ps->path, lineno);
			rc = -1;
			break;
		}
		ps->part[p].held = held;
	}
	if (ferror(f)) {
		log_error("read %s", ps->path);
		rc = -1;
	}
	(void)fclose(f);   /* read-only */
	return rc;
}

static int
partset_save(struct partset *ps)
{
	size_t cap = 128 + (size_t)ps->n * 32, len;
	char *text = malloc(cap);
	int rc;

	if (text == NULL) {
		log_error("allocating %s", ps->path);
		return -1;
	}
	len = (size_t)snprintf(text, cap, "# what this instance's stores hold of each partition "
	    "(stream sequence); written by alarm-supervisor\npartitions %d\n", ps->n);
	for (int p = 0; p < ps->n; p++)
		if (ps->part[p].held > 0)
			len += (size_t)snprintf(text + len, cap - len, "%d %" PRIu64 "\n", p, ps->part[p].held);
	rc = layout_write_file(ps->path, text);
	free(text);
	return rc;
}

struct partset *
partset_open(const struct config *c, struct jsetup *js)
{
	struct partset *ps;
	char instance[CONFIG_INSTANCE_MAX + 1];

	if (config_instance(c, instance, sizeof(instance)) == -1) {
		log_error("reading the host name for [cluster] instance");
		return NULL;
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL ||
	    (ps->part = calloc((size_t)c->partitions, sizeof(*ps->part))) == NULL) {
		log_error("allocating %lld partitions", (long long)c->partitions);
		free(ps);
		return NULL;
	}
	ps->js = js;
	ps->n = (int)c->partitions;
	ps->stream = strdup(c->partition_stream);
	ps->consumer = strdup(c->consumer);
	ps->subject_prefix = partset_printf("%s%s", c->partition_subject, ".");
	ps->deliver_prefix = partset_printf("%s.%s.p.", c->deliver_subject, instance);
	if (ps->stream == NULL || ps->consumer == NULL || ps->subject_prefix == NULL ||
	    ps->deliver_prefix == NULL) {
		log_error("allocating the partition set");
		partset_close(ps);
		return NULL;
	}
	ps->subject_prefix_len = strlen(ps->subject_prefix);
	if (layout_path(ps->path, sizeof(ps->path), c->state_dir, PARTSET_FILE) == -1 ||
	    partset_load(ps) == -1) {
		partset_close(ps);
		return NULL;
	}
	return ps;
}

void
partset_close(struct partset *ps)
{
	if (ps == NULL)
		return;
	free(ps->part);
	free(ps->stream);
	free(ps->consumer);
	free(ps->subject_prefix);
	free(ps->deliver_prefix);
	free(ps);
}

int
partset_count(const struct partset *ps)
{
	return ps->n;
}

void
partset_want(struct partset *ps, int p, uint64_t epoch)
{
	if (p >= 0 && p < ps->n)
		ps->part[p].want = epoch;
}

void
partset_drop(struct partset *ps, int p)
{
	struct partset_part *pp;

	if (p < 0 || p >= ps->n || (pp = &ps->part[p])->epoch == 0)
		return;
	/*
	 * Its consumer stays: its ack floor is what the next owner starts
	 * from (it replaces the consumer).  What it still pushes here is
	 * dropped unacked (partset_classify).
	 */
	log_info("partition %d: no longer served here (lease epoch %" PRIu64 ")", p, pp->epoch);
	pp->want = 0;
	partset_unbind(ps, p);
}

void
partset_unbind(struct partset *ps, int p)
{
	if (p < 0 || p >= ps->n)
		return;
	/*
	 * Epoch first: a classify that read the old binding then sees 0, or
	 * its delivery is stale.  Only a binding that was served ends.
	 */
	if (atomic_exchange(&ps->part[p].epoch, 0) != 0)
		atomic_fetch_add(&ps->part[p].binding, 1);
}

bool
partset_current(const struct partset *ps, int p, uint32_t binding)
{
	return p >= 0 && p < ps->n && atomic_load(&ps->part[p].epoch) != 0 &&
	    atomic_load(&ps->part[p].binding) == binding;
}

uint64_t
partset_serving(const struct partset *ps, int p)
{
	return p >= 0 && p < ps->n ? ps->part[p].epoch : 0;
}

void
partset_acked(struct partset *ps, int p, uint64_t seq)
{
	if (p >= 0 && p < ps->n && seq > ps->part[p].held)
		ps->part[p].held = seq;
}

int
partset_deliver(const struct partset *ps, int p, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%d", ps->deliver_prefix, p);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Take p over (or re-create its consumer) under pp->want. */
static int
partset_bind_one(struct partset *ps, int p)
{
	struct partset_part *pp = &ps->part[p];
	char prefix[PARTSET_NAME_MAX], filter[PARTSET_NAME_MAX], deliver[PARTSET_NAME_MAX];
	uint64_t floor = 0, start;

	snprintf(prefix, sizeof(prefix), "%s_p%d_", ps->consumer, p);
	snprintf(filter, sizeof(filter), "%s%d.>", ps->subject_prefix, p);
	(void)partset_deliver(ps, p, deliver, sizeof(deliver));
	snprintf(pp->consumer, sizeof(pp->consumer), "%s%" PRIu64 "_%" PRIu64, prefix, pp->want, ++ps->gen);
	if (jsetup_consumer_floor(ps->js, ps->stream, prefix, &floor) == -1)
		return -1;
	/*
	 * Another owner may have moved the floor past what our stores hold
	 * (replay the difference), and a floor below what we hold means our
	 * stores are ahead of what was acked: redelivering is harmless, a
	 * replay of what we already answered is recognised by the stores.
	 */
	start = (pp->held < floor ? pp->held : floor) + 1;
	/* The floor goes with the new consumer, or a crash during the replay would lose it. */
	if (jsetup_consumer_replace(ps->js, ps->stream, prefix, pp->consumer, filter, deliver, start,
	    floor) == -1)
		return -1;
	pp->replay_upto = floor;
	atomic_store(&pp->last_consumer_seq, 0);
	if (pp->epoch != pp->want)
		log_info("partition %d: taken over (lease epoch %" PRIu64 "); consumer %s delivers from "
		    "stream sequence %" PRIu64 "%s", p, pp->want, pp->consumer, start,
		    start <= floor ? ", replaying up to the ack floor without digests" : "");
	else
		log_info("partition %d: consumer %s delivers from stream sequence %" PRIu64, p,
		    pp->consumer, start);
	if (start <= floor)
		log_info("partition %d: rebuilding from stream sequences %" PRIu64 "..%" PRIu64
		    " (answered by a former owner)", p, start, floor);
	pp->epoch = pp->want;
	atomic_fetch_add(&pp->binding, 1);
	return 0;
}

int
partset_bind(struct partset *ps)
{
	int rc = 0;

	for (int p = 0; p < ps->n; p++) {
		struct partset_part *pp = &ps->part[p];

		if (pp->want == 0) {
			partset_drop(ps, p);
			continue;
		}
		/* Kept under the same lease: its consumer and subscription go on untouched. */
		if (pp->epoch != 0 && pp->epoch == pp->want)
			continue;
		if (partset_bind_one(ps, p) == -1) {
			log_warnx("partition %d: not served until the next try", p);
			partset_unbind(ps, p);
			rc = -1;
		}
	}
	if (partset_save(ps) == -1)
		rc = -1;
	return rc;
}

/* The partition number at s (decimal, no sign, no leading zero), and where it ends. */
static int
partset_number(const char *s, const char **end)
{
	long v = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		if ((v = v * 10 + (*s - '0')) > INT_MAX)
			return -1;
	*end = s;
	return (int)v;
}

int
partset_classify(struct partset *ps, const char *subject, const struct jsack_meta *meta,
    enum msg_kind *kind, bool *replay, bool *gap, uint32_t *binding)
{
	const char *rest;
	int p;

	*gap = false;
	if (strncmp(subject, ps->subject_prefix, ps->subject_prefix_len) != 0 ||
	    (p = partset_number(subject + ps->subject_prefix_len, &rest)) < 0 || p >= ps->n)
		return -1;
	/* Anything else (the router's ".other") is still p's to reject and count. */
	if (strcmp(rest, ".status") == 0)
		*kind = MSG_STATUS_CHANGED;
	else if (strcmp(rest, ".request") == 0)
		*kind = MSG_DIGEST_REQUEST;
	else
		*kind = 0;
	/* The binding before the epoch: see partset_unbind. */
	*binding = atomic_load(&ps->part[p].binding);
	if (atomic_load(&ps->part[p].epoch) == 0)
		return -1;
	*replay = meta->stream_seq <= ps->part[p].replay_upto;
	*gap = meta->consumer_seq != atomic_load(&ps->part[p].last_consumer_seq) + 1;
	atomic_store(&ps->part[p].last_consumer_seq, meta->consumer_seq);
	return p;
}
