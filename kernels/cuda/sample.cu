/* Sampling on the device: logits (n_rows, vocab) -> one token id per row,
 * so only n_rows int32 cross back to the host instead of n_rows x vocab
 * floats (192 KiB per row for a 49152-token vocabulary).
 *
 * One block of SAMPLE_THREADS threads per row. Every pass over the row is
 * strided (thread t reads t, t + T, ...: each warp-wide load is one
 * contiguous 128-byte span), except the final draw, which walks ids in
 * order over one contiguous chunk per thread so that the cumulative sum
 * follows token order. The row (at most a few hundred KiB) stays in L2
 * across passes.
 *
 *  greedy (temperature <= 0): argmax, ties to the lowest id.
 *  otherwise:
 *   1. top-k: the largest threshold t_k with count(logit >= t_k) >= k, by
 *      bisection over [min, max] (40 halvings); every token at t_k or above
 *      is kept, so ties at the k-th value are all kept.
 *   2. weights w = exp((logit - max) / T) of the kept tokens; Z = sum w.
 *   3. top-p: the largest t_p >= t_k with mass(logit >= t_p) >= p Z, by the
 *      same bisection; tokens at t_p or above are kept.
 *   4. draw: the first id (in id order) whose cumulative kept weight exceeds
 *      u * Z_kept, u in [0, 1) given per row by the caller (its seeded RNG).
 * The float sums of different orders may differ in the last bits; a draw
 * that lands past the total takes the last kept token. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

#define SAMPLE_THREADS 256
#define BISECT_STEPS 40

static __device__ __forceinline__ float block_max(float v, float *scratch)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = st_warp_max(v);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : -INFINITY;
    v = st_warp_max(v);
    __syncthreads();
    return v;
}

/* sum over the block of w(l) for logits l >= t (weight 1: a count) */
static __device__ float mass_above(const float *l, int vocab, float t, float mx, float inv_t, bool count,
                                   float *scratch)
{
    float s = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (l[i] >= t)
            s += count ? 1.0f : expf((l[i] - mx) * inv_t);
    return st_block_sum(s, scratch);
}

/* Largest t in [lo, hi] with mass_above(t) >= need (mass_above(lo) >= need). */
static __device__ float bisect(const float *l, int vocab, float lo, float hi, float need, float mx, float inv_t,
                               bool count, float *scratch)
{
    if (mass_above(l, vocab, hi, mx, inv_t, count, scratch) >= need)
        return hi;
    for (int it = 0; it < BISECT_STEPS; it++) {
        const float mid = 0.5f * (lo + hi);
        if (mid <= lo || mid >= hi)
            break;
        if (mass_above(l, vocab, mid, mx, inv_t, count, scratch) >= need)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static __global__ void sample_kernel(int32_t *ids, const float *logits, int vocab, const st_cu_sample_row *params)
{
    ST_SHARED(float, scratch, 32);
    ST_SHARED(float, part, SAMPLE_THREADS);
    ST_SHARED(int, best_i, SAMPLE_THREADS);
    ST_SHARED(int, result, 1);
    const float *l = logits + (size_t)blockIdx.x * vocab;
    const st_cu_sample_row p = params[blockIdx.x];
    const int t = threadIdx.x, T = blockDim.x;

    if (!(p.temperature > 0.0f)) { /* greedy: (value, lowest id) tree reduction */
        float bv = -INFINITY;
        int bi = vocab;
        for (int i = t; i < vocab; i += T)
            if (l[i] > bv || (bi == vocab && i < bi)) { /* first seen wins ties: ids ascend per thread */
                bv = l[i];
                bi = i;
            }
        part[t] = bv;
        best_i[t] = bi;
        __syncthreads();
        for (int s = T / 2; s > 0; s >>= 1) {
            if (t < s) {
                const float ov = part[t + s];
                const int oi = best_i[t + s];
                if (ov > part[t] || (ov == part[t] && oi < best_i[t])) {
                    part[t] = ov;
                    best_i[t] = oi;
                }
            }
            __syncthreads();
        }
        if (t == 0)
            ids[blockIdx.x] = best_i[0] < vocab ? best_i[0] : 0;
        return;
    }

    float lmax = -INFINITY, lmin = INFINITY;
    for (int i = t; i < vocab; i += T) {
        lmax = fmaxf(lmax, l[i]);
        lmin = fminf(lmin, l[i]);
    }
    const float mx = block_max(lmax, scratch), mn = -block_max(-lmin, scratch);
    const float inv_t = 1.0f / p.temperature;
    float thr = mn;
    if (p.top_k > 0 && p.top_k < vocab)
        thr = bisect(l, vocab, mn, mx, (float)p.top_k, mx, inv_t, true, scratch);
    if (p.top_p < 1.0f) {
        const float z = mass_above(l, vocab, thr, mx, inv_t, false, scratch);
        thr = bisect(l, vocab, thr, mx, p.top_p * z, mx, inv_t, false, scratch);
    }

    /* the draw, in id order: thread t owns ids [c0, c1) */
    const int chunk = (vocab + T - 1) / T, c0 = t * chunk < vocab ? t * chunk : vocab,
              c1 = c0 + chunk < vocab ? c0 + chunk : vocab;
    float s = 0.0f;
    int last = -1;
    for (int i = c0; i < c1; i++)
        if (l[i] >= thr) {
            s += expf((l[i] - mx) * inv_t);
            last = i;
        }
    part[t] = s;
    best_i[t] = last;
    if (t == 0)
        *result = -1;
    __syncthreads();
    if (t == 0) { /* exclusive scan of the chunk sums (T values) */
        float run = 0.0f;
        for (int j = 0; j < T; j++) {
            const float v = part[j];
            part[j] = run;
            run += v;
        }
        scratch[0] = run;
    }
    __syncthreads();
    const float target = p.u * scratch[0];
    if (s > 0.0f && target >= part[t] && target < part[t] + s) {
        float cum = part[t];
        for (int i = c0; i < c1; i++)
            if (l[i] >= thr) {
                cum += expf((l[i] - mx) * inv_t);
                if (cum > target) {
                    *result = i;
                    break;
                }
            }
        if (*result < 0) /* rounding: the chunk's own sum ended just above target */
            *result = last;
    }
    __syncthreads();
    if (t == 0) {
        int r = *result;
        for (int j = T - 1; r < 0 && j >= 0; j--) /* target at or past the total: the last kept token */
            r = best_i[j];
        ids[blockIdx.x] = r >= 0 ? r : 0;
    }
}

cudaError_t st_cu_sample(int32_t *ids, const float *logits, int n_rows, int vocab, const st_cu_sample_row *params,
                         cudaStream_t s)
{
    if (n_rows <= 0)
        return cudaSuccess;
    if (vocab <= 0)
        return cudaErrorInvalidValue;
    return ST_LAUNCH(sample_kernel, (unsigned)n_rows, SAMPLE_THREADS, 0, s, ids, logits, vocab, params);
}
