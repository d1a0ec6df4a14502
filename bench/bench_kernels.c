/* Kernel benchmark of the CPU backend (`strait bench kernels`).
 *
 * Measures, for the default model's shapes (SmolLM2-135M: dim 576, ffn
 * 1536, 9 heads / 3 kv heads of 64, vocab 49152):
 *  - streaming read bandwidth (the physical limit of batch-1 decode);
 *  - matmul per weight type at n = 1 (GB/s of weights read) and n = 512
 *    (GFLOP/s), on one hot tensor;
 *  - a decode estimate: all 30 layers' Q4_1 matmuls on distinct weights
 *    (so they stream from DRAM as in the real model) + the Q8_0 output
 *    matrix, and a 512-token prompt estimate from the n = 512 timings;
 *  - paged attention for one decode row at context 1k and 4k.
 * Prints a table and one JSON line (prefix "JSON ").
 *
 * Usage: bench kernels [--threads N] [--quick] */
#include "common/st_common.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int st_bench_kernels_main(int argc, char **argv);

/* ---- helpers -------------------------------------------------------------------------- */
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Weight of type t, (O, K), random but valid (scales of realistic size). */
static st_tensor make_weight(st_dtype t, int K, int O)
{
    st_tensor w = {.name = "bench", .type = t, .n_dims = 2, .ne = {K, O, 1, 1}};
    w.nbytes = st_dtype_row_bytes(t, K) * (size_t)O;
    uint8_t *d = st_xaligned(w.nbytes);
    for (size_t i = 0; i < w.nbytes; i++)
        d[i] = (uint8_t)rnd();
    const size_t bb = st_dtype_block_bytes(t), nb = w.nbytes / bb;
    if (t == ST_F16 || t == ST_BF16 || t == ST_F32) {
        for (size_t i = 0; i < nb; i++) {
            const float v = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
            if (t == ST_F32)
                memcpy(d + 4 * i, &v, 4);
            else {
                uint16_t h = t == ST_F16 ? st_f32_to_f16(v) : st_f32_to_bf16(v);
                memcpy(d + 2 * i, &h, 2);
            }
        }
    } else {
        const uint16_t scale = st_f32_to_f16(0.01f);
        for (size_t i = 0; i < nb; i++) {
            memcpy(d + i * bb, &scale, 2); /* d (and Q4_1's m) finite */
            if (t == ST_Q4_1)
                memcpy(d + i * bb + 2, &scale, 2);
        }
    }
    w.data = d;
    return w;
}

static float *make_act(size_t n)
{
    float *x = st_xaligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    return x;
}

/* Median-free "best of" timing: the minimum over reps after one warm-up. */
static double time_matmul(st_backend *be, float *y, const float *x, const st_tensor *W, int n, int reps)
{
    be->ops->matmul(be, y, x, W, NULL, n);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        const uint64_t t0 = st_now_ns();
        be->ops->matmul(be, y, x, W, NULL, n);
        const double s = (double)(st_now_ns() - t0) * 1e-9;
        best = s < best ? s : best;
    }
    return best;
}

/* ---- the benchmark ----------------------------------------------------------------------- */
enum { DIM = 576, FFN = 1536, NH = 9, NKV = 3, HD = 64, VOCAB = 49152, LAYERS = 30 };

typedef struct {
    const char *name;
    int K, O;
} shape;

static const shape layer_shapes[] = {
    {"attn_q", DIM, NH * HD}, {"attn_k", DIM, NKV * HD}, {"attn_v", DIM, NKV * HD}, {"attn_o", NH * HD, DIM},
    {"ffn_gate", DIM, FFN},   {"ffn_up", DIM, FFN},      {"ffn_down", FFN, DIM},
};

int st_bench_kernels_main(int argc, char **argv)
{
    int n_threads = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: bench kernels [--threads N] [--quick]\n");
            return 2;
        }
    }
    st_backend *be = st_backend_cpu_create(n_threads);
    if (!be) {
        fprintf(stderr, "bench kernels: %s\n", st_errmsg());
        return 1;
    }
    const int nt = be->n_threads, reps = quick ? 5 : 20;
    const size_t bw_bytes = quick ? (64u << 20) : (256u << 20);
    const double bw1 = st_cpu_read_bandwidth_gbs(1, bw_bytes), bwn = st_cpu_read_bandwidth_gbs(nt, bw_bytes);
    printf("cpu kernels: isa %s, %d threads\n", st_cpu_isa(), nt);
    printf("read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (%d threads)\n\n", bw1, bwn, nt);

    char json[16384];
    int jn = snprintf(json, sizeof json, "{\"bench\":\"kernels\",\"isa\":\"%s\",\"threads\":%d,\"read_bw_1t_gbs\":%.2f,"
                      "\"read_bw_gbs\":%.2f,\"matmul\":[", st_cpu_isa(), nt, bw1, bwn);

    /* per-type matmul on a hot tensor: ffn_gate shape 576 -> 1536 */
    const int NP = quick ? 128 : 512;
    float *x = make_act((size_t)NP * FFN), *y = st_xaligned(sizeof(float) * (size_t)NP * VOCAB);
    static const st_dtype types[] = {ST_Q4_1, ST_Q4_0, ST_Q8_0, ST_F16, ST_BF16, ST_F32};
    printf("%-6s %-11s %10s %9s %10s %10s\n", "type", "K x O", "n=1 us", "GB/s", "n=" "512 ms", "GFLOP/s");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (int sh = 0; sh < 2; sh++) {
            const int K = sh ? FFN : DIM, O = sh ? DIM : FFN;
            st_tensor W = make_weight(types[ti], K, O);
            const double t1 = time_matmul(be, y, x, &W, 1, reps * 10);
            const double tn = time_matmul(be, y, x, &W, NP, quick ? 2 : 5);
            const double gbs = (double)W.nbytes / t1 * 1e-9, gfl = 2.0 * NP * K * O / tn * 1e-9;
            printf("%-6s %4dx%-6d %10.1f %9.1f %10.2f %10.1f\n", st_dtype_name(types[ti]), K, O, t1 * 1e6, gbs,
                   tn * 1e3, gfl);
            jn += snprintf(json + jn, sizeof json - jn,
                           "%s{\"type\":\"%s\",\"K\":%d,\"O\":%d,\"n1_us\":%.2f,\"n1_gbs\":%.2f,\"n\":%d,"
                           "\"n_ms\":%.3f,\"gflops\":%.2f}",
                           ti || sh ? "," : "", st_dtype_name(types[ti]), K, O, t1 * 1e6, gbs, NP, tn * 1e3, gfl);
            free((void *)W.data);
        }
    }
    jn += snprintf(json + jn, sizeof json - jn, "]");

    /* decode / prompt estimate for the default model: 30 layers of
     * distinct Q4_1 weights (streamed like the real model) + Q8_0 output */
    const int nsh = (int)(sizeof layer_shapes / sizeof layer_shapes[0]);
    st_tensor *Ws = st_xmalloc(sizeof(st_tensor) * LAYERS * nsh);
    size_t model_bytes = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int s = 0; s < nsh; s++) {
            Ws[l * nsh + s] = make_weight(ST_Q4_1, layer_shapes[s].K, layer_shapes[s].O);
            model_bytes += Ws[l * nsh + s].nbytes;
        }
    st_tensor out = make_weight(ST_Q8_0, DIM, VOCAB);
    model_bytes += out.nbytes;
    double best_tok = 1e30;
    for (int rep = 0; rep < (quick ? 3 : 10); rep++) {
        const uint64_t t0 = st_now_ns();
        for (int l = 0; l < LAYERS; l++)
            for (int s = 0; s < nsh; s++)
                be->ops->matmul(be, y, x, &Ws[l * nsh + s], NULL, 1);
        be->ops->matmul(be, y, x, &out, NULL, 1);
        const double t = (double)(st_now_ns() - t0) * 1e-9;
        best_tok = t < best_tok ? t : best_tok;
    }
    const double t_out = time_matmul(be, y, x, &out, 1, quick ? 3 : 10);
    double t_layer_prompt = 0;
    for (int s = 0; s < nsh; s++)
        t_layer_prompt += time_matmul(be, y, x, &Ws[s], NP, quick ? 1 : 3);
    const double prompt_s = t_layer_prompt * LAYERS + t_out; /* logits for the last row only */
    double flops = 0;
    for (int s = 0; s < nsh; s++)
        flops += 2.0 * layer_shapes[s].K * layer_shapes[s].O;
    printf("\nmodel matmuls (SmolLM2-135M Q4_1, %.1f MB of weights incl. Q8_0 output %.1f MB):\n",
           model_bytes / 1e6, out.nbytes / 1e6);
    printf("  decode: %.2f ms/token -> %.0f tok/s (matmuls only), %.1f GB/s; output matrix alone %.2f ms\n",
           best_tok * 1e3, 1.0 / best_tok, model_bytes / best_tok * 1e-9, t_out * 1e3);
    printf("  prompt n=%d: %.0f tok/s (matmuls only), %.1f GFLOP/s in the layers\n", NP, NP / prompt_s,
           flops * LAYERS * NP / (t_layer_prompt * LAYERS) * 1e-9);
    jn += snprintf(json + jn, sizeof json - jn,
                   ",\"model_bytes\":%zu,\"decode_ms\":%.3f,\"decode_est_tok_s\":%.1f,\"decode_gbs\":%.2f,"
                   "\"prompt_n\":%d,\"prompt_est_tok_s\":%.1f,\"prompt_gflops\":%.2f",
                   model_bytes, best_tok * 1e3, 1.0 / best_tok, model_bytes / best_tok * 1e-9, NP, NP / prompt_s,
                   flops * LAYERS * NP / (t_layer_prompt * LAYERS) * 1e-9);
    for (int i = 0; i < LAYERS * nsh; i++)
        free((void *)Ws[i].data);
    free(Ws);
    free((void *)out.data);

    /* attention: one decode row at context 1k and 4k, f16 cache, 16-slot blocks */
    printf("\nattention (1 decode row, %d heads / %d kv heads x %d, f16 KV):\n", NH, NKV, HD);
    jn += snprintf(json + jn, sizeof json - jn, ",\"attention\":[");
    static const int ctxs[] = {1024, 4096};
    for (int ci = 0; ci < 2; ci++) {
        const int ctx = ctxs[ci], bs = 16, nblk = ctx / bs;
        st_kv_cache kv = {.n_layers = 1, .n_blocks = nblk, .block_size = bs, .n_kv_heads = NKV, .head_dim = HD,
                          .dtype = ST_F16};
        if (be->ops->kv_alloc(be, &kv) != ST_OK) {
            fprintf(stderr, "bench kernels: kv_alloc: %s\n", st_errmsg());
            break;
        }
        memset(kv.k[0], 0x30, kv.block_bytes * nblk); /* finite f16 values */
        memset(kv.v[0], 0x30, kv.block_bytes * nblk);
        int32_t *table = st_xmalloc(sizeof(int32_t) * nblk), pos = ctx - 1;
        for (int i = 0; i < nblk; i++) /* a shuffled permutation: scattered blocks */
            table[i] = i;
        for (int i = nblk - 1; i > 0; i--) {
            const int j = (int)(rnd() % (uint32_t)(i + 1)), t = table[i];
            table[i] = table[j], table[j] = t;
        }
        st_batch_seq seq = {.seq_id = 0, .row0 = 0, .n_tokens = 1, .pos0 = pos, .n_blocks = nblk,
                            .block_table = table};
        int32_t tok = 0;
        st_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .n_seqs = 1, .seqs = &seq};
        float *q = make_act(NH * HD), *o = st_xaligned(sizeof(float) * NH * HD);
        be->ops->attention(be, o, q, &kv, 0, &b, NH, 0.125f);
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            const uint64_t t0 = st_now_ns();
            be->ops->attention(be, o, q, &kv, 0, &b, NH, 0.125f);
            const double s = (double)(st_now_ns() - t0) * 1e-9;
            best = s < best ? s : best;
        }
        const double kvbytes = 2.0 * ctx * NKV * HD * 2;
        printf("  ctx %5d: %8.1f us/layer (%.1f ms for %d layers), %.1f GB/s of KV\n", ctx, best * 1e6,
               best * 1e3 * LAYERS, LAYERS, kvbytes / best * 1e-9);
        jn += snprintf(json + jn, sizeof json - jn, "%s{\"ctx\":%d,\"us\":%.2f,\"kv_gbs\":%.2f}", ci ? "," : "", ctx,
                       best * 1e6, kvbytes / best * 1e-9);
        free(q), free(o), free(table);
        be->ops->kv_free(be, &kv);
    }
    jn += snprintf(json + jn, sizeof json - jn, "]}");
    printf("JSON %s\n", json);
    free(x), free(y);
    st_backend_destroy(be);
    return 0;
}
