/* GPUDirect RDMA registration: making GPU memory writable by the NIC.
 *
 * The chain, first that works wins, and the choice is logged:
 *   1. dma-buf: cuMemGetHandleForAddressRange gives a dma-buf fd for the
 *      range, ibv_reg_dmabuf_mr registers it (upstream kernels, no extra
 *      module). The driver function is found through the CUDA runtime's
 *      cudaGetDriverEntryPoint (looked up at run time: libcuda is never
 *      linked, and a build or machine without CUDA simply skips this step);
 *   2. peer memory: ibv_reg_mr on the device pointer (needs nvidia-peermem);
 *   3. host staging: pinned host memory registered with the NIC; the caller
 *      copies between it and the GPU (cudaMemcpy) around each transfer.
 *
 * The chain is written against st_rdma_gpu_ops so that its fall-back logic
 * is tested without a GPU or NIC (tests/dataplane/test_rdma_gpu.c).
 * NOT RUN ON HARDWARE: the real operations (rdma_gpu.c, ST_HAVE_RDMA) have
 * not run against a GPU and an RDMA device. */
#ifndef ST_RDMA_GPU_H
#define ST_RDMA_GPU_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_rdma_reg_path {
    ST_RDMA_REG_NONE = 0,
    ST_RDMA_REG_DMABUF = 1,  /* mr covers the GPU memory itself */
    ST_RDMA_REG_PEERMEM = 2, /* mr covers the GPU memory itself */
    ST_RDMA_REG_STAGING = 3, /* mr covers `staging` (host), not the GPU memory */
} st_rdma_reg_path;

/* What the chain calls; each returns NULL / an error and says why in st_errmsg(). */
typedef struct st_rdma_gpu_ops {
    void *ctx; /* the real ops: the ibv_pd */
    /* dma-buf fd and the offset of ptr inside it, for [ptr, ptr+len) */
    int (*dmabuf_fd)(void *ctx, void *ptr, size_t len, int *fd, uint64_t *offset);
    void *(*reg_dmabuf)(void *ctx, int fd, uint64_t offset, size_t len, uint64_t iova);
    void *(*reg_ptr)(void *ctx, void *ptr, size_t len);
    /* len bytes of pinned host memory, registered; *host gets its address */
    void *(*reg_staging)(void *ctx, size_t len, void **host);
    void (*close_fd)(int fd);
    void (*dereg)(void *ctx, void *mr, void *staging, size_t len);
} st_rdma_gpu_ops;

typedef struct st_rdma_gpu_reg {
    st_rdma_reg_path path;
    void *mr;      /* the registration (struct ibv_mr * for the real ops) */
    void *staging; /* host buffer for ST_RDMA_REG_STAGING, else NULL */
    char why[240]; /* why the earlier steps were passed over ("" if none) */
} st_rdma_gpu_reg;

/* Run the chain for GPU memory [ptr, ptr+len). ST_OK with out filled, or
 * ST_ENOTSUP when every step failed (out->why gives each reason). A dma-buf
 * fd is closed after registration (the mr holds its own reference) or when
 * registration fails. */
int st_rdma_gpu_register(const st_rdma_gpu_ops *ops, void *ptr, size_t len, st_rdma_gpu_reg *out);

/* Undo st_rdma_gpu_register (len as registered). */
void st_rdma_gpu_unregister(const st_rdma_gpu_ops *ops, st_rdma_gpu_reg *reg, size_t len);

/* The real operations on an ibv_pd (ST_HAVE_RDMA builds); ST_ENOTSUP in a
 * build without verbs. */
int st_rdma_gpu_ops_verbs(void *ibv_pd, st_rdma_gpu_ops *out);

#endif
