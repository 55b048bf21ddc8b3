/*
 * fuzz_rfc3339: common/rfc3339.c against the tests' own reading of the
 * SPEC's timestamp form (tests/lib/model.c, written from the SPEC text,
 * not from the service's code).
 *
 * On any input both must agree on accept or reject; on accept, on the
 * instant, the offset and the printed form; and what rfc3339_format prints
 * must parse back to the same value.  The input's first bytes also serve
 * as an arbitrary struct rfc3339_time for rfc3339_format, whose non-empty
 * output must parse back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rfc3339.h"

#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "fuzz_rfc3339: " __VA_ARGS__);          \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

/* What rfc3339_format printed must parse back to t, offset included. */
static void
check_round_trip(const struct rfc3339_time *t, const char *text, size_t n)
{
	struct rfc3339_time back;
	struct model_ts mt;

	FUZZ_CHECK(rfc3339_parse(text, n, &back) == 0, "format printed \"%s\", parse refuses it",
	    text);
	FUZZ_CHECK(back.sec == t->sec && back.nsec == t->nsec && back.off_min == t->off_min,
	    "\"%s\" parses back to %lld.%09d%+d, not %lld.%09d%+d", text, (long long)back.sec,
	    (int)back.nsec, back.off_min, (long long)t->sec, (int)t->nsec, t->off_min);
	FUZZ_CHECK(model_ts_parse(text, n, &mt) == 0 && strcmp(mt.canon, text) == 0,
	    "format printed \"%s\", the model reads it as \"%s\"", text, mt.canon);
}

static void
check_parse(const char *s, size_t len)
{
	char text[RFC3339_MAXLEN + 1];
	struct rfc3339_time t;
	struct model_ts mt;
	int ours, model;
	size_t n;

	ours = rfc3339_parse(s, len, &t);
	model = model_ts_parse(s, len, &mt);
	FUZZ_CHECK(ours == model, "\"%.*s\": rfc3339_parse says %d, the model %d", (int)len, s,
	    ours, model);
	if (ours != 0)
		return;
	FUZZ_CHECK(t.sec == mt.sec && t.nsec == mt.nsec && t.off_min == mt.off_min,
	    "\"%.*s\": rfc3339_parse reads %lld.%09d%+d, the model %lld.%09d%+d", (int)len, s,
	    (long long)t.sec, (int)t.nsec, t.off_min, (long long)mt.sec, (int)mt.nsec,
	    (int)mt.off_min);
	n = rfc3339_format(&t, text, sizeof(text));
	FUZZ_CHECK(n > 0 && strcmp(text, mt.canon) == 0,
	    "\"%.*s\": rfc3339_format prints \"%s\", the model \"%s\"", (int)len, s, text,
	    mt.canon);
	check_round_trip(&t, text, n);
}

/* Arbitrary field values: "" (out of contract) or something that parses back. */
static void
check_format(const uint8_t *data, size_t size)
{
	char text[RFC3339_MAXLEN + 1];
	struct rfc3339_time t;
	int64_t sec;
	int32_t nsec;
	int16_t off;
	size_t n;

	if (size < sizeof(sec) + sizeof(nsec) + sizeof(off))
		return;
	memcpy(&sec, data, sizeof(sec));
	memcpy(&nsec, data + sizeof(sec), sizeof(nsec));
	memcpy(&off, data + sizeof(sec) + sizeof(nsec), sizeof(off));
	/* Fold most values into range, so the printable part gets its share of inputs. */
	t.sec = sec % 400000000000LL;
	t.nsec = nsec;
	t.off_min = off;
	if (data[0] & 1) {
		t.nsec = (int32_t)((uint32_t)nsec % 1000000000u);
		t.off_min = (int16_t)(off % 1440);
	}
	n = rfc3339_format(&t, text, sizeof(text));
	FUZZ_CHECK(n == strlen(text) && n <= RFC3339_MAXLEN, "format wrote %zu bytes", n);
	if (n > 0)
		check_round_trip(&t, text, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer hands over a copy of exactly size bytes: ASan sees a read past the end. */
	check_parse((const char *)data, size);
	check_format(data, size);
	return 0;
}
