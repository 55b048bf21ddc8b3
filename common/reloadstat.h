/*
 * reloadstat: the outcome of the last SIGHUP, for whoever sent it.
 *
 * A signal carries no answer, so the master writes one: after each reload
 * it replaces STATE_DIR/reload-status (layout_write_file: whole or not at
 * all) with a generation number one above the file's previous one, its
 * pid, ok or error, a message, and the settings that changed, each marked
 * applied or needing a restart.  alarmctl reads the generation, sends
 * SIGHUP and waits for it to advance.  The file is JSON, one object.
 */
#ifndef RELOADSTAT_H
#define RELOADSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELOADSTAT_FILE "reload-status"

struct reloadstat;

/* ---- the master's side ---- */

/* An empty outcome (ok until reloadstat_fail); NULL when out of memory (logged). */
struct reloadstat *reloadstat_new(void);
void reloadstat_free(struct reloadstat *rs);
/* Record one changed setting; rs may be NULL (then nothing is recorded). */
void reloadstat_change(struct reloadstat *rs, const char *key, const char *old_value,
    const char *new_value, bool restart_needed);
/* The reload was refused: why, one line.  Changes recorded so far are dropped. */
void reloadstat_fail(struct reloadstat *rs, const char *why);
/*
 * Write rs as STATE_DIR/reload-status with the next generation.  0, or -1
 * (logged): the reload itself stands either way.
 */
int reloadstat_write(struct reloadstat *rs, const char *state_dir);

/* ---- the reader's side ---- */

/*
 * Read STATE_DIR/reload-status.  1 with *out set, 0 when there is none
 * yet (no reload since the state directory was made), -1 when it cannot
 * be read or parsed (err says why, naming the file).
 */
int reloadstat_read(const char *state_dir, struct reloadstat **out, char *err, size_t errlen);
uint64_t reloadstat_generation(const struct reloadstat *rs);
long reloadstat_pid(const struct reloadstat *rs);
bool reloadstat_ok(const struct reloadstat *rs);
/* "" when ok and nothing more to say. */
const char *reloadstat_message(const struct reloadstat *rs);
/* Changed settings, in config order: 0 .. reloadstat_changes(rs) - 1. */
size_t reloadstat_changes(const struct reloadstat *rs);
void reloadstat_change_at(const struct reloadstat *rs, size_t i, const char **key,
    const char **old_value, const char **new_value, bool *restart_needed);

#endif
