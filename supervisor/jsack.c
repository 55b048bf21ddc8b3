#include <string.h>

#include "jsack.h"

#define JSACK_MAX_TOKENS 13

static int
jsack_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int
jsack_parse(const char *reply, struct jsack_meta *out)
{
	const char *tok[JSACK_MAX_TOKENS];
	size_t len[JSACK_MAX_TOKENS];
	size_t n = 0, base;
	const char *p = reply;

	if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
		return -1;
	for (;;) {
		const char *dot = strchr(p, '.');
		if (n == JSACK_MAX_TOKENS)
			return -1;
		tok[n] = p;
		len[n] = dot ? (size_t)(dot - p) : strlen(p);
		n++;
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	/* 9 tokens: the original form; 11 or 12: with domain and account hash. */
	if (n == 9)
		base = 4;
	else if (n == 11 || n == 12)
		base = 6;
	else
		return -1;
	if (jsack_u64(tok[base], len[base], &out->delivered) == -1 ||
	    jsack_u64(tok[base + 1], len[base + 1], &out->stream_seq) == -1 ||
	    jsack_u64(tok[base + 2], len[base + 2], &out->consumer_seq) == -1)
		return -1;
	return 0;
}
