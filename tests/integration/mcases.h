/*
 * mcases: generated malformed, extreme and edge-valid input messages, each
 * with the reason codes its dead-letter copy may carry (none: a valid
 * message the model must see).  Shared by the malformed scenario (every
 * rule, one case at a time) and the hostile one (all of them, and more,
 * mixed into valid traffic).
 */
#ifndef MCASES_H
#define MCASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "itest.h"

struct mcase {
	char name[200];
	const char *subject;
	char *data;
	size_t len;
	const char *reasons[3];      /* allowed reject reasons; none: a valid message */
	char user[300];              /* whose valid traffic surrounds it */
	char alarm[300], status[16], ts[48];   /* a valid update's fields, for the model */
	/* Published plain: a JetStream publish adds Nats-Msg-Id, too much beside max_payload bytes. */
	bool plain;
};

struct mlist {
	struct mcase *c;
	size_t n, cap;
	int64_t base;                /* seconds: the cases' valid timestamps start here */
	const char *user_prefix;     /* case users are PREFIX-NNN; NULL: "mal" */
};

#define UPD "AlarmStatusChanged"
#define REQ "SendAlarmDigest"
/* Members of a valid update of the case's user, to break one at a time. */
#define A_BAD "\"AlarmID\":\"bad\""
#define U_CASE "\"UserID\":\"%1$s\""
#define S_WARN "\"Status\":\"WARNING\""
#define T_OK "\"ChangedAt\":\"%2$s\""
#define VALID "{" A_BAD "," U_CASE "," S_WARN "," T_OK "}"

/* printf into a malloc'd string (*len its length when len != NULL); NULL on ENOMEM. */
char *mcase_printf(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* unit, times times, malloc'd; NULL on ENOMEM. */
char *mcase_repeat(const char *unit, size_t times);
/* Members (no braces) plus a "Pad" member making exactly `total` bytes; NULL if too small. */
char *mcase_padded(const char *members, size_t total, size_t *len);

/* The user of case i: PREFIX-NNN (cap >= 64). */
void mlist_user(const struct mlist *l, size_t i, char *buf, size_t cap);
/* A new case at the end of l (not counted until filled); NULL on ENOMEM. */
struct mcase *mlist_next(struct mlist *l, const char *name);
void mlist_free(struct mlist *l);
/*
 * A rejected payload.  fmt may use %1$s for the case's user (so a wrongly
 * accepted message would show up in that user's digest) and %2$s for a
 * valid timestamp.  r2 may be NULL.
 */
int mlist_add_bad(struct mlist *l, const char *name, const char *subject, const char *r1,
    const char *r2, const char *fmt);
/* A rejected payload given as bytes (taken over, freed on failure). */
int mlist_add_bad_raw(struct mlist *l, const char *name, const char *subject, const char *r1,
    const char *r2, char *data, size_t len);
/* A valid CRITICAL update (user NULL: the case's own), padded to exactly total bytes when > 0. */
int mlist_add_good(struct mlist *l, const char *name, const char *user, const char *alarm,
    const char *ts, size_t total);
/* A valid update given as JSON text (fmt as for add_bad); alarm is its decoded AlarmID. */
int mlist_add_good_json(struct mlist *l, const char *name, const char *alarm, const char *ts,
    const char *fmt);

/* The case families.  Each returns 0, or -1 on ENOMEM. */
int mlist_build_shape(struct mlist *l);
int mlist_build_timestamps(struct mlist *l);
int mlist_build_ambiguous(struct mlist *l);
/* IDs at and over 256 bytes; payloads at and over max_message_bytes (as configured). */
int mlist_build_limits(struct mlist *l, size_t max_message_bytes);

/* Send case c between valid traffic of its user: an "ok" alarm before, a request after. */
int mcase_send(struct env *e, struct model *m, struct mcase *c, int64_t base, size_t i);
/* Does an Alarm-Reject-Reason value start with one of c's reasons and ": "? */
bool mcase_reason_allowed(const struct mcase *c, const char *hdr);
/* Rejected cases with exactly c's bytes (the two empty payloads look alike). */
size_t mlist_bad_copies(const struct mlist *l, const struct mcase *c);

#endif
