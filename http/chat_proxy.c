/* `strait chat`'s front end (see chat_proxy.h): one h2o path "/" with two
 * handlers in order, the embedded web UI (web_assets.h), which declines
 * every path but "/" and "/ui/...", then h2o's reverse proxy to the
 * scheduler. */
#define _GNU_SOURCE /* pipe2 */
#include "chat_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "../common/st_common.h"
#include "listen.h"
#include "web_assets.h"

#define DEFAULT_UPSTREAM_PORT 3001

struct st_chat_proxy {
    st_chat_proxy_config cfg;
    char *upstream;            /* "http://HOST:PORT/" */
    char *host;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    int listen_fd;
    h2o_socket_t *listener;
    int port;
    int wake_fd[2];            /* stop: written from any thread or a signal handler */
    h2o_socket_t *wake_sock;
    int stop_flag;
    pthread_t thread;
    int thread_started;
};

struct ui_handler {
    h2o_handler_t super;
    st_chat_proxy *p;
};

/* One log line per request, when its memory goes. */
struct req_log {
    h2o_req_t *req;
    uint64_t t0;
};

st_chat_proxy_config st_chat_proxy_config_default(void)
{
    st_chat_proxy_config c;
    memset(&c, 0, sizeof c);
    c.host = "127.0.0.1";
    c.upstream = "127.0.0.1:3001";
    c.io_timeout_ms = 300000;
    c.log_requests = 1;
    return c;
}

static void on_req_done(void *arg)
{
    struct req_log *l = arg;
    h2o_req_t *r = l->req;
    ST_INFO("chat: %.*s %.*s %d %.1f ms", (int)ST_MIN(r->method.len, 8), r->method.base,
            (int)ST_MIN(r->path_normalized.len, 96), r->path_normalized.base, r->res.status,
            (double)(st_now_ns() - l->t0) * 1e-6);
}

static int on_ui_req(h2o_handler_t *self, h2o_req_t *req)
{
    st_chat_proxy *p = ((struct ui_handler *)self)->p;
    if (p->cfg.log_requests) {
        struct req_log *l = h2o_mem_alloc_shared(&req->pool, sizeof *l, on_req_done);
        l->req = req;
        l->t0 = st_now_ns();
    }
    return st_http_web_serve(req) ? 0 : -1; /* -1: the next handler, the proxy */
}

/* "HOST", "HOST:PORT", "[V6]:PORT", optionally after "http://" and before
 * a "/": the canonical "http://HOST:PORT/" in *out (malloc'd). */
static int parse_upstream(const char *s, char **out)
{
    if (!s || !*s)
        return st_err(ST_EINVAL, "chat: the scheduler address is empty");
    if (!strncmp(s, "https://", 8))
        return st_err(ST_EINVAL, "chat: the scheduler address '%s': https upstreams are not supported", s);
    if (!strncmp(s, "http://", 7))
        s += 7;
    size_t n = strcspn(s, "/");
    if (n == 0 || n > 255)
        return st_err(ST_EINVAL, "chat: the scheduler address '%s' has no host", s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '@' || s[i] == '?' || s[i] == '#')
            return st_err(ST_EINVAL, "chat: the scheduler address '%.*s' holds a bad character", (int)n, s);
    const char *close = s[0] == '[' ? memchr(s, ']', n) : NULL;
    if (s[0] == '[' && !close)
        return st_err(ST_EINVAL, "chat: the scheduler address '%.*s' has an unclosed '['", (int)n, s);
    const char *colon = memchr(close ? close : s, ':', n - (size_t)((close ? close : s) - s));
    char buf[300];
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != s + n || colon + 1 == end || port < 1 || port > 65535 || colon == s)
            return st_err(ST_EINVAL, "chat: the scheduler address '%.*s' needs HOST:PORT with a port 1..65535",
                          (int)n, s);
        snprintf(buf, sizeof buf, "http://%.*s/", (int)n, s);
    } else {
        snprintf(buf, sizeof buf, "http://%.*s:%d/", (int)n, s, DEFAULT_UPSTREAM_PORT);
    }
    h2o_url_t u;
    if (h2o_url_parse(buf, SIZE_MAX, &u) != 0)
        return st_err(ST_EINVAL, "chat: the scheduler address '%.*s' is not a valid host", (int)n, s);
    *out = st_xstrdup(buf);
    return ST_OK;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    st_chat_proxy *p = listener->data;
    if (err)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock)
        h2o_accept(&p->accept_ctx, sock);
}

static void on_wake(h2o_socket_t *sock, const char *err)
{
    (void)err;
    h2o_buffer_consume(&sock->input, sock->input->size);
}

int st_chat_proxy_create(const st_chat_proxy_config *c, st_chat_proxy **out)
{
    if (!c)
        return st_err(ST_EINVAL, "chat: no configuration");
    if (c->port < 0 || c->port > 65535)
        return st_err(ST_EINVAL, "chat: port %d is out of range", c->port);
    char *up = NULL;
    int rc = parse_upstream(c->upstream, &up);
    if (rc)
        return rc;
    st_chat_proxy *p = st_xcalloc(1, sizeof *p);
    p->cfg = *c;
    p->upstream = up;
    p->host = st_xstrdup(c->host ? c->host : "127.0.0.1");
    p->cfg.host = p->host;
    p->cfg.upstream = p->upstream;
    p->listen_fd = -1;
    p->wake_fd[0] = p->wake_fd[1] = -1;
    if ((rc = st_http_listen_socket("chat", p->host, p->cfg.port, &p->listen_fd, &p->port)))
        goto fail;
    if (pipe2(p->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = st_err(ST_EIO, "chat: pipe: %s", strerror(errno));
        goto fail;
    }
    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&p->globalconf);
    p->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("strait"));
    h2o_hostconf_t *host = h2o_config_register_host(&p->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct ui_handler *ui = (struct ui_handler *)h2o_create_handler(path, sizeof *ui);
    ui->super.on_req = on_ui_req;
    ui->p = p;
    h2o_url_t upstream;
    h2o_url_parse(p->upstream, SIZE_MAX, &upstream); /* checked by parse_upstream */
    h2o_proxy_config_vars_t pc;
    memset(&pc, 0, sizeof pc);
    pc.io_timeout = (uint64_t)(c->io_timeout_ms > 0 ? c->io_timeout_ms : 300000);
    pc.keepalive_timeout = 2000;
    pc.preserve_host = 0;
    h2o_proxy_register_reverse_proxy(path, &upstream, &pc);

    p->loop = h2o_evloop_create();
    h2o_context_init(&p->ctx, p->loop, &p->globalconf);
    p->accept_ctx.ctx = &p->ctx;
    p->accept_ctx.hosts = p->globalconf.hosts;
    p->listener = h2o_evloop_socket_create(p->loop, p->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    p->listener->data = p;
    h2o_socket_read_start(p->listener, on_accept);
    p->wake_sock = h2o_evloop_socket_create(p->loop, p->wake_fd[0], 0);
    p->wake_sock->data = p;
    h2o_socket_read_start(p->wake_sock, on_wake);
    ST_INFO("chat: listening on http://%s:%d (web UI; API proxied to %s)", p->host, p->port, p->upstream);
    *out = p;
    return ST_OK;
fail:
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    for (int i = 0; i < 2; i++)
        if (p->wake_fd[i] >= 0)
            close(p->wake_fd[i]);
    free(p->upstream);
    free(p->host);
    free(p);
    return rc;
}

int st_chat_proxy_port(const st_chat_proxy *p) { return p ? p->port : -1; }
const char *st_chat_proxy_upstream(const st_chat_proxy *p) { return p ? p->upstream : NULL; }

/* Serves until stopped. Proxied requests still open then are cut: the
 * process is about to go, and the scheduler aborts what they started. */
int st_chat_proxy_run(st_chat_proxy *p)
{
    while (!__atomic_load_n(&p->stop_flag, __ATOMIC_ACQUIRE))
        h2o_evloop_run(p->loop, INT32_MAX);
    if (p->listener) {
        h2o_socket_read_stop(p->listener);
        h2o_socket_close(p->listener);
        p->listener = NULL;
        p->listen_fd = -1;
    }
    return ST_OK;
}

static void *run_thread(void *arg)
{
    st_chat_proxy_run(arg);
    return NULL;
}

int st_chat_proxy_start(st_chat_proxy *p)
{
    if (p->thread_started)
        return st_err(ST_EINVAL, "chat: proxy already started");
    if (pthread_create(&p->thread, NULL, run_thread, p) != 0)
        return st_err(ST_EIO, "chat: cannot start the proxy thread");
    p->thread_started = 1;
    return ST_OK;
}

void st_chat_proxy_stop(st_chat_proxy *p)
{
    if (!p)
        return;
    __atomic_store_n(&p->stop_flag, 1, __ATOMIC_RELEASE);
    char c = 1;
    ssize_t r = write(p->wake_fd[1], &c, 1); /* async-signal-safe */
    (void)r;
}

void st_chat_proxy_destroy(st_chat_proxy *p)
{
    if (!p)
        return;
    if (p->thread_started) {
        st_chat_proxy_stop(p);
        pthread_join(p->thread, NULL);
    }
    /* as in server.c: open connections belong to the loop, which h2o 2.2
     * cannot close under them; the loop and context are left to process
     * exit, what is ours is released */
    if (p->listener) {
        h2o_socket_read_stop(p->listener);
        h2o_socket_close(p->listener);
    }
    if (p->wake_sock) {
        h2o_socket_read_stop(p->wake_sock);
        h2o_socket_close(p->wake_sock);
    }
    if (p->wake_fd[1] >= 0)
        close(p->wake_fd[1]);
    free(p->upstream);
    free(p->host);
    free(p);
}
