/*
 * nkey: NATS nkeys are ed25519 keys written in base32 (RFC 4648, no
 * padding) with a type prefix and a CRC-16/XMODEM, little-endian.  A seed
 * is two prefix bytes (seed, type), the 32-byte ed25519 seed and the CRC;
 * a public key is one prefix byte, the 32-byte public key and the CRC.
 */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE   /* explicit_bzero */
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "nkey.h"

#define PREFIX_SEED     (18 << 3)   /* 'S' */
#define PREFIX_OPERATOR (14 << 3)   /* 'O' */
#define PREFIX_ACCOUNT  (0 << 3)    /* 'A' */
#define PREFIX_USER     (20 << 3)   /* 'U' */
#define SEED_RAW    36
#define PUB_RAW     35

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t
nkey_crc16(const unsigned char *p, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

/* Exactly `n` bytes from the text, or -1. */
static int
nkey_b32_decode(const char *s, unsigned char *out, size_t n)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t got = 0;

	for (; *s != '\0'; s++) {
		const char *c = strchr(b32, *s);

		if (c == NULL || *s == '\0')
			return -1;
		acc = (acc << 5) | (uint32_t)(c - b32);
		bits += 5;
		if (bits >= 8) {
			if (got == n)
				return -1;
			bits -= 8;
			out[got++] = (unsigned char)(acc >> bits);
		}
	}
	return got == n ? 0 : -1;
}

static void
nkey_b32_encode(const unsigned char *p, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			*out++ = b32[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		*out++ = b32[(acc << (5 - bits)) & 31];
	*out = '\0';
}

static int
nkey_ed25519_public(const unsigned char seed[32], unsigned char pub[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	size_t len = 32;
	int rc = -1;

	if (k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == 32)
		rc = 0;
	EVP_PKEY_free(k);
	return rc;
}

static void
nkey_encode_public(int prefix, const unsigned char key[32], char pub[NKEY_PUBLIC_LEN + 1])
{
	unsigned char raw[PUB_RAW];
	uint16_t crc;

	raw[0] = (unsigned char)prefix;
	memcpy(raw + 1, key, 32);
	crc = nkey_crc16(raw, 33);
	raw[33] = (unsigned char)(crc & 0xff);
	raw[34] = (unsigned char)(crc >> 8);
	nkey_b32_encode(raw, sizeof(raw), pub);
}

int
nkey_public_from_seed(const char *seed, char *pub, char *why, size_t whylen)
{
	unsigned char raw[SEED_RAW], key[32];
	uint16_t crc;
	int rc = -1;

	if (nkey_b32_decode(seed, raw, sizeof(raw)) == -1) {
		snprintf(why, whylen, "not an nkey seed (58 base32 characters starting with SU)");
		goto out;
	}
	crc = (uint16_t)(raw[34] | raw[35] << 8);
	if (nkey_crc16(raw, 34) != crc) {
		snprintf(why, whylen, "not an nkey seed (checksum mismatch)");
		goto out;
	}
	if ((raw[0] & 0xf8) != PREFIX_SEED ||
	    (((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3)) != PREFIX_USER) {
		snprintf(why, whylen, "not a user nkey seed (it must start with SU)");
		goto out;
	}
	if (nkey_ed25519_public(raw + 2, key) == -1) {
		snprintf(why, whylen, "deriving the ed25519 public key failed");
		goto out;
	}
	nkey_encode_public(PREFIX_USER, key, pub);
	rc = 0;
out:
	explicit_bzero(raw, sizeof(raw));
	return rc;
}

int
nkey_from_raw(char type, const unsigned char seedbytes[32], char seed[59],
    char pub[NKEY_PUBLIC_LEN + 1])
{
	unsigned char raw[SEED_RAW], key[32];
	uint16_t crc;
	int prefix;

	switch (type) {
	case 'O':
		prefix = PREFIX_OPERATOR;
		break;
	case 'A':
		prefix = PREFIX_ACCOUNT;
		break;
	case 'U':
		prefix = PREFIX_USER;
		break;
	default:
		return -1;
	}
	if (nkey_ed25519_public(seedbytes, key) == -1)
		return -1;
	raw[0] = (unsigned char)(PREFIX_SEED | (prefix >> 5));
	raw[1] = (unsigned char)((prefix & 31) << 3);
	memcpy(raw + 2, seedbytes, 32);
	crc = nkey_crc16(raw, 34);
	raw[34] = (unsigned char)(crc & 0xff);
	raw[35] = (unsigned char)(crc >> 8);
	nkey_b32_encode(raw, sizeof(raw), seed);
	explicit_bzero(raw, sizeof(raw));
	nkey_encode_public(prefix, key, pub);
	return 0;
}

int
nkey_user_from_raw(const unsigned char seedbytes[32], char seed[59], char pub[NKEY_PUBLIC_LEN + 1])
{
	return nkey_from_raw('U', seedbytes, seed, pub);
}
