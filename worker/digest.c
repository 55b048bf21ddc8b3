#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/store.h"
#include "digest.h"

void
digest_reset(struct digest *d)
{
	d->n = 0;
	buf_reset(&d->ids);
}

void
digest_free(struct digest *d)
{
	free(d->items);
	d->items = NULL;
	d->n = d->cap = 0;
	buf_free(&d->ids);
}

static int
digest_grow(struct digest *d)
{
	struct digest_item *p;
	size_t ncap;

	if (d->n < d->cap)
		return 0;
	ncap = d->cap ? d->cap * 2 : 16;
	if (ncap > SIZE_MAX / sizeof(*p)) {
		errno = ENOMEM;
		return -1;
	}
	if ((p = realloc(d->items, ncap * sizeof(*p))) == NULL)
		return -1;
	d->items = p;
	d->cap = ncap;
	return 0;
}

int
digest_add(struct digest *d, const char *alarm, size_t alarm_len,
    enum alarm_status status, const struct rfc3339_time *changed_at)
{
	struct digest_item *it;
	size_t off = d->ids.len;

	if (digest_grow(d) == -1 || buf_append(&d->ids, alarm, alarm_len) == -1)
		return -1;
	it = &d->items[d->n++];
	it->alarm_off = off;
	it->alarm_len = alarm_len;
	it->status = status;
	it->changed_at = *changed_at;
	return 0;
}

/* Bytewise, a proper prefix first: the SPEC's "ties by AlarmID (bytewise)". */
static int
digest_id_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
digest_item_cmp(const struct digest *d, const struct digest_item *a, const struct digest_item *b)
{
	int c = rfc3339_cmp(&a->changed_at, &b->changed_at);

	if (c != 0)
		return c;
	return digest_id_cmp(d->ids.data + a->alarm_off, a->alarm_len,
	    d->ids.data + b->alarm_off, b->alarm_len);
}

/*
 * Insertion sort, not qsort: qsort's comparator gets no context pointer
 * (the IDs live in d->ids) and a digest holds few items, usually in
 * almost-sorted order already.  Fall back to a merge pass for big ones.
 */
static void
digest_insertion_sort(struct digest *d, struct digest_item *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct digest_item x = v[i];
		size_t j = i;

		while (j > 0 && digest_item_cmp(d, &v[j - 1], &x) > 0) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

static void
digest_merge_sort(struct digest *d, struct digest_item *v, struct digest_item *tmp, size_t n)
{
	size_t mid = n / 2, i = 0, j = mid, k = 0;

	if (n <= 32) {
		digest_insertion_sort(d, v, n);
		return;
	}
	digest_merge_sort(d, v, tmp, mid);
	digest_merge_sort(d, v + mid, tmp, n - mid);
	while (i < mid && j < n)
		tmp[k++] = digest_item_cmp(d, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
	while (i < mid)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
}

void
digest_sort(struct digest *d)
{
	struct digest_item *tmp;

	if (d->n <= 32) {
		digest_insertion_sort(d, d->items, d->n);
		return;
	}
	/* The header gives sort no error path: without scratch memory, stay correct but slow. */
	if ((tmp = malloc(d->n * sizeof(*tmp))) == NULL) {
		digest_insertion_sort(d, d->items, d->n);
		return;
	}
	digest_merge_sort(d, d->items, tmp, d->n);
	free(tmp);
}

/* store_take_pending hands each pending alarm here. */
static int
digest_take_one(void *arg, const char *alarm, size_t alarm_len, enum alarm_status status,
    const struct rfc3339_time *changed_at)
{
	return digest_add(arg, alarm, alarm_len, status, changed_at);
}

int
digest_take(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    struct digest *d, bool *replayed)
{
	digest_reset(d);
	if (store_take_pending(s, user, user_len, request_seq, digest_take_one, d, replayed) == -1) {
		digest_reset(d);
		return -1;
	}
	digest_sort(d);
	return 0;
}

static int
digest_put(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s));
}

/* A JSON string per RFC 8259; input bytes >= 0x80 are valid UTF-8 already and go as-is. */
static int
digest_put_string(struct buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = (const uint8_t *)s;
	size_t run = 0;

	/* Worst case 6 output bytes per input byte, so one reserve covers the loop. */
	if (len > (SIZE_MAX - 2) / 6) {
		errno = ENOMEM;
		return -1;
	}
	if (buf_reserve(out, len * 6 + 2) == -1)
		return -1;
	out->data[out->len++] = '"';
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		char esc = 0;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		memcpy(out->data + out->len, p + run, i - run);
		out->len += i - run;
		run = i + 1;
		switch (c) {
		case '"': esc = '"'; break;
		case '\\': esc = '\\'; break;
		case '\b': esc = 'b'; break;
		case '\f': esc = 'f'; break;
		case '\n': esc = 'n'; break;
		case '\r': esc = 'r'; break;
		case '\t': esc = 't'; break;
		}
		out->data[out->len++] = '\\';
		if (esc != 0) {
			out->data[out->len++] = (uint8_t)esc;
		} else {
			memcpy(out->data + out->len, "u00", 3);
			out->len += 3;
			out->data[out->len++] = (uint8_t)hex[c >> 4];
			out->data[out->len++] = (uint8_t)hex[c & 0xf];
		}
	}
	memcpy(out->data + out->len, p + run, len - run);
	out->len += len - run;
	out->data[out->len++] = '"';
	return 0;
}

static int
digest_put_item(const struct digest *d, const struct digest_item *it, struct buf *out)
{
	char ts[RFC3339_MAXLEN + 1];
	size_t tslen = rfc3339_format(&it->changed_at, ts, sizeof(ts));

	if (digest_put(out, "{\"AlarmID\":") == -1 ||
	    digest_put_string(out, (const char *)d->ids.data + it->alarm_off, it->alarm_len) == -1 ||
	    digest_put(out, ",\"Status\":\"") == -1 ||
	    digest_put(out, alarm_status_name(it->status)) == -1 ||
	    digest_put(out, "\",\"LatestChangedAt\":\"") == -1 ||
	    buf_append(out, ts, tslen) == -1 ||
	    digest_put(out, "\"}") == -1)
		return -1;
	return 0;
}

int
digest_write_update(const struct alarm_msg *m, struct buf *out)
{
	char ts[RFC3339_MAXLEN + 1];
	size_t tslen = rfc3339_format(&m->changed_at, ts, sizeof(ts));
	size_t start = buf_unread(out);

	if (digest_put(out, "{\"AlarmID\":") == -1 ||
	    digest_put_string(out, m->alarm, m->alarm_len) == -1 ||
	    digest_put(out, ",\"UserID\":") == -1 ||
	    digest_put_string(out, m->user, m->user_len) == -1 ||
	    digest_put(out, ",\"Status\":\"") == -1 ||
	    digest_put(out, alarm_status_name(m->status)) == -1 ||
	    digest_put(out, "\",\"ChangedAt\":\"") == -1 ||
	    buf_append(out, ts, tslen) == -1 ||
	    digest_put(out, "\"}") == -1) {
		out->len = out->off + start;
		return -1;
	}
	return 0;
}

int
digest_write_head(const char *user, size_t user_len, struct buf *out)
{
	size_t start = buf_unread(out);

	if (digest_put(out, "{\"UserID\":") == -1 ||
	    digest_put_string(out, user, user_len) == -1 ||
	    digest_put(out, ",\"ActiveAlarms\":[") == -1) {
		out->len = out->off + start;
		return -1;
	}
	return 0;
}

int
digest_write_item(const struct digest *d, size_t i, struct buf *out)
{
	size_t start = buf_unread(out);

	if (digest_put_item(d, &d->items[i], out) == -1) {
		out->len = out->off + start;
		return -1;
	}
	return 0;
}

int
digest_write_json(const struct digest *d, const char *user, size_t user_len, struct buf *out)
{
	/*
	 * On ENOMEM, leave out as it was rather than holding half a message.
	 * Count unread bytes, not len: buf_reserve may compact the buffer.
	 */
	size_t start = buf_unread(out);

	if (digest_write_head(user, user_len, out) == -1)
		goto fail;
	for (size_t i = 0; i < d->n; i++) {
		if (i > 0 && buf_append_byte(out, ',') == -1)
			goto fail;
		if (digest_put_item(d, &d->items[i], out) == -1)
			goto fail;
	}
	if (digest_put(out, DIGEST_JSON_TAIL) == -1)
		goto fail;
	return 0;
fail:
	out->len = out->off + start;
	return -1;
}
