/* Row-wise and elementwise kernels: RMSNorm (with the residual add fused),
 * RoPE, SwiGLU, add, and the embedding gather. All are bandwidth-bound:
 * consecutive threads touch consecutive elements so every warp load is one
 * contiguous, fully used span. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

/* ---- RMSNorm ------------------------------------------------------------------
 * One block per row; the row is read twice (sum of squares, then scale),
 * the second time from L1/L2. */
static __global__ void rmsnorm_kernel(float *out, float *x, const float *residual, const float *w, int dim,
                                      float eps)
{
    ST_SHARED(float, scratch, 32);
    const size_t base = (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = x[base + i];
        if (residual) {
            v += residual[base + i];
            x[base + i] = v;
        }
        ss += v * v;
    }
    ss = st_block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        out[base + i] = x[base + i] * inv * w[i];
}

static int threads_for(int work)
{
    int t = 32;
    while (t < work && t < 256)
        t *= 2;
    return t;
}

cudaError_t st_cu_rmsnorm(float *out, float *x, const float *residual, const float *w, int n, int dim, float eps,
                          cudaStream_t s)
{
    if (n <= 0)
        return cudaSuccess;
    return ST_LAUNCH(rmsnorm_kernel, n, threads_for(dim), 0, s, out, x, residual, w, dim, eps);
}

/* ---- RoPE -----------------------------------------------------------------------
 * One block per row, one thread per (head, rotated pair); dims past n_rot
 * are left as they are. The angle is pos * inv_freq[i] in f32 and the
 * rotation uses full-precision sincosf, as the CPU reference does. */
static __global__ void rope_kernel(float *x, int n_heads, int head_dim, const int32_t *pos, const float *inv_freq,
                                   int n_rot, int neox)
{
    const int half = n_rot / 2;
    const float p = (float)pos[blockIdx.x];
    float *row = x + (size_t)blockIdx.x * n_heads * head_dim;
    for (int t = threadIdx.x; t < n_heads * half; t += blockDim.x) {
        const int h = t / half, i = t % half;
        float sn, cs;
        sincosf(p * inv_freq[i], &sn, &cs);
        float *v = row + (size_t)h * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * cs - b * sn;
        v[i1] = a * sn + b * cs;
    }
}

cudaError_t st_cu_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos, const float *inv_freq,
                       int n_rot, int style, cudaStream_t s)
{
    if (n <= 0 || n_rot <= 0)
        return cudaSuccess;
    return ST_LAUNCH(rope_kernel, n, threads_for(n_heads * (n_rot / 2)), 0, s, x, n_heads, head_dim, pos, inv_freq,
                     n_rot, style == 1);
}

/* ---- SwiGLU, add ------------------------------------------------------------------ */
static __global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static __global__ void add_kernel(float *y, const float *x, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

static unsigned grid_for(size_t count)
{
    size_t b = (count + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096); /* grid-stride loops cover the rest */
}

cudaError_t st_cu_swiglu(float *out, const float *gate, const float *up, size_t count, cudaStream_t s)
{
    if (!count)
        return cudaSuccess;
    return ST_LAUNCH(swiglu_kernel, grid_for(count), 256, 0, s, out, gate, up, count);
}

cudaError_t st_cu_add(float *y, const float *x, size_t count, cudaStream_t s)
{
    if (!count)
        return cudaSuccess;
    return ST_LAUNCH(add_kernel, grid_for(count), 256, 0, s, y, x, count);
}

/* ---- embedding gather ---------------------------------------------------------------
 * One block per token; thread i produces elements i, i + blockDim.x, ... so
 * the f32 output row is written contiguously. For Q-types, the 32 threads of
 * a warp dequantize one block together (same scale, consecutive quants). */
static __device__ __forceinline__ float load_elem(const uint8_t *row, st_dtype t, int e)
{
    switch (t) {
    case ST_F32: return reinterpret_cast<const float *>(row)[e];
    case ST_F16: return st_h2f(reinterpret_cast<const uint16_t *>(row)[e]);
    case ST_BF16: return st_bf2f(reinterpret_cast<const uint16_t *>(row)[e]);
    case ST_Q8_0: {
        const uint8_t *b = row + (size_t)(e / 32) * 34;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
        return d * (float)(int8_t)b[2 + e % 32];
    }
    case ST_Q4_0: {
        const uint8_t *b = row + (size_t)(e / 32) * 18;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
        const int j = e % 32;
        const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return d * (float)(q - 8);
    }
    case ST_Q4_1: {
        const uint8_t *b = row + (size_t)(e / 32) * 20;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
        const float m = st_h2f((uint16_t)(b[2] | b[3] << 8));
        const int j = e % 32;
        const int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
        return d * (float)q + m;
    }
    default: return 0.0f;
    }
}

static __global__ void embed_kernel(float *out, const uint8_t *table, st_dtype t, size_t row_bytes, int dim,
                                    const int32_t *ids)
{
    const uint8_t *row = table + (size_t)ids[blockIdx.x] * row_bytes;
    float *o = out + (size_t)blockIdx.x * dim;
    for (int e = threadIdx.x; e < dim; e += blockDim.x)
        o[e] = load_elem(row, t, e);
}

cudaError_t st_cu_embed(float *out, const void *table, st_dtype t, size_t row_bytes, int dim, const int32_t *ids,
                        int n, cudaStream_t s)
{
    if (n <= 0)
        return cudaSuccess;
    return ST_LAUNCH(embed_kernel, n, threads_for(dim), 0, s, out, static_cast<const uint8_t *>(table), t, row_bytes,
                     dim, ids);
}
