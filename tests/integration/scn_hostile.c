/*
 * hostile: a hostile publisher.  Every malformed, oversized and edge case
 * the malformed scenario knows (mcases.h), extremes of its own (messages of
 * exactly the broker's max_payload, nesting at and past the limit and
 * 50,001 deep, huge numbers, NUL bytes, 10,000-field objects, IDs of
 * 100,000 bytes, whitespace padding, the per-user alarm limit set to 8),
 * mixed into valid traffic for many users.  Judged: every valid digest
 * exact against the model; every bad message dead-lettered once with its
 * reason (from the stream ALARMS_DEAD_LETTER, headers included), nothing
 * else; every rejection counted (master bad=, workers overlimit=); the
 * whole run within a bound (no stall); the RSS of the master and workers
 * bounded.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "mcases.h"

#define HOSTILE_MAX_MESSAGE 131072   /* room for 10,000-field objects */
#define HOSTILE_MAX_ALARMS 8         /* valid users hold at most 5, the final marker included */
#define HOSTILE_LIMIT_USER "hostile-limit"
#define DL_STREAM "ALARMS_DEAD_LETTER"

#if defined(__SANITIZE_ADDRESS__)
/* ASan keeps up to 256 MiB of freed memory in quarantine, and runs several times slower. */
#define HOSTILE_RSS_GROWTH_KIB (384L << 10)
#define HOSTILE_BOUND_MS 240000
#else
#define HOSTILE_RSS_GROWTH_KIB (64L << 10)
#define HOSTILE_BOUND_MS 60000
#endif

/* ---- the extreme cases ---- */

/* {"AlarmID":"bad","UserID":"<user>",... , X } with X the given members, as an add_bad format. */
#define WITH(x) "{" A_BAD "," U_CASE "," S_WARN "," T_OK "," x "}"

static int
hostile_build_fixed(struct mlist *l)
{
	static const struct { const char *name, *r1, *r2, *fmt; } t[] = {
		{ "hostile/huge_number_as_alarm_id", "wrong_type", "bad_json",
		  "{\"AlarmID\":1e999999," U_CASE "," S_WARN "," T_OK "}" },
		{ "hostile/nan_in_unknown_field", "bad_json", NULL, WITH("\"X\":NaN") },
		{ "hostile/hex_number", "bad_json", NULL, WITH("\"X\":0x10") },
		{ "hostile/leading_zero_number", "bad_json", NULL, WITH("\"X\":01") },
		{ "hostile/nul_key_escaped", "bad_json", NULL, WITH("\"UserID\\u0000x\":1") },
		{ "hostile/raw_esc_bel_in_string", "bad_json", NULL, WITH("\"X\":\"\x1b[2J\a\"") },
		{ "hostile/invalid_escape", "bad_json", NULL, WITH("\"X\":\"\\x41\"") },
		{ "hostile/short_unicode_escape", "bad_json", NULL, WITH("\"X\":\"\\u12\"") },
		{ "hostile/bom_prefix", "bad_json", "bad_utf8", "\xef\xbb\xbf" VALID },
		{ "hostile/bad_utf8_in_key", "bad_utf8", NULL, WITH("\"X\xc3\x28\":1") },
		{ "hostile/code_point_above_10ffff", "bad_utf8", NULL, WITH("\"X\":\"\xf4\x90\x80\x80\"") },
		{ "hostile/lone_surrogate_in_key", "lone_surrogate", NULL, WITH("\"X\\ud800\":1") },
		{ "hostile/lone_surrogate_nested", "lone_surrogate", NULL,
		  WITH("\"X\":[[{\"y\":[\"\\udfff\"]}]]") },
		{ "hostile/duplicate_changed_at", "duplicate_field", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN "," T_OK ",\"ChangedAt\":\"%2$s\"}" },
		{ "hostile/duplicate_escaped_name", "duplicate_field", NULL, WITH("\"Use\\u0072ID\":\"v\"") },
		{ "hostile/year_10000", "bad_timestamp", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":\"10000-01-01T00:00:00Z\"}" },
		{ "hostile/year_9999_offset", "future_timestamp", NULL,
		  "{" A_BAD "," U_CASE "," S_WARN ",\"ChangedAt\":\"9999-01-01T00:00:00+23:59\"}" },
		{ "hostile/request_as_update", "missing_field", NULL, "{" U_CASE "}" },
	};


	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (mlist_add_bad(l, t[i].name, UPD, t[i].r1, t[i].r2, t[i].fmt) == -1)
			return -1;
	char ts[48];

	/* Accepted, however odd: unknown fields may hold any JSON value, "" may be a key. */
	model_ts_print(l->base + (int64_t)l->n, 0, 0, 0, false, ts, sizeof(ts));
	return mlist_add_good_json(l, "hostile/valid_huge_numbers_nul_empty_key", "huge", ts,
	    "{\"AlarmID\":\"huge\",\"UserID\":\"%1$s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%2$s\",\"a\":1e999999,\"b\":-1e999999,\"c\":1.5e-999999,"
	    "\"d\":123456789012345678901234567890123456789012345678901234567890,\"e\":-0,"
	    "\"f\":\"a\\u0000b\",\"\":[]}");
}

/* The members of a valid update of the case about to be added, for padding. */
static int
hostile_members(struct mlist *l, const char *alarm, char *buf, size_t cap, char *ts, size_t tscap)
{
	char user[64];

	mlist_user(l, l->n, user, sizeof(user));
	model_ts_print(l->base + (int64_t)l->n, 0, 0, 0, false, ts, tscap);
	return snprintf(buf, cap, "\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"CRITICAL\","
	    "\"ChangedAt\":\"%s\"", alarm, user, ts) < (int)cap ? 0 : -1;
}

/* A valid case built from bytes: the model sees a CRITICAL update of alarm at ts. */
static int
hostile_good_raw(struct mlist *l, const char *name, const char *alarm, const char *ts,
    char *data, size_t len)
{
	struct mcase *c = mlist_next(l, name);

	if (c == NULL || data == NULL) {
		free(data);
		return -1;
	}
	snprintf(c->alarm, sizeof(c->alarm), "%s", alarm);
	snprintf(c->status, sizeof(c->status), "CRITICAL");
	snprintf(c->ts, sizeof(c->ts), "%s", ts);
	c->subject = UPD;
	c->data = data;
	c->len = len;
	l->n++;
	return 0;
}

/* "{" + head + "," + n members "kNNNNN":0 (or a fixed tail) + "}" */
static char *
hostile_many_fields(const char *head, size_t n, const char *tail, size_t *len)
{
	size_t cap = strlen(head) + n * 12 + (tail ? strlen(tail) : 0) + 8, off;
	char *s = malloc(cap);

	if (s == NULL)
		return NULL;
	off = (size_t)snprintf(s, cap, "{%s", head);
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, ",\"k%05zu\":0", i);
	off += (size_t)snprintf(s + off, cap - off, "%s}", tail ? tail : "");
	*len = off;
	return s;
}

/* Nesting: depth levels of [ around a 0, as an unknown field of a valid update. */
static char *
hostile_nested(const char *members, size_t depth, size_t *len)
{
	size_t cap = strlen(members) + 2 * depth + 32;
	char *s = malloc(cap);
	size_t off;

	if (s == NULL)
		return NULL;
	off = (size_t)snprintf(s, cap, "{%s,\"X\":", members);
	memset(s + off, '[', depth);
	off += depth;
	s[off++] = '0';
	memset(s + off, ']', depth);
	off += depth;
	s[off++] = '}';
	s[off] = '\0';
	*len = off;
	return s;
}

static int
hostile_build_generated(struct mlist *l, size_t max_payload)
{
	char members[512], ts[48], user[64], *data, *big;
	size_t len = 0;

	/* Exactly the broker's max_payload: oversized, and its copy keeps the first bytes. */
	if (hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = mcase_padded(members, max_payload, &len);
	if (mlist_add_bad_raw(l, "hostile/update_of_max_payload", UPD, "oversized", NULL, data, len) == -1)
		return -1;
	{
		char user[64];

		mlist_user(l, l->n, user, sizeof(user));
		snprintf(members, sizeof(members), "\"UserID\":\"%s\"", user);
	}
	data = mcase_padded(members, max_payload, &len);
	if (mlist_add_bad_raw(l, "hostile/request_of_max_payload", REQ, "oversized", NULL, data, len) == -1)
		return -1;
	l->c[l->n - 2].plain = l->c[l->n - 1].plain = true;

	/* 32 levels, the message object included, is the limit; 33 and 50,001 are past it. */
	if (hostile_members(l, "nest32", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = hostile_nested(members, 31, &len);
	if (hostile_good_raw(l, "hostile/valid_nesting_32", "nest32", ts, data, len) == -1 ||
	    hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = hostile_nested(members, 32, &len);
	if (mlist_add_bad_raw(l, "hostile/nesting_33", UPD, "bad_json", NULL, data, len) == -1 ||
	    hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = hostile_nested(members, 50000, &len);
	if (mlist_add_bad_raw(l, "hostile/nesting_50001", UPD, "bad_json", NULL, data, len) == -1)
		return -1;

	/* 10,000 fields: valid (unknown fields), with UserID again at the end, as an array. */
	if (hostile_members(l, "fields", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = hostile_many_fields(members, 10000, NULL, &len);
	if (hostile_good_raw(l, "hostile/valid_10000_fields", "fields", ts, data, len) == -1 ||
	    hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = hostile_many_fields(members, 10000, ",\"UserID\":\"x\"", &len);
	if (mlist_add_bad_raw(l, "hostile/10000_fields_then_duplicate", UPD, "duplicate_field", NULL,
	    data, len) == -1)
		return -1;
	if ((big = mcase_repeat("0,", 10000)) == NULL)
		return -1;
	big[strlen(big) - 1] = '\0';
	data = mcase_printf(&len, "[%s]", big);
	free(big);
	if (mlist_add_bad_raw(l, "hostile/array_of_10000", UPD, "not_object", NULL, data, len) == -1)
		return -1;

	/* IDs far over the limit, but the payload within it. */
	if ((big = mcase_repeat("y", 100000)) == NULL)
		return -1;
	if (hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		goto fail;
	mlist_user(l, l->n, user, sizeof(user));
	data = mcase_printf(&len, "{\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"WARNING\","
	    "\"ChangedAt\":\"%s\"}", big, user, ts);
	if (mlist_add_bad_raw(l, "hostile/alarm_id_100000_bytes", UPD, "id_too_long", NULL, data,
	    len) == -1)
		goto fail;
	mlist_user(l, l->n, user, sizeof(user));
	data = mcase_printf(&len, "{\"U\":\"%s\",\"UserID\":\"%s\"}", user, big);
	if (mlist_add_bad_raw(l, "hostile/request_user_id_100000_bytes", REQ, "id_too_long", NULL,
	    data, len) == -1)
		goto fail;
	free(big);

	/* 128 escaped two-byte characters: 256 bytes decoded, at the limit. */
	if ((big = mcase_repeat("\\u00e9", 128)) == NULL)
		return -1;
	if (hostile_members(l, "x", members, sizeof(members), ts, sizeof(ts)) == -1)
		goto fail;
	{
		char *alarm = mcase_repeat("\xc3\xa9", 128);
		char *fmt = mcase_printf(NULL, "{\"AlarmID\":\"%s\",\"UserID\":\"%%1$s\","
		    "\"Status\":\"CRITICAL\",\"ChangedAt\":\"%%2$s\"}", big);
		int rc = alarm == NULL || fmt == NULL ? -1 :
		    mlist_add_good_json(l, "hostile/valid_escaped_id_256_bytes", alarm, ts, fmt);

		free(alarm);
		free(fmt);
		if (rc == -1)
			goto fail;
	}
	free(big);

	/* 100,000 bytes of whitespace before the object: still one JSON value. */
	if (hostile_members(l, "spaced", members, sizeof(members), ts, sizeof(ts)) == -1 ||
	    (big = mcase_repeat(" \t\r\n", 25000)) == NULL)
		return -1;
	data = mcase_printf(&len, "%s{%s}", big, members);
	free(big);
	if (hostile_good_raw(l, "hostile/valid_whitespace_100000", "spaced", ts, data, len) == -1)
		return -1;

	/* NUL bytes: raw in a string, after the object, nothing else. */
	if (hostile_members(l, "bad", members, sizeof(members), ts, sizeof(ts)) == -1)
		return -1;
	data = mcase_printf(&len, "{%s,\"X\":\"a#b\"}", members);
	if (data != NULL)
		data[len - 4] = '\0';
	if (mlist_add_bad_raw(l, "hostile/nul_byte_in_string", UPD, "bad_json", NULL, data, len) == -1)
		return -1;
	data = mcase_printf(&len, "{%s}#", members);
	if (data != NULL)
		data[len - 1] = '\0';
	if (mlist_add_bad_raw(l, "hostile/nul_byte_after_object", UPD, "bad_json", NULL, data, len) == -1)
		return -1;
	if ((data = calloc(1, 1000)) == NULL ||
	    mlist_add_bad_raw(l, "hostile/only_nul_bytes", UPD, "bad_json", NULL, data, 1000) == -1)
		return -1;
	return 0;
fail:
	free(big);
	return -1;
}

/* ---- the per-user limit ---- */

/*
 * HOSTILE_LIMIT_USER comes to hold the limit (the final round's marker
 * among them, as a tombstone, so the final raise updates an alarm held);
 * then two new alarms are refused and an update of one held applies.  The
 * refused ones are written as the worker rebuilds them, so their copies
 * are byte-exact.
 */
static int
hostile_build_limit(struct mlist *lim, int64_t base)
{
	static const char *const refused[][2] = { { "L8", "WARNING" }, { "L9", "CLEARED" } };
	char ts[48], name[64];

	for (size_t i = 0; i < 2; i++) {
		struct mcase *c;
		char *data;
		size_t len;

		model_ts_print(base + 100 + (int64_t)i, 0, 0, 0, false, ts, sizeof(ts));
		data = mcase_printf(&len, "{\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"%s\","
		    "\"ChangedAt\":\"%s\"}", refused[i][0], HOSTILE_LIMIT_USER, refused[i][1], ts);
		snprintf(name, sizeof(name), "too_many_alarms/%s", refused[i][0]);
		if (mlist_add_bad_raw(lim, name, UPD, "too_many_alarms", NULL, data, len) == -1)
			return -1;
		c = &lim->c[lim->n - 1];
		snprintf(c->user, sizeof(c->user), "%s", HOSTILE_LIMIT_USER);
	}
	return 0;
}

static int
hostile_send_limit(struct env *e, struct model *m, struct mlist *lim, int64_t base)
{
	char ts[48], alarm[64], marker[64];
	struct event ev = { .user = HOSTILE_LIMIT_USER, .ts = ts };

	traffic_marker(e->tag, marker, sizeof(marker));
	model_ts_print(base, 0, 0, 0, false, ts, sizeof(ts));
	ev.alarm = marker;
	ev.status = "CLEARED";
	if (event_send(&ev, e->bus, m) == -1)
		return -1;
	ev.alarm = alarm;
	ev.status = "WARNING";
	for (int i = 1; i < HOSTILE_MAX_ALARMS; i++) {
		snprintf(alarm, sizeof(alarm), "L%d", i);
		model_ts_print(base + i, 0, 0, 0, false, ts, sizeof(ts));
		if (event_send(&ev, e->bus, m) == -1)
			return -1;
	}
	for (size_t i = 0; i < lim->n; i++)
		if (bus_publish(e->bus, lim->c[i].subject, lim->c[i].data, lim->c[i].len) == -1)
			return -1;
	snprintf(alarm, sizeof(alarm), "L1");
	ev.status = "CRITICAL";
	model_ts_print(base + 200, 0, 0, 0, false, ts, sizeof(ts));
	if (event_send(&ev, e->bus, m) == -1)
		return -1;
	ev.request = true;
	return event_send(&ev, e->bus, m);
}

/* ---- valid traffic ---- */

/* users x 4 alarms x 3 updates, 2 requests each, shuffled. */
static int
hostile_plan(struct plan *p, struct rng *rng, int users, int64_t base)
{
	char user[64], alarm[16], ts[48];

	for (int u = 0; u < users; u++) {
		snprintf(user, sizeof(user), "hv-%04d", u);
		for (int a = 0; a < 4; a++) {
			snprintf(alarm, sizeof(alarm), "a%d", a);
			for (int k = 0; k < 3; k++) {
				traffic_random_ts(rng, base, 30, ts, sizeof(ts));
				if (plan_update(p, user, alarm, traffic_random_status(rng), ts) == -1)
					return -1;
			}
		}
		for (int k = 0; k < 2; k++)
			if (plan_request(p, user) == -1)
				return -1;
	}
	plan_shuffle(p, rng);
	return 0;
}

/* Valid events and cases interleaved: a case every `every` events, until both run out. */
static int
hostile_send(struct env *e, struct model *m, struct plan *p, struct mlist *l, size_t *valid_sent)
{
	size_t every = p->n / (l->n + 1) + 1, ci = 0;

	for (size_t i = 0; i < p->n || ci < l->n; i++) {
		if (i < p->n) {
			if (event_send(&p->ev[i], e->bus, m) == -1)
				return -1;
			(*valid_sent)++;
		}
		if ((i % every == every - 1 || i >= p->n) && ci < l->n) {
			if (mcase_send(e, m, &l->c[ci], l->base, ci) == -1) {
				harness_seterr("publishing case %s: %s", l->c[ci].name, harness_err());
				return -1;
			}
			/* The "ok" update and the request around the case are valid too. */
			*valid_sent += 2;
			ci++;
		}
	}
	return bus_flush(e->bus, 30000);
}

/* ---- the dead-letter stream ---- */

struct copy {
	char *data;
	size_t len;
	char reason[512], subject[128];
	long long orig_size;    /* Alarm-Original-Size; -1 when absent */
	bool matched;
};

struct copies {
	struct copy *c;
	size_t n;
};

static void
copies_free(struct copies *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		free(cs->c[i].data);
	free(cs->c);
	cs->c = NULL;
	cs->n = 0;
}

static void
copy_header(natsMsg *msg, const char *key, char *buf, size_t cap)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(msg, key, &v) != NATS_OK || v == NULL)
		v = "";
	snprintf(buf, cap, "%s", v);
}

/* Wait for want copies in the stream, then read them all, headers included. */
static int
copies_read(struct env *e, size_t want, struct copies *cs)
{
	int64_t deadline = harness_now_ms() + 60000;
	uint64_t msgs = 0, last = 0;

	while (bus_stream_state(e->bus, DL_STREAM, &msgs, &last) == 0 && msgs < want &&
	    harness_now_ms() < deadline)
		harness_sleep_ms(200);
	if ((cs->c = calloc(last + 1, sizeof(*cs->c))) == NULL) {
		harness_seterr("out of memory");
		return -1;
	}
	for (uint64_t seq = 1; seq <= last; seq++) {
		struct copy *c = &cs->c[cs->n];
		natsMsg *msg = NULL;
		jsErrCode jerr = 0;
		char size[32];

		if (js_GetMsg(&msg, bus_js(e->bus), DL_STREAM, seq, NULL, &jerr) != NATS_OK)
			continue;
		c->len = (size_t)natsMsg_GetDataLength(msg);
		if ((c->data = malloc(c->len + 1)) == NULL) {
			natsMsg_Destroy(msg);
			harness_seterr("out of memory");
			return -1;
		}
		memcpy(c->data, natsMsg_GetData(msg), c->len);
		copy_header(msg, "Alarm-Reject-Reason", c->reason, sizeof(c->reason));
		copy_header(msg, "Alarm-Original-Subject", c->subject, sizeof(c->subject));
		copy_header(msg, "Alarm-Original-Size", size, sizeof(size));
		c->orig_size = size[0] != '\0' ? strtoll(size, NULL, 10) : -1;
		natsMsg_Destroy(msg);
		cs->n++;
	}
	return 0;
}

/* Is copy k of case c: the whole payload, or (truncated) its first bytes with the size header? */
static bool
copy_of(const struct copy *k, const struct mcase *c)
{
	if (k->orig_size < 0)
		return k->len == c->len && (c->len == 0 || memcmp(k->data, c->data, c->len) == 0);
	return (size_t)k->orig_size == c->len && k->len < c->len && k->len > 0 &&
	    memcmp(k->data, c->data, k->len) == 0;
}

/*
 * Each bad case: as many copies as cases with its bytes, each with an
 * allowed reason and one on its subject.  Each valid case: none.  Marks
 * the copies matched.  Failures are printed; -1 says how many.
 */
static int
copies_check_list(struct copies *cs, const struct mlist *l, size_t *failed, char *first,
    size_t cap)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct mcase *c = &l->c[i];
		size_t found = 0, want = c->reasons[0] != NULL ? mlist_bad_copies(l, c) : 0;
		bool subject_ok = false, reason_ok = true;
		char why[700] = "";

		for (size_t j = 0; j < cs->n; j++) {
			if (!copy_of(&cs->c[j], c))
				continue;
			found++;
			cs->c[j].matched = true;
			subject_ok |= strcmp(cs->c[j].subject, c->subject) == 0;
			if (c->reasons[0] != NULL && !mcase_reason_allowed(c, cs->c[j].reason)) {
				reason_ok = false;
				snprintf(why, sizeof(why), "reason \"%.300s\", want %s%s%s", cs->c[j].reason,
				    c->reasons[0], c->reasons[1] ? " or " : "", c->reasons[1] ? c->reasons[1] : "");
			}
		}
		if (found != want)
			snprintf(why, sizeof(why), "%zu copies, want %zu", found, want);
		else if (want > 0 && !subject_ok)
			snprintf(why, sizeof(why), "no copy has Alarm-Original-Subject %s", c->subject);
		else if (reason_ok)
			continue;
		printf("# hostile: case %s: %s\n", c->name, why);
		if ((*failed)++ == 0)
			snprintf(first, cap, "%s: %s", c->name, why);
	}
	return 0;
}

static int
hostile_check_dead_letters(struct copies *cs, const struct mlist *l, const struct mlist *lim)
{
	char first[900] = "";
	size_t failed = 0;

	copies_check_list(cs, l, &failed, first, sizeof(first));
	copies_check_list(cs, lim, &failed, first, sizeof(first));
	if (failed == 0)
		return 0;
	harness_seterr("%zu cases not dead-lettered as they should be; first: %s", failed, first);
	return -1;
}

/* The max_payload cases: copies cut to fit, with Alarm-Original-Size. */
static int
hostile_check_truncated(const struct copies *cs, const struct mlist *l)
{
	size_t truncated = 0;

	for (size_t j = 0; j < cs->n; j++)
		truncated += cs->c[j].orig_size >= 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct mcase *c = &l->c[i];
		bool seen = false;

		if (strstr(c->name, "_of_max_payload") == NULL)
			continue;
		for (size_t j = 0; j < cs->n && !seen; j++)
			seen = cs->c[j].orig_size == (long long)c->len && copy_of(&cs->c[j], c) &&
			    strncmp(cs->c[j].reason, "oversized: ", 11) == 0;
		if (!seen) {
			harness_seterr("case %s (%zu bytes): no truncated copy with Alarm-Original-Size",
			    c->name, c->len);
			return -1;
		}
	}
	if (truncated != 2) {
		harness_seterr("%zu truncated copies, want 2 (the max_payload cases)", truncated);
		return -1;
	}
	return 0;
}

static int
hostile_check_extras(const struct copies *cs)
{
	for (size_t j = 0; j < cs->n; j++) {
		if (!cs->c[j].matched) {
			harness_seterr("unexpected dead letter %zu of %zu (reason \"%.200s\"): %.200s", j + 1,
			    cs->n, cs->c[j].reason, cs->c[j].data);
			return -1;
		}
	}
	return 0;
}

/* ---- process titles and memory ---- */


/* VmRSS of pid in KiB; -1 if unreadable. */
static long
rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

struct rss {
	pid_t pid[65];
	long kib[65];
	int n;                  /* [0] is the master */
};

/*
 * Waits until all `workers` run and carry their titles: on a loaded
 * machine the first sample could otherwise miss a worker still starting.
 */
static void
rss_take(struct env *e, int workers, struct rss *r)
{
	struct harness_worker w[64];
	int nw = harness_workers_wait(e->svc.proc.pid, workers, 10000, 0, w) == 0 ? workers :
	    harness_workers(e->svc.proc.pid, w, 64);

	r->n = 0;
	r->pid[r->n] = e->svc.proc.pid;
	r->kib[r->n++] = rss_kib(e->svc.proc.pid);
	for (int i = 0; i < nw; i++) {
		r->pid[r->n] = w[i].pid;
		r->kib[r->n++] = rss_kib(w[i].pid);
	}
}

static int
hostile_check_rss(const struct rss *before, const struct rss *after)
{
	for (int i = 0; i < after->n; i++) {
		long was = -1;

		for (int j = 0; j < before->n; j++)
			if (before->pid[j] == after->pid[i])
				was = before->kib[j];
		printf("# hostile: %s pid %ld VmRSS %ld KiB before, %ld KiB after\n",
		    i == 0 ? "master" : "worker", (long)after->pid[i], was, after->kib[i]);
		if (was < 0 || after->kib[i] < 0) {
			harness_seterr("pid %ld: VmRSS unreadable, or a process that was not there before "
			    "(a worker restarted?)", (long)after->pid[i]);
			return -1;
		}
		if (after->kib[i] - was > HOSTILE_RSS_GROWTH_KIB) {
			harness_seterr("pid %ld grew from %ld to %ld KiB, more than the %ld KiB allowed",
			    (long)after->pid[i], was, after->kib[i], HOSTILE_RSS_GROWTH_KIB);
			return -1;
		}
	}
	if (after->n != before->n) {
		harness_seterr("%d processes after, %d before", after->n, before->n);
		return -1;
	}
	return 0;
}

/* Master bad= is every intake reject; the workers' overlimit= add up to the refused updates. */
static int
hostile_check_counted(struct env *e, size_t intake_bad, size_t overlimit)
{
	int64_t deadline = harness_now_ms() + 5000;
	unsigned long long bad = 0, over = 0;

	for (;;) {
		struct harness_worker w[64];
		int nw = harness_workers(e->svc.proc.pid, w, 64);
		unsigned long long v;

		over = 0;
		for (int i = 0; i < nw; i++)
			if (harness_title_number(w[i].pid, " overlimit=", &v) == 0)
				over += v;
		if (harness_title_number(e->svc.proc.pid, " bad=", &bad) == 0 && bad == intake_bad &&
		    over == overlimit)
			return 0;
		if (harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(200);
	}
	harness_seterr("master title says bad=%llu (want %zu), workers overlimit= add up to %llu "
	    "(want %zu)", bad, intake_bad, over, overlimit);
	return -1;
}

/* ---- the scenario ---- */

void
scn_hostile(void)
{
	char extra[256];
	struct env_config cfg = { .workers = 3, .extra_conf = extra };
	int64_t base = (harness_wall_sec() - 3600) / 60 * 60;
	struct mlist l = { .base = base }, lim = { .base = base };
	struct model *m = model_new();
	struct copies cs = { 0 };
	struct plan p = { 0 };
	struct rss before, after;
	struct env e = { 0 };
	struct rng rng;
	size_t nbad = 0, valid_sent = 0, max_payload;
	int64_t t0, elapsed;
	int rc;

	snprintf(extra, sizeof(extra), "\n[limits]\nmax_message_bytes = %d\nmax_alarms_per_user = %d\n",
	    HOSTILE_MAX_MESSAGE, HOSTILE_MAX_ALARMS);
	rng_seed(&rng, itest_opts.seed ^ 0x4057);
	if (env_up(&e, "hostile", &cfg) == -1) {
		tap_fail("hostile", "environment: %s", harness_err());
		goto out;
	}
	max_payload = (size_t)natsConnection_GetMaxPayload(bus_conn(e.bus));
	if (m == NULL || mlist_build_shape(&l) == -1 || mlist_build_timestamps(&l) == -1 ||
	    mlist_build_ambiguous(&l) == -1 || mlist_build_limits(&l, HOSTILE_MAX_MESSAGE) == -1 ||
	    hostile_build_fixed(&l) == -1 ||
	    hostile_build_generated(&l, max_payload) == -1 || hostile_build_limit(&lim, base) == -1 ||
	    hostile_plan(&p, &rng, itest_scaled(300), base) == -1) {
		tap_fail("hostile", "building cases: out of memory");
		goto out;
	}
	for (size_t i = 0; i < l.n; i++)
		nbad += l.c[i].reasons[0] != NULL;
	rss_take(&e, cfg.workers, &before);
	t0 = harness_now_ms();
	if (hostile_send(&e, m, &p, &l, &valid_sent) == -1 ||
	    hostile_send_limit(&e, m, &lim, base + 600) == -1) {
		tap_fail("hostile", "publishing: %s", harness_err());
		goto out;
	}
	valid_sent += HOSTILE_MAX_ALARMS + 2;
	printf("# hostile: %zu kinds of message (%zu bad, %zu edge-valid) + %zu over the per-user "
	    "limit; %zu bad messages and %zu valid ones sent in %lld ms\n", l.n + lim.n, nbad,
	    l.n - nbad, lim.n, nbad + lim.n, valid_sent, (long long)(harness_now_ms() - t0));
	rc = env_finish_and_verify(&e, m, NULL, false);
	printf("# hostile: %zu digests checked against the model, for %zu users\n",
	    model_expected_total(m), model_user_count(m));
	tap_report("hostile/valid_digests_exact", rc);
	elapsed = harness_now_ms() - t0;
	rss_take(&e, cfg.workers, &after);
	if (copies_read(&e, nbad + lim.n, &cs) == -1) {
		tap_fail("hostile/bad_messages_dead_lettered_with_reason", "%s", harness_err());
		tap_fail("hostile/max_payload_copies_truncated", "not checked");
		tap_fail("hostile/nothing_else_dead_lettered", "not checked");
	} else {
		printf("# hostile: %zu dead-letter copies in %s\n", cs.n, DL_STREAM);
		tap_report("hostile/bad_messages_dead_lettered_with_reason",
		    hostile_check_dead_letters(&cs, &l, &lim));
		tap_report("hostile/max_payload_copies_truncated", hostile_check_truncated(&cs, &l));
		tap_report("hostile/nothing_else_dead_lettered", hostile_check_extras(&cs));
	}
	tap_report("hostile/rejections_counted", hostile_check_counted(&e, nbad, lim.n));
	printf("# hostile: everything sent, digested, acked and filed in %lld ms (bound %d ms)\n",
	    (long long)elapsed, HOSTILE_BOUND_MS);
	if (elapsed > HOSTILE_BOUND_MS)
		harness_seterr("took %lld ms, over the %d ms bound", (long long)elapsed, HOSTILE_BOUND_MS);
	else if (rc != 0)
		harness_seterr("the digests did not all come (see hostile/valid_digests_exact)");
	tap_report("hostile/no_stall", rc == 0 && elapsed <= HOSTILE_BOUND_MS ? 0 : -1);
	tap_report("hostile/rss_bounded", hostile_check_rss(&before, &after));
	tap_report("hostile/digest_json_shape", env_check_collector(&e));
out:
	copies_free(&cs);
	plan_free(&p);
	env_down(&e);
	mlist_free(&l);
	mlist_free(&lim);
	model_free(m);
}
