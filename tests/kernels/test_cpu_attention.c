/* CPU paged attention + kv_write on every ISA this machine has.
 *
 * A mixed batch: sequence A is a 13-token prefill chunk at pos0 = 5 (its
 * positions 0..4 written by an earlier step), and three decodes at
 * positions 0, 20 and 47; every sequence's block table is a slice of a
 * shuffled permutation, so blocks are non-contiguous and interleaved.
 * Checked: kv_write stores f16 with round-to-nearest-even at the right
 * slots; attention matches the double-precision two-pass reference
 * (tolerance 1e-4 absolute: outputs are convex combinations of V values
 * in [-1, 1], and f32 rounding over <= 64 positions stays near 1e-6, while
 * a wrong position or block gives errors ~1e-2); each row is bit-identical
 * when its sequence runs alone, and with 1 thread instead of 2. */
#include "../test.h"
#include "cpu_test_util.h"
#include "kernels/cpu/ref.h"

enum { NSEQ = 4, NBLOCKS = 48 };
static const int seq_pos0[NSEQ] = {5, 0, 20, 47};
static const int seq_ntok[NSEQ] = {13, 1, 1, 1};

typedef struct {
    int nh, nkv, hd, bs;
    st_dtype dt;
} config;

static void run_config(st_backend *be, st_backend *be1, const config *c)
{
    st_kv_cache kv = {.n_layers = 2, .n_blocks = NBLOCKS, .block_size = c->bs, .n_kv_heads = c->nkv,
                      .head_dim = c->hd, .dtype = c->dt};
    CHECK(be->ops->kv_alloc(be, &kv) == ST_OK);
    CHECK(((uintptr_t)kv.k[1] & 63) == 0 && ((uintptr_t)kv.v[0] & 63) == 0);
    const int layer = 1, kvw = c->nkv * c->hd, qw = c->nh * c->hd;

    /* shuffled block ids, sliced into per-sequence tables */
    int32_t perm[NBLOCKS];
    for (int i = 0; i < NBLOCKS; i++)
        perm[i] = i;
    for (int i = NBLOCKS - 1; i > 0; i--) {
        int j = (int)(rng_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    st_batch_seq seqs[NSEQ], hist[NSEQ];
    int used = 0, row = 0, hrow = 0;
    int32_t pos[64], hpos[128];
    for (int s = 0; s < NSEQ; s++) {
        const int nblk = (seq_pos0[s] + seq_ntok[s] + c->bs - 1) / c->bs;
        seqs[s] = (st_batch_seq){.seq_id = 100 + s, .row0 = row, .n_tokens = seq_ntok[s], .pos0 = seq_pos0[s],
                                 .n_blocks = nblk, .block_table = perm + used, .want_logits = 1};
        hist[s] = seqs[s];
        hist[s].row0 = hrow, hist[s].n_tokens = seq_pos0[s], hist[s].pos0 = 0;
        used += nblk;
        for (int i = 0; i < seq_ntok[s]; i++)
            pos[row++] = seq_pos0[s] + i;
        for (int i = 0; i < seq_pos0[s]; i++)
            hpos[hrow++] = i;
    }
    CHECK(used <= NBLOCKS);
    const int n = row;
    st_batch hb = {.n_tokens = hrow, .pos = hpos, .n_seqs = NSEQ, .seqs = hist};
    st_batch b = {.n_tokens = n, .pos = pos, .n_seqs = NSEQ, .seqs = seqs};

    /* earlier steps' K/V, then this step's */
    float *hk = malloc(sizeof(float) * hrow * kvw), *hv = malloc(sizeof(float) * hrow * kvw);
    float *k = malloc(sizeof(float) * n * kvw), *v = malloc(sizeof(float) * n * kvw);
    rand_fill(hk, (size_t)hrow * kvw, 1.0f), rand_fill(hv, (size_t)hrow * kvw, 1.0f);
    rand_fill(k, (size_t)n * kvw, 1.0f), rand_fill(v, (size_t)n * kvw, 1.0f);
    be->ops->kv_write(be, &kv, layer, hk, hv, &hb);
    be->ops->kv_write(be, &kv, layer, k, v, &b);

    /* stored values: exactly the f16 (or f32) of what was written */
    int bad = 0;
    for (int r = 0; r < n && !bad; r++) {
        const st_batch_seq *s = &seqs[r < 13 ? 0 : r - 12];
        for (int h = 0; h < c->nkv; h++)
            for (int i = 0; i < c->hd; i++) {
                float want_k = k[(size_t)r * kvw + h * c->hd + i], want_v = v[(size_t)r * kvw + h * c->hd + i];
                if (c->dt == ST_F16) {
                    want_k = st_f16_to_f32(st_f32_to_f16(want_k));
                    want_v = st_f16_to_f32(st_f32_to_f16(want_v));
                }
                if (st_ref_kv_get(&kv, layer, 0, s->block_table, pos[r], h, i) != want_k ||
                    st_ref_kv_get(&kv, layer, 1, s->block_table, pos[r], h, i) != want_v)
                    bad++;
            }
    }
    CHECKF(bad == 0, "%s: kv_write stored wrong values (%d)", st_cpu_isa(), bad);

    float *q = malloc(sizeof(float) * n * qw), *out = malloc(sizeof(float) * n * qw);
    float *ref = malloc(sizeof(float) * n * qw), *alone = malloc(sizeof(float) * n * qw);
    rand_fill(q, (size_t)n * qw, 1.0f);
    const float scale = 1.0f / sqrtf((float)c->hd);
    be->ops->attention(be, out, q, &kv, layer, &b, c->nh, scale);
    st_ref_attention(ref, q, &kv, layer, &b, c->nh, scale);
    double maxerr = 0;
    for (int i = 0; i < n * qw; i++)
        maxerr = fmax(maxerr, fabs(out[i] - ref[i]));
    CHECKF(maxerr <= 1e-4, "%s heads %d/%d hd %d bs %d %s: max error %g vs reference", st_cpu_isa(), c->nh, c->nkv,
           c->hd, c->bs, st_dtype_name(c->dt), maxerr);

    /* batch invariance: each sequence alone */
    for (int s = 0; s < NSEQ; s++) {
        st_batch_seq one = seqs[s];
        one.row0 = 0;
        st_batch b1 = {.n_tokens = one.n_tokens, .pos = pos + seqs[s].row0, .n_seqs = 1, .seqs = &one};
        be->ops->attention(be, alone, q + (size_t)seqs[s].row0 * qw, &kv, layer, &b1, c->nh, scale);
        CHECKF(!memcmp(alone, out + (size_t)seqs[s].row0 * qw, sizeof(float) * one.n_tokens * qw),
               "%s: sequence %d alone differs from the mixed batch", st_cpu_isa(), s);
    }
    /* thread invariance */
    be1->ops->attention(be1, alone, q, &kv, layer, &b, c->nh, scale);
    CHECKF(!memcmp(alone, out, sizeof(float) * n * qw), "%s: 1 thread differs from %d", st_cpu_isa(), be->n_threads);

    /* a block id out of range is refused, output untouched */
    int32_t evil[8];
    memcpy(evil, seqs[3].block_table, sizeof(int32_t) * ST_MIN(8, seqs[3].n_blocks));
    evil[0] = NBLOCKS;
    st_batch_seq es = seqs[3];
    es.row0 = 0, es.block_table = evil, es.n_blocks = ST_MIN(8, seqs[3].n_blocks);
    st_batch eb = {.n_tokens = 1, .pos = pos + seqs[3].row0, .n_seqs = 1, .seqs = &es};
    memset(alone, 0x7F, sizeof(float) * qw);
    be->ops->attention(be, alone, q, &kv, layer, &eb, c->nh, scale);
    CHECK(((uint8_t *)alone)[0] == 0x7F);

    free(hk), free(hv), free(k), free(v), free(q), free(out), free(ref), free(alone);
    be->ops->kv_free(be, &kv);
    CHECK(kv.k == NULL && kv.v == NULL);
}

int main(void)
{
    static const config configs[] = {
        {9, 3, 64, 16, ST_F16}, {4, 4, 32, 16, ST_F16}, {8, 1, 64, 5, ST_F16},
        {9, 3, 64, 16, ST_F32}, {4, 2, 96, 7, ST_F16},  {2, 1, 20, 16, ST_F16},
    };
    int tested = 0;
    /* every ISA the backend may pick here (AVX-512 only when opted in) */
    for (int isa = ST_CPU_SCALAR; isa <= ST_CPU_AVX512; isa++) {
        if (!st_cpu_isa_supported((st_cpu_isa_t)isa) || isa > (int)st_cpu_isa_detect()) {
            fprintf(stderr, "note: %s kernels not tested: this CPU lacks the ISA\n", st_cpu_isa_name(isa));
            continue;
        }
        tested++;
        st_backend *be = st_backend_cpu_create_isa(2, (st_cpu_isa_t)isa);
        st_backend *be1 = st_backend_cpu_create_isa(1, (st_cpu_isa_t)isa);
        CHECK(be && be1);
        if (!be || !be1)
            continue;
        for (size_t i = 0; i < ST_ARRAY_LEN(configs); i++)
            run_config(be, be1, &configs[i]);
        st_backend_destroy(be);
        st_backend_destroy(be1);
    }
    CHECK(tested >= 1);
    return test_done();
}
