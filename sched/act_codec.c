/* Activation payload conversions (see act_codec.h). */
#include "act_codec.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../common/st_common.h"

int st_act_dtype_known(int dtype) { return dtype == ST_ACT_F32 || dtype == ST_ACT_BF16 || dtype == ST_ACT_I8; }

const char *st_act_dtype_name(int dtype)
{
    return dtype == ST_ACT_F32 ? "f32" : dtype == ST_ACT_BF16 ? "bf16" : dtype == ST_ACT_I8 ? "int8" : "?";
}

size_t st_act_bytes(int dtype, int n_tokens, int hidden)
{
    if (n_tokens < 0 || hidden < 0)
        return 0;
    size_t n = (size_t)n_tokens, h = (size_t)hidden;
    switch (dtype) {
    case ST_ACT_F32: return n * h * 4;
    case ST_ACT_BF16: return n * h * 2;
    case ST_ACT_I8: return n * 4 + n * h;
    default: return 0;
    }
}

/* ---- int8 ------------------------------------------------------------------ */

/* The largest scale a receiver accepts: the largest float whose product
 * with 127 is finite in f32 (FLT_MAX / 127.0f itself rounds up, and
 * 127 times it overflows). */
#define I8_MAX_SCALE 0x1.020406p+121f

/* Scale of a row whose largest magnitude is amax (finite, >= 0): amax/127,
 * nudged so that amax / scale <= 127.5 (every code fits in [-127, 127] with
 * error <= scale/2) and 127 * scale stays finite. */
static float row_scale(float amax)
{
    if (amax == 0)
        return 0;
    float s = amax / 127.0f;
    if (s > I8_MAX_SCALE) /* amax near FLT_MAX, rounded up: amax/s stays ~127 */
        s = I8_MAX_SCALE;
    while ((double)amax > 127.5 * (double)s) /* subnormal or underflowed quotient */
        s = nextafterf(s, INFINITY);
    return s;
}

static int encode_i8(uint8_t *dst, const float *src, int n_tokens, int hidden)
{
    int8_t *q = (int8_t *)(dst + (size_t)n_tokens * 4);
    for (int r = 0; r < n_tokens; r++) {
        const float *x = src + (size_t)r * hidden;
        float amax = 0;
        for (int j = 0; j < hidden; j++) {
            float a = fabsf(x[j]);
            if (!(a <= FLT_MAX)) /* NaN or inf */
                return st_err(ST_EINVAL, "int8 activations: row %d of %d holds a non-finite value (%g at %d)", r,
                              n_tokens, (double)x[j], j);
            if (a > amax)
                amax = a;
        }
        float s = row_scale(amax);
        memcpy(dst + (size_t)r * 4, &s, 4);
        int8_t *qr = q + (size_t)r * hidden;
        if (s == 0) {
            memset(qr, 0, (size_t)hidden);
            continue;
        }
        /* in double: x / s is exact enough even for subnormal s, where 1/s
         * would overflow a float */
        double inv = 1.0 / (double)s;
        for (int j = 0; j < hidden; j++) {
            double v = nearbyint((double)x[j] * inv);
            qr[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
    }
    return ST_OK;
}

/* ---- public ------------------------------------------------------------------ */

int st_act_encode(void *dst, const float *src, int n_tokens, int hidden, int dtype)
{
    if (n_tokens < 0 || hidden < 1 || !st_act_dtype_known(dtype))
        return st_err(ST_EINVAL, "activations: cannot encode %d x %d as dtype %d", n_tokens, hidden, dtype);
    size_t nx = (size_t)n_tokens * (size_t)hidden;
    switch (dtype) {
    case ST_ACT_F32: memcpy(dst, src, nx * sizeof(float)); return ST_OK;
    case ST_ACT_BF16: st_act_f32_to_bf16(dst, src, nx); return ST_OK;
    default: return encode_i8(dst, src, n_tokens, hidden);
    }
}

int st_act_check(const void *src, size_t len, int n_tokens, int hidden, int dtype)
{
    if (n_tokens < 0 || hidden < 1 || !st_act_dtype_known(dtype))
        return st_err(ST_EPROTO, "activations: %d x %d of dtype %d is no valid payload shape", n_tokens, hidden,
                      dtype);
    size_t want = st_act_bytes(dtype, n_tokens, hidden);
    if (len != want)
        return st_err(ST_EPROTO, "activations: %s payload of %zu bytes, %d x %d needs exactly %zu",
                      st_act_dtype_name(dtype), len, n_tokens, hidden, want);
    if (dtype != ST_ACT_I8)
        return ST_OK;
    const uint8_t *p = src;
    for (int r = 0; r < n_tokens; r++) {
        float s;
        memcpy(&s, p + (size_t)r * 4, 4);
        if (!(s >= 0 && s <= I8_MAX_SCALE)) /* NaN fails both */
            return st_err(ST_EPROTO, "activations: int8 row %d has scale %g (must be finite, >= 0, <= %g)", r,
                          (double)s, (double)I8_MAX_SCALE);
    }
    return ST_OK;
}

int st_act_decode(float *dst, const void *src, size_t len, int n_tokens, int hidden, int dtype)
{
    int rc = st_act_check(src, len, n_tokens, hidden, dtype);
    if (rc)
        return rc;
    size_t nx = (size_t)n_tokens * (size_t)hidden;
    if (dtype == ST_ACT_F32) {
        memcpy(dst, src, nx * sizeof(float));
        return ST_OK;
    }
    if (dtype == ST_ACT_BF16) {
        st_act_bf16_to_f32(dst, src, nx);
        return ST_OK;
    }
    const uint8_t *p = src;
    const int8_t *q = (const int8_t *)(p + (size_t)n_tokens * 4);
    for (int r = 0; r < n_tokens; r++) {
        float s;
        memcpy(&s, p + (size_t)r * 4, 4);
        const int8_t *qr = q + (size_t)r * hidden;
        float *y = dst + (size_t)r * hidden;
        for (int j = 0; j < hidden; j++)
            y[j] = (float)qr[j] * s;
    }
    return ST_OK;
}
