/* The GPUDirect registration chain, driven by fake operations: which path
 * wins when earlier ones fail, that a dma-buf fd is always closed, and that
 * total failure is ST_ENOTSUP naming every reason. */
#include "common/st_common.h"
#include "dataplane/rdma_gpu.h"
#include "tests/test.h"

typedef struct fake {
    int fail_fd, fail_dmabuf, fail_ptr, fail_staging;
    int fds_open, fds_closed, deregs;
    uint64_t got_offset, got_iova;
    char host[256];
} fake;

static int mr_token = 1;

static int f_fd(void *c, void *ptr, size_t len, int *fd, uint64_t *off)
{
    fake *f = c;
    (void)len;
    if (f->fail_fd)
        return st_err(ST_ENOTSUP, "no cuda runtime");
    f->fds_open++;
    *fd = 42;
    *off = (uint64_t)((uintptr_t)ptr & 4095);
    return ST_OK;
}
static void *f_dmabuf(void *c, int fd, uint64_t off, size_t len, uint64_t iova)
{
    fake *f = c;
    (void)len;
    f->got_offset = off, f->got_iova = iova;
    if (fd != 42 || f->fail_dmabuf) {
        st_err(ST_ENOTSUP, "ibv_reg_dmabuf_mr refused");
        return NULL;
    }
    return &mr_token;
}
static void *f_ptr(void *c, void *ptr, size_t len)
{
    (void)ptr, (void)len;
    if (((fake *)c)->fail_ptr) {
        st_err(ST_ENOTSUP, "no peermem");
        return NULL;
    }
    return &mr_token;
}
static void *f_staging(void *c, size_t len, void **host)
{
    fake *f = c;
    if (f->fail_staging || len > sizeof f->host) {
        st_err(ST_ENOMEM, "no pinned memory");
        return NULL;
    }
    *host = f->host;
    return &mr_token;
}
static fake *closer_target;
static void f_close(int fd)
{
    if (fd == 42)
        closer_target->fds_closed++;
}
static void f_dereg(void *c, void *mr, void *staging, size_t len)
{
    (void)mr, (void)staging, (void)len;
    ((fake *)c)->deregs++;
}

static st_rdma_gpu_reg run(fake *f, void *ptr, size_t len, int *rc)
{
    st_rdma_gpu_ops ops = {f, f_fd, f_dmabuf, f_ptr, f_staging, f_close, f_dereg};
    closer_target = f;
    st_rdma_gpu_reg r;
    *rc = st_rdma_gpu_register(&ops, ptr, len, &r);
    if (*rc == ST_OK)
        st_rdma_gpu_unregister(&ops, &(st_rdma_gpu_reg){r.path, r.mr, r.staging, ""}, len);
    return r;
}

int main(void)
{
    void *gpu = (void *)(uintptr_t)0x7f0000001040ull; /* never dereferenced */
    int rc;
    fake f = {0};
    st_rdma_gpu_reg r = run(&f, gpu, 128, &rc);
    CHECK(rc == ST_OK && r.path == ST_RDMA_REG_DMABUF && !r.staging && !r.why[0]);
    CHECK(f.got_offset == 0x40 && f.got_iova == 0x7f0000001040ull);
    CHECK(f.fds_open == 1 && f.fds_closed == 1 && f.deregs == 1);

    f = (fake){.fail_dmabuf = 1};
    r = run(&f, gpu, 128, &rc);
    CHECK(rc == ST_OK && r.path == ST_RDMA_REG_PEERMEM);
    CHECKF(f.fds_closed == 1, "the dma-buf fd must be closed when registration fails");
    CHECK(strstr(r.why, "refused") != NULL);

    f = (fake){.fail_fd = 1};
    r = run(&f, gpu, 128, &rc);
    CHECK(rc == ST_OK && r.path == ST_RDMA_REG_PEERMEM && f.fds_open == 0 && strstr(r.why, "no cuda runtime"));

    f = (fake){.fail_fd = 1, .fail_ptr = 1};
    r = run(&f, gpu, 128, &rc);
    CHECK(rc == ST_OK && r.path == ST_RDMA_REG_STAGING && r.staging == f.host);
    CHECK(strstr(r.why, "no cuda runtime") && strstr(r.why, "no peermem"));

    f = (fake){.fail_dmabuf = 1, .fail_ptr = 1, .fail_staging = 1};
    r = run(&f, gpu, 128, &rc);
    CHECK(rc == ST_ENOTSUP && r.path == ST_RDMA_REG_NONE && !r.mr && f.deregs == 0);
    CHECKF(strstr(st_errmsg(), "refused") && strstr(st_errmsg(), "no peermem") && strstr(st_errmsg(), "no pinned"),
           "%s", st_errmsg());
    CHECK(f.fds_closed == f.fds_open);

    /* bad input is an error, not a call into the operations */
    f = (fake){0};
    r = run(&f, NULL, 128, &rc);
    CHECK(rc == ST_EINVAL && f.fds_open == 0);
    r = run(&f, gpu, 0, &rc);
    CHECK(rc == ST_EINVAL && f.fds_open == 0);

    /* a chain with only some operations (no CUDA at all: no dma-buf step) */
    st_rdma_gpu_ops ops = {.ctx = &f, .reg_ptr = f_ptr};
    f = (fake){0};
    CHECK(st_rdma_gpu_register(&ops, gpu, 64, &r) == ST_OK && r.path == ST_RDMA_REG_PEERMEM);

    /* the real operations exist exactly when verbs are built in */
    st_rdma_gpu_ops real;
    CHECK(st_rdma_gpu_ops_verbs(NULL, &real) != ST_OK);
    return test_done();
}
