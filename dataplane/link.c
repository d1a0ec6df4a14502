/* The transport-independent half of a link: option defaults, the transport
 * registry, the send queue and completions, sticky errors. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"
#include "dataplane/rdma.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const st_transport_ops *const transports[] = {
    &st_tcp_ops, &st_shm_ops,
#ifdef ST_HAVE_DPDK
    &st_dpdk_ops,
#endif
#ifdef ST_HAVE_RDMA
    &st_rdma_ops,
#endif
};

/* Built-in transports that can run here: rdma is left out when no device
 * can be opened (st_rdma_probe), so that suites and menus offer only what
 * works; st_listen/st_connect("rdma") still explain why it cannot. */
static const char *transport_names[ST_ARRAY_LEN(transports) + 1];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_init(void)
{
    int n = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(transports); i++) {
        if (!strcmp(transports[i]->name, "rdma") && st_rdma_probe() != ST_OK)
            continue;
        transport_names[n++] = transports[i]->name;
    }
    transport_names[n] = NULL;
}

const char *const *st_transport_names(void)
{
    pthread_once(&names_once, names_init);
    return transport_names;
}

static const st_transport_ops *find(const char *name)
{
    for (size_t i = 0; i < ST_ARRAY_LEN(transports); i++)
        if (name && strcmp(transports[i]->name, name) == 0)
            return transports[i];
    return NULL;
}

void st_link_opts_default(st_link_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sq_depth = 4096;
    o->credits = 256;
    o->max_msg = ((size_t)64 << 20) + ((size_t)64 << 10);
    o->rx_bytes = 2 * o->max_msg + ((size_t)2 << 20);
    o->heartbeat_ms = 100;
    o->timeout_ms = 3000;
}

int st_link_opts_check(const st_link_opts *in, st_link_opts *out)
{
    st_link_opts d;
    st_link_opts_default(&d);
    *out = in ? *in : d;
    if (!out->sq_depth) out->sq_depth = d.sq_depth;
    if (!out->credits) out->credits = d.credits;
    if (!out->max_msg) out->max_msg = d.max_msg;
    if (!out->rx_bytes) out->rx_bytes = 2 * out->max_msg + ((size_t)2 << 20);
    if (!out->heartbeat_ms) out->heartbeat_ms = d.heartbeat_ms;
    if (!out->timeout_ms) out->timeout_ms = d.timeout_ms;
    if (out->sq_depth & (out->sq_depth - 1) || out->sq_depth > (1u << 20))
        return st_err(ST_EINVAL, "link: sq_depth %u must be a power of two <= 2^20", out->sq_depth);
    if (out->credits > (1u << 20))
        return st_err(ST_EINVAL, "link: credits %u > 2^20", out->credits);
    if (out->max_msg > ((size_t)1 << 31))
        return st_err(ST_EINVAL, "link: max_msg %zu > 2 GiB", out->max_msg);
    /* twice the largest record: a message that must wrap always fits once
     * the ring has drained, whatever the position */
    if (out->rx_bytes < 2 * (out->max_msg + 128) || out->rx_bytes > ((size_t)1 << 36))
        return st_err(ST_EINVAL, "link: rx_bytes %zu must be at least 2 x (max_msg %zu + 128) and <= 64 GiB",
                      out->rx_bytes, out->max_msg);
    if (out->timeout_ms < 2 * out->heartbeat_ms)
        return st_err(ST_EINVAL, "link: timeout_ms %u must be at least twice heartbeat_ms %u", out->timeout_ms,
                      out->heartbeat_ms);
    return ST_OK;
}

/* ---- base ---------------------------------------------------------------------- */
void st_link_base_init(st_link *k, const st_transport_ops *ops, const st_link_opts *o)
{
    k->ops = ops;
    k->opts = *o;
    k->sq = st_xcalloc(o->sq_depth, sizeof *k->sq);
    k->sq_mask = o->sq_depth - 1;
}

void st_link_base_free(st_link *k)
{
    for (uint64_t seq = k->sq_head; seq < k->sq_tail; seq++)
        free(st_sq_at(k, seq)->owned);
    free(k->resv);
    free(k->sq);
    explicit_bzero(k->opts.key, sizeof k->opts.key); /* the key does not outlive the link in freed memory */
}

int st_link_fail(st_link *k, int code, const char *fmt, ...)
{
    if (k->err)
        return k->err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->errmsg, sizeof k->errmsg, fmt, ap);
    va_end(ap);
    k->err = code;
    ST_DEBUG("%s link: %s", k->ops->name, k->errmsg);
    return code;
}

void st_link_ack(st_link *k, uint64_t upto)
{
    if (upto > k->sq_tail)
        upto = k->sq_tail; /* a peer cannot acknowledge what was never sent */
    if (upto > k->sq_acked)
        k->sq_acked = upto;
}

/* ---- endpoints ------------------------------------------------------------------- */
/* The transport named, checked options and a non-empty address: what
 * listen and connect both need before calling the transport. */
static int endpoint_prepare(const char *transport, const char *addr, const st_link_opts *opts, const char *what,
                            const st_transport_ops **ops, st_link_opts *o)
{
    *ops = find(transport);
    if (!*ops)
        return st_err(ST_ENOTSUP, "transport '%s' is not built in", transport ? transport : "(null)");
    int rc = st_link_opts_check(opts, o);
    if (rc)
        return rc;
    if (!addr || !*addr)
        return st_err(ST_EINVAL, "%s: empty %s address", (*ops)->name, what);
    /* a key must never be dropped silently: a transport without the
     * handshake refuses it instead of running unauthenticated */
    if (o->has_key && *ops != &st_tcp_ops && *ops != &st_shm_ops)
        return st_err(ST_ENOTSUP, "%s: link keys are supported on tcp and shm only; %s links cannot be authenticated",
                      (*ops)->name, (*ops)->name);
    return ST_OK;
}

int st_listen(const char *transport, const char *addr, const st_link_opts *opts, st_listener **out)
{
    *out = NULL;
    const st_transport_ops *ops;
    st_link_opts o;
    int rc = endpoint_prepare(transport, addr, opts, "listen", &ops, &o);
    return rc ? rc : ops->listen(addr, &o, out);
}

const char *st_listener_addr(const st_listener *l) { return l->addr; }

uint64_t st_listener_auth_refused(const st_listener *l) { return l->auth_refused; }

int st_accept(st_listener *l, int timeout_ms, st_link **out)
{
    *out = NULL;
    return l->ops->accept(l, timeout_ms, out);
}

void st_listener_close(st_listener *l)
{
    if (l)
        l->ops->listener_close(l);
}

int st_connect(const char *transport, const char *addr, const st_link_opts *opts, int timeout_ms, st_link **out)
{
    *out = NULL;
    const st_transport_ops *ops;
    st_link_opts o;
    int rc = endpoint_prepare(transport, addr, opts, "connect", &ops, &o);
    return rc ? rc : ops->connect(addr, &o, timeout_ms, out);
}

/* ---- data ------------------------------------------------------------------------- */
static int link_err(const st_link *k) { return st_err(k->err, "%s link: %s", k->ops->name, k->errmsg); }

int st_link_send(st_link *k, const st_iov *iov, int n, uint64_t cookie)
{
    if (k->err)
        return link_err(k);
    if (n < 1 || n > ST_LINK_IOV_MAX || !iov)
        return st_err(ST_EINVAL, "link send: %d pieces (1..%d)", n, ST_LINK_IOV_MAX);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].len && !iov[i].base)
            return st_err(ST_EINVAL, "link send: piece %d is NULL", i);
        len += iov[i].len;
    }
    if (len == 0 || len > k->opts.max_msg)
        return st_err(ST_ERANGE, "link send: message of %zu bytes (1..%zu)", len, k->opts.max_msg);
    if (k->sq_tail - k->sq_head >= k->opts.sq_depth)
        return st_err(ST_EAGAIN, "link send: queue full (%u pending)", k->opts.sq_depth);
    st_sq_entry *e = st_sq_at(k, k->sq_tail);
    memcpy(e->iov, iov, (size_t)n * sizeof *iov);
    e->n = n;
    e->len = len;
    e->cookie = cookie;
    e->owned = NULL;
    k->sq_tail++;
    return ST_OK;
}

int st_link_reserve(st_link *k, size_t len, void **buf)
{
    *buf = NULL;
    if (k->err)
        return link_err(k);
    if (len == 0 || len > k->opts.max_msg)
        return st_err(ST_ERANGE, "link reserve: message of %zu bytes (1..%zu)", len, k->opts.max_msg);
    if (k->resv_len)
        return st_err(ST_EINVAL, "link reserve: a reservation is already outstanding");
    if (k->ops->reserve) {
        int rc = k->ops->reserve(k, len, buf);
        if (rc == ST_OK)
            k->resv_len = len;
        return rc;
    }
    if (k->sq_tail - k->sq_head >= k->opts.sq_depth)
        return st_err(ST_EAGAIN, "link reserve: queue full");
    k->resv = aligned_alloc(64, ST_ALIGN_UP(len, 64));
    if (!k->resv)
        return st_err(ST_ENOMEM, "link reserve: %zu bytes", len);
    k->resv_len = len;
    *buf = k->resv;
    return ST_OK;
}

int st_link_commit(st_link *k, size_t len, uint64_t cookie)
{
    if (!k->resv_len || len == 0 || len > k->resv_len)
        return st_err(ST_EINVAL, "link commit: %zu bytes, %zu reserved", len, k->resv_len);
    if (k->ops->commit) {
        int rc = k->ops->commit(k, len, cookie);
        k->resv_len = 0;
        return rc;
    }
    st_iov iov = {k->resv, len, NULL};
    void *owned = k->resv;
    k->resv = NULL;
    k->resv_len = 0;
    int rc = st_link_send(k, &iov, 1, cookie); /* the queue had room at reserve time */
    if (rc) {
        free(owned);
        return rc;
    }
    st_sq_at(k, k->sq_tail - 1)->owned = owned;
    return ST_OK;
}

int st_link_progress(st_link *k)
{
    if (k->err)
        return k->err;
    return k->ops->progress(k);
}

int st_link_recv(st_link *k, st_msg *out) { return k->ops->recv(k, out); }

int st_link_release(st_link *k, const st_msg *m) { return k->ops->release(k, m); }

int st_link_poll_cq(st_link *k, st_completion *out, int max)
{
    int n = 0;
    uint64_t end = k->err ? k->sq_tail : k->sq_acked; /* a failed link completes everything */
    while (n < max && k->sq_head < end) {
        uint64_t seq = k->sq_head++;
        st_sq_entry *e = st_sq_at(k, seq);
        out[n].cookie = e->cookie;
        free(e->owned);
        e->owned = NULL;
        out[n].status = seq < k->sq_acked ? ST_OK : k->err;
        n++;
    }
    if (k->sq_acked < k->sq_head)
        k->sq_acked = k->sq_head;
    return n;
}

uint64_t st_link_wait_prepare(st_link *k) { return k->ops->wait_prepare(k); }
int st_link_wait(st_link *k, uint64_t ticket, int timeout_ms) { return k->ops->wait(k, ticket, timeout_ms); }
void st_link_wake(st_link *k) { k->ops->wake(k); }

int st_link_error(const st_link *k) { return k->err; }
const char *st_link_errmsg(const st_link *k) { return k->err ? k->errmsg : ""; }
const char *st_link_transport(const st_link *k) { return k->ops->name; }
void st_link_get_stats(const st_link *k, st_link_stats *out) { *out = k->stats; }

void st_link_close(st_link *k)
{
    if (!k)
        return;
    k->ops->close(k);
}

int st_link_debug_drop(st_link *k) { return k->ops->debug_drop ? k->ops->debug_drop(k) : ST_ENOTSUP; }

int st_link_debug_corrupt_next(st_link *k)
{
    k->corrupt_next = 1;
    return ST_OK;
}
