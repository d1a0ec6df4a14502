/* DPDK transport: a reliable, ordered, flow-controlled link over plain
 * Ethernet/IPv4/UDP frames on a DPDK port (so it crosses ordinary switches
 * and tcpdump can read it).
 *
 * Frame = Ethernet | IPv4 (DF, checksum) | UDP (port 47100, checksum 0) |
 *         dp_hdr (72 bytes, CRC32C over itself) | payload
 *
 * Sending: a message is cut into packets of at most `payload` bytes; every
 * packet has a per-link packet number (pseq), the message number, its
 * offset, and the message's position (rpos) in the receiver's ring, so the
 * receiver copies each payload straight to its final place, in any order.
 * The sender keeps an image of that ring (like shm's wrap rule: a message
 * never straddles the end) and sends message m only while
 *   m < peer_released + peer_credits          (credits of transport.h), and
 *   rpos(m) + len(m) - peer_freed <= area     (bytes of the receiver's ring),
 * with at most WIN packets unacknowledged.
 *
 * Acknowledgement: every frame carries the cumulative ack (all packets below
 * it arrived), the messages released and the ring bytes freed; ACK frames add
 * a selective-ack bitmap of the WIN packets above the cumulative ack. A packet
 * is sent again when it is older than the retransmission timeout (3 x the
 * smoothed RTT, 0.2 .. 200 ms), or earlier when a packet sent after it was
 * acknowledged selectively (it was lost, not late). Duplicates are
 * recognised by pseq and dropped. ACK frames double as heartbeats; a peer
 * silent for timeout_ms fails the link with ST_ECONN.
 *
 * The frames and bursts are in dpdk_io.c, the handshake and endpoints in
 * dpdk_conn.c, the state they share in dpdk_impl.h. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"

#ifdef ST_HAVE_DPDK
#include "dpdk_impl.h"

#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

/* Copy n bytes at offset off of the message in sq entry e to dst. */
static void gather(const st_sq_entry *e, size_t off, uint8_t *dst, size_t n)
{
    for (int i = 0; i < e->n && n; i++) {
        size_t l = e->iov[i].len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t c = ST_MIN(l - off, n);
        memcpy(dst, (const uint8_t *)e->iov[i].base + off, c);
        dst += c, n -= c, off = 0;
    }
}

static int send_data(dp_link *d, uint64_t pseq, uint64_t now)
{
    tx_pkt *t = &d->pk[pseq % WIN];
    st_sq_entry *e = st_sq_at(&d->base, t->msg);
    dp_hdr *h;
    uint8_t *body;
    struct rte_mbuf *m = st_dpdk_frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_DATA, t->len, &h, &body);
    if (!m)
        return 0;
    h->pseq = pseq;
    h->msg = t->msg;
    h->rpos = d->m_rpos[t->msg & d->base.sq_mask];
    h->off = t->off;
    h->msg_len = (uint32_t)e->len;
    gather(e, t->off, body, t->len);
    st_dpdk_frame_seal(h);
    t->sent_ns = now;
    d->acked_released = d->released;
    d->need_ack = 0; /* the cumulative ack rode along */
    if (d->base.corrupt_next) { /* test hook: this one must reach the peer */
        h->crc ^= 1;
        d->base.corrupt_next = 0;
        d->last_tx_ns = now;
        st_dpdk_tx_push(d, m);
        return 1;
    }
    st_dpdk_tx_frame(d, m, now);
    return 1;
}

static void send_ack(dp_link *d, uint64_t now)
{
    uint32_t bits = (uint32_t)(d->rcv_hi > d->rcv_nxt ? d->rcv_hi - d->rcv_nxt : 0);
    uint32_t bytes = (bits + 7) / 8;
    dp_hdr *h;
    uint8_t *body;
    struct rte_mbuf *m = st_dpdk_frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_ACK, bytes, &h, &body);
    if (!m)
        return;
    memset(body, 0, bytes);
    for (uint32_t i = 0; i < bits; i++) {
        uint64_t p = d->rcv_nxt + i;
        if (d->rbits[(p % WIN) / 8] & (1u << (p % 8)))
            body[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    st_dpdk_frame_seal(h);
    d->need_ack = 0;
    d->acked_released = d->released;
    st_dpdk_tx_frame(d, m, now);
}

/* Packets that look lost: older than the timeout, or sent before a packet
 * that was selectively acknowledged. */
static void retransmit(dp_link *d, uint64_t now)
{
    uint64_t rto = ST_MIN(ST_MAX(3 * d->srtt_ns, RTO_MIN_NS), RTO_MAX_NS);
    uint64_t early = d->srtt_ns + d->srtt_ns / 4 + 50000;
    for (uint64_t p = d->snd_una; p < d->snd_nxt; p++) {
        tx_pkt *t = &d->pk[p % WIN];
        if (t->state != 1)
            continue;
        uint64_t age = now - t->sent_ns;
        if (age > rto || (p < d->sack_hi && age > early)) {
            if (!send_data(d, p, now))
                return;
            t->resent = 1;
            d->base.stats.retransmits++;
        }
    }
}

/* New packets while window, credits and the receiver's ring allow. */
static void transmit_new(dp_link *d, uint64_t now)
{
    st_link *k = &d->base;
    while (d->snd_nxt - d->snd_una < WIN) {
        uint64_t m = d->tx_msg;
        if (m >= k->sq_tail)
            return;
        st_sq_entry *e = st_sq_at(k, m);
        if (d->tx_off == 0) {
            if (m >= d->peer_released + d->peer_credits)
                return;
            uint64_t need = ST_ALIGN_UP(e->len, 64), pos = d->tx_rpos, off = pos % d->peer_area;
            if (off + need > d->peer_area)
                pos += d->peer_area - off;
            else if (d->peer_freed == pos && off >= RESTART && need <= off)
                pos += d->peer_area - off; /* all freed: reuse the warm front of the ring */
            if (pos + need - d->peer_freed > d->peer_area)
                return;
            d->m_rpos[m & k->sq_mask] = pos;
            d->tx_rpos = pos + need;
        }
        uint32_t len = (uint32_t)ST_MIN((size_t)d->tx_payload, e->len - d->tx_off);
        tx_pkt *t = &d->pk[d->snd_nxt % WIN];
        t->msg = m, t->off = d->tx_off, t->len = len, t->state = 1, t->resent = 0;
        if (!send_data(d, d->snd_nxt, now)) {
            t->state = 0;
            return;
        }
        d->snd_nxt++;
        d->tx_off += len;
        if (d->tx_off == e->len) {
            d->m_end[m & k->sq_mask] = d->snd_nxt;
            d->tx_msg++;
            d->tx_off = 0;
            k->stats.msgs_tx++;
            k->stats.bytes_tx += e->len;
        }
    }
}

/* ---- receive ------------------------------------------------------------------------------------ */
static int on_ack_fields(dp_link *d, const dp_hdr *h, uint64_t now)
{
    st_link *k = &d->base;
    if (h->ack > d->snd_nxt || h->released > d->tx_msg || h->freed > d->tx_rpos)
        return st_link_fail(k, ST_EPROTO, "peer acknowledged what was never sent (ack %llu of %llu)",
                            (unsigned long long)h->ack, (unsigned long long)d->snd_nxt);
    if (h->ack > d->snd_una) {
        for (uint64_t p = d->snd_una; p < h->ack; p++) {
            tx_pkt *t = &d->pk[p % WIN];
            if (t->state == 1 && !t->resent) { /* RTT from first sends only */
                uint64_t rtt = now - t->sent_ns;
                d->srtt_ns = d->srtt_ns ? (7 * d->srtt_ns + rtt) / 8 : rtt;
            }
            t->state = 0;
        }
        d->snd_una = h->ack;
        uint64_t upto = k->sq_acked;
        while (upto < d->tx_msg && d->m_end[upto & k->sq_mask] <= d->snd_una)
            upto++;
        st_link_ack(k, upto);
        d->acked_now = 1;
    }
    if (h->released > d->peer_released)
        d->peer_released = h->released;
    if (h->freed > d->peer_freed)
        d->peer_freed = h->freed;
    return ST_OK;
}

static void on_sack(dp_link *d, const dp_hdr *h, const uint8_t *bits)
{
    for (uint32_t i = 0; i < (uint32_t)h->len * 8u && i < WIN; i++) {
        if (!(bits[i / 8] & (1u << (i % 8))))
            continue;
        uint64_t p = h->ack + i;
        if (p < d->snd_una || p >= d->snd_nxt)
            continue;
        tx_pkt *t = &d->pk[p % WIN];
        if (t->state == 1)
            t->state = 2;
        if (p + 1 > d->sack_hi)
            d->sack_hi = p + 1;
    }
}

static int on_data(dp_link *d, const dp_hdr *h, const uint8_t *body)
{
    st_link *k = &d->base;
    uint64_t p = h->pseq;
    if (p < d->rcv_nxt || (p < d->rcv_nxt + WIN && (d->rbits[(p % WIN) / 8] & (1u << (p % 8))))) {
        d->need_ack = 1; /* a duplicate: our ack may have been lost */
        return ST_OK;
    }
    uint32_t credits = k->opts.credits;
    if (p >= d->rcv_nxt + WIN || h->msg < d->delivered || h->msg >= d->released + credits || h->msg_len == 0 ||
        h->msg_len > k->opts.max_msg || h->len == 0 || h->len > d->payload || h->off + (uint64_t)h->len > h->msg_len) {
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "malformed data frame (packet %llu, message %llu, %u+%u of %u)",
                            (unsigned long long)p, (unsigned long long)h->msg, h->off, h->len, h->msg_len);
    }
    rx_msg *r = &d->rm[h->msg % credits];
    if (r->msg != h->msg) {
        uint64_t need = ST_ALIGN_UP((uint64_t)h->msg_len, 64);
        if (h->rpos % 64 || h->rpos < d->freed || h->rpos + need > d->freed + d->area ||
            h->rpos % d->area + need > d->area) {
            k->stats.frames_rejected++;
            return st_link_fail(k, ST_EPROTO, "data frame places message %llu outside the free ring",
                                (unsigned long long)h->msg);
        }
        r->msg = h->msg, r->rpos = h->rpos, r->len = h->msg_len, r->got = 0;
    } else if (r->rpos != h->rpos || r->len != h->msg_len || r->got + h->len > r->len) {
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "data frames of message %llu disagree", (unsigned long long)h->msg);
    }
    memcpy(d->rx->addr + r->rpos % d->area + h->off, body, h->len);
    r->got += h->len;
    d->rbits[(p % WIN) / 8] |= (uint8_t)(1u << (p % 8));
    if (p + 1 > d->rcv_hi)
        d->rcv_hi = p + 1;
    while (d->rbits[(d->rcv_nxt % WIN) / 8] & (1u << (d->rcv_nxt % 8))) {
        d->rbits[(d->rcv_nxt % WIN) / 8] &= (uint8_t)~(1u << (d->rcv_nxt % 8));
        d->rcv_nxt++;
    }
    d->need_ack = 1;
    return ST_OK;
}


/* One received frame of this link. */
static int on_frame(dp_link *d, struct rte_mbuf *m, uint64_t now)
{
    st_link *k = &d->base;
    const uint8_t *mac;
    uint32_t ip;
    dp_hdr *h = st_dpdk_frame_parse(m, &mac, &ip);
    if (!h || h->conn != d->conn || ip == d->my_ip)
        return ST_OK; /* not ours, an old connection's, or our own echoed back */
    if (!st_dpdk_frame_crc_ok(h, m->data_len)) {
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "corrupt frame header from the peer");
    }
    d->last_rx_ns = now;
    const uint8_t *body = (const uint8_t *)(h + 1);
    switch (h->type) {
    case F_HELLO: /* answered in dp_progress: our HELLO_ACK was lost */
    case F_HELLO_ACK:
        return ST_OK;
    case F_BYE: /* carries the peer's last cumulative ack: what it got completes */
        on_ack_fields(d, h, now);
        if (!d->peer_bye) {
            d->peer_bye = 1;
            st_dpdk_say_bye(d, 1); /* the closing peer waits for this answer */
        }
        return st_link_fail(k, ST_ECONN, "peer closed the link");
    case F_ACK: {
        int rc = on_ack_fields(d, h, now);
        if (!rc)
            on_sack(d, h, body);
        return rc;
    }
    case F_DATA: {
        int rc = on_ack_fields(d, h, now);
        return rc ? rc : on_data(d, h, body);
    }
    default:
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "unknown frame type %u", h->type);
    }
}

/* ---- progress ----------------------------------------------------------------------------------- */
static int dp_progress(st_link *k)
{
    dp_link *d = (dp_link *)k;
    uint64_t now = st_now_ns();
    struct rte_mbuf *rx[BURST];
    d->acked_now = 0;
    if (st_dpdk_rings_gone(&d->port)) /* the memif peer left (see dpdk_impl.h) */
        return st_link_fail(k, ST_ECONN, "the memif peer detached");
    int rc = ST_OK;
    for (int rounds = 0; rounds < 8 && !rc; rounds++) {
        uint16_t n = rte_eth_rx_burst(d->port.id, 0, rx, BURST);
        for (uint16_t i = 0; i < n; i++) {
            const uint8_t *mac;
            uint32_t ip;
            dp_hdr *h = st_dpdk_frame_parse(rx[i], &mac, &ip);
            if (!rc && h && h->type == F_HELLO && h->conn == d->conn)
                st_dpdk_send_hello_ack(d);
            if (!rc)
                rc = on_frame(d, rx[i], now);
            rte_pktmbuf_free(rx[i]);
        }
        if (n < BURST)
            break;
    }
    if (rc)
        return rc;
    if (d->acked_now || now - d->last_scan_ns > RTO_MIN_NS / 4) {
        d->last_scan_ns = now;
        retransmit(d, now);
    }
    transmit_new(d, now);
    if (d->need_ack || d->released != d->acked_released ||
        now - d->last_tx_ns > (uint64_t)k->opts.heartbeat_ms * 500000ull)
        send_ack(d, now);
    if (d->ntx && (d->tx_msg == k->sq_tail || now - d->txb_ns >= d->drain_ns))
        st_dpdk_tx_flush(d);
    if (now - d->last_rx_ns > (uint64_t)k->opts.timeout_ms * 1000000ull)
        return st_link_fail(k, ST_ECONN, "peer silent for %u ms", k->opts.timeout_ms);
    return ST_OK;
}

static int dp_recv(st_link *k, st_msg *out)
{
    dp_link *d = (dp_link *)k;
    rx_msg *r = &d->rm[d->delivered % k->opts.credits];
    if (d->delivered - d->released >= k->opts.credits || r->msg != d->delivered || r->got != r->len)
        return k->err ? st_err(k->err, "dpdk link: %s", k->errmsg) : ST_EAGAIN;
    out->data = d->rx->addr + r->rpos % d->area;
    out->len = r->len;
    out->seq = d->delivered++;
    k->stats.msgs_rx++;
    k->stats.bytes_rx += r->len;
    return ST_OK;
}

static int dp_release(st_link *k, const st_msg *m)
{
    dp_link *d = (dp_link *)k;
    if (d->released == d->delivered || m->seq != d->released)
        return st_err(ST_EINVAL, "dpdk link: release of message %llu out of order (next is %llu)",
                      (unsigned long long)m->seq, (unsigned long long)d->released);
    rx_msg *r = &d->rm[d->released % k->opts.credits];
    d->freed = r->rpos + ST_ALIGN_UP((uint64_t)r->len, 64);
    r->msg = UINT64_MAX;
    r->got = 0;
    d->released++;
    return ST_OK;
}

/* ---- blocking: a polling transport has no interrupt, so waits are short naps ---------------------- */
static uint64_t dp_wait_prepare(st_link *k) { return atomic_load(&((dp_link *)k)->wakes); }

static int dp_wait(st_link *k, uint64_t ticket, int timeout_ms)
{
    dp_link *d = (dp_link *)k;
    if (d->ntx)
        st_dpdk_tx_flush(d);
    if (atomic_load(&d->wakes) != ticket || timeout_ms == 0)
        return ST_OK;
    /* at most 20 us: frames arrive without any signal, so a longer nap is
     * latency added to whatever arrives during it (100 us naps made a
     * 64 KiB ping-pong take ~120 us on a busy machine); 50k wake-ups a
     * second of an idle link is the price */
    struct pollfd p = {.fd = d->efd, .events = POLLIN};
    struct timespec ts = {0, 20000L};
    if (ppoll(&p, 1, &ts, NULL) == 1) {
        uint64_t v;
        ssize_t r = read(d->efd, &v, sizeof v);
        (void)r;
    }
    return ST_OK;
}

static void dp_wake(st_link *k)
{
    dp_link *d = (dp_link *)k;
    atomic_fetch_add(&d->wakes, 1);
    uint64_t one = 1;
    ssize_t r = write(d->efd, &one, sizeof one);
    (void)r;
}

const st_transport_ops st_dpdk_ops = {
    .name = "dpdk",
    .listen = st_dpdk_listen,
    .accept = st_dpdk_accept,
    .listener_close = st_dpdk_listener_close,
    .connect = st_dpdk_connect,
    .progress = dp_progress,
    .recv = dp_recv,
    .release = dp_release,
    .wait_prepare = dp_wait_prepare,
    .wait = dp_wait,
    .wake = dp_wake,
    .close = st_dpdk_link_close,
    .debug_drop = NULL,
};

#endif /* ST_HAVE_DPDK */
