/*
 * Unit tests for supervisor/lease.c and common/leasekv.c: the rendezvous
 * target, the values, then the leases of four instances (12 partitions,
 * lease_ttl 2 s) against a real nats-server started here (a port it
 * picks, its store in a scratch dir).  Three instances run in this
 * process, one in a child the test can SIGSTOP.  The test plays each
 * one's master: it releases what release_wanted asks at once and resets
 * past the fence; an instance claims a partition while its view holds
 * it, unreleased, before the fence.  At every sample (10 ms) no partition
 * is claimed twice; after each step every partition is claimed by its
 * rendezvous target: three start; a fourth joins; one is stopped for 3 x
 * lease_ttl (its partitions taken, never before its fence; resumed, it
 * claims none of them); one leaves (leave, release, close at once: moved
 * within lease_ttl/2); one is closed without releasing (kill -9: taken
 * within 2 x lease_ttl + 1 s, never before its fence); a reset gives
 * every hold a new epoch.  LEASE_DEBUG=1 shows the log and each step.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "leasekv.h"
#include "log.h"

#define SCRATCH_NAME "test_lease"
#include "scratch.h"
#include "livenats.h"

#define NPART 12
#define TTL_MS 2000   /* as the cluster scenarios have it */
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

/* The values every instance and alarmctl read: what is written comes back. */
static void
test_value(void **state)
{
	struct leasekv_value v = { .instance = "i1", .since_ms = 1796019587083 }, back;
	char text[256];

	(void)state;
	assert_int_equal(leasekv_format(text, sizeof(text), &v), 0);
	assert_string_equal(text, "{\"instance\":\"i1\",\"since\":1796019587083}");
	leasekv_parse(text, (int)strlen(text), &back);
	assert_string_equal(back.instance, "i1");
	assert_true(back.since_ms == v.since_ms && back.epoch == 0);
	v.epoch = 57;
	assert_int_equal(leasekv_format(text, sizeof(text), &v), 0);
	leasekv_parse(text, (int)strlen(text), &back);
	assert_true(back.epoch == 57 && back.since_ms == v.since_ms);
	assert_int_equal(leasekv_format(text, 10, &v), -1);
	/* Whatever else is there names nobody. */
	leasekv_parse("[1,2]", 5, &back);
	assert_string_equal(back.instance, "");
	leasekv_parse("{\"instance\":7,\"since\":\"x\"}", 26, &back);
	assert_true(back.instance[0] == '\0' && back.since_ms == 0);
	leasekv_parse(NULL, 0, &back);
	assert_string_equal(back.instance, "");
}

/* ---- instances ---- */

/*
 * An instance runs here (l) or in a child process (pid) that the test can
 * SIGSTOP: the child plays its master and sends what it claims, one
 * record per 10 ms, over a pipe.  Either way the claims are what a master
 * acts on: held, not released, and only before the fence.
 */
struct claim {
	int64_t fence_ms;
	uint64_t epoch[NPART];            /* 0: not claimed */
	uint64_t router;
	int members;
	bool leaving;
};

struct inst {
	char name[16];
	struct lease *l;
	pid_t pid;
	int rfd;                          /* the child's records */
	int cmd_fd;                       /* closing it ends the child */
	bool stopped;                     /* SIGSTOPped: not a live member for balanced() */
	struct lease_view v;
	uint64_t released_epoch[NPART];   /* what its master released */
	uint64_t released_router;
	struct claim c;
};

static struct inst inst[MAXI];

/* An instance's lease on the test's server, in bucket (NULL: the default one). */
static struct lease *
lease_for(const char *name, const char *bucket)
{
	char text[512], err[256];
	struct config c;
	struct lease *l;

	snprintf(text, sizeof(text), "[nats]\nservers = %s\n[cluster]\npartitions = %d\n"
	    "instance = %s\nlease_ttl = %dms\n%s%s\n", nats_url, NPART, name, TTL_MS,
	    bucket ? "lease_bucket = " : "", bucket ? bucket : "");
	if (config_parse(text, strlen(text), "test", &c, err, sizeof(err)) == -1)
		fail_msg("config: %s", err);
	l = lease_open(&c, NULL, NULL);
	config_free(&c);
	return l;
}

static struct lease *
inst_open(struct inst *in, const char *name)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->name, sizeof(in->name), "%s", name);
	in->l = lease_for(name, NULL);
	return in->l;
}

/* What a master does with the view: hand over what is wanted, reset past the fence. */
static void
inst_master(struct inst *in)
{
	struct lease_view *v = &in->v;
	int64_t now = clock_mono_ms();
	bool any = false;

	lease_view(in->l, v);
	for (int p = 0; p < NPART; p++) {
		bool held = v->part[p].epoch != 0 && in->released_epoch[p] != v->part[p].epoch;
		if (held && v->part[p].release_wanted) {
			in->released_epoch[p] = v->part[p].epoch;
			lease_released(in->l, p, v->part[p].epoch);
			held = false;
		}
		in->c.epoch[p] = held ? v->part[p].epoch : 0;
		any |= held;
	}
	in->c.router = v->router.epoch != in->released_router ? v->router.epoch : 0;
	if (in->c.router != 0 && v->router.release_wanted) {
		in->released_router = v->router.epoch;
		lease_released(in->l, LEASE_ROUTER, v->router.epoch);
		in->c.router = 0;
	}
	if ((any || in->c.router != 0) && now >= v->fence_ms) {
		/* Past the fence: drop everything, hold again with new epochs. */
		for (int p = 0; p < NPART; p++)
			if (in->c.epoch[p] != 0)
				in->released_epoch[p] = in->c.epoch[p];
		in->released_router = v->router.epoch;
		memset(in->c.epoch, 0, sizeof(in->c.epoch));
		in->c.router = 0;
		lease_reset(in->l);
	}
	in->c.fence_ms = v->fence_ms;
	in->c.members = v->members;
	in->c.leaving = v->leaving;
}

/* The child: an instance that can be stopped; ends when the test closes its command pipe. */
static void
inst_spawn(struct inst *in, const char *name)
{
	int rec[2], cmd[2];

	memset(in, 0, sizeof(*in));
	snprintf(in->name, sizeof(in->name), "%s", name);
	if (pipe(rec) == -1 || pipe(cmd) == -1)
		fail_msg("pipe: %s", strerror(errno));
	/* Before this process has any thread (no lease open yet): the child may use cnats. */
	if ((in->pid = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (in->pid == 0) {
		struct pollfd pfd = { .fd = cmd[0], .events = POLLIN };
		close(rec[0]);
		close(cmd[1]);
		if ((in->l = lease_for(name, NULL)) == NULL)
			_exit(1);
		while (poll(&pfd, 1, 10) == 0) {
			inst_master(in);
			if (write(rec[1], &in->c, sizeof(in->c)) != (ssize_t)sizeof(in->c))
				break;
		}
		lease_close(in->l);
		_exit(0);
	}
	close(rec[1]);
	close(cmd[0]);
	in->rfd = rec[0];
	in->cmd_fd = cmd[1];
	if (fcntl(in->rfd, F_SETFL, O_NONBLOCK) == -1)
		fail_msg("fcntl: %s", strerror(errno));
}

static void
inst_end(struct inst *in)
{
	if (in->l != NULL) {
		lease_close(in->l);
		in->l = NULL;
	}
	if (in->pid > 0) {
		if (in->stopped)
			kill(in->pid, SIGCONT);
		close(in->cmd_fd);
		waitpid(in->pid, NULL, 0);
		close(in->rfd);
		in->pid = 0;
	}
}

static bool
inst_up(const struct inst *in)
{
	return in->l != NULL || in->pid > 0;
}

/* The child's latest record, if it sent any since. */
static void
inst_read(struct inst *in)
{
	struct claim c;

	while (read(in->rfd, &c, sizeof(c)) == (ssize_t)sizeof(c))
		in->c = c;
}

static bool
claims(const struct inst *in, int p, int64_t now)
{
	return inst_up(in) && in->c.epoch[p] != 0 && now < in->c.fence_ms;
}

/*
 * One sample: every instance's claims, no partition claimed twice.  The
 * claimant of each partition into own[] (-1: none).
 */
static void
sample(int *own)
{
	int64_t now;

	for (int i = 0; i < MAXI; i++) {
		if (inst[i].l != NULL)
			inst_master(&inst[i]);
		else if (inst[i].pid > 0)
			inst_read(&inst[i]);
	}
	now = clock_mono_ms();
	for (int p = 0; p < NPART; p++) {
		own[p] = -1;
		for (int i = 0; i < MAXI; i++) {
			if (!claims(&inst[i], p, now))
				continue;
			if (own[p] != -1)
				fail_msg("partition %d claimed by %s (epoch %llu) and %s (epoch %llu)", p,
				    inst[own[p]].name, (unsigned long long)inst[own[p]].c.epoch[p], inst[i].name,
				    (unsigned long long)inst[i].c.epoch[p]);
			own[p] = i;
		}
	}
}

/* Every partition claimed by its target among the running instances. */
static bool
balanced(const int *own)
{
	const char *names[MAXI];
	int idx[MAXI], n = 0;

	for (int i = 0; i < MAXI; i++)
		if (inst_up(&inst[i]) && !inst[i].stopped && !inst[i].c.leaving) {
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
		if (!inst_up(&inst[i]))
			continue;
		fprintf(stderr, "%s: members %d fence %+lld router %llu%s%s parts", inst[i].name,
		    inst[i].c.members, (long long)(inst[i].c.fence_ms - clock_mono_ms()),
		    (unsigned long long)inst[i].c.router, inst[i].c.leaving ? " leaving" : "",
		    inst[i].stopped ? " STOPPED" : "");
		for (int p = 0; p < NPART; p++)
			if (inst[i].c.epoch[p] != 0)
				fprintf(stderr, " %d:%llu", p, (unsigned long long)inst[i].c.epoch[p]);
		fprintf(stderr, "\n");
	}
}

/* Sample until balanced; the time it took from t0, or fail after limit_ms. */
static int64_t
wait_balanced(const char *what, int64_t t0, int64_t limit_ms)
{
	int own[NPART];

	for (;;) {
		sample(own);
		if (balanced(own)) {
			dump(what);
			return clock_mono_ms() - t0;
		}
		if (clock_mono_ms() - t0 > limit_ms) {
			dump(what);
			fail_msg("%s: not balanced within %lld ms", what, (long long)limit_ms);
		}
		usleep(10 * 1000);
	}
}

static int
router_holders(void)
{
	int64_t now = clock_mono_ms();
	int n = 0;

	for (int i = 0; i < MAXI; i++)
		if (inst_up(&inst[i]) && inst[i].c.router != 0 && now < inst[i].c.fence_ms)
			n++;
	return n;
}

static void
wait_router(void)
{
	int own[NPART];

	for (int64_t t0 = clock_mono_ms(); router_holders() != 1 && clock_mono_ms() - t0 < 3 * TTL_MS;) {
		sample(own);
		usleep(10 * 1000);
	}
	assert_int_equal(router_holders(), 1);
}

static void
test_live(void **state)
{
	int own[NPART];
	int64_t t0, ms;

	(void)state;
	if (nats_start() == -1) {
		print_message("nats-server did not start: skipped\n");
		skip();
	}
	log_set_level(getenv("LEASE_DEBUG") ? LL_INFO : LL_WARN);
	/* The one that will be stopped first: forked while this process has no thread. */
	inst_spawn(&inst[2], "i3");

	/* Three instances share the partitions by target, one holds the router. */
	t0 = clock_mono_ms();
	assert_non_null(inst_open(&inst[0], "i1"));
	assert_non_null(inst_open(&inst[1], "i2"));
	ms = wait_balanced("3 instances", t0, 10 * TTL_MS);
	print_message("3 instances balanced %lld ms after the first started\n", (long long)ms);
	wait_router();
	/* Every one sees the three (a view may lag a moment on a loaded machine). */
	for (t0 = clock_mono_ms(); clock_mono_ms() - t0 < 2 * TTL_MS; usleep(10 * 1000)) {
		sample(own);
		if (inst[0].c.members == 3 && inst[1].c.members == 3 && inst[2].c.members == 3)
			break;
	}
	for (int i = 0; i < 3; i++) {
		assert_true(inst[i].c.fence_ms > clock_mono_ms());
		assert_true(inst[i].c.fence_ms <= clock_mono_ms() + TTL_MS);
		assert_int_equal(inst[i].c.members, 3);
	}
	{
		struct lease_view now;

		lease_view(inst[0].l, &now);
		assert_true(now.fence_ms >= inst[0].c.fence_ms);
	}

	/* A fourth joins: some move to it, handed over, never claimed twice. */
	t0 = clock_mono_ms();
	assert_non_null(inst_open(&inst[3], "i4"));
	ms = wait_balanced("i4 joined", t0, 10 * TTL_MS);
	print_message("i4 joined: balanced after %lld ms\n", (long long)ms);

	/*
	 * i3 (the child) stopped for 3 x lease_ttl: the others take its
	 * partitions, never while its fence holds; resumed, it claims none of
	 * them (sample() checks at every step), rejoins and gets its share back.
	 */
	int64_t fence = inst[2].c.fence_ms;
	bool had[NPART];
	for (int p = 0; p < NPART; p++)
		had[p] = inst[2].c.epoch[p] != 0;
	t0 = clock_mono_ms();
	assert_int_equal(kill(inst[2].pid, SIGSTOP), 0);
	inst[2].stopped = true;
	ms = wait_balanced("i3 stopped", t0, 2 * TTL_MS + 1000);
	print_message("i3 stopped: its partitions taken after %lld ms (its fence was %lld ms after)\n",
	    (long long)ms, (long long)(fence - t0));
	while (clock_mono_ms() - t0 < 3 * TTL_MS) {
		sample(own);
		for (int p = 0; p < NPART; p++)
			if (had[p] && own[p] != -1 && inst[own[p]].c.epoch[p] != 0 && own[p] != 2)
				assert_true(clock_mono_ms() >= fence);
		usleep(10 * 1000);
	}
	t0 = clock_mono_ms();
	assert_int_equal(kill(inst[2].pid, SIGCONT), 0);
	inst[2].stopped = false;
	ms = wait_balanced("i3 resumed", t0, 10 * TTL_MS);
	print_message("i3 resumed: balanced again after %lld ms\n", (long long)ms);

	/*
	 * i1 leaves as a SIGTERM does it: leave, release what it is asked to
	 * (all), close at once.  Its partitions and the router (if it has it)
	 * move well within lease_ttl: the releases went out before the close.
	 */
	t0 = clock_mono_ms();
	lease_leave(inst[0].l);
	while (!inst[0].c.leaving) {
		if (clock_mono_ms() - t0 > TTL_MS)
			fail_msg("i1's view does not say leaving after %d ms", TTL_MS);
		usleep(5 * 1000);
		sample(own);
	}
	for (int p = 0; p < NPART; p++)
		assert_true(inst[0].c.epoch[p] == 0);   /* all released by its "master" */
	assert_true(inst[0].c.router == 0);
	inst_end(&inst[0]);
	ms = wait_balanced("i1 left", t0, TTL_MS);
	assert_true(ms < TTL_MS / 2);
	wait_router();
	print_message("i1 left: partitions moved in %lld ms, router held again after %lld ms\n",
	    (long long)ms, (long long)(clock_mono_ms() - t0));
	assert_true(clock_mono_ms() - t0 < TTL_MS / 2);

	/* i2 dies (closed, nothing released): taken within 2 x lease_ttl, never before its fence. */
	fence = inst[1].c.fence_ms;
	for (int p = 0; p < NPART; p++)
		had[p] = inst[1].c.epoch[p] != 0;
	t0 = clock_mono_ms();
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
		if (now - t0 > 2 * TTL_MS + 1000)
			fail_msg("i2's partitions not taken within %d ms", 2 * TTL_MS + 1000);
		usleep(10 * 1000);
	}
	print_message("i2 died: partitions taken %lld ms later (its fence was %lld ms after)\n",
	    (long long)(clock_mono_ms() - t0), (long long)(fence - t0));
	wait_router();

	/* A reset gives every hold a new, larger epoch. */
	uint64_t before[NPART];
	sample(own);
	for (int p = 0; p < NPART; p++)
		before[p] = own[p] == 3 ? inst[3].c.epoch[p] : 0;
	lease_reset(inst[3].l);
	for (t0 = clock_mono_ms(); clock_mono_ms() - t0 < TTL_MS; usleep(10 * 1000)) {
		bool all = true;
		sample(own);
		for (int p = 0; p < NPART; p++)
			if (before[p] != 0 && inst[3].v.part[p].epoch <= before[p])
				all = false;
		if (all)
			break;
	}
	for (int p = 0; p < NPART; p++)
		if (before[p] != 0)
			assert_true(inst[3].v.part[p].epoch > before[p]);
	assert_true(inst[3].v.acquired > 0);

	for (int i = 0; i < MAXI; i++)
		inst_end(&inst[i]);
	nats_stop();
}

/*
 * Instances started together all find no bucket and create it at once.
 * The server takes one create; the others may be refused (the stream, or
 * its subjects, are being made), and each must then bind the bucket the
 * winner made instead of failing to start.  Forked before this process
 * has any cnats thread; each round a bucket of its own.  On an idle
 * machine the refusal is rare (none in 78 rounds of 4 to 8 instances here,
 * plain and ASan, before the mend; test_live met it once in a loaded CI
 * run), so this mostly proves that many instances starting at once all
 * come up.
 */
#define RACERS 8
#define RACE_ROUNDS 10

static void
test_bucket_race(void **state)
{
	int failed = 0;

	(void)state;
	if (nats_start() == -1) {
		print_message("nats-server did not start: skipped\n");
		skip();
	}
	/* A close right after the open interrupts its first renewal round: not worth a warning here. */
	log_set_level(LL_ERROR);
	for (int round = 0; round < RACE_ROUNDS; round++) {
		pid_t pid[RACERS];
		int go[2];
		char c = 'g';

		if (pipe(go) == -1)
			fail_msg("pipe: %s", strerror(errno));
		for (int i = 0; i < RACERS; i++) {
			if ((pid[i] = fork()) == -1)
				fail_msg("fork: %s", strerror(errno));
			if (pid[i] == 0) {
				char name[16], bucket[16];
				struct lease *l;

				close(go[1]);
				snprintf(name, sizeof(name), "r%d", i);
				snprintf(bucket, sizeof(bucket), "RACE_%d", round);
				/* All at once: each waits for the pipe to close. */
				if (read(go[0], &c, 1) == -1)
					_exit(2);
				if ((l = lease_for(name, bucket)) == NULL)
					_exit(1);
				lease_close(l);
				_exit(0);
			}
		}
		close(go[0]);
		usleep(50 * 1000);
		close(go[1]);
		for (int i = 0; i < RACERS; i++) {
			int st;

			if (waitpid(pid[i], &st, 0) == -1)
				fail_msg("waitpid: %s", strerror(errno));
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				print_message("round %d: instance r%d did not open the lease bucket "
				    "(status 0x%x)\n", round, i, st);
				failed++;
			}
		}
	}
	nats_stop();
	assert_int_equal(failed, 0);
}

static int
live_teardown(void **state)
{
	for (int i = 0; i < MAXI; i++)
		inst_end(&inst[i]);
	nats_stop();
	return teardown(state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_value),
		cmocka_unit_test_setup_teardown(test_bucket_race, setup, live_teardown),
		cmocka_unit_test_setup_teardown(test_live, setup, live_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
