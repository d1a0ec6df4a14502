/* HTML report of a serving benchmark (see report.h). Every plot is a small
 * inline SVG drawn from the numbers: a CDF is a step line over the sorted
 * samples, a time series a polyline over fixed-width bins. */
#include "bench/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"

#define W 560 /* plot size in px */
#define H 260
#define ML 60 /* margins: left, right, top, bottom */
#define MR 16
#define MT 30
#define MB 40

typedef struct series {
    const double *x, *y; /* (n,) */
    int n;
    const char *name, *color;
} series;

static void esc(st_strbuf *sb, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': st_sb_puts(sb, "&lt;"); break;
        case '>': st_sb_puts(sb, "&gt;"); break;
        case '&': st_sb_puts(sb, "&amp;"); break;
        case '"': st_sb_puts(sb, "&quot;"); break;
        default: st_sb_putn(sb, s, 1);
        }
    }
}

/* A "nice" axis maximum: 1, 2 or 5 times a power of ten, >= v. */
static double nice_max(double v)
{
    if (!(v > 0))
        return 1;
    double p = pow(10, floor(log10(v)));
    for (double m = 1; m <= 10; m = m == 1 ? 2 : m == 2 ? 5 : 10)
        if (m * p >= v)
            return m * p;
    return 10 * p;
}

/* Line plot of up to a few series sharing axes [0, xmax] x [0, ymax]. */
static void plot(st_strbuf *sb, const char *title, const char *xlabel, const char *ylabel, const series *s,
                 int n_series, int steps)
{
    double xmax = 0, ymax = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            xmax = ST_MAX(xmax, s[k].x[i]);
            ymax = ST_MAX(ymax, s[k].y[i]);
        }
    xmax = nice_max(xmax);
    ymax = nice_max(ymax);
    int pw = W - ML - MR, ph = H - MT - MB;
    st_sb_printf(sb,
                 "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\">",
                 W, H, W, H);
    st_sb_printf(sb, "<text x=\"%d\" y=\"18\" class=\"t\">", ML);
    esc(sb, title);
    st_sb_puts(sb, "</text>");
    /* axes, grid and tick labels (5 divisions) */
    for (int i = 0; i <= 5; i++) {
        double fx = ML + pw * i / 5.0, fy = MT + ph - ph * i / 5.0;
        st_sb_printf(sb, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"g\"/>", ML, fy, ML + pw, fy);
        st_sb_printf(sb, "<text x=\"%d\" y=\"%.1f\" class=\"yl\">%g</text>", ML - 6, fy + 4, ymax * i / 5.0);
        st_sb_printf(sb, "<text x=\"%.1f\" y=\"%d\" class=\"xl\">%g</text>", fx, MT + ph + 16, xmax * i / 5.0);
    }
    st_sb_printf(sb, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"f\"/>", ML, MT, pw, ph);
    st_sb_printf(sb, "<text x=\"%d\" y=\"%d\" class=\"xl\">", ML + pw / 2, H - 6);
    esc(sb, xlabel);
    st_sb_printf(sb, "</text><text x=\"14\" y=\"%d\" class=\"yl\" transform=\"rotate(-90 14 %d)\">", MT + ph / 2,
                 MT + ph / 2);
    esc(sb, ylabel);
    st_sb_puts(sb, "</text>");
    for (int k = 0; k < n_series; k++) {
        if (!s[k].n)
            continue;
        st_sb_printf(sb, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", s[k].color);
        double py = MT + ph;
        for (int i = 0; i < s[k].n; i++) {
            double px = ML + pw * s[k].x[i] / xmax, y = MT + ph - ph * s[k].y[i] / ymax;
            if (steps && i)
                st_sb_printf(sb, "%.1f,%.1f ", px, py);
            st_sb_printf(sb, "%.1f,%.1f ", px, y);
            py = y;
        }
        st_sb_puts(sb, "\"/>");
        st_sb_printf(sb, "<text x=\"%d\" y=\"%d\" fill=\"%s\" class=\"lg\">", ML + pw - 4, MT + 14 + 14 * k,
                     s[k].color);
        esc(sb, s[k].name);
        st_sb_puts(sb, "</text>");
    }
    if (!n_series || !s[0].n)
        st_sb_printf(sb, "<text x=\"%d\" y=\"%d\" class=\"xl\">no data</text>", ML + pw / 2, MT + ph / 2);
    st_sb_puts(sb, "</svg></figure>\n");
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CDF of v (seconds; sorted in place) as ms -> fraction. */
static void cdf_plot(st_strbuf *sb, const char *title, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double *x = st_xmalloc(sizeof(double) * (size_t)(n + 1)), *y = st_xmalloc(sizeof(double) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        x[i] = v[i] * 1e3;
        y[i] = (double)(i + 1) / n;
    }
    series s = {x, y, n, "CDF", "#2563eb"};
    plot(sb, title, "milliseconds", "fraction of samples", &s, 1, 1);
    free(x), free(y);
}

/* ---- from the trace -------------------------------------------------------------------- */
typedef struct kind_sum {
    char name[32];
    double total_us;
    int n;
} kind_sum;

/* Batch size over time (from "step" events) and time per span kind. */
static int in_window(const st_json *e, double w0, double w1)
{
    double ts = st_json_get_num(e, "ts", -1) * 1e-6;
    return ts >= w0 && ts <= w1;
}

static void trace_plots(st_strbuf *sb, const char *json, size_t len, double w0, double w1)
{
    st_json *j = NULL;
    const st_json *ev = NULL;
    if (json && !st_json_parse(json, len, &j))
        ev = st_json_get(j, "traceEvents");
    if (!ev || ev->type != ST_JSON_ARRAY) {
        st_sb_puts(sb, "<p class=\"note\">No server trace: run with <code>--trace</code> against a server that "
                       "allows <code>/debug/trace</code> to see batch sizes and the time breakdown.</p>\n");
        if (j)
            st_json_free(j);
        return;
    }
    size_t n = ev->u.arr.n;
    int windowed = 0;
    for (size_t i = 0; i < n && !windowed; i++)
        windowed = in_window(&ev->u.arr.items[i], w0, w1);
    double *x = st_xmalloc(sizeof(double) * (n + 1)), *y = st_xmalloc(sizeof(double) * (n + 1));
    double *yt = st_xmalloc(sizeof(double) * (n + 1));
    int ns = 0;
    double t0 = -1;
    kind_sum ks[24];
    int nk = 0;
    for (size_t i = 0; i < n; i++) {
        const st_json *e = &ev->u.arr.items[i];
        const char *name = st_json_get_str(e, "name", ""), *ph = st_json_get_str(e, "ph", "");
        if (strcmp(ph, "X") || (windowed && !in_window(e, w0, w1)))
            continue;
        double ts = st_json_get_num(e, "ts", 0), dur = st_json_get_num(e, "dur", 0);
        const st_json *args = st_json_get(e, "args");
        if (!strcmp(name, "step")) {
            if (t0 < 0)
                t0 = ts;
            x[ns] = (ts - t0) * 1e-6;
            y[ns] = st_json_get_num(args, "seqs", 0);
            yt[ns] = st_json_get_num(args, "tokens", 0);
            ns++;
            continue;
        }
        int k = 0;
        while (k < nk && strcmp(ks[k].name, name))
            k++;
        if (k == nk) {
            if (nk == (int)ST_ARRAY_LEN(ks))
                continue;
            snprintf(ks[nk].name, sizeof ks[nk].name, "%s", name);
            ks[nk].total_us = 0;
            ks[nk++].n = 0;
        }
        ks[k].total_us += dur;
        ks[k].n++;
    }
    /* steps come sorted per thread; the plot wants time order */
    series s[2] = {{x, y, ns, "sequences", "#2563eb"}, {x, yt, ns, "rows (tokens)", "#dc2626"}};
    plot(sb, windowed ? "Batch size per step (server trace, this run)" : "Batch size per step (server trace)",
         "seconds since the first traced step", "per step", s, 2, 1);
    /* breakdown: total time per span kind, as horizontal bars */
    double tmax = 0;
    for (int k = 0; k < nk; k++)
        tmax = ST_MAX(tmax, ks[k].total_us);
    int bh = 22, hh = MT + bh * nk + 20;
    st_sb_printf(sb, "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">", W + 160, hh);
    st_sb_printf(sb, "<text x=\"%d\" y=\"18\" class=\"t\">Where the time went: total per span kind (ms, "
                     "summed over traced requests and steps)</text>", 10);
    for (int k = 0; k < nk; k++) {
        double w = tmax > 0 ? (W - 140) * ks[k].total_us / tmax : 0;
        int yy = MT + bh * k;
        st_sb_printf(sb, "<text x=\"130\" y=\"%d\" class=\"yl\">", yy + 15);
        esc(sb, ks[k].name);
        st_sb_printf(sb, "</text><rect x=\"136\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#0d9488\"/>"
                         "<text x=\"%.1f\" y=\"%d\" class=\"lb\">%.1f ms (%d)</text>",
                     yy + 3, w, bh - 6, 140 + w, yy + 15, ks[k].total_us * 1e-3, ks[k].n);
    }
    if (!nk)
        st_sb_printf(sb, "<text x=\"20\" y=\"%d\" class=\"xl\">no spans</text>", MT + 10);
    st_sb_puts(sb, "</svg></figure>\n");
    free(x), free(y), free(yt);
    st_json_free(j);
}

/* ---- the page -------------------------------------------------------------------------- */
int st_bench_report_html(const char *path, const st_report *r)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>strait bench serve</title>"
                    "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#111;max-width:1300px}"
                    "h1{font-size:20px}figure{display:inline-block;margin:8px;border:1px solid #ddd;padding:4px}"
                    ".t{font-weight:600;font-size:13px}.g{stroke:#eee}.f{fill:none;stroke:#999}"
                    ".xl{font-size:11px;text-anchor:middle;fill:#444}.yl{font-size:11px;text-anchor:end;fill:#444}"
                    ".lg{font-size:12px;text-anchor:end}.lb{font-size:11px;fill:#333}"
                    "pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;word-break:break-all}"
                    ".note{color:#555}</style></head><body>\n<h1>strait bench serve</h1>\n<p>");
    esc(&sb, r->title);
    st_sb_puts(&sb, "</p>\n");
    int n = r->n_reqs, ok = 0, n_itl = 0, n_tok = 0;
    for (int i = 0; i < n; i++)
        if (!r->reqs[i].failed) {
            ok++;
            n_itl += r->reqs[i].n_itl;
        }
    double *ttft = st_xmalloc(sizeof(double) * (size_t)(n + 1)), *tpot = st_xmalloc(sizeof(double) * (size_t)(n + 1));
    double *itl = st_xmalloc(sizeof(double) * (size_t)(n_itl + 1));
    int nt = 0, np = 0, ni = 0;
    double t0 = INFINITY, t1 = 0;
    for (int i = 0; i < n; i++) {
        const st_report_req *q = &r->reqs[i];
        if (q->failed)
            continue;
        ttft[nt++] = q->t_first - q->t_start;
        if (q->out_tokens > 1)
            tpot[np++] = (q->t_end - q->t_first) / (q->out_tokens - 1);
        for (int k = 0; k < q->n_itl; k++)
            itl[ni++] = q->itl[k];
        t0 = ST_MIN(t0, q->t_start);
        t1 = ST_MAX(t1, q->t_end);
        n_tok += q->out_tokens;
    }
    st_sb_printf(&sb, "<p>%d of %d requests succeeded, %d output tokens.</p>\n", ok, n, n_tok);
    cdf_plot(&sb, "TTFT: time to first token", ttft, nt);
    cdf_plot(&sb, "TPOT: time per output token", tpot, np);
    cdf_plot(&sb, "ITL: inter-token latency", itl, ni);
    /* throughput over time: text events per bin (each a token, nearly) */
    enum { BINS = 40 };
    double bins[BINS] = {0}, bx[BINS], span = t1 > t0 ? t1 - t0 : 1, bw = span / BINS;
    for (int i = 0; i < n; i++) {
        const st_report_req *q = &r->reqs[i];
        if (q->failed)
            continue;
        double t = q->t_first;
        for (int k = -1; k < q->n_itl; k++) {
            if (k >= 0)
                t += q->itl[k];
            int b = (int)((t - t0) / bw);
            bins[b < 0 ? 0 : b >= BINS ? BINS - 1 : b] += 1.0 / bw;
        }
    }
    for (int b = 0; b < BINS; b++)
        bx[b] = (b + 0.5) * bw;
    series ts = {bx, bins, ok ? BINS : 0, "output tok/s", "#16a34a"};
    plot(&sb, "Output throughput over time", "seconds since the first request", "tokens per second", &ts, 1, 0);
    trace_plots(&sb, r->trace_json, r->trace_len, r->t0, r->t1);
    if (r->summary_json) {
        st_sb_puts(&sb, "<h2>Summary (JSON)</h2><pre>");
        esc(&sb, r->summary_json);
        st_sb_puts(&sb, "</pre>\n");
    }
    st_sb_puts(&sb, "</body></html>\n");
    free(ttft), free(tpot), free(itl);
    FILE *f = fopen(path, "w");
    int rc = ST_OK;
    if (!f || fwrite(sb.buf, 1, sb.len, f) != sb.len)
        rc = st_err(ST_EIO, "--report %s: cannot write the file", path);
    if (f && fclose(f) && rc == ST_OK)
        rc = st_err(ST_EIO, "--report %s: cannot write the file", path);
    st_sb_free(&sb);
    return rc;
}
