/* DPDK transport, the port side of a link: building and parsing the
 * Ethernet/IPv4/UDP frames of dpdk_impl.h, and burst transmission.
 *
 * TX: frames gather in a burst of BURST mbufs, handed to rte_eth_tx_burst
 * when the burst is full and at the end of every progress pass (dpdk.c;
 * or after ST_DPDK_TX_DRAIN_US when set, to batch small messages). The
 * test hooks (st_dpdk_debug_faults) drop, hold back or duplicate frames
 * here, below the protocol. RX is rte_eth_rx_burst in the callers. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"

#ifdef ST_HAVE_DPDK
#include "crc32c.h"
#include "dpdk_impl.h"

#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

/* ---- frames ------------------------------------------------------------------------------------- */
struct rte_mbuf *st_dpdk_frame_new(dp_link *d, st_dpdk_port *p, const uint8_t dst[6], uint32_t src_ip,
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

void st_dpdk_frame_seal(dp_hdr *h)
{
    h->crc = 0;
    h->crc = st_crc32c(0, h, sizeof *h);
}

dp_hdr *st_dpdk_frame_parse(struct rte_mbuf *m, const uint8_t **src_mac, uint32_t *src_ip)
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

int st_dpdk_frame_crc_ok(dp_hdr *h, uint32_t data_len)
{
    uint32_t c = h->crc;
    h->crc = 0;
    int ok = st_crc32c(0, h, sizeof *h) == c;
    h->crc = c;
    return ok && NET_HDR + sizeof(dp_hdr) + h->len <= data_len;
}

/* ---- transmit ----------------------------------------------------------------------------------- */
void st_dpdk_tx_flush(dp_link *d)
{
    int sent = 0;
    for (int tries = 0; sent < d->ntx && tries < 4; tries++)
        sent += rte_eth_tx_burst(d->port.id, 0, d->txb + sent, (uint16_t)(d->ntx - sent));
    /* a full device ring: keep the rest for the next pass */
    memmove(d->txb, d->txb + sent, (size_t)(d->ntx - sent) * sizeof *d->txb);
    d->ntx -= sent;
}

void st_dpdk_tx_push(dp_link *d, struct rte_mbuf *m)
{
    if (d->ntx == BURST)
        st_dpdk_tx_flush(d);
    if (d->ntx == BURST) { /* the device does not take frames: lost, as on a wire */
        rte_pktmbuf_free(m);
        return;
    }
    if (d->ntx == 0)
        d->txb_ns = st_now_ns();
    d->txb[d->ntx++] = m;
}

/* Queue one DATA or ACK frame through the fault hooks. */
void st_dpdk_tx_frame(dp_link *d, struct rte_mbuf *m, uint64_t now)
{
    d->last_tx_ns = now;
    if (chance(d, d->drop)) {
        rte_pktmbuf_free(m);
        return;
    }
    if (chance(d, d->dup)) {
        struct rte_mbuf *c = rte_pktmbuf_copy(m, d->port.pool, 0, UINT32_MAX);
        if (c)
            st_dpdk_tx_push(d, c);
    }
    if (!d->held && chance(d, d->reorder)) {
        d->held = m; /* goes out after the next frame */
        return;
    }
    st_dpdk_tx_push(d, m);
    if (d->held) {
        st_dpdk_tx_push(d, d->held);
        d->held = NULL;
    }
}

void st_dpdk_nap_us(long us)
{
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

#endif /* ST_HAVE_DPDK */
