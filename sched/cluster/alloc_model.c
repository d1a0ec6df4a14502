/* Layer allocation, part 1: what a layer range costs, read from the tensor
 * table of a model file (the weights themselves are never touched: the file
 * is mapped, but only its header is read). */
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../common/st_common.h"
#include "../../engine/gguf.h"
#include "../../engine/safetensors.h"

/* The KV cache is f16 on every backend (engine/forward.h st_kv_init; the
 * batcher sizes it with 2-byte elements too). */
#define KV_ELEM_BYTES 2

/* Tensor names of the two file layouts (cf. engine/model.c). */
typedef struct {
    const char *layer_prefix; /* followed by the layer number and '.' */
    const char *embed, *out_norm, *output;
    const char *k_proj_0;     /* layer 0's K projection: (kv_dim, dim) */
} names;

static const names gguf_names = {"blk.", "token_embd.weight", "output_norm.weight", "output.weight",
                                 "blk.0.attn_k.weight"};
static const names hf_names = {"model.layers.", "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                               "model.layers.0.self_attn.k_proj.weight"};

/* The layer number of a tensor named "<prefix>N.<rest>", or -1. */
static int layer_of(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl))
        return -1;
    const char *p = name + pl;
    if (*p < '0' || *p > '9')
        return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9' && v < 1000000)
        v = v * 10 + (*p++ - '0');
    return *p == '.' && v < 1000000 ? (int)v : -1;
}

/* Generic view over either reader's tensor table. */
typedef struct {
    const st_gguf *g;
    const st_safetensors *st;
} table;

static size_t tab_n(const table *t) { return t->g ? st_gguf_n_tensors(t->g) : st_safetensors_n_tensors(t->st); }
static const st_tensor *tab_at(const table *t, size_t i)
{
    return t->g ? st_gguf_tensor(t->g, i) : st_safetensors_tensor(t->st, i);
}
static const st_tensor *tab_find(const table *t, const char *name)
{
    return t->g ? st_gguf_find_tensor(t->g, name) : st_safetensors_find(t->st, name);
}

static int costs_from_table(const char *path, const table *t, const names *nm, int ctx, st_alloc_model *out)
{
    /* pass 1: how many layers */
    int n_layers = 0;
    for (size_t i = 0; i < tab_n(t); i++) {
        int l = layer_of(tab_at(t, i)->name, nm->layer_prefix);
        if (l >= n_layers)
            n_layers = l + 1;
    }
    if (!n_layers)
        return st_err(ST_EINVAL, "%s: no layer tensors (named %sN.*)", path, nm->layer_prefix);
    /* pass 2: bytes and parameters of each layer */
    uint64_t *bytes = st_xcalloc((size_t)n_layers, sizeof *bytes);
    uint64_t *params = st_xcalloc((size_t)n_layers, sizeof *params);
    for (size_t i = 0; i < tab_n(t); i++) {
        const st_tensor *x = tab_at(t, i);
        int l = layer_of(x->name, nm->layer_prefix);
        if (l >= 0) {
            bytes[l] += x->nbytes;
            params[l] += (uint64_t)st_tensor_nelem(x);
        }
    }
    uint64_t max_bytes = 0, max_params = 0;
    int rc = ST_OK;
    for (int l = 0; l < n_layers; l++) {
        if (!bytes[l] && !rc)
            rc = st_err(ST_EINVAL, "%s: layer %d of %d has no tensors", path, l, n_layers);
        max_bytes = ST_MAX(max_bytes, bytes[l]);
        max_params = ST_MAX(max_params, params[l]);
    }
    free(bytes);
    free(params);
    if (rc)
        return rc;

    const st_tensor *embed = tab_find(t, nm->embed), *norm = tab_find(t, nm->out_norm);
    const st_tensor *output = tab_find(t, nm->output), *k = tab_find(t, nm->k_proj_0);
    if (!embed)
        return st_err(ST_ENOENT, "%s: missing tensor %s", path, nm->embed);
    if (!norm)
        return st_err(ST_ENOENT, "%s: missing tensor %s", path, nm->out_norm);
    if (!k || k->n_dims != 2 || k->ne[1] <= 0)
        return st_err(ST_ENOENT, "%s: missing or malformed tensor %s (gives the KV width)", path, nm->k_proj_0);

    memset(out, 0, sizeof *out);
    out->n_layers = n_layers;
    out->layer_bytes = max_bytes;
    out->embed_bytes = embed->nbytes;
    out->head_bytes = norm->nbytes + (output ? output->nbytes : embed->nbytes); /* tied: the embedding again */
    out->kv_bytes_per_token = 2 * (uint64_t)k->ne[1] * KV_ELEM_BYTES;            /* K and V, kv_dim each */
    out->min_kv_tokens = ctx;
    out->flops_per_token = 2.0 * (double)max_params; /* one multiply-add per weight */
    return ST_OK;
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int st_alloc_model_from_file(const char *path, int ctx, st_alloc_model *out)
{
    if (!path || !out)
        return st_err(ST_EINVAL, "alloc: model path or output is NULL");
    if (ctx <= 0)
        return st_err(ST_EINVAL, "alloc: context of %d tokens (must be > 0)", ctx);
    size_t n = strlen(path);
    int rc;
    if (is_dir(path) || (n >= 12 && !strcmp(path + n - 12, ".safetensors"))) {
        st_safetensors *st = NULL;
        if ((rc = st_safetensors_open(path, &st)))
            return rc;
        table t = {NULL, st};
        rc = costs_from_table(path, &t, &hf_names, ctx, out);
        st_safetensors_close(st);
        return rc;
    }
    st_gguf *g = NULL;
    if ((rc = st_gguf_open(path, 0, &g)))
        return rc;
    table t = {g, NULL};
    rc = costs_from_table(path, &t, &gguf_names, ctx, out);
    /* the metadata's layer count, when present, must agree with the table */
    const char *arch;
    size_t an;
    if (!rc && !st_gguf_get_str(g, "general.architecture", &arch, &an)) {
        char key[96];
        uint32_t bc;
        snprintf(key, sizeof key, "%.*s.block_count", (int)ST_MIN(an, 64), arch);
        if (!st_gguf_get_u32(g, key, &bc) && bc != (uint32_t)out->n_layers)
            rc = st_err(ST_EINVAL, "%s: %s is %u but the tensors name %d layers", path, key, bc, out->n_layers);
    }
    st_gguf_close(g);
    return rc;
}

uint64_t st_alloc_stage_bytes(const st_alloc_model *m, int start, int end, uint64_t kv_tokens)
{
    if (!m || start < 0 || start >= end || end > m->n_layers)
        return UINT64_MAX;
    uint64_t kv, per_layer, b;
    if (__builtin_mul_overflow(kv_tokens, m->kv_bytes_per_token, &kv) ||
        __builtin_add_overflow(kv, m->layer_bytes, &per_layer) ||
        __builtin_mul_overflow(per_layer, (uint64_t)(end - start), &b) ||
        (start == 0 && __builtin_add_overflow(b, m->embed_bytes, &b)) ||
        (end == m->n_layers && __builtin_add_overflow(b, m->head_bytes, &b)))
        return UINT64_MAX;
    return b;
}
