/* Golden logits: the engine against an independent implementation
 * (llama.cpp; see tests/golden/README.md for how the files were made and
 * their exact semantics).
 *
 * For each golden file: feed its prompt as one batch and its greedy tokens
 * one decode at a time (the same shape as the reference run), and compare
 * at every position the log-probability of each of the golden top-16 ids
 * (log-probabilities are shift-invariant, so no constant offset can hide or
 * fake a match). Then generate greedily from the prompt and require the
 * golden greedy tokens up to the first step whose golden top-1/top-2
 * margin is within the tolerance (below it the reference itself could
 * have gone either way), and at least `min_greedy` steps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/test.h"

#define GK 16

typedef struct {
    int n_vocab, k;
    int n_prompt, n_greedy, n_rows;
    int32_t *prompt, *greedy;
    double *lse;       /* (n_rows,) */
    int32_t *ids;      /* (n_rows, k) */
    float *logit;      /* (n_rows, k) */
} golden;

static int read_ids(char **p, int n, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        char *e;
        long v = strtol(*p, &e, 10);
        if (e == *p)
            return -1;
        out[i] = (int32_t)v;
        *p = e;
    }
    return 0;
}

static int golden_load(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char line[1 << 16];
    int ok = fgets(line, sizeof line, f) && !strcmp(line, "strait-golden 1\n");
    int row = 0;
    while (ok && fgets(line, sizeof line, f)) {
        char *p = line;
        if (line[0] == '#' || !strncmp(line, "model ", 6))
            continue;
        if (sscanf(line, "n_vocab %d", &g->n_vocab) == 1 || sscanf(line, "k %d", &g->k) == 1)
            continue;
        if (!strncmp(line, "prompt ", 7)) {
            p += 7;
            g->n_prompt = (int)strtol(p, &p, 10);
            g->prompt = calloc((size_t)g->n_prompt, sizeof(int32_t));
            ok = read_ids(&p, g->n_prompt, g->prompt) == 0;
        } else if (!strncmp(line, "greedy ", 7)) {
            p += 7;
            g->n_greedy = (int)strtol(p, &p, 10);
            g->greedy = calloc((size_t)g->n_greedy, sizeof(int32_t));
            ok = read_ids(&p, g->n_greedy, g->greedy) == 0;
        } else if (!strncmp(line, "rows ", 5)) {
            g->n_rows = atoi(line + 5);
            ok = g->k == GK && g->n_rows == g->n_prompt + g->n_greedy - 1;
            g->lse = calloc((size_t)g->n_rows, sizeof(double));
            g->ids = calloc((size_t)g->n_rows * GK, sizeof(int32_t));
            g->logit = calloc((size_t)g->n_rows * GK, sizeof(float));
        } else if (g->n_rows && row < g->n_rows) {
            int pos = (int)strtol(p, &p, 10);
            g->lse[row] = strtod(p, &p);
            ok = pos == row;
            for (int j = 0; ok && j < GK; j++) {
                char *e;
                g->ids[row * GK + j] = (int32_t)strtol(p, &e, 10);
                ok = *e == ':';
                g->logit[row * GK + j] = strtof(e + 1, &p);
            }
            row++;
        } else {
            ok = 0;
        }
    }
    fclose(f);
    return ok && g->n_rows && row == g->n_rows ? 0 : -1;
}

static void golden_free(golden *g)
{
    free(g->prompt);
    free(g->greedy);
    free(g->lse);
    free(g->ids);
    free(g->logit);
}

static double row_lse(const float *x, int n)
{
    double m = x[0], s = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    return m + log(s);
}

typedef struct {
    const char *file;       /* under tests/golden */
    const char *model;      /* under tests/golden, or NULL for the default model */
    double tol_lp_max;      /* max |Δ log-prob| over every golden pair of every row */
    double tol_lp_mean;     /* mean |Δ log-prob| over all of them */
    int min_greedy;         /* greedy steps that must match at least */
    int exact;              /* 1: float activations in quantized matmuls (st_backend_cpu_create_exact) */
} golden_case;

/* Tolerances. Tiny models: BF16 weights, f32 activations; our f16 KV cache
 * (the reference used f32) is the main difference, ~1e-3 relative on K/V.
 * SmolLM2: both engines round activations to 8-bit blocks before the
 * quantized matmuls, but not identically (llama.cpp uses Q8_1 for Q4_1
 * weights), and llama.cpp's own distance from exact math on these files is
 * up to 1.41 in log-prob (mean over the top-16 up to 0.138; see
 * tests/golden/README.md). We require our distance both from llama.cpp and
 * from exact float math (the -exact- files) to stay within llama.cpp's own
 * distance from exact math (max 1.5, mean 0.15). With float activations
 * (the exact backend) the same engine is held to the -exact- files as
 * nearly as tightly as the tiny models (max 0.03: the f16 KV cache, the
 * only rounding the reference lacks, compounds over 30 layers instead of
 * 2; measured 0.009-0.025) and to every greedy step the reference is sure
 * of, at least 32 of 48. */
static const golden_case cases[] = {
    {"qwen3-tiny-a.txt", "qwen3-tiny", 0.02, 0.004, 32},
    {"qwen3-tiny-b.txt", "qwen3-tiny", 0.02, 0.004, 0},
    {"llama-tiny-a.txt", "llama-tiny", 0.02, 0.004, 0},
    {"llama-tiny-b.txt", "llama-tiny", 0.02, 0.004, 0},
    {"qwen2-tiny-a.txt", "qwen2-tiny", 0.02, 0.004, 18},
    {"qwen2-tiny-b.txt", "qwen2-tiny", 0.02, 0.004, 32},
    {"smollm2-135m-q4_1-short.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-long.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-chat.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-exact-short.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-exact-long.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-exact-chat.txt", NULL, 1.5, 0.15, 3},
    {"smollm2-135m-q4_1-exact-short.txt", NULL, 0.03, 0.004, 32, 1},
    {"smollm2-135m-q4_1-exact-long.txt", NULL, 0.03, 0.004, 32, 1},
    {"smollm2-135m-q4_1-exact-chat.txt", NULL, 0.03, 0.004, 32, 1},
};

static void run_case(const golden_case *c, st_backend *be, int *greedy_best)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/%s", ST_SOURCE_DIR, c->file);
    golden g;
    int rc = golden_load(path, &g);
    CHECKF(rc == 0, "cannot parse %s", path);
    if (rc)
        return;
    char mpath[4096];
    if (c->model) {
        snprintf(mpath, sizeof mpath, "%s/tests/golden/%s", ST_SOURCE_DIR, c->model);
    } else {
        const char *d = test_default_model();
        if (!d) {
            fprintf(stderr, "%s: default model not cached, skipped\n", c->file);
            golden_free(&g);
            return;
        }
        snprintf(mpath, sizeof mpath, "%s", d);
    }
    st_model *m;
    rc = st_model_load(mpath, 0, -1, &m);
    CHECKF(rc == ST_OK, "load %s: %s", mpath, st_errmsg());
    if (rc) {
        golden_free(&g);
        return;
    }
    int V = m->cfg.vocab_size;
    CHECK(V == g.n_vocab);

    /* 1. logits along the golden sequence */
    st_session s;
    CHECK(st_session_init(&s, m, be, g.n_rows + 8, g.n_prompt) == ST_OK);
    float *lg = malloc((size_t)g.n_rows * V * sizeof(float));
    rc = st_session_eval(&s, g.prompt, g.n_prompt, lg, 1);
    for (int j = 0; !rc && j < g.n_greedy - 1; j++)
        rc = st_session_eval(&s, &g.greedy[j], 1, lg + (size_t)(g.n_prompt + j) * V, 1);
    CHECKF(rc == ST_OK, "eval: %s", st_errmsg());
    double max_d = 0, sum_d = 0;
    int worst_row = 0;
    for (int r = 0; !rc && r < g.n_rows; r++) {
        const float *x = lg + (size_t)r * V;
        double lse = row_lse(x, V);
        for (int j = 0; j < GK; j++) {
            int id = g.ids[r * GK + j];
            double d = fabs(((double)x[id] - lse) - ((double)g.logit[r * GK + j] - g.lse[r]));
            if (!(d <= max_d))
                max_d = d, worst_row = r;
            sum_d += d;
        }
    }
    double mean_d = sum_d / ((double)g.n_rows * GK);
    CHECKF(max_d <= c->tol_lp_max, "%s: max |dlogprob| %.4f at row %d > %.4f", c->file, max_d, worst_row,
           c->tol_lp_max);
    CHECKF(mean_d <= c->tol_lp_mean, "%s: mean |dlogprob| %.4f > %.4f", c->file, mean_d, c->tol_lp_mean);

    /* 2. our own greedy generation from the prompt */
    st_session_reset(&s);
    float *last = malloc((size_t)V * sizeof(float));
    rc = st_session_eval(&s, g.prompt, g.n_prompt, last, 0);
    int agree = 0, safe = g.n_greedy;
    for (int j = 0; j < g.n_greedy; j++) { /* the first step the reference could not be sure of */
        const float *pr = &g.logit[(g.n_prompt - 1 + j) * GK];
        if (pr[0] - pr[1] <= 2 * c->tol_lp_max) {
            safe = j;
            break;
        }
    }
    for (int j = 0; !rc && j < g.n_greedy; j++) {
        int32_t t = st_argmax(last, V);
        if (t != g.greedy[j])
            break;
        agree++;
        if (j + 1 < g.n_greedy)
            rc = st_session_eval(&s, &t, 1, last, 0);
    }
    CHECKF(agree >= ST_MIN(safe, g.n_greedy), "%s: greedy agrees for %d steps; the reference is unambiguous for %d",
           c->file, agree, safe);
    CHECKF(agree >= c->min_greedy, "%s: greedy agrees for %d steps, need %d", c->file, agree, c->min_greedy);
    if (agree > *greedy_best)
        *greedy_best = agree;
    fprintf(stderr, "%-34s %s rows %3d  max|dlp| %.4f  mean|dlp| %.5f  greedy %d/%d (unambiguous %d)\n", c->file,
            c->exact ? "f32 act" : "q8 act ", g.n_rows, max_d, mean_d, agree, g.n_greedy, safe);
    free(last);
    free(lg);
    st_session_free(&s);
    st_model_free(m);
    golden_free(&g);
}

int main(void)
{
    st_backend *be = st_backend_cpu_create(0), *exact = st_backend_cpu_create_exact(0);
    int best = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++)
        run_case(&cases[i], cases[i].exact ? exact : be, &best);
    st_backend_destroy(exact);
    /* the bar: identical greedy tokens for at least 32 steps */
    CHECKF(best >= 32, "no golden case reached 32 identical greedy steps (best %d)", best);
    st_backend_destroy(be);
    return test_done();
}
