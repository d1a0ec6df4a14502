/* Dequantizing matrix-vector products for the decode path:
 * y (n, rows) = x (n, cols) @ W^T (+ bias), W in its stored type.
 *
 * One warp per output row, four rows per block, one token per grid row.
 * Access pattern: a warp walks its weight row front to back, lane l taking
 * quant block l, l + 32, ... (or element pair l, l + 32, ... for f16/bf16),
 * so each warp-wide step reads one contiguous span of the row (32 blocks =
 * 1088 bytes of Q8_0, 576 of Q4_0, 640 of Q4_1; 128 bytes of f16) and every
 * DRAM sector fetched is used in full: the kernel streams each weight byte
 * once per token, which is what bounds decode. The activations x (a few KiB
 * per token) are re-read by the four warps of a block from L1/L2. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

#define ROWS_PER_BLOCK 4

/* Dot product of one quant block (32 elements at x) with 32 activations. */
static __device__ __forceinline__ float dot_q8_0(const uint8_t *b, const float *x)
{
    const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
    float s = 0.0f;
    for (int j = 0; j < 32; j++)
        s += x[j] * (float)(int8_t)b[2 + j];
    return d * s;
}

static __device__ __forceinline__ float dot_q4_0(const uint8_t *b, const float *x)
{
    const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
    float s = 0.0f;
    for (int j = 0; j < 16; j++) {
        const int q = b[2 + j];
        s += x[j] * (float)((q & 15) - 8) + x[j + 16] * (float)((q >> 4) - 8);
    }
    return d * s;
}

static __device__ __forceinline__ float dot_q4_1(const uint8_t *b, const float *x)
{
    const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
    const float m = st_h2f((uint16_t)(b[2] | b[3] << 8));
    float s = 0.0f, sx = 0.0f;
    for (int j = 0; j < 16; j++) {
        const int q = b[4 + j];
        s += x[j] * (float)(q & 15) + x[j + 16] * (float)(q >> 4);
        sx += x[j] + x[j + 16];
    }
    return d * s + m * sx;
}

static __global__ void matvec_kernel(float *y, const float *x, const uint8_t *W, st_dtype t, size_t row_bytes,
                                     int rows, int cols, const float *bias)
{
    const int lane = threadIdx.x % 32;
    const int r = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    if (r >= rows) /* whole warps leave together; no barrier below */
        return;
    const float *xt = x + (size_t)blockIdx.y * cols;
    const uint8_t *w = W + (size_t)r * row_bytes;
    float acc = 0.0f;
    switch (t) {
    case ST_Q8_0:
        for (int b = lane; b < cols / 32; b += 32)
            acc += dot_q8_0(w + (size_t)b * 34, xt + b * 32);
        break;
    case ST_Q4_0:
        for (int b = lane; b < cols / 32; b += 32)
            acc += dot_q4_0(w + (size_t)b * 18, xt + b * 32);
        break;
    case ST_Q4_1:
        for (int b = lane; b < cols / 32; b += 32)
            acc += dot_q4_1(w + (size_t)b * 20, xt + b * 32);
        break;
    case ST_F16:
    case ST_BF16: {
        const uint16_t *w16 = reinterpret_cast<const uint16_t *>(w);
        const bool bf = t == ST_BF16;
        if (cols % 2 == 0 && row_bytes % 4 == 0) { /* 4-byte loads of element pairs */
            const uint32_t *w32 = reinterpret_cast<const uint32_t *>(w);
            for (int p = lane; p < cols / 2; p += 32) {
                const uint32_t u = w32[p];
                const float a = bf ? st_bf2f((uint16_t)u) : st_h2f((uint16_t)u);
                const float b = bf ? st_bf2f((uint16_t)(u >> 16)) : st_h2f((uint16_t)(u >> 16));
                acc += a * xt[2 * p] + b * xt[2 * p + 1];
            }
        } else {
            for (int i = lane; i < cols; i += 32)
                acc += (bf ? st_bf2f(w16[i]) : st_h2f(w16[i])) * xt[i];
        }
        break;
    }
    default: {
        const float *wf = reinterpret_cast<const float *>(w);
        for (int i = lane; i < cols; i += 32)
            acc += wf[i] * xt[i];
    }
    }
    acc = st_warp_sum(acc);
    if (lane == 0)
        y[(size_t)blockIdx.y * rows + r] = acc + (bias ? bias[r] : 0.0f);
}

cudaError_t st_cu_matvec(float *y, const float *x, const void *W, st_dtype t, size_t row_bytes, int rows, int cols,
                         const float *bias, int n, cudaStream_t s)
{
    if (n <= 0 || rows <= 0)
        return cudaSuccess;
    const dim3 grid((unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK), (unsigned)n);
    return ST_LAUNCH(matvec_kernel, grid, 32 * ROWS_PER_BLOCK, 0, s, y, x, static_cast<const uint8_t *>(W), t,
                     row_bytes, rows, cols, bias);
}
