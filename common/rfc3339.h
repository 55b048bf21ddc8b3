/*
 * rfc3339: parse and print the timestamps of the SPEC.
 *
 * Accepted form, exactly: YYYY-MM-DDTHH:MM:SS[.F{1,9}](Z|+hh:mm|-hh:mm),
 * upper-case T and Z, a real calendar date, hour < 24, minute and second
 * < 60, offset within +-23:59.  The original UTC offset is kept so a
 * digest can print the instant "with the same UTC offset it arrived with".
 */
#ifndef RFC3339_H
#define RFC3339_H

#include <stddef.h>
#include <stdint.h>

struct rfc3339_time {
	int64_t sec;      /* seconds since 1970-01-01T00:00:00Z (the instant) */
	int32_t nsec;     /* 0 .. 999999999 */
	int16_t off_min;  /* UTC offset it arrived with, minutes, -1439 .. 1439 */
};

/* Longest output of rfc3339_format, without the NUL: 2021-08-17T15:33:59.123456789+03:00 */
#define RFC3339_MAXLEN 35

/* 0 on success; -1 if `s` (not NUL-terminated, `len` bytes) is not valid. */
int rfc3339_parse(const char *s, size_t len, struct rfc3339_time *out);

/*
 * Go's time.RFC3339Nano form: local wall time at off_min, fraction without
 * trailing zeros (none when zero), "Z" for a zero offset.  Writes at most
 * RFC3339_MAXLEN + 1 bytes into buf (cap must be >= RFC3339_MAXLEN + 1);
 * returns the length written, without the NUL.
 */
size_t rfc3339_format(const struct rfc3339_time *t, char *buf, size_t cap);

/* Compare instants only (offset ignored): <0, 0, >0. */
int rfc3339_cmp(const struct rfc3339_time *a, const struct rfc3339_time *b);

#endif
