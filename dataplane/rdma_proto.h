/* The RDMA transport's own small protocol, kept apart from the verbs code so
 * that it compiles (and is tested) on machines without RDMA:
 *
 *  - ring placement: where message n lands in the receiver's ring. Both ends
 *    apply the same rule to their own byte counters, so the ring offset never
 *    travels; the immediate says only whether the message wrapped.
 *  - the 32-bit immediate of each RDMA WRITE WITH IMMEDIATE:
 *        bit 31      slot: 1 = placed at the ring's start (wrapped),
 *                          0 = placed right after the previous message
 *        bits 30..0  length in bytes (1 .. 2^31 - 1)
 *    The receiver recomputes the placement and rejects a mismatch (ST_EPROTO).
 *  - the connection-info message both ends exchange over the TCP control
 *    channel before their queue pairs go to RTR/RTS: fixed 128 bytes,
 *    little-endian, CRC32C-checked, every field validated on decode.
 *  - the per-process options (device, port, GID index, retry/timeouts),
 *    read from ST_RDMA_* environment variables. */
#ifndef ST_RDMA_PROTO_H
#define ST_RDMA_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- ring placement ---------------------------------------------------------- */
/* Byte counters run forever (virtual positions); offset = pos % ring_len.
 * A message starts 64-byte aligned after the previous one, or at the next
 * ring start when it would not fit before the end. */
typedef struct st_rdma_place {
    uint64_t start;  /* virtual position of the first byte */
    uint64_t end;    /* start + len */
    int wrapped;     /* 1: start moved to a ring start */
} st_rdma_place;

/* ring_len: multiple of 64; len: 1 .. ring_len. */
st_rdma_place st_rdma_place_next(uint64_t pos, uint64_t len, uint64_t ring_len);

/* ---- chunking ------------------------------------------------------------------ */
/* A message is written in pieces of at most ST_RDMA_CHUNK bytes, the last
 * one WITH IMMEDIATE (RC places the earlier pieces first), so that a small
 * control write never waits behind more than a few chunks of bulk data.
 * The receiver's completion reports only the last piece's bytes. */
#define ST_RDMA_CHUNK ((uint64_t)1 << 20)
static inline uint64_t st_rdma_last_piece(uint64_t len) { return len - (len - 1) / ST_RDMA_CHUNK * ST_RDMA_CHUNK; }

/* ---- immediate data ---------------------------------------------------------- */
#define ST_RDMA_IMM_MAX_LEN 0x7fffffffu
/* len: 1 .. ST_RDMA_IMM_MAX_LEN (callers check). Host order; the verbs layer
 * converts to network order. */
uint32_t st_rdma_imm_encode(int wrapped, uint32_t len);
void st_rdma_imm_decode(uint32_t imm, int *wrapped, uint32_t *len);

/* ---- connection info ---------------------------------------------------------- */
#define ST_RDMA_INFO_BYTES 128
#define ST_RDMA_INFO_VERSION 1

typedef struct st_rdma_info {
    uint32_t qpn;          /* queue pair number (24 bits) */
    uint32_t psn;          /* first packet sequence number (24 bits) */
    uint16_t lid;          /* InfiniBand local id (0 on RoCE) */
    uint8_t mtu;           /* enum ibv_mtu: 1 (256 B) .. 5 (4096 B) */
    uint8_t is_roce;       /* 1: address by GID (RoCE), 0: by LID (IB) */
    uint8_t gid[16];       /* the GID the peer must address */
    uint64_t ring_addr;    /* receive ring: virtual address, rkey, bytes */
    uint32_t ring_rkey;
    uint64_t ring_len;
    uint64_t credit_addr;  /* 8-byte release counter the peer writes to */
    uint32_t credit_rkey;
    uint32_t credits;      /* messages the ring owner accepts unreleased */
    uint64_t max_msg;      /* largest message the ring owner accepts */
} st_rdma_info;

/* Fill buf[ST_RDMA_INFO_BYTES]. */
void st_rdma_info_encode(const st_rdma_info *in, uint8_t *buf);
/* Decode and validate n bytes; ST_EPROTO naming the bad field (wrong size,
 * magic, version, checksum, or a value out of range). */
int st_rdma_info_decode(const uint8_t *buf, size_t n, st_rdma_info *out);

/* ---- options ------------------------------------------------------------------ */
typedef struct st_rdma_opts {
    char device[64];     /* ST_RDMA_DEVICE; "" = the first device with an active port */
    int port;            /* ST_RDMA_PORT, 1.. (default 1) */
    int gid_index;       /* ST_RDMA_GID_INDEX; -1 = auto (RoCE v2, IPv4-mapped first) */
    int retry_cnt;       /* ST_RDMA_RETRY_CNT, 0..7 (default 7) */
    int rnr_retry;       /* ST_RDMA_RNR_RETRY, 0..7, 7 = forever (default 7) */
    int timeout;         /* ST_RDMA_TIMEOUT, ack timeout 4.096 us x 2^t, 1..31 (default 14, ~67 ms) */
    int min_rnr_timer;   /* ST_RDMA_MIN_RNR_TIMER, 1..31 (default 12) */
} st_rdma_opts;

void st_rdma_opts_default(st_rdma_opts *o);
/* Defaults overridden by the ST_RDMA_* variables; ST_EINVAL naming a bad one. */
int st_rdma_opts_from_env(st_rdma_opts *o);

#endif
