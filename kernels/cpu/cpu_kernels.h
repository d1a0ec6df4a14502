/* Internal interface between the CPU backend's driver (cpu_backend.c,
 * matmul.c, attention.c) and its per-ISA kernels (*_avx2.c, *_avx512.c,
 * and the plain C ones). Every ISA provides the same table; the driver
 * splits work over threads and calls into it. */
#ifndef ST_CPU_KERNELS_H
#define ST_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

/* ---- quantized activations ------------------------------------------------
 * For Q-type weights each activation row x (K,) is quantized once per
 * matmul into K/32 of these blocks: x[j] ~= d * qs[j], qs in [-127, 127],
 * d = max|x| / 127 (round to nearest even). The extra fields let the
 * integer dot products skip per-weight-block work:
 *   corr[k] = c * (qs[4k] + .. + qs[4k+3]), one int32 per dot-product lane
 *             (a 32-bit lane of a u8 x s8 dot sums 4 byte products); c is
 *             -8 for Q4_0 (nibbles are stored +8), 0 otherwise. Starting the
 *             lane sums there turns sum(q * x) into sum((q - 8) * x).
 *   s8     = d * sum(qs) / 8, for Q4_1's min term m * sum(x) spread over
 *             the 8 lanes of a block (exact: a power-of-two scale). */
typedef struct {
    int8_t qs[32];
    int32_t corr[8];
    float d;
    float s8;
    float pad[6];
} st_qblock; /* 96 bytes, 32-aligned in arrays from st_xaligned */

/* ---- one matmul call, as seen by a kernel ------------------------------- */
typedef struct {
    float *y;             /* (n, O) */
    const float *x;       /* (n, K) f32 activations (float weight types) */
    const st_qblock *qx;  /* (n, K/32) quantized x (Q-type weights) */
    int n, K, O;
    const uint8_t *W;     /* O rows of row_bytes */
    size_t row_bytes;
    st_dtype type;
    const float *bias;    /* (O,) or NULL */
} st_mm_args;

/* ---- one attention call -------------------------------------------------- */
typedef struct {
    float *out;              /* (n_tokens, n_heads * head_dim) */
    const float *q;          /* same shape */
    const st_kv_cache *kv;
    int layer;
    const st_batch *b;
    const int32_t *row_seq;  /* (n_tokens,) index into b->seqs of each row */
    int n_heads;
    float scale;
} st_attn_args;

/* Largest head_dim the attention kernels handle (their scratch is on the stack). */
#define ST_ATTN_MAX_HEAD_DIM 256
/* Positions scored together between two running-max updates (fixed, so a
 * row's arithmetic does not depend on anything but its own positions). */
#define ST_ATTN_CHUNK 16

typedef struct {
    /* Quantize nb blocks of x for weights of type wtype. */
    void (*quant)(const float *x, st_qblock *q, int nb, st_dtype wtype);
    /* y[r][o] for rows [r0, r1) and outputs [o0, o1). The arithmetic for
     * one (r, o) is the same whatever the ranges (batch invariance). */
    void (*matmul)(const st_mm_args *a, int r0, int r1, int o0, int o1);
    /* Attention of one row for the query heads sharing kv head g. */
    void (*attn)(const st_attn_args *a, int row, int g);
    /* Convert n f32 to f16 (round to nearest even). */
    void (*to_f16)(uint16_t *dst, const float *src, int n);
    /* Sum of n floats (bandwidth probe); n a multiple of 64. */
    float (*sum)(const float *p, size_t n);
} st_cpu_kernels;

extern const st_cpu_kernels st_cpu_kernels_scalar;
extern const st_cpu_kernels st_cpu_kernels_avx2;
extern const st_cpu_kernels st_cpu_kernels_avx512;

/* Scalar activation quantization (shared by the ISA files for odd tails). */
void st_cpu_quant_scalar(const float *x, st_qblock *q, int nb, st_dtype wtype);

#endif
