/* AVX-512 (VL + VNNI) build of the SIMD kernels: the same 256-bit code as
 * the AVX2 build with dpbusd for the u8 x s8 dot and 32 vector registers,
 * which allow a 4 x 4 register tile. (256-bit VNNI runs at full rate on
 * both Zen 4 and Intel, and avoids 512-bit frequency drops on the latter.) */
#include "kernels/cpu/cpu_kernels.h"

#define MM_VNNI 1
#define SIMD_NAME(x) x##_avx512
#define RT 4
#define OT 4
#include "kernels/cpu/matmul_simd.h"

#define ATTN_FN attn_avx512
#define ATTN_DOT dot_avx512
#define ATTN_AXPY axpy_avx512
#define ATTN_SCALE scale_avx512
#define LOAD_F16(dst, src, n) load_f16_avx512(dst, src, n)
#include "kernels/cpu/attn_impl.h"

static float sum_avx512(const float *p, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

const st_cpu_kernels st_cpu_kernels_avx512 = {
    .quant = quant_avx512,
    .matmul = matmul_avx512,
    .attn = attn_avx512,
    .to_f16 = to_f16_avx512,
    .sum = sum_avx512,
};
