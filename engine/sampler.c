/* Token sampling: penalties on the raw logits, then temperature, top-k,
 * softmax, top-p, min-p, renormalise, draw.
 *
 * Speed: the vocabulary (up to ~152k) is never fully sorted when it can be
 * avoided. top-k keeps a k-entry min-heap while scanning the logits (most
 * entries are rejected by one comparison with the heap root) and sorts only
 * the k survivors. Without top-k, top-p first keeps the tokens whose
 * probability is at least 1/1024 (at most 1024 of them); only if their mass
 * falls short of top_p is the cut lowered (1/65536, then everything).
 *
 * Determinism: the candidate order is a total order (logit descending, id
 * ascending), the weights come from det_exp() below (IEEE-exact operations
 * only, FMA contraction off), and the draw is a 53-bit double, so the same
 * seed and logits give the same token on any IEEE-754 platform. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- parameters ------------------------------------------------------------ */
st_sampling st_sampling_default(void)
{
    st_sampling p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repetition_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
    return p;
}

int st_sampling_validate(const st_sampling *p)
{
    if (!p)
        return st_err(ST_EINVAL, "sampling: parameters are NULL");
    if (!isfinite(p->temperature) || p->temperature < 0.0f || p->temperature > 100.0f)
        return st_err(ST_EINVAL, "sampling: temperature %g must be in [0, 100] (0 = greedy)", (double)p->temperature);
    if (!isfinite(p->top_p) || !(p->top_p > 0.0f) || p->top_p > 1.0f)
        return st_err(ST_EINVAL, "sampling: top_p %g must be in (0, 1]", (double)p->top_p);
    if (!isfinite(p->min_p) || p->min_p < 0.0f || p->min_p > 1.0f)
        return st_err(ST_EINVAL, "sampling: min_p %g must be in [0, 1]", (double)p->min_p);
    if (!isfinite(p->repetition_penalty) || !(p->repetition_penalty > 0.0f))
        return st_err(ST_EINVAL, "sampling: repetition_penalty %g must be finite and > 0",
                      (double)p->repetition_penalty);
    if (!isfinite(p->presence_penalty))
        return st_err(ST_EINVAL, "sampling: presence_penalty must be finite");
    if (!isfinite(p->frequency_penalty))
        return st_err(ST_EINVAL, "sampling: frequency_penalty must be finite");
    if (p->penalty_last_n < 0)
        return st_err(ST_EINVAL, "sampling: penalty_last_n %d must be >= 0", p->penalty_last_n);
    return ST_OK;
}

/* ---- RNG: xoshiro256** seeded through splitmix64 ------------------------------ */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 bits: exact on every platform. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- lifecycle -------------------------------------------------------------- */
void st_sampler_init(st_sampler *s, const st_sampling *p)
{
    memset(s, 0, sizeof *s);
    s->p = p ? *p : st_sampling_default();
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

void st_sampler_free(st_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->w);
    free(s->hist);
    free(s->orig);
    memset(s, 0, sizeof *s);
}

static void reserve(st_sampler *s, int n)
{
    if (n <= s->cap)
        return;
    free(s->idx);
    free(s->w);
    s->idx = st_xmalloc((size_t)n * sizeof *s->idx);
    s->w = st_xmalloc((size_t)n * sizeof *s->w);
    s->cap = n;
}

static void reserve_hist(st_sampler *s, int n)
{
    if (n <= s->hist_cap)
        return;
    free(s->hist);
    free(s->orig);
    s->hist = st_xmalloc((size_t)n * sizeof *s->hist);
    s->orig = st_xmalloc((size_t)n * sizeof *s->orig);
    s->hist_cap = n;
}

/* ---- exp without libm: same bits everywhere --------------------------------
 * exp(x) for x <= 0 (arguments are logit - max), using only IEEE-exact
 * operations, so that every platform computes the same weights.
 * x = (64 m + j) ln2/64 + r with |r| <= ln2/128; exp(x) = 2^m 2^(j/64) e^r,
 * e^r by a degree-5 polynomial (error ~1e-17), 2^(j/64) from a table,
 * 2^m built from its bits. Below -708 (a weight under 1e-307 relative to
 * the largest) the result is 0. */
#define EXP_TAB 64
static const double exp2_tab[EXP_TAB] = { /* 2^(j/64), correctly rounded */
    0x1.0000000000000p+0, 0x1.02c9a3e778061p+0, 0x1.059b0d3158574p+0, 0x1.0874518759bc8p+0,
    0x1.0b5586cf9890fp+0, 0x1.0e3ec32d3d1a2p+0, 0x1.11301d0125b51p+0, 0x1.1429aaea92de0p+0,
    0x1.172b83c7d517bp+0, 0x1.1a35beb6fcb75p+0, 0x1.1d4873168b9aap+0, 0x1.2063b88628cd6p+0,
    0x1.2387a6e756238p+0, 0x1.26b4565e27cddp+0, 0x1.29e9df51fdee1p+0, 0x1.2d285a6e4030bp+0,
    0x1.306fe0a31b715p+0, 0x1.33c08b26416ffp+0, 0x1.371a7373aa9cbp+0, 0x1.3a7db34e59ff7p+0,
    0x1.3dea64c123422p+0, 0x1.4160a21f72e2ap+0, 0x1.44e086061892dp+0, 0x1.486a2b5c13cd0p+0,
    0x1.4bfdad5362a27p+0, 0x1.4f9b2769d2ca7p+0, 0x1.5342b569d4f82p+0, 0x1.56f4736b527dap+0,
    0x1.5ab07dd485429p+0, 0x1.5e76f15ad2148p+0, 0x1.6247eb03a5585p+0, 0x1.6623882552225p+0,
    0x1.6a09e667f3bcdp+0, 0x1.6dfb23c651a2fp+0, 0x1.71f75e8ec5f74p+0, 0x1.75feb564267c9p+0,
    0x1.7a11473eb0187p+0, 0x1.7e2f336cf4e62p+0, 0x1.82589994cce13p+0, 0x1.868d99b4492edp+0,
    0x1.8ace5422aa0dbp+0, 0x1.8f1ae99157736p+0, 0x1.93737b0cdc5e5p+0, 0x1.97d829fde4e50p+0,
    0x1.9c49182a3f090p+0, 0x1.a0c667b5de565p+0, 0x1.a5503b23e255dp+0, 0x1.a9e6b5579fdbfp+0,
    0x1.ae89f995ad3adp+0, 0x1.b33a2b84f15fbp+0, 0x1.b7f76f2fb5e47p+0, 0x1.bcc1e904bc1d2p+0,
    0x1.c199bdd85529cp+0, 0x1.c67f12e57d14bp+0, 0x1.cb720dcef9069p+0, 0x1.d072d4a07897cp+0,
    0x1.d5818dcfba487p+0, 0x1.da9e603db3285p+0, 0x1.dfc97337b9b5fp+0, 0x1.e502ee78b3ff6p+0,
    0x1.ea4afa2a490dap+0, 0x1.efa1bee615a27p+0, 0x1.f50765b6e4540p+0, 0x1.fa7c1819e90d8p+0,
};
static const double ln2_64_hi = 6.93147180369123816490e-01 / EXP_TAB, ln2_64_lo = 1.90821492927058770002e-10 / EXP_TAB;

static inline double det_exp(double x)
{
    if (!(x >= -708.0)) /* also NaN */
        return 0.0;
    if (x > 0.0)
        x = 0.0;
    /* round to nearest by the 1.5 * 2^52 trick: exact, and no branch */
    double kf = (x * (EXP_TAB * 1.44269504088896338700) + 0x1.8p52) - 0x1.8p52;
    int k = (int)kf;
    double r = (x - kf * ln2_64_hi) - kf * ln2_64_lo;
    double p = 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int m = k >> 6, j = k & (EXP_TAB - 1); /* floor division: k = 64 m + j, 0 <= j < 64 */
    union {
        uint64_t u;
        double d;
    } two_m = {.u = (uint64_t)(m + 1023) << 52}; /* m >= -1022: a normal power of two */
    return exp2_tab[j] * p * two_m.d;
}

/* ---- ordering: logit descending, then id ascending (a total order) ------------ */
static inline int better(const float *l, int32_t a, int32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Sift down in a heap whose root is the element that `better` ranks lowest
 * (a min-heap of the kept top-k). */
static void sift_worst(const float *l, int32_t *h, int n, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && better(l, h[c], h[c + 1]))
            c++;
        if (!better(l, h[i], h[c]))
            return;
        int32_t t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* Sort ids best-first: heapsort with the worst at the root, moving the
 * worst to the end each time. O(n log n), no recursion, no qsort context. */
static void sort_best_first(const float *l, int32_t *h, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_worst(l, h, n, i);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_worst(l, h, end, 0);
    }
}

/* The k best ids of l (n,), best first, into out (k,). */
static void top_k_select(const float *l, int n, int k, int32_t *out)
{
    for (int i = 0; i < k; i++)
        out[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_worst(l, out, k, i);
    for (int i = k; i < n; i++) {
        if (better(l, i, out[0])) {
            out[0] = i;
            sift_worst(l, out, k, 0);
        }
    }
    sort_best_first(l, out, k);
}

int32_t st_argmax(const float *x, int n)
{
    if (!x || n <= 0)
        return -1;
    int32_t best = 0;
    while (best < n - 1 && x[best] != x[best]) /* skip leading NaNs */
        best++;
    float bv = x[best];
    for (int i = best + 1; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

/* ---- penalties ------------------------------------------------------------------ */
static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Apply the penalties to logits over the window; the distinct window ids go
 * to s->hist[0..*n_distinct) (sorted) with their pre-penalty logits in
 * s->orig, so that the caller can recover an original logit. */
static void apply_penalties(st_sampler *s, float *logits, int n_vocab, const int32_t *history, int n_history,
                            int *n_distinct)
{
    const st_sampling *p = &s->p;
    *n_distinct = 0;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
        return;
    int start = (p->penalty_last_n > 0 && n_history > p->penalty_last_n) ? n_history - p->penalty_last_n : 0;
    int w = n_history - start;
    if (w <= 0)
        return;
    reserve_hist(s, w);
    int m = 0;
    for (int i = start; i < n_history; i++)
        if (history[i] >= 0 && history[i] < n_vocab)
            s->hist[m++] = history[i];
    qsort(s->hist, (size_t)m, sizeof *s->hist, cmp_i32);
    int nd = 0;
    for (int i = 0; i < m;) {
        int32_t t = s->hist[i];
        int j = i;
        while (j < m && s->hist[j] == t)
            j++;
        float count = (float)(j - i);
        float l = logits[t];
        s->orig[nd] = l;
        s->hist[nd++] = t;
        if (p->repetition_penalty != 1.0f)
            l = l > 0.0f ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= count * p->frequency_penalty + p->presence_penalty;
        logits[t] = l;
        i = j;
    }
    *n_distinct = nd;
}

/* ---- sampling ------------------------------------------------------------------ */
/* Candidate i's weight: s->w is indexed by position in s->idx after top-k
 * (k entries of scratch), by token id on the full-vocabulary paths. */
static inline double cand_w(const st_sampler *s, int by_id, int i) { return by_id ? s->w[s->idx[i]] : s->w[i]; }

/* Draw one of the first n candidates in their order, by weight. ids NULL:
 * the candidates are the token ids 0..n-1 themselves. */
static int32_t draw(st_sampler *s, int by_id, const int32_t *ids, int n, double total)
{
    double target = rng_uniform(s->rng) * total, cum = 0.0;
    int32_t last = ids ? ids[0] : 0;
    for (int i = 0; i < n; i++) {
        double wi = ids ? cand_w(s, by_id, i) : s->w[i];
        if (wi <= 0.0)
            continue;
        cum += wi;
        last = ids ? ids[i] : i;
        if (cum > target)
            return last;
    }
    return last; /* rounding: the target fell past the last positive weight */
}

/* Collect into s->idx the ids with w[id] >= cut; returns their count and mass. */
static int collect(st_sampler *s, int n_vocab, double cut, double *mass)
{
    int m = 0;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        if (s->w[i] >= cut) {
            s->idx[m++] = i;
            sum += s->w[i];
        }
    }
    *mass = sum;
    return m;
}

static int32_t sample_tempered(st_sampler *s, float *logits, int n_vocab)
{
    const st_sampling *p = &s->p;
    const double inv_t = 1.0 / (double)p->temperature; /* IEEE-exact: same bits everywhere */
    const int use_top_p = p->top_p < 1.0f, use_min_p = p->min_p > 0.0f;
    int n;        /* candidates in s->idx, best first */
    int by_id;    /* how s->w is indexed (see cand_w) */
    double total; /* sum of w over the candidates (the softmax denominator) */

    if (p->top_k > 0 && p->top_k < n_vocab) {
        n = p->top_k;
        reserve(s, n);
        top_k_select(logits, n_vocab, n, s->idx);
        by_id = 0;
        double mx = logits[s->idx[0]];
        total = 0.0;
        for (int i = 0; i < n; i++)
            total += s->w[i] = det_exp(((double)logits[s->idx[i]] - mx) * inv_t);
    } else {
        reserve(s, n_vocab);
        by_id = 1;
        double mx = logits[st_argmax(logits, n_vocab)];
        total = 0.0;
        for (int i = 0; i < n_vocab; i++)
            total += s->w[i] = det_exp(((double)logits[i] - mx) * inv_t);
        if (!use_top_p && !use_min_p)
            return draw(s, 1, NULL, n_vocab, total);
        if (!use_top_p) {
            /* min-p alone: the kept set is a threshold on w; no order needed */
            double mass;
            n = collect(s, n_vocab, (double)p->min_p, &mass);
            return draw(s, 1, s->idx, n, mass);
        }
        /* the nucleus is a prefix of any best-first prefix whose mass reaches top_p */
        static const double cuts[] = {1.0 / 1024, 1.0 / 65536, 0.0};
        double mass = 0.0;
        n = 0;
        for (size_t c = 0; c < ST_ARRAY_LEN(cuts); c++) {
            n = collect(s, n_vocab, cuts[c] * total, &mass);
            if (mass >= (double)p->top_p * total)
                break;
        }
        sort_best_first(logits, s->idx, n);
    }

    /* top-p: smallest best-first prefix with cumulative probability >= top_p */
    if (use_top_p) {
        double cum = 0.0, need = (double)p->top_p * total;
        for (int i = 0; i < n; i++) {
            cum += cand_w(s, by_id, i);
            if (cum >= need) {
                n = i + 1;
                break;
            }
        }
    }
    /* min-p: drop p < min_p * p_max, i.e. w < min_p (the best has w = 1) */
    if (use_min_p) {
        int keep = 1;
        while (keep < n && cand_w(s, by_id, keep) >= (double)p->min_p)
            keep++;
        n = keep;
    }
    double kept = 0.0;
    for (int i = 0; i < n; i++)
        kept += cand_w(s, by_id, i);
    return draw(s, by_id, s->idx, n, kept);
}

/* log-softmax normaliser of x (n,): max + log(sum exp(x - max)). */
static double log_sum_exp(const float *x, int n)
{
    double mx = x[st_argmax(x, n)];
    if (!isfinite(mx))
        return mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += det_exp((double)x[i] - mx);
    return mx + log(sum);
}

int32_t st_sampler_sample(st_sampler *s, float *logits, int n_vocab, const int32_t *history, int n_history,
                          float *logprob)
{
    if (!s || !logits || n_vocab <= 0)
        return st_err(ST_EINVAL, "sampler: need a sampler and logits with n_vocab > 0 (got %d)", n_vocab);
    if (n_history < 0 || (n_history > 0 && !history))
        return st_err(ST_EINVAL, "sampler: bad history (n_history %d)", n_history);

    double lse = logprob ? log_sum_exp(logits, n_vocab) : 0.0;
    int n_distinct;
    apply_penalties(s, logits, n_vocab, history, n_history, &n_distinct);

    int32_t tok;
    if (!(s->p.temperature > 0.0f) || !isfinite(logits[st_argmax(logits, n_vocab)])) {
        tok = st_argmax(logits, n_vocab);
    } else {
        tok = sample_tempered(s, logits, n_vocab);
    }

    if (logprob) {
        float orig = logits[tok];
        int32_t *hit = n_distinct ? bsearch(&tok, s->hist, (size_t)n_distinct, sizeof tok, cmp_i32) : NULL;
        if (hit)
            orig = s->orig[hit - s->hist];
        *logprob = (float)((double)orig - lse);
    }
    return tok;
}
