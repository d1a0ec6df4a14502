/* GPUDirect for the dpdk transport (build-time optional): registering a
 * GPU-resident buffer with DPDK's gpudev (rte_gpu_mem_register) so that a
 * NIC can move payloads straight to and from GPU memory, else falling back
 * to host staging (the payload goes through host memory and is copied).
 *
 * The gpudev path is compiled when the DPDK headers have rte_gpudev.h
 * (tested with __has_include, since the build files stay unchanged) and the
 * transport is built (ST_HAVE_DPDK). Debian's DPDK 22.11 ships the gpudev
 * library but no GPU driver for it (no gpu_cuda), so rte_gpu_count_avail()
 * is 0 there and the chain always ends in staging; the chain's logic is
 * unit-tested with fake operations (test_dpdk_gpu.c). Not run on GPU
 * hardware. */
#define _GNU_SOURCE
#define ALLOW_EXPERIMENTAL_API /* gpudev is experimental in DPDK 22.11 */
#include "dataplane/dpdk.h"

#include "common/st_common.h"

#if defined(ST_HAVE_DPDK) && defined(__has_include)
#if __has_include(<rte_gpudev.h>)
#include <rte_gpudev.h>
#define ST_DPDK_GPUDEV 1
#endif
#endif

#ifdef ST_DPDK_GPUDEV
static int real_count(void) { return (int)rte_gpu_count_avail(); }
static int real_register(int16_t dev, size_t len, void *ptr) { return rte_gpu_mem_register(dev, len, ptr); }
static int real_unregister(int16_t dev, void *ptr) { return rte_gpu_mem_unregister(dev, ptr); }
static const st_dpdk_gpu_ops real_ops = {real_count, real_register, real_unregister};
#endif

int st_dpdk_gpu_built(void)
{
#ifdef ST_DPDK_GPUDEV
    return 1;
#else
    return 0;
#endif
}

const char *st_dpdk_gpu_path_name(st_dpdk_gpu_path p)
{
    return p == ST_DPDK_GPU_GPUDEV ? "gpudev" : p == ST_DPDK_GPU_STAGING ? "host staging" : "none";
}

int st_dpdk_gpu_register(const st_dpdk_gpu_ops *ops, int16_t dev, void *ptr, size_t len, st_dpdk_gpu_reg *out)
{
    if (!ptr || !len || !out || dev < 0)
        return st_err(ST_EINVAL, "dpdk gpu: register needs a buffer, a length and a device id >= 0");
    out->path = ST_DPDK_GPU_NONE;
    out->dev = dev, out->ptr = ptr, out->len = len;
    out->ops = ops;
#ifdef ST_DPDK_GPUDEV
    if (!out->ops)
        out->ops = &real_ops;
#endif
    const char *why;
    if (!out->ops) {
        why = "this build has no gpudev (DPDK without rte_gpudev.h, or no DPDK)";
    } else if (out->ops->count() <= dev) {
        why = "no gpudev device with that id (DPDK has no GPU driver here)";
    } else if (out->ops->reg(dev, len, ptr) != 0) {
        why = "rte_gpu_mem_register refused the buffer";
    } else {
        out->path = ST_DPDK_GPU_GPUDEV;
        ST_INFO("dpdk gpu: %zu bytes registered with gpudev device %d", len, (int)dev);
        return ST_OK;
    }
    out->path = ST_DPDK_GPU_STAGING;
    ST_INFO("dpdk gpu: %s; payloads are staged through host memory", why);
    return ST_OK;
}

void st_dpdk_gpu_unregister(st_dpdk_gpu_reg *r)
{
    if (r && r->path == ST_DPDK_GPU_GPUDEV && r->ops)
        r->ops->unreg(r->dev, r->ptr);
    if (r)
        r->path = ST_DPDK_GPU_NONE;
}
