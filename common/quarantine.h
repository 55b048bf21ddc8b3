/*
 * quarantine: what becomes of a corrupt record or cell (store.c).  Each sighting is logged,
 * naming the store and the user (quoted: UserIDs come from the wire);
 * when the store gives up on a record, its bytes are saved under
 * DIR/quarantine/ first, so nothing is lost unseen.  Retrying cannot fix
 * a corrupt record, and failing would stop the whole worker slot.
 */
#ifndef QUARANTINE_H
#define QUARANTINE_H

#include <stddef.h>

/* Log that the user's record in the store at dir is corrupt, and why. */
void quarantine_report(const char *dir, const char *user, size_t user_len, const char *why);

/* Save a corrupt record's bytes to a new file under dir/quarantine/; failures are logged. */
void quarantine_save(const char *dir, const void *data, size_t len);

#endif
