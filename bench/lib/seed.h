/*
 * seed: a state directory written straight into the workers' stores, as
 * the service would have left it, so a large state (a million users) is
 * there in seconds instead of the minutes it takes through NATS.
 *
 * Every alarm of the load gets one update (ChangedAt in slot 0, random
 * status), then every user one digest: its pending alarms are marked
 * delivered.  Only the public store API is used (store_apply,
 * store_take_pending, store_commit), users go to worker-(hash32(UserID) %
 * workers) as the service routes them, and LAYOUT is written last.  The
 * model is fed the same updates and digests, then forgets the digests
 * (the service never sends them), so every later digest is still checked
 * exactly.  Load updates after this start at slot 1.
 */
#ifndef BENCH_SEED_H
#define BENCH_SEED_H

#include <stdint.h>

#include "../../tests/lib/model.h"
#include "load.h"

struct seed_stats {
	uint64_t alarms, pending_taken;
	double seconds;
	double store_seconds, commit_seconds, model_seconds;   /* where the time went */
};

/* 0, or -1 with harness_err(). */
int seed_state(struct load *L, const char *state_dir, int workers, struct model *m,
    struct seed_stats *st);

#endif
