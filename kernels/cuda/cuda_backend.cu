/* The CUDA backend: the st_backend_ops table over the kernels of
 * kernels/cuda (ops.h). Host-side only: validates arguments (bad input is
 * logged and the op returns without launching), mirrors host arrays on the
 * device, uploads per-call host metadata, launches on one stream.
 *
 * matmul picks, per call, the dequantizing matvec (reads W in its stored
 * type once per token row) or the cuBLAS GEMM of gemm.cu (dequantizes W to
 * f32 once, then one GEMM for all rows). By bytes moved, the GEMM wins once
 * n * b >= b + 8, b = stored bytes per weight (matvec: n * b; GEMM: b read +
 * 4 written + 4 read): n >= 16 for Q4_0, 15 for Q4_1, 9 for Q8_0, 5 for
 * f16/bf16, 2 for f32 (used in place, no dequantization). The rule is a
 * bandwidth estimate, not tuned on a GPU; env ST_CUDA_GEMM_MIN_ROWS=N
 * replaces it with "n >= N" (tests use it to force one path).
 *
 * Still to come (issue "CUDA backend"): CUDA graphs for decode, weights
 * uploaded per layer range at load instead of at first use. */
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"

#include "common/st_common.h"

#include <stdlib.h>
#include <string.h>

namespace {

struct mirror {
    const void *host;
    size_t bytes;
    void *dev;
};

struct cuda_backend {
    st_backend base;
    int device;
    cudaStream_t stream;
    mirror *mirrors; /* host array -> device copy; linear scan, a few hundred per model */
    int n_mirrors, cap_mirrors;
    int32_t *meta; /* device scratch for ids / positions / block tables */
    size_t meta_cap;
    int32_t *hmeta; /* host staging for meta */
    st_cu_gemm *gemm; /* cuBLAS, opened at the first GEMM-sized matmul; NULL: matvec only */
    bool gemm_tried;
    int gemm_min_rows; /* 0: the bandwidth rule above */
    int gemm_chunk_rows; /* env ST_CUDA_GEMM_CHUNK_ROWS (tests); 0: gemm.cu's scratch limit */
    int splitk_chunk;  /* positions per split-K chunk; env ST_CUDA_SPLITK_CHUNK forces split-K */
    bool splitk_forced;
    float *partial; /* split-K scratch */
    size_t partial_cap; /* floats */
};

cuda_backend *cu(st_backend *be) { return reinterpret_cast<cuda_backend *>(be); }

void op_failed(const char *op, int rc) { ST_ERROR("cuda %s: %s (%s)", op, st_errmsg(), st_strerror(rc)); }

int check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return ST_OK;
    return st_err(ST_EIO, "%s: %s", what, cudaGetErrorString(e));
}

/* Device copy of a host array (uploaded on first use). NULL on failure. */
const void *mirror_of(cuda_backend *c, const void *host, size_t bytes)
{
    for (int i = 0; i < c->n_mirrors; i++)
        if (c->mirrors[i].host == host && c->mirrors[i].bytes == bytes)
            return c->mirrors[i].dev;
    void *d = nullptr;
    if (cudaMalloc(&d, bytes) != cudaSuccess) {
        st_err(ST_ENOMEM, "cannot mirror %zu bytes on the device", bytes);
        return nullptr;
    }
    if (cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
        cudaFree(d);
        st_err(ST_EIO, "upload of %zu bytes failed", bytes);
        return nullptr;
    }
    if (c->n_mirrors == c->cap_mirrors) {
        c->cap_mirrors = c->cap_mirrors ? 2 * c->cap_mirrors : 64;
        c->mirrors = static_cast<mirror *>(st_xrealloc(c->mirrors, sizeof(mirror) * (size_t)c->cap_mirrors));
    }
    c->mirrors[c->n_mirrors++] = mirror{host, bytes, d};
    return d;
}

/* Upload `n` int32 of host staging (c->hmeta) into the device scratch. */
int32_t *upload_meta(cuda_backend *c, size_t n)
{
    if (n > c->meta_cap) {
        cudaFree(c->meta);
        c->meta = nullptr;
        c->meta_cap = 0;
        if (cudaMalloc(reinterpret_cast<void **>(&c->meta), n * sizeof(int32_t)) != cudaSuccess) {
            st_err(ST_ENOMEM, "cannot allocate %zu bytes of metadata", n * sizeof(int32_t));
            return nullptr;
        }
        c->meta_cap = n;
    }
    if (cudaMemcpyAsync(c->meta, c->hmeta, n * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream) != cudaSuccess) {
        st_err(ST_EIO, "metadata upload failed");
        return nullptr;
    }
    return c->meta;
}

int32_t *staging(cuda_backend *c, size_t n)
{
    c->hmeta = static_cast<int32_t *>(st_xrealloc(c->hmeta, n * sizeof(int32_t)));
    return c->hmeta;
}

/* ---- memory ops ------------------------------------------------------------------ */
void be_destroy(st_backend *be)
{
    cuda_backend *c = cu(be);
    for (int i = 0; i < c->n_mirrors; i++)
        cudaFree(c->mirrors[i].dev);
    free(c->mirrors);
    cudaFree(c->meta);
    free(c->hmeta);
    st_cu_gemm_destroy(c->gemm);
    cudaFree(c->partial);
    cudaStreamDestroy(c->stream);
    free(c);
}

void *be_alloc(st_backend *be, size_t bytes)
{
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        ST_ERROR("cuda alloc: %zu bytes failed", bytes);
        return nullptr;
    }
    return p;
}

void be_free(st_backend *be, void *p) { cudaFree(p); }

void be_to_device(st_backend *be, void *dst, const void *src, size_t bytes)
{
    if (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu(be)->stream) != cudaSuccess)
        ST_ERROR("cuda to_device: copy of %zu bytes failed", bytes);
}

void be_to_host(st_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_backend *c = cu(be);
    if (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream) != cudaSuccess ||
        cudaStreamSynchronize(c->stream) != cudaSuccess)
        ST_ERROR("cuda to_host: copy of %zu bytes failed", bytes);
}

void be_sync(st_backend *be)
{
    cudaError_t e = cudaStreamSynchronize(cu(be)->stream);
    if (e != cudaSuccess)
        ST_ERROR("cuda sync: %s", cudaGetErrorString(e));
}

/* ---- KV cache ---------------------------------------------------------------------- */
void be_kv_free(st_backend *be, st_kv_cache *kv)
{
    if (!kv)
        return;
    for (int l = 0; l < kv->n_layers; l++) {
        if (kv->k)
            cudaFree(kv->k[l]);
        if (kv->v)
            cudaFree(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = nullptr;
}

int be_kv_alloc(st_backend *be, st_kv_cache *kv)
{
    if (!kv || kv->n_layers <= 0 || kv->n_blocks <= 0 || kv->block_size <= 0 || kv->n_kv_heads <= 0 ||
        kv->head_dim <= 0 || kv->head_dim > 256 || (kv->dtype != ST_F16 && kv->dtype != ST_F32))
        return st_err(ST_EINVAL, "cuda kv_alloc: bad geometry");
    const size_t esz = kv->dtype == ST_F16 ? 2 : 4;
    size_t bb, total;
    if (st_mul_ok((size_t)kv->n_kv_heads * (size_t)kv->block_size, (size_t)kv->head_dim * esz, &bb) ||
        st_mul_ok(bb, (size_t)kv->n_blocks, &total))
        return st_err(ST_EINVAL, "cuda kv_alloc: size overflows");
    kv->block_bytes = bb;
    kv->k = static_cast<void **>(st_xcalloc((size_t)kv->n_layers, sizeof(void *)));
    kv->v = static_cast<void **>(st_xcalloc((size_t)kv->n_layers, sizeof(void *)));
    for (int l = 0; l < kv->n_layers; l++)
        if (cudaMalloc(&kv->k[l], total) != cudaSuccess || cudaMalloc(&kv->v[l], total) != cudaSuccess) {
            be_kv_free(be, kv);
            return st_err(ST_ENOMEM, "cuda kv_alloc: %zu bytes for layer %d", total, l);
        }
    return ST_OK;
}

/* Validate a batch against the cache and build the device metadata of
 * ops.h (positions, block-table offsets, tables). */
int paged_meta(cuda_backend *c, const st_kv_cache *kv, int layer, const st_batch *b, st_cu_paged *p)
{
    if (!kv || !kv->k || !kv->v || layer < 0 || layer >= kv->n_layers)
        return st_err(ST_EINVAL, "bad kv cache or layer %d", layer);
    if (!b || b->n_tokens <= 0 || !b->pos || b->n_seqs <= 0 || !b->seqs)
        return st_err(ST_EINVAL, "empty or malformed batch");
    size_t n = 2 * (size_t)b->n_tokens;
    for (int s = 0; s < b->n_seqs; s++)
        n += (size_t)(b->seqs[s].n_blocks > 0 ? b->seqs[s].n_blocks : 0);
    int32_t *h = staging(c, n);
    for (int i = 0; i < b->n_tokens; i++)
        h[b->n_tokens + i] = -1;
    size_t off = 2 * (size_t)b->n_tokens;
    for (int s = 0; s < b->n_seqs; s++) {
        const st_batch_seq *q = &b->seqs[s];
        if (q->row0 < 0 || q->n_tokens <= 0 || q->row0 > b->n_tokens - q->n_tokens || q->pos0 < 0 ||
            q->n_blocks < 0 || (q->n_blocks && !q->block_table))
            return st_err(ST_EINVAL, "sequence %d: bad rows or block table", s);
        const int64_t need = ((int64_t)q->pos0 + q->n_tokens + kv->block_size - 1) / kv->block_size;
        if (q->n_blocks < need)
            return st_err(ST_EINVAL, "sequence %d: %d blocks cover fewer than %lld", s, q->n_blocks, (long long)need);
        for (int i = 0; i < need; i++)
            if (q->block_table[i] < 0 || q->block_table[i] >= kv->n_blocks)
                return st_err(ST_EINVAL, "sequence %d: block id %d out of range", s, q->block_table[i]);
        memcpy(h + off, q->block_table, sizeof(int32_t) * (size_t)q->n_blocks);
        for (int r = q->row0; r < q->row0 + q->n_tokens; r++) {
            if (h[b->n_tokens + r] != -1)
                return st_err(ST_EINVAL, "row %d belongs to two sequences", r);
            if (b->pos[r] != q->pos0 + (r - q->row0))
                return st_err(ST_EINVAL, "row %d: position %d, sequence %d expects %d", r, b->pos[r], s,
                              q->pos0 + (r - q->row0));
            h[r] = b->pos[r];
            h[b->n_tokens + r] = (int32_t)off;
        }
        off += (size_t)q->n_blocks;
    }
    for (int i = 0; i < b->n_tokens; i++)
        if (h[b->n_tokens + i] == -1)
            return st_err(ST_EINVAL, "row %d belongs to no sequence", i);
    p->n_tokens = b->n_tokens;
    p->block_size = kv->block_size;
    p->n_kv_heads = kv->n_kv_heads;
    p->head_dim = kv->head_dim;
    p->f16 = kv->dtype == ST_F16;
    p->meta = upload_meta(c, n);
    return p->meta ? ST_OK : ST_ENOMEM;
}

void be_kv_write(st_backend *be, st_kv_cache *kv, int layer, const float *k, const float *v, const st_batch *b)
{
    cuda_backend *c = cu(be);
    st_cu_paged p;
    int rc = k && v ? paged_meta(c, kv, layer, b, &p) : st_err(ST_EINVAL, "NULL k or v");
    if (!rc)
        rc = check(st_cu_kv_write(kv->k[layer], kv->v[layer], k, v, &p, c->stream), "kv_write launch");
    if (rc)
        op_failed("kv_write", rc);
}

void be_attention(st_backend *be, float *out, const float *q, const st_kv_cache *kv, int layer, const st_batch *b,
                  int n_heads, float scale)
{
    cuda_backend *c = cu(be);
    st_cu_paged p;
    int rc = out && q && n_heads > 0 && kv && kv->n_kv_heads > 0 && n_heads % kv->n_kv_heads == 0
                 ? paged_meta(c, kv, layer, b, &p)
                 : st_err(ST_EINVAL, "bad heads or NULL argument");
    if (!rc && b->n_tokens > 65535)
        rc = st_err(ST_EINVAL, "%d rows exceed one launch", b->n_tokens);
    /* split-K when one row's context spans several chunks and the grid is
     * too small to fill the device (a guess of 256 blocks; untuned), or
     * whenever ST_CUDA_SPLITK_CHUNK is set (tests) */
    int64_t ctx = 0;
    for (int i = 0; !rc && i < b->n_seqs; i++)
        ctx = ST_MAX(ctx, (int64_t)b->seqs[i].pos0 + b->seqs[i].n_tokens);
    const int64_t splits = (ctx + c->splitk_chunk - 1) / c->splitk_chunk;
    const bool split = !rc && splits >= 2 && splits <= 65535 &&
                       (c->splitk_forced || (int64_t)b->n_tokens * n_heads < 256);
    if (split) {
        const size_t need = (size_t)b->n_tokens * (size_t)n_heads * (size_t)splits * (size_t)(kv->head_dim + 2);
        if (need > c->partial_cap) {
            cudaFree(c->partial);
            c->partial_cap = 0;
            if (cudaMalloc(reinterpret_cast<void **>(&c->partial), need * sizeof(float)) != cudaSuccess) {
                c->partial = nullptr;
                rc = st_err(ST_ENOMEM, "split-K scratch of %zu floats", need);
            } else {
                c->partial_cap = need;
            }
        }
        if (!rc)
            rc = check(st_cu_attention_splitk(out, c->partial, q, kv->k[layer], kv->v[layer], &p, n_heads, scale,
                                              c->splitk_chunk, (int)splits, c->stream),
                       "split-K attention launch");
    } else if (!rc) {
        rc = check(st_cu_attention(out, q, kv->k[layer], kv->v[layer], &p, n_heads, scale, c->stream),
                   "attention launch");
    }
    if (rc)
        op_failed("attention", rc);
}

/* ---- row ops ------------------------------------------------------------------------- */
void be_embed(st_backend *be, float *out, const st_tensor *t, const int32_t *ids, int n)
{
    cuda_backend *c = cu(be);
    int rc = ST_OK;
    size_t rb = 0;
    if (!out || !t || !ids || n < 0 || !t->data)
        rc = st_err(ST_EINVAL, "NULL argument");
    else if (t->type >= ST_DTYPE_COUNT || t->ne[0] <= 0 || t->ne[0] > (1 << 30) || t->ne[1] <= 0 ||
             !(rb = st_dtype_row_bytes(t->type, t->ne[0])) || t->nbytes / rb < (size_t)t->ne[1])
        rc = st_err(ST_EINVAL, "table %s has a bad shape", t->name ? t->name : "?");
    for (int i = 0; !rc && i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->ne[1])
            rc = st_err(ST_ERANGE, "token id %d outside vocab %lld", ids[i], (long long)t->ne[1]);
    if (rc || n == 0) {
        if (rc)
            op_failed("embed", rc);
        return;
    }
    const void *table = t->device ? t->device : mirror_of(c, t->data, t->nbytes);
    memcpy(staging(c, (size_t)n), ids, sizeof(int32_t) * (size_t)n);
    const int32_t *dids = table ? upload_meta(c, (size_t)n) : nullptr;
    rc = dids ? check(st_cu_embed(out, table, t->type, rb, (int)t->ne[0], dids, n, c->stream), "embed launch")
              : ST_ENOMEM;
    if (rc)
        op_failed("embed", rc);
}

void be_rmsnorm(st_backend *be, float *out, const float *x, const float *w, int n, int dim, float eps)
{
    cuda_backend *c = cu(be);
    if (!out || !x || !w || n < 0 || dim <= 0 || !(eps >= 0.0f)) {
        op_failed("rmsnorm", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    const float *dw = static_cast<const float *>(mirror_of(c, w, sizeof(float) * (size_t)dim));
    /* without a residual the kernel never writes x */
    int rc = dw ? check(st_cu_rmsnorm(out, const_cast<float *>(x), nullptr, dw, n, dim, eps, c->stream),
                        "rmsnorm launch")
                : ST_ENOMEM;
    if (rc)
        op_failed("rmsnorm", rc);
}

void be_rope(st_backend *be, float *x, int n, int n_heads, int head_dim, const int32_t *pos, const st_rope *r)
{
    cuda_backend *c = cu(be);
    if (!x || !pos || !r || !r->inv_freq || n < 0 || n_heads <= 0 || head_dim <= 0 || r->n_rot <= 0 ||
        r->n_rot > head_dim || r->n_rot % 2 || (r->style != ST_ROPE_NORM && r->style != ST_ROPE_NEOX)) {
        op_failed("rope", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    if (n == 0)
        return;
    const float *f = static_cast<const float *>(mirror_of(c, r->inv_freq, sizeof(float) * (size_t)(r->n_rot / 2)));
    memcpy(staging(c, (size_t)n), pos, sizeof(int32_t) * (size_t)n);
    const int32_t *dpos = f ? upload_meta(c, (size_t)n) : nullptr;
    int rc = dpos ? check(st_cu_rope(x, n, n_heads, head_dim, dpos, f, r->n_rot, (int)r->style, c->stream),
                          "rope launch")
                  : ST_ENOMEM;
    if (rc)
        op_failed("rope", rc);
}

void be_swiglu(st_backend *be, float *out, const float *gate, const float *up, int n, int d)
{
    if (!out || !gate || !up || n < 0 || d < 0) {
        op_failed("swiglu", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    int rc = check(st_cu_swiglu(out, gate, up, (size_t)n * (size_t)d, cu(be)->stream), "swiglu launch");
    if (rc)
        op_failed("swiglu", rc);
}

void be_add(st_backend *be, float *y, const float *x, int n, int d)
{
    if (!y || !x || n < 0 || d < 0) {
        op_failed("add", st_err(ST_EINVAL, "bad argument"));
        return;
    }
    int rc = check(st_cu_add(y, x, (size_t)n * (size_t)d, cu(be)->stream), "add launch");
    if (rc)
        op_failed("add", rc);
}

/* Whether matmul of n rows takes the GEMM path (see the top of the file);
 * opens cuBLAS on first need, and stays on matvec if that fails. */
bool use_gemm(cuda_backend *c, st_dtype t, size_t row_bytes, int cols, int n)
{
    if (n < 2)
        return false;
    if (c->gemm_min_rows > 0) {
        if (n < c->gemm_min_rows)
            return false;
    } else {
        const double b = (double)row_bytes / cols;
        if (t != ST_F32 && (double)n * b < b + 8.0)
            return false;
    }
    if (!c->gemm_tried) {
        c->gemm_tried = true;
        const char *why = "?";
        c->gemm = st_cu_gemm_create(c->gemm_chunk_rows, &why);
        if (c->gemm)
            ST_INFO("cuda: cuBLAS loaded for prefill GEMMs");
        else
            ST_WARN("cuda: no cuBLAS (%s); prefill matmuls run the matvec kernel per row", why);
    }
    return c->gemm != nullptr;
}

void be_matmul(st_backend *be, float *y, const float *x, const st_tensor *W, const float *bias, int n)
{
    cuda_backend *c = cu(be);
    size_t rb = 0;
    int rc = ST_OK;
    if (!y || !x || !W || !W->data || n < 0)
        rc = st_err(ST_EINVAL, "NULL argument");
    else if (W->type >= ST_DTYPE_COUNT || W->ne[0] <= 0 || W->ne[0] > (1 << 30) || W->ne[1] <= 0 ||
             W->ne[1] > (1 << 30) || !(rb = st_dtype_row_bytes(W->type, W->ne[0])) ||
             W->nbytes / rb < (size_t)W->ne[1])
        rc = st_err(ST_EINVAL, "weight %s has a bad shape", W->name ? W->name : "?");
    else if (n > 65535)
        rc = st_err(ST_EINVAL, "%d rows exceed one launch", n);
    if (rc || n == 0) {
        if (rc)
            op_failed("matmul", rc);
        return;
    }
    const int rows = (int)W->ne[1], cols = (int)W->ne[0];
    const void *w = W->device ? W->device : mirror_of(c, W->data, W->nbytes);
    const float *db = bias ? static_cast<const float *>(mirror_of(c, bias, sizeof(float) * (size_t)rows)) : nullptr;
    if (!w || (bias && !db)) {
        op_failed("matmul", ST_ENOMEM);
        return;
    }
    if (use_gemm(c, W->type, rb, cols, n))
        rc = check(st_cu_gemm_run(c->gemm, y, x, w, W->type, rb, rows, cols, db, n, c->stream), "gemm");
    else
        rc = check(st_cu_matvec(y, x, w, W->type, rb, rows, cols, db, n, c->stream), "matvec launch");
    if (rc)
        op_failed("matmul", rc);
}

/* the device's free memory: the KV cache is allocated there */
int be_mem_available(st_backend *be, uint64_t *bytes)
{
    (void)be;
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        *bytes = 0;
        return st_err(ST_EIO, "cuda: cudaMemGetInfo: %s", cudaGetErrorString(e));
    }
    *bytes = free_b;
    return ST_OK;
}

const st_backend_ops cuda_ops = {
    "cuda",     be_destroy, be_alloc,   be_free,     be_to_device, be_to_host,  be_sync,    be_kv_alloc,
    be_kv_free, be_embed,   be_rmsnorm, be_matmul,   be_rope,      be_kv_write, be_attention, be_swiglu,
    be_add,     be_mem_available,
};

} // namespace

extern "C" int st_cuda_sample(st_backend *be, int32_t *ids, const float *logits, int n_rows, int vocab,
                              const st_cuda_sample_params *p)
{
    if (!be || be->ops != &cuda_ops || !ids || !logits || !p || n_rows < 0 || vocab <= 0)
        return st_err(ST_EINVAL, "cuda sample: bad argument (backend, pointers, %d rows, vocab %d)", n_rows, vocab);
    for (int r = 0; r < n_rows; r++)
        if (!(p[r].temperature <= 100.0f) || !(p[r].top_p > 0.0f) || !(p[r].u >= 0.0f && p[r].u < 1.0f))
            return st_err(ST_EINVAL, "cuda sample: row %d: temperature, top_p or u out of range", r);
    if (n_rows == 0)
        return ST_OK;
    cuda_backend *c = cu(be);
    static_assert(sizeof(st_cu_sample_row) == sizeof(st_cuda_sample_params), "same layout");
    static_assert(sizeof(st_cu_sample_row) % sizeof(int32_t) == 0, "rows are whole int32s");
    /* the metadata scratch carries the parameters, then the ids come back through it */
    const size_t words = (size_t)n_rows * (sizeof(st_cu_sample_row) / sizeof(int32_t));
    memcpy(staging(c, words + (size_t)n_rows), p, sizeof(st_cu_sample_row) * (size_t)n_rows);
    int32_t *d = upload_meta(c, words + (size_t)n_rows);
    if (!d)
        return ST_ENOMEM;
    int rc = check(st_cu_sample(d + words, logits, n_rows, vocab, reinterpret_cast<const st_cu_sample_row *>(d),
                                c->stream),
                   "sample launch");
    if (!rc)
        rc = check(cudaMemcpyAsync(ids, d + words, sizeof(int32_t) * (size_t)n_rows, cudaMemcpyDeviceToHost,
                                   c->stream),
                   "sample ids download");
    if (!rc)
        rc = check(cudaStreamSynchronize(c->stream), "sample sync");
    return rc;
}

extern "C" int st_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        return 0;
    }
    return n;
}

extern "C" st_backend *st_backend_cuda_create(int device)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        cudaGetLastError();
        st_err(ST_ENOTSUP, "cuda: no usable CUDA device (%s); use --device cpu",
               e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
        return nullptr;
    }
    if (device < 0 || device >= n) {
        st_err(ST_ENOTSUP, "cuda: device %d does not exist (%d device%s found)", device, n, n == 1 ? "" : "s");
        return nullptr;
    }
    cudaStream_t s = nullptr;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaStreamCreate(&s)) != cudaSuccess) {
        cudaGetLastError();
        st_err(ST_ENOTSUP, "cuda: cannot use device %d: %s", device, cudaGetErrorString(e));
        return nullptr;
    }
    cuda_backend *c = static_cast<cuda_backend *>(st_xcalloc(1, sizeof(cuda_backend)));
    c->base.ops = &cuda_ops;
    c->base.n_threads = 1;
    c->device = device;
    c->stream = s;
    const char *mr = getenv("ST_CUDA_GEMM_MIN_ROWS");
    c->gemm_min_rows = mr ? atoi(mr) : 0;
    const char *cr = getenv("ST_CUDA_GEMM_CHUNK_ROWS");
    c->gemm_chunk_rows = cr ? atoi(cr) : 0;
    const char *sk = getenv("ST_CUDA_SPLITK_CHUNK");
    c->splitk_forced = sk && atoi(sk) > 0;
    c->splitk_chunk = c->splitk_forced ? atoi(sk) : 256;
    ST_INFO("cuda: backend on device %d%s", device, ST_EMULATED ? " (SIMT emulator)" : "");
    return &c->base;
}
