/* Paged KV block manager with a prefix cache (see kv_blocks.h). */
#include "kv_blocks.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

enum { IN_NONE = 0, IN_FREE = 1, IN_LRU = 2 };

typedef struct kv_block {
    int32_t ref;            /* sequences referencing the block */
    int32_t prev, next;     /* LRU links (doubly) or free-list link (next only); -1 = none */
    int32_t hnext;          /* next block in the same hash bucket; -1 = end */
    int32_t listed;         /* IN_NONE (used), IN_FREE, IN_LRU */
    uint64_t hash;          /* chained hash & hash_mask; valid when serial != 0 */
    uint64_t serial;        /* != 0: registered in the prefix cache, never reused */
    uint64_t parent_serial; /* serial of the previous block of the prefix (0: first block) */
} kv_block;

struct st_kv_blocks {
    int n_blocks, block_size, prefix_cache;
    kv_block *b;            /* (n_blocks,) */
    int32_t *tokens;        /* (n_blocks, block_size) tokens of registered blocks */
    int32_t *buckets;       /* (bucket_mask + 1,) first block of each hash bucket; -1 = empty */
    uint64_t bucket_mask;
    int32_t free_head;      /* free list, used as a stack */
    int32_t lru_head, lru_tail; /* cached blocks, least recently released at head */
    int n_free, n_used, n_cached;
    uint64_t next_serial;
    uint64_t hash_mask;     /* all ones except under the test hook */
    uint64_t lookups, hits, evictions;
};

/* ---- hashing ------------------------------------------------------------------ */
/* A 64-bit bijective finaliser (the splitmix64 constants): every input bit
 * affects every output bit. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t st_kv_hash_block(uint64_t prev, const int32_t *tokens, int n)
{
    uint64_t h = mix64(prev ^ 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)(uint32_t)n << 32);
    int i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t w = (uint64_t)(uint32_t)tokens[i] | (uint64_t)(uint32_t)tokens[i + 1] << 32;
        h = mix64(h ^ w) + 0x632be59bd9b4e019ULL;
    }
    if (i < n)
        h = mix64(h ^ (uint64_t)(uint32_t)tokens[i]) + 0x632be59bd9b4e019ULL;
    return mix64(h);
}

/* ---- lifecycle ------------------------------------------------------------------ */
int st_kv_blocks_create(int n_blocks, int block_size, int prefix_cache, st_kv_blocks **out)
{
    *out = NULL;
    if (n_blocks < 1 || n_blocks > INT32_MAX / 2)
        return st_err(ST_EINVAL, "kv blocks: %d blocks is out of range", n_blocks);
    if (block_size < 1 || block_size > 4096)
        return st_err(ST_EINVAL, "kv blocks: block size %d is out of range [1, 4096]", block_size);
    size_t tok_count;
    if (st_mul_ok((size_t)n_blocks, (size_t)block_size, &tok_count))
        return st_err(ST_ERANGE, "kv blocks: %d x %d token slots overflow", n_blocks, block_size);
    st_kv_blocks *kb = st_xcalloc(1, sizeof *kb);
    kb->n_blocks = n_blocks;
    kb->block_size = block_size;
    kb->prefix_cache = prefix_cache ? 1 : 0;
    kb->b = st_xmalloc((size_t)n_blocks * sizeof *kb->b);
    kb->tokens = kb->prefix_cache ? st_xmalloc(tok_count * sizeof(int32_t)) : NULL;
    uint64_t nb = 16;
    while (nb < (uint64_t)n_blocks)
        nb <<= 1;
    kb->bucket_mask = nb - 1;
    kb->buckets = st_xmalloc(nb * sizeof(int32_t));
    for (uint64_t i = 0; i < nb; i++)
        kb->buckets[i] = -1;
    /* free list in id order: block 0 is handed out first */
    for (int i = 0; i < n_blocks; i++)
        kb->b[i] = (kv_block){.ref = 0, .prev = -1, .next = i + 1 < n_blocks ? i + 1 : -1, .hnext = -1,
                              .listed = IN_FREE};
    kb->free_head = 0;
    kb->lru_head = kb->lru_tail = -1;
    kb->n_free = n_blocks;
    kb->next_serial = 1;
    kb->hash_mask = ~0ULL;
    *out = kb;
    return ST_OK;
}

void st_kv_blocks_destroy(st_kv_blocks *kb)
{
    if (!kb)
        return;
    free(kb->b);
    free(kb->tokens);
    free(kb->buckets);
    free(kb);
}

int st_kv_blocks_block_size(const st_kv_blocks *kb) { return kb->block_size; }
int st_kv_blocks_total(const st_kv_blocks *kb) { return kb->n_blocks; }
int st_kv_blocks_available(const st_kv_blocks *kb) { return kb->n_free + kb->n_cached; }
void st_kv_blocks_test_hash_mask(st_kv_blocks *kb, uint64_t mask) { kb->hash_mask = mask; }

int st_kv_blocks_ref(const st_kv_blocks *kb, int id)
{
    return id >= 0 && id < kb->n_blocks ? kb->b[id].ref : -1;
}

void st_kv_blocks_get_stats(const st_kv_blocks *kb, st_kv_blocks_stats *s)
{
    *s = (st_kv_blocks_stats){.n_blocks = kb->n_blocks,
                              .block_size = kb->block_size,
                              .n_free = kb->n_free,
                              .n_used = kb->n_used,
                              .n_cached = kb->n_cached,
                              .lookups = kb->lookups,
                              .hits = kb->hits,
                              .evictions = kb->evictions};
}

/* ---- lists and the hash index ------------------------------------------------ */
static void lru_unlink(st_kv_blocks *kb, int32_t id)
{
    kv_block *x = &kb->b[id];
    if (x->prev >= 0)
        kb->b[x->prev].next = x->next;
    else
        kb->lru_head = x->next;
    if (x->next >= 0)
        kb->b[x->next].prev = x->prev;
    else
        kb->lru_tail = x->prev;
    x->prev = x->next = -1;
    x->listed = IN_NONE;
}

static void lru_append(st_kv_blocks *kb, int32_t id)
{
    kv_block *x = &kb->b[id];
    x->prev = kb->lru_tail;
    x->next = -1;
    if (kb->lru_tail >= 0)
        kb->b[kb->lru_tail].next = id;
    else
        kb->lru_head = id;
    kb->lru_tail = id;
    x->listed = IN_LRU;
}

static void index_remove(st_kv_blocks *kb, int32_t id)
{
    int32_t *link = &kb->buckets[kb->b[id].hash & kb->bucket_mask];
    while (*link >= 0 && *link != id)
        link = &kb->b[*link].hnext;
    if (*link == id)
        *link = kb->b[id].hnext;
    kb->b[id].hnext = -1;
    kb->b[id].serial = 0;
}

/* The registered block holding exactly `tokens` after the prefix `parent`,
 * or -1. The hash only narrows the search; tokens and parent decide. */
static int32_t index_find(const st_kv_blocks *kb, uint64_t hash, uint64_t parent, const int32_t *tokens)
{
    for (int32_t id = kb->buckets[hash & kb->bucket_mask]; id >= 0; id = kb->b[id].hnext) {
        const kv_block *x = &kb->b[id];
        if (x->hash == hash && x->parent_serial == parent &&
            !memcmp(kb->tokens + (size_t)id * kb->block_size, tokens, (size_t)kb->block_size * sizeof(int32_t)))
            return id;
    }
    return -1;
}

/* Take a block for new contents: the free list first, else evict the least
 * recently released cached block. The caller checked availability. */
static int32_t take_block(st_kv_blocks *kb)
{
    int32_t id;
    if (kb->free_head >= 0) {
        id = kb->free_head;
        kb->free_head = kb->b[id].next;
        kb->b[id].next = -1;
        kb->b[id].listed = IN_NONE;
        kb->n_free--;
    } else {
        id = kb->lru_head;
        lru_unlink(kb, id);
        index_remove(kb, id);
        kb->n_cached--;
        kb->evictions++;
    }
    kb->b[id].ref = 1;
    kb->n_used++;
    return id;
}

/* ---- per-sequence operations -------------------------------------------------- */
void st_kv_seq_init(st_kv_seq *s) { memset(s, 0, sizeof *s); }

static void seq_push(st_kv_seq *s, int32_t id)
{
    if (s->n_blocks == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->table = st_xrealloc(s->table, (size_t)s->cap * sizeof(int32_t));
    }
    s->table[s->n_blocks++] = id;
}

int st_kv_seq_match_prefix(st_kv_blocks *kb, st_kv_seq *s, const int32_t *tokens, int n)
{
    if (!kb->prefix_cache || s->n_blocks || n <= 1)
        return 0;
    int bs = kb->block_size, max = (n - 1) / bs, i = 0;
    uint64_t h = 0, serial = 0;
    for (; i < max; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        uint64_t nh = st_kv_hash_block(h, t, bs);
        kb->lookups++;
        int32_t id = index_find(kb, nh & kb->hash_mask, serial, t);
        if (id < 0)
            break;
        kb->hits++;
        kv_block *x = &kb->b[id];
        if (x->ref++ == 0) { /* cached -> used */
            lru_unlink(kb, id);
            kb->n_cached--;
            kb->n_used++;
        }
        seq_push(s, id);
        h = nh;
        serial = x->serial;
    }
    s->n_hashed = i;
    s->prefix_hash = h;
    s->prefix_serial = serial;
    s->n_committed = i * bs;
    return i * bs;
}

int st_kv_seq_reserve(st_kv_blocks *kb, st_kv_seq *s, int n_positions)
{
    if (n_positions < 0)
        return st_err(ST_EINVAL, "kv blocks: reserve of %d positions", n_positions);
    int need = (int)(((int64_t)n_positions + kb->block_size - 1) / kb->block_size) - s->n_blocks;
    if (need <= 0)
        return ST_OK;
    if (need > kb->n_free + kb->n_cached)
        return ST_EAGAIN; /* not an error worth a message: the caller preempts or waits */
    while (need-- > 0)
        seq_push(s, take_block(kb));
    return ST_OK;
}

void st_kv_seq_commit(st_kv_blocks *kb, st_kv_seq *s, const int32_t *tokens, int n)
{
    int bs = kb->block_size;
    if (n > s->n_blocks * bs)
        n = s->n_blocks * bs; /* programmer error; never register unreserved slots */
    if (n > s->n_committed)
        s->n_committed = n;
    int full = n / bs;
    for (; s->n_hashed < full; s->n_hashed++) {
        int i = s->n_hashed;
        const int32_t *t = tokens + (size_t)i * bs;
        uint64_t h = st_kv_hash_block(s->prefix_hash, t, bs);
        uint64_t serial = 0;
        /* a prefix whose identity was lost (caching off) cannot be extended */
        if (kb->prefix_cache && (i == 0 || s->prefix_serial)) {
            kv_block *x = &kb->b[s->table[i]];
            uint64_t mh = h & kb->hash_mask;
            int32_t twin = index_find(kb, mh, s->prefix_serial, t);
            if (x->serial) {
                serial = x->serial;
            } else if (twin >= 0) {
                /* an identical block is already registered (two equal prompts
                 * prefilled at once): keep ours private, follow its identity */
                serial = kb->b[twin].serial;
            } else {
                int32_t id = s->table[i];
                serial = x->serial = kb->next_serial++;
                x->hash = mh;
                x->parent_serial = s->prefix_serial;
                memcpy(kb->tokens + (size_t)id * bs, t, (size_t)bs * sizeof(int32_t));
                x->hnext = kb->buckets[mh & kb->bucket_mask];
                kb->buckets[mh & kb->bucket_mask] = id;
            }
        }
        s->prefix_hash = h;
        s->prefix_serial = serial;
    }
}

void st_kv_seq_free(st_kv_blocks *kb, st_kv_seq *s)
{
    for (int i = s->n_blocks - 1; i >= 0; i--) {
        int32_t id = s->table[i];
        kv_block *x = &kb->b[id];
        if (--x->ref > 0)
            continue;
        kb->n_used--;
        if (x->serial) {
            lru_append(kb, id);
            kb->n_cached++;
        } else {
            x->next = kb->free_head;
            x->listed = IN_FREE;
            kb->free_head = id;
            kb->n_free++;
        }
    }
    s->n_blocks = 0;
    s->n_committed = 0;
    s->n_hashed = 0;
    s->prefix_hash = 0;
    s->prefix_serial = 0;
}

void st_kv_seq_destroy(st_kv_blocks *kb, st_kv_seq *s)
{
    st_kv_seq_free(kb, s);
    free(s->table);
    memset(s, 0, sizeof *s);
}

/* ---- consistency check (tests) ------------------------------------------------- */
int st_kv_blocks_check(const st_kv_blocks *kb)
{
    int n = kb->n_blocks, nf = 0, nc = 0, nu = 0, nreg = 0, nindexed = 0;
    for (int32_t id = kb->free_head; id >= 0; id = kb->b[id].next) {
        const kv_block *x = &kb->b[id];
        if (++nf > n || x->listed != IN_FREE || x->ref != 0 || x->serial)
            return st_err(ST_EINVAL, "kv check: free list broken at block %d", id);
    }
    int32_t prev = -1;
    for (int32_t id = kb->lru_head; id >= 0; prev = id, id = kb->b[id].next) {
        const kv_block *x = &kb->b[id];
        if (++nc > n || x->listed != IN_LRU || x->ref != 0 || !x->serial || x->prev != prev)
            return st_err(ST_EINVAL, "kv check: LRU list broken at block %d", id);
    }
    if (prev != kb->lru_tail)
        return st_err(ST_EINVAL, "kv check: LRU tail %d, walk ended at %d", kb->lru_tail, prev);
    for (int id = 0; id < n; id++) {
        const kv_block *x = &kb->b[id];
        if (x->ref < 0)
            return st_err(ST_EINVAL, "kv check: block %d has refcount %d", id, x->ref);
        if (x->ref > 0) {
            nu++;
            if (x->listed != IN_NONE)
                return st_err(ST_EINVAL, "kv check: referenced block %d is on a list", id);
        } else if (x->listed == IN_NONE) {
            return st_err(ST_EINVAL, "kv check: block %d is unreferenced and on no list (leak)", id);
        }
        nreg += x->serial != 0;
    }
    for (uint64_t bkt = 0; bkt <= kb->bucket_mask; bkt++)
        for (int32_t id = kb->buckets[bkt]; id >= 0; id = kb->b[id].hnext) {
            if (++nindexed > n || !kb->b[id].serial || (kb->b[id].hash & kb->bucket_mask) != bkt)
                return st_err(ST_EINVAL, "kv check: hash index broken at block %d", id);
        }
    if (nf != kb->n_free || nc != kb->n_cached || nu != kb->n_used)
        return st_err(ST_EINVAL, "kv check: counted free %d cached %d used %d, recorded %d %d %d", nf, nc, nu,
                      kb->n_free, kb->n_cached, kb->n_used);
    if (nf + nc + nu != n)
        return st_err(ST_EINVAL, "kv check: free %d + cached %d + used %d != %d blocks", nf, nc, nu, n);
    if (nindexed != nreg)
        return st_err(ST_EINVAL, "kv check: %d registered blocks, %d indexed", nreg, nindexed);
    return ST_OK;
}
