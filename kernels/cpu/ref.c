/* Scalar references (ref.h). */
#include "kernels/cpu/ref.h"

#include "common/st_common.h"
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void st_ref_matmul_f32(float *y, const float *x, const st_tensor *W, const float *bias, int n)
{
    const int K = (int)W->ne[0], O = (int)W->ne[1];
    const size_t rb = st_dtype_row_bytes(W->type, K);
    float *w = st_xmalloc(sizeof(float) * (size_t)K);
    for (int o = 0; o < O; o++) {
        st_dequant_row(W->type, (const uint8_t *)W->data + (size_t)o * rb, w, K);
        for (int r = 0; r < n; r++) {
            double s = bias ? bias[o] : 0.0;
            for (int k = 0; k < K; k++)
                s += (double)w[k] * x[(size_t)r * K + k];
            y[(size_t)r * O + o] = (float)s;
        }
    }
    free(w);
}

void st_ref_matmul_q8act(float *y, double *mag, const float *x, const st_tensor *W, const float *bias, int n)
{
    const int K = (int)W->ne[0], O = (int)W->ne[1], nb = K / 32;
    const size_t rb = st_dtype_row_bytes(W->type, K), bb = st_dtype_block_bytes(W->type);
    st_qblock *qx = st_xaligned(sizeof(st_qblock) * (size_t)nb * (size_t)n);
    st_cpu_quant_scalar(x, qx, nb * n, W->type);
    float wq[32];
    for (int o = 0; o < O; o++) {
        for (int r = 0; r < n; r++) {
            double s = bias ? bias[o] : 0.0, m = bias ? fabs(bias[o]) : 0.0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *wb = (const uint8_t *)W->data + (size_t)o * rb + (size_t)b * bb;
                const st_qblock *xb = &qx[(size_t)r * nb + b];
                /* dequantized weights times dequantized activations */
                st_dequant_row(W->type, wb, wq, 32);
                for (int j = 0; j < 32; j++) {
                    const double t = (double)wq[j] * ((double)xb->d * xb->qs[j]);
                    s += t;
                    m += fabs(t);
                }
            }
            y[(size_t)r * O + o] = (float)s;
            if (mag)
                mag[(size_t)r * O + o] = m;
        }
    }
    free(qx);
}

void st_ref_embed(float *out, const st_tensor *table, const int32_t *ids, int n)
{
    const int dim = (int)table->ne[0];
    const size_t rb = st_dtype_row_bytes(table->type, dim);
    for (int i = 0; i < n; i++)
        st_dequant_row(table->type, (const uint8_t *)table->data + (size_t)ids[i] * rb, out + (size_t)i * dim, dim);
}

void st_ref_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps)
{
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)x[(size_t)r * dim + i] * x[(size_t)r * dim + i];
        const double inv = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            out[(size_t)r * dim + i] = (float)(x[(size_t)r * dim + i] * inv * w[i]);
    }
}

void st_ref_rope(float *x, int n, int n_heads, int head_dim, const int32_t *pos, const st_rope *rope)
{
    const int half = rope->n_rot / 2;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                const double th = (double)((float)pos[r] * rope->inv_freq[i]);
                const int i0 = rope->style == ST_ROPE_NEOX ? i : 2 * i;
                const int i1 = rope->style == ST_ROPE_NEOX ? i + half : 2 * i + 1;
                const double a = v[i0], b = v[i1];
                v[i0] = (float)(a * cos(th) - b * sin(th));
                v[i1] = (float)(a * sin(th) + b * cos(th));
            }
        }
}

void st_ref_swiglu(float *out, const float *gate, const float *up, int n, int d)
{
    for (size_t i = 0; i < (size_t)n * d; i++) {
        const double g = gate[i];
        out[i] = (float)(g / (1.0 + exp(-g)) * up[i]);
    }
}

float st_ref_kv_get(const st_kv_cache *kv, int layer, int which, const int32_t *block_table, int p, int h, int i)
{
    const size_t esz = kv->dtype == ST_F16 ? 2 : 4;
    const uint8_t *base = which ? kv->v[layer] : kv->k[layer];
    const size_t off = (size_t)block_table[p / kv->block_size] * kv->block_bytes +
                       (((size_t)h * kv->block_size + (size_t)(p % kv->block_size)) * kv->head_dim + i) * esz;
    if (esz == 2) {
        uint16_t hv;
        memcpy(&hv, base + off, 2);
        return st_f16_to_f32(hv);
    }
    float f;
    memcpy(&f, base + off, 4);
    return f;
}

void st_ref_attention(float *out, const float *q, const st_kv_cache *kv, int layer, const st_batch *b, int n_heads,
                      float scale)
{
    const int hd = kv->head_dim, grp = n_heads / kv->n_kv_heads;
    for (int si = 0; si < b->n_seqs; si++) {
        const st_batch_seq *s = &b->seqs[si];
        for (int r = s->row0; r < s->row0 + s->n_tokens; r++) {
            const int n_ctx = b->pos[r] + 1;
            double *sc = st_xmalloc(sizeof(double) * (size_t)n_ctx);
            for (int h = 0; h < n_heads; h++) {
                const float *qh = q + ((size_t)r * n_heads + h) * hd;
                const int g = h / grp;
                double mx = -INFINITY, sum = 0;
                for (int p = 0; p < n_ctx; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += (double)qh[i] * st_ref_kv_get(kv, layer, 0, s->block_table, p, g, i);
                    sc[p] = d * scale;
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = 0; p < n_ctx; p++) {
                    sc[p] = exp(sc[p] - mx);
                    sum += sc[p];
                }
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int p = 0; p < n_ctx; p++)
                        acc += sc[p] * st_ref_kv_get(kv, layer, 1, s->block_table, p, g, i);
                    out[((size_t)r * n_heads + h) * hd + i] = (float)(acc / sum);
                }
            }
            free(sc);
        }
    }
}
