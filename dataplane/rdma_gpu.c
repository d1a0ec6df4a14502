/* GPUDirect registration: the fall-back chain (every build) and its real
 * operations on libibverbs and the CUDA driver (ST_HAVE_RDMA builds).
 * NOT RUN ON HARDWARE; see rdma_gpu.h. */
#define _GNU_SOURCE
#include "dataplane/rdma_gpu.h"

#include "common/st_common.h"

#include <stdio.h>
#include <string.h>

static const char *const path_names[] = {"none", "dma-buf", "peer memory (nvidia-peermem)", "pinned host staging"};

static void note(st_rdma_gpu_reg *out, const char *step)
{
    size_t n = strlen(out->why);
    snprintf(out->why + n, sizeof out->why - n, "%s%s: %s", n ? "; " : "", step, st_errmsg());
}

int st_rdma_gpu_register(const st_rdma_gpu_ops *ops, void *ptr, size_t len, st_rdma_gpu_reg *out)
{
    memset(out, 0, sizeof *out);
    if (!ptr || !len)
        return st_err(ST_EINVAL, "rdma gpu: register %p, %zu bytes", ptr, len);
    int fd = -1;
    uint64_t off = 0;
    if (ops->dmabuf_fd && ops->reg_dmabuf) {
        if (ops->dmabuf_fd(ops->ctx, ptr, len, &fd, &off) == ST_OK) {
            out->mr = ops->reg_dmabuf(ops->ctx, fd, off, len, (uint64_t)(uintptr_t)ptr);
            if (ops->close_fd)
                ops->close_fd(fd);
            if (out->mr)
                out->path = ST_RDMA_REG_DMABUF;
            else
                note(out, "dma-buf registration");
        } else {
            note(out, "dma-buf handle");
        }
    }
    if (!out->mr && ops->reg_ptr) {
        if ((out->mr = ops->reg_ptr(ops->ctx, ptr, len)))
            out->path = ST_RDMA_REG_PEERMEM;
        else
            note(out, "peer memory");
    }
    if (!out->mr && ops->reg_staging) {
        if ((out->mr = ops->reg_staging(ops->ctx, len, &out->staging)))
            out->path = ST_RDMA_REG_STAGING;
        else
            note(out, "host staging");
    }
    if (!out->mr)
        return st_err(ST_ENOTSUP, "rdma gpu: no way to register %zu bytes of GPU memory (%s)", len, out->why);
    ST_INFO("rdma gpu: %zu bytes registered by %s%s%s", len, path_names[out->path], out->why[0] ? " after " : "",
            out->why);
    return ST_OK;
}

void st_rdma_gpu_unregister(const st_rdma_gpu_ops *ops, st_rdma_gpu_reg *reg, size_t len)
{
    if (reg->mr && ops->dereg)
        ops->dereg(ops->ctx, reg->mr, reg->staging, len);
    memset(reg, 0, sizeof *reg);
}

#ifndef ST_HAVE_RDMA

int st_rdma_gpu_ops_verbs(void *ibv_pd, st_rdma_gpu_ops *out)
{
    (void)ibv_pd;
    memset(out, 0, sizeof *out);
    return st_err(ST_ENOTSUP, "rdma gpu: this build has no RDMA transport");
}

#else

#include <infiniband/verbs.h>

#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

/* The two CUDA entry points used, declared here so that no CUDA header or
 * library is needed to build: the runtime's cudaGetDriverEntryPoint (CUDA
 * >= 11.3; the fourth argument, added in 12.0, is passed as NULL, which an
 * older three-argument version ignores) and the driver's
 * cuMemGetHandleForAddressRange (CUDA >= 11.7, Linux). */
typedef int (*get_entry_fn)(const char *symbol, void **fn, unsigned long long flags, void *status);
typedef int (*get_handle_fn)(void *handle, unsigned long long dptr, size_t size, int type, unsigned long long flags);
enum { CU_DMA_BUF_FD = 1 };

/* The runtime is looked up in the process first (a shared libcudart the
 * program already uses); otherwise libcudart.so.12 is opened (a statically
 * linked runtime exports nothing; a second runtime copy still reaches the
 * same driver, which is all that is asked of it). */
static get_handle_fn find_get_handle(void)
{
    get_entry_fn entry = (get_entry_fn)dlsym(RTLD_DEFAULT, "cudaGetDriverEntryPoint");
    if (!entry) {
        void *h = dlopen("libcudart.so.12", RTLD_NOW | RTLD_LOCAL);
        if (h)
            entry = (get_entry_fn)dlsym(h, "cudaGetDriverEntryPoint");
    }
    void *fn = NULL;
    if (!entry || entry("cuMemGetHandleForAddressRange", &fn, 0, NULL) != 0)
        return NULL;
    return (get_handle_fn)fn;
}

static int verbs_dmabuf_fd(void *ctx, void *ptr, size_t len, int *fd, uint64_t *offset)
{
    (void)ctx;
    get_handle_fn get = find_get_handle();
    if (!get)
        return st_err(ST_ENOTSUP, "cudaGetDriverEntryPoint(cuMemGetHandleForAddressRange) not available "
                                  "(no CUDA runtime, or CUDA older than 11.7)");
    /* the driver wants a page-aligned range; the mr starts `offset` into it */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t base = (uintptr_t)ptr / page * page;
    size_t span = ST_ALIGN_UP((uintptr_t)ptr + len - base, page);
    int h = -1;
    int cu = get(&h, (unsigned long long)base, span, CU_DMA_BUF_FD, 0);
    if (cu != 0 || h < 0)
        return st_err(ST_ENOTSUP, "cuMemGetHandleForAddressRange: CUresult %d (is this GPU memory, and does the "
                                  "driver support dma-buf?)", cu);
    *fd = h;
    *offset = (uint64_t)((uintptr_t)ptr - base);
    return ST_OK;
}

static const int gpu_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

static void *verbs_reg_dmabuf(void *ctx, int fd, uint64_t offset, size_t len, uint64_t iova)
{
    struct ibv_mr *mr = ibv_reg_dmabuf_mr(ctx, offset, len, iova, fd, gpu_access);
    if (!mr)
        st_err(ST_ENOTSUP, "ibv_reg_dmabuf_mr: %s", strerror(errno));
    return mr;
}

static void *verbs_reg_ptr(void *ctx, void *ptr, size_t len)
{
    struct ibv_mr *mr = ibv_reg_mr(ctx, ptr, len, gpu_access);
    if (!mr)
        st_err(ST_ENOTSUP, "ibv_reg_mr on the device pointer: %s (is nvidia-peermem loaded?)", strerror(errno));
    return mr;
}

static void *verbs_reg_staging(void *ctx, size_t len, void **host)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
        st_err(ST_ENOMEM, "staging mmap of %zu bytes: %s", len, strerror(errno));
        return NULL;
    }
    struct ibv_mr *mr = ibv_reg_mr(ctx, p, len, gpu_access);
    if (!mr) {
        st_err(ST_EIO, "ibv_reg_mr of %zu staging bytes: %s", len, strerror(errno));
        munmap(p, len);
        return NULL;
    }
    *host = p;
    return mr;
}

static void verbs_close_fd(int fd) { close(fd); }

static void verbs_dereg(void *ctx, void *mr, void *staging, size_t len)
{
    (void)ctx;
    ibv_dereg_mr(mr);
    if (staging)
        munmap(staging, len);
}

int st_rdma_gpu_ops_verbs(void *ibv_pd, st_rdma_gpu_ops *out)
{
    memset(out, 0, sizeof *out);
    if (!ibv_pd)
        return st_err(ST_EINVAL, "rdma gpu: no protection domain");
    out->ctx = ibv_pd;
    out->dmabuf_fd = verbs_dmabuf_fd;
    out->reg_dmabuf = verbs_reg_dmabuf;
    out->reg_ptr = verbs_reg_ptr;
    out->reg_staging = verbs_reg_staging;
    out->close_fd = verbs_close_fd;
    out->dereg = verbs_dereg;
    return ST_OK;
}

#endif /* ST_HAVE_RDMA */
