/* String hash and name index (see name_index.h). */
#include "name_index.h"

#include <stdlib.h>
#include <string.h>

#include "st_common.h"

uint64_t st_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

void st_name_index_init(st_name_index *ix, size_t n, st_name_at name_at, const void *ctx)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    ix->slots = st_xcalloc(cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    ix->name_at = name_at;
    ix->ctx = ctx;
}

void st_name_index_free(st_name_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
}

/* The slot holding name s, or the empty slot where it would go. */
static size_t probe(const st_name_index *ix, const char *s, size_t n)
{
    for (size_t k = st_hash_bytes(s, n) & ix->mask;; k = (k + 1) & ix->mask) {
        uint32_t v = ix->slots[k];
        if (!v)
            return k;
        size_t len;
        const char *name = ix->name_at(ix->ctx, v - 1, &len);
        if (len == n && memcmp(name, s, n) == 0)
            return k;
    }
}

int64_t st_name_index_find(const st_name_index *ix, const char *s, size_t n)
{
    if (!ix->slots || !s)
        return -1;
    uint32_t v = ix->slots[probe(ix, s, n)];
    return v ? (int64_t)v - 1 : -1;
}

int64_t st_name_index_add(st_name_index *ix, uint32_t i)
{
    size_t len;
    const char *name = ix->name_at(ix->ctx, i, &len);
    size_t k = probe(ix, name, len);
    if (ix->slots[k])
        return (int64_t)ix->slots[k] - 1;
    ix->slots[k] = i + 1;
    return -1;
}
