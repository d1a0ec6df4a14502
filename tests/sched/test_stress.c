/* Thousands of random short requests against the loop thread, with a KV
 * cache small enough to preempt often and random aborts from the submitting
 * thread: every request gets exactly one final event, limits hold, a
 * sample of greedy requests gives the tokens it gives alone, and at the end
 * no block is in use and the block manager's books balance. */
#include <pthread.h>

#include "../../common/st_common.h"
#include "../../sched/batcher.h"
#include "../../sched/kv_blocks.h"
#include "../test.h"
#include "batcher_util.h"

#define NREQ 2500

typedef struct {
    int32_t prompt[40];
    int n_prompt, max_tokens, greedy;
    uint64_t id;
    bu_result r;
} req;

static req reqs[NREQ];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done;

static void on_event(const st_batcher_event *ev, void *user)
{
    pthread_mutex_lock(&mu); /* the test thread reads results concurrently */
    bu_collect(ev, user);
    if (ev->finish != ST_FINISH_NONE) {
        n_done++;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
}

static st_request make_request(req *q, st_batcher_cb cb, void *user)
{
    st_request r = st_request_default();
    r.prompt = q->prompt;
    r.n_prompt = q->n_prompt;
    r.max_tokens = q->max_tokens;
    if (!q->greedy) {
        r.sampling = st_sampling_default();
        r.sampling.seed = (uint64_t)q->n_prompt * 31 + (uint64_t)q->max_tokens;
    }
    r.cb = cb;
    r.user = user;
    return r;
}

int main(void)
{
    st_model *m;
    const char *path = ST_SOURCE_DIR "/tests/golden/qwen3-tiny";
    if (st_model_load(path, 0, -1, &m) != ST_OK)
        TEST_SKIP("tiny model %s not loadable: %s", path, st_errmsg());
    st_log_set_level(ST_LOG_WARN);
    st_backend *be = st_backend_cpu_create(1);
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = 12; /* 192 token slots for up to 16 sequences of up to 48 tokens */
    c.block_size = 16;
    c.max_num_tokens_per_batch = 128;
    c.max_batch_size = 16;
    st_batcher *b;
    CHECK(st_batcher_create(m, be, &c, &b) == ST_OK);
    CHECK(st_batcher_start(b) == ST_OK);

    uint64_t rng = 2024;
    int n_aborted_sent = 0;
    for (int i = 0; i < NREQ; i++) {
        req *q = &reqs[i];
        q->n_prompt = 1 + (int)(bu_rand(&rng) % 40);
        q->max_tokens = 1 + (int)(bu_rand(&rng) % 8);
        q->greedy = bu_rand(&rng) % 2;
        int shared = bu_rand(&rng) % 3 == 0; /* a third start with a common 32-token stem */
        for (int k = 0; k < q->n_prompt; k++)
            q->prompt[k] = shared && k < 32 ? (int32_t)(k * 11 % 64) : (int32_t)(bu_rand(&rng) % 64);
        bu_result_init(&q->r);
        /* keep at most 48 in flight, so that aborts find requests in every state */
        pthread_mutex_lock(&mu);
        while (i - n_done >= 48)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        st_request r = make_request(q, on_event, &q->r);
        CHECK(st_batcher_submit(b, &r, &q->id) == ST_OK);
        /* abort a random earlier request now and then (it may be waiting,
         * running or already finished) */
        if (bu_rand(&rng) % 6 == 0) {
            st_batcher_abort(b, reqs[i - (int)(bu_rand(&rng) % (uint64_t)ST_MIN(i + 1, 40))].id);
            n_aborted_sent++;
        }
    }
    pthread_mutex_lock(&mu);
    while (n_done < NREQ)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    st_batcher_stop(b);

    int bad_final = 0, bad_len = 0, n_abort = 0, n_length = 0;
    for (int i = 0; i < NREQ; i++) {
        bu_result *r = &reqs[i].r;
        bad_final += r->n_final != 1 || r->late_events != 0;
        if (r->finish == ST_FINISH_ABORT)
            n_abort++;
        else if (r->finish == ST_FINISH_LENGTH)
            n_length += r->n_tokens == reqs[i].max_tokens;
        bad_len += r->n_tokens > reqs[i].max_tokens ||
                   (r->finish == ST_FINISH_LENGTH && r->n_tokens != reqs[i].max_tokens) ||
                   (r->finish != ST_FINISH_LENGTH && r->finish != ST_FINISH_ABORT);
    }
    CHECKF(bad_final == 0, "%d requests without exactly one final event", bad_final);
    CHECKF(bad_len == 0, "%d requests broke their token limit or ended oddly", bad_len);
    CHECK(n_abort > 0 && n_abort <= n_aborted_sent && n_length + n_abort == NREQ);
    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECKF(st.kv_blocks_used == 0, "%d blocks in use after all requests ended", st.kv_blocks_used);
    CHECK(st.n_running == 0 && st.n_waiting == 0);
    CHECK(st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total);
    CHECKF(st_kv_blocks_check(st_batcher_kv(b)) == ST_OK, "%s", st_errmsg());
    CHECK(st.requests_finished + st.requests_aborted == NREQ && st.requests_submitted == NREQ);
    CHECK(st.preemptions > 0 && st.prefix_hit_tokens > 0);
    fprintf(stderr, "%d requests: %llu steps, %.1f seqs/step, %llu preemptions, %d aborted, %llu prefix-hit tokens\n",
            NREQ, (unsigned long long)st.steps, (double)st.batch_seqs / (double)(st.steps ? st.steps : 1),
            (unsigned long long)st.preemptions, n_abort, (unsigned long long)st.prefix_hit_tokens);

    /* a sample of completed requests again, one at a time: same tokens */
    int checked = 0, differ = 0;
    for (int i = 0; i < NREQ && checked < 40; i += 7) {
        req *q = &reqs[i];
        if (q->r.finish != ST_FINISH_LENGTH)
            continue;
        bu_result alone;
        bu_result_init(&alone);
        st_request r = make_request(q, bu_collect, &alone);
        CHECK(st_batcher_submit(b, &r, NULL) == ST_OK);
        CHECK(st_batcher_run_until_idle(b) == ST_OK);
        differ += !bu_same_tokens(&alone, &q->r);
        checked++;
    }
    CHECKF(differ == 0, "%d of %d requests changed between the stress run and a run alone", differ, checked);
    st_batcher_get_stats(b, &st);
    CHECK(st.kv_blocks_used == 0);
    st_batcher_destroy(b);
    st_backend_destroy(be);
    st_model_free(m);
    return test_done();
}
