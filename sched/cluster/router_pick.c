/* Which pipeline a request goes to: an estimate of its time to first token
 * on each healthy pipeline from the batcher's gauges, the work the router
 * itself queued there, and step latencies the router measures from the
 * batcher's counters. Also the summed stats (see router.h). */
#include <math.h>
#include <string.h>

#include "../../common/st_common.h"
#include "router_internal.h"

/* Steps a running request is assumed to have left when a newcomer must wait
 * for one to end (its batch or its KV is full): a guess, since the router
 * cannot know how long requests will run; it only has to rank a full
 * pipeline well behind one with room. */
#define HOLD_STEPS 64.0

int router_pipe_down(rpipe *p)
{
    if (!p->down && p->error_fn && p->error_fn(p->error_ctx))
        p->down = 1;
    return p->down;
}

/* Estimated ms until a prompt of n tokens sent to p now gets its first token:
 *   step                                the step that samples it
 * + row * (queued prompt tokens + n)    prefill rows ahead of it and its own
 * + row * n_running                     the decode rows sharing those steps
 * + step * HOLD_STEPS * k               k running requests that must end first:
 *                                       one per request the batcher holds back
 *                                       beyond those the router knows are starting,
 *                                       plus enough to free the KV blocks the
 *                                       queued prompts lack
 * step / row fall back to the other pipelines' mean (def_*) until measured. */
static double estimate_ms(rpipe *p, int n, double def_step, double def_row)
{
    st_batcher_stats s;
    st_batcher_get_stats(p->b, &s);
    double step = p->step_ms > 0 ? p->step_ms : def_step;
    double row = p->row_ms > 0 ? p->row_ms : def_row;
    double queued = (double)p->pending_tokens + n;
    double t = step + row * (queued + s.n_running);
    double held = ST_MAX(0, s.n_waiting - p->n_prefill);
    int bs = s.block_size > 0 ? s.block_size : 16;
    double need = ceil(queued / bs) + p->n_prefill + 1; /* a block each to start decoding */
    double avail = (double)s.kv_blocks_free + s.kv_blocks_cached;
    if (need > avail) {
        double per_seq = s.n_running > 0 ? (double)s.kv_blocks_used / s.n_running : need;
        held += ceil((need - avail) / ST_MAX(per_seq, 1.0));
    }
    return t + step * HOLD_STEPS * held;
}

rpipe *router_pick(st_router *rt, int n_prompt)
{
    double sum_step = 0, sum_row = 0;
    int n_step = 0, n_row = 0;
    for (rpipe *p = rt->pipes; p; p = p->next) {
        if (p->step_ms > 0)
            sum_step += p->step_ms, n_step++;
        if (p->row_ms > 0)
            sum_row += p->row_ms, n_row++;
    }
    /* with nothing measured, any common unit ranks pipelines by their queues */
    double def_step = n_step ? sum_step / n_step : 1.0;
    double def_row = n_row ? sum_row / n_row : def_step / 64;
    rpipe *best = NULL;
    double best_t = 0;
    int best_fits = 0;
    for (rpipe *p = rt->pipes; p; p = p->next) {
        if (p->removing || router_pipe_down(p))
            continue;
        /* a pipeline whose context holds the prompt beats one that would refuse it */
        int fits = n_prompt < st_batcher_max_ctx(p->b);
        double t = estimate_ms(p, n_prompt, def_step, def_row);
        if (!best || fits > best_fits ||
            (fits == best_fits && (t < best_t || (t == best_t && p->n_reqs < best->n_reqs)))) {
            best = p;
            best_t = t;
            best_fits = fits;
        }
    }
    return best;
}

void router_sample(st_router *rt, uint64_t now)
{
    for (rpipe *p = rt->pipes; p; p = p->next) {
        if (p->sampled && now - p->s_ns < ROUTER_SAMPLE_NS / 2)
            continue;
        st_batcher_stats s;
        st_batcher_get_stats(p->b, &s);
        int busy = s.n_running + s.n_waiting > 0;
        /* busy at both ends: the interval was (nearly) all steps, so wall time per step is latency */
        if (p->sampled && p->s_busy && busy && s.steps > p->s_steps) {
            double dt = (double)(now - p->s_ns) * 1e-6;
            double step = dt / (double)(s.steps - p->s_steps);
            p->step_ms = p->step_ms > 0 ? 0.7 * p->step_ms + 0.3 * step : step;
            if (s.batch_tokens > p->s_rows) {
                double row = dt / (double)(s.batch_tokens - p->s_rows);
                p->row_ms = p->row_ms > 0 ? 0.7 * p->row_ms + 0.3 * row : row;
            }
        }
        p->sampled = 1;
        p->s_busy = busy;
        p->s_ns = now;
        p->s_steps = s.steps;
        p->s_rows = s.batch_tokens;
    }
}

/* ---- stats ------------------------------------------------------------------------------- */
void st_router_get_stats(st_router *rt, st_batcher_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&rt->mu);
    int first = 1;
    for (rpipe *p = rt->pipes; p; p = p->next) {
        st_batcher_stats s;
        st_batcher_get_stats(p->b, &s);
        out->n_running += s.n_running;
        out->n_waiting += s.n_waiting;
        out->kv_blocks_total += s.kv_blocks_total;
        out->kv_blocks_used += s.kv_blocks_used;
        out->kv_blocks_free += s.kv_blocks_free;
        out->kv_blocks_cached += s.kv_blocks_cached;
        out->block_size = first ? s.block_size : ST_MIN(out->block_size, s.block_size);
        out->max_ctx = first ? s.max_ctx : ST_MIN(out->max_ctx, s.max_ctx);
        out->steps += s.steps;
        out->batch_tokens += s.batch_tokens;
        out->batch_seqs += s.batch_seqs;
        out->last_batch_tokens += s.last_batch_tokens;
        out->last_batch_seqs += s.last_batch_seqs;
        out->prompt_tokens += s.prompt_tokens;
        out->prompt_tokens_computed += s.prompt_tokens_computed;
        out->recomputed_tokens += s.recomputed_tokens;
        out->prefix_hit_tokens += s.prefix_hit_tokens;
        out->generated_tokens += s.generated_tokens;
        out->preemptions += s.preemptions;
        out->requests_submitted += s.requests_submitted;
        out->requests_finished += s.requests_finished;
        out->requests_aborted += s.requests_aborted;
        first = 0;
    }
    out->n_waiting += rt->n_waiting;
    pthread_mutex_unlock(&rt->mu);
}

int st_router_max_ctx(st_router *rt)
{
    pthread_mutex_lock(&rt->mu);
    int m = 0;
    for (rpipe *p = rt->pipes; p; p = p->next) {
        int c = st_batcher_max_ctx(p->b);
        m = m ? ST_MIN(m, c) : c;
    }
    pthread_mutex_unlock(&rt->mu);
    return m;
}

int st_router_n_pipelines(st_router *rt)
{
    pthread_mutex_lock(&rt->mu);
    int n = rt->n_pipes;
    pthread_mutex_unlock(&rt->mu);
    return n;
}

int st_router_pipes(st_router *rt, st_router_pipe_info *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&rt->mu);
    for (rpipe *p = rt->pipes; p && n < max; p = p->next) {
        st_batcher_stats s;
        st_batcher_get_stats(p->b, &s);
        out[n++] = (st_router_pipe_info){.id = p->id,
                                         .healthy = !router_pipe_down(p),
                                         .n_running = s.n_running,
                                         .n_waiting = s.n_waiting,
                                         .kv_blocks_free = s.kv_blocks_free,
                                         .kv_blocks_total = s.kv_blocks_total,
                                         .step_ms = p->step_ms,
                                         .requests_routed = p->routed};
    }
    pthread_mutex_unlock(&rt->mu);
    return n;
}
