/* The CUDA backend's ops, run on the CPU through the SIMT emulator, against
 * the CPU backend (and, for matmul, an exact double-precision reference),
 * on odd shapes, under every schedule of the emulator.
 *
 * Tolerances (absolute, values are O(1)):
 *   embed                 exact (both dequantize d*q in f32)
 *   rmsnorm, swiglu, add  1e-5 x max(1, |ref|)  (summation order differs)
 *   rope                  2e-5                  (sincosf vs sinf/cosf)
 *   matmul vs exact       1e-4 x (sum |w x| + 1)
 *   matmul vs cpu         2e-2 x (sum |w x| + 1) for Q-types (the CPU backend
 *                         quantizes activations to 8 bits), 1e-4 otherwise
 *   GEMM path (cuBLAS, through the shim: TF32 inputs, f32 accumulation)
 *                         vs exact 1.1e-3 x (sum |w x| + 1): rounding both
 *                         operands to 10 mantissa bits moves each product
 *                         by at most 2 x 2^-11 of its size; vs cpu 2e-2
 *   attention             1e-4                  (same f16 cache contents)
 */
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"

#include "common/st_common.h"

#include <stdlib.h>
#include <string>
#include <vector>

#include "tests/test.h"

static uint32_t rng = 1;
static float frand(float lo, float hi)
{
    rng = rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(rng >> 8) / (float)(1u << 24);
}
static uint8_t brand()
{
    rng = rng * 1664525u + 1013904223u;
    return (uint8_t)(rng >> 24);
}
static std::vector<float> rvec(size_t n, float lo = -1.0f, float hi = 1.0f)
{
    std::vector<float> v(n);
    for (auto &x : v)
        x = frand(lo, hi);
    return v;
}

/* ---- moving data through a backend -------------------------------------------------- */
static float *put(st_backend *be, const std::vector<float> &h)
{
    float *d = static_cast<float *>(be->ops->alloc(be, h.size() * sizeof(float)));
    be->ops->to_device(be, d, h.data(), h.size() * sizeof(float));
    return d;
}
static std::vector<float> get(st_backend *be, const float *d, size_t n)
{
    std::vector<float> h(n);
    be->ops->sync(be);
    be->ops->to_host(be, h.data(), d, n * sizeof(float));
    return h;
}

/* Max |a - b| / max(1, |b|) style comparison with a label. */
static void compare(const char *what, const std::vector<float> &got, const std::vector<float> &want, double tol,
                    bool relative)
{
    CHECKF(got.size() == want.size(), "%s: size %zu vs %zu", what, got.size(), want.size());
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size() && i < want.size(); i++) {
        double scale = relative ? fmax(1.0, fabs((double)want[i])) : 1.0;
        double e = fabs((double)got[i] - (double)want[i]) / scale;
        if (!(e <= worst)) { /* NaN counts as worst */
            worst = e;
            at = i;
        }
    }
    CHECKF(worst <= tol, "%s (%s): worst error %g at %zu (%g vs %g), tolerance %g", what,
           simt::schedule_name(simt::get_schedule()), worst, at, (double)got[at], (double)want[at], tol);
}

/* ---- weights of every stored type -------------------------------------------------- */
struct weight {
    st_tensor t;
    std::vector<uint8_t> bytes;
};

static weight make_weight(st_dtype type, int rows, int cols)
{
    weight w;
    memset(&w.t, 0, sizeof w.t);
    const size_t rb = st_dtype_row_bytes(type, cols);
    w.bytes.resize(rb * (size_t)rows);
    for (int r = 0; r < rows; r++) {
        uint8_t *row = w.bytes.data() + rb * (size_t)r;
        for (int e = 0; e < cols; e++) {
            float v = frand(-1.0f, 1.0f);
            if (type == ST_F32)
                memcpy(row + 4 * e, &v, 4);
            else if (type == ST_F16 || type == ST_BF16) {
                uint16_t h = type == ST_F16 ? st_f32_to_f16(v) : st_f32_to_bf16(v);
                memcpy(row + 2 * e, &h, 2);
            }
        }
        if (type == ST_Q8_0 || type == ST_Q4_0 || type == ST_Q4_1) {
            const size_t bb = st_dtype_block_bytes(type);
            for (int b = 0; b < cols / 32; b++) {
                uint8_t *blk = row + bb * (size_t)b;
                for (size_t i = 0; i < bb; i++)
                    blk[i] = brand();
                uint16_t d = st_f32_to_f16(frand(0.005f, 0.05f));
                memcpy(blk, &d, 2);
                if (type == ST_Q4_1) {
                    uint16_t m = st_f32_to_f16(frand(-0.3f, 0.3f));
                    memcpy(blk + 2, &m, 2);
                }
            }
        }
    }
    w.t.name = "test";
    w.t.type = type;
    w.t.n_dims = 2;
    w.t.ne[0] = cols;
    w.t.ne[1] = rows;
    w.t.ne[2] = w.t.ne[3] = 1;
    w.t.data = w.bytes.data();
    w.t.nbytes = w.bytes.size();
    return w;
}

/* The CUDA backend mirrors host weights and biases keyed by address and
 * size, and they must not change after first use (cuda.h): keep every one
 * alive to the end, so that no later array reuses an address. */
static std::vector<weight *> kept_weights;
static std::vector<std::vector<float> *> kept_vectors;
static const weight &keep(weight w)
{
    kept_weights.push_back(new weight(std::move(w)));
    kept_weights.back()->t.data = kept_weights.back()->bytes.data();
    return *kept_weights.back();
}
static const std::vector<float> &keep(std::vector<float> v)
{
    kept_vectors.push_back(new std::vector<float>(std::move(v)));
    return *kept_vectors.back();
}

static const st_dtype all_types[] = {ST_F32, ST_F16, ST_BF16, ST_Q8_0, ST_Q4_0, ST_Q4_1};
static bool is_q(st_dtype t) { return t == ST_Q8_0 || t == ST_Q4_0 || t == ST_Q4_1; }

/* ---- the tests ------------------------------------------------------------------------ */
static void test_embed(st_backend *cpu, st_backend *gpu)
{
    for (st_dtype t : all_types) {
        const int vocab = 37, dim = is_q(t) ? 96 : 75;
        const weight &w = keep(make_weight(t, vocab, dim));
        const int32_t ids[] = {0, 36, 5, 5, 17, 2};
        const int n = 6;
        std::vector<float> zero((size_t)n * dim, 0.0f);
        float *oc = put(cpu, zero), *og = put(gpu, zero);
        cpu->ops->embed(cpu, oc, &w.t, ids, n);
        gpu->ops->embed(gpu, og, &w.t, ids, n);
        std::string label = std::string("embed ") + st_dtype_name(t);
        compare(label.c_str(), get(gpu, og, zero.size()), get(cpu, oc, zero.size()), 0.0, false);
        cpu->ops->free(cpu, oc);
        gpu->ops->free(gpu, og);
    }
}

static void test_rows(st_backend *cpu, st_backend *gpu)
{
    for (int dim : {77, 1029}) {
        const int n = 5;
        std::vector<float> x = rvec((size_t)n * dim, -2.0f, 2.0f);
        const std::vector<float> &w = keep(rvec((size_t)dim));
        float *xc = put(cpu, x), *xg = put(gpu, x);
        float *oc = put(cpu, x), *og = put(gpu, x);
        cpu->ops->rmsnorm(cpu, oc, xc, w.data(), n, dim, 1e-6f);
        gpu->ops->rmsnorm(gpu, og, xg, w.data(), n, dim, 1e-6f);
        compare("rmsnorm", get(gpu, og, x.size()), get(cpu, oc, x.size()), 1e-5, true);
        /* in place */
        gpu->ops->rmsnorm(gpu, xg, xg, w.data(), n, dim, 1e-6f);
        compare("rmsnorm in place", get(gpu, xg, x.size()), get(cpu, oc, x.size()), 1e-5, true);

        /* fused residual add: x + r, then norm; x keeps the sum */
        std::vector<float> r = rvec(x.size());
        float *rg = put(gpu, r);
        gpu->ops->to_device(gpu, xg, x.data(), x.size() * sizeof(float));
        float *wg = put(gpu, w);
        CHECK(st_cu_rmsnorm(og, xg, rg, wg, n, dim, 1e-6f, nullptr) == cudaSuccess);
        float *rc = put(cpu, r);
        cpu->ops->add(cpu, xc, rc, n, dim);
        cpu->ops->rmsnorm(cpu, oc, xc, w.data(), n, dim, 1e-6f);
        compare("rmsnorm+residual out", get(gpu, og, x.size()), get(cpu, oc, x.size()), 1e-5, true);
        compare("rmsnorm+residual sum", get(gpu, xg, x.size()), get(cpu, xc, x.size()), 1e-6, true);

        /* swiglu and add */
        std::vector<float> u = rvec(x.size(), -3.0f, 3.0f);
        float *uc = put(cpu, u), *ug = put(gpu, u);
        cpu->ops->swiglu(cpu, oc, xc, uc, n, dim);
        gpu->ops->swiglu(gpu, og, xg, ug, n, dim);
        compare("swiglu", get(gpu, og, x.size()), get(cpu, oc, x.size()), 1e-5, true);
        cpu->ops->add(cpu, oc, uc, n, dim);
        gpu->ops->add(gpu, og, ug, n, dim);
        compare("add", get(gpu, og, x.size()), get(cpu, oc, x.size()), 1e-5, true);
        for (float *p : {xc, oc, rc, uc})
            cpu->ops->free(cpu, p);
        for (float *p : {xg, og, rg, wg, ug})
            gpu->ops->free(gpu, p);
    }
}

static void test_rope(st_backend *cpu, st_backend *gpu)
{
    const int n = 4, n_heads = 3, head_dim = 40;
    const int32_t pos[] = {0, 7, 1234, 31};
    for (int n_rot : {32, 40, 2})
        for (st_rope_style style : {ST_ROPE_NORM, ST_ROPE_NEOX}) {
            std::vector<float> inv((size_t)n_rot / 2);
            for (int i = 0; i < n_rot / 2; i++)
                inv[(size_t)i] = powf(10000.0f, -2.0f * i / n_rot);
            const std::vector<float> &kinv = keep(inv);
            st_rope r = {style, n_rot, kinv.data()};
            std::vector<float> x = rvec((size_t)n * n_heads * head_dim);
            float *xc = put(cpu, x), *xg = put(gpu, x);
            cpu->ops->rope(cpu, xc, n, n_heads, head_dim, pos, &r);
            gpu->ops->rope(gpu, xg, n, n_heads, head_dim, pos, &r);
            std::string label = "rope " + std::to_string(n_rot) + (style == ST_ROPE_NEOX ? " neox" : " norm");
            compare(label.c_str(), get(gpu, xg, x.size()), get(cpu, xc, x.size()), 2e-5, false);
            cpu->ops->free(cpu, xc);
            gpu->ops->free(gpu, xg);
        }
}

/* gemm: gpu takes the cuBLAS path for n > 1 (ST_CUDA_GEMM_MIN_ROWS=2). */
static void test_matmul(st_backend *cpu, st_backend *gpu, bool gemm)
{
    for (st_dtype t : all_types)
        for (int cols : {96, 320, 75}) {
            if (is_q(t) && cols % 32)
                continue;
            const int rows = 37;
            const weight &w = keep(make_weight(t, rows, cols));
            const std::vector<float> &bias = keep(rvec((size_t)rows));
            std::vector<float> deq((size_t)rows * cols);
            st_dequant_row(t, w.bytes.data(), deq.data(), (int64_t)rows * cols);
            for (int n : {1, 3, 17})
                for (bool with_bias : {false, true}) {
                    std::vector<float> x = rvec((size_t)n * cols);
                    std::vector<float> exact((size_t)n * rows), mag((size_t)n * rows);
                    for (int i = 0; i < n; i++)
                        for (int r = 0; r < rows; r++) {
                            double s = with_bias ? bias[(size_t)r] : 0.0, a = 0;
                            for (int c = 0; c < cols; c++) {
                                double p = (double)deq[(size_t)r * cols + c] * x[(size_t)i * cols + c];
                                s += p;
                                a += fabs(p);
                            }
                            exact[(size_t)i * rows + r] = (float)s;
                            mag[(size_t)i * rows + r] = (float)a + 1.0f;
                        }
                    float *xc = put(cpu, x), *xg = put(gpu, x);
                    std::vector<float> zero(exact.size(), 0.0f);
                    float *yc = put(cpu, zero), *yg = put(gpu, zero);
                    const float *b = with_bias ? bias.data() : nullptr;
                    cpu->ops->matmul(cpu, yc, xc, &w.t, b, n);
                    gpu->ops->matmul(gpu, yg, xg, &w.t, b, n);
                    std::vector<float> g = get(gpu, yg, exact.size()), c = get(cpu, yc, exact.size());
                    for (size_t i = 0; i < g.size(); i++) { /* scale errors by the dot's magnitude */
                        g[i] /= mag[i];
                        c[i] /= mag[i];
                        exact[i] /= mag[i];
                    }
                    const bool tf32 = gemm && n > 1;
                    std::string label = std::string(tf32 ? "gemm " : "matmul ") + st_dtype_name(t) + " cols " +
                                        std::to_string(cols) +
                                        " n " + std::to_string(n) + (with_bias ? " bias" : "");
                    compare((label + " vs exact").c_str(), g, exact, tf32 ? 1.1e-3 : 1e-4, false);
                    compare((label + " vs cpu").c_str(), g, c, is_q(t) || tf32 ? 2e-2 : 1e-4, false);
                    cpu->ops->free(cpu, xc);
                    cpu->ops->free(cpu, yc);
                    gpu->ops->free(gpu, xg);
                    gpu->ops->free(gpu, yg);
                }
        }
}

/* Two steps over a paged cache: first the history of two sequences, then a
 * mixed batch (a prefill chunk with an out-of-order block table, a decode
 * that exactly fills its last block, a chunk continuing a prefill). */
static void test_attention(st_backend *cpu, st_backend *gpu)
{
    struct geo {
        int n_heads, n_kv_heads, head_dim;
    };
    for (geo g : {geo{8, 2, 40}, geo{8, 1, 64}, geo{4, 4, 96}})
        for (st_dtype kvt : {ST_F16, ST_F32}) {
            const int bs = 16;
            st_kv_cache kc, kg;
            memset(&kc, 0, sizeof kc);
            kc.n_layers = 2;
            kc.n_blocks = 9;
            kc.block_size = bs;
            kc.n_kv_heads = g.n_kv_heads;
            kc.head_dim = g.head_dim;
            kc.dtype = kvt;
            kg = kc;
            CHECK(cpu->ops->kv_alloc(cpu, &kc) == ST_OK);
            CHECK(gpu->ops->kv_alloc(gpu, &kg) == ST_OK);
            const int layer = 1, qd = g.n_heads * g.head_dim, kvd = g.n_kv_heads * g.head_dim;
            const int32_t bt_a[] = {5, 2}, bt_b[] = {7, 0}, bt_c[] = {3, 6};
            for (int step = 0; step < 2; step++) {
                std::vector<st_batch_seq> seqs;
                if (step == 0) { /* history: b positions 0..30, c positions 0..15 */
                    seqs.push_back({1, 0, 31, 0, 2, bt_b, 0});
                    seqs.push_back({2, 31, 16, 0, 1, bt_c, 0});
                } else {
                    seqs.push_back({0, 0, 21, 0, 2, bt_a, 1});
                    seqs.push_back({1, 21, 1, 31, 2, bt_b, 1});
                    seqs.push_back({2, 22, 5, 16, 2, bt_c, 1});
                }
                int nt = 0;
                std::vector<int32_t> pos;
                for (auto &s : seqs) {
                    for (int i = 0; i < s.n_tokens; i++)
                        pos.push_back(s.pos0 + i);
                    nt += s.n_tokens;
                }
                st_batch b = {nt, nullptr, pos.data(), (int32_t)seqs.size(), seqs.data()};
                std::vector<float> q = rvec((size_t)nt * qd), k = rvec((size_t)nt * kvd), v = rvec((size_t)nt * kvd);
                float *qc = put(cpu, q), *kc_ = put(cpu, k), *vc = put(cpu, v), *oc = put(cpu, q);
                float *qg = put(gpu, q), *kg_ = put(gpu, k), *vg = put(gpu, v), *og = put(gpu, q);
                cpu->ops->kv_write(cpu, &kc, layer, kc_, vc, &b);
                gpu->ops->kv_write(gpu, &kg, layer, kg_, vg, &b);
                const float scale = 1.0f / sqrtf((float)g.head_dim);
                cpu->ops->attention(cpu, oc, qc, &kc, layer, &b, g.n_heads, scale);
                gpu->ops->attention(gpu, og, qg, &kg, layer, &b, g.n_heads, scale);
                std::string label = "attention heads " + std::to_string(g.n_heads) + "/" +
                                    std::to_string(g.n_kv_heads) + " dim " + std::to_string(g.head_dim) + " " +
                                    st_dtype_name(kvt) + " step " + std::to_string(step);
                compare(label.c_str(), get(gpu, og, q.size()), get(cpu, oc, q.size()), 1e-4, false);
                for (float *p : {qc, kc_, vc, oc})
                    cpu->ops->free(cpu, p);
                for (float *p : {qg, kg_, vg, og})
                    gpu->ops->free(gpu, p);
            }
            cpu->ops->kv_free(cpu, &kc);
            gpu->ops->kv_free(gpu, &kg);
        }
}

/* Bad input is an error message, not a crash or a launch. */
static void test_bad_input(st_backend *gpu)
{
    const weight &w = keep(make_weight(ST_Q8_0, 4, 64));
    std::vector<float> sentinel(64, 7.0f);
    float *o = put(gpu, sentinel);
    const int32_t bad[] = {1, 4};
    gpu->ops->embed(gpu, o, &w.t, bad, 2);
    CHECK(strstr(st_errmsg(), "token id 4") != nullptr);
    CHECK(get(gpu, o, 64)[0] == 7.0f);
    st_tensor odd = w.t;
    odd.ne[0] = 65; /* not whole blocks */
    gpu->ops->matmul(gpu, o, o, &odd, nullptr, 1);
    CHECK(strstr(st_errmsg(), "bad shape") != nullptr);
    gpu->ops->free(gpu, o);
}

static void test_no_device()
{
    setenv("ST_SIMT_DEVICES", "0", 1);
    CHECK(st_cuda_device_count() == 0);
    st_backend *be = st_backend_cuda_create(0);
    CHECK(be == nullptr);
    CHECKF(strstr(st_errmsg(), "no usable CUDA device") != nullptr, "message: %s", st_errmsg());
    unsetenv("ST_SIMT_DEVICES");
    be = st_backend_cuda_create(3);
    CHECK(be == nullptr);
    CHECKF(strstr(st_errmsg(), "device 3 does not exist") != nullptr, "message: %s", st_errmsg());
}

/* The KV cache is sized from the memory it will live in: the device's
 * free memory (the emulator's is the host's MemAvailable), not the
 * CPU backend's host default (no mem_available op). */
static void test_mem_available(st_backend *cpu, st_backend *gpu)
{
    CHECK(cpu->ops->mem_available == nullptr);
    CHECK(gpu->ops->mem_available != nullptr);
    if (!gpu->ops->mem_available)
        return;
    uint64_t free_b = 0;
    CHECK(gpu->ops->mem_available(gpu, &free_b) == ST_OK);
    CHECKF(free_b > (64ull << 20), "device free memory %llu bytes", (unsigned long long)free_b);
    size_t f = 0, t = 0;
    CHECK(cudaMemGetInfo(&f, &t) == cudaSuccess && f <= t && t > 0);
}

int main()
{
    st_log_set_level(ST_LOG_WARN);
    test_no_device();
    st_backend *cpu = st_backend_cpu_create(1);
    setenv("ST_CUDA_GEMM_MIN_ROWS", "1000000", 1); /* gpu: the matvec kernel for every n */
    st_backend *gpu = st_backend_cuda_create(0);
    setenv("ST_CUDA_GEMM_MIN_ROWS", "2", 1); /* gemm: cuBLAS for n > 1 */
    setenv("ST_CUDA_GEMM_CHUNK_ROWS", "8", 1); /* 37 rows: 4 chunks of 8 and one of 5 */
    st_backend *gemm = st_backend_cuda_create(0);
    unsetenv("ST_CUDA_GEMM_MIN_ROWS");
    unsetenv("ST_CUDA_GEMM_CHUNK_ROWS");
    setenv("ST_CUDA_SPLITK_CHUNK", "5", 1); /* splitk: split-K attention, 5 positions per chunk */
    st_backend *splitk = st_backend_cuda_create(0);
    unsetenv("ST_CUDA_SPLITK_CHUNK");
    CHECK(cpu && gpu && gemm && splitk);
    if (!cpu || !gpu || !gemm || !splitk)
        return test_done();
    const simt::schedule schedules[] = {simt::SCHED_INORDER, simt::SCHED_LOWEST, simt::SCHED_HIGHEST,
                                        simt::SCHED_RANDOM};
    for (simt::schedule s : schedules) {
        simt::set_schedule(s, 42);
        rng = 1; /* same data under every schedule */
        test_embed(cpu, gpu);
        test_rows(cpu, gpu);
        test_rope(cpu, gpu);
        test_matmul(cpu, gpu, false);
        test_matmul(cpu, gemm, true);
        test_attention(cpu, gpu);
        test_attention(cpu, splitk); /* contexts of 16..36 positions in chunks of 5 */
    }
    test_bad_input(gpu);
    test_mem_available(cpu, gpu);
    CHECKF(simt::error_count() == 0, "emulation errors: %s", simt::last_error());
    for (weight *w : kept_weights)
        delete w;
    for (std::vector<float> *v : kept_vectors)
        delete v;
    st_backend_destroy(splitk);
    st_backend_destroy(gemm);
    st_backend_destroy(gpu);
    st_backend_destroy(cpu);
    return test_done();
}
