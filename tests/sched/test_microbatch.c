/* Pipelined execution in the batcher (max_inflight > 1) on the tiny qwen3:
 * an asynchronous executor that runs the local forward on its own worker
 * thread, one batch after another in submission order, as a pipeline's
 * stages would. Inside it every submit checks the contract: at most
 * max_inflight batches out, their sequences disjoint, no row written into
 * a block another outstanding batch references. Greedy and seeded outputs
 * with 2 and 3 in flight must equal one at a time; preemption, aborts of
 * sequences in flight, failed batches and a stop with batches out keep the
 * block accounting exact (every block free at the end). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../common/st_common.h"
#include "../../sched/batcher.h"
#include "../../sched/kv_blocks.h"
#include "../test.h"
#include "batcher_util.h"

static st_model *model;
static st_backend *be;

/* ---- the fake asynchronous executor ---------------------------------------------------- */
typedef struct out_batch {
    const st_sched_batch *sb; /* valid until collected */
    int used;                 /* submitted, not yet collected */
    int done, rc;             /* the worker ran it */
    float *logits;            /* (max_seqs, vocab) */
} out_batch;

typedef struct fake_async {
    st_batcher *b;            /* whose local forward runs the batches */
    int depth, vocab, block_size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    out_batch slot[ST_BATCHER_MAX_INFLIGHT];
    int queue[64], q_head, q_n; /* slots submitted, not yet run, in order */
    int n_out, most;          /* outstanding now / at most */
    int order[64], o_head, o_n; /* slots submitted, not yet collected, in order */
    int bad;                  /* contract violations seen */
    int submits, collects;
    int fail_submit, fail_collect; /* fail that call (1-based; 0: never) */
    int stop;
} fake_async;

static void *worker(void *arg)
{
    fake_async *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && !f->q_n)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop)
            break;
        out_batch *o = &f->slot[f->queue[f->q_head]];
        f->q_head = (f->q_head + 1) % 64;
        f->q_n--;
        pthread_mutex_unlock(&f->mu);
        int rc = st_batcher_exec_local(f->b, o->sb, o->logits);
        pthread_mutex_lock(&f->mu);
        o->rc = rc;
        o->done = 1;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Does batch a write a row into a block that batch c's tables reference? */
static int writes_into(const st_sched_batch *a, const st_sched_batch *c, int bs)
{
    for (int k = 0; k < a->b.n_seqs; k++) {
        const st_batch_seq *q = &a->b.seqs[k];
        for (int i = 0; i < q->n_tokens; i++) {
            int32_t blk = q->block_table[(q->pos0 + i) / bs];
            for (int j = 0; j < c->b.n_seqs; j++)
                for (int t = 0; t < c->b.seqs[j].n_blocks; t++)
                    if (c->b.seqs[j].block_table[t] == blk)
                        return 1;
        }
    }
    return 0;
}

static int fake_submit(void *ctx, const st_sched_batch *sb, int slot)
{
    fake_async *f = ctx;
    pthread_mutex_lock(&f->mu);
    int n = ++f->submits, rc = ST_OK;
    if (slot < 0 || slot >= f->depth || f->slot[slot].used || f->n_out >= f->depth)
        f->bad++;
    for (int s = 0; s < f->depth; s++) {
        if (!f->slot[s].used || s == slot)
            continue;
        const st_sched_batch *o = f->slot[s].sb;
        for (int i = 0; i < sb->b.n_seqs; i++)
            for (int j = 0; j < o->b.n_seqs; j++)
                if (sb->info[i].req_id == o->info[j].req_id)
                    f->bad++; /* a sequence in two batches at once */
        if (writes_into(sb, o, f->block_size) || writes_into(o, sb, f->block_size))
            f->bad++;
    }
    if (n == f->fail_submit) {
        rc = st_err(ST_EIO, "injected submit failure");
    } else if (slot >= 0 && slot < f->depth && !f->slot[slot].used) {
        out_batch *o = &f->slot[slot];
        o->sb = sb;
        o->used = 1;
        o->done = 0;
        f->n_out++;
        f->most = ST_MAX(f->most, f->n_out);
        f->queue[(f->q_head + f->q_n++) % 64] = slot;
        f->order[(f->o_head + f->o_n++) % 64] = slot;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int fake_collect(void *ctx, const st_sched_batch *sb, int slot, float *logits)
{
    fake_async *f = ctx;
    pthread_mutex_lock(&f->mu);
    int n = ++f->collects;
    if (slot < 0 || slot >= f->depth || !f->slot[slot].used || f->slot[slot].sb != sb || !f->o_n ||
        f->order[f->o_head] != slot) {
        f->bad++; /* not the oldest batch out */
        pthread_mutex_unlock(&f->mu);
        return st_err(ST_EINVAL, "fake: collect of slot %d out of order", slot);
    }
    out_batch *o = &f->slot[slot];
    while (!o->done)
        pthread_cond_wait(&f->cv, &f->mu);
    int rc = o->rc;
    if (rc == ST_OK)
        memcpy(logits, o->logits, (size_t)sb->n_logit_rows * f->vocab * sizeof(float));
    o->used = 0;
    f->n_out--;
    f->o_head = (f->o_head + 1) % 64;
    f->o_n--;
    pthread_mutex_unlock(&f->mu);
    if (n == f->fail_collect)
        return st_err(ST_EIO, "injected collect failure");
    return rc;
}

static void fake_init(fake_async *f, st_batcher *b, int depth, int max_seqs)
{
    memset(f, 0, sizeof *f);
    f->b = b;
    f->depth = depth;
    f->vocab = model->cfg.vocab_size;
    f->block_size = 16;
    for (int i = 0; i < depth; i++)
        f->slot[i].logits = st_xmalloc((size_t)max_seqs * f->vocab * sizeof(float));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_create(&f->th, NULL, worker, f);
    st_batch_async_exec x = {fake_submit, fake_collect, f};
    st_batcher_set_async_executor(b, &x);
}

static void fake_free(fake_async *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->depth; i++)
        free(f->slot[i].logits);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

/* ---- requests ---------------------------------------------------------------------------- */
#define NJOB 12
#define MAX_SEQS 6

typedef struct job {
    int32_t prompt[96];
    int n_prompt, max_tokens;
    int sampled; /* temperature 0.8 with a per-request seed */
} job;

static job jobs[NJOB];

static void make_jobs(void)
{
    uint64_t rng = 99;
    for (int i = 0; i < NJOB; i++) {
        job *j = &jobs[i];
        j->n_prompt = 2 + (int)(bu_rand(&rng) % 90); /* several prefill chunks for the long ones */
        for (int k = 0; k < j->n_prompt; k++)
            j->prompt[k] = (int32_t)(bu_rand(&rng) % 500);
        j->max_tokens = 8 + (int)(bu_rand(&rng) % 40);
        j->sampled = i % 3 == 2;
    }
}

static st_request job_request(int i, bu_result *out)
{
    st_request r = st_request_default();
    r.prompt = jobs[i].prompt;
    r.n_prompt = jobs[i].n_prompt;
    r.max_tokens = jobs[i].max_tokens;
    r.ignore_eos = 1;
    if (jobs[i].sampled) {
        r.sampling.temperature = 0.8f;
        r.sampling.seed = 1000 + (uint64_t)i;
    }
    r.cb = bu_collect;
    r.user = out;
    return r;
}

static st_batcher *make(int n_blocks, int depth)
{
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = n_blocks;
    c.max_num_tokens_per_batch = 40; /* long prompts take several chunks */
    c.max_batch_size = MAX_SEQS;
    c.max_inflight = depth;
    st_batcher *b = NULL;
    CHECKF(st_batcher_create(model, be, &c, &b) == ST_OK, "%s", st_errmsg());
    return b;
}

static void submit_all(st_batcher *b, bu_result *res, uint64_t *ids)
{
    for (int i = 0; i < NJOB; i++) {
        bu_result_init(&res[i]);
        st_request r = job_request(i, &res[i]);
        CHECK(st_batcher_submit(b, &r, &ids[i]) == ST_OK);
    }
}

/* Every block back in the free pool, the manager consistent. */
static void check_blocks_free(st_batcher *b, const char *what)
{
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECKF(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0,
           "%s: %d blocks used, %d running, %d waiting at the end", what, st.kv_blocks_used, st.n_running,
           st.n_waiting);
    CHECK(st_kv_blocks_check(st_batcher_kv(b)) == ST_OK);
    CHECK(st_batcher_inflight(b) == 0);
}

static bu_result ref[NJOB];

static void reference(void)
{
    st_batcher *b = make(256, 1); /* the local forward, one batch at a time, no preemption */
    uint64_t ids[NJOB];
    submit_all(b, ref, ids);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    for (int i = 0; i < NJOB; i++)
        CHECK(ref[i].n_final == 1 && ref[i].finish == ST_FINISH_LENGTH && ref[i].n_tokens == jobs[i].max_tokens);
    st_batcher_destroy(b);
}

/* ---- tests -------------------------------------------------------------------------------- */
/* depth batches in flight give the tokens of one at a time; with few blocks
 * the batcher also preempts (never a sequence in flight: the fake would see
 * its blocks written by another batch). */
static void test_same_tokens(int depth, int n_blocks)
{
    st_batcher *b = make(n_blocks, depth);
    fake_async f;
    fake_init(&f, b, depth, MAX_SEQS);
    bu_result got[NJOB];
    uint64_t ids[NJOB];
    submit_all(b, got, ids);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    int differ = 0;
    for (int i = 0; i < NJOB; i++) {
        CHECK(got[i].n_final == 1 && got[i].late_events == 0 && got[i].finish == ST_FINISH_LENGTH);
        differ += !bu_same_tokens(&got[i], &ref[i]);
    }
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECKF(differ == 0, "depth %d, %d blocks: %d of %d requests differ from one batch at a time", depth, n_blocks,
           differ, NJOB);
    CHECKF(f.bad == 0, "depth %d: %d contract violations in %d batches", depth, f.bad, f.submits);
    CHECKF(f.most == depth, "depth %d: at most %d batches were out at once", depth, f.most);
    CHECK(f.submits == f.collects && (uint64_t)f.submits == st.steps);
    if (n_blocks < 64)
        CHECKF(st.preemptions > 0, "depth %d with %d blocks never preempted", depth, n_blocks);
    fprintf(stderr, "  depth %d, %d blocks: %d batches, %llu preemptions\n", depth, n_blocks, f.submits,
            (unsigned long long)st.preemptions);
    check_blocks_free(b, "same tokens");
    fake_free(&f);
    st_batcher_destroy(b);
}

/* Between steps, abort requests whose batch is out: each gets exactly one
 * ABORT after a prefix of its reference tokens; the others are unchanged. */
static void test_abort_in_flight(int depth)
{
    st_batcher *b = make(256, depth);
    fake_async f;
    fake_init(&f, b, depth, MAX_SEQS);
    bu_result got[NJOB];
    uint64_t ids[NJOB];
    int aborted[NJOB] = {0}, n_aborted = 0, steps = 0, rc;
    submit_all(b, got, ids);
    while ((rc = st_batcher_step(b)) > 0) {
        if (++steps % 5 || n_aborted >= 4 || !f.o_n)
            continue;
        /* a request of the oldest batch still out */
        const st_sched_batch *sb = f.slot[f.order[f.o_head]].sb;
        uint64_t id = sb->info[sb->b.n_seqs - 1].req_id;
        for (int i = 0; i < NJOB; i++)
            if (ids[i] == id && !aborted[i]) {
                aborted[i] = 1;
                n_aborted++;
                st_batcher_abort(b, id);
            }
    }
    CHECK(rc == 0);
    CHECKF(n_aborted >= 2, "only %d requests were aborted in flight", n_aborted);
    for (int i = 0; i < NJOB; i++) {
        CHECK(got[i].n_final == 1 && got[i].late_events == 0);
        if (aborted[i]) {
            CHECKF(got[i].finish == ST_FINISH_ABORT || got[i].finish == ST_FINISH_LENGTH,
                   "aborted request %d finished with %d", i, (int)got[i].finish);
            CHECK(got[i].n_tokens <= ref[i].n_tokens &&
                  bu_same(got[i].tokens, got[i].n_tokens, ref[i].tokens, got[i].n_tokens));
        } else {
            CHECK(got[i].finish == ST_FINISH_LENGTH && bu_same_tokens(&got[i], &ref[i]));
        }
    }
    CHECK(f.bad == 0);
    check_blocks_free(b, "abort in flight");
    fake_free(&f);
    st_batcher_destroy(b);
}

/* An aborting callback: the first token of request 0 aborts every other
 * request, in flight or not. */
typedef struct abort_all_cb {
    st_batcher *b;
    uint64_t *ids;
    bu_result *res;
    int done;
} abort_all_cb;

static void abort_others(const st_batcher_event *ev, void *user)
{
    abort_all_cb *a = user;
    bu_collect(ev, &a->res[0]);
    if (!a->done && ev->token >= 0) {
        a->done = 1;
        for (int i = 1; i < NJOB; i++)
            st_batcher_abort(a->b, a->ids[i]);
    }
}

static void test_abort_from_callback(int depth)
{
    st_batcher *b = make(40, depth);
    fake_async f;
    fake_init(&f, b, depth, MAX_SEQS);
    static bu_result got[NJOB];
    uint64_t ids[NJOB];
    abort_all_cb a = {.b = b, .ids = ids, .res = got};
    for (int i = 0; i < NJOB; i++) {
        bu_result_init(&got[i]);
        st_request r = job_request(i, &got[i]);
        if (i == 0)
            r.cb = abort_others, r.user = &a;
        CHECK(st_batcher_submit(b, &r, &ids[i]) == ST_OK);
    }
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    int n_abort = 0;
    for (int i = 0; i < NJOB; i++) {
        CHECK(got[i].n_final == 1 && got[i].late_events == 0);
        n_abort += got[i].finish == ST_FINISH_ABORT;
    }
    CHECK(got[0].finish == ST_FINISH_LENGTH && bu_same_tokens(&got[0], &ref[0]));
    CHECKF(n_abort >= 1, "no request was aborted (%d)", n_abort);
    CHECK(f.bad == 0);
    check_blocks_free(b, "abort from a callback");
    fake_free(&f);
    st_batcher_destroy(b);
}

/* A batch that fails at submit or at collect ends its requests with ERROR;
 * the batches out beside it still come back and their requests go on. */
static void test_failed_batches(int depth, int fail_submit, int fail_collect)
{
    st_batcher *b = make(256, depth);
    fake_async f;
    fake_init(&f, b, depth, MAX_SEQS);
    f.fail_submit = fail_submit;
    f.fail_collect = fail_collect;
    bu_result got[NJOB];
    uint64_t ids[NJOB];
    submit_all(b, got, ids);
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    int errors = 0, ok = 0;
    for (int i = 0; i < NJOB; i++) {
        CHECK(got[i].n_final == 1 && got[i].late_events == 0);
        errors += got[i].finish == ST_FINISH_ERROR;
        ok += got[i].finish == ST_FINISH_LENGTH && bu_same_tokens(&got[i], &ref[i]);
    }
    CHECKF(errors >= 1 && errors + ok == NJOB, "submit fail %d / collect fail %d: %d errors, %d right", fail_submit,
           fail_collect, errors, ok);
    CHECK(f.bad == 0);
    check_blocks_free(b, "failures");
    fake_free(&f);
    st_batcher_destroy(b);
}

/* The loop thread stops while batches are out: they come back first, then
 * every unfinished request gets its ABORT; nothing leaks. */
typedef struct counting {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int tokens;
    bu_result res[NJOB];
} counting;

static void count_cb(const st_batcher_event *ev, void *user)
{
    counting *c = user;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < NJOB; i++)
        if (ev->id && (uint64_t)i + 1 == ev->id) /* ids are 1.. in submission order on a fresh batcher */
            bu_collect(ev, &c->res[i]);
    if (ev->token >= 0)
        c->tokens++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void test_stop_in_flight(int depth)
{
    st_batcher *b = make(256, depth);
    fake_async f;
    fake_init(&f, b, depth, MAX_SEQS);
    static counting c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    CHECK(st_batcher_start(b) == ST_OK);
    for (int i = 0; i < NJOB; i++) {
        st_request r = job_request(i, NULL);
        r.max_tokens = 100000;
        r.cb = count_cb;
        r.user = &c;
        uint64_t id;
        CHECK(st_batcher_submit(b, &r, &id) == ST_OK && id == (uint64_t)i + 1);
    }
    pthread_mutex_lock(&c.mu);
    while (c.tokens < 3 * MAX_SEQS)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    st_batcher_stop(b);
    for (int i = 0; i < NJOB; i++)
        CHECK(c.res[i].n_final == 1 && c.res[i].late_events == 0 && c.res[i].finish == ST_FINISH_ABORT);
    CHECK(f.bad == 0 && f.n_out == 0);
    check_blocks_free(b, "stop");
    fake_free(&f);
    st_batcher_destroy(b);
}

int main(void)
{
    const char *path = ST_SOURCE_DIR "/tests/golden/qwen3-tiny";
    if (st_model_load(path, 0, -1, &model) != ST_OK)
        TEST_SKIP("tiny model %s not loadable: %s", path, st_errmsg());
    be = st_backend_cpu_create(1);
    st_log_set_level(ST_LOG_WARN);
    make_jobs();
    reference();
    for (int depth = 1; depth <= 3; depth++) {
        test_same_tokens(depth, 256);
        test_same_tokens(depth, 14); /* tight: preemption under batches in flight */
    }
    test_abort_in_flight(2);
    test_abort_in_flight(3);
    test_abort_from_callback(2);
    test_abort_from_callback(3);
    test_failed_batches(2, 3, 0);
    test_failed_batches(2, 0, 4);
    test_failed_batches(3, 0, 2);
    test_stop_in_flight(2);
    test_stop_in_flight(3);
    st_backend_destroy(be);
    st_model_free(model);
    return test_done();
}
