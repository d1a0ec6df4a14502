/* The backend interface: the small set of ops the forward pass is written
 * against. A backend (cpu, cuda) fills a st_backend_ops table; the engine
 * never calls a kernel any other way.
 *
 * Activations are f32, row-major, in memory the backend allocated
 * (host memory for cpu, device memory for cuda): a "(n, d)" buffer holds n
 * rows of d floats. Weights are st_tensor views in their stored type.
 * Small vectors (norm weights, biases) are given as f32 arrays that the
 * model converted once at load (and the backend may mirror on its device).
 *
 * The KV cache is paged: fixed-size blocks of `block_size` token slots.
 * Each sequence of a batch carries a block table (logical block i of the
 * sequence -> physical block id), decided by the scheduler; kernels write
 * and read K/V only through it. */
#ifndef ST_BACKEND_H
#define ST_BACKEND_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- batch description ---------------------------------------------------
 * One forward step over a mixed batch: prompt chunks (n_tokens > 1) and
 * decodes (n_tokens == 1) of distinct sequences. Token rows of a sequence
 * are contiguous in the batch, in sequence order. */
typedef struct st_batch_seq {
    int32_t seq_id;
    int32_t row0;               /* first row of this sequence in the batch */
    int32_t n_tokens;           /* rows of this sequence in this step */
    int32_t pos0;               /* position of its first row; rows have pos0 .. pos0+n_tokens-1 */
    int32_t n_blocks;           /* entries in block_table */
    const int32_t *block_table; /* covers positions [0, pos0 + n_tokens) */
    int32_t want_logits;        /* 1: produce logits for the last row */
} st_batch_seq;

typedef struct st_batch {
    int32_t n_tokens;           /* total rows */
    const int32_t *tokens;      /* (n_tokens,) ids; used by the first stage only */
    const int32_t *pos;         /* (n_tokens,) absolute positions */
    int32_t n_seqs;
    const st_batch_seq *seqs;   /* (n_seqs,) */
} st_batch;

/* ---- paged KV cache --------------------------------------------------------
 * Storage for layers [0, n_layers) of one stage. Per layer, K and V each
 * hold n_blocks blocks laid out [block][kv_head][slot][head_dim], so that
 * one head's keys inside a block are contiguous (block_size * head_dim). */
typedef struct st_kv_cache {
    int n_layers;
    int n_blocks;
    int block_size;     /* token slots per block (default 16) */
    int n_kv_heads;
    int head_dim;
    st_dtype dtype;     /* ST_F16 (default) or ST_F32 */
    void **k;           /* (n_layers,) per-layer K storage */
    void **v;           /* (n_layers,) per-layer V storage */
    size_t block_bytes; /* bytes of one block of one layer's K (or V) */
} st_kv_cache;

/* ---- RoPE --------------------------------------------------------------------- */
typedef enum {
    ST_ROPE_NORM = 0, /* rotate interleaved pairs (x[2i], x[2i+1]) - GGUF llama */
    ST_ROPE_NEOX = 1, /* rotate halves (x[i], x[i + n_rot/2]) - HF layout, qwen */
} st_rope_style;

typedef struct st_rope {
    st_rope_style style;
    int n_rot;             /* rotated dims per head (<= head_dim, even) */
    const float *inv_freq; /* (n_rot/2,) per-pair angular frequency, scaling applied */
} st_rope;

/* ---- the ops ----------------------------------------------------------------- */
typedef struct st_backend st_backend;

typedef struct st_backend_ops {
    const char *name;
    void (*destroy)(st_backend *be);

    /* Activation memory. */
    void *(*alloc)(st_backend *be, size_t bytes);
    void (*free)(st_backend *be, void *p);
    void (*to_device)(st_backend *be, void *dst, const void *src, size_t bytes);
    void (*to_host)(st_backend *be, void *dst, const void *src, size_t bytes);
    /* Block until queued work is done (no-op for cpu). */
    void (*sync)(st_backend *be);

    /* Paged KV storage: allocate/free kv->k[l], kv->v[l] for the geometry
     * already filled in kv. Returns ST_OK or ST_ENOMEM. */
    int (*kv_alloc)(st_backend *be, st_kv_cache *kv);
    void (*kv_free)(st_backend *be, st_kv_cache *kv);

    /* out (n, dim) = rows ids[i] of table (vocab, dim), dequantized. */
    void (*embed)(st_backend *be, float *out, const st_tensor *table, const int32_t *ids, int n);

    /* out (n, dim) = x / rms(x) * w, per row; w (dim,). out may equal x. */
    void (*rmsnorm)(st_backend *be, float *out, const float *x, const float *w, int n, int dim, float eps);

    /* y (n, W.ne[1]) = x (n, W.ne[0]) @ W^T (+ bias (W.ne[1],) when non-NULL).
     * For n > 1 this is matrix-matrix work, not a loop of matvecs. */
    void (*matmul)(st_backend *be, float *y, const float *x, const st_tensor *W, const float *bias, int n);

    /* In-place rotary embedding of x (n, n_heads * head_dim); row r uses
     * position pos[r]. */
    void (*rope)(st_backend *be, float *x, int n, int n_heads, int head_dim, const int32_t *pos, const st_rope *rope);

    /* Store k, v (n_tokens, n_kv_heads * head_dim) of `layer` into the
     * slots given by each sequence's block table and positions. */
    void (*kv_write)(st_backend *be, st_kv_cache *kv, int layer, const float *k, const float *v, const st_batch *b);

    /* Causal attention for every row of the batch over its own sequence's
     * cached positions [0, pos]: q (n_tokens, n_heads * head_dim) -> out
     * (same shape). GQA: query head h reads kv head h / (n_heads / n_kv_heads).
     * Each row is computed the same way whatever else is in the batch. */
    void (*attention)(st_backend *be, float *out, const float *q, const st_kv_cache *kv, int layer,
                      const st_batch *b, int n_heads, float scale);

    /* out (n, d) = silu(gate) * up, elementwise; out may equal gate. */
    void (*swiglu)(st_backend *be, float *out, const float *gate, const float *up, int n, int d);

    /* y (n, d) += x (n, d). */
    void (*add)(st_backend *be, float *y, const float *x, int n, int d);

    /* Free bytes of the memory kv_alloc draws from (a GPU's free memory),
     * for sizing the KV cache as a share of it. NULL: host memory
     * (MemAvailable). ST_OK or an error naming the query that failed. */
    int (*mem_available)(st_backend *be, uint64_t *bytes);
} st_backend_ops;

struct st_backend {
    const st_backend_ops *ops;
    int n_threads;
};

/* ---- constructors ------------------------------------------------------------ */
/* CPU backend with n_threads workers (0 = all online cores). Picks AVX-512,
 * AVX2 or scalar kernels at run time (env ST_CPU_ISA=scalar|avx2|avx512 to
 * force a lower one); the choice is logged. */
st_backend *st_backend_cpu_create(int n_threads);
/* The ISA the CPU kernels use: "avx512", "avx2" or "scalar". */
const char *st_cpu_isa(void);

static inline void st_backend_destroy(st_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

#ifdef __cplusplus
}
#endif
#endif
