#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tests/lib/harness.h"
#include "pace.h"
#include "pub.h"

int
pace_run(const struct pacer *pc, struct paced *p)
{
	size_t total = (size_t)(pc->rate * pc->seconds);
	int64_t t0 = pub_now_ns(), next_tick = t0;
	struct gen_msg g;
	natsStatus s;
	size_t i = 0;

	memset(p, 0, sizeof(*p));
	p->target_rate = pc->rate;
	p->first_ns = t0;
	while (i < total) {
		int64_t now = pub_now_ns();
		size_t due = (size_t)((double)(now - t0) * pc->rate / 1e9) + 1;
		double lag = ((double)(now - t0) - (double)i * 1e9 / pc->rate) / 1e6;

		if (due > total)
			due = total;
		if (due > i && lag > p->max_lag_ms)
			p->max_lag_ms = lag;
		for (; i < due; i++) {
			bool request = (i + 1) % (size_t)pc->req_every == 0;
			int64_t ns;

			if (pc->next(pc->arg, i, request, &g) == -1)
				return -1;
			ns = pub_now_ns();
			if ((s = natsConnection_Publish(pc->nc, g.subject, g.data, (int)g.len)) != NATS_OK) {
				harness_seterr("paced publish %zu: %s", i, natsStatus_GetText(s));
				return -1;
			}
			if (g.request) {
				p->requests++;
				p->timed_requests += g.expects;
			}
			if (pc->sent != NULL && pc->sent(pc->arg, &g, ns) == -1)
				return -1;
		}
		if (pc->tick != NULL && now >= next_tick) {
			pc->tick(pc->arg);
			next_tick += (int64_t)5 * 1000000000;
		}
		int64_t slack = t0 + (int64_t)((double)i * 1e9 / pc->rate) - pub_now_ns();
		if (slack > 0) {
			struct timespec ts = { 0, slack > 1000000 ? 1000000 : slack };

			nanosleep(&ts, NULL);
		}
	}
	if ((s = natsConnection_FlushTimeout(pc->nc, 30000)) != NATS_OK) {
		harness_seterr("flush after the paced phase: %s", natsStatus_GetText(s));
		return -1;
	}
	p->last_ns = pub_now_ns();
	p->msgs = total;
	p->seconds = (double)(p->last_ns - t0) / 1e9;
	p->achieved_rate = p->seconds > 0 ? (double)total / p->seconds : 0;
	if (pc->tick != NULL)
		pc->tick(pc->arg);
	return 0;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

struct lat
lat_summary(int64_t *v, size_t n)
{
	struct lat l = { .n = n };

	if (n == 0)
		return l;
	qsort(v, n, sizeof(*v), cmp_i64);
	/* Nearest rank: the smallest value with at least p of the samples at or below it. */
	l.p50 = (double)v[(n * 50 + 99) / 100 - 1] / 1e6;
	l.p99 = (double)v[(n * 99 + 99) / 100 - 1] / 1e6;
	l.max = (double)v[n - 1] / 1e6;
	return l;
}
