/* Sampler: greedy, determinism, the distribution at temperature 1 (chi-square),
 * top-k / top-p / min-p supports, exact penalty arithmetic, validation. */
#include "engine/sampler.h"

#include <stdint.h>

#include "common/st_common.h"
#include "tests/test.h"

/* test-local generator, independent of the sampler's */
static uint64_t lcg_state = 88172645463325252ull;
static double urand(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}

static void fill_random(float *x, int n, double scale)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)((urand() * 2.0 - 1.0) * scale);
}

/* softmax of x / t in double (the reference) */
static void softmax_ref(const float *x, int n, double t, double *p)
{
    double mx = x[0], sum = 0.0;
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        sum += p[i] = exp(((double)x[i] - mx) / t);
    for (int i = 0; i < n; i++)
        p[i] /= sum;
}

static st_sampling plain(float temperature, uint64_t seed)
{
    st_sampling p = st_sampling_default();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static int32_t sample_copy(st_sampler *s, const float *logits, int n, float *scratch)
{
    memcpy(scratch, logits, (size_t)n * sizeof *scratch);
    return st_sampler_sample(s, scratch, n, NULL, 0, NULL);
}

static void test_greedy(void)
{
    enum { N = 1000 };
    static float x[N];
    for (int trial = 0; trial < 20; trial++) {
        fill_random(x, N, 10.0);
        int best = 0;
        for (int i = 1; i < N; i++)
            if (x[i] > x[best])
                best = i;
        st_sampling p = plain(0.0f, trial);
        st_sampler s;
        st_sampler_init(&s, &p);
        float lp;
        int32_t tok = st_sampler_sample(&s, x, N, NULL, 0, &lp);
        CHECKF(tok == best, "greedy %d, max at %d", tok, best);
        double pr[N];
        softmax_ref(x, N, 1.0, pr);
        CHECK_NEAR(lp, log(pr[best]), 1e-4);
        st_sampler_free(&s);
    }
    float ties[5] = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f};
    CHECK(st_argmax(ties, 5) == 1);
    CHECK(st_argmax(ties, 0) < 0);
}

static void test_rng_reference(void)
{
    /* splitmix64 seeded with 1234567: the published reference outputs seed the
     * xoshiro state, so the state words are those outputs */
    st_sampling p = plain(1.0f, 1234567);
    st_sampler s;
    st_sampler_init(&s, &p);
    CHECK(s.rng[0] == 6457827717110365317ull);
    CHECK(s.rng[1] == 3203168211198807973ull);
    CHECK(s.rng[2] == 9817491932198370423ull);
    CHECK(s.rng[3] == 4593380528125082431ull);
    st_sampler_free(&s);
}

static void test_determinism(void)
{
    enum { N = 64, DRAWS = 1000 };
    float x[N], tmp[N];
    fill_random(x, N, 3.0);
    static int32_t a[DRAWS], b[DRAWS], c[DRAWS];
    st_sampling p = st_sampling_default(); /* top-k, top-p and min-p all on */
    p.top_k = 0;                           /* let more tokens compete */
    p.min_p = 0.0f;
    p.seed = 42;
    st_sampler s1, s2, s3;
    st_sampler_init(&s1, &p);
    st_sampler_init(&s2, &p);
    p.seed = 43;
    st_sampler_init(&s3, &p);
    for (int i = 0; i < DRAWS; i++) {
        a[i] = sample_copy(&s1, x, N, tmp);
        b[i] = sample_copy(&s2, x, N, tmp);
        c[i] = sample_copy(&s3, x, N, tmp);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    int differ = 0, distinct = 0;
    int seen[N] = {0};
    for (int i = 0; i < DRAWS; i++) {
        differ += a[i] != c[i];
        if (!seen[a[i]]++)
            distinct++;
    }
    CHECKF(differ > 100, "seeds 42 and 43 differ in only %d of %d draws", differ, DRAWS);
    CHECKF(distinct > 5, "only %d distinct tokens drawn", distinct);
    st_sampler_free(&s1);
    st_sampler_free(&s2);
    st_sampler_free(&s3);
}

/* Chi-square statistic of counts against probabilities p over n cells. */
static double chi_square(const int *counts, const double *p, int n, int draws)
{
    double chi = 0.0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * draws;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

static void test_distribution(void)
{
    enum { N = 8, DRAWS = 20000 };
    const float x[N] = {1.0f, 0.5f, 2.0f, -0.3f, 1.5f, 0.0f, -1.0f, 0.8f};
    /* 7 degrees of freedom: P(chi2 > 24.32) = 0.001 */
    const double bound = 24.32;
    for (int ti = 0; ti < 2; ti++) {
        double t = ti == 0 ? 1.0 : 0.7;
        st_sampling p = plain((float)t, 7 + ti);
        st_sampler s;
        st_sampler_init(&s, &p);
        int counts[N] = {0};
        float tmp[N];
        for (int i = 0; i < DRAWS; i++) {
            int32_t tok = sample_copy(&s, x, N, tmp);
            CHECK(tok >= 0 && tok < N);
            if (tok >= 0 && tok < N)
                counts[tok]++;
        }
        double pr[N], wrong[N];
        softmax_ref(x, N, t, pr);
        softmax_ref(x, N, t * 1.25, wrong);
        double chi = chi_square(counts, pr, N, DRAWS);
        double chi_wrong = chi_square(counts, wrong, N, DRAWS);
        CHECKF(chi < bound, "T=%g: chi2 %.2f >= %.2f", t, chi, bound);
        /* the check has power: the same counts reject a 25% wrong temperature */
        CHECKF(chi_wrong > bound, "T=%g: chi2 against a wrong temperature only %.2f", t, chi_wrong);
        st_sampler_free(&s);
    }
}

static void test_top_k(void)
{
    enum { N = 5000 };
    static float x[N], tmp[N];
    st_sampling p = plain(1.0f, 5);
    p.top_k = 1;
    st_sampler s;
    st_sampler_init(&s, &p);
    for (int trial = 0; trial < 50; trial++) {
        fill_random(x, N, 5.0);
        CHECK(sample_copy(&s, x, N, tmp) == st_argmax(x, N));
    }
    st_sampler_free(&s);

    /* top-k = 3: only the three largest are ever drawn, and all of them are */
    float y[10] = {0.1f, 2.0f, 0.3f, 1.9f, -1.0f, 1.8f, 0.0f, 1.7f, 0.2f, 0.4f};
    p.top_k = 3;
    st_sampler_init(&s, &p);
    int counts[10] = {0};
    for (int i = 0; i < 3000; i++)
        counts[sample_copy(&s, y, 10, tmp)]++;
    for (int i = 0; i < 10; i++) {
        int in = i == 1 || i == 3 || i == 5;
        CHECKF(in ? counts[i] > 0 : counts[i] == 0, "top-k 3: token %d drawn %d times", i, counts[i]);
    }
    st_sampler_free(&s);
}

static const double *sort_pr;
static int cmp_pr_desc(const void *a, const void *b)
{
    double x = sort_pr[*(const int *)a], y = sort_pr[*(const int *)b];
    return (x < y) - (x > y);
}

/* Expected nucleus: sort by probability and take the smallest prefix with
 * mass >= top_p; marks in[] and returns its size. */
static int nucleus_ref(const double *pr, int n, double top_p, int *in)
{
    int *order = st_xmalloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    sort_pr = pr;
    qsort(order, (size_t)n, sizeof *order, cmp_pr_desc);
    double cum = 0.0;
    int k = 0;
    memset(in, 0, (size_t)n * sizeof *in);
    while (k < n && cum < top_p) {
        cum += pr[order[k]];
        in[order[k++]] = 1;
    }
    free(order);
    return k;
}

static void test_top_p(void)
{
    enum { N = 12, DRAWS = 5000 };
    const float x[N] = {2.0f, 1.0f, 0.5f, 3.0f, -1.0f, 0.0f, 1.2f, -0.5f, 2.5f, 0.7f, -2.0f, 1.6f};
    double pr[N];
    softmax_ref(x, N, 1.0, pr);
    const float tops[] = {0.3f, 0.6f, 0.85f};
    for (size_t k = 0; k < ST_ARRAY_LEN(tops); k++) {
        int in[N];
        int size = nucleus_ref(pr, N, tops[k], in);
        st_sampling p = plain(1.0f, 11);
        p.top_p = tops[k];
        st_sampler s;
        st_sampler_init(&s, &p);
        int counts[N] = {0};
        float tmp[N];
        for (int i = 0; i < DRAWS; i++)
            counts[sample_copy(&s, x, N, tmp)]++;
        for (int i = 0; i < N; i++)
            CHECKF(in[i] ? counts[i] > 0 : counts[i] == 0, "top_p %.2f (nucleus %d): token %d drawn %d times",
                   (double)tops[k], size, i, counts[i]);
        st_sampler_free(&s);
    }
}

/* The large-vocabulary paths (pre-filter cut, fallback for flat rows, top-k
 * heap) against the brute-force nucleus on 152k entries. */
static void test_large_vocab(void)
{
    enum { N = 152064 };
    float *x = st_xmalloc(N * sizeof *x), *tmp = st_xmalloc(N * sizeof *tmp);
    double *pr = st_xmalloc(N * sizeof *pr);
    int *in = st_xmalloc(N * sizeof *in);
    for (int shape = 0; shape < 2; shape++) {
        /* shape 0: a peaked row (few tokens hold the mass); 1: nearly flat */
        fill_random(x, N, shape == 0 ? 4.0 : 0.05);
        if (shape == 0)
            for (int i = 0; i < 50; i++)
                x[(i * 7919) % N] += 12.0f;
        softmax_ref(x, N, 1.0, pr);
        st_sampling p = plain(1.0f, 3);
        p.top_p = shape == 0 ? 0.9f : 0.5f;
        int size = nucleus_ref(pr, N, p.top_p, in);
        st_sampler s;
        st_sampler_init(&s, &p);
        int outside = 0, draws = shape == 0 ? 200 : 20;
        for (int i = 0; i < draws; i++) {
            int32_t t = sample_copy(&s, x, N, tmp);
            outside += !(t >= 0 && t < N && in[t]);
        }
        CHECKF(outside == 0, "shape %d: %d of %d draws outside the nucleus of %d", shape, outside, draws,
               size);
        st_sampler_free(&s);
    }
    /* top-k 40 on the large row: draws are among the 40 largest */
    st_sampling p = plain(1.5f, 9);
    p.top_k = 40;
    st_sampler s;
    st_sampler_init(&s, &p);
    fill_random(x, N, 4.0);
    memcpy(tmp, x, N * sizeof *x);
    for (int i = 0; i < 200; i++) {
        int32_t t = sample_copy(&s, x, N, tmp);
        int larger = 0;
        for (int j = 0; j < N; j++)
            larger += x[j] > x[t];
        CHECKF(larger < 40, "top-k 40 drew a token with %d larger logits", larger);
        if (larger >= 40)
            break;
    }
    st_sampler_free(&s);
    free(x);
    free(tmp);
    free(pr);
    free(in);
}

static void test_min_p(void)
{
    enum { N = 10, DRAWS = 5000 };
    const float x[N] = {3.0f, 2.0f, 1.0f, 0.0f, -1.0f, 2.9f, 1.5f, 0.5f, -3.0f, 2.2f};
    double pr[N];
    softmax_ref(x, N, 1.0, pr);
    const float min_p = 0.2f; /* keeps p >= 0.2 * p_max: logit >= 3 + ln 0.2 = 1.39 */
    st_sampling p = plain(1.0f, 13);
    p.min_p = min_p;
    st_sampler s;
    st_sampler_init(&s, &p);
    int counts[N] = {0};
    float tmp[N];
    for (int i = 0; i < DRAWS; i++)
        counts[sample_copy(&s, x, N, tmp)]++;
    for (int i = 0; i < N; i++) {
        int keep = pr[i] >= min_p * pr[0];
        CHECKF(keep ? counts[i] > 0 : counts[i] == 0, "min_p: token %d (p %.3f) drawn %d times", i, pr[i],
               counts[i]);
    }
    st_sampler_free(&s);
}

static void test_penalties(void)
{
    const float base[6] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
    const int32_t hist[] = {0, 1, 1, 3, 0, 0, 99, -4}; /* 0 x3, 1 x2, 3 x1; 99, -4 out of range */
    float x[6];
    st_sampling p = plain(0.0f, 1); /* greedy: logits show exactly the penalised values */

    p.repetition_penalty = 1.5f;
    st_sampler s;
    st_sampler_init(&s, &p);
    memcpy(x, base, sizeof x);
    st_sampler_sample(&s, x, 6, hist, 8, NULL);
    const float want_rep[6] = {2.0f / 1.5f, -1.0f * 1.5f, 0.5f, 3.0f / 1.5f, -2.0f, 1.0f};
    for (int i = 0; i < 6; i++)
        CHECKF(x[i] == want_rep[i], "repetition: logit %d = %g, want %g", i, (double)x[i], (double)want_rep[i]);
    st_sampler_free(&s);

    p.repetition_penalty = 1.0f;
    p.presence_penalty = 0.25f;
    p.frequency_penalty = 0.5f;
    st_sampler_init(&s, &p);
    memcpy(x, base, sizeof x);
    st_sampler_sample(&s, x, 6, hist, 8, NULL);
    const float want_pf[6] = {2.0f - (3 * 0.5f + 0.25f), -1.0f - (2 * 0.5f + 0.25f), 0.5f,
                              3.0f - (1 * 0.5f + 0.25f), -2.0f, 1.0f};
    for (int i = 0; i < 6; i++)
        CHECKF(x[i] == want_pf[i], "presence/frequency: logit %d = %g, want %g", i, (double)x[i],
               (double)want_pf[i]);
    st_sampler_free(&s);

    /* the window: only the last 4 tokens {0, 0, 99, -4} count */
    p.penalty_last_n = 4;
    st_sampler_init(&s, &p);
    memcpy(x, base, sizeof x);
    float lp;
    int32_t tok = st_sampler_sample(&s, x, 6, hist, 8, &lp);
    const float want_win[6] = {2.0f - (2 * 0.5f + 0.25f), -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
    for (int i = 0; i < 6; i++)
        CHECKF(x[i] == want_win[i], "window: logit %d = %g, want %g", i, (double)x[i], (double)want_win[i]);
    /* logprob refers to the unpenalised row */
    double pr[6];
    softmax_ref(base, 6, 1.0, pr);
    CHECK(tok == 3);
    CHECK_NEAR(lp, log(pr[3]), 1e-5);
    st_sampler_free(&s);

    /* a penalty can change the choice: 3 (3.0) falls below 0 (2.0) */
    p = plain(0.0f, 1);
    p.presence_penalty = 1.5f;
    st_sampler_init(&s, &p);
    memcpy(x, base, sizeof x);
    const int32_t h3[] = {3};
    CHECK(st_sampler_sample(&s, x, 6, h3, 1, &lp) == 0);
    CHECK_NEAR(lp, log(pr[0]), 1e-5); /* the penalised token's original logit did not leak in */
    st_sampler_free(&s);
}

static void test_validation(void)
{
    st_sampling p = st_sampling_default();
    CHECK(st_sampling_validate(&p) == ST_OK);
    CHECK(st_sampling_validate(NULL) == ST_EINVAL);
#define EXPECT_BAD(field, stmt)                                                                      \
    do {                                                                                             \
        st_sampling q = st_sampling_default();                                                       \
        stmt;                                                                                        \
        int rc = st_sampling_validate(&q);                                                           \
        CHECKF(rc == ST_EINVAL && strstr(st_errmsg(), field), "%s: rc %d, msg '%s'", #stmt, rc,    \
               st_errmsg());                                                                         \
    } while (0)
    EXPECT_BAD("temperature", q.temperature = NAN);
    EXPECT_BAD("temperature", q.temperature = INFINITY);
    EXPECT_BAD("temperature", q.temperature = -0.5f);
    EXPECT_BAD("temperature", q.temperature = 100.5f);
    EXPECT_BAD("top_p", q.top_p = 0.0f);
    EXPECT_BAD("top_p", q.top_p = -0.1f);
    EXPECT_BAD("top_p", q.top_p = 1.01f);
    EXPECT_BAD("top_p", q.top_p = NAN);
    EXPECT_BAD("min_p", q.min_p = -0.01f);
    EXPECT_BAD("min_p", q.min_p = 1.5f);
    EXPECT_BAD("min_p", q.min_p = NAN);
    EXPECT_BAD("repetition_penalty", q.repetition_penalty = 0.0f);
    EXPECT_BAD("repetition_penalty", q.repetition_penalty = -1.0f);
    EXPECT_BAD("repetition_penalty", q.repetition_penalty = NAN);
    EXPECT_BAD("presence_penalty", q.presence_penalty = NAN);
    EXPECT_BAD("frequency_penalty", q.frequency_penalty = INFINITY);
    EXPECT_BAD("penalty_last_n", q.penalty_last_n = -1);
    /* edges that are valid */
    st_sampling q = st_sampling_default();
    q.temperature = 0.0f;
    q.top_p = 1.0f;
    q.min_p = 1.0f;
    q.presence_penalty = -2.0f;
    CHECK(st_sampling_validate(&q) == ST_OK);

    /* bad calls are errors, not crashes */
    st_sampler s;
    st_sampler_init(&s, &p);
    float x[3] = {1, 2, 3};
    CHECK(st_sampler_sample(&s, x, 0, NULL, 0, NULL) == ST_EINVAL);
    CHECK(st_sampler_sample(&s, NULL, 3, NULL, 0, NULL) == ST_EINVAL);
    CHECK(st_sampler_sample(&s, x, 3, NULL, 2, NULL) == ST_EINVAL);
    /* masked rows: -inf entries are never drawn */
    float m[4] = {-INFINITY, 0.0f, -INFINITY, 0.0f};
    for (int i = 0; i < 50; i++) {
        float t[4];
        memcpy(t, m, sizeof t);
        int32_t tok = st_sampler_sample(&s, t, 4, NULL, 0, NULL);
        CHECK(tok == 1 || tok == 3);
    }
    st_sampler_free(&s);
}

int main(void)
{
    test_greedy();
    test_rng_reference();
    test_determinism();
    test_distribution();
    test_top_k();
    test_top_p();
    test_large_vocab();
    test_min_p();
    test_penalties();
    test_validation();
    return test_done();
}
