/* CPU backend: the small ops against ref.c, the thread pool, ISA choice,
 * and bad input. Tolerances: embed is exact (same dequantization); rmsnorm
 * and swiglu are a handful of f32 roundings per element (relative 1e-5);
 * rope uses the same f32 angle as the reference and f32 cos/sin, |x| <= 8:
 * 1e-5 absolute. */
#include "../test.h"
#include "cpu_test_util.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/threadpool.h"

#include <stdatomic.h>

static double max_rel(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]) / (fabs(b[i]) + 1e-3));
    return m;
}

static void test_embed(st_backend *be)
{
    for (size_t ti = 0; ti < ST_ARRAY_LEN(all_types); ti++) {
        const int dim = 96, vocab = 50;
        st_tensor t = rand_tensor(all_types[ti], dim, vocab);
        int32_t ids[5] = {0, 49, 7, 7, 13};
        float out[5 * 96], ref[5 * 96];
        be->ops->embed(be, out, &t, ids, 5);
        st_ref_embed(ref, &t, ids, 5);
        CHECKF(!memcmp(out, ref, sizeof out), "embed %s", st_dtype_name(all_types[ti]));
        ids[1] = vocab; /* out of range: zero row, no crash */
        be->ops->embed(be, out, &t, ids, 2);
        CHECK(out[dim] == 0.0f && out[2 * dim - 1] == 0.0f);
        free((void *)t.data);
    }
}

static void test_rmsnorm(st_backend *be)
{
    static const int dims[] = {32, 96, 576, 1000};
    for (size_t di = 0; di < ST_ARRAY_LEN(dims); di++) {
        const int n = 17, d = dims[di];
        float *x = malloc(sizeof(float) * n * d), *w = malloc(sizeof(float) * d);
        float *o = malloc(sizeof(float) * n * d), *r = malloc(sizeof(float) * n * d);
        rand_fill(x, (size_t)n * d, 2.0f), rand_fill(w, d, 1.0f);
        be->ops->rmsnorm(be, o, x, w, n, d, 1e-5f);
        st_ref_rmsnorm(r, x, w, n, d, 1e-5f);
        CHECKF(max_rel(o, r, (size_t)n * d) < 1e-5, "rmsnorm dim %d: %g", d, max_rel(o, r, (size_t)n * d));
        be->ops->rmsnorm(be, x, x, w, n, d, 1e-5f); /* in place */
        CHECK(!memcmp(x, o, sizeof(float) * n * d));
        free(x), free(w), free(o), free(r);
    }
}

static void test_rope(st_backend *be)
{
    const int n = 17, nh = 3, hd = 64;
    int32_t pos[17];
    for (int i = 0; i < n; i++)
        pos[i] = i * 61 + 3;
    for (int style = 0; style < 2; style++)
        for (int nrot = 64; nrot >= 32; nrot -= 32) {
            float inv[32];
            for (int i = 0; i < nrot / 2; i++)
                inv[i] = powf(10000.0f, -2.0f * i / nrot);
            st_rope rope = {.style = (st_rope_style)style, .n_rot = nrot, .inv_freq = inv};
            float *x = malloc(sizeof(float) * n * nh * hd), *r = malloc(sizeof(float) * n * nh * hd);
            rand_fill(x, (size_t)n * nh * hd, 1.0f);
            memcpy(r, x, sizeof(float) * n * nh * hd);
            be->ops->rope(be, x, n, nh, hd, pos, &rope);
            st_ref_rope(r, n, nh, hd, pos, &rope);
            double m = 0;
            for (int i = 0; i < n * nh * hd; i++)
                m = fmax(m, fabs(x[i] - r[i]));
            CHECKF(m < 1e-5, "rope style %d n_rot %d: %g", style, nrot, m);
            /* dims beyond n_rot untouched, and the row at position 0 is unchanged */
            if (nrot < hd)
                CHECK(x[(size_t)(1 * nh + 2) * hd + hd - 1] == r[(size_t)(1 * nh + 2) * hd + hd - 1]);
            free(x), free(r);
        }
    /* NORM and NEOX differ (pairs are not the same elements) */
    float inv[32], a[64], b[64];
    for (int i = 0; i < 32; i++)
        inv[i] = powf(10000.0f, -2.0f * i / 64);
    for (int i = 0; i < 64; i++)
        a[i] = b[i] = (float)i / 64;
    int32_t p = 5;
    st_rope r0 = {ST_ROPE_NORM, 64, inv}, r1 = {ST_ROPE_NEOX, 64, inv};
    be->ops->rope(be, a, 1, 1, 64, &p, &r0);
    be->ops->rope(be, b, 1, 1, 64, &p, &r1);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void test_swiglu_add(st_backend *be)
{
    const int n = 3, d = 1536;
    float *g = malloc(sizeof(float) * n * d), *u = malloc(sizeof(float) * n * d);
    float *o = malloc(sizeof(float) * n * d), *r = malloc(sizeof(float) * n * d);
    rand_fill(g, (size_t)n * d, 4.0f), rand_fill(u, (size_t)n * d, 1.0f);
    be->ops->swiglu(be, o, g, u, n, d);
    st_ref_swiglu(r, g, u, n, d);
    CHECKF(max_rel(o, r, (size_t)n * d) < 1e-5, "swiglu %g", max_rel(o, r, (size_t)n * d));
    memcpy(r, o, sizeof(float) * n * d);
    be->ops->add(be, o, g, n, d);
    int bad = 0;
    for (int i = 0; i < n * d; i++)
        bad += o[i] != r[i] + g[i];
    CHECK(bad == 0);
    free(g), free(u), free(o), free(r);
}

/* ---- thread pool --------------------------------------------------------------------- */
typedef struct {
    atomic_int hits[8];
    atomic_int total;
} tp_count;

static void count_fn(void *p, int ith, int nth)
{
    tp_count *c = p;
    if (ith >= 0 && ith < 8 && nth <= 8)
        atomic_fetch_add(&c->hits[ith], 1);
    atomic_fetch_add(&c->total, 1);
}

static void test_threadpool(void)
{
    for (int n = 1; n <= 4; n++) {
        st_tp *tp = st_tp_create(n);
        CHECK(st_tp_size(tp) == n);
        tp_count c = {0};
        const int runs = n <= 2 ? 20000 : 500; /* more threads than cores: slow by nature */
        for (int i = 0; i < runs; i++)
            st_tp_run(tp, count_fn, &c);
        for (int i = 0; i < n; i++)
            CHECKF(atomic_load(&c.hits[i]) == runs, "pool %d: thread %d ran %d of %d jobs", n, i,
                   atomic_load(&c.hits[i]), runs);
        CHECK(atomic_load(&c.total) == runs * n);
        st_tp_destroy(tp);
    }
    st_tp *tp = st_tp_create(0);
    CHECK(st_tp_size(tp) >= 1);
    st_tp_destroy(tp);
}

int main(void)
{
    test_threadpool();
    CHECK(st_cpu_read_bandwidth_gbs(2, 8u << 20) > 0.0);
    CHECK(st_cpu_read_bandwidth_gbs(1, 10) == 0.0);

    /* the env var only lowers the ISA */
    setenv("ST_CPU_ISA", "scalar", 1);
    CHECK(st_cpu_isa_detect() == ST_CPU_SCALAR);
    st_backend *be = st_backend_cpu_create(2);
    CHECK(be && !strcmp(st_cpu_isa(), "scalar") && be->n_threads == 2);
    st_backend_destroy(be);
    unsetenv("ST_CPU_ISA");
    CHECK(st_cpu_isa_supported(st_cpu_isa_detect()));
    if (!st_cpu_isa_supported(ST_CPU_AVX512))
        CHECK(st_backend_cpu_create_isa(1, ST_CPU_AVX512) == NULL);

    for (int isa = ST_CPU_SCALAR; isa <= ST_CPU_AVX512; isa++) {
        if (!st_cpu_isa_supported((st_cpu_isa_t)isa) || isa > (int)st_cpu_isa_detect())
            continue;
        be = st_backend_cpu_create_isa(2, (st_cpu_isa_t)isa);
        test_embed(be);
        test_rmsnorm(be);
        test_rope(be);
        test_swiglu_add(be);
        /* bad kv geometry */
        st_kv_cache kv = {.n_layers = 1, .n_blocks = 4, .block_size = 16, .n_kv_heads = 1, .head_dim = 1000,
                          .dtype = ST_F16};
        CHECK(be->ops->kv_alloc(be, &kv) == ST_EINVAL);
        st_backend_destroy(be);
    }
    return test_done();
}
