/* Matmul driver and the plain C matmul kernels.
 *
 * y (n, O) = x (n, K) @ W^T, W (O rows of K) in its stored type. For
 * Q-types x is first quantized (all n rows, once per call, split over the
 * threads) to int8 blocks; then the threads split the O output rows into
 * contiguous ranges and each walks its range in chunks of token rows sized
 * to keep the quantized x chunk in L2. What one (r, o) output computes
 * never depends on the split (see the kernels' tile comments), which the
 * tests check byte for byte. */
#include "kernels/cpu/matmul.h"

#include "common/st_common.h"

#include <stdlib.h>
#include <string.h>

/* ---- plain C kernels ------------------------------------------------------- */

/* Integer dot of one weight block with one activation block. */
static int dot_block(st_dtype t, const uint8_t *wb, const st_qblock *xb)
{
    int s = 0;
    switch (t) {
    case ST_Q8_0: {
        const int8_t *w = (const int8_t *)(wb + 2);
        for (int j = 0; j < 32; j++)
            s += w[j] * xb->qs[j];
        break;
    }
    case ST_Q4_0: {
        const uint8_t *w = wb + 2;
        for (int j = 0; j < 16; j++)
            s += ((w[j] & 15) - 8) * xb->qs[j] + ((w[j] >> 4) - 8) * xb->qs[j + 16];
        break;
    }
    default: { /* Q4_1 */
        const uint8_t *w = wb + 4;
        for (int j = 0; j < 16; j++)
            s += (w[j] & 15) * xb->qs[j] + (w[j] >> 4) * xb->qs[j + 16];
        break;
    }
    }
    return s;
}

static void matmul_q_scalar(const st_mm_args *a, int r0, int r1, int o0, int o1)
{
    const int nb = a->K / 32;
    const size_t bb = st_dtype_block_bytes(a->type);
    for (int o = o0; o < o1; o++) {
        const uint8_t *wrow = a->W + (size_t)o * a->row_bytes;
        for (int r = r0; r < r1; r++) {
            const st_qblock *xr = a->qx + (size_t)r * nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                const uint8_t *wb = wrow + (size_t)b * bb;
                uint16_t dh;
                memcpy(&dh, wb, 2);
                const float dw = st_f16_to_f32(dh);
                acc += dw * xr[b].d * (float)dot_block(a->type, wb, &xr[b]);
                if (a->type == ST_Q4_1) {
                    uint16_t mh;
                    memcpy(&mh, wb + 2, 2);
                    acc += st_f16_to_f32(mh) * (xr[b].s8 * 8.0f);
                }
            }
            a->y[(size_t)r * a->O + o] = acc + (a->bias ? a->bias[o] : 0.0f);
        }
    }
}

/* Float activations against any weight type: each weight row dequantized
 * to f32 once per chunk and reused for all its rows, dot products in f32
 * with 8 independent partial sums (vectorizable without reassociation
 * flags). For quantized weights this is the exact path: no 8-bit rounding
 * of x, so the result is float math on the stored weights up to summation
 * order. */
static void matmul_f_scalar(const st_mm_args *a, int r0, int r1, int o0, int o1)
{
    float *w = st_xaligned(sizeof(float) * (size_t)a->K);
    for (int o = o0; o < o1; o++) {
        st_dequant_row(a->type, a->W + (size_t)o * a->row_bytes, w, a->K);
        for (int r = r0; r < r1; r++) {
            const float *x = a->x + (size_t)r * a->K;
            float acc8[8] = {0};
            int k = 0;
            for (; k + 8 <= a->K; k += 8)
                for (int i = 0; i < 8; i++)
                    acc8[i] += w[k + i] * x[k + i];
            float acc = 0.0f;
            for (; k < a->K; k++)
                acc += w[k] * x[k];
            acc += ((acc8[0] + acc8[4]) + (acc8[1] + acc8[5])) + ((acc8[2] + acc8[6]) + (acc8[3] + acc8[7]));
            a->y[(size_t)r * a->O + o] = acc + (a->bias ? a->bias[o] : 0.0f);
        }
    }
    free(w);
}

void st_cpu_matmul_scalar(const st_mm_args *a, int r0, int r1, int o0, int o1)
{
    if (a->type == ST_Q8_0 || a->type == ST_Q4_0 || a->type == ST_Q4_1)
        matmul_q_scalar(a, r0, r1, o0, o1);
    else
        matmul_f_scalar(a, r0, r1, o0, o1);
}

/* ---- driver ---------------------------------------------------------------------- */

static int is_qtype(st_dtype t) { return t == ST_Q8_0 || t == ST_Q4_0 || t == ST_Q4_1; }

typedef struct {
    const st_cpu_kernels *k;
    int exact;    /* quantized weights, float activations (matmul_f_scalar) */
    st_mm_args a;
    const float *x;
    st_qblock *qx;
} mm_job;

/* Each thread quantizes a contiguous share of all n * K/32 blocks. */
static void quant_job(void *p, int ith, int nth)
{
    mm_job *j = p;
    const int nb = j->a.K / 32;
    const size_t total = (size_t)j->a.n * nb;
    const size_t b0 = total * ith / nth, b1 = total * (ith + 1) / nth;
    /* rows are whole multiples of blocks, so a block range is contiguous x */
    if (b1 > b0)
        j->k->quant(j->x + b0 * 32, j->qx + b0, (int)(b1 - b0), j->a.type);
}

/* Token rows per chunk: keep the chunk's quantized x (or f32 x) near 256 KiB. */
static int rows_per_chunk(const st_mm_args *a)
{
    const size_t row = is_qtype(a->type) ? (size_t)(a->K / 32) * sizeof(st_qblock) : (size_t)a->K * 4;
    size_t r = (256u << 10) / (row ? row : 1);
    r = r < 4 ? 4 : (r > 256 ? 256 : r);
    return (int)(r / 4 * 4);
}

static void mm_job_fn(void *p, int ith, int nth)
{
    mm_job *j = p;
    const st_mm_args *a = &j->a;
    /* output rows in units of 4 so tiles stay whole */
    const int units = (a->O + 3) / 4;
    const int o0 = ST_MIN(a->O, units * ith / nth * 4), o1 = ST_MIN(a->O, units * (ith + 1) / nth * 4);
    if (o0 >= o1)
        return;
    const int rc = rows_per_chunk(a);
    for (int r0 = 0; r0 < a->n; r0 += rc)
        (j->exact ? matmul_f_scalar : j->k->matmul)(a, r0, ST_MIN(a->n, r0 + rc), o0, o1);
}

int st_cpu_matmul(const st_cpu_kernels *k, int exact, st_tp *tp, st_qblock **scratch, size_t *scratch_cap,
                  float *y, const float *x, const st_tensor *W, const float *bias, int n)
{
    if (!y || !x || !W || !W->data || n < 0)
        return st_err(ST_EINVAL, "NULL argument or negative n");
    if (n == 0)
        return ST_OK;
    const int64_t K = W->ne[0], O = W->ne[1];
    if (K <= 0 || O <= 0 || K > INT32_MAX || O > INT32_MAX || (unsigned)W->type >= ST_DTYPE_COUNT)
        return st_err(ST_EINVAL, "weight %s has a bad shape or type", W->name ? W->name : "?");
    const size_t rb = st_dtype_row_bytes(W->type, K);
    if (!rb || rb * (size_t)O > W->nbytes)
        return st_err(ST_EINVAL, "weight %s: %lld x %lld %s does not fit its %zu bytes",
                      W->name ? W->name : "?", (long long)O, (long long)K, st_dtype_name(W->type), W->nbytes);
    mm_job j = {.k = k, .exact = exact && is_qtype(W->type), .x = x};
    j.a = (st_mm_args){.y = y, .x = x, .n = n, .K = (int)K, .O = (int)O, .W = W->data, .row_bytes = rb,
                       .type = W->type, .bias = bias};
    if (is_qtype(W->type) && !j.exact) {
        const size_t need = (size_t)n * (size_t)(K / 32);
        if (need > *scratch_cap) {
            free(*scratch);
            *scratch = st_xaligned(need * sizeof(st_qblock));
            *scratch_cap = need;
        }
        j.qx = *scratch;
        j.a.qx = j.qx;
        if (need >= 64 && st_tp_size(tp) > 1)
            st_tp_run(tp, quant_job, &j);
        else
            k->quant(x, j.qx, (int)need, W->type);
    }
    st_tp_run(tp, mm_job_fn, &j);
    return ST_OK;
}
