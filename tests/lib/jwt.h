/*
 * jwt: a test-only signer of NATS JWTs, so the suite can run nats-server in
 * operator mode (decentralized auth) without nsc, which Debian does not
 * package.  The trust chain: an operator JWT the server is configured with,
 * an account JWT the operator signed (preloaded into the server's MEMORY
 * resolver), a user JWT the account signed (in the client's creds file).
 *
 * Keys are nkeys (common/nkey.h) of 32 random bytes.  A JWT is
 * base64url(header).base64url(claims).base64url(ed25519 signature of the
 * first two parts by the issuer), base64url without padding, header
 * {"typ":"JWT","alg":"ed25519-nkey"} and the claims of nats-io/jwt v2.
 * Every account is unlimited (JetStream too when asked for); every user may
 * publish and subscribe to anything in its account.
 */
#ifndef JWT_H
#define JWT_H

#include <stddef.h>

enum jwt_kind {
	JWT_OPERATOR = 'O',
	JWT_ACCOUNT = 'A',
	JWT_USER = 'U',
};

struct jwt_key;

/* A key from 32 bytes of /dev/urandom; NULL with jwt_err() set. */
struct jwt_key *jwt_key_new(enum jwt_kind kind);
/* A key from the given seed bytes (for tests that need a known key). */
struct jwt_key *jwt_key_from_raw(enum jwt_kind kind, const unsigned char raw[32]);
/* Wipes the seed. */
void jwt_key_free(struct jwt_key *k);
const char *jwt_key_public(const struct jwt_key *k);   /* "O...", "A..." or "U..." */
const char *jwt_key_seed(const struct jwt_key *k);     /* "SO...", "SA..." or "SU..." */

/* An account that may use JetStream (nats-server refuses it for the system account). */
#define JWT_JETSTREAM 0x1u

/*
 * The JWT naming `subject` (its kind picks the claims) with `name` (letters,
 * digits, '-' and '_' only), signed by `issuer`: an operator signs itself and
 * accounts, an account signs users.  flags: JWT_JETSTREAM or 0.  malloc'd;
 * NULL with jwt_err() set.
 */
char *jwt_encode(const struct jwt_key *subject, const char *name, const struct jwt_key *issuer,
    unsigned flags);

/*
 * A creds file's text, as nsc writes it: the user JWT and the user's seed,
 * each in its BEGIN/END block.  `user` need not be the JWT's subject (a test
 * of a seed that does not match).  malloc'd; NULL with jwt_err() set.
 */
char *jwt_creds(const char *user_jwt, const struct jwt_key *user);

/* Why the last call failed. */
const char *jwt_err(void);

#endif
