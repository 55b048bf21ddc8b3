/*
 * partset: the partitions this instance serves in cluster mode
 * ([cluster] partitions > 0, docs/DESIGN.md "Scaling out").
 *
 * Each served partition is read through its own push consumer on the
 * partition stream, named after the lease epoch that owns it
 * ("<consumer>_p<P>_<epoch>_<gen>"): a takeover creates the new consumer
 * before it deletes the old ones, so a paused former owner's late acks
 * land on a deleted consumer, and a crash in between loses no ack floor.
 *
 * A partition's state is the replay of its messages in stream order.
 * STATE_DIR/partitions records, per partition, the stream sequence up to
 * which this instance's stores hold everything (what it acked).  A new
 * consumer starts after min(that, the ack floor F of the consumers it
 * replaces), and deliveries at or below F are replays: another owner
 * already answered them, so they rebuild the state without a digest.
 *
 * Main thread: partset_want, partset_bind, partset_unbind, partset_acked
 * (a partition's callbacks run only while it is subscribed, after its
 * bind).  Callback thread: partset_classify.  Any: partset_current.
 */
#ifndef PARTSET_H
#define PARTSET_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/alarm.h"
#include "../common/config.h"
#include "jsack.h"

struct partset;
struct jsetup;

/* Reads STATE_DIR/partitions (refuses one written for another partition count).  NULL on error (logged). */
struct partset *partset_open(const struct config *c, struct jsetup *js);
void partset_close(struct partset *ps);

int partset_count(const struct partset *ps);
/* Serve p under the lease of this epoch from the next bind on; 0: give it up. */
void partset_want(struct partset *ps, int p, uint64_t epoch);
/* Serve p no more, and want it no more.  Its consumer stays. */
void partset_drop(struct partset *ps, int p);
/*
 * Serve p no more until the next bind (which recreates its consumer):
 * what its current consumer delivered, wherever it waits, is stale now.
 */
void partset_unbind(struct partset *ps, int p);
/* Any thread: a delivery of p classified under `binding` is still p's current consumer's. */
bool partset_current(const struct partset *ps, int p, uint32_t binding);
/* The epoch p is served under now (0: not served). */
uint64_t partset_serving(const struct partset *ps, int p);

/*
 * Make the consumers match what is wanted: take over each newly wanted
 * (or unbound) partition with a new consumer at its floor, leave the ones
 * kept under the same epoch as they are; then record the floors.  -1 on
 * error (logged); a partition that could not be bound is not served.
 */
int partset_bind(struct partset *ps);
/* The master acked p's consumer up to seq: this instance's stores hold all of p up to it. */
void partset_acked(struct partset *ps, int p, uint64_t seq);

/* Partition p's deliver subject, which the intake subscribes to while p is served.  -1: too long. */
int partset_deliver(const struct partset *ps, int p, char *buf, size_t len);

/*
 * Callback thread: the partition of a delivery (-1: not one of ours: not
 * a partition subject, or a partition no longer served), its kind (from
 * the subject's last token; 0: neither input subject), whether it is a replay, whether its
 * consumer sequence skipped deliveries (*gap), and the binding it came
 * under (for partset_current).
 */
int partset_classify(struct partset *ps, const char *subject, const struct jsack_meta *meta,
    enum msg_kind *kind, bool *replay, bool *gap, uint32_t *binding);

#endif
