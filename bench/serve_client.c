/* Incremental HTTP/1.1 response parser and SSE splitter (see serve_client.h). */
#define _GNU_SOURCE
#include "bench/serve_client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/st_common.h"

enum { PH_HEAD, PH_CSIZE, PH_CDATA, PH_CCRLF, PH_TRAILER, PH_BODY, PH_EOF, PH_DONE };

#define MAX_HEAD_LINE 16384   /* one header or chunk-size line */
#define MAX_HEAD_LINES 256
#define MAX_KEPT_BODY (1 << 20) /* non-SSE bodies beyond this are dropped, not kept */
#define MAX_SSE_LINE (64 << 20)

void st_http_resp_init(st_http_resp *r, int sse, st_sse_cb cb, void *ctx)
{
    memset(r, 0, sizeof *r);
    st_sb_init(&r->body);
    st_sb_init(&r->line);
    st_sb_init(&r->sse_line);
    r->sse = sse;
    r->on_event = cb;
    r->ctx = ctx;
    r->content_length = -1;
    r->phase = PH_HEAD;
}

void st_http_resp_free(st_http_resp *r)
{
    st_sb_free(&r->body);
    st_sb_free(&r->line);
    st_sb_free(&r->sse_line);
}

/* ---- body delivery -------------------------------------------------------- */

static void sse_line(st_http_resp *r, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(s, "data:", 5) != 0)
        return; /* blank separators, comments, event:/id: lines */
    s += 5, n -= 5;
    if (n && *s == ' ')
        s++, n--;
    if (r->on_event)
        r->on_event(r->ctx, s, n);
}

static int deliver(st_http_resp *r, const char *p, size_t n)
{
    if (!(r->sse && r->status >= 200 && r->status < 300)) {
        if (r->body.len < MAX_KEPT_BODY)
            st_sb_putn(&r->body, p, ST_MIN(n, MAX_KEPT_BODY - r->body.len));
        return ST_OK;
    }
    while (n) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            if (r->sse_line.len + n > MAX_SSE_LINE)
                return st_err(ST_EPROTO, "an SSE line longer than %d bytes", MAX_SSE_LINE);
            st_sb_putn(&r->sse_line, p, n);
            return ST_OK;
        }
        size_t k = (size_t)(nl - p);
        if (r->sse_line.len) {
            st_sb_putn(&r->sse_line, p, k);
            sse_line(r, r->sse_line.buf, r->sse_line.len);
            r->sse_line.len = 0;
        } else {
            sse_line(r, p, k);
        }
        p += k + 1, n -= k + 1;
    }
    return ST_OK;
}

static void finish(st_http_resp *r)
{
    if (r->sse_line.len) /* a last event without its newline */
        sse_line(r, r->sse_line.buf, r->sse_line.len);
    r->sse_line.len = 0;
    r->phase = PH_DONE;
    r->done = 1;
}

/* ---- head ----------------------------------------------------------------- */

static int parse_status(st_http_resp *r, const char *s, size_t n)
{
    /* "HTTP/1.x SSS reason" */
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return st_err(ST_EPROTO, "not an HTTP/1.x status line: '%.*s'", (int)ST_MIN(n, 60), s);
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return st_err(ST_EPROTO, "bad status code in '%.*s'", (int)ST_MIN(n, 60), s);
        st = st * 10 + (s[i] - '0');
    }
    if (st < 100)
        return st_err(ST_EPROTO, "bad status code %d", st);
    r->status = st;
    r->keep_alive = s[7] == '1';
    return ST_OK;
}

static int has_token(const char *v, size_t n, const char *tok)
{
    size_t k = strlen(tok);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(v + i, tok, k))
            return 1;
    return 0;
}

static int parse_header(st_http_resp *r, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return st_err(ST_EPROTO, "bad header line '%.*s'", (int)ST_MIN(n, 60), s);
    size_t kn = (size_t)(colon - s);
    const char *v = colon + 1;
    size_t vn = n - kn - 1;
    while (vn && (*v == ' ' || *v == '\t'))
        v++, vn--;
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (kn == 14 && !strncasecmp(s, "content-length", kn)) {
        long long x = 0;
        if (!vn)
            return st_err(ST_EPROTO, "empty Content-Length");
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9' || x > (1LL << 50))
                return st_err(ST_EPROTO, "bad Content-Length '%.*s'", (int)ST_MIN(vn, 40), v);
            x = x * 10 + (v[i] - '0');
        }
        r->content_length = x;
    } else if (kn == 17 && !strncasecmp(s, "transfer-encoding", kn)) {
        r->chunked = has_token(v, vn, "chunked");
    } else if (kn == 10 && !strncasecmp(s, "connection", kn)) {
        if (has_token(v, vn, "close"))
            r->keep_alive = 0;
        else if (has_token(v, vn, "keep-alive"))
            r->keep_alive = 1;
    }
    return ST_OK;
}

/* The head is over: pick the body framing (RFC 9112 section 6.3). */
static int end_head(st_http_resp *r)
{
    if (r->status < 200)
        return st_err(ST_EPROTO, "unexpected interim response %d", r->status);
    if (r->status == 204 || r->status == 304) {
        finish(r);
    } else if (r->chunked) {
        r->phase = PH_CSIZE;
    } else if (r->content_length >= 0) {
        r->left = r->content_length;
        r->phase = PH_BODY;
        if (!r->left)
            finish(r);
    } else {
        r->phase = PH_EOF;
        r->keep_alive = 0;
    }
    return ST_OK;
}

static int parse_chunk_size(st_http_resp *r, const char *s, size_t n)
{
    long long x = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        if (x > (1LL << 40))
            return st_err(ST_EPROTO, "chunk size too large");
        x = x * 16 + d;
    }
    if (i == 0 || (i < n && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
        return st_err(ST_EPROTO, "bad chunk size line '%.*s'", (int)ST_MIN(n, 40), s);
    r->left = x;
    r->phase = x ? PH_CDATA : PH_TRAILER;
    return ST_OK;
}

/* One complete line (CR stripped) of the head, a chunk size or a trailer. */
static int on_line(st_http_resp *r, const char *s, size_t n)
{
    switch (r->phase) {
    case PH_HEAD:
        if (++r->n_head_lines > MAX_HEAD_LINES)
            return st_err(ST_EPROTO, "more than %d header lines", MAX_HEAD_LINES);
        if (!r->status)
            return parse_status(r, s, n);
        return n ? parse_header(r, s, n) : end_head(r);
    case PH_CSIZE:
        return parse_chunk_size(r, s, n);
    case PH_CCRLF:
        if (n)
            return st_err(ST_EPROTO, "chunk data not followed by CRLF");
        r->phase = PH_CSIZE;
        return ST_OK;
    case PH_TRAILER:
        if (!n)
            finish(r);
        return ST_OK;
    default:
        return st_err(ST_EPROTO, "internal: line in phase %d", r->phase);
    }
}

int st_http_resp_feed(st_http_resp *r, const char *p, size_t n)
{
    int rc;
    while (n) {
        switch (r->phase) {
        case PH_DONE:
            return st_err(ST_EPROTO, "%zu bytes after the end of the response", n);
        case PH_CDATA:
        case PH_BODY: {
            size_t k = (size_t)ST_MIN((long long)n, r->left);
            if ((rc = deliver(r, p, k)))
                return rc;
            p += k, n -= k;
            r->left -= (long long)k;
            if (!r->left) {
                if (r->phase == PH_BODY)
                    finish(r);
                else
                    r->phase = PH_CCRLF;
            }
            break;
        }
        case PH_EOF:
            return deliver(r, p, n);
        default: { /* line-oriented phases */
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p) : n;
            if (r->line.len + k > MAX_HEAD_LINE)
                return st_err(ST_EPROTO, "a response head or chunk line longer than %d bytes", MAX_HEAD_LINE);
            st_sb_putn(&r->line, p, k);
            if (!nl)
                return ST_OK;
            p += k + 1, n -= k + 1;
            size_t ln = r->line.len;
            if (ln && r->line.buf[ln - 1] == '\r')
                ln--;
            rc = on_line(r, r->line.buf, ln);
            r->line.len = 0;
            if (rc)
                return rc;
        }
        }
    }
    return ST_OK;
}

int st_http_resp_eof(st_http_resp *r)
{
    if (r->phase == PH_EOF) {
        finish(r);
        return ST_OK;
    }
    if (r->done)
        return ST_OK;
    return st_err(ST_ECONN, "the server closed the connection %s",
                  r->status ? "in the middle of the response" : "before answering");
}
