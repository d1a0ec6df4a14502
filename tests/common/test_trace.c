/* Tracing: sampling decisions, the lock-free rings under a concurrent
 * reader (no torn or reordered record), a request's Chrome-trace export
 * (parses, required fields, only its own records and its steps' records),
 * the trace file across ring wraps, and the aggregate histograms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/st_common.h"
#include "common/trace.h"
#include "tests/test.h"

#define RING_N 8192 /* TRACE_RING_N in common/trace_internal.h */

static void test_sample_parse(void)
{
    double p = -1;
    CHECK(st_trace_parse_sample("0", &p) == ST_OK && p == 0.0);
    CHECK(st_trace_parse_sample("0.01", &p) == ST_OK && p == 0.01);
    CHECK(st_trace_parse_sample("1", &p) == ST_OK && p == 1.0);
    const char *bad[] = {"", "-0.1", "1.5", "abc", "0.5x", "nan", "inf"};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        CHECKF(st_trace_parse_sample(bad[i], &p) == ST_EINVAL, "accepted '%s'", bad[i]);
        CHECKF(strstr(st_errmsg(), "trace-sample") != NULL, "message for '%s': %s", bad[i], st_errmsg());
    }
}

static int count_traced(double p, int n, uint64_t *first_id)
{
    st_trace_set_sample(p);
    int k = 0;
    uint64_t prev = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tid, id = st_trace_admit(&tid);
        CHECK(id > prev);
        prev = id;
        if (i == 0 && first_id)
            *first_id = id;
        CHECK(tid == 0 || tid == id);
        k += tid != 0;
    }
    return k;
}

static void test_sampling(void)
{
    CHECK(count_traced(0.0, 1000, NULL) == 0);
    CHECK(count_traced(1.0, 1000, NULL) == 1000);
    int k = count_traced(0.25, 1000, NULL);
    CHECKF(k == 250, "rate 0.25 traced %d of 1000", k);
    k = count_traced(0.01, 1000, NULL);
    CHECKF(k == 10, "rate 0.01 traced %d of 1000", k);
    CHECK_NEAR(st_trace_sample(), 0.01, 1e-9);
    st_trace_set_sample(0.0);
}

/* ---- rings under a concurrent reader ------------------------------------------------------- */
#define N_WRITERS 3
#define PER_WRITER (3 * RING_N + 123)

typedef struct writer_arg {
    int w;
    uint64_t last_req;
} writer_arg;

/* Every word of record i of writer w derives from (w, i), so a torn copy shows. */
static st_trace_rec make_rec(int w, uint64_t i)
{
    st_trace_rec r = {0};
    r.ts_ns = 1000000000ull + i * 10 + (uint64_t)w;
    r.dur_ns = i * 7 + 1;
    r.req = ((uint64_t)(w + 1) << 40) | i;
    r.step = i ^ 0x5555u;
    r.kind = ST_TK_DECODE;
    r.phase = 'X';
    r.n_seqs = (uint32_t)(i * 3);
    r.n_tokens = (uint32_t)(i * 5);
    r.pipe = (uint32_t)w;
    r.bytes = ~i;
    r.stage = (int32_t)(i & 0xffff);
    r.aux = (uint32_t)(i * 11);
    return r;
}

static int rec_consistent(const st_trace_rec *r)
{
    uint64_t w1 = r->req >> 40;
    if (w1 < 1 || w1 > N_WRITERS)
        return 0;
    st_trace_rec e = make_rec((int)w1 - 1, r->req & ((1ull << 40) - 1));
    return memcmp(&e, r, sizeof e) == 0;
}

/* writers stay alive until all are done: a finished thread's ring goes to the next new thread */
static pthread_barrier_t writers_done;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    char name[32];
    snprintf(name, sizeof name, "writer %d", a->w);
    st_trace_thread_name(name);
    for (uint64_t i = 0; i < PER_WRITER; i++) {
        st_trace_rec r = make_rec(a->w, i);
        st_trace_emit(&r);
    }
    a->last_req = ((uint64_t)(a->w + 1) << 40) | (PER_WRITER - 1);
    pthread_barrier_wait(&writers_done);
    return NULL;
}

static void test_rings_concurrent(void)
{
    st_trace_reset();
    pthread_barrier_init(&writers_done, NULL, N_WRITERS);
    pthread_t th[N_WRITERS];
    writer_arg args[N_WRITERS];
    for (int w = 0; w < N_WRITERS; w++) {
        args[w] = (writer_arg){.w = w};
        CHECK(pthread_create(&th[w], NULL, writer_main, &args[w]) == 0);
    }
    /* read while they write: every record seen must be whole */
    int rounds = 0, bad = 0;
    size_t seen = 0;
    for (; rounds < 50; rounds++) {
        st_trace_rec *recs;
        uint32_t *tids;
        size_t n;
        CHECK(st_trace_snapshot(&recs, &tids, &n) == ST_OK);
        for (size_t i = 0; i < n; i++) {
            if (recs[i].kind != ST_TK_DECODE)
                continue;
            bad += !rec_consistent(&recs[i]);
            seen++;
            if (i)
                bad += recs[i].ts_ns < recs[i - 1].ts_ns; /* sorted by time */
        }
        free(recs);
        free(tids);
    }
    for (int w = 0; w < N_WRITERS; w++)
        pthread_join(th[w], NULL);
    pthread_barrier_destroy(&writers_done);
    CHECKF(bad == 0, "%d torn or unsorted records among %zu read concurrently", bad, seen);

    /* at rest: each writer's ring holds its newest RING_N - 1 records, in order
     * (a reader cannot tell the oldest slot from one being overwritten) */
    st_trace_rec *recs;
    uint32_t *tids;
    size_t n;
    CHECK(st_trace_snapshot(&recs, &tids, &n) == ST_OK);
    size_t per[N_WRITERS] = {0};
    uint64_t last[N_WRITERS] = {0};
    int order_bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].kind != ST_TK_DECODE || !rec_consistent(&recs[i]))
            continue;
        int w = (int)(recs[i].req >> 40) - 1;
        uint64_t idx = recs[i].req & ((1ull << 40) - 1);
        if (per[w] && idx != last[w] + 1)
            order_bad++;
        if (!per[w] && idx != PER_WRITER - RING_N + 1)
            order_bad++;
        last[w] = idx;
        per[w]++;
    }
    for (int w = 0; w < N_WRITERS; w++) {
        CHECKF(per[w] == RING_N - 1, "writer %d: %zu records held, expected %d", w, per[w], RING_N - 1);
        CHECK(last[w] == PER_WRITER - 1);
    }
    CHECK(order_bad == 0);
    free(recs);
    free(tids);
}

/* ---- export ---------------------------------------------------------------------------- */
static const st_json *member(const st_json *o, const char *k) { return o ? st_json_get(o, k) : NULL; }

/* Parse a Chrome trace document; checks the required fields of every event.
 * Returns the parsed tree (caller frees) with its events in *ev. */
static st_json *parse_trace(const char *buf, size_t len, const st_json **ev)
{
    st_json *j = NULL;
    int rc = st_json_parse(buf, len, &j);
    CHECKF(rc == ST_OK, "trace JSON does not parse: %s", st_errmsg());
    if (rc)
        return NULL;
    const st_json *e = member(j, "traceEvents");
    CHECK(e && e->type == ST_JSON_ARRAY);
    *ev = e;
    if (!e || e->type != ST_JSON_ARRAY)
        return j;
    for (size_t i = 0; i < e->u.arr.n; i++) {
        const st_json *x = &e->u.arr.items[i];
        const char *ph = st_json_get_str(x, "ph", "");
        CHECKF(*st_json_get_str(x, "name", ""), "event %zu has no name", i);
        CHECKF(!strcmp(ph, "X") || !strcmp(ph, "i") || !strcmp(ph, "M"), "event %zu: ph '%s'", i, ph);
        CHECKF(member(x, "pid") && member(x, "pid")->type == ST_JSON_NUMBER, "event %zu: no pid", i);
        CHECKF(member(x, "tid") && member(x, "tid")->type == ST_JSON_NUMBER, "event %zu: no tid", i);
        if (strcmp(ph, "M")) {
            CHECKF(member(x, "ts") && st_json_get_num(x, "ts", -1) >= 0, "event %zu: no ts", i);
            CHECKF(member(x, "args") && member(x, "args")->type == ST_JSON_OBJECT, "event %zu: no args", i);
        }
        if (!strcmp(ph, "X"))
            CHECKF(st_json_get_num(x, "dur", -1) >= 0, "event %zu: X without a non-negative dur", i);
    }
    return j;
}

static void test_export_request(void)
{
    st_trace_reset();
    st_trace_set_sample(1.0);
    st_trace_thread_name("test main");
    uint64_t a_tid, b_tid;
    uint64_t a = st_trace_admit(&a_tid), b = st_trace_admit(&b_tid);
    CHECK(a_tid == a && b_tid == b);
    uint32_t pipe = st_trace_new_pipe();
    uint64_t t = st_now_ns();
    st_trace_instant(a, ST_TK_RECEIVED, t, 0, 0);
    st_trace_span(a, ST_TK_PARSED, t + 10, t + 20, 0, 0);
    st_trace_span(a, ST_TK_QUEUED, t + 20, t + 50, 0, 0);
    st_trace_step_part(a, ST_TK_PREFILL, 7, pipe, t + 50, t + 90, 12, 2);
    st_trace_step_part(b, ST_TK_PREFILL, 7, pipe, t + 50, t + 90, 3, 2);
    st_trace_step_span(a, ST_TK_STEP, 7, pipe, -1, t + 50, t + 90, 15, 2, 0);
    st_trace_step_span(b, ST_TK_STEP, 8, pipe, -1, t + 95, t + 99, 1, 1, 0); /* b alone */
    st_trace_step_span(0, ST_TK_STEP, 9, pipe, -1, t + 95, t + 99, 1, 1, 0); /* untraced: not recorded */
    st_trace_instant(a, ST_TK_ABORTED, t + 100, 3, 0);
    st_trace_instant(0, ST_TK_FINISHED, t + 100, 1, 0); /* untraced: not recorded */

    st_strbuf sb;
    st_sb_init(&sb);
    CHECK(st_trace_export_request(a, &sb) == ST_OK);
    const st_json *ev = NULL;
    st_json *j = parse_trace(sb.buf, sb.len, &ev);
    const char *want[] = {"received", "parsed", "queued", "prefill", "step", "aborted"};
    size_t k = 0;
    int foreign = 0;
    double last_ts = -1;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++) {
        const st_json *x = &ev->u.arr.items[i];
        if (!strcmp(st_json_get_str(x, "ph", ""), "M"))
            continue;
        const st_json *args = member(x, "args");
        double rid = st_json_get_num(args, "request_id", 0);
        foreign += rid != 0 && rid != (double)a;
        CHECK(st_json_get_num(x, "ts", 0) >= last_ts);
        last_ts = st_json_get_num(x, "ts", 0);
        if (k < ST_ARRAY_LEN(want) && !strcmp(st_json_get_str(x, "name", ""), want[k]))
            k++;
        if (!strcmp(st_json_get_str(x, "name", ""), "step"))
            CHECK(st_json_get_num(args, "step", 0) == 7);
    }
    CHECKF(k == ST_ARRAY_LEN(want), "only %zu of the expected spans in order", k);
    CHECK(foreign == 0);
    /* the last event is the abort, with its reason */
    const st_json *lastx = NULL;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++)
        if (strcmp(st_json_get_str(&ev->u.arr.items[i], "ph", ""), "M"))
            lastx = &ev->u.arr.items[i];
    CHECK(lastx && !strcmp(st_json_get_str(lastx, "name", ""), "aborted"));
    CHECK(lastx && !strcmp(st_json_get_str(member(lastx, "args"), "reason", ""), "abort"));
    /* a thread_name metadata event names this thread */
    CHECK(strstr(sb.buf, "\"thread_name\"") && strstr(sb.buf, "test main"));
    st_json_free(j);

    sb.len = 0;
    CHECK(st_trace_export_request(a + b + 1000, &sb) == ST_ENOENT);
    CHECK(strstr(st_errmsg(), "request") != NULL);
    CHECK(st_trace_export_request(0, &sb) == ST_EINVAL);

    sb.len = 0;
    CHECK(st_trace_export_all(&sb) == ST_OK);
    j = parse_trace(sb.buf, sb.len, &ev);
    size_t n_ev = 0;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++)
        n_ev += strcmp(st_json_get_str(&ev->u.arr.items[i], "ph", ""), "M") != 0;
    CHECKF(n_ev == 8, "export_all: %zu events, expected the 8 recorded", n_ev);
    st_json_free(j);
    st_sb_free(&sb);
    st_trace_set_sample(0.0);
}

static void test_file(void)
{
    char path[] = "/tmp/strait_trace_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(st_trace_open_file("") == ST_EINVAL);
    CHECK(st_trace_open_file("/nonexistent-dir/x.json") == ST_EIO);
    st_trace_rec early = make_rec(0, 1);
    st_trace_emit(&early); /* before opening: not in the file */
    uint64_t dropped0 = st_trace_dropped();
    CHECK(st_trace_open_file(path) == ST_OK);
    CHECK(st_trace_open_file(path) == ST_EINVAL); /* one at a time */
    const uint64_t n = 5 * RING_N / 2;            /* wraps the ring twice */
    for (uint64_t i = 0; i < n; i++) {
        st_trace_rec r = make_rec(1, i);
        st_trace_emit(&r);
    }
    CHECK(st_trace_close_file() == ST_OK);
    CHECK(st_trace_close_file() == ST_OK); /* closing twice is harmless */
    char *buf;
    size_t len;
    CHECK(st_read_file(path, &buf, &len) == ST_OK);
    const st_json *ev = NULL;
    st_json *j = parse_trace(buf, len, &ev);
    size_t n_ev = 0, bad = 0;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++) {
        const st_json *x = &ev->u.arr.items[i];
        if (strcmp(st_json_get_str(x, "ph", ""), "X"))
            continue;
        n_ev++;
        bad += st_json_get_num(member(x, "args"), "request_id", 0) < (double)(2ull << 40);
    }
    uint64_t lost = st_trace_dropped() - dropped0;
    CHECKF(n_ev + lost == n, "file holds %zu events + %llu dropped, %llu were recorded", n_ev,
           (unsigned long long)lost, (unsigned long long)n);
    CHECK(n_ev >= RING_N - 1); /* at least the last ring's worth */
    CHECK(bad == 0);
    printf("trace file: %zu of %llu events written, %llu lost to wrapping\n", n_ev, (unsigned long long)n,
           (unsigned long long)lost);
    st_json_free(j);
    free(buf);
    unlink(path);
}

static void test_histograms(void)
{
    st_trace_hist h0, h1;
    const char *label;
    CHECK(st_trace_hist_get(ST_TH_QUEUE, &h0, &label) == ST_OK && !strcmp(label, "queue"));
    st_trace_observe(ST_TH_QUEUE, 30000);      /* 30 us: first bucket */
    st_trace_observe(ST_TH_QUEUE, 3000000000); /* 3 s */
    st_trace_observe(-1, 5);                   /* ignored */
    st_trace_observe(ST_TH_COUNT, 5);          /* ignored */
    CHECK(st_trace_hist_get(ST_TH_QUEUE, &h1, &label) == ST_OK);
    CHECK(h1.counts[0] == h0.counts[0] + 1);
    const double *b = st_trace_hist_bounds();
    int k3 = 0;
    while (k3 < ST_TRACE_HIST_BOUNDS && 3.0 > b[k3])
        k3++;
    CHECK(h1.counts[k3] == h0.counts[k3] + 1);
    CHECK(h1.sum_ns == h0.sum_ns + 3000030000ull);

    int l1 = st_trace_link("head -> stage 0"), l2 = st_trace_link("stage 0..12 ->");
    CHECK(l1 >= ST_TH_FIXED && l2 >= ST_TH_FIXED && l1 != l2);
    CHECK(st_trace_link("head -> stage 0") == l1);
    st_trace_observe(l2, 1000);
    CHECK(st_trace_hist_get(l2, &h1, &label) == ST_OK && !strcmp(label, "stage 0..12 ->"));
    CHECK(h1.sum_ns == 1000);
    int last = -2;
    for (int i = 0; i < 2 * ST_TRACE_MAX_LINKS; i++) {
        char name[32];
        snprintf(name, sizeof name, "link %d", i);
        last = st_trace_link(name);
    }
    CHECK(last == -1); /* the table is full */
    CHECK(st_trace_hist_get(ST_TH_COUNT, &h1, &label) == ST_ENOENT);
}

int main(void)
{
    test_sample_parse();
    test_sampling();
    test_rings_concurrent();
    test_export_request();
    test_file();
    test_histograms();
    return test_done();
}
