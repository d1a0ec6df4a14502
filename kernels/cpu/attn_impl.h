/* Paged attention for one (row, kv head) pair: the body shared by the
 * scalar and SIMD builds. The including file defines ATTN_FN (the function
 * name) and LOAD_F16(dst, src, n) (f16 -> f32 for n values) and gets this
 * plain C compiled with its ISA flags (the dot and axpy loops are written
 * with 8 independent lanes so that the compiler vectorizes them).
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

static inline float attn_dot(const float *a, const float *b, int n)
{
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k] * b[i + k];
    for (int k = 0; i < n; i++, k++)
        s[k] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

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
                sc[j] = attn_dot(qh, kf[j], hd) * a->scale;
                mc = sc[j] > mc ? sc[j] : mc;
            }
            if (mc > m[h]) {
                const float alpha = expf(m[h] - mc); /* 0 on the first chunk */
                l[h] *= alpha;
                for (int i = 0; i < hd; i++)
                    acc[h][i] *= alpha;
                m[h] = mc;
            }
            float *ah = acc[h];
            for (int j = 0; j < nc; j++) {
                const float w = expf(sc[j] - mc);
                const float *vj = vf[j];
                l[h] += w;
                for (int i = 0; i < hd; i++)
                    ah[i] += w * vj[i];
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
