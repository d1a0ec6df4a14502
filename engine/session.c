/* Single-sequence session (see session.h). */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

#define SESSION_BLOCK 16

int st_session_init(st_session *s, st_model *m, st_backend *be, int max_ctx, int chunk)
{
    memset(s, 0, sizeof *s);
    if (max_ctx <= 0 || chunk <= 0)
        return st_err(ST_EINVAL, "session: context %d / chunk %d invalid", max_ctx, chunk);
    s->m = m;
    s->be = be;
    s->chunk = chunk;
    s->n_blocks = (max_ctx + SESSION_BLOCK - 1) / SESSION_BLOCK;
    s->max_ctx = s->n_blocks * SESSION_BLOCK;
    int rc = st_kv_init(&s->kv, m, be, s->n_blocks, SESSION_BLOCK);
    if (rc)
        return rc;
    if ((rc = st_fwd_init(&s->fwd, m, be, chunk, chunk))) {
        st_kv_free(&s->kv, be);
        return rc;
    }
    /* physical blocks in reverse order: the kernels must follow the table */
    s->block_table = st_xmalloc((size_t)s->n_blocks * sizeof(int32_t));
    for (int i = 0; i < s->n_blocks; i++)
        s->block_table[i] = s->n_blocks - 1 - i;
    s->pos = st_xmalloc((size_t)chunk * sizeof(int32_t));
    s->rows = st_xmalloc((size_t)chunk * sizeof(int32_t));
    return ST_OK;
}

void st_session_free(st_session *s)
{
    if (!s->m)
        return;
    st_fwd_free(&s->fwd);
    st_kv_free(&s->kv, s->be);
    free(s->block_table);
    free(s->pos);
    free(s->rows);
    memset(s, 0, sizeof *s);
}

int st_session_eval(st_session *s, const int32_t *toks, int n, float *logits, int all)
{
    int vocab = s->m->cfg.vocab_size;
    if (n <= 0)
        return st_err(ST_EINVAL, "session: nothing to evaluate");
    if (s->n_past + n > s->max_ctx)
        return st_err(ST_ERANGE, "context full: %d + %d tokens exceed %d", s->n_past, n, s->max_ctx);
    for (int done = 0; done < n;) {
        int k = ST_MIN(s->chunk, n - done);
        int last_chunk = done + k == n;
        for (int i = 0; i < k; i++)
            s->pos[i] = s->n_past + i;
        st_batch_seq seq = {
            .seq_id = 0,
            .row0 = 0,
            .n_tokens = k,
            .pos0 = s->n_past,
            .n_blocks = s->n_blocks,
            .block_table = s->block_table,
            .want_logits = 1,
        };
        st_batch b = {.n_tokens = k, .tokens = toks + done, .pos = s->pos, .n_seqs = 1, .seqs = &seq};
        int n_rows = 0;
        if (logits && all) {
            for (int i = 0; i < k; i++)
                s->rows[i] = i;
            n_rows = k;
        } else if (logits && last_chunk) {
            s->rows[0] = k - 1;
            n_rows = 1;
        }
        int rc = st_forward(&s->fwd, &s->kv, &b, s->rows, n_rows);
        if (rc)
            return rc;
        if (n_rows) {
            float *dst = all ? logits + (size_t)done * vocab : logits;
            s->be->ops->to_host(s->be, dst, s->fwd.logits, (size_t)n_rows * vocab * sizeof(float));
        }
        s->n_past += k;
        done += k;
    }
    s->be->ops->sync(s->be);
    return ST_OK;
}
