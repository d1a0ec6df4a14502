/* Tensor type table, scalar float conversions and reference dequantization. */
#include "tensor.h"

#include <string.h>

static const struct {
    const char *name;
    int block_elems;
    size_t block_bytes;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 1, 4},
    [ST_F16] = {"F16", 1, 2},
    [ST_BF16] = {"BF16", 1, 2},
    [ST_Q8_0] = {"Q8_0", ST_QK, sizeof(st_block_q8_0)},
    [ST_Q4_0] = {"Q4_0", ST_QK, sizeof(st_block_q4_0)},
    [ST_Q4_1] = {"Q4_1", ST_QK, sizeof(st_block_q4_1)},
};

_Static_assert(sizeof(st_block_q8_0) == 34, "q8_0 block layout");
_Static_assert(sizeof(st_block_q4_0) == 18, "q4_0 block layout");
_Static_assert(sizeof(st_block_q4_1) == 20, "q4_1 block layout");

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].name : "?"; }
int st_dtype_block_elems(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].block_elems : 0; }
size_t st_dtype_block_bytes(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].block_bytes : 0; }

size_t st_dtype_row_bytes(st_dtype t, int64_t n)
{
    if ((unsigned)t >= ST_DTYPE_COUNT || n < 0 || n % dtype_info[t].block_elems)
        return 0;
    return (size_t)(n / dtype_info[t].block_elems) * dtype_info[t].block_bytes;
}

/* ---- float conversions ------------------------------------------------------- */
static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    if (exp == 0) {
        if (man == 0)
            return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7F800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t st_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7FFFFFFF;
    if (a > 0x7F800000u) /* NaN */
        return (uint16_t)(sign | 0x7E00);
    if (a >= 0x477FF000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7C00);
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        float v = bits_f32(a) * 16777216.0f; /* in units of 2^-24 */
        /* round half to even through the FPU's default rounding */
        uint32_t m = (uint32_t)__builtin_rintf(v);
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (a >> 23) - 112;
    uint32_t man = a & 0x7FFFFF;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* carry into the exponent is the correct result */
    return (uint16_t)(sign | h);
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFF) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---- reference dequantization ------------------------------------------------- */
void st_dequant_row(st_dtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case ST_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case ST_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_f16_to_f32(s[i]);
        break;
    }
    case ST_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_bf16_to_f32(s[i]);
        break;
    }
    case ST_Q8_0: {
        const st_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            float d = st_f16_to_f32(b[i].d);
            for (int j = 0; j < ST_QK; j++)
                dst[i * ST_QK + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case ST_Q4_0: {
        const st_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            float d = st_f16_to_f32(b[i].d);
            for (int j = 0; j < ST_QK / 2; j++) {
                dst[i * ST_QK + j] = d * (float)((b[i].qs[j] & 0xF) - 8);
                dst[i * ST_QK + j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case ST_Q4_1: {
        const st_block_q4_1 *b = src;
        for (int64_t i = 0; i < n / ST_QK; i++) {
            float d = st_f16_to_f32(b[i].d), m = st_f16_to_f32(b[i].m);
            for (int j = 0; j < ST_QK / 2; j++) {
                dst[i * ST_QK + j] = d * (float)(b[i].qs[j] & 0xF) + m;
                dst[i * ST_QK + j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
            }
        }
        break;
    }
    default:
        break;
    }
}
