/* BPE core: the merges hash map and the merge loop of one piece.
 *
 * The merge loop keeps the piece's symbols in a doubly linked list over an
 * array and the candidate pairs in a binary min-heap ordered by (rank,
 * position). Entries are never removed from the heap: a popped entry whose
 * symbols have since changed is stale and skipped. A piece of n symbols
 * costs O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "tok_internal.h"

/* ---- pair map ---------------------------------------------------------------------- */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

void tok_pairmap_init(tok_pairmap *m, size_t expect)
{
    size_t cap = 64;
    while (cap < expect * 2)
        cap *= 2;
    m->cap = cap;
    m->n = 0;
    m->keys = st_xmalloc(cap * sizeof *m->keys);
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->rank = st_xmalloc(cap * sizeof *m->rank);
    m->merged = st_xmalloc(cap * sizeof *m->merged);
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

static void pairmap_grow(tok_pairmap *m)
{
    tok_pairmap old = *m;
    tok_pairmap_init(m, old.cap); /* doubles: init sizes for 2x expect */
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i] != UINT64_MAX)
            tok_pairmap_put(m, (int32_t)(old.keys[i] >> 32), (int32_t)(uint32_t)old.keys[i], old.rank[i],
                            old.merged[i]);
    tok_pairmap_free(&old);
}

void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    if ((m->n + 1) * 2 > m->cap)
        pairmap_grow(m);
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return;
        if (m->keys[i] == UINT64_MAX) {
            m->keys[i] = key;
            m->rank[i] = rank;
            m->merged[i] = merged;
            m->n++;
            return;
        }
    }
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged)
{
    if (!m->cap)
        return 0;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX)
            return 0;
    }
}

/* ---- merge loop -------------------------------------------------------------------- */
typedef struct {
    int32_t rank;
    int32_t pos;         /* left symbol (its index never changes when it absorbs the right) */
    int32_t left, right; /* ids the pair had when pushed, to detect stale entries */
    int32_t merged;
} cand;

static int cand_less(const cand *x, const cand *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(cand *h, int *n, cand c)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_less(&c, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, int *n)
{
    cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
            c++;
        if (!cand_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static void try_pair(const st_tokenizer *t, const int32_t *ids, int l, int r, cand *h, int *nh)
{
    cand c;
    if (r < 0 || !tok_pairmap_get(&t->merges, ids[l], ids[r], &c.rank, &c.merged))
        return;
    c.pos = l;
    c.left = ids[l];
    c.right = ids[r];
    heap_push(h, nh, c);
}

int tok_bpe_merge(const st_tokenizer *t, int32_t *ids, int n)
{
    if (n < 2)
        return n;
    enum { SMALL = 48 };
    int32_t prev_s[SMALL], next_s[SMALL];
    cand heap_s[3 * SMALL];
    int32_t *prev = prev_s, *next = next_s;
    cand *heap = heap_s;
    if (n > SMALL) {
        prev = st_xmalloc((size_t)n * sizeof *prev);
        next = st_xmalloc((size_t)n * sizeof *next);
        heap = st_xmalloc((size_t)n * 3 * sizeof *heap);
    }
    for (int i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    int nh = 0;
    for (int i = 0; i + 1 < n; i++)
        try_pair(t, ids, i, i + 1, heap, &nh);
    while (nh > 0) {
        cand c = heap_pop(heap, &nh);
        int l = c.pos, r = next[l];
        if (ids[l] != c.left || r < 0 || ids[r] != c.right)
            continue; /* stale: a neighbour merged since this pair was pushed */
        ids[l] = c.merged;
        ids[r] = -1; /* dead */
        next[l] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = l;
        /* at most two new pairs per merge, so the heap stays within 3n */
        if (prev[l] >= 0)
            try_pair(t, ids, prev[l], l, heap, &nh);
        try_pair(t, ids, l, next[l], heap, &nh);
    }
    int m = 0;
    for (int i = 0; i >= 0; i = next[i])
        ids[m++] = ids[i];
    if (n > SMALL) {
        free(prev);
        free(next);
        free(heap);
    }
    return m;
}

/* ---- GPT-2 byte mapping -------------------------------------------------------------
 * Printable Latin-1 bytes map to themselves; the 68 others (controls, space,
 * DEL, NBSP, soft hyphen) map in order to U+0100.. so every byte is a
 * visible character in vocab files. */
static int byte_is_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;               /* 0x00..0x20 -> U+0100..U+0120 */
    if (b <= 0xA0)
        return 256u + 33 + (b - 0x7Fu); /* 0x7F..0xA0 -> U+0121..U+0142 */
    return 256u + 67;                  /* 0xAD -> U+0143 */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32)
        return (int)(cp - 256);
    if (cp <= 256 + 66)
        return (int)(cp - 256 - 33 + 0x7F);
    return cp == 256 + 67 ? 0xAD : -1;
}
