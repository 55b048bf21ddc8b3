/*
 * fuzz_record: the store's value decoders on arbitrary bytes, as a
 * corrupt or hostile LMDB value would hand them over.
 *
 * An input starting with 0xff feeds the rest to the format 1 record
 * decoder (common/rec.c: migration, and users moving between stores);
 * any other input is a cell (common/cell.c, the store's values now).
 *
 * cell_len never reaches past the input, and is the input's length when
 * a decoder accepts it.  cell_*_decode must refuse with a reason or give
 * a cell that encodes to at most CELL_MAX bytes that decode to the same
 * values, starting with the prefix cell_prefix gives for its ID, and
 * encode again to the same bytes.  rec_decode must refuse with a reason or give a record every
 * other rec_* call can use: it encodes to bytes that decode to the same
 * record, hands out each pending alarm by an ID the record then says it
 * holds, and merges into itself without change.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cell.h"
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

static bool
fz_state_equal(const struct alarm_state *a, const struct alarm_state *b)
{
	return a->status == b->status && a->delivered == b->delivered &&
	    a->changed_at.sec == b->changed_at.sec && a->changed_at.nsec == b->changed_at.nsec &&
	    a->changed_at.off_min == b->changed_at.off_min;
}

static void
fuzz_cell(const uint8_t *data, size_t size)
{
	struct cell_alarm a, b;
	struct cell_head h, g;
	const char *why = NULL;
	/* Where a chunk's cell ends (db.c): never past the bytes, and all of a cell decode accepts. */
	size_t len = cell_len(data, size);

	FUZZ_CHECK(len <= size, "cell_len %zu of %zu bytes", len, size);
	if (cell_is_head(data, size)) {
		if (cell_head_decode(data, size, &h, &why) != 0) {
			FUZZ_CHECK(why != NULL && *why != '\0', "head refused without a reason");
			return;
		}
		FUZZ_CHECK(h.tombstones <= h.alarms && h.pending <= h.alarms - h.tombstones,
		    "head counts accepted inconsistent");
		FUZZ_CHECK(len == size, "a head of %zu bytes, cell_len %zu", size, len);
		FUZZ_CHECK(cell_head_encode(&h, &fz_enc) == 0, "cell_head_encode: out of memory");
		FUZZ_CHECK(fz_enc.len <= size, "re-encoded head %zu bytes from %zu", fz_enc.len, size);
		FUZZ_CHECK(cell_head_decode(fz_enc.data, fz_enc.len, &g, &why) == 0 &&
		    memcmp(&h, &g, sizeof(h)) == 0, "a head's own encoding decodes differently");
		return;
	}
	if (cell_alarm_decode(data, size, &a, &why) != 0) {
		FUZZ_CHECK(why != NULL && *why != '\0', "cell refused without a reason");
		return;
	}
	FUZZ_CHECK(a.prefix_len <= size && a.id_len > 0 && a.id_len <= CELL_MAX_ID,
	    "prefix %zu, ID %zu bytes", a.prefix_len, a.id_len);
	FUZZ_CHECK(len == size, "a cell of %zu bytes, cell_len %zu", size, len);
	FUZZ_CHECK(cell_prefix(a.kind, a.id, a.id_len, &fz_enc2) == 0 && fz_enc2.len == a.prefix_len &&
	    memcmp(fz_enc2.data, data, a.prefix_len) == 0, "the cell does not start with its prefix");
	FUZZ_CHECK(cell_alarm_encode(a.kind, a.id, a.id_len, &a.st, &fz_enc) == 0,
	    "cell_alarm_encode failed");
	FUZZ_CHECK(fz_enc.len <= size && fz_enc.len <= CELL_MAX, "re-encoded cell %zu bytes from %zu",
	    fz_enc.len, size);
	FUZZ_CHECK(cell_alarm_decode(fz_enc.data, fz_enc.len, &b, &why) == 0,
	    "a cell's own encoding does not decode: %s", why);
	FUZZ_CHECK(b.kind == a.kind && b.id_len == a.id_len && memcmp(b.id, a.id, a.id_len) == 0 &&
	    fz_state_equal(&a.st, &b.st), "a cell's own encoding decodes differently");
	FUZZ_CHECK(cell_alarm_encode(b.kind, b.id, b.id_len, &b.st, &fz_enc2) == 0 &&
	    fz_enc2.len == fz_enc.len && memcmp(fz_enc2.data, fz_enc.data, fz_enc.len) == 0,
	    "encode(decode(encode(x))) differs from encode(x)");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct rec_keep keep_all = { .drop_expired = false };
	struct rec_counts counts, kept, kept2;
	const char *why = NULL;
	size_t taken;
	bool changed;

	if (size == 0 || data[0] != 0xff) {
		fuzz_cell(data, size);
		return 0;
	}
	data++;
	size--;
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
