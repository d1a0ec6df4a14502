/* cuBLAS for the emulated build: the few entry points kernels/cuda/gemm.cu
 * calls (cublasCreate/Destroy/SetStream, cublasGemmEx), computed on the CPU.
 * "Device" memory is host memory here (simt_cudart.cpp), so the operands
 * are read in place; ASan sees every access.
 *
 * The case gemm.cu uses - f32, C = alpha op(A) op(B) + beta C with
 * transa = T, transb = N (row-major y = x W^T) - goes through the CPU
 * backend's matmul with A wrapped as an f32 weight tensor, so the emulated
 * GEMM is the CPU backend's own arithmetic. CUBLAS_COMPUTE_32F_FAST_TF32
 * rounds A and B to TF32 (10-bit mantissa, round to nearest) first, as
 * tensor cores do, so tests see the precision a GPU would give. Any other
 * f32 layout runs a plain double-precision loop; other types are refused
 * with CUBLAS_STATUS_NOT_SUPPORTED. */
#include <cublas_v2.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/backend.h"

struct cublasContext {
    st_backend *cpu;
    cudaStream_t stream;
};

extern "C" cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    if (!handle)
        return CUBLAS_STATUS_INVALID_VALUE;
    st_backend *cpu = st_backend_cpu_create(1);
    if (!cpu)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new cublasContext{cpu, nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    st_backend_destroy(handle->cpu);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream; /* launches are synchronous here */
    return CUBLAS_STATUS_SUCCESS;
}

/* f32 rounded to TF32: keep 10 mantissa bits, round to nearest even. */
static float to_tf32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite */
        u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&f, &u, 4);
    return f;
}

/* element (i, j) of op(X) for column-major X with leading dimension ld */
static inline float at(const float *X, int ld, bool trans, int i, int j)
{
    return trans ? X[(size_t)i * ld + j] : X[(size_t)j * ld + i];
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                       int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                       const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                                       cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                       cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F ||
        (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_FAST_TF32) ||
        (transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    /* the checks cuBLAS makes on dimensions and leading dimensions */
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta || lda < (ta ? (k > 1 ? k : 1) : (m > 1 ? m : 1)) ||
        ldb < (tb ? (n > 1 ? n : 1) : (k > 1 ? k : 1)) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
    const float *a = static_cast<const float *>(A), *b = static_cast<const float *>(B);
    float *c = static_cast<float *>(C);

    /* TF32: round copies of the operands (their used extent only) */
    std::vector<float> ra, rb;
    if (computeType == CUBLAS_COMPUTE_32F_FAST_TF32 && k > 0) {
        const size_t na = (size_t)lda * (size_t)((ta ? m : k) - 1) + (size_t)(ta ? k : m);
        const size_t nb = (size_t)ldb * (size_t)((tb ? k : n) - 1) + (size_t)(tb ? n : k);
        ra.resize(na);
        rb.resize(nb);
        for (size_t i = 0; i < na; i++)
            ra[i] = to_tf32(a[i]);
        for (size_t i = 0; i < nb; i++)
            rb[i] = to_tf32(b[i]);
        a = ra.data();
        b = rb.data();
    }

    std::vector<float> prod((size_t)m * (size_t)n);
    if (ta && !tb && k > 0) {
        /* prod^T (n, m) row-major = B^T (n, k) @ A^T... i.e. y = x W^T with
         * W = A^T as an (m, k) row-major f32 tensor (row stride lda), x = B^T
         * as (n, k) rows with stride ldb: the CPU backend's matmul */
        std::vector<float> x, wrows;
        const float *xp = b, *wp = a;
        if (ldb != k) {
            x.resize((size_t)n * k);
            for (int j = 0; j < n; j++)
                memcpy(&x[(size_t)j * k], b + (size_t)j * ldb, sizeof(float) * (size_t)k);
            xp = x.data();
        }
        if (lda != k) {
            wrows.resize((size_t)m * k);
            for (int i = 0; i < m; i++)
                memcpy(&wrows[(size_t)i * k], a + (size_t)i * lda, sizeof(float) * (size_t)k);
            wp = wrows.data();
        }
        st_tensor W;
        memset(&W, 0, sizeof W);
        W.name = "cublas A";
        W.type = ST_F32;
        W.n_dims = 2;
        W.ne[0] = k;
        W.ne[1] = m;
        W.ne[2] = W.ne[3] = 1;
        W.data = const_cast<float *>(wp);
        W.nbytes = sizeof(float) * (size_t)m * (size_t)k;
        handle->cpu->ops->matmul(handle->cpu, prod.data(), xp, &W, nullptr, n); /* prod is (n, m) row-major */
    } else {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (double)at(a, lda, ta, i, p) * (double)at(b, ldb, tb, p, j);
                prod[(size_t)j * m + i] = (float)s;
            }
    }
    /* prod (n, m) row-major is the column-major m x n result */
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float *o = &c[(size_t)j * ldc + i];
            const float p = al * prod[(size_t)j * m + i];
            *o = be == 0.0f ? p : p + be * *o; /* beta 0: C is not read (may hold NaN) */
        }
    return CUBLAS_STATUS_SUCCESS;
}
