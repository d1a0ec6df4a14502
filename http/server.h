/* The OpenAI-compatible HTTP server: h2o on one event-loop thread,
 * HTTP/1.1, h2c (prior knowledge and Upgrade) and, with a certificate,
 * TLS with ALPN h2 / http/1.1.
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/completions (JSON or SSE
 * streaming), GET /v1/models, GET /health (200 once the back end is ready,
 * 503 before), GET /metrics (Prometheus). With api keys, every endpoint but
 * /health needs "Authorization: Bearer KEY" (401 otherwise).
 *
 * Lifecycle:
 *   st_http_server_create  binds the listening socket (port 0: ephemeral;
 *                          st_http_server_port tells which) and loads TLS;
 *   st_http_server_run     serves on the calling thread until stopped;
 *   st_http_server_start   the same on a new thread;
 *   st_http_server_stop    async-signal-safe and thread-safe: stop
 *                          accepting, answer new requests 503, let in-flight
 *                          generations finish for up to shutdown_grace_ms,
 *                          then abort them (streams get a final chunk with
 *                          finish_reason "abort" and [DONE]); run returns
 *                          when none is left;
 *   st_http_server_destroy stops, joins a started thread, frees. */
#ifndef ST_HTTP_SERVER_H
#define ST_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/tokenizer.h"
#include "gen_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An extra endpoint served for the program embedding the server (the
 * cluster's /cluster/..., tracing's /debug/...). handle runs on the
 * event-loop thread and must not block: it fills *out and returns ST_OK,
 * or returns an error whose st_errmsg() becomes the JSON error (ST_EINVAL
 * 400, ST_ENOENT 404, ST_EAGAIN 503, else 500). With stream = 1 the route
 * is a Server-Sent Events stream: handle is called at once and then every
 * period_ms, and each body that differs from the last one sent goes out as
 * one "data:" event, until the client leaves or the server stops. */
typedef struct st_http_reply {
    int status;                   /* default 200 */
    const char *content_type;     /* default "application/json" */
    char *body;                   /* malloc'd; the server frees it */
    size_t len;
} st_http_reply;

typedef struct st_http_route {
    const char *method;           /* "GET" (HEAD too) or "POST" */
    const char *path;             /* exact path, without the query string */
    int (*handle)(void *ctx, const char *query, size_t query_len, const char *body, size_t body_len,
                  st_http_reply *out);
    void *ctx;
    int stream;                   /* 1: SSE, polled every period_ms */
    int period_ms;                /* default 500 */
    int public_route;             /* 1: no API key needed (like /health) */
} st_http_route;

typedef struct st_http_server_config {
    const char *host;             /* address to bind (default "127.0.0.1") */
    int port;                     /* 0: ephemeral (default 3001 in the CLI) */
    const char *tls_cert;         /* PEM certificate chain file; with tls_key enables TLS */
    const char *tls_key;          /* PEM private key file */
    const char *const *api_keys;  /* (n_api_keys,) accepted bearer tokens */
    int n_api_keys;
    const char *api_key_file;     /* or a file of keys, one per line ('#' comments) */
    size_t max_body_bytes;        /* request body limit (default 4 MiB): 413 above (a JSON error up to
                                     twice the limit, h2o's plain-text 413 beyond) */
    int max_queued_requests;      /* generations in flight at most (default 256): 503 above */
    int shutdown_grace_ms;        /* let in-flight requests finish this long on stop (default 0) */
    const char *model_name;       /* reported as "model" and by /v1/models (default "strait") */
    const st_tokenizer *tok;      /* the model's tokenizer (borrowed; required) */
    const char *chat_template;    /* template text overriding the tokenizer's, or NULL */
    st_gen_backend *backend;      /* borrowed; required */
    int log_requests;             /* 1 (default): one INFO line per request */
    const st_http_route *routes;  /* (n_routes,) extra endpoints (copied; ctx borrowed) */
    int n_routes;
} st_http_server_config;

st_http_server_config st_http_server_config_default(void);

typedef struct st_http_server st_http_server;

/* ST_OK, or ST_EINVAL (bad config), ST_EIO (bind/listen/TLS files) naming
 * the problem. */
int st_http_server_create(const st_http_server_config *cfg, st_http_server **out);
int st_http_server_port(const st_http_server *s);
int st_http_server_run(st_http_server *s);
int st_http_server_start(st_http_server *s);
void st_http_server_stop(st_http_server *s);
void st_http_server_destroy(st_http_server *s);

#ifdef __cplusplus
}
#endif
#endif
