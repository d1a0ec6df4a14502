/* Private to the dpdk transport: the port a link owns and the
 * process-wide settings dpdk_eal.c keeps; the link's state, frame format
 * and the functions the link's three files share. Compiled only with
 * ST_HAVE_DPDK. */
#ifndef ST_DPDK_IMPL_H
#define ST_DPDK_IMPL_H

#include "dataplane/dpdk.h"

#include <stdint.h>

struct rte_mempool;

/* One DPDK port with one rx/tx queue pair and its own mbuf pool. */
typedef struct st_dpdk_port {
    uint16_t id;
    char name[64];             /* the unique device name given to the EAL */
    struct rte_mempool *pool;  /* mbufs of data room `room` bytes */
    uint8_t mac[6];
    uint32_t mtu;              /* largest IPv4 packet the port carries, bytes */
    uint32_t room;             /* mbuf data room, bytes */
    int ip_csum_offload;       /* the port computes IPv4 header checksums */
    char kept_addr[256];       /* memif server: kept for reuse on close (dpdk_eal.c) */
    int peer_rings;            /* memif: the rings are shared with the peer process, and its
                                  driver thread unmaps them when the peer leaves */
} st_dpdk_port;

/* Create and start the port named by a dpdk address (see dpdk.h); memif
 * gets role=server when listening, role=client otherwise. ST_EIO naming the
 * device and the driver's reason when it cannot be created. */
int st_dpdk_port_open(const char *addr, int listening, st_dpdk_port *p);
void st_dpdk_port_close(st_dpdk_port *p);
/* Open and close the port once: ST_OK when it can be created here (a
 * memif server stays kept for the next open). */
int st_dpdk_port_check(const char *addr, int listening);
/* 1 when the port's link is up (memif: the peer is attached). */
int st_dpdk_port_up(const st_dpdk_port *p);
/* memif: when the peer leaves, the driver's control thread disconnects and
 * unmaps the shared rings while a polling thread may be bursting on them.
 * Every burst loop checks this first and stops touching the port once its
 * link is down (a memif link never comes back to the same connection).
 * This narrows, but cannot close, the window of that race inside the
 * driver. 1: the shared rings are gone or going. */
static inline int st_dpdk_rings_gone(const st_dpdk_port *p) { return p->peer_rings && !st_dpdk_port_up(p); }

/* Addresses from the configuration (network byte order for IPs). */
uint32_t st_dpdk_local_ip(int listening);
/* 1 and the neighbour when --dpdk-peer was given, else 0. */
int st_dpdk_static_peer(uint8_t mac[6], uint32_t *ip);
void st_dpdk_fault_rates(double *drop, double *reorder, double *dup);


/* ---- the link (dpdk.c: protocol; dpdk_io.c: frames and bursts; dpdk_conn.c: handshake) ----------
 * Frame = Ethernet | IPv4 (DF, checksum) | UDP (port 47100, checksum 0) |
 *         dp_hdr (72 bytes, CRC32C over itself) | payload                 */
#include "dataplane/link_impl.h"
#include "dataplane/mr.h"

#include <stdatomic.h>

struct rte_mbuf;

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
    uint32_t credits;
    uint32_t max_payload; /* largest DATA payload the sender of the HELLO accepts (0: its MTU's) */
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
    uint32_t payload;     /* message bytes per DATA frame we accept (from our MTU) */
    uint32_t tx_payload;  /* message bytes per DATA frame we send: min(ours, the peer's) */
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

#define dp_ops st_dpdk_ops /* the one table (dpdk.c), declared in link_impl.h */

static inline uint64_t rnd(dp_link *d)
{
    d->rng ^= d->rng << 13, d->rng ^= d->rng >> 7, d->rng ^= d->rng << 17;
    return d->rng;
}
static inline int chance(dp_link *d, double p) { return p > 0 && (double)(rnd(d) >> 11) * 0x1p-53 < p; }

/* dpdk_io.c: frames and burst I/O */
/* A frame to dst with `len` payload bytes: its header in *hp (ack fields
 * filled from d when d is not NULL), its payload in *body; NULL when the
 * pool is empty. */
struct rte_mbuf *st_dpdk_frame_new(dp_link *d, st_dpdk_port *p, const uint8_t dst[6], uint32_t src_ip,
                                   uint32_t dst_ip, int type, uint32_t len, dp_hdr **hp, uint8_t **body);
void st_dpdk_frame_seal(dp_hdr *h);
/* The dp header of one of our frames (UDP to our port, our magic) and its
 * source addresses, else NULL. Trusts nothing beyond the fixed headers. */
dp_hdr *st_dpdk_frame_parse(struct rte_mbuf *m, const uint8_t **src_mac, uint32_t *src_ip);
/* 1 when the header's CRC holds and its payload fits in data_len bytes. */
int st_dpdk_frame_crc_ok(dp_hdr *h, uint32_t data_len);
/* Queue a frame in the tx burst (sent when full); st_dpdk_tx_frame passes it
 * through the fault hooks first; st_dpdk_tx_flush hands the burst to the
 * device (what the device refuses stays for the next pass). */
void st_dpdk_tx_push(dp_link *d, struct rte_mbuf *m);
void st_dpdk_tx_frame(dp_link *d, struct rte_mbuf *m, uint64_t now);
void st_dpdk_tx_flush(dp_link *d);
void st_dpdk_nap_us(long us);

/* dpdk_conn.c: handshake and endpoints */
void st_dpdk_say_bye(dp_link *d, int n);
void st_dpdk_send_hello_ack(dp_link *d);
int st_dpdk_listen(const char *addr, const st_link_opts *o, st_listener **out);
void st_dpdk_listener_close(st_listener *l);
int st_dpdk_accept(st_listener *l, int timeout_ms, st_link **out);
int st_dpdk_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out);
void st_dpdk_link_close(st_link *k);

#endif
