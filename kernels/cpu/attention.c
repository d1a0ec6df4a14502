/* Attention driver (validation, work split) and the plain C kernels table.
 *
 * Work items are (row, kv head) pairs handed out through an atomic
 * counter, so long prefill rows and short decodes balance over the
 * threads; each item is computed independently (attn_impl.h), so the
 * split cannot change any result. */
#include "kernels/cpu/attention.h"

#include "common/st_common.h"
#include "kernels/cpu/matmul.h"

#include <stdatomic.h>
#include <stdlib.h>

static void load_f16_scalar(float *dst, const uint16_t *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = st_f16_to_f32(src[i]);
}

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy_scalar(float *y, float w, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += w * x[i];
}

static void scale_scalar(float *y, float s, int n)
{
    for (int i = 0; i < n; i++)
        y[i] *= s;
}

#define ATTN_DOT dot_scalar
#define ATTN_AXPY axpy_scalar
#define ATTN_SCALE scale_scalar
#define ATTN_FN attn_scalar
#define LOAD_F16(dst, src, n) load_f16_scalar(dst, src, n)
#include "kernels/cpu/attn_impl.h"

static void to_f16_scalar(uint16_t *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = st_f32_to_f16(src[i]);
}

static float sum_scalar(const float *p, size_t n)
{
    float s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += p[i + k];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

const st_cpu_kernels st_cpu_kernels_scalar = {
    .quant = st_cpu_quant_scalar,
    .matmul = st_cpu_matmul_scalar,
    .attn = attn_scalar,
    .to_f16 = to_f16_scalar,
    .sum = sum_scalar,
};

/* ---- validation ------------------------------------------------------------------- */

int st_cpu_check_kv(const st_kv_cache *kv, int layer)
{
    if (!kv || layer < 0 || layer >= kv->n_layers || !kv->k || !kv->v || !kv->k[layer] || !kv->v[layer])
        return st_err(ST_EINVAL, "kv cache has no layer %d", layer);
    if (kv->head_dim <= 0 || kv->head_dim > ST_ATTN_MAX_HEAD_DIM || kv->block_size <= 0 || kv->n_kv_heads <= 0 ||
        (kv->dtype != ST_F16 && kv->dtype != ST_F32))
        return st_err(ST_EINVAL, "unsupported kv geometry (head_dim %d, block_size %d, %s)",
                      kv->head_dim, kv->block_size, st_dtype_name(kv->dtype));
    return ST_OK;
}

/* Check every sequence's rows and block table against the cache and fill
 * row_seq (n_tokens,). */
int st_cpu_check_batch(const st_kv_cache *kv, const st_batch *b, int32_t *row_seq)
{
    if (!b || b->n_tokens < 0 || b->n_seqs < 0 || (b->n_tokens && (!b->pos || !b->seqs)))
        return st_err(ST_EINVAL, "malformed batch");
    for (int i = 0; i < b->n_tokens; i++)
        row_seq[i] = -1;
    for (int si = 0; si < b->n_seqs; si++) {
        const st_batch_seq *s = &b->seqs[si];
        if (s->row0 < 0 || s->n_tokens < 0 || s->row0 > b->n_tokens - s->n_tokens)
            return st_err(ST_EINVAL, "sequence %d rows [%d, +%d) outside the batch", s->seq_id, s->row0,
                          s->n_tokens);
        if (s->n_tokens && (!s->block_table || s->n_blocks <= 0))
            return st_err(ST_EINVAL, "sequence %d has no block table", s->seq_id);
        int32_t maxpos = -1;
        for (int r = s->row0; r < s->row0 + s->n_tokens; r++) {
            if (row_seq[r] >= 0)
                return st_err(ST_EINVAL, "batch row %d belongs to two sequences", r);
            row_seq[r] = si;
            if (b->pos[r] < 0)
                return st_err(ST_EINVAL, "negative position at row %d", r);
            maxpos = ST_MAX(maxpos, b->pos[r]);
        }
        if (maxpos < 0)
            continue;
        const int64_t need = (int64_t)maxpos / kv->block_size + 1;
        if (need > s->n_blocks)
            return st_err(ST_EINVAL, "sequence %d position %d beyond its %d blocks", s->seq_id, maxpos,
                          s->n_blocks);
        for (int64_t i = 0; i < need; i++)
            if (s->block_table[i] < 0 || s->block_table[i] >= kv->n_blocks)
                return st_err(ST_EINVAL, "sequence %d block table entry %lld = %d out of range", s->seq_id,
                              (long long)i, s->block_table[i]);
    }
    for (int i = 0; i < b->n_tokens; i++)
        if (row_seq[i] < 0)
            return st_err(ST_EINVAL, "batch row %d belongs to no sequence", i);
    return ST_OK;
}

/* ---- the parallel loop ------------------------------------------------------------- */
typedef struct {
    const st_cpu_kernels *k;
    st_attn_args a;
    int n_items;
    _Alignas(64) atomic_int next;
} attn_job;

#define ITEMS_PER_GRAB 4

static void attn_job_fn(void *p, int ith, int nth)
{
    attn_job *j = p;
    const int nkv = j->a.kv->n_kv_heads;
    for (;;) {
        const int i0 = atomic_fetch_add_explicit(&j->next, ITEMS_PER_GRAB, memory_order_relaxed);
        if (i0 >= j->n_items)
            break;
        const int i1 = ST_MIN(j->n_items, i0 + ITEMS_PER_GRAB);
        for (int i = i0; i < i1; i++)
            j->k->attn(&j->a, i / nkv, i % nkv);
    }
}

int st_cpu_attention(const st_cpu_kernels *k, st_tp *tp, int32_t **row_seq, size_t *row_seq_cap, float *out,
                     const float *q, const st_kv_cache *kv, int layer, const st_batch *b, int n_heads, float scale)
{
    int rc = st_cpu_check_kv(kv, layer);
    if (rc)
        return rc;
    if (!out || !q || n_heads <= 0 || n_heads % kv->n_kv_heads)
        return st_err(ST_EINVAL, "%d query heads for %d kv heads", n_heads, kv->n_kv_heads);
    if (!b || b->n_tokens <= 0)
        return b ? ST_OK : st_err(ST_EINVAL, "NULL batch");
    if ((size_t)b->n_tokens > *row_seq_cap) {
        free(*row_seq);
        *row_seq = st_xmalloc(sizeof(int32_t) * (size_t)b->n_tokens);
        *row_seq_cap = (size_t)b->n_tokens;
    }
    if ((rc = st_cpu_check_batch(kv, b, *row_seq)))
        return rc;
    attn_job j = {.k = k, .n_items = b->n_tokens * kv->n_kv_heads};
    j.a = (st_attn_args){.out = out, .q = q, .kv = kv, .layer = layer, .b = b, .row_seq = *row_seq,
                         .n_heads = n_heads, .scale = scale};
    atomic_init(&j.next, 0);
    if (j.n_items <= ITEMS_PER_GRAB)
        attn_job_fn(&j, 0, 1);
    else
        st_tp_run(tp, attn_job_fn, &j);
    return ST_OK;
}
