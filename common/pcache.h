/*
 * pcache: keep a store file's page cache in base pages.
 *
 * Linux caches a file in large folios (up to 2 MiB; ext4 does so since
 * 6.16) when it is read ahead or written in long runs, and a folio is
 * dirtied and accounted whole: one 4 KiB LMDB page changed inside a
 * 256 KiB folio dirties 256 KiB.  An LMDB writer changes scattered 4 KiB
 * pages, so a store cached in large folios costs tens of times the bytes
 * it changes (measured here: 200 KiB per 4 KiB pwrite after a sequential
 * read of the file, 4 KiB once the file is cached in base pages).
 *
 * Base pages come from reads that do not read ahead: LMDB's own mapping
 * opened with MDB_NORDAHEAD (MADV_RANDOM), and reads on a descriptor
 * advised POSIX_FADV_RANDOM.  What a writer appends in runs is cached
 * large again; pcache_drop lets the next read bring it back in base pages.
 */
#ifndef PCACHE_H
#define PCACHE_H

#include <sys/types.h>

/*
 * Drop the clean cached pages of the file at path and read it back in
 * base pages (one sequential pass, no read-ahead folios).  Only speed
 * depends on it: a failure is logged as a warning and changes nothing
 * else.  A file that is not there is not an error.
 */
void pcache_reset(const char *path);
/* Drop the clean cached pages of [off, off + len) of fd; pages in use stay. */
void pcache_drop(int fd, off_t off, off_t len, const char *path);

#endif
