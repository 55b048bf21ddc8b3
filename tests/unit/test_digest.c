/* Unit tests for worker/digest.c: ordering, and the JSON checked exactly and by parsing it back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "digest.h"
#include "spec_ref.h"

static struct rfc3339_time
ts(const char *s)
{
	struct rfc3339_time t;

	assert_int_equal(rfc3339_parse(s, strlen(s), &t), 0);
	return t;
}

static void
add(struct digest *d, const char *id, size_t len, enum alarm_status st, const char *when)
{
	struct rfc3339_time t = ts(when);

	assert_int_equal(digest_add(d, id, len, st, &t), 0);
}

static void
adds(struct digest *d, const char *id, enum alarm_status st, const char *when)
{
	add(d, id, strlen(id), st, when);
}

static void
assert_item_id(const struct digest *d, size_t i, const char *id, size_t len)
{
	assert_true(i < d->n);
	assert_int_equal(d->items[i].alarm_len, len);
	assert_memory_equal(d->ids.data + d->items[i].alarm_off, id, len);
}

static void
assert_item(const struct digest *d, size_t i, const char *id)
{
	assert_item_id(d, i, id, strlen(id));
}

/* The JSON as a NUL-terminated string (appends a NUL past len). */
static const char *
json_of(const struct digest *d, const char *user, size_t user_len, struct buf *out)
{
	buf_reset(out);
	assert_int_equal(digest_write_json(d, user, user_len, out), 0);
	assert_int_equal(buf_append_byte(out, 0), 0);
	out->len--;
	return (const char *)out->data;
}

static void
test_sort_by_instant(void **unused)
{
	struct digest d = { 0 };

	(void)unused;
	adds(&d, "a", STATUS_WARNING, "2021-08-17T13:00:00Z");
	adds(&d, "b", STATUS_CRITICAL, "2021-08-17T15:33:59+03:00");   /* 12:33:59Z */
	adds(&d, "c", STATUS_WARNING, "2021-08-17T12:33:59.000000001Z");
	adds(&d, "d", STATUS_WARNING, "2021-08-17T08:00:00-05:00");     /* 13:00:00Z, ties with a */
	digest_sort(&d);
	assert_int_equal(d.n, 4);
	assert_item(&d, 0, "b");
	assert_item(&d, 1, "c");
	assert_item(&d, 2, "a");
	assert_item(&d, 3, "d");
	assert_int_equal(d.items[3].changed_at.off_min, -300);
	digest_free(&d);
}

static void
test_sort_tie_bytewise(void **unused)
{
	struct digest d = { 0 };
	const char *t = "2021-08-17T13:00:00Z";

	(void)unused;
	adds(&d, "b", STATUS_WARNING, t);
	adds(&d, "\xc3\xa9", STATUS_WARNING, t);    /* é: bytes >= 0x80 sort after ASCII */
	adds(&d, "ab", STATUS_WARNING, t);
	adds(&d, "B", STATUS_WARNING, t);            /* upper case before lower: bytewise */
	adds(&d, "a", STATUS_WARNING, t);            /* a prefix sorts first */
	add(&d, "a\0", 2, STATUS_WARNING, t);        /* ... even before a NUL */
	digest_sort(&d);
	assert_int_equal(d.n, 6);
	assert_item(&d, 0, "B");
	assert_item(&d, 1, "a");
	assert_item_id(&d, 2, "a\0", 2);
	assert_item(&d, 3, "ab");
	assert_item(&d, 4, "b");
	assert_item(&d, 5, "\xc3\xa9");
	digest_free(&d);
}

/* One generated item as the reference sees it: its instant from the generator's own numbers. */
struct ref_item {
	int64_t ns;
	char id[16];
	size_t len;
};

static int
ref_item_cmp(const void *x, const void *y)
{
	const struct ref_item *a = x, *b = y;

	return ref_digest_cmp(a->ns, a->id, a->len, b->ns, b->id, b->len);
}

/*
 * Big digests take the merge-sort path.  The expected order is the SPEC's,
 * sorted by qsort over instants the test computes itself (epoch nanoseconds
 * of 2021-08-17T13:MM:SS.FZ), never with the service's rfc3339_cmp.
 */
static void
test_sort_large(void **unused)
{
	static struct ref_item ref[4097];
	const int64_t base = 1629205200;   /* 2021-08-17T13:00:00Z */
	struct digest d = { 0 };
	unsigned seed = 12345;
	size_t ties = 0;

	(void)unused;
	for (int round = 0; round < 3; round++) {
		size_t n = round == 0 ? 33 : round == 1 ? 500 : 4097;

		digest_reset(&d);
		for (size_t i = 0; i < n; i++) {
			char when[40];
			unsigned mm, ss, frac;

			seed = seed * 1103515245u + 12345u;
			snprintf(ref[i].id, sizeof(ref[i].id), "id%u", (seed >> 8) % 97);
			ref[i].len = strlen(ref[i].id);
			mm = (seed >> 4) % 3;
			ss = (seed >> 12) % 60;
			frac = (seed >> 20) % 4;
			snprintf(when, sizeof(when), "2021-08-17T13:%02u:%02u.%uZ", mm, ss, frac);
			ref[i].ns = (base + mm * 60 + ss) * REF_NS_PER_SEC + frac * INT64_C(100000000);
			adds(&d, ref[i].id, STATUS_CRITICAL, when);
		}
		digest_sort(&d);
		qsort(ref, n, sizeof(ref[0]), ref_item_cmp);
		assert_int_equal(d.n, n);
		for (size_t i = 0; i < n; i++) {
			const struct digest_item *it = &d.items[i];

			if (it->alarm_len != ref[i].len ||
			    memcmp(d.ids.data + it->alarm_off, ref[i].id, ref[i].len) != 0 ||
			    ref_ns(&it->changed_at) != ref[i].ns)
				fail_msg("round %d, item %zu: %.*s at %lld ns, want %s at %lld ns", round,
				    i, (int)it->alarm_len, (const char *)d.ids.data + it->alarm_off,
				    (long long)ref_ns(&it->changed_at), ref[i].id,
				    (long long)ref[i].ns);
			assert_int_equal(it->status, STATUS_CRITICAL);
			if (i > 0 && ref[i - 1].ns == ref[i].ns &&
			    strcmp(ref[i - 1].id, ref[i].id) != 0)
				ties++;
		}
	}
	/* Enough equal instants with different IDs that the tie order is really tested. */
	assert_true(ties >= 10);
	digest_free(&d);
}

static void
test_json_exact(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	adds(&d, "6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e", STATUS_WARNING, "2021-08-17T15:33:59.1+03:00");
	adds(&d, "a2", STATUS_CRITICAL, "2021-06-07T20:40:15.598765212Z");
	adds(&d, "a3", STATUS_WARNING, "2021-06-07T20:40:15.000Z");
	digest_sort(&d);
	assert_string_equal(json_of(&d, "user-1", 6, &out),
	    "{\"UserID\":\"user-1\",\"ActiveAlarms\":["
	    "{\"AlarmID\":\"a3\",\"Status\":\"WARNING\",\"LatestChangedAt\":\"2021-06-07T20:40:15Z\"},"
	    "{\"AlarmID\":\"a2\",\"Status\":\"CRITICAL\",\"LatestChangedAt\":\"2021-06-07T20:40:15.598765212Z\"},"
	    "{\"AlarmID\":\"6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e\",\"Status\":\"WARNING\","
	    "\"LatestChangedAt\":\"2021-08-17T15:33:59.1+03:00\"}]}");
	buf_free(&out);
	digest_free(&d);
}

static void
test_json_empty(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	assert_string_equal(json_of(&d, "u", 1, &out), "{\"UserID\":\"u\",\"ActiveAlarms\":[]}");
	buf_free(&out);
}

static void
test_json_escaping(void **unused)
{
	static const char user[] = "q\"b\\s/\x01\x1f\x7f\b\f\n\r\t\xe2\x82\xac";
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	add(&d, "nul\0x", 5, STATUS_CRITICAL, "2021-08-17T13:00:00Z");
	assert_string_equal(json_of(&d, user, sizeof(user) - 1, &out),
	    "{\"UserID\":\"q\\\"b\\\\s/\\u0001\\u001f\x7f\\b\\f\\n\\r\\t\xe2\x82\xac\","
	    "\"ActiveAlarms\":[{\"AlarmID\":\"nul\\u0000x\",\"Status\":\"CRITICAL\","
	    "\"LatestChangedAt\":\"2021-08-17T13:00:00Z\"}]}");
	buf_free(&out);
	digest_free(&d);
}

/* Every byte value in an ID survives a round trip through a real JSON parser. */
static void
test_json_parse_back(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };
	char ids[3][64];
	size_t idlen[3];
	char user[0x20 + 3];
	struct json_tokener *tok;
	struct json_object *root, *v, *arr;
	const char *json;
	/*
	 * 13:00Z twice (ids[2] is "\0\0", so it sorts first), then 15:00-01:30
	 * (16:30Z).  "+00:00" arrives, "Z" goes out (Go's RFC3339Nano); -01:30 is kept.
	 */
	static const struct {
		int id;
		const char *status, *when;
	} want[3] = {
		{ 2, "WARNING", "2021-08-17T13:00:00Z" },
		{ 0, "CRITICAL", "2021-08-17T13:00:00Z" },
		{ 1, "WARNING", "2021-08-17T15:00:00.123456789-01:30" },
	};

	(void)unused;
	/* All control bytes, quote and backslash, plus valid multi-byte UTF-8. */
	for (int i = 0; i < 0x20; i++)
		user[i] = (char)i;
	memcpy(user + 0x20, "\"\\", 2);
	user[0x22] = 'u';
#define SET_ID(i, lit) memcpy(ids[i], lit, idlen[i] = sizeof(lit) - 1)
	SET_ID(0, "\xf0\x9f\x94\xa5 fire \"x\"");
	SET_ID(1, "tab\there\\");
	SET_ID(2, "\0\0");
#undef SET_ID
	add(&d, ids[0], idlen[0], STATUS_CRITICAL, "2021-08-17T13:00:00Z");
	add(&d, ids[1], idlen[1], STATUS_WARNING, "2021-08-17T15:00:00.123456789-01:30");
	add(&d, ids[2], idlen[2], STATUS_WARNING, "2021-08-17T13:00:00+00:00");
	digest_sort(&d);
	json = json_of(&d, user, sizeof(user), &out);

	tok = json_tokener_new();
	assert_non_null(tok);
	root = json_tokener_parse_ex(tok, json, (int)out.len);
	assert_non_null(root);
	assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
	assert_int_equal(json_tokener_get_parse_end(tok), out.len);   /* nothing after the object */
	assert_true(json_object_object_get_ex(root, "UserID", &v));
	assert_int_equal(json_object_get_string_len(v), sizeof(user));
	assert_memory_equal(json_object_get_string(v), user, sizeof(user));
	assert_true(json_object_object_get_ex(root, "ActiveAlarms", &arr));
	assert_int_equal(json_object_array_length(arr), 3);
	for (size_t i = 0; i < 3; i++) {
		struct json_object *item = json_object_array_get_idx(arr, i);

		assert_int_equal(json_object_object_length(item), 3);
		assert_true(json_object_object_get_ex(item, "AlarmID", &v));
		assert_int_equal(json_object_get_string_len(v), idlen[want[i].id]);
		assert_memory_equal(json_object_get_string(v), ids[want[i].id], idlen[want[i].id]);
		assert_true(json_object_object_get_ex(item, "Status", &v));
		assert_string_equal(json_object_get_string(v), want[i].status);
		assert_true(json_object_object_get_ex(item, "LatestChangedAt", &v));
		assert_string_equal(json_object_get_string(v), want[i].when);
	}
	json_object_put(root);
	json_tokener_free(tok);
	buf_free(&out);
	digest_free(&d);
}

/* digest_write_json appends, so a caller can put a frame header first. */
static void
test_json_appends(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	assert_int_equal(buf_append(&out, "HDRxx", 5), 0);
	buf_consume(&out, 2);
	assert_int_equal(digest_write_json(&d, "u", 1, &out), 0);
	assert_int_equal(buf_unread(&out), 3 + 32);
	assert_memory_equal(out.data + out.off, "Rxx{\"UserID\":\"u\",\"ActiveAlarms\":[]}", 35);
	buf_free(&out);
}

static void
test_reset_reuses(void **unused)
{
	struct digest d = { 0 };
	struct buf out = { 0 };

	(void)unused;
	for (int i = 0; i < 100; i++)
		adds(&d, "first-round-id", STATUS_WARNING, "2021-08-17T13:00:00Z");
	digest_reset(&d);
	assert_int_equal(d.n, 0);
	assert_int_equal(d.ids.len, 0);
	adds(&d, "x", STATUS_CRITICAL, "2021-08-17T13:00:00Z");
	assert_string_equal(json_of(&d, "u", 1, &out),
	    "{\"UserID\":\"u\",\"ActiveAlarms\":[{\"AlarmID\":\"x\",\"Status\":\"CRITICAL\","
	    "\"LatestChangedAt\":\"2021-08-17T13:00:00Z\"}]}");
	digest_free(&d);
	assert_null(d.items);
	assert_int_equal(d.n, 0);
	digest_free(&d);   /* freeing twice is harmless */
	buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sort_by_instant),
		cmocka_unit_test(test_sort_tie_bytewise),
		cmocka_unit_test(test_sort_large),
		cmocka_unit_test(test_json_exact),
		cmocka_unit_test(test_json_empty),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_parse_back),
		cmocka_unit_test(test_json_appends),
		cmocka_unit_test(test_reset_reuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
