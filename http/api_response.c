/* OpenAI response and chunk writers (see api_response.h). */
#include "api_response.h"

#include <math.h>
#include <string.h>

/* JSON has no -inf: an impossible token's logprob is written as -9999, as
 * OpenAI does for tokens far below the top. */
static void put_lp(st_strbuf *sb, float lp)
{
    double v = isfinite(lp) ? (lp < -9999.0f ? -9999.0 : (double)lp) : -9999.0;
    st_sb_printf(sb, "%.7g", v);
}

static void put_bytes(st_strbuf *sb, const char *s, size_t n)
{
    st_sb_puts(sb, "[");
    for (size_t i = 0; i < n; i++)
        st_sb_printf(sb, i ? ",%u" : "%u", (unsigned)(unsigned char)s[i]);
    st_sb_puts(sb, "]");
}

static void head(st_strbuf *sb, const st_api_resp_meta *m, int chunk)
{
    st_sb_puts(sb, "{\"id\":");
    st_sb_json_str(sb, m->id, strlen(m->id));
    const char *obj = m->kind == ST_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    st_sb_printf(sb, ",\"object\":\"%s\",\"created\":%lld,\"model\":", obj, (long long)m->created);
    st_sb_json_str(sb, m->model, strlen(m->model));
    st_sb_puts(sb, ",\"system_fingerprint\":null,\"choices\":[");
}

/* chat: {"token","logprob","bytes","top_logprobs":[...]} */
static void chat_lp_entry(st_strbuf *sb, const st_piece_buf *b, const st_piece *p)
{
    st_sb_puts(sb, "{\"token\":");
    st_sb_json_str(sb, b->bytes.buf + p->tok_off, p->tok_len);
    st_sb_puts(sb, ",\"logprob\":");
    put_lp(sb, p->logprob);
    st_sb_puts(sb, ",\"bytes\":");
    put_bytes(sb, b->bytes.buf + p->tok_off, p->tok_len);
    st_sb_puts(sb, ",\"top_logprobs\":[");
    for (int k = 0; k < p->n_top; k++) {
        const st_piece_top *t = &b->tops[p->top0 + k];
        st_sb_puts(sb, k ? ",{\"token\":" : "{\"token\":");
        st_sb_json_str(sb, b->bytes.buf + t->off, t->len);
        st_sb_puts(sb, ",\"logprob\":");
        put_lp(sb, t->logprob);
        st_sb_puts(sb, ",\"bytes\":");
        put_bytes(sb, b->bytes.buf + t->off, t->len);
        st_sb_puts(sb, "}");
    }
    st_sb_puts(sb, "]}");
}

/* The logprobs object of pieces [i0, i1): chat {"content":[...]} or the
 * legacy completions {"tokens","token_logprobs","top_logprobs","text_offset"}.
 * text_base: offset of piece i0's text within the whole completion. */
static void logprobs_obj(st_strbuf *sb, const st_api_resp_meta *m, const st_piece_buf *b, int i0, int i1,
                         size_t text_base)
{
    if (m->kind == ST_API_CHAT) {
        st_sb_puts(sb, "{\"content\":[");
        int first = 1;
        for (int i = i0; i < i1; i++) {
            if (!b->p[i].has_logprob)
                continue;
            if (!first)
                st_sb_puts(sb, ",");
            first = 0;
            chat_lp_entry(sb, b, &b->p[i]);
        }
        st_sb_puts(sb, "]}");
        return;
    }
    const char *names[3] = {"tokens", "token_logprobs", "top_logprobs"};
    st_sb_puts(sb, "{");
    for (int f = 0; f < 3; f++) {
        st_sb_printf(sb, "\"%s\":[", names[f]);
        int first = 1;
        for (int i = i0; i < i1; i++) {
            const st_piece *p = &b->p[i];
            if (!p->has_logprob)
                continue;
            if (!first)
                st_sb_puts(sb, ",");
            first = 0;
            if (f == 0) {
                st_sb_json_str(sb, b->bytes.buf + p->tok_off, p->tok_len);
            } else if (f == 1) {
                put_lp(sb, p->logprob);
            } else {
                st_sb_puts(sb, "{");
                for (int k = 0; k < p->n_top; k++) {
                    const st_piece_top *t = &b->tops[p->top0 + k];
                    if (k)
                        st_sb_puts(sb, ",");
                    st_sb_json_str(sb, b->bytes.buf + t->off, t->len);
                    st_sb_puts(sb, ":");
                    put_lp(sb, t->logprob);
                }
                st_sb_puts(sb, "}");
            }
        }
        st_sb_puts(sb, "],");
    }
    st_sb_puts(sb, "\"text_offset\":[");
    size_t off = text_base;
    int first = 1;
    for (int i = i0; i < i1; i++) {
        const st_piece *p = &b->p[i];
        if (p->has_logprob) {
            st_sb_printf(sb, first ? "%zu" : ",%zu", off);
            first = 0;
        }
        off += p->text_len;
    }
    st_sb_puts(sb, "]}");
}

static void tail_chunk(st_strbuf *sb, const st_api_resp_meta *m)
{
    st_sb_puts(sb, m->include_usage ? "],\"usage\":null}\n\n" : "]}\n\n");
}

void st_api_sse_role(st_strbuf *sb, const st_api_resp_meta *m)
{
    if (m->kind != ST_API_CHAT)
        return;
    st_sb_puts(sb, "data: ");
    head(sb, m, 1);
    st_sb_puts(sb, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                   "\"finish_reason\":null}");
    tail_chunk(sb, m);
}

void st_api_sse_pieces(st_strbuf *sb, const st_api_resp_meta *m, const st_piece_buf *b)
{
    for (int i = 0; i < b->n; i++) {
        const st_piece *p = &b->p[i];
        if (p->text_len == 0 && !(m->logprobs && p->has_logprob))
            continue;
        st_sb_puts(sb, "data: ");
        head(sb, m, 1);
        st_sb_puts(sb, m->kind == ST_API_CHAT ? "{\"index\":0,\"delta\":{\"content\":" : "{\"index\":0,\"text\":");
        st_sb_json_str(sb, b->bytes.buf + p->text_off, p->text_len);
        st_sb_puts(sb, m->kind == ST_API_CHAT ? "},\"logprobs\":" : ",\"logprobs\":");
        if (m->logprobs && p->has_logprob)
            logprobs_obj(sb, m, b, i, i + 1, 0);
        else
            st_sb_puts(sb, "null");
        st_sb_puts(sb, ",\"finish_reason\":null}");
        tail_chunk(sb, m);
    }
}

void st_api_sse_finish(st_strbuf *sb, const st_api_resp_meta *m, const char *finish_reason)
{
    st_sb_puts(sb, "data: ");
    head(sb, m, 1);
    st_sb_puts(sb, m->kind == ST_API_CHAT ? "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
                                          : "{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":");
    st_sb_json_str(sb, finish_reason, strlen(finish_reason));
    st_sb_puts(sb, "}");
    tail_chunk(sb, m);
}

static void usage_obj(st_strbuf *sb, const st_api_usage *u)
{
    st_sb_printf(sb,
                 "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
                 u->prompt_tokens, u->completion_tokens, u->prompt_tokens + u->completion_tokens, u->cached_tokens);
}

void st_api_sse_usage(st_strbuf *sb, const st_api_resp_meta *m, const st_api_usage *u)
{
    st_sb_puts(sb, "data: ");
    head(sb, m, 1);
    st_sb_puts(sb, "],\"usage\":");
    usage_obj(sb, u);
    st_sb_puts(sb, "}\n\n");
}

void st_api_sse_error(st_strbuf *sb, const st_api_error *e)
{
    st_sb_puts(sb, "data: ");
    st_api_error_json(e, sb);
    st_sb_puts(sb, "\n\n");
}

void st_api_sse_done(st_strbuf *sb) { st_sb_puts(sb, "data: [DONE]\n\n"); }

void st_api_full_response(st_strbuf *sb, const st_api_resp_meta *m, const st_piece_buf *b, const char *finish_reason,
                          const st_api_usage *u)
{
    head(sb, m, 0);
    st_strbuf text;
    st_sb_init(&text);
    for (int i = 0; i < b->n; i++)
        st_sb_putn(&text, b->bytes.buf + b->p[i].text_off, b->p[i].text_len);
    if (m->kind == ST_API_CHAT)
        st_sb_puts(sb, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    else
        st_sb_puts(sb, "{\"index\":0,\"text\":");
    st_sb_json_str(sb, text.buf ? text.buf : "", text.len);
    st_sb_puts(sb, m->kind == ST_API_CHAT ? "},\"logprobs\":" : ",\"logprobs\":");
    if (m->logprobs)
        logprobs_obj(sb, m, b, 0, b->n, 0);
    else
        st_sb_puts(sb, "null");
    st_sb_puts(sb, ",\"finish_reason\":");
    st_sb_json_str(sb, finish_reason, strlen(finish_reason));
    st_sb_puts(sb, "}],\"usage\":");
    usage_obj(sb, u);
    st_sb_puts(sb, "}");
    st_sb_free(&text);
}
