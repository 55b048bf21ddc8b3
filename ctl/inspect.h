/*
 * inspect: the commands that read the workers' LMDB stores while the
 * service runs (common/store.h's read-only open: LMDB read transactions,
 * nothing written, no lock taken).  Which store holds a user is found
 * exactly as the service routes: hash32(UserID) % the count in
 * STATE_DIR/LAYOUT.
 */
#ifndef CTL_INSPECT_H
#define CTL_INSPECT_H

#include "ctl.h"

/* One user's stored alarms, its slot and store directory, its last answered request. */
extern const struct ctl_cmd inspect_user_cmd;
/* Per slot and in total: users, alarms, tombstones, size on disk, map use. */
extern const struct ctl_cmd inspect_stats_cmd;

#endif
