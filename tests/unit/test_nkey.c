/*
 * Unit tests for common/nkey.c: the public key of a seed, against RFC 8032's
 * first Ed25519 test vector, and the seeds it refuses.  The integration
 * suite (security_nkey) has a real nats-server check the signatures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nkey.h"

static void
hex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;

		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + j];

			v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
		}
		out[i] = (unsigned char)v;
	}
}

/* Decode base32 (no padding) for the check only. */
static size_t
b32(const char *s, unsigned char *out)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (; *s != '\0'; s++) {
		acc = (acc << 5) | (uint32_t)(strchr(alpha, *s) - alpha);
		if ((bits += 5) >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

static void
test_rfc8032_vector(void **state)
{
	unsigned char raw[32], want[32], got[40];
	char seed[59], pub[NKEY_PUBLIC_LEN + 1], again[NKEY_PUBLIC_LEN + 1], why[128];

	(void)state;
	hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", raw, 32);
	hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", want, 32);
	assert_int_equal(nkey_user_from_raw(raw, seed, pub), 0);
	assert_int_equal(strlen(seed), 58);
	assert_int_equal(strncmp(seed, "SU", 2), 0);
	assert_int_equal(strlen(pub), NKEY_PUBLIC_LEN);
	assert_int_equal(pub[0], 'U');
	assert_int_equal(b32(pub, got), 35);
	assert_memory_equal(got + 1, want, 32);
	assert_int_equal(nkey_public_from_seed(seed, again, why, sizeof(why)), 0);
	assert_string_equal(again, pub);
}

static void
test_bad_seeds(void **state)
{
	unsigned char raw[32] = { 1, 2, 3 };
	char seed[59], pub[NKEY_PUBLIC_LEN + 1], why[128];

	(void)state;
	assert_int_equal(nkey_user_from_raw(raw, seed, pub), 0);
	seed[10] = seed[10] == 'A' ? 'B' : 'A';
	assert_int_equal(nkey_public_from_seed(seed, pub, why, sizeof(why)), -1);
	assert_string_equal(why, "not an nkey seed (checksum mismatch)");
	assert_int_equal(nkey_public_from_seed("SUshort", pub, why, sizeof(why)), -1);
	assert_int_equal(nkey_public_from_seed("", pub, why, sizeof(why)), -1);
	/* A public key is not a seed. */
	assert_int_equal(nkey_user_from_raw(raw, seed, pub), 0);
	assert_int_equal(nkey_public_from_seed(pub, seed, why, sizeof(why)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc8032_vector),
		cmocka_unit_test(test_bad_seeds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
