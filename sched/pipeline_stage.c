/* The stage server loop (see pipeline_stage.h). One thread runs the model;
 * two polling cores (dataplane/poller.h) drive the links, so heartbeats
 * flow while a long step computes. */
#include "pipeline_stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "../common/trace.h"
#include "../dataplane/poller.h"
#include "act_codec.h"
#include "pipeline_msg.h"

#define N_OUT 4 /* output buffers: a send's memory stays untouched until its completion */

typedef struct out_buf {
    uint8_t *p;
    size_t cap;
    int busy;
    /* for the trace: when it was posted, what it carried */
    uint64_t t_posted, step, trace_id, bytes;
    uint32_t pipe;
} out_buf;

typedef struct stage_srv {
    const st_model *m;
    st_backend *be;
    st_poller *pin, *pout;
    st_link *out;
    out_buf ob[N_OUT];
    int next_ob;
    st_stage st;
    int ready;
    st_pipe_setup su;
    st_pipe_batch pb;
    st_bt_map tables;  /* block tables of the sequences under way (sched/block_tables.h) */
    float *conv;       /* (su.max_tokens, dim) f32 rows for int8 in or out (the engine takes f32/bf16) */
    st_pipe_stage_stats stats;
    int hist_link;     /* send-time histogram of the link downstream */
    uint64_t trace_id; /* of the FORWARD being handled (its header's), 0: untraced */
    uint64_t step;
    uint32_t pipe;
} stage_srv;

/* Reap completions; ST_OK or the output link's error. */
static int reap(stage_srv *s)
{
    st_completion c[16];
    int n;
    while ((n = st_poller_poll_cq(s->pout, c, 16)) > 0)
        for (int i = 0; i < n; i++) {
            if (c[i].cookie < N_OUT) {
                out_buf *b = &s->ob[c[i].cookie];
                uint64_t now = st_now_ns();
                st_trace_observe(s->hist_link, now - b->t_posted);
                st_trace_step_span(b->trace_id, ST_TK_HOP_SEND, b->step, b->pipe, s->m->layer_start, b->t_posted,
                                   now, 0, 0, b->bytes);
                b->busy = 0;
            }
            if (c[i].status)
                return st_err(c[i].status, "downstream link failed: %s", st_link_errmsg(s->out));
        }
    int rc = st_poller_error(s->pout);
    return rc ? st_err(rc, "downstream link failed: %s", st_link_errmsg(s->out)) : ST_OK;
}

/* A free output buffer of at least `need` bytes (waits for a completion). */
static int get_buf(stage_srv *s, size_t need, out_buf **out)
{
    out_buf *b = &s->ob[s->next_ob];
    int idle = 0;
    while (b->busy) {
        int rc = reap(s);
        if (rc)
            return rc;
        st_pipe_backoff(&idle);
    }
    if (b->cap < need) {
        free(b->p);
        b->p = st_xaligned(need);
        b->cap = need;
    }
    *out = b;
    return ST_OK;
}

static int send_buf(stage_srv *s, out_buf *b, size_t len)
{
    st_iov iov = {b->p, len, NULL};
    uint64_t cookie = (uint64_t)(b - s->ob);
    b->busy = 1;
    b->t_posted = st_now_ns();
    b->trace_id = s->trace_id;
    b->step = s->step;
    b->pipe = s->pipe;
    b->bytes = len;
    s->next_ob = (s->next_ob + 1) % N_OUT;
    int idle = 0, rc;
    while ((rc = st_poller_send(s->pout, &iov, 1, cookie)) == ST_EAGAIN) {
        if ((rc = reap(s)))
            return rc;
        st_pipe_backoff(&idle);
    }
    return rc;
}

static int last(const stage_srv *s) { return st_model_is_last(s->m); }

/* Pass an error about `step` downstream (the last stage turns it into RESULT). */
static int send_error(stage_srv *s, uint64_t step, const char *text)
{
    out_buf *b;
    int rc = get_buf(s, 4096, &b);
    size_t len;
    if (rc || (rc = st_pipe_encode_error(b->p, b->cap, last(s) ? ST_WIRE_RESULT : ST_WIRE_FORWARD, step, text, &len)))
        return rc;
    return send_buf(s, b, len);
}

static int on_setup(stage_srv *s, const st_wire_msg *msg)
{
    st_pipe_setup su;
    const st_model_config *c = &s->m->cfg;
    char why[512];
    int rc = st_pipe_setup_decode(msg, &su);
    if (rc)
        return send_error(s, msg->hdr.step_id, st_errmsg());
    if (su.n_layers != c->n_layers || su.dim != c->dim || su.vocab != c->vocab_size) {
        snprintf(why, sizeof why, "stage %d..%d: model geometry %d layers / dim %d / vocab %d differs from the head's "
                 "%d / %d / %d (another model?)", s->m->layer_start, s->m->layer_end, c->n_layers, c->dim,
                 c->vocab_size, su.n_layers, su.dim, su.vocab);
        return send_error(s, msg->hdr.step_id, why);
    }
    if (su.next_layer != s->m->layer_start) {
        snprintf(why, sizeof why, "stage holding layers %d..%d is placed where layer %d must come next",
                 s->m->layer_start, s->m->layer_end, su.next_layer);
        return send_error(s, msg->hdr.step_id, why);
    }
    if (s->ready)
        st_stage_free(&s->st);
    s->ready = 0;
    if ((rc = st_stage_init(&s->st, s->m, s->be, su.n_blocks, su.block_size, su.max_tokens, su.max_seqs))) {
        snprintf(why, sizeof why, "stage %d..%d: %s", s->m->layer_start, s->m->layer_end, st_errmsg());
        return send_error(s, msg->hdr.step_id, why);
    }
    s->ready = 1;
    s->su = su;
    int max_tables, max_blocks;
    st_pipe_bt_limits(su.n_blocks, su.max_seqs, &max_tables, &max_blocks);
    st_bt_free(&s->tables);
    st_bt_init(&s->tables, max_tables, max_blocks);
    free(s->conv);
    s->conv = su.act_dtype == ST_ACT_I8 ? st_xmalloc((size_t)su.max_tokens * (size_t)c->dim * sizeof(float)) : NULL;
    ST_INFO("stage %d..%d: set up for %d KV blocks of %d, %d rows / %d seqs per step, %s activations",
            s->m->layer_start, s->m->layer_end, su.n_blocks, su.block_size, su.max_tokens, su.max_seqs,
            st_act_dtype_name(su.act_dtype));
    out_buf *b;
    size_t meta;
    if ((rc = get_buf(s, 4096, &b)))
        return rc;
    if (last(s)) {
        rc = st_pipe_encode_plain(b->p, b->cap, ST_WIRE_RESULT, ST_PIPE_F_SETUP, msg->hdr.step_id, ST_WIRE_DT_NONE, 0,
                                  0, &meta);
    } else {
        rc = st_pipe_encode_plain(b->p, b->cap, ST_WIRE_FORWARD, ST_PIPE_F_SETUP, msg->hdr.step_id, ST_WIRE_DT_I32, 1,
                                  ST_PIPE_SETUP_N, &meta);
        su.next_layer = s->m->layer_end;
        int32_t v[ST_PIPE_SETUP_N] = {su.n_layers, su.dim, su.vocab, su.n_blocks, su.block_size,
                                      su.max_tokens, su.max_seqs, su.act_dtype, su.next_layer};
        memcpy(b->p + meta, v, sizeof v);
        meta += sizeof v;
    }
    return rc ? rc : send_buf(s, b, meta);
}

static int on_forward(stage_srv *s, const st_wire_msg *msg)
{
    uint64_t step = msg->hdr.step_id;
    if (!s->ready) {
        s->stats.rejected++;
        return send_error(s, step, "stage: FORWARD before setup");
    }
    int rc = st_pipe_batch_decode(msg, &s->su, st_model_is_first(s->m), &s->tables, &s->pb);
    if (rc) {
        s->stats.rejected++;
        return send_error(s, step, st_errmsg());
    }
    const st_pipe_batch *pb = &s->pb;
    int dim = s->m->cfg.dim, nt = pb->b.n_tokens;
    /* int8 is converted here, on both sides of the engine, which runs f32 */
    int out_dt = s->su.act_dtype, i8 = out_dt == ST_ACT_I8, run_dt = i8 ? ST_ACT_F32 : out_dt;
    const void *in = pb->act;
    int in_dt = pb->act_dtype;
    if (in && in_dt == ST_ACT_I8) {
        if ((rc = st_act_decode(s->conv, pb->act, pb->act_len, nt, dim, ST_ACT_I8))) {
            s->stats.rejected++;
            return send_error(s, step, st_errmsg());
        }
        in = s->conv;
        in_dt = ST_ACT_F32;
    }
    size_t out_bytes = last(s) ? st_stage_out_bytes(&s->st, nt, pb->n_rows, out_dt) : st_act_bytes(out_dt, nt, dim);
    size_t need = st_wire_meta_size(msg->hdr.n_seqs, (uint64_t)pb->cap_tables) + out_bytes;
    out_buf *b;
    if ((rc = get_buf(s, need, &b)))
        return rc;
    size_t meta;
    uint64_t t0 = st_now_ns();
    if (last(s))
        rc = st_pipe_encode_plain(b->p, b->cap, ST_WIRE_RESULT, 0, step, ST_WIRE_DT_F32, (uint32_t)pb->n_rows,
                                  (uint32_t)s->m->cfg.vocab_size, &meta);
    else
        rc = st_pipe_reencode_forward(b->p, b->cap, msg, st_pipe_wire_dt(out_dt), st_pipe_wire_hidden(out_dt, dim),
                                      &meta);
    if (rc)
        return send_error(s, step, st_errmsg());
    int to_conv = i8 && !last(s);
    rc = st_stage_run(&s->st, &pb->b, in, in_dt, pb->rows, pb->n_rows, to_conv ? (void *)s->conv : b->p + meta,
                      run_dt);
    if (!rc && to_conv)
        rc = st_act_encode(b->p + meta, s->conv, nt, dim, ST_ACT_I8);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "stage %d..%d: %s", s->m->layer_start, s->m->layer_end, st_errmsg());
        return send_error(s, step, why);
    }
    s->stats.steps++;
    uint64_t t1 = st_now_ns();
    st_trace_observe(ST_TH_STAGE, t1 - t0);
    st_trace_step_span(s->trace_id, ST_TK_STAGE, step, s->pipe, s->m->layer_start, t0, t1, (uint32_t)pb->b.n_tokens,
                       (uint32_t)pb->b.n_seqs, 0);
    return send_buf(s, b, meta + out_bytes);
}

/* An ERROR from upstream: pass it on. */
static int on_error(stage_srv *s, const st_wire_msg *msg)
{
    char text[1025];
    size_t n = msg->hdr.dtype == ST_WIRE_DT_U8 ? (size_t)ST_MIN(msg->hdr.payload_len, 1024) : 0;
    memcpy(text, msg->payload, n);
    text[n] = 0;
    return send_error(s, msg->hdr.step_id, n ? text : "upstream stage failed");
}

static int handle(stage_srv *s, const st_msg *raw)
{
    st_wire_msg msg;
    if (st_wire_decode(raw->data, raw->len, &msg)) {
        s->stats.rejected++;
        char why[512];
        snprintf(why, sizeof why, "stage %d..%d rejected a message: %s", s->m->layer_start, s->m->layer_end,
                 st_errmsg());
        ST_WARN("%s", why);
        uint64_t step = 0;
        if (raw->len >= 32)
            memcpy(&step, raw->data + 24, 8); /* best effort: the header may be the corrupt part */
        return send_error(s, step, why);
    }
    /* a traced step (nonzero trace id) leaves records on this node, on its clock */
    s->trace_id = msg.hdr.trace_id;
    s->step = msg.hdr.step_id;
    s->pipe = msg.hdr.pipeline_id;
    st_trace_step_span(s->trace_id, ST_TK_HOP_RECV, s->step, s->pipe, s->m->layer_start, st_now_ns(), 0,
                       msg.hdr.n_tokens, msg.hdr.n_seqs, raw->len);
    if (msg.hdr.kind != ST_WIRE_FORWARD) {
        s->stats.rejected++;
        return send_error(s, msg.hdr.step_id, "stage: expected a FORWARD message");
    }
    if (msg.hdr.flags & ST_PIPE_F_ERROR)
        return on_error(s, &msg);
    if (msg.hdr.flags & ST_PIPE_F_SETUP)
        return on_setup(s, &msg);
    return on_forward(s, &msg);
}

int st_pipe_stage_serve(st_link *in, st_link *out, const st_model *m, st_backend *be, const volatile int *stop,
                        st_pipe_stage_stats *stats)
{
    stage_srv *s = st_xcalloc(1, sizeof *s);
    s->m = m;
    char name[48];
    snprintf(name, sizeof name, "stage %d..%d", m->layer_start, m->layer_end);
    st_trace_thread_name(name);
    snprintf(name, sizeof name, "stage %d..%d ->", m->layer_start, m->layer_end);
    s->hist_link = st_trace_link(name);
    s->be = be;
    s->out = out;
    st_poller_opts po;
    st_poller_opts_default(&po);
    int rc = st_poller_start(in, &po, &s->pin);
    if (!rc)
        rc = st_poller_start(out, &po, &s->pout);
    int idle = 0;
    while (!rc && !(stop && *stop)) {
        st_msg raw;
        if (st_poller_recv(s->pin, &raw) == ST_OK) {
            idle = 0;
            rc = handle(s, &raw);
            int r2;
            while ((r2 = st_poller_release(s->pin, &raw)) == ST_EAGAIN)
                st_pipe_backoff(&idle);
            continue;
        }
        if (st_poller_error(s->pin)) {
            ST_INFO("stage %d..%d: upstream link ended (%s)", m->layer_start, m->layer_end, st_link_errmsg(in));
            break;
        }
        if ((rc = reap(s)))
            break;
        st_pipe_backoff(&idle);
    }
    if (rc)
        ST_ERROR("stage %d..%d: stopped: %s", m->layer_start, m->layer_end, st_errmsg());
    if (s->pout)
        st_poller_stop(s->pout);
    if (s->pin)
        st_poller_stop(s->pin);
    if (stats)
        *stats = s->stats;
    if (s->ready)
        st_stage_free(&s->st);
    st_pipe_batch_free(&s->pb);
    st_bt_free(&s->tables);
    free(s->conv);
    for (int i = 0; i < N_OUT; i++)
        free(s->ob[i].p);
    free(s);
    return rc;
}
