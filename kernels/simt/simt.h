/* SIMT emulator: run the CUDA C++ kernels of kernels/cuda on the CPU, for
 * tests. Test builds compile the unchanged .cu files as host C++ with this
 * header in place of nvcc's device environment (kernels/cuda/launch.cuh
 * picks one or the other); nothing here is in the strait binary.
 *
 * Model of execution (see simt_sched.cpp):
 *  - a launch runs synchronously; its blocks run one after another (or on
 *    ST_SIMT_THREADS OS threads), the threads of a block as cooperative
 *    fibers on guard-paged stacks. A fiber runs until it reaches
 *    __syncthreads, a warp collective or its end; the schedule policy then
 *    decides which ready thread runs next.
 *  - threadIdx / blockIdx / blockDim / gridDim are thread-locals that the
 *    scheduler sets before resuming a fiber.
 *  - __syncthreads is a barrier of all threads of the block; arriving at
 *    different call sites, or exiting while others wait, is reported with
 *    file:line, as is a deadlock (no thread can go on).
 *  - warp collectives follow the PTX shfl.sync / vote.sync / bar.warp.sync
 *    semantics: every lane named in `mask` must arrive at the same kind of
 *    collective with the same mask; the calling lane must be in its mask;
 *    a shuffle from a lane outside the mask yields all-ones bits (NaN for
 *    floats), since the hardware leaves it undefined.
 *  - shared memory (ST_SHARED / ST_SHARED_DYN) is a separate heap block per
 *    thread block and declaration, exactly sized and filled with 0xff, so
 *    AddressSanitizer sees overruns and reads of unwritten shared memory
 *    give NaN / -1.
 *  - cudaMalloc & co (simt_cudart.cpp) are host allocations, one per call.
 *
 * An emulation error (bad mask, divergent barrier, deadlock, bad launch
 * configuration) stops the launch; the message is printed, kept for
 * simt::last_error(), and the launch's cudaError is cudaErrorLaunchFailure
 * (cudaErrorInvalidConfiguration for a bad configuration). ST_SIMT_ABORT=1
 * aborts instead. */
#ifndef ST_SIMT_H
#define ST_SIMT_H

#ifdef __CUDACC__
#error "kernels/simt is the host emulation; nvcc builds use the real device"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

namespace simt {

/* Order in which ready threads of a block run.
 *  INORDER: round robin by linear thread id; each runs until it blocks.
 *  LOWEST / HIGHEST: always the lowest (highest) ready thread id, so one
 *    warp runs as far as it can before the others start: a read of shared
 *    memory that lacks a barrier sees a different state in the two.
 *  RANDOM: a random ready thread, from a seeded generator. */
enum schedule { SCHED_INORDER = 0, SCHED_LOWEST, SCHED_HIGHEST, SCHED_RANDOM };

/* Process-wide policy for the following launches (default INORDER, or
 * env ST_SIMT_SCHEDULE=inorder|lowest|highest|random[:seed]). */
void set_schedule(schedule s, uint64_t seed = 1);
schedule get_schedule();
const char *schedule_name(schedule s);
/* OS threads that run blocks of one launch in parallel (default 1, or env
 * ST_SIMT_THREADS); results must not depend on it. */
void set_os_threads(int n);

/* Message of the last emulation error, "" if none; clear_error resets it. */
const char *last_error();
void clear_error();
/* Launches that ended in an emulation error since the process started. */
long error_count();

/* ---- internals used by the macros below ---------------------------------- */
typedef void (*body_fn)(void *ctx);
cudaError_t launch_impl(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char *file, int line,
                        body_fn body, void *ctx);
void syncthreads(const char *file, int line);

enum warp_op { W_SHFL_IDX, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL, W_SYNCWARP };
uint64_t warp_collective(warp_op op, unsigned mask, uint64_t bits, int param, int width, const char *file,
                         int line);
unsigned activemask();
void *shared_static(const void *key, size_t bytes, size_t align, const char *name, const char *file, int line);
void *shared_dynamic(const char *file, int line);

template <typename T> static inline T shfl(warp_op op, const char *file, int line, unsigned mask, T var, int param,
                                           int width)
{
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, static_cast<const void *>(&var), sizeof(T));
    bits = warp_collective(op, mask, bits, param, width, file, line);
    T out = var; /* __half has no default constructor usable here */
    memcpy(static_cast<void *>(&out), &bits, sizeof(T));
    return out;
}

template <typename... P, typename... A>
static inline cudaError_t launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                 const char *file, int line, A &&...args)
{
    /* every thread calls the kernel with its own copies of the arguments,
     * converted to the parameter types as at a real launch */
    auto call = [&]() { kernel(args...); };
    typedef decltype(call) call_t;
    return launch_impl(grid, block, smem, stream, file, line, [](void *c) { (*static_cast<call_t *>(c))(); },
                       &call);
}

} // namespace simt

/* ---- the device environment ------------------------------------------------ */
/* Plain (POD) thread-locals: C++ thread_local of a class type would go
 * through TLS wrapper functions. blockDim / gridDim are uint3 here (dim3 on
 * the device); dim3 converts from uint3 where a dim3 is wanted. */
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread uint3 blockDim;
extern __thread uint3 gridDim;
constexpr int warpSize = 32;

#define __syncthreads() ::simt::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::simt::syncwarp_(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::simt::shfl_idx_(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::simt::shfl_up_(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::simt::shfl_down_(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::simt::shfl_xor_(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
    ((unsigned)::simt::warp_collective(::simt::W_BALLOT, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, pred) \
    ((int)::simt::warp_collective(::simt::W_ANY, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, pred) \
    ((int)::simt::warp_collective(::simt::W_ALL, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __activemask() ::simt::activemask()

namespace simt {
static inline void syncwarp_(const char *file, int line, unsigned mask = 0xffffffffu)
{
    warp_collective(W_SYNCWARP, mask, 0, 0, 32, file, line);
}
template <typename T> static inline T shfl_idx_(const char *f, int l, unsigned mask, T v, int src, int width = 32)
{
    return shfl(W_SHFL_IDX, f, l, mask, v, src, width);
}
template <typename T> static inline T shfl_up_(const char *f, int l, unsigned mask, T v, unsigned d, int width = 32)
{
    return shfl(W_SHFL_UP, f, l, mask, v, (int)d, width);
}
template <typename T>
static inline T shfl_down_(const char *f, int l, unsigned mask, T v, unsigned d, int width = 32)
{
    return shfl(W_SHFL_DOWN, f, l, mask, v, (int)d, width);
}
template <typename T> static inline T shfl_xor_(const char *f, int l, unsigned mask, T v, int lm, int width = 32)
{
    return shfl(W_SHFL_XOR, f, l, mask, v, lm, width);
}
} // namespace simt

/* Shared memory. Under nvcc (launch.cuh) these are __shared__ arrays; here
 * `name` is a pointer to the block's heap copy. Use them only in kernel or
 * __device__ code, unconditionally, by all threads of the block. */
#define ST_SHARED(type, name, count)                                                                           \
    static const char name##_simt_key = 0;                                                                     \
    type *const name = static_cast<type *>(                                                                    \
        ::simt::shared_static(&name##_simt_key, sizeof(type) * (size_t)(count), alignof(type), #name, __FILE__, \
                              __LINE__))
#define ST_SHARED_DYN(type, name) type *const name = static_cast<type *>(::simt::shared_dynamic(__FILE__, __LINE__))

/* Kernel launch: synchronous; returns the launch's cudaError_t (also kept
 * for cudaGetLastError). */
#define ST_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::simt::launch(kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), __FILE__, __LINE__, __VA_ARGS__)

/* ---- device math without a host definition -------------------------------- */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
/* glibc declares its own __expf/__logf: map the CUDA names by macro */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
template <typename T> static inline T __ldg(const T *p) { return *p; }

/* Atomics on global or shared memory: blocks may run on several OS threads. */
static inline float atomicAdd(float *p, float v)
{
    uint32_t *u = reinterpret_cast<uint32_t *>(p);
    uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED), nv;
    do {
        nv = (uint32_t)__float_as_int(__int_as_float((int)old) + v);
    } while (!__atomic_compare_exchange_n(u, &old, nv, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return __int_as_float((int)old);
}
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int atomicMax(int *p, int v)
{
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline int atomicCAS(int *p, int cmp, int v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}

#endif
