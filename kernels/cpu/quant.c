/* Activation quantization, plain C: x (32 floats) -> st_qblock. The SIMD
 * versions in matmul_simd.h compute the same numbers bit for bit (same
 * scale formula, round-to-nearest-even, exact integer sums), so the
 * quantized activations do not depend on the ISA. */
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>
#include <string.h>

void st_cpu_quant_scalar(const float *x, st_qblock *q, int nb, st_dtype wtype)
{
    for (int b = 0; b < nb; b++, x += 32, q++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = fabsf(x[j]);
            amax = v > amax ? v : amax;
        }
        const float d = amax / 127.0f;
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int k = 0; k < 8; k++) {
            int part = 0;
            for (int j = 4 * k; j < 4 * k + 4; j++) {
                const int v = (int)nearbyintf(x[j] * id); /* default rounding: to nearest even */
                q->qs[j] = (int8_t)v;
                part += v;
            }
            q->corr[k] = wtype == ST_Q4_0 ? -8 * part : 0;
            sum += part;
        }
        q->d = d;
        q->s8 = d * (float)sum * 0.125f;
        memset(q->pad, 0, sizeof q->pad);
    }
}
