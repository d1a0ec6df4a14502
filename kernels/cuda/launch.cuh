/* The one header every kernels/cuda source includes first: the device
 * environment under nvcc, or the SIMT emulator (kernels/simt) when the same
 * file is compiled as host C++ for tests. Kernels use only what both give:
 *
 *   ST_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)
 *       kernel<<<grid, block, smem_bytes, stream>>>(args...) (g++ cannot
 *       parse <<<>>>); a template kernel with one argument list works as is.
 *   ST_SHARED(type, name, count)   a static shared array `type name[count]`
 *   ST_SHARED_DYN(type, name)      `type *name` at the launch's dynamic
 *                                  shared memory
 *
 * Bare __shared__ is rejected by tests/simt/lint_shared.sh: in the emulator
 * only these macros give per-block memory that AddressSanitizer watches. */
#ifndef ST_CUDA_LAUNCH_CUH
#define ST_CUDA_LAUNCH_CUH

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define ST_LAUNCH(kernel, grid, block, smem, stream, ...) \
    (kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__), cudaGetLastError())
#define ST_SHARED(type, name, count) __shared__ type name[count]
#define ST_SHARED_DYN(type, name)                            \
    extern __shared__ __align__(16) unsigned char st_dyn_smem[]; \
    type *const name = reinterpret_cast<type *>(st_dyn_smem)
#define ST_EMULATED 0
#else
#include "kernels/simt/simt.h"
#define ST_EMULATED 1
#endif

#define ST_FULL_MASK 0xffffffffu

#endif
