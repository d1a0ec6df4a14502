/* CPU matmul, every weight type on every ISA this machine has:
 *  - Q-types vs a reference that quantizes x the same way (tight: only f32
 *    rounding differs) and vs the pure f32 reference (loose: bounded by the
 *    int8 activation quantization error, computed per output below);
 *  - float types vs the f32 reference (f32 rounding only);
 *  - the SIMD activation quantization equals the scalar one byte for byte;
 *  - batch invariance: a row's output bytes are the same for n = 1, 7, 16;
 *  - thread invariance: 1 and 2 threads give the same bytes. */
#include "../test.h"
#include "cpu_test_util.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/ref.h"

/* Bound on |y(quantized x) - y(f32 x)| for row r, output o: each x_j moves
 * by at most d_b/2 (round to nearest) with d_b = max|x| / 127 of its block,
 * so |dy| <= sum_b d_b/2 * sum_{j in b} |w_j|. */
static double quant_bound(const float *x, const st_tensor *W, int o)
{
    const int K = (int)W->ne[0];
    float *w = malloc(sizeof(float) * K);
    st_dequant_row(W->type, (const uint8_t *)W->data + (size_t)o * st_dtype_row_bytes(W->type, K), w, K);
    double bound = 0;
    for (int b = 0; b < K / 32; b++) {
        double amax = 0, wsum = 0;
        for (int j = 0; j < 32; j++) {
            amax = fmax(amax, fabs(x[b * 32 + j]));
            wsum += fabs(w[b * 32 + j]);
        }
        bound += amax / 127.0 / 2.0 * wsum;
    }
    free(w);
    return bound;
}

/* exact: be takes float activations for quantized weights (st_backend_cpu_create_exact),
 * so every type is held to the float reference */
static void check_type_shape_x(st_backend *be, st_dtype t, int K, int O, int n, int exact)
{
    st_tensor W = rand_tensor(t, K, O);
    float *x = malloc(sizeof(float) * n * K), *y = malloc(sizeof(float) * n * O), *bias = malloc(sizeof(float) * O);
    float *yf = malloc(sizeof(float) * n * O), *yq = malloc(sizeof(float) * n * O);
    double *mag = malloc(sizeof(double) * n * O);
    rand_fill(x, (size_t)n * K, 1.0f);
    rand_fill(bias, O, 0.5f);
    be->ops->matmul(be, y, x, &W, bias, n);
    st_ref_matmul_f32(yf, x, &W, bias, n);
    int bad = 0;
    if (is_q(t) && !exact) {
        st_ref_matmul_q8act(yq, mag, x, &W, bias, n);
        for (int r = 0; r < n && bad < 3; r++)
            for (int o = 0; o < O && bad < 3; o++) {
                const size_t i = (size_t)r * O + o;
                /* f32 accumulation over K/32 block terms, each with a few
                 * roundings: relative to the sum of |terms|, 1e-5 covers
                 * (K/32 + 4) * 2^-24 with margin up to K = 4096. */
                const double tight = 1e-5 * mag[i] + 1e-6;
                const double loose = 1.01 * quant_bound(x + (size_t)r * K, &W, o) + tight;
                if (fabs(y[i] - yq[i]) > tight || fabs(y[i] - yf[i]) > loose) {
                    bad++;
                    CHECKF(0, "%s %s K=%d O=%d n=%d r=%d o=%d: y=%.7g q8ref=%.7g (tol %.2g) f32ref=%.7g (tol %.2g)",
                           st_cpu_isa(), st_dtype_name(t), K, O, n, r, o, y[i], yq[i], tight, yf[i], loose);
                }
            }
    } else {
        for (int r = 0; r < n && bad < 3; r++)
            for (int o = 0; o < O && bad < 3; o++) {
                const size_t i = (size_t)r * O + o;
                /* f32 products of exact inputs, f32 sums over K terms of
                 * size <= 1 * 8: |err| <= K * 2^-23 * sum|terms|; use 2e-6 * K^0.5 scale */
                double m = fabs(bias[o]);
                float *w = malloc(sizeof(float) * K);
                st_dequant_row(t, (const uint8_t *)W.data + (size_t)o * st_dtype_row_bytes(t, K), w, K);
                for (int k = 0; k < K; k++)
                    m += fabs((double)w[k] * x[(size_t)r * K + k]);
                free(w);
                const double tol = 1e-6 * m * (1 + K / 64.0) / 4 + 1e-6;
                if (fabs(y[i] - yf[i]) > tol) {
                    bad++;
                    CHECKF(0, "%s %s K=%d O=%d n=%d r=%d o=%d: y=%.7g f32ref=%.7g (tol %.2g)", st_cpu_isa(),
                           st_dtype_name(t), K, O, n, r, o, y[i], yf[i], tol);
                }
            }
    }
    CHECK(bad == 0);
    free(x), free(y), free(bias), free(yf), free(yq), free(mag), free((void *)W.data);
}

/* Rows of a 16-row product computed alone (n = 1) and in a 7-row batch
 * (starting at row 5) must be byte-identical to the 16-row result; and
 * the same with a 1-thread backend. */

static void check_type_shape(st_backend *be, st_dtype t, int K, int O, int n)
{
    check_type_shape_x(be, t, K, O, n, 0);
}

static void check_invariance(st_backend *be, st_backend *be1, st_dtype t, int K, int O)
{
    const int N = 16;
    st_tensor W = rand_tensor(t, K, O);
    float *x = malloc(sizeof(float) * N * K), *y16 = malloc(sizeof(float) * N * O), *y = malloc(sizeof(float) * N * O);
    rand_fill(x, (size_t)N * K, 1.0f);
    be->ops->matmul(be, y16, x, &W, NULL, N);
    for (int r = 0; r < N; r++) {
        be->ops->matmul(be, y, x + (size_t)r * K, &W, NULL, 1);
        CHECKF(!memcmp(y, y16 + (size_t)r * O, sizeof(float) * O), "%s %s K=%d O=%d: row %d differs n=1 vs n=16",
               st_cpu_isa(), st_dtype_name(t), K, O, r);
    }
    be->ops->matmul(be, y, x + (size_t)5 * K, &W, NULL, 7);
    CHECKF(!memcmp(y, y16 + (size_t)5 * O, sizeof(float) * 7 * O), "%s %s: rows 5..11 differ n=7 vs n=16",
           st_cpu_isa(), st_dtype_name(t));
    be1->ops->matmul(be1, y, x, &W, NULL, N);
    CHECKF(!memcmp(y, y16, sizeof(float) * N * O), "%s %s: 1 thread vs %d threads differ", st_cpu_isa(),
           st_dtype_name(t), be->n_threads);
    free(x), free(y16), free(y), free((void *)W.data);
}

static void check_quant_matches_scalar(const st_cpu_kernels *k)
{
    const int nb = 37;
    float *x = malloc(sizeof(float) * nb * 32);
    rand_fill(x, (size_t)nb * 32, 3.0f);
    memset(x + 64, 0, sizeof(float) * 32); /* an all-zero block: d = 0 */
    x[100] = 0.5f, x[101] = -0.5f;          /* exact halves after scaling */
    st_qblock *a = st_xaligned(sizeof(st_qblock) * nb), *b = st_xaligned(sizeof(st_qblock) * nb);
    for (int ti = 0; ti < 3; ti++) {
        const st_dtype t = (st_dtype[]){ST_Q8_0, ST_Q4_0, ST_Q4_1}[ti];
        memset(a, 0x5A, sizeof(st_qblock) * nb);
        memset(b, 0xA5, sizeof(st_qblock) * nb);
        st_cpu_quant_scalar(x, a, nb, t);
        k->quant(x, b, nb, t);
        CHECKF(!memcmp(a, b, sizeof(st_qblock) * nb), "%s quantization differs from scalar for %s", st_cpu_isa(),
               st_dtype_name(t));
        /* and it is a quantization: |x - d q| <= d / 2 */
        for (int i = 0; i < nb * 32; i++)
            CHECK(fabsf(x[i] - a[i / 32].d * a[i / 32].qs[i % 32]) <= a[i / 32].d * 0.5f * 1.0001f + 1e-30f);
    }
    free(x), free(a), free(b);
}

int main(void)
{
    static const int shapes[][2] = {{32, 17}, {96, 33}, {576, 64}, {1024, 40}, {1536, 9}};
    static const int ns[] = {1, 3, 17};
    static const st_cpu_kernels *tables[] = {&st_cpu_kernels_scalar, &st_cpu_kernels_avx2, &st_cpu_kernels_avx512};
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
        CHECK(!strcmp(st_cpu_isa(), st_cpu_isa_name(isa)));
        check_quant_matches_scalar(tables[isa]);
        for (size_t ti = 0; ti < ST_ARRAY_LEN(all_types); ti++) {
            for (size_t si = 0; si < ST_ARRAY_LEN(shapes); si++)
                for (size_t ni = 0; ni < ST_ARRAY_LEN(ns); ni++)
                    check_type_shape(be, all_types[ti], shapes[si][0], shapes[si][1], ns[ni]);
            check_type_shape(be, all_types[ti], 576, 70, 64); /* full RT x OT tiles and a row chunk */
            check_invariance(be, be1, all_types[ti], 576, 37);
            check_invariance(be, be1, all_types[ti], 96, 8);
        }
        if (all_types[0] == ST_F32) {
            /* float weights need no whole blocks: odd K */
            check_type_shape(be, ST_F32, 45, 7, 3);
            check_type_shape(be, ST_F16, 13, 5, 17);
        }
        /* a malformed weight is an error, not a crash */
        st_tensor bad = rand_tensor(ST_Q4_1, 64, 4);
        bad.nbytes -= 1;
        float x[64] = {0}, y[4] = {1, 2, 3, 4};
        be->ops->matmul(be, y, x, &bad, NULL, 1);
        CHECK(y[0] == 1 && y[3] == 4);
        free((void *)bad.data);
        st_backend_destroy(be);
        st_backend_destroy(be1);
    }
    /* float activations for quantized weights: the float reference, tightly */
    st_backend *ex = st_backend_cpu_create_exact(2);
    CHECK(ex != NULL);
    for (size_t ti = 0; ex && ti < ST_ARRAY_LEN(all_types); ti++)
        for (size_t si = 0; si < ST_ARRAY_LEN(shapes); si++)
            for (size_t ni = 0; ni < ST_ARRAY_LEN(ns); ni++)
                check_type_shape_x(ex, all_types[ti], shapes[si][0], shapes[si][1], ns[ni], 1);
    st_backend_destroy(ex);
    CHECK(tested >= 1);
    return test_done();
}
