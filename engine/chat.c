/* Chat templates: family detection and the built-in formatters.
 *
 * Each formatter mirrors its Jinja template statement by statement,
 * including the string operations the templates apply: Jinja `trim` and
 * Python str.strip() strip Unicode whitespace (str.isspace), the Qwen3
 * reasoning split uses str.split / lstrip('\n') / rstrip('\n'). The goldens
 * in tests/golden/chat hold the real templates' output for our test
 * conversations. */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"

static const char SMOLLM2_SYSTEM[] = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/* ---- byte slices and Python string operations -------------------------------- */
typedef struct {
    const char *p;
    size_t n;
} slice;

/* Python str.isspace() for one code point. */
static int py_isspace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* Decode the code point at s[i] (valid UTF-8 assumed, invalid bytes are
 * taken one at a time and are never space); *len gets its byte length. */
static uint32_t cp_at(const unsigned char *s, size_t n, size_t i, size_t *len)
{
    int l = st_utf8_seq_len(s + i, n - i);
    if (l <= 1) {
        *len = 1;
        return l == 1 ? s[i] : 0xfffd;
    }
    uint32_t c = s[i] & (0xff >> (l + 1));
    for (int k = 1; k < l; k++)
        c = (c << 6) | (s[i + k] & 0x3f);
    *len = (size_t)l;
    return c;
}

/* Is the code point ending at byte e (exclusive) a space? Sets *len. */
static int space_before(const unsigned char *s, size_t e, size_t *len)
{
    size_t b = e - 1;
    while (b > 0 && e - b < 4 && (s[b] & 0xc0) == 0x80)
        b--;
    size_t l;
    uint32_t c = cp_at(s, e, b, &l);
    if (b + l != e) { /* not a whole sequence: a stray byte */
        *len = 1;
        return 0;
    }
    *len = l;
    return py_isspace(c);
}

/* str.strip(): Unicode whitespace from both ends. */
static slice py_strip(slice x)
{
    const unsigned char *s = (const unsigned char *)x.p;
    size_t b = 0, e = x.n, l;
    while (b < e && py_isspace(cp_at(s, e, b, &l)))
        b += l;
    while (e > b && space_before(s, e, &l))
        e -= l;
    return (slice){x.p + b, e - b};
}

static slice lstrip_nl(slice x)
{
    while (x.n && x.p[0] == '\n')
        x.p++, x.n--;
    return x;
}

static slice rstrip_nl(slice x)
{
    while (x.n && x.p[x.n - 1] == '\n')
        x.n--;
    return x;
}

/* First / last occurrence of the NUL-terminated needle in x, or NULL. */
static const char *find_first(slice x, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= x.n; i++)
        if (memcmp(x.p + i, needle, m) == 0)
            return x.p + i;
    return NULL;
}

static const char *find_last(slice x, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = x.n >= m ? x.n - m + 1 : 0; i-- > 0;)
        if (memcmp(x.p + i, needle, m) == 0)
            return x.p + i;
    return NULL;
}

static int starts_with(slice x, const char *pre)
{
    size_t m = strlen(pre);
    return x.n >= m && memcmp(x.p, pre, m) == 0;
}

static int ends_with(slice x, const char *suf)
{
    size_t m = strlen(suf);
    return x.n >= m && memcmp(x.p + x.n - m, suf, m) == 0;
}

static void put(st_strbuf *sb, slice x) { st_sb_putn(sb, x.p, x.n); }

/* ---- messages ----------------------------------------------------------------- */
enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

typedef struct {
    int role;
    const char *name; /* the role text */
    slice content;
} msg;

static int check_messages(const st_chat_msg *in, int n, msg *out)
{
    for (int i = 0; i < n; i++) {
        const char *r = in[i].role;
        if (!r)
            return st_err(ST_EINVAL, "chat: message %d has no role", i);
        if (!strcmp(r, "system"))
            out[i].role = ROLE_SYSTEM;
        else if (!strcmp(r, "user"))
            out[i].role = ROLE_USER;
        else if (!strcmp(r, "assistant"))
            out[i].role = ROLE_ASSISTANT;
        else
            return st_err(ST_EINVAL, "chat: message %d: unknown role '%.32s' (system, user, assistant)", i, r);
        if (!in[i].content && in[i].content_len)
            return st_err(ST_EINVAL, "chat: message %d: NULL content with length %zu", i, in[i].content_len);
        out[i].name = r;
        out[i].content = (slice){in[i].content ? in[i].content : "", in[i].content_len};
    }
    return ST_OK;
}

/* ---- ChatML (Qwen2, SmolLM2, generic) --------------------------------------------- */
static void im_msg(st_strbuf *sb, const char *role, slice content)
{
    st_sb_puts(sb, "<|im_start|>");
    st_sb_puts(sb, role);
    st_sb_puts(sb, "\n");
    put(sb, content);
    st_sb_puts(sb, "<|im_end|>\n");
}

static int render_chatml(const msg *m, int n, const st_chat_opts *o, const char *default_system, st_strbuf *sb)
{
    if (default_system && m[0].role != ROLE_SYSTEM)
        im_msg(sb, "system", (slice){default_system, strlen(default_system)});
    for (int i = 0; i < n; i++)
        im_msg(sb, m[i].name, m[i].content);
    if (o->add_generation_prompt)
        st_sb_puts(sb, "<|im_start|>assistant\n");
    return ST_OK;
}

/* ---- Qwen3: ChatML + reasoning ------------------------------------------------- */
static int render_qwen3(const msg *m, int n, const st_chat_opts *o, st_strbuf *sb)
{
    if (m[0].role == ROLE_SYSTEM)
        im_msg(sb, "system", m[0].content);
    /* the last user query (tool-response wrappers do not count) */
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--) {
        if (m[i].role == ROLE_USER &&
            !(starts_with(m[i].content, "<tool_response>") && ends_with(m[i].content, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER || (m[i].role == ROLE_SYSTEM && i > 0)) {
            im_msg(sb, m[i].name, m[i].content);
            continue;
        }
        if (m[i].role != ROLE_ASSISTANT)
            continue;
        slice content = m[i].content, reasoning = {"", 0};
        const char *last_close = find_last(content, "</think>");
        if (last_close) {
            /* content.split('</think>')[-1].lstrip('\n') */
            const char *after = last_close + strlen("</think>");
            slice c = lstrip_nl((slice){after, (size_t)(content.p + content.n - after)});
            /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
            const char *first_close = find_first(content, "</think>");
            slice before = rstrip_nl((slice){content.p, (size_t)(first_close - content.p)});
            const char *open = find_last(before, "<think>");
            if (open) {
                const char *r = open + strlen("<think>");
                before = (slice){r, (size_t)(before.p + before.n - r)};
            }
            reasoning = lstrip_nl(before);
            content = c;
        }
        st_sb_puts(sb, "<|im_start|>assistant\n");
        if (i > last_query && (i == n - 1 || reasoning.n > 0)) {
            st_sb_puts(sb, "<think>\n");
            put(sb, rstrip_nl(lstrip_nl(reasoning)));
            st_sb_puts(sb, "\n</think>\n\n");
            put(sb, lstrip_nl(content));
        } else {
            put(sb, content);
        }
        st_sb_puts(sb, "<|im_end|>\n");
    }
    if (o->add_generation_prompt) {
        st_sb_puts(sb, "<|im_start|>assistant\n");
        if (!o->enable_thinking)
            st_sb_puts(sb, "<think>\n\n</think>\n\n");
    }
    return ST_OK;
}

/* ---- Llama 3 --------------------------------------------------------------------- */
static int render_llama3(const msg *m, int n, const st_chat_opts *o, st_strbuf *sb)
{
    for (int i = 0; i < n; i++) {
        if (i == 0 && o->bos_text)
            st_sb_puts(sb, o->bos_text);
        st_sb_puts(sb, "<|start_header_id|>");
        st_sb_puts(sb, m[i].name);
        st_sb_puts(sb, "<|end_header_id|>\n\n");
        put(sb, py_strip(m[i].content));
        st_sb_puts(sb, "<|eot_id|>");
    }
    if (o->add_generation_prompt)
        st_sb_puts(sb, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return ST_OK;
}

/* ---- Llama 2: [INST] with <<SYS>> in the first user turn ------------------------- */
static int render_llama2(const msg *m, int n, const st_chat_opts *o, st_strbuf *sb)
{
    const char *eos = o->eos_text ? o->eos_text : "</s>";
    const msg *sys = m[0].role == ROLE_SYSTEM ? &m[0] : NULL;
    const msg *loop = sys ? m + 1 : m;
    int nl = sys ? n - 1 : n;
    st_strbuf tmp;
    st_sb_init(&tmp);
    for (int j = 0; j < nl; j++) {
        if ((loop[j].role == ROLE_USER) != (j % 2 == 0)) {
            st_sb_free(&tmp);
            return st_err(ST_EINVAL, "chat: llama2 template: conversation roles must alternate "
                                     "user/assistant/user/assistant/... (message %d is %s)",
                          j + (sys ? 1 : 0), loop[j].name);
        }
        slice content = loop[j].content;
        if (j == 0 && sys) {
            tmp.len = 0;
            st_sb_puts(&tmp, "<<SYS>>\n");
            put(&tmp, sys->content);
            st_sb_puts(&tmp, "\n<</SYS>>\n\n");
            put(&tmp, content);
            content = (slice){tmp.buf, tmp.len};
        }
        content = py_strip(content);
        if (loop[j].role == ROLE_USER) {
            if (j > 0 || o->bos_text)
                st_sb_puts(sb, o->bos_text ? o->bos_text : "<s>");
            st_sb_puts(sb, "[INST] ");
            put(sb, content);
            st_sb_puts(sb, " [/INST]");
        } else if (loop[j].role == ROLE_SYSTEM) {
            st_sb_puts(sb, "<<SYS>>\n");
            put(sb, content);
            st_sb_puts(sb, "\n<</SYS>>\n\n");
        } else {
            st_sb_puts(sb, " ");
            put(sb, content);
            st_sb_puts(sb, " ");
            st_sb_puts(sb, eos);
        }
    }
    st_sb_free(&tmp);
    return ST_OK;
}

/* ---- public ---------------------------------------------------------------------- */
st_chat_opts st_chat_opts_default(void)
{
    st_chat_opts o = {.add_generation_prompt = 1, .enable_thinking = 1};
    return o;
}

int st_chat_render(st_chat_format f, const st_chat_msg *msgs, int n, const st_chat_opts *opts, char **out,
                   size_t *out_len)
{
    if (!out)
        return st_err(ST_EINVAL, "chat: NULL output");
    if (!msgs || n <= 0)
        return st_err(ST_EINVAL, "chat: empty message list");
    st_chat_opts o = opts ? *opts : st_chat_opts_default();
    msg *m = st_xmalloc((size_t)n * sizeof *m);
    int rc = check_messages(msgs, n, m);
    st_strbuf sb;
    st_sb_init(&sb);
    if (rc == ST_OK) {
        switch (f) {
        case ST_CHAT_QWEN3: rc = render_qwen3(m, n, &o, &sb); break;
        case ST_CHAT_SMOLLM2:
            rc = render_chatml(m, n, &o, o.default_system ? o.default_system : SMOLLM2_SYSTEM, &sb);
            break;
        case ST_CHAT_LLAMA3: rc = render_llama3(m, n, &o, &sb); break;
        case ST_CHAT_LLAMA2: rc = render_llama2(m, n, &o, &sb); break;
        case ST_CHAT_UNKNOWN:
            ST_WARN("chat: unknown template family, rendering as ChatML");
            /* fall through */
        case ST_CHAT_CHATML: rc = render_chatml(m, n, &o, o.default_system, &sb); break;
        default: rc = st_err(ST_EINVAL, "chat: bad format %d", (int)f); break;
        }
    }
    free(m);
    if (rc != ST_OK) {
        st_sb_free(&sb);
        return rc;
    }
    st_sb_putn(&sb, "", 0); /* allocates and terminates even when nothing was written */
    *out = sb.buf;
    if (out_len)
        *out_len = sb.len;
    return ST_OK;
}

const char *st_chat_format_name(st_chat_format f)
{
    switch (f) {
    case ST_CHAT_CHATML: return "chatml";
    case ST_CHAT_QWEN3: return "qwen3";
    case ST_CHAT_SMOLLM2: return "smollm2";
    case ST_CHAT_LLAMA3: return "llama3";
    case ST_CHAT_LLAMA2: return "llama2";
    case ST_CHAT_UNKNOWN: return "unknown";
    }
    return "unknown";
}

/* Distinctive markers of each family's template text. */
st_chat_format st_chat_detect(const char *tmpl)
{
    if (!tmpl)
        return ST_CHAT_UNKNOWN;
    if (strstr(tmpl, "<|im_start|>")) {
        if (strstr(tmpl, "enable_thinking") || strstr(tmpl, "<think>"))
            return ST_CHAT_QWEN3;
        if (strstr(tmpl, "SmolLM"))
            return ST_CHAT_SMOLLM2;
        return ST_CHAT_CHATML;
    }
    if (strstr(tmpl, "<|start_header_id|>") && strstr(tmpl, "<|eot_id|>"))
        return ST_CHAT_LLAMA3;
    if (strstr(tmpl, "[INST]") && strstr(tmpl, "[/INST]"))
        return ST_CHAT_LLAMA2;
    return ST_CHAT_UNKNOWN;
}

/* A literal '<|im_start|>system' + newline (real or the escape \n) + text
 * + '<|im_end|>' with no quote in the text: a constant system message, as
 * opposed to '<|im_start|>system\n' + messages[0].content + ... */
int st_chat_default_system(const char *tmpl, char **out)
{
    if (!tmpl || !out)
        return st_err(ST_EINVAL, "chat: NULL template");
    *out = NULL;
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(tmpl, head); p; p = strstr(p + 1, head)) {
        const char *q = p + strlen(head);
        if (q[0] == '\n')
            q += 1;
        else if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else
            continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q)
            continue;
        st_strbuf sb;
        st_sb_init(&sb);
        int ok = 1;
        for (const char *c = q; c < end && ok; c++) {
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}') {
                ok = 0;
            } else if (*c == '\\' && c + 1 < end) {
                c++;
                char e = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c;
                st_sb_putn(&sb, &e, 1);
            } else {
                st_sb_putn(&sb, c, 1);
            }
        }
        if (ok) {
            st_sb_putn(&sb, "", 0);
            *out = sb.buf;
            return ST_OK;
        }
        st_sb_free(&sb);
    }
    return ST_OK;
}
