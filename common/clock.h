/* clock: milliseconds, monotonic for timeouts and pacing, wall for ChangedAt arithmetic. */
#ifndef CLOCK_H
#define CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);
int64_t clock_mono_us(void);
int64_t clock_wall_us(void);   /* the DIGEST frame's receive time (frame.h) */

#endif
