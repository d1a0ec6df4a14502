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


/* A node's side: st_trace_take_new hands each record over once, in full,
 * and nothing when nothing new was recorded. */
static void test_take_new(void)
{
    st_trace_reset();
    st_trace_rec buf[64];
    uint32_t tids[64];
    CHECK(st_trace_take_new(buf, tids, 64) == 0);
    uint64_t t = st_now_ns();
    for (int i = 0; i < 10; i++)
        st_trace_step_span(42, ST_TK_STAGE, 100 + (uint64_t)i, 0, 15, t + (uint64_t)i * 10, t + (uint64_t)i * 10 + 5,
                           3, 1, 0);
    size_t n = st_trace_take_new(buf, tids, 4); /* a small cap: the rest comes next time */
    CHECK(n == 4);
    size_t m = st_trace_take_new(buf + 4, tids + 4, 60);
    CHECKF(n + m == 10, "took %zu + %zu records of 10", n, m);
    for (size_t i = 0; i < n + m; i++) {
        CHECK(buf[i].step == 100 + i && buf[i].kind == ST_TK_STAGE && buf[i].dur_ns == 5 && buf[i].stage == 15);
        CHECK(buf[i].aux == 42); /* the step names the request that marked it */
        CHECK(tids[i] == tids[0] && tids[i] > 0);
    }
    CHECK(st_trace_take_new(buf, tids, 64) == 0);
    uint32_t th[8];
    char names[8][48];
    CHECK(st_trace_threads(th, names, 8) >= 1);
}

/* The scheduler's side: a node's records, imported with a clock offset,
 * appear in the request's export shifted onto our clock, in time order,
 * under the node's own pid and name (with offset and uncertainty). */
static void test_import(void)
{
    st_trace_reset();
    st_trace_set_node(4242, "sched");
    uint64_t tid_a, tid_b;
    uint64_t a = st_trace_admit(&tid_a), b = st_trace_admit(&tid_b);
    (void)tid_a, (void)tid_b;
    uint64_t t = 5000000000ull; /* ns */
    st_trace_instant(a, ST_TK_RECEIVED, t, 0, 0);
    st_trace_instant(a, ST_TK_FINISHED, t + 1000000, 1, 0);
    st_trace_instant(b, ST_TK_RECEIVED, t, 0, 0);
    /* the node's clock runs 2 s ahead of ours: its records say t + 2 s + ... */
    const int64_t off = 2000000000;
    st_trace_rec nr[3] = {
        {.ts_ns = t + (uint64_t)off + 300000, .dur_ns = 50000, .step = 3, .kind = ST_TK_STAGE, .phase = 'X',
         .stage = 15, .aux = (uint32_t)a},
        {.ts_ns = t + (uint64_t)off + 200000, .dur_ns = 1000, .step = 3, .kind = ST_TK_HOP_RECV, .phase = 'X',
         .stage = 15, .aux = (uint32_t)a},
        {.ts_ns = t + (uint64_t)off + 400000, .dur_ns = 7, .step = 4, .kind = ST_TK_STAGE, .phase = 'X', .stage = 15,
         .aux = (uint32_t)b}, /* another request's step */
    };
    uint32_t ntid[3] = {2, 1, 2};
    CHECK(st_trace_import(nr, ntid, 3, 4242, "clash", 0, 0) == ST_EINVAL); /* our own pid */
    CHECK(st_trace_import(nr, ntid, 3, 0, "zero", 0, 0) == ST_EINVAL);
    CHECK(st_trace_import(nr, ntid, 3, 7001, "node-a", off, 1500) == ST_OK);
    st_trace_import_thread(7001, 2, "stage 15..30");
    CHECK(st_trace_imported() == 3);

    st_strbuf sb;
    st_sb_init(&sb);
    CHECK(st_trace_export_request(a, &sb) == ST_OK);
    const st_json *ev = NULL;
    st_json *j = parse_trace(sb.buf, sb.len, &ev);
    const char *want[] = {"received", "hop_recv", "stage_compute", "finished"};
    size_t k = 0, n_node = 0;
    int named = 0, thread_named = 0;
    double last = -1;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++) {
        const st_json *x = &ev->u.arr.items[i];
        const char *name = st_json_get_str(x, "name", "");
        int pid = (int)st_json_get_num(x, "pid", 0);
        if (!strcmp(st_json_get_str(x, "ph", ""), "M")) {
            const st_json *args = member(x, "args");
            if (pid == 7001 && !strcmp(name, "process_name")) {
                named = !strcmp(st_json_get_str(args, "name", ""), "node-a") &&
                        st_json_get_num(args, "clock_offset_us", 0) == 2000000.0 &&
                        st_json_get_num(args, "clock_uncertainty_us", 0) == 1.5;
            }
            if (pid == 7001 && !strcmp(name, "thread_name"))
                thread_named = st_json_get_num(x, "tid", 0) == 2 &&
                               !strcmp(st_json_get_str(args, "name", ""), "stage 15..30");
            continue;
        }
        double ts = st_json_get_num(x, "ts", 0);
        CHECK(ts >= last);
        last = ts;
        if (k < ST_ARRAY_LEN(want) && !strcmp(name, want[k]))
            k++;
        if (pid == 7001) {
            n_node++;
            /* shifted onto our clock: (t + 200 us or 300 us) in us */
            CHECKF(ts == (double)t * 1e-3 + 200.0 || ts == (double)t * 1e-3 + 300.0, "node event at %.3f us", ts);
        } else {
            CHECK(pid == 4242);
        }
    }
    CHECKF(k == ST_ARRAY_LEN(want), "only %zu of the expected events in order", k);
    CHECKF(n_node == 2, "%zu node events in request a's trace, expected its 2", n_node);
    CHECK(named);
    CHECK(thread_named);
    st_json_free(j);

    /* everything: 3 local + 3 imported */
    sb.len = 0;
    CHECK(st_trace_export_all(&sb) == ST_OK);
    j = parse_trace(sb.buf, sb.len, &ev);
    size_t n_ev = 0;
    for (size_t i = 0; ev && i < ev->u.arr.n; i++)
        n_ev += strcmp(st_json_get_str(&ev->u.arr.items[i], "ph", ""), "M") != 0;
    CHECKF(n_ev == 6, "export_all: %zu events, expected 6", n_ev);
    st_json_free(j);

    /* a record before our clock's zero is pinned at 0, never wraps */
    st_trace_rec early = {.ts_ns = 10, .dur_ns = 1, .kind = ST_TK_STAGE, .phase = 'X', .stage = 0, .aux = 1};
    CHECK(st_trace_import(&early, NULL, 1, 7002, "node-b", 1000, 10) == ST_OK);
    sb.len = 0;
    CHECK(st_trace_export_all(&sb) == ST_OK);
    CHECK(strstr(sb.buf, "\"ts\":0.000,") != NULL);

    /* bounded: the oldest go first */
    st_trace_rec *many = calloc(ST_TRACE_IMPORT_MAX + 10, sizeof *many);
    for (size_t i = 0; i < ST_TRACE_IMPORT_MAX + 10; i++)
        many[i] = (st_trace_rec){.ts_ns = t + i, .kind = ST_TK_HOP_SEND, .phase = 'X', .stage = -1};
    CHECK(st_trace_import(many, NULL, ST_TRACE_IMPORT_MAX + 10, 7003, "node-c", 0, 0) == ST_OK);
    CHECK(st_trace_imported() == ST_TRACE_IMPORT_MAX);
    free(many);
    st_trace_reset();
    CHECK(st_trace_imported() == 0);
    st_sb_free(&sb);
    st_trace_set_node(1, "strait");
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
    test_take_new();
    test_import();
    test_file();
    test_histograms();
    return test_done();
}
