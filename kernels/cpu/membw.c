/* Streaming read bandwidth probe (cpu.h): every thread sums its share of
 * one buffer with the widest loads the CPU has; best of 5 passes after a
 * warm-up that also faults the pages in. */
#include "common/st_common.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const st_cpu_kernels *k;
    const float *buf;
    size_t n; /* floats, multiple of 64 * threads */
    volatile float sink[64];
} bw_job;

static void bw_fn(void *p, int ith, int nth)
{
    bw_job *j = p;
    const size_t per = j->n / (size_t)nth;
    j->sink[ith % 64] += j->k->sum(j->buf + per * (size_t)ith, per);
}

double st_cpu_read_bandwidth_gbs(int n_threads, size_t bytes)
{
    if (bytes < 4096 || n_threads < 0)
        return 0.0;
    const st_cpu_isa_t isa = st_cpu_isa_detect();
    const st_cpu_kernels *k = isa == ST_CPU_AVX512 ? &st_cpu_kernels_avx512
                              : isa == ST_CPU_AVX2 ? &st_cpu_kernels_avx2
                                                   : &st_cpu_kernels_scalar;
    st_tp *tp = st_tp_create(n_threads);
    const size_t unit = 64 * (size_t)st_tp_size(tp);
    bw_job j = {.k = k};
    j.n = bytes / 4 / unit * unit;
    if (!j.n) {
        st_tp_destroy(tp);
        return 0.0;
    }
    float *buf = st_xaligned(j.n * 4);
    for (size_t i = 0; i < j.n; i++)
        buf[i] = (float)(i & 7);
    j.buf = buf;
    double best = 0.0;
    for (int pass = 0; pass < 6; pass++) {
        const uint64_t t0 = st_now_ns();
        st_tp_run(tp, bw_fn, &j);
        const double s = (double)(st_now_ns() - t0) * 1e-9;
        if (pass > 0 && s > 0 && (double)(j.n * 4) / s > best)
            best = (double)(j.n * 4) / s;
    }
    free(buf);
    st_tp_destroy(tp);
    return best * 1e-9;
}
