#include "histo.h"

/* 1 ms to 30 s: a commit is a few ms, a digest behind a stalled worker may take seconds. */
static const uint64_t histo_bounds[HISTO_BOUNDS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000,
};

uint64_t
histo_bound_us(int i)
{
	return histo_bounds[i];
}

void
histo_observe(struct histo *h, int64_t us)
{
	uint64_t v = us < 0 ? 0 : (uint64_t)us;
	int i = 0;

	while (i < HISTO_BOUNDS && v > histo_bounds[i])
		i++;
	h->bucket[i]++;
	h->sum_us += v;
}

void
histo_add(struct histo *dst, const struct histo *src)
{
	for (int i = 0; i < HISTO_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->sum_us += src->sum_us;
}

uint64_t
histo_count(const struct histo *h)
{
	uint64_t n = 0;

	for (int i = 0; i < HISTO_BUCKETS; i++)
		n += h->bucket[i];
	return n;
}
