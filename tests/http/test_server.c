/* End to end: the HTTP server in-process on 127.0.0.1 (ephemeral ports)
 * over the fake back end, driven by a raw-socket HTTP/1.1 client, and by
 * the curl, nghttp, h2load and openssl command-line tools (HTTP/2 with
 * prior knowledge, h2c Upgrade, TLS with ALPN h2); tools/setup.sh installs
 * them, and a missing one fails the test rather than skipping its checks.
 *
 * Every wait is bounded (socket reads time out after 10 s; polls of the
 * fake's counters give up after 10 s), so a hang is a failure, not a stuck
 * test. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../http/server.h"
#include "../test.h"
#include "fake_backend.h"

#define KEY "test-key-123"
#define IO_TIMEOUT_MS 10000

/* ---- a minimal HTTP/1.1 client ------------------------------------------------ */

typedef struct {
    int status;
    st_strbuf head; /* status line + headers */
    st_strbuf body; /* de-chunked */
} resp;

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

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read what arrives within the timeout; 1 at EOF, 0 if data came, -1 on timeout/error. */
static int read_some(int fd, st_strbuf *sb, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    char buf[16384];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0)
        return errno == ECONNRESET && sb->len ? 1 : -1; /* reset after a complete answer */
    if (r == 0)
        return 1;
    st_sb_putn(sb, buf, (size_t)r);
    return 0;
}

static void request_text(st_strbuf *q, const char *method, const char *path, const char *auth, const char *body)
{
    st_sb_printf(q, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
    if (auth)
        st_sb_printf(q, "Authorization: Bearer %s\r\n", auth);
    if (body)
        st_sb_printf(q, "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
    st_sb_puts(q, "\r\n");
    if (body)
        st_sb_puts(q, body);
}

static int parse_resp(const char *raw, size_t len, resp *r)
{
    const char *sep = memmem(raw, len, "\r\n\r\n", 4);
    if (!sep || sscanf(raw, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    st_sb_putn(&r->head, raw, (size_t)(sep - raw) + 2);
    const char *p = sep + 4, *end = raw + len;
    for (char *c = r->head.buf; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!strstr(r->head.buf, "transfer-encoding: chunked")) {
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

static void resp_free(resp *r)
{
    st_sb_free(&r->head);
    st_sb_free(&r->body);
    memset(r, 0, sizeof *r);
}

/* One request on its own connection; 0 on a complete response. */
static int http(int port, const char *method, const char *path, const char *auth, const char *body, resp *r)
{
    memset(r, 0, sizeof *r);
    st_sb_init(&r->head);
    st_sb_init(&r->body);
    int fd = dial(port);
    if (fd < 0)
        return -1;
    st_strbuf q, raw;
    st_sb_init(&q);
    st_sb_init(&raw);
    request_text(&q, method, path, auth, body);
    /* a server may answer (413) and close before the whole body is sent:
     * read the answer all the same */
    (void)send_all(fd, q.buf, q.len);
    int st;
    while ((st = read_some(fd, &raw, IO_TIMEOUT_MS)) == 0)
        ;
    close(fd);
    int rc = st == 1 ? parse_resp(raw.buf ? raw.buf : "", raw.len, r) : -1;
    st_sb_free(&q);
    st_sb_free(&raw);
    return rc;
}

/* ---- helpers ------------------------------------------------------------------- */

static int wait_counter(uint64_t *c, uint64_t want)
{
    for (int i = 0; i < 10000; i++) {
        if (__atomic_load_n(c, __ATOMIC_SEQ_CST) >= want)
            return 1;
        usleep(1000);
    }
    return 0;
}

static st_json *parse_json(const st_strbuf *b)
{
    st_json *j = NULL;
    if (!b->buf || st_json_parse(b->buf, b->len, &j) != ST_OK)
        return NULL;
    return j;
}

static const char *err_param(const resp *r)
{
    static char param[64];
    st_json *j = parse_json(&r->body);
    const st_json *p = st_json_get(st_json_get(j, "error"), "param");
    snprintf(param, sizeof param, "%s", !j ? "<no json>" : p && p->type == ST_JSON_STRING ? p->u.str.s : "");
    st_json_free(j);
    return param;
}

/* A streamed response checked event by event: chunks parse, the first has
 * the role, the text is the concatenated deltas, one chunk has the finish
 * reason, a usage chunk comes last when asked for, then [DONE]. Returns the
 * number of problems found. */
typedef struct {
    st_strbuf text;
    char finish[16];
    int prompt_tokens, completion_tokens, n_chunks, n_logprobs;
} stream_result;

static int check_sse(const char *body, int chat, int want_usage, stream_result *sr)
{
    int bad = 0, done = 0, saw_role = 0, saw_usage = 0;
    memset(sr, 0, sizeof *sr);
    st_sb_init(&sr->text);
    const char *p = body;
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        if (!end || strncmp(p, "data: ", 6) != 0) {
            bad++;
            break;
        }
        const char *d = p + 6;
        size_t n = (size_t)(end - d);
        p = end + 2;
        if (done) {
            bad++; /* nothing after [DONE] */
            continue;
        }
        if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
            done = 1;
            continue;
        }
        st_json *j = NULL;
        if (st_json_parse(d, n, &j) != ST_OK) {
            bad++;
            continue;
        }
        sr->n_chunks++;
        const char *obj = st_json_get_str(j, "object", "");
        bad += strcmp(obj, chat ? "chat.completion.chunk" : "text_completion") != 0;
        const st_json *ch = st_json_get(j, "choices");
        const st_json *us = st_json_get(j, "usage");
        if (us && us->type == ST_JSON_OBJECT) {
            saw_usage = 1;
            bad += !(ch && ch->u.arr.n == 0);
            sr->prompt_tokens = (int)st_json_get_num(us, "prompt_tokens", -1);
            sr->completion_tokens = (int)st_json_get_num(us, "completion_tokens", -1);
            bad += st_json_get_num(us, "total_tokens", -1) != sr->prompt_tokens + sr->completion_tokens;
        } else if (ch && ch->u.arr.n == 1) {
            bad += saw_usage; /* usage is the last chunk */
            const st_json *c0 = &ch->u.arr.items[0];
            const st_json *delta = chat ? st_json_get(c0, "delta") : c0;
            const char *role = st_json_get_str(delta, "role", NULL);
            if (role)
                saw_role += strcmp(role, "assistant") == 0;
            else if (chat && !saw_role)
                bad++; /* the role comes first */
            const st_json *t = st_json_get(delta, chat ? "content" : "text");
            if (t && t->type == ST_JSON_STRING)
                st_sb_putn(&sr->text, t->u.str.s, t->u.str.len);
            const st_json *fr = st_json_get(c0, "finish_reason");
            if (fr && fr->type == ST_JSON_STRING) {
                bad += sr->finish[0] != 0;
                snprintf(sr->finish, sizeof sr->finish, "%s", fr->u.str.s);
            }
            const st_json *lp = st_json_get(c0, "logprobs");
            if (lp && lp->type == ST_JSON_OBJECT)
                sr->n_logprobs++;
        } else {
            bad++;
        }
        st_json_free(j);
    }
    bad += !done;
    bad += chat && saw_role != 1;
    bad += want_usage != saw_usage;
    bad += !sr->finish[0];
    return bad;
}

static void chat_body(st_strbuf *b, const char *content, int max_tokens, int stream, const char *extra)
{
    st_sb_printf(b, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,"
                    "\"stream\":%s%s%s}",
                 content, max_tokens, stream ? "true" : "false", extra ? "," : "", extra ? extra : "");
}

/* ---- the tests ------------------------------------------------------------------- */

static fake_backend *fb;
static int port;

static void test_health_and_ready(void)
{
    resp r;
    CHECK(http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 503);
    resp_free(&r);
    st_strbuf b;
    st_sb_init(&b);
    chat_body(&b, "hi", 4, 0, NULL);
    CHECK(http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 503);
    resp_free(&r);
    st_sb_free(&b);
    fake_set(fb, &fb->ready, 1);
    CHECK(http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
}

static void test_chat_plain(void)
{
    st_strbuf b;
    st_sb_init(&b);
    chat_body(&b, "hello there", 5, 0, NULL);
    resp r;
    CHECK(http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0);
    CHECKF(r.status == 200, "status %d: %s", r.status, r.body.buf);
    CHECK(strstr(r.head.buf, "content-type: application/json") != NULL);
    st_json *j = parse_json(&r.body);
    CHECK(j != NULL);
    if (j) {
        CHECK(strcmp(st_json_get_str(j, "object", ""), "chat.completion") == 0);
        CHECK(strncmp(st_json_get_str(j, "id", ""), "chatcmpl-", 9) == 0);
        CHECK(strcmp(st_json_get_str(j, "model", ""), "tiny-test") == 0);
        CHECK(st_json_get_num(j, "created", 0) > 1.6e9);
        const st_json *c0 = &st_json_get(j, "choices")->u.arr.items[0];
        const st_json *us = st_json_get(j, "usage");
        int np = (int)st_json_get_num(us, "prompt_tokens", -1);
        CHECK(np > 2); /* the template wraps the two words */
        CHECK(st_json_get_num(us, "completion_tokens", -1) == 5);
        CHECK(st_json_get_num(us, "total_tokens", -1) == np + 5);
        st_strbuf want;
        st_sb_init(&want);
        fake_expected(np, 5, &want);
        const char *got = st_json_get_str(st_json_get(c0, "message"), "content", "");
        CHECKF(strcmp(got, want.buf) == 0, "content '%s', want '%s'", got, want.buf);
        CHECK(strcmp(st_json_get_str(st_json_get(c0, "message"), "role", ""), "assistant") == 0);
        CHECK(strcmp(st_json_get_str(c0, "finish_reason", ""), "length") == 0);
        CHECK(st_json_get(c0, "logprobs") && st_json_get(c0, "logprobs")->type == ST_JSON_NULL);
        st_sb_free(&want);
    }
    st_json_free(j);
    resp_free(&r);

    /* a stop string ends the text before it, with finish_reason "stop" */
    b.len = 0;
    chat_body(&b, "hello there", 50, 0, "\"stop\":[\"nothing\",\"delta\",\"echo\"]");
    CHECK(http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 200);
    j = parse_json(&r.body);
    if (j) {
        const st_json *c0 = &st_json_get(j, "choices")->u.arr.items[0];
        const char *got = st_json_get_str(st_json_get(c0, "message"), "content", "");
        CHECKF(!strstr(got, "delta") && !strstr(got, "echo") && strlen(got) > 0, "content '%s'", got);
        CHECK(strcmp(st_json_get_str(c0, "finish_reason", ""), "stop") == 0);
    }
    CHECK(j != NULL);
    st_json_free(j);
    resp_free(&r);
    st_sb_free(&b);
}

static void test_chat_stream(void)
{
    st_strbuf b;
    st_sb_init(&b);
    chat_body(&b, "stream me", 7, 1, "\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":2");
    resp r;
    CHECK(http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0);
    CHECKF(r.status == 200, "status %d", r.status);
    CHECK(strstr(r.head.buf, "content-type: text/event-stream") != NULL);
    stream_result sr;
    int bad = check_sse(r.body.buf ? r.body.buf : "", 1, 1, &sr);
    CHECKF(bad == 0, "%d problems in:\n%s", bad, r.body.buf);
    st_strbuf want;
    st_sb_init(&want);
    fake_expected(sr.prompt_tokens, 7, &want);
    CHECKF(sr.text.buf && strcmp(sr.text.buf, want.buf) == 0, "text '%s', want '%s'", sr.text.buf, want.buf);
    CHECK(sr.completion_tokens == 7 && strcmp(sr.finish, "length") == 0);
    CHECK(sr.n_logprobs == 7);
    CHECK(strstr(r.body.buf, "\"top_logprobs\":[{\"token\":\"alt0\",\"logprob\":-1,\"bytes\":[97,108,116,48]}") != NULL);
    st_sb_free(&want);
    st_sb_free(&sr.text);
    resp_free(&r);

    /* without include_usage: no usage chunk */
    b.len = 0;
    chat_body(&b, "again", 3, 1, NULL);
    CHECK(http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 200);
    bad = check_sse(r.body.buf ? r.body.buf : "", 1, 0, &sr);
    CHECKF(bad == 0, "%d problems in:\n%s", bad, r.body.buf);
    CHECK(!strstr(r.body.buf, "\"usage\""));
    st_sb_free(&sr.text);
    resp_free(&r);
    st_sb_free(&b);
}

static void test_completions(void)
{
    resp r;
    const char *body = "{\"prompt\":[10,11,12,13],\"max_tokens\":3,\"logprobs\":1}";
    CHECK(http(port, "POST", "/v1/completions", KEY, body, &r) == 0 && r.status == 200);
    st_json *j = parse_json(&r.body);
    if (j) {
        CHECK(strcmp(st_json_get_str(j, "object", ""), "text_completion") == 0);
        const st_json *c0 = &st_json_get(j, "choices")->u.arr.items[0];
        st_strbuf want;
        st_sb_init(&want);
        fake_expected(4, 3, &want); /* token-id prompt: exactly 4 tokens */
        CHECK(strcmp(st_json_get_str(c0, "text", ""), want.buf) == 0);
        const st_json *lp = st_json_get(c0, "logprobs");
        CHECK(st_json_get(lp, "tokens") && st_json_get(lp, "tokens")->u.arr.n == 3);
        CHECK(st_json_get_num(st_json_get(j, "usage"), "prompt_tokens", 0) == 4);
        st_sb_free(&want);
    }
    CHECK(j != NULL);
    st_json_free(j);
    resp_free(&r);

    body = "{\"prompt\":\"once upon a time\",\"max_tokens\":4,\"stream\":true}";
    CHECK(http(port, "POST", "/v1/completions", KEY, body, &r) == 0 && r.status == 200);
    stream_result sr;
    int bad = check_sse(r.body.buf ? r.body.buf : "", 0, 0, &sr);
    CHECKF(bad == 0, "%d problems in:\n%s", bad, r.body.buf);
    CHECK(sr.text.len > 0 && strcmp(sr.finish, "length") == 0);
    st_sb_free(&sr.text);
    resp_free(&r);

    CHECK(http(port, "GET", "/v1/models", KEY, NULL, &r) == 0 && r.status == 200);
    j = parse_json(&r.body);
    const st_json *d = st_json_get(j, "data");
    CHECK(d && d->u.arr.n == 1 && strcmp(st_json_get_str(&d->u.arr.items[0], "id", ""), "tiny-test") == 0);
    st_json_free(j);
    resp_free(&r);
}

typedef struct {
    const char *method, *path, *auth, *body;
    int status;
    const char *param;
} err_case;

static void test_errors(void)
{
    static char big[80 * 1024];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "{\"prompt\":\"", 11);
    big[sizeof big - 3] = '"';
    big[sizeof big - 2] = '}';
    static char huge[200 * 1024];
    memset(huge, 'b', sizeof huge - 1);
    const err_case cases[] = {
        {"GET", "/nope", KEY, NULL, 404, ""},
        {"GET", "/v1/chat/completions", KEY, NULL, 405, ""},
        {"DELETE", "/health", KEY, NULL, 405, ""},
        {"POST", "/v1/models", KEY, "{}", 405, ""},
        {"GET", "/v1/models", NULL, NULL, 401, ""},
        {"GET", "/v1/models", "wrong-key", NULL, 401, ""},
        {"GET", "/metrics", "test-key-12", NULL, 401, ""},
        {"POST", "/v1/chat/completions", NULL, "{}", 401, ""},
        {"POST", "/v1/chat/completions", KEY, "{not json", 400, ""},
        {"POST", "/v1/chat/completions", KEY, "", 400, ""},
        {"POST", "/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", 400, "n"},
        {"POST", "/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, ""},
        {"POST", "/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":9999999}",
         400, "max_tokens"},
        {"POST", "/v1/completions", KEY, "{\"prompt\":[1,999999]}", 400, "prompt"},
        {"POST", "/v1/completions", KEY, big, 413, ""},  /* over the limit: OpenAI's error object */
        {"POST", "/v1/completions", KEY, huge, 413, NULL}, /* far over it: h2o refuses it early */
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        const err_case *c = &cases[i];
        resp r;
        int rc = http(port, c->method, c->path, c->auth, c->body, &r);
        CHECKF(rc == 0 && r.status == c->status, "case %zu %s %s: rc %d status %d, want %d", i, c->method, c->path,
               rc, r.status, c->status);
        if (c->param)
            CHECKF(strcmp(err_param(&r), c->param) == 0, "case %zu: param '%s', want '%s' (%s)", i, err_param(&r),
                   c->param, r.body.buf);
        if (c->status == 401)
            CHECK(strstr(r.head.buf, "www-authenticate: bearer") != NULL);
        resp_free(&r);
        /* the server keeps serving after every bad request */
        CHECK(http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200);
        resp_free(&r);
    }
    /* a prompt as long as the context: 400 naming prompt */
    st_strbuf b;
    st_sb_init(&b);
    st_sb_puts(&b, "{\"prompt\":\"");
    for (int i = 0; i < 5000; i++)
        st_sb_puts(&b, "z");
    st_sb_puts(&b, "\"}");
    resp r;
    CHECK(http(port, "POST", "/v1/completions", KEY, b.buf, &r) == 0 && r.status == 400);
    CHECK(strcmp(err_param(&r), "prompt") == 0 && strstr(r.body.buf, "context_length_exceeded"));
    resp_free(&r);
    st_sb_free(&b);
}

/* 16 streams at once, each must get its own complete text. */
static int n_concurrent_ok;

static void *stream_worker(void *arg)
{
    int k = (int)(intptr_t)arg;
    char content[64];
    snprintf(content, sizeof content, "client %*d", k + 1, k); /* a different prompt length each */
    st_strbuf b;
    st_sb_init(&b);
    chat_body(&b, content, 20 + k, 1, "\"stream_options\":{\"include_usage\":true}");
    resp r;
    stream_result sr;
    memset(&sr, 0, sizeof sr);
    if (http(port, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 200 &&
        check_sse(r.body.buf ? r.body.buf : "", 1, 1, &sr) == 0) {
        st_strbuf want;
        st_sb_init(&want);
        fake_expected(sr.prompt_tokens, 20 + k, &want);
        if (sr.text.buf && strcmp(sr.text.buf, want.buf) == 0 && sr.completion_tokens == 20 + k)
            __atomic_add_fetch(&n_concurrent_ok, 1, __ATOMIC_SEQ_CST);
        st_sb_free(&want);
    }
    st_sb_free(&sr.text);
    resp_free(&r);
    st_sb_free(&b);
    return NULL;
}

static void test_concurrent(void)
{
    pthread_t th[16];
    for (int k = 0; k < 16; k++)
        pthread_create(&th[k], NULL, stream_worker, (void *)(intptr_t)k);
    for (int k = 0; k < 16; k++)
        pthread_join(th[k], NULL);
    CHECKF(n_concurrent_ok == 16, "%d of 16 streams complete and correct", n_concurrent_ok);
}

/* Open a streaming request that would run for minutes and return the socket
 * once its first word has arrived (-1 on failure). */
static int open_long_stream(int p, st_strbuf *raw)
{
    int fd = dial(p);
    st_strbuf b, q;
    st_sb_init(&b);
    st_sb_init(&q);
    chat_body(&b, "long", 4000, 1, NULL);
    request_text(&q, "POST", "/v1/chat/completions", KEY, b.buf);
    int ok = fd >= 0 && send_all(fd, q.buf, q.len) == 0;
    while (ok && !(raw->buf && strstr(raw->buf, "\"delta\":{\"content\":\"")))
        ok = read_some(fd, raw, IO_TIMEOUT_MS) == 0;
    st_sb_free(&b);
    st_sb_free(&q);
    if (!ok && fd >= 0)
        close(fd);
    return ok ? fd : -1;
}

static void test_disconnect_aborts(void)
{
    fake_set(fb, &fb->pace_us, 5000);
    uint64_t aborted0 = __atomic_load_n(&fb->n_aborted, __ATOMIC_SEQ_CST);
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = open_long_stream(port, &raw);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECKF(wait_counter(&fb->n_aborted, aborted0 + 1), "the back end saw no abort after the client left");
    fake_set(fb, &fb->pace_us, 0);
    st_sb_free(&raw);
    resp r;
    CHECK(http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
}

static void test_metrics(void)
{
    resp r;
    CHECK(http(port, "GET", "/metrics", KEY, NULL, &r) == 0 && r.status == 200);
    const char *m = r.body.buf ? r.body.buf : "";
    unsigned long long n200 = 0, n404 = 0, ttft = 0, gen = 0;
    const char *p;
#define VALUE(name, var)                                   \
    if ((p = strstr(m, "\n" name " ")))                     \
        var = strtoull(p + strlen(name) + 2, NULL, 10);
    VALUE("strait_http_requests_total{status=\"200\"}", n200)
    VALUE("strait_http_requests_total{status=\"404\"}", n404)
    VALUE("strait_time_to_first_token_seconds_count", ttft)
    VALUE("strait_generation_tokens_total", gen)
    CHECKF(n200 >= 20 && n404 == 1 && ttft >= 20 && gen >= 100, "200:%llu 404:%llu ttft:%llu gen:%llu", n200, n404,
           ttft, gen);
    CHECK(strstr(m, "strait_inter_token_latency_seconds_bucket{le=\"+Inf\"}") != NULL);
    /* every series the API promises: its TYPE line and a sample */
    static const struct {
        const char *family, *sample;
    } series[] = {
        {"strait_http_requests_total", "strait_http_requests_total{status=\"401\"} "},
        {"strait_request_success_total", "strait_request_success_total{finished_reason=\"length\"} "},
        {"strait_prompt_tokens_total", "strait_prompt_tokens_total "},
        {"strait_generation_tokens_total", "strait_generation_tokens_total "},
        {"strait_time_to_first_token_seconds", "strait_time_to_first_token_seconds_sum "},
        {"strait_inter_token_latency_seconds", "strait_inter_token_latency_seconds_count "},
        {"strait_e2e_request_latency_seconds", "strait_e2e_request_latency_seconds_count "},
        {"strait_num_requests_running", "strait_num_requests_running "},
        {"strait_num_requests_waiting", "strait_num_requests_waiting "},
        {"strait_kv_blocks_total", "strait_kv_blocks_total "},
        {"strait_kv_blocks_used", "strait_kv_blocks_used "},
        {"strait_kv_blocks_free", "strait_kv_blocks_free "},
        {"strait_batch_steps_total", "strait_batch_steps_total "},
        {"strait_batch_tokens_total", "strait_batch_tokens_total "},
        {"strait_batch_sequences_total", "strait_batch_sequences_total "},
        {"strait_batch_last_tokens", "strait_batch_last_tokens "},
        {"strait_batch_last_sequences", "strait_batch_last_sequences "},
        {"strait_num_preemptions_total", "strait_num_preemptions_total "},
        {"strait_prefix_cache_hit_tokens_total", "strait_prefix_cache_hit_tokens_total "},
        {"strait_model_ready", "strait_model_ready 1\n"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(series); i++) {
        char line[160], type[160];
        snprintf(line, sizeof line, "\n%s", series[i].sample);
        snprintf(type, sizeof type, "\n# TYPE %s ", series[i].family);
        CHECKF(strstr(m, line) && strstr(m, type), "/metrics lacks '%s' or the TYPE of %s", series[i].sample,
               series[i].family);
    }
    unsigned long long prompt = 0, kv_total = 0;
    VALUE("strait_prompt_tokens_total", prompt)
    VALUE("strait_kv_blocks_total", kv_total)
    CHECKF(prompt >= 20 && kv_total == 100, "prompt tokens %llu, kv blocks %llu (the fake back end has 100)", prompt,
           kv_total);
#undef VALUE
    resp_free(&r);
}

/* ---- external clients ------------------------------------------------------------ */

static int run_cmd(const char *cmd, st_strbuf *out)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        st_sb_putn(out, buf, n);
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The external clients are part of the test (tools/setup.sh installs
 * them): a missing one is a failure, not a quiet skip. */
static int need(const char *tool, const char *package)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    int ok = system(cmd) == 0;
    CHECKF(ok, "%s is not installed (apt-get install %s, or tools/setup.sh)", tool, package);
    return ok;
}

static void test_curl_http2(void)
{
    if (!need("curl", "curl"))
        return;
    char cmd[1024];
    st_strbuf out;
    st_sb_init(&out);
    /* prior knowledge, streaming */
    snprintf(cmd, sizeof cmd,
             "curl -sS -m 20 --http2-prior-knowledge -H 'Authorization: Bearer " KEY "' "
             "-H 'Content-Type: application/json' -d '{\"messages\":[{\"role\":\"user\",\"content\":\"h2\"}],"
             "\"max_tokens\":6,\"stream\":true,\"stream_options\":{\"include_usage\":true}}' "
             "-w '\\nHTTPVERSION=%%{http_version} STATUS=%%{http_code}' http://127.0.0.1:%d/v1/chat/completions",
             port);
    CHECK(run_cmd(cmd, &out) == 0);
    char *tail = out.buf ? strstr(out.buf, "\nHTTPVERSION=") : NULL;
    CHECKF(tail && strcmp(tail, "\nHTTPVERSION=2 STATUS=200") == 0, "%s", out.buf);
    if (tail) {
        tail[0] = 0; /* the SSE body ends with its blank line */
        stream_result sr;
        int bad = check_sse(out.buf, 1, 1, &sr);
        CHECKF(bad == 0 && sr.completion_tokens == 6, "%d problems in %s", bad, out.buf);
        st_sb_free(&sr.text);
    }
    /* h2c Upgrade from HTTP/1.1 */
    out.len = 0;
    snprintf(cmd, sizeof cmd,
             "curl -sS -m 20 --http2 -o /dev/null -w '%%{http_version} %%{http_code}' http://127.0.0.1:%d/health", port);
    CHECK(run_cmd(cmd, &out) == 0);
    CHECKF(out.buf && strcmp(out.buf, "2 200") == 0, "upgrade: %s", out.buf);
    /* errors on one multiplexed HTTP/2 connection, which keeps serving
     * (nghttp: curl 7.88 does not reuse a prior-knowledge connection) */
    if (need("nghttp", "nghttp2-client")) {
        out.len = 0;
        snprintf(cmd, sizeof cmd,
                 "nghttp -v -t 20 http://127.0.0.1:%d/nope http://127.0.0.1:%d/v1/models "
                 "http://127.0.0.1:%d/health 2>&1",
                 port, port, port);
        CHECK(run_cmd(cmd, &out) == 0);
        CHECKF(out.buf && strstr(out.buf, ":status: 404") && strstr(out.buf, ":status: 401") &&
                   strstr(out.buf, ":status: 200") && !strstr(out.buf, "RST_STREAM"),
               "%s", out.buf);
    }
    st_sb_free(&out);
}

static void test_h2load(void)
{
    if (!need("h2load", "nghttp2-client"))
        return;
    char cmd[1024], path[] = "/tmp/st_http_h2load_XXXXXX";
    int fd = mkstemp(path);
    const char *body = "{\"prompt\":[1,2,3],\"max_tokens\":2}";
    CHECK(fd >= 0 && write(fd, body, strlen(body)) == (ssize_t)strlen(body));
    if (fd >= 0)
        close(fd);
    st_strbuf out;
    st_sb_init(&out);
    snprintf(cmd, sizeof cmd,
             "h2load -n 3000 -c 8 -m 16 -H 'authorization: Bearer " KEY "' http://127.0.0.1:%d/health 2>&1", port);
    CHECK(run_cmd(cmd, &out) == 0);
    CHECKF(out.buf && strstr(out.buf, "3000 succeeded, 0 failed, 0 errored"), "%s", out.buf);
    out.len = 0;
    snprintf(cmd, sizeof cmd,
             "h2load -n 2000 -c 8 -m 8 -d %s -H 'content-type: application/json' -H 'authorization: Bearer " KEY
             "' http://127.0.0.1:%d/v1/completions 2>&1",
             path, port);
    CHECK(run_cmd(cmd, &out) == 0);
    CHECKF(out.buf && strstr(out.buf, "2000 succeeded, 0 failed, 0 errored"), "%s", out.buf);
    unlink(path);
    st_sb_free(&out);
}

static void test_tls(const st_http_server_config *base)
{
    if (!need("curl", "curl") || !need("openssl", "openssl"))
        return;
    char dir[] = "/tmp/st_http_tls_XXXXXX", cert[96], key[96], cmd[1024];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 -subj /CN=localhost "
             ">/dev/null 2>&1",
             key, cert);
    CHECK(system(cmd) == 0);
    st_http_server_config c = *base;
    c.port = 0;
    c.tls_cert = cert;
    c.tls_key = key;
    st_http_server *s = NULL;
    CHECKF(st_http_server_create(&c, &s) == ST_OK, "%s", st_errmsg());
    if (!s)
        return;
    CHECK(st_http_server_start(s) == ST_OK);
    st_strbuf out;
    st_sb_init(&out);
    snprintf(cmd, sizeof cmd,
             "curl -sS -k -m 20 --http2 -H 'Authorization: Bearer " KEY "' -H 'Content-Type: application/json' "
             "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"tls\"}],\"max_tokens\":3}' "
             "-w '\\n%%{http_version} %%{http_code}' https://127.0.0.1:%d/v1/chat/completions",
             st_http_server_port(s));
    CHECK(run_cmd(cmd, &out) == 0);
    CHECKF(out.buf && strstr(out.buf, "\"finish_reason\":\"length\"") && strstr(out.buf, "\n2 200"), "%s", out.buf);
    out.len = 0;
    snprintf(cmd, sizeof cmd, "curl -sS -k -m 20 --http1.1 -o /dev/null -w '%%{http_version} %%{http_code}' https://127.0.0.1:%d/health",
             st_http_server_port(s));
    CHECK(run_cmd(cmd, &out) == 0);
    CHECKF(out.buf && strcmp(out.buf, "1.1 200") == 0, "%s", out.buf);
    st_sb_free(&out);
    st_http_server_destroy(s);
    /* bad TLS files are an error, not a crash */
    c.tls_key = cert;
    s = NULL;
    CHECK(st_http_server_create(&c, &s) == ST_EIO && s == NULL);
    c.tls_key = NULL;
    CHECK(st_http_server_create(&c, &s) == ST_EINVAL);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* With room for 2 generations, a third is refused with 503 until they end. */
static void test_queue_full(const st_http_server_config *base)
{
    st_http_server_config c = *base;
    c.max_queued_requests = 2;
    st_http_server *s = NULL;
    CHECK(st_http_server_create(&c, &s) == ST_OK);
    if (!s)
        return;
    CHECK(st_http_server_start(s) == ST_OK);
    int p = st_http_server_port(s);
    fake_set(fb, &fb->paused, 1);
    uint64_t sub0 = __atomic_load_n(&fb->n_submitted, __ATOMIC_SEQ_CST);
    st_strbuf b, q;
    st_sb_init(&b);
    st_sb_init(&q);
    chat_body(&b, "queued", 2, 0, NULL);
    request_text(&q, "POST", "/v1/chat/completions", KEY, b.buf);
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = dial(p);
        CHECK(fds[i] >= 0 && send_all(fds[i], q.buf, q.len) == 0);
    }
    CHECK(wait_counter(&fb->n_submitted, sub0 + 2));
    resp r;
    CHECK(http(p, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 503);
    CHECK(strstr(r.head.buf, "retry-after: 1") != NULL);
    resp_free(&r);
    fake_set(fb, &fb->paused, 0);
    for (int i = 0; i < 2; i++) {
        st_strbuf raw;
        st_sb_init(&raw);
        int st;
        while ((st = read_some(fds[i], &raw, IO_TIMEOUT_MS)) == 0)
            ;
        CHECK(st == 1 && raw.buf && strncmp(raw.buf, "HTTP/1.1 200", 12) == 0);
        close(fds[i]);
        st_sb_free(&raw);
    }
    CHECK(http(p, "POST", "/v1/chat/completions", KEY, b.buf, &r) == 0 && r.status == 200);
    resp_free(&r);
    st_sb_free(&b);
    st_sb_free(&q);
    st_http_server_destroy(s);
}

/* Stop with a stream in flight: it ends with finish_reason "abort" and
 * [DONE], and the server thread returns. */
static void test_shutdown(st_http_server *s)
{
    fake_set(fb, &fb->pace_us, 5000);
    st_strbuf raw;
    st_sb_init(&raw);
    int fd = open_long_stream(port, &raw);
    CHECK(fd >= 0);
    st_http_server_stop(s);
    int st = 0;
    while (fd >= 0 && (st = read_some(fd, &raw, IO_TIMEOUT_MS)) == 0)
        ;
    CHECK(st == 1);
    resp r = {0};
    st_sb_init(&r.head);
    st_sb_init(&r.body);
    CHECK(raw.buf && parse_resp(raw.buf, raw.len, &r) == 0);
    stream_result sr;
    int bad = check_sse(r.body.buf ? r.body.buf : "", 1, 0, &sr);
    CHECKF(bad == 0 && strcmp(sr.finish, "abort") == 0, "%d problems, finish '%s'", bad, sr.finish);
    st_sb_free(&sr.text);
    resp_free(&r);
    if (fd >= 0)
        close(fd);
    st_sb_free(&raw);
    fake_set(fb, &fb->pace_us, 0);
    st_http_server_destroy(s);
    /* nothing listens any more */
    int c = dial(port);
    CHECK(c < 0);
    if (c >= 0)
        close(c);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    st_tokenizer *tok = fake_tokenizer();
    CHECK(tok != NULL);
    if (!tok)
        return test_done();
    fb = fake_create(4096);
    const char *keys[] = {"other-key", KEY};
    st_http_server_config cfg = st_http_server_config_default();
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.api_keys = keys;
    cfg.n_api_keys = 2;
    cfg.max_body_bytes = 64 * 1024;
    cfg.model_name = "tiny-test";
    cfg.tok = tok;
    cfg.backend = &fb->be;
    cfg.log_requests = 0;
    st_http_server *s = NULL;
    CHECKF(st_http_server_create(&cfg, &s) == ST_OK, "%s", st_errmsg());
    if (!s)
        return test_done();
    port = st_http_server_port(s);
    CHECK(port > 0);
    CHECK(st_http_server_start(s) == ST_OK);

    test_health_and_ready();
    test_chat_plain();
    test_chat_stream();
    test_completions();
    test_errors();
    test_concurrent();
    test_disconnect_aborts();
    test_metrics();
    test_curl_http2();
    test_h2load();
    test_tls(&cfg);
    test_queue_full(&cfg);
    test_shutdown(s);

    fake_destroy(fb);
    st_tok_free(tok);
    return test_done();
}
