/* Parsing and validation of OpenAI request bodies (see api_request.h). */
#include "api_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

#define INVALID "invalid_request_error"

int st_api_set_error(st_api_error *e, int status, const char *type, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

void st_api_error_json(const st_api_error *e, st_strbuf *sb)
{
    st_sb_puts(sb, "{\"error\":{\"message\":");
    st_sb_json_str(sb, e->message, strlen(e->message));
    st_sb_puts(sb, ",\"type\":");
    st_sb_json_str(sb, e->type, strlen(e->type));
    st_sb_puts(sb, ",\"param\":");
    if (e->param[0])
        st_sb_json_str(sb, e->param, strlen(e->param));
    else
        st_sb_puts(sb, "null");
    st_sb_puts(sb, ",\"code\":");
    if (e->code)
        st_sb_json_str(sb, e->code, strlen(e->code));
    else
        st_sb_puts(sb, "null");
    st_sb_puts(sb, "}}");
}

static int bad(st_api_error *e, const char *param, const char *what)
{
    return st_api_set_error(e, 400, INVALID, param, "'%s' %s", param, what);
}

/* A member that is absent or null reads as absent. */
static const st_json *member(const st_json *root, const char *key)
{
    const st_json *j = st_json_get(root, key);
    return j && j->type != ST_JSON_NULL ? j : NULL;
}

static int get_bool(const st_json *root, const char *key, int *out, st_api_error *e)
{
    const st_json *j = member(root, key);
    if (!j)
        return 0;
    if (j->type != ST_JSON_BOOL)
        return bad(e, key, "must be a boolean");
    *out = j->u.boolean;
    return 0;
}

/* A finite number within [lo, hi]; lo_open excludes lo. */
static int get_num(const st_json *root, const char *key, double lo, int lo_open, double hi, float *out,
                   st_api_error *e)
{
    const st_json *j = member(root, key);
    if (!j)
        return 0;
    if (j->type != ST_JSON_NUMBER || !isfinite(j->u.number))
        return bad(e, key, "must be a number");
    double v = j->u.number;
    if (v < lo || (lo_open && v == lo) || v > hi)
        return st_api_set_error(e, 400, INVALID, key, "'%s' is %g; it must be in %s%g, %g]", key, v,
                                lo_open ? "(" : "[", lo, hi);
    *out = (float)v;
    return 0;
}

static int get_int(const st_json *root, const char *key, int64_t lo, int64_t hi, int64_t *out, st_api_error *e)
{
    const st_json *j = member(root, key);
    if (!j)
        return 0;
    if (j->type != ST_JSON_NUMBER || !st_json_as_int(j, INT64_MIN, INT64_MAX, out))
        return bad(e, key, "must be an integer");
    if (*out < lo || *out > hi)
        return st_api_set_error(e, 400, INVALID, key, "'%s' is %lld; it must be in [%lld, %lld]", key,
                                (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

static char *own(st_api_request *r, char *s)
{
    r->owned = st_xrealloc(r->owned, sizeof(char *) * (size_t)(r->n_owned + 1));
    r->owned[r->n_owned++] = s;
    return s;
}

/* content: a string, or an array of {"type":"text","text":...} parts
 * (joined without separator, as OpenAI does for text parts). */
static int parse_content(st_api_request *r, const st_json *c, int i, st_chat_msg *m, st_api_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c)
        return st_api_set_error(e, 400, INVALID, param, "'%s' is required (tool calls are not supported)", param);
    if (c->type == ST_JSON_STRING) {
        m->content = c->u.str.s;
        m->content_len = c->u.str.len;
        return 0;
    }
    if (c->type != ST_JSON_ARRAY)
        return bad(e, param, "must be a string or an array of text parts");
    st_strbuf sb;
    st_sb_init(&sb);
    for (size_t k = 0; k < c->u.arr.n; k++) {
        const st_json *p = &c->u.arr.items[k];
        const char *type = st_json_get_str(p, "type", NULL);
        const st_json *text = st_json_get(p, "text");
        if (p->type != ST_JSON_OBJECT || !type || strcmp(type, "text") != 0 || !text || text->type != ST_JSON_STRING) {
            st_sb_free(&sb);
            snprintf(param, sizeof param, "messages[%d].content[%zu]", i, k);
            return st_api_set_error(e, 400, INVALID, param,
                                    "'%s' must be {\"type\":\"text\",\"text\":string} (only text is supported)", param);
        }
        st_sb_putn(&sb, text->u.str.s, text->u.str.len);
    }
    st_sb_putn(&sb, "", 0);
    m->content_len = sb.len;
    m->content = own(r, sb.buf ? sb.buf : st_xstrdup(""));
    return 0;
}

static int parse_messages(st_api_request *r, st_api_error *e)
{
    const st_json *ms = st_json_get(r->root, "messages");
    if (!ms)
        return st_api_set_error(e, 400, INVALID, "messages", "'messages' is required");
    if (ms->type != ST_JSON_ARRAY)
        return bad(e, "messages", "must be an array");
    if (ms->u.arr.n == 0)
        return bad(e, "messages", "must not be empty");
    if (ms->u.arr.n > 100000)
        return bad(e, "messages", "has too many entries");
    r->n_msgs = (int)ms->u.arr.n;
    r->msgs = st_xcalloc((size_t)r->n_msgs, sizeof *r->msgs);
    for (int i = 0; i < r->n_msgs; i++) {
        const st_json *m = &ms->u.arr.items[i];
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (m->type != ST_JSON_OBJECT)
            return bad(e, param, "must be an object");
        const st_json *role = st_json_get(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!role || role->type != ST_JSON_STRING)
            return st_api_set_error(e, 400, INVALID, param, "'%s' must be a string", param);
        const char *rs = role->u.str.s;
        if (!strcmp(rs, "developer"))
            rs = "system"; /* OpenAI's newer name for the system role */
        else if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return st_api_set_error(e, 400, INVALID, param,
                                    "'%s' is '%.32s'; supported roles are system, developer, user, assistant", param,
                                    role->u.str.s);
        r->msgs[i].role = rs;
        int rc = parse_content(r, member(m, "content"), i, &r->msgs[i], e);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_prompt(st_api_request *r, const st_api_limits *lim, st_api_error *e)
{
    const st_json *p = member(r->root, "prompt");
    if (!p)
        return st_api_set_error(e, 400, INVALID, "prompt", "'prompt' is required");
    /* a list holding one string is the same as the string */
    if (p->type == ST_JSON_ARRAY && p->u.arr.n == 1 && p->u.arr.items[0].type == ST_JSON_STRING)
        p = &p->u.arr.items[0];
    if (p->type == ST_JSON_STRING) {
        r->prompt = p->u.str.s;
        r->prompt_len = p->u.str.len;
        return 0;
    }
    if (p->type != ST_JSON_ARRAY)
        return bad(e, "prompt", "must be a string or an array of token ids");
    if (p->u.arr.n == 0)
        return bad(e, "prompt", "must not be empty");
    if (p->u.arr.items[0].type != ST_JSON_NUMBER)
        return bad(e, "prompt", "must be a string or an array of token ids (batches of prompts are not supported)");
    if (lim->max_ctx > 0 && p->u.arr.n >= (size_t)lim->max_ctx)
        return st_api_set_error(e, 400, INVALID, "prompt", "the prompt has %zu tokens; the context length is %d",
                                p->u.arr.n, lim->max_ctx);
    if (p->u.arr.n > (1u << 24))
        return bad(e, "prompt", "is too long");
    r->n_prompt_ids = (int)p->u.arr.n;
    r->prompt_ids = st_xmalloc(sizeof(int32_t) * p->u.arr.n);
    int64_t hi = lim->n_vocab > 0 ? lim->n_vocab - 1 : INT32_MAX;
    for (size_t k = 0; k < p->u.arr.n; k++) {
        int64_t v;
        if (!st_json_as_int(&p->u.arr.items[k], 0, hi, &v))
            return st_api_set_error(e, 400, INVALID, "prompt",
                                    "'prompt[%zu]' must be a token id in [0, %lld]", k, (long long)hi);
        r->prompt_ids[k] = (int32_t)v;
    }
    return 0;
}

static int parse_stop(st_api_request *r, st_api_error *e)
{
    const st_json *s = member(r->root, "stop");
    if (!s)
        return 0;
    const st_json *items = s;
    size_t n = 1;
    if (s->type == ST_JSON_ARRAY) {
        items = s->u.arr.items;
        n = s->u.arr.n;
    }
    if (n > ST_GEN_MAX_STOP)
        return st_api_set_error(e, 400, INVALID, "stop", "'stop' has %zu entries; at most %d are supported", n,
                                ST_GEN_MAX_STOP);
    for (size_t k = 0; k < n; k++) {
        const st_json *it = &items[k];
        if (it->type != ST_JSON_STRING)
            return bad(e, "stop", "must be a string or an array of strings");
        if (it->u.str.len == 0 || it->u.str.len > ST_GEN_MAX_STOP_LEN || memchr(it->u.str.s, 0, it->u.str.len))
            return st_api_set_error(e, 400, INVALID, "stop", "stop strings must hold 1 to %d bytes and no NUL",
                                    ST_GEN_MAX_STOP_LEN);
        r->stop[r->n_stop++] = it->u.str.s;
    }
    return 0;
}

static int parse_sampling(st_api_request *r, st_api_error *e)
{
    st_sampling *s = &r->sampling;
    *s = st_sampling_default();
    s->temperature = 1.0f;
    s->top_k = 0;
    s->top_p = 1.0f;
    s->min_p = 0.0f;
    int rc;
    if ((rc = get_num(r->root, "temperature", 0, 0, 100, &s->temperature, e)) ||
        (rc = get_num(r->root, "top_p", 0, 1, 1, &s->top_p, e)) ||
        (rc = get_num(r->root, "min_p", 0, 0, 1, &s->min_p, e)) ||
        (rc = get_num(r->root, "presence_penalty", -2, 0, 2, &s->presence_penalty, e)) ||
        (rc = get_num(r->root, "frequency_penalty", -2, 0, 2, &s->frequency_penalty, e)) ||
        (rc = get_num(r->root, "repetition_penalty", 0, 1, 100, &s->repetition_penalty, e)))
        return rc;
    int64_t v;
    if (member(r->root, "top_k")) {
        if ((rc = get_int(r->root, "top_k", -1, 1 << 30, &v, e)))
            return rc;
        s->top_k = v < 0 ? 0 : (int)v;
    }
    static uint64_t counter;
    s->seed = st_now_ns() ^ (__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull);
    if (member(r->root, "seed")) {
        if ((rc = get_int(r->root, "seed", INT64_MIN, INT64_MAX, &v, e)))
            return rc;
        s->seed = (uint64_t)v;
    }
    if (st_sampling_validate(s) != ST_OK) /* belt and braces: the checks above are stricter */
        return st_api_set_error(e, 400, INVALID, NULL, "bad sampling parameters: %s", st_errmsg());
    return 0;
}

static int parse_logprobs(st_api_request *r, st_api_error *e)
{
    int64_t v;
    int rc;
    if (r->kind == ST_API_CHAT) {
        if ((rc = get_bool(r->root, "logprobs", &r->logprobs, e)))
            return rc;
        if (member(r->root, "top_logprobs")) {
            if ((rc = get_int(r->root, "top_logprobs", 0, ST_GEN_MAX_TOP_LOGPROBS, &v, e)))
                return rc;
            if (!r->logprobs)
                return st_api_set_error(e, 400, INVALID, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->top_logprobs = (int)v;
        }
        return 0;
    }
    /* legacy completions: logprobs is the number of alternatives, 0..5 */
    if (member(r->root, "logprobs")) {
        if ((rc = get_int(r->root, "logprobs", 0, 5, &v, e)))
            return rc;
        r->logprobs = 1;
        r->top_logprobs = (int)v;
    }
    return 0;
}

static int parse_fields(st_api_request *r, const st_api_limits *lim, st_api_error *e)
{
    int rc;
    const st_json *j;
    if ((j = member(r->root, "model"))) {
        if (j->type != ST_JSON_STRING)
            return bad(e, "model", "must be a string");
        r->model = j->u.str.s;
    }
    rc = r->kind == ST_API_CHAT ? parse_messages(r, e) : parse_prompt(r, lim, e);
    if (rc)
        return rc;
    if ((rc = get_bool(r->root, "stream", &r->stream, e)))
        return rc;
    if ((j = member(r->root, "stream_options"))) {
        if (j->type != ST_JSON_OBJECT)
            return bad(e, "stream_options", "must be an object");
        const st_json *u = member(j, "include_usage");
        if (u && u->type != ST_JSON_BOOL)
            return bad(e, "stream_options.include_usage", "must be a boolean");
        r->include_usage = u ? u->u.boolean : 0;
    }
    int64_t v;
    int64_t max_hi = lim->max_ctx > 0 ? lim->max_ctx : INT32_MAX;
    const char *mt = member(r->root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (member(r->root, mt)) {
        if ((rc = get_int(r->root, mt, 1, INT64_MAX, &v, e)))
            return rc;
        if (v > max_hi) {
            st_api_set_error(e, 400, INVALID, mt, "'%s' is %lld; the context length is %lld tokens", mt, (long long)v,
                             (long long)max_hi);
            e->code = "context_length_exceeded";
            return 400;
        }
        r->max_tokens = (int)v;
    }
    if (member(r->root, "n")) {
        if ((rc = get_int(r->root, "n", 1, INT64_MAX, &v, e)))
            return rc;
        if (v != 1)
            return st_api_set_error(e, 400, INVALID, "n", "'n' is %lld; only n=1 is supported", (long long)v);
    }
    if ((rc = parse_sampling(r, e)) || (rc = parse_stop(r, e)) || (rc = parse_logprobs(r, e)) ||
        (rc = get_bool(r->root, "ignore_eos", &r->ignore_eos, e)))
        return rc;
    if ((j = member(r->root, "chat_template_kwargs"))) {
        if (j->type != ST_JSON_OBJECT)
            return bad(e, "chat_template_kwargs", "must be an object");
        const st_json *t = member(j, "enable_thinking");
        if (t && t->type != ST_JSON_BOOL)
            return bad(e, "chat_template_kwargs.enable_thinking", "must be a boolean");
        if (t)
            r->enable_thinking = t->u.boolean;
    }
    if ((j = member(r->root, "tools")) && !(j->type == ST_JSON_ARRAY && j->u.arr.n == 0))
        return st_api_set_error(e, 400, INVALID, "tools", "'tools' (function calling) is not supported");
    if ((j = member(r->root, "echo")) && !(j->type == ST_JSON_BOOL && !j->u.boolean))
        return st_api_set_error(e, 400, INVALID, "echo", "'echo' is not supported");
    if ((j = member(r->root, "response_format"))) {
        const char *t = st_json_get_str(j, "type", NULL);
        if (!t || strcmp(t, "text") != 0)
            return st_api_set_error(e, 400, INVALID, "response_format",
                                    "'response_format' other than {\"type\":\"text\"} is not supported");
    }
    return 0;
}

int st_api_parse(st_api_kind kind, const char *body, size_t len, const st_api_limits *lim, st_api_request *out,
                 st_api_error *err)
{
    static const st_api_limits nolim = {0};
    if (!lim)
        lim = &nolim;
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->enable_thinking = -1;
    if (lim->max_body_bytes && len > lim->max_body_bytes)
        return st_api_set_error(err, 413, INVALID, NULL, "the request body has %zu bytes; the limit is %zu", len,
                                lim->max_body_bytes);
    if (!body || len == 0)
        return st_api_set_error(err, 400, INVALID, NULL, "the request body is empty; a JSON object is expected");
    if (st_json_parse(body, len, &out->root) != ST_OK)
        return st_api_set_error(err, 400, INVALID, NULL, "invalid JSON body: %s", st_errmsg());
    int rc = out->root->type != ST_JSON_OBJECT
                 ? st_api_set_error(err, 400, INVALID, NULL, "the request body must be a JSON object")
                 : parse_fields(out, lim, err);
    if (rc) {
        st_api_request_free(out);
        out->kind = kind;
    }
    return rc;
}

void st_api_request_free(st_api_request *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_owned; i++)
        free(r->owned[i]);
    free(r->owned);
    free(r->msgs);
    free(r->prompt_ids);
    st_json_free(r->root);
    memset(r, 0, sizeof *r);
}
