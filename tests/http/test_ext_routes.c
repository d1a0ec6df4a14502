/* Extra routes of the HTTP server (server.h st_http_route), in-process on
 * 127.0.0.1 over the fake back end: plain GET and POST routes, errors as
 * JSON with their status, the API key (and public routes without it),
 * Server-Sent Events routes (an event when the body changes and none when
 * it does not, multi-line bodies, the end of the polling when the client
 * leaves, a prompt stop with a stream open), and the same routes and a
 * token stream through the reverse proxy of `strait chat`
 * (http/chat_proxy.h): passed through unbuffered, the web UI served by
 * the proxy itself, a client leaving aborts the generation upstream.
 *
 * Every wait is bounded (reads time out after 10 s, polls of counters
 * give up after 10 s), so a hang is a failure, not a stuck test. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../http/chat_proxy.h"
#include "../../http/server.h"
#include "../test.h"
#include "fake_backend.h"

#define KEY "ext-key-42"
#define IO_TIMEOUT_MS 10000
#define PERIOD_MS 20

/* ---- the routes under test ------------------------------------------------------ */

static int version;                    /* what /t/stream reports; set by the test */
static int n_stream_calls, n_leave_calls; /* handler calls, read atomically */

static int put(st_http_reply *out, const char *s)
{
    out->body = st_xstrdup(s);
    out->len = strlen(s);
    return ST_OK;
}

/* {"query":"<the query string>"} */
static int h_echo(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)body, (void)bl;
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"query\":");
    st_sb_json_str(&sb, q, ql);
    st_sb_puts(&sb, "}");
    out->body = sb.buf;
    out->len = sb.len;
    return ST_OK;
}

/* 201 text/plain: the request body reversed (so that an echo of the
 * request itself cannot pass). */
static int h_post(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)q, (void)ql;
    out->body = st_xmalloc(bl + 1);
    for (size_t i = 0; i < bl; i++)
        out->body[i] = body[bl - 1 - i];
    out->body[bl] = 0;
    out->len = bl;
    out->status = 201;
    out->content_type = "text/plain";
    return ST_OK;
}

/* Fails with the error the query names. */
static int h_fail(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)body, (void)bl, (void)out;
    if (ql == 6 && !memcmp(q, "einval", 6))
        return st_err(ST_EINVAL, "the widget is bent");
    if (ql == 6 && !memcmp(q, "enoent", 6))
        return st_err(ST_ENOENT, "no such widget");
    if (ql == 6 && !memcmp(q, "eagain", 6))
        return st_err(ST_EAGAIN, "widgets are busy");
    return st_err(ST_EIO, "the widget broke");
}

static int h_stream(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)q, (void)ql, (void)body, (void)bl;
    __atomic_add_fetch(&n_stream_calls, 1, __ATOMIC_SEQ_CST);
    char b[64];
    snprintf(b, sizeof b, "{\"v\":%d}", __atomic_load_n(&version, __ATOMIC_SEQ_CST));
    return put(out, b);
}

static int h_leave(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)q, (void)ql, (void)body, (void)bl;
    __atomic_add_fetch(&n_leave_calls, 1, __ATOMIC_SEQ_CST);
    return put(out, "{}");
}

static int h_lines(void *ctx, const char *q, size_t ql, const char *body, size_t bl, st_http_reply *out)
{
    (void)ctx, (void)q, (void)ql, (void)body, (void)bl;
    return put(out, "first\r\nsecond\nthird");
}

static const st_http_route routes[] = {
    {.method = "GET", .path = "/t/echo", .handle = h_echo},
    {.method = "GET", .path = "/t/public", .handle = h_echo, .public_route = 1},
    {.method = "POST", .path = "/t/post", .handle = h_post},
    {.method = "GET", .path = "/t/fail", .handle = h_fail},
    {.method = "GET", .path = "/t/stream", .handle = h_stream, .stream = 1, .period_ms = PERIOD_MS},
    {.method = "GET", .path = "/t/leave", .handle = h_leave, .stream = 1, .period_ms = PERIOD_MS},
    {.method = "GET", .path = "/t/lines", .handle = h_lines, .stream = 1, .period_ms = PERIOD_MS},
    {.method = "GET", .path = "/t/streamfail", .handle = h_fail, .stream = 1, .period_ms = PERIOD_MS},
    {.method = "GET", .path = "/t/openstream", .handle = h_stream, .stream = 1, .period_ms = PERIOD_MS,
     .public_route = 1},
};

/* ---- a minimal HTTP/1.1 client ---------------------------------------------------- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Read what arrives within the timeout: 1 at EOF, 0 if data came, -1 on timeout/error. */
static int read_some(int fd, st_strbuf *sb, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    char buf[16384];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0)
        return errno == ECONNRESET && sb->len ? 1 : -1;
    if (r == 0)
        return 1;
    st_sb_putn(sb, buf, (size_t)r);
    return 0;
}

/* Send a request on a new connection; the socket, or -1. */
static int send_req(int port, const char *method, const char *path, const char *auth, const char *body)
{
    int fd = dial(port);
    if (fd < 0)
        return -1;
    st_strbuf q;
    st_sb_init(&q);
    st_sb_printf(&q, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
    if (auth)
        st_sb_printf(&q, "Authorization: Bearer %s\r\n", auth);
    if (body)
        st_sb_printf(&q, "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
    st_sb_puts(&q, "\r\n");
    if (body)
        st_sb_puts(&q, body);
    ssize_t w = send(fd, q.buf, q.len, MSG_NOSIGNAL);
    int ok = w == (ssize_t)q.len;
    st_sb_free(&q);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct {
    int status;
    char head[2048]; /* status line and headers, lower-cased */
    st_strbuf body;  /* de-chunked */
} resp;

static int parse_resp(const char *raw, size_t len, resp *r)
{
    const char *sep = memmem(raw, len, "\r\n\r\n", 4);
    if (!sep || sscanf(raw, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    size_t hl = ST_MIN((size_t)(sep - raw), sizeof r->head - 1);
    for (size_t i = 0; i < hl; i++)
        r->head[i] = (char)((raw[i] >= 'A' && raw[i] <= 'Z') ? raw[i] + 32 : raw[i]);
    r->head[hl] = 0;
    const char *p = sep + 4, *end = raw + len;
    if (!strstr(r->head, "transfer-encoding: chunked")) {
        st_sb_putn(&r->body, p, (size_t)(end - p));
        return 0;
    }
    while (p < end) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        const char *d = strstr(e, "\r\n");
        if (!d || (size_t)(end - d - 2) < n)
            return -1;
        if (n == 0)
            return 0;
        st_sb_putn(&r->body, d + 2, n);
        p = d + 2 + n + 2;
    }
    return -1; /* no final chunk */
}

/* One request, read to the end; 0 on a complete response. */
static int http(int port, const char *method, const char *path, const char *auth, const char *body, resp *r)
{
    memset(r, 0, sizeof *r);
    st_sb_init(&r->body);
    int fd = send_req(port, method, path, auth, body);
    if (fd < 0)
        return -1;
    st_strbuf raw;
    st_sb_init(&raw);
    int st;
    while ((st = read_some(fd, &raw, IO_TIMEOUT_MS)) == 0)
        ;
    close(fd);
    int rc = st == 1 && raw.buf ? parse_resp(raw.buf, raw.len, r) : -1;
    st_sb_free(&raw);
    return rc;
}

static int count(const char *hay, size_t len, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; p && (p = memmem(p, len - (size_t)(p - hay), needle, nl)); p += nl)
        n++;
    return n;
}

/* Read until raw holds at least n copies of needle; 1 if it does. */
static int read_until(int fd, st_strbuf *raw, const char *needle, int n)
{
    uint64_t end = st_now_ns() + (uint64_t)IO_TIMEOUT_MS * 1000000ull;
    while (count(raw->buf ? raw->buf : "", raw->len, needle) < n) {
        if (st_now_ns() > end || read_some(fd, raw, IO_TIMEOUT_MS) != 0)
            return 0;
    }
    return 1;
}

/* Wait until *c >= want (10 s at most). */
static int wait_at_least(int *c, int want)
{
    for (int i = 0; i < 10000; i++) {
        if (__atomic_load_n(c, __ATOMIC_SEQ_CST) >= want)
            return 1;
        usleep(1000);
    }
    return 0;
}

static const char *err_message(const resp *r, char *buf, size_t cap)
{
    st_json *j = NULL;
    buf[0] = 0;
    if (r->body.buf && st_json_parse(r->body.buf, r->body.len, &j) == ST_OK) {
        const st_json *m = st_json_get(st_json_get(j, "error"), "message");
        if (m && m->type == ST_JSON_STRING)
            snprintf(buf, cap, "%s", m->u.str.s);
    }
    st_json_free(j);
    return buf;
}

/* ---- plain routes -------------------------------------------------------------------- */

static void test_plain(int port)
{
    resp r;
    char msg[256];
    CHECK(http(port, "GET", "/t/echo?a=1&b=two", KEY, NULL, &r) == 0);
    CHECKF(r.status == 200, "status %d", r.status);
    CHECK(strstr(r.head, "content-type: application/json") != NULL);
    CHECKF(r.body.buf && !strcmp(r.body.buf, "{\"query\":\"a=1&b=two\"}"), "body %s", r.body.buf);
    st_sb_free(&r.body);

    /* the API key: none, a wrong one, and a public route without one */
    CHECK(http(port, "GET", "/t/echo", NULL, NULL, &r) == 0 && r.status == 401);
    st_sb_free(&r.body);
    CHECK(http(port, "GET", "/t/echo", "wrong-key", NULL, &r) == 0 && r.status == 401);
    st_sb_free(&r.body);
    CHECK(http(port, "GET", "/t/public?x", NULL, NULL, &r) == 0 && r.status == 200);
    CHECKF(r.body.buf && !strcmp(r.body.buf, "{\"query\":\"x\"}"), "body %s", r.body.buf);
    st_sb_free(&r.body);

    /* POST with a body; status and content type from the handler */
    CHECK(http(port, "POST", "/t/post", KEY, "{\"n\":123}", &r) == 0);
    CHECKF(r.status == 201, "status %d", r.status);
    CHECK(strstr(r.head, "content-type: text/plain") != NULL);
    CHECKF(r.body.buf && !strcmp(r.body.buf, "}321:\"n\"{"), "body %s", r.body.buf);
    st_sb_free(&r.body);

    /* the wrong method: 405 with Allow */
    CHECK(http(port, "GET", "/t/post", KEY, NULL, &r) == 0 && r.status == 405);
    CHECK(strstr(r.head, "allow: post") != NULL);
    st_sb_free(&r.body);
    CHECK(http(port, "POST", "/t/echo", KEY, "{}", &r) == 0 && r.status == 405);
    st_sb_free(&r.body);

    /* errors: JSON with the handler's message, status by error code */
    const struct {
        const char *q;
        int status;
        const char *msg;
    } errs[] = {{"einval", 400, "the widget is bent"},
                {"enoent", 404, "no such widget"},
                {"eagain", 503, "widgets are busy"},
                {"eio", 500, "the widget broke"}};
    for (size_t i = 0; i < ST_ARRAY_LEN(errs); i++) {
        char path[64];
        snprintf(path, sizeof path, "/t/fail?%s", errs[i].q);
        CHECK(http(port, "GET", path, KEY, NULL, &r) == 0);
        CHECKF(r.status == errs[i].status, "%s: status %d", errs[i].q, r.status);
        CHECKF(strstr(err_message(&r, msg, sizeof msg), errs[i].msg) != NULL, "%s: message '%s'", errs[i].q, msg);
        st_sb_free(&r.body);
    }
}

/* ---- streams ----------------------------------------------------------------------- */

static void test_stream_events(int port)
{
    __atomic_store_n(&version, 0, __ATOMIC_SEQ_CST);
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = send_req(port, "GET", "/t/stream", KEY, NULL);
    CHECK(fd >= 0);
    CHECK(read_until(fd, &raw, "data: ", 1));
    resp r;
    memset(&r, 0, sizeof r);
    st_sb_init(&r.body);
    parse_resp(raw.buf ? raw.buf : "", raw.len, &r); /* the head; the body is not complete yet */
    CHECKF(r.status == 200, "status %d", r.status);
    CHECK(strstr(r.head, "content-type: text/event-stream") != NULL);
    CHECK(strstr(r.head, "cache-control: no-cache") != NULL);
    st_sb_free(&r.body);
    CHECK(count(raw.buf, raw.len, "data: {\"v\":0}\n\n") == 1);

    /* the body does not change: the handler keeps being called (every
     * PERIOD_MS) and no new event goes out */
    int c0 = __atomic_load_n(&n_stream_calls, __ATOMIC_SEQ_CST);
    CHECK(wait_at_least(&n_stream_calls, c0 + 6));
    while (read_some(fd, &raw, 5 * PERIOD_MS) == 0)
        ;
    CHECKF(count(raw.buf, raw.len, "data: ") == 1, "%d events for an unchanged body",
           count(raw.buf, raw.len, "data: "));

    /* it changes: exactly one new event, with the new body */
    __atomic_store_n(&version, 7, __ATOMIC_SEQ_CST);
    CHECK(read_until(fd, &raw, "data: ", 2));
    CHECK(count(raw.buf, raw.len, "data: {\"v\":7}\n\n") == 1);
    c0 = __atomic_load_n(&n_stream_calls, __ATOMIC_SEQ_CST);
    CHECK(wait_at_least(&n_stream_calls, c0 + 4));
    while (read_some(fd, &raw, 5 * PERIOD_MS) == 0)
        ;
    CHECK(count(raw.buf, raw.len, "data: ") == 2);
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);

    /* the API key applies to streams too, and a public stream needs none */
    CHECK(http(port, "GET", "/t/stream", NULL, NULL, &r) == 0 && r.status == 401);
    st_sb_free(&r.body);
    fd = send_req(port, "GET", "/t/openstream", NULL, NULL);
    st_sb_init(&raw);
    CHECK(fd >= 0 && read_until(fd, &raw, "data: {\"v\":7}", 1));
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);

    /* a body of several lines: one data line each, one event */
    fd = send_req(port, "GET", "/t/lines", KEY, NULL);
    st_sb_init(&raw);
    CHECK(fd >= 0 && read_until(fd, &raw, "\n\n", 1));
    CHECKF(raw.buf && strstr(raw.buf, "data: first\ndata: second\ndata: third\n\n"), "raw %s", raw.buf);
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);

    /* a stream whose first answer is an error is a JSON error reply */
    char msg[256];
    CHECK(http(port, "GET", "/t/streamfail?eagain", KEY, NULL, &r) == 0);
    CHECKF(r.status == 503 && strstr(r.head, "application/json"), "status %d", r.status);
    CHECK(strstr(err_message(&r, msg, sizeof msg), "widgets are busy") != NULL);
    st_sb_free(&r.body);
}

/* A client that leaves ends the polling of its stream. */
static void test_stream_leave(int port)
{
    int c0 = __atomic_load_n(&n_leave_calls, __ATOMIC_SEQ_CST);
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = send_req(port, "GET", "/t/leave", KEY, NULL);
    CHECK(fd >= 0 && read_until(fd, &raw, "data: ", 1));
    CHECK(wait_at_least(&n_leave_calls, c0 + 3)); /* polled while open */
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);
    /* within 10 s, a window of 10 periods without a call */
    int quiet = 0;
    for (int i = 0; i < 50 && !quiet; i++) {
        int a = __atomic_load_n(&n_leave_calls, __ATOMIC_SEQ_CST);
        usleep(10 * PERIOD_MS * 1000);
        quiet = __atomic_load_n(&n_leave_calls, __ATOMIC_SEQ_CST) == a;
    }
    CHECK(quiet);
}

/* ---- through the chat proxy ------------------------------------------------------------ */

static void test_proxy(int port, fake_backend *fb)
{
    st_chat_proxy_config pc = st_chat_proxy_config_default();
    char up[64];
    snprintf(up, sizeof up, "127.0.0.1:%d", port);
    pc.upstream = up;
    pc.port = 0;
    pc.log_requests = 0;
    st_chat_proxy *p = NULL;
    CHECKF(st_chat_proxy_create(&pc, &p) == ST_OK, "%s", st_errmsg());
    if (!p)
        return;
    CHECK(st_chat_proxy_start(p) == ST_OK);
    int pp = st_chat_proxy_port(p);
    CHECK(pp > 0 && pp != port);

    /* the page from the proxy itself, the API from upstream (key passed on) */
    resp r;
    CHECK(http(pp, "GET", "/", NULL, NULL, &r) == 0 && r.status == 200);
    CHECK(r.body.buf && strstr(r.body.buf, "<title>Strait</title>"));
    CHECK(strstr(r.head, "content-security-policy:") != NULL);
    st_sb_free(&r.body);
    CHECK(http(pp, "GET", "/t/echo?via=proxy", KEY, NULL, &r) == 0 && r.status == 200);
    CHECKF(r.body.buf && !strcmp(r.body.buf, "{\"query\":\"via=proxy\"}"), "body %s", r.body.buf);
    st_sb_free(&r.body);
    CHECK(http(pp, "GET", "/t/echo", NULL, NULL, &r) == 0 && r.status == 401);
    st_sb_free(&r.body);
    CHECK(http(pp, "POST", "/t/post", KEY, "abc", &r) == 0 && r.status == 201);
    CHECK(r.body.buf && !strcmp(r.body.buf, "cba"));
    st_sb_free(&r.body);
    CHECK(http(pp, "GET", "/v1/models", KEY, NULL, &r) == 0 && r.status == 200);
    CHECK(r.body.buf && strstr(r.body.buf, "\"tiny-test\""));
    st_sb_free(&r.body);

    /* a status stream passes through event by event */
    __atomic_store_n(&version, 1, __ATOMIC_SEQ_CST);
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = send_req(pp, "GET", "/t/stream", KEY, NULL);
    CHECK(fd >= 0 && read_until(fd, &raw, "data: {\"v\":1}", 1));
    __atomic_store_n(&version, 2, __ATOMIC_SEQ_CST);
    CHECK(fd >= 0 && read_until(fd, &raw, "data: {\"v\":2}", 1));
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);

    /* a token stream: the first tokens arrive while the generation still
     * runs (unbuffered), and leaving aborts it upstream */
    uint64_t aborted0 = __atomic_load_n(&fb->n_aborted, __ATOMIC_SEQ_CST);
    uint64_t finished0 = __atomic_load_n(&fb->n_finished, __ATOMIC_SEQ_CST);
    fake_set(fb, &fb->pace_us, 20000);
    st_sb_init(&raw);
    fd = send_req(pp, "POST", "/v1/chat/completions", KEY,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":400,\"stream\":true}");
    CHECK(fd >= 0 && read_until(fd, &raw, "\"content\":\"", 3));
    CHECK(__atomic_load_n(&fb->n_finished, __ATOMIC_SEQ_CST) == finished0);
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);
    int aborted = 0;
    for (int i = 0; i < 10000 && !aborted; i++) {
        aborted = __atomic_load_n(&fb->n_aborted, __ATOMIC_SEQ_CST) > aborted0;
        usleep(1000);
    }
    CHECK(aborted);
    CHECK(__atomic_load_n(&fb->n_finished, __ATOMIC_SEQ_CST) == finished0);
    fake_set(fb, &fb->pace_us, 0);
    st_chat_proxy_destroy(p);

    /* bad upstream addresses are refused at create */
    const char *bad[] = {"", "host:0", "host:99999", "host:12x", "https://h:1", "[::1", ":3001", "a b:1"};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        pc.upstream = bad[i];
        st_chat_proxy *q = NULL;
        CHECKF(st_chat_proxy_create(&pc, &q) == ST_EINVAL, "upstream '%s' accepted", bad[i]);
        st_chat_proxy_destroy(q);
    }
    pc.upstream = "http://localhost";
    st_chat_proxy *q = NULL;
    CHECK(st_chat_proxy_create(&pc, &q) == ST_OK);
    CHECK(q && !strcmp(st_chat_proxy_upstream(q), "http://localhost:3001/"));
    st_chat_proxy_destroy(q);
}

/* ---- stop with a stream open ----------------------------------------------------------- */

static void test_stop_with_stream(st_http_server *s, int port)
{
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = send_req(port, "GET", "/t/stream", KEY, NULL);
    CHECK(fd >= 0 && read_until(fd, &raw, "data: ", 1));
    uint64_t t0 = st_now_ns();
    st_http_server_stop(s);
    int st;
    while ((st = read_some(fd, &raw, IO_TIMEOUT_MS)) == 0)
        ;
    CHECK(st == 1);
    CHECK(raw.len >= 5 && !memcmp(raw.buf + raw.len - 5, "0\r\n\r\n", 5)); /* the final chunk */
    st_http_server_destroy(s); /* joins the server thread */
    double ms = (double)(st_now_ns() - t0) * 1e-6;
    CHECKF(ms < 2000, "stop took %.0f ms with a stream open", ms);
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    st_tokenizer *tok = fake_tokenizer();
    CHECK(tok != NULL);
    if (!tok)
        return test_done();
    fake_backend *fb = fake_create(4096);
    fake_set(fb, &fb->ready, 1);
    const char *keys[] = {KEY};
    st_http_server_config cfg = st_http_server_config_default();
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.api_keys = keys;
    cfg.n_api_keys = 1;
    cfg.model_name = "tiny-test";
    cfg.tok = tok;
    cfg.backend = &fb->be;
    cfg.log_requests = 0;
    cfg.routes = routes;
    cfg.n_routes = (int)ST_ARRAY_LEN(routes);
    st_http_server *s = NULL;
    CHECKF(st_http_server_create(&cfg, &s) == ST_OK, "%s", st_errmsg());
    if (!s)
        return test_done();
    int port = st_http_server_port(s);
    CHECK(st_http_server_start(s) == ST_OK);

    test_plain(port);
    test_stream_events(port);
    test_stream_leave(port);
    test_proxy(port, fb);
    test_stop_with_stream(s, port);

    fake_destroy(fb);
    st_tok_free(tok);
    return test_done();
}
