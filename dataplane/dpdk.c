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
 * Handshake: the connector sends HELLO {connection id, credits, ring bytes,
 * max message} every 10 ms to the static neighbour (--dpdk-peer) or to
 * broadcast; the listener answers HELLO_ACK and both learn each other's MAC
 * and IP from the frames. Frames of another connection id are ignored.
 *
 * TX: frames gather in a burst of 32 sent with rte_eth_tx_burst when full
 * and at the end of a progress pass (or after ST_DPDK_TX_DRAIN_US when that
 * is set, to batch small messages); RX: rte_eth_rx_burst in bursts of 32. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"

#ifdef ST_HAVE_DPDK
#include "crc32c.h"
#include "dpdk_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#define DP_MAGIC 0x31505453u /* "STP1" */
#define DP_UDP_PORT 47100
#define WIN 2048u            /* packets unacknowledged per link (power of two) */
#define BURST 32
#define NET_HDR (14 + 20 + 8)
#define RTO_MIN_NS 200000ull
#define RTO_MAX_NS 200000000ull
#define RESTART ((uint64_t)1 << 20)

enum { F_DATA = 1, F_ACK = 2, F_HELLO = 3, F_HELLO_ACK = 4, F_BYE = 5 };

typedef struct __attribute__((packed)) dp_hdr {
    uint32_t magic;
    uint8_t type, flags;
    uint16_t len;       /* payload bytes after this header */
    uint32_t conn;      /* connection id, chosen by the connector */
    uint32_t crc;       /* CRC32C of this header with crc = 0 */
    uint64_t ack;       /* cumulative: every packet < ack arrived */
    uint64_t released;  /* messages the sender of this frame released */
    uint64_t freed;     /* receive-ring bytes it freed */
    uint64_t pseq, msg; /* DATA: packet and message number */
    uint64_t rpos;      /* DATA: the message's place in the receiver's ring */
    uint32_t off, msg_len;
} dp_hdr;
_Static_assert(sizeof(dp_hdr) == 72, "dp_hdr is 72 bytes");

typedef struct hello_body {
    uint32_t credits, pad;
    uint64_t area, max_msg;
} hello_body;

typedef struct tx_pkt {
    uint64_t msg, sent_ns;
    uint32_t off, len;
    uint8_t state, resent; /* state: 0 free, 1 in flight, 2 selectively acked */
} tx_pkt;

typedef struct rx_msg {
    uint64_t msg, rpos, got;
    uint32_t len;
} rx_msg;

typedef struct dp_link {
    st_link base;
    st_dpdk_port port;
    uint32_t conn;
    uint8_t peer_mac[6];
    uint32_t my_ip, peer_ip;
    uint32_t payload;     /* message bytes per DATA frame */
    /* tx burst and fault hooks */
    struct rte_mbuf *txb[BURST];
    int ntx;
    uint64_t txb_ns, drain_ns, last_tx_ns;
    struct rte_mbuf *held;
    double drop, reorder, dup;
    uint64_t rng;
    /* sender */
    uint32_t peer_credits;
    uint64_t peer_area, peer_max_msg, peer_released, peer_freed;
    uint64_t snd_una, snd_nxt, sack_hi;
    tx_pkt *pk;           /* WIN slots, slot = pseq % WIN */
    uint64_t *m_rpos;     /* per sq slot: receiver-ring position */
    uint64_t *m_end;      /* per sq slot: packet number after its last packet */
    uint64_t tx_msg, tx_rpos;
    uint32_t tx_off;
    uint64_t srtt_ns, last_scan_ns;
    int acked_now;
    /* receiver */
    st_mr *rx;
    uint64_t area, rcv_nxt, rcv_hi;
    uint8_t rbits[WIN / 8]; /* packets received above rcv_nxt, bit = pseq % WIN */
    rx_msg *rm;             /* credits slots, slot = msg % credits */
    uint64_t delivered, released, freed;
    int need_ack, peer_bye;
    uint64_t acked_released, last_rx_ns;
    /* blocking */
    int efd;
    _Atomic uint64_t wakes;
} dp_link;

typedef struct dp_listener {
    st_listener base;
} dp_listener;

#define dp_ops st_dpdk_ops /* the one table, declared in link_impl.h */

static inline uint64_t rnd(dp_link *d)
{
    d->rng ^= d->rng << 13, d->rng ^= d->rng >> 7, d->rng ^= d->rng << 17;
    return d->rng;
}
static inline int chance(dp_link *d, double p) { return p > 0 && (double)(rnd(d) >> 11) * 0x1p-53 < p; }

/* ---- frames ------------------------------------------------------------------------------------- */
/* A frame to the peer with `len` payload bytes; returns the payload
 * pointer in *body, the header in *hp. NULL when the pool is empty. */
static struct rte_mbuf *frame_new(dp_link *d, st_dpdk_port *p, const uint8_t dst[6], uint32_t src_ip,
                                  uint32_t dst_ip, int type, uint32_t len, dp_hdr **hp, uint8_t **body)
{
    struct rte_mbuf *m = rte_pktmbuf_alloc(p->pool);
    if (!m)
        return NULL;
    uint8_t *f = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(NET_HDR + sizeof(dp_hdr) + len));
    if (!f) {
        rte_pktmbuf_free(m);
        return NULL;
    }
    struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
    memcpy(eth->dst_addr.addr_bytes, dst, 6);
    memcpy(eth->src_addr.addr_bytes, p->mac, 6);
    eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
    memset(ip, 0, sizeof *ip);
    ip->version_ihl = 0x45;
    ip->total_length = htons((uint16_t)(20 + 8 + sizeof(dp_hdr) + len));
    ip->fragment_offset = htons(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_UDP;
    ip->src_addr = src_ip;
    ip->dst_addr = dst_ip;
    if (p->ip_csum_offload) {
        m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
        m->l2_len = 14;
        m->l3_len = 20;
    } else {
        ip->hdr_checksum = rte_ipv4_cksum(ip);
    }
    struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
    udp->src_port = udp->dst_port = htons(DP_UDP_PORT);
    udp->dgram_len = htons((uint16_t)(8 + sizeof(dp_hdr) + len));
    udp->dgram_cksum = 0; /* the header has its own CRC; 0 = none in IPv4 */
    dp_hdr *h = (dp_hdr *)(udp + 1);
    memset(h, 0, sizeof *h);
    h->magic = DP_MAGIC;
    h->type = (uint8_t)type;
    h->len = (uint16_t)len;
    if (d) {
        h->conn = d->conn;
        h->ack = d->rcv_nxt;
        h->released = d->released;
        h->freed = d->freed;
    }
    *hp = h;
    *body = (uint8_t *)(h + 1);
    return m;
}

static void frame_seal(dp_hdr *h)
{
    h->crc = 0;
    h->crc = st_crc32c(0, h, sizeof *h);
}

/* Parse a received frame: the dp header and payload when it is one of ours
 * (UDP to our port with our magic), else NULL. */
static dp_hdr *frame_parse(struct rte_mbuf *m, const uint8_t **src_mac, uint32_t *src_ip)
{
    if (m->nb_segs != 1 || m->data_len < NET_HDR + sizeof(dp_hdr))
        return NULL;
    uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
    struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
    struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
    if (eth->ether_type != htons(RTE_ETHER_TYPE_IPV4) || ip->version_ihl != 0x45 || ip->next_proto_id != IPPROTO_UDP ||
        udp->dst_port != htons(DP_UDP_PORT))
        return NULL;
    dp_hdr *h = (dp_hdr *)(udp + 1);
    if (h->magic != DP_MAGIC)
        return NULL;
    *src_mac = eth->src_addr.addr_bytes;
    *src_ip = ip->src_addr;
    return h;
}

static int frame_crc_ok(dp_hdr *h, uint32_t data_len)
{
    uint32_t c = h->crc;
    h->crc = 0;
    int ok = st_crc32c(0, h, sizeof *h) == c;
    h->crc = c;
    return ok && NET_HDR + sizeof(dp_hdr) + h->len <= data_len;
}

/* ---- transmit ----------------------------------------------------------------------------------- */
static void tx_flush(dp_link *d)
{
    int sent = 0;
    for (int tries = 0; sent < d->ntx && tries < 4; tries++)
        sent += rte_eth_tx_burst(d->port.id, 0, d->txb + sent, (uint16_t)(d->ntx - sent));
    /* a full device ring: keep the rest for the next pass */
    memmove(d->txb, d->txb + sent, (size_t)(d->ntx - sent) * sizeof *d->txb);
    d->ntx -= sent;
}

static void tx_push(dp_link *d, struct rte_mbuf *m)
{
    if (d->ntx == BURST)
        tx_flush(d);
    if (d->ntx == BURST) { /* the device does not take frames: lost, as on a wire */
        rte_pktmbuf_free(m);
        return;
    }
    if (d->ntx == 0)
        d->txb_ns = st_now_ns();
    d->txb[d->ntx++] = m;
}

/* Queue one DATA or ACK frame through the fault hooks. */
static void tx_frame(dp_link *d, struct rte_mbuf *m, uint64_t now)
{
    d->last_tx_ns = now;
    if (chance(d, d->drop)) {
        rte_pktmbuf_free(m);
        return;
    }
    if (chance(d, d->dup)) {
        struct rte_mbuf *c = rte_pktmbuf_copy(m, d->port.pool, 0, UINT32_MAX);
        if (c)
            tx_push(d, c);
    }
    if (!d->held && chance(d, d->reorder)) {
        d->held = m; /* goes out after the next frame */
        return;
    }
    tx_push(d, m);
    if (d->held) {
        tx_push(d, d->held);
        d->held = NULL;
    }
}

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
    struct rte_mbuf *m = frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_DATA, t->len, &h, &body);
    if (!m)
        return 0;
    h->pseq = pseq;
    h->msg = t->msg;
    h->rpos = d->m_rpos[t->msg & d->base.sq_mask];
    h->off = t->off;
    h->msg_len = (uint32_t)e->len;
    gather(e, t->off, body, t->len);
    frame_seal(h);
    t->sent_ns = now;
    d->acked_released = d->released;
    d->need_ack = 0; /* the cumulative ack rode along */
    if (d->base.corrupt_next) { /* test hook: this one must reach the peer */
        h->crc ^= 1;
        d->base.corrupt_next = 0;
        d->last_tx_ns = now;
        tx_push(d, m);
        return 1;
    }
    tx_frame(d, m, now);
    return 1;
}

static void send_ack(dp_link *d, uint64_t now)
{
    uint32_t bits = (uint32_t)(d->rcv_hi > d->rcv_nxt ? d->rcv_hi - d->rcv_nxt : 0);
    uint32_t bytes = (bits + 7) / 8;
    dp_hdr *h;
    uint8_t *body;
    struct rte_mbuf *m = frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_ACK, bytes, &h, &body);
    if (!m)
        return;
    memset(body, 0, bytes);
    for (uint32_t i = 0; i < bits; i++) {
        uint64_t p = d->rcv_nxt + i;
        if (d->rbits[(p % WIN) / 8] & (1u << (p % 8)))
            body[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    frame_seal(h);
    d->need_ack = 0;
    d->acked_released = d->released;
    tx_frame(d, m, now);
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
        uint32_t len = (uint32_t)ST_MIN((size_t)d->payload, e->len - d->tx_off);
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

static void say_bye(dp_link *d, int n);

/* One received frame of this link. */
static int on_frame(dp_link *d, struct rte_mbuf *m, uint64_t now)
{
    st_link *k = &d->base;
    const uint8_t *mac;
    uint32_t ip;
    dp_hdr *h = frame_parse(m, &mac, &ip);
    if (!h || h->conn != d->conn || ip == d->my_ip)
        return ST_OK; /* not ours, an old connection's, or our own echoed back */
    if (!frame_crc_ok(h, m->data_len)) {
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
            say_bye(d, 1); /* the closing peer waits for this answer */
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
static void send_hello_ack(dp_link *d);

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

static int dp_progress(st_link *k)
{
    dp_link *d = (dp_link *)k;
    uint64_t now = st_now_ns();
    struct rte_mbuf *rx[BURST];
    d->acked_now = 0;
    int rc = ST_OK;
    for (int rounds = 0; rounds < 8 && !rc; rounds++) {
        uint16_t n = rte_eth_rx_burst(d->port.id, 0, rx, BURST);
        for (uint16_t i = 0; i < n; i++) {
            const uint8_t *mac;
            uint32_t ip;
            dp_hdr *h = frame_parse(rx[i], &mac, &ip);
            if (!rc && h && h->type == F_HELLO && h->conn == d->conn)
                send_hello_ack(d);
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
        tx_flush(d);
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
        tx_flush(d);
    if (atomic_load(&d->wakes) != ticket || timeout_ms == 0)
        return ST_OK;
    /* at most 100 us: frames arrive without any signal */
    struct pollfd p = {.fd = d->efd, .events = POLLIN};
    struct timespec ts = {0, 100000L};
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

/* ---- endpoints ---------------------------------------------------------------------------------- */
static void say_bye(dp_link *d, int n)
{
    for (int i = 0; i < n; i++) {
        dp_hdr *h;
        uint8_t *body;
        struct rte_mbuf *m = frame_new(d, &d->port, d->peer_mac, d->my_ip, d->peer_ip, F_BYE, 0, &h, &body);
        if (!m)
            break;
        frame_seal(h);
        tx_push(d, m);
    }
    tx_flush(d);
}

/* Say goodbye and wait (at most 100 ms) for the peer's answer, so that
 * the goodbye -- with our last cumulative ack in it -- is read before the
 * port goes down (memif drops what the peer has not read at detach). */
static void linger(dp_link *d)
{
    uint64_t t0 = st_now_ns(), last = 0;
    for (uint64_t now = t0; now - t0 < 100000000ull; now = st_now_ns()) {
        if (now - last > 10000000ull) {
            say_bye(d, 1);
            last = now;
        }
        struct rte_mbuf *rx[BURST];
        uint16_t n = rte_eth_rx_burst(d->port.id, 0, rx, BURST);
        int bye = 0;
        for (uint16_t i = 0; i < n; i++) {
            const uint8_t *mac;
            uint32_t ip;
            dp_hdr *h = frame_parse(rx[i], &mac, &ip);
            bye |= h && h->conn == d->conn && h->type == F_BYE && ip != d->my_ip;
            rte_pktmbuf_free(rx[i]);
        }
        if (bye)
            return;
        if (!n)
            nap_us(50);
    }
}

static void dp_close(st_link *k)
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
    d->payload = d->port.mtu - 20 - 8 - (uint32_t)sizeof(dp_hdr);
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
    if (st_mr_alloc(d->area, ST_MR_HUGEPAGE, &d->rx) != ST_OK)
        return ST_ENOMEM;
    return ST_OK;
}

static void send_hello(dp_link *d, int type, const uint8_t dst[6], uint32_t dst_ip)
{
    dp_hdr *h;
    uint8_t *body;
    struct rte_mbuf *m = frame_new(d, &d->port, dst, d->my_ip, dst_ip, type, sizeof(hello_body), &h, &body);
    if (!m)
        return;
    hello_body b = {d->base.opts.credits, 0, d->area, d->base.opts.max_msg};
    memcpy(body, &b, sizeof b);
    frame_seal(h);
    tx_push(d, m);
    tx_flush(d);
}

static void send_hello_ack(dp_link *d) { send_hello(d, F_HELLO_ACK, d->peer_mac, d->peer_ip); }

static int dp_listen(const char *addr, const st_link_opts *o, st_listener **out)
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

static void dp_listener_close(st_listener *l) { free(l); }

static int dp_accept(st_listener *l, int timeout_ms, st_link **out)
{
    st_dpdk_port port;
    uint64_t end = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 1 << 30 : timeout_ms) * 1000000ull;
    int rc;
    /* memif closes a removed server's socket later, in the EAL's interrupt
     * thread: the next server on the same socket may have to wait for it */
    while ((rc = st_dpdk_port_open(l->addr, 1, &port)) == ST_EIO && !strncmp(l->addr, "net_memif", 9) &&
           st_now_ns() < end)
        nap_us(10000);
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
            dp_hdr *h = frame_parse(rx[i], &mac, &ip);
            if (!d && h && h->type == F_HELLO && h->conn && frame_crc_ok(h, rx[i]->data_len) &&
                h->len >= sizeof(hello_body) && (!have_static || ip == peer_ip)) {
                hello_body b;
                memcpy(&b, h + 1, sizeof b);
                d = link_new(&l->opts, &port, 1);
                d->conn = h->conn;
                memcpy(d->peer_mac, mac, 6);
                d->peer_ip = ip;
                if ((rc = link_finish(d, &b)) != ST_OK) {
                    d->port.name[0] = 0; /* the port stays ours for the next HELLO */
                    dp_close(&d->base);
                    d = NULL;
                }
            }
            rte_pktmbuf_free(rx[i]);
        }
        if (d) {
            send_hello_ack(d);
            *out = &d->base;
            return ST_OK;
        }
        if (!n)
            nap_us(50);
    }
    st_dpdk_port_close(&port);
    return st_err(ST_ETIMEDOUT, "dpdk: no connection on %s within %d ms", l->addr, timeout_ms);
}

static int dp_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out)
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
            nap_us(10000);
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
                dp_hdr *h = frame_parse(rx[i], &mac, &ip);
                if (!ok && h && h->type == F_HELLO_ACK && h->conn == d->conn && frame_crc_ok(h, rx[i]->data_len) &&
                    h->len >= sizeof(hello_body)) {
                    hello_body b;
                    memcpy(&b, h + 1, sizeof b);
                    memcpy(d->peer_mac, mac, 6);
                    d->peer_ip = ip;
                    if ((rc = link_finish(d, &b)) != ST_OK) {
                        d->peer_ip = 0;
                        dp_close(&d->base);
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
                nap_us(50);
        }
        d->peer_ip = 0; /* no goodbye to a peer we never met */
        dp_close(&d->base);
        rc = st_err(ST_ETIMEDOUT, "dpdk: no answer from %s within %d ms", addr, timeout_ms);
    }
    return rc;
}

const st_transport_ops st_dpdk_ops = {
    .name = "dpdk",
    .listen = dp_listen,
    .accept = dp_accept,
    .listener_close = dp_listener_close,
    .connect = dp_connect,
    .progress = dp_progress,
    .recv = dp_recv,
    .release = dp_release,
    .wait_prepare = dp_wait_prepare,
    .wait = dp_wait,
    .wake = dp_wake,
    .close = dp_close,
    .debug_drop = NULL,
};

#endif /* ST_HAVE_DPDK */
