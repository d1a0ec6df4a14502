/* Serving load generator (see serve_bench.h).
 *
 * One thread, one epoll loop, one TCP connection per request in flight
 * (connections are kept alive and reused, as a pool of HTTP/1.1 clients
 * would). The loop launches request i once its Poisson arrival time has
 * come and fewer than --max-concurrency requests are in flight; it stamps
 * the launch, every SSE event that carries text, and the end. From those:
 *   TTFT  = first text event - launch
 *   ITL   = gaps between consecutive text events (each one a sample)
 *   TPOT  = (end - first text event) / (output tokens - 1), per request
 *   E2E   = end - launch
 * Output tokens come from the server's usage (stream_options.include_usage)
 * when it sends one, else from the number of text events. */
#define _GNU_SOURCE
#include "bench/serve_bench.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/report.h"
#include "bench/serve_client.h"
#include "bench/serve_opts.h"
#include "bench/serve_prompts.h"
#include "common/json.h"
#include "common/st_common.h"

#define V "strait bench serve"


/* ---- one request ---------------------------------------------------------- */

enum { RQ_IDLE, RQ_CONNECTING, RQ_SENDING, RQ_RECEIVING, RQ_DONE };

typedef struct req {
    int state, fd, reused, retried, got_bytes;
    st_strbuf out;          /* the serialized HTTP request */
    size_t out_off;         /* bytes of out already written */
    st_http_resp resp;
    const char *method, *path;
    const char *body;       /* JSON body or NULL (owned by the caller) */
    size_t body_len;
    double t_start, t_first, t_last, t_end, deadline;
    int n_events;           /* SSE events that carried text */
    int usage_prompt, usage_completion; /* -1 when the server sent no usage */
    double *itl;            /* (n_itl,) seconds */
    int n_itl, cap_itl;
    int failed;
    char err[240];
} req;

static void req_fail(req *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void req_fail(req *q, const char *fmt, ...)
{
    if (q->failed)
        return;
    q->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
}

/* One SSE `data:` payload of a completion stream. */
static void on_event(void *ctx, const char *d, size_t n)
{
    req *q = ctx;
    double now = st_now_s();
    if (n == 6 && !memcmp(d, "[DONE]", 6))
        return;
    st_json *j = NULL;
    if (st_json_parse(d, n, &j)) {
        req_fail(q, "an SSE event is not JSON: %.80s", d);
        return;
    }
    const st_json *e = st_json_get(j, "error");
    if (e)
        req_fail(q, "error event: %.160s", st_json_get_str(e, "message", "(no message)"));
    const st_json *ch = st_json_get(j, "choices");
    if (ch && ch->type == ST_JSON_ARRAY && ch->u.arr.n > 0) {
        const st_json *c0 = &ch->u.arr.items[0], *t = st_json_get(c0, "text");
        if (!t)
            t = st_json_get(st_json_get(c0, "delta"), "content");
        if (t && t->type == ST_JSON_STRING && t->u.str.len > 0) {
            if (!q->n_events) {
                q->t_first = now;
            } else {
                if (q->n_itl == q->cap_itl) {
                    q->cap_itl = q->cap_itl ? 2 * q->cap_itl : 64;
                    q->itl = st_xrealloc(q->itl, sizeof(double) * (size_t)q->cap_itl);
                }
                q->itl[q->n_itl++] = now - q->t_last;
            }
            q->t_last = now;
            q->n_events++;
        }
    }
    const st_json *u = st_json_get(j, "usage");
    if (u && u->type == ST_JSON_OBJECT) {
        q->usage_prompt = (int)st_json_get_num(u, "prompt_tokens", -1);
        q->usage_completion = (int)st_json_get_num(u, "completion_tokens", -1);
    }
    st_json_free(j);
}

/* ---- the event loop ------------------------------------------------------- */

typedef struct loop {
    int ep;
    const sopts *o;
    struct addrinfo *ai;
    int *idle;              /* keep-alive connections ready for a request */
    int n_idle, cap_idle;
} loop;

static void close_fd(loop *L, int fd)
{
    epoll_ctl(L->ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

static void build_request(const sopts *o, req *q)
{
    st_sb_init(&q->out);
    st_sb_printf(&q->out, "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: strait-bench-serve\r\nAccept: */*\r\n",
                 q->method, o->base, q->path, o->host, o->port);
    if (o->api_key)
        st_sb_printf(&q->out, "Authorization: Bearer %s\r\n", o->api_key);
    if (q->body)
        st_sb_printf(&q->out, "Content-Type: application/json\r\nContent-Length: %zu\r\n", q->body_len);
    st_sb_puts(&q->out, "\r\n");
    if (q->body)
        st_sb_putn(&q->out, q->body, q->body_len);
}

/* Attach a connection (a kept-alive one if any) and start writing. */
static int req_connect(loop *L, req *q)
{
    q->out_off = 0;
    q->got_bytes = 0;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = q};
    if (L->n_idle) {
        q->fd = L->idle[--L->n_idle];
        q->reused = 1;
        q->state = RQ_SENDING;
        return epoll_ctl(L->ep, EPOLL_CTL_ADD, q->fd, &ev) ? -1 : 0;
    }
    q->reused = 0;
    q->fd = socket(L->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0)
        return -1;
    int one = 1;
    setsockopt(q->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(q->fd, L->ai->ai_addr, L->ai->ai_addrlen) && errno != EINPROGRESS) {
        close(q->fd);
        q->fd = -1;
        return -1;
    }
    q->state = RQ_CONNECTING;
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, q->fd, &ev)) {
        close(q->fd);
        q->fd = -1;
        return -1;
    }
    return 0;
}

static void req_start(loop *L, req *q, int sse)
{
    st_http_resp_init(&q->resp, sse, on_event, q);
    q->usage_prompt = q->usage_completion = -1;
    q->t_start = st_now_s();
    q->deadline = q->t_start + L->o->timeout_s;
    build_request(L->o, q);
    if (req_connect(L, q)) {
        req_fail(q, "cannot connect to %s: %s", L->o->url, strerror(errno));
        q->state = RQ_DONE;
        q->t_end = st_now_s();
    }
}

static void req_end(loop *L, req *q)
{
    q->t_end = st_now_s();
    q->state = RQ_DONE;
    if (q->fd >= 0) {
        if (!q->failed && q->resp.done && q->resp.keep_alive) {
            epoll_ctl(L->ep, EPOLL_CTL_DEL, q->fd, NULL);
            if (L->n_idle == L->cap_idle) {
                L->cap_idle = L->cap_idle ? 2 * L->cap_idle : 16;
                L->idle = st_xrealloc(L->idle, sizeof(int) * (size_t)L->cap_idle);
            }
            L->idle[L->n_idle++] = q->fd;
        } else {
            close_fd(L, q->fd);
        }
        q->fd = -1;
    }
    if (!q->failed && q->resp.status != 200) {
        const char *msg = "";
        st_json *j = NULL;
        if (q->resp.body.len && !st_json_parse(q->resp.body.buf, q->resp.body.len, &j))
            msg = st_json_get_str(st_json_get(j, "error"), "message", "");
        req_fail(q, "HTTP %d %.160s", q->resp.status, *msg ? msg : q->resp.body.buf ? q->resp.body.buf : "");
        if (j)
            st_json_free(j);
    }
    st_sb_free(&q->out);
}

/* A kept-alive connection the server had closed: try once more on a new one. */
static int retry_fresh(loop *L, req *q)
{
    if (!q->reused || q->got_bytes || q->retried)
        return 0;
    close_fd(L, q->fd);
    q->fd = -1;
    q->retried = 1;
    int sse = q->resp.sse;
    st_http_resp_free(&q->resp);
    st_http_resp_init(&q->resp, sse, on_event, q);
    while (L->n_idle) /* its neighbours in the pool are likely stale too */
        close(L->idle[--L->n_idle]);
    return req_connect(L, q) == 0;
}

static void on_io(loop *L, req *q, uint32_t events)
{
    if (q->state == RQ_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            req_fail(q, "cannot connect to %s: %s", L->o->url, strerror(err));
            return req_end(L, q);
        }
        q->state = RQ_SENDING;
    }
    if (q->state == RQ_SENDING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        while (q->out_off < q->out.len) {
            ssize_t k = send(q->fd, q->out.buf + q->out_off, q->out.len - q->out_off, MSG_NOSIGNAL);
            if (k < 0 && errno == EAGAIN)
                return;
            if (k < 0) {
                if (retry_fresh(L, q))
                    return;
                req_fail(q, "send: %s", strerror(errno));
                return req_end(L, q);
            }
            q->out_off += (size_t)k;
        }
        q->state = RQ_RECEIVING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = q};
        epoll_ctl(L->ep, EPOLL_CTL_MOD, q->fd, &ev);
        return;
    }
    if (q->state != RQ_RECEIVING)
        return;
    char buf[65536];
    for (;;) {
        ssize_t k = recv(q->fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            if (retry_fresh(L, q))
                return;
            if (k < 0)
                req_fail(q, "recv: %s", strerror(errno));
            else if (st_http_resp_eof(&q->resp))
                req_fail(q, "%s", st_errmsg());
            q->resp.keep_alive = 0;
            return req_end(L, q);
        }
        q->got_bytes = 1;
        if (st_http_resp_feed(&q->resp, buf, (size_t)k)) {
            req_fail(q, "bad response: %s", st_errmsg());
            q->resp.keep_alive = 0;
            return req_end(L, q);
        }
        if (q->resp.done)
            return req_end(L, q);
    }
}

/* Run reqs[0..n) with start times t0 + arrival[i] (NULL: all at once) and
 * at most max_conc in flight (0: no bound). Returns the wall time from the
 * first launch to the last end. */
static double run_requests(loop *L, req *reqs, int n, const double *arrival, int max_conc, int sse)
{
    int next = 0, in_flight = 0, done = 0;
    double t0 = st_now_s();
    struct epoll_event evs[64];
    while (done < n) {
        double now = st_now_s();
        while (next < n && (!max_conc || in_flight < max_conc) && (!arrival || t0 + arrival[next] <= now)) {
            req_start(L, &reqs[next], sse);
            if (reqs[next].state == RQ_DONE)
                done++;
            else
                in_flight++;
            next++;
        }
        double wait = 0.2;
        if (arrival && next < n && (!max_conc || in_flight < max_conc))
            wait = ST_MIN(wait, t0 + arrival[next] - now);
        int ms = wait <= 0 ? 0 : (int)ceil(wait * 1e3);
        int ne = epoll_wait(L->ep, evs, 64, ms);
        for (int i = 0; i < ne; i++) {
            req *q = evs[i].data.ptr;
            if (q->state == RQ_DONE)
                continue;
            on_io(L, q, evs[i].events);
            if (q->state == RQ_DONE)
                done++, in_flight--;
        }
        now = st_now_s();
        for (int i = 0; i < next; i++) {
            req *q = &reqs[i];
            if (q->state != RQ_DONE && now > q->deadline) {
                req_fail(q, "no complete response within --timeout %.0f s", L->o->timeout_s);
                q->resp.keep_alive = 0;
                req_end(L, q);
                done++, in_flight--;
            }
        }
    }
    double end = t0;
    for (int i = 0; i < n; i++)
        end = ST_MAX(end, reqs[i].t_end);
    return end - t0;
}

static void req_free(req *q)
{
    st_http_resp_free(&q->resp);
    st_sb_free(&q->out);
    free(q->itl);
}

/* ---- statistics and report ------------------------------------------------ */

typedef struct dist {
    double mean, p50, p90, p99;
    int n;
} dist;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Mean and linearly interpolated percentiles of v (sorted in place), in ms. */
static dist summarize(double *v, int n)
{
    dist d = {0};
    d.n = n;
    if (!n)
        return d;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    d.mean = 1e3 * s / n;
    double *ps[] = {&d.p50, &d.p90, &d.p99};
    const double qs[] = {0.50, 0.90, 0.99};
    for (int k = 0; k < 3; k++) {
        double x = qs[k] * (n - 1);
        int lo = (int)x;
        int hi = ST_MIN(lo + 1, n - 1);
        *ps[k] = 1e3 * (v[lo] + (x - lo) * (v[hi] - v[lo]));
    }
    return d;
}

static void print_dist_row(const char *name, const dist *d)
{
    if (d->n)
        printf("%-10s %10.2f %10.2f %10.2f %10.2f\n", name, d->mean, d->p50, d->p90, d->p99);
    else
        printf("%-10s %10s %10s %10s %10s\n", name, "-", "-", "-", "-");
}

static void json_dist(const char *name, const dist *d)
{
    printf(",\"%s\":{\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f}", name, d->mean, d->p50, d->p90, d->p99);
}

/* Returns the number of failed requests. */
static int report(const sopts *o, req *reqs, int n, double duration)
{
    double *ttft = st_xmalloc(sizeof(double) * (size_t)n), *tpot = st_xmalloc(sizeof(double) * (size_t)n);
    double *e2e = st_xmalloc(sizeof(double) * (size_t)n);
    size_t n_itl_all = 0;
    for (int i = 0; i < n; i++)
        n_itl_all += (size_t)reqs[i].n_itl;
    double *itl = st_xmalloc(sizeof(double) * (n_itl_all + 1));
    int ok = 0, nt = 0, ni = 0, shown = 0;
    long long in_tok = 0, out_tok = 0;
    for (int i = 0; i < n; i++) {
        req *q = &reqs[i];
        if (!q->failed && !q->n_events)
            req_fail(q, "the stream ended without any text");
        if (q->failed) {
            if (shown++ < 3)
                fprintf(stderr, "%s: request %d failed: %s\n", V, i, q->err);
            continue;
        }
        ok++;
        int out = q->usage_completion > 0 ? q->usage_completion : q->n_events;
        out_tok += out;
        in_tok += q->usage_prompt > 0 ? q->usage_prompt : 0;
        ttft[ok - 1] = q->t_first - q->t_start;
        e2e[ok - 1] = q->t_end - q->t_start;
        if (out > 1)
            tpot[nt++] = (q->t_end - q->t_first) / (out - 1);
        for (int k = 0; k < q->n_itl; k++)
            itl[ni++] = q->itl[k];
    }
    dist dt = summarize(ttft, ok), dp = summarize(tpot, nt), di = summarize(itl, ni), de = summarize(e2e, ok);
    int errors = n - ok;
    double req_s = ok / duration, out_s = (double)out_tok / duration, tot_s = (double)(in_tok + out_tok) / duration;
    char conc[32], rate[32];
    snprintf(conc, sizeof conc, o->max_conc ? "%d" : "unbounded", o->max_conc);
    snprintf(rate, sizeof rate, o->rate > 0 ? "%.3g/s" : "inf", o->rate);
    printf("url              %s (%s, model %s)\n", o->url, o->chat ? "/v1/chat/completions" : "/v1/completions",
           o->model);
    printf("load             %d requests, concurrency %s, rate %s, %s prompts, %d output tokens%s\n",
           o->num_requests, conc, rate, o->dataset ? "dataset" : "random", o->output_len,
           o->ignore_eos ? " (ignore_eos)" : "");
    printf("completed        %d ok, %d errors in %.2f s\n", ok, errors, duration);
    printf("tokens           %lld prompt (%.1f per request), %lld output (%.1f per request)\n", in_tok,
           ok ? (double)in_tok / ok : 0.0, out_tok, ok ? (double)out_tok / ok : 0.0);
    printf("throughput       %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", req_s, out_s, tot_s);
    printf("%-10s %10s %10s %10s %10s\n", "ms", "mean", "p50", "p90", "p99");
    print_dist_row("TTFT", &dt);
    print_dist_row("TPOT", &dp);
    print_dist_row("ITL", &di);
    print_dist_row("E2E", &de);
    if (o->json) {
        st_strbuf sb;
        st_sb_init(&sb);
        st_sb_puts(&sb, "{\"bench\":\"serve\",\"url\":");
        st_sb_json_str(&sb, o->url, strlen(o->url));
        st_sb_puts(&sb, ",\"model\":");
        st_sb_json_str(&sb, o->model, strlen(o->model));
        printf("%s,\"endpoint\":\"%s\",\"num_requests\":%d,\"max_concurrency\":%d,\"request_rate\":%.6g,"
               "\"input_len\":%d,\"output_len\":%d,\"completed\":%d,\"errors\":%d,\"duration_s\":%.4f,"
               "\"prompt_tokens\":%lld,\"output_tokens\":%lld,\"request_throughput\":%.4f,\"output_tok_s\":%.3f,"
               "\"total_tok_s\":%.3f",
               sb.buf, o->chat ? "chat" : "completions", o->num_requests, o->max_conc, o->rate, o->input_len,
               o->output_len, ok, errors, duration, in_tok, out_tok, req_s, out_s, tot_s);
        if (o->trace_label >= 0)
            printf(",\"trace_sample\":%g", o->trace_label);
        json_dist("ttft_ms", &dt);
        json_dist("tpot_ms", &dp);
        json_dist("itl_ms", &di);
        json_dist("e2e_ms", &de);
        printf("}\n");
        st_sb_free(&sb);
    }
    fflush(stdout);
    free(ttft), free(tpot), free(e2e), free(itl);
    return errors;
}

/* ---- main ----------------------------------------------------------------- */

static char *request_body(const sopts *o, const char *prompt, size_t *len)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"model\":");
    st_sb_json_str(&sb, o->model, strlen(o->model));
    if (o->chat) {
        st_sb_puts(&sb, ",\"messages\":[{\"role\":\"user\",\"content\":");
        st_sb_json_str(&sb, prompt, strlen(prompt));
        st_sb_puts(&sb, "}]");
    } else {
        st_sb_puts(&sb, ",\"prompt\":");
        st_sb_json_str(&sb, prompt, strlen(prompt));
    }
    st_sb_printf(&sb, ",\"max_tokens\":%d,\"temperature\":%g,\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true}%s}",
                 o->output_len, o->temperature, o->ignore_eos ? ",\"ignore_eos\":true" : "");
    *len = sb.len;
    return sb.buf;
}

/* GET /v1/models and keep data[0].id. */
static int fetch_model(loop *L, sopts *o, char **model)
{
    req q = {.fd = -1, .method = "GET", .path = "/v1/models"};
    run_requests(L, &q, 1, NULL, 1, 0);
    int rc = 0;
    st_json *j = NULL;
    if (q.failed) {
        fprintf(stderr, "%s: cannot list the models of %s: %s\n", V, o->url, q.err);
        rc = 1;
    } else if (st_json_parse(q.resp.body.buf ? q.resp.body.buf : "", q.resp.body.len, &j) ||
               !st_json_get(j, "data") || st_json_get(j, "data")->type != ST_JSON_ARRAY ||
               !st_json_get(j, "data")->u.arr.n ||
               !st_json_get_str(&st_json_get(j, "data")->u.arr.items[0], "id", NULL)) {
        fprintf(stderr, "%s: %s/v1/models did not list a model; pass --model\n", V, o->url);
        rc = 1;
    } else {
        *model = st_xstrdup(st_json_get_str(&st_json_get(j, "data")->u.arr.items[0], "id", NULL));
        o->model = *model;
    }
    if (j)
        st_json_free(j);
    req_free(&q);
    return rc;
}

/* ---- tracing: a blocking side channel to the server's /debug/trace -------- */

/* One request on a fresh connection (Connection: close), the whole body
 * read to EOF (traces are larger than the load loop keeps). Returns the
 * HTTP status, or -1 with *body holding the reason. */
static int simple_http(loop *L, const char *method, const char *path, st_strbuf *body)
{
    const sopts *o = L->o;
    body->len = 0;
    int fd = socket(L->ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, L->ai->ai_addr, L->ai->ai_addrlen)) {
        st_sb_printf(body, "cannot connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    st_strbuf rq;
    st_sb_init(&rq);
    st_sb_printf(&rq, "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nContent-Length: 0\r\n", method,
                 o->base, path, o->host, o->port);
    if (o->api_key)
        st_sb_printf(&rq, "Authorization: Bearer %s\r\n", o->api_key);
    st_sb_puts(&rq, "\r\n");
    size_t off = 0;
    while (off < rq.len) {
        ssize_t k = write(fd, rq.buf + off, rq.len - off);
        if (k <= 0 && errno != EINTR)
            break;
        off += k > 0 ? (size_t)k : 0;
    }
    st_sb_free(&rq);
    st_strbuf all;
    st_sb_init(&all);
    char buf[65536];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        st_sb_putn(&all, buf, (size_t)k);
    }
    close(fd);
    int status = -1;
    const char *hend = all.buf ? strstr(all.buf, "\r\n\r\n") : NULL;
    if (!all.buf || sscanf(all.buf, "HTTP/1.%*d %d", &status) != 1 || !hend) {
        st_sb_puts(body, "no HTTP response");
        st_sb_free(&all);
        return -1;
    }
    hend += 4;
    st_sb_putn(body, hend, all.len - (size_t)(hend - all.buf));
    st_sb_free(&all);
    return status;
}

/* Set the server's sampling rate; *prev gets the old one. */
static int set_trace_sample(loop *L, double p, double *prev)
{
    char path[64];
    snprintf(path, sizeof path, "/debug/trace/sample?p=%g", p);
    st_strbuf b;
    st_sb_init(&b);
    int st = simple_http(L, "POST", path, &b);
    st_json *j = NULL;
    int rc = 0;
    if (st != 200 || st_json_parse(b.buf ? b.buf : "", b.len, &j)) {
        fprintf(stderr, "%s: --trace: POST %s answered %d: %.200s (is it a strait server?)\n", V, path, st,
                b.buf ? b.buf : "");
        rc = 1;
    } else if (prev) {
        *prev = st_json_get_num(j, "previous", 0);
    }
    if (j)
        st_json_free(j);
    st_sb_free(&b);
    return rc;
}

static double out_tok_s(const req *reqs, int n, double dur)
{
    long long t = 0;
    for (int i = 0; i < n; i++)
        if (!reqs[i].failed)
            t += reqs[i].usage_completion > 0 ? reqs[i].usage_completion : reqs[i].n_events;
    return dur > 0 ? (double)t / dur : 0;
}

static int write_report(const sopts *o, const req *reqs, int n, const st_strbuf *trace)
{
    st_report_req *rr = st_xcalloc((size_t)n + 1, sizeof *rr);
    for (int i = 0; i < n; i++) {
        const req *q = &reqs[i];
        rr[i] = (st_report_req){q->t_start, q->t_first, q->t_end, q->itl, q->n_itl,
                                q->usage_completion > 0 ? q->usage_completion : q->n_events,
                                q->failed || !q->n_events};
    }
    char title[1024], conc[32], rate[32];
    snprintf(conc, sizeof conc, o->max_conc ? "%d" : "unbounded", o->max_conc);
    snprintf(rate, sizeof rate, o->rate > 0 ? "%.3g/s" : "inf", o->rate);
    snprintf(title, sizeof title, "%s (%s), model %s: %d requests, concurrency %s, rate %s, %d input words, %d "
             "output tokens%s", o->url, o->chat ? "chat" : "completions", o->model, o->num_requests, conc, rate,
             o->input_len, o->output_len, o->trace ? ", trace sample 1" : "");
    double t0 = 1e300, t1 = 0;
    for (int i = 0; i < n; i++) {
        t0 = ST_MIN(t0, reqs[i].t_start);
        t1 = ST_MAX(t1, reqs[i].t_end);
    }
    st_report r = {title, NULL, rr, n, trace && trace->len ? trace->buf : NULL, trace ? trace->len : 0, t0, t1};
    int rc = st_bench_report_html(o->report_html, &r);
    if (rc)
        fprintf(stderr, "%s: %s\n", V, st_errmsg());
    else
        fprintf(stderr, "%s: wrote the report to %s\n", V, o->report_html);
    free(rr);
    return rc ? 1 : 0;
}

int st_bench_serve_main(int argc, char **argv)
{
    sopts o;
    int rc = st_serve_opts_parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(o.host, o.port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "%s: cannot resolve the host of --url %s: %s\n", V, o.url, gai_strerror(gai));
        return 1;
    }
    loop L = {.ep = epoll_create1(EPOLL_CLOEXEC), .o = &o, .ai = ai};
    char *model = NULL;
    st_prompt_set ps = {0};
    req *reqs = NULL;
    char **bodies = NULL;
    size_t *blens = NULL;
    double *arrival = NULL;
    int n_all = o.warmup + o.num_requests, exit_code = 1, n_traced = o.trace ? o.num_requests : 0;
    double prev_sample = 0;
    int sample_changed = 0;
    st_strbuf trace;
    st_sb_init(&trace);
    if (L.ep < 0) {
        fprintf(stderr, "%s: epoll_create1: %s\n", V, strerror(errno));
        goto out;
    }
    if (!o.model && fetch_model(&L, &o, &model))
        goto out;
    if (o.dataset) {
        if (st_prompts_load(o.dataset, &ps)) {
            fprintf(stderr, "%s: --dataset: %s\n", V, st_errmsg());
            exit_code = 2;
            goto out;
        }
    } else {
        st_prompts_random(n_all + n_traced, o.input_len, o.seed, &ps);
    }
    reqs = st_xcalloc((size_t)(n_all + n_traced), sizeof *reqs);
    bodies = st_xcalloc((size_t)(n_all + n_traced), sizeof *bodies);
    blens = st_xcalloc((size_t)(n_all + n_traced), sizeof *blens);
    for (int i = 0; i < n_all + n_traced; i++) {
        /* warm-up requests take the prompts after the measured ones, the traced run those after them
         * (other prompts: a prefix cache must not favour the second run) */
        int pi = (i < o.warmup ? o.num_requests + i : i < n_all ? i - o.warmup : i) % ps.n;
        bodies[i] = request_body(&o, ps.text[pi], &blens[i]);
        reqs[i] = (req){.fd = -1, .method = "POST", .path = o.chat ? "/v1/chat/completions" : "/v1/completions",
                        .body = bodies[i], .body_len = blens[i]};
    }
    for (int i = 0; i < o.warmup; i++) {
        run_requests(&L, &reqs[i], 1, NULL, 1, 1);
        if (!reqs[i].failed && !reqs[i].n_events)
            req_fail(&reqs[i], "the stream ended without any text");
        if (reqs[i].failed) {
            fprintf(stderr, "%s: the warm-up request failed: %s\n", V, reqs[i].err);
            goto out;
        }
    }
    if (o.rate > 0) { /* Poisson process: exponential gaps */
        arrival = st_xmalloc(sizeof(double) * (size_t)o.num_requests);
        uint64_t x = o.seed * 0x9E3779B97F4A7C15ull + 0x1234567;
        double t = 0;
        for (int i = 0; i < o.num_requests; i++) {
            arrival[i] = t;
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
            double u = (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0; /* [0, 1) */
            t += -log1p(-u) / o.rate;
        }
    }
    if (o.trace) {
        if (set_trace_sample(&L, 0, &prev_sample))
            goto out;
        sample_changed = 1;
        o.trace_label = 0;
    }
    req *meas = reqs + o.warmup;
    double dur = run_requests(&L, meas, o.num_requests, arrival, o.max_conc, 1);
    int errors = report(&o, meas, o.num_requests, dur > 0 ? dur : 1e-9);
    if (o.trace) { /* the same load, other prompts, every request traced */
        if (set_trace_sample(&L, 1, NULL))
            goto out;
        o.trace_label = 1;
        req *tr = reqs + n_all;
        double dur1 = run_requests(&L, tr, o.num_requests, arrival, o.max_conc, 1);
        errors += report(&o, tr, o.num_requests, dur1 > 0 ? dur1 : 1e-9);
        double t0 = out_tok_s(meas, o.num_requests, dur), t1 = out_tok_s(tr, o.num_requests, dur1);
        printf("trace overhead   output tok/s %.1f at sample 0, %.1f at sample 1: ratio %.4f\n", t0, t1,
               t0 > 0 ? t1 / t0 : 0);
        if (o.json)
            printf("{\"bench\":\"serve_trace_overhead\",\"output_tok_s_sample0\":%.3f,\"output_tok_s_sample1\":%.3f,"
                   "\"ratio\":%.5f}\n", t0, t1, t0 > 0 ? t1 / t0 : 0);
        int st = simple_http(&L, "GET", "/debug/trace", &trace);
        const char *tf = o.trace_out ? o.trace_out : "serve-trace.json";
        FILE *f = st == 200 ? fopen(tf, "w") : NULL;
        if (st != 200) {
            fprintf(stderr, "%s: GET /debug/trace answered %d: %.200s\n", V, st, trace.buf ? trace.buf : "");
            trace.len = 0;
        } else if (!f || fwrite(trace.buf, 1, trace.len, f) != trace.len) {
            fprintf(stderr, "%s: cannot write the trace to %s\n", V, tf);
        } else {
            printf("trace            %zu bytes of Chrome trace JSON in %s (chrome://tracing, ui.perfetto.dev)\n",
                   trace.len, tf);
        }
        if (f)
            fclose(f);
        meas = tr;
    } else if (o.report_html && simple_http(&L, "GET", "/debug/trace", &trace) != 200) {
        trace.len = 0; /* not a strait server, or nothing sampled: the report says so */
    }
    fflush(stdout);
    int report_bad = o.report_html && write_report(&o, meas, o.num_requests, &trace);
    if (errors)
        fprintf(stderr, "%s: %d of %d requests failed\n", V, errors, o.num_requests);
    exit_code = errors || report_bad ? 1 : 0;
out:
    if (sample_changed)
        (void)set_trace_sample(&L, prev_sample, NULL);
    st_sb_free(&trace);
    for (int i = 0; reqs && i < n_all + n_traced; i++) {
        if (reqs[i].fd >= 0)
            close(reqs[i].fd);
        req_free(&reqs[i]);
        free(bodies[i]);
    }
    while (L.n_idle)
        close(L.idle[--L.n_idle]);
    free(L.idle);
    free(reqs), free(bodies), free(blens), free(arrival), free(model);
    st_prompts_free(&ps);
    if (L.ep >= 0)
        close(L.ep);
    freeaddrinfo(ai);
    return exit_code;
}
