/* Prefill GEMMs through cuBLAS: y (n, rows) = x (n, cols) @ W^T (+ bias).
 *
 * cuBLAS has no Q4_0/Q4_1/Q8_0 types, so a quantized or 16-bit W is first
 * dequantized into an f32 scratch (one thread per 32 elements: a Q-type
 * block, or 32 consecutive f16/bf16/f32 values, so every warp reads one
 * contiguous span of the row and writes 4 KiB of f32 in full lines); f32
 * weights go to cuBLAS as they are. The GEMM itself is one cublasGemmEx in
 * f32 with CUBLAS_COMPUTE_32F_FAST_TF32: tensor cores on sm_80/sm_90,
 * inputs rounded to TF32 (10-bit mantissa), f32 accumulation.
 *
 * Row-major y = x W^T is, in cuBLAS's column-major terms, y^T (rows x n) =
 * W (as the column-major cols x rows matrix, transposed) * x^T (cols x n):
 * transa = T, transb = N, m = rows, n = n, k = cols.
 *
 * The scratch holds at most GEMM_SCRATCH_ELEMS f32 (64 MiB): a larger W
 * (an output matrix of 128k x 4096 would need 2 GiB) is done in chunks of
 * rows, each dequantized and multiplied in turn, writing the matching
 * columns of y (ldc = rows). A chunk size given at creation replaces that
 * (tests use it to cross chunk edges on small shapes).
 *
 * cuBLAS is not linked: the library is opened at run time (dlopen of
 * libcublas.so.13 / .12 / .so), so the binary starts and the backend works
 * (matvec path only) on machines without it. In the emulated test build
 * the entry points are the SIMT shim's (kernels/simt/simt_cublas.cpp),
 * which computes on the CPU through the CPU backend's matmul. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

#include <cublas_v2.h>

#if !ST_EMULATED
#include <dlfcn.h>
#endif

/* ---- the cuBLAS entry points used here ------------------------------------------- */
typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                     const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
                                     const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

struct st_cu_gemm {
    void *lib; /* dlopen handle (NULL when emulated) */
    create_fn create;
    destroy_fn destroy;
    set_stream_fn set_stream;
    gemm_ex_fn gemm_ex;
    cublasHandle_t h;
    cudaStream_t bound; /* stream last given to cublasSetStream */
    float *scratch;     /* dequantized rows of W, (chunk rows, cols) f32 */
    size_t scratch_elems;
    int chunk_rows;     /* 0: as many as GEMM_SCRATCH_ELEMS allows */
};

#define GEMM_SCRATCH_ELEMS ((size_t)16 << 20)

st_cu_gemm *st_cu_gemm_create(int chunk_rows, const char **why)
{
    st_cu_gemm g = {};
#if ST_EMULATED
    g.create = cublasCreate_v2;
    g.destroy = cublasDestroy_v2;
    g.set_stream = cublasSetStream_v2;
    g.gemm_ex = static_cast<gemm_ex_fn>(cublasGemmEx);
#else
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    for (const char *n : names)
        if ((g.lib = dlopen(n, RTLD_NOW | RTLD_LOCAL)) != nullptr)
            break;
    if (!g.lib) {
        *why = "libcublas.so not found";
        return nullptr;
    }
    g.create = reinterpret_cast<create_fn>(dlsym(g.lib, "cublasCreate_v2"));
    g.destroy = reinterpret_cast<destroy_fn>(dlsym(g.lib, "cublasDestroy_v2"));
    g.set_stream = reinterpret_cast<set_stream_fn>(dlsym(g.lib, "cublasSetStream_v2"));
    g.gemm_ex = reinterpret_cast<gemm_ex_fn>(dlsym(g.lib, "cublasGemmEx"));
    if (!g.create || !g.destroy || !g.set_stream || !g.gemm_ex) {
        dlclose(g.lib);
        *why = "libcublas lacks cublasGemmEx";
        return nullptr;
    }
#endif
    if (g.create(&g.h) != CUBLAS_STATUS_SUCCESS) {
#if !ST_EMULATED
        dlclose(g.lib);
#endif
        *why = "cublasCreate failed";
        return nullptr;
    }
    g.chunk_rows = chunk_rows > 0 ? chunk_rows : 0;
    st_cu_gemm *p = new st_cu_gemm(g);
    return p;
}

void st_cu_gemm_destroy(st_cu_gemm *g)
{
    if (!g)
        return;
    g->destroy(g->h);
    cudaFree(g->scratch);
#if !ST_EMULATED
    dlclose(g->lib);
#endif
    delete g;
}

/* ---- dequantization to f32: thread t of the grid owns elements [32t, 32t+32) ---- */
static __global__ void dequant_kernel(float *out, const uint8_t *W, st_dtype t, size_t row_bytes, int rows, int cols)
{
    const int per_row = (cols + 31) / 32;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * per_row)
        return;
    const int r = (int)(i / per_row), c0 = (int)(i % per_row) * 32;
    const uint8_t *w = W + (size_t)r * row_bytes;
    float *o = out + (size_t)r * cols + c0;
    switch (t) {
    case ST_Q8_0: {
        const uint8_t *b = w + (size_t)(c0 / 32) * 34;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
        for (int j = 0; j < 32; j++)
            o[j] = d * (float)(int8_t)b[2 + j];
        break;
    }
    case ST_Q4_0: {
        const uint8_t *b = w + (size_t)(c0 / 32) * 18;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8));
        for (int j = 0; j < 16; j++) {
            o[j] = d * (float)((b[2 + j] & 15) - 8);
            o[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
        break;
    }
    case ST_Q4_1: {
        const uint8_t *b = w + (size_t)(c0 / 32) * 20;
        const float d = st_h2f((uint16_t)(b[0] | b[1] << 8)), m = st_h2f((uint16_t)(b[2] | b[3] << 8));
        for (int j = 0; j < 16; j++) {
            o[j] = d * (float)(b[4 + j] & 15) + m;
            o[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
        break;
    }
    case ST_F16:
    case ST_BF16: {
        const uint16_t *w16 = reinterpret_cast<const uint16_t *>(w) + c0;
        for (int j = 0; j < 32 && c0 + j < cols; j++)
            o[j] = t == ST_BF16 ? st_bf2f(w16[j]) : st_h2f(w16[j]);
        break;
    }
    default: {
        const float *wf = reinterpret_cast<const float *>(w) + c0;
        for (int j = 0; j < 32 && c0 + j < cols; j++)
            o[j] = wf[j];
    }
    }
}

/* y (n, rows) = bias broadcast to every row */
static __global__ void bias_rows_kernel(float *y, const float *bias, int rows, size_t count)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        y[i] = bias[i % (size_t)rows];
}

cudaError_t st_cu_gemm_run(st_cu_gemm *g, float *y, const float *x, const void *W, st_dtype t, size_t row_bytes,
                           int rows, int cols, const float *bias, int n, cudaStream_t s)
{
    if (n <= 0 || rows <= 0)
        return cudaSuccess;
    float beta = 0.0f;
    if (bias) { /* y = bias in every row, then the GEMM adds onto it */
        const size_t count = (size_t)n * (size_t)rows;
        cudaError_t e = ST_LAUNCH(bias_rows_kernel, (unsigned)((count + 255) / 256), 256, 0, s, y, bias, rows, count);
        if (e != cudaSuccess)
            return e;
        beta = 1.0f;
    }
    if (g->bound != s) {
        if (g->set_stream(g->h, s) != CUBLAS_STATUS_SUCCESS)
            return cudaErrorUnknown;
        g->bound = s;
    }
    const bool direct = t == ST_F32 && row_bytes == (size_t)cols * sizeof(float); /* W used in place */
    int chunk = rows;
    if (!direct) {
        chunk = g->chunk_rows > 0 ? g->chunk_rows : (int)(GEMM_SCRATCH_ELEMS / (size_t)cols);
        chunk = chunk < 1 ? 1 : chunk > rows ? rows : chunk;
        const size_t need = (size_t)chunk * (size_t)cols;
        if (need > g->scratch_elems) {
            cudaFree(g->scratch);
            g->scratch = nullptr;
            g->scratch_elems = 0;
            cudaError_t e = cudaMalloc(reinterpret_cast<void **>(&g->scratch), need * sizeof(float));
            if (e != cudaSuccess)
                return e;
            g->scratch_elems = need;
        }
    }
    const float alpha = 1.0f;
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        const int m = rows - r0 < chunk ? rows - r0 : chunk;
        const uint8_t *wr = static_cast<const uint8_t *>(W) + (size_t)r0 * row_bytes;
        const float *A = reinterpret_cast<const float *>(wr);
        if (!direct) {
            const size_t threads = (size_t)m * (size_t)((cols + 31) / 32);
            cudaError_t e = ST_LAUNCH(dequant_kernel, (unsigned)((threads + 255) / 256), 256, 0, s, g->scratch, wr,
                                      t, row_bytes, m, cols);
            if (e != cudaSuccess)
                return e;
            A = g->scratch;
        }
        /* columns r0 .. r0+m of y^T, i.e. y[:, r0 : r0+m] with row stride `rows` */
        const cublasStatus_t st = g->gemm_ex(g->h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, cols, &alpha, A, CUDA_R_32F, cols,
                                             x, CUDA_R_32F, cols, &beta, y + r0, CUDA_R_32F, rows,
                                             CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS)
            return cudaErrorUnknown;
    }
    return cudaSuccess;
}
