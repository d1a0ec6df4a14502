/* The transformer forward pass over a layer range (see forward.h). */
#include "forward.h"

#include <math.h>
#include <string.h>

#include "../common/st_common.h"

int st_fwd_init(st_fwd_ctx *f, const st_model *m, st_backend *be, int max_tokens, int max_logits)
{
    const st_model_config *c = &m->cfg;
    memset(f, 0, sizeof *f);
    if (max_tokens <= 0 || max_logits < 0)
        return st_err(ST_EINVAL, "forward: max_tokens %d / max_logits %d invalid", max_tokens, max_logits);
    f->m = m;
    f->be = be;
    f->max_tokens = max_tokens;
    f->max_logits = max_logits;
    size_t T = (size_t)max_tokens, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = ST_MAX((size_t)c->dim, qd);
    void *(*A)(st_backend *, size_t) = be->ops->alloc;
    f->x = A(be, T * c->dim * sizeof(float));
    f->xb = A(be, T * wide * sizeof(float));
    f->q = A(be, T * qd * sizeof(float));
    f->k = A(be, T * kvd * sizeof(float));
    f->v = A(be, T * kvd * sizeof(float));
    f->att = A(be, T * qd * sizeof(float));
    f->hb = A(be, T * c->ffn_dim * sizeof(float));
    f->hb2 = A(be, T * c->ffn_dim * sizeof(float));
    if (max_logits) {
        f->lx = A(be, (size_t)max_logits * c->dim * sizeof(float));
        f->logits = A(be, (size_t)max_logits * c->vocab_size * sizeof(float));
    }
    if (!f->x || !f->xb || !f->q || !f->k || !f->v || !f->att || !f->hb || !f->hb2 ||
        (max_logits && (!f->lx || !f->logits))) {
        st_fwd_free(f);
        return st_err(ST_ENOMEM, "forward: cannot allocate activations for %d tokens", max_tokens);
    }
    return ST_OK;
}

void st_fwd_free(st_fwd_ctx *f)
{
    if (!f->be)
        return;
    float *bufs[] = {f->x, f->xb, f->q, f->k, f->v, f->att, f->hb, f->hb2, f->lx, f->logits};
    for (size_t i = 0; i < ST_ARRAY_LEN(bufs); i++)
        if (bufs[i])
            f->be->ops->free(f->be, bufs[i]);
    memset(f, 0, sizeof *f);
}

int st_kv_init(st_kv_cache *kv, const st_model *m, st_backend *be, int n_blocks, int block_size)
{
    memset(kv, 0, sizeof *kv);
    if (n_blocks <= 0 || block_size <= 0)
        return st_err(ST_EINVAL, "kv cache: %d blocks of %d slots is invalid", n_blocks, block_size);
    kv->n_layers = m->layer_end - m->layer_start;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_kv_heads = m->cfg.n_kv_heads;
    kv->head_dim = m->cfg.head_dim;
    kv->dtype = ST_F16;
    kv->block_bytes = (size_t)block_size * kv->n_kv_heads * kv->head_dim * 2;
    return be->ops->kv_alloc(be, kv);
}

void st_kv_free(st_kv_cache *kv, st_backend *be)
{
    if (kv->k)
        be->ops->kv_free(be, kv);
    memset(kv, 0, sizeof *kv);
}

/* Validate what the kernels will trust: rows, positions and block tables. */
static int check_batch(const st_fwd_ctx *f, const st_kv_cache *kv, const st_batch *b, const int32_t *rows,
                       int n_rows)
{
    if (b->n_tokens <= 0 || b->n_tokens > f->max_tokens)
        return st_err(ST_EINVAL, "forward: batch of %d tokens (max %d)", b->n_tokens, f->max_tokens);
    int32_t next_row = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const st_batch_seq *q = &b->seqs[s];
        if (q->row0 != next_row || q->n_tokens <= 0 || q->pos0 < 0)
            return st_err(ST_EINVAL, "forward: sequence %d rows are not contiguous", s);
        next_row += q->n_tokens;
        int64_t need = ((int64_t)q->pos0 + q->n_tokens + kv->block_size - 1) / kv->block_size;
        if (q->n_blocks < need)
            return st_err(ST_EINVAL, "forward: sequence %d has %d blocks, needs %lld", s, q->n_blocks,
                          (long long)need);
        for (int i = 0; i < need; i++)
            if (q->block_table[i] < 0 || q->block_table[i] >= kv->n_blocks)
                return st_err(ST_EINVAL, "forward: sequence %d block %d id out of range", s, i);
        for (int i = 0; i < q->n_tokens; i++)
            if (b->pos[q->row0 + i] != q->pos0 + i)
                return st_err(ST_EINVAL, "forward: sequence %d positions are not consecutive", s);
    }
    if (next_row != b->n_tokens)
        return st_err(ST_EINVAL, "forward: sequences cover %d of %d rows", next_row, b->n_tokens);
    if (n_rows > f->max_logits)
        return st_err(ST_EINVAL, "forward: %d logit rows (max %d)", n_rows, f->max_logits);
    for (int i = 0; i < n_rows; i++)
        if (rows[i] < 0 || rows[i] >= b->n_tokens || (i && rows[i] <= rows[i - 1]))
            return st_err(ST_EINVAL, "forward: logit row %d invalid", i);
    if (st_model_is_first(f->m))
        for (int i = 0; i < b->n_tokens; i++)
            if (b->tokens[i] < 0 || b->tokens[i] >= f->m->cfg.vocab_size)
                return st_err(ST_EINVAL, "forward: token id %d out of range", b->tokens[i]);
    return ST_OK;
}

/* One transformer block: pre-norm attention and pre-norm SwiGLU MLP, both
 * added into the residual stream x. */
static void block(st_fwd_ctx *f, st_kv_cache *kv, const st_batch *b, int l)
{
    const st_model *m = f->m;
    const st_model_config *c = &m->cfg;
    const st_layer_weights *w = &m->layers[l];
    const st_backend_ops *o = f->be->ops;
    st_backend *be = f->be;
    int n = b->n_tokens;

    o->rmsnorm(be, f->xb, f->x, w->attn_norm, n, c->dim, c->norm_eps);
    o->matmul(be, f->q, f->xb, w->wq, w->bq, n);
    o->matmul(be, f->k, f->xb, w->wk, w->bk, n);
    o->matmul(be, f->v, f->xb, w->wv, w->bv, n);
    if (w->q_norm) { /* per-head norms: rows are (token, head) pairs */
        o->rmsnorm(be, f->q, f->q, w->q_norm, n * c->n_heads, c->head_dim, c->norm_eps);
        o->rmsnorm(be, f->k, f->k, w->k_norm, n * c->n_kv_heads, c->head_dim, c->norm_eps);
    }
    o->rope(be, f->q, n, c->n_heads, c->head_dim, b->pos, &m->rope);
    o->rope(be, f->k, n, c->n_kv_heads, c->head_dim, b->pos, &m->rope);
    int kl = l - m->layer_start;
    o->kv_write(be, kv, kl, f->k, f->v, b);
    o->attention(be, f->att, f->q, kv, kl, b, c->n_heads, 1.0f / sqrtf((float)c->head_dim));
    o->matmul(be, f->xb, f->att, w->wo, NULL, n);
    o->add(be, f->x, f->xb, n, c->dim);

    o->rmsnorm(be, f->xb, f->x, w->ffn_norm, n, c->dim, c->norm_eps);
    o->matmul(be, f->hb, f->xb, w->w_gate, NULL, n);
    o->matmul(be, f->hb2, f->xb, w->w_up, NULL, n);
    o->swiglu(be, f->hb, f->hb, f->hb2, n, c->ffn_dim);
    o->matmul(be, f->xb, f->hb, w->w_down, NULL, n);
    o->add(be, f->x, f->xb, n, c->dim);
}

int st_forward(st_fwd_ctx *f, st_kv_cache *kv, const st_batch *b, const int32_t *rows, int n_rows)
{
    const st_model *m = f->m;
    const st_model_config *c = &m->cfg;
    int rc = check_batch(f, kv, b, rows, st_model_is_last(m) ? n_rows : 0);
    if (rc)
        return rc;
    if (st_model_is_first(m))
        f->be->ops->embed(f->be, f->x, m->tok_embd, b->tokens, b->n_tokens);
    for (int l = m->layer_start; l < m->layer_end; l++)
        block(f, kv, b, l);
    if (st_model_is_last(m) && n_rows > 0) {
        /* normalise only the wanted rows, gathered into lx */
        for (int i = 0; i < n_rows; i++)
            f->be->ops->rmsnorm(f->be, f->lx + (size_t)i * c->dim, f->x + (size_t)rows[i] * c->dim, m->out_norm,
                                1, c->dim, c->norm_eps);
        f->be->ops->matmul(f->be, f->logits, f->lx, m->output, NULL, n_rows);
    }
    return ST_OK;
}
