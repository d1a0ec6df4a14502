/* `strait run`: the scheduler and the OpenAI-compatible API on this
 * machine (single node: every layer is hosted here). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "sched/batcher.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/opts.h"

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
    "      --kv-cache-memory BYTES       KV cache size (default: a share of free memory)\n"
    "      --ctx N                       context length per sequence (default: the model's)\n"
    "      --disable-prefix-cache        do not share cached prompt blocks\n"
    "      --served-model-name NAME      the \"model\" reported by the API\n"
    "      --api-key KEY                 require Authorization: Bearer KEY (repeatable)\n"
    "      --api-key-file FILE           accepted keys, one per line\n"
    "      --tls-cert FILE --tls-key FILE  serve TLS (ALPN h2 and http/1.1)\n"
    "      --max-body-bytes N            request body limit (default 4194304)\n"
    "      --max-queued-requests N       generations in flight at most (default 256)\n"
    "      --shutdown-grace-ms N         let in-flight requests finish this long on stop (default 5000)\n"
    "  -v, --verbose                     debug logging\n"
    "  -h, --help                        this help\n";

enum {
    O_HOST = 256, O_PORT, O_DEVICE, O_MAXTOK, O_MAXBS, O_KVMEM, O_CTX, O_NOPREFIX, O_NAME, O_KEY, O_KEYFILE,
    O_CERT, O_TLSKEY, O_MAXBODY, O_MAXQ, O_GRACE,
};

int st_cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'},      {"host", 1, 0, O_HOST},     {"port", 1, 0, O_PORT},
        {"threads", 1, 0, 't'},    {"device", 1, 0, O_DEVICE}, {"max-num-tokens-per-batch", 1, 0, O_MAXTOK},
        {"max-batch-size", 1, 0, O_MAXBS}, {"kv-cache-memory", 1, 0, O_KVMEM}, {"ctx", 1, 0, O_CTX},
        {"disable-prefix-cache", 0, 0, O_NOPREFIX}, {"served-model-name", 1, 0, O_NAME},
        {"api-key", 1, 0, O_KEY},  {"api-key-file", 1, 0, O_KEYFILE}, {"tls-cert", 1, 0, O_CERT},
        {"tls-key", 1, 0, O_TLSKEY}, {"max-body-bytes", 1, 0, O_MAXBODY},
        {"max-queued-requests", 1, 0, O_MAXQ}, {"shutdown-grace-ms", 1, 0, O_GRACE},
        {"verbose", 0, 0, 'v'},    {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *V = "run", *model = NULL, *device = NULL;
    st_http_server_config hc = st_cli_api_config_default();
    st_batcher_config bc = st_batcher_config_default();
    int threads = 0, c, bad = 0, n_keys = 0, maxbody = 0;
    uint64_t kvmem = 0;
    const char **keys = NULL;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:t:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &threads); break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case O_HOST: hc.host = optarg; break;
        case O_PORT: bad = st_opt_int(V, "port", optarg, 0, 65535, &hc.port); break;
        case O_DEVICE: device = optarg; break;
        case O_MAXTOK: bad = st_opt_int(V, "max-num-tokens-per-batch", optarg, 1, 1 << 20, &bc.max_num_tokens_per_batch); break;
        case O_MAXBS: bad = st_opt_int(V, "max-batch-size", optarg, 1, 4096, &bc.max_batch_size); break;
        case O_KVMEM: bad = st_opt_u64(V, "kv-cache-memory", optarg, &kvmem); break;
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
    if (maxbody)
        hc.max_body_bytes = (size_t)maxbody;
    if (kvmem)
        bc.kv_cache_bytes = (size_t)kvmem;
    hc.api_keys = keys;
    hc.n_api_keys = n_keys;

    st_cli_model cm;
    int rc = st_cli_load_model(V, model, device, threads, &cm);
    if (rc) {
        free(keys);
        return rc;
    }
    if (!cm.model->tok) {
        st_cli_unload(&cm);
        free(keys);
        return st_cli_fail(V, st_err(ST_EINVAL, "%s has no tokenizer", cm.model->path));
    }
    st_batcher *b = NULL;
    st_cli_install_stop_signals();
    if ((rc = st_batcher_create(cm.model, cm.backend, &bc, &b)))
        rc = st_cli_fail(V, rc);
    else
        rc = st_cli_serve_batcher(V, &hc, b, cm.model->path, cm.model->tok);
    if (b)
        st_batcher_destroy(b);
    st_cli_unload(&cm);
    free(keys);
    return rc;
}
