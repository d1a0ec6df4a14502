/* Launchers of the CUDA kernels (the .cu files of kernels/cuda), called by the backend
 * (cuda_backend.cu) and by the emulated tests. Every pointer is device
 * memory; shapes in elements; each returns the launch's cudaError_t.
 * Internal to kernels/cuda (C++). */
#ifndef ST_CUDA_OPS_H
#define ST_CUDA_OPS_H

#include "kernels/cuda/launch.cuh"
#include "kernels/tensor.h"

#include <stdint.h>

/* out (n, dim) = rmsnorm(x) * w per row. With `residual` non-NULL, first
 * x += residual (written back to x: the residual stream) and the sum is
 * normalised: the pre-norm residual add fused into the norm. out may
 * equal x. */
cudaError_t st_cu_rmsnorm(float *out, float *x, const float *residual, const float *w, int n, int dim, float eps,
                          cudaStream_t s);

/* x (n, n_heads * head_dim) rotated in place; pos (n,) positions;
 * inv_freq (n_rot / 2,). style is st_rope_style. */
cudaError_t st_cu_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos, const float *inv_freq,
                       int n_rot, int style, cudaStream_t s);

/* out (count,) = silu(gate) * up; out may equal gate. */
cudaError_t st_cu_swiglu(float *out, const float *gate, const float *up, size_t count, cudaStream_t s);
/* y (count,) += x */
cudaError_t st_cu_add(float *y, const float *x, size_t count, cudaStream_t s);

/* out (n, dim) = dequantized rows ids[i] of table (rows of `dim` elements
 * of type t, `row_bytes` apart). ids must be in range (checked by the
 * caller on the host). */
cudaError_t st_cu_embed(float *out, const void *table, st_dtype t, size_t row_bytes, int dim, const int32_t *ids,
                        int n, cudaStream_t s);

/* y (n, rows) = x (n, cols) @ W^T (+ bias (rows,) if non-NULL), W rows of
 * `cols` elements of type t (Q-types: cols % 32 == 0), row_bytes apart. */
cudaError_t st_cu_matvec(float *y, const float *x, const void *W, st_dtype t, size_t row_bytes, int rows, int cols,
                         const float *bias, int n, cudaStream_t s);

/* Prefill GEMM through cuBLAS (gemm.cu): same contract as st_cu_matvec.
 * W is dequantized into an f32 scratch owned by g (f32 W is used as is),
 * then one cublasGemmEx (TF32 tensor cores, f32 accumulation), in chunks
 * of rows when W is large (see gemm.cu). create
 * returns NULL and sets *why when cuBLAS cannot be loaded; the backend
 * then keeps the matvec path. */
struct st_cu_gemm;
st_cu_gemm *st_cu_gemm_create(int chunk_rows /* 0: by the scratch limit */, const char **why);
void st_cu_gemm_destroy(st_cu_gemm *g);
cudaError_t st_cu_gemm_run(st_cu_gemm *g, float *y, const float *x, const void *W, st_dtype t, size_t row_bytes,
                           int rows, int cols, const float *bias, int n, cudaStream_t s);

/* Device sampling (sample.cu): ids (n_rows,) from logits (n_rows, vocab),
 * one parameter set per row (see cuda.h, st_cuda_sample). */
typedef struct {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float u;           /* uniform draw in [0, 1) */
} st_cu_sample_row;
cudaError_t st_cu_sample(int32_t *ids, const float *logits, int n_rows, int vocab, const st_cu_sample_row *params,
                         cudaStream_t s);

/* Paged KV cache and attention. `meta` is one int32 array in device memory:
 *   [0, n_tokens)              position of each row
 *   [n_tokens, 2 n_tokens)     offset of the row's block table in `meta`
 * followed by the block tables themselves (physical block ids). */
typedef struct {
    int n_tokens;
    int block_size, n_kv_heads, head_dim;
    int f16; /* storage: 1 = f16, 0 = f32 */
    const int32_t *meta;
} st_cu_paged;

/* Store k, v (n_tokens, n_kv_heads * head_dim) into slot pos % block_size
 * of block table[pos / block_size], layout [block][kv_head][slot][dim]. */
cudaError_t st_cu_kv_write(void *K, void *V, const float *k, const float *v, const st_cu_paged *p, cudaStream_t s);
/* out (n_tokens, n_heads * head_dim): causal attention of each row over
 * positions [0, pos] of its sequence; GQA head h reads kv head
 * h / (n_heads / n_kv_heads). head_dim <= 256. */
cudaError_t st_cu_attention(float *out, const float *q, const void *K, const void *V, const st_cu_paged *p,
                            int n_heads, float scale, cudaStream_t s);
/* The same result by split-K: positions of each row in chunks of `chunk`,
 * `splits` >= ceil((max pos + 1) / chunk) chunks, partials in `partial`
 * (n_tokens * n_heads * splits * (head_dim + 2) floats of device scratch),
 * then merged. */
cudaError_t st_cu_attention_splitk(float *out, float *partial, const float *q, const void *K, const void *V,
                                   const st_cu_paged *p, int n_heads, float scale, int chunk, int splits,
                                   cudaStream_t s);

#endif
