/* AVX2 + FMA + F16C build of the SIMD kernels (matmul_simd.h, attn_impl.h). */
#include "kernels/cpu/cpu_kernels.h"

#define SIMD_NAME(x) x##_avx2
#define RT 4 /* token rows per tile */
#define OT 2 /* output rows per tile: 8 accumulators + operands fit 16 ymm */
#include "kernels/cpu/matmul_simd.h"

#define ATTN_FN attn_avx2
#define ATTN_DOT dot_avx2
#define ATTN_AXPY axpy_avx2
#define ATTN_SCALE scale_avx2
#define LOAD_F16(dst, src, n) load_f16_avx2(dst, src, n)
#include "kernels/cpu/attn_impl.h"

static float sum_avx2(const float *p, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

const st_cpu_kernels st_cpu_kernels_avx2 = {
    .quant = quant_avx2,
    .matmul = matmul_avx2,
    .attn = attn_avx2,
    .to_f16 = to_f16_avx2,
    .sum = sum_avx2,
};
