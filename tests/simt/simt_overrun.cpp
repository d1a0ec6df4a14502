/* Planted bug for the emulator's ASan check: a kernel whose last thread
 * writes one element past a shared array. `simt_overrun overrun` must die
 * with an AddressSanitizer heap-buffer-overflow report naming the kernel;
 * `simt_overrun inbounds` runs the same kernel one thread short and must
 * pass. */
#include "kernels/cuda/launch.cuh"

#include <stdio.h>
#include <string.h>

#define N 64

static __global__ void overrun_kernel(float *out)
{
    ST_SHARED(float, buf, N);
    buf[threadIdx.x] = (float)threadIdx.x; /* blockDim.x == N + 1 writes buf[N] */
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0;
        for (int i = 0; i < N; i++)
            s += buf[i];
        out[0] = s;
    }
}

int main(int argc, char **argv)
{
    const bool overrun = argc > 1 && !strcmp(argv[1], "overrun");
    float *d = nullptr, h = 0;
    cudaMalloc((void **)&d, sizeof(float));
    cudaError_t rc = ST_LAUNCH(overrun_kernel, 1, overrun ? N + 1 : N, 0, 0, d);
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
    cudaFree(d);
    const float want = N * (N - 1) / 2.0f;
    printf("launch %s, sum %g (want %g)\n", cudaGetErrorName(rc), h, want);
    return rc == cudaSuccess && h == want ? 0 : 1;
}
