/* Paged attention for one (row, kv head) pair: the body shared by the
 * scalar and SIMD builds. The including file defines ATTN_FN (the function
 * name) and its vector primitives over n floats: LOAD_F16(dst, src, n)
 * (f16 -> f32), ATTN_DOT(a, b, n) (a float, fixed reduction order),
 * ATTN_AXPY(y, w, x, n) (y += w * x) and ATTN_SCALE(y, s, n) (y *= s).
 *
 * For each query head h of the group: online softmax over positions
 * 0..p in chunks of ST_ATTN_CHUNK: score the chunk, raise the running max
 * once, rescale the running sum and accumulator, add the chunk. K/V of a
 * chunk are converted to f32 once and shared by the group's heads (GQA).
 * The chunks and every reduction order depend only on p, so a row's result
 * is the same in any batch and on any thread. The driver has validated the
 * row's position and block table. */
#include <math.h>
#include <string.h>

static void ATTN_FN(const st_attn_args *a, int row, int g)
{
    const st_kv_cache *kv = a->kv;
    const st_batch_seq *s = &a->b->seqs[a->row_seq[row]];
    const int hd = kv->head_dim, bs = kv->block_size;
    const int grp = a->n_heads / kv->n_kv_heads;
    const int n_ctx = a->b->pos[row] + 1;
    const size_t esz = kv->dtype == ST_F16 ? 2 : 4;
    const size_t row_stride = (size_t)a->n_heads * hd;
    const uint8_t *kbase = kv->k[a->layer], *vbase = kv->v[a->layer];

    float kf[ST_ATTN_CHUNK][ST_ATTN_MAX_HEAD_DIM] __attribute__((aligned(32)));
    float vf[ST_ATTN_CHUNK][ST_ATTN_MAX_HEAD_DIM] __attribute__((aligned(32)));
    float acc[grp][hd];
    float m[grp], l[grp];
    for (int h = 0; h < grp; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
        memset(acc[h], 0, sizeof(float) * (size_t)hd);
    }
    const float *q0 = a->q + (size_t)row * row_stride + (size_t)g * grp * hd;

    for (int c0 = 0; c0 < n_ctx; c0 += ST_ATTN_CHUNK) {
        const int nc = n_ctx - c0 < ST_ATTN_CHUNK ? n_ctx - c0 : ST_ATTN_CHUNK;
        for (int j = 0; j < nc; j++) {
            const int p = c0 + j;
            const size_t off = (size_t)s->block_table[p / bs] * kv->block_bytes +
                               ((size_t)g * bs + (size_t)(p % bs)) * hd * esz;
            if (esz == 2) {
                LOAD_F16(kf[j], (const uint16_t *)(kbase + off), hd);
                LOAD_F16(vf[j], (const uint16_t *)(vbase + off), hd);
            } else {
                memcpy(kf[j], kbase + off, (size_t)hd * 4);
                memcpy(vf[j], vbase + off, (size_t)hd * 4);
            }
        }
        for (int h = 0; h < grp; h++) {
            const float *qh = q0 + (size_t)h * hd;
            float sc[ST_ATTN_CHUNK];
            float mc = m[h];
            for (int j = 0; j < nc; j++) {
                sc[j] = ATTN_DOT(qh, kf[j], hd) * a->scale;
                mc = sc[j] > mc ? sc[j] : mc;
            }
            if (mc > m[h]) {
                const float alpha = expf(m[h] - mc); /* 0 on the first chunk */
                l[h] *= alpha;
                ATTN_SCALE(acc[h], alpha, hd);
                m[h] = mc;
            }
            float *ah = acc[h];
            for (int j = 0; j < nc; j++) {
                const float w = expf(sc[j] - mc);
                l[h] += w;
                ATTN_AXPY(ah, w, vf[j], hd);
            }
        }
    }
    float *o0 = a->out + (size_t)row * row_stride + (size_t)g * grp * hd;
    for (int h = 0; h < grp; h++) {
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int i = 0; i < hd; i++)
            o0[(size_t)h * hd + i] = acc[h][i] * inv;
    }
}
