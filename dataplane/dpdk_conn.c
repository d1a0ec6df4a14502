/* DPDK transport, a link's life: handshake, listen/accept/connect, and
 * the goodbye at close.
 *
 * Handshake: the connector sends HELLO {connection id, credits, ring bytes,
 * max message} every 10 ms to the static neighbour (--dpdk-peer) or to
 * broadcast; the listener answers HELLO_ACK and both learn each other's MAC
 * and IP from the frames. Frames of another connection id are ignored.
 * The EAL starts at the first accept or connect, never at listen, so a
 * process may fork between the two. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"

#ifdef ST_HAVE_DPDK
#include "dpdk_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

void st_dpdk_say_bye(dp_link *d, int n)
{
    for (int i = 0; i < n; i++) {
        dp_hdr *h;
        uint8_t *body;
        struct rte_mbuf *m = st_dpdk_frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_BYE, 0, &h, &body);
        if (!m)
            break;
        st_dpdk_frame_seal(h);
        st_dpdk_tx_push(d, m);
    }
    st_dpdk_tx_flush(d);
}

/* Say goodbye and wait (at most 100 ms) for the peer's answer, so that
 * the goodbye -- with our last cumulative ack in it -- is read before the
 * port goes down (memif drops what the peer has not read at detach). */
static void linger(dp_link *d)
{
    uint64_t t0 = st_now_ns(), last = 0;
    for (uint64_t now = t0; now - t0 < 100000000ull; now = st_now_ns()) {
        if (st_dpdk_rings_gone(&d->port)) /* the peer left first: nothing to wait for */
            return;
        if (now - last > 10000000ull) {
            st_dpdk_say_bye(d, 1);
            last = now;
        }
        struct rte_mbuf *rx[BURST];
        uint16_t n = rte_eth_rx_burst(d->port.id, 0, rx, BURST);
        int bye = 0;
        for (uint16_t i = 0; i < n; i++) {
            const uint8_t *mac;
            uint32_t ip;
            dp_hdr *h = st_dpdk_frame_parse(rx[i], &mac, &ip);
            bye |= h && h->conn == d->conn && h->type == F_BYE && ip != d->my_ip;
            rte_pktmbuf_free(rx[i]);
        }
        if (bye)
            return;
        if (!n)
            st_dpdk_nap_us(50);
    }
}

void st_dpdk_link_close(st_link *k)
{
    dp_link *d = (dp_link *)k;
    if (d->port.name[0]) {
        if (d->held)
            rte_pktmbuf_free(d->held);
        if (d->peer_ip && !d->peer_bye)
            linger(d);
        for (int i = 0; i < d->ntx; i++)
            rte_pktmbuf_free(d->txb[i]);
        st_dpdk_port_close(&d->port);
    }
    if (d->efd >= 0)
        close(d->efd);
    st_mr_free(d->rx);
    free(d->pk);
    free(d->m_rpos);
    free(d->m_end);
    free(d->rm);
    st_link_base_free(k);
    free(d);
}

static dp_link *link_new(const st_link_opts *o, const st_dpdk_port *port, int listening)
{
    dp_link *d = st_xcalloc(1, sizeof *d);
    st_link_base_init(&d->base, &dp_ops, o);
    d->port = *port;
    d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    d->my_ip = st_dpdk_local_ip(listening);
    d->payload = d->tx_payload = d->port.mtu - 20 - 8 - (uint32_t)sizeof(dp_hdr);
    d->pk = st_xcalloc(WIN, sizeof *d->pk);
    d->m_rpos = st_xcalloc(o->sq_depth, sizeof *d->m_rpos);
    d->m_end = st_xcalloc(o->sq_depth, sizeof *d->m_end);
    d->rm = st_xcalloc(o->credits, sizeof *d->rm);
    for (uint32_t i = 0; i < o->credits; i++)
        d->rm[i].msg = UINT64_MAX;
    d->area = ST_ALIGN_UP((uint64_t)o->rx_bytes, 64);
    st_dpdk_fault_rates(&d->drop, &d->reorder, &d->dup);
    const char *drain = getenv("ST_DPDK_TX_DRAIN_US");
    d->drain_ns = drain ? (uint64_t)atol(drain) * 1000ull : 0;
    d->rng = st_now_ns() | 1;
    d->last_rx_ns = d->last_tx_ns = st_now_ns();
    return d;
}

static int link_finish(dp_link *d, const hello_body *b)
{
    if (b->credits == 0 || b->credits > (1u << 20) || b->area < 128 || b->area % 64 || b->max_msg == 0)
        return st_err(ST_EPROTO, "dpdk: bad handshake from the peer (credits %u, ring %llu bytes)", b->credits,
                      (unsigned long long)b->area);
    d->peer_credits = b->credits;
    d->peer_area = b->area;
    d->peer_max_msg = b->max_msg;
    if (b->max_payload) { /* a peer on a smaller MTU (or an older peer: 0, ours) */
        if (b->max_payload < 64)
            return st_err(ST_EPROTO, "dpdk: bad handshake from the peer (frame payload %u bytes)", b->max_payload);
        d->tx_payload = ST_MIN(d->payload, b->max_payload);
    }
    if (st_mr_alloc(d->area, ST_MR_HUGEPAGE, &d->rx) != ST_OK)
        return ST_ENOMEM;
    return ST_OK;
}

static void send_hello(dp_link *d, int type, const uint8_t dst[6], uint32_t dst_ip)
{
    dp_hdr *h;
    uint8_t *body;
    struct rte_mbuf *m = st_dpdk_frame_new(d, &d->port, dst, d->my_ip, dst_ip, type, sizeof(hello_body), &h, &body);
    if (!m)
        return;
    hello_body b = {d->base.opts.credits, d->payload, d->area, d->base.opts.max_msg};
    memcpy(body, &b, sizeof b);
    st_dpdk_frame_seal(h);
    st_dpdk_tx_push(d, m);
    st_dpdk_tx_flush(d);
}

void st_dpdk_send_hello_ack(dp_link *d) { send_hello(d, F_HELLO_ACK, d->peer_mac, d->peer_ip); }

int st_dpdk_listen(const char *addr, const st_link_opts *o, st_listener **out)
{
    if (strlen(addr) >= sizeof((st_listener *)0)->addr)
        return st_err(ST_EINVAL, "dpdk: address '%s' is too long", addr);
    /* the EAL starts at accept: a process may fork between listen and accept */
    dp_listener *l = st_xcalloc(1, sizeof *l);
    l->base.ops = &dp_ops;
    l->base.opts = *o;
    snprintf(l->base.addr, sizeof l->base.addr, "%s", addr);
    *out = &l->base;
    return ST_OK;
}

void st_dpdk_listener_close(st_listener *l) { free(l); }

int st_dpdk_accept(st_listener *l, int timeout_ms, st_link **out)
{
    st_dpdk_port port;
    uint64_t end = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 1 << 30 : timeout_ms) * 1000000ull;
    int rc;
    /* memif closes a removed server's socket later, in the EAL's interrupt
     * thread: the next server on the same socket may have to wait for it */
    while ((rc = st_dpdk_port_open(l->addr, 1, &port)) == ST_EIO && !strncmp(l->addr, "net_memif", 9) &&
           st_now_ns() < end)
        st_dpdk_nap_us(10000);
    if (rc)
        return rc;
    uint8_t peer_mac[6];
    uint32_t peer_ip = 0;
    int have_static = st_dpdk_static_peer(peer_mac, &peer_ip);
    while (st_now_ns() < end) {
        struct rte_mbuf *rx[BURST];
        uint16_t n = rte_eth_rx_burst(port.id, 0, rx, BURST);
        dp_link *d = NULL;
        for (uint16_t i = 0; i < n; i++) {
            const uint8_t *mac;
            uint32_t ip;
            dp_hdr *h = st_dpdk_frame_parse(rx[i], &mac, &ip);
            if (!d && h && h->type == F_HELLO && h->conn && st_dpdk_frame_crc_ok(h, rx[i]->data_len) &&
                h->len >= sizeof(hello_body) && (!have_static || ip == peer_ip)) {
                hello_body b;
                memcpy(&b, h + 1, sizeof b);
                d = link_new(&l->opts, &port, 1);
                d->conn = h->conn;
                memcpy(d->peer_mac, mac, 6);
                d->peer_ip = ip;
                if ((rc = link_finish(d, &b)) != ST_OK) {
                    d->port.name[0] = 0; /* the port stays ours for the next HELLO */
                    st_dpdk_link_close(&d->base);
                    d = NULL;
                }
            }
            rte_pktmbuf_free(rx[i]);
        }
        if (d) {
            st_dpdk_send_hello_ack(d);
            *out = &d->base;
            return ST_OK;
        }
        if (!n)
            st_dpdk_nap_us(50);
    }
    st_dpdk_port_close(&port);
    return st_err(ST_ETIMEDOUT, "dpdk: no connection on %s within %d ms", l->addr, timeout_ms);
}

int st_dpdk_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out)
{
    uint64_t end = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 1 << 30 : timeout_ms) * 1000000ull;
    uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, peer_mac[6];
    uint32_t peer_ip = 0xffffffffu;
    int have_static = st_dpdk_static_peer(peer_mac, &peer_ip);
    int rc = ST_ETIMEDOUT;
    st_err(rc, "dpdk: no answer from %s within %d ms", addr, timeout_ms);
    while (st_now_ns() < end) {
        st_dpdk_port port;
        if ((rc = st_dpdk_port_open(addr, 0, &port)) != ST_OK) {
            if (rc != ST_EIO || strncmp(addr, "net_memif", 9))
                return rc; /* memif: the server may not be up yet */
            st_dpdk_nap_us(10000);
            continue;
        }
        dp_link *d = link_new(o, &port, 0);
        do
            d->conn = (uint32_t)rnd(d);
        while (!d->conn);
        uint64_t attempt_end = ST_MIN(end, st_now_ns() + 2000000000ull), last_hello = 0;
        while (st_now_ns() < attempt_end) {
            uint64_t now = st_now_ns();
            if (now - last_hello > 10000000ull) {
                send_hello(d, F_HELLO, have_static ? peer_mac : bcast, peer_ip);
                last_hello = now;
            }
            struct rte_mbuf *rx[BURST];
            uint16_t n = rte_eth_rx_burst(d->port.id, 0, rx, BURST);
            int ok = 0;
            for (uint16_t i = 0; i < n; i++) {
                const uint8_t *mac;
                uint32_t ip;
                dp_hdr *h = st_dpdk_frame_parse(rx[i], &mac, &ip);
                if (!ok && h && h->type == F_HELLO_ACK && h->conn == d->conn && st_dpdk_frame_crc_ok(h, rx[i]->data_len) &&
                    h->len >= sizeof(hello_body)) {
                    hello_body b;
                    memcpy(&b, h + 1, sizeof b);
                    memcpy(d->peer_mac, mac, 6);
                    d->peer_ip = ip;
                    if ((rc = link_finish(d, &b)) != ST_OK) {
                        d->peer_ip = 0;
                        st_dpdk_link_close(&d->base);
                        for (uint16_t j = i; j < n; j++)
                            rte_pktmbuf_free(rx[j]);
                        return rc;
                    }
                    ok = 1;
                }
                rte_pktmbuf_free(rx[i]);
            }
            if (ok) {
                d->last_rx_ns = st_now_ns();
                *out = &d->base;
                return ST_OK;
            }
            if (!n)
                st_dpdk_nap_us(50);
        }
        d->peer_ip = 0; /* no goodbye to a peer we never met */
        st_dpdk_link_close(&d->base);
        rc = st_err(ST_ETIMEDOUT, "dpdk: no answer from %s within %d ms", addr, timeout_ms);
    }
    return rc;
}

#endif /* ST_HAVE_DPDK */
