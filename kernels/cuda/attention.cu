/* Paged KV cache writes and causal attention over it, for a mixed batch of
 * prefill chunks and decodes (every row attends to positions [0, pos] of its
 * own sequence, through that sequence's block table).
 *
 * This first version is the simple, always-correct one: one block of four
 * warps per (head, row). Each warp takes every fourth position; for one
 * position the warp reads that key (head_dim contiguous f16 = one coalesced
 * 128..512-byte span), reduces q.k with shuffles, and folds the value row
 * into a running softmax (max, sum, acc) kept in registers, lane l owning
 * dims l, l + 32, ... At the end the four partial softmaxes merge through
 * shared memory. Still to come: several rows of one sequence sharing a K/V
 * tile (prefill).
 *
 * Split-K (flash-decoding) for long contexts with few rows: grid.z splits
 * each row's positions into chunks of `chunk`; split z folds positions
 * [z chunk, (z+1) chunk) and writes its unnormalised partial (max, sum,
 * acc[head_dim]) to scratch, and a second kernel merges the splits. A
 * decode of one sequence then uses n_heads x splits blocks instead of
 * n_heads, so a 4k context keeps every SM streaming K/V. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

#define ATT_WARPS 4
#define ATT_MAX_DIM 256
#define ATT_PER_LANE (ATT_MAX_DIM / 32)

static __device__ __forceinline__ float kv_load(const void *base, int f16, size_t i)
{
    return f16 ? st_h2f(static_cast<const uint16_t *>(base)[i]) : static_cast<const float *>(base)[i];
}

/* Offset (in elements) of (position p, kv head h, dim 0) in layer storage. */
static __device__ __forceinline__ size_t kv_offset(const int32_t *table, int p, int h, const st_cu_paged &g)
{
    const int blk = table[p / g.block_size], slot = p % g.block_size;
    return (((size_t)blk * g.n_kv_heads + h) * g.block_size + slot) * g.head_dim;
}

/* ---- kv_write: one block per row, threads over (kv head, dim) ------------------- */
static __global__ void kv_write_kernel(void *K, void *V, const float *k, const float *v, st_cu_paged g)
{
    const int row = blockIdx.x, pos = g.meta[row];
    const int32_t *table = g.meta + g.meta[g.n_tokens + row];
    const int width = g.n_kv_heads * g.head_dim;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        const int h = i / g.head_dim, d = i % g.head_dim;
        const size_t o = kv_offset(table, pos, h, g) + d;
        const float kk = k[(size_t)row * width + i], vv = v[(size_t)row * width + i];
        if (g.f16) {
            static_cast<__half *>(K)[o] = __float2half_rn(kk);
            static_cast<__half *>(V)[o] = __float2half_rn(vv);
        } else {
            static_cast<float *>(K)[o] = kk;
            static_cast<float *>(V)[o] = vv;
        }
    }
}

cudaError_t st_cu_kv_write(void *K, void *V, const float *k, const float *v, const st_cu_paged *p, cudaStream_t s)
{
    if (p->n_tokens <= 0)
        return cudaSuccess;
    return ST_LAUNCH(kv_write_kernel, p->n_tokens, 128, 0, s, K, V, k, v, *p);
}

/* ---- attention: grid (n_heads, n_tokens), ATT_WARPS warps ------------------------ */
static __global__ void attention_kernel(float *out, const float *q, const void *K, const void *V, st_cu_paged g,
                                        int n_heads, float scale, int chunk, float *partial)
{
    ST_SHARED(float, qs, ATT_MAX_DIM);
    ST_SHARED(float, part_m, ATT_WARPS);
    ST_SHARED(float, part_l, ATT_WARPS);
    ST_SHARED(float, part_acc, ATT_WARPS * ATT_MAX_DIM);
    const int h = blockIdx.x, row = blockIdx.y;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int hd = g.head_dim, kvh = h / (n_heads / g.n_kv_heads);
    const int pos = g.meta[row];
    const int32_t *table = g.meta + g.meta[g.n_tokens + row];
    const float *qr = q + ((size_t)row * n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x)
        qs[d] = qr[d] * scale;
    __syncthreads();

    float m = -INFINITY, l = 0.0f, acc[ATT_PER_LANE];
    for (int j = 0; j < ATT_PER_LANE; j++)
        acc[j] = 0.0f;
    const int p0 = (int)blockIdx.z * chunk, p1 = pos - p0 < chunk ? pos + 1 : p0 + chunk; /* [p0, p1) */
    for (int p = p0 + warp; p < p1; p += ATT_WARPS) {
        const size_t o = kv_offset(table, p, kvh, g);
        float s = 0.0f;
        for (int d = lane; d < hd; d += 32)
            s += qs[d] * kv_load(K, g.f16, o + d);
        s = st_warp_sum(s);
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), w = expf(s - m_new);
        l = l * corr + w;
        for (int j = 0, d = lane; d < hd; j++, d += 32)
            acc[j] = acc[j] * corr + w * kv_load(V, g.f16, o + d);
        m = m_new;
    }
    if (lane == 0) {
        part_m[warp] = m;
        part_l[warp] = l;
    }
    for (int j = 0, d = lane; d < hd; j++, d += 32)
        part_acc[warp * ATT_MAX_DIM + d] = acc[j];
    __syncthreads();

    /* merge: a warp that saw no position has m = -inf and weight 0 */
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++)
        M = fmaxf(M, part_m[w]);
    float L = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++)
        L += part_m[w] == -INFINITY ? 0.0f : part_l[w] * expf(part_m[w] - M);
    if (partial) { /* split-K: (M, L, acc[hd]) unnormalised, merged by attention_merge_kernel */
        float *o = partial + (((size_t)row * n_heads + h) * gridDim.z + blockIdx.z) * (hd + 2);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float v = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++)
                if (part_m[w] != -INFINITY)
                    v += part_acc[w * ATT_MAX_DIM + d] * expf(part_m[w] - M);
            o[2 + d] = v;
        }
        if (threadIdx.x == 0) {
            o[0] = M;
            o[1] = L;
        }
        return;
    }
    float *o = out + ((size_t)row * n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (part_m[w] != -INFINITY)
                v += part_acc[w * ATT_MAX_DIM + d] * expf(part_m[w] - M);
        o[d] = v / L;
    }
}

cudaError_t st_cu_attention(float *out, const float *q, const void *K, const void *V, const st_cu_paged *p,
                            int n_heads, float scale, cudaStream_t s)
{
    if (p->n_tokens <= 0)
        return cudaSuccess;
    if (p->head_dim > ATT_MAX_DIM || p->n_kv_heads <= 0 || n_heads % p->n_kv_heads)
        return cudaErrorInvalidValue;
    return ST_LAUNCH(attention_kernel, dim3((unsigned)n_heads, (unsigned)p->n_tokens), 32 * ATT_WARPS, 0, s, out,
                     q, K, V, *p, n_heads, scale, INT32_MAX, static_cast<float *>(nullptr));
}

/* ---- split-K merge: grid (n_heads, n_tokens), threads over dims ------------------- */
static __global__ void attention_merge_kernel(float *out, const float *partial, int n_heads, int hd, int splits)
{
    const int h = blockIdx.x, row = blockIdx.y;
    const float *part = partial + ((size_t)row * n_heads + h) * splits * (hd + 2);
    float M = -INFINITY;
    for (int z = 0; z < splits; z++) /* a split past the row's position has M = -inf, L = 0 */
        M = fmaxf(M, part[(size_t)z * (hd + 2)]);
    float L = 0.0f;
    for (int z = 0; z < splits; z++) {
        const float m = part[(size_t)z * (hd + 2)];
        L += m == -INFINITY ? 0.0f : part[(size_t)z * (hd + 2) + 1] * expf(m - M);
    }
    float *o = out + ((size_t)row * n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int z = 0; z < splits; z++) {
            const float m = part[(size_t)z * (hd + 2)];
            if (m != -INFINITY)
                v += part[(size_t)z * (hd + 2) + 2 + d] * expf(m - M);
        }
        o[d] = v / L;
    }
}

cudaError_t st_cu_attention_splitk(float *out, float *partial, const float *q, const void *K, const void *V,
                                   const st_cu_paged *p, int n_heads, float scale, int chunk, int splits,
                                   cudaStream_t s)
{
    if (p->n_tokens <= 0)
        return cudaSuccess;
    if (p->head_dim > ATT_MAX_DIM || p->n_kv_heads <= 0 || n_heads % p->n_kv_heads || chunk <= 0 || splits <= 0 ||
        splits > 65535)
        return cudaErrorInvalidValue;
    const dim3 grid((unsigned)n_heads, (unsigned)p->n_tokens, (unsigned)splits);
    cudaError_t e = ST_LAUNCH(attention_kernel, grid, 32 * ATT_WARPS, 0, s, out, q, K, V, *p, n_heads, scale, chunk,
                              partial);
    if (e != cudaSuccess)
        return e;
    return ST_LAUNCH(attention_merge_kernel, dim3((unsigned)n_heads, (unsigned)p->n_tokens), 64, 0, s, out,
                     static_cast<const float *>(partial), n_heads, p->head_dim, splits);
}
