/*
 * Unit tests for common/store.c against a real LMDB environment in a
 * mkdtemp directory: durability, the digest marks, tombstones, IDs,
 * merging, counters, corrupt records, and the bytes-per-alarm figure.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <uuid/uuid.h>

#include "cell.h"
#include "digest.h"
#include "pcache.h"
#include "rec.h"
#include "spec_ref.h"
#include "store.h"

#define MAP_SIZE (256LL << 20)
#define DAY_MS 86400000LL
#define RETENTION (14 * DAY_MS)

#define ITEM(id, status, when) \
	"{\"AlarmID\":\"" id "\",\"Status\":\"" status "\",\"LatestChangedAt\":\"" when "\"}"
#define DIGEST(user, items) "{\"UserID\":\"" user "\",\"ActiveAlarms\":[" items "]}"

struct fx {
	char root[64];
	char dir[128];
	struct store *s;
	struct digest d;
	struct buf json;
	int64_t now_ms;
	bool replayed;
};

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct store *
open_at(const char *dir)
{
	char err[256] = "";
	struct store *s = store_open(dir, MAP_SIZE, err, sizeof(err));

	if (s == NULL)
		fail_msg("store_open %s: %s", dir, err);
	return s;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->root, "/tmp/h2_store_XXXXXX");
	assert_non_null(mkdtemp(f->root));
	/* A nested path: store_open must create the missing levels. */
	snprintf(f->dir, sizeof(f->dir), "%s/state/w0", f->root);
	f->s = open_at(f->dir);
	f->now_ms = 1629244800000LL;   /* 2021-08-18T00:00:00Z */
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->s);
	digest_free(&f->d);
	buf_free(&f->json);
	assert_int_equal(nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
	free(f);
	return 0;
}

static void
reopen(struct fx *f)
{
	store_close(f->s);
	f->s = open_at(f->dir);
}

static struct rfc3339_time
ts(const char *s)
{
	struct rfc3339_time t;

	assert_int_equal(rfc3339_parse(s, strlen(s), &t), 0);
	return t;
}

static enum state_result
apply_n(struct store *s, const char *user, size_t ulen, const char *alarm, size_t alen,
    enum alarm_status status, const char *when, int64_t now_ms)
{
	struct alarm_msg m = { MSG_STATUS_CHANGED, user, ulen, alarm, alen, status, ts(when) };
	enum state_result r;

	assert_int_equal(store_apply(s, &m, now_ms, RETENTION, &r), 0);
	return r;
}

/* One update in its own committed transaction. */
static enum state_result
apply1(struct fx *f, const char *user, const char *alarm, enum alarm_status status, const char *when)
{
	enum state_result r;

	assert_int_equal(store_begin(f->s), 0);
	r = apply_n(f->s, user, strlen(user), alarm, strlen(alarm), status, when, f->now_ms);
	assert_int_equal(store_commit(f->s), 0);
	return r;
}

/* Take a digest and render it; commit (marks stick) or abort (a peek). */
static const char *
take_json_n(struct fx *f, const char *user, size_t ulen, bool commit)
{
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, user, ulen, 0, &f->d, &f->replayed), 0);
	if (commit)
		assert_int_equal(store_commit(f->s), 0);
	else
		store_abort(f->s);
	buf_reset(&f->json);
	assert_int_equal(digest_write_json(&f->d, user, ulen, &f->json), 0);
	assert_int_equal(buf_append_byte(&f->json, 0), 0);
	return (const char *)f->json.data;
}

static const char *
take_json(struct fx *f, const char *user)
{
	return take_json_n(f, user, strlen(user), true);
}

static const char *
peek_json(struct fx *f, const char *user)
{
	return take_json_n(f, user, strlen(user), false);
}

static void
assert_stats(struct store *s, uint64_t users, uint64_t alarms, uint64_t tombstones)
{
	struct store_stats st;

	store_get_stats(s, &st);
	if (st.users != users || st.alarms != alarms || st.tombstones != tombstones)
		fail_msg("stats users/alarms/tombstones %llu/%llu/%llu, want %llu/%llu/%llu",
		    (unsigned long long)st.users, (unsigned long long)st.alarms,
		    (unsigned long long)st.tombstones, (unsigned long long)users,
		    (unsigned long long)alarms, (unsigned long long)tombstones);
	if (users > 0)
		assert_true(st.bytes > 0);
}

/* Send this process's log lines (fd 2) to a file while a test provokes errors. */
struct capture {
	char path[160];
	int saved;
};

static void
capture_start(struct capture *c, const char *root)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/log-XXXXXX", root);
	fd = mkstemp(c->path);
	assert_true(fd >= 0);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
}

/* Restore fd 2; *out gets what was logged, NUL-terminated. */
static void
capture_stop(struct capture *c, struct buf *out)
{
	char chunk[4096];
	ssize_t n;
	int fd;

	assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
	close(c->saved);
	buf_reset(out);
	fd = open(c->path, O_RDONLY);
	assert_true(fd >= 0);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		assert_int_equal(buf_append(out, chunk, (size_t)n), 0);
	close(fd);
	assert_int_equal(unlink(c->path), 0);
	assert_int_equal(buf_append_byte(out, 0), 0);
}

static int
count_lines_with(const struct buf *log, const char *needle)
{
	int n = 0;

	for (const char *p = (const char *)log->data; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* ---- durability ---------------------------------------------------------- */

static void
test_durable_reopen(void **state)
{
	struct fx *f = *state;
	struct stat sb;

	assert_int_equal(stat(f->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_stats(f->s, 0, 0, 0);

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(apply_n(f->s, "u1", 2, "a1", 2, STATUS_WARNING, "2021-08-17T15:33:59.1+03:00",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, "u1", 2, "a2", 2, STATUS_CRITICAL, "2021-08-17T12:00:00Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, "u1", 2, "a3", 2, STATUS_CLEARED, "2021-08-17T12:00:00Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, "u2", 2, "a1", 2, STATUS_WARNING, "2021-06-07T20:40:15.598765212Z",
	    f->now_ms), STATE_NEW);
	/* Counters move only at commit. */
	assert_stats(f->s, 0, 0, 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_stats(f->s, 2, 4, 1);

	reopen(f);
	assert_stats(f->s, 2, 4, 1);
	/* The tombstone survived the restart and still rejects an older raise. */
	assert_int_equal(apply1(f, "u1", "a3", STATUS_CRITICAL, "2021-08-17T11:59:59Z"), STATE_STALE);
	assert_string_equal(take_json(f, "u1"), DIGEST("u1",
	    ITEM("a2", "CRITICAL", "2021-08-17T12:00:00Z") ","
	    ITEM("a1", "WARNING", "2021-08-17T15:33:59.1+03:00")));
	assert_string_equal(take_json(f, "u2"), DIGEST("u2",
	    ITEM("a1", "WARNING", "2021-06-07T20:40:15.598765212Z")));
	/* The delivered marks are durable too. */
	reopen(f);
	assert_string_equal(take_json(f, "u1"), DIGEST("u1", ""));
	assert_int_equal(f->d.n, 0);
	assert_stats(f->s, 2, 4, 1);
}

/*
 * A store past PCACHE_MIN_BYTES is kept in base pages (common/pcache.h):
 * its file grows a margin that is a hole, and everything reads back the
 * same after a reopen, when the whole file is read into the cache again.
 */
/* Its users' alarms 1..9, as every user's digest lists them; IDs long enough to fill 16 MiB soon. */
#define BIG_ID "alarm-of-a-big-store-"
#define BIG_W(n) ITEM(BIG_ID n, "WARNING", "2021-08-17T12:00:00Z")
#define BIG_A1_A9 BIG_W("1") "," BIG_W("2") "," BIG_W("3") "," BIG_W("4") "," BIG_W("5") "," \
	BIG_W("6") "," BIG_W("7") "," BIG_W("8") "," BIG_W("9")

static void
test_big_store_reopen(void **state)
{
	enum { USERS = 60000, PER_USER = 10, BATCH = 5000 };
	struct fx *f = *state;
	char path[200], user[32], alarm[32];
	struct store_stats st;
	struct stat sb;

	for (int u = 0; u < USERS; u++) {
		if (u % BATCH == 0)
			assert_int_equal(store_begin(f->s), 0);
		snprintf(user, sizeof(user), "big-%d", u);
		for (int a = 0; a < PER_USER; a++) {
			snprintf(alarm, sizeof(alarm), BIG_ID "%d", a);
			assert_int_equal(apply_n(f->s, user, strlen(user), alarm, strlen(alarm),
			    STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms), STATE_NEW);
		}
		if (u % BATCH == BATCH - 1)
			assert_int_equal(store_commit(f->s), 0);
	}
	store_get_stats(f->s, &st);
	assert_true(st.bytes >= (uint64_t)PCACHE_MIN_BYTES);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	/* A margin past the pages in use, taking no disk space of its own. */
	assert_true((uint64_t)sb.st_size > st.bytes);
	assert_true((uint64_t)sb.st_blocks * 512 <= (uint64_t)sb.st_size);

	reopen(f);
	assert_stats(f->s, USERS, USERS * PER_USER, 0);
	assert_string_equal(take_json(f, "big-31337"), DIGEST("big-31337", BIG_W("0") "," BIG_A1_A9));
	/* Writes go on where the file was left. */
	assert_int_equal(apply1(f, "big-0", BIG_ID "0", STATUS_CRITICAL, "2021-08-17T12:00:01Z"), STATE_CHANGED);
	reopen(f);
	assert_string_equal(take_json(f, "big-0"), DIGEST("big-0",
	    BIG_A1_A9 "," ITEM(BIG_ID "0", "CRITICAL", "2021-08-17T12:00:01Z")));
}

static void
test_abort_discards(void **state)
{
	struct fx *f = *state;
	struct store_stats before, after;

	assert_int_equal(apply1(f, "u1", "a1", STATUS_WARNING, "2021-08-17T12:00:00Z"), STATE_NEW);
	store_get_stats(f->s, &before);

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(apply_n(f->s, "u1", 2, "a1", 2, STATUS_CRITICAL, "2021-08-17T12:00:01Z",
	    f->now_ms), STATE_CHANGED);
	assert_int_equal(apply_n(f->s, "u1", 2, "a2", 2, STATUS_CLEARED, "2021-08-17T12:00:01Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, "u9", 2, "a2", 2, STATUS_WARNING, "2021-08-17T12:00:01Z",
	    f->now_ms), STATE_NEW);
	store_abort(f->s);
	store_get_stats(f->s, &after);
	assert_memory_equal(&before, &after, sizeof(before));

	/* A digest that could not be published: abort undoes the delivered marks. */
	assert_string_equal(peek_json(f, "u1"), DIGEST("u1", ITEM("a1", "WARNING", "2021-08-17T12:00:00Z")));
	assert_string_equal(peek_json(f, "u1"), DIGEST("u1", ITEM("a1", "WARNING", "2021-08-17T12:00:00Z")));
	assert_string_equal(peek_json(f, "u9"), DIGEST("u9", ""));
	reopen(f);
	assert_stats(f->s, 1, 1, 0);
	assert_string_equal(take_json(f, "u1"), DIGEST("u1", ITEM("a1", "WARNING", "2021-08-17T12:00:00Z")));
}

/* Several operations, including on the same user, in one transaction. */
static void
test_batch_in_one_txn(void **state)
{
	struct fx *f = *state;

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(apply_n(f->s, "u", 1, "a", 1, STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms),
	    STATE_NEW);
	assert_int_equal(digest_take(f->s, "u", 1, 0, &f->d, &f->replayed), 0);
	assert_int_equal(f->d.n, 1);
	assert_int_equal(apply_n(f->s, "u", 1, "a", 1, STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms),
	    STATE_DUPLICATE);
	assert_int_equal(apply_n(f->s, "u", 1, "b", 1, STATUS_CRITICAL, "2021-08-17T12:00:00Z", f->now_ms),
	    STATE_NEW);
	assert_int_equal(digest_take(f->s, "u", 1, 0, &f->d, &f->replayed), 0);
	assert_int_equal(f->d.n, 1);
	assert_int_equal(store_commit(f->s), 0);
	assert_stats(f->s, 1, 2, 0);
	assert_string_equal(take_json(f, "u"), DIGEST("u", ""));
}

/* ---- digest marks ----------------------------------------------------------- */

static void
test_take_marks_delivered(void **state)
{
	struct fx *f = *state;

	assert_string_equal(take_json(f, "nobody"), DIGEST("nobody", ""));
	apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
	apply1(f, "u", "b", STATUS_CRITICAL, "2021-08-17T11:00:00Z");
	apply1(f, "u", "c", STATUS_CLEARED, "2021-08-17T10:00:00Z");
	assert_string_equal(take_json(f, "u"), DIGEST("u",
	    ITEM("b", "CRITICAL", "2021-08-17T11:00:00Z") "," ITEM("a", "WARNING", "2021-08-17T12:00:00Z")));
	assert_string_equal(take_json(f, "u"), DIGEST("u", ""));

	/* A newer ChangedAt with the same status is not a change. */
	assert_int_equal(apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T13:00:00Z"), STATE_REFRESHED);
	assert_string_equal(take_json(f, "u"), DIGEST("u", ""));

	/* WARNING -> CRITICAL is; the digest shows the newest ChangedAt. */
	assert_int_equal(apply1(f, "u", "a", STATUS_CRITICAL, "2021-08-17T14:00:00+01:00"), STATE_CHANGED);
	assert_string_equal(take_json(f, "u"), DIGEST("u", ITEM("a", "CRITICAL", "2021-08-17T14:00:00+01:00")));

	/* CLEARED and raised again between two digests: delivered again. */
	assert_int_equal(apply1(f, "u", "b", STATUS_CLEARED, "2021-08-17T15:00:00Z"), STATE_CHANGED);
	assert_int_equal(apply1(f, "u", "b", STATUS_CRITICAL, "2021-08-17T16:00:00Z"), STATE_CHANGED);
	/* ... and CRITICAL -> WARNING -> CRITICAL likewise (any accepted status change). */
	assert_int_equal(apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T16:00:00Z"), STATE_CHANGED);
	assert_int_equal(apply1(f, "u", "a", STATUS_CRITICAL, "2021-08-17T16:00:00.5Z"), STATE_CHANGED);
	assert_string_equal(take_json(f, "u"), DIGEST("u",
	    ITEM("b", "CRITICAL", "2021-08-17T16:00:00Z") "," ITEM("a", "CRITICAL", "2021-08-17T16:00:00.5Z")));

	/* Raised, then cleared before any digest: nothing to send. */
	apply1(f, "u", "d", STATUS_WARNING, "2021-08-17T16:00:00Z");
	apply1(f, "u", "d", STATUS_CLEARED, "2021-08-17T16:00:01Z");
	assert_string_equal(take_json(f, "u"), DIGEST("u", ""));
	assert_stats(f->s, 1, 4, 2);
}

static void
test_same_instant_rules(void **state)
{
	struct fx *f = *state;

	apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
	assert_int_equal(apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T15:00:00+03:00"), STATE_DUPLICATE);
	assert_int_equal(apply1(f, "u", "a", STATUS_CLEARED, "2021-08-17T12:00:00Z"), STATE_LESS_SEVERE);
	assert_int_equal(apply1(f, "u", "a", STATUS_CRITICAL, "2021-08-17T15:00:00+03:00"), STATE_CHANGED);
	/* SPEC: 15:33:59+03:00 is earlier than 13:00:00Z. */
	assert_int_equal(apply1(f, "u", "b", STATUS_WARNING, "2021-08-17T13:00:00Z"), STATE_NEW);
	assert_int_equal(apply1(f, "u", "b", STATUS_CRITICAL, "2021-08-17T15:33:59+03:00"), STATE_STALE);
	assert_string_equal(take_json(f, "u"), DIGEST("u",
	    ITEM("a", "CRITICAL", "2021-08-17T15:00:00+03:00") "," ITEM("b", "WARNING", "2021-08-17T13:00:00Z")));
}

/* ---- tombstones --------------------------------------------------------------- */

static void
test_tombstone_expiry(void **state)
{
	struct fx *f = *state;
	int64_t t0 = 1627776000000LL;   /* 2021-08-01T00:00:00Z in ms */

	f->now_ms = t0 + DAY_MS;
	apply1(f, "u", "gone", STATUS_CLEARED, "2021-08-01T00:00:00Z");
	apply1(f, "u", "live", STATUS_WARNING, "2021-08-01T00:00:00Z");
	apply1(f, "v", "only", STATUS_CLEARED, "2021-08-01T00:00:00Z");
	assert_stats(f->s, 2, 3, 2);

	/* Exactly at the retention edge nothing goes, even though the record is read. */
	f->now_ms = t0 + RETENTION;
	assert_int_equal(apply1(f, "u", "live", STATUS_WARNING, "2021-08-01T00:00:00Z"), STATE_DUPLICATE);
	assert_stats(f->s, 2, 3, 2);
	assert_int_equal(apply1(f, "u", "gone", STATUS_WARNING, "2021-07-31T00:00:00Z"), STATE_STALE);

	/* Past it, an update of another alarm leaves the tombstone alone: it costs one cell. */
	f->now_ms = t0 + RETENTION + 1;
	assert_int_equal(apply1(f, "u", "live", STATUS_CRITICAL, "2021-08-01T00:00:01Z"), STATE_CHANGED);
	assert_stats(f->s, 2, 3, 2);
	/* Rule 4: an update of the expired tombstone's alarm finds it gone; an old raise is news again. */
	assert_int_equal(apply1(f, "u", "gone", STATUS_WARNING, "2021-07-31T00:00:00Z"), STATE_NEW);
	assert_stats(f->s, 2, 3, 1);
	/* A CLEARED already past the retention leaves no tombstone: v is gone. */
	assert_int_equal(apply1(f, "v", "only", STATUS_CLEARED, "2021-07-30T00:00:00Z"), STATE_NEW);
	assert_stats(f->s, 1, 2, 0);
	assert_int_equal(apply1(f, "v", "other", STATUS_CLEARED, "2021-08-01T00:00:00Z"), STATE_NEW);
	assert_stats(f->s, 1, 2, 0);

	/* The sweep drops tombstones that expire while nothing updates them. */
	assert_int_equal(apply1(f, "u", "late", STATUS_CLEARED, "2021-08-01T00:00:01Z"), STATE_NEW);
	assert_stats(f->s, 1, 3, 1);
	f->now_ms = t0 + RETENTION + 2000;
	{
		bool wrapped;

		assert_int_equal(store_begin(f->s), 0);
		assert_int_equal(store_sweep(f->s, f->now_ms, RETENTION, 100, &wrapped), 0);
		assert_int_equal(store_commit(f->s), 0);
		assert_true(wrapped);
	}
	assert_stats(f->s, 1, 2, 0);
	reopen(f);
	assert_stats(f->s, 1, 2, 0);
	assert_string_equal(take_json(f, "v"), DIGEST("v", ""));
	assert_string_equal(take_json(f, "u"), DIGEST("u",
	    ITEM("gone", "WARNING", "2021-07-31T00:00:00Z") "," ITEM("live", "CRITICAL", "2021-08-01T00:00:01Z")));
}

/* ---- the per-user alarm limit ------------------------------------------------ */

/*
 * SPEC, malformed input: a new alarm for a user who holds the maximum
 * (tombstones included) changes nothing; the alarms held still update; the
 * limit is per user; expired tombstones do not count; a reload changes it.
 */
static void
test_alarm_limit(void **state)
{
	struct fx *f = *state;
	int64_t t0 = 1627776000000LL;   /* 2021-08-01T00:00:00Z in ms */

	f->now_ms = t0 + DAY_MS;
	store_set_max_alarms(f->s, 3);
	assert_int_equal(apply1(f, "u", "a", STATUS_WARNING, "2021-08-01T00:00:00Z"), STATE_NEW);
	assert_int_equal(apply1(f, "u", "b", STATUS_CRITICAL, "2021-08-01T00:00:00Z"), STATE_NEW);
	assert_int_equal(apply1(f, "u", "gone", STATUS_CLEARED, "2021-08-01T00:00:00Z"), STATE_NEW);
	assert_stats(f->s, 1, 3, 1);

	/* The tombstone counts: a fourth alarm is refused, and leaves no trace. */
	assert_int_equal(apply1(f, "u", "c", STATUS_WARNING, "2021-08-01T00:00:01Z"), STATE_OVER_LIMIT);
	assert_int_equal(apply1(f, "u", "d", STATUS_CLEARED, "2021-08-01T00:00:01Z"), STATE_OVER_LIMIT);
	assert_stats(f->s, 1, 3, 1);

	/* Alarms the user holds still take every rule, the tombstone's raise included. */
	assert_int_equal(apply1(f, "u", "a", STATUS_CRITICAL, "2021-08-01T00:00:02Z"), STATE_CHANGED);
	assert_int_equal(apply1(f, "u", "a", STATUS_CRITICAL, "2021-08-01T00:00:02Z"), STATE_DUPLICATE);
	assert_int_equal(apply1(f, "u", "b", STATUS_CRITICAL, "2021-07-31T00:00:00Z"), STATE_STALE);
	assert_int_equal(apply1(f, "u", "gone", STATUS_WARNING, "2021-08-01T00:00:03Z"), STATE_CHANGED);

	/* Per user: another user is not affected. */
	assert_int_equal(apply1(f, "v", "c", STATUS_WARNING, "2021-08-01T00:00:01Z"), STATE_NEW);
	assert_stats(f->s, 2, 4, 0);
	assert_string_equal(take_json(f, "u"), DIGEST("u",
	    ITEM("b", "CRITICAL", "2021-08-01T00:00:00Z") "," ITEM("a", "CRITICAL", "2021-08-01T00:00:02Z") ","
	    ITEM("gone", "WARNING", "2021-08-01T00:00:03Z")));

	/* Clearing keeps the count (a tombstone is an alarm held), so still refused. */
	assert_int_equal(apply1(f, "u", "gone", STATUS_CLEARED, "2021-08-01T00:00:04Z"), STATE_CHANGED);
	assert_int_equal(apply1(f, "u", "c", STATUS_WARNING, "2021-08-01T00:00:05Z"), STATE_OVER_LIMIT);

	/* An expired tombstone does not count: the write that adds "c" drops it. */
	f->now_ms = t0 + 4000 + RETENTION + 1;
	assert_int_equal(apply1(f, "u", "c", STATUS_WARNING, "2021-08-01T00:00:05Z"), STATE_NEW);
	assert_stats(f->s, 2, 4, 0);
	assert_int_equal(apply1(f, "u", "e", STATUS_WARNING, "2021-08-01T00:00:06Z"), STATE_OVER_LIMIT);

	/* A reload raises it, and 0 is no limit at all. */
	store_set_max_alarms(f->s, 4);
	assert_int_equal(apply1(f, "u", "e", STATUS_WARNING, "2021-08-01T00:00:06Z"), STATE_NEW);
	assert_int_equal(apply1(f, "u", "f", STATUS_WARNING, "2021-08-01T00:00:06Z"), STATE_OVER_LIMIT);
	store_set_max_alarms(f->s, 0);
	assert_int_equal(apply1(f, "u", "f", STATUS_WARNING, "2021-08-01T00:00:06Z"), STATE_NEW);
	assert_stats(f->s, 2, 6, 0);

	/* A lowered limit refuses new alarms but keeps every one held. */
	store_set_max_alarms(f->s, 1);
	assert_int_equal(apply1(f, "u", "g", STATUS_WARNING, "2021-08-01T00:00:07Z"), STATE_OVER_LIMIT);
	assert_int_equal(apply1(f, "u", "f", STATUS_CRITICAL, "2021-08-01T00:00:07Z"), STATE_CHANGED);
	assert_stats(f->s, 2, 6, 0);
	reopen(f);
	assert_stats(f->s, 2, 6, 0);
	assert_string_equal(state_result_name(STATE_OVER_LIMIT), "over_limit");
}

/* A request replayed after a crash was answered already: no early alarms. */
static void
test_replayed_request(void **state)
{
	struct fx *f = *state;

	apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "u", 1, 100, &f->d, &f->replayed), 0);
	assert_false(f->replayed);
	assert_int_equal(f->d.n, 1);
	assert_int_equal(store_commit(f->s), 0);
	/* An update committed after the request, then the request comes again. */
	apply1(f, "u", "b", STATUS_CRITICAL, "2021-08-17T12:00:01Z");
	reopen(f);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "u", 1, 100, &f->d, &f->replayed), 0);
	assert_true(f->replayed);
	assert_int_equal(f->d.n, 0);
	/* The next real request gets b. */
	assert_int_equal(digest_take(f->s, "u", 1, 101, &f->d, &f->replayed), 0);
	assert_false(f->replayed);
	assert_int_equal(f->d.n, 1);
	assert_int_equal(store_commit(f->s), 0);
	/* A user with no alarms remembers its requests too. */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "nobody", 6, 200, &f->d, &f->replayed), 0);
	assert_int_equal(store_commit(f->s), 0);
	apply1(f, "nobody", "x", STATUS_WARNING, "2021-08-17T12:00:00Z");
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "nobody", 6, 200, &f->d, &f->replayed), 0);
	assert_true(f->replayed);
	store_abort(f->s);
	assert_stats(f->s, 2, 3, 0);
	reopen(f);
	assert_stats(f->s, 2, 3, 0);
}

/* Users never written again still lose their expired tombstones, a few at a time. */
static void
test_sweep(void **state)
{
	struct fx *f = *state;
	int64_t t0 = 1627776000000LL;   /* 2021-08-01T00:00:00Z in ms */
	char user[16];
	bool wrapped = false;
	int calls = 0;

	f->now_ms = t0;
	for (int i = 0; i < 25; i++) {
		snprintf(user, sizeof(user), "user%02d", i);
		apply1(f, user, "gone", STATUS_CLEARED, "2021-08-01T00:00:00Z");
		if (i % 5 == 0)
			apply1(f, user, "live", STATUS_WARNING, "2021-08-01T00:00:00Z");
	}
	assert_stats(f->s, 25, 30, 25);
	/* Within retention a full pass changes nothing. */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_sweep(f->s, t0 + RETENTION, RETENTION, 1000, &wrapped), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_true(wrapped);
	assert_stats(f->s, 25, 30, 25);
	/* Past it, passes of 4 users each walk the whole store once. */
	wrapped = false;
	while (!wrapped) {
		assert_int_equal(store_begin(f->s), 0);
		assert_int_equal(store_sweep(f->s, t0 + RETENTION + 1, RETENTION, 4, &wrapped), 0);
		assert_int_equal(store_commit(f->s), 0);
		assert_true(++calls <= 8);
	}
	assert_int_equal(calls, 7);
	assert_stats(f->s, 5, 5, 0);
	reopen(f);
	assert_stats(f->s, 5, 5, 0);
	assert_string_equal(take_json(f, "user05"), DIGEST("user05", ITEM("live", "WARNING", "2021-08-01T00:00:00Z")));
}

/* ---- IDs ------------------------------------------------------------------------ */

struct seen {
	char users[16][300];
	size_t lens[16];
	size_t n;
};

static int
collect_users(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	struct seen *s = arg;

	(void)rec;
	assert_true(rec_len > 0);
	assert_true(s->n < 16 && user_len <= sizeof(s->users[0]));
	memcpy(s->users[s->n], user, user_len);
	s->lens[s->n++] = user_len;
	return 0;
}

static bool
seen_has(const struct seen *s, const char *user, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->lens[i] == len && memcmp(s->users[i], user, len) == 0)
			return true;
	return false;
}

/* Bytewise AlarmID order of two digest items. */
static int
id_order(const struct digest *d, size_t i, size_t j)
{
	const struct digest_item *a = &d->items[i], *b = &d->items[j];
	size_t n = a->alarm_len < b->alarm_len ? a->alarm_len : b->alarm_len;
	int c = memcmp(d->ids.data + a->alarm_off, d->ids.data + b->alarm_off, n);

	return c != 0 ? c : (a->alarm_len > b->alarm_len) - (a->alarm_len < b->alarm_len);
}

static void
test_id_round_trip(void **state)
{
	struct fx *f = *state;
	char long_id[256];
	static const char *const ids[] = {
		"6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e",    /* lower: stored as 16 bytes */
		"6F1C8A3E-9C1E-4B8E-8D4A-2F0E5B6C7D8E",    /* upper: same bytes, other tag */
		"6F1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e",    /* mixed: must stay raw */
		"{6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8}",   /* 37 bytes */
		"6f1c8a3e9c1e4b8e8d4a2f0e5b6c7d8e",        /* no dashes */
		"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",    /* 36 bytes, not hex */
		"00000000-0000-0000-0000-000000000000",    /* digits only: lower and upper agree */
		"plain", "x", "caf\xc3\xa9 \"quoted\"",
	};
	size_t n = sizeof(ids) / sizeof(ids[0]);
	struct seen seen = { .n = 0 };

	memset(long_id, 'L', sizeof(long_id));
	assert_int_equal(store_begin(f->s), 0);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			assert_int_equal(apply_n(f->s, ids[i], strlen(ids[i]), ids[j], strlen(ids[j]),
			    STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms), STATE_NEW);
	/* IDs with NUL bytes, and a 256-byte one. */
	assert_int_equal(apply_n(f->s, "n\0ul", 4, "a\0", 2, STATUS_CRITICAL, "2021-08-17T12:00:00Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, "n\0ul", 4, "a", 1, STATUS_WARNING, "2021-08-17T12:00:00Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(apply_n(f->s, long_id, sizeof(long_id), long_id, sizeof(long_id),
	    STATUS_CRITICAL, "2021-08-17T12:00:00Z", f->now_ms), STATE_NEW);
	assert_int_equal(store_commit(f->s), 0);
	assert_stats(f->s, n + 2, n * n + 3, 0);

	reopen(f);
	assert_stats(f->s, n + 2, n * n + 3, 0);
	assert_int_equal(store_foreach_user(f->s, collect_users, &seen), 0);
	assert_int_equal(seen.n, n + 2);
	for (size_t i = 0; i < n; i++)
		assert_true(seen_has(&seen, ids[i], strlen(ids[i])));
	assert_true(seen_has(&seen, "n\0ul", 4));
	assert_true(seen_has(&seen, long_id, sizeof(long_id)));

	/* Every user's digest echoes every AlarmID byte for byte, in bytewise order. */
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(store_begin(f->s), 0);
		assert_int_equal(digest_take(f->s, ids[i], strlen(ids[i]), 0, &f->d, &f->replayed), 0);
		assert_int_equal(store_commit(f->s), 0);
		assert_int_equal(f->d.n, n);
		for (size_t k = 0; k < n; k++) {
			const struct digest_item *it = &f->d.items[k];
			bool found = false;

			for (size_t j = 0; j < n; j++)
				found |= it->alarm_len == strlen(ids[j]) &&
				    memcmp(f->d.ids.data + it->alarm_off, ids[j], it->alarm_len) == 0;
			assert_true(found);
			if (k > 0)
				assert_true(id_order(&f->d, k - 1, k) < 0);
		}
	}
	assert_string_equal(take_json_n(f, "n\0ul", 4, true),
	    "{\"UserID\":\"n\\u0000ul\",\"ActiveAlarms\":["
	    ITEM("a", "WARNING", "2021-08-17T12:00:00Z") ","
	    ITEM("a\\u0000", "CRITICAL", "2021-08-17T12:00:00Z") "]}");
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, long_id, sizeof(long_id), 0, &f->d, &f->replayed), 0);
	store_abort(f->s);
	assert_int_equal(f->d.n, 1);
	assert_int_equal(f->d.items[0].alarm_len, sizeof(long_id));
	assert_memory_equal(f->d.ids.data, long_id, sizeof(long_id));
}

/* LMDB keys stop at 511 bytes: the tag byte plus a 510-byte UserID. */
static void
test_long_user_id(void **state)
{
	struct fx *f = *state;
	char id[511];
	struct alarm_msg m = { MSG_STATUS_CHANGED, id, sizeof(id), "a", 1, STATUS_WARNING,
	    ts("2021-08-17T12:00:00Z") };
	enum state_result r;
	struct capture cap;
	struct buf log = { 0 };

	memset(id, 'x', sizeof(id));
	assert_int_equal(store_begin(f->s), 0);
	capture_start(&cap, f->root);
	assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), -1);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, "UserID of 511 bytes is longer"), 1);
	/* Refused before touching LMDB, so the transaction goes on. */
	m.user_len = 510;
	assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), 0);
	assert_int_equal(r, STATE_NEW);
	assert_int_equal(store_commit(f->s), 0);
	assert_stats(f->s, 1, 1, 0);
	buf_free(&log);
}

static void
test_uuid_case_exact(void **state)
{
	struct fx *f = *state;
	const char *lo = "a1b2c3d4-e5f6-4789-abcd-ef0123456789";
	const char *up = "A1B2C3D4-E5F6-4789-ABCD-EF0123456789";

	/* Same UUID in two spellings: two users, two alarms, each echoed as it came. */
	apply1(f, lo, up, STATUS_WARNING, "2021-08-17T12:00:00Z");
	apply1(f, lo, lo, STATUS_CRITICAL, "2021-08-17T12:00:00Z");
	apply1(f, up, up, STATUS_CRITICAL, "2021-08-17T12:00:00Z");
	assert_stats(f->s, 2, 3, 0);
	assert_string_equal(take_json(f, lo), DIGEST("a1b2c3d4-e5f6-4789-abcd-ef0123456789",
	    ITEM("A1B2C3D4-E5F6-4789-ABCD-EF0123456789", "WARNING", "2021-08-17T12:00:00Z") ","
	    ITEM("a1b2c3d4-e5f6-4789-abcd-ef0123456789", "CRITICAL", "2021-08-17T12:00:00Z")));
	assert_string_equal(take_json(f, up), DIGEST("A1B2C3D4-E5F6-4789-ABCD-EF0123456789",
	    ITEM("A1B2C3D4-E5F6-4789-ABCD-EF0123456789", "CRITICAL", "2021-08-17T12:00:00Z")));
}

/* ---- moving users between stores ---------------------------------------------------- */

struct move {
	struct store *dst;
	int calls;
};

static int
move_user(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	struct move *m = arg;

	m->calls++;
	return store_merge_user(m->dst, user, user_len, rec, rec_len);
}

/* A snapshot of all records, to prove a repeated merge writes nothing new. */
struct snap {
	struct buf b;
};

static int
snap_user(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	struct snap *s = arg;

	assert_int_equal(buf_append(&s->b, &user_len, sizeof(user_len)), 0);
	assert_int_equal(buf_append(&s->b, user, user_len), 0);
	assert_int_equal(buf_append(&s->b, &rec_len, sizeof(rec_len)), 0);
	assert_int_equal(buf_append(&s->b, rec, rec_len), 0);
	return 0;
}

static void
merge_all(struct store *src, struct store *dst)
{
	struct move m = { dst, 0 };

	assert_int_equal(store_begin(dst), 0);
	assert_int_equal(store_foreach_user(src, move_user, &m), 0);
	assert_int_equal(store_commit(dst), 0);
}

static void
merge_snap(struct store *dst, const struct snap *s)
{
	size_t off = 0, ulen, rlen;

	assert_int_equal(store_begin(dst), 0);
	while (off < s->b.len) {
		const char *user;

		memcpy(&ulen, s->b.data + off, sizeof(ulen));
		user = (const char *)s->b.data + off + sizeof(ulen);
		off += sizeof(ulen) + ulen;
		memcpy(&rlen, s->b.data + off, sizeof(rlen));
		off += sizeof(rlen);
		assert_int_equal(store_merge_user(dst, user, ulen, s->b.data + off, rlen), 0);
		off += rlen;
	}
	assert_int_equal(store_commit(dst), 0);
}

static void
test_merge(void **state)
{
	struct fx *f = *state;
	char dir2[160];
	struct store *b;
	struct snap s1 = { { 0 } }, s2 = { { 0 } };
	struct store_stats st1, st2;

	snprintf(dir2, sizeof(dir2), "%s/state/w1", f->root);
	b = open_at(dir2);

	/* Source (f->s). */
	apply1(f, "u1", "x", STATUS_WARNING, "2021-08-17T12:00:00Z");    /* newer than b's */
	apply1(f, "u1", "y", STATUS_WARNING, "2021-08-17T12:00:00Z");    /* older than b's */
	apply1(f, "u1", "z", STATUS_CLEARED, "2021-08-17T12:00:00Z");    /* tombstone, only here */
	apply1(f, "u1", "t", STATUS_CRITICAL, "2021-08-17T15:00:00+03:00"); /* tie, more severe */
	apply1(f, "u2", "a", STATUS_CRITICAL, "2021-08-17T12:00:00Z");
	assert_string_equal(take_json(f, "u2"), DIGEST("u2", ITEM("a", "CRITICAL", "2021-08-17T12:00:00Z")));
	/* Destination (b). */
	assert_int_equal(store_begin(b), 0);
	apply_n(b, "u1", 2, "x", 1, STATUS_CRITICAL, "2021-08-17T11:00:00Z", f->now_ms);
	apply_n(b, "u1", 2, "y", 1, STATUS_CLEARED, "2021-08-17T13:00:00Z", f->now_ms);
	apply_n(b, "u1", 2, "t", 1, STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms);
	apply_n(b, "u1", 2, "w", 1, STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms);
	apply_n(b, "u3", 2, "q", 1, STATUS_WARNING, "2021-08-17T12:00:00Z", f->now_ms);
	assert_int_equal(store_commit(b), 0);

	merge_all(f->s, b);
	assert_stats(b, 3, 7, 2);   /* u1: x y z t w, u2: a, u3: q; tombstones z, y */
	assert_int_equal(store_foreach_user(b, snap_user, &s1), 0);
	store_get_stats(b, &st1);

	/* Redoing an interrupted move changes nothing, byte for byte. */
	merge_all(f->s, b);
	assert_int_equal(store_foreach_user(b, snap_user, &s2), 0);
	store_get_stats(b, &st2);
	assert_int_equal(s1.b.len, s2.b.len);
	assert_memory_equal(s1.b.data, s2.b.data, s1.b.len);
	assert_memory_equal(&st1, &st2, sizeof(st1));
	/* So does merging every record into the store that already holds it. */
	merge_snap(b, &s1);
	buf_reset(&s2.b);
	assert_int_equal(store_foreach_user(b, snap_user, &s2), 0);
	assert_memory_equal(s1.b.data, s2.b.data, s1.b.len);

	/* Then the source lets go of the users it moved. */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_delete_user(f->s, "u1", 2), 0);
	assert_int_equal(store_delete_user(f->s, "u2", 2), 0);
	assert_int_equal(store_delete_user(f->s, "nobody", 6), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_stats(f->s, 0, 0, 0);

	store_close(f->s);
	f->s = b;   /* teardown closes it; the helpers below read it */
	assert_string_equal(take_json(f, "u1"), DIGEST("u1",
	    ITEM("t", "CRITICAL", "2021-08-17T15:00:00+03:00") ","
	    ITEM("w", "WARNING", "2021-08-17T12:00:00Z") ","
	    ITEM("x", "WARNING", "2021-08-17T12:00:00Z")));
	/* Delivered marks move with the alarm. */
	assert_string_equal(take_json(f, "u2"), DIGEST("u2", ""));
	assert_string_equal(take_json(f, "u3"), DIGEST("u3", ITEM("q", "WARNING", "2021-08-17T12:00:00Z")));
	/* The stale update the moved tombstone must reject. */
	assert_int_equal(apply1(f, "u1", "z", STATUS_WARNING, "2021-08-17T11:00:00Z"), STATE_STALE);
	strcpy(f->dir, dir2);
	reopen(f);
	assert_stats(f->s, 3, 7, 2);
	buf_free(&s1.b);
	buf_free(&s2.b);
}

static int
stop_after_one(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	int *calls = arg;

	(void)user;
	(void)user_len;
	(void)rec;
	(void)rec_len;
	return ++*calls == 1 ? 7 : 0;
}

static void
test_txn_misuse(void **state)
{
	struct fx *f = *state;
	struct alarm_msg m = { MSG_STATUS_CHANGED, "u", 1, "a", 1, STATUS_WARNING,
	    ts("2021-08-17T12:00:00Z") };
	enum state_result r;
	int calls = 0;
	struct capture cap;
	struct buf log = { 0 };

	capture_start(&cap, f->root);
	assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), -1);
	assert_int_equal(digest_take(f->s, "u", 1, 0, &f->d, &f->replayed), -1);
	assert_int_equal(store_merge_user(f->s, "u", 1, "\x01\x00", 2), -1);
	assert_int_equal(store_delete_user(f->s, "u", 1), -1);
	assert_int_equal(store_commit(f->s), -1);
	store_abort(f->s);

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_begin(f->s), -1);
	assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), 0);
	assert_int_equal(store_foreach_user(f->s, stop_after_one, &calls), -1);
	assert_int_equal(calls, 0);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, ": no write transaction open"), 5);
	assert_int_equal(count_lines_with(&log, "store_begin: a write transaction is already open"), 1);
	assert_int_equal(count_lines_with(&log, "store_foreach_user: a write transaction is open"), 1);
	buf_free(&log);
	m.user = "v";
	assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), 0);
	assert_int_equal(store_commit(f->s), 0);
	/* A non-zero return from the callback stops the walk and is returned. */
	assert_int_equal(store_foreach_user(f->s, stop_after_one, &calls), 7);
	assert_int_equal(calls, 1);
}

/* An LMDB failure is reported with the call, the directory and LMDB's reason; abort recovers. */
static void
test_map_full(void **state)
{
	struct fx *f = *state;
	char dir2[160], alarm[32], err[256];
	struct store *small;
	struct capture cap;
	struct buf log = { 0 };
	struct store_stats before, after;
	int rc = 0, i;

	snprintf(dir2, sizeof(dir2), "%s/small", f->root);
	small = store_open(dir2, 64 * 1024, err, sizeof(err));
	if (small == NULL)
		fail_msg("%s", err);
	assert_int_equal(store_begin(small), 0);
	assert_int_equal(apply_n(small, "u", 1, "first", 5, STATUS_WARNING, "2021-08-17T12:00:00Z",
	    f->now_ms), STATE_NEW);
	assert_int_equal(store_commit(small), 0);
	store_get_stats(small, &before);

	capture_start(&cap, f->root);
	assert_int_equal(store_begin(small), 0);
	for (i = 0; i < 100000 && rc == 0; i++) {
		struct alarm_msg m = { MSG_STATUS_CHANGED, alarm, 0, alarm, 0, STATUS_WARNING,
		    ts("2021-08-17T12:00:00Z") };
		enum state_result r;

		m.user_len = m.alarm_len = (size_t)snprintf(alarm, sizeof(alarm), "user-%d", i);
		rc = store_apply(small, &m, f->now_ms, RETENTION, &r);
	}
	store_abort(small);
	capture_stop(&cap, &log);
	assert_int_equal(rc, -1);
	if (count_lines_with(&log, "mdb_cursor_put: ") != 1 || strstr((char *)log.data, dir2) == NULL ||
	    strstr((char *)log.data, "MDB_MAP_FULL") == NULL)
		fail_msg("unexpected log: %s", (const char *)log.data);
	store_get_stats(small, &after);
	assert_memory_equal(&before, &after, sizeof(before));
	/* The store is still usable after the abort. */
	assert_int_equal(store_begin(small), 0);
	assert_int_equal(apply_n(small, "u", 1, "first", 5, STATUS_CRITICAL, "2021-08-17T12:00:01Z",
	    f->now_ms), STATE_CHANGED);
	assert_int_equal(store_commit(small), 0);
	assert_stats(small, 1, 1, 0);
	buf_free(&log);
	store_close(small);
}

static void
test_open_errors(void **state)
{
	struct fx *f = *state;
	char path[160], err[256];
	int fd;

	snprintf(path, sizeof(path), "%s/a-file", f->root);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	err[0] = '\0';
	assert_null(store_open(path, MAP_SIZE, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	err[0] = '\0';
	assert_null(store_open(f->dir, 0, err, sizeof(err)));
	assert_true(err[0] != '\0');
}

/* ---- corruption -------------------------------------------------------------------- */


/* A raw LMDB write transaction on the store in dir, behind the store's back. */
static MDB_txn *
raw_begin(const char *dir, MDB_env **env)
{
	MDB_txn *txn;

	assert_int_equal(mdb_env_create(env), 0);
	assert_int_equal(mdb_env_set_mapsize(*env, MAP_SIZE), 0);
	assert_int_equal(mdb_env_set_maxdbs(*env, 3), 0);
	assert_int_equal(mdb_env_open(*env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(*env, NULL, 0, &txn), 0);
	return txn;
}

/*
 * Replace the cell of `key` that starts with `prefix` (the head: "\0") by val, with raw LMDB
 * behind the store's back.  val gets a chunk of its own (db.h), the cells around it keep
 * theirs: a corrupt cell is one cell, as a bad write or a flipped bit would leave it.
 */
static void
raw_replace(const char *dir, const char *key, size_t klen, const char *prefix, size_t plen,
    const void *val, size_t len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k = { klen, (void *)key }, v;
	uint8_t chunk[512];
	size_t off = 0, n = 0, size = 0;
	int rc;

	txn = raw_begin(dir, &env);
	assert_int_equal(mdb_dbi_open(txn, "cells", MDB_DUPSORT, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	for (MDB_cursor_op op = MDB_SET_KEY; size == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0;
	    op = MDB_NEXT_DUP) {
		for (off = 0; off < v.mv_size; off += n) {
			n = cell_len((const uint8_t *)v.mv_data + off, v.mv_size - off);
			if (n == 0)
				n = v.mv_size - off;
			if (n >= plen && memcmp((const uint8_t *)v.mv_data + off, prefix, plen) == 0) {
				size = v.mv_size;
				memcpy(chunk, v.mv_data, size);
				break;
			}
		}
	}
	assert_true(size > 0);
	assert_int_equal(mdb_cursor_del(cur, 0), 0);
	mdb_cursor_close(cur);
	k = (MDB_val){ klen, (void *)key };
	v = (MDB_val){ off, chunk };
	assert_true(off == 0 || mdb_put(txn, dbi, &k, &v, 0) == 0);
	v = (MDB_val){ len, (void *)val };
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	v = (MDB_val){ size - off - n, chunk + off + n };
	assert_true(v.mv_size == 0 || mdb_put(txn, dbi, &k, &v, 0) == 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* bob's key: raw kind, "bob". */
#define BOB "\x00" "bob", 4

static void
test_corrupt_record(void **state)
{
	struct fx *f = *state;
	/* Cells that claim to be alarm "a" (raw, length 1): found by its lookup, refused by decode. */
	static const struct {
		const char *bytes;
		size_t len;
	} garbage[] = {
		{ "\x01\x00\x01" "a", 4 },                      /* no time */
		{ "\x01\x00\x01" "a\x03", 5 },                  /* status 3 */
		{ "\x01\x00\x01" "a\x88", 5 },                  /* extension cut short */
		{ "\x01\x00\x01" "a\x08\x00", 6 },              /* empty extension */
		{ "\x01\x00\x01" "a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14 },  /* nsec too big */
		{ "\x01\x00\x01" "a\xf1\xff\xff\xff\xff\xff\xff\xff\x7f", 13 },  /* sec out of range */
		{ "\x01\x00\x01" "a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 14 },  /* overlong varint */
	};
	struct capture cap;
	struct buf log = { 0 };

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		capture_start(&cap, f->root);
		assert_int_equal(store_begin(f->s), 0);
		assert_int_equal(store_delete_user(f->s, "bob", 3), 0);
		assert_int_equal(store_delete_user(f->s, "alice", 5), 0);
		assert_int_equal(store_commit(f->s), 0);
		apply1(f, "bob", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
		apply1(f, "bob", "b", STATUS_CLEARED, "2021-08-17T12:00:00Z");
		apply1(f, "alice", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
		store_close(f->s);
		raw_replace(f->dir, BOB, "\x01\x00\x01" "a", 4, garbage[i].bytes, garbage[i].len);
		f->s = open_at(f->dir);   /* heads only: the cell is not read yet */
		assert_stats(f->s, 2, 3, 1);
		/* A write that meets it sets it aside and counts bob again; the update is news. */
		assert_int_equal(apply1(f, "bob", "a", STATUS_CRITICAL, "2021-08-17T11:00:00Z"), STATE_NEW);
		assert_stats(f->s, 2, 3, 1);
		/* Other users are untouched by one bad cell. */
		assert_string_equal(take_json(f, "alice"), DIGEST("alice",
		    ITEM("a", "WARNING", "2021-08-17T12:00:00Z")));
		assert_string_equal(take_json(f, "bob"), DIGEST("bob",
		    ITEM("a", "CRITICAL", "2021-08-17T11:00:00Z")));
		capture_stop(&cap, &log);
		if (count_lines_with(&log, "corrupt record for user \"bob\": ") != 1 ||
		    count_lines_with(&log, "corrupt record saved to ") != 1)
			fail_msg("garbage %zu: want 1 line naming bob and 1 quarantine line, got:\n%s", i,
			    (const char *)log.data);
	}

	/* A corrupt head: counted as a user with no alarms at open, counted again at the first write. */
	capture_start(&cap, f->root);
	store_close(f->s);
	raw_replace(f->dir, BOB, "\x00", 1, "\x00\xff", 2);
	f->s = open_at(f->dir);
	assert_stats(f->s, 2, 1, 0);
	assert_int_equal(apply1(f, "bob", "b", STATUS_CLEARED, "2021-08-17T12:00:00Z"), STATE_DUPLICATE);
	assert_stats(f->s, 2, 3, 1);
	assert_int_equal(apply1(f, "bob", "a", STATUS_WARNING, "2021-08-17T13:00:00Z"), STATE_CHANGED);
	assert_string_equal(take_json(f, "bob"), DIGEST("bob", ITEM("a", "WARNING", "2021-08-17T13:00:00Z")));
	reopen(f);
	assert_stats(f->s, 2, 3, 1);
	/* A cell no lookup finds (unknown tag): the digest's walk meets it. */
	store_close(f->s);
	raw_replace(f->dir, BOB, "\x01\x00\x01" "b", 4, "\x07junk", 5);
	f->s = open_at(f->dir);
	assert_int_equal(apply1(f, "bob", "c", STATUS_WARNING, "2021-08-17T13:00:00Z"), STATE_NEW);
	assert_string_equal(take_json(f, "bob"), DIGEST("bob", ITEM("c", "WARNING", "2021-08-17T13:00:00Z")));
	assert_stats(f->s, 2, 3, 0);
	reopen(f);
	assert_stats(f->s, 2, 3, 0);
	capture_stop(&cap, &log);
	if (count_lines_with(&log, "corrupt record for user \"bob\": ") != 3 ||
	    count_lines_with(&log, "corrupt record saved to ") != 2)
		fail_msg("head and tag: want 3 lines naming bob, 2 quarantine lines, got:\n%s",
		    (const char *)log.data);
	buf_free(&log);
}

static int
grab_record(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	struct buf *b = arg;

	(void)user;
	(void)user_len;
	buf_reset(b);
	assert_int_equal(buf_append(b, rec, rec_len), 0);
	return 1;
}

/* Merge rec cut to `len` bytes with byte `pos` xor'ed with `flip`. */
static int
try_merge(struct store *s, struct buf *bad, const struct buf *rec, size_t len, size_t pos, uint8_t flip)
{
	int rc;

	buf_reset(bad);
	assert_int_equal(buf_append(bad, rec->data, len), 0);
	if (pos < len)
		bad->data[pos] ^= flip;
	assert_int_equal(store_begin(s), 0);
	rc = store_merge_user(s, "u", 1, bad->data, bad->len);
	store_abort(s);
	return rc;
}

/* Every truncation and every bit flip of a real record: an answer, never a crash. */
static void
test_decode_fuzz(void **state)
{
	struct fx *f = *state;
	struct buf rec = { 0 }, bad = { 0 };
	char dir2[160];
	struct store *scratch;
	struct capture cap;
	int ok = 0, refused = 0;

	snprintf(dir2, sizeof(dir2), "%s/scratch", f->root);
	scratch = open_at(dir2);
	apply1(f, "u", "6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e", STATUS_WARNING, "2021-08-17T15:33:59.1+03:00");
	apply1(f, "u", "6F1C8A3E-9C1E-4B8E-8D4A-2F0E5B6C7D8E", STATUS_CRITICAL, "2021-08-17T12:00:00Z");
	apply1(f, "u", "raw-id", STATUS_CLEARED, "1970-01-01T00:00:00.000000001-23:59");
	apply1(f, "u", "zz", STATUS_WARNING, "9999-12-31T23:59:59.999999999Z");
	assert_int_equal(store_foreach_user(f->s, grab_record, &rec), 1);

	/* The refusals are logged; keep hundreds of error lines out of the test output. */
	capture_start(&cap, f->root);
	for (size_t cut = 0; cut < rec.len; cut++) {
		if (try_merge(scratch, &bad, &rec, cut, 0, 0) == 0)
			ok++;
		else
			refused++;
	}
	for (size_t pos = 0; pos < rec.len; pos++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			if (try_merge(scratch, &bad, &rec, rec.len, pos, (uint8_t)(1u << bit)) == 0)
				ok++;
			else
				refused++;
		}
	}
	capture_stop(&cap, &bad);
	assert_int_equal(count_lines_with(&bad, "corrupt record for user \"u\": "), refused);
	/* Most flips land in ID bytes and give a valid, different record. */
	print_message("decode fuzz: %zu-byte record, %d accepted, %d refused\n", rec.len, ok, refused);
	assert_true(refused >= (int)rec.len);   /* at least every truncation */
	buf_free(&rec);
	buf_free(&bad);
	store_close(scratch);
}

/* ---- counters and digests against a reference ------------------------------------- */

#define M_USERS 6
#define M_ALARMS 5

/* The SPEC's state of every (user, alarm), from spec_ref.h: never from state.c. */
struct model {
	struct ref_alarm a[M_USERS][M_ALARMS];
};

/* store.h: an update of an alarm whose tombstone expired finds it gone. */
static void
model_expire(struct model *m, int u, int a, int64_t now_ms, int64_t retention)
{
	if (ref_expired(&m->a[u][a], now_ms, retention))
		m->a[u][a].exists = false;
}

static void
model_stats(const struct model *m, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int u = 0; u < M_USERS; u++) {
		bool any = false;

		for (int a = 0; a < M_ALARMS; a++) {
			if (!m->a[u][a].exists)
				continue;
			any = true;
			out->alarms++;
			out->tombstones += m->a[u][a].status == STATUS_CLEARED;
		}
		out->users += any;
	}
}

static void
check_model(struct store *s, const struct model *m)
{
	struct store_stats want;

	model_stats(m, &want);
	assert_stats(s, want.users, want.alarms, want.tombstones);
}

/* SPEC order between alarms x and y of user u: instant, then AlarmID "a<x>" bytewise. */
static int
model_cmp(const struct model *m, int u, int x, int y)
{
	char xs[8], ys[8];

	snprintf(xs, sizeof(xs), "a%d", x);
	snprintf(ys, sizeof(ys), "a%d", y);
	return ref_digest_cmp(ref_ns(&m->a[u][x].at), xs, strlen(xs), ref_ns(&m->a[u][y].at), ys,
	    strlen(ys));
}

/* The digest user u must get now: its pending alarms in the SPEC's order, then delivered. */
static size_t
model_take(struct model *m, int u, int order[M_ALARMS])
{
	size_t n = 0, j;

	for (int a = 0; a < M_ALARMS; a++) {
		if (!ref_pending(&m->a[u][a]))
			continue;
		m->a[u][a].delivered = true;
		for (j = n; j > 0 && model_cmp(m, u, a, order[j - 1]) < 0; j--)
			order[j] = order[j - 1];
		order[j] = a;
		n++;
	}
	return n;
}

static void
check_digest(const struct digest *d, const struct model *m, int u, const int order[M_ALARMS],
    size_t n, int step)
{
	if (d->n != n)
		fail_msg("step %d: u%d's digest holds %zu alarms, want %zu", step, u, d->n, n);
	for (size_t k = 0; k < n; k++) {
		const struct digest_item *it = &d->items[k];
		const struct ref_alarm *r = &m->a[u][order[k]];
		char want[8];

		snprintf(want, sizeof(want), "a%d", order[k]);
		if (it->alarm_len != strlen(want) ||
		    memcmp(d->ids.data + it->alarm_off, want, it->alarm_len) != 0)
			fail_msg("step %d: u%d's digest item %zu is %.*s, want %s", step, u, k,
			    (int)it->alarm_len, (const char *)d->ids.data + it->alarm_off, want);
		assert_int_equal(it->status, r->status);
		assert_int_equal(it->changed_at.sec, r->at.sec);
		assert_int_equal(it->changed_at.nsec, r->at.nsec);
		assert_int_equal(it->changed_at.off_min, r->at.off_min);
	}
}

/*
 * Random transactions: every result, every digest and the incremental
 * counters must match an independent reference of the SPEC, and a fresh scan.
 */
static void
test_counters_model(void **state)
{
	struct fx *f = *state;
	struct model cur = { 0 }, committed = { 0 };
	unsigned seed = 42;
	int64_t base = 1627776000;   /* 2021-08-01T00:00:00Z */
	int64_t retention = 15000;
	int seen[STATE_LESS_SEVERE + 1] = { 0 }, items = 0, ties = 0;

	for (int step = 0; step < 300; step++) {
		int ops = 1 + (int)((seed >> 16) % 5);
		int64_t now_ms = (base + step / 2) * 1000;

		assert_int_equal(store_begin(f->s), 0);
		for (int i = 0; i < ops; i++) {
			char user[8], alarm[8];
			struct rfc3339_time t;
			struct alarm_msg msg;
			enum state_result got, want;
			int u, a, what;

			seed = seed * 1103515245u + 12345u;
			u = (int)((seed >> 8) % M_USERS);
			a = (int)((seed >> 12) % M_ALARMS);
			what = (int)((seed >> 20) % 20);
			snprintf(user, sizeof(user), "u%d", u);
			snprintf(alarm, sizeof(alarm), "a%d", a);
			if (what == 0) {
				assert_int_equal(store_delete_user(f->s, user, strlen(user)), 0);
				memset(cur.a[u], 0, sizeof(cur.a[u]));
				continue;
			}
			if (what < 4) {
				int order[M_ALARMS];
				size_t n = model_take(&cur, u, order);

				assert_int_equal(digest_take(f->s, user, strlen(user), 0, &f->d, &f->replayed), 0);
				check_digest(&f->d, &cur, u, order, n, step);
				items += (int)n;
				for (size_t k = 1; k < n; k++)
					ties += ref_ns(&cur.a[u][order[k - 1]].at) ==
					    ref_ns(&cur.a[u][order[k]].at);
				continue;
			}
			t.sec = base + step / 2 + (int64_t)((seed >> 4) % 20) - 10;
			t.nsec = (int32_t)((seed >> 24) % 2) * 500000000;
			t.off_min = (int16_t)(((seed >> 6) % 3) * 60);
			msg = (struct alarm_msg){ MSG_STATUS_CHANGED, user, strlen(user), alarm, strlen(alarm),
			    (enum alarm_status)((seed >> 26) % 3), t };
			assert_int_equal(store_apply(f->s, &msg, now_ms, retention, &got), 0);
			model_expire(&cur, u, a, now_ms, retention);
			want = ref_apply(&cur.a[u][a], msg.status, &t);
			if (got != want)
				fail_msg("step %d: %s %s sec=%lld nsec=%d off=%d %s: got %s want %s", step,
				    user, alarm, (long long)t.sec, (int)t.nsec, (int)t.off_min,
				    alarm_status_name(msg.status), state_result_name(got),
				    state_result_name(want));
			seen[got]++;
		}
		if ((seed >> 28) % 5 == 0) {
			store_abort(f->s);
			cur = committed;
		} else {
			assert_int_equal(store_commit(f->s), 0);
			committed = cur;
		}
		check_model(f->s, &committed);
		if (step % 25 == 24) {
			struct store_stats before, after;

			store_get_stats(f->s, &before);
			reopen(f);
			store_get_stats(f->s, &after);
			before.written = after.written = 0;   /* a count of this open's work */
			assert_memory_equal(&before, &after, sizeof(before));
		}
	}
	/* The walk must reach every rule, and digests whose order rests on the AlarmID. */
	print_message("counters model: new %d, changed %d, refreshed %d, stale %d, duplicate %d, "
	    "less severe %d; %d digest items, %d instant ties\n", seen[STATE_NEW],
	    seen[STATE_CHANGED], seen[STATE_REFRESHED], seen[STATE_STALE], seen[STATE_DUPLICATE],
	    seen[STATE_LESS_SEVERE], items, ties);
	for (int r = STATE_NEW; r <= STATE_LESS_SEVERE; r++)
		if (seen[r] == 0)
			fail_msg("no update was classified %s", state_result_name((enum state_result)r));
	assert_true(ties > 0);
}

/* ---- size ---------------------------------------------------------------------------- */

static int
sum_records(void *arg, const char *user, size_t user_len, const void *rec, size_t rec_len)
{
	uint64_t *sum = arg;

	(void)user;
	(void)rec;
	sum[0] += user_len;
	sum[1] += rec_len;
	return 0;
}

static void
test_bytes_per_alarm(void **state)
{
	enum { USERS = 10000, PER_USER = 10, BATCH = 1000 };
	struct fx *f = *state;
	struct store_stats st;
	uint64_t sums[2] = { 0, 0 };
	char path[200];
	struct stat sb;
	int64_t base = 1629201600;   /* 2021-08-17T12:00:00Z */

	for (int u = 0; u < USERS; u++) {
		char user[UUID_STR_LEN];
		uuid_t id;

		if (u % BATCH == 0)
			assert_int_equal(store_begin(f->s), 0);
		uuid_generate_random(id);
		uuid_unparse_lower(id, user);
		for (int a = 0; a < PER_USER; a++) {
			char alarm[UUID_STR_LEN];
			struct alarm_msg m;
			enum state_result r;

			uuid_generate_random(id);
			uuid_unparse_lower(id, alarm);
			m = (struct alarm_msg){ MSG_STATUS_CHANGED, user, 36, alarm, 36,
			    (enum alarm_status)(1 + (a & 1)), { base + u + a, 0, 0 } };
			assert_int_equal(store_apply(f->s, &m, f->now_ms, RETENTION, &r), 0);
			assert_int_equal(r, STATE_NEW);
		}
		if (u % BATCH == BATCH - 1)
			assert_int_equal(store_commit(f->s), 0);
	}
	store_get_stats(f->s, &st);
	assert_int_equal(st.users, USERS);
	assert_int_equal(st.alarms, USERS * PER_USER);
	assert_int_equal(store_foreach_user(f->s, sum_records, sums), 0);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	print_message("store size, %d users x %d UUID alarms: LMDB pages in use %.1f bytes/alarm "
	    "(%llu bytes); record values %.1f bytes/alarm; data.mdb %.1f bytes/alarm\n",
	    USERS, PER_USER, (double)st.bytes / (double)st.alarms, (unsigned long long)st.bytes,
	    (double)sums[1] / (double)st.alarms, (double)sb.st_size / (double)st.alarms);
	assert_true(sums[1] / st.alarms < 32);
	assert_true(st.bytes / st.alarms < 64);
	reopen(f);
	assert_stats(f->s, USERS, USERS * PER_USER, 0);
}


/* ---- cost per update ------------------------------------------------------------------ */

/* Bytes of cells one update of an existing alarm writes, for a user holding n alarms. */
static uint64_t
bytes_per_update(struct fx *f, const char *user, int n)
{
	struct store_stats a, b;
	char alarm[32];

	assert_int_equal(store_begin(f->s), 0);
	for (int i = 0; i < n; i++) {
		size_t len = (size_t)snprintf(alarm, sizeof(alarm), "alarm-%06d", i);

		assert_int_equal(apply_n(f->s, user, strlen(user), alarm, len, STATUS_WARNING,
		    "2021-08-17T12:00:00Z", f->now_ms), STATE_NEW);
	}
	assert_int_equal(store_commit(f->s), 0);
	store_get_stats(f->s, &a);
	/* A status change (head and cell) and a refresh (cell only), in the middle of the user. */
	snprintf(alarm, sizeof(alarm), "alarm-%06d", n / 2);
	assert_int_equal(apply1(f, user, alarm, STATUS_CRITICAL, "2021-08-17T12:00:01Z"), STATE_CHANGED);
	assert_int_equal(apply1(f, user, alarm, STATUS_CRITICAL, "2021-08-17T12:00:02Z"), STATE_REFRESHED);
	store_get_stats(f->s, &b);
	return b.written - a.written;
}

/* An update touches one cell and the head, however many alarms the user holds. */
static void
test_update_cost_flat(void **state)
{
	struct fx *f = *state;
	uint64_t small = bytes_per_update(f, "small", 10);
	uint64_t big = bytes_per_update(f, "big", 20000);
	struct store_stats st, st2;

	print_message("cell bytes written by 2 updates: user of 10 alarms %llu, of 20000 alarms %llu\n",
	    (unsigned long long)small, (unsigned long long)big);
	assert_true(small > 0 && small < 64);
	assert_int_equal(small, big);
	/* Once all are delivered, a digest of the one alarm changed since writes its cell and the head. */
	take_json(f, "big");
	assert_int_equal(f->d.n, 20000);
	assert_int_equal(apply1(f, "big", "alarm-000007", STATUS_CRITICAL, "2021-08-17T12:00:03Z"),
	    STATE_CHANGED);
	store_get_stats(f->s, &st);
	assert_string_equal(take_json(f, "big"), DIGEST("big", ITEM("alarm-000007", "CRITICAL",
	    "2021-08-17T12:00:03Z")));
	store_get_stats(f->s, &st2);
	assert_true(st2.written - st.written < 40);
	/* With nothing pending, the head alone answers: nothing written. */
	assert_string_equal(take_json(f, "big"), DIGEST("big", ""));
	store_get_stats(f->s, &st);
	assert_int_equal(st.written, st2.written);
}

/* ---- reading for operators ---------------------------------------------------------------- */

struct listing {
	char text[2048];
	size_t len;
};

static int
list_alarm(void *arg, const struct store_alarm *a)
{
	struct listing *l = arg;
	char ts[RFC3339_MAXLEN + 1];

	rfc3339_format(&a->changed_at, ts, sizeof(ts));
	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%.*s %s %s%s%s;",
	    (int)a->id_len, a->id, alarm_status_name(a->status), ts, a->delivered ? " delivered" : "",
	    a->tombstone ? " tombstone" : "");
	return 0;
}

static const char *
listing(struct store *s, const char *user, uint64_t *last)
{
	static struct listing l;

	l.len = 0;
	l.text[0] = '\0';
	assert_int_equal(store_user_alarms(s, user, strlen(user), list_alarm, &l, last), 0);
	return l.text;
}

static const char *const user_alarms_want =
    "c CRITICAL 2021-08-17T14:00:00+03:00 delivered;"
    "a WARNING 2021-08-17T12:00:00Z delivered;"
    "b CLEARED 2021-08-17T12:00:00Z tombstone;"
    "6F1C8A3E-9C1E-4B8E-8D4A-2F0E5B6C7D8E WARNING 2021-08-17T13:00:00.5Z;";

/* The read-only open, in a child while the parent holds the store open for writing. */
static int
readonly_child(const char *dir)
{
	char err[256];
	struct store *ro = store_open_readonly(dir, err, sizeof(err));
	struct store_stats st;
	uint64_t last = 0;
	int bad = 0;

	if (ro == NULL) {
		fprintf(stderr, "store_open_readonly: %s\n", err);
		return 1;
	}
	store_get_stats(ro, &st);
	bad |= st.users != 2 || st.alarms != 5 || st.tombstones != 1;
	bad |= strcmp(listing(ro, "u", &last), user_alarms_want) != 0 || last != 77;
	bad |= strcmp(listing(ro, "nobody", &last), "") != 0 || last != 0;
	/* Never writes. */
	bad |= store_begin(ro) != -1;
	store_close(ro);
	return bad ? 2 : 0;
}

static void
test_user_alarms_readonly(void **state)
{
	struct fx *f = *state;
	uint64_t last = 1;
	char err[256], path[200];
	struct stat before, after;
	pid_t pid;
	int status;

	apply1(f, "u", "a", STATUS_WARNING, "2021-08-17T12:00:00Z");
	apply1(f, "u", "b", STATUS_CLEARED, "2021-08-17T12:00:00Z");
	apply1(f, "u", "c", STATUS_CRITICAL, "2021-08-17T14:00:00+03:00");
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "u", 1, 77, &f->d, &f->replayed), 0);
	assert_int_equal(store_commit(f->s), 0);
	apply1(f, "u", "6F1C8A3E-9C1E-4B8E-8D4A-2F0E5B6C7D8E", STATUS_WARNING, "2021-08-17T13:00:00.5Z");
	apply1(f, "v", "x", STATUS_WARNING, "2021-08-17T13:00:00Z");
	/* Digest order, tombstones included, through the writer's own handle too. */
	assert_string_equal(listing(f->s, "u", &last), user_alarms_want);
	assert_int_equal(last, 77);

	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &before), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(readonly_child(f->dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(before.st_size, after.st_size);
	assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
	assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	/* The writer goes on while a reader has been there. */
	apply1(f, "v", "y", STATUS_WARNING, "2021-08-17T13:00:00Z");

	/* A directory with no store is refused, and not created. */
	snprintf(path, sizeof(path), "%s/none", f->root);
	assert_null(store_open_readonly(path, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	assert_int_equal(stat(path, &before), -1);
}

/* ---- migration from format 1 --------------------------------------------------------------- */

/* Write a format 1 store: one record per user in the main database, as the old store did. */
static void
old_put(MDB_txn *txn, MDB_dbi dbi, const char *user, struct rec *r)
{
	static const struct rec_keep all = { false, 0, 0 };
	struct rec_counts c;
	struct buf b = { 0 };
	char key[300];
	MDB_val k, v;

	key[0] = 0;   /* ID_RAW */
	memcpy(key + 1, user, strlen(user));
	k = (MDB_val){ 1 + strlen(user), key };
	assert_int_equal(rec_encode(r, &all, &b, &c), 0);
	v = (MDB_val){ b.len, b.data };
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	buf_free(&b);
}

static void
old_store(const char *dir, int users)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	struct rec *r = rec_new();
	enum state_result res;
	struct rfc3339_time t = ts("2021-08-17T12:00:00Z");
	MDB_val k = { 4, "\x00" "bad" }, v = { 3, "\x07xx" };

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_mapsize(env, MAP_SIZE), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	for (int u = 0; u < users; u++) {
		char user[16], alarm[16];

		rec_clear(r);
		t = ts("2021-08-17T12:00:00Z");
		for (int a = 0; a < 3; a++) {
			snprintf(alarm, sizeof(alarm), "a%d", a);
			t.sec++;
			assert_int_equal(rec_apply(r, alarm, strlen(alarm), (enum alarm_status)a, &t, &res), 1);
		}
		assert_int_equal(rec_apply(r, "6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e", 36, STATUS_CRITICAL,
		    &t, &res), 1);
		if (u % 2 == 1)
			rec_set_last_request(r, 1000 + (uint64_t)u);
		snprintf(user, sizeof(user), "user%04d", u);
		old_put(txn, dbi, user, r);
	}
	/* One delivered already, one user with only a request answered. */
	rec_clear(r);
	rec_set_last_request(r, 5);
	old_put(txn, dbi, "asked", r);
	/* A corrupt record: saved aside, its user starts afresh. */
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	rec_free(r);
}

static void
test_migrate_format1(void **state)
{
	struct fx *f = *state;
	enum { USERS = 2500 };
	char dir[200], err[256];
	struct capture cap;
	struct buf log = { 0 };
	uint64_t last;
	struct store *s;

	snprintf(dir, sizeof(dir), "%s/old", f->root);
	old_store(dir, USERS);
	/* A reader cannot migrate: told what to do. */
	assert_null(store_open_readonly(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "store format 1"));
	assert_non_null(strstr(err, dir));

	capture_start(&cap, f->root);
	s = open_at(dir);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, "migrating 2502 users from store format 1"), 1);
	assert_int_equal(count_lines_with(&log, "migrated 1000 of 2502 users"), 1);
	assert_int_equal(count_lines_with(&log, "migrated 2000 of 2502 users"), 1);
	assert_int_equal(count_lines_with(&log, "migrated 2502 of 2502 users"), 1);
	assert_int_equal(count_lines_with(&log, "migration from store format 1 done"), 1);
	assert_int_equal(count_lines_with(&log, "corrupt record for user \"bad\""), 1);
	assert_int_equal(count_lines_with(&log, "corrupt record saved to "), 1);
	/* Users with alarms, and "asked"; "bad" started afresh. */
	assert_stats(s, USERS + 1, USERS * 4, USERS);
	store_close(s);
	f->s = (store_close(f->s), open_at(dir));
	strcpy(f->dir, dir);
	assert_stats(f->s, USERS + 1, USERS * 4, USERS);
	/* Every alarm, state and the answered request came across. */
	assert_string_equal(listing(f->s, "user0007", &last),
	    "a0 CLEARED 2021-08-17T12:00:01Z tombstone;a1 WARNING 2021-08-17T12:00:02Z;"
	    "6f1c8a3e-9c1e-4b8e-8d4a-2f0e5b6c7d8e CRITICAL 2021-08-17T12:00:03Z;"
	    "a2 CRITICAL 2021-08-17T12:00:03Z;");
	assert_int_equal(last, 1007);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(digest_take(f->s, "user0007", 8, 1007, &f->d, &f->replayed), 0);
	assert_true(f->replayed);
	assert_int_equal(digest_take(f->s, "asked", 5, 5, &f->d, &f->replayed), 0);
	assert_true(f->replayed);
	assert_int_equal(digest_take(f->s, "user0008", 8, 0, &f->d, &f->replayed), 0);
	assert_int_equal(f->d.n, 3);
	assert_int_equal(store_commit(f->s), 0);
	/* The old tombstone still rejects a stale raise. */
	assert_int_equal(apply1(f, "user0001", "a0", STATUS_WARNING, "2021-08-17T12:00:00Z"), STATE_STALE);
	/* A second open finds nothing left to migrate; a reader is welcome now. */
	capture_start(&cap, f->root);
	reopen(f);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, "migrat"), 0);
	store_close(f->s);
	f->s = store_open_readonly(dir, err, sizeof(err));
	if (f->s == NULL)
		fail_msg("%s", err);
	store_close(f->s);
	f->s = open_at(dir);
	buf_free(&log);
}

/* ---- migration from format 2 --------------------------------------------------------------- */

/*
 * Turn a format 3 store back into format 2, with raw LMDB: every cell of
 * every chunk a duplicate of its own in "alarms", and no "cells".
 */
static void
to_format2(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi main_dbi, cells, alarms;
	MDB_cursor *cur;
	MDB_val k, v, mk = { 6, "alarms" };
	struct buf keys = { 0 }, vals = { 0 };
	size_t ko = 0, vo = 0;
	int rc;

	txn = raw_begin(dir, &env);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main_dbi), 0);
	assert_int_equal(mdb_dbi_open(txn, "cells", MDB_DUPSORT, &cells), 0);
	assert_int_equal(mdb_cursor_open(txn, cells, &cur), 0);
	/* Each cell as (key length, key, cell length, cell). */
	for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
		for (size_t o = 0, n; o < v.mv_size; o += n) {
			uint16_t kl = (uint16_t)k.mv_size, vl;

			n = cell_len((const uint8_t *)v.mv_data + o, v.mv_size - o);
			assert_true(n > 0);
			vl = (uint16_t)n;
			assert_int_equal(buf_append(&keys, &kl, 2), 0);
			assert_int_equal(buf_append(&keys, k.mv_data, k.mv_size), 0);
			assert_int_equal(buf_append(&vals, &vl, 2), 0);
			assert_int_equal(buf_append(&vals, (const uint8_t *)v.mv_data + o, n), 0);
		}
	}
	assert_int_equal(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	assert_int_equal(mdb_drop(txn, cells, 1), 0);
	assert_int_equal(mdb_del(txn, main_dbi, &mk, NULL), 0);
	assert_int_equal(mdb_dbi_open(txn, "alarms", MDB_DUPSORT | MDB_CREATE, &alarms), 0);
	while (ko < keys.len) {
		uint16_t kl, vl;

		memcpy(&kl, keys.data + ko, 2);
		memcpy(&vl, vals.data + vo, 2);
		k = (MDB_val){ kl, keys.data + ko + 2 };
		v = (MDB_val){ vl, vals.data + vo + 2 };
		assert_int_equal(mdb_put(txn, alarms, &k, &v, 0), 0);
		ko += 2 + kl;
		vo += 2 + vl;
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	buf_free(&keys);
	buf_free(&vals);
}

/* The pending alarms of a user of six or seven (a0..a6, statuses cleared, warning, critical in turn). */
#define MIG_PENDING ITEM("a1", "WARNING", "2021-08-17T12:00:00Z") "," \
	ITEM("a2", "CRITICAL", "2021-08-17T12:00:00Z") "," ITEM("a4", "WARNING", "2021-08-17T12:00:00Z") \
	"," ITEM("a5", "CRITICAL", "2021-08-17T12:00:00Z")

static void
test_migrate_format2(void **state)
{
	struct fx *f = *state;
	enum { USERS = 2100 };
	struct store_stats before, after;
	struct capture cap;
	struct buf log = { 0 };
	char user[32], err[256];

	for (int u = 0; u < USERS; u++) {
		snprintf(user, sizeof(user), "user%04d", u);
		for (int a = 0; a < 1 + u % 7; a++) {
			char alarm[8];

			snprintf(alarm, sizeof(alarm), "a%d", a);
			apply1(f, user, alarm, (enum alarm_status)(a % 3), "2021-08-17T12:00:00Z");
		}
	}
	assert_string_equal(take_json(f, "user0005"), DIGEST("user0005", MIG_PENDING));
	store_get_stats(f->s, &before);
	store_close(f->s);
	to_format2(f->dir);

	/* A reader reads format 2 as it is. */
	f->s = store_open_readonly(f->dir, err, sizeof(err));
	if (f->s == NULL)
		fail_msg("%s", err);
	store_get_stats(f->s, &after);
	assert_int_equal(after.users, before.users);
	assert_int_equal(after.alarms, before.alarms);
	store_close(f->s);

	capture_start(&cap, f->root);
	f->s = open_at(f->dir);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, "migrating from store format 2"), 1);
	assert_int_equal(count_lines_with(&log, "migration to store format 3 done: 2100 users"), 1);
	store_get_stats(f->s, &after);
	assert_int_equal(after.users, before.users);
	assert_int_equal(after.alarms, before.alarms);
	assert_int_equal(after.tombstones, before.tombstones);
	/* Delivered marks and tombstones came along. */
	assert_string_equal(take_json(f, "user0005"), DIGEST("user0005", ""));
	assert_int_equal(apply1(f, "user0005", "a0", STATUS_WARNING, "2021-08-17T11:00:00Z"), STATE_STALE);
	assert_string_equal(take_json(f, "user0006"), DIGEST("user0006", MIG_PENDING));
	/* Once done, a reopen has nothing to migrate. */
	capture_start(&cap, f->root);
	reopen(f);
	capture_stop(&cap, &log);
	assert_int_equal(count_lines_with(&log, "migrat"), 0);
	buf_free(&log);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_durable_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_discards, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_store_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_in_one_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_take_marks_delivered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_instant_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tombstone_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alarm_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_id_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_user_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uuid_case_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replayed_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_fuzz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_per_alarm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_cost_flat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_alarms_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_format1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_format2, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
