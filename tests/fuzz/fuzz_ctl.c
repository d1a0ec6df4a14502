/* libFuzzer target for the control channel's message validation: any byte
 * string is either rejected by st_ctl_parse or is an object with a type;
 * then, as hw and as assign, it is rejected or decodes into members that
 * are in range and survive encode -> parse -> decode unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"
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
    st_json_free(m);
    return 0;
}
