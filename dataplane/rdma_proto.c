/* The RDMA transport's placement rule, immediate data, connection-info
 * message and options (see rdma_proto.h). No verbs calls here. */
#include "dataplane/rdma_proto.h"

#include "common/st_common.h"
#include "dataplane/crc32c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ring placement ---------------------------------------------------------- */
st_rdma_place st_rdma_place_next(uint64_t pos, uint64_t len, uint64_t ring_len)
{
    st_rdma_place p;
    p.start = ST_ALIGN_UP(pos, 64);
    p.wrapped = 0;
    if (p.start % ring_len + len > ring_len) {
        p.start = ST_ALIGN_UP(p.start + 1, ring_len);
        p.wrapped = 1;
    }
    p.end = p.start + len;
    return p;
}

/* ---- immediate data ---------------------------------------------------------- */
uint32_t st_rdma_imm_encode(int wrapped, uint32_t len)
{
    return (wrapped ? 0x80000000u : 0) | (len & ST_RDMA_IMM_MAX_LEN);
}

void st_rdma_imm_decode(uint32_t imm, int *wrapped, uint32_t *len)
{
    *wrapped = (imm >> 31) & 1;
    *len = imm & ST_RDMA_IMM_MAX_LEN;
}

/* ---- connection info ---------------------------------------------------------- */
/* Layout (little-endian, offsets in bytes):
 *   0 magic "STRDMAIF"   8 version u16   10 mtu u8   11 is_roce u8
 *  12 qpn u32   16 psn u32   20 lid u16   22 reserved u16   24 gid[16]
 *  40 ring_addr u64   48 ring_len u64   56 ring_rkey u32   60 credit_rkey u32
 *  64 credit_addr u64   72 max_msg u64   80 credits u32   84..123 zero
 * 124 crc32c of bytes 0..123 */
static const char info_magic[8] = {'S', 'T', 'R', 'D', 'M', 'A', 'I', 'F'};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void st_rdma_info_encode(const st_rdma_info *in, uint8_t *buf)
{
    memset(buf, 0, ST_RDMA_INFO_BYTES);
    memcpy(buf, info_magic, 8);
    put16(buf + 8, ST_RDMA_INFO_VERSION);
    buf[10] = in->mtu;
    buf[11] = in->is_roce;
    put32(buf + 12, in->qpn);
    put32(buf + 16, in->psn);
    put16(buf + 20, in->lid);
    memcpy(buf + 24, in->gid, 16);
    put64(buf + 40, in->ring_addr);
    put64(buf + 48, in->ring_len);
    put32(buf + 56, in->ring_rkey);
    put32(buf + 60, in->credit_rkey);
    put64(buf + 64, in->credit_addr);
    put64(buf + 72, in->max_msg);
    put32(buf + 80, in->credits);
    put32(buf + 124, st_crc32c(0, buf, 124));
}

int st_rdma_info_decode(const uint8_t *buf, size_t n, st_rdma_info *out)
{
    memset(out, 0, sizeof *out);
    if (!buf || n != ST_RDMA_INFO_BYTES)
        return st_err(ST_EPROTO, "rdma: connection info of %zu bytes (want %d)", n, ST_RDMA_INFO_BYTES);
    if (memcmp(buf, info_magic, 8) != 0)
        return st_err(ST_EPROTO, "rdma: connection info has a bad magic (peer is not a strait rdma endpoint)");
    if (get16(buf + 8) != ST_RDMA_INFO_VERSION)
        return st_err(ST_EPROTO, "rdma: connection info version %u (want %d)", get16(buf + 8), ST_RDMA_INFO_VERSION);
    uint32_t crc = st_crc32c(0, buf, 124);
    if (get32(buf + 124) != crc)
        return st_err(ST_EPROTO, "rdma: connection info checksum %08x != %08x", get32(buf + 124), crc);
    st_rdma_info i;
    i.mtu = buf[10];
    i.is_roce = buf[11];
    i.qpn = get32(buf + 12);
    i.psn = get32(buf + 16);
    i.lid = get16(buf + 20);
    memcpy(i.gid, buf + 24, 16);
    i.ring_addr = get64(buf + 40);
    i.ring_len = get64(buf + 48);
    i.ring_rkey = get32(buf + 56);
    i.credit_rkey = get32(buf + 60);
    i.credit_addr = get64(buf + 64);
    i.max_msg = get64(buf + 72);
    i.credits = get32(buf + 80);
    if (i.mtu < 1 || i.mtu > 5)
        return st_err(ST_EPROTO, "rdma: connection info mtu code %u (1..5)", i.mtu);
    if (i.is_roce > 1)
        return st_err(ST_EPROTO, "rdma: connection info is_roce %u", i.is_roce);
    if (i.qpn > 0xffffff || i.psn > 0xffffff)
        return st_err(ST_EPROTO, "rdma: connection info qpn %u / psn %u exceed 24 bits", i.qpn, i.psn);
    if (!i.is_roce && i.lid == 0)
        return st_err(ST_EPROTO, "rdma: connection info has LID 0 on InfiniBand");
    if (i.max_msg < 1 || i.max_msg > ST_RDMA_IMM_MAX_LEN)
        return st_err(ST_EPROTO, "rdma: connection info max_msg %llu (1..2^31-1)", (unsigned long long)i.max_msg);
    if (i.ring_len % 64 || i.ring_len < 2 * (i.max_msg + 128) || i.ring_len > ((uint64_t)1 << 36))
        return st_err(ST_EPROTO, "rdma: connection info ring_len %llu (64-byte multiple, >= 2 x (max_msg + 128), <= 64 GiB)",
                      (unsigned long long)i.ring_len);
    if (!i.ring_addr || i.ring_addr + i.ring_len < i.ring_addr)
        return st_err(ST_EPROTO, "rdma: connection info ring address %llx wraps or is NULL",
                      (unsigned long long)i.ring_addr);
    if (!i.credit_addr || i.credit_addr % 8)
        return st_err(ST_EPROTO, "rdma: connection info credit address %llx (non-NULL, 8-byte aligned)",
                      (unsigned long long)i.credit_addr);
    if (i.credits < 1 || i.credits > (1u << 20))
        return st_err(ST_EPROTO, "rdma: connection info credits %u (1..2^20)", i.credits);
    for (int b = 84; b < 124; b++)
        if (buf[b])
            return st_err(ST_EPROTO, "rdma: connection info reserved byte %d is not zero", b);
    *out = i;
    return ST_OK;
}

/* ---- options ------------------------------------------------------------------ */
void st_rdma_opts_default(st_rdma_opts *o)
{
    memset(o, 0, sizeof *o);
    o->port = 1;
    o->gid_index = -1;
    o->retry_cnt = 7;
    o->rnr_retry = 7;
    o->timeout = 14;
    o->min_rnr_timer = 12;
}

static int env_int(const char *name, int lo, int hi, int *v)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return ST_OK;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return st_err(ST_EINVAL, "rdma: %s='%s' must be an integer in %d..%d", name, s, lo, hi);
    *v = (int)x;
    return ST_OK;
}

int st_rdma_opts_from_env(st_rdma_opts *o)
{
    st_rdma_opts_default(o);
    const char *dev = getenv("ST_RDMA_DEVICE");
    if (dev && *dev) {
        if (strlen(dev) >= sizeof o->device)
            return st_err(ST_EINVAL, "rdma: ST_RDMA_DEVICE '%s' is longer than %zu characters", dev,
                          sizeof o->device - 1);
        snprintf(o->device, sizeof o->device, "%s", dev);
    }
    int rc;
    if ((rc = env_int("ST_RDMA_PORT", 1, 255, &o->port)) || (rc = env_int("ST_RDMA_GID_INDEX", -1, 1023, &o->gid_index)) ||
        (rc = env_int("ST_RDMA_RETRY_CNT", 0, 7, &o->retry_cnt)) ||
        (rc = env_int("ST_RDMA_RNR_RETRY", 0, 7, &o->rnr_retry)) ||
        (rc = env_int("ST_RDMA_TIMEOUT", 1, 31, &o->timeout)) ||
        (rc = env_int("ST_RDMA_MIN_RNR_TIMER", 1, 31, &o->min_rnr_timer)))
        return rc;
    return ST_OK;
}
