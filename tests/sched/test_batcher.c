/* The continuous batcher on the tiny random-weight qwen3 (tests/golden):
 * a request alone matches an independent single-sequence driver; 16 at
 * once give exactly what each gives alone; preemption and prefix-cache hits
 * change the work done but not the tokens; aborts and limits; logprobs;
 * the loop thread with concurrent submitters. Stop strings and the random
 * stress test are in their own files. */
#include <pthread.h>

#include "../../common/st_common.h"
#include "../../engine/session.h"
#include "../../sched/batcher.h"
#include "../../sched/kv_blocks.h"
#include "../test.h"
#include "batcher_util.h"

static st_model *model;
static st_backend *be;

/* ---- helpers ---------------------------------------------------------------------- */
static st_batcher *make(int n_blocks, int max_tokens, int max_batch, int prefix_cache, int max_ctx)
{
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = n_blocks;
    c.max_num_tokens_per_batch = max_tokens;
    c.max_batch_size = max_batch;
    c.prefix_cache = prefix_cache;
    c.max_ctx = max_ctx;
    st_batcher *b = NULL;
    int rc = st_batcher_create(model, be, &c, &b);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    return b;
}

static void random_prompt(uint64_t *rng, int32_t *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (int32_t)(bu_rand(rng) % 500);
}

static st_request greedy(const int32_t *p, int n, int max_tokens)
{
    st_request r = st_request_default();
    r.prompt = p;
    r.n_prompt = n;
    r.max_tokens = max_tokens;
    return r;
}

/* ---- an independent reference: st_session + argmax ------------------------------------- */
static int session_greedy(const int32_t *prompt, int n, int max_tokens, int32_t *out, float *logprob)
{
    st_session s;
    int V = model->cfg.vocab_size;
    if (st_session_init(&s, model, be, n + max_tokens + 1, 7) != ST_OK)
        return -1;
    float *logits = st_xmalloc((size_t)V * sizeof(float));
    int rc = st_session_eval(&s, prompt, n, logits, 0);
    for (int i = 0; rc == ST_OK && i < max_tokens; i++) {
        out[i] = st_argmax(logits, V);
        if (logprob) {
            double mx = logits[out[i]], sum = 0;
            for (int v = 0; v < V; v++)
                sum += exp((double)logits[v] - mx);
            logprob[i] = (float)-log(sum);
        }
        if (i + 1 < max_tokens)
            rc = st_session_eval(&s, &out[i], 1, logits, 0);
    }
    free(logits);
    st_session_free(&s);
    return rc;
}

static void test_alone_matches_session(void)
{
    st_batcher *b = make(64, 32, 4, 1, 0); /* chunks of 32: the prompt takes 2 steps */
    uint64_t rng = 11;
    int32_t prompt[45], ref[20];
    float ref_lp[20];
    random_prompt(&rng, prompt, 45);
    CHECK(session_greedy(prompt, 45, 20, ref, ref_lp) == ST_OK);
    st_request r = greedy(prompt, 45, 20);
    r.top_logprobs = 3;
    st_batcher_result res;
    CHECK(st_batcher_generate(b, &r, &res) == ST_OK);
    CHECK(res.n_tokens == 20 && res.finish == ST_FINISH_LENGTH);
    int same = res.n_tokens == 20 && !memcmp(res.tokens, ref, sizeof ref);
    CHECKF(same, "batcher tokens differ from the single-sequence session");
    for (int i = 0; res.logprobs && i < res.n_tokens; i++)
        CHECK_NEAR(res.logprobs[i], ref_lp[i], 1e-4);
    CHECK(res.n_prompt == 45 && res.n_cached == 0);
    st_batcher_result_free(&res);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0);
    CHECK(st.prompt_tokens_computed == 45 && st.generated_tokens == 20);
    st_batcher_destroy(b);
}

/* ---- 16 at once == each alone ------------------------------------------------------------- */
#define NREQ 16
typedef struct {
    int32_t prompt[120];
    int n_prompt, max_tokens;
    st_sampling sampling;
    bu_result alone;
} job;

/* prompts of 3..3+prompt_span-1 tokens, max_tokens gen_min..gen_min+29 */
static void make_jobs(job *jobs, int n, uint64_t seed, int sampled, int prompt_span, int gen_min)
{
    uint64_t rng = seed;
    for (int i = 0; i < n; i++) {
        jobs[i].n_prompt = 3 + (int)(bu_rand(&rng) % (uint64_t)prompt_span);
        jobs[i].max_tokens = gen_min + (int)(bu_rand(&rng) % 30);
        random_prompt(&rng, jobs[i].prompt, jobs[i].n_prompt);
        jobs[i].sampling = st_sampling_default();
        jobs[i].sampling.temperature = sampled && i % 2 ? 0.9f : 0.0f;
        jobs[i].sampling.seed = 1000 + (uint64_t)i;
    }
}

static st_request job_request(const job *j, bu_result *out)
{
    st_request r = greedy(j->prompt, j->n_prompt, j->max_tokens);
    r.sampling = j->sampling;
    r.cb = bu_collect;
    r.user = out;
    return r;
}

/* Each job alone on a fresh batcher without prefix caching. */
static void run_alone(job *jobs, int n)
{
    st_batcher *b = make(256, 512, 16, 0, 0);
    for (int i = 0; i < n; i++) {
        bu_result_init(&jobs[i].alone);
        st_request r = job_request(&jobs[i], &jobs[i].alone);
        CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
        CHECK(st_batcher_run_until_idle(b) == ST_OK);
        CHECK(jobs[i].alone.n_final == 1);
    }
    st_batcher_destroy(b);
}

/* All jobs submitted at once; returns how many differ from their alone run. */
static int run_together(job *jobs, int n, st_batcher *b, st_batcher_stats *st)
{
    bu_result got[NREQ];
    for (int i = 0; i < n; i++) {
        bu_result_init(&got[i]);
        st_request r = job_request(&jobs[i], &got[i]);
        CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
    }
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    st_batcher_get_stats(b, st);
    int differ = 0;
    for (int i = 0; i < n; i++) {
        CHECK(got[i].n_final == 1 && got[i].finish == ST_FINISH_LENGTH);
        if (!bu_same_tokens(&got[i], &jobs[i].alone)) {
            differ++;
            fprintf(stderr, "  request %d: %d tokens vs %d alone\n", i, got[i].n_tokens, jobs[i].alone.n_tokens);
        }
        bu_result_free(&got[i]);
    }
    return differ;
}

static void test_concurrent_equals_alone(void)
{
    job jobs[NREQ];
    make_jobs(jobs, NREQ, 5, 1, 110, 8);
    run_alone(jobs, NREQ);
    /* 96 rows per step: prompts are chunked and mixed with decodes */
    st_batcher *b = make(256, 96, 16, 0, 0);
    st_batcher_stats st;
    int differ = run_together(jobs, NREQ, b, &st);
    CHECKF(differ == 0, "%d of %d requests changed when batched", differ, NREQ);
    CHECKF(st.batch_seqs > 4 * st.steps, "batches were small: %llu seqs in %llu steps",
           (unsigned long long)st.batch_seqs, (unsigned long long)st.steps);
    CHECK(st.preemptions == 0 && st.kv_blocks_used == 0);
    st_batcher_destroy(b);
    for (int i = 0; i < NREQ; i++)
        bu_result_free(&jobs[i].alone);
}

static void test_preemption(void)
{
    job jobs[NREQ];
    /* long prompts: sequences are preempted in prefill and in decode */
    make_jobs(jobs, 10, 77, 1, 110, 8);
    run_alone(jobs, 10);
    /* room for the longest request (~150 tokens) but far from all ten */
    st_batcher *b = make(14, 64, 10, 0, 0);
    st_batcher_stats st;
    int differ = run_together(jobs, 10, b, &st);
    CHECKF(differ == 0, "%d of 10 requests changed by preemption", differ);
    CHECKF(st.preemptions > 0, "the tiny cache did not force a preemption");
    CHECK(st.kv_blocks_used == 0);
    CHECK(st_kv_blocks_check(st_batcher_kv(b)) == ST_OK);
    st_batcher_destroy(b);
    /* the same with the prefix cache on: resumed sequences find their own blocks */
    b = make(14, 64, 10, 1, 0);
    differ = run_together(jobs, 10, b, &st);
    CHECKF(differ == 0, "%d of 10 requests changed by preemption with prefix caching", differ);
    CHECK(st.preemptions > 0 && st.kv_blocks_used == 0);
    st_batcher_destroy(b);
    for (int i = 0; i < 10; i++)
        bu_result_free(&jobs[i].alone);

    /* short prompts, long generations: preempted while decoding, generated
     * tokens are prefilled again and the stream goes on exactly */
    make_jobs(jobs, 6, 78, 1, 10, 60);
    run_alone(jobs, 6);
    b = make(12, 64, 6, 0, 0);
    differ = run_together(jobs, 6, b, &st);
    CHECKF(differ == 0, "%d of 6 requests changed by preemption during decode", differ);
    CHECKF(st.recomputed_tokens > 0, "no generated token was recomputed (%llu preemptions)",
           (unsigned long long)st.preemptions);
    CHECK(st.kv_blocks_used == 0);
    st_batcher_destroy(b);
    for (int i = 0; i < 6; i++)
        bu_result_free(&jobs[i].alone);
}

/* ---- prefix cache ----------------------------------------------------------------------------- */
static void test_prefix_cache(void)
{
    uint64_t rng = 99;
    int32_t p[100], q[100];
    random_prompt(&rng, p, 100);
    memcpy(q, p, sizeof q);
    random_prompt(&rng, q + 70, 30); /* shares 70 tokens: 4 full blocks */

    st_batcher *off = make(64, 512, 4, 0, 0);
    st_batcher_result ref_p, ref_q, r1, r2, r3;
    st_request rp = greedy(p, 100, 12), rq = greedy(q, 100, 12), r64 = greedy(p, 64, 12);
    CHECK(st_batcher_generate(off, &rp, &ref_p) == ST_OK);
    CHECK(st_batcher_generate(off, &rq, &ref_q) == ST_OK);
    st_batcher_stats st;
    st_batcher_get_stats(off, &st);
    CHECK(st.prompt_tokens_computed == 200 && st.prefix_hit_tokens == 0);
    st_batcher_destroy(off);

    st_batcher *b = make(64, 512, 4, 1, 0);
    CHECK(st_batcher_generate(b, &rp, &r1) == ST_OK);
    CHECK(r1.n_cached == 0);
    st_batcher_get_stats(b, &st);
    uint64_t computed = st.prompt_tokens_computed;
    CHECK(computed == 100 && st.kv_blocks_cached > 0);
    CHECK(st_batcher_generate(b, &rq, &r2) == ST_OK);
    CHECK(r2.n_cached == 64);
    st_batcher_get_stats(b, &st);
    CHECKF(st.prompt_tokens_computed - computed == 36, "computed %llu prompt tokens for a 64-token hit",
           (unsigned long long)(st.prompt_tokens_computed - computed));
    computed = st.prompt_tokens_computed;
    /* a prompt made only of cached full blocks recomputes its last block */
    CHECK(st_batcher_generate(b, &r64, &r3) == ST_OK);
    CHECK(r3.n_cached == 48);
    st_batcher_get_stats(b, &st);
    CHECK(st.prompt_tokens_computed - computed == 16);
    CHECK(st.prefix_hit_tokens == 112 && st.kv_blocks_used == 0);
    CHECK(bu_same(r1.tokens, r1.n_tokens, ref_p.tokens, ref_p.n_tokens));
    CHECK(bu_same(r2.tokens, r2.n_tokens, ref_q.tokens, ref_q.n_tokens));
    /* r64 against a cold run */
    st_batcher *cold = make(64, 512, 4, 0, 0);
    st_batcher_result ref64;
    CHECK(st_batcher_generate(cold, &r64, &ref64) == ST_OK);
    CHECK(bu_same(r3.tokens, r3.n_tokens, ref64.tokens, ref64.n_tokens));
    st_batcher_destroy(cold);
    st_batcher_result_free(&ref64);
    st_batcher_result_free(&ref_p), st_batcher_result_free(&ref_q);
    st_batcher_result_free(&r1), st_batcher_result_free(&r2), st_batcher_result_free(&r3);
    st_batcher_destroy(b);
}

/* ---- abort ------------------------------------------------------------------------------------- */
static void test_abort(void)
{
    st_batcher *b = make(40, 64, 4, 1, 0);
    st_batcher_stats st0;
    st_batcher_get_stats(b, &st0); /* published before the first step */
    CHECK(st0.kv_blocks_total == 40 && st0.kv_blocks_free == 40 && st0.block_size == 16 && st0.max_ctx == 512);
    uint64_t rng = 3;
    int32_t p[6][50];
    bu_result got[6];
    uint64_t ids[6];
    for (int i = 0; i < 6; i++) {
        random_prompt(&rng, p[i], 50);
        bu_result_init(&got[i]);
        st_request r = greedy(p[i], 50, 100);
        r.cb = bu_collect;
        r.user = &got[i];
        CHECK(st_batcher_submit(b, &r, &ids[i]) == ST_OK);
    }
    for (int s = 0; s < 6; s++)
        CHECK(st_batcher_step(b) == 1);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.n_running == 4 && st.n_waiting == 2 && st.kv_blocks_used > 0);
    CHECK(st.kv_blocks_total == 40 && st.kv_blocks_used + st.kv_blocks_free + st.kv_blocks_cached == 40);
    st_batcher_abort(b, ids[1]); /* running */
    st_batcher_abort(b, ids[5]); /* waiting */
    st_batcher_abort(b, 12345);  /* unknown: ignored */
    CHECK(st_batcher_step(b) == 1);
    CHECK(got[1].n_final == 1 && got[1].finish == ST_FINISH_ABORT);
    CHECK(got[5].n_final == 1 && got[5].finish == ST_FINISH_ABORT && got[5].n_tokens == 0);
    for (int i = 0; i < 6; i++)
        if (i != 1 && i != 5)
            st_batcher_abort(b, ids[i]);
    CHECK(st_batcher_step(b) == 0); /* the aborts are taken at the start of the step: nothing is left */
    st_batcher_get_stats(b, &st);
    CHECKF(st.kv_blocks_used == 0, "%d blocks still used one step after aborting everything", st.kv_blocks_used);
    CHECK(st.n_running == 0 && st.n_waiting == 0 && st.requests_aborted == 6);
    for (int i = 0; i < 6; i++) {
        CHECK(got[i].n_final == 1 && got[i].finish == ST_FINISH_ABORT);
        bu_result_free(&got[i]);
    }
    CHECK(st_kv_blocks_check(st_batcher_kv(b)) == ST_OK);
    st_batcher_destroy(b);
}

/* ---- limits ------------------------------------------------------------------------------------ */
static void test_limits(void)
{
    st_batcher *b = make(64, 512, 4, 1, 64);
    CHECK(st_batcher_max_ctx(b) == 64);
    uint64_t rng = 8;
    int32_t p[64];
    random_prompt(&rng, p, 64);
    st_batcher_result res;
    st_request r = greedy(p, 10, 5);
    CHECK(st_batcher_generate(b, &r, &res) == ST_OK);
    CHECK(res.n_tokens == 5 && res.finish == ST_FINISH_LENGTH);
    /* a stop token id: the first occurrence of the 4th token ends it there */
    if (res.n_tokens == 5) {
        int32_t stop = res.tokens[3];
        int first = 0;
        while (res.tokens[first] != stop)
            first++;
        st_request rs = greedy(p, 10, 5);
        rs.stop_ids = &stop;
        rs.n_stop_ids = 1;
        st_batcher_result r2;
        CHECK(st_batcher_generate(b, &rs, &r2) == ST_OK);
        CHECK(r2.finish == ST_FINISH_STOP && r2.n_tokens == first + 1);
        st_batcher_result_free(&r2);
    }
    st_batcher_result_free(&res);
    /* context length: 60 prompt tokens in a 64-token context leave 4 */
    r = greedy(p, 60, 0);
    CHECK(st_batcher_generate(b, &r, &res) == ST_OK);
    CHECK(res.n_tokens == 4 && res.finish == ST_FINISH_LENGTH);
    st_batcher_result_free(&res);
    /* refused at submission */
    uint64_t id;
    r = greedy(p, 64, 1);
    CHECK(st_batcher_submit(b, &r, &id) == ST_ERANGE && id == 0);
    r = greedy(p, 0, 1);
    CHECK(st_batcher_submit(b, &r, &id) == ST_EINVAL);
    int32_t bad = 512;
    r = greedy(&bad, 1, 1);
    CHECK(st_batcher_submit(b, &r, &id) == ST_EINVAL);
    const char *stop[] = {"x"};
    r = greedy(p, 5, 1);
    r.stop = stop;
    r.n_stop = 1;
    CHECK(st_batcher_submit(b, &r, &id) == ST_EINVAL); /* no tokenizer */
    r = greedy(p, 5, 1);
    r.sampling.temperature = -1;
    CHECK(st_batcher_submit(b, &r, &id) == ST_EINVAL);
    r = greedy(p, 5, 1);
    r.top_logprobs = ST_MAX_TOP_LOGPROBS + 1;
    CHECK(st_batcher_submit(b, &r, &id) == ST_EINVAL);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.requests_submitted == 3 && st.kv_blocks_used == 0);
    st_batcher_destroy(b);

    st_batcher_config c = st_batcher_config_default();
    c.max_batch_size = 600; /* more sequences than rows */
    CHECK(st_batcher_create(model, be, &c, &b) == ST_EINVAL);
}

/* ---- logprobs ---------------------------------------------------------------------------------- */
static void test_logprobs(void)
{
    st_batcher *b = make(64, 512, 4, 1, 0);
    uint64_t rng = 21;
    int32_t p[30];
    random_prompt(&rng, p, 30);
    bu_result got;
    bu_result_init(&got);
    st_request r = greedy(p, 30, 6);
    r.top_logprobs = 5;
    r.cb = bu_collect;
    r.user = &got;
    CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    CHECK(got.n_tokens == 6 && got.top_ok == 6);
    CHECKF(got.top_bad == 0, "%d events with unsorted / inconsistent alternatives", got.top_bad);
    bu_result_free(&got);
    st_batcher_destroy(b);
}

/* ---- the loop thread with concurrent submitters ---------------------------------------------------- */
typedef struct {
    st_batcher *b;
    job *j;
    int same;
} thread_arg;

static void *submitter(void *arg)
{
    thread_arg *a = arg;
    st_request r = job_request(a->j, NULL);
    r.cb = NULL;
    st_batcher_result res;
    a->same = st_batcher_generate(a->b, &r, &res) == ST_OK &&
              bu_same(res.tokens, res.n_tokens, a->j->alone.tokens, a->j->alone.n_tokens);
    st_batcher_result_free(&res);
    return NULL;
}

static void test_thread(void)
{
    job jobs[6];
    make_jobs(jobs, 6, 31, 1, 110, 8);
    run_alone(jobs, 6);
    st_batcher *b = make(128, 64, 8, 1, 0);
    CHECK(st_batcher_start(b) == ST_OK);
    CHECK(st_batcher_start(b) == ST_EINVAL);
    CHECK(st_batcher_step(b) == ST_EINVAL);
    pthread_t th[6];
    thread_arg args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (thread_arg){.b = b, .j = &jobs[i]};
        pthread_create(&th[i], NULL, submitter, &args[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        CHECKF(args[i].same, "threaded request %d differs from its alone run", i);
    }
    /* stop with work in flight: everything gets its ABORT */
    bu_result got;
    bu_result_init(&got);
    st_request r = job_request(&jobs[0], &got);
    r.max_tokens = 0; /* to the context length: still running at stop */
    CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
    st_batcher_stop(b);
    CHECK(got.n_final == 1);
    CHECK(got.finish == ST_FINISH_ABORT || got.finish == ST_FINISH_LENGTH);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.kv_blocks_used == 0);
    bu_result_free(&got);
    st_batcher_destroy(b);
    for (int i = 0; i < 6; i++)
        bu_result_free(&jobs[i].alone);
}

/* ---- a model-free executor: checks every batch, answers with fake logits ------------------------ */
typedef struct {
    st_batcher *b;
    int vocab, max_rows, max_seqs, block_size;
    int calls, fail_at;  /* fail_at: return an error on that call (0: never) */
    int bad;             /* batches breaking an invariant */
    int shared_writes;   /* rows written into a block another sequence references */
} fake_exec;

static int fake_run(void *ctx, const st_sched_batch *sb, float *logits)
{
    fake_exec *f = ctx;
    if (++f->calls == f->fail_at)
        return st_err(ST_EIO, "injected failure");
    const st_batch *bt = &sb->b;
    int rows = 0;
    if (bt->n_tokens > f->max_rows || bt->n_seqs > f->max_seqs || bt->n_seqs < 1)
        f->bad++;
    for (int k = 0; k < bt->n_seqs; k++) {
        const st_batch_seq *q = &bt->seqs[k];
        if (q->row0 != rows || q->n_blocks * f->block_size < q->pos0 + q->n_tokens)
            f->bad++;
        for (int i = 0; i < q->n_tokens; i++) {
            int32_t pos = bt->pos[q->row0 + i];
            if (pos != q->pos0 + i)
                f->bad++;
            /* rows are written into the block holding their position: it must be ours alone */
            else if (st_kv_blocks_ref(st_batcher_kv(f->b), q->block_table[pos / f->block_size]) != 1)
                f->shared_writes++;
        }
        rows += q->n_tokens;
        if (q->want_logits != (sb->info[k].logit_row >= 0))
            f->bad++;
    }
    if (rows != bt->n_tokens)
        f->bad++;
    /* the next token depends only on the last row's token and position */
    for (int r = 0; r < sb->n_logit_rows; r++) {
        int row = sb->logit_rows[r];
        float *l = logits + (size_t)r * f->vocab;
        for (int v = 0; v < f->vocab; v++)
            l[v] = 0.0f;
        l[(bt->tokens[row] * 7 + bt->pos[row] * 13) % f->vocab] = 10.0f;
    }
    return ST_OK;
}

static void test_executor(void)
{
    /* many requests sharing prefixes through a small cache: every batch is
     * checked, and no row is ever written into a shared block */
    st_batcher *b = make(24, 48, 8, 1, 0);
    fake_exec f = {.b = b, .vocab = model->cfg.vocab_size, .max_rows = 48, .max_seqs = 8, .block_size = 16};
    st_batcher_set_executor(b, fake_run, &f);
    uint64_t rng = 17;
    static int32_t p[200][80];
    static bu_result got[200];
    for (int i = 0; i < 200; i++) {
        int n = 1 + (int)(bu_rand(&rng) % 80), stem = (int)(bu_rand(&rng) % 3);
        for (int k = 0; k < n; k++)
            p[i][k] = k < 40 ? (int32_t)(stem * 5 + k % 5) : (int32_t)(bu_rand(&rng) % 500);
        bu_result_init(&got[i]);
        st_request r = greedy(p[i], n, 1 + (int)(bu_rand(&rng) % 40));
        r.cb = bu_collect;
        r.user = &got[i];
        CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
    }
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    CHECKF(f.bad == 0, "%d invariant violations in %d batches", f.bad, f.calls);
    CHECKF(f.shared_writes == 0, "%d rows written into shared blocks", f.shared_writes);
    int finals = 0;
    for (int i = 0; i < 200; i++)
        finals += got[i].n_final == 1 && got[i].finish == ST_FINISH_LENGTH;
    CHECK(finals == 200);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.prefix_hit_tokens > 0 && st.preemptions > 0 && st.kv_blocks_used == 0);
    CHECK(st_kv_blocks_check(st_batcher_kv(b)) == ST_OK);

    /* a failing step ends the requests it held with ERROR, the rest go on */
    f = (fake_exec){.b = b, .vocab = model->cfg.vocab_size, .max_rows = 48, .max_seqs = 8, .block_size = 16,
                    .fail_at = 3};
    for (int i = 0; i < 4; i++) {
        bu_result_init(&got[i]);
        st_request r = greedy(p[i], 30, 20);
        r.cb = bu_collect;
        r.user = &got[i];
        CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
    }
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    int errors = 0, done = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(got[i].n_final == 1);
        errors += got[i].finish == ST_FINISH_ERROR;
        done += got[i].finish == ST_FINISH_LENGTH && got[i].n_tokens == 20;
    }
    CHECK(errors >= 1 && errors + done == 4);
    st_batcher_get_stats(b, &st);
    CHECK(st.kv_blocks_used == 0);
    st_batcher_destroy(b);
}

int main(void)
{
    const char *path = ST_SOURCE_DIR "/tests/golden/qwen3-tiny";
    if (st_model_load(path, 0, -1, &model) != ST_OK)
        TEST_SKIP("tiny model %s not loadable: %s", path, st_errmsg());
    be = st_backend_cpu_create(1); /* the tiny model gains nothing from more */
    st_log_set_level(ST_LOG_WARN);
    test_alone_matches_session();
    test_concurrent_equals_alone();
    test_preemption();
    test_prefix_cache();
    test_abort();
    test_limits();
    test_logprobs();
    test_thread();
    test_executor();
    st_backend_destroy(be);
    st_model_free(model);
    return test_done();
}
