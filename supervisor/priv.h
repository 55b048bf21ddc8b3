/*
 * priv: least privilege for the supervisor.
 *
 * Started as root with [service] user set, the supervisor does the few
 * things that need root (read the config, create STATE_DIR and hand it to
 * the user, take its lock file), then drops to the user for good before
 * it connects to NATS, handles a message or starts a child: workers and
 * the reshard process are exec'd by the dropped supervisor, so they run
 * as that user too, and everything the service creates is the user's.
 *
 * Whoever it runs as, STATE_DIR must belong to that account and be
 * writable by nobody else: another account that can write there could
 * plant links the service would follow or change its stores under it.
 */
#ifndef PRIV_H
#define PRIV_H

#include "../common/config.h"

struct priv;

/*
 * Resolve [service] user and group.  NULL (logged, naming the key and the
 * name) when one is unknown, or group is set without user.
 */
struct priv *priv_new(const struct config *c);
void priv_free(struct priv *p);

/* "alarm-digest (uid 998, gid 998)": the account the service will run as. */
const char *priv_name(const struct priv *p);

/*
 * May this process become the account?  Root may (it warns when no user
 * is set); anyone else only when the account is itself.  0 or -1 (logged).
 */
int priv_check(const struct priv *p);

/*
 * Create dir (0700) if missing and give it to the account; then refuse
 * it (-1, logged with the fix) unless the account owns it and neither
 * group nor others may write it.
 */
int priv_state_dir(const struct priv *p, const char *dir);

/* Give a file the supervisor opened as root (its lock) to the account. */
int priv_give(const struct priv *p, int fd, const char *path);

/*
 * Become the account for good: supplementary groups, gid, uid; then check
 * root cannot be regained.  A no-op when there is nothing to drop.
 * Call before any thread exists.  0 or -1 (logged).
 */
int priv_drop(const struct priv *p);

#endif
