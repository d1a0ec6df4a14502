/* Row-wise elementwise ops of the CPU backend (elementwise.c), plain C.
 * Each row's arithmetic is fixed (8-lane partial sums), so results are
 * the same whatever the batch and thread split. Rows [r0, r1) at a time
 * so that the backend can spread big batches over its threads. */
#ifndef ST_CPU_ELEMENTWISE_H
#define ST_CPU_ELEMENTWISE_H

#include "kernels/backend.h"

void st_cpu_rmsnorm_rows(float *out, const float *x, const float *w, int r0, int r1, int dim, float eps);
/* Rotary embedding of rows [r0, r1) of x (n, n_heads * head_dim). */
void st_cpu_rope_rows(float *x, int r0, int r1, int n_heads, int head_dim, const int32_t *pos, const st_rope *rope);
/* out[i] = silu(gate[i]) * up[i] for i in [i0, i1). */
void st_cpu_swiglu_range(float *out, const float *gate, const float *up, size_t i0, size_t i1);

#endif
