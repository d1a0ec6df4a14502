/* libFuzzer target for the control channel's message validation: any byte
 * string is either rejected by st_ctl_parse or is an object with a type;
 * then, as hw, as assign and as trace, it is rejected or decodes into
 * members that are in range and survive encode -> parse -> decode
 * unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"
#include "common/trace.h"
#include "sched/cluster/ctl.h"

static int str_ok(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static int same_ep(const st_ctl_endpoint *a, const st_ctl_endpoint *b)
{
    return !strcmp(a->transport, b->transport) && !strcmp(a->addr, b->addr);
}

static st_json *reparse(char *text, size_t len)
{
    st_json *m = NULL;
    if (!text || st_ctl_parse(text, len, &m) != ST_OK)
        abort(); /* our own encoding must always be a valid message */
    free(text);
    return m;
}

static void check_hw(const st_json *msg)
{
    st_node_hw a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (st_ctl_hw_decode(msg, &a) != ST_OK)
        return;
    if (a.n_endpoints < 0 || a.n_endpoints > ST_CTL_MAX_TRANSPORTS || a.start_layer < -1 || a.end_layer < -1 ||
        !str_ok(a.name, sizeof a.name) || !str_ok(a.host_id, sizeof a.host_id) || !str_ok(a.device, sizeof a.device))
        abort();
    size_t len = 0;
    st_json *m = reparse(st_ctl_hw_encode(&a, &len), len);
    if (st_ctl_hw_decode(m, &b) != ST_OK)
        abort();
    st_json_free(m);
    if (strcmp(a.name, b.name) || strcmp(a.host_id, b.host_id) || strcmp(a.device, b.device) ||
        a.memory_bytes != b.memory_bytes || a.usable_bytes != b.usable_bytes || a.flops != b.flops ||
        a.mem_bw != b.mem_bw || a.start_layer != b.start_layer || a.end_layer != b.end_layer ||
        a.n_endpoints != b.n_endpoints)
        abort();
    for (int i = 0; i < a.n_endpoints; i++)
        if (!same_ep(&a.endpoints[i], &b.endpoints[i]))
            abort();
}

static void check_assign(const st_json *msg)
{
    st_ctl_assign a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (st_ctl_assign_decode(msg, &a) != ST_OK)
        return;
    if (a.stage < 0 || a.stage >= a.n_stages || a.start < 0 || a.end < a.start || !str_ok(a.model, sizeof a.model))
        abort();
    size_t len = 0;
    st_json *m = reparse(st_ctl_assign_encode(&a, &len), len);
    if (st_ctl_assign_decode(m, &b) != ST_OK)
        abort();
    st_json_free(m);
    if (a.epoch != b.epoch || a.pipeline != b.pipeline || a.stage != b.stage || a.n_stages != b.n_stages ||
        a.start != b.start || a.end != b.end || strcmp(a.model, b.model) || a.model_bytes != b.model_bytes ||
        !same_ep(&a.next, &b.next))
        abort();
}

static void check_trace(const st_json *msg)
{
    st_ctl_trace a, b;
    if (st_ctl_trace_decode(msg, &a) != ST_OK)
        return;
    if (a.n > ST_CTL_TRACE_MAX_EVENTS || a.n_threads < 0 || a.n_threads > ST_CTL_TRACE_MAX_THREADS ||
        !str_ok(a.node, sizeof a.node))
        abort();
    for (size_t i = 0; i < a.n; i++) {
        const st_trace_rec *r = &a.recs[i];
        if (r->kind < 1 || r->kind >= ST_TK_END || (r->phase != 'X' && r->phase != 'i') || r->stage < -1 ||
            (r->phase == 'i' && r->dur_ns) || r->dur_ns > (1ull << 53))
            abort();
    }
    for (int i = 0; i < a.n_threads; i++)
        if (!str_ok(a.thread_name[i], sizeof a.thread_name[i]))
            abort();
    size_t len = 0;
    char *text = st_ctl_trace_encode(a.node, a.recs, a.tids, a.n, a.thread_tid, (const char(*)[48])a.thread_name,
                                     a.n_threads, &len);
    if (!text || len > ST_CTL_MAX_MSG)
        abort(); /* everything decoded is representable, in one message */
    st_json *m = reparse(text, len);
    if (st_ctl_trace_decode(m, &b) != ST_OK)
        abort();
    st_json_free(m);
    if (strcmp(a.node, b.node) || a.n != b.n || a.n_threads != b.n_threads ||
        (a.n && memcmp(a.recs, b.recs, a.n * sizeof *a.recs)) || (a.n && memcmp(a.tids, b.tids, a.n * sizeof *a.tids)))
        abort();
    for (int i = 0; i < a.n_threads; i++)
        if (a.thread_tid[i] != b.thread_tid[i] || strcmp(a.thread_name[i], b.thread_name[i]))
            abort();
    st_ctl_trace_free(&a);
    st_ctl_trace_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_json *m = NULL;
    if (st_ctl_parse((const char *)data, size, &m) != ST_OK)
        return 0;
    const st_json *t = st_json_get(m, "type");
    if (!t || t->type != ST_JSON_STRING)
        abort();
    check_hw(m);
    check_assign(m);
    check_trace(m);
    st_json_free(m);
    return 0;
}
