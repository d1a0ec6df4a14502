/* Model loading: configuration from GGUF metadata or config.json, and the
 * binding of a layer range's weights by pointer into the mapped file. */
#define _GNU_SOURCE
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/json.h"
#include "../common/st_common.h"
#include "gguf.h"
#include "safetensors.h"
#include "tokenizer.h"

const char *st_arch_name(st_arch a)
{
    switch (a) {
    case ST_ARCH_LLAMA: return "llama";
    case ST_ARCH_QWEN2: return "qwen2";
    case ST_ARCH_QWEN3: return "qwen3";
    }
    return "?";
}

/* ---- tensor lookup over either file format --------------------------------- */

/* Name of a per-layer or global weight in each format. */
typedef enum {
    W_TOK_EMBD, W_OUT_NORM, W_OUTPUT, W_ROPE_FREQS,
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_BQ, W_BK, W_BV, W_Q_NORM, W_K_NORM,
    W_FFN_NORM, W_GATE, W_UP, W_DOWN,
} weight_id;

static const char *const gguf_names[] = {
    [W_TOK_EMBD] = "token_embd.weight", [W_OUT_NORM] = "output_norm.weight", [W_OUTPUT] = "output.weight",
    [W_ROPE_FREQS] = "rope_freqs.weight",
    [W_ATTN_NORM] = "blk.%d.attn_norm.weight", [W_Q] = "blk.%d.attn_q.weight", [W_K] = "blk.%d.attn_k.weight",
    [W_V] = "blk.%d.attn_v.weight", [W_O] = "blk.%d.attn_output.weight", [W_BQ] = "blk.%d.attn_q.bias",
    [W_BK] = "blk.%d.attn_k.bias", [W_BV] = "blk.%d.attn_v.bias", [W_Q_NORM] = "blk.%d.attn_q_norm.weight",
    [W_K_NORM] = "blk.%d.attn_k_norm.weight", [W_FFN_NORM] = "blk.%d.ffn_norm.weight",
    [W_GATE] = "blk.%d.ffn_gate.weight", [W_UP] = "blk.%d.ffn_up.weight", [W_DOWN] = "blk.%d.ffn_down.weight",
};

static const char *const hf_names[] = {
    [W_TOK_EMBD] = "model.embed_tokens.weight", [W_OUT_NORM] = "model.norm.weight", [W_OUTPUT] = "lm_head.weight",
    [W_ROPE_FREQS] = NULL,
    [W_ATTN_NORM] = "model.layers.%d.input_layernorm.weight", [W_Q] = "model.layers.%d.self_attn.q_proj.weight",
    [W_K] = "model.layers.%d.self_attn.k_proj.weight", [W_V] = "model.layers.%d.self_attn.v_proj.weight",
    [W_O] = "model.layers.%d.self_attn.o_proj.weight", [W_BQ] = "model.layers.%d.self_attn.q_proj.bias",
    [W_BK] = "model.layers.%d.self_attn.k_proj.bias", [W_BV] = "model.layers.%d.self_attn.v_proj.bias",
    [W_Q_NORM] = "model.layers.%d.self_attn.q_norm.weight", [W_K_NORM] = "model.layers.%d.self_attn.k_norm.weight",
    [W_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
    [W_GATE] = "model.layers.%d.mlp.gate_proj.weight", [W_UP] = "model.layers.%d.mlp.up_proj.weight",
    [W_DOWN] = "model.layers.%d.mlp.down_proj.weight",
};

static const st_tensor *find_weight(const st_model *m, weight_id w, int layer, char *name, size_t cap)
{
    const char *fmt = m->gguf ? gguf_names[w] : hf_names[w];
    if (!fmt)
        return NULL;
    snprintf(name, cap, fmt, layer);
    return m->gguf ? st_gguf_find_tensor(m->gguf, name) : st_safetensors_find(m->st, name);
}

/* A matrix of shape (rows, cols) in GGUF order ne = {cols, rows}. */
static int bind_matrix(st_model *m, weight_id w, int layer, int64_t rows, int64_t cols, int required,
                       const st_tensor **out)
{
    char name[128];
    const st_tensor *t = find_weight(m, w, layer, name, sizeof name);
    *out = NULL;
    if (!t)
        return required ? st_err(ST_ENOENT, "%s: missing tensor %s", m->path, name) : ST_OK;
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return st_err(ST_EINVAL, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]", m->path, name,
                      (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
    if (t->ne[0] % st_dtype_block_elems(t->type))
        return st_err(ST_EINVAL, "%s: tensor %s: row of %lld is not whole %s blocks", m->path, name,
                      (long long)t->ne[0], st_dtype_name(t->type));
    m->weight_bytes += t->nbytes;
    *out = t;
    return ST_OK;
}

/* A vector of n elements, as f32 (converted once into an owned copy unless
 * the file already stores aligned f32). */
static int bind_vector(st_model *m, weight_id w, int layer, int64_t n, int required, const float **out)
{
    char name[128];
    const st_tensor *t = find_weight(m, w, layer, name, sizeof name);
    *out = NULL;
    if (!t)
        return required ? st_err(ST_ENOENT, "%s: missing tensor %s", m->path, name) : ST_OK;
    if (st_tensor_nelem(t) != n)
        return st_err(ST_EINVAL, "%s: tensor %s has %lld elements, expected %lld", m->path, name,
                      (long long)st_tensor_nelem(t), (long long)n);
    if (t->type == ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return ST_OK;
    }
    if (t->type != ST_F32 && t->type != ST_F16 && t->type != ST_BF16)
        return st_err(ST_ENOTSUP, "%s: vector tensor %s has type %s (expected a float type)", m->path, name,
                      st_dtype_name(t->type));
    float *v = st_xmalloc((size_t)n * sizeof(float));
    st_dequant_row(t->type, t->data, v, n);
    m->owned = st_xrealloc(m->owned, (size_t)(m->n_owned + 1) * sizeof(float *));
    m->owned[m->n_owned++] = v;
    *out = v;
    return ST_OK;
}

/* ---- configuration ---------------------------------------------------------- */

static int parse_arch(const char *s, size_t n, st_arch *out)
{
    static const struct {
        const char *name;
        st_arch a;
    } known[] = {{"llama", ST_ARCH_LLAMA}, {"mistral", ST_ARCH_LLAMA}, {"qwen2", ST_ARCH_QWEN2},
                 {"qwen3", ST_ARCH_QWEN3}};
    for (size_t i = 0; i < ST_ARRAY_LEN(known); i++)
        if (strlen(known[i].name) == n && !memcmp(known[i].name, s, n)) {
            *out = known[i].a;
            return ST_OK;
        }
    return st_err(ST_ENOTSUP, "unsupported architecture '%.*s' (supported: llama, mistral, qwen2, qwen3)", (int)n,
                  s);
}

static int gguf_u32(const st_gguf *g, const char *arch, const char *key, int required, int *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v;
    int rc = st_gguf_get_u32(g, full, &v);
    if (rc == ST_ENOENT && !required)
        return ST_OK;
    if (rc)
        return st_err(rc, "metadata %s: %s", full, rc == ST_ENOENT ? "missing" : "not an integer");
    if (v > (1u << 30))
        return st_err(ST_ERANGE, "metadata %s = %u is out of range", full, v);
    *out = (int)v;
    return ST_OK;
}

static int gguf_f32(const st_gguf *g, const char *arch, const char *key, float *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int rc = st_gguf_get_f32(g, full, out);
    return rc == ST_ENOENT ? ST_OK : rc ? st_err(rc, "metadata %s: not a number", full) : ST_OK;
}

static int config_from_gguf(st_model *m)
{
    st_model_config *c = &m->cfg;
    const char *as;
    size_t an;
    if (st_gguf_get_str(m->gguf, "general.architecture", &as, &an))
        return st_err(ST_EINVAL, "%s: no general.architecture", m->path);
    int rc = parse_arch(as, an, &c->arch);
    if (rc)
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)ST_MIN(an, 31), as);
    if ((rc = gguf_u32(m->gguf, arch, "block_count", 1, &c->n_layers)) ||
        (rc = gguf_u32(m->gguf, arch, "embedding_length", 1, &c->dim)) ||
        (rc = gguf_u32(m->gguf, arch, "feed_forward_length", 1, &c->ffn_dim)) ||
        (rc = gguf_u32(m->gguf, arch, "attention.head_count", 1, &c->n_heads)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    c->n_kv_heads = c->n_heads;
    c->ctx_len = 4096;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if ((rc = gguf_u32(m->gguf, arch, "attention.head_count_kv", 0, &c->n_kv_heads)) ||
        (rc = gguf_u32(m->gguf, arch, "context_length", 0, &c->ctx_len)) ||
        (rc = gguf_f32(m->gguf, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps)) ||
        (rc = gguf_f32(m->gguf, arch, "rope.freq_base", &c->rope_theta)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    c->head_dim = c->n_heads ? c->dim / c->n_heads : 0;
    if ((rc = gguf_u32(m->gguf, arch, "attention.key_length", 0, &c->head_dim)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    c->n_rot = c->head_dim;
    if ((rc = gguf_u32(m->gguf, arch, "rope.dimension_count", 0, &c->n_rot)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    /* llama.cpp's converter permutes llama Q/K into the interleaved layout */
    c->rope_style = c->arch == ST_ARCH_LLAMA ? ST_ROPE_NORM : ST_ROPE_NEOX;
    float lin = 0;
    if ((rc = gguf_f32(m->gguf, arch, "rope.scaling.factor", &lin)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    const char *st;
    size_t sn;
    char key[64];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (lin > 1 && !st_gguf_get_str(m->gguf, key, &st, &sn) && sn == 6 && !memcmp(st, "linear", 6))
        c->rope_factor = -lin; /* negative marks linear scaling */
    const st_tensor *te = st_gguf_find_tensor(m->gguf, "token_embd.weight");
    c->vocab_size = te ? (int)te->ne[1] : 0;
    int vs = 0;
    if ((rc = gguf_u32(m->gguf, arch, "vocab_size", 0, &vs)))
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    if (!c->vocab_size)
        c->vocab_size = vs;
    c->tied_output = st_gguf_find_tensor(m->gguf, "output.weight") == NULL;
    c->qkv_bias = st_gguf_find_tensor(m->gguf, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = c->arch == ST_ARCH_QWEN3;
    return ST_OK;
}

static int json_int(const st_json *cfg, const char *key, int required, int *out, const char *path)
{
    const st_json *v = st_json_get(cfg, key);
    int64_t x;
    if (!v || v->type == ST_JSON_NULL)
        return required ? st_err(ST_EINVAL, "%s: config.json has no %s", path, key) : ST_OK;
    if (!st_json_as_int(v, 0, 1 << 30, &x))
        return st_err(ST_EINVAL, "%s: config.json %s is not a valid integer", path, key);
    *out = (int)x;
    return ST_OK;
}

static int config_from_json(st_model *m, const st_json *cfg)
{
    st_model_config *c = &m->cfg;
    const char *mt = st_json_get_str(cfg, "model_type", NULL);
    if (!mt)
        return st_err(ST_EINVAL, "%s: config.json has no model_type", m->path);
    int rc = parse_arch(mt, strlen(mt), &c->arch);
    if (rc)
        return st_err(rc, "%s: %s", m->path, st_errmsg());
    if ((rc = json_int(cfg, "num_hidden_layers", 1, &c->n_layers, m->path)) ||
        (rc = json_int(cfg, "hidden_size", 1, &c->dim, m->path)) ||
        (rc = json_int(cfg, "intermediate_size", 1, &c->ffn_dim, m->path)) ||
        (rc = json_int(cfg, "num_attention_heads", 1, &c->n_heads, m->path)) ||
        (rc = json_int(cfg, "vocab_size", 1, &c->vocab_size, m->path)))
        return rc;
    c->n_kv_heads = c->n_heads;
    c->ctx_len = 4096;
    c->head_dim = c->n_heads ? c->dim / c->n_heads : 0;
    if ((rc = json_int(cfg, "num_key_value_heads", 0, &c->n_kv_heads, m->path)) ||
        (rc = json_int(cfg, "max_position_embeddings", 0, &c->ctx_len, m->path)) ||
        (rc = json_int(cfg, "head_dim", 0, &c->head_dim, m->path)))
        return rc;
    c->norm_eps = (float)st_json_get_num(cfg, "rms_norm_eps", 1e-6);
    c->rope_theta = (float)st_json_get_num(cfg, "rope_theta", 10000.0);
    c->n_rot = c->head_dim;
    c->rope_style = ST_ROPE_NEOX; /* HF checkpoints use rotate-half */
    c->qkv_bias = c->arch == ST_ARCH_QWEN2 || st_json_get_bool(cfg, "attention_bias", 0);
    c->qk_norm = c->arch == ST_ARCH_QWEN3;
    c->tied_output = st_json_get_bool(cfg, "tie_word_embeddings", 0);
    const st_json *rs = st_json_get(cfg, "rope_scaling");
    if (rs && rs->type == ST_JSON_OBJECT) {
        const char *type = st_json_get_str(rs, "rope_type", st_json_get_str(rs, "type", ""));
        float factor = (float)st_json_get_num(rs, "factor", 1.0);
        if (!strcmp(type, "llama3")) {
            c->rope_factor = factor;
            c->rope_low_freq_factor = (float)st_json_get_num(rs, "low_freq_factor", 1.0);
            c->rope_high_freq_factor = (float)st_json_get_num(rs, "high_freq_factor", 4.0);
            c->rope_orig_ctx = (int)st_json_get_num(rs, "original_max_position_embeddings", 8192);
        } else if (!strcmp(type, "linear")) {
            c->rope_factor = -factor;
        } else if (strcmp(type, "default") != 0) {
            return st_err(ST_ENOTSUP, "%s: unsupported rope_scaling type '%s'", m->path, type);
        }
    }
    return ST_OK;
}

static int validate_config(const st_model *m)
{
    const st_model_config *c = &m->cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->ffn_dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->vocab_size <= 0)
        return st_err(ST_EINVAL, "%s: invalid dimensions (layers %d, dim %d, ffn %d, heads %d/%d, head_dim %d, vocab %d)",
                      m->path, c->n_layers, c->dim, c->ffn_dim, c->n_heads, c->n_kv_heads, c->head_dim,
                      c->vocab_size);
    if (c->n_heads % c->n_kv_heads)
        return st_err(ST_EINVAL, "%s: %d heads is not a multiple of %d kv heads", m->path, c->n_heads,
                      c->n_kv_heads);
    if (c->n_rot <= 0 || c->n_rot > c->head_dim || c->n_rot % 2)
        return st_err(ST_EINVAL, "%s: rope dimension %d invalid for head_dim %d", m->path, c->n_rot, c->head_dim);
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return st_err(ST_EINVAL, "%s: invalid norm epsilon or rope theta", m->path);
    return ST_OK;
}

/* Per-pair rotation frequencies, with Llama-3 or linear scaling applied. */
static int build_rope(st_model *m)
{
    const st_model_config *c = &m->cfg;
    int half = c->n_rot / 2;
    float *f = st_xmalloc((size_t)half * sizeof(float));
    for (int i = 0; i < half; i++)
        f[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->n_rot);
    if (c->rope_factor < 0) {
        for (int i = 0; i < half; i++)
            f[i] /= -c->rope_factor;
    } else if (c->rope_factor > 0) {
        float lo_wl = (float)c->rope_orig_ctx / c->rope_low_freq_factor;
        float hi_wl = (float)c->rope_orig_ctx / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            float wl = 2.0f * (float)M_PI / f[i];
            if (wl < hi_wl)
                continue;
            if (wl > lo_wl) {
                f[i] /= c->rope_factor;
            } else {
                float s = ((float)c->rope_orig_ctx / wl - c->rope_low_freq_factor) /
                          (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f[i] = (1 - s) * f[i] / c->rope_factor + s * f[i];
            }
        }
    }
    /* GGUF Llama-3 files carry the scaling as per-pair divisors instead */
    if (m->gguf) {
        const st_tensor *rf = st_gguf_find_tensor(m->gguf, "rope_freqs.weight");
        if (rf) {
            if (rf->type != ST_F32 || st_tensor_nelem(rf) != half) {
                free(f);
                return st_err(ST_EINVAL, "%s: rope_freqs.weight must be F32 with %d elements", m->path, half);
            }
            const float *d = rf->data;
            for (int i = 0; i < half; i++)
                f[i] /= d[i];
        }
    }
    m->rope_inv_freq = f;
    m->rope.style = c->rope_style;
    m->rope.n_rot = c->n_rot;
    m->rope.inv_freq = f;
    return ST_OK;
}

static int bind_weights(st_model *m)
{
    const st_model_config *c = &m->cfg;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int rc;
    m->layers = st_xcalloc((size_t)c->n_layers, sizeof(st_layer_weights));
    if (st_model_is_first(m) && (rc = bind_matrix(m, W_TOK_EMBD, 0, c->vocab_size, c->dim, 1, &m->tok_embd)))
        return rc;
    if (st_model_is_last(m)) {
        if ((rc = bind_vector(m, W_OUT_NORM, 0, c->dim, 1, &m->out_norm)))
            return rc;
        if (!c->tied_output && (rc = bind_matrix(m, W_OUTPUT, 0, c->vocab_size, c->dim, 0, &m->output)))
            return rc;
        if (!m->output) { /* tied, or a file that omits the output matrix */
            if ((rc = bind_matrix(m, W_TOK_EMBD, 0, c->vocab_size, c->dim, 1, &m->output)))
                return rc;
            if (st_model_is_first(m))
                m->weight_bytes -= m->output->nbytes; /* counted once */
        }
    }
    for (int l = m->layer_start; l < m->layer_end; l++) {
        st_layer_weights *w = &m->layers[l];
        if ((rc = bind_vector(m, W_ATTN_NORM, l, c->dim, 1, &w->attn_norm)) ||
            (rc = bind_matrix(m, W_Q, l, qd, c->dim, 1, &w->wq)) ||
            (rc = bind_matrix(m, W_K, l, kvd, c->dim, 1, &w->wk)) ||
            (rc = bind_matrix(m, W_V, l, kvd, c->dim, 1, &w->wv)) ||
            (rc = bind_matrix(m, W_O, l, c->dim, qd, 1, &w->wo)) ||
            (rc = bind_vector(m, W_FFN_NORM, l, c->dim, 1, &w->ffn_norm)) ||
            (rc = bind_matrix(m, W_GATE, l, c->ffn_dim, c->dim, 1, &w->w_gate)) ||
            (rc = bind_matrix(m, W_UP, l, c->ffn_dim, c->dim, 1, &w->w_up)) ||
            (rc = bind_matrix(m, W_DOWN, l, c->dim, c->ffn_dim, 1, &w->w_down)))
            return rc;
        if (c->qkv_bias && ((rc = bind_vector(m, W_BQ, l, qd, 1, &w->bq)) ||
                            (rc = bind_vector(m, W_BK, l, kvd, 1, &w->bk)) ||
                            (rc = bind_vector(m, W_BV, l, kvd, 1, &w->bv))))
            return rc;
        if (c->qk_norm && ((rc = bind_vector(m, W_Q_NORM, l, c->head_dim, 1, &w->q_norm)) ||
                           (rc = bind_vector(m, W_K_NORM, l, c->head_dim, 1, &w->k_norm))))
            return rc;
    }
    return ST_OK;
}

/* ---- opening ------------------------------------------------------------------ */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

int st_model_load(const char *path, int layer_start, int layer_end, st_model **out)
{
    st_model *m = st_xcalloc(1, sizeof *m);
    m->path = st_xstrdup(path);
    int rc;
    char buf[4200];
    if (is_dir(path) || has_suffix(path, ".safetensors")) {
        m->format = "safetensors";
        if ((rc = st_safetensors_open(path, &m->st)))
            goto fail;
        const st_json *cfg = st_safetensors_config(m->st);
        if (!cfg) {
            rc = st_err(ST_EINVAL, "%s: no config.json beside the weights", path);
            goto fail;
        }
        if ((rc = config_from_json(m, cfg)))
            goto fail;
        snprintf(buf, sizeof buf, "%.4096s/tokenizer.json", st_safetensors_dir(m->st));
        FILE *f = fopen(buf, "rb");
        if (f) {
            fclose(f);
            if ((rc = st_tok_load_json(buf, &m->tok)))
                goto fail;
        }
    } else {
        m->format = "gguf";
        if ((rc = st_gguf_open(path, 0, &m->gguf)))
            goto fail;
        if ((rc = config_from_gguf(m)))
            goto fail;
        if ((rc = st_tok_load_gguf(m->gguf, &m->tok)))
            goto fail;
    }
    if ((rc = validate_config(m)))
        goto fail;
    if (layer_end < 0)
        layer_end = m->cfg.n_layers;
    if (layer_start < 0 || layer_start >= layer_end || layer_end > m->cfg.n_layers) {
        rc = st_err(ST_EINVAL, "%s: layer range [%d, %d) is not within [0, %d)", path, layer_start, layer_end,
                    m->cfg.n_layers);
        goto fail;
    }
    m->layer_start = layer_start;
    m->layer_end = layer_end;
    if ((rc = bind_weights(m)) || (rc = build_rope(m)))
        goto fail;
    *out = m;
    return ST_OK;
fail:
    st_model_free(m);
    return rc;
}

void st_model_free(st_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->rope_inv_freq);
    if (m->tok)
        st_tok_free(m->tok);
    if (m->gguf)
        st_gguf_close(m->gguf);
    if (m->st)
        st_safetensors_close(m->st);
    free(m->path);
    free(m);
}

size_t st_model_decode_bytes(const st_model *m)
{
    size_t n = 0;
    for (int l = m->layer_start; l < m->layer_end; l++) {
        const st_layer_weights *w = &m->layers[l];
        n += w->wq->nbytes + w->wk->nbytes + w->wv->nbytes + w->wo->nbytes + w->w_gate->nbytes + w->w_up->nbytes +
             w->w_down->nbytes;
    }
    if (m->tok_embd)
        n += m->tok_embd->nbytes / (size_t)m->cfg.vocab_size;
    if (m->output)
        n += m->output->nbytes;
    return n;
}
