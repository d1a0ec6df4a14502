/* Private to http/: the server object shared by server.c (listening,
 * TLS, lifecycle) and openai.c (routes, the generation stream). */
#ifndef ST_HTTP_INTERNAL_H
#define ST_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include <h2o.h>
#include <h2o/multithread.h>

#include "api_response.h"
#include "metrics.h"
#include "piece_buf.h"
#include "prompt.h"
#include "server.h"

struct st_http_server {
    st_http_server_config cfg; /* strings below are owned copies */
    char *host, *model_name;
    char **keys;               /* (n_keys,) accepted bearer tokens */
    int n_keys;
    st_prompt_cfg prompt;

    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    SSL_CTX *ssl;
    int listen_fd;
    h2o_socket_t *listener;    /* NULL once closed */
    int port;

    /* stop: a pipe written from any thread or a signal handler */
    int wake_fd[2];
    h2o_socket_t *wake_sock;
    int stop_flag;             /* set atomically by st_http_server_stop */
    int stopping;              /* loop thread: shutdown in progress */
    uint64_t abort_at_ns;      /* loop thread: in-flight requests are aborted then */
    int aborted_all;

    /* tokens from the back-end threads */
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;

    /* loop thread */
    h2o_linklist_t streams;    /* generations not yet finished (for shutdown) */
    int n_inflight;            /* submitted, final event not yet seen */
    int n_live_reqs;           /* requests whose memory is not yet disposed */
    uint64_t seq;              /* request id counter */
    h2o_linklist_t ext_streams; /* open SSE streams of st_http_route.stream routes */
    h2o_timeout_t *ext_timers; /* (n_routes,) one per route period, made on first use */
    unsigned char *ext_timer_init; /* (n_routes,) 1 once ext_timers[i] is initialised */

    st_http_metrics metrics;
    pthread_t thread;
    int thread_started;
    int running;
};

/* The request handler (openai.c) registered on "/". */
int st_http_on_req(struct st_http_server *srv, h2o_req_t *req);
/* Multithread receiver callback (openai.c). */
void st_http_on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);
/* Extra routes (ext_routes.c): the route for req's path or NULL; serve it
 * (API key already checked). Return 0. */
const st_http_route *st_http_ext_find(struct st_http_server *srv, h2o_req_t *req);
int st_http_ext_serve(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt);
int st_http_ext_stream(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt, const char *query,
                       size_t query_len);
/* Shutdown: end every open SSE stream of an extra route (a final empty
 * chunk), so that open status pages do not hold the server up. */
void st_http_ext_end_streams(struct st_http_server *srv);
/* Release the per-route timers (the loop no longer runs). */
void st_http_ext_free(struct st_http_server *srv);
/* Abort every unfinished generation (shutdown). */
void st_http_abort_all(struct st_http_server *srv);

#endif
