/* The dpdk GPUDirect registration chain (dataplane/dpdk_gpu.c) with fake
 * gpudev operations: a device that registers, a refusing one, none at all,
 * a device id beyond those available; unregister only what gpudev holds.
 * Then the real chain, which in a build without gpudev or a GPU must end
 * in host staging, never in an error. */
#include "common/st_common.h"
#include "dataplane/dpdk.h"
#include "tests/test.h"

static int n_dev, refuse, registered, unregistered;

static int fake_count(void) { return n_dev; }
static int fake_reg(int16_t dev, size_t len, void *ptr)
{
    (void)dev, (void)len, (void)ptr;
    if (refuse)
        return -1;
    registered++;
    return 0;
}
static int fake_unreg(int16_t dev, void *ptr)
{
    (void)dev, (void)ptr;
    unregistered++;
    return 0;
}
static const st_dpdk_gpu_ops fake = {fake_count, fake_reg, fake_unreg};

int main(void)
{
    st_log_set_level(ST_LOG_ERROR);
    static char buf[4096];
    st_dpdk_gpu_reg r;

    n_dev = 1, refuse = 0;
    CHECK(st_dpdk_gpu_register(&fake, 0, buf, sizeof buf, &r) == ST_OK);
    CHECKF(r.path == ST_DPDK_GPU_GPUDEV, "a device that registers: path %s", st_dpdk_gpu_path_name(r.path));
    CHECK(registered == 1);
    st_dpdk_gpu_unregister(&r);
    CHECK(unregistered == 1 && r.path == ST_DPDK_GPU_NONE);

    refuse = 1;
    CHECK(st_dpdk_gpu_register(&fake, 0, buf, sizeof buf, &r) == ST_OK);
    CHECKF(r.path == ST_DPDK_GPU_STAGING, "a refusing device: path %s", st_dpdk_gpu_path_name(r.path));
    st_dpdk_gpu_unregister(&r);
    CHECK(unregistered == 1); /* nothing held by gpudev: nothing to give back */

    refuse = 0, n_dev = 0;
    CHECK(st_dpdk_gpu_register(&fake, 0, buf, sizeof buf, &r) == ST_OK && r.path == ST_DPDK_GPU_STAGING);
    n_dev = 2;
    CHECK(st_dpdk_gpu_register(&fake, 2, buf, sizeof buf, &r) == ST_OK && r.path == ST_DPDK_GPU_STAGING);
    CHECK(st_dpdk_gpu_register(&fake, 1, buf, sizeof buf, &r) == ST_OK && r.path == ST_DPDK_GPU_GPUDEV);
    st_dpdk_gpu_unregister(&r);
    CHECK(registered == 2 && unregistered == 2);

    CHECK(st_dpdk_gpu_register(&fake, 0, NULL, 1, &r) == ST_EINVAL);
    CHECK(st_dpdk_gpu_register(&fake, 0, buf, 0, &r) == ST_EINVAL);
    CHECK(st_dpdk_gpu_register(&fake, -1, buf, 1, &r) == ST_EINVAL);

    /* the real chain: no EAL started, so gpudev has no device here */
    CHECK(st_dpdk_gpu_register(NULL, 0, buf, sizeof buf, &r) == ST_OK);
    CHECKF(r.path == ST_DPDK_GPU_STAGING, "real chain without a GPU: path %s", st_dpdk_gpu_path_name(r.path));
    st_dpdk_gpu_unregister(&r);
    fprintf(stderr, "gpudev path %s in this build\n", st_dpdk_gpu_built() ? "compiled" : "not compiled");
    return test_done();
}
