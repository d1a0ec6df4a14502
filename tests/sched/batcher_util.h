/* Shared helpers of the batcher tests: a seeded RNG and a callback that
 * collects one request's events. */
#ifndef ST_TEST_BATCHER_UTIL_H
#define ST_TEST_BATCHER_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sched/batcher.h"

static inline uint64_t bu_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

typedef struct bu_result {
    int32_t tokens[1024];
    int n_tokens;
    char text[8192];
    size_t text_len;
    int n_events, n_final;   /* n_final must end at exactly 1 */
    int late_events;         /* events after the final one (must stay 0) */
    st_finish_reason finish;
    int n_cached;
    int top_ok, top_bad;     /* events with consistent / inconsistent alternatives */
} bu_result;

static inline void bu_result_init(bu_result *r) { memset(r, 0, sizeof *r); }
static inline void bu_result_free(bu_result *r) { (void)r; }

static inline void bu_collect(const st_batcher_event *ev, void *user)
{
    bu_result *r = user;
    r->n_events++;
    if (r->n_final)
        r->late_events++;
    if (ev->token >= 0 && r->n_tokens < 1024)
        r->tokens[r->n_tokens++] = ev->token;
    if (r->text_len + ev->text_len < sizeof r->text) {
        memcpy(r->text + r->text_len, ev->text, ev->text_len);
        r->text_len += ev->text_len;
    }
    if (ev->n_top > 0) {
        int ok = ev->top[0].token == ev->token && fabsf(ev->top[0].logprob - ev->logprob) < 1e-4f;
        for (int i = 0; i < ev->n_top; i++)
            ok &= ev->top[i].logprob <= 0 && (i == 0 || ev->top[i].logprob <= ev->top[i - 1].logprob);
        if (ok)
            r->top_ok++;
        else
            r->top_bad++;
    }
    r->n_cached = ev->n_cached;
    if (ev->finish != ST_FINISH_NONE) {
        r->n_final++;
        r->finish = ev->finish;
    }
}

static inline int bu_same(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof(int32_t)));
}

static inline int bu_same_tokens(const bu_result *a, const bu_result *b)
{
    return bu_same(a->tokens, a->n_tokens, b->tokens, b->n_tokens);
}

#endif
