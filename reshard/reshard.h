/*
 * reshard: move users' state when the worker count changes.
 *
 * Every user belongs in STATE_DIR/worker-(hash32(UserID) % N).  A reshard
 * walks every worker-* store present, merges each misplaced user into its
 * home store (commit), then deletes it from where it was (commit).  The
 * merge follows the SPEC's rules, so an interrupted reshard is finished by
 * running it again: nothing is lost, nothing doubled.  STATE_DIR/LAYOUT
 * records the N the stores are laid out for (common/layout.h); it is
 * written last.
 *
 * It runs in its own process (`alarm-supervisor --reshard`), started by
 * the supervisor while no worker runs.
 */
#ifndef RESHARD_H
#define RESHARD_H

#include <stdint.h>

/* The reshard process body; returns its exit status. */
int reshard_main(const char *state_dir, int nslots, int64_t map_size);

#endif
