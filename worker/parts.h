/*
 * parts: one user's digest cut into AlarmDigest messages that each fit the
 * broker's max_payload, headers included (PROTOCOL.md, "Limits").
 *
 * NATS counts a message's headers against max_payload, so a part's size is
 * its JSON plus its encoded headers, as cnats writes them:
 *
 *     NATS/1.0\r\n  Nats-Msg-Id: <id>\r\n  [Digest-Part: k/n\r\n]  \r\n
 *
 * A digest that fits is one message with Nats-Msg-Id <msgid> and no
 * Digest-Part.  Otherwise part k of n (1-based) is a complete digest of the
 * same user holding the next slice of the ordered list, with Nats-Msg-Id
 * <msgid>/k (a deduplicating stream must not take parts 2..n for repeats of
 * part 1) and Digest-Part: k/n.  Parts are filled greedily in order, so
 * their lists concatenated are exactly the digest's list.
 */
#ifndef PARTS_H
#define PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

#define PARTS_HDR_MSGID "Nats-Msg-Id"
#define PARTS_HDR_PART "Digest-Part"
/* Longest msgid parts_plan takes (the "/k" suffix comes on top). */
#define PARTS_MSGID_MAX 160

struct parts;

struct parts_msg {
	const uint8_t *data;   /* the JSON payload */
	size_t len;
	const char *msgid;     /* the Nats-Msg-Id value */
	const char *part;      /* the Digest-Part value; NULL when the digest is one message */
	size_t alarms;         /* entries of ActiveAlarms in this part */
};

/* NULL on ENOMEM. */
struct parts *parts_new(void);
void parts_free(struct parts *p);

/*
 * Lay out digest d (items in digest order) of user for messages of at most
 * max_payload bytes each, payload plus headers.  0, or -1 with errno:
 * EMSGSIZE when one entry cannot fit in a message even alone (see
 * parts_min_payload), EINVAL for max_payload <= 0 or a msgid longer than
 * PARTS_MSGID_MAX, ENOMEM.
 */
int parts_plan(struct parts *p, const struct digest *d, const char *user, size_t user_len,
    const char *msgid, int64_t max_payload);
/* Messages of the last successful plan (0 for an empty digest). */
size_t parts_count(const struct parts *p);
/*
 * A max_payload large enough for every entry of the last plan's digest to
 * fit in a part alone: what to raise the broker's limit to after EMSGSIZE.
 */
int64_t parts_min_payload(const struct parts *p);
/* Message k (0-based) of the last plan; its pointers stay valid until the next call.  0, or -1 on ENOMEM. */
int parts_get(struct parts *p, size_t k, struct parts_msg *out);

#endif
