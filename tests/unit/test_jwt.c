/*
 * Unit tests for tests/lib/jwt.c, the suite's NATS JWT signer: the three
 * parts are base64url without padding, the header and claims are the JSON
 * nats-server decodes, and the signature verifies (libcrypto) with the
 * issuer's key.  The integration suite (security_creds) has a real
 * nats-server accept them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "../lib/jwt.h"

static const unsigned char raw_op[32] = { 1 }, raw_acc[32] = { 2 }, raw_user[32] = { 3 };

/* base64url without padding back to bytes (NUL-terminated); the length or -1. */
static int
b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	char std[2048] = "";
	size_t len = 0;
	int got;

	if (n + 4 > sizeof(std) || cap < 3 * (n + 4) / 4 + 1)
		return -1;
	for (size_t i = 0; i < n; i++)
		std[len++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (len % 4 != 0)
		std[len++] = '=';
	if ((got = EVP_DecodeBlock(out, (const unsigned char *)std, (int)len)) < 0)
		return -1;
	/* EVP_DecodeBlock counts the padding's zero bytes too. */
	for (size_t i = n; i % 4 != 0; i++)
		got--;
	out[got] = '\0';
	return got;
}

/* The JSON object of part `which` (0 header, 1 claims) of jwt. */
static json_object *
part_json(const char *jwt, int which)
{
	unsigned char text[2048];
	const char *p = jwt, *dot;

	for (int i = 0; i < which; i++)
		p = strchr(p, '.') + 1;
	dot = strchr(p, '.');
	assert_non_null(dot);
	assert_true(b64url_decode(p, (size_t)(dot - p), text, sizeof(text)) > 0);
	return json_tokener_parse((const char *)text);
}

static const char *
str_at(json_object *o, const char *key)
{
	json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

static void
test_keys(void **state)
{
	struct jwt_key *op = jwt_key_from_raw(JWT_OPERATOR, raw_op);
	struct jwt_key *acc = jwt_key_from_raw(JWT_ACCOUNT, raw_acc);
	struct jwt_key *user = jwt_key_from_raw(JWT_USER, raw_user);

	(void)state;
	assert_non_null(op);
	assert_non_null(acc);
	assert_non_null(user);
	assert_int_equal(jwt_key_public(op)[0], 'O');
	assert_int_equal(jwt_key_public(acc)[0], 'A');
	assert_int_equal(jwt_key_public(user)[0], 'U');
	assert_memory_equal(jwt_key_seed(op), "SO", 2);
	assert_memory_equal(jwt_key_seed(acc), "SA", 2);
	assert_memory_equal(jwt_key_seed(user), "SU", 2);
	assert_int_equal(strlen(jwt_key_public(op)), 56);
	assert_int_equal(strlen(jwt_key_seed(op)), 58);
	jwt_key_free(op);
	jwt_key_free(acc);
	jwt_key_free(user);
}

/* The ed25519 signature over "header.claims" verifies with raw's public key. */
static void
assert_signed_by(const char *jwt, const unsigned char raw[32])
{
	EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, 32), *pub;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char key[32], sig[128];
	const char *dot = strrchr(jwt, '.');
	size_t keylen = sizeof(key);

	assert_non_null(priv);
	assert_non_null(ctx);
	assert_non_null(dot);
	assert_int_equal(EVP_PKEY_get_raw_public_key(priv, key, &keylen), 1);
	assert_non_null(pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, keylen));
	assert_int_equal(b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof(sig)), 64);
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)jwt,
	    (size_t)(dot - jwt)), 1);
	/* One flipped byte of the claims: no longer verifies. */
	{
		char *copy = strdup(jwt);

		assert_non_null(copy);
		copy[strchr(copy, '.') - copy + 5] ^= 1;
		assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub), 1);
		assert_int_not_equal(EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)copy,
		    (size_t)(dot - jwt)), 1);
		free(copy);
	}
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(priv);
}

static void
test_user_jwt(void **state)
{
	struct jwt_key *acc = jwt_key_from_raw(JWT_ACCOUNT, raw_acc);
	struct jwt_key *user = jwt_key_from_raw(JWT_USER, raw_user);
	json_object *h, *c, *nats;
	char *jwt;
	int dots = 0;

	(void)state;
	assert_non_null(jwt = jwt_encode(user, "svc", acc, 0));
	for (const char *p = jwt; *p != '\0'; p++) {
		dots += *p == '.';
		/* base64url, no padding */
		assert_true(*p == '.' || *p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		    (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'));
	}
	assert_int_equal(dots, 2);
	assert_non_null(h = part_json(jwt, 0));
	assert_string_equal(str_at(h, "typ"), "JWT");
	assert_string_equal(str_at(h, "alg"), "ed25519-nkey");
	assert_non_null(c = part_json(jwt, 1));
	assert_string_equal(str_at(c, "iss"), jwt_key_public(acc));
	assert_string_equal(str_at(c, "sub"), jwt_key_public(user));
	assert_string_equal(str_at(c, "name"), "svc");
	assert_true(strlen(str_at(c, "jti")) > 0);
	assert_true(json_object_object_get_ex(c, "nats", &nats));
	assert_string_equal(str_at(nats, "type"), "user");
	assert_string_equal(str_at(nats, "version"), "2");
	assert_signed_by(jwt, raw_acc);
	json_object_put(h);
	json_object_put(c);
	free(jwt);
	jwt_key_free(acc);
	jwt_key_free(user);
}

/* The account's JetStream limits are there only when asked for. */
static void
test_account_jetstream(void **state)
{
	struct jwt_key *op = jwt_key_from_raw(JWT_OPERATOR, raw_op);
	struct jwt_key *acc = jwt_key_from_raw(JWT_ACCOUNT, raw_acc);
	json_object *c, *nats, *limits, *v;
	char *jwt;

	(void)state;
	for (int js = 0; js <= 1; js++) {
		assert_non_null(jwt = jwt_encode(acc, "ALARMS", op, js ? JWT_JETSTREAM : 0));
		assert_non_null(c = part_json(jwt, 1));
		assert_string_equal(str_at(c, "iss"), jwt_key_public(op));
		assert_true(json_object_object_get_ex(c, "nats", &nats));
		assert_string_equal(str_at(nats, "type"), "account");
		assert_true(json_object_object_get_ex(nats, "limits", &limits));
		assert_int_equal(json_object_object_get_ex(limits, "mem_storage", &v), js);
		assert_int_equal(json_object_object_get_ex(limits, "disk_storage", &v), js);
		if (js)
			assert_int_equal(json_object_get_int(v), -1);
		assert_signed_by(jwt, raw_op);
		json_object_put(c);
		free(jwt);
	}
	/* Self-signed operator. */
	assert_non_null(jwt = jwt_encode(op, "op", op, 0));
	assert_signed_by(jwt, raw_op);
	free(jwt);
	jwt_key_free(op);
	jwt_key_free(acc);
}

static void
test_refused(void **state)
{
	struct jwt_key *op = jwt_key_from_raw(JWT_OPERATOR, raw_op);
	struct jwt_key *acc = jwt_key_from_raw(JWT_ACCOUNT, raw_acc);
	struct jwt_key *user = jwt_key_from_raw(JWT_USER, raw_user);

	(void)state;
	/* Users are signed by accounts, accounts by operators. */
	assert_null(jwt_encode(user, "u", op, 0));
	assert_null(jwt_encode(acc, "a", user, 0));
	/* A name the JSON would need escaped. */
	assert_null(jwt_encode(user, "a\"b", acc, 0));
	assert_null(jwt_encode(user, "", acc, 0));
	assert_non_null(strstr(jwt_err(), "name"));
	/* Creds hold a user's seed only. */
	assert_null(jwt_creds("x.y.z", acc));
	jwt_key_free(op);
	jwt_key_free(acc);
	jwt_key_free(user);
}

static void
test_creds(void **state)
{
	struct jwt_key *acc = jwt_key_from_raw(JWT_ACCOUNT, raw_acc);
	struct jwt_key *user = jwt_key_from_raw(JWT_USER, raw_user);
	char *jwt, *creds, want[1024];

	(void)state;
	assert_non_null(jwt = jwt_encode(user, "svc", acc, 0));
	assert_non_null(creds = jwt_creds(jwt, user));
	snprintf(want, sizeof(want), "-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n",
	    jwt);
	assert_ptr_equal(strstr(creds, want), creds);
	snprintf(want, sizeof(want), "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n",
	    jwt_key_seed(user));
	assert_non_null(strstr(creds, want));
	free(creds);
	free(jwt);
	jwt_key_free(acc);
	jwt_key_free(user);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_user_jwt),
		cmocka_unit_test(test_account_jetstream),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_creds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
