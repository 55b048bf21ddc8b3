/*
 * store: LMDB-backed state, one record per user.
 *
 * Key:   [kind] + 16 bytes when the UserID is a canonical UUID that
 *        round-trips exactly (kind says lower or upper case, so the
 *        original spelling comes back), else [ID_RAW] + the raw bytes.
 *
 * Value (format 1, or 2 once the user has asked for a digest through JetStream):
 *   u8      format version (1 or 2)
 *   uvarint (format 2 only) stream sequence of the last digest request answered
 *   uvarint alarm count
 *   per alarm, sorted by encoded AlarmID (kind, length, bytes):
 *     u8       bits 0-1 status, bit 2 delivered, bits 3-4 AlarmID kind
 *     AlarmID  16 bytes for a UUID kind, else uvarint length + bytes
 *     svarint  changed_at.sec (zigzag)
 *     uvarint  changed_at.nsec
 *     svarint  changed_at.off_min (zigzag)
 * A UUID alarm with a whole-second UTC timestamp costs 24 bytes.
 *
 * Decoding trusts nothing: every length is checked against the bytes
 * left, every field against its range, and the AlarmIDs must be strictly
 * increasing (which also rules out duplicates), so a corrupt record is
 * reported by name instead of being half-applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uuid/uuid.h>

#include "buf.h"
#include "log.h"
#include "store.h"

#define REC_VERSION 1
#define REC_VERSION_REQ 2   /* with the last answered request's stream sequence */
#define UUID_TEXT_LEN 36
#define UUID_BIN_LEN 16

/* Smallest encoded alarm: flags, raw length 0, sec, nsec, offset. */
#define REC_MIN_ALARM 5
/* Largest encoded alarm apart from its raw ID bytes. */
#define REC_MAX_ALARM_OVERHEAD (1 + 10 + 10 + 10 + 10)

#define FLAG_STATUS_MASK 0x03u
#define FLAG_DELIVERED 0x04u
#define FLAG_KIND_SHIFT 3
#define FLAG_KIND_MASK 0x18u
#define FLAG_RESERVED 0xe0u

/*
 * Instants a valid RFC 3339 timestamp can name: local years 0000..9999,
 * widened by a day each way for the offset.
 */
#define SEC_MIN (-62167219200LL - 86400)
#define SEC_MAX (253402300799LL + 86400)

enum id_kind { ID_RAW = 0, ID_UUID_LOWER = 1, ID_UUID_UPPER = 2 };

/* An ID in its stored form. */
struct id_enc {
	uint8_t kind;
	const uint8_t *bytes;   /* uuid below, or the caller's raw bytes */
	size_t len;
	uint8_t uuid[UUID_BIN_LEN];
};

struct rec_alarm {
	size_t id_off;          /* into rec.ids */
	size_t id_len;
	uint8_t kind;
	struct alarm_state st;
};

/* One decoded user record; reused, so steady state allocates nothing. */
struct rec {
	struct rec_alarm *a;
	size_t n, cap;
	struct buf ids;
	uint64_t last_request;   /* stream sequence of the last digest request answered, 0: none */
};

struct store {
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *txn;           /* the open write transaction, if any */
	char *dir;

	struct store_stats stats;       /* as of the last commit */
	int64_t d_users, d_alarms, d_tombstones;   /* the open transaction's changes */

	struct buf key, val;
	struct buf text;        /* a decoded UserID or AlarmID */
	struct rec cur, other;
	struct buf sweep_at;    /* key the next store_sweep starts from ("" = the first) */
	struct buf sweep_keys;  /* keys to rewrite, each as u16 length + bytes */
};

/* ---- logging ---------------------------------------------------------- */

static void
store_lmdb_error(const struct store *s, const char *call, int rc)
{
	log_errorx("%s: %s: %s", call, s->dir, mdb_strerror(rc));
}

/* UserIDs come from the wire: never let one put a newline in a log line. */
static void
store_printable(const char *s, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 8 >= cap) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	out[o] = '\0';
}

static void
store_corrupt(const struct store *s, const char *user, size_t user_len, const char *what)
{
	char name[128];

	store_printable(user, user_len, name, sizeof(name));
	log_errorx("%s: corrupt record for user \"%s\": %s", s->dir, name, what);
}

/* Save a corrupt record's bytes under DIR/quarantine/ so nothing is lost unseen. */
static void
store_quarantine(const struct store *s, const void *data, size_t len)
{
	char path[PATH_MAX];
	struct timespec ts;
	int fd;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(path, sizeof(path), "%s/quarantine", s->dir);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		log_error("mkdir %s", path);
		return;
	}
	snprintf(path, sizeof(path), "%s/quarantine/%lld.%09ld.rec", s->dir, (long long)ts.tv_sec, ts.tv_nsec);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1) {
		log_error("open %s", path);
		return;
	}
	if (write(fd, data, len) != (ssize_t)len)
		log_error("write %s", path);
	close(fd);
	log_errorx("%s: corrupt record saved to %s (%zu bytes); that user starts afresh", s->dir, path, len);
}

static int
store_need_txn(const struct store *s, const char *fn)
{
	if (s->txn != NULL)
		return 0;
	log_errorx("%s: %s: no write transaction open", s->dir, fn);
	return -1;
}

/* ---- IDs -------------------------------------------------------------- */

static int
hex_value(char c, int *upper)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f') {
		*upper |= 1;
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		*upper |= 2;
		return c - 'A' + 10;
	}
	return -1;
}

/*
 * A canonical UUID in one letter case is stored as 16 bytes, since
 * uuid_unparse_lower/_upper give back exactly the same text; anything else
 * (mixed case, braces, no dashes) stays raw, because the digest must echo
 * the ID byte for byte.  Hand-parsed: this runs for every update, and
 * uuid_parse (strtoul per field plus a round trip to check the case) cost
 * a tenth of a worker's time.
 */
static void
id_encode(const char *id, size_t len, struct id_enc *e)
{
	int cases = 0;
	size_t o = 0;

	e->kind = ID_RAW;
	e->bytes = (const uint8_t *)id;
	e->len = len;
	if (len != UUID_TEXT_LEN)
		return;
	for (size_t i = 0; i < UUID_TEXT_LEN; i += 2) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i] != '-')
				return;
			i--;  /* the loop's += 2 lands on the next digit pair */
			continue;
		}
		int hi = hex_value(id[i], &cases), lo = hex_value(id[i + 1], &cases);
		if (hi < 0 || lo < 0)
			return;
		e->uuid[o++] = (uint8_t)(hi << 4 | lo);
	}
	if (cases == 3 || o != UUID_BIN_LEN)
		return;
	/* All digits: either spelling prints it back; call it lower case. */
	e->kind = cases == 2 ? ID_UUID_UPPER : ID_UUID_LOWER;
	e->bytes = e->uuid;
	e->len = UUID_BIN_LEN;
}

/* Append the original text of a stored ID to out. */
static int
id_decode(uint8_t kind, const uint8_t *bytes, size_t len, struct buf *out)
{
	char text[UUID_TEXT_LEN + 1];

	if (kind == ID_RAW)
		return buf_append(out, bytes, len);
	if (kind == ID_UUID_LOWER)
		uuid_unparse_lower(bytes, text);
	else
		uuid_unparse_upper(bytes, text);
	return buf_append(out, text, UUID_TEXT_LEN);
}

/* Any total order works; this one is cheap and matches the stored order. */
static int
id_cmp(uint8_t ak, const uint8_t *a, size_t alen, uint8_t bk, const uint8_t *b, size_t blen)
{
	if (ak != bk)
		return ak < bk ? -1 : 1;
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return alen == 0 ? 0 : memcmp(a, b, alen);
}

static int
store_key(struct store *s, const char *user, size_t user_len, MDB_val *k)
{
	struct id_enc e;

	id_encode(user, user_len, &e);
	/* Checked here so an over-long ID gets a clear line instead of LMDB's MDB_BAD_VALSIZE. */
	if (1 + e.len > (size_t)mdb_env_get_maxkeysize(s->env)) {
		log_errorx("%s: UserID of %zu bytes is longer than the store's keys allow (%d with the tag byte)",
		    s->dir, user_len, mdb_env_get_maxkeysize(s->env));
		return -1;
	}
	buf_reset(&s->key);
	if (buf_append_byte(&s->key, e.kind) == -1 || buf_append(&s->key, e.bytes, e.len) == -1) {
		log_error("%s: key buffer", s->dir);
		return -1;
	}
	k->mv_data = s->key.data;
	k->mv_size = s->key.len;
	return 0;
}

/* The user's original ID from a stored key; -1 if the key is not one we wrote. */
static int
store_key_user(struct store *s, const MDB_val *k)
{
	const uint8_t *p = k->mv_data;

	buf_reset(&s->text);
	if (k->mv_size < 1 || p[0] > ID_UUID_UPPER)
		return -1;
	if (p[0] != ID_RAW && k->mv_size != 1 + UUID_BIN_LEN)
		return -1;
	if (id_decode(p[0], p + 1, k->mv_size - 1, &s->text) == -1) {
		log_error("%s: user buffer", s->dir);
		return -1;
	}
	return 0;
}

/* ---- varints ---------------------------------------------------------- */

static uint8_t *
put_uvarint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *
put_svarint(uint8_t *p, int64_t v)
{
	/* Zigzag, written without shifting a negative value (undefined in C). */
	uint64_t u = v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;

	return put_uvarint(p, u);
}

struct rd {
	const uint8_t *p, *end;
};

static int
rd_byte(struct rd *r, uint8_t *out)
{
	if (r->p >= r->end)
		return -1;
	*out = *r->p++;
	return 0;
}

static int
rd_uvarint(struct rd *r, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (rd_byte(r, &b) == -1)
			return -1;
		/* The tenth byte may only carry the top bit of a uint64. */
		if (shift == 63 && b > 1)
			return -1;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

static int
rd_svarint(struct rd *r, int64_t *out)
{
	uint64_t u;

	if (rd_uvarint(r, &u) == -1)
		return -1;
	*out = (u & 1) ? -(int64_t)(u >> 1) - 1 : (int64_t)(u >> 1);
	return 0;
}

static int
rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
	if ((size_t)(r->end - r->p) < n)
		return -1;
	*out = r->p;
	r->p += n;
	return 0;
}

/* ---- records ---------------------------------------------------------- */

static void
rec_clear(struct rec *rec)
{
	rec->n = 0;
	rec->last_request = 0;
	buf_reset(&rec->ids);
}

static void
rec_free(struct rec *rec)
{
	free(rec->a);
	rec->a = NULL;
	rec->n = rec->cap = 0;
	buf_free(&rec->ids);
}

static int
rec_reserve(struct rec *rec, size_t n)
{
	struct rec_alarm *p;
	size_t ncap;

	if (n <= rec->cap)
		return 0;
	ncap = rec->cap ? rec->cap : 16;
	while (ncap < n) {
		if (ncap > SIZE_MAX / 2 / sizeof(*p)) {
			errno = ENOMEM;
			return -1;
		}
		ncap *= 2;
	}
	if ((p = realloc(rec->a, ncap * sizeof(*p))) == NULL)
		return -1;
	rec->a = p;
	rec->cap = ncap;
	return 0;
}

static int
rec_alarm_cmp(const struct rec *rec, const struct rec_alarm *x, uint8_t kind,
    const uint8_t *bytes, size_t len)
{
	return id_cmp(x->kind, rec->ids.data + x->id_off, x->id_len, kind, bytes, len);
}

/* Binary search; *pos is the match or the insertion point. */
static bool
rec_find(const struct rec *rec, uint8_t kind, const uint8_t *bytes, size_t len, size_t *pos)
{
	size_t lo = 0, hi = rec->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = rec_alarm_cmp(rec, &rec->a[mid], kind, bytes, len);

		if (c == 0) {
			*pos = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

static int
rec_insert(struct rec *rec, size_t pos, uint8_t kind, const uint8_t *bytes, size_t len,
    const struct alarm_state *st)
{
	size_t off = rec->ids.len;

	if (rec_reserve(rec, rec->n + 1) == -1 || buf_append(&rec->ids, bytes, len) == -1)
		return -1;
	memmove(&rec->a[pos + 1], &rec->a[pos], (rec->n - pos) * sizeof(rec->a[0]));
	rec->a[pos].id_off = off;
	rec->a[pos].id_len = len;
	rec->a[pos].kind = kind;
	rec->a[pos].st = *st;
	rec->n++;
	return 0;
}

/* Read one alarm; *why names the first check that failed. */
static int
rec_decode_alarm(struct rd *r, struct rec_alarm *x, const uint8_t **id, const char **why)
{
	uint8_t flags;
	uint64_t len, nsec;
	int64_t sec, off;

	*why = "truncated";
	if (rd_byte(r, &flags) == -1)
		return -1;
	x->kind = (uint8_t)((flags & FLAG_KIND_MASK) >> FLAG_KIND_SHIFT);
	if ((flags & FLAG_RESERVED) || (flags & FLAG_STATUS_MASK) > STATUS_CRITICAL ||
	    x->kind > ID_UUID_UPPER) {
		*why = "bad flags byte";
		return -1;
	}
	x->st.status = (enum alarm_status)(flags & FLAG_STATUS_MASK);
	x->st.delivered = (flags & FLAG_DELIVERED) != 0;
	len = UUID_BIN_LEN;
	if (x->kind == ID_RAW && rd_uvarint(r, &len) == -1)
		return -1;
	if (len > (uint64_t)(r->end - r->p) || rd_bytes(r, (size_t)len, id) == -1)
		return -1;
	x->id_len = (size_t)len;
	if (rd_svarint(r, &sec) == -1 || rd_uvarint(r, &nsec) == -1 || rd_svarint(r, &off) == -1)
		return -1;
	if (sec < SEC_MIN || sec > SEC_MAX || nsec > 999999999 || off < -1439 || off > 1439) {
		*why = "timestamp out of range";
		return -1;
	}
	x->st.changed_at.sec = sec;
	x->st.changed_at.nsec = (int32_t)nsec;
	x->st.changed_at.off_min = (int16_t)off;
	return 0;
}

/*
 * 0, or -1 with *why set: "out of memory" is the only failure that is not
 * corruption, and errno tells it apart (ENOMEM).
 */
static int
rec_decode(struct rec *rec, const void *data, size_t len, const char **why)
{
	struct rd r = { data, (const uint8_t *)data + len };
	uint64_t count;
	uint8_t version;

	rec_clear(rec);
	errno = 0;
	*why = "truncated";
	if (rd_byte(&r, &version) == -1)
		return -1;
	if (version != REC_VERSION && version != REC_VERSION_REQ) {
		*why = "unknown format version";
		return -1;
	}
	if (version == REC_VERSION_REQ && (rd_uvarint(&r, &rec->last_request) == -1 || rec->last_request == 0)) {
		*why = "bad last request sequence";
		return -1;
	}
	if (rd_uvarint(&r, &count) == -1)
		return -1;
	/* Bound the allocation by what the bytes could possibly hold. */
	if (count > (uint64_t)(r.end - r.p) / REC_MIN_ALARM) {
		*why = "alarm count larger than the record";
		return -1;
	}
	if (rec_reserve(rec, (size_t)count) == -1) {
		*why = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		struct rec_alarm *x = &rec->a[i];
		const uint8_t *id;

		if (rec_decode_alarm(&r, x, &id, why) == -1)
			return -1;
		if (i > 0 && rec_alarm_cmp(rec, &rec->a[i - 1], x->kind, id, x->id_len) >= 0) {
			*why = "alarms out of order or duplicated";
			return -1;
		}
		x->id_off = rec->ids.len;
		if (buf_append(&rec->ids, id, x->id_len) == -1) {
			*why = "out of memory";
			return -1;
		}
		rec->n = i + 1;
	}
	if (r.p != r.end) {
		*why = "trailing bytes";
		return -1;
	}
	return 0;
}

struct rec_counts {
	int64_t alarms, tombstones;
};

static void
rec_count(const struct rec *rec, struct rec_counts *c)
{
	c->alarms = (int64_t)rec->n;
	c->tombstones = 0;
	for (size_t i = 0; i < rec->n; i++)
		if (rec->a[i].st.status == STATUS_CLEARED)
			c->tombstones++;
}

/* Which alarms a rewrite keeps: all, or all but expired tombstones. */
struct rec_keep {
	bool drop_expired;
	int64_t now_ms, retention_ms;
};

static bool
rec_kept(const struct rec_keep *k, const struct rec_alarm *x)
{
	return !k->drop_expired || !state_expired(&x->st, k->now_ms, k->retention_ms);
}

static uint8_t *
rec_encode_alarm(const struct rec *rec, const struct rec_alarm *x, uint8_t *p)
{
	*p++ = (uint8_t)((unsigned)x->st.status | (x->st.delivered ? FLAG_DELIVERED : 0) |
	    ((unsigned)x->kind << FLAG_KIND_SHIFT));
	if (x->kind == ID_RAW)
		p = put_uvarint(p, x->id_len);
	if (x->id_len > 0)
		memcpy(p, rec->ids.data + x->id_off, x->id_len);
	p += x->id_len;
	p = put_svarint(p, x->st.changed_at.sec);
	p = put_uvarint(p, (uint64_t)x->st.changed_at.nsec);
	return put_svarint(p, x->st.changed_at.off_min);
}

/* Encode the kept alarms into out (replaced); *c gets what was kept. */
static int
rec_encode(const struct rec *rec, const struct rec_keep *k, struct buf *out, struct rec_counts *c)
{
	size_t need = 1 + 10 + 10;
	uint8_t *p;

	c->alarms = c->tombstones = 0;
	for (size_t i = 0; i < rec->n; i++) {
		if (!rec_kept(k, &rec->a[i]))
			continue;
		c->alarms++;
		if (rec->a[i].st.status == STATUS_CLEARED)
			c->tombstones++;
		need += REC_MAX_ALARM_OVERHEAD + rec->a[i].id_len;
	}
	buf_reset(out);
	if (buf_reserve(out, need) == -1)
		return -1;
	p = out->data;
	if (rec->last_request > 0) {
		*p++ = REC_VERSION_REQ;
		p = put_uvarint(p, rec->last_request);
	} else {
		*p++ = REC_VERSION;
	}
	p = put_uvarint(p, (uint64_t)c->alarms);
	for (size_t i = 0; i < rec->n; i++)
		if (rec_kept(k, &rec->a[i]))
			p = rec_encode_alarm(rec, &rec->a[i], p);
	out->len = (size_t)(p - out->data);
	return 0;
}

/* ---- record I/O inside the write transaction --------------------------- */

/*
 * Load the user's record into rec.  *exists says whether there was one.
 * -1 on a storage error or a corrupt record (logged, naming the user).
 */
static int
store_load(struct store *s, const char *user, size_t user_len, MDB_val *k,
    struct rec *rec, bool *exists)
{
	MDB_val v;
	const char *why;
	int rc;

	rec_clear(rec);
	*exists = false;
	rc = mdb_get(s->txn, s->dbi, k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		store_lmdb_error(s, "mdb_get", rc);
		return -1;
	}
	*exists = true;
	if (rec_decode(rec, v.mv_data, v.mv_size, &why) == -1) {
		if (errno == ENOMEM) {
			log_error("%s: decoding a record", s->dir);
			return -1;
		}
		store_corrupt(s, user, user_len, why);
		/*
		 * Retrying cannot fix it, and failing would stop the whole slot:
		 * keep the bytes for an operator and go on with an empty record.
		 */
		store_quarantine(s, v.mv_data, v.mv_size);
		rec_clear(rec);
	}
	return 0;
}

/* Rewrite (or delete, when nothing is kept) the record and account for it. */
static int
store_save(struct store *s, MDB_val *k, const struct rec *rec, const struct rec_keep *keep,
    bool existed, const struct rec_counts *before)
{
	struct rec_counts after;
	MDB_val v;
	int rc;

	if (rec_encode(rec, keep, &s->val, &after) == -1) {
		log_error("%s: encoding a record", s->dir);
		return -1;
	}
	bool keep_record = after.alarms > 0 || rec->last_request > 0;

	if (!keep_record) {
		if (existed && (rc = mdb_del(s->txn, s->dbi, k, NULL)) != 0) {
			store_lmdb_error(s, "mdb_del", rc);
			return -1;
		}
	} else {
		v.mv_data = s->val.data;
		v.mv_size = s->val.len;
		if ((rc = mdb_put(s->txn, s->dbi, k, &v, 0)) != 0) {
			store_lmdb_error(s, "mdb_put", rc);
			return -1;
		}
	}
	s->d_users += (keep_record ? 1 : 0) - (existed ? 1 : 0);
	s->d_alarms += after.alarms - before->alarms;
	s->d_tombstones += after.tombstones - before->tombstones;
	return 0;
}

/* ---- open / close ------------------------------------------------------ */

static int
store_mkdirs(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(path)) {
		snprintf(err, errlen, "state directory \"%s\": bad path length", dir);
		return -1;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
			return -1;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	if (stat(dir, &sb) == -1) {
		snprintf(err, errlen, "stat %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", dir);
		return -1;
	}
	return 0;
}

static void
store_refresh_bytes(struct store *s)
{
	MDB_stat st;
	int rc;

	if ((rc = mdb_env_stat(s->env, &st)) != 0) {
		store_lmdb_error(s, "mdb_env_stat", rc);
		return;
	}
	s->stats.bytes = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
	    st.ms_psize;
}

/* The counters are kept incrementally; a scan at open gives the starting point. */
static int
store_scan(struct store *s, MDB_txn *txn, char *err, size_t errlen)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		snprintf(err, errlen, "mdb_cursor_open: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		struct rec_counts c;
		const char *why;

		/* A corrupt record still is a user: keeps the counters consistent with a later delete. */
		s->stats.users++;
		if (store_key_user(s, &k) == -1) {
			log_errorx("%s: record with a malformed key (%zu bytes)", s->dir, k.mv_size);
			continue;
		}
		if (rec_decode(&s->cur, v.mv_data, v.mv_size, &why) == -1) {
			store_corrupt(s, (const char *)s->text.data, s->text.len, why);
			continue;
		}
		rec_count(&s->cur, &c);
		s->stats.alarms += (uint64_t)c.alarms;
		s->stats.tombstones += (uint64_t)c.tombstones;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "mdb_cursor_get: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int
store_open_env(struct store *s, int64_t map_size_bytes, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&s->env)) != 0) {
		s->env = NULL;
		snprintf(err, errlen, "mdb_env_create: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_env_set_mapsize(s->env, (size_t)map_size_bytes)) != 0) {
		snprintf(err, errlen, "mdb_env_set_mapsize: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	/* Default flags: every commit is synced, which is the durability contract. */
	if ((rc = mdb_env_open(s->env, s->dir, 0, 0600)) != 0) {
		snprintf(err, errlen, "mdb_env_open: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &s->dbi)) != 0) {
		snprintf(err, errlen, "mdb_dbi_open: %s: %s", s->dir, mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	if (store_scan(s, txn, err, errlen) == -1) {
		mdb_txn_abort(txn);
		return -1;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_commit: %s: %s", s->dir, mdb_strerror(rc));
		return -1;
	}
	store_refresh_bytes(s);
	return 0;
}

struct store *
store_open(const char *dir, int64_t map_size_bytes, char *err, size_t errlen)
{
	struct store *s;

	if (map_size_bytes <= 0 || (uint64_t)map_size_bytes > SIZE_MAX) {
		snprintf(err, errlen, "%s: map size %lld out of range", dir, (long long)map_size_bytes);
		return NULL;
	}
	if (store_mkdirs(dir, err, errlen) == -1)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(s);
		return NULL;
	}
	if (store_open_env(s, map_size_bytes, err, errlen) == -1) {
		store_close(s);
		return NULL;
	}
	return s;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	store_abort(s);
	if (s->env != NULL)
		mdb_env_close(s->env);
	buf_free(&s->key);
	buf_free(&s->val);
	buf_free(&s->text);
	buf_free(&s->sweep_at);
	buf_free(&s->sweep_keys);
	rec_free(&s->cur);
	rec_free(&s->other);
	free(s->dir);
	free(s);
}

/* ---- transactions ------------------------------------------------------ */

int
store_begin(struct store *s)
{
	int rc;

	if (s->txn != NULL) {
		log_errorx("%s: store_begin: a write transaction is already open", s->dir);
		return -1;
	}
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &s->txn)) != 0) {
		s->txn = NULL;
		store_lmdb_error(s, "mdb_txn_begin", rc);
		return -1;
	}
	s->d_users = s->d_alarms = s->d_tombstones = 0;
	return 0;
}

static void
store_add(uint64_t *counter, int64_t delta)
{
	/* Unsigned wrap-around adds a negative delta correctly. */
	*counter += (uint64_t)delta;
}

int
store_commit(struct store *s)
{
	int rc;

	if (store_need_txn(s, "store_commit") == -1)
		return -1;
	/* mdb_txn_commit frees the transaction whether or not it succeeds. */
	rc = mdb_txn_commit(s->txn);
	s->txn = NULL;
	if (rc != 0) {
		store_lmdb_error(s, "mdb_txn_commit", rc);
		return -1;
	}
	store_add(&s->stats.users, s->d_users);
	store_add(&s->stats.alarms, s->d_alarms);
	store_add(&s->stats.tombstones, s->d_tombstones);
	store_refresh_bytes(s);
	return 0;
}

void
store_abort(struct store *s)
{
	if (s->txn == NULL)
		return;
	mdb_txn_abort(s->txn);
	s->txn = NULL;
	s->d_users = s->d_alarms = s->d_tombstones = 0;
}

void
store_get_stats(const struct store *s, struct store_stats *out)
{
	*out = s->stats;
}

/* ---- operations --------------------------------------------------------- */

static bool
store_accepted(enum state_result r)
{
	return r == STATE_NEW || r == STATE_CHANGED || r == STATE_REFRESHED;
}

static bool
rec_any_expired(const struct rec *rec, const struct rec_keep *k)
{
	for (size_t i = 0; i < rec->n; i++)
		if (!rec_kept(k, &rec->a[i]))
			return true;
	return false;
}

int
store_apply(struct store *s, const struct alarm_msg *m, int64_t now_ms,
    int64_t tombstone_retention_ms, enum state_result *res)
{
	struct rec_keep keep = { true, now_ms, tombstone_retention_ms };
	struct rec_counts before;
	struct alarm_state st = { STATUS_CLEARED, { 0, 0, 0 }, false };
	struct id_enc a;
	MDB_val k;
	bool exists, found;
	size_t pos;

	if (store_need_txn(s, "store_apply") == -1 ||
	    store_key(s, m->user, m->user_len, &k) == -1 ||
	    store_load(s, m->user, m->user_len, &k, &s->cur, &exists) == -1)
		return -1;
	rec_count(&s->cur, &before);
	id_encode(m->alarm, m->alarm_len, &a);
	found = rec_find(&s->cur, a.kind, a.bytes, a.len, &pos);
	if (found)
		st = s->cur.a[pos].st;
	*res = state_apply(&st, found, m->status, &m->changed_at);
	if (store_accepted(*res)) {
		if (found) {
			s->cur.a[pos].st = st;
		} else if (rec_insert(&s->cur, pos, a.kind, a.bytes, a.len, &st) == -1) {
			log_error("%s: adding an alarm", s->dir);
			return -1;
		}
	} else if (!rec_any_expired(&s->cur, &keep)) {
		return 0;   /* nothing to write: the common duplicate costs one read */
	}
	return store_save(s, &k, &s->cur, &keep, exists, &before);
}

int
store_take_pending(struct store *s, const char *user, size_t user_len, uint64_t request_seq,
    store_alarm_fn fn, void *arg, bool *replayed)
{
	struct rec_keep keep = { false, 0, 0 };
	struct rec_counts before;
	MDB_val k;
	bool exists;
	size_t taken = 0;

	*replayed = false;
	if (store_need_txn(s, "store_take_pending") == -1 ||
	    store_key(s, user, user_len, &k) == -1 ||
	    store_load(s, user, user_len, &k, &s->cur, &exists) == -1)
		return -1;
	if (request_seq > 0 && request_seq <= s->cur.last_request) {
		/* Answered before a crash; answering again now would send later alarms early. */
		*replayed = true;
		return 0;
	}
	for (size_t i = 0; i < s->cur.n; i++) {
		struct rec_alarm *x = &s->cur.a[i];

		if (!state_pending(&x->st))
			continue;
		buf_reset(&s->text);
		if (id_decode(x->kind, s->cur.ids.data + x->id_off, x->id_len, &s->text) == -1 ||
		    fn(arg, (const char *)s->text.data, s->text.len, x->st.status, &x->st.changed_at) == -1) {
			log_error("%s: building a digest", s->dir);
			return -1;
		}
		x->st.delivered = true;
		taken++;
	}
	if (request_seq > 0)
		s->cur.last_request = request_seq;
	else if (taken == 0)
		return 0;
	rec_count(&s->cur, &before);
	return store_save(s, &k, &s->cur, &keep, exists, &before);
}

/* Collect up to max keys from sweep_at whose records hold expired tombstones. */
static int
store_sweep_scan(struct store *s, const struct rec_keep *keep, size_t max, bool *wrapped)
{
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_cursor_op op = MDB_SET_RANGE;
	const char *why;
	size_t seen = 0;
	int rc;

	buf_reset(&s->sweep_keys);
	if ((rc = mdb_cursor_open(s->txn, s->dbi, &cur)) != 0) {
		store_lmdb_error(s, "mdb_cursor_open", rc);
		return -1;
	}
	k.mv_data = s->sweep_at.data;
	k.mv_size = s->sweep_at.len;
	if (k.mv_size == 0)
		op = MDB_FIRST;
	*wrapped = false;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (seen++ == max)
			break;
		if (rec_decode(&s->other, v.mv_data, v.mv_size, &why) == 0 && rec_any_expired(&s->other, keep)) {
			uint16_t len = (uint16_t)k.mv_size;
			if (buf_append(&s->sweep_keys, &len, sizeof(len)) == -1 ||
			    buf_append(&s->sweep_keys, k.mv_data, k.mv_size) == -1) {
				mdb_cursor_close(cur);
				return -1;
			}
		}
	}
	buf_reset(&s->sweep_at);
	if (rc == 0) {
		/* Stopped at the first key not looked at: the next call starts there. */
		if (buf_append(&s->sweep_at, k.mv_data, k.mv_size) == -1) {
			mdb_cursor_close(cur);
			return -1;
		}
	} else if (rc == MDB_NOTFOUND) {
		*wrapped = true;
	} else {
		store_lmdb_error(s, "mdb_cursor_get", rc);
		mdb_cursor_close(cur);
		return -1;
	}
	mdb_cursor_close(cur);
	return 0;
}

int
store_sweep(struct store *s, int64_t now_ms, int64_t retention_ms, size_t max_users, bool *wrapped)
{
	struct rec_keep keep = { true, now_ms, retention_ms };
	struct rec_counts before;
	const char *why;
	size_t off = 0;
	int rc;

	if (store_need_txn(s, "store_sweep") == -1 || store_sweep_scan(s, &keep, max_users, wrapped) == -1)
		return -1;
	/* Rewrite after the walk, so no cursor is open while records change. */
	while (off < s->sweep_keys.len) {
		MDB_val k, v;
		uint16_t len;

		memcpy(&len, s->sweep_keys.data + off, sizeof(len));
		k.mv_data = s->sweep_keys.data + off + sizeof(len);
		k.mv_size = len;
		off += sizeof(len) + len;
		if ((rc = mdb_get(s->txn, s->dbi, &k, &v)) != 0) {
			store_lmdb_error(s, "mdb_get", rc);
			return -1;
		}
		if (rec_decode(&s->cur, v.mv_data, v.mv_size, &why) == -1)
			continue;
		rec_count(&s->cur, &before);
		if (store_save(s, &k, &s->cur, &keep, true, &before) == -1)
			return -1;
	}
	return 0;
}

int
store_foreach_user(struct store *s, store_user_fn fn, void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret = 0;

	if (s->txn != NULL) {
		log_errorx("%s: store_foreach_user: a write transaction is open", s->dir);
		return -1;
	}
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0) {
		store_lmdb_error(s, "mdb_txn_begin", rc);
		return -1;
	}
	if ((rc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		store_lmdb_error(s, "mdb_cursor_open", rc);
		mdb_txn_abort(txn);
		return -1;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (store_key_user(s, &k) == -1) {
			/* Not ours to interpret: leave it where an operator can look at it. */
			log_errorx("%s: skipping a record with a malformed key (%zu bytes)", s->dir,
			    k.mv_size);
			continue;
		}
		if ((ret = fn(arg, (const char *)s->text.data, s->text.len, v.mv_data, v.mv_size)) != 0)
			break;
	}
	if (ret == 0 && rc != MDB_NOTFOUND) {
		store_lmdb_error(s, "mdb_cursor_get", rc);
		ret = -1;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return ret;
}

static bool
store_state_equal(const struct alarm_state *a, const struct alarm_state *b)
{
	return a->status == b->status && a->delivered == b->delivered &&
	    a->changed_at.sec == b->changed_at.sec && a->changed_at.nsec == b->changed_at.nsec &&
	    a->changed_at.off_min == b->changed_at.off_min;
}

/* Merge every alarm of src into dst; *changed says whether dst differs now. */
static int
rec_merge(struct rec *dst, const struct rec *src, bool *changed)
{
	*changed = false;
	if (src->last_request > dst->last_request) {
		dst->last_request = src->last_request;
		*changed = true;
	}
	for (size_t i = 0; i < src->n; i++) {
		const struct rec_alarm *x = &src->a[i];
		const uint8_t *id = src->ids.data + x->id_off;
		size_t pos;

		if (rec_find(dst, x->kind, id, x->id_len, &pos)) {
			struct alarm_state old = dst->a[pos].st;

			state_merge(&dst->a[pos].st, &x->st);
			if (!store_state_equal(&old, &dst->a[pos].st))
				*changed = true;
		} else {
			if (rec_insert(dst, pos, x->kind, id, x->id_len, &x->st) == -1)
				return -1;
			*changed = true;
		}
	}
	return 0;
}

int
store_merge_user(struct store *s, const char *user, size_t user_len,
    const void *rec, size_t rec_len)
{
	struct rec_keep keep = { false, 0, 0 };
	struct rec_counts before;
	const char *why;
	MDB_val k;
	bool exists, changed;

	if (store_need_txn(s, "store_merge_user") == -1)
		return -1;
	if (rec_decode(&s->other, rec, rec_len, &why) == -1) {
		if (errno == ENOMEM)
			log_error("%s: decoding a record", s->dir);
		else
			store_corrupt(s, user, user_len, why);
		return -1;
	}
	if (store_key(s, user, user_len, &k) == -1 ||
	    store_load(s, user, user_len, &k, &s->cur, &exists) == -1)
		return -1;
	rec_count(&s->cur, &before);
	if (rec_merge(&s->cur, &s->other, &changed) == -1) {
		log_error("%s: merging a record", s->dir);
		return -1;
	}
	if (!changed)
		return 0;
	return store_save(s, &k, &s->cur, &keep, exists, &before);
}

int
store_delete_user(struct store *s, const char *user, size_t user_len)
{
	struct rec_counts before = { 0, 0 };
	const char *why;
	MDB_val k, v;
	int rc;

	if (store_need_txn(s, "store_delete_user") == -1 || store_key(s, user, user_len, &k) == -1)
		return -1;
	rc = mdb_get(s->txn, s->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		store_lmdb_error(s, "mdb_get", rc);
		return -1;
	}
	/* A corrupt record counted as a user with no alarms at open; undo exactly that. */
	if (rec_decode(&s->cur, v.mv_data, v.mv_size, &why) == 0)
		rec_count(&s->cur, &before);
	if ((rc = mdb_del(s->txn, s->dbi, &k, NULL)) != 0) {
		store_lmdb_error(s, "mdb_del", rc);
		return -1;
	}
	s->d_users--;
	s->d_alarms -= before.alarms;
	s->d_tombstones -= before.tombstones;
	return 0;
}
