/* Strict JSON (RFC 8259) parser into a DOM, and a string-builder writer.
 *
 * The parser is a recursive descent over a bounded buffer (depth is capped
 * at ST_JSON_MAX_DEPTH, so recursion is bounded too). Children of a container
 * are first pushed onto one shared scratch stack and copied into an exactly
 * sized array when the container closes: a 150k-member vocabulary object
 * costs a handful of amortized stack growths, not 150k reallocs. */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_common.h"

/* ---- parser state ------------------------------------------------------------ */
typedef struct {
    const unsigned char *p; /* next byte */
    const unsigned char *begin, *end;
    int depth;
    /* scratch stack of finished children (and their keys, for objects) of
     * every container still open; a container owns the top of the stack
     * from the index it noted when it opened */
    st_json *vals;
    char **keys;
    size_t *key_lens;
    size_t n, cap;
} parser;

static int fail(parser *ps, const unsigned char *at, const char *what)
{
    return st_err(ST_EINVAL, "json: byte %zu: %s", (size_t)(at - ps->begin), what);
}

static void skip_ws(parser *ps)
{
    const unsigned char *p = ps->p, *e = ps->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static void push(parser *ps, const st_json *v, char *key, size_t key_len)
{
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->vals = st_xrealloc(ps->vals, ps->cap * sizeof *ps->vals);
        ps->keys = st_xrealloc(ps->keys, ps->cap * sizeof *ps->keys);
        ps->key_lens = st_xrealloc(ps->key_lens, ps->cap * sizeof *ps->key_lens);
    }
    ps->vals[ps->n] = *v;
    ps->keys[ps->n] = key;
    ps->key_lens[ps->n] = key_len;
    ps->n++;
}

static void free_value(st_json *j);

/* Drop scratch entries [from, n) after an error. */
static void unwind(parser *ps, size_t from)
{
    for (size_t i = from; i < ps->n; i++) {
        free_value(&ps->vals[i]);
        free(ps->keys[i]);
    }
    ps->n = from;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ps->p is at the opening quote. On success *s is a NUL-terminated heap
 * copy of the unescaped string. An unescaped string is never longer than
 * its source (every escape shrinks or keeps its length), so one allocation
 * of the raw span suffices. */
static int parse_string(parser *ps, char **s, size_t *len)
{
    const unsigned char *start = ps->p + 1, *p = start, *e = ps->end;
    int escapes = 0;
    /* pass 1: find the closing quote, validating UTF-8 and control chars */
    while (p < e && *p != '"') {
        unsigned c = *p;
        if (c == '\\') {
            escapes = 1;
            if (e - p < 2) {
                p = e;
                break;
            }
            p += 2;
        } else if (c < 0x20) {
            return fail(ps, p, "control character in string");
        } else if (c < 0x80) {
            p++;
        } else {
            int l = st_utf8_seq_len(p, (size_t)(e - p));
            if (!l)
                return fail(ps, p, "invalid UTF-8 in string");
            p += l;
        }
    }
    if (p >= e)
        return fail(ps, ps->p, "unterminated string");
    size_t raw = (size_t)(p - start);
    char *out = st_xmalloc(raw + 1);
    size_t n = 0;
    if (!escapes) {
        memcpy(out, start, raw);
        n = raw;
    } else {
        /* pass 2: unescape */
        const unsigned char *q = start;
        while (q < p) {
            if (*q != '\\') {
                out[n++] = (char)*q++;
                continue;
            }
            const unsigned char *esc = q;
            q++;
            switch (*q++) {
            case '"': out[n++] = '"'; break;
            case '\\': out[n++] = '\\'; break;
            case '/': out[n++] = '/'; break;
            case 'b': out[n++] = '\b'; break;
            case 'f': out[n++] = '\f'; break;
            case 'n': out[n++] = '\n'; break;
            case 'r': out[n++] = '\r'; break;
            case 't': out[n++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (p - q < 4 || hex4(q, &cp)) {
                    free(out);
                    return fail(ps, esc, "bad \\u escape");
                }
                q += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(out);
                    return fail(ps, esc, "lone low surrogate in \\u escape");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        free(out);
                        return fail(ps, esc, "high surrogate not followed by a low surrogate");
                    }
                    q += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                n += put_utf8(out + n, cp);
                break;
            }
            default:
                free(out);
                return fail(ps, esc, "bad escape in string");
            }
        }
    }
    out[n] = 0;
    *s = out;
    *len = n;
    ps->p = p + 1;
    return ST_OK;
}

static int parse_number(parser *ps, double *out)
{
    const unsigned char *s = ps->p, *p = s, *e = ps->end;
    int simple = 1; /* integer of at most 15 digits: exact without strtod */
    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return fail(ps, s, "bad number");
    if (*p == '0') {
        p++;
    } else {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && *p == '.') {
        simple = 0;
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return fail(ps, p, "bad number: digit expected after '.'");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        simple = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return fail(ps, p, "bad number: digit expected in exponent");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t)(p - s);
    if (simple && n <= 15) {
        const unsigned char *q = s;
        int neg = *q == '-';
        q += neg;
        int64_t v = 0;
        while (q < p)
            v = v * 10 + (*q++ - '0');
        *out = neg ? -(double)v : (double)v;
    } else {
        /* strtod needs a terminated string; the input is not */
        char small[64];
        char *buf = n < sizeof small ? small : st_xmalloc(n + 1);
        memcpy(buf, s, n);
        buf[n] = 0;
        *out = strtod(buf, NULL);
        if (buf != small)
            free(buf);
        if (*out == HUGE_VAL || *out == -HUGE_VAL)
            return fail(ps, s, "number out of the range of a double");
    }
    ps->p = p;
    return ST_OK;
}

static int parse_value(parser *ps, st_json *v);

static int parse_array(parser *ps, st_json *v)
{
    const unsigned char *open = ps->p;
    if (++ps->depth > ST_JSON_MAX_DEPTH)
        return fail(ps, open, "nesting deeper than ST_JSON_MAX_DEPTH");
    ps->p++;
    size_t base = ps->n;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            st_json item;
            int rc = parse_value(ps, &item);
            if (rc) {
                unwind(ps, base);
                return rc;
            }
            push(ps, &item, NULL, 0);
            skip_ws(ps);
            if (ps->p >= ps->end) {
                unwind(ps, base);
                return fail(ps, open, "unterminated array");
            }
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == ']') {
                ps->p++;
                break;
            }
            unwind(ps, base);
            return fail(ps, ps->p, "expected ',' or ']' in array");
        }
    }
    size_t n = ps->n - base;
    v->type = ST_JSON_ARRAY;
    v->u.arr.n = n;
    v->u.arr.items = NULL;
    if (n) {
        v->u.arr.items = st_xmalloc(n * sizeof(st_json));
        memcpy(v->u.arr.items, ps->vals + base, n * sizeof(st_json));
    }
    ps->n = base;
    ps->depth--;
    return ST_OK;
}

static int parse_object(parser *ps, st_json *v)
{
    const unsigned char *open = ps->p;
    if (++ps->depth > ST_JSON_MAX_DEPTH)
        return fail(ps, open, "nesting deeper than ST_JSON_MAX_DEPTH");
    ps->p++;
    size_t base = ps->n;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            char *key;
            size_t key_len;
            int rc;
            if (ps->p >= ps->end || *ps->p != '"') {
                rc = fail(ps, ps->p, "expected a string key in object");
                goto err;
            }
            if ((rc = parse_string(ps, &key, &key_len)))
                goto err;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                rc = fail(ps, ps->p, "expected ':' after object key");
                goto err;
            }
            ps->p++;
            st_json val;
            if ((rc = parse_value(ps, &val))) {
                free(key);
                goto err;
            }
            push(ps, &val, key, key_len);
            skip_ws(ps);
            if (ps->p >= ps->end) {
                rc = fail(ps, open, "unterminated object");
                goto err;
            }
            if (*ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (*ps->p == '}') {
                ps->p++;
                break;
            }
            rc = fail(ps, ps->p, "expected ',' or '}' in object");
        err:
            unwind(ps, base);
            return rc;
        }
    }
    size_t n = ps->n - base;
    v->type = ST_JSON_OBJECT;
    v->u.obj.n = n;
    v->u.obj.keys = NULL;
    v->u.obj.key_lens = NULL;
    v->u.obj.vals = NULL;
    if (n) {
        v->u.obj.vals = st_xmalloc(n * sizeof(st_json));
        v->u.obj.keys = st_xmalloc(n * sizeof(char *));
        v->u.obj.key_lens = st_xmalloc(n * sizeof(size_t));
        memcpy(v->u.obj.vals, ps->vals + base, n * sizeof(st_json));
        memcpy(v->u.obj.keys, ps->keys + base, n * sizeof(char *));
        memcpy(v->u.obj.key_lens, ps->key_lens + base, n * sizeof(size_t));
    }
    ps->n = base;
    ps->depth--;
    return ST_OK;
}

static int literal(parser *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, ps->p, "unexpected token");
    ps->p += n;
    return ST_OK;
}

static int parse_value(parser *ps, st_json *v)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, ps->p, "unexpected end of input, value expected");
    memset(v, 0, sizeof *v);
    switch (*ps->p) {
    case '{': return parse_object(ps, v);
    case '[': return parse_array(ps, v);
    case '"':
        v->type = ST_JSON_STRING;
        return parse_string(ps, &v->u.str.s, &v->u.str.len);
    case 't':
        v->type = ST_JSON_BOOL;
        v->u.boolean = 1;
        return literal(ps, "true", 4);
    case 'f':
        v->type = ST_JSON_BOOL;
        return literal(ps, "false", 5);
    case 'n':
        v->type = ST_JSON_NULL;
        return literal(ps, "null", 4);
    default:
        if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9'))
            return fail(ps, ps->p, "unexpected character, a value was expected");
        v->type = ST_JSON_NUMBER;
        return parse_number(ps, &v->u.number);
    }
}

int st_json_parse(const char *buf, size_t len, st_json **out)
{
    if (!buf && len)
        return st_err(ST_EINVAL, "json: NULL buffer");
    static const unsigned char empty[1];
    parser ps = {0};
    ps.begin = ps.p = buf ? (const unsigned char *)buf : empty;
    ps.end = ps.begin + len;
    st_json root;
    int rc = parse_value(&ps, &root);
    if (rc == ST_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            free_value(&root);
            rc = fail(&ps, ps.p, "trailing characters after the JSON value");
        }
    }
    free(ps.vals);
    free(ps.keys);
    free(ps.key_lens);
    if (rc)
        return rc;
    *out = st_xmalloc(sizeof **out);
    **out = root;
    return ST_OK;
}

static void free_value(st_json *j)
{
    switch (j->type) {
    case ST_JSON_STRING: free(j->u.str.s); break;
    case ST_JSON_ARRAY:
        for (size_t i = 0; i < j->u.arr.n; i++)
            free_value(&j->u.arr.items[i]);
        free(j->u.arr.items);
        break;
    case ST_JSON_OBJECT:
        for (size_t i = 0; i < j->u.obj.n; i++) {
            free(j->u.obj.keys[i]);
            free_value(&j->u.obj.vals[i]);
        }
        free(j->u.obj.keys);
        free(j->u.obj.key_lens);
        free(j->u.obj.vals);
        break;
    default: break;
    }
}

void st_json_free(st_json *j)
{
    if (!j)
        return;
    free_value(j);
    free(j);
}

/* ---- access -------------------------------------------------------------------- */

/* A linear scan over the members, last match wins (RFC 8259 leaves
 * duplicate names undefined; this matches most parsers). O(n) per call:
 * fine for configs and request bodies; a caller that looks up many names in
 * a large object (a tokenizer vocabulary) should iterate u.obj once and
 * build its own hash map instead. */
const st_json *st_json_get(const st_json *j, const char *key)
{
    if (!j || j->type != ST_JSON_OBJECT || !key)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = j->u.obj.n; i-- > 0;)
        if (j->u.obj.key_lens[i] == kl && memcmp(j->u.obj.keys[i], key, kl) == 0)
            return &j->u.obj.vals[i];
    return NULL;
}

const char *st_json_get_str(const st_json *j, const char *key, const char *dflt)
{
    const st_json *v = st_json_get(j, key);
    return v && v->type == ST_JSON_STRING ? v->u.str.s : dflt;
}

double st_json_get_num(const st_json *j, const char *key, double dflt)
{
    const st_json *v = st_json_get(j, key);
    return v && v->type == ST_JSON_NUMBER ? v->u.number : dflt;
}

int st_json_get_bool(const st_json *j, const char *key, int dflt)
{
    const st_json *v = st_json_get(j, key);
    return v && v->type == ST_JSON_BOOL ? v->u.boolean : dflt;
}

int st_json_as_int(const st_json *j, int64_t lo, int64_t hi, int64_t *out)
{
    if (!j || j->type != ST_JSON_NUMBER)
        return 0;
    double d = j->u.number;
    /* the range test comes before the cast, which is undefined out of range;
     * 2^63 itself is not representable as int64 */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return 0;
    int64_t v = (int64_t)d;
    if ((double)v != d || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* ---- writer ------------------------------------------------------------------------ */
/* The buffer is kept NUL-terminated (buf[len] == 0) once anything was put. */

void st_sb_init(st_strbuf *sb)
{
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

void st_sb_free(st_strbuf *sb)
{
    free(sb->buf);
    st_sb_init(sb);
}

static void sb_reserve(st_strbuf *sb, size_t extra)
{
    size_t need;
    if (st_add_ok(sb->len, extra, &need) || st_add_ok(need, 1, &need)) {
        fprintf(stderr, "strait: string buffer size overflow\n");
        abort();
    }
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    sb->buf = st_xrealloc(sb->buf, cap);
    sb->cap = cap;
}

void st_sb_putn(st_strbuf *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    if (n)
        memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
}

void st_sb_puts(st_strbuf *sb, const char *s) { st_sb_putn(sb, s, strlen(s)); }

void st_sb_printf(st_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    sb_reserve(sb, 0);
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sb->cap - sb->len) {
        sb_reserve(sb, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
    }
    sb->len += (size_t)n;
}

/* Escapes '"', '\\' and control characters; valid UTF-8 passes through,
 * and each byte of an invalid sequence becomes U+FFFD so that the output
 * is always valid JSON. */
void st_sb_json_str(st_strbuf *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    sb_reserve(sb, n + 2);
    st_sb_putn(sb, "\"", 1);
    size_t i = 0;
    while (i < n) {
        /* copy the longest run that needs no escaping in one go */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i) {
            st_sb_putn(sb, s + i, j - i);
            i = j;
            continue;
        }
        unsigned c = p[i];
        if (c >= 0x80) {
            int l = st_utf8_seq_len(p + i, n - i);
            if (l) {
                st_sb_putn(sb, s + i, (size_t)l);
                i += (size_t)l;
            } else {
                st_sb_putn(sb, "\\ufffd", 6);
                i++;
            }
            continue;
        }
        char esc[6] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        st_sb_putn(sb, esc, el);
        i++;
    }
    st_sb_putn(sb, "\"", 1);
}
