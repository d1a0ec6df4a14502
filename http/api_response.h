/* OpenAI response objects: chat.completion / text_completion bodies and
 * their streaming chunks as Server-Sent Events ("data: {...}\n\n"). */
#ifndef ST_API_RESPONSE_H
#define ST_API_RESPONSE_H

#include <stdint.h>

#include "api_request.h"
#include "piece_buf.h"

typedef struct st_api_resp_meta {
    st_api_kind kind;
    char id[48];         /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;     /* unix seconds */
    const char *model;
    int logprobs;        /* include logprobs objects */
    int include_usage;   /* streaming: "usage":null in chunks, then a usage chunk */
} st_api_resp_meta;

typedef struct st_api_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
} st_api_usage;

/* Streaming. The first chat chunk carries the role; each piece with text or
 * logprobs becomes one chunk; then a chunk with finish_reason; then, with
 * include_usage, a chunk with empty choices and the usage; then [DONE]. */
void st_api_sse_role(st_strbuf *sb, const st_api_resp_meta *m);
void st_api_sse_pieces(st_strbuf *sb, const st_api_resp_meta *m, const st_piece_buf *b);
void st_api_sse_finish(st_strbuf *sb, const st_api_resp_meta *m, const char *finish_reason);
void st_api_sse_usage(st_strbuf *sb, const st_api_resp_meta *m, const st_api_usage *u);
void st_api_sse_error(st_strbuf *sb, const st_api_error *e);
void st_api_sse_done(st_strbuf *sb);

/* The whole (non-streaming) response body. */
void st_api_full_response(st_strbuf *sb, const st_api_resp_meta *m, const st_piece_buf *b, const char *finish_reason,
                          const st_api_usage *u);

#endif
