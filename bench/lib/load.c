#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "../../common/hash.h"
#include "../../tests/lib/harness.h"
#include "load.h"

/* ChangedAt of update k of an alarm lies in [base + k*slot, base + (k+1)*slot). */
#define LOAD_SLOT_SEC 10

/*
 * A random (version 4) UUID from the load's own generator:
 * uuid_generate_random costs about 25 us here, minutes for the 11M IDs of
 * a million-user state.
 */
static void
uuid_string(struct rng *r, char out[40])
{
	uint64_t a = rng_next(r), b = rng_next(r);
	uuid_t u;

	for (int i = 0; i < 8; i++) {
		u[i] = (unsigned char)(a >> (8 * i));
		u[8 + i] = (unsigned char)(b >> (8 * i));
	}
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
	uuid_unparse_lower(u, out);
}

int
load_init(struct load *L, int users, int alarms, double dup, uint64_t seed, int route_slots)
{
	size_t nalarms = (size_t)users * (size_t)alarms;
	struct rng idrng;

	memset(L, 0, sizeof(*L));
	L->users = users;
	L->alarms = alarms;
	L->dup = dup;
	L->slot_sec = LOAD_SLOT_SEC;
	/*
	 * A day ago, so ChangedAt is recent: tombstones (kept 14 days by
	 * default) must outlive the run, or a stale update after a dropped
	 * tombstone would legitimately differ from the model.
	 */
	L->base_sec = (harness_wall_sec() - 86400) / 60 * 60;
	L->pending_user = -1;
	rng_seed(&L->rng, seed);
	/* IDs from a stream of their own, so the traffic drawn from L->rng stays as it was. */
	rng_seed(&idrng, seed ^ UINT64_C(0x9e3779b97f4a7c15));
	L->u = calloc((size_t)users, sizeof(*L->u));
	L->alarm_id = calloc(nalarms, sizeof(*L->alarm_id));
	L->slot = calloc(nalarms, sizeof(*L->slot));
	if (L->u == NULL || L->alarm_id == NULL || L->slot == NULL) {
		harness_seterr("out of memory for %d users x %d alarms", users, alarms);
		load_free(L);
		return -1;
	}
	for (int i = 0; i < users; i++) {
		/* About route_slots draws per user: cheap next to the run. */
		do
			uuid_string(&idrng, L->u[i].id);
		while (route_slots > 0 &&
		    hash32(L->u[i].id, strlen(L->u[i].id)) % (uint32_t)route_slots !=
		    (uint32_t)(i % route_slots));
		if (itmap_put(&L->by_id, L->u[i].id, strlen(L->u[i].id), &L->u[i]) == -1) {
			harness_seterr("out of memory indexing users");
			load_free(L);
			return -1;
		}
	}
	for (size_t i = 0; i < nalarms; i++)
		uuid_string(&idrng, L->alarm_id[i]);
	return 0;
}

void
load_free(struct load *L)
{
	if (L->u != NULL)
		for (int i = 0; i < L->users; i++)
			free(L->u[i].req);
	free(L->u);
	free(L->alarm_id);
	free(L->slot);
	itmap_free(&L->by_id, NULL);
	memset(L, 0, sizeof(*L));
}

struct buser *
load_user(struct load *L, const char *id, size_t len)
{
	return itmap_get(&L->by_id, id, len);
}

void
load_reset(struct load *L, uint32_t next_slot)
{
	size_t nalarms = (size_t)L->users * (size_t)L->alarms;

	for (int i = 0; i < L->users; i++) {
		L->u[i].nreq = 0;
		L->u[i].nrecv = 0;
	}
	for (size_t i = 0; i < nalarms; i++)
		L->slot[i] = next_slot;
	L->have_last = false;
	L->pending_user = -1;
}

int
load_mark_request(struct load *L, uint32_t user, int phase, int64_t ns)
{
	struct buser *u = &L->u[user];

	if (u->nreq == u->capreq) {
		size_t ncap = u->capreq ? u->capreq * 2 : 4;
		struct breq *r = realloc(u->req, ncap * sizeof(*r));

		if (r == NULL) {
			harness_seterr("out of memory recording requests");
			return -1;
		}
		u->req = r;
		u->capreq = ncap;
	}
	u->req[u->nreq++] = (struct breq){ .ns = ns, .phase = phase };
	return 0;
}

/* ---- bursts ---- */

static int
arena_reserve(struct burst *b, size_t need)
{
	if (b->alen + need <= b->acap)
		return 0;
	size_t ncap = b->acap ? b->acap : 1 << 20;
	while (ncap < b->alen + need)
		ncap *= 2;
	char *p = realloc(b->arena, ncap);
	if (p == NULL) {
		harness_seterr("out of memory growing the message arena to %zu bytes", ncap);
		return -1;
	}
	b->arena = p;
	b->acap = ncap;
	return 0;
}

/* The payload as agents send it: fields in Go struct order. */
static int
format_update(char *buf, size_t cap, const char *alarm, const char *user, const char *status,
    const char *ts, uint8_t *ts_off)
{
	int n = snprintf(buf, cap, "{\"AlarmID\":\"%s\",\"UserID\":\"%s\",\"Status\":\"%s\",\"ChangedAt\":\"",
	    alarm, user, status);
	*ts_off = (uint8_t)n;
	n += snprintf(buf + n, cap - (size_t)n, "%s\"}", ts);
	return n;
}

static int
format_request(char *buf, size_t cap, const char *user)
{
	return snprintf(buf, cap, "{\"UserID\":\"%s\"}", user);
}

static int
burst_add(struct burst *b, struct msgref *slot, const char *data, size_t len)
{
	if (arena_reserve(b, len) == -1)
		return -1;
	memcpy(b->arena + b->alen, data, len);
	slot->off = b->alen;
	slot->len = (uint32_t)len;
	b->alen += len;
	return 0;
}

int
load_burst(struct load *L, struct burst *b, int rounds, bool requests)
{
	size_t npairs = (size_t)L->users * (size_t)L->alarms;
	size_t nupd = npairs * (size_t)rounds, total = nupd + (requests ? (size_t)L->users : 0);
	struct msgref *byalarm = NULL;
	uint32_t *perm = NULL;
	char buf[512], ts[48];
	int rc = -1;

	memset(b, 0, sizeof(*b));
	byalarm = calloc(nupd ? nupd : 1, sizeof(*byalarm));
	perm = calloc(npairs > (size_t)L->users ? npairs : (size_t)L->users, sizeof(*perm));
	b->m = calloc(total ? total : 1, sizeof(*b->m));
	if (byalarm == NULL || perm == NULL || b->m == NULL) {
		harness_seterr("out of memory for a burst of %zu messages", total);
		goto out;
	}
	/* Each alarm's updates: increasing ChangedAt, some exact repeats, then shuffled. */
	for (size_t p = 0; p < npairs; p++) {
		uint32_t user = (uint32_t)(p / (size_t)L->alarms), alarm = (uint32_t)(p % (size_t)L->alarms);
		struct msgref *seq = &byalarm[p * (size_t)rounds];

		for (int k = 0; k < rounds; k++) {
			struct msgref *r = &seq[k];

			r->kind = MK_UPDATE;
			r->user = user;
			r->alarm = alarm;
			if (k > 0 && (double)rng_below(&L->rng, 1000000) < L->dup * 1e6) {
				/* An exact duplicate of an earlier delivery (at-least-once). */
				*r = seq[rng_below(&L->rng, (uint32_t)k)];
				b->duplicates++;
				continue;
			}
			const char *status = traffic_random_status(&L->rng);
			traffic_random_ts(&L->rng, L->base_sec + (int64_t)k * L->slot_sec, L->slot_sec,
			    ts, sizeof(ts));
			int n = format_update(buf, sizeof(buf), L->alarm_id[p], L->u[user].id, status, ts,
			    &r->ts_off);
			r->status = (uint8_t)model_status_parse(status);
			r->ts_len = (uint8_t)strlen(ts);
			if (burst_add(b, r, buf, (size_t)n) == -1)
				goto out;
		}
		for (int k = rounds; k > 1; k--) {
			uint32_t j = rng_below(&L->rng, (uint32_t)k);
			struct msgref t = seq[k - 1];

			seq[k - 1] = seq[j];
			seq[j] = t;
		}
		L->slot[p] = (uint32_t)rounds;
	}
	/* Delivery: round by round, alarms interleaved in a fresh random order each round. */
	for (int k = 0; k < rounds; k++) {
		for (size_t p = 0; p < npairs; p++)
			perm[p] = (uint32_t)p;
		for (size_t i = npairs; i > 1; i--) {
			size_t j = rng_below(&L->rng, (uint32_t)i);
			uint32_t t = perm[i - 1];

			perm[i - 1] = perm[j];
			perm[j] = t;
		}
		for (size_t p = 0; p < npairs; p++)
			b->m[b->n++] = byalarm[(size_t)perm[p] * (size_t)rounds + (size_t)k];
	}
	b->updates = nupd;
	if (requests) {
		for (int i = 0; i < L->users; i++)
			perm[i] = (uint32_t)i;
		for (size_t i = (size_t)L->users; i > 1; i--) {
			size_t j = rng_below(&L->rng, (uint32_t)i);
			uint32_t t = perm[i - 1];

			perm[i - 1] = perm[j];
			perm[j] = t;
		}
		for (int i = 0; i < L->users; i++) {
			struct msgref *r = &b->m[b->n];
			int n = format_request(buf, sizeof(buf), L->u[perm[i]].id);

			memset(r, 0, sizeof(*r));
			r->kind = MK_REQUEST;
			r->user = perm[i];
			if (burst_add(b, r, buf, (size_t)n) == -1)
				goto out;
			b->n++;
		}
		b->requests = (size_t)L->users;
	}
	rc = 0;
out:
	free(byalarm);
	free(perm);
	if (rc == -1)
		burst_free(b);
	return rc;
}

int
load_spread(struct load *L, struct burst *b, size_t n, int req_every)
{
	size_t total = n + (req_every > 0 ? n / (size_t)req_every : 0);
	struct msgref *prev = NULL;
	char buf[512], ts[48];

	memset(b, 0, sizeof(*b));
	if ((b->m = calloc(total ? total : 1, sizeof(*b->m))) == NULL) {
		harness_seterr("out of memory for a burst of %zu messages", total);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct msgref *r = &b->m[b->n];

		if (prev != NULL && (double)rng_below(&L->rng, 1000000) < L->dup * 1e6) {
			*r = *prev;
			b->duplicates++;
		} else {
			uint32_t user = rng_below(&L->rng, (uint32_t)L->users);
			uint32_t alarm = rng_below(&L->rng, (uint32_t)L->alarms);
			size_t p = (size_t)user * (size_t)L->alarms + alarm;
			const char *status = traffic_random_status(&L->rng);

			traffic_random_ts(&L->rng, L->base_sec + (int64_t)L->slot[p]++ * L->slot_sec,
			    L->slot_sec, ts, sizeof(ts));
			int len = format_update(buf, sizeof(buf), L->alarm_id[p], L->u[user].id, status,
			    ts, &r->ts_off);
			r->kind = MK_UPDATE;
			r->user = user;
			r->alarm = alarm;
			r->status = (uint8_t)model_status_parse(status);
			r->ts_len = (uint8_t)strlen(ts);
			if (burst_add(b, r, buf, (size_t)len) == -1)
				goto fail;
		}
		prev = r;
		b->n++;
		b->updates++;
		if (req_every > 0 && (i + 1) % (size_t)req_every == 0) {
			struct msgref *q = &b->m[b->n];
			int len = format_request(buf, sizeof(buf), L->u[prev->user].id);

			memset(q, 0, sizeof(*q));
			q->kind = MK_REQUEST;
			q->user = prev->user;
			if (burst_add(b, q, buf, (size_t)len) == -1)
				goto fail;
			b->n++;
			b->requests++;
		}
	}
	return 0;
fail:
	burst_free(b);
	return -1;
}

void
burst_free(struct burst *b)
{
	free(b->arena);
	free(b->m);
	memset(b, 0, sizeof(*b));
}

static int
model_check(enum model_result r, struct feed_stats *st, const char *user)
{
	switch (r) {
	case MR_NEW: st->fresh++; return 0;
	case MR_CHANGED: st->changed++; return 0;
	case MR_REFRESHED: st->refreshed++; return 0;
	case MR_STALE: st->stale++; return 0;
	case MR_DUPLICATE: st->duplicate++; return 0;
	case MR_LESS_SEVERE: st->less_severe++; return 0;
	case MR_INVALID:
		harness_seterr("the model rejects a generated update for user %s", user);
		return -1;
	case MR_NOMEM:
	default:
		harness_seterr("model: out of memory");
		return -1;
	}
}

int
load_feed(struct load *L, struct burst *b, struct model *m, struct feed_stats *st)
{
	char ts[64];

	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < b->n; i++) {
		struct msgref *r = &b->m[i];
		const char *user = L->u[r->user].id;

		if (r->kind == MK_UPDATE) {
			memcpy(ts, b->arena + r->off + r->ts_off, r->ts_len);
			ts[r->ts_len] = '\0';
			if (model_check(model_update(m, user,
			    L->alarm_id[(size_t)r->user * (size_t)L->alarms + r->alarm],
			    (enum model_status)r->status, ts), st, user) == -1)
				return -1;
			continue;
		}
		int got = model_request(m, user, NULL);
		if (got == -1) {
			harness_seterr("model: out of memory on a request");
			return -1;
		}
		r->kind = got == 1 ? MK_REQUEST_DIGEST : MK_REQUEST;
		st->digests += (uint64_t)got;
	}
	return 0;
}

/* ---- paced traffic ---- */

int
load_next(struct load *L, struct model *m, bool request, struct gen_msg *out)
{
	struct feed_stats st = { 0 };
	enum model_result r;
	char ts[48];

	memset(out, 0, sizeof(*out));
	if (request) {
		/* Ask for someone with something pending, so most requests time a digest. */
		uint32_t user = L->pending_user >= 0 ? (uint32_t)L->pending_user :
		    rng_below(&L->rng, (uint32_t)L->users);
		int got;

		L->pending_user = -1;
		out->len = (size_t)format_request(L->buf, sizeof(L->buf), L->u[user].id);
		if ((got = model_request(m, L->u[user].id, NULL)) == -1) {
			harness_seterr("model: out of memory on a request");
			return -1;
		}
		out->subject = LOAD_SUBJECT_REQUEST;
		out->data = L->buf;
		out->user = user;
		out->request = true;
		out->expects = got == 1;
		return 0;
	}
	out->subject = LOAD_SUBJECT_STATUS;
	if (L->have_last && (double)rng_below(&L->rng, 1000000) < L->dup * 1e6) {
		/* An exact repeat of the previous update. */
		r = model_update(m, L->u[L->last_user].id,
		    L->alarm_id[(size_t)L->last_user * (size_t)L->alarms + L->last_alarm],
		    (enum model_status)L->last_status, L->last_ts);
		out->data = L->last;
		out->len = L->last_len;
		out->user = L->last_user;
		return model_check(r, &st, L->u[L->last_user].id);
	}
	uint32_t user = rng_below(&L->rng, (uint32_t)L->users);
	uint32_t alarm = rng_below(&L->rng, (uint32_t)L->alarms);
	size_t p = (size_t)user * (size_t)L->alarms + alarm;
	const char *status = traffic_random_status(&L->rng);
	uint8_t ts_off;

	traffic_random_ts(&L->rng, L->base_sec + (int64_t)L->slot[p]++ * L->slot_sec, L->slot_sec,
	    ts, sizeof(ts));
	out->len = (size_t)format_update(L->last, sizeof(L->last), L->alarm_id[p], L->u[user].id,
	    status, ts, &ts_off);
	out->data = L->last;
	out->user = user;
	L->last_len = out->len;
	L->last_user = user;
	L->last_alarm = alarm;
	L->last_status = (uint8_t)model_status_parse(status);
	snprintf(L->last_ts, sizeof(L->last_ts), "%s", ts);
	L->have_last = true;
	r = model_update(m, L->u[user].id, L->alarm_id[p], (enum model_status)L->last_status, ts);
	if ((r == MR_NEW || r == MR_CHANGED) && L->last_status != MS_CLEARED)
		L->pending_user = user;
	return model_check(r, &st, L->u[user].id);
}
