/* The CUDA backend's constructor (C interface). Built only when the CUDA
 * toolkit is found (ST_HAVE_CUDA for the tools); the same source also runs
 * on the CPU under the SIMT emulator in tests. */
#ifndef ST_CUDA_H
#define ST_CUDA_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Backend on CUDA device `device` (0-based). Returns NULL with st_err set
 * (ST_ENOTSUP, naming the reason: no driver, no device, index out of range)
 * when it cannot run; the process keeps working without a GPU.
 *
 * Memory: activations are device memory from ops->alloc. Host arrays the
 * ops receive (weights' data, norm weights, biases, rope inv_freq) are
 * mirrored on the device at first use, keyed by host address and size, and
 * kept until the backend is destroyed: they must not change after first
 * use (true of mmapped weights). Token ids, positions and batches are host
 * memory, uploaded per call. */
st_backend *st_backend_cuda_create(int device);

/* Number of CUDA devices (0 with no driver or no device). */
int st_cuda_device_count(void);

#ifdef __cplusplus
}
#endif
#endif
