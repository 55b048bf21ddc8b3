/* itmap: a small string-keyed hash map (chained, growing) for the test's own bookkeeping. */
#ifndef ITMAP_H
#define ITMAP_H

#include <stddef.h>
#include <stdint.h>

struct itmap_ent {
	struct itmap_ent *next;
	uint32_t hash;
	size_t klen;
	void *val;
	char key[];      /* klen bytes + NUL */
};

struct itmap {
	struct itmap_ent **buckets;
	size_t nbuckets;
	size_t count;
};

/* NULL when absent. */
void *itmap_get(const struct itmap *m, const char *key, size_t klen);
/* Insert a key that is not present yet; 0, or -1 on ENOMEM. */
int itmap_put(struct itmap *m, const char *key, size_t klen, void *val);
/* Free the table; free_val (may be NULL) is called on every value. */
void itmap_free(struct itmap *m, void (*free_val)(void *));

#endif
