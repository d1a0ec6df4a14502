/* A transformer model: its configuration and the weights of one contiguous
 * layer range [layer_start, layer_end), bound by pointer into the mmapped
 * file (GGUF or safetensors). Architectures: llama (Llama 2/3, SmolLM2,
 * TinyLlama, Mistral), qwen2 (QKV bias), qwen3 (per-head Q/K RMSNorm).
 *
 * The embedding table is bound only for the first range (layer_start == 0),
 * the final norm and output matrix only for the last (layer_end ==
 * n_layers): a pipeline stage maps only the tensors it uses. */
#ifndef ST_MODEL_H
#define ST_MODEL_H

#include "../kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct st_gguf;
struct st_safetensors;
struct st_tokenizer;

typedef enum { ST_ARCH_LLAMA = 0, ST_ARCH_QWEN2, ST_ARCH_QWEN3 } st_arch;

typedef struct st_model_config {
    st_arch arch;
    int n_layers;
    int dim;            /* hidden size */
    int n_heads;
    int n_kv_heads;
    int head_dim;       /* may differ from dim / n_heads (qwen3) */
    int ffn_dim;        /* intermediate size */
    int vocab_size;
    int ctx_len;        /* trained context length */
    float norm_eps;
    float rope_theta;
    st_rope_style rope_style;
    int n_rot;          /* rotated dims per head */
    int qkv_bias;       /* 1: q/k/v projections have biases (qwen2) */
    int qk_norm;        /* 1: per-head RMSNorm of q and k before RoPE (qwen3) */
    int tied_output;    /* 1: the output matrix is the embedding table */
    /* Llama-3 RoPE frequency scaling (rope_type "llama3"); factor 0 = off */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
} st_model_config;

typedef struct st_layer_weights {
    const float *attn_norm;           /* (dim,) */
    const st_tensor *wq;              /* (n_heads*head_dim, dim) */
    const st_tensor *wk, *wv;         /* (n_kv_heads*head_dim, dim) */
    const st_tensor *wo;              /* (dim, n_heads*head_dim) */
    const float *bq, *bk, *bv;        /* biases or NULL */
    const float *q_norm, *k_norm;     /* (head_dim,) or NULL */
    const float *ffn_norm;            /* (dim,) */
    const st_tensor *w_gate, *w_up;   /* (ffn_dim, dim) */
    const st_tensor *w_down;          /* (dim, ffn_dim) */
} st_layer_weights;

typedef struct st_model {
    st_model_config cfg;
    int layer_start, layer_end;       /* the loaded range */
    const st_tensor *tok_embd;        /* (vocab, dim); first range only */
    const float *out_norm;            /* (dim,); last range only */
    const st_tensor *output;          /* (vocab, dim); last range only */
    st_layer_weights *layers;         /* (n_layers,), filled for the range */
    float *rope_inv_freq;             /* (n_rot/2,) */
    st_rope rope;
    struct st_tokenizer *tok;         /* NULL when the source has none */
    const char *format;               /* "gguf" | "safetensors" */
    char *path;
    /* private */
    struct st_gguf *gguf;
    struct st_safetensors *st;
    float **owned;                    /* f32 copies of small vectors */
    int n_owned;
    size_t weight_bytes;              /* bytes of the bound tensors */
} st_model;

/* Load a GGUF file or a Hugging Face directory (or a .safetensors file
 * beside config.json). layer_end < 0 means "to the last layer". Returns
 * ST_OK or an error naming the file and what is wrong (unknown architecture,
 * missing tensor, shape mismatch, unsupported type...). */
int st_model_load(const char *path, int layer_start, int layer_end, st_model **out);
void st_model_free(st_model *m);

static inline int st_model_is_first(const st_model *m) { return m->layer_start == 0; }
static inline int st_model_is_last(const st_model *m) { return m->layer_end == m->cfg.n_layers; }
const char *st_arch_name(st_arch a);

/* Bytes of weights a batch-1 decode step reads (every matrix of the range,
 * one embedding row, the output matrix on the last range). */
size_t st_model_decode_bytes(const st_model *m);

#ifdef __cplusplus
}
#endif
#endif
