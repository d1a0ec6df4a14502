/* The hw and assign messages (encode, and decode with every member
 * validated) and small {"type":...} messages.
 *
 * Byte counts travel as JSON numbers: exact up to 2^53 (8 PiB), which is
 * the range decode accepts. Decode fills *out only on success. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "sched/cluster/ctl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"

#define MAX_BYTES ((int64_t)1 << 53)
#define MAX_LAYERS (1 << 20)

static const char *const known_transports[] = {"tcp", "shm", "dpdk", "rdma"};

/* ---- decode helpers (each returns ST_EPROTO naming the member) ------------------ */

static int dec_str(const st_json *obj, const char *what, const char *key, char *out, size_t cap, int required)
{
    const st_json *v = st_json_get(obj, key);
    if (!v && !required) {
        out[0] = '\0';
        return ST_OK;
    }
    if (!v || v->type != ST_JSON_STRING)
        return st_err(ST_EPROTO, "ctl: %s.%s: missing or not a string", what, key);
    if (v->u.str.len >= cap)
        return st_err(ST_EPROTO, "ctl: %s.%s: %zu bytes, at most %zu", what, key, v->u.str.len, cap - 1);
    for (size_t i = 0; i < v->u.str.len; i++)
        if ((unsigned char)v->u.str.s[i] < 0x20)
            return st_err(ST_EPROTO, "ctl: %s.%s: control character in the string", what, key);
    memcpy(out, v->u.str.s, v->u.str.len + 1);
    return ST_OK;
}

static int dec_int(const st_json *obj, const char *what, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    if (!st_json_as_int(st_json_get(obj, key), lo, hi, out))
        return st_err(ST_EPROTO, "ctl: %s.%s: missing or not an integer in [%lld, %lld]", what, key, (long long)lo,
                      (long long)hi);
    return ST_OK;
}

static int dec_rate(const st_json *obj, const char *what, const char *key, double *out)
{
    const st_json *v = st_json_get(obj, key);
    if (!v || v->type != ST_JSON_NUMBER || !isfinite(v->u.number) || v->u.number < 0)
        return st_err(ST_EPROTO, "ctl: %s.%s: missing or not a finite number >= 0", what, key);
    *out = v->u.number;
    return ST_OK;
}

/* An endpoint object; allow_empty: {} or null mean "none" (all zero). */
static int dec_endpoint(const st_json *v, const char *what, int allow_empty, st_ctl_endpoint *out)
{
    memset(out, 0, sizeof *out);
    if (allow_empty && (!v || v->type == ST_JSON_NULL))
        return ST_OK;
    if (!v || v->type != ST_JSON_OBJECT)
        return st_err(ST_EPROTO, "ctl: %s: missing or not an object", what);
    if (allow_empty && v->u.obj.n == 0)
        return ST_OK;
    int rc = dec_str(v, what, "transport", out->transport, sizeof out->transport, 1);
    if (!rc)
        rc = dec_str(v, what, "addr", out->addr, sizeof out->addr, 1);
    if (rc)
        return rc;
    int known = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(known_transports); i++)
        known |= !strcmp(out->transport, known_transports[i]);
    if (!known)
        return st_err(ST_EPROTO, "ctl: %s.transport: unknown transport '%s' (tcp, shm, dpdk, rdma)", what,
                      out->transport);
    if (!out->addr[0])
        return st_err(ST_EPROTO, "ctl: %s.addr: empty", what);
    return ST_OK;
}

/* s is a char array of cap bytes, possibly not NUL-terminated when full */
static void enc_str(st_strbuf *sb, const char *key, const char *s, size_t cap)
{
    st_sb_printf(sb, ",\"%s\":", key);
    st_sb_json_str(sb, s, strnlen(s, cap));
}

static void enc_endpoint(st_strbuf *sb, const st_ctl_endpoint *e)
{
    if (!e->transport[0] && !e->addr[0]) {
        st_sb_puts(sb, "null");
        return;
    }
    st_sb_puts(sb, "{\"transport\":");
    st_sb_json_str(sb, e->transport, strnlen(e->transport, sizeof e->transport));
    st_sb_puts(sb, ",\"addr\":");
    st_sb_json_str(sb, e->addr, strnlen(e->addr, sizeof e->addr));
    st_sb_puts(sb, "}");
}

/* ---- hw -------------------------------------------------------------------------- */

char *st_ctl_hw_encode(const st_node_hw *hw, size_t *len)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":\"hw\"");
    enc_str(&sb, "name", hw->name, sizeof hw->name);
    enc_str(&sb, "host_id", hw->host_id, sizeof hw->host_id);
    enc_str(&sb, "device", hw->device, sizeof hw->device);
    /* %.17g: a double survives the round trip exactly */
    st_sb_printf(&sb,
                 ",\"memory_bytes\":%llu,\"usable_bytes\":%llu,\"flops\":%.17g,\"mem_bw\":%.17g,"
                 "\"start_layer\":%d,\"end_layer\":%d,\"endpoints\":[",
                 (unsigned long long)hw->memory_bytes, (unsigned long long)hw->usable_bytes,
                 isfinite(hw->flops) ? hw->flops : 0.0, isfinite(hw->mem_bw) ? hw->mem_bw : 0.0, hw->start_layer,
                 hw->end_layer);
    int n = hw->n_endpoints < 0 ? 0 : ST_MIN(hw->n_endpoints, ST_CTL_MAX_TRANSPORTS);
    for (int i = 0; i < n; i++) {
        if (i)
            st_sb_puts(&sb, ",");
        enc_endpoint(&sb, &hw->endpoints[i]);
    }
    st_sb_puts(&sb, "]}");
    if (len)
        *len = sb.len;
    return sb.buf;
}

int st_ctl_hw_decode(const st_json *msg, st_node_hw *out)
{
    if (!msg || msg->type != ST_JSON_OBJECT || !out)
        return st_err(ST_EPROTO, "ctl: hw: not a JSON object");
    st_node_hw h;
    memset(&h, 0, sizeof h);
    int64_t mem, usable, sl, el;
    int rc;
    if ((rc = dec_str(msg, "hw", "name", h.name, sizeof h.name, 1)) ||
        (rc = dec_str(msg, "hw", "host_id", h.host_id, sizeof h.host_id, 1)) ||
        (rc = dec_str(msg, "hw", "device", h.device, sizeof h.device, 1)) ||
        (rc = dec_int(msg, "hw", "memory_bytes", 0, MAX_BYTES, &mem)) ||
        (rc = dec_int(msg, "hw", "usable_bytes", 0, MAX_BYTES, &usable)) ||
        (rc = dec_rate(msg, "hw", "flops", &h.flops)) || (rc = dec_rate(msg, "hw", "mem_bw", &h.mem_bw)) ||
        (rc = dec_int(msg, "hw", "start_layer", -1, MAX_LAYERS, &sl)) ||
        (rc = dec_int(msg, "hw", "end_layer", -1, MAX_LAYERS, &el)))
        return rc;
    if ((sl < 0) != (el < 0) || (sl >= 0 && sl >= el))
        return st_err(ST_EPROTO, "ctl: hw.start_layer %lld / end_layer %lld: both -1, or start < end",
                      (long long)sl, (long long)el);
    h.memory_bytes = (uint64_t)mem;
    h.usable_bytes = (uint64_t)usable;
    h.start_layer = (int)sl;
    h.end_layer = (int)el;
    const st_json *eps = st_json_get(msg, "endpoints");
    if (!eps || eps->type != ST_JSON_ARRAY)
        return st_err(ST_EPROTO, "ctl: hw.endpoints: missing or not an array");
    if (eps->u.arr.n > ST_CTL_MAX_TRANSPORTS)
        return st_err(ST_EPROTO, "ctl: hw.endpoints: %zu entries, at most %d", eps->u.arr.n, ST_CTL_MAX_TRANSPORTS);
    for (size_t i = 0; i < eps->u.arr.n; i++) {
        char what[48];
        snprintf(what, sizeof what, "hw.endpoints[%zu]", i);
        if ((rc = dec_endpoint(&eps->u.arr.items[i], what, 0, &h.endpoints[i])))
            return rc;
    }
    h.n_endpoints = (int)eps->u.arr.n;
    *out = h;
    return ST_OK;
}

/* ---- assign ------------------------------------------------------------------------ */

char *st_ctl_assign_encode(const st_ctl_assign *a, size_t *len)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_printf(&sb,
                 "{\"type\":\"assign\",\"epoch\":%llu,\"pipeline\":%d,\"stage\":%d,\"n_stages\":%d,"
                 "\"start\":%d,\"end\":%d",
                 (unsigned long long)a->epoch, a->pipeline, a->stage, a->n_stages, a->start, a->end);
    enc_str(&sb, "model", a->model, sizeof a->model);
    st_sb_printf(&sb, ",\"model_bytes\":%llu,\"next\":", (unsigned long long)a->model_bytes);
    enc_endpoint(&sb, &a->next);
    st_sb_puts(&sb, "}");
    if (len)
        *len = sb.len;
    return sb.buf;
}

int st_ctl_assign_decode(const st_json *msg, st_ctl_assign *out)
{
    if (!msg || msg->type != ST_JSON_OBJECT || !out)
        return st_err(ST_EPROTO, "ctl: assign: not a JSON object");
    st_ctl_assign a;
    memset(&a, 0, sizeof a);
    int64_t epoch, pipe, stage, n_stages, start, end, mb;
    int rc;
    if ((rc = dec_int(msg, "assign", "epoch", 0, MAX_BYTES, &epoch)) ||
        (rc = dec_int(msg, "assign", "pipeline", 0, 65535, &pipe)) ||
        (rc = dec_int(msg, "assign", "n_stages", 1, 65535, &n_stages)) ||
        (rc = dec_int(msg, "assign", "stage", 0, n_stages - 1, &stage)) ||
        (rc = dec_int(msg, "assign", "start", 0, MAX_LAYERS, &start)) ||
        (rc = dec_int(msg, "assign", "end", start, MAX_LAYERS, &end)) ||
        (rc = dec_str(msg, "assign", "model", a.model, sizeof a.model, 1)) ||
        (rc = dec_int(msg, "assign", "model_bytes", 0, MAX_BYTES, &mb)) ||
        (rc = dec_endpoint(st_json_get(msg, "next"), "assign.next", 1, &a.next)))
        return rc;
    a.epoch = (uint64_t)epoch;
    a.pipeline = (int)pipe;
    a.stage = (int)stage;
    a.n_stages = (int)n_stages;
    a.start = (int)start;
    a.end = (int)end;
    a.model_bytes = (uint64_t)mb;
    *out = a;
    return ST_OK;
}

/* ---- small messages ---------------------------------------------------------------- */

int st_ctl_send_simple(st_ctl_conn *c, const char *type, const char *members, int timeout_ms)
{
    if (!c || !type || !*type)
        return st_err(ST_EINVAL, "ctl: send_simple: NULL connection or empty type");
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":");
    st_sb_json_str(&sb, type, strlen(type));
    if (members && *members) {
        st_sb_puts(&sb, ",");
        st_sb_puts(&sb, members);
    }
    st_sb_puts(&sb, "}");
    /* a caller's typo must fail here, not as ST_EPROTO at the peer */
    st_json *chk = NULL;
    int rc = st_ctl_parse(sb.buf, sb.len, &chk);
    if (rc) {
        rc = st_err(ST_EINVAL, "ctl: send_simple '%s': members do not make a valid message: %s", type, st_errmsg());
    } else {
        st_json_free(chk);
        rc = st_ctl_send(c, sb.buf, sb.len, timeout_ms);
    }
    st_sb_free(&sb);
    return rc;
}
