/* The h2o server: configuration, listening socket, TLS with ALPN, the
 * event loop and its graceful stop (see server.h). */
#define _GNU_SOURCE /* pipe2 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "../common/st_common.h"
#include "http_internal.h"
#include "listen.h"

/* Shutdown never waits longer than this after the abort for in-flight
 * requests to drain (a client that stopped reading cannot hold it open). */
#define DRAIN_LIMIT_NS (5ull * 1000000000ull)

struct handler {
    h2o_handler_t super;
    struct st_http_server *srv;
};

st_http_server_config st_http_server_config_default(void)
{
    st_http_server_config c;
    memset(&c, 0, sizeof c);
    c.host = "127.0.0.1";
    c.port = 0;
    c.max_body_bytes = 4u << 20;
    c.max_queued_requests = 256;
    c.shutdown_grace_ms = 0;
    c.model_name = "strait";
    c.log_requests = 1;
    return c;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    return st_http_on_req(((struct handler *)self)->srv, req);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    struct st_http_server *srv = listener->data;
    if (err)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock)
        h2o_accept(&srv->accept_ctx, sock);
}

static void close_listener(struct st_http_server *srv)
{
    if (srv->listener) {
        h2o_socket_read_stop(srv->listener);
        h2o_socket_close(srv->listener); /* closes listen_fd */
        srv->listener = NULL;
        srv->listen_fd = -1;
    }
}

/* The stop pipe became readable: begin the shutdown. */
static void on_wake(h2o_socket_t *sock, const char *err)
{
    struct st_http_server *srv = sock->data;
    h2o_buffer_consume(&sock->input, sock->input->size);
    if (!__atomic_load_n(&srv->stop_flag, __ATOMIC_ACQUIRE) || srv->stopping)
        return;
    srv->stopping = 1;
    close_listener(srv);
    st_http_ext_end_streams(srv);
    srv->abort_at_ns = st_now_ns() + (uint64_t)(srv->cfg.shutdown_grace_ms > 0 ? srv->cfg.shutdown_grace_ms : 0) * 1000000ull;
    ST_INFO("http: stopping (%d generations in flight)", srv->n_inflight);
}

/* Keys from the config and, if given, a file of keys (one per line,
 * blank lines and '#' comments skipped). */
static int load_keys(struct st_http_server *srv, const st_http_server_config *cfg)
{
    for (int i = 0; i < cfg->n_api_keys; i++) {
        if (!cfg->api_keys[i] || !cfg->api_keys[i][0])
            return st_err(ST_EINVAL, "http: api key %d is empty", i);
        srv->keys = st_xrealloc(srv->keys, sizeof(char *) * (size_t)(srv->n_keys + 1));
        srv->keys[srv->n_keys++] = st_xstrdup(cfg->api_keys[i]);
    }
    if (!cfg->api_key_file)
        return ST_OK;
    char *buf;
    size_t len;
    if (st_read_file(cfg->api_key_file, &buf, &len) != ST_OK)
        return st_err(ST_EIO, "http: cannot read the api key file %s", cfg->api_key_file);
    int before = srv->n_keys;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = 0;
        if (n == 0 || line[0] == '#')
            continue;
        srv->keys = st_xrealloc(srv->keys, sizeof(char *) * (size_t)(srv->n_keys + 1));
        srv->keys[srv->n_keys++] = st_xstrdup(line);
    }
    free(buf);
    if (srv->n_keys == before)
        return st_err(ST_EINVAL, "http: the api key file %s holds no key", cfg->api_key_file);
    return ST_OK;
}

static int make_tls(struct st_http_server *srv, const st_http_server_config *cfg)
{
    if (!cfg->tls_cert && !cfg->tls_key)
        return ST_OK;
    if (!cfg->tls_cert || !cfg->tls_key)
        return st_err(ST_EINVAL, "http: TLS needs both --tls-cert and --tls-key");
    srv->ssl = SSL_CTX_new(TLS_server_method());
    if (!srv->ssl)
        return st_err(ST_EIO, "http: SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(srv->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(srv->ssl, SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate_chain_file(srv->ssl, cfg->tls_cert) != 1)
        return st_err(ST_EIO, "http: cannot load the TLS certificate %s: %s", cfg->tls_cert,
                      ERR_reason_error_string(ERR_get_error()));
    if (SSL_CTX_use_PrivateKey_file(srv->ssl, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(srv->ssl) != 1)
        return st_err(ST_EIO, "http: cannot load the TLS key %s (or it does not match the certificate): %s",
                      cfg->tls_key, ERR_reason_error_string(ERR_get_error()));
    h2o_ssl_register_alpn_protocols(srv->ssl, h2o_http2_alpn_protocols);
    return ST_OK;
}

int st_http_server_create(const st_http_server_config *cfg, st_http_server **out)
{
    if (!cfg || !cfg->backend || !cfg->backend->submit || !cfg->backend->abort || !cfg->backend->stats)
        return st_err(ST_EINVAL, "http: a generation back end is required");
    if (!cfg->tok)
        return st_err(ST_EINVAL, "http: a tokenizer is required");
    if (cfg->port < 0 || cfg->port > 65535)
        return st_err(ST_EINVAL, "http: port %d is out of range", cfg->port);
    struct st_http_server *srv = st_xcalloc(1, sizeof *srv);
    srv->cfg = *cfg;
    if (cfg->n_routes > 0) {
        st_http_route *rt = st_xmalloc((size_t)cfg->n_routes * sizeof *rt);
        memcpy(rt, cfg->routes, (size_t)cfg->n_routes * sizeof *rt);
        srv->cfg.routes = rt;
    } else {
        srv->cfg.routes = NULL;
        srv->cfg.n_routes = 0;
    }
    srv->listen_fd = -1;
    srv->wake_fd[0] = srv->wake_fd[1] = -1;
    srv->host = st_xstrdup(cfg->host ? cfg->host : "127.0.0.1");
    srv->model_name = st_xstrdup(cfg->model_name ? cfg->model_name : "strait");
    if (!srv->cfg.max_body_bytes)
        srv->cfg.max_body_bytes = 4u << 20;
    if (srv->cfg.max_queued_requests <= 0)
        srv->cfg.max_queued_requests = 256;
    srv->cfg.api_keys = NULL;
    srv->cfg.api_key_file = NULL;
    srv->cfg.host = srv->host;
    srv->cfg.model_name = srv->model_name;
    st_metrics_init(&srv->metrics);
    h2o_linklist_init_anchor(&srv->streams);
    h2o_linklist_init_anchor(&srv->ext_streams);
    int rc;
    if ((rc = load_keys(srv, cfg)) || (rc = st_prompt_init(&srv->prompt, cfg->tok, cfg->chat_template)) ||
        (rc = make_tls(srv, cfg)) || (rc = st_http_listen_socket("http", srv->host, cfg->port, &srv->listen_fd, &srv->port)))
        goto fail;
    if (pipe2(srv->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = st_err(ST_EIO, "http: pipe: %s", strerror(errno));
        goto fail;
    }
    /* a client that disconnects mid-write must not kill the process */
    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("strait"));
    /* h2o refuses bodies above its limit with a plain-text 413 before the
     * handler runs; with room above ours, the usual case (a body somewhat
     * too large) gets OpenAI's JSON error from the handler instead */
    srv->globalconf.max_request_entity_size =
        srv->cfg.max_body_bytes + ST_MIN(srv->cfg.max_body_bytes, (size_t)16 << 20);
    h2o_hostconf_t *host = h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct handler *h = (struct handler *)h2o_create_handler(path, sizeof *h);
    h->super.on_req = on_req;
    h->srv = srv;

    srv->loop = h2o_evloop_create();
    h2o_context_init(&srv->ctx, srv->loop, &srv->globalconf);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->globalconf.hosts;
    srv->accept_ctx.ssl_ctx = srv->ssl;
    srv->queue = h2o_multithread_create_queue(srv->loop);
    h2o_multithread_register_receiver(srv->queue, &srv->receiver, st_http_on_messages);

    srv->listener = h2o_evloop_socket_create(srv->loop, srv->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    srv->listener->data = srv;
    h2o_socket_read_start(srv->listener, on_accept);
    srv->wake_sock = h2o_evloop_socket_create(srv->loop, srv->wake_fd[0], 0);
    srv->wake_sock->data = srv;
    h2o_socket_read_start(srv->wake_sock, on_wake);
    ST_INFO("http: listening on %s://%s:%d (model %s, chat template %s)", srv->ssl ? "https" : "http", srv->host,
            srv->port, srv->model_name, st_chat_format_name(srv->prompt.fmt));
    *out = srv;
    return ST_OK;
fail:
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    for (int i = 0; i < 2; i++)
        if (srv->wake_fd[i] >= 0)
            close(srv->wake_fd[i]);
    if (srv->ssl)
        SSL_CTX_free(srv->ssl);
    st_prompt_free(&srv->prompt);
    for (int i = 0; i < srv->n_keys; i++)
        free(srv->keys[i]);
    free(srv->keys);
    free(srv->host);
    free(srv->model_name);
    free(srv);
    return rc;
}

int st_http_server_port(const st_http_server *s) { return s ? s->port : -1; }

int st_http_server_run(st_http_server *srv)
{
    srv->running = 1;
    uint64_t hard_deadline = 0;
    for (;;) {
        h2o_evloop_run(srv->loop, srv->stopping ? 10 : INT32_MAX);
        if (!srv->stopping)
            continue;
        uint64_t now = st_now_ns();
        if (!srv->aborted_all && now >= srv->abort_at_ns) {
            srv->aborted_all = 1;
            st_http_abort_all(srv);
            hard_deadline = now + DRAIN_LIMIT_NS;
        }
        if (srv->n_inflight == 0 && srv->n_live_reqs == 0)
            break;
        if (srv->aborted_all && now >= hard_deadline) {
            ST_WARN("http: stopped with %d requests still open", srv->n_live_reqs);
            break;
        }
    }
    srv->running = 0;
    return ST_OK;
}

static void *run_thread(void *arg)
{
    st_http_server_run(arg);
    return NULL;
}

int st_http_server_start(st_http_server *srv)
{
    if (srv->thread_started)
        return st_err(ST_EINVAL, "http: server already started");
    if (pthread_create(&srv->thread, NULL, run_thread, srv) != 0)
        return st_err(ST_EIO, "http: cannot start the server thread");
    srv->thread_started = 1;
    return ST_OK;
}

void st_http_server_stop(st_http_server *srv)
{
    if (!srv)
        return;
    __atomic_store_n(&srv->stop_flag, 1, __ATOMIC_RELEASE);
    char c = 1;
    ssize_t r = write(srv->wake_fd[1], &c, 1); /* async-signal-safe */
    (void)r;
}

void st_http_server_destroy(st_http_server *srv)
{
    if (!srv)
        return;
    if (srv->thread_started) {
        st_http_server_stop(srv);
        pthread_join(srv->thread, NULL);
    }
    /* Connections still open (idle keep-alive, or clients that stopped
     * reading) belong to the loop; h2o 2.2 has no call to close them, so
     * the loop and context are left to process exit rather than freed
     * under them. What is ours is released. */
    close_listener(srv);
    if (srv->wake_sock) {
        h2o_socket_read_stop(srv->wake_sock);
        h2o_socket_close(srv->wake_sock);
    }
    if (srv->wake_fd[1] >= 0)
        close(srv->wake_fd[1]);
    if (srv->ssl)
        SSL_CTX_free(srv->ssl); /* reference-counted: open TLS connections keep theirs */
    st_prompt_free(&srv->prompt);
    for (int i = 0; i < srv->n_keys; i++)
        free(srv->keys[i]);
    free(srv->keys);
    st_http_ext_free(srv);
    free((void *)srv->cfg.routes);
    /* nothing runs the loop any more, so only a back end still holding a
     * generation (a hard-deadline stop) can reach srv: keep it then */
    if (srv->n_inflight == 0) {
        free(srv->host);
        free(srv->model_name);
        free(srv);
    }
}
