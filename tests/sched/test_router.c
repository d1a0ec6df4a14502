/* The router (sched/cluster/router.h) over two local pipelines of the
 * default model, each its own batcher and CPU backend: greedy outputs equal
 * a single batcher's, concurrent requests spread over both; a pipeline that
 * fails mid-generation, or a healthy one removed mid-run, moves its requests
 * so that every stream ends with the same tokens and text as an undisturbed
 * run; requests wait for a pipeline and are served when one is added, or
 * end with a clear error when none comes; a client's abort beats a move.
 * Skipped without the default model. */
#include <pthread.h>
#include <string.h>

#include "../../common/st_common.h"
#include "../../engine/model.h"
#include "../../engine/tokenizer.h"
#include "../../kernels/backend.h"
#include "../../sched/batcher_internal.h" /* exec_local: the flaky executor wraps the local forward */
#include "../../sched/cluster/router.h"
#include "../test.h"
#include "batcher_util.h"

#define N_REQ 6
#define MAX_TOKENS 40

static st_model *model;
static st_backend *be[2];
static int32_t prompts[N_REQ][64];
static int n_prompt[N_REQ];
static bu_result ref[N_REQ];
/* (N_REQ,) the undisturbed text from a few bytes in, then a byte that never
 * comes: a stop string that never matches but holds all text after its
 * start back until the request ends, so that a move always has held text */
static char holding_stop[N_REQ][ST_MAX_STOP_LEN + 1];
static const char *holding_stops[N_REQ][1];
static int with_stop;

/* ---- collecting events from any thread -------------------------------------------------- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct got {
    bu_result r;
    int n_prompt, n_generated; /* usage of the last event */
    int bad_usage;             /* events whose n_generated is not the tokens seen so far */
    char error[256];
} got;

static void collect(const st_batcher_event *ev, void *user)
{
    got *g = user;
    pthread_mutex_lock(&mu);
    bu_collect(ev, &g->r);
    g->n_prompt = ev->n_prompt;
    g->n_generated = ev->n_generated;
    g->bad_usage += ev->n_generated != g->r.n_tokens;
    if (ev->error)
        snprintf(g->error, sizeof g->error, "%s", ev->error);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Wait until every g[i] has at least min_tokens tokens (min_tokens < 0:
 * its final event). Returns 0 after 300 s without that (sanitizer builds are slow). */
static int wait_for(got *g, int n, int min_tokens)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 300;
    pthread_mutex_lock(&mu);
    int ok = 0;
    for (;;) {
        ok = 1;
        for (int i = 0; i < n; i++)
            ok &= min_tokens < 0 ? g[i].r.n_final > 0 : (g[i].r.n_tokens >= min_tokens || g[i].r.n_final > 0);
        if (ok || pthread_cond_timedwait(&cv, &mu, &ts))
            break;
    }
    pthread_mutex_unlock(&mu);
    CHECKF(ok, "timed out waiting for %s", min_tokens < 0 ? "final events" : "tokens");
    return ok;
}

static st_request request(int i, got *g)
{
    st_request q = st_request_default();
    q.prompt = prompts[i];
    q.n_prompt = n_prompt[i];
    q.max_tokens = MAX_TOKENS;
    q.ignore_eos = 1; /* every stream runs its full length */
    q.cb = collect;
    q.user = g;
    if (with_stop) {
        q.stop = holding_stops[i];
        q.n_stop = 1;
    }
    return q;
}

/* Request i ended as in the undisturbed run: same tokens, same text, one
 * final event, usage of the original request. */
static void check_one(const char *what, const got *g, int i)
{
    const bu_result *r = &g->r;
    CHECKF(r->n_final == 1 && r->late_events == 0, "%s: request %d: %d final events, %d after", what, i, r->n_final,
           r->late_events);
    CHECKF(r->finish == ref[i].finish, "%s: request %d finished '%s' (%s), want '%s'", what, i,
           st_finish_reason_name(r->finish), g->error, st_finish_reason_name(ref[i].finish));
    CHECKF(bu_same_tokens(r, &ref[i]), "%s: request %d: %d tokens differ from the %d of one batcher", what, i,
           r->n_tokens, ref[i].n_tokens);
    CHECKF(r->text_len == ref[i].text_len && !memcmp(r->text, ref[i].text, r->text_len),
           "%s: request %d: text \"%.*s\" vs \"%.*s\"", what, i, (int)r->text_len, r->text, (int)ref[i].text_len,
           ref[i].text);
    CHECKF(g->n_prompt == n_prompt[i] && g->n_generated == r->n_tokens && !g->bad_usage,
           "%s: request %d: usage %d prompt / %d generated for %d / %d (%d bad events)", what, i, g->n_prompt,
           g->n_generated, n_prompt[i], r->n_tokens, g->bad_usage);
}

static void check_same(const char *what, got *g, int n)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++)
        check_one(what, &g[i], i);
    pthread_mutex_unlock(&mu);
}

/* ---- pipelines ----------------------------------------------------------------------------- */
/* A local pipeline whose executor can be made to fail like a dead stage. */
typedef struct tpipe {
    st_batcher *b;
    int fail_at;          /* > 0: from this armed step on every step fails and the pipeline is down */
    int armed;            /* steps count once this is set (atomic; pipe_start arms) */
    int steps, down;      /* atomics */
    st_router *rt;        /* with abort_id: the client aborts abort_id just as the pipeline fails */
    uint64_t abort_id;
} tpipe;

static int flaky_exec(void *ctx, const st_sched_batch *sb, float *logits)
{
    tpipe *p = ctx;
    int n = __atomic_load_n(&p->armed, __ATOMIC_SEQ_CST) ? __atomic_add_fetch(&p->steps, 1, __ATOMIC_SEQ_CST) : 0;
    if (p->fail_at > 0 && n >= p->fail_at && !__atomic_exchange_n(&p->down, 1, __ATOMIC_SEQ_CST) && p->abort_id)
        st_router_abort(p->rt, p->abort_id);
    if (__atomic_load_n(&p->down, __ATOMIC_SEQ_CST))
        return st_err(ST_ECONN, "test: the pipeline's stage is gone (step %llu)", (unsigned long long)sb->step);
    return exec_local(p->b, sb, logits);
}

static int flaky_down(void *ctx) { return __atomic_load_n(&((tpipe *)ctx)->down, __ATOMIC_SEQ_CST); }

static st_batcher *make_batcher(int k)
{
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = 48; /* 768 token slots: all six requests fit on one pipeline after a failover */
    c.max_ctx = 256;
    c.max_batch_size = 8;
    st_batcher *b = NULL;
    int rc = st_batcher_create(model, be[k], &c, &b);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    return b;
}

static void pipe_start(tpipe *p, int k, int fail_at, int armed, st_router *rt, int *id)
{
    memset(p, 0, sizeof *p);
    p->b = make_batcher(k);
    p->fail_at = fail_at;
    p->armed = armed;
    p->rt = rt;
    st_batcher_set_executor(p->b, flaky_exec, p);
    CHECK(st_batcher_start(p->b) == ST_OK);
    if (rt)
        CHECK(st_router_add(rt, p->b, flaky_down, p, id) == ST_OK);
}

static void pipe_end(tpipe *p, st_router *rt, int id)
{
    if (rt)
        st_router_remove(rt, id);
    st_batcher_destroy(p->b);
}

static st_router *router_retries(int wait_ms, int max_retries)
{
    st_router_config c = st_router_config_default();
    c.wait_ms = wait_ms;
    c.max_retries = max_retries;
    st_router *rt = NULL;
    CHECK(st_router_create(&c, &rt) == ST_OK);
    return rt;
}

static st_router *router(int wait_ms) { return router_retries(wait_ms, st_router_config_default().max_retries); }

static void submit_all(st_router *rt, got *g, int n, uint64_t *ids)
{
    memset(g, 0, (size_t)n * sizeof *g);
    for (int i = 0; i < n; i++) {
        st_request q = request(i, &g[i]);
        int rc = st_router_submit(rt, &q, ids ? &ids[i] : NULL);
        CHECKF(rc == ST_OK, "submit %d: %s", i, st_errmsg());
    }
}

/* ---- cases ------------------------------------------------------------------------------------- */
static void test_spread_and_equal(void)
{
    st_router *rt = router(30000);
    tpipe a, b;
    int ia, ib;
    pipe_start(&a, 0, 0, 1, rt, &ia);
    pipe_start(&b, 1, 0, 1, rt, &ib);
    CHECK(st_router_n_pipelines(rt) == 2);
    got g[N_REQ];
    submit_all(rt, g, N_REQ, NULL);
    wait_for(g, N_REQ, -1);
    check_same("two pipelines", g, N_REQ);
    st_router_pipe_info info[4];
    int n = st_router_pipes(rt, info, 4);
    CHECK(n == 2);
    CHECKF(n == 2 && info[0].requests_routed > 0 && info[1].requests_routed > 0 &&
               info[0].requests_routed + info[1].requests_routed == N_REQ,
           "routed %llu and %llu of %d", (unsigned long long)info[0].requests_routed,
           (unsigned long long)info[1].requests_routed, N_REQ);
    CHECK(n == 2 && info[0].healthy && info[1].healthy);
    CHECK(st_router_moved(rt) == 0);
    st_batcher_stats s;
    st_router_get_stats(rt, &s);
    CHECK(s.requests_submitted == N_REQ && s.max_ctx == 256 && s.kv_blocks_total == 96);
    pipe_end(&a, rt, ia);
    pipe_end(&b, rt, ib);
    CHECK(st_router_n_pipelines(rt) == 0 && st_router_max_ctx(rt) == 0);
    st_router_destroy(rt);
}

static void test_failover(void)
{
    st_router *rt = router(30000);
    tpipe a, b;
    int ia, ib;
    pipe_start(&a, 0, 0, 1, rt, &ia);
    pipe_start(&b, 1, 8, 1, rt, &ib); /* dies at its 8th step: its requests have a few tokens each */
    got g[N_REQ];
    submit_all(rt, g, N_REQ, NULL);
    wait_for(g, N_REQ, -1);
    check_same("failover", g, N_REQ);
    CHECK(__atomic_load_n(&b.down, __ATOMIC_SEQ_CST) == 1);
    CHECKF(st_router_moved(rt) > 0, "no request moved");
    st_router_pipe_info info[2];
    CHECK(st_router_pipes(rt, info, 2) == 2 && info[0].healthy && !info[1].healthy && info[1].requests_routed > 0);
    /* the dead pipeline gets no new request */
    uint64_t routed_b = info[1].requests_routed;
    got more[1];
    submit_all(rt, more, 1, NULL);
    wait_for(more, 1, -1);
    check_same("after the failover", more, 1);
    CHECK(st_router_pipes(rt, info, 2) == 2 && info[1].requests_routed == routed_b);
    pipe_end(&a, rt, ia);
    pipe_end(&b, rt, ib);
    st_router_destroy(rt);
}

static void test_out_of_moves(void)
{
    /* no move allowed: a dead pipeline's error reaches the client, with the
     * text that was held back, and nothing else comes */
    st_router *rt = router_retries(30000, 0);
    tpipe a, f;
    int ia, jf;
    pipe_start(&f, 1, 5, 1, rt, &jf);
    got g[1];
    submit_all(rt, g, 1, NULL);
    pipe_start(&a, 0, 0, 1, rt, &ia); /* there is somewhere to go, but no move left */
    wait_for(g, 1, -1);
    pthread_mutex_lock(&mu);
    CHECKF(g[0].r.finish == ST_FINISH_ERROR && strstr(g[0].error, "stage is gone") && g[0].r.n_final == 1,
           "finish '%s' (%s)", st_finish_reason_name(g[0].r.finish), g[0].error);
    CHECK(g[0].r.n_tokens > 0 && bu_same(g[0].r.tokens, g[0].r.n_tokens, ref[0].tokens, g[0].r.n_tokens));
    char dec[1024];
    int n_dec = st_tok_decode(model->tok, g[0].r.tokens, g[0].r.n_tokens, 1, dec, (int)sizeof dec - 1);
    CHECKF(n_dec >= 0 && (size_t)n_dec == g[0].r.text_len && !memcmp(g[0].r.text, dec, (size_t)n_dec),
           "streamed \"%.*s\", but its %d tokens say \"%.*s\"", (int)g[0].r.text_len, g[0].r.text,
           g[0].r.n_tokens, n_dec, dec);
    pthread_mutex_unlock(&mu);
    CHECK(st_router_moved(rt) == 0);
    pipe_end(&a, rt, ia);
    pipe_end(&f, rt, jf);
    st_router_destroy(rt);
}

static void test_remove_mid_run(void)
{
    st_router *rt = router(30000);
    tpipe a, b;
    int ia, ib;
    pipe_start(&a, 0, 0, 1, rt, &ia);
    pipe_start(&b, 1, 0, 1, rt, &ib);
    got g[N_REQ];
    submit_all(rt, g, N_REQ, NULL);
    wait_for(g, N_REQ, 3);
    pthread_mutex_lock(&mu);
    int finished = 0;
    for (int i = 0; i < N_REQ; i++)
        finished += g[i].r.n_final;
    pthread_mutex_unlock(&mu);
    CHECKF(finished == 0, "%d requests finished before the removal (the test needs them running)", finished);
    st_router_remove(rt, ib); /* returns once b holds none of them: b may go now */
    uint64_t moved = st_router_moved(rt);
    st_batcher_stop(b.b);
    st_batcher_stats s;
    st_batcher_get_stats(b.b, &s);
    CHECKF(s.n_running == 0 && s.n_waiting == 0 && s.requests_aborted == moved,
           "removed pipeline: %d running, %d waiting, %llu aborted, %llu moved", s.n_running, s.n_waiting,
           (unsigned long long)s.requests_aborted, (unsigned long long)moved);
    st_batcher_destroy(b.b);
    CHECK(st_router_n_pipelines(rt) == 1);
    wait_for(g, N_REQ, -1);
    check_same("removal", g, N_REQ);
    CHECKF(st_router_moved(rt) > 0, "no request moved");
    pipe_end(&a, rt, ia);
    st_router_destroy(rt);
}

static void test_wait_for_pipeline(void)
{
    st_router *rt = router(60000);
    got g[2];
    submit_all(rt, g, 2, NULL);
    st_batcher_stats s;
    st_router_get_stats(rt, &s);
    CHECK(s.n_waiting == 2);
    pthread_mutex_lock(&mu);
    CHECK(g[0].r.n_events == 0 && g[1].r.n_events == 0);
    pthread_mutex_unlock(&mu);
    tpipe a;
    int ia;
    pipe_start(&a, 0, 0, 1, rt, &ia); /* the waiting requests go at once */
    wait_for(g, 2, -1);
    check_same("waited", g, 2);
    pipe_end(&a, rt, ia);
    st_router_destroy(rt);
}

static void test_wait_expires(void)
{
    st_router *rt = router(150);
    got g[1];
    uint64_t t0 = st_now_ns();
    submit_all(rt, g, 1, NULL);
    wait_for(g, 1, -1);
    double waited_ms = (double)(st_now_ns() - t0) * 1e-6;
    CHECKF(g[0].r.finish == ST_FINISH_ERROR && strstr(g[0].error, "no pipeline is available"),
           "finish '%s', error '%s'", st_finish_reason_name(g[0].r.finish), g[0].error);
    CHECKF(waited_ms >= 150, "ended after %.0f ms of a 150 ms wait", waited_ms);
    CHECK(g[0].r.n_final == 1 && g[0].r.n_tokens == 0);
    st_router_destroy(rt);
}

static void test_abort_during_move(void)
{
    /* removed with nowhere to go, the request waits; the client aborts it;
     * a pipeline added later must not bring it back */
    st_router *rt = router(60000);
    tpipe a, c;
    int ia, ic;
    pipe_start(&a, 0, 0, 1, rt, &ia);
    got g[1];
    uint64_t id;
    submit_all(rt, g, 1, &id);
    wait_for(g, 1, 2);
    st_router_remove(rt, ia);
    st_batcher_destroy(a.b);
    st_batcher_stats s;
    st_router_get_stats(rt, &s);
    pthread_mutex_lock(&mu);
    CHECKF(g[0].r.n_final == 0 && s.n_waiting == 1, "final %d, %d waiting", g[0].r.n_final, s.n_waiting);
    pthread_mutex_unlock(&mu);
    st_router_abort(rt, id);
    wait_for(g, 1, -1);
    CHECK(g[0].r.finish == ST_FINISH_ABORT && g[0].r.n_final == 1);
    pipe_start(&c, 1, 0, 1, rt, &ic);
    st_batcher_get_stats(c.b, &s);
    CHECK(s.requests_submitted == 0);
    st_router_get_stats(rt, &s);
    CHECK(s.n_waiting == 0);
    pipe_end(&c, rt, ic);

    /* the client aborts just as the pipeline fails: the ERROR is not a move */
    tpipe f;
    int jf, ja;
    pipe_start(&f, 1, 6, 0, rt, &jf); /* armed once the ids are known */
    got h[3];
    uint64_t ids[3];
    submit_all(rt, h, 3, ids); /* all on f, the only pipeline */
    f.abort_id = ids[1];
    __atomic_store_n(&f.armed, 1, __ATOMIC_SEQ_CST); /* f's thread reads abort_id after this */
    pipe_start(&a, 0, 0, 1, rt, &ja);                 /* where the others go */
    wait_for(h, 3, -1);
    CHECKF(h[1].r.finish == ST_FINISH_ABORT && h[1].r.n_final == 1 && h[1].r.late_events == 0,
           "aborted request: finish '%s', %d finals", st_finish_reason_name(h[1].r.finish), h[1].r.n_final);
    pthread_mutex_lock(&mu);
    check_one("abort beside a failover", &h[0], 0);
    check_one("abort beside a failover", &h[2], 2);
    pthread_mutex_unlock(&mu);
    CHECK(st_router_moved(rt) >= 2);
    pipe_end(&a, rt, ja);
    pipe_end(&f, rt, jf);
    st_router_destroy(rt);
}

int main(void)
{
    const char *path = test_default_model();
    if (!path)
        TEST_SKIP("the default model is not in the cache (strait models pull)");
    st_log_set_level(ST_LOG_WARN);
    if (st_model_load(path, 0, -1, &model) != ST_OK || !model->tok)
        TEST_SKIP("cannot load %s with a tokenizer: %s", path, st_errmsg());
    /* one backend per pipeline: a CPU backend is driven by one batcher thread */
    be[0] = st_backend_cpu_create(1);
    be[1] = st_backend_cpu_create(1);
    static const char *texts[N_REQ] = {
        "The capital of France is",
        "Once upon a time, in a small village by the sea,",
        "def fibonacci(n):",
        "A list of colors: red, green,",
        "Water boils at",
        "The quick brown fox",
    };
    for (int i = 0; i < N_REQ; i++) {
        n_prompt[i] = st_tok_encode(model->tok, texts[i], strlen(texts[i]), 0, prompts[i], 64);
        CHECK(n_prompt[i] > 0);
    }
    /* the undisturbed run: one batcher, stepped on this thread */
    st_batcher *one = make_batcher(0);
    if (!one)
        return test_done();
    for (int i = 0; i < N_REQ; i++) {
        st_request q = request(i, NULL);
        q.cb = bu_collect;
        q.user = &ref[i];
        CHECK(st_batcher_submit(one, &q, NULL) == ST_OK);
    }
    CHECK(st_batcher_run_until_idle(one) == ST_OK);
    st_batcher_destroy(one);
    for (int i = 0; i < N_REQ; i++)
        CHECK(ref[i].n_final == 1 && ref[i].finish == ST_FINISH_LENGTH && ref[i].n_tokens == MAX_TOKENS);

    for (int i = 0; i < N_REQ; i++) {
        size_t from = ST_MIN(ref[i].text_len, (size_t)6);
        if (ref[i].text_len - from > ST_MAX_STOP_LEN - 1)
            from = ref[i].text_len - (ST_MAX_STOP_LEN - 1);
        snprintf(holding_stop[i], sizeof holding_stop[i], "%.*s\xff", (int)(ref[i].text_len - from),
                 ref[i].text + from);
        holding_stops[i][0] = holding_stop[i];
    }

    test_spread_and_equal();
    with_stop = 1; /* moves carry held-back text */
    test_failover();
    test_remove_mid_run();
    test_out_of_moves();
    with_stop = 0;
    test_wait_for_pipeline();
    test_wait_expires();
    test_abort_during_move();

    st_backend_destroy(be[0]);
    st_backend_destroy(be[1]);
    st_model_free(model);
    return test_done();
}
