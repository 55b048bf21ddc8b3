/*
 * jwt: NATS JWTs signed with nkeys, for the test suite only (jwt.h).  The
 * claim shapes are those nats-io/jwt v2 writes and nats-server 2.9 decodes:
 * the registered claims (jti, iat, iss, sub, name) and a "nats" object with
 * "type" and "version": 2.  nats-server does not check the jti; nsc makes it
 * a hash of the claims, and so do we, so every JWT gets a different one.
 */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE   /* explicit_bzero */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../../common/nkey.h"
#include "jwt.h"

#define JWT_SEED_LEN 58
#define JWT_HEADER   "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}"

struct jwt_key {
	enum jwt_kind kind;
	unsigned char raw[32];
	char seed[JWT_SEED_LEN + 1];
	char pub[NKEY_PUBLIC_LEN + 1];
};

static char jwt_errbuf[256];

static void
jwt_seterr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(jwt_errbuf, sizeof(jwt_errbuf), fmt, ap);
	va_end(ap);
}

const char *
jwt_err(void)
{
	return jwt_errbuf;
}

struct jwt_key *
jwt_key_from_raw(enum jwt_kind kind, const unsigned char raw[32])
{
	struct jwt_key *k;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		jwt_seterr("jwt_key: out of memory");
		return NULL;
	}
	k->kind = kind;
	memcpy(k->raw, raw, sizeof(k->raw));
	if (nkey_from_raw((char)kind, raw, k->seed, k->pub) == -1) {
		jwt_seterr("jwt_key: making an nkey of type '%c' failed", (char)kind);
		jwt_key_free(k);
		return NULL;
	}
	return k;
}

struct jwt_key *
jwt_key_new(enum jwt_kind kind)
{
	unsigned char raw[32];
	struct jwt_key *k;
	ssize_t n = -1;
	int fd;

	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, raw, sizeof(raw));
		(void)close(fd);   /* read-only */
	}
	if (n != (ssize_t)sizeof(raw)) {
		jwt_seterr("jwt_key: reading 32 bytes from /dev/urandom: %s",
		    n == -1 ? strerror(errno) : "short read");
		return NULL;
	}
	k = jwt_key_from_raw(kind, raw);
	explicit_bzero(raw, sizeof(raw));
	return k;
}

void
jwt_key_free(struct jwt_key *k)
{
	if (k == NULL)
		return;
	explicit_bzero(k, sizeof(*k));
	free(k);
}

const char *
jwt_key_public(const struct jwt_key *k)
{
	return k->pub;
}

const char *
jwt_key_seed(const struct jwt_key *k)
{
	return k->seed;
}

/* base64url without padding (RFC 7515 section 2) of n bytes; malloc'd. */
static char *
jwt_b64url(const unsigned char *p, size_t n)
{
	char *out;
	int len;

	if ((out = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
		return NULL;
	len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *c = out; *c != '\0'; c++) {
		if (*c == '+')
			*c = '-';
		else if (*c == '/')
			*c = '_';
	}
	return out;
}

/* Hex of the SHA-512/256 of text, as the JWT's id (nsc uses base32 of the same). */
static int
jwt_id(const char *text, char id[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const EVP_MD *sha = EVP_get_digestbyname("SHA512-256");

	if (sha == NULL || EVP_Digest(text, strlen(text), md, &mdlen, sha, NULL) != 1 ||
	    mdlen != 32) {
		jwt_seterr("jwt: SHA-512/256 of the claims failed");
		return -1;
	}
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(id + 2 * i, 3, "%02X", md[i]);
	return 0;
}

/* The "nats" object of a subject of this kind. */
static const char *
jwt_nats_claims(enum jwt_kind kind, unsigned flags)
{
	switch (kind) {
	case JWT_OPERATOR:
		return "{\"type\":\"operator\",\"version\":2}";
	case JWT_ACCOUNT:
		/* -1 is unlimited; JetStream is off unless a storage limit is non-zero. */
		if (flags & JWT_JETSTREAM)
			return "{\"limits\":{\"subs\":-1,\"data\":-1,\"payload\":-1,\"imports\":-1,"
			    "\"exports\":-1,\"wildcards\":true,\"conn\":-1,\"leaf\":-1,"
			    "\"mem_storage\":-1,\"disk_storage\":-1,\"streams\":-1,\"consumer\":-1},"
			    "\"default_permissions\":{\"pub\":{},\"sub\":{}},"
			    "\"type\":\"account\",\"version\":2}";
		return "{\"limits\":{\"subs\":-1,\"data\":-1,\"payload\":-1,\"imports\":-1,"
		    "\"exports\":-1,\"wildcards\":true,\"conn\":-1,\"leaf\":-1},"
		    "\"default_permissions\":{\"pub\":{},\"sub\":{}},"
		    "\"type\":\"account\",\"version\":2}";
	case JWT_USER:
		return "{\"pub\":{},\"sub\":{},\"subs\":-1,\"data\":-1,\"payload\":-1,"
		    "\"type\":\"user\",\"version\":2}";
	}
	return NULL;
}

/* The ed25519 signature of text by key, base64url; malloc'd. */
static char *
jwt_sign(const struct jwt_key *key, const char *text)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key->raw, 32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t siglen = sizeof(sig);
	char *out = NULL;

	if (pk != NULL && ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) == 1 &&
	    EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)text, strlen(text)) == 1 &&
	    siglen == sizeof(sig))
		out = jwt_b64url(sig, siglen);
	if (out == NULL)
		jwt_seterr("jwt: ed25519 signing with %s failed", key->pub);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return out;
}

char *
jwt_encode(const struct jwt_key *subject, const char *name, const struct jwt_key *issuer,
    unsigned flags)
{
	char body[1024], claims[1200], id[65], *h = NULL, *c = NULL, *sig = NULL, *out = NULL;
	char *signed_part = NULL;
	size_t need;
	bool ok_issuer;

	if (name[0] == '\0' || name[strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-_")] != '\0') {
		jwt_seterr("jwt: name \"%s\" is empty or needs JSON escaping", name);
		return NULL;
	}
	ok_issuer = subject->kind == JWT_USER ? issuer->kind == JWT_ACCOUNT :
	    issuer->kind == JWT_OPERATOR;
	if (!ok_issuer) {
		jwt_seterr("jwt: a '%c' key cannot sign a '%c' JWT", (char)issuer->kind,
		    (char)subject->kind);
		return NULL;
	}
	/* The id hashes everything else, as nsc's does. */
	if (snprintf(body, sizeof(body), "\"iat\":%lld,\"iss\":\"%s\",\"name\":\"%s\",\"sub\":\"%s\","
	    "\"nats\":%s}", (long long)time(NULL), issuer->pub, name, subject->pub,
	    jwt_nats_claims(subject->kind, flags)) >= (int)sizeof(body)) {
		jwt_seterr("jwt: claims of \"%s\" too long", name);
		return NULL;
	}
	if (jwt_id(body, id) == -1)
		return NULL;
	snprintf(claims, sizeof(claims), "{\"jti\":\"%s\",%s", id, body);
	h = jwt_b64url((const unsigned char *)JWT_HEADER, strlen(JWT_HEADER));
	c = jwt_b64url((const unsigned char *)claims, strlen(claims));
	if (h == NULL || c == NULL) {
		jwt_seterr("jwt: out of memory encoding \"%s\"", name);
		goto out;
	}
	need = strlen(h) + 1 + strlen(c) + 1;
	if ((signed_part = malloc(need)) == NULL) {
		jwt_seterr("jwt: out of memory encoding \"%s\"", name);
		goto out;
	}
	snprintf(signed_part, need, "%s.%s", h, c);
	if ((sig = jwt_sign(issuer, signed_part)) == NULL)
		goto out;
	need += strlen(sig) + 1;
	if ((out = malloc(need)) == NULL) {
		jwt_seterr("jwt: out of memory encoding \"%s\"", name);
		goto out;
	}
	snprintf(out, need, "%s.%s", signed_part, sig);
out:
	free(h);
	free(c);
	free(sig);
	free(signed_part);
	return out;
}

char *
jwt_creds(const char *user_jwt, const struct jwt_key *user)
{
	static const char fmt[] =
	    "-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
	    "************************* IMPORTANT *************************\n"
	    "NKEY Seed printed below can be used to sign and prove identity.\n"
	    "NKEYs are sensitive and should be treated as secrets.\n\n"
	    "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"
	    "*************************************************************\n";
	size_t need = sizeof(fmt) + strlen(user_jwt) + strlen(user->seed);
	char *out;

	if (user->kind != JWT_USER) {
		jwt_seterr("jwt_creds: %s is not a user key", user->pub);
		return NULL;
	}
	if ((out = malloc(need)) == NULL) {
		jwt_seterr("jwt_creds: out of memory");
		return NULL;
	}
	snprintf(out, need, fmt, user_jwt, user->seed);
	return out;
}
