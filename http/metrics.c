/* Prometheus metrics (see metrics.h). */
#include "metrics.h"

#include <string.h>

#include "../common/trace.h"

#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

static const int status_codes[ST_METRICS_N_STATUS] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 504};

/* Token latencies span ~1 ms (a fast decode step) to minutes (a long
 * queue); buckets follow vLLM's spirit, in seconds. */
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                     0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
static const double itl_bounds[] = {0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                                    0.1,   0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5};
static const double e2e_bounds[] = {0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5,
                                    5.0,  10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};

void st_metrics_init(st_http_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->ttft.bounds = ttft_bounds;
    m->ttft.n_bounds = (int)(sizeof ttft_bounds / sizeof *ttft_bounds);
    m->itl.bounds = itl_bounds;
    m->itl.n_bounds = (int)(sizeof itl_bounds / sizeof *itl_bounds);
    m->e2e.bounds = e2e_bounds;
    m->e2e.n_bounds = (int)(sizeof e2e_bounds / sizeof *e2e_bounds);
}

void st_metrics_count_status(st_http_metrics *m, int status)
{
    int k = ST_METRICS_N_STATUS;
    for (int i = 0; i < ST_METRICS_N_STATUS; i++)
        if (status_codes[i] == status)
            k = i;
    ADD(&m->status[k], 1);
}

void st_metrics_count_finish(st_http_metrics *m, st_gen_finish f, int prompt_tokens, int generation_tokens)
{
    if ((unsigned)f < 5)
        ADD(&m->finish[f], 1);
    ADD(&m->prompt_tokens, (uint64_t)(prompt_tokens > 0 ? prompt_tokens : 0));
    ADD(&m->generation_tokens, (uint64_t)(generation_tokens > 0 ? generation_tokens : 0));
}

void st_histogram_observe(st_histogram *h, uint64_t ns)
{
    double s = (double)ns * 1e-9;
    int k = 0;
    while (k < h->n_bounds && s > h->bounds[k])
        k++;
    ADD(&h->counts[k], 1);
    ADD(&h->sum_ns, ns);
    ADD(&h->n, 1);
}

static void render_hist(st_strbuf *sb, const char *name, const char *help, const st_histogram *h)
{
    st_sb_printf(sb, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int k = 0; k <= h->n_bounds; k++) {
        cum += LD(&h->counts[k]);
        if (k < h->n_bounds)
            st_sb_printf(sb, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[k], (unsigned long long)cum);
        else
            st_sb_printf(sb, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    st_sb_printf(sb, "%s_sum %.6f\n%s_count %llu\n", name, (double)LD(&h->sum_ns) * 1e-9, name,
                 (unsigned long long)cum);
}

/* The tracer's always-on breakdown (common/trace.h): one family per stage of
 * a request's life, the per-link send times as one family with a label. */
static void render_trace_hist(st_strbuf *sb, const char *name, const char *labels, const st_trace_hist *h)
{
    const double *b = st_trace_hist_bounds();
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int k = 0; k <= ST_TRACE_HIST_BOUNDS; k++) {
        cum += h->counts[k];
        if (k < ST_TRACE_HIST_BOUNDS)
            st_sb_printf(sb, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, b[k], (unsigned long long)cum);
        else
            st_sb_printf(sb, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    }
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    st_sb_printf(sb, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close, (double)h->sum_ns * 1e-9,
                 name, open, labels, close, (unsigned long long)cum);
}

static void render_breakdown(st_strbuf *sb)
{
    static const struct {
        int id;
        const char *name, *help;
    } fixed[] = {
        {ST_TH_QUEUE, "strait_queue_seconds", "Wait from submission (or preemption) to admission."},
        {ST_TH_PREFILL, "strait_prefill_step_seconds", "Execution time of steps holding prompt rows."},
        {ST_TH_DECODE, "strait_decode_step_seconds", "Execution time of decode-only steps."},
        {ST_TH_STAGE, "strait_stage_compute_seconds", "A pipeline stage's compute for one step."},
    };
    st_trace_hist h;
    const char *label;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (st_trace_hist_get(fixed[i].id, &h, &label))
            continue;
        st_sb_printf(sb, "# HELP %s %s\n# TYPE %s histogram\n", fixed[i].name, fixed[i].help, fixed[i].name);
        render_trace_hist(sb, fixed[i].name, "", &h);
    }
    st_sb_puts(sb, "# HELP strait_network_send_seconds A message posted on a link until its send completed, by link.\n"
                   "# TYPE strait_network_send_seconds histogram\n");
    for (int i = ST_TH_FIXED; i < ST_TH_COUNT; i++) {
        if (st_trace_hist_get(i, &h, &label))
            continue;
        st_strbuf lb;
        st_sb_init(&lb);
        st_sb_puts(&lb, "link=");
        st_sb_json_str(&lb, label, strlen(label)); /* a quoted, escaped label value */
        render_trace_hist(sb, "strait_network_send_seconds", lb.buf, &h);
        st_sb_free(&lb);
    }
}

static void gauge(st_strbuf *sb, const char *name, const char *help, const char *type, double v)
{
    st_sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void st_metrics_render(const st_http_metrics *m, const st_gen_stats *s, st_strbuf *sb)
{
    st_sb_puts(sb, "# HELP strait_http_requests_total HTTP requests answered, by status code.\n"
                   "# TYPE strait_http_requests_total counter\n");
    for (int i = 0; i <= ST_METRICS_N_STATUS; i++) {
        if (i < ST_METRICS_N_STATUS)
            st_sb_printf(sb, "strait_http_requests_total{status=\"%d\"} %llu\n", status_codes[i],
                         (unsigned long long)LD(&m->status[i]));
        else
            st_sb_printf(sb, "strait_http_requests_total{status=\"other\"} %llu\n",
                         (unsigned long long)LD(&m->status[i]));
    }
    st_sb_puts(sb, "# HELP strait_request_success_total Generation requests finished, by finish reason.\n"
                   "# TYPE strait_request_success_total counter\n");
    for (int f = ST_GEN_STOP; f <= ST_GEN_ERROR; f++)
        st_sb_printf(sb, "strait_request_success_total{finished_reason=\"%s\"} %llu\n",
                     st_gen_finish_name((st_gen_finish)f), (unsigned long long)LD(&m->finish[f]));
    gauge(sb, "strait_prompt_tokens_total", "Prompt tokens of finished requests.", "counter",
          (double)LD(&m->prompt_tokens));
    gauge(sb, "strait_generation_tokens_total", "Generated tokens of finished requests.", "counter",
          (double)LD(&m->generation_tokens));
    render_hist(sb, "strait_time_to_first_token_seconds", "Time from arrival to the first generated token.", &m->ttft);
    render_hist(sb, "strait_inter_token_latency_seconds", "Time between consecutive tokens of one request.", &m->itl);
    render_hist(sb, "strait_e2e_request_latency_seconds", "Time from arrival to the last event of a request.", &m->e2e);
    render_breakdown(sb);
    if (!s)
        return;
    gauge(sb, "strait_model_ready", "1 once the model is loaded.", "gauge", s->ready);
    gauge(sb, "strait_num_requests_running", "Sequences being generated.", "gauge", s->n_running);
    gauge(sb, "strait_num_requests_waiting", "Sequences waiting for admission.", "gauge", s->n_waiting);
    gauge(sb, "strait_kv_blocks_total", "KV cache blocks.", "gauge", s->kv_blocks_total);
    gauge(sb, "strait_kv_blocks_used", "KV cache blocks in use.", "gauge", s->kv_blocks_used);
    gauge(sb, "strait_kv_blocks_free", "KV cache blocks free.", "gauge", s->kv_blocks_free);
    gauge(sb, "strait_kv_cache_usage_ratio", "Fraction of KV blocks in use.", "gauge",
          s->kv_blocks_total > 0 ? (double)s->kv_blocks_used / s->kv_blocks_total : 0.0);
    gauge(sb, "strait_batch_steps_total", "Forward steps run.", "counter", (double)s->steps);
    gauge(sb, "strait_batch_tokens_total", "Rows over all forward steps.", "counter", (double)s->batch_tokens);
    gauge(sb, "strait_batch_sequences_total", "Sequences over all forward steps.", "counter", (double)s->batch_seqs);
    gauge(sb, "strait_batch_last_tokens", "Rows in the last forward step.", "gauge", s->last_batch_tokens);
    gauge(sb, "strait_batch_last_sequences", "Sequences in the last forward step.", "gauge", s->last_batch_seqs);
    gauge(sb, "strait_num_preemptions_total", "Sequences preempted for KV space.", "counter", (double)s->preemptions);
    gauge(sb, "strait_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", "counter",
          (double)s->prefix_hit_tokens);
}

const char *st_gen_finish_name(st_gen_finish f)
{
    switch (f) {
    case ST_GEN_STOP: return "stop";
    case ST_GEN_LENGTH: return "length";
    case ST_GEN_ABORT: return "abort";
    case ST_GEN_ERROR: return "error";
    default: return "";
    }
}
