/* Chat template + tokenization for the API (see prompt.h). */
#include "prompt.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

int st_prompt_init(st_prompt_cfg *p, const st_tokenizer *tok, const char *tmpl)
{
    memset(p, 0, sizeof *p);
    if (!tok)
        return st_err(ST_EINVAL, "prompt: no tokenizer");
    p->tok = tok;
    if (!tmpl)
        tmpl = st_tok_chat_template(tok);
    p->fmt = st_chat_detect(tmpl);
    if (p->fmt == ST_CHAT_UNKNOWN) {
        ST_WARN("chat template %s; rendering messages as ChatML", tmpl ? "not recognised" : "absent");
        p->fmt = ST_CHAT_CHATML;
    }
    if (tmpl && (p->fmt == ST_CHAT_CHATML || p->fmt == ST_CHAT_QWEN3))
        (void)st_chat_default_system(tmpl, &p->default_system);
    int32_t bos = st_tok_bos(tok);
    if ((p->fmt == ST_CHAT_LLAMA3 || p->fmt == ST_CHAT_LLAMA2) && bos >= 0) {
        char buf[256];
        int n = st_tok_piece(tok, bos, buf, (int)sizeof buf);
        if (n > 0 && n < (int)sizeof buf) {
            p->bos_text = st_xmalloc((size_t)n + 1);
            memcpy(p->bos_text, buf, (size_t)n);
            p->bos_text[n] = 0;
        }
    }
    return ST_OK;
}

void st_prompt_free(st_prompt_cfg *p)
{
    free(p->default_system);
    free(p->bos_text);
    memset(p, 0, sizeof *p);
}

static int encode(const st_tokenizer *tok, const char *text, size_t len, int add_bos, int32_t **ids, int *n_ids)
{
    if (len > (size_t)1 << 28)
        return st_err(ST_ERANGE, "prompt of %zu bytes is too long", len);
    int cap = (int)len + 8;
    int32_t *buf = st_xmalloc(sizeof(int32_t) * (size_t)cap);
    int off = 0;
    if (add_bos)
        buf[off++] = st_tok_bos(tok);
    int n = st_tok_encode(tok, text, len, 1, buf + off, cap - off);
    if (n > cap - off) {
        cap = n + off;
        buf = st_xrealloc(buf, sizeof(int32_t) * (size_t)cap);
        n = st_tok_encode(tok, text, len, 1, buf + off, cap - off);
    }
    if (n < 0) {
        free(buf);
        return n;
    }
    if (off && n > 0 && buf[1] == buf[0]) { /* the text already began with BOS */
        memmove(buf, buf + 1, sizeof(int32_t) * (size_t)n);
        off = 0;
    }
    *ids = buf;
    *n_ids = n + off;
    return ST_OK;
}

int st_prompt_chat(const st_prompt_cfg *p, const st_chat_msg *msgs, int n, int enable_thinking, int32_t **ids,
                   int *n_ids)
{
    st_chat_opts o = st_chat_opts_default();
    if (enable_thinking >= 0)
        o.enable_thinking = enable_thinking;
    o.bos_text = p->bos_text;
    o.default_system = p->default_system;
    char *text = NULL;
    size_t len = 0;
    int rc = st_chat_render(p->fmt, msgs, n, &o, &text, &len);
    if (rc)
        return rc;
    int add_bos = !p->bos_text && st_tok_add_bos(p->tok) && st_tok_bos(p->tok) >= 0;
    rc = encode(p->tok, text, len, add_bos, ids, n_ids);
    free(text);
    return rc;
}

int st_prompt_text(const st_prompt_cfg *p, const char *text, size_t len, int32_t **ids, int *n_ids)
{
    int add_bos = st_tok_add_bos(p->tok) && st_tok_bos(p->tok) >= 0;
    return encode(p->tok, text, len, add_bos, ids, n_ids);
}
