#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "itmap.h"

void *
itmap_get(const struct itmap *m, const char *key, size_t klen)
{
	uint32_t h;

	if (m->nbuckets == 0)
		return NULL;
	h = hash32(key, klen);
	for (struct itmap_ent *e = m->buckets[h % m->nbuckets]; e != NULL; e = e->next)
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e->val;
	return NULL;
}

static int
itmap_grow(struct itmap *m)
{
	size_t nb = m->nbuckets ? m->nbuckets * 2 : 64;
	struct itmap_ent **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return -1;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct itmap_ent *e = m->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash % nb];
			b[e->hash % nb] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = nb;
	return 0;
}

int
itmap_put(struct itmap *m, const char *key, size_t klen, void *val)
{
	struct itmap_ent *e;

	if (m->count >= m->nbuckets && itmap_grow(m) == -1)
		return -1;
	if ((e = malloc(sizeof(*e) + klen + 1)) == NULL)
		return -1;
	e->hash = hash32(key, klen);
	e->klen = klen;
	e->val = val;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	e->next = m->buckets[e->hash % m->nbuckets];
	m->buckets[e->hash % m->nbuckets] = e;
	m->count++;
	return 0;
}

void
itmap_free(struct itmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct itmap_ent *e = m->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			if (free_val != NULL)
				free_val(e->val);
			free(e);
		}
	}
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}
