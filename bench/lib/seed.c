#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../common/alarm.h"
#include "../../common/config.h"
#include "../../common/hash.h"
#include "../../common/layout.h"
#include "../../common/rfc3339.h"
#include "../../common/store.h"
#include "../../tests/lib/harness.h"
#include "pub.h"
#include "seed.h"

static int
seed_count(void *arg, const char *alarm, size_t alarm_len, enum alarm_status status,
    const struct rfc3339_time *changed_at)
{
	(void)alarm;
	(void)alarm_len;
	(void)status;
	(void)changed_at;
	(*(uint64_t *)arg)++;
	return 0;
}

static int
seed_commit_all(struct store **s, int n, bool reopen)
{
	for (int k = 0; k < n; k++) {
		if (store_commit(s[k]) == -1) {
			harness_seterr("seed: committing store worker-%d failed (see the log above)", k);
			return -1;
		}
		if (reopen && store_begin(s[k]) == -1) {
			harness_seterr("seed: opening a write transaction on worker-%d failed", k);
			return -1;
		}
	}
	return 0;
}

/* One user: every alarm once, then a digest (store and model alike). */
static int
seed_user(struct load *L, uint32_t i, struct store *s, struct model *m, const struct config *c,
    int64_t now_ms, struct seed_stats *st)
{
	const char *user = L->u[i].id;
	size_t ulen = strlen(user);
	char ts[48];
	bool replayed;
	int64_t t0 = pub_now_ns(), tm = 0, t1;

	for (int a = 0; a < L->alarms; a++) {
		size_t p = (size_t)i * (size_t)L->alarms + (size_t)a;
		const char *status = traffic_random_status(&L->rng);
		struct alarm_msg msg = { .kind = MSG_STATUS_CHANGED, .user = user, .user_len = ulen,
			.alarm = L->alarm_id[p], .alarm_len = strlen(L->alarm_id[p]) };
		enum state_result res;

		traffic_random_ts(&L->rng, L->base_sec, L->slot_sec, ts, sizeof(ts));
		msg.status = (enum alarm_status)model_status_parse(status);
		if (rfc3339_parse(ts, strlen(ts), &msg.changed_at) == -1) {
			harness_seterr("seed: generated ChangedAt \"%s\" does not parse", ts);
			return -1;
		}
		if (store_apply(s, &msg, now_ms, c->tombstone_retention_ms, &res) == -1) {
			harness_seterr("seed: store_apply for user %s failed (see the log above)", user);
			return -1;
		}
		t1 = pub_now_ns();
		if (model_update(m, user, L->alarm_id[p], (enum model_status)msg.status, ts) != MR_NEW) {
			harness_seterr("seed: the model did not take alarm %s of user %s as new",
			    L->alarm_id[p], user);
			return -1;
		}
		tm += pub_now_ns() - t1;
		L->slot[p] = 1;
		st->alarms++;
	}
	if (store_take_pending(s, user, ulen, 0, seed_count, &st->pending_taken, &replayed) == -1) {
		harness_seterr("seed: store_take_pending for user %s failed (see the log above)", user);
		return -1;
	}
	t1 = pub_now_ns();
	if (model_request(m, user, NULL) == -1) {
		harness_seterr("seed: model: out of memory on the digest of user %s", user);
		return -1;
	}
	t1 = pub_now_ns() - t1;
	st->model_seconds += (double)(tm + t1) / 1e9;
	st->store_seconds += (double)(pub_now_ns() - t0 - tm - t1) / 1e9;
	return 0;
}

int
seed_state(struct load *L, const char *state_dir, int workers, struct model *m,
    struct seed_stats *st)
{
	struct store *s[LAYOUT_MAX_SLOTS] = { 0 };
	struct config c;
	char dir[4096], err[256];
	int64_t t0 = pub_now_ns(), now_ms = harness_wall_sec() * 1000;
	int opened = 0, rc = -1, per_commit;

	memset(st, 0, sizeof(*st));
	if (workers < 1 || workers > LAYOUT_MAX_SLOTS) {
		harness_seterr("seed: %d workers is out of range", workers);
		return -1;
	}
	if (config_defaults(&c) == -1) {
		harness_seterr("seed: config_defaults failed");
		return -1;
	}
	/*
	 * Transactions no bigger than a worker's (commit_max_msgs frames: a
	 * user's updates and its digest request), so the file is one the
	 * service could have left: a store keeps the pages its biggest
	 * transactions freed (docs/PERFORMANCE.md, "Store format 3").
	 */
	per_commit = (int)(c.commit_max_msgs * workers / (L->alarms + 1));
	if (per_commit < 1)
		per_commit = 1;
	if (mkdir(state_dir, 0700) == -1 && errno != EEXIST) {
		harness_seterr("seed: mkdir %s: %s", state_dir, strerror(errno));
		goto out;
	}
	for (opened = 0; opened < workers; opened++) {
		if (layout_slot_path(dir, sizeof(dir), state_dir, opened, NULL) == -1) {
			harness_seterr("seed: the path of worker-%d under %s does not fit", opened, state_dir);
			goto out;
		}
		if ((s[opened] = store_open(dir, c.map_size_bytes, err, sizeof(err))) == NULL) {
			harness_seterr("seed: store_open %s: %s", dir, err);
			goto out;
		}
		if (store_begin(s[opened]) == -1) {
			store_close(s[opened]);
			harness_seterr("seed: opening a write transaction on %s failed", dir);
			goto out;
		}
	}
	/*
	 * Users in the load's (random) order, as they would first arrive: in
	 * key order a store would fill its pages densely and the state on disk
	 * would look smaller than the service ever makes it (80 instead of
	 * 105 B/alarm at 100,000 users, when tried).
	 */
	for (int i = 0; i < L->users; i++) {
		uint32_t k = hash32(L->u[i].id, strlen(L->u[i].id)) % (uint32_t)workers;

		if (seed_user(L, (uint32_t)i, s[k], m, &c, now_ms, st) == -1)
			goto out;
		if ((i + 1) % per_commit == 0) {
			int64_t tc = pub_now_ns();

			if (seed_commit_all(s, workers, true) == -1)
				goto out;
			st->commit_seconds += (double)(pub_now_ns() - tc) / 1e9;
		}
	}
	int64_t tc = pub_now_ns();
	if (seed_commit_all(s, workers, false) == -1)
		goto out;
	st->commit_seconds += (double)(pub_now_ns() - tc) / 1e9;
	for (int k = 0; k < workers; k++)
		store_close(s[k]);
	opened = 0;
	if (layout_write(state_dir, workers) == -1) {
		harness_seterr("seed: writing LAYOUT under %s failed (see the log above)", state_dir);
		goto out;
	}
	model_forget_expected(m);
	st->seconds = (double)(pub_now_ns() - t0) / 1e9;
	rc = 0;
out:
	/* On failure: whatever is still open is abandoned (store_abort is a no-op without one). */
	for (int k = 0; k < opened; k++) {
		store_abort(s[k]);
		store_close(s[k]);
	}
	config_free(&c);
	return rc;
}
