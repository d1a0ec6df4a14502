/* The front end of `strait chat`: the web UI served from this machine,
 * and every other path (/v1/..., /health, /metrics, /cluster/...) passed
 * to the scheduler's API by h2o's reverse proxy, streamed through as it
 * arrives (SSE tokens and status events are not buffered). A client that
 * leaves closes its upstream connection, so the scheduler aborts the
 * generation just as if the client had been connected to it directly.
 *
 * Lifecycle as for the API server (server.h): create binds, run serves on
 * the calling thread until stop (async-signal-safe), start runs it on a new
 * thread, destroy stops, joins and frees. */
#ifndef ST_HTTP_CHAT_PROXY_H
#define ST_HTTP_CHAT_PROXY_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_chat_proxy_config {
    const char *host;      /* address to bind (default "127.0.0.1") */
    int port;              /* 0: ephemeral */
    const char *upstream;  /* the scheduler's API: "HOST", "HOST:PORT" or "http://HOST:PORT"
                              (default port 3001) */
    int io_timeout_ms;     /* an upstream silent this long is cut (default 300000) */
    int log_requests;      /* 1: one INFO line per proxied request */
} st_chat_proxy_config;

st_chat_proxy_config st_chat_proxy_config_default(void);

typedef struct st_chat_proxy st_chat_proxy;

/* ST_OK, or ST_EINVAL (bad upstream or host) / ST_EIO (bind) naming it. */
int st_chat_proxy_create(const st_chat_proxy_config *c, st_chat_proxy **out);
int st_chat_proxy_port(const st_chat_proxy *p);
/* The upstream as used, "http://HOST:PORT/". */
const char *st_chat_proxy_upstream(const st_chat_proxy *p);
int st_chat_proxy_run(st_chat_proxy *p);
int st_chat_proxy_start(st_chat_proxy *p);
void st_chat_proxy_stop(st_chat_proxy *p);
void st_chat_proxy_destroy(st_chat_proxy *p);

#ifdef __cplusplus
}
#endif
#endif
