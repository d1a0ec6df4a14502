/* RMSNorm, RoPE, SwiGLU: plain C, see elementwise.h. */
#include "kernels/cpu/elementwise.h"

#include <math.h>

void st_cpu_rmsnorm_rows(float *out, const float *x, const float *w, int r0, int r1, int dim, float eps)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        float s[8] = {0};
        int i = 0;
        for (; i + 8 <= dim; i += 8)
            for (int k = 0; k < 8; k++)
                s[k] += xr[i + k] * xr[i + k];
        for (int k = 0; i < dim; i++, k++)
            s[k] += xr[i] * xr[i];
        const float ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (i = 0; i < dim; i++)
            o[i] = xr[i] * inv * w[i];
    }
}

#define ROPE_MAX_PAIRS 256

void st_cpu_rope_rows(float *x, int r0, int r1, int n_heads, int head_dim, const int32_t *pos, const st_rope *rope)
{
    const int half = rope->n_rot / 2;
    float c[ROPE_MAX_PAIRS], s[ROPE_MAX_PAIRS];
    for (int r = r0; r < r1; r++) {
        /* the angles depend on the row only: compute them once for all heads */
        for (int i = 0; i < half; i++) {
            const float theta = (float)pos[r] * rope->inv_freq[i];
            c[i] = cosf(theta);
            s[i] = sinf(theta);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * head_dim;
            if (rope->style == ST_ROPE_NEOX) {
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = a * s[i] + b * c[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * c[i] - b * s[i];
                    v[2 * i + 1] = a * s[i] + b * c[i];
                }
            }
        }
    }
}

void st_cpu_swiglu_range(float *out, const float *gate, const float *up, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
