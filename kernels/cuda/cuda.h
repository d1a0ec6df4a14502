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

/* Sampling on the device, for the last stage: one token id per row of
 * logits (n_rows, vocab) in device memory (e.g. st_fwd_ctx.logits) comes
 * back to ids (host, n_rows); the logits never leave the device.
 * Per row: temperature <= 0 is greedy (argmax, ties to the lowest id);
 * otherwise top-k (<= 0 off; ties at the k-th value all kept), then top-p
 * (>= 1 off) over the softmax at that temperature, then a draw in id order
 * at u (in [0, 1), from the caller's per-sequence seeded RNG, e.g. the
 * engine sampler's: the same u gives the same token). No penalties, no
 * min-p, no logprobs yet. Returns ST_OK, ST_EINVAL for a bad argument
 * (naming it), ST_EIO when the launch fails. */
typedef struct st_cuda_sample_params {
    float temperature;
    int top_k;
    float top_p;
    float u;
} st_cuda_sample_params;
int st_cuda_sample(st_backend *be, int32_t *ids, const float *logits, int n_rows, int vocab,
                   const st_cuda_sample_params *p);

/* Number of CUDA devices (0 with no driver or no device). */
int st_cuda_device_count(void);

#ifdef __cplusplus
}
#endif
#endif
