#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/buf.h"
#include "../common/clock.h"
#include "../common/frame.h"
#include "../common/hash.h"
#include "../common/layout.h"
#include "../common/log.h"
#include "../common/ring.h"
#include "spill.h"

#define SPILL_MAGIC "ADSPILL1"
#define SPILL_MAGIC_LEN 8
/* A record: u32 FNV-1a of what follows, i64 when it was routed (ms, monotonic), the frame. */
#define SPILL_REC_HDR 12
/* A file takes appends up to this size: small enough that its disk space comes back soon after the worker had it. */
#define SPILL_FILE_BYTES (8u << 20)
#define SPILL_READ_CHUNK (256u << 10)
#define SPILL_RETRY_MS 1000
#define SPILL_RELOG_MS 10000

struct spill_file {
	uint64_t seq;
	int fd;               /* -1 until its first sync creates it */
	bool named;           /* its directory entry is durable */
	bool sealed;          /* takes no more appends */
	bool adopted;         /* left by an earlier run */
	uint64_t bytes;       /* synced, magic included */
	uint64_t records;     /* synced */
	uint64_t fed_off;     /* where the next record to feed starts */
	uint64_t fed;         /* records fed (unsynced ones copied from the queue included) */
	uint64_t last_id;     /* the largest queue id of a record fed */
};

struct spill {
	char state_dir[PATH_MAX];
	int slot;
	uint64_t max_bytes;
	struct ring files;        /* of struct spill_file, oldest first; the last takes appends unless sealed */
	uint64_t feeding;         /* position in files of the one fed from */
	uint64_t next_seq;
	struct buf pending;       /* bytes appended to the last file since its last sync */
	uint64_t pending_records;
	uint64_t records, fed;    /* over every file, pending included */
	uint64_t bytes;           /* the same */
	struct buf rd;            /* bytes of file rd_seq from offset rd_off */
	uint64_t rd_seq, rd_off;
	size_t rd_len;            /* of the record spill_next returned */
	bool failing;
	int64_t retry_ms, logged_ms;
	int64_t opened_ms;
};

static struct spill_file *
spill_file_at(const struct spill *sp, uint64_t pos)
{
	return ring_at(&sp->files, pos);
}

static struct spill_file *
spill_last(const struct spill *sp)
{
	return ring_count(&sp->files) > 0 ? spill_file_at(sp, sp->files.tail - 1) : NULL;
}

static int
spill_path(const struct spill *sp, uint64_t seq, char *path, size_t len)
{
	return layout_spill_path(path, len, sp->state_dir, sp->slot, seq);
}

static uint32_t
spill_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
spill_le64(const uint8_t *p)
{
	return (uint64_t)spill_le32(p) | (uint64_t)spill_le32(p + 4) << 32;
}

/*
 * Is p[0..avail) a whole, intact record?  1 with *rec_len, 0 when more
 * bytes are needed, -1 when it is not a record (*why).
 */
static int
spill_record(const uint8_t *p, size_t avail, size_t *rec_len, const char **why)
{
	struct frame f;
	size_t used;
	uint32_t len;

	if (avail < SPILL_REC_HDR + FRAME_HDR_LEN)
		return 0;
	len = spill_le32(p + SPILL_REC_HDR);
	if (len < FRAME_HDR_LEN || len > FRAME_MAX_LEN) {
		*why = "frame length out of bounds";
		return -1;
	}
	if (avail < SPILL_REC_HDR + (size_t)len)
		return 0;
	if (spill_le32(p) != hash32(p + 4, SPILL_REC_HDR - 4 + (size_t)len)) {
		*why = "checksum mismatch";
		return -1;
	}
	if (frame_next(p + SPILL_REC_HDR, len, &f, &used, why) != 1 || used != len) {
		if (used != len)
			*why = "not one frame";
		return -1;
	}
	*rec_len = SPILL_REC_HDR + len;
	return 1;
}

static int
spill_fsync_dir(const struct spill *sp)
{
	int fd = open(sp->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd == -1)
		return -1;
	if (fsync(fd) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

/* ---- recovery ---- */

/*
 * The whole records at the start of an existing file: *valid bytes (magic
 * included), *records.  0, 1 when it does not start with the magic, or -1
 * (logged).
 */
static int
spill_check_file(int fd, const char *path, uint64_t *valid, uint64_t *records)
{
	struct buf b = { 0 };
	const char *why = "a record cut short";
	uint64_t off = SPILL_MAGIC_LEN;
	uint8_t magic[SPILL_MAGIC_LEN];
	ssize_t n;
	bool eof = false;
	int rc = 0;

	*valid = 0;
	*records = 0;
	if ((n = pread(fd, magic, sizeof(magic), 0)) == -1) {
		log_error("read %s", path);
		return -1;
	}
	/* Created, but nothing made it to disk: nothing in it was ever acked. */
	if (n == 0)
		return 0;
	if (n < SPILL_MAGIC_LEN || memcmp(magic, SPILL_MAGIC, SPILL_MAGIC_LEN) != 0)
		return 1;
	*valid = SPILL_MAGIC_LEN;
	while (!eof) {
		if (buf_reserve(&b, SPILL_READ_CHUNK) == -1) {
			log_error("reading %s", path);
			rc = -1;
			break;
		}
		if ((n = pread(fd, b.data + b.len, SPILL_READ_CHUNK, (off_t)(off + buf_unread(&b)))) == -1) {
			if (errno == EINTR)
				continue;
			log_error("read %s", path);
			rc = -1;
			break;
		}
		eof = n == 0;
		b.len += (size_t)n;
		for (;;) {
			size_t len;
			int r = spill_record(b.data + b.off, buf_unread(&b), &len, &why);
			if (r == 0)
				break;
			if (r == -1) {
				eof = true;
				break;
			}
			buf_consume(&b, len);
			off += len;
			(*records)++;
		}
		buf_compact(&b);
	}
	*valid = off;
	buf_free(&b);
	if (rc == 0) {
		struct stat st;
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > *valid)
			log_warnx("%s: %llu bytes after offset %llu are not a whole record (%s): dropped; "
			    "a write cut short by a crash, never acknowledged, so redelivered by the broker",
			    path, (unsigned long long)((uint64_t)st.st_size - *valid), (unsigned long long)*valid,
			    why);
	}
	return rc;
}

static int
spill_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The seqs of this slot's files, ascending, in *out (malloc'd); count or -1 (logged). */
static long
spill_list(const struct spill *sp, uint64_t **out)
{
	uint64_t *seqs = NULL, seq;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int slot;

	*out = NULL;
	if ((d = opendir(sp->state_dir)) == NULL) {
		log_error("opendir %s", sp->state_dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!layout_spill_parse(de->d_name, &slot, &seq) || slot != sp->slot)
			continue;
		if (n == cap) {
			uint64_t *m = realloc(seqs, (cap ? cap * 2 : 16) * sizeof(*seqs));
			if (m == NULL) {
				log_error("listing the spill files of worker %d", sp->slot);
				free(seqs);
				closedir(d);
				return -1;
			}
			seqs = m;
			cap = cap ? cap * 2 : 16;
		}
		seqs[n++] = seq;
	}
	closedir(d);
	if (n > 1)
		qsort(seqs, n, sizeof(*seqs), spill_cmp_u64);
	*out = seqs;
	return (long)n;
}

/* Take over a file an earlier run left: its whole records are to be fed. */
static int
spill_adopt(struct spill *sp, uint64_t seq)
{
	char path[PATH_MAX];
	uint64_t valid, records;
	struct spill_file *f;
	int fd;

	if (spill_path(sp, seq, path, sizeof(path)) == -1)
		return -1;
	if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		log_error("open %s", path);
		return -1;
	}
	switch (spill_check_file(fd, path, &valid, &records)) {
	case -1:
		close(fd);
		return -1;
	case 1: {
		char bad[PATH_MAX + 8];
		close(fd);
		/* Maybe a damaged spill: never delete what may hold acked messages. */
		snprintf(bad, sizeof(bad), "%s.bad", path);
		if (rename(path, bad) == -1) {
			log_error("%s does not start like a spill file; renaming it to %s", path, bad);
			return -1;
		}
		log_errorx("%s does not start like a spill file: moved to %s and not applied; if it "
		    "held acked messages of worker %d, they are lost to its users", path, bad, sp->slot);
		return 0;
	}
	default:
		break;
	}
	if (records == 0) {
		close(fd);
		if (unlink(path) == -1)
			log_error("unlink %s (an empty spill file)", path);
		return 0;
	}
	/* Appends never go to an adopted file, but a torn tail would confuse the next start. */
	if (ftruncate(fd, (off_t)valid) == -1 || fdatasync(fd) == -1)
		log_error("cutting %s to its %llu valid bytes", path, (unsigned long long)valid);
	if ((f = ring_push(&sp->files)) == NULL) {
		log_error("adopting %s", path);
		close(fd);
		return -1;
	}
	*f = (struct spill_file){ .seq = seq, .fd = fd, .named = true, .sealed = true, .adopted = true,
	    .bytes = valid, .records = records, .fed_off = SPILL_MAGIC_LEN };
	sp->records += records;
	sp->bytes += valid;
	return 0;
}

struct spill *
spill_open(const char *state_dir, int slot, uint64_t max_bytes)
{
	struct spill *sp;
	uint64_t *seqs;
	long n;

	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		log_error("allocating the spill of worker %d", slot);
		return NULL;
	}
	sp->files.size = sizeof(struct spill_file);
	sp->slot = slot;
	sp->max_bytes = max_bytes;
	sp->next_seq = 1;
	sp->opened_ms = clock_mono_ms();
	if ((size_t)snprintf(sp->state_dir, sizeof(sp->state_dir), "%s", state_dir) >= sizeof(sp->state_dir)) {
		log_errorx("state_dir %s is too long", state_dir);
		free(sp);
		return NULL;
	}
	if ((n = spill_list(sp, &seqs)) == -1) {
		free(sp);
		return NULL;
	}
	for (long i = 0; i < n; i++) {
		if (spill_adopt(sp, seqs[i]) == -1) {
			free(seqs);
			spill_close(sp);
			return NULL;
		}
		sp->next_seq = seqs[i] + 1;
	}
	free(seqs);
	if (sp->records > 0)
		log_warnx("worker %d: %llu messages spilled before the last stop (%llu bytes in %zu files "
		    "spill-%d.*); acked already, they go to the worker first", slot,
		    (unsigned long long)sp->records, (unsigned long long)sp->bytes, ring_count(&sp->files), slot);
	return sp;
}

void
spill_close(struct spill *sp)
{
	if (sp == NULL)
		return;
	for (uint64_t p = sp->files.head; p < sp->files.tail; p++) {
		struct spill_file *f = spill_file_at(sp, p);
		if (f->fd != -1)
			close(f->fd);
	}
	ring_free(&sp->files);
	buf_free(&sp->pending);
	buf_free(&sp->rd);
	free(sp);
}

void
spill_set_max(struct spill *sp, uint64_t max_bytes)
{
	sp->max_bytes = max_bytes;
}

/* ---- appending ---- */

bool
spill_has_room(const struct spill *sp, size_t len)
{
	uint64_t need = SPILL_MAGIC_LEN + SPILL_REC_HDR + (uint64_t)len;

	if (sp->max_bytes == 0 || sp->failing)
		return false;
	/* Like the queue: an empty spill takes one record of any size. */
	return sp->bytes == 0 || sp->bytes + need <= sp->max_bytes;
}

/* The file appends go to, started (its magic pending) when there is none. */
static struct spill_file *
spill_tail_file(struct spill *sp)
{
	struct spill_file *f = spill_last(sp);

	if (f != NULL && !f->sealed)
		return f;
	if (buf_reserve(&sp->pending, SPILL_MAGIC_LEN) == -1 || (f = ring_push(&sp->files)) == NULL)
		return NULL;
	*f = (struct spill_file){ .seq = sp->next_seq++, .fd = -1, .fed_off = SPILL_MAGIC_LEN };
	buf_append(&sp->pending, SPILL_MAGIC, SPILL_MAGIC_LEN);
	sp->bytes += SPILL_MAGIC_LEN;
	return f;
}

static struct spill_file *
spill_put(struct spill *sp, const uint8_t *frame, size_t len, int64_t at_ms)
{
	uint8_t hdr[SPILL_REC_HDR];
	struct spill_file *f;
	uint64_t at = (uint64_t)at_ms;
	uint32_t h;

	if ((f = spill_tail_file(sp)) == NULL ||
	    buf_reserve(&sp->pending, SPILL_REC_HDR + len) == -1) {
		log_error("spill of worker %d: queueing a frame of %zu bytes", sp->slot, len);
		return NULL;
	}
	for (int i = 0; i < 8; i++)
		hdr[4 + i] = (uint8_t)(at >> (8 * i));
	/* FNV-1a runs byte by byte: the time, then the frame, as if contiguous. */
	h = hash32(hdr + 4, 8);
	for (size_t i = 0; i < len; i++)
		h = (h ^ frame[i]) * 16777619u;
	for (int i = 0; i < 4; i++)
		hdr[i] = (uint8_t)(h >> (8 * i));
	buf_append(&sp->pending, hdr, sizeof(hdr));
	buf_append(&sp->pending, frame, len);
	sp->pending_records++;
	sp->records++;
	sp->bytes += SPILL_REC_HDR + len;
	return f;
}

int
spill_append(struct spill *sp, const uint8_t *frame, size_t len, int64_t at_ms)
{
	return spill_put(sp, frame, len, at_ms) == NULL ? -1 : 0;
}

int
spill_append_fed(struct spill *sp, const uint8_t *frame, size_t len, int64_t at_ms, uint64_t id)
{
	struct spill_file *f;

	/* Fed records must stay a prefix: nothing may wait to be fed before this one. */
	if (sp->records != sp->fed) {
		log_errorx("spill of worker %d: a queued frame after %llu unfed ones (a bug)", sp->slot,
		    (unsigned long long)(sp->records - sp->fed));
		return -1;
	}
	if ((f = spill_put(sp, frame, len, at_ms)) == NULL)
		return -1;
	f->fed_off += SPILL_REC_HDR + len;
	f->fed++;
	f->last_id = id;
	sp->fed++;
	sp->feeding = sp->files.tail - 1;
	return 0;
}

/* Write p[0..len) at off, all of it. */
static int
spill_pwrite(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void
spill_failed(struct spill *sp, struct spill_file *f, const char *path, const char *what)
{
	int64_t now = clock_mono_ms();
	int e = errno;

	/* Undo a partial write, so the retry writes the same bytes at the same place. */
	if (f->fd != -1 && ftruncate(f->fd, (off_t)f->bytes) == -1)
		log_error("ftruncate %s", path);
	errno = e;
	if (!sp->failing || now - sp->logged_ms >= SPILL_RELOG_MS) {
		log_error("spill of worker %d: %s %s; its %llu newest messages are not durable and stay "
		    "unacked; its users' intake waits until this works (retried every second)",
		    sp->slot, what, path, (unsigned long long)sp->pending_records);
		sp->logged_ms = now;
	}
	sp->failing = true;
	sp->retry_ms = now + SPILL_RETRY_MS;
}

int
spill_sync(struct spill *sp)
{
	struct spill_file *f = spill_last(sp);
	char path[PATH_MAX];

	if (buf_unread(&sp->pending) == 0 || f == NULL)
		return 0;
	if (sp->failing && clock_mono_ms() < sp->retry_ms)
		return -1;
	if (spill_path(sp, f->seq, path, sizeof(path)) == -1)
		return -1;
	if (f->fd == -1 && (f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600)) == -1) {
		spill_failed(sp, f, path, "creating");
		return -1;
	}
	if (spill_pwrite(f->fd, sp->pending.data + sp->pending.off, buf_unread(&sp->pending), f->bytes) == -1) {
		spill_failed(sp, f, path, "writing");
		return -1;
	}
	if (fdatasync(f->fd) == -1) {
		spill_failed(sp, f, path, "fdatasync");
		return -1;
	}
	/* A new file's name must be on disk too before anything in it is acked. */
	if (!f->named && spill_fsync_dir(sp) == -1) {
		spill_failed(sp, f, path, "fsync of the directory holding");
		return -1;
	}
	f->named = true;
	f->bytes += buf_unread(&sp->pending);
	f->records += sp->pending_records;
	buf_reset(&sp->pending);
	sp->pending_records = 0;
	if (sp->failing)
		log_info("spill of worker %d: %s written and synced again", sp->slot, path);
	sp->failing = false;
	if (f->bytes >= SPILL_FILE_BYTES)
		f->sealed = true;
	return 1;
}

/* ---- feeding ---- */

/* Make rd hold bytes [off, off + need) of file f (reading ahead); 0, or -1 (logged). */
static int
spill_read(struct spill *sp, const struct spill_file *f, uint64_t off, size_t need)
{
	char path[PATH_MAX];
	size_t want, got = 0;

	if (sp->rd_seq == f->seq && off >= sp->rd_off && off + need <= sp->rd_off + buf_unread(&sp->rd))
		return 0;
	want = need > SPILL_READ_CHUNK ? need : SPILL_READ_CHUNK;
	if (want > f->bytes - off)
		want = (size_t)(f->bytes - off);
	buf_reset(&sp->rd);
	sp->rd_seq = 0;
	if (buf_reserve(&sp->rd, want) == -1) {
		log_error("spill of worker %d: a read buffer of %zu bytes", sp->slot, want);
		return -1;
	}
	while (got < want) {
		ssize_t n = pread(f->fd, sp->rd.data + got, want - got, (off_t)(off + got));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			if (spill_path(sp, f->seq, path, sizeof(path)) == 0)
				log_error("spill of worker %d: reading %s at offset %llu", sp->slot, path,
				    (unsigned long long)(off + got));
			return -1;
		}
		got += (size_t)n;
	}
	sp->rd.len = got;
	sp->rd_seq = f->seq;
	sp->rd_off = off;
	return got >= need ? 0 : -1;
}

/* What is left of file f cannot be read: say so loudly, and go on with the next file. */
static void
spill_skip_rest(struct spill *sp, struct spill_file *f, const char *why)
{
	char path[PATH_MAX];
	uint64_t lost = f->records > f->fed ? f->records - f->fed : 0;

	if (spill_path(sp, f->seq, path, sizeof(path)) == -1)
		path[0] = '\0';
	log_errorx("spill of worker %d: %s is unreadable at offset %llu (%s): %llu acked messages in it "
	    "are LOST for its users", sp->slot, path, (unsigned long long)f->fed_off, why,
	    (unsigned long long)lost);
	f->fed += lost;
	sp->fed += lost;
	f->fed_off = f->bytes;
}

int
spill_next(struct spill *sp, const uint8_t **frame, size_t *len, int64_t *at_ms)
{
	for (;;) {
		const char *why = "cut short";
		struct spill_file *f;
		const uint8_t *rec;
		size_t rec_len;
		int r;

		while (sp->feeding < sp->files.head)
			sp->feeding = sp->files.head;
		if (sp->feeding >= sp->files.tail)
			return 0;
		f = spill_file_at(sp, sp->feeding);
		if (f->fed_off >= f->bytes) {
			/* The last file: what is left is unsynced (or nothing). */
			if (sp->feeding == sp->files.tail - 1)
				return 0;
			sp->feeding++;
			continue;
		}
		if (spill_read(sp, f, f->fed_off, SPILL_REC_HDR + FRAME_HDR_LEN) == -1) {
			spill_skip_rest(sp, f, "read error, or a record cut short");
			continue;
		}
		rec = (const uint8_t *)sp->rd.data + (f->fed_off - sp->rd_off);
		r = spill_record(rec, (size_t)(sp->rd_off + buf_unread(&sp->rd) - f->fed_off), &rec_len, &why);
		if (r == 0) {
			uint32_t flen = spill_le32(rec + SPILL_REC_HDR);
			if (f->fed_off + SPILL_REC_HDR + flen > f->bytes ||
			    spill_read(sp, f, f->fed_off, SPILL_REC_HDR + flen) == -1) {
				spill_skip_rest(sp, f, "a record runs past the synced end");
				continue;
			}
			rec = (const uint8_t *)sp->rd.data + (f->fed_off - sp->rd_off);
			r = spill_record(rec, (size_t)(sp->rd_off + buf_unread(&sp->rd) - f->fed_off), &rec_len,
			    &why);
		}
		if (r != 1) {
			spill_skip_rest(sp, f, why);
			continue;
		}
		*frame = rec + SPILL_REC_HDR;
		*len = rec_len - SPILL_REC_HDR;
		/* A time from an earlier process's clock means nothing here: those count from our start. */
		*at_ms = f->adopted ? sp->opened_ms : (int64_t)spill_le64(rec + 4);
		sp->rd_len = rec_len;
		return 1;
	}
}

void
spill_fed(struct spill *sp, uint64_t id)
{
	struct spill_file *f = spill_file_at(sp, sp->feeding);

	f->fed_off += sp->rd_len;
	f->fed++;
	f->last_id = id;
	sp->fed++;
}

void
spill_retire(struct spill *sp, uint64_t upto)
{
	while (ring_count(&sp->files) > 0) {
		struct spill_file *f = spill_file_at(sp, sp->files.head);
		bool last = sp->files.head == sp->files.tail - 1;
		char path[PATH_MAX];

		/* All fed, all synced, and the worker has every one of them. */
		if (f->fed < f->records || (last && buf_unread(&sp->pending) > 0) || f->last_id > upto)
			return;
		if (f->fd != -1)
			close(f->fd);
		/* A file left behind by a failed unlink only costs a harmless replay at the next start. */
		if (spill_path(sp, f->seq, path, sizeof(path)) == 0 && unlink(path) == -1 && errno != ENOENT)
			log_error("unlink %s", path);
		if (sp->rd_seq == f->seq)
			sp->rd_seq = 0;
		sp->records -= f->records;
		sp->fed -= f->fed;
		sp->bytes -= f->bytes;
		ring_shift(&sp->files);
	}
}

/* ---- state ---- */

uint64_t
spill_unfed(const struct spill *sp)
{
	return sp->records - sp->fed;
}

uint64_t
spill_records(const struct spill *sp)
{
	return sp->records;
}

uint64_t
spill_bytes(const struct spill *sp)
{
	return sp->bytes;
}

bool
spill_empty(const struct spill *sp)
{
	return ring_count(&sp->files) == 0 && buf_unread(&sp->pending) == 0;
}

int
spill_scan(const char *state_dir)
{
	struct dirent *de;
	uint64_t seq;
	int slot, top = 0;
	DIR *d;

	if ((d = opendir(state_dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("opendir %s", state_dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL)
		if (layout_spill_parse(de->d_name, &slot, &seq) && slot + 1 > top)
			top = slot + 1;
	closedir(d);
	return top;
}
