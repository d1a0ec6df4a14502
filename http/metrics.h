/* Server metrics in Prometheus text format (GET /metrics).
 *
 * Counters and histograms are updated with relaxed atomics from any thread
 * (the event loop counts requests; back-end callbacks observe token
 * latencies); gauges about the generator (running/waiting sequences, KV
 * blocks, batch sizes) come from st_gen_stats at render time. The
 * breakdown of where time goes - queue wait, prefill and decode step time,
 * stage compute, per-link send time - comes from the tracer's always-on
 * histograms (common/trace.h), whatever the sampling rate. */
#ifndef ST_HTTP_METRICS_H
#define ST_HTTP_METRICS_H

#include <stdint.h>

#include "../common/json.h"
#include "gen_backend.h"

#define ST_HIST_MAX_BUCKETS 20

typedef struct st_histogram {
    const double *bounds;                  /* (n_bounds,) upper bounds in seconds, ascending */
    int n_bounds;
    uint64_t counts[ST_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); last is +Inf */
    uint64_t sum_ns;
    uint64_t n;
} st_histogram;

/* Statuses counted by name; others count as "other". */
#define ST_METRICS_N_STATUS 10

typedef struct st_http_metrics {
    uint64_t status[ST_METRICS_N_STATUS + 1];
    uint64_t finish[5];                   /* by st_gen_finish */
    uint64_t prompt_tokens, generation_tokens;
    st_histogram ttft;                    /* arrival -> first token */
    st_histogram itl;                     /* between consecutive tokens of a request */
    st_histogram e2e;                     /* arrival -> final event */
} st_http_metrics;

void st_metrics_init(st_http_metrics *m);
void st_metrics_count_status(st_http_metrics *m, int status);
void st_metrics_count_finish(st_http_metrics *m, st_gen_finish f, int prompt_tokens, int generation_tokens);
void st_histogram_observe(st_histogram *h, uint64_t ns);
/* Append the exposition text. stats may be NULL (no back end yet). */
void st_metrics_render(const st_http_metrics *m, const st_gen_stats *stats, st_strbuf *sb);

#endif
