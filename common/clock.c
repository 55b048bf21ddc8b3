#include <time.h>

#include "clock.h"

static int64_t
clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_mono_ms(void)
{
	return clock_us(CLOCK_MONOTONIC) / 1000;
}

int64_t
clock_wall_ms(void)
{
	return clock_us(CLOCK_REALTIME) / 1000;
}

/* Microseconds, for latency histograms: a commit or a digest takes well under a millisecond at times. */
int64_t
clock_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

int64_t
clock_wall_us(void)
{
	return clock_us(CLOCK_REALTIME);
}
