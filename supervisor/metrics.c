#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/validate.h"
#include "../common/version.h"
#include "metrics.h"

static int
metrics_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
metrics_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Label values escape \ " and newline; help text only \ and newline. */
static int
metrics_escaped(struct buf *b, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		int rc;
		if (*s == '\\')
			rc = buf_append(b, "\\\\", 2);
		else if (*s == '\n')
			rc = buf_append(b, "\\n", 2);
		else if (*s == '"' && quote)
			rc = buf_append(b, "\\\"", 2);
		else
			rc = buf_append_byte(b, (uint8_t)*s);
		if (rc == -1)
			return -1;
	}
	return 0;
}

int
metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
	if (metrics_printf(b, "# HELP %s ", name) == -1 || metrics_escaped(b, help, false) == -1)
		return -1;
	return metrics_printf(b, "\n# TYPE %s %s\n", name, type);
}

static int
metrics_head(struct buf *b, const char *name, const char *suffix, const char *label, const char *value,
    const char *le)
{
	const char *sep = "{";

	if (metrics_printf(b, "%s%s", name, suffix) == -1)
		return -1;
	if (label != NULL) {
		if (metrics_printf(b, "{%s=\"", label) == -1 || metrics_escaped(b, value, true) == -1 ||
		    buf_append_byte(b, '"') == -1)
			return -1;
		sep = ",";
	}
	if (le != NULL && metrics_printf(b, "%sle=\"%s\"", sep, le) == -1)
		return -1;
	if (label != NULL || le != NULL)
		return buf_append_byte(b, '}');
	return 0;
}

int
metrics_sample(struct buf *b, const char *name, const char *label, const char *value, uint64_t v)
{
	if (metrics_head(b, name, "", label, value, NULL) == -1)
		return -1;
	return metrics_printf(b, " %llu\n", (unsigned long long)v);
}

int
metrics_sample_f(struct buf *b, const char *name, const char *label, const char *value, double v)
{
	if (metrics_head(b, name, "", label, value, NULL) == -1)
		return -1;
	return metrics_printf(b, " %.3f\n", v);
}

int
metrics_histo(struct buf *b, const char *name, const char *label, const char *value,
    const struct histo *h)
{
	uint64_t cum = 0;
	char le[32];

	for (int i = 0; i < HISTO_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < HISTO_BOUNDS)
			snprintf(le, sizeof(le), "%g", (double)histo_bound_us(i) / 1e6);
		else
			snprintf(le, sizeof(le), "+Inf");
		if (metrics_head(b, name, "_bucket", label, value, le) == -1 ||
		    metrics_printf(b, " %llu\n", (unsigned long long)cum) == -1)
			return -1;
	}
	if (metrics_head(b, name, "_sum", label, value, NULL) == -1 ||
	    metrics_printf(b, " %.6f\n", (double)h->sum_us / 1e6) == -1 ||
	    metrics_head(b, name, "_count", label, value, NULL) == -1)
		return -1;
	return metrics_printf(b, " %llu\n", (unsigned long long)cum);
}

/* One family with one unlabelled sample. */
static int
metrics_one(struct buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	if (metrics_family(b, name, type, help) == -1)
		return -1;
	return metrics_sample(b, name, NULL, NULL, v);
}

/* The per-slot gauges: the field at `off` of each struct obs_slot. */
static int
metrics_slots(struct buf *b, const struct obs_snap *s, const char *name, const char *help, size_t off,
    bool is_bool)
{
	char slot[16];

	if (metrics_family(b, name, "gauge", help) == -1)
		return -1;
	for (int i = 0; i < s->nslots; i++) {
		const char *f = (const char *)&s->slot[i] + off;
		uint64_t v;

		if (is_bool)
			v = *(const bool *)f;
		else
			memcpy(&v, f, sizeof(v));
		snprintf(slot, sizeof(slot), "%d", i);
		if (metrics_sample(b, name, "slot", slot, v) == -1)
			return -1;
	}
	return 0;
}

#define SLOT_U64(b, s, name, help, field) \
	metrics_slots(b, s, name, help, offsetof(struct obs_slot, field), false)
#define SLOT_BOOL(b, s, name, help, field) \
	metrics_slots(b, s, name, help, offsetof(struct obs_slot, field), true)

static int
metrics_intake(const struct obs_snap *s, struct buf *b)
{
	const struct intake_stats *in = &s->in;
	uint64_t other = in->received - in->received_status - in->received_request;
	char why[160];
	bool ok;

	if (metrics_family(b, "alarm_digest_messages_received_total", "counter",
	    "Messages received, by subject (\"(other)\": neither input subject).") == -1 ||
	    metrics_sample(b, "alarm_digest_messages_received_total", "subject", s->subject_status,
	    in->received_status) == -1 ||
	    metrics_sample(b, "alarm_digest_messages_received_total", "subject", s->subject_request,
	    in->received_request) == -1 ||
	    metrics_sample(b, "alarm_digest_messages_received_total", "subject", "(other)", other) == -1)
		return -1;
	if (metrics_one(b, "alarm_digest_messages_accepted_total", "counter",
	    "Messages that passed validation and went to a worker.", in->accepted) == -1)
		return -1;
	if (metrics_family(b, "alarm_digest_messages_rejected_total", "counter",
	    "Malformed messages, by reason (too_many_alarms: refused by a worker).") == -1)
		return -1;
	for (int e = MSG_OK + 1; e < MSG_E_COUNT; e++)
		if (metrics_sample(b, "alarm_digest_messages_rejected_total", "reason",
		    msg_error_name((enum msg_error)e), in->by_reason[e]) == -1)
			return -1;
	if (metrics_sample(b, "alarm_digest_messages_rejected_total", "reason", "too_many_alarms",
	    s->overlimit) == -1)
		return -1;
	if (metrics_one(b, "alarm_digest_dead_lettered_total", "counter",
	    "Dead-letter copies kept.", in->dead_lettered) == -1 ||
	    metrics_one(b, "alarm_digest_dead_letter_truncated_total", "counter",
	    "Dead-letter copies that kept only the first bytes.", in->dead_letter_truncated) == -1 ||
	    metrics_one(b, "alarm_digest_dead_letter_failures_total", "counter",
	    "Dead-letter copies that could not be kept.", in->dead_letter_failed) == -1 ||
	    metrics_one(b, "alarm_digest_redeliveries_total", "counter",
	    "JetStream deliveries that were redeliveries.", in->redelivered) == -1)
		return -1;
	if (metrics_family(b, "alarm_digest_healthy", "gauge", "1 when /healthz answers 200.") == -1)
		return -1;
	ok = obs_healthy(s, why, sizeof(why));
	if (metrics_sample(b, "alarm_digest_healthy", NULL, NULL, ok) == -1)
		return -1;
	if (metrics_family(b, "alarm_digest_ready", "gauge", "1 when /readyz answers 200.") == -1)
		return -1;
	ok = obs_ready(s, why, sizeof(why));
	return metrics_sample(b, "alarm_digest_ready", NULL, NULL, ok);
}

static int
metrics_workers(const struct obs_snap *s, struct buf *b)
{
	int parked = 0;

	for (int i = 0; i < s->nslots; i++)
		parked += s->slot[i].parked;
	if (metrics_one(b, "alarm_digest_digests_published_total", "counter",
	    "Digests published.", s->digests) == -1 ||
	    metrics_one(b, "alarm_digest_digest_messages_published_total", "counter",
	    "AlarmDigest messages published (a digest split in parts takes several).",
	    s->digest_parts) == -1 ||
	    metrics_one(b, "alarm_digest_digest_bytes_published_total", "counter",
	    "Payload bytes of the AlarmDigest messages published.", s->digest_bytes) == -1 ||
	    metrics_one(b, "alarm_digest_digest_messages_resent_total", "counter",
	    "AlarmDigest messages published again after a NATS reconnect, in case the old server "
	    "had not passed them on.", s->digest_msgs_resent) == -1)
		return -1;
	if (metrics_family(b, "alarm_digest_digest_latency_seconds", "histogram",
	    "From a SendAlarmDigest received by the supervisor to its digest published by a worker.") == -1 ||
	    metrics_histo(b, "alarm_digest_digest_latency_seconds", NULL, NULL, &s->digest_latency) == -1)
		return -1;
	if (metrics_one(b, "alarm_digest_commits_total", "counter",
	    "Batches committed by the workers.", s->commits) == -1 ||
	    metrics_family(b, "alarm_digest_commit_latency_seconds", "histogram",
	    "Time to commit a batch: digest flush and LMDB commit.") == -1 ||
	    metrics_histo(b, "alarm_digest_commit_latency_seconds", NULL, NULL, &s->commit_latency) == -1)
		return -1;
	if (metrics_one(b, "alarm_digest_worker_restarts_total", "counter",
	    "Worker processes restarted after dying.", s->restarts) == -1 ||
	    metrics_one(b, "alarm_digest_worker_stall_kills_total", "counter",
	    "Workers killed for stalling.", s->stall_kills) == -1 ||
	    metrics_one(b, "alarm_digest_slots", "gauge", "Worker slots.", (uint64_t)s->nslots) == -1 ||
	    metrics_one(b, "alarm_digest_slots_parked", "gauge",
	    "Slots parked by the crash-loop breaker (SIGHUP retries).", (uint64_t)parked) == -1)
		return -1;
	if (SLOT_BOOL(b, s, "alarm_digest_slot_up", "1 while the slot's worker process runs.", running) == -1 ||
	    SLOT_BOOL(b, s, "alarm_digest_slot_parked", "1 while the slot is parked.", parked) == -1 ||
	    SLOT_BOOL(b, s, "alarm_digest_slot_held", "1 while the slot holds its users back (spilling or late).",
	    held) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_slot_queue_depth", "Messages routed to the slot, not yet durable in its store.",
	    queued) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_slot_spilled_messages", "Of those, messages held back in its spill file.",
	    spilled) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_users", "Users in the slot's store.", users) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_alarms", "Alarm records in the slot's store, tombstones included.",
	    alarms) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_tombstones", "CLEARED records kept to reject stale updates.",
	    tombstones) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_lmdb_map_used_bytes", "LMDB pages in use.", map_used) == -1 ||
	    SLOT_U64(b, s, "alarm_digest_lmdb_map_size_bytes", "LMDB map size (grows up to map_size_max).",
	    map_size) == -1)
		return -1;
	return 0;
}

static int
metrics_nats(const struct obs_snap *s, struct buf *b)
{
	static const char *const states[] = { "disconnected", "connected", "reconnecting", "closed" };

	if (metrics_family(b, "alarm_digest_nats_connection_state", "gauge",
	    "1 for the supervisor's NATS connection's current state.") == -1)
		return -1;
	for (int i = 0; i < 4; i++)
		if (metrics_sample(b, "alarm_digest_nats_connection_state", "state", states[i],
		    (int)s->nats == i) == -1)
			return -1;
	if (s->lag_known) {
		if (metrics_one(b, "alarm_digest_consumer_num_pending", "gauge",
		    "Stream messages the consumer has not delivered yet (consumer info).", s->num_pending) == -1 ||
		    metrics_one(b, "alarm_digest_consumer_num_ack_pending", "gauge",
		    "Messages delivered and not acked yet (consumer info).", s->num_ack_pending) == -1)
			return -1;
	}
	if (metrics_family(b, "alarm_digest_start_time_seconds", "gauge",
	    "When the supervisor started, Unix time.") == -1 ||
	    metrics_sample_f(b, "alarm_digest_start_time_seconds", NULL, NULL,
	    (double)s->started_wall_ms / 1000.0) == -1)
		return -1;
	if (metrics_family(b, "alarm_digest_build_info", "gauge", "The running version.") == -1)
		return -1;
	return metrics_sample(b, "alarm_digest_build_info", "version", ALARM_DIGEST_VERSION, 1);
}

/* Cluster mode: which partitions this instance holds and since when, and the router. */
static int
metrics_cluster(const struct obs_snap *s, struct buf *b)
{
	char part[16];
	/* Past the fence this instance acts for nothing it held, whatever the snapshot says. */
	bool acting = clock_mono_ms() <= s->fence_ms;

	if (s->partitions == 0)
		return 0;
	if (metrics_one(b, "alarm_digest_cluster_partitions", "gauge",
	    "[cluster] partitions: users are split into this many.", (uint64_t)s->partitions) == -1 ||
	    metrics_one(b, "alarm_digest_cluster_members", "gauge",
	    "Live instances this one sees, itself included.", (uint64_t)s->members) == -1 ||
	    metrics_family(b, "alarm_digest_partition_owned", "gauge",
	    "1 when this instance holds the partition's lease.") == -1)
		return -1;
	for (int p = 0; p < s->partitions; p++) {
		snprintf(part, sizeof(part), "%d", p);
		if (metrics_sample(b, "alarm_digest_partition_owned", "partition", part,
		    acting && s->part_since_ms[p] != 0) == -1)
			return -1;
	}
	if (metrics_family(b, "alarm_digest_partition_owned_since_seconds", "gauge",
	    "When this instance took the partition's lease (unix time).") == -1)
		return -1;
	for (int p = 0; p < s->partitions; p++) {
		if (!acting || s->part_since_ms[p] == 0)
			continue;
		snprintf(part, sizeof(part), "%d", p);
		if (metrics_sample_f(b, "alarm_digest_partition_owned_since_seconds", "partition", part,
		    (double)s->part_since_ms[p] / 1000.0) == -1)
			return -1;
	}
	if (metrics_one(b, "alarm_digest_partitions_acquired_total", "counter",
	    "Partition leases taken.", s->part_acquired) == -1 ||
	    metrics_one(b, "alarm_digest_partitions_released_total", "counter",
	    "Partition leases handed over.", s->part_released) == -1 ||
	    metrics_one(b, "alarm_digest_partitions_lost_total", "counter",
	    "Partition leases lost (not renewed in time, or taken by another instance).",
	    s->part_lost) == -1 ||
	    metrics_one(b, "alarm_digest_router_active", "gauge",
	    "1 while this instance routes the input to the partitions.",
	    acting && s->router_active) == -1 ||
	    metrics_one(b, "alarm_digest_digests_fenced_total", "counter",
	    "Digest requests not answered here: past the lease fence (another instance answers them).",
	    s->digests_fenced) == -1 ||
	    metrics_one(b, "alarm_digest_messages_replayed_total", "counter",
	    "Messages replayed to rebuild a partition taken over (answered before; not in received).",
	    s->in.replayed) == -1)
		return -1;
	return 0;
}

int
metrics_render(const struct obs_snap *s, struct buf *b)
{
	if (metrics_intake(s, b) == -1 || metrics_workers(s, b) == -1 || metrics_nats(s, b) == -1 ||
	    metrics_cluster(s, b) == -1)
		return -1;
	return 0;
}
