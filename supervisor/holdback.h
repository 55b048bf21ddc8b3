/*
 * holdback: the isolation policy of the worker slots (docs/DESIGN.md,
 * "Isolation"), so that one worker that falls behind holds back only its
 * own users.
 *
 * It decides when a slot is behind (its oldest message not durable
 * anywhere has waited spill_after while another slot keeps up), starts
 * spilling it (spill.h), makes the spills durable once per loop pass and
 * acks what they hold, feeds them back to the worker as its queue makes
 * room, ends spilling once it caught up, kills a worker that stalls, and
 * says which slots hold back their users.  pool.c keeps the processes,
 * the queues and the channels, and calls in here.
 */
#ifndef HOLDBACK_H
#define HOLDBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"
#include "pool.h"

struct holdback;
struct slot;

/* The policy for nslots slots; acks go to ack.  NULL: out of memory (the caller logs it). */
struct holdback *holdback_new(int nslots, pool_ack_fn ack, void *ack_arg);
void holdback_free(struct holdback *h);
/* Settings (before holdback_open), and on reload: to h and the n slots' spills. */
void holdback_set_config(struct holdback *h, const struct config *c, struct slot *slots, int n);

/* Open slot s's spill: what an earlier run spilled (acked) goes to the worker first.  -1 (logged). */
int holdback_open(struct holdback *h, struct slot *s, const char *state_dir);
/* Release refs still waiting for a sync with drop (not acked); close the spill. */
void holdback_close(struct slot *s, void (*drop)(void *ref));
/* Spill files of slots beyond nslots would never be fed: log it. */
void holdback_check_strays(const char *state_dir, int nslots);

/* s->spilling: append to its spill, acked once synced.  false: no room (logged every 10 s). */
bool holdback_route(struct holdback *h, struct slot *s, const uint8_t *frame, size_t len, void *ref,
    int64_t now_ms);
/* The worker reported every queue id <= id durable. */
void holdback_done(struct slot *s, uint64_t id);
/* Once per loop pass: see pool_settle. */
int holdback_settle(struct holdback *h, struct slot *slots, int n, int64_t now_ms);

/* Nothing in s's spill; every message routed to s durable and acked; s holds back its users. */
bool holdback_empty(const struct slot *s);
bool holdback_durable(const struct slot *s);
bool holdback_held(const struct slot *s);
/* Messages in s's spill not yet handed to its worker. */
uint64_t holdback_spilled(const struct slot *s);
uint64_t holdback_stall_kills(const struct holdback *h);
void holdback_slot_stats(const struct slot *s, struct pool_slot_stats *st);

#endif
