/* Encoding and decoding of the pipeline's messages (see pipeline_msg.h). */
#define _GNU_SOURCE
#include "pipeline_msg.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/st_common.h"
#include "act_codec.h"

int st_pipe_wire_dt(int act_dtype)
{
    switch (act_dtype) {
    case ST_ACT_F32: return ST_WIRE_DT_F32;
    case ST_ACT_BF16: return ST_WIRE_DT_BF16;
    case ST_ACT_I8: return ST_WIRE_DT_U8;
    default: return -1;
    }
}

int st_pipe_act_dt(int wire_dtype)
{
    switch (wire_dtype) {
    case ST_WIRE_DT_F32: return ST_ACT_F32;
    case ST_WIRE_DT_BF16: return ST_ACT_BF16;
    case ST_WIRE_DT_U8: return ST_ACT_I8;
    default: return -1;
    }
}

uint32_t st_pipe_wire_hidden(int act_dtype, int dim)
{
    return act_dtype == ST_ACT_I8 ? (uint32_t)dim + 4 : (uint32_t)dim;
}

size_t st_pipe_forward_meta_size(const st_sched_batch *sb, int n_released)
{
    return st_wire_meta_size((uint32_t)(sb->b.n_seqs + n_released), sb->n_table);
}

void st_pipe_bt_limits(int n_blocks, int max_seqs, int *max_tables, int *max_blocks)
{
    /* a sequence holding KV holds a block of its own (the one it writes),
     * so live tables <= n_blocks; max_seqs of slack for the step under way */
    *max_tables = n_blocks + max_seqs;
    *max_blocks = n_blocks; /* ids within a table are distinct */
}

size_t st_pipe_max_msg(int dim, int vocab, int max_tokens, int max_seqs, int max_blocks_per_seq)
{
    size_t act = (size_t)max_tokens * (size_t)ST_MAX(dim, 1) * 4;
    size_t lg = (size_t)max_seqs * (size_t)vocab * 4;
    return st_wire_meta_size((uint32_t)max_seqs, (uint64_t)max_seqs * (uint64_t)max_blocks_per_seq) + ST_MAX(act, lg) +
           4096;
}

static st_wire_hdr plain_hdr(int kind, uint32_t flags, uint64_t step, uint32_t n_seqs, int wire_dt, uint32_t n_tokens,
                             uint32_t hidden)
{
    st_wire_hdr h = {0};
    h.version = ST_WIRE_VERSION;
    h.kind = (uint16_t)kind;
    h.flags = flags;
    h.n_seqs = n_seqs;
    h.step_id = step;
    h.n_tokens = n_tokens;
    h.hidden = hidden;
    h.dtype = (uint16_t)wire_dt;
    h.payload_len = (uint64_t)n_tokens * hidden * st_wire_dtype_size(wire_dt);
    return h;
}

static st_wire_sampling wire_sampling(const st_sampling *s)
{
    st_wire_sampling w = {0};
    w.temperature = s->temperature > 0 ? s->temperature : 0;
    w.top_p = s->top_p;
    w.min_p = s->min_p > 0 ? s->min_p : 0;
    w.repeat_penalty = s->repetition_penalty;
    w.presence_penalty = s->presence_penalty;
    w.frequency_penalty = s->frequency_penalty;
    w.top_k = s->top_k > 0 ? (uint32_t)s->top_k : 0;
    w.seed = s->seed;
    return w;
}

int st_pipe_encode_forward(void *buf, size_t cap, const st_sched_batch *sb, const uint64_t *released,
                           int n_released, st_bt_map *sent, uint64_t step, int wire_dt, uint32_t hidden,
                           size_t *meta_len)
{
    st_wire_hdr h = plain_hdr(ST_WIRE_FORWARD, 0, step, (uint32_t)(n_released + sb->b.n_seqs), wire_dt,
                              (uint32_t)sb->b.n_tokens, hidden);
    st_wire_writer w;
    st_wire_writer_init(&w, buf, cap, &h);
    int rc = ST_OK;
    for (int i = 0; i < n_released && !rc; i++) {
        st_wire_seq s = {.seq_id = released[i], .flags = ST_PIPE_REC_RELEASE};
        st_bt_drop(sent, released[i]);
        rc = st_wire_writer_add(&w, &s, NULL);
    }
    for (int i = 0; i < sb->b.n_seqs && !rc; i++) {
        const st_batch_seq *q = &sb->seqs[i];
        st_wire_seq s = {0};
        s.seq_id = sb->info[i].req_id;
        s.first_pos = (uint32_t)q->pos0;
        s.n_tokens = (uint32_t)q->n_tokens;
        s.flags = q->want_logits ? ST_PIPE_REC_LOGITS : 0;
        s.sp = wire_sampling(&sb->info[i].sampling);
        int from = st_bt_delta_start(sent, s.seq_id, q->block_table, q->n_blocks);
        if (from < 0) {
            s.flags |= ST_PIPE_REC_RESET;
            from = 0;
            rc = st_bt_reset(sent, s.seq_id, q->block_table, q->n_blocks);
        } else {
            rc = st_bt_append(sent, s.seq_id, q->block_table + from, q->n_blocks - from);
        }
        s.n_blocks = (uint32_t)(q->n_blocks - from);
        if (!rc)
            rc = st_wire_writer_add(&w, &s, (const uint32_t *)q->block_table + from);
    }
    /* on an error the step is not sent and fails: its requests end, and
     * their releases bring `sent` and the stages back together */
    return rc ? rc : st_wire_writer_finish(&w, meta_len);
}

int st_pipe_reencode_forward(void *buf, size_t cap, const st_wire_msg *in, int wire_dt, uint32_t hidden,
                             size_t *meta_len)
{
    st_wire_hdr h = plain_hdr(ST_WIRE_FORWARD, 0, in->hdr.step_id, in->hdr.n_seqs, wire_dt, in->hdr.n_tokens, hidden);
    h.trace_id = in->hdr.trace_id;
    st_wire_writer w;
    st_wire_writer_init(&w, buf, cap, &h);
    uint32_t *ids = NULL;
    size_t cap_ids = 0, off = 0;
    st_wire_seq s;
    int rc = ST_OK;
    while (!rc && st_wire_seq_next(in, &off, &s)) {
        if (s.n_blocks > cap_ids) {
            cap_ids = s.n_blocks;
            ids = st_xrealloc(ids, cap_ids * sizeof *ids);
        }
        for (uint32_t j = 0; j < s.n_blocks; j++)
            ids[j] = st_wire_block(&s, j);
        rc = st_wire_writer_add(&w, &s, ids);
    }
    free(ids);
    return rc ? rc : st_wire_writer_finish(&w, meta_len);
}

int st_pipe_encode_plain(void *buf, size_t cap, int kind, uint32_t flags, uint64_t step, int wire_dt,
                         uint32_t n_tokens, uint32_t hidden, size_t *meta_len)
{
    st_wire_hdr h = plain_hdr(kind, flags, step, 0, wire_dt, n_tokens, hidden);
    st_wire_writer w;
    st_wire_writer_init(&w, buf, cap, &h);
    return st_wire_writer_finish(&w, meta_len);
}

int st_pipe_encode_error(void *buf, size_t cap, int kind, uint64_t step, const char *text, size_t *len)
{
    size_t n = strlen(text), meta;
    if (n > 1024)
        n = 1024;
    if (n == 0)
        text = "?", n = 1;
    int rc = st_pipe_encode_plain(buf, cap, kind, ST_PIPE_F_ERROR, step, ST_WIRE_DT_U8, (uint32_t)n, 1, &meta);
    if (rc)
        return rc;
    if (meta + n > cap)
        return st_err(ST_ERANGE, "pipeline: error message does not fit in %zu bytes", cap);
    memcpy((uint8_t *)buf + meta, text, n);
    *len = meta + n;
    return ST_OK;
}

int st_pipe_setup_decode(const st_wire_msg *m, st_pipe_setup *out)
{
    if (m->hdr.dtype != ST_WIRE_DT_I32 || m->hdr.n_tokens != 1 || m->hdr.hidden != ST_PIPE_SETUP_N || m->hdr.n_seqs)
        return st_err(ST_EPROTO, "pipeline: malformed setup message");
    int32_t v[ST_PIPE_SETUP_N];
    memcpy(v, m->payload, sizeof v);
    for (int i = 0; i < ST_PIPE_SETUP_N; i++)
        if (v[i] < 0 || (i < 7 && v[i] == 0))
            return st_err(ST_EPROTO, "pipeline: setup field %d is %d", i, v[i]);
    *out = (st_pipe_setup){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
    if (!st_act_dtype_known(out->act_dtype))
        return st_err(ST_EPROTO, "pipeline: setup names unknown activation dtype %d", out->act_dtype);
    return ST_OK;
}

void st_pipe_batch_free(st_pipe_batch *pb)
{
    free(pb->tokens);
    free(pb->pos);
    free(pb->seqs);
    free(pb->tables);
    free(pb->rows);
    memset(pb, 0, sizeof *pb);
}

/* Apply one step record's blocks to the stage's tables (ids checked first). */
static int apply_table(st_bt_map *tables, const st_wire_seq *s, const st_pipe_setup *su, int32_t *ids)
{
    for (uint32_t j = 0; j < s->n_blocks; j++) {
        uint32_t id = st_wire_block(s, j);
        if (id >= (uint32_t)su->n_blocks)
            return st_err(ST_EPROTO, "pipeline: seq %llu: block id %u >= %d blocks", (unsigned long long)s->seq_id, id,
                          su->n_blocks);
        ids[j] = (int32_t)id;
    }
    int rc = (s->flags & ST_PIPE_REC_RESET) ? st_bt_reset(tables, s->seq_id, ids, (int)s->n_blocks)
                                            : st_bt_append(tables, s->seq_id, ids, (int)s->n_blocks);
    return rc ? st_err(ST_EPROTO, "pipeline: %s", st_errmsg()) : ST_OK;
}

int st_pipe_batch_decode(const st_wire_msg *m, const st_pipe_setup *su, int first, st_bt_map *tables,
                         st_pipe_batch *pb)
{
    const st_wire_hdr *h = &m->hdr;
    /* release records first (no rows, no blocks), then the step's */
    size_t off = 0, step_off = 0;
    uint32_t n_rel = 0;
    st_wire_seq s;
    while (st_wire_seq_next(m, &off, &s) && (s.flags & ST_PIPE_REC_RELEASE)) {
        if (s.n_tokens || s.n_blocks)
            return st_err(ST_EPROTO, "pipeline: release record of seq %llu carries %u rows / %u blocks",
                          (unsigned long long)s.seq_id, s.n_tokens, s.n_blocks);
        st_bt_drop(tables, s.seq_id);
        n_rel++;
        step_off = off;
    }
    uint32_t n_step = h->n_seqs - n_rel;
    if (h->n_tokens < 1 || h->n_tokens > (uint32_t)su->max_tokens || n_step < 1 || n_step > (uint32_t)su->max_seqs)
        return st_err(ST_EPROTO, "pipeline: step %llu has %u rows / %u seqs (max %d / %d)",
                      (unsigned long long)h->step_id, h->n_tokens, n_step, su->max_tokens, su->max_seqs);
    if (first ? (h->dtype != ST_WIRE_DT_I32 || h->hidden != 1)
              : (st_pipe_act_dt(h->dtype) != su->act_dtype ||
                 h->hidden != st_pipe_wire_hidden(su->act_dtype, su->dim)))
        return st_err(ST_EPROTO, "pipeline: step %llu payload is dtype %u x %u, this stage expects %s",
                      (unsigned long long)h->step_id, h->dtype, h->hidden, first ? "token ids" : "hidden states");
    int nt = (int)h->n_tokens, ns = (int)n_step;
    if (nt > pb->cap_tokens) {
        pb->cap_tokens = nt;
        pb->tokens = st_xrealloc(pb->tokens, (size_t)nt * sizeof(int32_t));
        pb->pos = st_xrealloc(pb->pos, (size_t)nt * sizeof(int32_t));
    }
    if (ns > pb->cap_seqs) {
        pb->cap_seqs = ns;
        pb->seqs = st_xrealloc(pb->seqs, (size_t)ns * sizeof(st_batch_seq));
        pb->rows = st_xrealloc(pb->rows, (size_t)ns * sizeof(int32_t));
    }
    /* apply the step's tables (ids staged in pb->tables), then gather them whole */
    size_t total_blocks = 0;
    for (off = step_off; st_wire_seq_next(m, &off, &s);) {
        if (s.flags & ST_PIPE_REC_RELEASE)
            return st_err(ST_EPROTO, "pipeline: release record of seq %llu after the step's records",
                          (unsigned long long)s.seq_id);
        if (s.n_blocks > pb->cap_tables) {
            pb->cap_tables = s.n_blocks;
            pb->tables = st_xrealloc(pb->tables, pb->cap_tables * sizeof(int32_t));
        }
        int rc = apply_table(tables, &s, su, pb->tables);
        if (rc)
            return rc;
    }
    for (off = step_off; st_wire_seq_next(m, &off, &s);) { /* after every change: a seq may repeat */
        int n;
        st_bt_get(tables, s.seq_id, &n);
        total_blocks += (size_t)n;
    }
    if (total_blocks > pb->cap_tables) {
        pb->cap_tables = total_blocks;
        pb->tables = st_xrealloc(pb->tables, total_blocks * sizeof(int32_t));
    }
    int row = 0, i = 0;
    size_t t = 0;
    pb->n_rows = 0;
    for (off = step_off; st_wire_seq_next(m, &off, &s);) {
        /* wire.c checked that record tokens sum to n_tokens */
        int n_blocks;
        const int32_t *table = st_bt_get(tables, s.seq_id, &n_blocks);
        uint64_t end = (uint64_t)s.first_pos + s.n_tokens;
        if (s.n_tokens < 1 || end > (uint64_t)n_blocks * (uint64_t)su->block_size || end > INT32_MAX)
            return st_err(ST_EPROTO, "pipeline: seq %llu: %u rows at %u do not fit its %d blocks",
                          (unsigned long long)s.seq_id, s.n_tokens, s.first_pos, n_blocks);
        st_batch_seq *q = &pb->seqs[i];
        q->seq_id = (int32_t)(s.seq_id & 0x7fffffff);
        q->row0 = row;
        q->n_tokens = (int32_t)s.n_tokens;
        q->pos0 = (int32_t)s.first_pos;
        q->n_blocks = n_blocks;
        q->block_table = pb->tables + t;
        q->want_logits = (s.flags & ST_PIPE_REC_LOGITS) ? 1 : 0;
        memcpy(pb->tables + t, table, (size_t)n_blocks * sizeof(int32_t));
        t += (size_t)n_blocks;
        for (uint32_t r = 0; r < s.n_tokens; r++)
            pb->pos[row + (int)r] = (int32_t)(s.first_pos + r);
        row += (int)s.n_tokens;
        if (q->want_logits)
            pb->rows[pb->n_rows++] = row - 1;
        i++;
    }
    pb->act = NULL;
    pb->act_len = 0;
    pb->act_dtype = su->act_dtype;
    if (first) {
        memcpy(pb->tokens, m->payload, (size_t)nt * sizeof(int32_t));
        for (int r = 0; r < nt; r++)
            if (pb->tokens[r] < 0 || pb->tokens[r] >= su->vocab)
                return st_err(ST_EPROTO, "pipeline: token id %d outside the vocabulary of %d", pb->tokens[r],
                              su->vocab);
    } else {
        /* wire.c matched payload_len to n_tokens x hidden; this also
         * checks the int8 scales, so a decode never yields inf or NaN */
        if (st_act_check(m->payload, (size_t)h->payload_len, nt, su->dim, su->act_dtype))
            return st_err(ST_EPROTO, "pipeline: step %llu: %s", (unsigned long long)h->step_id, st_errmsg());
        pb->act = m->payload;
        pb->act_len = (size_t)h->payload_len;
    }
    pb->b = (st_batch){.n_tokens = nt, .tokens = pb->tokens, .pos = pb->pos, .n_seqs = ns, .seqs = pb->seqs};
    return ST_OK;
}

void st_pipe_backoff(int *idle)
{
    int n = (*idle)++;
    if (n < 200)
        return;
    if (n < 2000) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, n < 20000 ? 50000 : 500000};
    nanosleep(&ts, NULL);
}
