/*
 * sweep: dropping expired tombstones of users nobody writes to any more.
 * A pass runs in small steps while the worker is idle, so it never delays
 * a batch: the first a minute after start, then hourly.
 */
#ifndef SWEEP_H
#define SWEEP_H

#include <stdint.h>

#include "../common/store.h"

struct sweep;

/* The first pass is due a minute after now (monotonic ms).  NULL: logged. */
struct sweep *sweep_new(int64_t now);
void sweep_free(struct sweep *sw);

/*
 * If a pass is due or under way, sweep the next users of s in a
 * transaction of its own; call only while no transaction is open and no
 * input waits.  A full map or disk postpones the pass; any other store
 * failure exits (fault_fatal).
 */
void sweep_step(struct sweep *sw, struct store *s, int64_t retention_ms, int64_t now);

#endif
