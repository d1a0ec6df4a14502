/* The paged KV block manager: which physical KV-cache blocks each sequence
 * owns, and a prefix cache of full blocks shared between sequences.
 *
 * A block holds `block_size` consecutive token positions of one sequence
 * (all layers, K and V). Every block is in exactly one of three states:
 *   free    - on the free list, holds nothing;
 *   used    - referenced by >= 1 sequence (ref > 0);
 *   cached  - ref == 0 but registered in the prefix cache: its KV is still
 *             valid and a later prompt with the same prefix can reuse it; it
 *             sits on an LRU list and is evicted (oldest first) when a
 *             sequence needs a block and the free list is empty.
 * so that n_blocks == n_free + n_used + n_cached at all times.
 *
 * Prefix cache. Only FULL blocks are registered, and a full block is never
 * written again (positions only advance), so shared blocks are read-only and
 * no copy-on-write is needed. A block's key is a chained 64-bit hash
 * H(hash of the previous block, tokens of this block); a lookup also
 * compares the stored tokens and the identity of the previous block (a
 * serial number given at registration and never reused), so a hash
 * collision can never hand a sequence the KV of a different prefix.
 *
 * Not thread-safe: one owner (the batcher thread) calls everything. */
#ifndef ST_KV_BLOCKS_H
#define ST_KV_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_KV_BLOCK_SIZE_DEFAULT 16

typedef struct st_kv_blocks st_kv_blocks;

/* One sequence's view of the cache, owned by the caller (zero-initialise,
 * or st_kv_seq_init). Fields are read-only outside kv_blocks.c. */
typedef struct st_kv_seq {
    int32_t *table;         /* (cap,) logical block i -> physical block id */
    int n_blocks;           /* entries used in table */
    int cap;
    int n_committed;        /* tokens whose KV is written (st_kv_seq_commit) */
    int n_hashed;           /* leading full blocks already offered to the prefix cache */
    uint64_t prefix_hash;   /* chained hash through block n_hashed - 1 (0 for none) */
    uint64_t prefix_serial; /* identity of that verified prefix (0 for none / unknown) */
} st_kv_seq;

/* Occupancy counters (a consistent snapshot). */
typedef struct st_kv_blocks_stats {
    int n_blocks, block_size;
    int n_free, n_used, n_cached;
    uint64_t lookups;        /* full blocks looked up in the prefix cache */
    uint64_t hits;           /* ... that were found */
    uint64_t evictions;      /* cached blocks reclaimed for new use */
} st_kv_blocks_stats;

/* n_blocks >= 1 physical blocks of block_size >= 1 token slots; prefix_cache
 * 0 disables sharing (blocks go straight back to the free list). */
int st_kv_blocks_create(int n_blocks, int block_size, int prefix_cache, st_kv_blocks **out);
void st_kv_blocks_destroy(st_kv_blocks *kb);

int st_kv_blocks_block_size(const st_kv_blocks *kb);
int st_kv_blocks_total(const st_kv_blocks *kb);
/* Blocks a sequence could get right now: free + cached (evictable). */
int st_kv_blocks_available(const st_kv_blocks *kb);
void st_kv_blocks_get_stats(const st_kv_blocks *kb, st_kv_blocks_stats *s);
/* Reference count of physical block id (-1 if id is out of range). */
int st_kv_blocks_ref(const st_kv_blocks *kb, int id);

/* Walk every list and recount: ST_OK when free/used/cached counts, list
 * links, the hash index and the refcount of `0 => listed` all agree, else
 * ST_EINVAL naming the first inconsistency. O(n_blocks); for tests. */
int st_kv_blocks_check(const st_kv_blocks *kb);

/* ---- per-sequence operations ---------------------------------------------------- */
void st_kv_seq_init(st_kv_seq *s);

/* Attach cached blocks matching the leading full blocks of tokens (n
 * tokens: the sequence's whole known text). s must be empty (no blocks).
 * At most (n - 1) / block_size blocks are matched, so the last token is
 * always computed again and its logits exist, and a partial last block is
 * never shared. Returns the number of tokens covered (a multiple of
 * block_size; 0 when prefix caching is off); s->n_committed is set to it. */
int st_kv_seq_match_prefix(st_kv_blocks *kb, st_kv_seq *s, const int32_t *tokens, int n);

/* Make s's table cover positions [0, n_positions), taking blocks from the
 * free list, else evicting the least recently used cached block. All or
 * nothing: returns ST_OK, or ST_EAGAIN (s unchanged) when too few blocks
 * are available. */
int st_kv_seq_reserve(st_kv_blocks *kb, st_kv_seq *s, int n_positions);

/* Record that the KV of tokens [0, n) is now written. Blocks that became
 * full are registered in the prefix cache (tokens: the sequence's first n
 * tokens). n must not exceed the reserved positions. */
void st_kv_seq_commit(st_kv_blocks *kb, st_kv_seq *s, const int32_t *tokens, int n);

/* Release every block of s: refcounts drop; registered blocks whose count
 * reaches 0 become cached (tail blocks first in LRU order, so that a
 * prefix's later blocks are evicted before its earlier ones), the others
 * free. s is left empty and reusable. */
void st_kv_seq_free(st_kv_blocks *kb, st_kv_seq *s);
/* st_kv_seq_free plus releasing the table memory. */
void st_kv_seq_destroy(st_kv_blocks *kb, st_kv_seq *s);

/* ---- capacity ---------------------------------------------------------------------- */
/* Bytes of one block over all layers of a stage: n_layers x 2 (K and V) x
 * n_kv_heads x head_dim x elem_bytes x block_size. 0 on overflow/bad input. */
size_t st_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int elem_bytes, int block_size);
/* Whole blocks that fit in `bytes` (capped at INT32_MAX / 2). */
int st_kv_blocks_for_bytes(size_t bytes, size_t block_bytes);
/* MemAvailable from /proc/meminfo, in bytes. ST_OK, or ST_EIO/ST_ENOENT. */
int st_mem_available(uint64_t *bytes);
/* Blocks for `fraction` (0, 1] of `avail` free bytes (MemAvailable, or a
 * GPU's free memory: st_backend_ops.mem_available). */
int st_kv_blocks_for_share(double fraction, uint64_t avail, size_t block_bytes, int *n_blocks);

/* ---- test hooks -------------------------------------------------------------------- */
/* Keep only the bits of every block hash in mask (0: every block collides),
 * to prove that lookups never trust the hash alone. Call before use. */
void st_kv_blocks_test_hash_mask(st_kv_blocks *kb, uint64_t mask);
/* The chained block hash: H(prev, tokens[0..n)). */
uint64_t st_kv_hash_block(uint64_t prev, const int32_t *tokens, int n);

#ifdef __cplusplus
}
#endif
#endif
