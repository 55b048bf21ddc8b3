#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "itmap.h"
#include "model.h"

/* ---- timestamps ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int64_t y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* n ASCII digits at s as a number, or -1. */
static int
digits_at(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Fraction ".F{1,9}" at s[*i]: sets nsec and the digits kept after trimming. */
static int
parse_fraction(const char *s, size_t len, size_t *i, int32_t *nsec, int *kept)
{
	size_t start = *i + 1, j = start;
	int64_t v = 0;   /* a tenth digit is read before it is refused: 10 digits overflow int32 */

	while (j < len && s[j] >= '0' && s[j] <= '9' && j - start < 10)
		v = v * 10 + (s[j++] - '0');
	if (j == start || j - start > 9)
		return -1;
	*kept = (int)(j - start);
	for (size_t k = j - start; k < 9; k++)
		v *= 10;
	*nsec = (int32_t)v;
	while (*kept > 0 && s[start + (size_t)*kept - 1] == '0')
		(*kept)--;
	*i = j;
	return 0;
}

/* "Z" or "+hh:mm"/"-hh:mm" ending exactly at len. */
static int
parse_zone(const char *s, size_t len, size_t i, int32_t *off_min)
{
	int hh, mm;

	if (i + 1 == len && s[i] == 'Z') {
		*off_min = 0;
		return 0;
	}
	if (i + 6 != len || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':')
		return -1;
	if ((hh = digits_at(s + i + 1, 2)) < 0 || (mm = digits_at(s + i + 4, 2)) < 0)
		return -1;
	if (hh > 23 || mm > 59)
		return -1;
	*off_min = (hh * 60 + mm) * (s[i] == '-' ? -1 : 1);
	return 0;
}

int
model_ts_parse(const char *s, size_t len, struct model_ts *out)
{
	int y, mo, d, h, mi, se, kept = 0;
	int32_t nsec = 0, off = 0;
	size_t i = 19, n;

	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':')
		return -1;
	if ((y = digits_at(s, 4)) < 0 || (mo = digits_at(s + 5, 2)) < 0 ||
	    (d = digits_at(s + 8, 2)) < 0 || (h = digits_at(s + 11, 2)) < 0 ||
	    (mi = digits_at(s + 14, 2)) < 0 || (se = digits_at(s + 17, 2)) < 0)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || se > 59)
		return -1;
	if (s[i] == '.' && parse_fraction(s, len, &i, &nsec, &kept) == -1)
		return -1;
	if (parse_zone(s, len, i, &off) == -1)
		return -1;
	out->sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - (int64_t)off * 60;
	out->nsec = nsec;
	out->off_min = off;
	/* The wall time as it arrived; only the fraction and a zero offset are rewritten. */
	memcpy(out->canon, s, 19);
	n = 19;
	if (kept > 0) {
		out->canon[n++] = '.';
		memcpy(out->canon + n, s + 20, (size_t)kept);
		n += (size_t)kept;
	}
	if (off == 0)
		out->canon[n++] = 'Z';
	else {
		memcpy(out->canon + n, s + len - 6, 6);
		n += 6;
	}
	out->canon[n] = '\0';
	return 0;
}

int
model_ts_cmp(const struct model_ts *a, const struct model_ts *b)
{
	if (a->sec != b->sec)
		return a->sec < b->sec ? -1 : 1;
	if (a->nsec != b->nsec)
		return a->nsec < b->nsec ? -1 : 1;
	return 0;
}

void
model_ts_print(int64_t sec, int32_t nsec, int off_min, int digits, bool plus_zero,
    char *buf, size_t cap)
{
	int64_t local = sec + (int64_t)off_min * 60, days, rem, y;
	char frac[16] = "", zone[16];
	int m, d;

	days = local / 86400;
	rem = local % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	if (digits > 0) {
		char nine[16];

		snprintf(nine, sizeof(nine), "%09d", (int)nsec);
		snprintf(frac, sizeof(frac), ".%.*s", digits > 9 ? 9 : digits, nine);
	}
	if (off_min == 0)
		snprintf(zone, sizeof(zone), "%s", plus_zero ? "+00:00" : "Z");
	else
		snprintf(zone, sizeof(zone), "%c%02d:%02d", off_min < 0 ? '-' : '+',
		    abs(off_min) / 60, abs(off_min) % 60);
	snprintf(buf, cap, "%04lld-%02d-%02dT%02d:%02d:%02d%s%s", (long long)y, m, d,
	    (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac, zone);
}

/* ---- statuses ---- */

static const char *const status_names[] = { "CLEARED", "WARNING", "CRITICAL" };

enum model_status
model_status_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, status_names[i]) == 0)
			return (enum model_status)i;
	return MS_INVALID;
}

const char *
model_status_name(enum model_status s)
{
	return s >= MS_CLEARED && s <= MS_CRITICAL ? status_names[s] : "INVALID";
}

/* ---- canonical digests ---- */

char *
model_canon(const struct model_entry *e, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char *out = NULL;

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_new_array();

		if (t == NULL || json_object_array_add(arr, t) != 0) {
			json_object_put(t);
			goto done;
		}
		if (json_object_array_add(t, json_object_new_string_len(e[i].alarm,
		        (int)e[i].alarm_len)) != 0 ||
		    json_object_array_add(t, json_object_new_string(e[i].status)) != 0 ||
		    json_object_array_add(t, json_object_new_string(e[i].ts)) != 0)
			goto done;
	}
	out = strdup(json_object_to_json_string_ext(arr,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
done:
	json_object_put(arr);
	return out;
}

/* ---- the model ---- */

struct alarm_rec {
	char *id;
	size_t id_len;
	enum model_status status;
	struct model_ts ts;
	/* In a digest since its status last changed (SPEC "Digest"). */
	bool delivered;
};

struct expect {
	char *canon;
	int64_t ms;             /* CLOCK_MONOTONIC when its request was modelled */
};

struct user_rec {
	char *id;
	struct alarm_rec *alarms;
	size_t nalarms, cap;
	struct expect *expected;  /* every digest this user must receive, oldest first */
	size_t nexpected, cap_expected;
};

struct model {
	pthread_mutex_t lock;
	struct itmap users;
	struct user_rec **order;  /* first-seen order */
	size_t nusers, cap_users;
	size_t expected_total;
};

static void
user_free(void *p)
{
	struct user_rec *u = p;

	for (size_t i = 0; i < u->nalarms; i++)
		free(u->alarms[i].id);
	for (size_t i = 0; i < u->nexpected; i++)
		free(u->expected[i].canon);
	free(u->alarms);
	free(u->expected);
	free(u->id);
	free(u);
}

struct model *
model_new(void)
{
	struct model *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void
model_free(struct model *m)
{
	if (m == NULL)
		return;
	itmap_free(&m->users, user_free);
	free(m->order);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static bool
grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *np;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	while (ncap < need)
		ncap *= 2;
	if ((np = realloc(*p, ncap * elem)) == NULL)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

static struct user_rec *
user_get(struct model *m, const char *user, bool create)
{
	struct user_rec *u = itmap_get(&m->users, user, strlen(user));

	if (u != NULL || !create)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL || (u->id = strdup(user)) == NULL)
		goto fail;
	if (!grow((void **)&m->order, &m->cap_users, m->nusers + 1, sizeof(*m->order)))
		goto fail;
	if (itmap_put(&m->users, user, strlen(user), u) == -1)
		goto fail;
	m->order[m->nusers++] = u;
	return u;
fail:
	if (u != NULL)
		free(u->id);
	free(u);
	return NULL;
}

static struct alarm_rec *
alarm_find(struct user_rec *u, const char *alarm, size_t len)
{
	for (size_t i = 0; i < u->nalarms; i++)
		if (u->alarms[i].id_len == len && memcmp(u->alarms[i].id, alarm, len) == 0)
			return &u->alarms[i];
	return NULL;
}

/* SPEC "State" rules 1-3 on an existing record. */
static enum model_result
alarm_apply(struct alarm_rec *a, enum model_status status, const struct model_ts *ts)
{
	int c = model_ts_cmp(ts, &a->ts);

	if (c < 0)
		return MR_STALE;
	if (c == 0 && status == a->status)
		return MR_DUPLICATE;
	if (c == 0 && status < a->status)
		return MR_LESS_SEVERE;
	a->ts = *ts;
	if (status == a->status)
		return MR_REFRESHED;
	/* Any status change (raised, escalated, cleared) makes it undelivered again. */
	a->status = status;
	a->delivered = false;
	return MR_CHANGED;
}

enum model_result
model_update(struct model *m, const char *user, const char *alarm,
    enum model_status status, const char *ts_str)
{
	enum model_result r = MR_NOMEM;
	size_t alen = strlen(alarm);
	struct alarm_rec *a;
	struct user_rec *u;
	struct model_ts ts;

	if (status == MS_INVALID || model_ts_parse(ts_str, strlen(ts_str), &ts) == -1)
		return MR_INVALID;
	pthread_mutex_lock(&m->lock);
	if ((u = user_get(m, user, true)) == NULL)
		goto out;
	if ((a = alarm_find(u, alarm, alen)) != NULL) {
		r = alarm_apply(a, status, &ts);
		goto out;
	}
	if (!grow((void **)&u->alarms, &u->cap, u->nalarms + 1, sizeof(*u->alarms)))
		goto out;
	a = &u->alarms[u->nalarms];
	memset(a, 0, sizeof(*a));
	if ((a->id = malloc(alen + 1)) == NULL)
		goto out;
	memcpy(a->id, alarm, alen + 1);
	a->id_len = alen;
	a->status = status;
	a->ts = ts;
	u->nalarms++;
	r = MR_NEW;
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Oldest instant first; ties by AlarmID bytes, a prefix first. */
static int
pending_cmp(const void *x, const void *y)
{
	const struct alarm_rec *a = *(const struct alarm_rec *const *)x;
	const struct alarm_rec *b = *(const struct alarm_rec *const *)y;
	size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
	int c = model_ts_cmp(&a->ts, &b->ts);

	if (c != 0)
		return c;
	if ((c = memcmp(a->id, b->id, n)) != 0)
		return c;
	return a->id_len < b->id_len ? -1 : a->id_len > b->id_len;
}

/*
 * The harness's clock (harness_now_ms), without linking the harness: the
 * fuzzers link the model alone.
 */
static int64_t
model_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Build and record the digest of u's pending alarms; 1, 0 (none) or -1. */
static int
user_take_digest(struct model *m, struct user_rec *u, char **canon)
{
	struct alarm_rec **pending = NULL;
	struct model_entry *e = NULL;
	size_t n = 0;
	char *c = NULL;
	int rc = -1;

	if (u->nalarms > 0 && ((pending = calloc(u->nalarms, sizeof(*pending))) == NULL ||
	    (e = calloc(u->nalarms, sizeof(*e))) == NULL))
		goto out;
	for (size_t i = 0; i < u->nalarms; i++)
		if (u->alarms[i].status != MS_CLEARED && !u->alarms[i].delivered)
			pending[n++] = &u->alarms[i];
	if (n == 0) {
		rc = 0;
		goto out;
	}
	qsort(pending, n, sizeof(*pending), pending_cmp);
	for (size_t i = 0; i < n; i++) {
		e[i].alarm = pending[i]->id;
		e[i].alarm_len = pending[i]->id_len;
		e[i].status = model_status_name(pending[i]->status);
		e[i].ts = pending[i]->ts.canon;
	}
	if ((c = model_canon(e, n)) == NULL ||
	    !grow((void **)&u->expected, &u->cap_expected, u->nexpected + 1, sizeof(*u->expected)))
		goto out;
	if (canon != NULL && (*canon = strdup(c)) == NULL)
		goto out;
	u->expected[u->nexpected++] = (struct expect){ .canon = c, .ms = model_now_ms() };
	c = NULL;
	m->expected_total++;
	for (size_t i = 0; i < n; i++)
		pending[i]->delivered = true;
	rc = 1;
out:
	free(c);
	free(pending);
	free(e);
	return rc;
}

int
model_request(struct model *m, const char *user, char **canon)
{
	struct user_rec *u;
	int rc = -1;

	pthread_mutex_lock(&m->lock);
	if ((u = user_get(m, user, true)) != NULL)
		rc = user_take_digest(m, u, canon);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

size_t
model_expected_count(struct model *m, const char *user)
{
	struct user_rec *u;
	size_t n;

	pthread_mutex_lock(&m->lock);
	u = user_get(m, user, false);
	n = u != NULL ? u->nexpected : 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}

const char *
model_expected(struct model *m, const char *user, size_t i)
{
	return model_expected_at(m, user, i, NULL);
}

const char *
model_expected_at(struct model *m, const char *user, size_t i, int64_t *ms)
{
	const char *c = NULL;
	struct user_rec *u;

	pthread_mutex_lock(&m->lock);
	u = user_get(m, user, false);
	if (u != NULL && i < u->nexpected) {
		c = u->expected[i].canon;
		if (ms != NULL)
			*ms = u->expected[i].ms;
	}
	pthread_mutex_unlock(&m->lock);
	return c;
}

size_t
model_expected_total(struct model *m)
{
	size_t n;

	pthread_mutex_lock(&m->lock);
	n = m->expected_total;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void
model_forget_expected(struct model *m)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nusers; i++) {
		struct user_rec *u = m->order[i];

		for (size_t k = 0; k < u->nexpected; k++)
			free(u->expected[k].canon);
		u->nexpected = 0;
	}
	m->expected_total = 0;
	pthread_mutex_unlock(&m->lock);
}

int
model_alarms(struct model *m, const char *user, model_alarm_fn fn, void *arg)
{
	struct user_rec *u;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if ((u = user_get(m, user, false)) != NULL)
		for (size_t i = 0; i < u->nalarms && rc == 0; i++)
			rc = fn(arg, u->alarms[i].id, u->alarms[i].status, u->alarms[i].ts.canon,
			    u->alarms[i].delivered);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

size_t
model_user_count(struct model *m)
{
	size_t n;

	pthread_mutex_lock(&m->lock);
	n = m->nusers;
	pthread_mutex_unlock(&m->lock);
	return n;
}

const char *
model_user(struct model *m, size_t i)
{
	const char *id = NULL;

	pthread_mutex_lock(&m->lock);
	if (i < m->nusers)
		id = m->order[i]->id;
	pthread_mutex_unlock(&m->lock);
	return id;
}
