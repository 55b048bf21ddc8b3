/*
 * Unit tests for supervisor/lease.c: the rendezvous target, then leases
 * of several instances against a real nats-server (started here on a
 * port it picks, JetStream store in a scratch dir).  The test plays each
 * instance's master: it releases at once what release_wanted asks, and
 * counts a partition as claimed by an instance from the view that shows
 * it held until the test released it.  Checked at every sample (20 ms):
 * no partition claimed by two instances; and at the end of each phase:
 * every partition held by its rendezvous target, a leaver's partitions
 * taken well within lease_ttl, a dead one's (closed without releasing)
 * within 2 x lease_ttl, never before its last fence.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "lease.h"
#include "log.h"

#define SCRATCH_NAME "test_lease"
#include "scratch.h"

#define NPART 12
#define TTL_MS 1000
#define MAXI 4

static void
test_target(void **state)
{
	const char *three[] = { "i1", "i2", "i3" }, *two[] = { "i1", "i3" };
	int count[3] = { 0 }, moved = 0;

	(void)state;
	assert_int_equal(lease_target(three, 0, 5), -1);
	for (int p = 0; p < 1024; p++) {
		int t = lease_target(three, 3, p);
		assert_true(t >= 0 && t < 3);
		assert_int_equal(t, lease_target(three, 3, p));
		count[t]++;
		/* i2 gone: only its partitions move, and i1's and i3's stay. */
		int t2 = lease_target(two, 2, p);
		if (t != 1)
			assert_string_equal(three[t], two[t2]);
		else
			moved++;
	}
	for (int i = 0; i < 3; i++)
		assert_true(count[i] > 1024 / 3 - 80 && count[i] < 1024 / 3 + 80);
	assert_int_equal(moved, count[1]);
	/* Few partitions too: names a byte apart once ranked alike for most p. */
	for (int i = 0; i < 3; i++)
		count[i] = 0;
	for (int p = 0; p < 12; p++)
		count[lease_target(three, 3, p)]++;
	for (int i = 0; i < 3; i++)
		assert_true(count[i] >= 2);
}

/* ---- a nats-server of our own ---- */

static pid_t nats_pid = -1;
static char nats_url[64];

static int
nats_start(void)
{
	char store[128], ports[PATH_MAX], logf[128];
	int64_t deadline = clock_mono_ms() + 10000;

	snprintf(store, sizeof(store), "%s/js", dir);
	snprintf(logf, sizeof(logf), "%s/nats.log", dir);
	if ((nats_pid = fork()) == -1)
		return -1;
	if (nats_pid == 0) {
		const char *exe = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server" :
		    "nats-server";
		execlp(exe, "nats-server", "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", store,
		    "--ports_file_dir", dir, "-l", logf, (char *)NULL);
		_exit(127);
	}
	snprintf(ports, sizeof(ports), "%s/nats-server_%ld.ports", dir, (long)nats_pid);
	while (clock_mono_ms() < deadline) {
		char text[512] = "", *p;
		FILE *f = fopen(ports, "r");
		if (f != NULL) {
			size_t n = fread(text, 1, sizeof(text) - 1, f);
			text[n] = '\0';
			fclose(f);
		}
		if ((p = strstr(text, "nats://127.0.0.1:")) != NULL && strchr(p, '"') != NULL) {
			snprintf(nats_url, sizeof(nats_url), "%.*s", (int)(strchr(p, '"') - p), p);
			usleep(100 * 1000);
			return 0;
		}
		if (waitpid(nats_pid, NULL, WNOHANG) == nats_pid) {
			nats_pid = -1;
			return -1;
		}
		usleep(20 * 1000);
	}
	return -1;
}

static void
nats_stop(void)
{
	if (nats_pid > 0) {
		kill(nats_pid, SIGTERM);
		waitpid(nats_pid, NULL, 0);
		nats_pid = -1;
	}
}

/* ---- instances ---- */

struct inst {
	char name[16];
	struct lease *l;
	struct lease_view v;
	uint64_t released_epoch[NPART];   /* what the test released, as the master would */
	int64_t dead_fence;               /* closed without release: its last fence */
};

static struct inst inst[MAXI];

static struct lease *
inst_open(struct inst *in, const char *name)
{
	char text[512], err[256];
	struct config c;
	struct lease *l;

	snprintf(text, sizeof(text), "[nats]\nservers = %s\n[cluster]\npartitions = %d\n"
	    "instance = %s\nlease_ttl = %dms\n", nats_url, NPART, name, TTL_MS);
	if (config_parse(text, strlen(text), "test", &c, err, sizeof(err)) == -1)
		fail_msg("config: %s", err);
	l = lease_open(&c, NULL, NULL);
	config_free(&c);
	memset(in, 0, sizeof(*in));
	snprintf(in->name, sizeof(in->name), "%s", name);
	in->l = l;
	return l;
}

static bool
claims(const struct inst *in, int p)
{
	return in->l != NULL && in->v.part[p].epoch != 0 && in->released_epoch[p] != in->v.part[p].epoch;
}

/*
 * One sample: every instance's view, releases done as a master would, no
 * partition claimed twice.  The owner of each partition into own[] (-1: none).
 */
static void
sample(int *own)
{
	for (int p = 0; p < NPART; p++)
		own[p] = -1;
	for (int i = 0; i < MAXI; i++) {
		struct inst *in = &inst[i];
		if (in->l == NULL)
			continue;
		lease_view(in->l, &in->v);
		for (int p = 0; p < NPART; p++) {
			if (claims(in, p) && in->v.part[p].release_wanted) {
				in->released_epoch[p] = in->v.part[p].epoch;
				lease_released(in->l, p, in->v.part[p].epoch);
			}
			if (!claims(in, p))
				continue;
			if (own[p] != -1)
				fail_msg("partition %d claimed by %s (epoch %llu) and %s (epoch %llu)", p,
				    inst[own[p]].name, (unsigned long long)inst[own[p]].v.part[p].epoch, in->name,
				    (unsigned long long)in->v.part[p].epoch);
			own[p] = i;
		}
		if (in->v.router.epoch != 0 && in->v.router.release_wanted)
			lease_released(in->l, LEASE_ROUTER, in->v.router.epoch);
	}
}

/* Every partition held by its target among the open instances. */
static bool
balanced(const int *own)
{
	const char *names[MAXI];
	int idx[MAXI], n = 0;

	for (int i = 0; i < MAXI; i++)
		if (inst[i].l != NULL && !inst[i].v.leaving) {
			idx[n] = i;
			names[n++] = inst[i].name;
		}
	for (int p = 0; p < NPART; p++) {
		int t = lease_target(names, n, p);
		if (t == -1 || own[p] != idx[t])
			return false;
	}
	return true;
}

static void
dump(const char *what)
{
	if (getenv("LEASE_DEBUG") == NULL)
		return;
	fprintf(stderr, "== %s\n", what);
	for (int i = 0; i < MAXI; i++) {
		if (inst[i].l == NULL)
			continue;
		fprintf(stderr, "%s: members %d fence %+lld router %llu%s parts", inst[i].name, inst[i].v.members,
		    (long long)(inst[i].v.fence_ms - clock_mono_ms()), (unsigned long long)inst[i].v.router.epoch,
		    inst[i].v.leaving ? " leaving" : "");
		for (int p = 0; p < NPART; p++)
			if (inst[i].v.part[p].epoch != 0)
				fprintf(stderr, " %d:%llu%s", p, (unsigned long long)inst[i].v.part[p].epoch,
				    inst[i].v.part[p].release_wanted ? "R" : "");
		fprintf(stderr, "\n");
	}
}

/* Sample until balanced; the time it took, or fail after limit_ms. */
static int64_t
wait_balanced(const char *what, int64_t limit_ms)
{
	int64_t t0 = clock_mono_ms();
	int own[NPART];

	for (;;) {
		sample(own);
		if (balanced(own)) {
			dump(what);
			return clock_mono_ms() - t0;
		}
		if (clock_mono_ms() - t0 > limit_ms)
			fail_msg("%s: not balanced within %lld ms", what, (long long)limit_ms);
		usleep(20 * 1000);
	}
}

static int
router_holders(void)
{
	int n = 0;

	for (int i = 0; i < MAXI; i++)
		if (inst[i].l != NULL && inst[i].v.router.epoch != 0)
			n++;
	return n;
}

static void
test_live(void **state)
{
	int own[NPART];
	int64_t ms;

	(void)state;
	if (nats_start() == -1) {
		print_message("nats-server did not start: skipped\n");
		skip();
	}
	log_set_level(getenv("LEASE_DEBUG") ? LL_INFO : LL_WARN);

	/* Three instances share the partitions by target, one holds the router. */
	assert_non_null(inst_open(&inst[0], "i1"));
	assert_non_null(inst_open(&inst[1], "i2"));
	assert_non_null(inst_open(&inst[2], "i3"));
	ms = wait_balanced("3 instances", 10 * TTL_MS);
	print_message("3 instances balanced after %lld ms\n", (long long)ms);
	assert_int_equal(router_holders(), 1);
	for (int i = 0; i < 3; i++) {
		assert_true(inst[i].v.fence_ms > clock_mono_ms());
		assert_true(inst[i].v.fence_ms <= clock_mono_ms() + TTL_MS);
		assert_int_equal(inst[i].v.members, 3);
	}

	/* A fourth joins: some move to it, handed over, never claimed twice. */
	assert_non_null(inst_open(&inst[3], "i4"));
	ms = wait_balanced("i4 joined", 10 * TTL_MS);
	print_message("i4 joined: balanced after %lld ms\n", (long long)ms);

	/* i3 leaves: its partitions (and router) move at once, well within lease_ttl. */
	int64_t t_leave = clock_mono_ms();
	lease_leave(inst[2].l);
	while (!inst[2].v.leaving) {
		if (clock_mono_ms() - t_leave > TTL_MS)
			fail_msg("i3's view does not say leaving after %d ms", TTL_MS);
		usleep(5 * 1000);
		sample(own);
	}
	wait_balanced("i3 left", TTL_MS);
	ms = clock_mono_ms() - t_leave;
	assert_true(ms < TTL_MS / 2);
	print_message("i3 left: partitions moved in %lld ms\n", (long long)ms);
	for (int64_t t0 = clock_mono_ms(); router_holders() != 1 && clock_mono_ms() - t0 < TTL_MS;) {
		sample(own);
		usleep(20 * 1000);
	}
	assert_int_equal(router_holders(), 1);
	lease_close(inst[2].l);
	inst[2].l = NULL;

	/* i2 dies (closed, nothing released): taken within 2 x lease_ttl, never before its fence. */
	int64_t fence = inst[1].v.fence_ms, t_dead = clock_mono_ms();
	bool had[NPART];
	for (int p = 0; p < NPART; p++)
		had[p] = claims(&inst[1], p);
	lease_close(inst[1].l);
	inst[1].l = NULL;
	for (;;) {
		int64_t now = clock_mono_ms();
		sample(own);
		for (int p = 0; p < NPART; p++)
			if (had[p] && own[p] != -1 && now < fence)
				fail_msg("partition %d taken %lld ms before the dead holder's fence", p,
				    (long long)(fence - now));
		if (balanced(own))
			break;
		if (now - t_dead > 2 * TTL_MS + 1000)
			fail_msg("i2's partitions not taken within %d ms", 2 * TTL_MS + 1000);
		usleep(10 * 1000);
	}
	print_message("i2 died: partitions taken %lld ms later (fence was %lld ms after)\n",
	    (long long)(clock_mono_ms() - t_dead), (long long)(fence - t_dead));

	/* A reset gives every hold a new, larger epoch. */
	uint64_t before[NPART];
	sample(own);
	for (int p = 0; p < NPART; p++)
		before[p] = own[p] == 0 ? inst[0].v.part[p].epoch : 0;
	lease_reset(inst[0].l);
	for (int64_t t0 = clock_mono_ms(); clock_mono_ms() - t0 < TTL_MS; usleep(20 * 1000)) {
		bool all = true;
		sample(own);
		for (int p = 0; p < NPART; p++)
			if (before[p] != 0 && inst[0].v.part[p].epoch <= before[p])
				all = false;
		if (all)
			break;
	}
	for (int p = 0; p < NPART; p++)
		if (before[p] != 0)
			assert_true(inst[0].v.part[p].epoch > before[p]);
	assert_true(inst[0].v.acquired > 0);

	for (int i = 0; i < MAXI; i++)
		if (inst[i].l != NULL) {
			lease_close(inst[i].l);
			inst[i].l = NULL;
		}
	nats_stop();
}

static int
live_teardown(void **state)
{
	for (int i = 0; i < MAXI; i++)
		if (inst[i].l != NULL) {
			lease_close(inst[i].l);
			inst[i].l = NULL;
		}
	nats_stop();
	return teardown(state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target),
		cmocka_unit_test_setup_teardown(test_live, setup, live_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
