/* The options of `strait bench serve` (serve_bench.c): what the load is
 * and where it goes, parsed and validated whole (serve_opts.c). */
#ifndef ST_BENCH_SERVE_OPTS_H
#define ST_BENCH_SERVE_OPTS_H

#include <stdint.h>

typedef struct sopts {
    const char *url, *model, *api_key, *dataset;
    int chat;                 /* /v1/chat/completions instead of /v1/completions */
    int input_len, output_len, num_requests, max_conc, warmup, json, ignore_eos;
    double rate;              /* requests/s; 0 = all at once (bounded by max_conc) */
    double temperature, timeout_s;
    uint64_t seed;
    int trace;                /* run twice, at trace sample 0 then 1: the tracing overhead */
    const char *trace_out;    /* the traced run's server trace goes here */
    const char *report_html;  /* --report FILE */
    double trace_label;       /* the server's sampling rate of this run (JSON), or < 0 */
    char host[256], port[8], base[512]; /* from url */
} sopts;

/* Parse argv into *o (defaults first). Returns 0 to run, 1 after --help
 * (printed), 2 after a usage error (printed). */
int st_serve_opts_parse(int argc, char **argv, sopts *o);

#endif
