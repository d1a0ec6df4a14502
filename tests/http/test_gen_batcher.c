/* The server over the real batcher behind a one-pipeline router
 * (http/gen_batcher.c) with the default model: a chat completion with logprobs, a streamed one, the same greedy
 * text both ways, a client that leaves mid-stream aborting its sequence,
 * and the batcher's gauges in /metrics. Skipped without the model. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/json.h"
#include "../../common/st_common.h"
#include "../../engine/model.h"
#include "../../http/gen_batcher.h"
#include "../../http/server.h"
#include "../../kernels/backend.h"
#include "../test.h"

static int port;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Send a request; read until EOF (stop_at NULL) or until stop_at shows up.
 * Returns the fd still open when stopped early, else -1 after closing. */
static int exchange(const char *method, const char *path, const char *body, const char *stop_at, st_strbuf *raw)
{
    int fd = dial();
    if (fd < 0)
        return -1;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, body ? strlen(body) : 0);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
        (body && send(fd, body, strlen(body), MSG_NOSIGNAL) != (ssize_t)strlen(body))) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (stop_at && raw->buf && strstr(raw->buf, stop_at))
            return fd;
        struct pollfd p = {fd, POLLIN, 0};
        char buf[8192];
        ssize_t r = poll(&p, 1, 60000) == 1 ? recv(fd, buf, sizeof buf, 0) : -1;
        if (r <= 0)
            break;
        st_sb_putn(raw, buf, (size_t)r);
    }
    close(fd);
    return -1;
}

/* The JSON body of a Content-Length response. */
static st_json *body_json(const st_strbuf *raw)
{
    const char *b = raw->buf ? strstr(raw->buf, "\r\n\r\n") : NULL;
    st_json *j = NULL;
    if (b && st_json_parse(b + 4, raw->len - (size_t)(b + 4 - raw->buf), &j) != ST_OK)
        j = NULL;
    return j;
}

int main(void)
{
    const char *path = test_default_model();
    if (!path)
        TEST_SKIP("the default model is not in the cache (strait models pull)");
    st_log_set_level(ST_LOG_WARN);
    st_model *m = NULL;
    if (st_model_load(path, 0, -1, &m) != ST_OK || !m->tok)
        TEST_SKIP("cannot load %s with a tokenizer: %s", path, st_errmsg());
    st_backend *cpu = st_backend_cpu_create(2);
    st_batcher_config bc = st_batcher_config_default();
    bc.n_blocks = 128;
    bc.max_ctx = 1024;
    st_batcher *b = NULL;
    CHECKF(st_batcher_create(m, cpu, &bc, &b) == ST_OK, "%s", st_errmsg());
    if (!b)
        return test_done();
    CHECK(st_batcher_start(b) == ST_OK);
    st_router *rt = NULL;
    int pipe_id = 0;
    CHECK(st_router_create(NULL, &rt) == ST_OK);
    CHECK(st_router_add(rt, b, NULL, NULL, &pipe_id) == ST_OK);
    st_gen_backend *gb = NULL;
    CHECK(st_gen_batcher_create(rt, m->tok, &gb) == ST_OK);
    st_http_server_config cfg = st_http_server_config_default();
    cfg.tok = m->tok;
    cfg.backend = gb;
    cfg.model_name = "smol";
    cfg.log_requests = 0;
    st_http_server *s = NULL;
    CHECKF(st_http_server_create(&cfg, &s) == ST_OK, "%s", st_errmsg());
    if (!s)
        return test_done();
    port = st_http_server_port(s);
    CHECK(st_http_server_start(s) == ST_OK);

    st_strbuf raw;
    st_sb_init(&raw);
    exchange("GET", "/health", NULL, NULL, &raw);
    CHECK(raw.buf && strncmp(raw.buf, "HTTP/1.1 200", 12) == 0);

    /* greedy, with logprobs: one entry per generated token */
    raw.len = 0;
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}],"
                      "\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}";
    exchange("POST", "/v1/chat/completions", req, NULL, &raw);
    st_json *j = body_json(&raw);
    CHECKF(j != NULL, "%s", raw.buf);
    char text1[1024] = "";
    if (j) {
        const st_json *c0 = &st_json_get(j, "choices")->u.arr.items[0];
        const char *fin = st_json_get_str(c0, "finish_reason", "");
        CHECK(!strcmp(fin, "length") || !strcmp(fin, "stop"));
        int ct = (int)st_json_get_num(st_json_get(j, "usage"), "completion_tokens", -1);
        CHECK(ct >= 1 && ct <= 8);
        const st_json *lc = st_json_get(st_json_get(c0, "logprobs"), "content");
        CHECKF(lc && (int)lc->u.arr.n == ct, "%d entries for %d tokens", lc ? (int)lc->u.arr.n : -1, ct);
        if (lc && lc->u.arr.n > 0) {
            const st_json *e0 = &lc->u.arr.items[0];
            const st_json *tl = st_json_get(e0, "top_logprobs");
            CHECK(st_json_get_num(e0, "logprob", 1) <= 0 && tl && tl->u.arr.n == 2);
        }
        snprintf(text1, sizeof text1, "%s", st_json_get_str(st_json_get(c0, "message"), "content", ""));
        CHECK(strlen(text1) > 0);
    }
    st_json_free(j);

    /* the same request streamed gives the same greedy text */
    raw.len = 0;
    req = "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}],"
          "\"max_tokens\":8,\"temperature\":0,\"stream\":true}";
    exchange("POST", "/v1/chat/completions", req, NULL, &raw);
    st_strbuf text2;
    st_sb_init(&text2);
    for (const char *p = raw.buf; p && (p = strstr(p, "data: {")); p++) {
        const char *e = strstr(p, "\n\n");
        st_json *c = NULL;
        if (e && st_json_parse(p + 6, (size_t)(e - p - 6), &c) == ST_OK) {
            const st_json *ch = st_json_get(c, "choices");
            if (ch && ch->u.arr.n == 1) {
                const char *t = st_json_get_str(st_json_get(&ch->u.arr.items[0], "delta"), "content", NULL);
                if (t)
                    st_sb_puts(&text2, t);
            }
        }
        st_json_free(c);
    }
    CHECK(raw.buf && strstr(raw.buf, "data: [DONE]\n\n"));
    CHECKF(text2.buf && strcmp(text2.buf, text1) == 0, "streamed '%s' vs '%s'", text2.buf, text1);
    st_sb_free(&text2);

    /* a client leaving mid-stream aborts its sequence in the batcher */
    st_batcher_stats st0, st1;
    st_batcher_get_stats(b, &st0);
    raw.len = 0;
    req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell a long story.\"}],\"max_tokens\":900,"
          "\"ignore_eos\":true,\"stream\":true}";
    int fd = exchange("POST", "/v1/chat/completions", req, "\"delta\":{\"content\":\"", &raw);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    int aborted = 0;
    for (int i = 0; i < 20000 && !aborted; i++) {
        st_batcher_get_stats(b, &st1);
        aborted = st1.requests_aborted > st0.requests_aborted;
        if (!aborted)
            usleep(1000);
    }
    CHECKF(aborted, "the batcher saw no abort");
    /* the step that took the abort released the blocks: its stats snapshot has none in use */
    CHECKF(st1.kv_blocks_used == 0 && st1.n_running == 0, "%d blocks, %d sequences left after the abort",
           st1.kv_blocks_used, st1.n_running);
    CHECK(st1.generated_tokens - st0.generated_tokens < 900);

    raw.len = 0;
    exchange("GET", "/metrics", NULL, NULL, &raw);
    CHECK(raw.buf && strstr(raw.buf, "\nstrait_kv_blocks_total 128\n"));

    /* with no pipeline for a moment the back end stays ready: requests would wait in the router */
    st_router_remove(rt, pipe_id);
    raw.len = 0;
    exchange("GET", "/health", NULL, NULL, &raw);
    CHECKF(raw.buf && strncmp(raw.buf, "HTTP/1.1 200", 12) == 0, "%s", raw.buf ? raw.buf : "");
    st_sb_free(&raw);

    st_http_server_destroy(s);
    st_router_destroy(rt);
    st_batcher_destroy(b);
    gb->destroy(gb);
    st_backend_destroy(cpu);
    st_model_free(m);
    return test_done();
}
