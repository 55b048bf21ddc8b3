/*
 * fault: what a worker does when its store fails.  Two kinds of failure
 * pass, and the slot pauses for them: a full disk (space gets freed) and
 * a map at map_size_max (a reload raises it).  The batch is undone and
 * held, nothing of it is reported durable, and it is redone on the
 * publish backoff (publish.h) until the store takes it; a map below its
 * maximum is grown and the batch redone at once.  Any other store failure
 * is not for a retry to fix: the worker exits, is restarted, and replays.
 * A store found corrupt at open is neither: no restart fixes it, so the
 * worker parks (fault_park).
 */
#ifndef FAULT_H
#define FAULT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/chan.h"
#include "../common/db.h"

struct fault;

/* NULL: logged. */
struct fault *fault_new(void);
void fault_free(struct fault *f);

/* The store failed while what: exit, so the supervisor restarts the worker and it replays. */
void fault_fatal(const char *what) __attribute__((noreturn));

/*
 * A write of the batch to db failed while what: pause for a full map or
 * disk, exit (fault_fatal) for anything else.
 */
void fault_pause(struct fault *f, struct db *db, const char *what);
/*
 * After fault_pause and the batch's rewind (no transaction is open), with
 * frames frames held: grow a full map, else say why the slot is paused,
 * now and then.  true: the map grew, redo the batch at once.
 */
bool fault_recover(struct fault *f, struct db *db, size_t frames);
/* A batch committed: if paused, say the slot resumed. */
void fault_resume(struct fault *f, struct db *db);
/* DB_FAULT_NONE while not paused, else DB_FAULT_DISK_FULL or DB_FAULT_MAP_FULL. */
enum db_fault fault_kind(const struct fault *f);
/* The least wait before a paused batch is redone; 0 while not paused. */
int fault_retry_min_ms(const struct fault *f);

/*
 * The store in dir is corrupt (why): park on channel ch until STOP, EOF
 * or *terminate (then 0), reporting empty STATS now and then, and exit(1)
 * once data.mdb is moved away.  -1: logged.  slot/nslots for the title.
 */
int fault_park(struct chan *ch, uint32_t slot, uint32_t nslots, const char *dir, const char *why,
    volatile sig_atomic_t *terminate);

#endif
