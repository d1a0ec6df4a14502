/* Batch invariance on a real model (the default model; skipped when it is
 * not installed): 16 greedy requests of different lengths give exactly the
 * tokens each gives alone, when batched together and when a small KV cache
 * forces preemptions; the streamed text is the decode of the tokens. */
#include "../../common/st_common.h"
#include "../../engine/tokenizer.h"
#include "../../sched/batcher.h"
#include "../test.h"
#include "batcher_util.h"

#define NREQ 16
#define GEN 10

static const char *texts[NREQ] = {
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):",
    "Water boils at",
    "The three primary colors are red, yellow and",
    "In 1969, the first humans",
    "A haiku about autumn:",
    "List of prime numbers: 2, 3, 5,",
    "The quick brown fox",
    "To make a cup of tea, first",
    "The mitochondria is",
    "SELECT name FROM users WHERE",
    "My favourite book is",
    "The largest planet in the solar system is",
    "Translate to French: good morning ->",
    "An interesting fact about octopuses is that they have three hearts, blue blood and",
};

typedef struct {
    int32_t prompt[64];
    int n;
    bu_result alone, got;
} job;

static job jobs[NREQ];

static st_batcher *make(st_model *m, st_backend *be, int n_blocks, int max_batch)
{
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = n_blocks;
    c.max_batch_size = max_batch;
    c.max_num_tokens_per_batch = 128;
    c.prefix_cache = 0;
    st_batcher *b = NULL;
    CHECKF(st_batcher_create(m, be, &c, &b) == ST_OK, "%s", st_errmsg());
    return b;
}

static void submit(st_batcher *b, job *j, bu_result *out)
{
    st_request r = st_request_default();
    r.prompt = j->prompt;
    r.n_prompt = j->n;
    r.max_tokens = GEN;
    r.ignore_eos = 1; /* a fixed length keeps the comparison simple */
    r.cb = bu_collect;
    r.user = out;
    bu_result_init(out);
    CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
}

static int compare_all(const char *what)
{
    int differ = 0;
    for (int i = 0; i < NREQ; i++) {
        CHECK(jobs[i].got.n_final == 1);
        if (!bu_same_tokens(&jobs[i].got, &jobs[i].alone)) {
            differ++;
            fprintf(stderr, "  %s: request %d (\"%s\") differs\n", what, i, texts[i]);
        }
    }
    CHECKF(differ == 0, "%s: %d of %d greedy requests changed when batched", what, differ, NREQ);
    return differ;
}

int main(void)
{
    const char *path = test_default_model();
    if (!path)
        TEST_SKIP("default model not installed (set ST_TEST_MODEL or install SmolLM2-135M-Instruct)");
    st_model *m;
    if (st_model_load(path, 0, -1, &m) != ST_OK)
        TEST_SKIP("default model %s not loadable: %s", path, st_errmsg());
    if (!m->tok)
        TEST_SKIP("default model %s has no tokenizer", path);
    st_log_set_level(ST_LOG_WARN);
    st_backend *be = st_backend_cpu_create(1); /* spinning workers on a shared 2-core box cost more than they give */
    for (int i = 0; i < NREQ; i++) {
        jobs[i].n = st_tok_encode(m->tok, texts[i], strlen(texts[i]), 0, jobs[i].prompt, 64);
        CHECK(jobs[i].n > 0 && jobs[i].n <= 64);
    }

    double t0 = st_now_s();
    st_batcher *b = make(m, be, 64, 1);
    for (int i = 0; i < NREQ; i++) {
        submit(b, &jobs[i], &jobs[i].alone);
        CHECK(st_batcher_run_until_idle(b) == ST_OK);
        CHECK(jobs[i].alone.n_tokens == GEN);
        char full[4096];
        int n = st_tok_decode(m->tok, jobs[i].alone.tokens, jobs[i].alone.n_tokens, 1, full, (int)sizeof full);
        CHECK(n == (int)jobs[i].alone.text_len && !memcmp(full, jobs[i].alone.text, (size_t)n));
    }
    st_batcher_destroy(b);

    double t_alone = st_now_s() - t0;

    /* all 16 at once, prompts chunked beside decodes */
    t0 = st_now_s();
    b = make(m, be, 64, 16);
    for (int i = 0; i < NREQ; i++)
        submit(b, &jobs[i], &jobs[i].got);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    compare_all("batched");
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    /* information only (speed belongs to benchmarks) */
    fprintf(stderr, "16 requests x %d tokens: one at a time %.2f s, batched %.2f s (%llu steps, %.1f seqs/step)\n",
            GEN, t_alone, st_now_s() - t0, (unsigned long long)st.steps,
            (double)st.batch_seqs / (double)(st.steps ? st.steps : 1));
    CHECK(st.batch_seqs > 8 * st.steps / 2);
    st_batcher_destroy(b);

    /* a cache of 10 blocks (160 slots) for 16 sequences of ~20 tokens */
    b = make(m, be, 10, 16);
    for (int i = 0; i < NREQ; i++)
        submit(b, &jobs[i], &jobs[i].got);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    compare_all("preempted");
    st_batcher_get_stats(b, &st);
    CHECKF(st.preemptions > 0, "no preemption with 10 blocks");
    CHECK(st.kv_blocks_used == 0);
    st_batcher_destroy(b);

    st_backend_destroy(be);
    st_model_free(m);
    return test_done();
}
