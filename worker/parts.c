#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parts.h"

struct parts {
	struct buf head;       /* {"UserID":...,"ActiveAlarms":[ */
	/*
	 * The entries written once, comma-separated, as the array's body: a
	 * part's entries are then one contiguous slice.  Entry i ends at
	 * end[i] and starts one past end[i - 1] (the comma).
	 */
	struct buf body;
	size_t *end;
	size_t n, cap_end;
	size_t *first;         /* first[k]: first entry of part k; first[nparts] == n */
	size_t nparts, cap_first;
	int64_t min_payload;
	char msgid[PARTS_MSGID_MAX + 1];
	/* What parts_get hands out. */
	struct buf out;
	char idbuf[PARTS_MSGID_MAX + 24];
	char partbuf[48];
};

struct parts *
parts_new(void)
{
	return calloc(1, sizeof(struct parts));
}

void
parts_free(struct parts *p)
{
	if (p == NULL)
		return;
	buf_free(&p->head);
	buf_free(&p->body);
	buf_free(&p->out);
	free(p->end);
	free(p->first);
	free(p);
}

static int
parts_grow(size_t **v, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 64;
	size_t *nv;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / sizeof(**v)) {
			errno = ENOMEM;
			return -1;
		}
		ncap *= 2;
	}
	if ((nv = realloc(*v, ncap * sizeof(**v))) == NULL)
		return -1;
	*v = nv;
	*cap = ncap;
	return 0;
}

static size_t
parts_digits(size_t v)
{
	size_t d = 1;

	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* "NATS/1.0\r\n" + "\r\n" around the header lines; each line is "Key: value\r\n". */
#define PARTS_HDR_FRAME 12
#define PARTS_HDR_LINE(key, vlen) (sizeof(key) - 1 + 2 + (vlen) + 2)

/* Encoded headers of the one message of a digest that fits. */
static size_t
parts_hdr_single(const struct parts *p)
{
	return PARTS_HDR_FRAME + PARTS_HDR_LINE(PARTS_HDR_MSGID, strlen(p->msgid));
}

/* Encoded headers of part k (1-based) of a digest in parts whose count has ndigits digits. */
static size_t
parts_hdr_split(const struct parts *p, size_t k, size_t ndigits)
{
	size_t kd = parts_digits(k);

	return PARTS_HDR_FRAME + PARTS_HDR_LINE(PARTS_HDR_MSGID, strlen(p->msgid) + 1 + kd) +
	    PARTS_HDR_LINE(PARTS_HDR_PART, kd + 1 + ndigits);
}

static size_t
parts_entry_len(const struct parts *p, size_t i)
{
	return p->end[i] - (i == 0 ? 0 : p->end[i - 1] + 1);
}

/* JSON of entries [a, b): head, the body slice, tail. */
static size_t
parts_json_len(const struct parts *p, size_t a, size_t b)
{
	size_t from = a == 0 ? 0 : p->end[a - 1] + 1;

	return p->head.len + (p->end[b - 1] - from) + strlen(DIGEST_JSON_TAIL);
}

/*
 * Fill parts greedily, their headers sized as if the count had ndigits
 * digits.  0 (p->nparts set), or -1 with EMSGSIZE / ENOMEM.
 */
static int
parts_fill(struct parts *p, int64_t max_payload, size_t ndigits)
{
	size_t i = 0;

	p->nparts = 0;
	while (i < p->n) {
		size_t k = p->nparts + 1, j = i + 1;
		uint64_t hdr = parts_hdr_split(p, k, ndigits);

		if (parts_grow(&p->first, &p->cap_first, p->nparts + 2) == -1)
			return -1;
		if (hdr + parts_json_len(p, i, j) > (uint64_t)max_payload) {
			errno = EMSGSIZE;
			return -1;
		}
		while (j < p->n && hdr + parts_json_len(p, i, j + 1) <= (uint64_t)max_payload)
			j++;
		p->first[p->nparts++] = i;
		i = j;
	}
	p->first[p->nparts] = p->n;
	return 0;
}

/* Write the head and every entry once, noting where each ends. */
static int
parts_write(struct parts *p, const struct digest *d, const char *user, size_t user_len)
{
	buf_reset(&p->head);
	buf_reset(&p->body);
	p->n = 0;
	if (digest_write_head(user, user_len, &p->head) == -1 ||
	    parts_grow(&p->end, &p->cap_end, d->n) == -1)
		return -1;
	for (size_t i = 0; i < d->n; i++) {
		if ((i > 0 && buf_append_byte(&p->body, ',') == -1) ||
		    digest_write_item(d, i, &p->body) == -1)
			return -1;
		p->end[i] = p->body.len;
	}
	p->n = d->n;
	return 0;
}

int
parts_plan(struct parts *p, const struct digest *d, const char *user, size_t user_len,
    const char *msgid, int64_t max_payload)
{
	size_t biggest = 0, ndigits;

	p->nparts = 0;
	p->min_payload = 0;
	if (max_payload <= 0 || strlen(msgid) > PARTS_MSGID_MAX) {
		errno = EINVAL;
		return -1;
	}
	snprintf(p->msgid, sizeof(p->msgid), "%s", msgid);
	if (parts_write(p, d, user, user_len) == -1)
		return -1;
	if (p->n == 0)
		return 0;
	/* An entry alone as part n of n >= n: the worst header it can get. */
	for (size_t i = 0; i < p->n; i++)
		if (parts_entry_len(p, i) > biggest)
			biggest = parts_entry_len(p, i);
	p->min_payload = (int64_t)(p->head.len + biggest + strlen(DIGEST_JSON_TAIL) +
	    parts_hdr_split(p, p->n, parts_digits(p->n)));
	if (parts_hdr_single(p) + parts_json_len(p, 0, p->n) <= (uint64_t)max_payload) {
		if (parts_grow(&p->first, &p->cap_first, 2) == -1)
			return -1;
		p->first[0] = 0;
		p->first[1] = p->n;
		p->nparts = 1;
		return 0;
	}
	/*
	 * A part's header holds n, unknown until the parts are filled: fill
	 * assuming n has ndigits digits, and again with more if it has more.
	 * Fewer digits give more room per part, so n only grows with ndigits
	 * and this ends once the guess holds.
	 */
	for (ndigits = 1;; ndigits = parts_digits(p->nparts)) {
		if (parts_fill(p, max_payload, ndigits) == -1) {
			p->nparts = 0;
			return -1;
		}
		if (parts_digits(p->nparts) <= ndigits)
			return 0;
	}
}

size_t
parts_count(const struct parts *p)
{
	return p->nparts;
}

int64_t
parts_min_payload(const struct parts *p)
{
	return p->min_payload;
}

int
parts_get(struct parts *p, size_t k, struct parts_msg *m)
{
	size_t a, b, from;

	if (k >= p->nparts) {
		errno = EINVAL;
		return -1;
	}
	a = p->first[k];
	b = p->first[k + 1];
	from = a == 0 ? 0 : p->end[a - 1] + 1;
	buf_reset(&p->out);
	if (buf_append(&p->out, p->head.data, p->head.len) == -1 ||
	    buf_append(&p->out, p->body.data + from, p->end[b - 1] - from) == -1 ||
	    buf_append(&p->out, DIGEST_JSON_TAIL, strlen(DIGEST_JSON_TAIL)) == -1)
		return -1;
	m->data = p->out.data;
	m->len = p->out.len;
	m->alarms = b - a;
	if (p->nparts == 1) {
		m->msgid = p->msgid;
		m->part = NULL;
		return 0;
	}
	snprintf(p->idbuf, sizeof(p->idbuf), "%s/%zu", p->msgid, k + 1);
	snprintf(p->partbuf, sizeof(p->partbuf), "%zu/%zu", k + 1, p->nparts);
	m->msgid = p->idbuf;
	m->part = p->partbuf;
	return 0;
}
