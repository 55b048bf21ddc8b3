/*
 * Fault windows: the proof that no update the broker acked is lost to a
 * fault.
 *
 * The load cannot show such a loss: it rewrites a few alarms per user with
 * timestamps that grow with the event count, so an alarm's final state is
 * its last update, and an acked update lost during a fault is caught only
 * if it happened to be its alarm's last.  So a thread of its own publishes,
 * while a window is open (from just before a fault until the service
 * answers again), updates of FRESH alarms: an AlarmID never used before and
 * never touched again, WARNING or CRITICAL.  Every one the broker acked
 * must show up in its user's next digest with exactly that status and
 * instant.  The window users live in the scenario's model, so the final
 * round requests their digests and compares them with the model like any
 * user's; fwin_check then looks every recorded update up in the digests
 * received and says which window lost it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "fault.h"
#include "../lib/itmap.h"

/* Users "win-NN": enough that every worker slot owns some of them. */
#define FWIN_USERS 32
#define FWIN_MAX 256
/*
 * A window starts this long before its fault: after an idle spell
 * fwin_open publishes this long before it returns; when the previous
 * window is still open, what that one published in the last FWIN_LEAD_MS
 * was in flight at this fault and counts for it.
 */
#define FWIN_LEAD_MS 60
#define FWIN_LEAD_MAX_MS 2000

struct fwin_upd {
	int window;
	int user;
	char alarm[32];
	const char *status;          /* a string literal */
	char canon[40];              /* the instant as a digest must print it */
	int64_t at_ms;               /* when its publish began */
	int64_t acked_ms;            /* when the broker's ack came back */
};

struct fwin {
	struct fenv *env;
	struct model *model;
	struct bus *bus;             /* its own connection */
	uint64_t seed;
	int64_t base_sec;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	/*
	 * The open window's index, -1 when none.  The main thread fills
	 * win[k] before it stores k here and never touches it again.
	 */
	atomic_int open;
	int nwin;
	struct {
		char label[64];
		int64_t fault_ms;        /* when fwin_open returned: the fault follows */
		bool contiguous;         /* opened while the previous one was open */
		atomic_size_t acked;     /* published in it so far (fwin_open waits on it) */
	} win[FWIN_MAX];
	/* Written by the publisher thread only; read after it is joined. */
	struct fwin_upd *upd;
	size_t nupd, cap;
	atomic_bool failed;          /* err is set first */
	char err[512];
};

static int
fwin_record(struct fwin *w, const struct fwin_upd *u)
{
	if (w->nupd == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 1024;
		struct fwin_upd *p = realloc(w->upd, ncap * sizeof(*p));

		if (p == NULL) {
			harness_seterr("out of memory recording %zu window updates", ncap);
			return -1;
		}
		w->upd = p;
		w->cap = ncap;
	}
	w->upd[w->nupd++] = *u;
	return 0;
}

static void *
fwin_main(void *arg)
{
	struct fwin *w = arg;
	char user[32], ts[48];
	uint32_t next = 0;
	struct model_ts t;
	struct rng rng;

	rng_seed(&rng, w->seed);
	while (!atomic_load(&w->stop)) {
		int k = atomic_load(&w->open);
		struct fwin_upd u = { .window = k };

		if (k < 0) {
			harness_sleep_ms(2);
			continue;
		}
		u.user = (int)rng_below(&rng, FWIN_USERS);
		u.status = rng_below(&rng, 2) ? "CRITICAL" : "WARNING";
		snprintf(user, sizeof(user), "win-%02d", u.user);
		snprintf(u.alarm, sizeof(u.alarm), "fw-%03d-%06u", k + 1, next++);
		/* Any instant will do for a fresh alarm; a random shape tests the printing too. */
		traffic_random_ts(&rng, w->base_sec, 86400, ts, sizeof(ts));
		if (model_ts_parse(ts, strlen(ts), &t) == -1) {
			snprintf(w->err, sizeof(w->err), "window publisher: generated bad timestamp %s",
			    ts);
			atomic_store(&w->failed, true);
			return NULL;
		}
		snprintf(u.canon, sizeof(u.canon), "%s", t.canon);
		u.at_ms = harness_now_ms();
		/* Returns once the broker acked it: only then is it the service's to keep. */
		if (fpub_update(w->bus, w->model, user, u.alarm, u.status, ts) == -1 ||
		    (u.acked_ms = harness_now_ms(), fwin_record(w, &u)) == -1) {
			snprintf(w->err, sizeof(w->err), "window publisher, update %u: %s", next,
			    harness_err());
			atomic_store(&w->failed, true);
			return NULL;
		}
		atomic_fetch_add(&w->win[k].acked, 1);
	}
	return NULL;
}

struct fwin *
fwin_start(struct fenv *e, struct model *m, uint64_t seed_mix)
{
	struct fwin *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL) {
		harness_seterr("out of memory starting the window publisher");
		return NULL;
	}
	w->env = e;
	w->model = m;
	w->seed = fault_opts.seed ^ seed_mix;
	w->base_sec = harness_wall_sec() - 2 * 86400;
	atomic_store(&w->open, -1);
	if ((w->bus = bus_open(e->nats.url, true)) == NULL)
		goto fail;
	if ((rc = pthread_create(&w->thread, NULL, fwin_main, w)) != 0) {
		harness_seterr("pthread_create(window publisher): %s", strerror(rc));
		goto fail;
	}
	w->started = true;
	return w;
fail:
	fwin_free(w);
	return NULL;
}

void
fwin_open(struct fwin *w, const char *fmt, ...)
{
	int64_t t0 = harness_now_ms();
	va_list ap;
	bool idle;
	int k;

	if (w == NULL)
		return;
	idle = atomic_load(&w->open) < 0;
	/* Past the table the last window takes the remaining faults too. */
	if (w->nwin == FWIN_MAX) {
		if (idle)
			atomic_store(&w->open, FWIN_MAX - 1);
		return;
	}
	k = w->nwin++;
	va_start(ap, fmt);
	vsnprintf(w->win[k].label, sizeof(w->win[k].label), fmt, ap);
	va_end(ap);
	w->win[k].contiguous = !idle;
	atomic_store(&w->open, k);
	/* Updates of this window in flight when the fault hits. */
	while (idle && harness_now_ms() - t0 < FWIN_LEAD_MAX_MS && !atomic_load(&w->failed) &&
	    (atomic_load(&w->win[k].acked) == 0 || harness_now_ms() - t0 < FWIN_LEAD_MS))
		harness_sleep_ms(2);
	w->win[k].fault_ms = harness_now_ms();
}

void
fwin_close(struct fwin *w)
{
	if (w != NULL)
		atomic_store(&w->open, -1);
}

int
fwin_stop(struct fwin *w)
{
	if (w == NULL)
		return 0;
	if (w->started) {
		atomic_store(&w->stop, true);
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	bus_close(w->bus);
	w->bus = NULL;
	if (atomic_load(&w->failed)) {
		harness_seterr("%s", w->err);
		return -1;
	}
	return 0;
}

void
fwin_free(struct fwin *w)
{
	if (w == NULL)
		return;
	(void)fwin_stop(w);
	free(w->upd);
	free(w);
}

static void
fwin_key(char *buf, size_t cap, const char *user, const char *alarm, const char *status,
    const char *canon)
{
	snprintf(buf, cap, "%s\n%s\n%s\n%s", user, alarm, status, canon);
}

/* Element i of a digest entry [AlarmID, Status, LatestChangedAt]; "" if absent. */
static const char *
fwin_str(struct json_object *entry, size_t i)
{
	const char *s = json_object_get_string(json_object_array_get_idx(entry, i));

	return s != NULL ? s : "";
}

/* Every entry of every digest the window users received, as fwin_key keys. */
static int
fwin_index(struct fwin *w, struct itmap *seen)
{
	struct collector *c = w->env->digests;
	char user[32], key[512];

	for (int u = 0; u < FWIN_USERS; u++) {
		size_t n;

		snprintf(user, sizeof(user), "win-%02d", u);
		n = collector_count(c, user);
		for (size_t d = 0; d < n; d++) {
			struct json_object *arr = json_tokener_parse(collector_get(c, user, d));
			size_t len = arr != NULL && json_object_is_type(arr, json_type_array) ?
			    json_object_array_length(arr) : 0;

			for (size_t i = 0; i < len; i++) {
				struct json_object *t = json_object_array_get_idx(arr, i);

				fwin_key(key, sizeof(key), user, fwin_str(t, 0), fwin_str(t, 1),
				    fwin_str(t, 2));
				if (itmap_get(seen, key, strlen(key)) == NULL &&
				    itmap_put(seen, key, strlen(key), seen) == -1) {
					json_object_put(arr);
					harness_seterr("out of memory indexing window users' digests");
					return -1;
				}
			}
			json_object_put(arr);
		}
	}
	return 0;
}

/*
 * The window an update counts for: see FWIN_LEAD_MS.  One still waiting
 * for its ack when the next contiguous window's fault came was in flight
 * at that fault too: it counts for it.  A slow broker (seen under ASan)
 * can hold one publish over a whole short window, which then had nothing
 * of its own.
 */
static int
fwin_of(const struct fwin *w, const struct fwin_upd *u)
{
	int k = u->window;

	while (k + 1 < w->nwin && w->win[k + 1].contiguous &&
	    (u->at_ms >= w->win[k + 1].fault_ms - FWIN_LEAD_MS ||
	    u->acked_ms >= w->win[k + 1].fault_ms))
		k++;
	return k;
}

size_t
fwin_check(struct fwin *w, int faults, size_t min_per_fault)
{
	size_t missing = 0, want = (size_t)faults * min_per_fault;
	size_t in[FWIN_MAX] = { 0 }, lost_in[FWIN_MAX] = { 0 };
	const struct fwin_upd *first = NULL;
	struct itmap seen = { 0 };
	char name[96], key[512], user[32], line[2048];
	int empty = -1, first_win = 0;
	int64_t first_ms;
	size_t off = 0;

	if (w == NULL)
		return 0;
	snprintf(name, sizeof(name), "%s/window_updates_checked", w->env->tag);
	if (fwin_stop(w) == -1) {
		tap_fail(name, "%s", harness_err());
		return 0;
	}
	if (fwin_index(w, &seen) == -1) {
		tap_fail(name, "%s", harness_err());
		itmap_free(&seen, NULL);
		return 0;
	}
	for (size_t i = 0; i < w->nupd; i++) {
		const struct fwin_upd *u = &w->upd[i];
		int k = fwin_of(w, u);

		in[k]++;
		snprintf(user, sizeof(user), "win-%02d", u->user);
		fwin_key(key, sizeof(key), user, u->alarm, u->status, u->canon);
		if (itmap_get(&seen, key, strlen(key)) != NULL)
			continue;
		if (first == NULL) {
			first = u;
			first_win = k;
		}
		missing++;
		lost_in[k]++;
	}
	itmap_free(&seen, NULL);
	line[0] = '\0';
	for (int k = 0; k < w->nwin; k++) {
		if (in[k] == 0 && empty == -1)
			empty = k;
		if (off < sizeof(line))
			off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s %zu", k ? ", " : "",
			    w->win[k].label, in[k]);
	}
	printf("# %s: updates acked per fault window: %s\n", w->env->tag, line);
	if (missing > 0) {
		line[0] = '\0';
		off = 0;
		for (int k = 0; k < w->nwin; k++)
			if (lost_in[k] > 0 && off < sizeof(line))
				off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s: %zu of %zu",
				    off ? ", " : "", w->win[k].label, lost_in[k], in[k]);
		first_ms = first->at_ms - w->win[first_win].fault_ms;
		tap_fail(name, "LOST: %zu of %zu updates the broker acked inside fault windows are in "
		    "no digest (%s); first: user win-%02d alarm %s %s at %s, published %lld ms %s %s",
		    missing, w->nupd, line, first->user, first->alarm, first->status, first->canon,
		    (long long)(first_ms < 0 ? -first_ms : first_ms), first_ms < 0 ? "before" : "after",
		    w->win[first_win].label);
	} else if (w->nwin < faults) {
		tap_fail(name, "%d fault windows opened for %d faults", w->nwin, faults);
	} else if (empty != -1) {
		tap_fail(name, "the window of %s holds no acked update", w->win[empty].label);
	} else if (w->nupd < want) {
		tap_fail(name, "only %zu updates checked inside %d fault windows, want at least %zu "
		    "(%zu per fault)", w->nupd, faults, want, min_per_fault);
	} else {
		tap_ok(name);
	}
	return w->nupd;
}
