/* The engine benchmark: prompt processing and decode speed of one model on
 * one backend, beside the machine's measured read bandwidth. */
#ifndef ST_ENGINE_BENCH_H
#define ST_ENGINE_BENCH_H

#include "engine/model.h"

typedef struct st_bench_engine_opts {
    int n_prompt;    /* prompt tokens (default 512) */
    int n_gen;       /* decode tokens (default 128) */
    int reps;        /* repetitions; the best and mean are reported (default 3) */
    int threads;     /* for the bandwidth probe */
    uint64_t seed;
} st_bench_engine_opts;

typedef struct st_bench_engine_result {
    double pp_tok_s, pp_tok_s_mean;  /* prompt tokens per second */
    double tg_tok_s, tg_tok_s_mean;  /* decode tokens per second */
    double tg_gbs;                   /* weight bytes read per second while decoding */
    double read_bw_gbs;              /* measured streaming read bandwidth */
    double pp_gflops;                /* matmul FLOP/s during prompt processing */
    size_t decode_bytes;             /* weight bytes one decode step reads */
} st_bench_engine_result;

int st_bench_engine(st_model *m, st_backend *be, const st_bench_engine_opts *o, st_bench_engine_result *r);

#endif
