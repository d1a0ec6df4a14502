/* The OpenAI API in front of a router (the pipelines of `strait run -n`) or
 * of one batcher (`strait run`, the head stage of `strait serve`), until
 * SIGINT/SIGTERM. */
#include <signal.h>
#include <string.h>

#include "common/st_common.h"
#include "http/gen_batcher.h"
#include "tools/load.h"

static st_http_server *volatile api_server;
static volatile int stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (api_server)
        st_http_server_stop(api_server); /* async-signal-safe */
}

void st_cli_install_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

volatile int *st_cli_stop_flag(void) { return &stop_requested; }

st_http_server_config st_cli_api_config_default(void)
{
    st_http_server_config hc = st_http_server_config_default();
    hc.host = "localhost";
    hc.port = 3001;
    hc.shutdown_grace_ms = 5000;
    hc.model_name = NULL;
    return hc;
}

int st_cli_serve_router(const char *verb, st_http_server_config *hc, st_router *rt, const char *model_path,
                        const st_tokenizer *tok)
{
    st_gen_backend *gen = NULL;
    st_http_server *srv = NULL;
    int rc;
    if ((rc = st_gen_batcher_create(rt, tok, &gen))) {
        rc = st_cli_fail(verb, rc);
        goto out;
    }
    if (!hc->model_name) {
        const char *slash = strrchr(model_path, '/');
        hc->model_name = slash ? slash + 1 : model_path;
    }
    hc->tok = tok;
    hc->backend = gen;
    if ((rc = st_http_server_create(hc, &srv))) {
        rc = st_cli_fail(verb, rc);
        goto out;
    }
    api_server = srv;
    if (stop_requested) /* a signal before the server existed */
        st_http_server_stop(srv);
    rc = st_http_server_run(srv);
    api_server = NULL;
    ST_INFO("stopped");
    rc = rc ? st_cli_fail(verb, rc) : 0;
out:
    if (srv)
        st_http_server_destroy(srv);
    if (gen && gen->destroy)
        gen->destroy(gen);
    return rc;
}

int st_cli_serve_batcher(const char *verb, st_http_server_config *hc, st_batcher *b, const char *model_path,
                         const st_tokenizer *tok)
{
    /* one batcher is a router with one pipeline */
    st_router *rt = NULL;
    int pipe_id = 0, rc;
    if ((rc = st_batcher_start(b)) || (rc = st_router_create(NULL, &rt)) ||
        (rc = st_router_add(rt, b, NULL, NULL, &pipe_id)))
        rc = st_cli_fail(verb, rc);
    else
        rc = st_cli_serve_router(verb, hc, rt, model_path, tok);
    if (pipe_id)
        st_router_remove(rt, pipe_id); /* what is left waits in the router, which ends it with ABORT */
    st_router_destroy(rt);
    st_batcher_stop(b);
    return rc;
}
