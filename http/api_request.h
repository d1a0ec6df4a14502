/* OpenAI-compatible request bodies: parse and validate /v1/chat/completions
 * and /v1/completions JSON into a plain struct, or produce the HTTP status,
 * offending field and message of OpenAI's error object.
 *
 * Pure functions (no server, no tokenizer) so the validation table can be
 * tested alone. Token-level checks (prompt length against the context,
 * token ids against the vocabulary) happen after tokenization in the
 * server; max_tokens is checked here against limits->max_ctx.
 *
 * Policy where OpenAI leaves room:
 *   - max_tokens (or max_completion_tokens) above the context length is a
 *     400, not clamped; a prompt plus max_tokens that overflows the context
 *     just ends with finish_reason "length".
 *   - n other than 1, tools, echo and response_format other than text are
 *     400s naming the field; unknown fields are ignored (clients send many).
 *   - "model" is accepted whatever it names (one model is served) and the
 *     served model's name is reported back.
 *   - sampling defaults are OpenAI's: temperature 1, top_p 1, no top_k,
 *     min_p or penalties; seed random unless given. */
#ifndef ST_API_REQUEST_H
#define ST_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "../common/json.h"
#include "../engine/chat.h"
#include "../engine/sampler.h"
#include "gen_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ST_API_CHAT = 0, ST_API_COMPLETION = 1 } st_api_kind;

/* An error answer: HTTP status + OpenAI's error object fields. */
typedef struct st_api_error {
    int status;        /* 400, 401, 404, 405, 413, 500, 503 */
    const char *type;  /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code;  /* NULL, or a short code ("context_length_exceeded") */
    char param[64];    /* the offending field ("messages[1].role"), "" when none */
    char message[512];
} st_api_error;

/* Fill *e (printf-style message); param may be NULL. Returns e->status. */
int st_api_set_error(st_api_error *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"error":{"message":..,"type":..,"param":..|null,"code":..|null}} */
void st_api_error_json(const st_api_error *e, st_strbuf *sb);

typedef struct st_api_limits {
    size_t max_body_bytes; /* 0: no limit */
    int max_ctx;           /* context length in tokens; <= 0: unknown (no check) */
    int n_vocab;           /* for token-id prompts; <= 0: no check */
} st_api_limits;

typedef struct st_api_request {
    st_api_kind kind;
    const char *model;      /* as given (borrowed from root), or NULL */
    /* chat: messages (role/content borrowed from root or `owned`) */
    st_chat_msg *msgs;      /* (n_msgs,) */
    int n_msgs;
    int enable_thinking;    /* chat_template_kwargs.enable_thinking; -1 when absent */
    /* completion: either text or token ids */
    const char *prompt;     /* (prompt_len,) borrowed, or NULL */
    size_t prompt_len;
    int32_t *prompt_ids;    /* (n_prompt_ids,) heap, or NULL */
    int n_prompt_ids;
    int stream;
    int include_usage;      /* stream_options.include_usage */
    int max_tokens;         /* 0 when not given (the server picks the rest of the context) */
    st_sampling sampling;
    const char *stop[ST_GEN_MAX_STOP]; /* borrowed */
    int n_stop;
    int logprobs;           /* 1: return logprobs */
    int top_logprobs;       /* alternatives per token */
    int ignore_eos;
    /* storage */
    st_json *root;
    char **owned;           /* (n_owned,) joined content parts */
    int n_owned;
} st_api_request;

/* Parse and validate a body. Returns 0 with *out filled (free with
 * st_api_request_free), or the HTTP status (>= 400) with *err filled and
 * *out left empty (safe to free). */
int st_api_parse(st_api_kind kind, const char *body, size_t len, const st_api_limits *lim, st_api_request *out,
                 st_api_error *err);
void st_api_request_free(st_api_request *r);

#ifdef __cplusplus
}
#endif
#endif
