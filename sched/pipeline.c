/* The head of a manual pipeline (see pipeline.h and pipeline_msg.h). */
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "../common/trace.h"
#include "../dataplane/crc32c.h"
#include "../dataplane/poller.h"
#include "act_codec.h"
#include "pipeline_msg.h"

/* One batch out: its FORWARD's memory (untouched until the send completes)
 * and what its RESULT must match. */
typedef struct pipe_slot {
    uint8_t *buf;             /* (cap,) the FORWARD */
    size_t cap;
    int busy;                 /* buf's send completion not yet reaped */
    int sent;                 /* its FORWARD is out, its RESULT not yet taken */
    uint64_t step;            /* step id of that FORWARD */
    uint64_t t_posted;        /* ns: buf handed to the link (trace) */
    uint64_t t_done;          /* ns: its send completion reaped */
    size_t bytes;             /* FORWARD length (trace) */
    uint64_t traced, tstep;   /* the batcher's trace id and step at submit (0: untraced) */
    uint32_t tpipe;
} pipe_slot;

struct st_pipeline {
    st_pipeline_config c;
    st_model_config mc;       /* the whole model's geometry */
    st_poller *pn, *pb;       /* cores driving c.next and c.back */
    st_stage local;           /* the head's own layers, when c.local */
    float *act_f32;           /* (max_tokens, dim) their output before int8 encoding (int8 only) */
    pipe_slot slot[ST_BATCHER_MAX_INFLIGHT]; /* batches out; slot 0 also carries the setup */
    uint64_t step;            /* step id of the last FORWARD sent */
    st_bt_map sent;           /* block tables as the stages hold them (sched/block_tables.h) */
    uint64_t *rel;            /* (cap_rel,) releases not yet sent (a failed send keeps them) */
    int n_rel, cap_rel;
    int hist_link;            /* send-time histogram of the link to the first stage */
    int err;                  /* sticky: the pipeline is down */
    char why[512];
};

int st_pipeline_error(const st_pipeline *p) { return p->err; }

static int down(st_pipeline *p, int rc, const char *fmt, const char *detail)
{
    if (!p->err) {
        p->err = rc ? rc : ST_ECONN;
        snprintf(p->why, sizeof p->why, fmt, detail);
        ST_ERROR("pipeline: %s", p->why);
    }
    return st_err(p->err, "pipeline down: %s", p->why);
}

/* Check both links and reap send completions (cookie = slot). ST_OK while
 * healthy. */
static int check_links(st_pipeline *p)
{
    st_completion c[8];
    int n;
    while ((n = st_poller_poll_cq(p->pn, c, 8)) > 0)
        for (int i = 0; i < n; i++) {
            if (c[i].cookie < ST_BATCHER_MAX_INFLIGHT && p->slot[c[i].cookie].busy) {
                pipe_slot *s = &p->slot[c[i].cookie];
                s->t_done = st_now_ns();
                st_trace_observe(p->hist_link, s->t_done - s->t_posted);
                s->busy = 0;
            }
            if (c[i].status)
                return down(p, c[i].status, "link to the first stage failed: %s", st_link_errmsg(p->c.next));
        }
    if (st_poller_error(p->pn))
        return down(p, st_poller_error(p->pn), "link to the first stage failed: %s", st_link_errmsg(p->c.next));
    if (st_poller_error(p->pb))
        return down(p, st_poller_error(p->pb), "link from the last stage failed: %s", st_link_errmsg(p->c.back));
    return ST_OK;
}

static int send_buf(st_pipeline *p, int slot, size_t len)
{
    pipe_slot *s = &p->slot[slot];
    st_iov iov = {s->buf, len, NULL};
    int idle = 0, rc;
    s->busy = 1;
    s->bytes = len;
    s->t_posted = st_now_ns();
    while ((rc = st_poller_send(p->pn, &iov, 1, (uint64_t)slot)) == ST_EAGAIN) {
        if ((rc = check_links(p)))
            return rc;
        st_pipe_backoff(&idle);
    }
    if (rc)
        return down(p, rc, "send to the first stage failed: %s", st_errmsg());
    return ST_OK;
}

/* Wait until slot's send completion is reaped (its memory may be reused). */
static int wait_sent(st_pipeline *p, int slot)
{
    int idle = 0, rc;
    while (p->slot[slot].busy) {
        if ((rc = check_links(p)))
            return rc;
        st_pipe_backoff(&idle);
    }
    return ST_OK;
}

/* Wait for the next reply from the last stage (it answers the oldest
 * FORWARD out, which is in `slot`) and that FORWARD's send completion;
 * timeout_ms < 0: no limit beyond the links' own liveness checks. */
static int wait_reply(st_pipeline *p, int slot, st_msg *raw, int timeout_ms)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int idle = 0, got = 0, rc;
    for (;;) {
        if (!got && st_poller_recv(p->pb, raw) == ST_OK)
            got = 1, idle = 0;
        if (got && !p->slot[slot].busy)
            return ST_OK;
        if ((rc = check_links(p)))
            return rc;
        if (deadline && st_now_ns() > deadline) {
            char ms[32];
            snprintf(ms, sizeof ms, "%d", timeout_ms);
            return down(p, ST_ETIMEDOUT, "no answer from the stages within %s ms", ms);
        }
        st_pipe_backoff(&idle);
    }
}

static void release(st_pipeline *p, const st_msg *raw)
{
    int idle = 0;
    while (st_poller_release(p->pb, raw) == ST_EAGAIN)
        st_pipe_backoff(&idle);
}

static void grow(pipe_slot *s, size_t need)
{
    if (need > s->cap) {
        free(s->buf);
        s->buf = st_xaligned(need);
        s->cap = need;
    }
}

/* Decode a reply and check it answers step `step`; *msg valid until release. */
static int check_reply(st_pipeline *p, const st_msg *raw, uint64_t step, st_wire_msg *msg)
{
    if (st_wire_decode(raw->data, raw->len, msg))
        return st_err(ST_EPROTO, "pipeline: the last stage sent a malformed reply to step %llu: %s",
                      (unsigned long long)step, st_errmsg());
    if (msg->hdr.kind != ST_WIRE_RESULT)
        return st_err(ST_EPROTO, "pipeline: expected a RESULT for step %llu, got kind %u", (unsigned long long)step,
                      msg->hdr.kind);
    if (msg->hdr.flags & ST_PIPE_F_ERROR) {
        size_t n = msg->hdr.dtype == ST_WIRE_DT_U8 ? (size_t)ST_MIN(msg->hdr.payload_len, 1024) : 0;
        return st_err(ST_EIO, "pipeline: step %llu failed on a stage: %.*s", (unsigned long long)step, (int)n,
                      (const char *)msg->payload);
    }
    if (msg->hdr.step_id != step)
        return down(p, ST_EPROTO, "%s", "replies out of order (a stage lost a step)");
    return ST_OK;
}

int st_pipeline_create(const st_pipeline_config *cfg, st_pipeline **out)
{
    *out = NULL;
    st_pipeline_config c = *cfg;
    if (!c.next || !c.back)
        return st_err(ST_EINVAL, "pipeline: needs a link to the first stage and one from the last");
    if (!c.model && !c.local)
        return st_err(ST_EINVAL, "pipeline: needs the model geometry (no local layers given)");
    if (c.local && (!st_model_is_first(c.local) || st_model_is_last(c.local)))
        return st_err(ST_EINVAL, "pipeline: the head's layers %d..%d must start at 0 and leave some to the stages",
                      c.local->layer_start, c.local->layer_end);
    if (!st_act_dtype_known(c.act_dtype))
        return st_err(ST_EINVAL, "pipeline: unknown activation dtype %d", c.act_dtype);
    if (c.n_blocks < 1 || c.block_size < 1 || c.max_tokens < 1 || c.max_seqs < 1)
        return st_err(ST_EINVAL, "pipeline: KV geometry %d x %d / batch %d x %d invalid", c.n_blocks, c.block_size,
                      c.max_tokens, c.max_seqs);
    if (c.setup_timeout_ms <= 0)
        c.setup_timeout_ms = 30000;
    st_pipeline *p = st_xcalloc(1, sizeof *p);
    p->c = c;
    p->hist_link = st_trace_link("head -> first stage");
    p->mc = c.model ? *c.model : c.local->cfg;
    int max_tables, max_blocks;
    st_pipe_bt_limits(c.n_blocks, c.max_seqs, &max_tables, &max_blocks);
    st_bt_init(&p->sent, max_tables, max_blocks);
    int rc;
    if (c.local && (rc = st_stage_init(&p->local, c.local, c.be, c.n_blocks, c.block_size, c.max_tokens, 0))) {
        st_bt_free(&p->sent);
        free(p);
        return rc;
    }
    if (c.local && c.act_dtype == ST_ACT_I8)
        p->act_f32 = st_xmalloc((size_t)c.max_tokens * (size_t)p->mc.dim * sizeof(float));
    st_poller_opts po;
    st_poller_opts_default(&po);
    if ((rc = st_poller_start(c.next, &po, &p->pn)) || (rc = st_poller_start(c.back, &po, &p->pb))) {
        st_pipeline_destroy(p);
        return rc;
    }
    /* the setup round trip */
    size_t meta;
    pipe_slot *s0 = &p->slot[0];
    grow(s0, 4096);
    st_pipe_encode_plain(s0->buf, s0->cap, ST_WIRE_FORWARD, ST_PIPE_F_SETUP, 0, ST_WIRE_DT_I32, 1, ST_PIPE_SETUP_N,
                         &meta);
    int32_t v[ST_PIPE_SETUP_N] = {p->mc.n_layers, p->mc.dim, p->mc.vocab_size, c.n_blocks, c.block_size,
                                  c.max_tokens, c.max_seqs, c.act_dtype, c.local ? c.local->layer_end : 0};
    memcpy(s0->buf + meta, v, sizeof v);
    st_msg raw;
    st_wire_msg msg;
    if ((rc = send_buf(p, 0, meta + sizeof v)) || (rc = wait_reply(p, 0, &raw, c.setup_timeout_ms))) {
        st_pipeline_destroy(p);
        return rc;
    }
    rc = check_reply(p, &raw, 0, &msg);
    if (!rc && !(msg.hdr.flags & ST_PIPE_F_SETUP))
        rc = st_err(ST_EPROTO, "pipeline: the last stage answered the setup with something else");
    release(p, &raw);
    if (rc) {
        st_pipeline_destroy(p);
        return rc;
    }
    ST_INFO("pipeline: stages set up (%d layers, head holds %d, %d KV blocks of %d, %s activations)",
            p->mc.n_layers, c.local ? c.local->layer_end : 0, c.n_blocks, c.block_size,
            st_act_dtype_name(c.act_dtype));
    *out = p;
    return ST_OK;
}

void st_pipeline_destroy(st_pipeline *p)
{
    if (!p)
        return;
    if (p->pn)
        st_poller_stop(p->pn);
    if (p->pb)
        st_poller_stop(p->pb);
    if (p->c.local)
        st_stage_free(&p->local);
    free(p->act_f32);
    st_bt_free(&p->sent);
    free(p->rel);
    for (int i = 0; i < ST_BATCHER_MAX_INFLIGHT; i++)
        free(p->slot[i].buf);
    free(p);
}

/* Put a traced step's trace id into an encoded header (offset 32) and
 * reseal it: the CRC32C covers the header with its crc field (offset 8)
 * zeroed, then the records (dataplane/wire.h). */
static void stamp_trace_id(uint8_t *msg, size_t meta_len, uint64_t trace_id)
{
    static const uint8_t zero[4];
    for (int i = 0; i < 8; i++)
        msg[32 + i] = (uint8_t)(trace_id >> (8 * i));
    uint32_t c = st_crc32c(0, msg, 8);
    c = st_crc32c(c, zero, 4);
    c = st_crc32c(c, msg + 12, meta_len - 12);
    for (int i = 0; i < 4; i++)
        msg[8 + i] = (uint8_t)(c >> (8 * i));
}

int st_pipeline_submit(void *ctx, const st_sched_batch *sb, int slot)
{
    st_pipeline *p = ctx;
    if (p->err)
        return st_err(p->err, "pipeline down: %s", p->why);
    if (slot < 0 || slot >= ST_BATCHER_MAX_INFLIGHT || p->slot[slot].sent)
        return st_err(ST_EINVAL, "pipeline: slot %d is not free for a new batch", slot);
    pipe_slot *s = &p->slot[slot];
    int rc;
    if ((rc = wait_sent(p, slot))) /* its last FORWARD's completion (normally reaped already) */
        return rc;
    int local = p->c.local != NULL;
    int wire_dt = local ? st_pipe_wire_dt(p->c.act_dtype) : ST_WIRE_DT_I32;
    uint32_t hidden = local ? st_pipe_wire_hidden(p->c.act_dtype, p->mc.dim) : 1;
    size_t payload = local ? st_act_bytes(p->c.act_dtype, sb->b.n_tokens, p->mc.dim) : (size_t)sb->b.n_tokens * 4;
    if (p->n_rel + sb->n_released > p->cap_rel) {
        p->cap_rel = ST_MAX(p->n_rel + sb->n_released, 2 * p->cap_rel);
        p->rel = st_xrealloc(p->rel, (size_t)p->cap_rel * sizeof *p->rel);
    }
    if (sb->n_released)
        memcpy(p->rel + p->n_rel, sb->released, (size_t)sb->n_released * sizeof *p->rel);
    p->n_rel += sb->n_released;
    grow(s, st_pipe_forward_meta_size(sb, p->n_rel) + payload);
    uint64_t step = p->step + 1;
    size_t meta;
    if ((rc = st_pipe_encode_forward(s->buf, s->cap, sb, p->rel, p->n_rel, &p->sent, step, wire_dt, hidden, &meta)))
        return rc;
    /* a traced step (the batcher says so) carries its trace id to every stage */
    s->traced = st_trace_current();
    st_trace_current_step(&s->tstep, &s->tpipe);
    if (s->traced)
        stamp_trace_id(s->buf, meta, s->traced);
    if (local) {
        uint64_t t0 = s->traced ? st_now_ns() : 0;
        void *out = p->act_f32 ? (void *)p->act_f32 : s->buf + meta;
        if ((rc = st_stage_run(&p->local, &sb->b, NULL, 0, NULL, 0, out, p->act_f32 ? ST_ACT_F32 : p->c.act_dtype)))
            return rc;
        if (p->act_f32 && (rc = st_act_encode(s->buf + meta, p->act_f32, sb->b.n_tokens, p->mc.dim, ST_ACT_I8)))
            return rc;
        st_trace_step_span(s->traced, ST_TK_STAGE, s->tstep, s->tpipe, 0, t0, s->traced ? st_now_ns() : 0,
                           (uint32_t)sb->b.n_tokens, (uint32_t)sb->b.n_seqs, 0);
    } else {
        memcpy(s->buf + meta, sb->b.tokens, payload);
    }
    if ((rc = send_buf(p, slot, meta + payload)))
        return rc;
    p->n_rel = 0;
    p->step = step;
    s->step = step;
    s->sent = 1;
    return ST_OK;
}

int st_pipeline_collect(void *ctx, const st_sched_batch *sb, int slot, float *logits)
{
    st_pipeline *p = ctx;
    if (slot < 0 || slot >= ST_BATCHER_MAX_INFLIGHT || !p->slot[slot].sent)
        return st_err(ST_EINVAL, "pipeline: no batch out in slot %d", slot);
    pipe_slot *s = &p->slot[slot];
    s->sent = 0;
    if (p->err)
        return st_err(p->err, "pipeline down: %s", p->why);
    st_msg raw;
    st_wire_msg msg;
    int rc = wait_reply(p, slot, &raw, -1);
    if (rc)
        return rc;
    if (s->traced) { /* the send to the first stage, then the wait for the last one's reply */
        uint64_t now = st_now_ns();
        st_trace_step_span(s->traced, ST_TK_HOP_SEND, s->tstep, s->tpipe, -1, s->t_posted, s->t_done,
                           (uint32_t)sb->b.n_tokens, (uint32_t)sb->b.n_seqs, s->bytes);
        st_trace_step_span(s->traced, ST_TK_HOP_RECV, s->tstep, s->tpipe, -1, s->t_posted, now,
                           (uint32_t)sb->n_logit_rows, (uint32_t)sb->b.n_seqs, raw.len);
    }
    uint64_t step = s->step;
    rc = check_reply(p, &raw, step, &msg);
    if (!rc && (msg.hdr.dtype != ST_WIRE_DT_F32 || msg.hdr.n_tokens != (uint32_t)sb->n_logit_rows ||
                msg.hdr.hidden != (uint32_t)p->mc.vocab_size))
        rc = st_err(ST_EPROTO, "pipeline: step %llu: reply holds %u x %u (dtype %u), expected %d x %d logits",
                    (unsigned long long)step, msg.hdr.n_tokens, msg.hdr.hidden, msg.hdr.dtype, sb->n_logit_rows,
                    p->mc.vocab_size);
    if (!rc && sb->n_logit_rows)
        memcpy(logits, msg.payload, (size_t)msg.hdr.payload_len);
    release(p, &raw);
    return rc;
}

int st_pipeline_exec(void *ctx, const st_sched_batch *sb, float *logits)
{
    int rc = st_pipeline_submit(ctx, sb, 0);
    return rc ? rc : st_pipeline_collect(ctx, sb, 0, logits);
}

st_batch_async_exec st_pipeline_async_exec(st_pipeline *p)
{
    return (st_batch_async_exec){.submit = st_pipeline_submit, .collect = st_pipeline_collect, .ctx = p};
}
