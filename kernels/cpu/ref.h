/* Plain scalar references of every CPU op, written for clarity, not speed:
 * double accumulation, st_dequant_row for weights, two-pass softmax. Tests
 * compare the fast kernels (every ISA) against these. */
#ifndef ST_CPU_REF_H
#define ST_CPU_REF_H

#include "kernels/backend.h"

/* y (n, O) = x (n, K) @ dequant(W)^T + bias, in double. */
void st_ref_matmul_f32(float *y, const float *x, const st_tensor *W, const float *bias, int n);
/* The same with x first quantized to int8 blocks exactly as the kernels do
 * (Q-type W only): the result the kernels approximate up to f32 rounding.
 * mag (n, O), optional: sum of |terms|, the scale of that rounding. */
void st_ref_matmul_q8act(float *y, double *mag, const float *x, const st_tensor *W, const float *bias, int n);

void st_ref_embed(float *out, const st_tensor *table, const int32_t *ids, int n);
void st_ref_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);
void st_ref_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos, const st_rope *rope);
void st_ref_swiglu(float *out, const float *gate, const float *up, int n, int d);

/* Value of element i of kv head h at position p of a sequence (through its
 * block table), from layer's K (which = 0) or V (which = 1). */
float st_ref_kv_get(const st_kv_cache *kv, int layer, int which, const int32_t *block_table, int p, int h, int i);
/* Causal paged attention over the cache, double precision, two passes. */
void st_ref_attention(float *out, const float *q, const st_kv_cache *kv, int layer, const st_batch *b, int n_heads,
                      float scale);

#endif
