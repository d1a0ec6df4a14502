/* The generation back end as the HTTP server sees it: submit a tokenized
 * request with callbacks, abort it, read stats for /health and /metrics.
 *
 * This interface decouples the protocol layer from the scheduler: the real
 * implementation adapts sched/batcher (http/gen_batcher.c), tests use a fake
 * that "generates" words on a thread (tests/http/fake_backend.h).
 *
 * Threading contract.
 *   - submit / abort / stats may be called from any thread (the server calls
 *     them on its event-loop thread) and must not block for long.
 *   - After submit returns ST_OK, the callback is invoked on a back-end
 *     thread (possibly before submit returns, never on the caller's stack
 *     while submit holds a lock the caller might need): zero or more events
 *     with finish == ST_GEN_NONE, then exactly ONE event with finish !=
 *     ST_GEN_NONE, after which the back end never mentions the request
 *     again. After submit returns an error no callback comes.
 *   - abort of an unknown or finished id is a no-op; otherwise the final
 *     event comes soon with ST_GEN_ABORT (or whatever finish raced it). */
#ifndef ST_GEN_BACKEND_H
#define ST_GEN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_GEN_MAX_STOP 16       /* stop strings per request */
#define ST_GEN_MAX_STOP_LEN 256  /* bytes per stop string */
#define ST_GEN_MAX_TOP_LOGPROBS 20

typedef enum {
    ST_GEN_NONE = 0, /* not finished */
    ST_GEN_STOP,     /* end-of-generation token or a stop string */
    ST_GEN_LENGTH,   /* max_tokens or the context length reached */
    ST_GEN_ABORT,    /* aborted (client gone, shutdown) */
    ST_GEN_ERROR,    /* the back end failed; event.error says why */
} st_gen_finish;

/* "stop" | "length" | "abort" | "error" ("" for NONE). */
const char *st_gen_finish_name(st_gen_finish f);

/* One alternative token with its log probability. */
typedef struct st_gen_top {
    const char *token; /* token bytes (may be part of a UTF-8 character) */
    size_t token_len;
    float logprob;     /* natural log */
} st_gen_top;

/* What a callback receives; pointers are valid during the call only. */
typedef struct st_gen_event {
    const char *text;    /* UTF-8 bytes that became final now (may be empty: */
    size_t text_len;     /* a token may complete no character, or a stop string may be pending) */
    int has_token;       /* 1 if a token was sampled in this event */
    /* with logprobs requested and has_token: */
    int has_logprob;
    const char *token;   /* the sampled token's bytes */
    size_t token_len;
    float logprob;
    const st_gen_top *top; /* (n_top,) most likely first */
    int n_top;
    st_gen_finish finish;
    const char *error;   /* with ST_GEN_ERROR, else NULL */
    /* usage so far */
    int n_prompt;
    int n_generated;     /* tokens sampled, including a final end-of-generation token */
    int n_cached;        /* prompt tokens served from a prefix cache */
} st_gen_event;

typedef void (*st_gen_cb)(const st_gen_event *ev, void *user);

/* A request. Everything is copied by submit. */
typedef struct st_gen_request {
    const int32_t *prompt; /* (n_prompt,) token ids, 1 <= n_prompt < context length */
    int n_prompt;
    st_sampling sampling;  /* already validated */
    int max_tokens;        /* >= 1; generation also ends at the context length (finish "length") */
    const char *const *stop; /* (n_stop,) stop strings, never emitted */
    int n_stop;
    int logprobs;          /* 1: report each sampled token's logprob */
    int top_logprobs;      /* 0..ST_GEN_MAX_TOP_LOGPROBS alternatives (needs logprobs) */
    int ignore_eos;
    st_gen_cb cb;
    void *user;
} st_gen_request;

/* A snapshot for /health and /metrics. */
typedef struct st_gen_stats {
    int ready;             /* 1 once the model is loaded and requests can be served */
    int max_ctx;           /* context length in tokens (prompt + generated) */
    int n_running, n_waiting;
    int kv_blocks_total, kv_blocks_used, kv_blocks_free;
    uint64_t steps;        /* forward steps run */
    uint64_t batch_tokens; /* sum over steps of rows per step */
    uint64_t batch_seqs;   /* sum over steps of sequences per step */
    int last_batch_tokens, last_batch_seqs;
    uint64_t preemptions;
    uint64_t prefix_hit_tokens;
} st_gen_stats;

typedef struct st_gen_backend st_gen_backend;
struct st_gen_backend {
    /* ST_OK and the request's id (> 0), or a negative ST_E* with st_errmsg()
     * set: ST_EINVAL (the request is wrong: answered 400), ST_EAGAIN (full:
     * 503), anything else (500). */
    int (*submit)(st_gen_backend *b, const st_gen_request *r, uint64_t *id);
    void (*abort)(st_gen_backend *b, uint64_t id);
    void (*stats)(st_gen_backend *b, st_gen_stats *out);
    void (*destroy)(st_gen_backend *b); /* may be NULL */
    void *impl;
};

#ifdef __cplusplus
}
#endif
#endif
