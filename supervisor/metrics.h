/*
 * metrics: the Prometheus text exposition format (version 0.0.4), written
 * by hand because Debian ships no C client for it.  A family is its
 * "# HELP" and "# TYPE" lines, then its samples; label values are escaped
 * (backslash, double quote, newline), help text too (backslash, newline);
 * histograms are cumulative _bucket lines up to le="+Inf", then _sum (in
 * seconds) and _count.  Every counter's name ends in _total.
 *
 * metrics_render writes the whole /metrics page from a snapshot (obs.h);
 * README's Observability section lists every name it writes.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

#include "../common/buf.h"
#include "../common/histo.h"
#include "obs.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Each returns 0, or -1 on ENOMEM (b then holds a partial page: discard it). */
int metrics_family(struct buf *b, const char *name, const char *type, const char *help);
/* One sample; label may be NULL (no labels), its value any bytes. */
int metrics_sample(struct buf *b, const char *name, const char *label, const char *value, uint64_t v);
int metrics_sample_f(struct buf *b, const char *name, const char *label, const char *value, double v);
/* A histogram's samples (family written by the caller), all with the one optional label. */
int metrics_histo(struct buf *b, const char *name, const char *label, const char *value,
    const struct histo *h);

int metrics_render(const struct obs_snap *s, struct buf *b);

#endif
