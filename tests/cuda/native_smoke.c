/* The nvcc-built backend (st_cuda, real CUDA runtime): on a machine without
 * a driver or GPU it must refuse with a clear message, and the process goes
 * on; on a machine with a GPU it must create a backend that adds two
 * vectors correctly. Registered by kernels/cuda/CMakeLists.txt when CUDA is
 * enabled. */
#include "kernels/cuda/cuda.h"

#include "common/st_common.h"
#include "tests/test.h"

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    const int n = st_cuda_device_count();
    st_backend *be = st_backend_cuda_create(0);
    if (n == 0) {
        CHECK(be == NULL);
        CHECKF(strstr(st_errmsg(), "no usable CUDA device") != NULL, "message: %s", st_errmsg());
        fprintf(stderr, "no CUDA device: %s\n", st_errmsg());
    } else {
        CHECK(be != NULL);
        if (be) {
            float x[37], y[37], out[37];
            for (int i = 0; i < 37; i++) {
                x[i] = (float)i;
                y[i] = 0.5f * (float)i;
            }
            float *dx = be->ops->alloc(be, sizeof x), *dy = be->ops->alloc(be, sizeof y);
            be->ops->to_device(be, dx, x, sizeof x);
            be->ops->to_device(be, dy, y, sizeof y);
            be->ops->add(be, dy, dx, 1, 37);
            be->ops->to_host(be, out, dy, sizeof out);
            for (int i = 0; i < 37; i++)
                CHECK(out[i] == 1.5f * (float)i);
            uint64_t free_b = 0; /* what --kv-cache-fraction takes a share of */
            CHECK(be->ops->mem_available && be->ops->mem_available(be, &free_b) == ST_OK && free_b > 0);
            fprintf(stderr, "device free memory: %.1f GiB\n", (double)free_b / (1 << 30));
            be->ops->free(be, dx);
            be->ops->free(be, dy);
            st_backend_destroy(be);
        }
    }
    CHECK(st_backend_cuda_create(n + 5) == NULL);
    return test_done();
}
