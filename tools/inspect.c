/* `strait inspect MODEL`: architecture, dimensions, metadata and tensors. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/st_common.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/safetensors.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/models.h"

static const char usage[] = "usage: strait inspect [--tensors] MODEL\n"
                            "\n"
                            "Prints a model's architecture, dimensions, tensor types and sizes.\n"
                            "  --tensors   list every tensor (default: a summary by type)\n";

static void print_kv(const st_gguf *g, size_t i)
{
    const char *key = st_gguf_kv_key(g, i);
    st_gguf_type t = st_gguf_kv_type(g, i);
    uint32_t u;
    int64_t s;
    float f;
    int b;
    const char *str;
    size_t n;
    st_gguf_type et;
    printf("  %-44s ", key);
    if (t == ST_GGUF_STRING && !st_gguf_get_str(g, key, &str, &n))
        printf("\"%.*s\"%s\n", (int)ST_MIN(n, 60), str, n > 60 ? "..." : "");
    else if (t == ST_GGUF_ARRAY && !st_gguf_get_arr(g, key, &et, &n))
        printf("array of %zu\n", n);
    else if (t == ST_GGUF_BOOL && !st_gguf_get_bool(g, key, &b))
        printf("%s\n", b ? "true" : "false");
    else if ((t == ST_GGUF_FLOAT32 || t == ST_GGUF_FLOAT64) && !st_gguf_get_f32(g, key, &f))
        printf("%g\n", f);
    else if (!st_gguf_get_i64(g, key, &s))
        printf("%lld\n", (long long)s);
    else if (!st_gguf_get_u32(g, key, &u))
        printf("%u\n", u);
    else
        printf("?\n");
}

static void print_tensor(const char *name, const char *type, const st_tensor *t)
{
    printf("  %-40s %-6s [", name, type);
    for (int d = 0; d < t->n_dims; d++)
        printf(d ? ", %lld" : "%lld", (long long)t->ne[d]);
    printf("] %.2f MB\n", (double)t->nbytes / 1e6);
}

int st_cmd_inspect(int argc, char **argv)
{
    static const struct option lo[] = {{"tensors", 0, 0, 'T'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int all = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'T': all = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value("inspect", argv, optopt);
        default: return st_cli_unknown_option("inspect", argv, optopt);
        }
    }
    if (argc - optind > 1)
        return st_cli_extra_arg("inspect", argv[optind + 1]);
    char path[4096];
    int rc = st_model_resolve(optind < argc ? argv[optind] : NULL, 0, path, sizeof path);
    if (rc)
        return st_cli_fail("inspect", rc);

    /* per-type totals */
    double bytes[64] = {0};
    const char *names[64] = {0};
    int counts[64] = {0};
    size_t n_tensors = 0;
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode) && !strstr(path, ".safetensors")) {
        st_gguf *g;
        if ((rc = st_gguf_open(path, ST_GGUF_ALLOW_UNKNOWN_TYPES, &g)))
            return st_cli_fail("inspect", rc);
        printf("%s\n  format: GGUF v%u, %.1f MB, %zu tensors, %zu metadata keys\n", path, st_gguf_version(g),
               (double)st_gguf_file_size(g) / 1e6, st_gguf_n_tensors(g), st_gguf_n_kv(g));
        printf("metadata:\n");
        for (size_t i = 0; i < st_gguf_n_kv(g); i++)
            print_kv(g, i);
        n_tensors = st_gguf_n_tensors(g);
        if (all)
            printf("tensors:\n");
        for (size_t i = 0; i < n_tensors; i++) {
            const st_tensor *t = st_gguf_tensor(g, i);
            uint32_t raw = st_gguf_tensor_raw_type(g, i);
            const char *tn = st_gguf_type_name(raw);
            if (all)
                print_tensor(t->name, tn, t);
            int slot = raw < 64 ? (int)raw : 63;
            names[slot] = tn;
            counts[slot]++;
            bytes[slot] += (double)t->nbytes;
        }
        st_gguf_close(g);
    } else {
        st_safetensors *st;
        if ((rc = st_safetensors_open(path, &st)))
            return st_cli_fail("inspect", rc);
        n_tensors = st_safetensors_n_tensors(st);
        printf("%s\n  format: safetensors, %zu tensors\n", path, n_tensors);
        if (all)
            printf("tensors:\n");
        for (size_t i = 0; i < n_tensors; i++) {
            const st_tensor *t = st_safetensors_tensor(st, i);
            if (all)
                print_tensor(t->name, st_dtype_name(t->type), t);
            names[t->type] = st_dtype_name(t->type);
            counts[t->type]++;
            bytes[t->type] += (double)t->nbytes;
        }
        st_safetensors_close(st);
    }
    printf("tensor types:\n");
    for (int i = 0; i < 64; i++)
        if (counts[i])
            printf("  %-6s %4d tensors %9.2f MB\n", names[i], counts[i], bytes[i] / 1e6);

    /* the model's shape, when Strait can load it */
    st_model *m;
    if ((rc = st_model_load(path, 0, -1, &m))) {
        /* what the file holds was printed above; why it cannot run goes to
         * stderr like every other error, with a non-zero exit */
        printf("model: not loadable by strait\n");
        fflush(stdout);
        return st_cli_fail("inspect", rc);
    }
    const st_model_config *k = &m->cfg;
    printf("model:\n  architecture %s\n  layers %d\n  hidden %d\n  heads %d (kv %d, head_dim %d)\n  ffn %d\n"
           "  vocab %d\n  context %d\n  rope %s theta %g (%d dims)%s\n  norm_eps %g\n  output %s\n  weights %.1f MB\n",
           st_arch_name(k->arch), k->n_layers, k->dim, k->n_heads, k->n_kv_heads, k->head_dim, k->ffn_dim,
           k->vocab_size, k->ctx_len, k->rope_style == ST_ROPE_NEOX ? "neox" : "interleaved", k->rope_theta, k->n_rot,
           k->rope_factor > 0 ? ", llama3 scaling" : k->rope_factor < 0 ? ", linear scaling" : "", k->norm_eps,
           k->tied_output ? "tied to the embedding" : "separate", (double)m->weight_bytes / 1e6);
    st_model_free(m);
    return 0;
}
