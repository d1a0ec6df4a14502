/* The HTML report of a serving benchmark (`strait bench serve --report F`):
 * one self-contained page (inline SVG and CSS, no script, nothing fetched)
 * with latency CDFs (TTFT, TPOT, ITL), output throughput over time, and -
 * from the server's trace when one was collected - batch size over time and
 * where requests spent their time (per span kind / pipeline stage). */
#ifndef ST_BENCH_REPORT_H
#define ST_BENCH_REPORT_H

#include <stddef.h>

/* One measured request, times in seconds on the client's clock. */
typedef struct st_report_req {
    double t_start, t_first, t_end; /* launch, first text event, end */
    const double *itl;              /* (n_itl,) gaps between text events */
    int n_itl;
    int out_tokens;
    int failed;
} st_report_req;

typedef struct st_report {
    const char *title;              /* e.g. the URL and load */
    const char *summary_json;       /* the benchmark's JSON line, shown verbatim (may be NULL) */
    const st_report_req *reqs;      /* (n_reqs,) */
    int n_reqs;
    const char *trace_json;         /* the server's Chrome trace (GET /debug/trace), or NULL */
    size_t trace_len;
    double t0, t1;                  /* the run's span (client CLOCK_MONOTONIC s): a server on the same
                                       host stamps the same clock, so only its events inside are used
                                       (all of them when none falls inside: another host) */
} st_report;

/* Write the page to path. ST_OK, or ST_EIO naming the file. */
int st_bench_report_html(const char *path, const st_report *r);

#endif
