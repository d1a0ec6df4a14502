/* Forward-pass invariants that pipelines and batching rely on:
 *  - a model split into layer ranges [0,k) + [k,n) gives the same logits as
 *    the whole model (the hidden state handed over is all a stage needs);
 *  - prefill in one chunk, in several chunks, or token by token gives the
 *    same logits (rows are computed the same way whatever the batch shape);
 *  - two sequences in one mixed batch give the same logits as each alone.
 * Runs on the committed tiny qwen3 model and, when present, the default
 * model. */
#include <stdint.h>

#include "common/st_common.h"
#include "engine/forward.h"
#include "engine/session.h"
#include "kernels/backend.h"
#include "tests/test.h"

static int max_abs_diff(const float *a, const float *b, size_t n, float *out)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m))
            m = d; /* NaN propagates as a failure */
    }
    *out = m;
    return m == 0;
}

static void prompt_ids(int32_t *ids, int n, int vocab, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
}

/* Logits for every position with the session chunked by `chunk`. */
static float *all_logits(st_model *m, st_backend *be, const int32_t *ids, int n, int chunk)
{
    st_session s;
    if (st_session_init(&s, m, be, n + 16, chunk) != ST_OK)
        return NULL;
    float *lg = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    if (st_session_eval(&s, ids, n, lg, 1) != ST_OK) {
        free(lg);
        lg = NULL;
    }
    st_session_free(&s);
    return lg;
}

static void test_chunking(st_model *m, st_backend *be)
{
    enum { N = 40 };
    int32_t ids[N];
    prompt_ids(ids, N, m->cfg.vocab_size, 7);
    float *one = all_logits(m, be, ids, N, N);
    float *some = all_logits(m, be, ids, N, 13);
    float *each = all_logits(m, be, ids, N, 1);
    CHECK(one && some && each);
    if (one && some && each) {
        float d1, d2;
        size_t n = (size_t)N * m->cfg.vocab_size;
        CHECKF(max_abs_diff(one, some, n, &d1), "chunk 40 vs 13: max |diff| %g", d1);
        CHECKF(max_abs_diff(one, each, n, &d2), "chunk 40 vs 1: max |diff| %g", d2);
    }
    free(one);
    free(some);
    free(each);
}

/* Run [0,k) then [k,n) by hand and compare with the whole model. */
static void test_split(const char *path, st_model *whole, st_backend *be)
{
    enum { N = 24 };
    int L = whole->cfg.n_layers, k = L / 2, vocab = whole->cfg.vocab_size, dim = whole->cfg.dim;
    st_model *a = NULL, *b = NULL;
    CHECK(st_model_load(path, 0, k, &a) == ST_OK);
    CHECK(st_model_load(path, k, -1, &b) == ST_OK);
    if (!a || !b) {
        st_model_free(a);
        st_model_free(b);
        return;
    }
    CHECK(a->output == NULL && a->tok_embd != NULL);
    CHECK(b->tok_embd == NULL && b->output != NULL);
    int32_t ids[N], pos[N], rows[N];
    prompt_ids(ids, N, vocab, 11);
    float *ref = all_logits(whole, be, ids, N, N);

    st_fwd_ctx fa, fb;
    st_kv_cache ka, kb;
    CHECK(st_fwd_init(&fa, a, be, N, 0) == ST_OK && st_fwd_init(&fb, b, be, N, N) == ST_OK);
    CHECK(st_kv_init(&ka, a, be, 4, 16) == ST_OK && st_kv_init(&kb, b, be, 4, 16) == ST_OK);
    int32_t table[4] = {2, 0, 3, 1};
    for (int i = 0; i < N; i++)
        pos[i] = i, rows[i] = i;
    st_batch_seq seq = {.seq_id = 1, .row0 = 0, .n_tokens = N, .pos0 = 0, .n_blocks = 4, .block_table = table,
                        .want_logits = 1};
    st_batch bt = {.n_tokens = N, .tokens = ids, .pos = pos, .n_seqs = 1, .seqs = &seq};
    CHECK(st_forward(&fa, &ka, &bt, NULL, 0) == ST_OK);
    /* hand over the hidden states, as the data plane will */
    memcpy(fb.x, fa.x, (size_t)N * dim * sizeof(float));
    CHECK(st_forward(&fb, &kb, &bt, rows, N) == ST_OK);
    float d;
    if (ref)
        CHECKF(max_abs_diff(ref, fb.logits, (size_t)N * vocab, &d), "split vs whole: max |diff| %g", d);
    free(ref);
    st_kv_free(&ka, be);
    st_kv_free(&kb, be);
    st_fwd_free(&fa);
    st_fwd_free(&fb);
    st_model_free(a);
    st_model_free(b);
}

/* Two sequences (a 9-token prefill and a decode at position 20) in one
 * batch vs each alone. */
static void test_mixed_batch(st_model *m, st_backend *be)
{
    int vocab = m->cfg.vocab_size;
    int32_t p1[9], p2[21];
    prompt_ids(p1, 9, vocab, 3);
    prompt_ids(p2, 21, vocab, 5);
    /* reference: each alone */
    float *r1 = all_logits(m, be, p1, 9, 9);
    float *r2 = all_logits(m, be, p2, 21, 21);

    st_fwd_ctx f;
    st_kv_cache kv;
    CHECK(st_fwd_init(&f, m, be, 32, 2) == ST_OK);
    CHECK(st_kv_init(&kv, m, be, 8, 16) == ST_OK);
    int32_t t1[2] = {5, 1}, t2[2] = {6, 3};
    /* first put p2[0..20) into sequence 2's cache */
    int32_t pos[32], rows[2];
    for (int i = 0; i < 20; i++)
        pos[i] = i;
    st_batch_seq s2 = {.seq_id = 2, .row0 = 0, .n_tokens = 20, .pos0 = 0, .n_blocks = 2, .block_table = t2};
    st_batch b0 = {.n_tokens = 20, .tokens = p2, .pos = pos, .n_seqs = 1, .seqs = &s2};
    CHECK(st_forward(&f, &kv, &b0, NULL, 0) == ST_OK);
    /* mixed step: p1 prefill (rows 0..8) + p2 decode at position 20 (row 9) */
    int32_t toks[10];
    memcpy(toks, p1, sizeof p1);
    toks[9] = p2[20];
    for (int i = 0; i < 9; i++)
        pos[i] = i;
    pos[9] = 20;
    st_batch_seq seqs[2] = {
        {.seq_id = 1, .row0 = 0, .n_tokens = 9, .pos0 = 0, .n_blocks = 2, .block_table = t1, .want_logits = 1},
        {.seq_id = 2, .row0 = 9, .n_tokens = 1, .pos0 = 20, .n_blocks = 2, .block_table = t2, .want_logits = 1},
    };
    st_batch b1 = {.n_tokens = 10, .tokens = toks, .pos = pos, .n_seqs = 2, .seqs = seqs};
    rows[0] = 8;
    rows[1] = 9;
    CHECK(st_forward(&f, &kv, &b1, rows, 2) == ST_OK);
    float d;
    if (r1 && r2) {
        CHECKF(max_abs_diff(r1 + 8 * (size_t)vocab, f.logits, (size_t)vocab, &d), "seq 1 mixed vs alone: %g", d);
        CHECKF(max_abs_diff(r2 + 20 * (size_t)vocab, f.logits + vocab, (size_t)vocab, &d),
               "seq 2 mixed vs alone: %g", d);
    }
    /* a batch that lies about its block table is rejected, not trusted */
    st_batch_seq bad = seqs[1];
    int32_t bogus[2] = {0, 99};
    bad.block_table = bogus;
    st_batch b2 = {.n_tokens = 1, .tokens = toks + 9, .pos = pos + 9, .n_seqs = 1, .seqs = &bad};
    CHECK(st_forward(&f, &kv, &b2, rows, 1) == ST_EINVAL);
    free(r1);
    free(r2);
    st_kv_free(&kv, be);
    st_fwd_free(&f);
}

static void run_model(const char *path, st_backend *be)
{
    st_model *m;
    int rc = st_model_load(path, 0, -1, &m);
    CHECKF(rc == ST_OK, "load %s: %s", path, st_errmsg());
    if (rc)
        return;
    fprintf(stderr, "model %s: %s, %d layers\n", path, st_arch_name(m->cfg.arch), m->cfg.n_layers);
    test_chunking(m, be);
    test_split(path, m, be);
    test_mixed_batch(m, be);
    st_model_free(m);
}

int main(void)
{
    st_backend *be1 = st_backend_cpu_create(1), *be2 = st_backend_cpu_create(2);
    run_model(ST_SOURCE_DIR "/tests/golden/qwen3-tiny", be2);
    const char *dflt = test_default_model();
    if (dflt)
        run_model(dflt, be1);
    else
        fprintf(stderr, "default model not present: testing only the tiny model\n");
    st_backend_destroy(be1);
    st_backend_destroy(be2);
    return test_done();
}
