/* The CPU backend: ISA choice, the st_backend_ops table, KV storage, and
 * the cheap ops (embed, norms, rope, swiglu, add, kv_write). Matmul and
 * attention live in matmul.c / attention.c.
 *
 * Ops return void (backend.h); on bad input they leave the output zeroed
 * where they can, log an error once per op kind and return. */
#define _GNU_SOURCE
#include "kernels/cpu/cpu.h"

#include "common/st_common.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/threadpool.h"

#include <cpuid.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

/* ---- ISA ---------------------------------------------------------------------------- */

static int has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c >> 29) & 1;
}

int st_cpu_isa_supported(st_cpu_isa_t isa)
{
    __builtin_cpu_init();
    switch (isa) {
    case ST_CPU_SCALAR: return 1;
    case ST_CPU_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case ST_CPU_AVX512:
        return st_cpu_isa_supported(ST_CPU_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
    }
    return 0;
}

const char *st_cpu_isa_name(st_cpu_isa_t isa)
{
    return isa == ST_CPU_AVX512 ? "avx512" : isa == ST_CPU_AVX2 ? "avx2" : "scalar";
}

st_cpu_isa_t st_cpu_isa_detect(void)
{
    /* The AVX-512 kernels are opt-in (ST_CPU_ISA=avx512) until they have
     * been validated on AVX-512 hardware; AVX2 runs on those CPUs too. */
    const char *env = getenv("ST_CPU_ISA");
    int want512 = env && !strcasecmp(env, "avx512");
    st_cpu_isa_t best = want512 && st_cpu_isa_supported(ST_CPU_AVX512) ? ST_CPU_AVX512
                        : st_cpu_isa_supported(ST_CPU_AVX2)            ? ST_CPU_AVX2
                                                                       : ST_CPU_SCALAR;
    if (env && *env) {
        st_cpu_isa_t want = best;
        if (!strcasecmp(env, "scalar"))
            want = ST_CPU_SCALAR;
        else if (!strcasecmp(env, "avx2"))
            want = ST_CPU_AVX2;
        else if (want512)
            want = ST_CPU_AVX512;
        else
            ST_WARN("cpu: ST_CPU_ISA=%s not understood (scalar|avx2|avx512); using %s", env, st_cpu_isa_name(best));
        if (want > best)
            ST_WARN("cpu: ST_CPU_ISA=%s not supported by this CPU; using %s", env, st_cpu_isa_name(best));
        else
            best = want;
    }
    return best;
}

static atomic_int last_isa = -1;

const char *st_cpu_isa(void)
{
    int isa = atomic_load(&last_isa);
    return st_cpu_isa_name(isa >= 0 ? (st_cpu_isa_t)isa : st_cpu_isa_detect());
}

static const st_cpu_kernels *kernels_for(st_cpu_isa_t isa)
{
    return isa == ST_CPU_AVX512 ? &st_cpu_kernels_avx512 : isa == ST_CPU_AVX2 ? &st_cpu_kernels_avx2
                                                                             : &st_cpu_kernels_scalar;
}

/* ---- the backend object ----------------------------------------------------------------- */
typedef struct {
    st_backend base;
    st_cpu_isa_t isa;
    const st_cpu_kernels *k;
    int exact;     /* float activations in quantized matmuls */
    st_tp *tp;
    st_qblock *qx; /* quantized activations, reused across matmuls */
    size_t qx_cap;
    int32_t *row_seq; /* attention / kv_write scratch */
    size_t row_seq_cap;
} cpu_backend;

static cpu_backend *cpu(st_backend *be) { return (cpu_backend *)be; }

static void op_failed(const char *op, int rc)
{
    ST_ERROR("cpu %s: %s (%s)", op, st_errmsg(), st_strerror(rc));
}

static void be_destroy(st_backend *be)
{
    cpu_backend *c = cpu(be);
    st_tp_destroy(c->tp);
    free(c->qx);
    free(c->row_seq);
    free(c);
}

static void *be_alloc(st_backend *be, size_t bytes) { return st_xaligned(bytes); }
static void be_free(st_backend *be, void *p) { free(p); }
static void be_copy(st_backend *be, void *dst, const void *src, size_t bytes)
{
    if (dst != src && bytes)
        memmove(dst, src, bytes);
}
static void be_sync(st_backend *be) {}

/* ---- KV storage ------------------------------------------------------------------------------- */
/* Large layers are 2 MiB aligned and advised for transparent huge pages:
 * attention walks them block by block, and TLB misses would otherwise
 * show up at long contexts. */
static void *kv_layer_alloc(size_t bytes)
{
    const size_t align = bytes >= (4u << 20) ? (2u << 20) : 64;
    void *p = NULL;
    if (posix_memalign(&p, align, ST_ALIGN_UP(bytes, align)) != 0)
        return NULL;
    if (align > 64)
        madvise(p, ST_ALIGN_UP(bytes, align), MADV_HUGEPAGE);
    return p;
}

static void be_kv_free(st_backend *be, st_kv_cache *kv)
{
    if (!kv)
        return;
    for (int l = 0; l < kv->n_layers; l++) {
        if (kv->k)
            free(kv->k[l]);
        if (kv->v)
            free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
}

static int be_kv_alloc(st_backend *be, st_kv_cache *kv)
{
    if (!kv || kv->n_layers <= 0 || kv->n_blocks <= 0 || kv->block_size <= 0 || kv->n_kv_heads <= 0 ||
        kv->head_dim <= 0 || kv->head_dim > ST_ATTN_MAX_HEAD_DIM || (kv->dtype != ST_F16 && kv->dtype != ST_F32))
        return st_err(ST_EINVAL, "cpu kv_alloc: bad geometry");
    const size_t esz = kv->dtype == ST_F16 ? 2 : 4;
    size_t bb, total;
    if (st_mul_ok((size_t)kv->n_kv_heads * (size_t)kv->block_size, (size_t)kv->head_dim * esz, &bb) ||
        st_mul_ok(bb, (size_t)kv->n_blocks, &total))
        return st_err(ST_EINVAL, "cpu kv_alloc: size overflows");
    kv->block_bytes = bb;
    kv->k = calloc((size_t)kv->n_layers, sizeof(void *));
    kv->v = calloc((size_t)kv->n_layers, sizeof(void *));
    if (!kv->k || !kv->v) {
        be_kv_free(be, kv);
        return st_err(ST_ENOMEM, "cpu kv_alloc: out of memory");
    }
    for (int l = 0; l < kv->n_layers; l++) {
        kv->k[l] = kv_layer_alloc(total);
        kv->v[l] = kv_layer_alloc(total);
        if (!kv->k[l] || !kv->v[l]) {
            be_kv_free(be, kv);
            return st_err(ST_ENOMEM, "cpu kv_alloc: %zu bytes for layer %d", total, l);
        }
    }
    return ST_OK;
}

static void be_kv_write(st_backend *be, st_kv_cache *kv, int layer, const float *k, const float *v,
                        const st_batch *b)
{
    cpu_backend *c = cpu(be);
    int rc = st_cpu_check_kv(kv, layer);
    if (!rc && (!k || !v))
        rc = st_err(ST_EINVAL, "NULL k or v");
    if (!rc && b && (size_t)b->n_tokens > c->row_seq_cap) {
        free(c->row_seq);
        c->row_seq = st_xmalloc(sizeof(int32_t) * (size_t)b->n_tokens);
        c->row_seq_cap = (size_t)b->n_tokens;
    }
    if (!rc)
        rc = st_cpu_check_batch(kv, b, c->row_seq);
    if (rc) {
        op_failed("kv_write", rc);
        return;
    }
    const int hd = kv->head_dim, bs = kv->block_size, nkv = kv->n_kv_heads;
    const size_t esz = kv->dtype == ST_F16 ? 2 : 4;
    uint8_t *kb = kv->k[layer], *vb = kv->v[layer];
    for (int r = 0; r < b->n_tokens; r++) {
        const st_batch_seq *s = &b->seqs[c->row_seq[r]];
        const int p = b->pos[r];
        const size_t base = (size_t)s->block_table[p / bs] * kv->block_bytes;
        for (int h = 0; h < nkv; h++) {
            const size_t off = base + ((size_t)h * bs + (size_t)(p % bs)) * hd * esz;
            const float *ks = k + ((size_t)r * nkv + h) * hd, *vs = v + ((size_t)r * nkv + h) * hd;
            if (esz == 2) {
                c->k->to_f16((uint16_t *)(kb + off), ks, hd);
                c->k->to_f16((uint16_t *)(vb + off), vs, hd);
            } else {
                memcpy(kb + off, ks, (size_t)hd * 4);
                memcpy(vb + off, vs, (size_t)hd * 4);
            }
        }
    }
}

/* ---- embed / norm / rope / swiglu / add ---------------------------------------------------------- */
static void be_embed(st_backend *be, float *out, const st_tensor *t, const int32_t *ids, int n)
{
    if (!out || !t || !ids || n < 0) {
        op_failed("embed", st_err(ST_EINVAL, "NULL argument"));
        return;
    }
    const int64_t dim = t->ne[0], vocab = t->ne[1];
    const size_t rb = st_dtype_row_bytes(t->type, dim);
    if (!rb || !t->data || rb * (size_t)vocab > t->nbytes) {
        op_failed("embed", st_err(ST_EINVAL, "table %s has a bad shape", t->name ? t->name : "?"));
        return;
    }
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * (size_t)dim;
        if (ids[i] < 0 || ids[i] >= vocab) {
            memset(o, 0, sizeof(float) * (size_t)dim);
            op_failed("embed", st_err(ST_ERANGE, "token id %d outside vocab %lld", ids[i], (long long)vocab));
            continue;
        }
        st_dequant_row(t->type, (const uint8_t *)t->data + (size_t)ids[i] * rb, o, dim);
    }
}

/* Split rows over the pool only when there is enough work to pay for it. */
typedef struct {
    int kind; /* 0 rmsnorm, 1 rope, 2 swiglu */
    float *out;
    const float *x, *w, *up;
    int n, dim, n_heads;
    float eps;
    const int32_t *pos;
    const st_rope *rope;
} rows_job;

static void rows_job_fn(void *p, int ith, int nth)
{
    rows_job *j = p;
    const int r0 = j->n * ith / nth, r1 = j->n * (ith + 1) / nth;
    if (r0 >= r1)
        return;
    if (j->kind == 0)
        st_cpu_rmsnorm_rows(j->out, j->x, j->w, r0, r1, j->dim, j->eps);
    else if (j->kind == 1)
        st_cpu_rope_rows(j->out, r0, r1, j->n_heads, j->dim, j->pos, j->rope);
    else
        st_cpu_swiglu_range(j->out, j->x, j->up, (size_t)r0 * j->dim, (size_t)r1 * j->dim);
}

static void run_rows(cpu_backend *c, rows_job *j, size_t work)
{
    if (work >= 16384 && j->n > 1)
        st_tp_run(c->tp, rows_job_fn, j);
    else
        rows_job_fn(j, 0, 1);
}

static void be_rmsnorm(st_backend *be, float *out, const float *x, const float *w, int n, int dim, float eps)
{
    if (!out || !x || !w || n < 0 || dim <= 0) {
        op_failed("rmsnorm", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    rows_job j = {.kind = 0, .out = out, .x = x, .w = w, .n = n, .dim = dim, .eps = eps};
    run_rows(cpu(be), &j, (size_t)n * dim);
}

static void be_rope(st_backend *be, float *x, int n, int n_heads, int head_dim, const int32_t *pos,
                    const st_rope *rope)
{
    if (!x || !pos || !rope || !rope->inv_freq || n < 0 || n_heads <= 0 || head_dim <= 0 || rope->n_rot <= 0 ||
        rope->n_rot > head_dim || rope->n_rot % 2 || rope->n_rot > 512) {
        op_failed("rope", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    rows_job j = {.kind = 1, .out = x, .n = n, .dim = head_dim, .n_heads = n_heads, .pos = pos, .rope = rope};
    run_rows(cpu(be), &j, (size_t)n * n_heads * head_dim * 4);
}

static void be_swiglu(st_backend *be, float *out, const float *gate, const float *up, int n, int d)
{
    if (!out || !gate || !up || n < 0 || d < 0) {
        op_failed("swiglu", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    rows_job j = {.kind = 2, .out = out, .x = gate, .up = up, .n = n, .dim = d};
    run_rows(cpu(be), &j, (size_t)n * d * 4);
}

static void be_add(st_backend *be, float *y, const float *x, int n, int d)
{
    if (!y || !x || n < 0 || d < 0) {
        op_failed("add", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    const size_t total = (size_t)n * (size_t)d;
    for (size_t i = 0; i < total; i++)
        y[i] += x[i];
}

/* ---- matmul / attention ------------------------------------------------------------------------ */
static void be_matmul(st_backend *be, float *y, const float *x, const st_tensor *W, const float *bias, int n)
{
    cpu_backend *c = cpu(be);
    int rc = st_cpu_matmul(c->k, c->exact, c->tp, &c->qx, &c->qx_cap, y, x, W, bias, n);
    if (rc)
        op_failed("matmul", rc);
}

static void be_attention(st_backend *be, float *out, const float *q, const st_kv_cache *kv, int layer,
                         const st_batch *b, int n_heads, float scale)
{
    cpu_backend *c = cpu(be);
    int rc = st_cpu_attention(c->k, c->tp, &c->row_seq, &c->row_seq_cap, out, q, kv, layer, b, n_heads, scale);
    if (rc)
        op_failed("attention", rc);
}

static const st_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = be_destroy,
    .alloc = be_alloc,
    .free = be_free,
    .to_device = be_copy,
    .to_host = be_copy,
    .sync = be_sync,
    .kv_alloc = be_kv_alloc,
    .kv_free = be_kv_free,
    .embed = be_embed,
    .rmsnorm = be_rmsnorm,
    .matmul = be_matmul,
    .rope = be_rope,
    .kv_write = be_kv_write,
    .attention = be_attention,
    .swiglu = be_swiglu,
    .add = be_add,
};

st_backend *st_backend_cpu_create_isa(int n_threads, st_cpu_isa_t isa)
{
    if (!st_cpu_isa_supported(isa)) {
        st_err(ST_ENOTSUP, "cpu: this CPU cannot run %s kernels", st_cpu_isa_name(isa));
        return NULL;
    }
    cpu_backend *c = st_xcalloc(1, sizeof *c);
    c->isa = isa;
    c->k = kernels_for(isa);
    c->tp = st_tp_create(n_threads);
    c->base.ops = &cpu_ops;
    c->base.n_threads = st_tp_size(c->tp);
    atomic_store(&last_isa, (int)isa);
    return &c->base;
}

st_backend *st_backend_cpu_create_exact(int n_threads)
{
    st_backend *be = st_backend_cpu_create_isa(n_threads, st_cpu_isa_detect());
    if (be)
        cpu(be)->exact = 1;
    return be;
}

st_backend *st_backend_cpu_create(int n_threads)
{
    static atomic_int logged;
    st_cpu_isa_t isa = st_cpu_isa_detect();
    const char *act = getenv("ST_CPU_ACT");
    int exact = act && !strcasecmp(act, "f32");
    if (act && *act && !exact && strcasecmp(act, "q8"))
        ST_WARN("cpu: ST_CPU_ACT=%s not understood (q8|f32); using q8", act);
    st_backend *be = st_backend_cpu_create_isa(n_threads, isa);
    if (be)
        cpu(be)->exact = exact;
    if (be && !atomic_exchange(&logged, 1))
        ST_INFO("cpu backend: %s kernels, %d threads%s", st_cpu_isa_name(isa), be->n_threads,
                exact ? ", float activations in quantized matmuls (ST_CPU_ACT=f32)" : "");
    return be;
}
