/* The part of the CUDA runtime API the kernels' host code uses, for the
 * SIMT emulator: "device" memory is host memory, one allocation per
 * cudaMalloc so AddressSanitizer sees each edge; copies are memcpy (the
 * kind is checked against the allocation table); streams and events exist
 * but order nothing, since every launch runs to completion at once.
 * Signatures come from the toolkit's cuda_runtime_api.h. One emulated
 * device (number 0) exists unless ST_SIMT_DEVICES=0 says there is none. */
#include "kernels/simt/simt.h"

#include <chrono>
#include <map>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>

struct CUstream_st {
    int id;
};
struct CUevent_st {
    double t_ms;
};

namespace simt {

static std::mutex g_mu;
static std::map<uintptr_t, size_t> g_allocs; /* device allocations: start -> bytes */
static thread_local cudaError_t g_last = cudaSuccess;

void set_launch_error(cudaError_t e) { g_last = e; }

static cudaError_t fail(cudaError_t e, const char *what)
{
    fprintf(stderr, "simt cudart: %s\n", what);
    g_last = e;
    return e;
}

/* Is [p, p + n) inside one device allocation? */
static bool in_device(const void *p, size_t n)
{
    std::lock_guard<std::mutex> g(g_mu);
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin())
        return false;
    --it;
    return (uintptr_t)p >= it->first && (uintptr_t)p - it->first + n <= it->second;
}

static int n_devices()
{
    const char *e = getenv("ST_SIMT_DEVICES");
    return e ? atoi(e) : 1;
}

} // namespace simt

using namespace simt;

extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = n_devices();
    if (*count <= 0) {
        *count = 0;
        g_last = cudaErrorNoDevice;
        return cudaErrorNoDevice;
    }
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= n_devices())
        return fail(cudaErrorInvalidDevice, "cudaSetDevice: no such device");
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = nullptr;
    if (bytes == 0)
        return cudaSuccess;
    void *m = nullptr;
    if (posix_memalign(&m, 256, bytes) != 0)
        return fail(cudaErrorMemoryAllocation, "cudaMalloc: out of memory");
    std::lock_guard<std::mutex> g(g_mu);
    g_allocs[(uintptr_t)m] = bytes;
    *p = m;
    return cudaSuccess;
}

/* The emulated device's memory is the host's: free is MemAvailable (the
 * emulated allocations are host allocations, already counted there),
 * total is MemTotal. */
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    *free_b = *total_b = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return fail(cudaErrorUnknown, "cudaMemGetInfo: cannot read /proc/meminfo");
    char line[256];
    unsigned long long kib;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            *free_b = (size_t)kib * 1024;
        else if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            *total_b = (size_t)kib * 1024;
    }
    fclose(f);
    if (!*free_b || !*total_b)
        return fail(cudaErrorUnknown, "cudaMemGetInfo: /proc/meminfo lacks MemAvailable or MemTotal");
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p)
        return cudaSuccess;
    {
        std::lock_guard<std::mutex> g(g_mu);
        auto it = g_allocs.find((uintptr_t)p);
        if (it == g_allocs.end()) {
            g_last = cudaErrorInvalidValue;
            fprintf(stderr, "simt cudart: cudaFree of %p, not a device allocation\n", p);
            return cudaErrorInvalidValue;
        }
        g_allocs.erase(it);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaMallocHost: out of memory");
}

cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    if (!n)
        return cudaSuccess;
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyDefault && kind != cudaMemcpyHostToHost &&
        ((dst_dev && !in_device(dst, n)) || (src_dev && !in_device(src, n))))
        return fail(cudaErrorInvalidValue, "cudaMemcpy: a device range is not inside one cudaMalloc allocation");
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s)
{
    (void)s;
    return cudaMemcpy(dst, src, n, kind);
}

cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (!n)
        return cudaSuccess;
    if (!in_device(p, n))
        return fail(cudaErrorInvalidValue, "cudaMemset: range is not inside one cudaMalloc allocation");
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    (void)s;
    return cudaMemset(p, v, n);
}

cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    *s = new CUstream_st{1};
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    (void)flags;
    return cudaStreamCreate(s);
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    (void)s;
    return g_last;
}

cudaError_t cudaDeviceSynchronize(void) { return g_last; }

static double now_ms()
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    *e = new CUevent_st{0};
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    (void)s;
    e->t_ms = now_ms();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    (void)e;
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    *ms = (float)(b->t_ms - a->t_ms);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last; }

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    default: return "cudaError(other)";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorLaunchFailure: return "unspecified launch failure (simt emulation error, see simt::last_error)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return cudaGetErrorName(e);
    }
}

} /* extern "C" */
