/* The engine half of a pipeline stage (see stage.h). */
#include "stage.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

size_t st_act_dtype_size(int dt) { return dt == ST_ACT_F32 ? 4 : dt == ST_ACT_BF16 ? 2 : 0; }

void st_act_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
            dst[i] = (uint16_t)((u >> 16) | 0x40);
        else
            dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    }
}

void st_act_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

int st_stage_init(st_stage *s, const st_model *m, st_backend *be, int n_blocks, int block_size, int max_tokens,
                  int max_logits)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->be = be;
    int rc = st_kv_init(&s->kv, m, be, n_blocks, block_size);
    if (rc)
        return rc;
    if ((rc = st_fwd_init(&s->fwd, m, be, max_tokens, st_model_is_last(m) ? max_logits : 0))) {
        st_kv_free(&s->kv, be);
        return rc;
    }
    s->conv = st_xmalloc((size_t)max_tokens * m->cfg.dim * sizeof(float));
    return ST_OK;
}

void st_stage_free(st_stage *s)
{
    if (!s->m)
        return;
    st_fwd_free(&s->fwd);
    st_kv_free(&s->kv, s->be);
    free(s->conv);
    memset(s, 0, sizeof *s);
}

size_t st_stage_out_bytes(const st_stage *s, int n_tokens, int n_rows, int out_dt)
{
    if (st_model_is_last(s->m))
        return (size_t)n_rows * s->m->cfg.vocab_size * sizeof(float);
    return (size_t)n_tokens * s->m->cfg.dim * st_act_dtype_size(out_dt);
}

int st_stage_run(st_stage *s, const st_batch *b, const void *in, int in_dt, const int32_t *rows, int n_rows,
                 void *out, int out_dt)
{
    const st_model *m = s->m;
    int first = st_model_is_first(m), last = st_model_is_last(m);
    if (b->n_tokens <= 0 || b->n_tokens > s->fwd.max_tokens)
        return st_err(ST_EINVAL, "stage: batch of %d rows (max %d)", b->n_tokens, s->fwd.max_tokens);
    if ((!first && !st_act_dtype_size(in_dt)) || (!last && !st_act_dtype_size(out_dt)))
        return st_err(ST_EINVAL, "stage: unknown activation dtype %d/%d", in_dt, out_dt);
    if (last && (n_rows < 0 || n_rows > s->fwd.max_logits))
        return st_err(ST_EINVAL, "stage: %d logit rows (max %d)", n_rows, s->fwd.max_logits);
    size_t nx = (size_t)b->n_tokens * m->cfg.dim;
    if (!first) {
        const float *src = in;
        if (in_dt == ST_ACT_BF16) {
            st_act_bf16_to_f32(s->conv, in, nx);
            src = s->conv;
        }
        s->be->ops->to_device(s->be, s->fwd.x, src, nx * sizeof(float));
    }
    int rc = st_forward(&s->fwd, &s->kv, b, rows, last ? n_rows : 0);
    if (rc)
        return rc;
    s->be->ops->sync(s->be);
    if (last) {
        if (n_rows)
            s->be->ops->to_host(s->be, out, s->fwd.logits, (size_t)n_rows * m->cfg.vocab_size * sizeof(float));
    } else if (out_dt == ST_ACT_F32) {
        s->be->ops->to_host(s->be, out, s->fwd.x, nx * sizeof(float));
    } else {
        s->be->ops->to_host(s->be, s->conv, s->fwd.x, nx * sizeof(float));
        st_act_f32_to_bf16(out, s->conv, nx);
    }
    return ST_OK;
}
