/*
 * pcache: keep a store file's page cache in base pages.
 *
 * Linux caches a file in large folios (up to 2 MiB; ext4 does so since
 * 6.16) when it reads ahead or when one write covers a long run, and a
 * folio is dirtied and accounted whole: one 4 KiB LMDB page changed
 * inside a 256 KiB folio dirties 256 KiB.  An LMDB writer changes
 * scattered 4 KiB pages, so a store cached in large folios costs tens of
 * times the bytes it changes (measured here: 200 KiB per 4 KiB pwrite
 * after a sequential read of the file, 4 KiB once it is cached in base
 * pages).
 *
 * Base pages come from reads that do not read ahead: LMDB's map opened
 * with MDB_NORDAHEAD (MADV_RANDOM), and reads on a descriptor advised
 * POSIX_FADV_RANDOM.  LMDB appends to the file in runs, which would be
 * cached large, so the file is kept a margin longer than its data (a
 * hole: no disk space) and that margin is read into the cache ahead of
 * the appends, as zero-filled base pages the appends then fill.
 *
 * A small store is left alone: a commit rewrites most of its pages
 * anyway, so large folios cost it nothing, and base pages cost it more
 * calls per page written.  The writer opens its LMDB map with
 * MDB_NORDAHEAD when pcache_active says so right after pcache_open.
 *
 * Only speed depends on any of this: every failure is logged as a
 * warning and changes nothing else.
 */
#ifndef PCACHE_H
#define PCACHE_H

#include <stdbool.h>
#include <sys/types.h>

struct pcache;

/* The size from which a store is kept in base pages. */
#define PCACHE_MIN_BYTES ((off_t)16 << 20)

/*
 * The writer's file at path (created empty if missing, as LMDB would).
 * From PCACHE_MIN_BYTES on, its clean cached pages are dropped and read
 * back in base pages, one sequential pass.  NULL when that failed
 * (warned): the caller goes on.
 */
struct pcache *pcache_open(const char *path);
/*
 * After a commit: the file's data now ends at end, and the file may not
 * grow past limit (the map's size).  The first time end reaches
 * PCACHE_MIN_BYTES the whole file is cached again in base pages;
 * from then on whatever the commit wrote past the cached margin is, and
 * the margin is renewed.
 */
void pcache_advance(struct pcache *pc, off_t end, off_t limit);
/* Is the file kept in base pages (its map should then not read ahead)? */
bool pcache_active(const struct pcache *pc);
void pcache_close(struct pcache *pc);

#endif
