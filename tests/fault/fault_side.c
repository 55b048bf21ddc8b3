/*
 * Side traffic: a few users of their own that request digests while faults
 * are injected.  Their digests are not compared with the model (a crash
 * may replay a request, see fault_scn.c); each is checked for what must
 * hold whatever was replayed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "fault.h"
#include "../lib/itmap.h"

struct side {
	struct fenv *env;
	struct model *model;        /* only to drive the load; never compared */
	struct load load;
	pthread_mutex_t lock;
	struct itmap published;     /* "user\nalarm\nstatus\ncanonical instant" */
	bool started;
};

static void
side_key(char *buf, size_t cap, const char *user, const char *alarm, const char *status,
    const char *canon)
{
	snprintf(buf, cap, "%s\n%s\n%s\n%s", user, alarm, status, canon);
}

static void
side_on_update(void *arg, const char *user, const char *alarm, const char *status,
    const char *ts)
{
	struct side *s = arg;
	struct model_ts t;
	char key[512];

	if (model_ts_parse(ts, strlen(ts), &t) == -1)
		return;
	side_key(key, sizeof(key), user, alarm, status, t.canon);
	pthread_mutex_lock(&s->lock);
	/* On ENOMEM the check below reports the entry as never published: loud, not silent. */
	if (itmap_get(&s->published, key, strlen(key)) == NULL)
		(void)itmap_put(&s->published, key, strlen(key), s);
	pthread_mutex_unlock(&s->lock);
}

struct side *
side_start(struct fenv *e, uint64_t seed_mix)
{
	struct side *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->model = model_new()) == NULL) {
		free(s);
		harness_seterr("out of memory starting side traffic");
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->env = e;
	s->load.env = e;
	s->load.model = s->model;
	s->load.prefix = "side";
	s->load.users = 16;
	s->load.alarms = 4;
	s->load.threads = 1;
	s->load.request_pct = 20;
	s->load.dup_pct = 10;
	s->load.chunk = 8;
	s->load.pause_ms = 20;
	s->load.max_events = (size_t)fault_scaled(20000, 100);
	s->load.base_sec = harness_wall_sec() - 3 * 86400;
	s->load.seed = fault_opts.seed ^ seed_mix;
	s->load.on_update = side_on_update;
	s->load.on_update_arg = s;
	if (load_start(&s->load) == -1) {
		side_free(s);
		return NULL;
	}
	s->started = true;
	return s;
}

/* Compare two digest entries by (instant, AlarmID bytes); -2 if a timestamp is bad. */
static int
entry_cmp(const char *ts_a, const char *id_a, size_t la, const char *ts_b, const char *id_b,
    size_t lb)
{
	struct model_ts a, b;
	int c;

	if (model_ts_parse(ts_a, strlen(ts_a), &a) == -1 || model_ts_parse(ts_b, strlen(ts_b), &b) == -1)
		return -2;
	if ((c = model_ts_cmp(&a, &b)) != 0)
		return c;
	c = memcmp(id_a, id_b, la < lb ? la : lb);
	if (c != 0)
		return c < 0 ? -1 : 1;
	return la < lb ? -1 : la > lb;
}

/* One digest (a model_canon string) of `user`; 0, or -1 with harness_err. */
static int
side_check_digest(struct side *s, const char *user, const char *canon)
{
	struct json_object *arr = json_tokener_parse(canon);
	const char *prev_id = NULL, *prev_ts = NULL;
	size_t prev_len = 0, n;
	int rc = -1;

	if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
		harness_seterr("user %s: digest %s does not parse", user, canon);
		goto out;
	}
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_array_get_idx(arr, i);
		const char *id = json_object_get_string(json_object_array_get_idx(t, 0));
		const char *st = json_object_get_string(json_object_array_get_idx(t, 1));
		const char *ts = json_object_get_string(json_object_array_get_idx(t, 2));
		size_t len = (size_t)json_object_get_string_len(json_object_array_get_idx(t, 0));
		char key[512];
		void *hit;

		side_key(key, sizeof(key), user, id, st, ts);
		pthread_mutex_lock(&s->lock);
		hit = itmap_get(&s->published, key, strlen(key));
		pthread_mutex_unlock(&s->lock);
		if (hit == NULL) {
			harness_seterr("user %s: digest %s lists %s %s at %s, which no published update "
			    "carried", user, canon, id, st, ts);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			struct json_object *o = json_object_array_get_idx(arr, j);

			if (strcmp(json_object_get_string(json_object_array_get_idx(o, 0)), id) == 0) {
				harness_seterr("user %s: digest %s lists alarm %s twice", user, canon, id);
				goto out;
			}
		}
		if (prev_id != NULL && entry_cmp(prev_ts, prev_id, prev_len, ts, id, len) >= 0) {
			harness_seterr("user %s: digest %s is not ordered by LatestChangedAt, then "
			    "AlarmID", user, canon);
			goto out;
		}
		prev_id = id;
		prev_ts = ts;
		prev_len = len;
	}
	rc = 0;
out:
	json_object_put(arr);
	return rc;
}

void
side_finish(struct side *s)
{
	size_t users, digests = 0;
	char name[96];
	int rc = 0;

	if (s == NULL)
		return;
	snprintf(name, sizeof(name), "%s/mid_fault_digests", s->env->tag);
	if (load_stop(&s->load) == -1) {
		tap_fail(name, "side traffic: %s", harness_err());
		return;
	}
	/* Let digests of the last requests arrive; their content is all we look at. */
	harness_sleep_ms(200);
	users = model_user_count(s->model);
	for (size_t i = 0; i < users && rc == 0; i++) {
		const char *u = model_user(s->model, i);
		size_t n = collector_count(s->env->digests, u);

		for (size_t k = 0; k < n && rc == 0; k++) {
			rc = side_check_digest(s, u, collector_get(s->env->digests, u, k));
			digests++;
		}
	}
	printf("# %s: %zu side messages, %zu digests of side users checked for shape, order and "
	    "provenance\n", s->env->tag, load_sent(&s->load), digests);
	if (rc == 0 && digests == 0) {
		harness_seterr("no digest of the %zu side users arrived", users);
		rc = -1;
	}
	tap_report(name, rc);
}

void
side_free(struct side *s)
{
	if (s == NULL)
		return;
	if (s->started)
		(void)load_stop(&s->load);
	itmap_free(&s->published, NULL);
	model_free(s->model);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
