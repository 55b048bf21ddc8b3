/*
 * nkey: the public key of an NATS nkey seed ("SU..."), which
 * natsOptions_SetNKeyFromSeed needs alongside the seed file and cnats does
 * not derive itself.
 */
#ifndef NKEY_H
#define NKEY_H

#include <stddef.h>

#define NKEY_PUBLIC_LEN 56   /* "U" (or "O", "A") + 55 base32 characters */

/*
 * Write the user public key ("U...") of seed into pub (NKEY_PUBLIC_LEN + 1
 * bytes).  -1 with a reason in why (never the seed) when it is not a valid
 * user seed.
 */
int nkey_public_from_seed(const char *seed, char *pub, char *why, size_t whylen);

/*
 * The seed ("SU...", 58 characters + NUL) and public key of 32 raw seed
 * bytes; for tests that make a user at run time.  0 or -1.
 */
int nkey_user_from_raw(const unsigned char raw[32], char seed[59], char pub[NKEY_PUBLIC_LEN + 1]);
/*
 * The same for a key of any type the JWT trust chain uses: 'O' operator
 * ("SO..."/"O..."), 'A' account ("SA..."/"A..."), 'U' user.  -1 for any
 * other type.
 */
int nkey_from_raw(char type, const unsigned char raw[32], char seed[59],
    char pub[NKEY_PUBLIC_LEN + 1]);

#endif
