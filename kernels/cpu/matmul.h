/* Matmul entry point of the CPU backend (the driver in matmul.c). */
#ifndef ST_CPU_MATMUL_H
#define ST_CPU_MATMUL_H

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

/* y (n, W.ne[1]) = x (n, W.ne[0]) @ W^T (+ bias). *scratch / *scratch_cap
 * hold the caller's reusable quantized-activation buffer (grown here).
 * exact: quantized weights meet float activations (dequantized rows, f32
 * dot products) instead of 8-bit activation blocks — slower, and exact
 * float math on the stored weights. Returns ST_OK or ST_EINVAL for a
 * malformed weight or argument. */
int st_cpu_matmul(const st_cpu_kernels *k, int exact, st_tp *tp, st_qblock **scratch, size_t *scratch_cap,
                  float *y, const float *x, const st_tensor *W, const float *bias, int n);

/* The plain C kernel (all weight types). */
void st_cpu_matmul_scalar(const st_mm_args *a, int r0, int r1, int o0, int o1);

#endif
