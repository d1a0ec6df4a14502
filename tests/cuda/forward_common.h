/* What the two whole-forward CUDA tests (test_forward: the default model;
 * test_forward_tiny: the random-weight tiny models) share: the CPU backend
 * with its matmul replaced by the double-precision reference, the passes
 * (schedule x GEMM rule) a forward is run under, and the logit comparison.
 * Included by one .cpp each; everything is static. */
#ifndef ST_TESTS_CUDA_FORWARD_COMMON_H
#define ST_TESTS_CUDA_FORWARD_COMMON_H

#include "kernels/cuda/cuda.h"
#include "kernels/simt/simt.h"

extern "C" {
#include "kernels/cpu/ref.h" /* a C header without its own extern "C" */
}

#include <math.h>
#include <stdlib.h>

/* ---- the reference ---------------------------------------------------------- */
static st_backend_ops ref_ops;
static void ref_matmul(st_backend *, float *y, const float *x, const st_tensor *W, const float *bias, int n)
{
    st_ref_matmul_f32(y, x, W, bias, n);
}

/* run(cpu) once with cpu's matmul swapped for the double-precision
 * reference; cpu's own ops are back afterwards */
template <typename F> static auto with_ref_matmul(st_backend *cpu, F run) -> decltype(run(cpu))
{
    const st_backend_ops *own = cpu->ops;
    ref_ops = *own;
    ref_ops.matmul = ref_matmul;
    cpu->ops = &ref_ops;
    auto out = run(cpu);
    cpu->ops = own;
    return out;
}

/* ---- passes ------------------------------------------------------------------- */
struct forward_pass {
    simt::schedule sch;
    const char *gemm_min_rows; /* ST_CUDA_GEMM_MIN_ROWS, NULL: the backend's rule */
    const char *what;
    bool tf32;                 /* some matmuls take the TF32 GEMM */
};

/* A cuda backend under the pass's schedule and GEMM rule (NULL: none). */
static st_backend *gpu_for_pass(const forward_pass &ps, unsigned seed)
{
    simt::set_schedule(ps.sch, seed);
    if (ps.gemm_min_rows)
        setenv("ST_CUDA_GEMM_MIN_ROWS", ps.gemm_min_rows, 1);
    else
        unsetenv("ST_CUDA_GEMM_MIN_ROWS");
    return st_backend_cuda_create(0);
}

/* ---- comparison ------------------------------------------------------------------ */
static int argmax(const float *x, int n)
{
    int m = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[m])
            m = i;
    return m;
}

/* Max |got - ref| in units of ref's standard deviation (NaN/inf: infinite);
 * *top_ok: got's argmax is ref's, or within tol std of it in ref. */
static double row_error(const float *got, const float *ref, int n, double tol, bool *top_ok)
{
    double mean = 0, var = 0, worst = 0;
    for (int i = 0; i < n; i++)
        mean += ref[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (ref[i] - mean) * (ref[i] - mean);
    const double sd = sqrt(var / n) + 1e-9;
    for (int i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - (double)ref[i]) / sd;
        if (!(e <= worst))
            worst = isfinite(e) ? e : INFINITY;
    }
    const int gm = argmax(got, n), rm = argmax(ref, n);
    *top_ok = gm == rm || (ref[rm] - ref[gm]) / sd <= tol;
    return worst;
}

#endif
