/* A manual pipeline inside one process: the head's batcher runs layers
 * [0,k) and the pipeline executor (one batch at a time, or one per stage in
 * flight), stages run on threads behind real tcp and shm links. The head's batcher is external_exec: it must allocate no
 * KV cache of its own. Greedy tokens of several concurrent requests must be
 * IDENTICAL to the single-machine batcher; a stage that goes away fails the
 * requests with an error instead of hanging; malformed messages are
 * refused with an error reply and the stage keeps serving. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../common/st_common.h"
#include "../../sched/pipeline.h"
#include "../../sched/pipeline_msg.h"
#include "../../sched/kv_blocks.h"
#include "../../sched/pipeline_stage.h"
#include "../test.h"
#include "batcher_util.h"

#define NREQ 5
#define GEN 12
#define MAXS 4

typedef struct stage_thr {
    st_model *m;
    st_backend *be;
    st_listener *l;
    char next[128];
    const char *transport;
    volatile int stop;
    int rc;
    pthread_t th;
} stage_thr;

static void *stage_main(void *arg)
{
    stage_thr *t = arg;
    st_link *in = NULL, *out = NULL;
    t->rc = st_accept(t->l, 20000, &in);
    if (!t->rc)
        t->rc = st_connect(t->transport, t->next, NULL, 20000, &out);
    if (!t->rc)
        t->rc = st_pipe_stage_serve(in, out, t->m, t->be, &t->stop, NULL);
    if (out)
        st_link_close(out);
    if (in)
        st_link_close(in);
    return NULL;
}

static void addr_for(const char *transport, int i, char *out, size_t cap)
{
    if (!strcmp(transport, "tcp"))
        snprintf(out, cap, "127.0.0.1:0");
    else
        snprintf(out, cap, "@strait-test-pipe-%d-%d", (int)getpid(), i);
}

typedef struct pipe_rig {
    int n_stages;
    stage_thr st[MAXS];
    st_listener *back_l;
    st_link *next, *back;
    st_model *head;        /* the head's layers; the batcher reads its geometry and tokenizer */
    st_backend *be;
    st_pipeline *p;
    st_batcher *b;
} pipe_rig;

/* cuts[0]: the head's layers [0, cuts[0]) (0: none, the first stage embeds);
 * stage i holds [cuts[i], cuts[i+1]) and the last one runs to the end. */
/* depth 0: the synchronous executor (st_pipeline_exec); else the asynchronous
 * one with up to `depth` batches in flight. */
static int rig_up(pipe_rig *r, const char *path, const char *transport, const int *cuts, int n_stages, int act_dt,
                  int n_blocks, int depth)
{
    memset(r, 0, sizeof *r);
    r->n_stages = n_stages;
    /* with no layers of its own the head loads one only for the geometry and tokenizer */
    CHECK(st_model_load(path, 0, cuts[0] ? cuts[0] : 1, &r->head) == ST_OK);
    int n_layers = r->head->cfg.n_layers;
    char a[128];
    for (int i = 0; i < n_stages; i++) {
        stage_thr *t = &r->st[i];
        t->transport = transport;
        int end = i + 1 < n_stages ? cuts[i + 1] : n_layers;
        CHECK(st_model_load(path, cuts[i], end, &t->m) == ST_OK);
        t->be = st_backend_cpu_create(1);
        addr_for(transport, i, a, sizeof a);
        CHECK(st_listen(transport, a, NULL, &t->l) == ST_OK);
    }
    addr_for(transport, 99, a, sizeof a);
    CHECK(st_listen(transport, a, NULL, &r->back_l) == ST_OK);
    for (int i = 0; i < n_stages; i++)
        snprintf(r->st[i].next, sizeof r->st[i].next, "%s",
                 st_listener_addr(i + 1 < n_stages ? r->st[i + 1].l : r->back_l));
    for (int i = 0; i < n_stages; i++)
        pthread_create(&r->st[i].th, NULL, stage_main, &r->st[i]);
    CHECK(st_connect(transport, st_listener_addr(r->st[0].l), NULL, 20000, &r->next) == ST_OK);
    CHECK(st_accept(r->back_l, 20000, &r->back) == ST_OK);

    r->be = st_backend_cpu_create(1);
    st_batcher_config bc = st_batcher_config_default();
    bc.n_blocks = n_blocks;
    bc.max_batch_size = 8;
    bc.max_num_tokens_per_batch = 64;
    bc.external_exec = 1; /* the pipeline holds the KV and activations */
    bc.max_inflight = depth ? depth : 1;
    if (st_batcher_create(r->head, r->be, &bc, &r->b) != ST_OK)
        return st_err(ST_EINVAL, "batcher: %s", st_errmsg());
    CHECKF(st_batcher_local_kv_bytes(r->b) == 0, "external_exec batcher allocated %zu KV bytes",
           st_batcher_local_kv_bytes(r->b));
    st_batcher_stats bs;
    st_batcher_get_stats(r->b, &bs);
    CHECK(bs.kv_blocks_total == n_blocks); /* its block manager still covers the stages' KV */
    st_pipeline_config pc = {.local = cuts[0] ? r->head : NULL, .model = &r->head->cfg, .be = r->be, .next = r->next, .back = r->back, .act_dtype = act_dt,
                             .n_blocks = n_blocks, .block_size = bc.block_size, .max_tokens = 64, .max_seqs = 8,
                             .setup_timeout_ms = 20000};
    int rc = st_pipeline_create(&pc, &r->p);
    if (rc)
        return rc;
    if (depth) {
        st_batch_async_exec x = st_pipeline_async_exec(r->p);
        st_batcher_set_async_executor(r->b, &x);
    } else {
        st_batcher_set_executor(r->b, st_pipeline_exec, r->p);
    }
    return ST_OK;
}

static void rig_down(pipe_rig *r)
{
    for (int i = 0; i < r->n_stages; i++) {
        r->st[i].stop = 1;
        if (r->st[i].th)
            pthread_join(r->st[i].th, NULL);
    }
    if (r->b)
        st_batcher_destroy(r->b);
    st_pipeline_destroy(r->p);
    if (r->next)
        st_link_close(r->next);
    if (r->back)
        st_link_close(r->back);
    for (int i = 0; i < r->n_stages; i++) {
        st_listener_close(r->st[i].l);
        st_backend_destroy(r->st[i].be);
        st_model_free(r->st[i].m);
    }
    st_listener_close(r->back_l);
    st_backend_destroy(r->be);
    st_model_free(r->head);
}

static int32_t prompts[NREQ][24];
static int n_prompt[NREQ];

static void make_prompts(int vocab)
{
    uint64_t s = 12345;
    for (int i = 0; i < NREQ; i++) {
        n_prompt[i] = 3 + 4 * i; /* 3 .. 19 tokens: several prefill chunk shapes */
        for (int j = 0; j < n_prompt[i]; j++)
            prompts[i][j] = (int32_t)(bu_rand(&s) % (uint64_t)vocab);
    }
}

/* Submit all requests at once and step until idle; tokens into res.
 * Returns the most batches that were in flight between steps. */
static int run_all(st_batcher *b, bu_result *res)
{
    for (int i = 0; i < NREQ; i++) {
        bu_result_init(&res[i]);
        st_request q = st_request_default();
        q.prompt = prompts[i];
        q.n_prompt = n_prompt[i];
        q.max_tokens = GEN;
        q.ignore_eos = 1;
        q.cb = bu_collect;
        q.user = &res[i];
        uint64_t id;
        CHECK(st_batcher_submit(b, &q, &id) == ST_OK);
    }
    int rc, most = 0;
    while ((rc = st_batcher_step(b)) > 0)
        most = ST_MAX(most, st_batcher_inflight(b));
    CHECKF(rc == 0, "step: %s", st_errmsg());
    return most;
}

static void reference(const char *path, bu_result *ref)
{
    st_model *m;
    CHECK(st_model_load(path, 0, -1, &m) == ST_OK);
    make_prompts(m->cfg.vocab_size);
    st_backend *be = st_backend_cpu_create(1);
    st_batcher_config bc = st_batcher_config_default();
    bc.n_blocks = 64;
    bc.max_batch_size = 8;
    bc.max_num_tokens_per_batch = 64;
    st_batcher *b;
    CHECK(st_batcher_create(m, be, &bc, &b) == ST_OK);
    /* the default (local) batcher holds the whole model's KV */
    const st_model_config *c = &m->cfg;
    size_t want = (size_t)bc.n_blocks * st_kv_block_bytes(c->n_layers, c->n_kv_heads, c->head_dim, 2, bc.block_size);
    CHECKF(want > 0 && st_batcher_local_kv_bytes(b) == want, "local batcher KV: %zu bytes, expected %zu",
           st_batcher_local_kv_bytes(b), want);
    run_all(b, ref);
    for (int i = 0; i < NREQ; i++)
        CHECK(ref[i].n_tokens == GEN && ref[i].finish == ST_FINISH_LENGTH);
    st_batcher_destroy(b);
    st_backend_destroy(be);
    st_model_free(m);
}

static void check_identical(const char *path, const char *transport, const int *cuts, int n_stages, int act_dt,
                            const bu_result *ref, int depth)
{
    pipe_rig r;
    int rc = rig_up(&r, path, transport, cuts, n_stages, act_dt, 64, depth);
    CHECKF(rc == ST_OK, "%s %d-stage pipeline setup: %s", transport, n_stages + 1, st_errmsg());
    if (rc == ST_OK) {
        bu_result got[NREQ];
        int most = run_all(r.b, got);
        /* between steps, depth - 1 batches stay out while there are enough sequences */
        CHECKF(most == ST_MAX(depth, 1) - 1, "%s depth %d: at most %d batches stayed in flight", transport, depth,
               most);
        int differ = 0;
        for (int i = 0; i < NREQ; i++) {
            CHECK(got[i].n_final == 1 && got[i].finish == ST_FINISH_LENGTH);
            if (act_dt == ST_ACT_F32 && !bu_same_tokens(&got[i], &ref[i]))
                differ++;
        }
        CHECKF(differ == 0, "%s, %d stages after the head, %d in flight: %d of %d requests differ from one machine",
               transport, n_stages, depth, differ, NREQ);
        CHECK(st_pipeline_error(r.p) == 0);
    }
    rig_down(&r);
}

/* An external_exec batcher with no executor installed (and no backend):
 * requests end with an error, nothing crashes; a head model that does not
 * hold every layer is refused without external_exec. */
static void check_external_without_executor(const char *path)
{
    st_model *m;
    CHECK(st_model_load(path, 0, 1, &m) == ST_OK);
    make_prompts(m->cfg.vocab_size);
    st_batcher_config bc = st_batcher_config_default();
    bc.n_blocks = 16;
    st_batcher *b = NULL;
    st_backend *be = st_backend_cpu_create(1);
    if (m->cfg.n_layers > 1)
        CHECK(st_batcher_create(m, be, &bc, &b) == ST_ENOTSUP && !b);
    bc.external_exec = 1;
    CHECK(st_batcher_create(m, NULL, &bc, &b) == ST_OK);
    if (b) {
        CHECK(st_batcher_local_kv_bytes(b) == 0);
        st_request q = st_request_default();
        q.prompt = prompts[1];
        q.n_prompt = n_prompt[1];
        q.max_tokens = 3;
        st_batcher_result res;
        st_batcher_generate(b, &q, &res); /* ST_OK: the request itself carries the error */
        CHECKF(res.finish == ST_FINISH_ERROR && res.n_tokens == 0, "no executor: finish %d after %d tokens",
               (int)res.finish, res.n_tokens);
        st_batcher_result_free(&res);
        st_batcher_set_executor(b, NULL, NULL); /* still no local forward to fall back to */
        st_batcher_generate(b, &q, &res);
        CHECK(res.finish == ST_FINISH_ERROR && res.n_tokens == 0);
        st_batcher_result_free(&res);
        st_batcher_destroy(b);
    }
    st_backend_destroy(be);
    st_model_free(m);
}

/* ---- a stage that goes away ------------------------------------------------------------ */
typedef struct wait_cb {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bu_result res[NREQ];
    char err[NREQ][256];
    int tokens, finals;
} wait_cb;

static void on_event(const st_batcher_event *ev, void *user)
{
    wait_cb *w = user;
    pthread_mutex_lock(&w->mu);
    int i = (int)(ev->id - 1) % NREQ;
    bu_collect(ev, &w->res[i]);
    if (ev->error)
        snprintf(w->err[i], sizeof w->err[i], "%s", ev->error);
    if (ev->token >= 0)
        w->tokens++;
    if (ev->finish != ST_FINISH_NONE)
        w->finals++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void check_stage_death(const char *path, const char *transport, const int *cuts)
{
    pipe_rig r;
    CHECK(rig_up(&r, path, transport, cuts, 2, ST_ACT_F32, 64, 3) == ST_OK); /* a batch on every stage */
    static wait_cb w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    CHECK(st_batcher_start(r.b) == ST_OK);
    for (int i = 0; i < NREQ; i++) {
        bu_result_init(&w.res[i]);
        st_request q = st_request_default();
        q.prompt = prompts[i];
        q.n_prompt = n_prompt[i];
        q.max_tokens = 100000;
        q.ignore_eos = 1;
        q.cb = on_event;
        q.user = &w;
        uint64_t id;
        CHECK(st_batcher_submit(r.b, &q, &id) == ST_OK);
    }
    /* let generation run, then the middle stage leaves (closes its links) */
    pthread_mutex_lock(&w.mu);
    while (w.tokens < 2 * NREQ)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    double t0 = st_now_s();
    r.st[0].stop = 1;
    pthread_join(r.st[0].th, NULL);
    r.st[0].th = 0;
    pthread_mutex_lock(&w.mu);
    while (w.finals < NREQ)
        pthread_cond_wait(&w.cv, &w.mu); /* a hang here is the failure the test is for (ctest timeout) */
    pthread_mutex_unlock(&w.mu);
    double dt = st_now_s() - t0;
    for (int i = 0; i < NREQ; i++) {
        CHECK(w.res[i].n_final == 1);
        CHECKF(w.res[i].finish == ST_FINISH_ERROR, "request %d finished with %d", i, (int)w.res[i].finish);
        CHECKF(strstr(w.err[i], "pipeline") != NULL, "request %d error: \"%s\"", i, w.err[i]);
    }
    fprintf(stderr, "  %s: stage death failed %d requests in %.2f s: \"%s\"\n", transport, NREQ, dt, w.err[0]);
    CHECK(st_pipeline_error(r.p) != 0);
    /* a later request fails at once too */
    bu_result late;
    bu_result_init(&late);
    st_batcher_result res;
    st_request q = st_request_default();
    q.prompt = prompts[0];
    q.n_prompt = n_prompt[0];
    q.max_tokens = 4;
    CHECK(st_batcher_generate(r.b, &q, &res) == ST_OK);
    CHECK(res.finish == ST_FINISH_ERROR);
    st_batcher_result_free(&res);
    st_batcher_stop(r.b);
    rig_down(&r);
}

/* ---- malformed messages ------------------------------------------------------------------ */
/* The test plays the head by hand for one last stage. */
static int recv_one(st_link *k, st_msg *m)
{
    for (int spins = 0;; spins++) {
        int rc = st_link_progress(k);
        if (rc)
            return rc;
        if (st_link_recv(k, m) == ST_OK)
            return ST_OK;
        st_link_wait(k, st_link_wait_prepare(k), 50);
        if (spins > 400)
            return ST_ETIMEDOUT;
    }
}

static void send_one(st_link *k, const void *p, size_t n)
{
    st_iov iov = {p, n, NULL};
    CHECK(st_link_send(k, &iov, 1, 0) == ST_OK);
    st_link_progress(k);
}

static void expect_error(st_link *back, const char *what, const char *needle)
{
    st_msg m;
    st_wire_msg w;
    CHECKF(recv_one(back, &m) == ST_OK, "%s: no reply", what);
    CHECK(st_wire_decode(m.data, m.len, &w) == ST_OK);
    CHECKF(w.hdr.kind == ST_WIRE_RESULT && (w.hdr.flags & ST_PIPE_F_ERROR), "%s: reply is not an error", what);
    char text[1100] = {0};
    memcpy(text, w.payload, (size_t)ST_MIN(w.hdr.payload_len, 1024));
    CHECKF(strstr(text, needle) != NULL, "%s: error \"%s\" lacks \"%s\"", what, text, needle);
    st_link_release(back, &m);
}

static void check_malformed(const char *path, int cut)
{
    stage_thr t = {0};
    t.transport = "tcp";
    CHECK(st_model_load(path, cut, -1, &t.m) == ST_OK);
    t.be = st_backend_cpu_create(1);
    st_listener *back_l;
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &t.l) == ST_OK);
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &back_l) == ST_OK);
    snprintf(t.next, sizeof t.next, "%s", st_listener_addr(back_l));
    pthread_create(&t.th, NULL, stage_main, &t);
    st_link *next, *back;
    CHECK(st_connect("tcp", st_listener_addr(t.l), NULL, 20000, &next) == ST_OK);
    CHECK(st_accept(back_l, 20000, &back) == ST_OK);

    static uint8_t buf[1 << 16] __attribute__((aligned(64)));
    uint64_t rej0 = st_wire_rejects(ST_WIRE_REJ_MAGIC) + st_wire_rejects(ST_WIRE_REJ_CRC);
    memset(buf, 0xA5, 256); /* garbage */
    send_one(next, buf, 256);
    expect_error(back, "garbage", "rejected a message");
    CHECK(st_wire_rejects(ST_WIRE_REJ_MAGIC) + st_wire_rejects(ST_WIRE_REJ_CRC) > rej0);

    /* a valid message before setup */
    size_t meta;
    CHECK(st_pipe_encode_plain(buf, sizeof buf, ST_WIRE_FORWARD, 0, 7, ST_WIRE_DT_F32, 0, 0, &meta) == ST_OK);
    send_one(next, buf, meta);
    expect_error(back, "forward before setup", "before setup");

    /* setup that places the stage at the wrong layer */
    const st_model_config *c = &t.m->cfg;
    int32_t v[ST_PIPE_SETUP_N] = {c->n_layers, c->dim, c->vocab_size, 16, 16, 32, 4, ST_ACT_F32, cut + 1};
    CHECK(st_pipe_encode_plain(buf, sizeof buf, ST_WIRE_FORWARD, ST_PIPE_F_SETUP, 0, ST_WIRE_DT_I32, 1,
                               ST_PIPE_SETUP_N, &meta) == ST_OK);
    memcpy(buf + meta, v, sizeof v);
    send_one(next, buf, meta + sizeof v);
    expect_error(back, "misplaced stage", "must come next");

    /* a good setup, then a step whose block id is out of range */
    v[8] = cut;
    memcpy(buf + meta, v, sizeof v);
    send_one(next, buf, meta + sizeof v);
    st_msg m;
    st_wire_msg w;
    CHECK(recv_one(back, &m) == ST_OK);
    CHECK(st_wire_decode(m.data, m.len, &w) == ST_OK && (w.hdr.flags & ST_PIPE_F_SETUP) &&
          !(w.hdr.flags & ST_PIPE_F_ERROR));
    st_link_release(back, &m);
    st_sched_batch sb;
    st_sched_batch_init(&sb);
    st_sched_batch_reset(&sb, 1);
    int32_t tok = 1, table = 999;
    st_sampling sp = st_sampling_default();
    st_sched_batch_add(&sb, 1, 1, &tok, 1, 0, &table, 1, 1, &sp);
    st_sched_batch_seal(&sb);
    st_bt_map sent; /* the tables as the stage holds them */
    st_bt_init(&sent, 16, 16);
    CHECK(st_pipe_encode_forward(buf, sizeof buf, &sb, NULL, 0, &sent, 1, ST_WIRE_DT_F32, (uint32_t)c->dim, &meta) ==
          ST_OK);
    memset(buf + meta, 0, (size_t)c->dim * 4);
    send_one(next, buf, meta + (size_t)c->dim * 4);
    expect_error(back, "bad block id", "block id 999");

    /* the stage still serves: a valid step gives logits */
    table = 3;
    st_sched_batch_reset(&sb, 2);
    st_sched_batch_add(&sb, 1, 1, &tok, 1, 0, &table, 1, 1, &sp);
    st_sched_batch_seal(&sb);
    CHECK(st_pipe_encode_forward(buf, sizeof buf, &sb, NULL, 0, &sent, 2, ST_WIRE_DT_F32, (uint32_t)c->dim, &meta) ==
          ST_OK);
    for (int i = 0; i < c->dim; i++)
        ((float *)(buf + meta))[i] = 0.01f * (float)(i % 7);
    send_one(next, buf, meta + (size_t)c->dim * 4);
    CHECK(recv_one(back, &m) == ST_OK);
    CHECK(st_wire_decode(m.data, m.len, &w) == ST_OK);
    CHECKF(w.hdr.kind == ST_WIRE_RESULT && !w.hdr.flags && w.hdr.step_id == 2 && w.hdr.n_tokens == 1 &&
               w.hdr.hidden == (uint32_t)c->vocab_size,
           "valid step after errors: kind %u flags %u: %.*s", w.hdr.kind, w.hdr.flags,
           (int)ST_MIN(w.hdr.payload_len, 200), (const char *)w.payload);
    st_link_release(back, &m);
    st_sched_batch_free(&sb);
    st_bt_free(&sent);

    st_link_close(next); /* the stage sees its upstream leave and returns */
    pthread_join(t.th, NULL);
    CHECK(t.rc == ST_OK);
    st_link_close(back);
    st_listener_close(back_l);
    st_listener_close(t.l);
    st_backend_destroy(t.be);
    st_model_free(t.m);
}

static void run_model(const char *path, const char *name)
{
    static bu_result ref[NREQ];
    reference(path, ref);
    st_model *m;
    CHECK(st_model_load(path, 0, 1, &m) == ST_OK);
    int n = m->cfg.n_layers;
    st_model_free(m);
    fprintf(stderr, "%s: %d layers\n", name, n);
    int two[1] = {n / 2}, three[2] = {n / 3, (2 * n) / 3};
    if (n < 3) /* a head without layers, then one stage per layer */
        three[0] = 0, three[1] = 1;
    check_identical(path, "tcp", two, 1, ST_ACT_F32, ref, 0);
    check_identical(path, "shm", two, 1, ST_ACT_F32, ref, 0);
    check_identical(path, "tcp", three, 2, ST_ACT_F32, ref, 0);
    check_identical(path, "shm", three, 2, ST_ACT_F32, ref, 0);
    check_identical(path, "shm", two, 1, ST_ACT_BF16, ref, 0); /* runs; tokens may differ */
    /* pipelined: a batch per stage in flight, the same tokens */
    check_identical(path, "shm", two, 1, ST_ACT_F32, ref, 2);
    check_identical(path, "tcp", two, 1, ST_ACT_F32, ref, 2);
    check_identical(path, "shm", three, 2, ST_ACT_F32, ref, 3);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    const char *tiny = ST_SOURCE_DIR "/tests/golden/qwen3-tiny";
    run_model(tiny, "qwen3-tiny");
    st_model *m;
    CHECK(st_model_load(tiny, 0, -1, &m) == ST_OK);
    int n = m->cfg.n_layers;
    st_model_free(m);
    check_external_without_executor(tiny);
    int cuts[2] = {n / 3, n / 3 + 1}; /* the middle stage (st[0]) is the one that dies */
    check_stage_death(tiny, "tcp", cuts);
    check_stage_death(tiny, "shm", cuts);
    check_malformed(tiny, n / 2);
    const char *dm = test_default_model();
    if (dm)
        run_model(dm, "default model");
    else
        fprintf(stderr, "default model not cached: only the tiny model was checked\n");
    return test_done();
}
