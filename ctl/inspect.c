#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../common/alarm.h"
#include "../common/db.h"
#include "../common/hash.h"
#include "../common/layout.h"
#include "../common/quote.h"
#include "../common/rfc3339.h"
#include "../common/store.h"
#include "inspect.h"

/*
 * The worker count the stores are laid out for, or -1 (reported).  A
 * state directory the service never ran on has no LAYOUT: that is said
 * plainly rather than guessed from the configuration, which may differ.
 */
static int
inspect_workers(struct ctl *c)
{
	struct stat st;
	int n;

	if (stat(c->cfg.state_dir, &st) == -1) {
		ctl_err("state_dir %s: %s%s", c->cfg.state_dir, strerror(errno), errno == EACCES ?
		    " (run alarmctl as root or as the service's user)" : "");
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		ctl_err("state_dir %s: not a directory", c->cfg.state_dir);
		return -1;
	}
	if ((n = layout_count(c->cfg.state_dir)) == -1) {
		ctl_err("state_dir %s: cannot read its LAYOUT file (see above)", c->cfg.state_dir);
		return -1;
	}
	if (n == 0) {
		ctl_err("state_dir %s has no LAYOUT file: the service has not run on it yet "
		    "(or -c names another service's file)", c->cfg.state_dir);
		return -1;
	}
	return n;
}

/*
 * Slot's store opened to read, or NULL: *absent set (nothing reported)
 * when the slot has no store yet, else reported.
 */
static struct store *
inspect_open(struct ctl *c, int slot, char *dir, size_t cap, bool *absent)
{
	char data[PATH_MAX], err[1024];
	struct store *s;

	*absent = false;
	if (layout_slot_path(dir, cap, c->cfg.state_dir, slot, NULL) == -1 ||
	    layout_slot_path(data, sizeof(data), c->cfg.state_dir, slot, "data.mdb") == -1) {
		ctl_err("state_dir %s: path of slot %d too long", c->cfg.state_dir, slot);
		return NULL;
	}
	if (access(data, F_OK) == -1 && errno == ENOENT) {
		*absent = true;
		return NULL;
	}
	if ((s = store_open_readonly(dir, err, sizeof(err))) == NULL)
		ctl_err("cannot open the store of slot %d read-only: %s", slot, err);
	return s;
}

/* ---- user ---------------------------------------------------------------- */

struct inspect_user {
	bool json;
	json_object *arr;
	struct ctl_table *t;
	size_t n;
};

static int
inspect_user_one(void *arg, const struct store_alarm *a)
{
	struct inspect_user *u = arg;
	char ts[RFC3339_MAXLEN + 1], id[QUOTE_CAP(512)];
	json_object *o;

	rfc3339_format(&a->changed_at, ts, sizeof(ts));
	u->n++;
	if (u->json) {
		if ((o = json_object_new_object()) == NULL ||
		    json_object_array_add(u->arr, o) == -1) {
			json_object_put(o);
			ctl_err("building the JSON output: out of memory");
			return -1;
		}
		/* json-c escapes what JSON must; IDs are valid UTF-8 (the validator saw to it). */
		json_object_object_add(o, "alarm_id", json_object_new_string_len(a->id, (int)a->id_len));
		json_object_object_add(o, "status", json_object_new_string(alarm_status_name(a->status)));
		json_object_object_add(o, "changed_at", json_object_new_string(ts));
		json_object_object_add(o, "delivered", json_object_new_boolean(a->delivered));
		json_object_object_add(o, "tombstone", json_object_new_boolean(a->tombstone));
		return 0;
	}
	/* Quoted: an AlarmID may hold anything a terminal would act on. */
	const char *row[] = { quote_bytes(id, sizeof(id), a->id, a->id_len),
	    alarm_status_name(a->status), ts, a->delivered ? "yes" : "no",
	    a->tombstone ? "yes" : "no" };
	return ctl_table_add(u->t, row);
}

static int
inspect_user(struct ctl *c, int argc, char *argv[])
{
	static const char *const heads[] = { "ALARM", "STATUS", "CHANGED_AT", "DELIVERED", "TOMBSTONE" };
	struct inspect_user u = { .json = false };
	char dir[PATH_MAX], quser[QUOTE_CAP(512)];
	struct store *s = NULL;
	const char *user;
	uint64_t last = 0;
	int first, workers, slot, rc = CTL_EXIT_FAIL;
	bool done, absent;

	if ((first = ctl_getopt(c, &inspect_user_cmd, argc, argv, NULL, NULL, NULL, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (argc - first != 1) {
		ctl_err("user: one USERID wanted, %d given", argc - first);
		return CTL_EXIT_USAGE;
	}
	user = argv[first];
	if (*user == '\0') {
		ctl_err("user: the USERID is empty");
		return CTL_EXIT_USAGE;
	}
	u.json = c->json;
	if ((workers = inspect_workers(c)) == -1)
		return CTL_EXIT_FAIL;
	/* Exactly the supervisor's routing (supervisor/intake.c). */
	slot = (int)(hash32(user, strlen(user)) % (uint32_t)workers);
	if ((s = inspect_open(c, slot, dir, sizeof(dir), &absent)) == NULL && !absent)
		return CTL_EXIT_FAIL;
	if (u.json ? (u.arr = json_object_new_array()) == NULL :
	    (u.t = ctl_table_new(5, heads)) == NULL) {
		if (u.json)
			ctl_err("building the JSON output: out of memory");
		goto out;
	}
	if (s != NULL && store_user_alarms(s, user, strlen(user), inspect_user_one, &u, &last) != 0) {
		ctl_err("reading user %s from %s failed", quote_bytes(quser, sizeof(quser), user,
		    strlen(user)), dir);
		goto out;
	}
	if (u.json) {
		json_object *o = json_object_new_object();

		if (o == NULL) {
			ctl_err("building the JSON output: out of memory");
			goto out;
		}
		json_object_object_add(o, "user", json_object_new_string(user));
		json_object_object_add(o, "slot", json_object_new_int(slot));
		json_object_object_add(o, "workers", json_object_new_int(workers));
		json_object_object_add(o, "dir", json_object_new_string(dir));
		json_object_object_add(o, "last_request", json_object_new_uint64(last));
		json_object_object_add(o, "alarms", u.arr);
		u.arr = NULL;
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		quote_bytes(quser, sizeof(quser), user, strlen(user));
		printf("user %s: slot %d of %d, store %s%s\n", quser, slot, workers, dir,
		    absent ? " (not created yet)" : "");
		if (last)
			printf("last answered digest request: stream sequence %" PRIu64 "\n", last);
		else
			printf("last answered digest request: none\n");
		if (u.n == 0)
			printf("no alarms stored for this user\n");
		else
			ctl_table_print(u.t);
	}
	rc = CTL_EXIT_OK;
out:
	json_object_put(u.arr);
	ctl_table_free(u.t);
	store_close(s);
	return rc;
}

const struct ctl_cmd inspect_user_cmd = {
	"user", "USERID",
	"a user's stored alarms, its slot and store, read while the service runs",
	"Finds the user's slot as the service routes (FNV-1a of the UserID modulo the\n"
	"worker count in STATE_DIR/LAYOUT) and reads STATE_DIR/worker-N in an LMDB read\n"
	"transaction.  Lists each alarm in digest order: AlarmID, status, ChangedAt as\n"
	"stored (RFC 3339, with the offset it arrived with), delivered (already sent in a\n"
	"digest) and tombstone (CLEARED, kept to reject stale updates), and the stream\n"
	"sequence of the last digest request answered.  A user with nothing stored is not\n"
	"an error: an empty list.  --json prints {user, slot, workers, dir, last_request,\n"
	"alarms: [{alarm_id, status, changed_at, delivered, tombstone}]}.\n",
	false,
	inspect_user,
};

/* ---- stats --------------------------------------------------------------- */

struct inspect_slot {
	int slot;
	struct store_stats st;
	uint64_t disk;          /* data.mdb's blocks on disk, bytes */
	uint64_t map;           /* the map's size */
};

static void
inspect_bytes(uint64_t b, char *buf, size_t cap)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, cap, "%" PRIu64 " B", b);
	else
		snprintf(buf, cap, "%.1f %s", v, unit[i]);
}

static double
inspect_pct(uint64_t used, uint64_t map)
{
	return map ? 100.0 * (double)used / (double)map : 0.0;
}

static int
inspect_stats_row(struct ctl_table *t, const char *name, const struct inspect_slot *v)
{
	char users[32], alarms[32], tomb[32], disk[32], used[32], map[32], use[96];
	double pct;

	snprintf(users, sizeof(users), "%" PRIu64, v->st.users);
	snprintf(alarms, sizeof(alarms), "%" PRIu64, v->st.alarms);
	snprintf(tomb, sizeof(tomb), "%" PRIu64, v->st.tombstones);
	inspect_bytes(v->disk, disk, sizeof(disk));
	inspect_bytes(v->st.bytes, used, sizeof(used));
	inspect_bytes(v->map, map, sizeof(map));
	pct = inspect_pct(v->st.bytes, v->map);
	/* A young store uses a sliver of its map: "0.00%" would read as empty. */
	if (pct > 0 && pct < 0.01)
		snprintf(use, sizeof(use), "%s / %s (<0.01%%)", used, map);
	else
		snprintf(use, sizeof(use), "%s / %s (%.2f%%)", used, map, pct);
	const char *row[] = { name, users, alarms, tomb, disk, use };
	return ctl_table_add(t, row);
}

static json_object *
inspect_stats_json(const struct inspect_slot *v, bool total)
{
	json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	if (!total)
		json_object_object_add(o, "slot", json_object_new_int(v->slot));
	json_object_object_add(o, "users", json_object_new_uint64(v->st.users));
	json_object_object_add(o, "alarms", json_object_new_uint64(v->st.alarms));
	json_object_object_add(o, "tombstones", json_object_new_uint64(v->st.tombstones));
	json_object_object_add(o, "disk_bytes", json_object_new_uint64(v->disk));
	json_object_object_add(o, "used_bytes", json_object_new_uint64(v->st.bytes));
	json_object_object_add(o, "map_bytes", json_object_new_uint64(v->map));
	json_object_object_add(o, "map_use_pct",
	    json_object_new_double(inspect_pct(v->st.bytes, v->map)));
	return o;
}

static int
inspect_stats(struct ctl *c, int argc, char *argv[])
{
	static const char *const heads[] = { "SLOT", "USERS", "ALARMS", "TOMBSTONES", "DISK",
	    "MAP USE (used / size)" };
	struct inspect_slot *v = NULL, total = { .slot = -1 };
	int slots[LAYOUT_MAX_SLOTS], n, first, workers, rc = CTL_EXIT_FAIL;
	char dir[PATH_MAX], data[PATH_MAX], name[32];
	struct ctl_table *t = NULL;
	json_object *o = NULL, *arr = NULL;
	struct store *s;
	struct stat st;
	bool done, absent;

	if ((first = ctl_getopt(c, &inspect_stats_cmd, argc, argv, NULL, NULL, NULL, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (argc - first != 0) {
		ctl_err("stats: no operands wanted, %s given", argv[first]);
		return CTL_EXIT_USAGE;
	}
	if ((workers = inspect_workers(c)) == -1)
		return CTL_EXIT_FAIL;
	if ((n = layout_scan(c->cfg.state_dir, slots, LAYOUT_MAX_SLOTS)) == -1) {
		ctl_err("state_dir %s: cannot list its worker stores (see above)", c->cfg.state_dir);
		return CTL_EXIT_FAIL;
	}
	if (n > 0 && (v = calloc((size_t)n, sizeof(*v))) == NULL) {
		ctl_err("stats of %d stores: out of memory", n);
		return CTL_EXIT_FAIL;
	}
	for (int i = 0; i < n; i++) {
		v[i].slot = slots[i];
		if ((s = inspect_open(c, slots[i], dir, sizeof(dir), &absent)) == NULL) {
			if (absent)
				continue;
			goto out;
		}
		store_get_stats(s, &v[i].st);
		v[i].map = (uint64_t)db_map_size(store_db(s));
		store_close(s);
		if (layout_slot_path(data, sizeof(data), c->cfg.state_dir, slots[i], "data.mdb") == 0 &&
		    stat(data, &st) == 0)
			v[i].disk = (uint64_t)st.st_blocks * 512;
		else {
			ctl_err("stat %s/data.mdb: %s", dir, strerror(errno));
			goto out;
		}
		total.st.users += v[i].st.users;
		total.st.alarms += v[i].st.alarms;
		total.st.tombstones += v[i].st.tombstones;
		total.st.bytes += v[i].st.bytes;
		total.disk += v[i].disk;
		total.map += v[i].map;
	}
	if (c->json) {
		json_object *tj;

		if ((o = json_object_new_object()) == NULL || (arr = json_object_new_array()) == NULL)
			goto oom;
		json_object_object_add(o, "state_dir", json_object_new_string(c->cfg.state_dir));
		json_object_object_add(o, "workers", json_object_new_int(workers));
		json_object_object_add(o, "slots", arr);
		for (int i = 0; i < n; i++) {
			json_object *so = inspect_stats_json(&v[i], false);

			if (so == NULL || json_object_array_add(arr, so) == -1) {
				json_object_put(so);
				goto oom;
			}
		}
		if ((tj = inspect_stats_json(&total, true)) == NULL)
			goto oom;
		json_object_object_add(o, "total", tj);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	} else {
		if ((t = ctl_table_new(6, heads)) == NULL)
			goto out;
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "%d", v[i].slot);
			if (inspect_stats_row(t, name, &v[i]) == -1)
				goto out;
		}
		if (inspect_stats_row(t, "total", &total) == -1)
			goto out;
		printf("state_dir %s: laid out for %d workers, %d stores\n", c->cfg.state_dir,
		    workers, n);
		ctl_table_print(t);
	}
	rc = CTL_EXIT_OK;
	goto out;
oom:
	ctl_err("building the JSON output: out of memory");
out:
	json_object_put(o);
	ctl_table_free(t);
	free(v);
	return rc;
}

const struct ctl_cmd inspect_stats_cmd = {
	"stats", "",
	"per-slot users, alarms, tombstones, store size and map use",
	"Reads each STATE_DIR/worker-N store in an LMDB read transaction while the service\n"
	"runs: users, alarms (tombstones included), tombstones, data.mdb's size on disk,\n"
	"and map use (bytes of pages in use / the map's size), per slot and in total.\n"
	"--json prints {state_dir, workers, slots: [{slot, users, alarms, tombstones,\n"
	"disk_bytes, used_bytes, map_bytes, map_use_pct}], total: {...}}.\n",
	false,
	inspect_stats,
};
