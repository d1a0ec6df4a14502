/* `strait serve`: one stage of a manual pipeline, no scheduler. The stage
 * holding layer 0 is the head: it runs the batcher and the OpenAI API, runs
 * its own layers, and sends hidden states along the ring
 *   head --next--> stage --next--> ... --next--> head (its --listen)
 * Every other stage listens for its upstream, runs its layers and sends to
 * --next; the last one's --next is the head's --listen address. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "dataplane/dpdk.h"
#include "dataplane/poller.h"
#include "dataplane/transport.h"
#include "engine/stage.h"
#include "http/server.h"
#include "sched/batcher.h"
#include "sched/pipeline.h"
#include "sched/pipeline_stage.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/models.h"
#include "tools/opts.h"
#include "tools/prefault.h"

static const char usage[] =
    "usage: strait serve --model-path M --start-layer A --end-layer B [--listen H:P] [--next H:P] [options]\n"
    "\n"
    "Serve layers [A, B) of M as one stage of a manual pipeline. The stage with\n"
    "A = 0 is the head: it schedules requests and serves the OpenAI API on\n"
    "--host/--port; its --next is the second stage, and the last stage's --next\n"
    "is the head's --listen address. Greedy output equals a single machine's.\n"
    "\n"
    "  -m, --model-path M                model file or directory (or a cached model name)\n"
    "      --start-layer A               first layer held here (0: the head)\n"
    "      --end-layer B                 one past the last layer held here (-1: to the end)\n"
    "      --listen H:P                  data-plane address to listen on (shm: a socket path or @name)\n"
    "      --next H:P                    the next stage (the head, from the last stage)\n"
    "      --transport T                 tcp | shm | dpdk (default tcp; dpdk: --listen/--next are DPDK\n"
    "                                    device arguments, e.g. net_memif,socket=/run/s.sock)\n"
    "      --dpdk-args \"...\"             extra DPDK EAL arguments\n"
    "      --dpdk-peer MAC,IP            static neighbour of the dpdk links (default: learnt)\n"
    "      --dataplane-cores LIST        cores for the polling threads of the links (and the DPDK EAL),\n"
    "                                    e.g. 2,3 or 2-5 (env STRAIT_DATAPLANE_CORES does the same)\n"
    "      --dpdk-hugepages N            2 MiB hugepages dpdk needs (root reserves them; default:\n"
    "                                    use free ones, else ordinary memory)\n"
    "      --activation-compression C    none | bf16 | int8 hidden states on the wire (head; default none:\n"
    "                                    f32, exact; bf16 halves the bytes; int8, one scale per token,\n"
    "                                    about quarters them for slow links and is lossy)\n"
    "      --act-dtype D                 f32 | bf16 | int8: the same choice by dtype name\n"
    "      --link-key-file F             tcp/shm links prove this secret (the first line of F; env\n"
    "                                    STRAIT_LINK_KEY gives it directly) before carrying anything;\n"
    "                                    every stage needs the same one. It authenticates, it does not\n"
    "                                    encrypt: across the internet use a VPN as well\n"
    "  -t, --threads N                   CPU threads (default: all cores)\n"
    "      --device D                    auto | cpu | cuda | cuda:N (default auto)\n"
    "  head only:\n"
    "      --host H --port P             the API (default localhost:3001)\n"
    "      --max-num-tokens-per-batch N  rows per step (default 512)\n"
    "      --max-batch-size N            sequences at once (default 16)\n"
    "      --kv-blocks N                 KV blocks of 16 tokens on every stage (default: from free memory)\n"
    "      --ctx N                       context length per sequence\n"
    "      --max-inflight N              batches in flight on the pipeline, one per stage (default 2:\n"
    "                                    the head and one more; 1: one batch at a time)\n"
    "      --served-model-name NAME      the \"model\" reported by the API\n"
    "  -v, --verbose                     debug logging\n"
    "  -h, --help                        this help\n";

enum { O_START = 256, O_END, O_LISTEN, O_NEXT, O_TRANSPORT, O_ACT, O_DEVICE, O_HOST, O_PORT, O_MAXTOK, O_MAXBS,
       O_KVB, O_CTX, O_NAME, O_COMPRESS, O_INFLIGHT, O_DPDK_ARGS, O_DPDK_PEER, O_DP_CORES, O_DPDK_HUGE,
       O_LINK_KEY };

/* The link-key secret: the first line of `file`, else $STRAIT_LINK_KEY,
 * else none (*secret empty). Returns 0, or prints why and returns 2. */
static int read_link_secret(const char *V, const char *file, char *secret, size_t cap)
{
    secret[0] = 0;
    if (!file) {
        const char *env = getenv("STRAIT_LINK_KEY");
        if (env && strlen(env) >= cap)
            return st_opt_usage_error(V, "STRAIT_LINK_KEY is too long");
        snprintf(secret, cap, "%s", env ? env : "");
        return 0;
    }
    FILE *f = fopen(file, "r");
    if (!f) {
        char why[512];
        snprintf(why, sizeof why, "--link-key-file %s: cannot open it", file);
        return st_opt_usage_error(V, why);
    }
    int ok = fgets(secret, (int)cap, f) != NULL;
    fclose(f);
    secret[strcspn(secret, "\r\n")] = 0;
    if (!ok || !*secret) {
        char why[512];
        snprintf(why, sizeof why, "--link-key-file %s: its first line is empty", file);
        return st_opt_usage_error(V, why);
    }
    return 0;
}

/* A non-head stage: accept the upstream, connect downstream, serve; again
 * when the upstream leaves, until a signal. */
static int run_stage(const char *V, st_model *m, st_backend *be, const char *transport, const char *listen,
                     const char *next, const st_link_opts *lo)
{
    st_listener *l;
    int rc = st_listen(transport, listen, lo, &l);
    if (rc)
        return st_cli_fail(V, rc);
    ST_INFO("stage %d..%d of %d: listening on %s (%s), next %s", m->layer_start, m->layer_end, m->cfg.n_layers,
            st_listener_addr(l), transport, next);
    while (!*st_cli_stop_flag()) {
        st_link *in = NULL, *out = NULL;
        rc = st_accept(l, 500, &in);
        if (rc == ST_ETIMEDOUT)
            continue;
        if (rc)
            break;
        if ((rc = st_connect(transport, next, lo, 30000, &out))) {
            ST_ERROR("stage: cannot reach the next stage %s: %s", next, st_errmsg());
            st_link_close(in);
            continue;
        }
        ST_INFO("stage %d..%d: upstream connected", m->layer_start, m->layer_end);
        rc = st_pipe_stage_serve(in, out, m, be, st_cli_stop_flag(), NULL);
        st_link_close(out);
        st_link_close(in);
        rc = ST_OK;
    }
    st_listener_close(l);
    return rc ? st_cli_fail(V, rc) : 0;
}

int st_cmd_serve(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model-path", 1, 0, 'm'}, {"start-layer", 1, 0, O_START}, {"end-layer", 1, 0, O_END},
        {"listen", 1, 0, O_LISTEN}, {"next", 1, 0, O_NEXT}, {"transport", 1, 0, O_TRANSPORT},
        {"act-dtype", 1, 0, O_ACT}, {"activation-compression", 1, 0, O_COMPRESS}, {"threads", 1, 0, 't'}, {"device", 1, 0, O_DEVICE}, {"host", 1, 0, O_HOST},
        {"port", 1, 0, O_PORT}, {"max-num-tokens-per-batch", 1, 0, O_MAXTOK}, {"max-batch-size", 1, 0, O_MAXBS},
        {"kv-blocks", 1, 0, O_KVB}, {"ctx", 1, 0, O_CTX}, {"max-inflight", 1, 0, O_INFLIGHT}, {"served-model-name", 1, 0, O_NAME},
        {"dpdk-args", 1, 0, O_DPDK_ARGS}, {"dpdk-peer", 1, 0, O_DPDK_PEER}, {"dataplane-cores", 1, 0, O_DP_CORES},
        {"dpdk-hugepages", 1, 0, O_DPDK_HUGE}, {"link-key-file", 1, 0, O_LINK_KEY}, {"verbose", 0, 0, 'v'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *V = "serve", *model = NULL, *device = NULL, *listen = NULL, *next = NULL, *transport = "tcp";
    const char *key_file = NULL;
    st_http_server_config hc = st_cli_api_config_default();
    st_batcher_config bc = st_batcher_config_default();
    bc.max_inflight = 2; /* a pipeline has the head and at least one more stage (a whole model ignores it) */
    int start = -1, end = -1, threads = 0, act = ST_ACT_F32, c, bad = 0, dpdk_set = 0;
    st_dpdk_config dc = {.hugepages = -1};
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:t:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &threads); break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case O_START: bad = st_opt_int(V, "start-layer", optarg, 0, 1 << 20, &start); break;
        case O_END: bad = st_opt_int(V, "end-layer", optarg, -1, 1 << 20, &end); break;
        case O_LISTEN: listen = optarg; break;
        case O_NEXT: next = optarg; break;
        case O_TRANSPORT: transport = optarg; break;
        case O_ACT:
            if (!strcmp(optarg, "f32")) act = ST_ACT_F32;
            else if (!strcmp(optarg, "bf16")) act = ST_ACT_BF16;
            else if (!strcmp(optarg, "int8")) act = ST_ACT_I8;
            else bad = st_opt_usage_error(V, "--act-dtype takes f32, bf16 or int8");
            break;
        case O_COMPRESS:
            if (!strcmp(optarg, "none")) act = ST_ACT_F32;
            else if (!strcmp(optarg, "bf16")) act = ST_ACT_BF16;
            else if (!strcmp(optarg, "int8")) act = ST_ACT_I8;
            else bad = st_opt_usage_error(V, "--activation-compression takes none, bf16 or int8");
            break;
        case O_DEVICE: device = optarg; break;
        case O_HOST: hc.host = optarg; break;
        case O_PORT: bad = st_opt_int(V, "port", optarg, 0, 65535, &hc.port); break;
        case O_MAXTOK: bad = st_opt_int(V, "max-num-tokens-per-batch", optarg, 1, 1 << 20, &bc.max_num_tokens_per_batch); break;
        case O_MAXBS: bad = st_opt_int(V, "max-batch-size", optarg, 1, 4096, &bc.max_batch_size); break;
        case O_KVB: bad = st_opt_int(V, "kv-blocks", optarg, 1, 1 << 28, &bc.n_blocks); break;
        case O_CTX: bad = st_opt_int(V, "ctx", optarg, 16, 1 << 22, &bc.max_ctx); break;
        case O_NAME: hc.model_name = optarg; break;
        case O_INFLIGHT: bad = st_opt_int(V, "max-inflight", optarg, 1, ST_BATCHER_MAX_INFLIGHT, &bc.max_inflight); break;
        case O_DPDK_ARGS: dc.eal_args = optarg, dpdk_set = 1; break;
        case O_DPDK_PEER: dc.peer = optarg, dpdk_set = 1; break;
        case O_DP_CORES: dc.cores = optarg; break;
        case O_LINK_KEY: key_file = optarg; break;
        case O_DPDK_HUGE: bad = st_opt_int(V, "dpdk-hugepages", optarg, 0, 1 << 20, &dc.hugepages), dpdk_set = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);
    if (!model || start < 0)
        return st_opt_usage_error(V, "--model-path and --start-layer are required");
    int known = 0;
    for (const char *const *t = st_transport_names(); *t; t++)
        known |= !strcmp(*t, transport);
    if (!known)
        return st_opt_usage_error(V, "--transport must be tcp, shm or dpdk (dpdk: in a build with DPDK)");
    char secret[1024];
    if (read_link_secret(V, key_file, secret, sizeof secret))
        return 2;
    st_link_opts link_opts;
    st_link_opts_keyed(&link_opts, transport, secret);
    if (*secret && !link_opts.has_key)
        return st_opt_usage_error(V, "a link key (--link-key-file, STRAIT_LINK_KEY) works with --transport tcp or shm only");
    explicit_bzero(secret, sizeof secret);
    /* the polling cores of every link (and, with DPDK, its EAL lcores) */
    if (dc.cores && st_poller_set_cores(dc.cores) != ST_OK)
        return st_opt_usage_error(V, st_errmsg());
    if ((dpdk_set || (dc.cores && !strcmp(transport, "dpdk"))) && st_dpdk_configure(&dc) != ST_OK)
        return st_opt_usage_error(V, st_errmsg());

    char path[4096];
    int rc = st_model_resolve(model, 0, path, sizeof path);
    if (rc)
        return st_cli_fail(V, rc);
    st_model *m = NULL;
    if ((rc = st_model_load(path, start, end, &m)))
        return st_cli_fail(V, rc);
    st_cli_prefault(m);
    int head = st_model_is_first(m), whole = head && st_model_is_last(m);
    if (!whole && !next) {
        st_model_free(m);
        return st_opt_usage_error(V, "--next is required unless this stage holds every layer");
    }
    if (!whole && !listen) {
        st_model_free(m);
        return st_opt_usage_error(V, "--listen is required unless this stage holds every layer");
    }
    st_backend *be = st_cli_backend(device, threads);
    if (!be) {
        st_model_free(m);
        return st_cli_fail(V, ST_ENOTSUP);
    }
    st_cli_install_stop_signals();
    if (!head) {
        rc = run_stage(V, m, be, transport, listen, next, &link_opts);
        st_backend_destroy(be);
        st_model_free(m);
        return rc;
    }

    /* the head: batcher (with a pipeline it only schedules and samples: the
     * pipeline executor holds the KV and activations), pipeline, API */
    st_listener *back_l = NULL;
    st_link *nk = NULL, *bk = NULL;
    st_pipeline *p = NULL;
    st_batcher *b = NULL;
    if (!m->tok) {
        rc = st_cli_fail(V, st_err(ST_EINVAL, "%s has no tokenizer", path));
        goto out;
    }
    bc.external_exec = !whole;
    if ((rc = st_batcher_create(m, be, &bc, &b))) {
        rc = st_cli_fail(V, rc);
        goto out;
    }
    if (!whole) {
        st_batcher_stats bs;
        st_batcher_get_stats(b, &bs);
        if ((rc = st_listen(transport, listen, &link_opts, &back_l))) {
            rc = st_cli_fail(V, rc);
            goto out;
        }
        ST_INFO("head: layers 0..%d of %d, next stage %s, results on %s (%s)", m->layer_end, m->cfg.n_layers, next,
                st_listener_addr(back_l), transport);
        if ((rc = st_connect(transport, next, &link_opts, 60000, &nk)) || (rc = st_accept(back_l, 60000, &bk))) {
            rc = st_cli_fail(V, rc);
            goto out;
        }
        st_pipeline_config pc = {.local = m, .be = be, .next = nk, .back = bk, .act_dtype = act,
                                 .n_blocks = bs.kv_blocks_total, .block_size = bs.block_size,
                                 .max_tokens = bc.max_num_tokens_per_batch, .max_seqs = bc.max_batch_size};
        if ((rc = st_pipeline_create(&pc, &p))) {
            rc = st_cli_fail(V, rc);
            goto out;
        }
        st_batch_async_exec x = st_pipeline_async_exec(p);
        st_batcher_set_async_executor(b, &x);
    }
    rc = st_cli_serve_batcher(V, &hc, b, path, m->tok);
out:
    if (b)
        st_batcher_destroy(b);
    st_pipeline_destroy(p);
    if (nk)
        st_link_close(nk);
    if (bk)
        st_link_close(bk);
    if (back_l)
        st_listener_close(back_l);
    st_backend_destroy(be);
    st_model_free(m);
    return rc;
}
