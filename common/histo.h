/*
 * histo: a latency histogram with fixed bucket bounds, the same for every
 * histogram of the service, so workers can send theirs in a STATS frame
 * (frame.h) and the supervisor can add the slots' together.
 *
 * Bounds are upper limits in microseconds, inclusive (Prometheus "le"):
 * an observation equal to a bound counts in that bucket.  Counts are kept
 * per bucket (not cumulative); the last bucket is +Inf.  A plain value
 * type: copied, zeroed and added like an int.
 */
#ifndef HISTO_H
#define HISTO_H

#include <stdint.h>

#define HISTO_BOUNDS 14                  /* finite bounds */
#define HISTO_BUCKETS (HISTO_BOUNDS + 1) /* and +Inf */

struct histo {
	uint64_t bucket[HISTO_BUCKETS];
	uint64_t sum_us;
};

/* Upper bound of bucket i < HISTO_BOUNDS, in microseconds. */
uint64_t histo_bound_us(int i);
/* Count one observation of us microseconds (negative clock steps count as 0). */
void histo_observe(struct histo *h, int64_t us);
/* dst += src, bucket by bucket. */
void histo_add(struct histo *dst, const struct histo *src);
uint64_t histo_count(const struct histo *h);

#endif
