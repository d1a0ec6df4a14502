/* Token sampling from a row of logits: penalties, then temperature,
 * top-k, top-p, min-p, then a draw from a per-sequence seeded RNG.
 * temperature <= 0 means greedy (argmax; ties to the lowest id). Same seed,
 * same logits, same parameters -> same token, on every platform. */
#ifndef ST_SAMPLER_H
#define ST_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_sampling {
    float temperature;        /* <= 0: greedy. default 0.8 in the CLI */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off. >1 divides positive logits of seen tokens, multiplies negative */
    float presence_penalty;   /* 0: off. subtracted once per seen token */
    float frequency_penalty;  /* 0: off. subtracted per occurrence */
    int penalty_last_n;       /* window of recent tokens for penalties (0: all given) */
    uint64_t seed;
} st_sampling;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off
 * (penalty_last_n 64), seed 0. */
st_sampling st_sampling_default(void);
/* ST_OK or ST_EINVAL naming the bad field: any NaN/inf, temperature outside
 * [0, 100] (negative rejected; <= 0 means greedy, so 0 is the greedy value),
 * top_p outside (0, 1], min_p outside [0, 1], repetition_penalty <= 0,
 * penalty_last_n < 0. */
int st_sampling_validate(const st_sampling *p);

typedef struct st_sampler {
    st_sampling p;
    uint64_t rng[4];  /* xoshiro256** state, seeded from p.seed */
    /* private scratch, grown as needed: 12 bytes x top_k with top-k on,
     * x n_vocab otherwise (free with st_sampler_free) */
    int32_t *idx;     /* (cap,) candidate token ids */
    double *w;        /* (cap,) weights exp((logit - max) / T), by candidate or by token id */
    int cap;
    int32_t *hist;    /* (hist_cap,) penalty window, sorted */
    float *orig;      /* (hist_cap,) pre-penalty logits of the distinct window tokens */
    int hist_cap;
} st_sampler;

void st_sampler_init(st_sampler *s, const st_sampling *p);
void st_sampler_free(st_sampler *s);

/* Sample one token from logits (n_vocab,). The penalties are applied to
 * logits in place (temperature is not: it is applied while computing the
 * weights). history: previously seen token ids (prompt + generated), used
 * for the penalties; ids outside [0, n_vocab) are ignored. If logprob is
 * non-NULL it receives the log probability of the chosen token under the
 * unmodified distribution (log-softmax of the logits as given).
 * Returns the token id, or ST_EINVAL (negative) for n_vocab <= 0, a NULL
 * pointer where data is required, or n_history < 0.
 *
 * Cross-platform determinism: the weights are computed in double with a
 * self-contained exp (only IEEE +, -, *, /, ldexp) and the draw is a 53-bit
 * double from the RNG, so the chosen token depends on nothing but the inputs.
 * Greedy (temperature <= 0) consumes no random numbers. */
int32_t st_sampler_sample(st_sampler *s, float *logits, int n_vocab, const int32_t *history, int n_history,
                          float *logprob);

/* Index of the largest value (lowest index on ties). */
int32_t st_argmax(const float *x, int n);

#ifdef __cplusplus
}
#endif
#endif
