/* Wire format encode/decode: the one place that knows the byte layout
 * (documented in wire.h). Loads and stores go through the le* helpers so
 * that no unaligned access or host byte order leaks in. */
#include "wire.h"

#include "common/st_common.h"
#include "crc32c.h"

#include <math.h>
#include <string.h>

/* ---- little-endian access ------------------------------------------------------ */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }
static inline float ldf(const uint8_t *p)
{
    uint32_t u = ld32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static inline void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v), st32(p + 4, (uint32_t)(v >> 32)); }
static inline void stf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    st32(p, u);
}

size_t st_wire_dtype_size(int dtype)
{
    switch (dtype) {
    case ST_WIRE_DT_F32: return 4;
    case ST_WIRE_DT_F16: return 2;
    case ST_WIRE_DT_BF16: return 2;
    case ST_WIRE_DT_I32: return 4;
    case ST_WIRE_DT_U8: return 1;
    default: return 0;
    }
}

static size_t rec_size(uint32_t n_blocks) { return ST_WIRE_REC_SIZE + ST_ALIGN_UP((size_t)n_blocks * 4, 8); }

static int payload_ok(uint32_t n_tokens, uint32_t hidden, int dtype, uint64_t payload_len)
{
    if (dtype == ST_WIRE_DT_NONE)
        return payload_len == 0;
    unsigned __int128 want = (unsigned __int128)n_tokens * hidden * st_wire_dtype_size(dtype);
    return want == payload_len;
}

static int sampling_ok(const st_wire_sampling *sp)
{
    if (!isfinite(sp->temperature) || sp->temperature < 0)
        return 0;
    if (!isfinite(sp->top_p) || sp->top_p < 0 || sp->top_p > 1)
        return 0;
    if (!isfinite(sp->min_p) || sp->min_p < 0 || sp->min_p > 1)
        return 0;
    return isfinite(sp->repeat_penalty) && isfinite(sp->presence_penalty) && isfinite(sp->frequency_penalty);
}

/* ---- rejection counters ------------------------------------------------------- */
static uint64_t rejects[ST_WIRE_REJ_END];
static const char *const reject_names[ST_WIRE_REJ_END] = {
    "short", "magic", "version", "kind", "dtype", "crc", "length", "records", "payload", "sampling",
};

uint64_t st_wire_rejects(int reason)
{
    if (reason < 0 || reason >= ST_WIRE_REJ_END)
        return 0;
    return __atomic_load_n(&rejects[reason], __ATOMIC_RELAXED);
}

const char *st_wire_reject_name(int reason)
{
    return reason >= 0 && reason < ST_WIRE_REJ_END ? reject_names[reason] : "?";
}

#define REJECT(reason, ...)                                                      \
    (__atomic_fetch_add(&rejects[reason], 1, __ATOMIC_RELAXED), st_err(ST_EPROTO, __VA_ARGS__))

/* ---- records ---------------------------------------------------------------------- */
static void rec_load(const uint8_t *p, st_wire_seq *s)
{
    s->seq_id = ld64(p);
    s->first_pos = ld32(p + 8);
    s->n_tokens = ld32(p + 12);
    s->n_blocks = ld32(p + 16);
    s->sp.top_k = ld32(p + 20);
    s->sp.temperature = ldf(p + 24);
    s->sp.top_p = ldf(p + 28);
    s->sp.min_p = ldf(p + 32);
    s->sp.repeat_penalty = ldf(p + 36);
    s->sp.presence_penalty = ldf(p + 40);
    s->sp.frequency_penalty = ldf(p + 44);
    s->sp.seed = ld64(p + 48);
    s->flags = ld32(p + 56);
    s->blocks = p + ST_WIRE_REC_SIZE;
}

int st_wire_seq_next(const st_wire_msg *m, size_t *off, st_wire_seq *out)
{
    if (*off + ST_WIRE_REC_SIZE > m->hdr.records_len)
        return 0;
    rec_load(m->records + *off, out);
    size_t sz = rec_size(out->n_blocks);
    if (sz > m->hdr.records_len - *off)
        return 0; /* cannot happen after st_wire_decode; guard anyway */
    *off += sz;
    return 1;
}

int st_wire_seq_get(const st_wire_msg *m, uint32_t i, st_wire_seq *out)
{
    if (i >= m->hdr.n_seqs)
        return st_err(ST_ERANGE, "wire: record %u of %u", i, m->hdr.n_seqs);
    size_t off = 0;
    for (uint32_t k = 0; k <= i; k++)
        if (!st_wire_seq_next(m, &off, out))
            return st_err(ST_EPROTO, "wire: record %u missing", k);
    return ST_OK;
}

uint32_t st_wire_block(const st_wire_seq *s, uint32_t j) { return j < s->n_blocks ? ld32(s->blocks + 4 * (size_t)j) : 0; }

/* ---- decode ---------------------------------------------------------------------- */
static uint32_t meta_crc(const uint8_t *p, size_t meta_len)
{
    static const uint8_t zero[4];
    uint32_t c = st_crc32c(0, p, 8);
    c = st_crc32c(c, zero, 4);
    return st_crc32c(c, p + 12, meta_len - 12);
}

int st_wire_decode(const void *buf, size_t len, st_wire_msg *out)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof *out);
    if (!p || len < ST_WIRE_HDR_SIZE)
        return REJECT(ST_WIRE_REJ_SHORT, "wire: message of %zu bytes is shorter than the %d-byte header", len,
                      ST_WIRE_HDR_SIZE);
    if (ld32(p) != ST_WIRE_MAGIC)
        return REJECT(ST_WIRE_REJ_MAGIC, "wire: bad magic 0x%08x", ld32(p));
    st_wire_hdr *h = &out->hdr;
    h->version = ld16(p + 4);
    h->kind = ld16(p + 6);
    h->crc = ld32(p + 8);
    h->flags = ld32(p + 12);
    h->pipeline_id = ld32(p + 16);
    h->n_seqs = ld32(p + 20);
    h->step_id = ld64(p + 24);
    h->trace_id = ld64(p + 32);
    h->n_tokens = ld32(p + 40);
    h->hidden = ld32(p + 44);
    h->dtype = ld16(p + 48);
    h->records_len = ld32(p + 52);
    h->payload_len = ld64(p + 56);
    if (h->version != ST_WIRE_VERSION)
        return REJECT(ST_WIRE_REJ_VERSION, "wire: version %u, expected %u", h->version, ST_WIRE_VERSION);
    if (h->kind == 0 || h->kind >= ST_WIRE_KIND_END)
        return REJECT(ST_WIRE_REJ_KIND, "wire: unknown kind %u", h->kind);
    if (h->dtype >= ST_WIRE_DT_END || ld16(p + 50) != 0)
        return REJECT(ST_WIRE_REJ_DTYPE, "wire: unknown dtype %u", h->dtype);
    /* sizes before the checksum, so that the CRC never reads past the buffer */
    if (h->records_len % 64 != 0 || h->records_len > len - ST_WIRE_HDR_SIZE ||
        h->payload_len != len - ST_WIRE_HDR_SIZE - h->records_len)
        return REJECT(ST_WIRE_REJ_LENGTH, "wire: records_len %u + payload_len %llu + header != message size %zu",
                      h->records_len, (unsigned long long)h->payload_len, len);
    size_t meta_len = ST_WIRE_HDR_SIZE + (size_t)h->records_len;
    uint32_t crc = meta_crc(p, meta_len);
    if (crc != h->crc)
        return REJECT(ST_WIRE_REJ_CRC, "wire: header checksum 0x%08x, computed 0x%08x", h->crc, crc);
    if (h->n_seqs > ST_WIRE_MAX_SEQS || (uint64_t)h->n_seqs * ST_WIRE_REC_SIZE > h->records_len)
        return REJECT(ST_WIRE_REJ_RECORDS, "wire: %u records do not fit in %u bytes", h->n_seqs, h->records_len);
    out->records = p + ST_WIRE_HDR_SIZE;
    out->payload = p + meta_len;
    /* walk the records with explicit bounds */
    size_t off = 0;
    uint64_t tokens = 0;
    for (uint32_t i = 0; i < h->n_seqs; i++) {
        st_wire_seq s;
        if (h->records_len - off < ST_WIRE_REC_SIZE)
            return REJECT(ST_WIRE_REJ_RECORDS, "wire: record %u overruns the records area", i);
        rec_load(out->records + off, &s);
        if (s.n_blocks > ST_WIRE_MAX_BLOCKS || rec_size(s.n_blocks) > h->records_len - off)
            return REJECT(ST_WIRE_REJ_RECORDS, "wire: record %u: %u block ids overrun the records area", i,
                          s.n_blocks);
        if (!sampling_ok(&s.sp))
            return REJECT(ST_WIRE_REJ_SAMPLING, "wire: record %u (seq %llu): sampling parameters out of range", i,
                          (unsigned long long)s.seq_id);
        tokens += s.n_tokens;
        off += rec_size(s.n_blocks);
    }
    if (h->records_len - off >= 64)
        return REJECT(ST_WIRE_REJ_RECORDS, "wire: %zu unused bytes after %u records", h->records_len - off,
                      h->n_seqs);
    if (h->n_seqs > 0 && tokens != h->n_tokens)
        return REJECT(ST_WIRE_REJ_RECORDS, "wire: records hold %llu tokens, header says %u",
                      (unsigned long long)tokens, h->n_tokens);
    if (!payload_ok(h->n_tokens, h->hidden, h->dtype, h->payload_len))
        return REJECT(ST_WIRE_REJ_PAYLOAD, "wire: payload of %llu bytes, expected %u tokens x %u x %zu",
                      (unsigned long long)h->payload_len, h->n_tokens, h->hidden, st_wire_dtype_size(h->dtype));
    return ST_OK;
}

/* ---- encode ------------------------------------------------------------------------ */
size_t st_wire_meta_size(uint32_t n_seqs, uint64_t total_blocks)
{
    /* each record pads its ids to 8 bytes (at most 4 extra), then 64-byte pad */
    uint64_t recs = (uint64_t)n_seqs * (ST_WIRE_REC_SIZE + 4) + total_blocks * 4;
    return ST_WIRE_HDR_SIZE + ST_ALIGN_UP((size_t)recs, 64);
}

void st_wire_writer_init(st_wire_writer *w, void *buf, size_t cap, const st_wire_hdr *hdr)
{
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = cap;
    w->hdr = *hdr;
    w->off = ST_WIRE_HDR_SIZE;
    if (!buf || cap < ST_WIRE_HDR_SIZE)
        w->err = st_err(ST_ERANGE, "wire: buffer of %zu bytes cannot hold a header", cap);
}

int st_wire_writer_add(st_wire_writer *w, const st_wire_seq *s, const uint32_t *blocks)
{
    if (w->err)
        return w->err;
    if (s->n_blocks > ST_WIRE_MAX_BLOCKS || (s->n_blocks && !blocks))
        return w->err = st_err(ST_EINVAL, "wire: seq %llu: %u block ids", (unsigned long long)s->seq_id, s->n_blocks);
    if (!sampling_ok(&s->sp))
        return w->err = st_err(ST_EINVAL, "wire: seq %llu: sampling parameters out of range",
                               (unsigned long long)s->seq_id);
    if (s->n_tokens > UINT32_MAX - w->tokens_added) /* the sum must not wrap back onto hdr.n_tokens */
        return w->err = st_err(ST_ERANGE, "wire: seq %llu: %u more tokens overflow the message's %u",
                               (unsigned long long)s->seq_id, s->n_tokens, w->tokens_added);
    size_t sz = rec_size(s->n_blocks);
    if (w->n_added >= w->hdr.n_seqs || sz > w->cap - w->off)
        return w->err = st_err(ST_ERANGE, "wire: record %u does not fit (n_seqs %u, %zu of %zu bytes used)",
                               w->n_added, w->hdr.n_seqs, w->off, w->cap);
    uint8_t *p = w->buf + w->off;
    memset(p, 0, sz);
    st64(p, s->seq_id);
    st32(p + 8, s->first_pos);
    st32(p + 12, s->n_tokens);
    st32(p + 16, s->n_blocks);
    st32(p + 20, s->sp.top_k);
    stf(p + 24, s->sp.temperature);
    stf(p + 28, s->sp.top_p);
    stf(p + 32, s->sp.min_p);
    stf(p + 36, s->sp.repeat_penalty);
    stf(p + 40, s->sp.presence_penalty);
    stf(p + 44, s->sp.frequency_penalty);
    st64(p + 48, s->sp.seed);
    st32(p + 56, s->flags);
    for (uint32_t j = 0; j < s->n_blocks; j++)
        st32(p + ST_WIRE_REC_SIZE + 4 * (size_t)j, blocks[j]);
    w->off += sz;
    w->n_added++;
    w->tokens_added += s->n_tokens;
    return ST_OK;
}

int st_wire_writer_finish(st_wire_writer *w, size_t *meta_len)
{
    if (w->err)
        return w->err;
    st_wire_hdr *h = &w->hdr;
    if (w->n_added != h->n_seqs)
        return w->err = st_err(ST_EINVAL, "wire: %u records added, header says %u", w->n_added, h->n_seqs);
    if (h->n_seqs > 0 && w->tokens_added != h->n_tokens)
        return w->err = st_err(ST_EINVAL, "wire: records hold %u tokens, header says %u", w->tokens_added,
                               h->n_tokens);
    if (h->kind == 0 || h->kind >= ST_WIRE_KIND_END || h->dtype >= ST_WIRE_DT_END)
        return w->err = st_err(ST_EINVAL, "wire: kind %u / dtype %u invalid", h->kind, h->dtype);
    if (!payload_ok(h->n_tokens, h->hidden, h->dtype, h->payload_len))
        return w->err = st_err(ST_EINVAL, "wire: payload_len %llu != %u tokens x %u x dtype %u",
                               (unsigned long long)h->payload_len, h->n_tokens, h->hidden, h->dtype);
    size_t end = ST_ALIGN_UP(w->off, 64);
    if (end > w->cap)
        return w->err = st_err(ST_ERANGE, "wire: records padding needs %zu bytes, buffer has %zu", end, w->cap);
    memset(w->buf + w->off, 0, end - w->off);
    h->records_len = (uint32_t)(end - ST_WIRE_HDR_SIZE);
    h->version = ST_WIRE_VERSION;
    uint8_t *p = w->buf;
    st32(p, ST_WIRE_MAGIC);
    st16(p + 4, h->version);
    st16(p + 6, h->kind);
    st32(p + 8, 0);
    st32(p + 12, h->flags);
    st32(p + 16, h->pipeline_id);
    st32(p + 20, h->n_seqs);
    st64(p + 24, h->step_id);
    st64(p + 32, h->trace_id);
    st32(p + 40, h->n_tokens);
    st32(p + 44, h->hidden);
    st16(p + 48, h->dtype);
    st16(p + 50, 0);
    st32(p + 52, h->records_len);
    st64(p + 56, h->payload_len);
    h->crc = meta_crc(p, end);
    st32(p + 8, h->crc);
    *meta_len = end;
    return ST_OK;
}
