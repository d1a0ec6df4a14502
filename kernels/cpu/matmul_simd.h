/* 256-bit SIMD kernels shared by the AVX2 and AVX-512 builds.
 *
 * The including file defines SIMD_NAME(x) (suffixes symbols), RT/OT (the
 * register tile: token rows x output rows) and, for AVX-512 VNNI, MM_VNNI.
 * Both builds work on one 32-element block per 256-bit register: a VNNI
 * dpbusd (or AVX2 maddubs + madd) sums 4 u8 x s8 products per int32 lane,
 * so the block's 8 lanes are scaled once by d_w * d_x and accumulated in
 * f32. Q4_0/Q4_1 nibbles are the unsigned operand (0..15; Q4_0's -8 comes
 * in through st_qblock.corr); Q8_0 uses |w| and sign(w) * x. Neither
 * path can saturate (|pair sum| <= 128 * 127 * 2 < 32768), so both give
 * the same integers.
 *
 * Batch invariance: each (r, o) output owns one accumulator and gets the
 * same instruction sequence in every tile shape (the tile loops are fully
 * unrolled copies of it; every multiply-add is an explicit FMA, nothing
 * is left to contraction), so the result does not depend on n or on how
 * rows are grouped into tiles. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

#ifndef PREFETCH_DIST
#define PREFETCH_DIST 512
#endif
#define TILE_MAX 4 /* largest R and O of a tile */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s)
{
#ifdef MM_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    return _mm256_add_epi32(acc, p);
#endif
}

ALWAYS_INLINE float f16_scalar(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* ---- activation quantization ---------------------------------------------------- */
static void SIMD_NAME(quant)(const float *x, st_qblock *q, int nb, st_dtype wtype)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < nb; b++, x += 32, q++) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float am = _mm_cvtss_f32(m4);
        const float d = am / 127.0f;
        const float id = am > 0.0f ? 127.0f / am : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i i32[4];
        for (int i = 0; i < 4; i++)
            i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid)); /* MXCSR default: nearest even */
        const __m256i i16a = _mm256_packs_epi32(i32[0], i32[1]);
        const __m256i i16b = _mm256_packs_epi32(i32[2], i32[3]);
        const __m256i qs = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(i16a, i16b), perm);
        _mm256_storeu_si256((__m256i *)q->qs, qs);
        /* per-lane sums of 4 consecutive values, exact */
        const __m256i part = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qs), _mm256_set1_epi16(1));
        const __m256i corr = wtype == ST_Q4_0 ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(part, 3))
                                              : _mm256_setzero_si256();
        _mm256_storeu_si256((__m256i *)q->corr, corr);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(part), _mm256_extracti128_si256(part, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        const int sum = _mm_cvtsi128_si32(s4);
        q->d = d;
        q->s8 = d * (float)sum * 0.125f;
        memset(q->pad, 0, sizeof q->pad);
    }
}

/* ---- Q-type tile: R token rows x O output rows ------------------------------------ */
ALWAYS_INLINE void mm_q_tile(const st_mm_args *a, int r0, int o0, const st_dtype T, const int R, const int O)
{
    const int nb = a->K / 32;
    const size_t bb = T == ST_Q8_0 ? 34 : (T == ST_Q4_0 ? 18 : 20);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[TILE_MAX][TILE_MAX]; /* fixed size: [R][O] would be a VLA */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int o = 0; o < O; o++)
            acc[r][o] = _mm256_setzero_ps();
    const uint8_t *w0 = a->W + (size_t)o0 * a->row_bytes;
    const st_qblock *x0 = a->qx + (size_t)r0 * nb;
    for (int b = 0; b < nb; b++) {
        __m256i wv[TILE_MAX];
        __m256 dw[TILE_MAX], mw[TILE_MAX];
#pragma GCC unroll 8
        for (int o = 0; o < O; o++) {
            const uint8_t *wb = w0 + (size_t)o * a->row_bytes + (size_t)b * bb;
            if (R == 1)
                _mm_prefetch((const char *)wb + PREFETCH_DIST, _MM_HINT_T0);
            if (T == ST_Q4_1) { /* d and m are adjacent: one conversion for both */
                int32_t dm32;
                memcpy(&dm32, wb, 4);
                const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dm32));
                dw[o] = _mm256_broadcastss_ps(dm);
                mw[o] = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
            } else {
                dw[o] = _mm256_set1_ps(f16_scalar(wb));
            }
            if (T == ST_Q8_0) {
                wv[o] = _mm256_loadu_si256((const __m256i *)(wb + 2));
            } else {
                const __m128i q = _mm_loadu_si128((const __m128i *)(wb + (T == ST_Q4_1 ? 4 : 2)));
                wv[o] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const st_qblock *xb = x0 + (size_t)r * nb + b;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256 dx = _mm256_set1_ps(xb->d);
#pragma GCC unroll 8
            for (int o = 0; o < O; o++) {
                __m256i isum;
                if (T == ST_Q8_0)
                    isum = dot_u8s8(_mm256_setzero_si256(), _mm256_abs_epi8(wv[o]), _mm256_sign_epi8(xq, wv[o]));
                else if (T == ST_Q4_0)
                    isum = dot_u8s8(_mm256_loadu_si256((const __m256i *)xb->corr), wv[o], xq);
                else
                    isum = dot_u8s8(_mm256_setzero_si256(), wv[o], xq);
                const __m256 sc = _mm256_mul_ps(dw[o], dx);
                acc[r][o] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), sc, acc[r][o]);
                if (T == ST_Q4_1)
                    acc[r][o] = _mm256_fmadd_ps(mw[o], _mm256_set1_ps(xb->s8), acc[r][o]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int o = 0; o < O; o++) {
            const float bias = a->bias ? a->bias[o0 + o] : 0.0f;
            a->y[(size_t)(r0 + r) * a->O + o0 + o] = hsum8(acc[r][o]) + bias;
        }
}

/* ---- float-weight tile (F32/F16/BF16): 8 elements per step -------------------------- */
ALWAYS_INLINE __m256 load_w8(const uint8_t *row, int k, const st_dtype T)
{
    if (T == ST_F32)
        return _mm256_loadu_ps((const float *)row + k);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    if (T == ST_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float load_w1(const uint8_t *row, int k, const st_dtype T)
{
    if (T == ST_F32) {
        float f;
        memcpy(&f, row + 4 * (size_t)k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + 2 * (size_t)k, 2);
    return T == ST_F16 ? _cvtsh_ss(h) : st_bf16_to_f32(h);
}

ALWAYS_INLINE void mm_f_tile(const st_mm_args *a, int r0, int o0, const st_dtype T, const int R, const int O)
{
    const int K = a->K, K8 = K & ~7;
    __m256 acc[TILE_MAX][TILE_MAX]; /* fixed size: [R][O] would be a VLA */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int o = 0; o < O; o++)
            acc[r][o] = _mm256_setzero_ps();
    const uint8_t *w0 = a->W + (size_t)o0 * a->row_bytes;
    const float *x0 = a->x + (size_t)r0 * K;
    for (int k = 0; k < K8; k += 8) {
        __m256 wv[TILE_MAX];
#pragma GCC unroll 8
        for (int o = 0; o < O; o++)
            wv[o] = load_w8(w0 + (size_t)o * a->row_bytes, k, T);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 xv = _mm256_loadu_ps(x0 + (size_t)r * K + k);
#pragma GCC unroll 8
            for (int o = 0; o < O; o++)
                acc[r][o] = _mm256_fmadd_ps(wv[o], xv, acc[r][o]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int o = 0; o < O; o++) {
            float tail = 0.0f;
            for (int k = K8; k < K; k++)
                tail = fmaf(load_w1(w0 + (size_t)o * a->row_bytes, k, T), x0[(size_t)r * K + k], tail);
            const float bias = a->bias ? a->bias[o0 + o] : 0.0f;
            a->y[(size_t)(r0 + r) * a->O + o0 + o] = (hsum8(acc[r][o]) + tail) + bias;
        }
}

/* ---- range walkers: tiles of RT x OT, leftovers as 1 x OT and RT x 1 / 1 x 1 ---------- */
#define DEF_WALK(NAME, TILE, T)                                                                   \
    static void NAME(const st_mm_args *a, int r0, int r1, int o0, int o1)                        \
    {                                                                                             \
        int o = o0;                                                                               \
        if (r1 - r0 < RT) { /* decode-like: one row, wider output tile */                        \
            for (; o + 4 <= o1; o += 4)                                                           \
                for (int r = r0; r < r1; r++)                                                     \
                    TILE(a, r, o, T, 1, 4);                                                       \
        }                                                                                         \
        for (; o + OT <= o1; o += OT) {                                                           \
            int r = r0;                                                                           \
            for (; r + RT <= r1; r += RT)                                                         \
                TILE(a, r, o, T, RT, OT);                                                         \
            for (; r < r1; r++)                                                                   \
                TILE(a, r, o, T, 1, OT);                                                          \
        }                                                                                         \
        for (; o < o1; o++) {                                                                     \
            int r = r0;                                                                           \
            for (; r + RT <= r1; r += RT)                                                         \
                TILE(a, r, o, T, RT, 1);                                                          \
            for (; r < r1; r++)                                                                   \
                TILE(a, r, o, T, 1, 1);                                                           \
        }                                                                                         \
    }

DEF_WALK(SIMD_NAME(walk_q8_0), mm_q_tile, ST_Q8_0)
DEF_WALK(SIMD_NAME(walk_q4_0), mm_q_tile, ST_Q4_0)
DEF_WALK(SIMD_NAME(walk_q4_1), mm_q_tile, ST_Q4_1)
DEF_WALK(SIMD_NAME(walk_f32), mm_f_tile, ST_F32)
DEF_WALK(SIMD_NAME(walk_f16), mm_f_tile, ST_F16)
DEF_WALK(SIMD_NAME(walk_bf16), mm_f_tile, ST_BF16)

static void SIMD_NAME(matmul)(const st_mm_args *a, int r0, int r1, int o0, int o1)
{
    switch (a->type) {
    case ST_Q8_0: SIMD_NAME(walk_q8_0)(a, r0, r1, o0, o1); break;
    case ST_Q4_0: SIMD_NAME(walk_q4_0)(a, r0, r1, o0, o1); break;
    case ST_Q4_1: SIMD_NAME(walk_q4_1)(a, r0, r1, o0, o1); break;
    case ST_F32: SIMD_NAME(walk_f32)(a, r0, r1, o0, o1); break;
    case ST_F16: SIMD_NAME(walk_f16)(a, r0, r1, o0, o1); break;
    case ST_BF16: SIMD_NAME(walk_bf16)(a, r0, r1, o0, o1); break;
    default: break;
    }
}

/* ---- f32 -> f16 (kv_write) and the bandwidth probe's sum ------------------------------- */
static void SIMD_NAME(to_f16)(uint16_t *dst, const float *src, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        dst[i] = st_f32_to_f16(src[i]);
}

/* f16 -> f32 for the attention body */
static inline void SIMD_NAME(load_f16)(float *dst, const uint16_t *src, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = _cvtsh_ss(src[i]);
}

/* attention primitives (attn_impl.h): 8 lanes, fixed reduction order */
static inline float SIMD_NAME(dot)(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s = fmaf(a[i], b[i], s);
    return s;
}

static inline void SIMD_NAME(axpy)(float *y, float w, const float *x, int n)
{
    const __m256 vw = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(w, x[i], y[i]);
}

static inline void SIMD_NAME(scale)(float *y, float s, int n)
{
    const __m256 vs = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] *= s;
}
