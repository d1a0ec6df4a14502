/* One batcher step: the scheduling policy (decodes, prefill chunks, FCFS
 * admission, preemption by recompute), building the self-contained batch,
 * running it, and handing each sequence its logits (see batcher.h). */
#include <stdio.h>
#include <string.h>

#include "../common/st_common.h"
#include "batcher_internal.h"

/* ---- the running set -------------------------------------------------------------- */
static void running_remove(st_batcher *b, seq *s)
{
    for (int i = 0; i < b->n_running; i++)
        if (b->running[i] == s) {
            memmove(b->running + i, b->running + i + 1, (size_t)(b->n_running - i - 1) * sizeof(seq *));
            b->n_running--;
            return;
        }
}

/* s gave its blocks back: the next batch tells the executor. */
static void note_released(st_batcher *b, const seq *s)
{
    if (b->n_released == b->cap_released) {
        b->cap_released = ST_MAX(16, b->cap_released * 2);
        b->released = st_xrealloc(b->released, (size_t)b->cap_released * sizeof *b->released);
    }
    b->released[b->n_released++] = s->id;
}

void sched_retire(st_batcher *b, seq *s)
{
    note_released(b, s);
    if (s->state == SEQ_RUNNING)
        running_remove(b, s);
    else if (s->state == SEQ_WAITING)
        seq_list_remove(&b->waiting, s);
    s->state = SEQ_DONE;
    seq_delete(b, s); /* releases its blocks */
}

/* Preemption by recompute: drop the KV, keep the tokens (prompt + generated)
 * and the sampler; re-admitted first, the whole text is prefilled again
 * (full blocks it registered may still be in the prefix cache). */
static void preempt(st_batcher *b, seq *s)
{
    st_kv_seq_free(b->kb, &s->kv);
    note_released(b, s);
    running_remove(b, s);
    s->state = SEQ_WAITING;
    s->sched_rows = 0;
    seq_list_push_front(&b->waiting, s);
    b->st.preemptions++;
    s->t_queued = st_now_ns();
    st_trace_instant(s->trace_id, ST_TK_PREEMPTED, s->t_queued, 0, 0);
    ST_DEBUG("batcher: preempted request %llu at %d tokens", (unsigned long long)s->id, s->n_tokens);
}

/* ---- inbox ------------------------------------------------------------------------- */
static seq *find_seq(st_batcher *b, uint64_t id)
{
    for (int i = 0; i < b->n_running; i++)
        if (b->running[i]->id == id)
            return b->running[i];
    for (seq *s = b->waiting.head; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* Take new requests and aborts from the submission side: the only place
 * the step takes the submission lock. */
static void drain_inbox(st_batcher *b)
{
    int n_aborts;
    pthread_mutex_lock(&b->mu);
    while (b->inbox.head) {
        seq *s = b->inbox.head;
        seq_list_remove(&b->inbox, s);
        seq_list_push_back(&b->waiting, s);
    }
    if (b->n_aborts > b->cap_abort_work) {
        b->cap_abort_work = b->n_aborts;
        b->abort_work = st_xrealloc(b->abort_work, (size_t)b->cap_abort_work * sizeof(uint64_t));
    }
    n_aborts = b->n_aborts;
    if (n_aborts)
        memcpy(b->abort_work, b->aborts, (size_t)n_aborts * sizeof(uint64_t));
    b->n_aborts = 0;
    pthread_mutex_unlock(&b->mu);

    for (int i = 0; i < n_aborts; i++) {
        seq *s = find_seq(b, b->abort_work[i]);
        if (!s)
            continue; /* already finished */
        if (s->in_flight) { /* its batch is out: the executor still uses its blocks */
            s->aborted = 1;
            continue;
        }
        seq_emit_final(b, s, ST_FINISH_ABORT, NULL);
        sched_retire(b, s);
        b->st.requests_aborted++;
    }
}

/* ---- policy -------------------------------------------------------------------------- */
/* Reserve blocks for s's next `rows` rows, preempting the newest running
 * sequence not yet scheduled this step (possibly s itself) until they fit.
 * Returns 1 if s was scheduled, 0 if s itself was preempted. */
static int schedule_running(st_batcher *b, seq *s, int rows)
{
    while (st_kv_seq_reserve(b->kb, &s->kv, s->kv.n_committed + rows) != ST_OK) {
        seq *victim = NULL;
        for (int j = b->n_running - 1; j >= 0 && !victim; j--)
            if (!b->running[j]->sched_rows)
                victim = b->running[j];
        preempt(b, victim); /* s itself is unscheduled, so a victim exists */
        if (victim == s)
            return 0;
    }
    s->sched_rows = rows;
    return 1;
}

/* Choose the next batch's rows from the sequences in no batch, at most
 * max_seqs of them; returns how many rows. */
static int schedule(st_batcher *b, int max_seqs)
{
    int budget = b->cfg.max_num_tokens_per_batch;
    int preempted = 0, n_seqs = 0;
    /* pass 0: decodes (one pending row), pass 1: prompt chunks of running sequences */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < b->n_running && budget > 0 && n_seqs < max_seqs; i++) {
            seq *s = b->running[i];
            int want = s->n_tokens - s->kv.n_committed;
            if (s->sched_rows || (pass == 0) != (want == 1))
                continue;
            int before = b->n_running;
            int rows = ST_MIN(want, budget);
            if (schedule_running(b, s, rows))
                budget -= rows, n_seqs++;
            if (b->n_running != before) {
                preempted = 1;
                i = -1; /* indices moved: rescan (scheduled ones are skipped) */
            }
        }
    }
    /* admission: FCFS, never past a request that does not fit, and not in a
     * step that had to preempt (it would only thrash); with nothing running
     * the head always fits (a context fits in the whole cache) */
    while (!preempted && b->waiting.head && b->n_running < b->cfg.max_batch_size && budget > 0 &&
           n_seqs < max_seqs) {
        seq *s = b->waiting.head;
        int hit = s->kv.n_blocks ? 0 : st_kv_seq_match_prefix(b->kb, &s->kv, s->tokens, s->n_tokens);
        int rows = ST_MIN(s->n_tokens - s->kv.n_committed, budget);
        if (rows <= 0) { /* a prefix hit must leave the last token to compute: never loop on it */
            seq_emit_final(b, s, ST_FINISH_ERROR, "batcher: prefix cache covered the whole text");
            sched_retire(b, s);
            b->st.requests_finished++;
            continue;
        }
        /* while others run, leave a few blocks free for their next decodes,
         * or the newcomer would be preempted (and recomputed) at once */
        int bs = b->cfg.block_size;
        int need = (s->kv.n_committed + rows + bs - 1) / bs - s->kv.n_blocks;
        int reserve_ok = !b->n_running || st_kv_blocks_available(b->kb) - need >= b->watermark;
        if (!reserve_ok || st_kv_seq_reserve(b->kb, &s->kv, s->kv.n_committed + rows) != ST_OK) {
            st_kv_seq_free(b->kb, &s->kv);
            break;
        }
        seq_list_remove(&b->waiting, s);
        b->running[b->n_running++] = s;
        s->state = SEQ_RUNNING;
        s->sched_rows = rows;
        budget -= rows;
        n_seqs++;
        b->st.prefix_hit_tokens += (uint64_t)hit;
        uint64_t now = st_now_ns();
        st_trace_observe(ST_TH_QUEUE, now - s->t_queued);
        st_trace_span(s->trace_id, ST_TK_QUEUED, s->t_queued, now, (uint32_t)s->n_tokens, 0);
        st_trace_instant(s->trace_id, ST_TK_ADMITTED, now, (uint32_t)hit, 0);
        if (!s->admitted) {
            s->admitted = 1;
            s->n_cached = hit;
            b->st.prompt_tokens += (uint64_t)s->n_prompt;
        }
    }
    return b->cfg.max_num_tokens_per_batch - budget;
}

/* ---- execution ------------------------------------------------------------------------- */
/* Put the sequences just scheduled (sched_rows set, not yet in flight) into
 * batch f, in running order; they are in flight from now on. */
static void build_batch(st_batcher *b, inflight *f)
{
    f->traced = 0;
    f->n_seqs = 0;
    st_sched_batch_reset(&f->batch, b->next_step++);
    for (int i = 0; i < b->n_released; i++)
        st_sched_batch_release(&f->batch, b->released[i]);
    b->n_released = 0;
    for (int i = 0; i < b->n_running; i++) {
        seq *s = b->running[i];
        if (!s->sched_rows || s->in_flight)
            continue;
        int from = s->kv.n_committed;
        s->batch_idx = st_sched_batch_add(&f->batch, (int32_t)(s->id & 0x7fffffff), s->id, s->tokens + from,
                                          s->sched_rows, from, s->kv.table, s->kv.n_blocks,
                                          from + s->sched_rows == s->n_tokens, &s->req.sampling);
        s->in_flight = 1;
        f->seqs[f->n_seqs++] = s;
        if (!f->traced)
            f->traced = s->trace_id; /* a traced request's step records are kept */
    }
    st_sched_batch_seal(&f->batch);
}

/* Work counters for one sequence's rows [from, from + n). */
static void count_rows(st_batcher *b, const seq *s, int from, int n)
{
    int end = from + n;
    if (from < s->n_prompt)
        b->st.prompt_tokens_computed += (uint64_t)(ST_MIN(end, s->n_prompt) - from);
    /* generated tokens other than the newest one were computed before a preemption */
    int lo = ST_MAX(from, s->n_prompt), hi = ST_MIN(end, s->n_tokens - 1);
    if (hi > lo)
        b->st.recomputed_tokens += (uint64_t)(hi - lo);
}

/* A sequence whose batch is back is in no batch any more; an abort that
 * came while it was out takes effect now. Returns 1 if it was retired. */
static int land(st_batcher *b, seq *s)
{
    s->sched_rows = 0;
    s->in_flight = 0;
    s->batch_idx = -1;
    if (!s->aborted)
        return 0;
    seq_emit_final(b, s, ST_FINISH_ABORT, NULL);
    sched_retire(b, s);
    b->st.requests_aborted++;
    return 1;
}

/* Hand each sequence of batch f its rows' results: commit its KV, sample.
 * [t0, t1] is the batch's execution (ns), for the trace. */
static void finish_batch(st_batcher *b, inflight *f, uint64_t t0, uint64_t t1)
{
    const st_sched_batch *sb = &f->batch;
    st_token_logprob top[ST_MAX_TOP_LOGPROBS];
    for (int k = 0; k < f->n_seqs; k++) {
        seq *s = f->seqs[k];
        int from = s->kv.n_committed, n = s->sched_rows, idx = s->batch_idx;
        if (s->trace_id) {
            /* decoding = feeding back its newest sampled token; anything else is (re)prefill */
            int decode = n == 1 && s->n_generated > 0 && from + 1 == s->n_tokens;
            st_trace_step_part(s->trace_id, decode ? ST_TK_DECODE : ST_TK_PREFILL, sb->step + 1, b->trace_pipe, t0, t1,
                               (uint32_t)n, (uint32_t)sb->b.n_seqs);
        }
        count_rows(b, s, from, n);
        st_kv_seq_commit(b->kb, &s->kv, s->tokens, from + n);
        if (land(b, s))
            continue;
        int lr = sb->info[idx].logit_row;
        if (lr < 0)
            continue;
        float *row = f->logits + (size_t)lr * b->vocab;
        int n_top = s->req.top_logprobs > 0 ? logits_top(row, b->vocab, s->req.top_logprobs, top) : 0;
        float lp = 0.0f;
        uint64_t ts = s->trace_id ? st_now_ns() : 0;
        int32_t tok = st_sampler_sample(&s->sampler, row, b->vocab, s->tokens, s->n_tokens,
                                        s->req.logprobs ? &lp : NULL);
        uint64_t td = s->trace_id ? st_now_ns() : 0;
        st_trace_span(s->trace_id, ST_TK_SAMPLED, ts, td, 1, 0);
        if (tok < 0) {
            seq_emit_final(b, s, ST_FINISH_ERROR, st_errmsg());
            sched_retire(b, s);
            b->st.requests_finished++;
            continue;
        }
        b->st.generated_tokens++;
        st_finish_reason fin = seq_on_token(b, s, tok, lp, top, n_top, td);
        if (fin != ST_FINISH_NONE) {
            sched_retire(b, s);
            b->st.requests_finished++;
        }
    }
}

/* Batch f failed (rc, message set): end its requests with ERROR, keep
 * serving the others. */
static void fail_batch(st_batcher *b, inflight *f)
{
    char msg[256];
    snprintf(msg, sizeof msg, "forward failed: %s", st_errmsg());
    ST_ERROR("batcher: step %llu: %s", (unsigned long long)f->batch.step, msg);
    for (int k = 0; k < f->n_seqs; k++) {
        seq *s = f->seqs[k];
        if (land(b, s))
            continue;
        seq_emit_final(b, s, ST_FINISH_ERROR, msg);
        sched_retire(b, s);
        b->st.requests_finished++;
    }
}

void sched_publish_stats(st_batcher *b)
{
    st_kv_blocks_stats ks;
    st_kv_blocks_get_stats(b->kb, &ks);
    b->st.n_running = b->n_running;
    b->st.n_waiting = b->waiting.n;
    b->st.kv_blocks_total = ks.n_blocks;
    b->st.kv_blocks_used = ks.n_used;
    b->st.kv_blocks_free = ks.n_free;
    b->st.kv_blocks_cached = ks.n_cached;
    b->st.block_size = ks.block_size;
    b->st.max_ctx = b->max_ctx;
    pthread_mutex_lock(&b->stats_mu);
    b->pub = b->st;
    pthread_mutex_unlock(&b->stats_mu);
}

int st_batcher_exec_local(void *ctx, const st_sched_batch *sb, float *logits)
{
    st_batcher *b = ctx;
    if (b->cfg.external_exec)
        return st_err(ST_EINVAL, "batcher: the local forward of an external_exec batcher (it holds no KV)");
    int rc = st_forward(&b->fwd, &b->kv, &sb->b, sb->logit_rows, sb->n_logit_rows);
    if (rc == ST_OK && sb->n_logit_rows) {
        b->be->ops->sync(b->be);
        b->be->ops->to_host(b->be, logits, b->fwd.logits, (size_t)sb->n_logit_rows * b->vocab * sizeof(float));
    }
    return rc;
}

/* Counters of a batch that ran (or failed). */
static void count_batch(st_batcher *b, const inflight *f, uint64_t t0, uint64_t t1)
{
    const st_sched_batch *sb = &f->batch;
    st_trace_observe(sb->b.n_tokens > sb->b.n_seqs ? ST_TH_PREFILL : ST_TH_DECODE, t1 - t0);
    st_trace_step_span(f->traced, ST_TK_STEP, sb->step + 1, b->trace_pipe, -1, t0, t1, (uint32_t)sb->b.n_tokens,
                       (uint32_t)sb->b.n_seqs, 0);
    b->st.steps++;
    b->st.batch_tokens += (uint64_t)sb->b.n_tokens;
    b->st.batch_seqs += (uint64_t)sb->b.n_seqs;
    b->st.last_batch_tokens = sb->b.n_tokens;
    b->st.last_batch_seqs = sb->b.n_seqs;
}

/* A traced batch's executor sees the trace id (a pipeline puts it in the
 * wire header) and the step (trace step ids are the batch's step + 1: 0
 * means none) while it is called. */
static void trace_enter(st_batcher *b, const inflight *f)
{
    if (f->traced) {
        st_trace_set_current(f->traced);
        st_trace_set_step(f->batch.step + 1, b->trace_pipe);
    }
}

static void trace_leave(const inflight *f)
{
    if (f->traced)
        st_trace_clear_current();
}

/* Hand the batch just built in the next free slot to an asynchronous
 * executor. Returns ST_OK if it is out, else the error (its requests have
 * their ERROR events). */
static int submit_batch(st_batcher *b)
{
    int slot = (b->fl_head + b->n_fl) % b->cfg.max_inflight;
    inflight *f = &b->fl[slot];
    trace_enter(b, f);
    f->t0 = st_now_ns();
    int rc = b->async.submit(b->async.ctx, &f->batch, slot);
    trace_leave(f);
    if (rc == ST_OK) {
        b->n_fl++;
        return ST_OK;
    }
    count_batch(b, f, f->t0, st_now_ns());
    fail_batch(b, f);
    return rc;
}

/* Wait for the oldest batch out and hand out its results. */
static int collect_oldest(st_batcher *b)
{
    int slot = b->fl_head;
    inflight *f = &b->fl[slot];
    int rc;
    trace_enter(b, f);
    if (b->async.submit) {
        rc = b->async.collect(b->async.ctx, &f->batch, slot, f->logits);
    } else {
        f->t0 = st_now_ns(); /* a synchronous executor runs it now */
        rc = b->exec(b->exec_ctx, &f->batch, f->logits);
    }
    uint64_t t1 = st_now_ns();
    trace_leave(f);
    b->fl_head = (b->fl_head + 1) % b->cfg.max_inflight;
    b->n_fl--;
    count_batch(b, f, f->t0, t1);
    if (rc != ST_OK) {
        fail_batch(b, f);
        return rc;
    }
    finish_batch(b, f, f->t0, t1);
    return ST_OK;
}

void sched_drain(st_batcher *b)
{
    while (b->n_fl > 0)
        collect_oldest(b); /* a failed batch's requests got their events */
    sched_publish_stats(b);
}

/* Sequences per batch: with d batches out at once, the sequences that can
 * run are shared between d batches, so that each stage gets one. */
static int batch_seq_cap(const st_batcher *b, int depth)
{
    if (depth == 1)
        return b->cfg.max_batch_size;
    int n = ST_MIN(b->cfg.max_batch_size, b->n_running + b->waiting.n);
    return ST_MAX(1, (n + depth - 1) / depth);
}

int sched_step(st_batcher *b)
{
    drain_inbox(b);
    if (!b->n_running && !b->waiting.head && !b->n_fl) {
        sched_publish_stats(b);
        return 0;
    }
    /* fill the pipeline: batches of sequences that are in none */
    int depth = b->async.submit ? b->cfg.max_inflight : 1, rc = ST_OK;
    while (b->n_fl < depth) {
        if (!schedule(b, batch_seq_cap(b, depth)))
            break; /* all in flight, or a preemption step (the next one admits) */
        build_batch(b, &b->fl[(b->fl_head + b->n_fl) % b->cfg.max_inflight]);
        if (!b->async.submit)
            b->n_fl++; /* run by collect_oldest, below */
        else if ((rc = submit_batch(b)) != ST_OK)
            break;
    }
    if (b->n_fl) {
        int rc2 = collect_oldest(b);
        rc = rc ? rc : rc2;
    }
    sched_publish_stats(b);
    return rc ? rc : 1;
}
