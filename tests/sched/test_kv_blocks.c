/* KV block manager: allocation and refcounts, prefix-cache hits, LRU
 * eviction order, collision safety, and a seeded random property test that
 * checks the accounting and the shared-block rules after every operation. */
#include <stdint.h>

#include "../../common/st_common.h"
#include "../../sched/kv_blocks.h"
#include "../test.h"

static void fill(int32_t *t, int n, int32_t base)
{
    for (int i = 0; i < n; i++)
        t[i] = base + i;
}

static int counts_add_up(const st_kv_blocks *kb)
{
    st_kv_blocks_stats s;
    st_kv_blocks_get_stats(kb, &s);
    return s.n_free + s.n_used + s.n_cached == s.n_blocks && st_kv_blocks_check(kb) == ST_OK;
}

static void test_alloc_free(void)
{
    st_kv_blocks *kb;
    CHECK(st_kv_blocks_create(8, 4, 1, &kb) == ST_OK);
    st_kv_seq a, b;
    st_kv_seq_init(&a);
    st_kv_seq_init(&b);
    CHECK(st_kv_seq_reserve(kb, &a, 10) == ST_OK);
    CHECK(a.n_blocks == 3);
    CHECK(st_kv_seq_reserve(kb, &a, 12) == ST_OK && a.n_blocks == 3); /* still covered */
    CHECK(st_kv_blocks_available(kb) == 5);
    CHECK(st_kv_seq_reserve(kb, &b, 24) == ST_EAGAIN); /* needs 6 of 5: all or nothing */
    CHECK(b.n_blocks == 0 && st_kv_blocks_available(kb) == 5);
    CHECK(st_kv_seq_reserve(kb, &b, 20) == ST_OK && b.n_blocks == 5);
    CHECK(st_kv_blocks_available(kb) == 0);
    for (int i = 0; i < a.n_blocks; i++)
        CHECK(st_kv_blocks_ref(kb, a.table[i]) == 1);
    CHECK(counts_add_up(kb));
    st_kv_seq_destroy(kb, &a);
    st_kv_seq_destroy(kb, &b);
    st_kv_blocks_stats s;
    st_kv_blocks_get_stats(kb, &s);
    CHECK(s.n_free == 8 && s.n_used == 0 && s.n_cached == 0); /* nothing committed: nothing cached */
    CHECK(counts_add_up(kb));
    st_kv_blocks_destroy(kb);
    CHECK(st_kv_blocks_create(0, 16, 1, &kb) == ST_EINVAL && !kb);
    CHECK(st_kv_blocks_create(4, 0, 1, &kb) == ST_EINVAL);
    CHECK(st_kv_blocks_create(1, 16, 1, &kb) == ST_OK);
    st_kv_blocks_destroy(kb);
}

static void test_prefix_hits(void)
{
    st_kv_blocks *kb;
    CHECK(st_kv_blocks_create(32, 4, 1, &kb) == ST_OK);
    int32_t t[32];
    fill(t, 32, 100);
    st_kv_seq a, b, c, d;
    st_kv_seq_init(&a), st_kv_seq_init(&b), st_kv_seq_init(&c), st_kv_seq_init(&d);
    CHECK(st_kv_seq_match_prefix(kb, &a, t, 21) == 0); /* empty cache */
    CHECK(st_kv_seq_reserve(kb, &a, 21) == ST_OK);
    st_kv_seq_commit(kb, &a, t, 21); /* 5 full blocks + 1 token */
    CHECK(a.n_hashed == 5);

    /* shares 3 full blocks, then differs */
    int32_t u[32];
    fill(u, 32, 100);
    u[13] = 7;
    CHECK(st_kv_seq_match_prefix(kb, &b, u, 30) == 12);
    for (int i = 0; i < 3; i++) {
        CHECK(b.table[i] == a.table[i]);
        CHECK(st_kv_blocks_ref(kb, a.table[i]) == 2);
    }
    CHECK(st_kv_blocks_ref(kb, a.table[3]) == 1);

    /* a prompt entirely covered by cached blocks still recomputes its last
     * block's tokens: 20 tokens -> at most (20-1)/4 = 4 blocks */
    CHECK(st_kv_seq_match_prefix(kb, &c, t, 20) == 16);
    /* the partial 6th block of a (token 20) is never shared */
    CHECK(st_kv_seq_match_prefix(kb, &d, t, 32) == 20);
    CHECK(d.n_committed == 20 && d.n_blocks == 5);
    CHECK(counts_add_up(kb));

    /* writing on after a hit: d reserves private blocks past the shared ones */
    CHECK(st_kv_seq_reserve(kb, &d, 32) == ST_OK && d.n_blocks == 8);
    for (int i = 5; i < 8; i++)
        CHECK(st_kv_blocks_ref(kb, d.table[i]) == 1);
    st_kv_seq_commit(kb, &d, t, 32);

    st_kv_seq_destroy(kb, &a), st_kv_seq_destroy(kb, &b), st_kv_seq_destroy(kb, &c), st_kv_seq_destroy(kb, &d);
    st_kv_blocks_stats s;
    st_kv_blocks_get_stats(kb, &s);
    CHECK(s.n_used == 0 && s.n_cached == 8); /* a's 5 + d's 3 further full blocks */
    CHECK(s.hits > 0 && s.hits <= s.lookups);
    CHECK(counts_add_up(kb));

    /* disabled: no sharing, blocks go straight back to the free list */
    st_kv_blocks *off;
    CHECK(st_kv_blocks_create(8, 4, 0, &off) == ST_OK);
    CHECK(st_kv_seq_reserve(off, &a, 9) == ST_OK);
    st_kv_seq_commit(off, &a, t, 9);
    st_kv_seq_free(off, &a);
    CHECK(st_kv_seq_match_prefix(off, &b, t, 9) == 0);
    st_kv_blocks_get_stats(off, &s);
    CHECK(s.n_free == 8 && s.n_cached == 0);
    st_kv_seq_destroy(off, &a), st_kv_seq_destroy(off, &b);
    st_kv_blocks_destroy(off);
    st_kv_blocks_destroy(kb);
}

static void test_lru_order(void)
{
    st_kv_blocks *kb;
    CHECK(st_kv_blocks_create(4, 4, 1, &kb) == ST_OK);
    int32_t ta[9], tb[9];
    fill(ta, 9, 10);
    fill(tb, 9, 50);
    st_kv_seq a, b, c;
    st_kv_seq_init(&a), st_kv_seq_init(&b), st_kv_seq_init(&c);
    CHECK(st_kv_seq_reserve(kb, &a, 8) == ST_OK);
    st_kv_seq_commit(kb, &a, ta, 8);
    CHECK(st_kv_seq_reserve(kb, &b, 8) == ST_OK);
    st_kv_seq_commit(kb, &b, tb, 8);
    int32_t a0 = a.table[0], a1 = a.table[1], b0 = b.table[0], b1 = b.table[1];
    st_kv_seq_free(kb, &a); /* LRU: a1 a0 (tail blocks first) */
    st_kv_seq_free(kb, &b); /* LRU: a1 a0 b1 b0 */
    /* touching a's prefix again moves its blocks to the recent end */
    CHECK(st_kv_seq_match_prefix(kb, &a, ta, 9) == 8);
    st_kv_seq_free(kb, &a); /* LRU: b1 b0 a1 a0 */
    CHECK(counts_add_up(kb));
    CHECK(st_kv_seq_reserve(kb, &c, 4) == ST_OK && c.table[0] == b1);
    CHECK(st_kv_seq_match_prefix(kb, &b, tb, 9) == 4); /* b's tail block was evicted */
    st_kv_seq_free(kb, &b);                           /* LRU: a1 a0 b0 */
    CHECK(st_kv_seq_reserve(kb, &c, 16) == ST_OK);
    CHECK(c.table[1] == a1 && c.table[2] == a0 && c.table[3] == b0);
    st_kv_blocks_stats s;
    st_kv_blocks_get_stats(kb, &s);
    CHECK(s.evictions == 4 && s.n_used == 4 && s.n_cached == 0);
    CHECK(st_kv_seq_match_prefix(kb, &a, ta, 9) == 0); /* evicted blocks are gone from the index */
    CHECK(counts_add_up(kb));
    st_kv_seq_destroy(kb, &a), st_kv_seq_destroy(kb, &b), st_kv_seq_destroy(kb, &c);
    st_kv_blocks_destroy(kb);
}

/* Every hash collides: only the stored tokens and the parent identity may
 * decide a hit. */
static void test_collisions(void)
{
    st_kv_blocks *kb;
    CHECK(st_kv_blocks_create(16, 4, 1, &kb) == ST_OK);
    st_kv_blocks_test_hash_mask(kb, 0);
    int32_t x[9] = {1, 2, 3, 4, 9, 9, 9, 9, 0}, y[9] = {5, 6, 7, 8, 9, 9, 9, 9, 0};
    int32_t z[9] = {9, 9, 9, 9, 9, 9, 9, 9, 0};
    st_kv_seq a, b, c;
    st_kv_seq_init(&a), st_kv_seq_init(&b), st_kv_seq_init(&c);
    CHECK(st_kv_seq_reserve(kb, &a, 8) == ST_OK);
    st_kv_seq_commit(kb, &a, x, 8);
    CHECK(st_kv_seq_reserve(kb, &b, 8) == ST_OK);
    st_kv_seq_commit(kb, &b, y, 8);
    /* same second-block tokens, different first block: must follow y's chain */
    CHECK(st_kv_seq_match_prefix(kb, &c, y, 9) == 8);
    CHECK(c.table[0] == b.table[0] && c.table[1] == b.table[1]);
    st_kv_seq_free(kb, &c);
    /* a block of 9s exists (second block of x and y) but never as a first block */
    CHECK(st_kv_seq_match_prefix(kb, &c, z, 9) == 0);
    st_kv_seq_free(kb, &c);
    /* the real hash differs, the masked one does not: check the hash is good */
    CHECK(st_kv_hash_block(0, x, 4) != st_kv_hash_block(0, y, 4));
    CHECK(st_kv_hash_block(0, x + 4, 4) != st_kv_hash_block(st_kv_hash_block(0, x, 4), x + 4, 4));
    CHECK(counts_add_up(kb));
    st_kv_seq_destroy(kb, &a), st_kv_seq_destroy(kb, &b), st_kv_seq_destroy(kb, &c);
    st_kv_blocks_destroy(kb);
}

/* ---- random property test -------------------------------------------------------- */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

/* An independent fingerprint of tokens [0, n): what a block ending at n
 * "contains" in the simulated KV cache. */
static uint64_t fingerprint(const int32_t *t, int n)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint32_t)t[i]) * 1099511628211ULL;
    return h;
}

#define NSEQ 12
#define MAXT 80

typedef struct {
    int live;
    st_kv_seq kv;
    int32_t t[MAXT];
    int n; /* known tokens */
} sim_seq;

static void random_property(uint64_t seed, int n_blocks, int bs, int prefix_cache, uint64_t mask, int steps)
{
    rng_state = seed;
    st_kv_blocks *kb;
    CHECK(st_kv_blocks_create(n_blocks, bs, prefix_cache, &kb) == ST_OK);
    st_kv_blocks_test_hash_mask(kb, mask);
    uint64_t *content = st_xcalloc((size_t)n_blocks, sizeof(uint64_t)); /* simulated KV per block */
    int *content_len = st_xcalloc((size_t)n_blocks, sizeof(int));
    int *refs = st_xmalloc((size_t)n_blocks * sizeof(int));
    sim_seq seqs[NSEQ] = {0};
    int32_t stems[4][MAXT]; /* shared prompt stems so that prefixes repeat */
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < MAXT; i++)
            stems[s][i] = (int32_t)rnd(3); /* tiny alphabet: many equal blocks */
    int bad_hits = 0, bad_writes = 0, hits = 0;
    for (int step = 0; step < steps; step++) {
        sim_seq *q = &seqs[rnd(NSEQ)];
        if (!q->live) { /* admit: a stem prefix plus random tail */
            int n = 1 + (int)rnd(40);
            int stem = (int)rnd(4), keep = (int)rnd((uint32_t)n + 1);
            for (int i = 0; i < n; i++)
                q->t[i] = i < keep ? stems[stem][i] : (int32_t)rnd(3);
            q->n = n;
            int got = st_kv_seq_match_prefix(kb, &q->kv, q->t, n);
            hits += got > 0;
            if (got % bs || got >= n || (!prefix_cache && got))
                bad_hits++;
            for (int i = 0; i < q->kv.n_blocks; i++) /* a hit must hold exactly this prefix */
                if (content_len[q->kv.table[i]] != (i + 1) * bs ||
                    content[q->kv.table[i]] != fingerprint(q->t, (i + 1) * bs))
                    bad_hits++;
            if (st_kv_seq_reserve(kb, &q->kv, n) != ST_OK) {
                st_kv_seq_free(kb, &q->kv);
                continue;
            }
            q->live = 1;
        } else if (rnd(5) == 0 || q->n >= MAXT - 8) {
            st_kv_seq_free(kb, &q->kv);
            q->live = 0;
        } else { /* compute what is pending, then maybe append tokens */
            int from = q->kv.n_committed, to = q->n;
            for (int p = from; p < to; p++) { /* "write" KV: only into exclusive blocks */
                int32_t id = q->kv.table[p / bs];
                if (st_kv_blocks_ref(kb, id) != 1)
                    bad_writes++;
                content[id] = fingerprint(q->t, p + 1);
                content_len[id] = p % bs + 1 + p / bs * bs;
            }
            st_kv_seq_commit(kb, &q->kv, q->t, to);
            int add = (int)rnd(6);
            if (add && st_kv_seq_reserve(kb, &q->kv, q->n + add) == ST_OK) {
                for (int i = 0; i < add; i++)
                    q->t[q->n + i] = (int32_t)rnd(3);
                q->n += add;
            }
        }
        /* invariants after every operation */
        CHECKF(st_kv_blocks_check(kb) == ST_OK, "%s (step %d)", st_errmsg(), step);
        for (int i = 0; i < n_blocks; i++)
            refs[i] = 0;
        for (int s = 0; s < NSEQ; s++)
            for (int i = 0; i < seqs[s].kv.n_blocks; i++)
                refs[seqs[s].kv.table[i]]++;
        int ref_mismatch = 0;
        for (int i = 0; i < n_blocks; i++)
            ref_mismatch += refs[i] != st_kv_blocks_ref(kb, i);
        CHECKF(ref_mismatch == 0, "step %d: %d refcounts disagree with the sequences' tables", step, ref_mismatch);
        if (ref_mismatch || test_failures)
            break;
    }
    CHECKF(bad_hits == 0, "seed %llu: %d wrong prefix hits", (unsigned long long)seed, bad_hits);
    CHECKF(bad_writes == 0, "seed %llu: %d writes into shared blocks", (unsigned long long)seed, bad_writes);
    if (prefix_cache)
        CHECKF(hits > 10, "seed %llu: only %d prefix hits, the test exercises too little", (unsigned long long)seed,
               hits);
    for (int s = 0; s < NSEQ; s++)
        st_kv_seq_destroy(kb, &seqs[s].kv);
    st_kv_blocks_stats st;
    st_kv_blocks_get_stats(kb, &st);
    CHECK(st.n_used == 0 && st.n_free + st.n_cached == n_blocks);
    CHECK(st_kv_blocks_check(kb) == ST_OK);
    free(content), free(content_len), free(refs);
    st_kv_blocks_destroy(kb);
}

static void test_capacity(void)
{
    /* 2 layers x 2 (K,V) x 2 heads x 32 dims x 2 bytes x 16 slots */
    CHECK(st_kv_block_bytes(2, 2, 32, 2, 16) == 8192);
    CHECK(st_kv_block_bytes(0, 2, 32, 2, 16) == 0);
    CHECK(st_kv_block_bytes(1 << 30, 1 << 30, 1 << 30, 2, 16) == 0); /* overflow */
    CHECK(st_kv_blocks_for_bytes(8192 * 10 + 5, 8192) == 10);
    CHECK(st_kv_blocks_for_bytes(100, 0) == 0);
    uint64_t avail;
    CHECK(st_mem_available(&avail) == ST_OK && avail > 0);
    int n;
    CHECK(st_kv_blocks_for_share(0.5, avail, 8192, &n) == ST_OK && n > 0);
    CHECK((uint64_t)n * 8192 <= avail / 2 && (uint64_t)(n + 1) * 8192 > avail / 2);
    CHECK(st_kv_blocks_for_share(0.25, 8192 * 40 + 100, 8192, &n) == ST_OK && n == 10);
    CHECK(st_kv_blocks_for_share(0.0, avail, 8192, &n) == ST_EINVAL);
    CHECK(st_kv_blocks_for_share(1.5, avail, 8192, &n) == ST_EINVAL);
}

int main(void)
{
    test_alloc_free();
    test_prefix_hits();
    test_lru_order();
    test_collisions();
    test_capacity();
    random_property(1, 24, 4, 1, ~0ULL, 4000);
    random_property(2, 24, 4, 1, 0x3, 4000); /* 4 hash values: constant collisions */
    random_property(3, 24, 4, 1, 0, 3000);   /* every hash collides */
    random_property(4, 40, 8, 1, ~0ULL, 3000);
    random_property(5, 24, 4, 0, ~0ULL, 3000);
    return test_done();
}
