/* Public extras of the CPU backend beyond kernels/backend.h: explicit ISA
 * choice (tests and benchmarks compare the paths) and a memory-bandwidth
 * probe (the engine benchmark reports tok/s against it). */
#ifndef ST_CPU_H
#define ST_CPU_H

#include <stddef.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_CPU_SCALAR = 0, /* plain C */
    ST_CPU_AVX2 = 1,   /* avx2 + fma + f16c */
    ST_CPU_AVX512 = 2, /* avx512f/bw/vl + avx512vnni (+ f16c, fma) */
} st_cpu_isa_t;

/* The best ISA this CPU supports, capped by env ST_CPU_ISA (scalar|avx2|
 * avx512; a request above what the CPU has is ignored with a warning). */
st_cpu_isa_t st_cpu_isa_detect(void);
/* 1 if the CPU can run kernels of that ISA. */
int st_cpu_isa_supported(st_cpu_isa_t isa);
const char *st_cpu_isa_name(st_cpu_isa_t isa);

/* A CPU backend using exactly `isa` (which must be supported, else NULL
 * with st_errmsg set); n_threads as st_backend_cpu_create. */
st_backend *st_backend_cpu_create_isa(int n_threads, st_cpu_isa_t isa);

/* A CPU backend whose quantized matmuls take float activations (each
 * weight row dequantized, f32 dot products) instead of 8-bit activation
 * blocks: several times slower, and exact float math on the stored weights
 * (what the -exact- golden files hold). st_backend_cpu_create does the
 * same when env ST_CPU_ACT=f32 (default q8). */
st_backend *st_backend_cpu_create_exact(int n_threads);

/* Streaming read bandwidth in GB/s (1e9 bytes/s): n_threads threads (0 =
 * online cores) sum a buffer of `bytes` (use several times the last-level
 * cache for DRAM bandwidth) with the widest SIMD loads available; best of
 * a few runs. Returns 0 on a bad argument. */
double st_cpu_read_bandwidth_gbs(int n_threads, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
