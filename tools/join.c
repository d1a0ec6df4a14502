/* `strait join`: run this machine as a node of a cluster. The node logic is
 * in sched/cluster/worker.c; this file parses the flags and supplies what
 * sched/ must not do itself: turning the scheduler's model reference into
 * a local file (path, cached name, hf:) and making a backend for --device. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/st_common.h"
#include "sched/cluster/worker.h"
#include "tools/prefault.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/models.h"
#include "tools/opts.h"

static const char usage[] =
    "usage: strait join [-s HOST:PORT] [--cluster-token T] [options]\n"
    "\n"
    "Join a cluster as a node: report this machine's hardware to the scheduler\n"
    "(`strait run -n N` prints the command to run), load the layer range it\n"
    "assigns, and serve it as a pipeline stage until SIGINT/SIGTERM. The node\n"
    "rejoins by itself when the scheduler restarts. Its identity is a key file,\n"
    "so a restarted node comes back as the same node.\n"
    "\n"
    "  -s, --scheduler HOST:PORT   the scheduler's control address (default: find it on the LAN)\n"
    "      --cluster-token T       the cluster's secret (default: env STRAIT_CLUSTER_TOKEN)\n"
    "      --host H                data-plane address to listen on (default 0.0.0.0)\n"
    "      --port P                data-plane TCP port (default 3000; 0: any free port)\n"
    "      --advertise-host H      address other nodes reach this one at (default: the local\n"
    "                              address of the connection to the scheduler)\n"
    "      --name N                node name shown by the scheduler (default: host name)\n"
    "      --memory-limit BYTES    memory offered for weights + KV (k/M/G/T suffixes;\n"
    "                              default: a share of free memory)\n"
    "      --start-layer A --end-layer B  ask for layers [A, B) instead of the scheduler's choice\n"
    "  -t, --threads N             CPU threads (default: all cores)\n"
    "      --device D              auto | cpu | cuda | cuda:N (default auto)\n"
    "      --key-file F            node identity (default $STRAIT_HOME/node.key, created on first use;\n"
    "                              a second node on this host takes node-2.key, ...)\n"
    "      --no-shm                do not offer shared memory to peers on this host\n"
    "  -v, --verbose               debug logging\n"
    "  -h, --help                  this help\n";

enum { O_TOKEN = 256, O_HOST, O_PORT, O_ADV, O_NAME, O_MEM, O_START, O_END, O_DEVICE, O_KEYFILE, O_NOSHM };

/* "123", "512M", "16G" (powers of 1024). */
static int parse_bytes(const char *V, const char *name, const char *s, uint64_t *out)
{
    char num[32];
    size_t n = strlen(s);
    int shift = 0;
    if (n && strchr("kKmMgGtT", s[n - 1])) {
        switch (s[n - 1]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: shift = 40; break;
        }
        n--;
    }
    if (n == 0 || n >= sizeof num) {
        fprintf(stderr, "strait %s: invalid value '%s' for --%s (bytes, with an optional k/M/G/T suffix)\n", V, s,
                name);
        return -1;
    }
    memcpy(num, s, n);
    num[n] = 0;
    uint64_t v;
    if (strspn(num, "0123456789") != n) {
        fprintf(stderr, "strait %s: invalid value '%s' for --%s (bytes, with an optional k/M/G/T suffix)\n", V, s,
                name);
        return -1;
    }
    if (st_opt_u64(V, name, num, &v))
        return -1;
    if (shift && v > (UINT64_MAX >> shift)) {
        fprintf(stderr, "strait %s: --%s %s is too large\n", V, name, s);
        return -1;
    }
    *out = v << shift;
    return 0;
}

/* ---- the shard loader handed to the worker ------------------------------------------ */
typedef struct join_ctx {
    const char *device;
    int threads;
} join_ctx;

static int load_shard(void *ctx, const char *ref, uint64_t model_bytes, int start, int end, st_model **m,
                      st_backend **be)
{
    join_ctx *jc = ctx;
    char path[4096];
    *m = NULL;
    *be = NULL;
    int rc = st_model_resolve(ref, 1, path, sizeof path);
    if (rc)
        return rc;
    struct stat sb;
    if (model_bytes && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size != model_bytes)
        return st_err(ST_EINVAL, "this node's %s is %llu bytes, the scheduler's is %llu: not the same model", path,
                      (unsigned long long)sb.st_size, (unsigned long long)model_bytes);
    if ((rc = st_model_load(path, start, end, m)))
        return rc;
    st_cli_prefault(*m);
    *be = st_cli_backend(jc->device, jc->threads);
    if (!*be) {
        st_model_free(*m);
        *m = NULL;
        return ST_ENOTSUP;
    }
    return ST_OK;
}

static void unload_shard(void *ctx, st_model *m, st_backend *be)
{
    (void)ctx;
    st_backend_destroy(be);
    st_model_free(m);
}

int st_cmd_join(int argc, char **argv)
{
    static const struct option lo[] = {
        {"scheduler", 1, 0, 's'}, {"cluster-token", 1, 0, O_TOKEN}, {"host", 1, 0, O_HOST}, {"port", 1, 0, O_PORT},
        {"advertise-host", 1, 0, O_ADV}, {"name", 1, 0, O_NAME}, {"memory-limit", 1, 0, O_MEM},
        {"start-layer", 1, 0, O_START}, {"end-layer", 1, 0, O_END}, {"threads", 1, 0, 't'},
        {"device", 1, 0, O_DEVICE}, {"key-file", 1, 0, O_KEYFILE}, {"no-shm", 0, 0, O_NOSHM},
        {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *V = "join";
    st_worker_config wc = st_worker_config_default();
    join_ctx jc = {.device = "auto"};
    int c, bad = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":s:t:vh", lo, NULL)) != -1) {
        switch (c) {
        case 's': wc.scheduler = optarg; break;
        case O_TOKEN: wc.token = optarg; break;
        case O_HOST: wc.host = optarg; break;
        case O_PORT: bad = st_opt_int(V, "port", optarg, 0, 65535, &wc.port); break;
        case O_ADV: wc.advertise_host = optarg; break;
        case O_NAME: wc.name = optarg; break;
        case O_MEM: bad = parse_bytes(V, "memory-limit", optarg, &wc.memory_limit); break;
        case O_START: bad = st_opt_int(V, "start-layer", optarg, 0, 1 << 20, &wc.start_layer); break;
        case O_END: bad = st_opt_int(V, "end-layer", optarg, 1, 1 << 20, &wc.end_layer); break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &wc.threads); break;
        case O_DEVICE: wc.device = jc.device = optarg; break;
        case O_KEYFILE: wc.key_file = optarg; break;
        case O_NOSHM: wc.shm = 0; break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);
    if (!wc.token || !*wc.token)
        wc.token = getenv("STRAIT_CLUSTER_TOKEN");
    if (!wc.token || !*wc.token)
        return st_opt_usage_error(V, "a cluster token is required: --cluster-token T or env STRAIT_CLUSTER_TOKEN "
                                     "(strait run -n prints it)");
    if ((wc.start_layer >= 0) != (wc.end_layer >= 0))
        return st_opt_usage_error(V, "--start-layer and --end-layer go together");
    if (wc.start_layer >= 0 && wc.end_layer <= wc.start_layer)
        return st_opt_usage_error(V, "--end-layer must be greater than --start-layer");
    /* a bad --device fails now, not at the first assignment */
    st_backend *probe_be = st_cli_backend(jc.device, 1);
    if (!probe_be)
        return st_cli_fail(V, ST_EINVAL);
    st_backend_destroy(probe_be);
    jc.threads = wc.threads;
    wc.load = load_shard;
    wc.unload = unload_shard;
    wc.load_ctx = &jc;
    st_cli_install_stop_signals();
    int rc = st_worker_run(&wc, st_cli_stop_flag());
    return rc ? st_cli_fail(V, rc) : 0;
}
