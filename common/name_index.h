/* A string hash and an open-addressing index from names to entry numbers,
 * for tables that keep their own entries (GGUF keys and tensors,
 * safetensors tensors): the caller says how to read entry i's name. */
#ifndef ST_NAME_INDEX_H
#define ST_NAME_INDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FNV-1a over n bytes, with a final xor-shift so low bits mix well. */
uint64_t st_hash_bytes(const void *p, size_t n);

/* Name of entry i (len bytes, not necessarily NUL-terminated). */
typedef const char *(*st_name_at)(const void *ctx, uint32_t i, size_t *len);

typedef struct st_name_index {
    uint32_t *slots;   /* entry + 1; 0 = empty */
    size_t mask;       /* capacity - 1 (a power of two, >= 2 x entries) */
    st_name_at name_at;
    const void *ctx;
} st_name_index;

/* Room for n entries. */
void st_name_index_init(st_name_index *ix, size_t n, st_name_at name_at, const void *ctx);
void st_name_index_free(st_name_index *ix);
/* Entry named s (n bytes), or -1. */
int64_t st_name_index_find(const st_name_index *ix, const char *s, size_t n);
/* Add entry i; returns -1, or the entry that already has its name (then
 * nothing is added). At most the n entries given to init. */
int64_t st_name_index_add(st_name_index *ix, uint32_t i);

#ifdef __cplusplus
}
#endif
#endif
