/* Device helpers shared by the kernels: warp/block reductions and scalar
 * loads of the stored weight types. Included after launch.cuh. */
#ifndef ST_CUDA_COMMON_CUH
#define ST_CUDA_COMMON_CUH

#include "kernels/cuda/launch.cuh"

#include <stdint.h>

/* Sum over the 32 lanes of a full warp; every lane gets the total. */
static __device__ __forceinline__ float st_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(ST_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float st_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(ST_FULL_MASK, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the total. `scratch` is 32 floats of shared memory, reused
 * after the call returns. Contains two barriers: call it from all threads. */
static __device__ __forceinline__ float st_block_sum(float v, float *scratch)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = st_warp_sum(v);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    v = st_warp_sum(v);
    __syncthreads(); /* scratch may be written again by the caller */
    return v;
}

/* IEEE half / bfloat16 bit patterns to float. */
static __device__ __forceinline__ float st_h2f(uint16_t u)
{
    __half_raw r;
    r.x = u;
    return __half2float(__half(r));
}
static __device__ __forceinline__ float st_bf2f(uint16_t u) { return __int_as_float((int)((uint32_t)u << 16)); }

#endif
