/* What a sampled token means for its request: stop conditions, text held
 * back while a stop string may be matching, logprobs, and the events sent
 * to the request's callback (see batcher_internal.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "batcher_internal.h"

/* ---- lists ------------------------------------------------------------------- */
void seq_list_push_back(seq_list *l, seq *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->n++;
}

void seq_list_push_front(seq_list *l, seq *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    else
        l->tail = s;
    l->head = s;
    l->n++;
}

void seq_list_remove(seq_list *l, seq *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
    l->n--;
}

/* ---- lifecycle ------------------------------------------------------------------ */
seq *seq_new(st_batcher *b, const st_request *r, uint64_t id)
{
    seq *s = st_xcalloc(1, sizeof *s);
    s->id = id;
    s->req = *r;
    s->n_prompt = r->n_prompt;
    s->cap_tokens = r->n_prompt + 16;
    s->tokens = st_xmalloc((size_t)s->cap_tokens * sizeof(int32_t));
    memcpy(s->tokens, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    s->n_tokens = r->n_prompt;
    s->req.prompt = NULL; /* the caller's memory is not ours to keep */
    if (r->n_stop) {
        s->stop = st_xmalloc((size_t)r->n_stop * sizeof(char *));
        for (int i = 0; i < r->n_stop; i++) {
            s->stop[i] = st_xstrdup(r->stop[i]);
            s->max_stop_len = ST_MAX(s->max_stop_len, (int)strlen(r->stop[i]));
        }
    }
    s->req.stop = NULL;
    if (r->n_stop_ids) {
        s->stop_ids = st_xmalloc((size_t)r->n_stop_ids * sizeof(int32_t));
        memcpy(s->stop_ids, r->stop_ids, (size_t)r->n_stop_ids * sizeof(int32_t));
    }
    s->req.stop_ids = NULL;
    if (s->req.top_logprobs > 0)
        s->req.logprobs = 1;
    st_kv_seq_init(&s->kv);
    st_sampler_init(&s->sampler, &r->sampling);
    if (b->tok)
        st_detok_init(&s->detok, b->tok, 1);
    s->state = SEQ_WAITING;
    s->batch_idx = -1;
    return s;
}

void seq_delete(st_batcher *b, seq *s)
{
    if (!s)
        return;
    st_kv_seq_destroy(b->kb, &s->kv);
    st_sampler_free(&s->sampler);
    for (int i = 0; i < s->req.n_stop; i++)
        free(s->stop[i]);
    free(s->stop);
    free(s->stop_ids);
    free(s->tokens);
    free(s->held);
    free(s);
}

/* ---- text ------------------------------------------------------------------------ */
static void held_append(seq *s, const char *p, size_t n)
{
    if (s->n_held + n + 1 > s->cap_held) {
        s->cap_held = ST_MAX(s->n_held + n + 1, s->cap_held * 2 + 64);
        s->held = st_xrealloc(s->held, s->cap_held);
    }
    memcpy(s->held + s->n_held, p, n);
    s->n_held += n;
}

/* Earliest occurrence of any stop string in the held text, or -1. */
static long stop_match(const seq *s)
{
    long best = -1;
    for (int i = 0; i < s->req.n_stop; i++) {
        size_t L = strlen(s->stop[i]);
        if (L > s->n_held)
            continue;
        for (size_t at = 0; at + L <= s->n_held; at++)
            if (!memcmp(s->held + at, s->stop[i], L)) {
                if (best < 0 || (long)at < best)
                    best = (long)at;
                break;
            }
    }
    return best;
}

/* Length of the longest tail of the held text that is a proper prefix of a
 * stop string: those bytes may still become a stop string, so they wait. */
static size_t stop_pending(const seq *s)
{
    size_t keep = 0;
    for (int i = 0; i < s->req.n_stop; i++) {
        size_t L = strlen(s->stop[i]);
        for (size_t k = ST_MIN(L - 1, s->n_held); k > keep; k--)
            if (!memcmp(s->held + s->n_held - k, s->stop[i], k)) {
                keep = k;
                break;
            }
    }
    return keep;
}

/* ---- logprobs ----------------------------------------------------------------------- */
int logits_top(const float *logits, int n_vocab, int n, st_token_logprob *out)
{
    if (n <= 0 || n_vocab <= 0)
        return 0;
    n = ST_MIN(n, n_vocab);
    double mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    int k = 0; /* out[0..k) sorted by logit, descending; ties keep the lower id first */
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (k == n && !(v > out[k - 1].logprob))
            continue;
        int j = k < n ? k++ : n - 1;
        while (j > 0 && v > out[j - 1].logprob) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (st_token_logprob){.token = i, .logprob = v};
    }
    for (int i = 0; i < k; i++)
        out[i].logprob = (float)((double)out[i].logprob - lse);
    return k;
}

/* ---- events ----------------------------------------------------------------------------- */
static void emit(st_batcher *b, seq *s, int32_t token, float logprob, const st_token_logprob *top, int n_top,
                 size_t n_text, st_finish_reason why, const char *error)
{
    if (why != ST_FINISH_NONE)
        sched_trace_end(s, why); /* before the client can have its whole answer */
    if (s->req.cb) {
        st_batcher_event ev = {.id = s->id,
                               .token = token,
                               .logprob = logprob,
                               .top = top,
                               .n_top = n_top,
                               .text = n_text ? s->held : "",
                               .text_len = n_text,
                               .finish = why,
                               .error = error,
                               .n_prompt = s->n_prompt,
                               .n_generated = s->n_generated,
                               .n_cached = s->n_cached};
        s->req.cb(&ev, s->req.user);
    }
    if (n_text) {
        memmove(s->held, s->held + n_text, s->n_held - n_text);
        s->n_held -= n_text;
    }
}

/* An abort or an error ends the request without a token, so the text still
 * held back (the start of a possible stop string; an incomplete UTF-8
 * character, as U+FFFD like any end of stream) can no longer change: it
 * goes out with the final event. A router that moves the request to
 * another pipeline (cluster/router.h) relays it and continues the stream
 * after it, so a failover loses no text. */
void seq_emit_final(st_batcher *b, seq *s, st_finish_reason why, const char *error)
{
    if (b->tok) {
        char piece[16];
        int n = st_detok_flush(&s->detok, piece, (int)sizeof piece);
        if (n > 0)
            held_append(s, piece, (size_t)n);
    }
    emit(b, s, -1, 0.0f, NULL, 0, s->n_held, why, error);
}

static int is_stop_token(const st_batcher *b, const seq *s, int32_t t)
{
    if (!s->req.ignore_eos && b->tok && st_tok_is_eog(b->tok, t))
        return 1;
    for (int i = 0; i < s->req.n_stop_ids; i++)
        if (s->stop_ids[i] == t)
            return 1;
    return 0;
}

st_finish_reason seq_on_token(st_batcher *b, seq *s, int32_t token, float logprob, const st_token_logprob *top,
                              int n_top, uint64_t t_sampled)
{
    if (s->n_tokens == s->cap_tokens) {
        s->cap_tokens *= 2;
        s->tokens = st_xrealloc(s->tokens, (size_t)s->cap_tokens * sizeof(int32_t));
    }
    s->tokens[s->n_tokens++] = token;
    s->n_generated++;

    st_finish_reason why = ST_FINISH_NONE;
    size_t n_text;
    char piece[512];
    if (is_stop_token(b, s, token)) {
        why = ST_FINISH_STOP; /* its own text is not part of the output */
    } else if (b->tok) {
        int n = st_detok_feed(&s->detok, token, piece, (int)sizeof piece);
        if (n > 0)
            held_append(s, piece, (size_t)n);
    }
    if (why == ST_FINISH_NONE && s->req.n_stop) {
        long at = stop_match(s);
        if (at >= 0) {
            s->n_held = (size_t)at; /* the stop string and anything after it are dropped */
            st_trace_span(s->trace_id, ST_TK_DETOKENIZED, t_sampled, s->trace_id ? st_now_ns() : 0, 1, 0);
            emit(b, s, token, logprob, top, n_top, s->n_held, ST_FINISH_STOP, NULL);
            return ST_FINISH_STOP;
        }
    }
    if (why == ST_FINISH_NONE &&
        ((s->req.max_tokens > 0 && s->n_generated >= s->req.max_tokens) || s->n_tokens >= b->max_ctx))
        why = ST_FINISH_LENGTH;
    if (why != ST_FINISH_NONE) {
        /* the end: whatever was held back can no longer become a stop string */
        if (b->tok) {
            int n = st_detok_flush(&s->detok, piece, (int)sizeof piece);
            if (n > 0)
                held_append(s, piece, (size_t)n);
        }
        n_text = s->n_held;
    } else {
        n_text = s->n_held - stop_pending(s);
    }
    st_trace_span(s->trace_id, ST_TK_DETOKENIZED, t_sampled, s->trace_id ? st_now_ns() : 0, 1, 0);
    emit(b, s, token, logprob, top, n_top, n_text, why, NULL);
    return why;
}

const char *st_finish_reason_name(st_finish_reason r)
{
    switch (r) {
    case ST_FINISH_STOP: return "stop";
    case ST_FINISH_LENGTH: return "length";
    case ST_FINISH_ABORT: return "abort";
    case ST_FINISH_ERROR: return "error";
    default: return "";
    }
}
