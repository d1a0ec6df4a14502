/* `strait run`: the scheduler and the OpenAI-compatible API. Without -n
 * this machine hosts every layer (one local pipeline behind the router);
 * with -n N it holds no layers: it waits for N nodes (`strait join`),
 * plans the model over them and serves through the pipelines they form
 * (sched/cluster/cluster.h). Either way GET /cluster/status (and its SSE
 * stream /cluster/status/stream) describes nodes and pipelines. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/st_common.h"
#include "common/trace.h"
#include "engine/stage.h"
#include "sched/batcher.h"
#include "sched/kv_blocks.h"
#include "sched/cluster/cluster.h"
#include "sched/cluster/ctl.h"
#include "sched/cluster/router.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/models.h"
#include "tools/opts.h"
#include "tools/prefault.h"

static const char usage[] =
    "usage: strait run [-m MODEL] [--host H] [--port P] [options]\n"
    "\n"
    "Serve MODEL with continuous batching behind an OpenAI-compatible API\n"
    "(HTTP/1.1, h2c, and TLS with ALPN h2): /v1/chat/completions,\n"
    "/v1/completions, /v1/models, /health, /metrics. SIGINT/SIGTERM stop it.\n"
    "\n"
    "  -m, --model MODEL                 (default: the default model)\n"
    "      --host H                      address to listen on (default localhost)\n"
    "      --port P                      (default 3001)\n"
    "  -t, --threads N                   CPU threads (default: all cores)\n"
    "      --device D                    auto | cpu | cuda | cuda:N (default auto)\n"
    "      --max-num-tokens-per-batch N  rows per forward step (default 512)\n"
    "      --max-batch-size N            sequences running at once (default 16)\n"
    "      --kv-cache-memory BYTES       KV cache size in bytes\n"
    "      --kv-cache-fraction F         KV cache size as a fraction (0, 1] of available memory\n"
    "                                    (the GPU's free memory with --device cuda)\n"
    "                                    (default without either: 0.3 of it, capped at what\n"
    "                                    --max-batch-size full contexts can use, twice over)\n"
    "      --ctx N                       context length per sequence (default: the model's)\n"
    "      --disable-prefix-cache        do not share cached prompt blocks\n"
    "      --served-model-name NAME      the \"model\" reported by the API\n"
    "      --api-key KEY                 require Authorization: Bearer KEY (repeatable)\n"
    "      --api-key-file FILE           accepted keys, one per line\n"
    "      --tls-cert FILE --tls-key FILE  serve TLS (ALPN h2 and http/1.1)\n"
    "      --max-body-bytes N            request body limit (default 4194304)\n"
    "      --max-queued-requests N       generations in flight at most (default 256)\n"
    "      --shutdown-grace-ms N         let in-flight requests finish this long on stop (default 5000)\n"
    "  cluster (the layers live on nodes that run `strait join`):\n"
    "  -n, --nodes N                     wait for N nodes, then plan the model over them\n"
    "      --cluster-token T             the secret nodes must know (default: random, printed)\n"
    "      --cluster-port P              control port nodes join on (default 3003; 0: any)\n"
    "      --cluster-host H              host put in the printed join command (default: host name)\n"
    "      --heartbeat-timeout MS        evict a node silent this long (default 5000)\n"
    "      --transport T                 data plane between stages: auto | tcp | shm (default auto:\n"
    "                                    shm between processes on one host, else tcp)\n"
    "      --act-dtype D                 f32 | bf16 | int8 hidden states between stages (default f32,\n"
    "                                    exact; int8: per-token scales, ~4x fewer bytes, lossy)\n"
    "      --activation-compression C    none | bf16 | int8 (the same setting)\n"
    "      --max-inflight N              micro-batches in flight per pipeline (default: one per stage)\n"
    "      --trace-sample P              trace this fraction of requests, 0..1 (default 0; GET /debug/trace)\n"
    "      --trace-file F                write Chrome trace JSON of the whole run to F (samples all\n"
    "                                    requests unless --trace-sample says otherwise)\n"
    "  -v, --verbose                     debug logging\n"
    "  -h, --help                        this help\n";

enum {
    O_HOST = 256, O_PORT, O_DEVICE, O_MAXTOK, O_MAXBS, O_KVMEM, O_CTX, O_NOPREFIX, O_NAME, O_KEY, O_KEYFILE,
    O_CERT, O_TLSKEY, O_MAXBODY, O_MAXQ, O_GRACE, O_TOKEN, O_CPORT, O_CHOST, O_HBTO, O_TRANSPORT, O_ACT,
    O_TRSAMPLE, O_TRFILE, O_INFLIGHT, O_KVFRAC,
};

/* ---- /cluster/status ------------------------------------------------------------------ */

typedef struct status_ctx {
    st_cluster *cl;           /* with -n */
    st_router *router;        /* without: the one local pipeline */
    const char *model, *device;
    int n_layers;
} status_ctx;

static int status_handle(void *ctx, const char *query, size_t query_len, const char *body, size_t body_len,
                         st_http_reply *out)
{
    (void)query, (void)query_len, (void)body, (void)body_len;
    status_ctx *sc = ctx;
    st_strbuf sb;
    st_sb_init(&sb);
    if (sc->cl)
        st_cluster_status_json(sc->cl, &sb);
    else
        st_cluster_status_local_json(sc->model, sc->device, sc->n_layers, sc->router, &sb);
    out->body = sb.buf;
    out->len = sb.len;
    return ST_OK;
}

/* POST /cluster/setup {"model": M, "n_nodes": N} (the web page's Setup view). */
static int setup_handle(void *ctx, const char *query, size_t query_len, const char *body, size_t body_len,
                        st_http_reply *out)
{
    (void)query, (void)query_len;
    status_ctx *sc = ctx;
    st_json *j = NULL;
    int rc = st_json_parse(body, body_len, &j);
    if (rc)
        return st_err(ST_EINVAL, "setup: the body is not JSON: %s", st_errmsg());
    int64_t n = 0;
    const st_json *jn = st_json_get(j, "n_nodes"), *jm = st_json_get(j, "model");
    if (j->type != ST_JSON_OBJECT || !jn || !st_json_as_int(jn, 1, 1 << 20, &n))
        rc = st_err(ST_EINVAL, "setup: \"n_nodes\" must be a positive integer");
    else if (jm && jm->type != ST_JSON_STRING)
        rc = st_err(ST_EINVAL, "setup: \"model\" must be a string");
    else
        rc = st_cluster_setup(sc->cl, jm ? jm->u.str.s : NULL, (int)n);
    st_json_free(j);
    if (rc)
        return rc;
    st_strbuf sb;
    st_sb_init(&sb);
    st_cluster_status_json(sc->cl, &sb);
    out->body = sb.buf;
    out->len = sb.len;
    return ST_OK;
}

static void add_status_routes(st_http_server_config *hc, st_http_route *routes, status_ctx *sc)
{
    memset(routes, 0, 3 * sizeof *routes);
    routes[0] = (st_http_route){.method = "GET", .path = "/cluster/status", .handle = status_handle, .ctx = sc};
    routes[1] = routes[0];
    routes[1].path = "/cluster/status/stream";
    routes[1].stream = 1;
    routes[1].period_ms = 500;
    hc->routes = routes;
    hc->n_routes = 2;
    if (sc->cl) { /* only a scheduler has a plan to set up */
        routes[2] = (st_http_route){.method = "POST", .path = "/cluster/setup", .handle = setup_handle, .ctx = sc};
        hc->n_routes = 3;
    }
}

/* ---- the two modes ---------------------------------------------------------------------- */

/* One machine: every layer here, a router with one pipeline. */
static int run_local(const char *V, st_http_server_config *hc, st_batcher_config *bc, const char *model,
                     const char *device, int threads)
{
    st_cli_model cm;
    int rc = st_cli_load_model(V, model, device, threads, &cm);
    if (rc)
        return rc;
    if (!cm.model->tok) {
        st_cli_unload(&cm);
        return st_cli_fail(V, st_err(ST_EINVAL, "%s has no tokenizer", cm.model->path));
    }
    st_cli_prefault(cm.model); /* before the listener opens: /health is 200 once the weights are in */
    st_batcher *b = NULL;
    st_router *r = NULL;
    st_router_config rcfg = st_router_config_default();
    int pid = -1;
    st_cli_install_stop_signals();
    if ((rc = st_batcher_create(cm.model, cm.backend, bc, &b)) || (rc = st_router_create(&rcfg, &r)) ||
        (rc = st_batcher_start(b)) || (rc = st_router_add(r, b, NULL, NULL, &pid))) {
        rc = st_cli_fail(V, rc);
    } else {
        status_ctx sc = {.router = r, .model = cm.model->path, .device = cm.backend->ops->name,
                         .n_layers = cm.model->cfg.n_layers};
        st_http_route routes[3];
        add_status_routes(hc, routes, &sc);
        rc = st_cli_serve_router(V, hc, r, cm.model->path, cm.model->tok);
    }
    if (pid >= 0)
        st_router_remove(r, pid);
    if (b)
        st_batcher_destroy(b);
    if (r)
        st_router_destroy(r);
    st_cli_unload(&cm);
    return rc;
}

/* The scheduler of a cluster: geometry and tokenizer only (one layer mapped). */
static int run_cluster(const char *V, st_http_server_config *hc, st_cluster_config *cc, const char *model)
{
    char path[4096], token[33];
    int rc = st_model_resolve(model, 1, path, sizeof path);
    if (rc)
        return st_cli_fail(V, rc);
    if (!cc->token) {
        unsigned char rnd[16];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            return st_cli_fail(V, st_err(ST_EIO, "cannot read random bytes for a cluster token"));
        for (int i = 0; i < 16; i++)
            snprintf(token + 2 * i, 3, "%02x", rnd[i]);
        cc->token = token;
    }
    st_model *m = NULL;
    if ((rc = st_model_load(path, 0, 1, &m)))
        return st_cli_fail(V, rc);
    if (!m->tok) {
        st_model_free(m);
        return st_cli_fail(V, st_err(ST_EINVAL, "%s has no tokenizer", path));
    }
    cc->model = model ? model : path;
    cc->model_path = path;
    st_router *r = NULL;
    st_cluster *cl = NULL;
    st_router_config rcfg = st_router_config_default();
    st_cli_install_stop_signals();
    if ((rc = st_router_create(&rcfg, &r)) || (rc = st_cluster_create(cc, m, r, &cl))) {
        rc = st_cli_fail(V, rc);
        goto out;
    }
    ST_INFO("join with: %s", st_cluster_join_command(cl));
    if ((rc = st_cluster_start(cl))) {
        rc = st_cli_fail(V, rc);
        goto out;
    }
    status_ctx sc = {.cl = cl};
    st_http_route routes[3];
    add_status_routes(hc, routes, &sc);
    rc = st_cli_serve_router(V, hc, r, path, m->tok);
out:
    st_cluster_destroy(cl); /* removes its pipelines from the router */
    if (r)
        st_router_destroy(r);
    st_model_free(m);
    return rc;
}

int st_cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'},      {"host", 1, 0, O_HOST},     {"port", 1, 0, O_PORT},
        {"threads", 1, 0, 't'},    {"device", 1, 0, O_DEVICE}, {"max-num-tokens-per-batch", 1, 0, O_MAXTOK},
        {"max-batch-size", 1, 0, O_MAXBS}, {"kv-cache-memory", 1, 0, O_KVMEM},
        {"kv-cache-fraction", 1, 0, O_KVFRAC}, {"ctx", 1, 0, O_CTX},
        {"disable-prefix-cache", 0, 0, O_NOPREFIX}, {"served-model-name", 1, 0, O_NAME},
        {"api-key", 1, 0, O_KEY},  {"api-key-file", 1, 0, O_KEYFILE}, {"tls-cert", 1, 0, O_CERT},
        {"tls-key", 1, 0, O_TLSKEY}, {"max-body-bytes", 1, 0, O_MAXBODY},
        {"max-queued-requests", 1, 0, O_MAXQ}, {"shutdown-grace-ms", 1, 0, O_GRACE},
        {"nodes", 1, 0, 'n'},      {"cluster-token", 1, 0, O_TOKEN}, {"cluster-port", 1, 0, O_CPORT},
        {"cluster-host", 1, 0, O_CHOST}, {"heartbeat-timeout", 1, 0, O_HBTO}, {"transport", 1, 0, O_TRANSPORT},
        {"act-dtype", 1, 0, O_ACT}, {"activation-compression", 1, 0, O_ACT}, {"trace-sample", 1, 0, O_TRSAMPLE}, {"trace-file", 1, 0, O_TRFILE},
        {"max-inflight", 1, 0, O_INFLIGHT},
        {"verbose", 0, 0, 'v'},    {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *V = "run", *model = NULL, *device = NULL, *trace_file = NULL;
    double trace_sample = -1;
    float kvfrac = 0;
    int inflight = 0;
    st_http_server_config hc = st_cli_api_config_default();
    st_batcher_config bc = st_batcher_config_default();
    st_cluster_config cc = st_cluster_config_default();
    int threads = 0, c, bad = 0, n_keys = 0, maxbody = 0, n_nodes = 0, cport = ST_CTL_DEFAULT_PORT;
    char listen[64];
    uint64_t kvmem = 0;
    const char **keys = NULL;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:t:n:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &threads); break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case O_HOST: hc.host = optarg; break;
        case O_PORT: bad = st_opt_int(V, "port", optarg, 0, 65535, &hc.port); break;
        case O_DEVICE: device = optarg; break;
        case O_MAXTOK: bad = st_opt_int(V, "max-num-tokens-per-batch", optarg, 1, 1 << 20, &bc.max_num_tokens_per_batch); break;
        case O_MAXBS: bad = st_opt_int(V, "max-batch-size", optarg, 1, 4096, &bc.max_batch_size); break;
        case O_KVMEM:
            if (!(bad = st_opt_u64(V, "kv-cache-memory", optarg, &kvmem)) && !kvmem)
                bad = st_opt_usage_error(V, "--kv-cache-memory must be a positive number of bytes");
            break;
        case O_KVFRAC:
            /* st_opt_float's range is closed: a fraction must be above 0 */
            if (!(bad = st_opt_float(V, "kv-cache-fraction", optarg, 0, 1, &kvfrac)) && !(kvfrac > 0))
                bad = st_opt_usage_error(V, "--kv-cache-fraction must be in (0, 1]");
            break;
        case O_CTX: bad = st_opt_int(V, "ctx", optarg, 16, 1 << 22, &bc.max_ctx); break;
        case O_NOPREFIX: bc.prefix_cache = 0; break;
        case O_NAME: hc.model_name = optarg; break;
        case O_KEY:
            keys = st_xrealloc(keys, (size_t)(n_keys + 1) * sizeof *keys);
            keys[n_keys++] = optarg;
            break;
        case O_KEYFILE: hc.api_key_file = optarg; break;
        case O_CERT: hc.tls_cert = optarg; break;
        case O_TLSKEY: hc.tls_key = optarg; break;
        case O_MAXBODY: bad = st_opt_int(V, "max-body-bytes", optarg, 1024, 1 << 30, &maxbody); break;
        case O_MAXQ: bad = st_opt_int(V, "max-queued-requests", optarg, 1, 1 << 20, &hc.max_queued_requests); break;
        case O_GRACE: bad = st_opt_int(V, "shutdown-grace-ms", optarg, 0, 3600000, &hc.shutdown_grace_ms); break;
        case 'n': bad = st_opt_int(V, "nodes", optarg, 1, 64, &n_nodes); break;
        case O_TOKEN: cc.token = optarg; break;
        case O_CPORT: bad = st_opt_int(V, "cluster-port", optarg, 0, 65535, &cport); break;
        case O_CHOST: cc.advertise_host = optarg; break;
        case O_HBTO: bad = st_opt_int(V, "heartbeat-timeout", optarg, 100, 3600000, &cc.heartbeat_timeout_ms); break;
        case O_TRANSPORT:
            if (strcmp(optarg, "auto") && strcmp(optarg, "tcp") && strcmp(optarg, "shm"))
                bad = st_opt_usage_error(V, "--transport takes auto, tcp or shm");
            cc.transport = optarg;
            break;
        case O_ACT: /* --act-dtype f32|bf16|int8, or --activation-compression none|bf16|int8 */
            if (!strcmp(optarg, "f32") || !strcmp(optarg, "none")) cc.act_dtype = ST_ACT_F32;
            else if (!strcmp(optarg, "bf16")) cc.act_dtype = ST_ACT_BF16;
            else if (!strcmp(optarg, "int8")) cc.act_dtype = ST_ACT_I8;
            else bad = st_opt_usage_error(V, "--act-dtype / --activation-compression take f32 (none), bf16 or int8");
            break;
        case O_TRSAMPLE: bad = st_trace_parse_sample(optarg, &trace_sample) ? st_opt_usage_error(V, st_errmsg()) : 0; break;
        case O_TRFILE: trace_file = optarg; break;
        case O_INFLIGHT: bad = st_opt_int(V, "max-inflight", optarg, 1, ST_BATCHER_MAX_INFLIGHT, &inflight); break;
        case 'h': fputs(usage, stdout); free(keys); return 0;
        case ':': free(keys); return st_cli_missing_value(V, argv, optopt);
        default: free(keys); return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad) {
            free(keys);
            return 2;
        }
    }
    if (optind < argc) {
        free(keys);
        return st_cli_extra_arg(V, argv[optind]);
    }
    if (!hc.tls_cert != !hc.tls_key) {
        free(keys);
        return st_opt_usage_error(V, "--tls-cert and --tls-key go together");
    }
    if (kvmem && kvfrac > 0) {
        free(keys);
        return st_opt_usage_error(V, "--kv-cache-memory and --kv-cache-fraction exclude each other");
    }
    if (kvfrac > 0 && n_nodes > 0) {
        free(keys);
        return st_opt_usage_error(V, "--kv-cache-fraction sizes this machine's cache: not with -n (nodes size theirs)");
    }
    if (maxbody)
        hc.max_body_bytes = (size_t)maxbody;
    if (kvmem)
        bc.kv_cache_bytes = (size_t)kvmem;
    if (kvfrac > 0) { /* of the memory the cache lives in (the GPU's under cuda), as asked */
        bc.kv_mem_fraction = kvfrac;
        bc.kv_mem_fraction_exact = 1;
    }
    hc.api_keys = keys;
    hc.n_api_keys = n_keys;

    if (trace_sample >= 0)
        st_trace_set_sample(trace_sample);
    int rc;
    if (trace_file && (rc = st_trace_open_file(trace_file))) {
        free(keys);
        return st_cli_fail(V, rc);
    }
    if (n_nodes > 0) {
        if (cc.token && strlen(cc.token) < 8) {
            free(keys);
            return st_opt_usage_error(V, "--cluster-token must have at least 8 characters");
        }
        if (cc.heartbeat_timeout_ms <= cc.heartbeat_ms)
            cc.heartbeat_ms = cc.heartbeat_timeout_ms / 5 > 0 ? cc.heartbeat_timeout_ms / 5 : 1;
        snprintf(listen, sizeof listen, "0.0.0.0:%d", cport);
        cc.listen = listen;
        cc.n_nodes = n_nodes;
        cc.batcher = bc;
        cc.batcher.max_inflight = inflight; /* 0: one per stage of each pipeline */
        rc = run_cluster(V, &hc, &cc, model);
    } else {
        rc = run_local(V, &hc, &bc, model, device, threads);
    }
    free(keys);
    int trc = trace_file ? st_trace_close_file() : 0;
    return rc ? rc : trc ? st_cli_fail(V, trc) : 0;
}
