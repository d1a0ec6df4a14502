/* The trace message: a node's trace records on their way to the scheduler
 * (format in ctl.h). The scheduler decodes it as untrusted input: every
 * event is an array of exactly 13 integers, each checked against its range
 * before it lands in a record. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "sched/cluster/ctl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "common/trace.h"

#define MAX_EXACT ((int64_t)1 << 53)
#define N_FIELDS 13

char *st_ctl_trace_encode(const char *node, const st_trace_rec *recs, const uint32_t *tids, size_t n,
                          const uint32_t *thread_tids, const char (*thread_names)[48], int n_threads, size_t *len)
{
    if (!node || n > ST_CTL_TRACE_MAX_EVENTS || (n && !recs) || n_threads < 0 ||
        n_threads > ST_CTL_TRACE_MAX_THREADS || (n_threads && (!thread_tids || !thread_names)))
        return NULL;
    /* the base: whole seconds at or below the earliest record */
    uint64_t lo = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        lo = recs[i].ts_ns < lo ? recs[i].ts_ns : lo;
    uint64_t t_s = n ? lo / 1000000000ull : 0, base = t_s * 1000000000ull;
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":\"trace\",\"node\":");
    st_sb_json_str(&sb, node, strnlen(node, 63));
    st_sb_printf(&sb, ",\"t_s\":%llu,\"events\":[", (unsigned long long)t_s);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const st_trace_rec *r = &recs[i];
        uint64_t rel = r->ts_ns - base;
        if (rel > (uint64_t)MAX_EXACT || r->dur_ns > (uint64_t)MAX_EXACT || r->req > (uint64_t)MAX_EXACT ||
            r->step > (uint64_t)MAX_EXACT || r->bytes > (uint64_t)MAX_EXACT || r->kind == 0 ||
            r->kind >= ST_TK_END || (r->phase != 'X' && r->phase != 'i') || r->stage < -1)
            continue; /* not representable (a span of 104 days, a corrupt record): not shipped */
        st_sb_printf(&sb, "%s[%llu,%llu,%u,%u,%llu,%llu,%u,%d,%u,%u,%llu,%u,%u]", kept++ ? "," : "",
                     (unsigned long long)rel, (unsigned long long)r->dur_ns, r->kind, r->phase,
                     (unsigned long long)r->req, (unsigned long long)r->step, r->pipe, r->stage, r->n_tokens,
                     r->n_seqs, (unsigned long long)r->bytes, r->aux, tids ? tids[i] : 1u);
    }
    st_sb_puts(&sb, "],\"threads\":[");
    for (int i = 0; i < n_threads; i++) {
        st_sb_printf(&sb, "%s[%u,", i ? "," : "", thread_tids[i]);
        st_sb_json_str(&sb, thread_names[i], strnlen(thread_names[i], 47));
        st_sb_puts(&sb, "]");
    }
    st_sb_puts(&sb, "]}");
    if (len)
        *len = sb.len;
    return sb.buf;
}

static int str_ok(const st_json *v, size_t cap)
{
    if (!v || v->type != ST_JSON_STRING || v->u.str.len >= cap)
        return 0;
    for (size_t i = 0; i < v->u.str.len; i++)
        if ((unsigned char)v->u.str.s[i] < 0x20)
            return 0;
    return 1;
}

/* One event into r; ST_EPROTO naming event i and the field. */
static int dec_event(const st_json *ev, size_t i, uint64_t base, st_trace_rec *r, uint32_t *tid)
{
    static const char *const names[N_FIELDS] = {"ts", "dur", "kind", "phase", "req", "step", "pipe",
                                                "stage", "n_tokens", "n_seqs", "bytes", "aux", "tid"};
    static const int64_t lo[N_FIELDS] = {0, 0, 1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0};
    const int64_t u32 = (int64_t)UINT32_MAX;
    const int64_t hi[N_FIELDS] = {MAX_EXACT, MAX_EXACT, ST_TK_END - 1, 255, MAX_EXACT, MAX_EXACT, u32,
                                  INT32_MAX, u32,       u32,       MAX_EXACT, u32, u32};
    if (!ev || ev->type != ST_JSON_ARRAY || ev->u.arr.n != N_FIELDS)
        return st_err(ST_EPROTO, "ctl: trace.events[%zu]: not an array of %d integers", i, N_FIELDS);
    int64_t v[N_FIELDS];
    for (int k = 0; k < N_FIELDS; k++)
        if (!st_json_as_int(&ev->u.arr.items[k], lo[k], hi[k], &v[k]))
            return st_err(ST_EPROTO, "ctl: trace.events[%zu].%s: not an integer in [%lld, %lld]", i, names[k],
                          (long long)lo[k], (long long)hi[k]);
    if (v[3] != 'X' && v[3] != 'i')
        return st_err(ST_EPROTO, "ctl: trace.events[%zu].phase: %lld is neither 'X' (88) nor 'i' (105)", i,
                      (long long)v[3]);
    memset(r, 0, sizeof *r);
    r->ts_ns = base + (uint64_t)v[0];
    r->kind = (uint16_t)v[2];
    r->phase = (uint8_t)v[3];
    r->dur_ns = r->phase == 'i' ? 0 : (uint64_t)v[1];
    r->req = (uint64_t)v[4];
    r->step = (uint64_t)v[5];
    r->pipe = (uint32_t)v[6];
    r->stage = (int32_t)v[7];
    r->n_tokens = (uint32_t)v[8];
    r->n_seqs = (uint32_t)v[9];
    r->bytes = (uint64_t)v[10];
    r->aux = (uint32_t)v[11];
    *tid = (uint32_t)v[12];
    return ST_OK;
}

int st_ctl_trace_decode(const st_json *msg, st_ctl_trace *out)
{
    if (!msg || msg->type != ST_JSON_OBJECT || !out)
        return st_err(ST_EPROTO, "ctl: trace: not a JSON object");
    const st_json *node = st_json_get(msg, "node"), *evs = st_json_get(msg, "events"),
                  *ths = st_json_get(msg, "threads");
    int64_t t_s;
    if (!str_ok(node, sizeof out->node))
        return st_err(ST_EPROTO, "ctl: trace.node: missing, not a string, control characters or over 63 bytes");
    /* t_s seconds in ns must leave room for a ts of 2^53 below 2^63 */
    if (!st_json_as_int(st_json_get(msg, "t_s"), 0, (INT64_MAX - MAX_EXACT) / 1000000000, &t_s))
        return st_err(ST_EPROTO, "ctl: trace.t_s: missing or not an integer in [0, %lld]",
                      (long long)((INT64_MAX - MAX_EXACT) / 1000000000));
    if (!evs || evs->type != ST_JSON_ARRAY || evs->u.arr.n > ST_CTL_TRACE_MAX_EVENTS)
        return st_err(ST_EPROTO, "ctl: trace.events: missing, not an array or over %d entries",
                      ST_CTL_TRACE_MAX_EVENTS);
    if (ths && (ths->type != ST_JSON_ARRAY || ths->u.arr.n > ST_CTL_TRACE_MAX_THREADS))
        return st_err(ST_EPROTO, "ctl: trace.threads: not an array of at most %d entries", ST_CTL_TRACE_MAX_THREADS);
    st_ctl_trace t;
    memset(&t, 0, sizeof t);
    memcpy(t.node, node->u.str.s, node->u.str.len + 1);
    size_t n = evs->u.arr.n;
    t.recs = st_xmalloc((n + 1) * sizeof *t.recs);
    t.tids = st_xmalloc((n + 1) * sizeof *t.tids);
    uint64_t base = (uint64_t)t_s * 1000000000ull;
    for (size_t i = 0; i < n; i++) {
        int rc = dec_event(&evs->u.arr.items[i], i, base, &t.recs[i], &t.tids[i]);
        if (rc) {
            st_ctl_trace_free(&t);
            return rc;
        }
    }
    t.n = n;
    for (size_t i = 0; ths && i < ths->u.arr.n; i++) {
        const st_json *e = &ths->u.arr.items[i];
        int64_t tid;
        if (e->type != ST_JSON_ARRAY || e->u.arr.n != 2 || !st_json_as_int(&e->u.arr.items[0], 0, UINT32_MAX, &tid) ||
            !str_ok(&e->u.arr.items[1], sizeof t.thread_name[0])) {
            st_ctl_trace_free(&t);
            return st_err(ST_EPROTO, "ctl: trace.threads[%zu]: not [tid, name of at most 47 bytes]", i);
        }
        t.thread_tid[i] = (uint32_t)tid;
        memcpy(t.thread_name[i], e->u.arr.items[1].u.str.s, e->u.arr.items[1].u.str.len + 1);
        t.n_threads++;
    }
    *out = t;
    return ST_OK;
}

void st_ctl_trace_free(st_ctl_trace *t)
{
    if (!t)
        return;
    free(t->recs);
    free(t->tids);
    t->recs = NULL;
    t->tids = NULL;
    t->n = 0;
}
