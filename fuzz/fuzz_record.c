/*
 * fuzz_record: the store's record decoder (common/rec.c) on arbitrary
 * bytes, as a corrupt or hostile LMDB value would hand them over.
 *
 * rec_decode must refuse with a reason or give a record every other rec_*
 * call can use: it encodes to bytes that decode to the same record, hands
 * out each pending alarm by an ID the record then says it holds, and
 * merges into itself without change.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "rec.h"

#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "fuzz_record: " __VA_ARGS__);           \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

static struct rec *fz_rec, *fz_again;
static struct buf fz_enc, fz_enc2;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((fz_rec = rec_new()) == NULL || (fz_again = rec_new()) == NULL) {
		fprintf(stderr, "fuzz_record: rec_new: out of memory\n");
		exit(1);
	}
	return 0;
}

/* Each alarm handed out must be one the record holds, by that very text. */
static int
pending_held(void *arg, const char *alarm, size_t alarm_len, enum alarm_status status,
    const struct rfc3339_time *changed_at)
{
	const struct rec *rec = arg;

	FUZZ_CHECK(status != STATUS_CLEARED && changed_at->nsec >= 0 &&
	    changed_at->nsec <= 999999999, "pending alarm with status %d, nsec %d", (int)status,
	    (int)changed_at->nsec);
	FUZZ_CHECK(rec_holds(rec, alarm, alarm_len),
	    "pending alarm \"%.*s\" is not found by its own ID", (int)alarm_len, alarm);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct rec_keep keep_all = { .drop_expired = false };
	struct rec_counts counts, kept, kept2;
	const char *why = NULL;
	size_t taken;
	bool changed;

	if (rec_decode(fz_rec, data, size, &why) != 0) {
		FUZZ_CHECK(why != NULL && *why != '\0', "refused without a reason");
		FUZZ_CHECK(errno != ENOMEM || strcmp(why, "out of memory") == 0,
		    "ENOMEM but the reason is \"%s\"", why);
		return 0;
	}
	rec_count(fz_rec, &counts);
	FUZZ_CHECK(counts.alarms >= 0 && counts.tombstones <= counts.alarms &&
	    rec_count_kept(fz_rec, &keep_all) == (size_t)counts.alarms, "counts %lld/%lld",
	    (long long)counts.alarms, (long long)counts.tombstones);

	/* Encode, decode, encode: the same bytes (the input itself may use longer varints). */
	FUZZ_CHECK(rec_encode(fz_rec, &keep_all, &fz_enc, &kept) == 0, "rec_encode: out of memory");
	FUZZ_CHECK(kept.alarms == counts.alarms && kept.tombstones == counts.tombstones,
	    "encode kept %lld of %lld alarms", (long long)kept.alarms, (long long)counts.alarms);
	FUZZ_CHECK(fz_enc.len <= size, "re-encoded %zu bytes from %zu", fz_enc.len, size);
	FUZZ_CHECK(rec_decode(fz_again, fz_enc.data, fz_enc.len, &why) == 0,
	    "its own encoding does not decode: %s", why);
	FUZZ_CHECK(rec_last_request(fz_again) == rec_last_request(fz_rec), "last request differs");
	FUZZ_CHECK(rec_encode(fz_again, &keep_all, &fz_enc2, &kept2) == 0 &&
	    fz_enc2.len == fz_enc.len && memcmp(fz_enc2.data, fz_enc.data, fz_enc.len) == 0,
	    "encode(decode(encode(x))) differs from encode(x)");

	/* A record merged into its own copy changes nothing. */
	FUZZ_CHECK(rec_merge(fz_again, fz_rec, &changed) == 0 && !changed,
	    "merging a record into its copy changed it");

	FUZZ_CHECK(rec_take_pending(fz_rec, pending_held, fz_rec, &taken) == 0,
	    "rec_take_pending failed");
	FUZZ_CHECK(taken <= (size_t)(counts.alarms - counts.tombstones), "took %zu pending of %lld",
	    taken, (long long)(counts.alarms - counts.tombstones));
	return 0;
}
