/* Engine benchmark (see engine_bench.h). */
#include "bench/engine_bench.h"

#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "engine/session.h"
#include "kernels/cpu/cpu.h"

/* Matmul FLOPs per token for the loaded range (2 per weight element). */
static double flops_per_token(const st_model *m)
{
    double n = 0;
    for (int l = m->layer_start; l < m->layer_end; l++) {
        const st_layer_weights *w = &m->layers[l];
        const st_tensor *ts[] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (size_t i = 0; i < ST_ARRAY_LEN(ts); i++)
            n += 2.0 * (double)st_tensor_nelem(ts[i]);
    }
    return n;
}

int st_bench_engine(st_model *m, st_backend *be, const st_bench_engine_opts *o, st_bench_engine_result *r)
{
    memset(r, 0, sizeof *r);
    int vocab = m->cfg.vocab_size;
    int ctx = o->n_prompt + o->n_gen + 16;
    st_session s;
    int rc = st_session_init(&s, m, be, ctx, ST_MAX(o->n_prompt, 1));
    if (rc)
        return rc;
    int32_t *toks = st_xmalloc((size_t)(o->n_prompt + 1) * sizeof(int32_t));
    uint64_t x = o->seed | 1;
    for (int i = 0; i < o->n_prompt + 1; i++) { /* xorshift: valid, arbitrary ids */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        toks[i] = (int32_t)(x % (uint64_t)vocab);
    }
    float *logits = st_xmalloc((size_t)vocab * sizeof(float));
    double pp_sum = 0, tg_sum = 0;
    /* one untimed warm-up decode so page faults of the mapping are not measured */
    if ((rc = st_session_eval(&s, toks, 1, logits, 0)))
        goto out;
    for (int rep = 0; rep < o->reps; rep++) {
        st_session_reset(&s);
        double t0 = st_now_s();
        if ((rc = st_session_eval(&s, toks, o->n_prompt, logits, 0)))
            goto out;
        double pp = o->n_prompt / (st_now_s() - t0);
        /* decode: one token at a time after a fresh 1-token context, like
         * llama-bench's tg test */
        st_session_reset(&s);
        int32_t tok = toks[0];
        if ((rc = st_session_eval(&s, &tok, 1, logits, 0)))
            goto out;
        t0 = st_now_s();
        for (int i = 0; i < o->n_gen; i++) {
            tok = toks[1 + i % o->n_prompt];
            if ((rc = st_session_eval(&s, &tok, 1, logits, 0)))
                goto out;
        }
        double tg = o->n_gen / (st_now_s() - t0);
        pp_sum += pp;
        tg_sum += tg;
        r->pp_tok_s = ST_MAX(r->pp_tok_s, pp);
        r->tg_tok_s = ST_MAX(r->tg_tok_s, tg);
    }
    r->pp_tok_s_mean = pp_sum / o->reps;
    r->tg_tok_s_mean = tg_sum / o->reps;
    r->decode_bytes = st_model_decode_bytes(m);
    r->tg_gbs = (double)r->decode_bytes * r->tg_tok_s / 1e9;
    r->pp_gflops = flops_per_token(m) * r->pp_tok_s / 1e9;
    r->read_bw_gbs = st_cpu_read_bandwidth_gbs(o->threads, (size_t)512 << 20);
out:
    free(toks);
    free(logits);
    st_session_free(&s);
    return rc;
}
