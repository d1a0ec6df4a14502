/* The data-plane wire format: one message = header + per-sequence records +
 * tensor payload, contiguous, little-endian, versioned.
 *
 *   offset 0    header (64 bytes, below)
 *   offset 64   records_len bytes: n_seqs records, zero-padded to a multiple of 64
 *   offset 64+records_len   payload_len bytes: the tensor (n_tokens x hidden, dtype)
 *
 * The payload therefore starts 64-byte aligned relative to the message, so
 * it can be written straight from (and read straight into) registered
 * memory. The header checksum (CRC32C) covers the header (with the crc field
 * zero) and the records, not the payload: corruption of the metadata that
 * steers a stage is caught, while tensors of many MiB are not re-read.
 *
 * Header layout (all little-endian):
 *    0 u32 magic "STRW"        4 u16 version       6 u16 kind
 *    8 u32 crc32c             12 u32 flags        16 u32 pipeline_id
 *   20 u32 n_seqs             24 u64 step_id      32 u64 trace_id
 *   40 u32 n_tokens           44 u32 hidden       48 u16 dtype
 *   50 u16 reserved (0)       52 u32 records_len  56 u64 payload_len
 *
 * Record layout (64 bytes + n_blocks x u32, padded to a multiple of 8):
 *    0 u64 seq_id   8 u32 first_pos  12 u32 n_tokens  16 u32 n_blocks
 *   20 u32 top_k   24 f32 temperature  28 f32 top_p  32 f32 min_p
 *   36 f32 repeat_penalty  40 f32 presence_penalty  44 f32 frequency_penalty
 *   48 u64 seed    56 u32 flags  60 u32 reserved (0)
 *   64 u32 block ids appended to this sequence's block table since the
 *      previous step (the "block-table delta"), n_blocks of them.
 *
 * The dataplane knows nothing of models: n_tokens, hidden and dtype only
 * size the payload (payload_len == n_tokens * hidden * dtype size). */
#ifndef ST_WIRE_H
#define ST_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define ST_WIRE_MAGIC 0x57525453u /* "STRW" read as little-endian u32 */
#define ST_WIRE_VERSION 1
#define ST_WIRE_HDR_SIZE 64
#define ST_WIRE_REC_SIZE 64       /* fixed part of one record */
#define ST_WIRE_MAX_SEQS 65536    /* sanity bounds a decoder enforces */
#define ST_WIRE_MAX_BLOCKS 65536  /* block ids per record */

enum st_wire_kind {
    ST_WIRE_FORWARD = 1,   /* hidden states (or token ids) toward the next stage */
    ST_WIRE_RESULT = 2,    /* sampled tokens back to the batcher */
    ST_WIRE_ABORT = 3,     /* drop the listed sequences */
    ST_WIRE_HEARTBEAT = 4, /* stage liveness; no records, no payload */
    ST_WIRE_KIND_END
};

enum st_wire_dtype {
    ST_WIRE_DT_NONE = 0, /* no payload */
    ST_WIRE_DT_F32 = 1,
    ST_WIRE_DT_F16 = 2,
    ST_WIRE_DT_BF16 = 3,
    ST_WIRE_DT_I32 = 4, /* token ids */
    ST_WIRE_DT_U8 = 5,  /* opaque bytes (compressed activations, ...) */
    ST_WIRE_DT_END
};

/* Bytes per element of a dtype (0 for NONE or an unknown value). */
size_t st_wire_dtype_size(int dtype);

/* Header fields in host order. records_len and crc are computed by the
 * encoder and filled in by the decoder. */
typedef struct st_wire_hdr {
    uint16_t version;
    uint16_t kind;        /* enum st_wire_kind */
    uint32_t flags;
    uint32_t pipeline_id;
    uint32_t n_seqs;      /* records that follow */
    uint64_t step_id;
    uint64_t trace_id;
    uint32_t n_tokens;    /* sum of the records' n_tokens */
    uint32_t hidden;      /* payload row width in elements */
    uint16_t dtype;       /* enum st_wire_dtype */
    uint32_t records_len; /* bytes, multiple of 64 */
    uint64_t payload_len; /* bytes */
    uint32_t crc;
} st_wire_hdr;

/* Sampling parameters, carried as plain numbers. */
typedef struct st_wire_sampling {
    float temperature, top_p, min_p;
    float repeat_penalty, presence_penalty, frequency_penalty;
    uint32_t top_k;
    uint64_t seed;
} st_wire_sampling;

/* One per-sequence record. On decode, `blocks` points into the message
 * (little-endian u32, maybe unaligned: read with st_wire_block()). */
typedef struct st_wire_seq {
    uint64_t seq_id;
    uint32_t first_pos; /* position of the first token of this step */
    uint32_t n_tokens;  /* tokens of this sequence in the payload */
    uint32_t flags;
    uint32_t n_blocks;
    const uint8_t *blocks;
    st_wire_sampling sp;
} st_wire_seq;

/* ---- decoding ---------------------------------------------------------------
 * st_wire_decode checks everything before anything is trusted: magic,
 * version, kind, dtype, checksum, that records_len and payload_len add up to
 * exactly `len`, that every record and its block ids lie inside the records
 * area, that the records' tokens sum to n_tokens, that the payload size
 * matches n_tokens x hidden x dtype, and that sampling numbers are finite and
 * in range. A rejected message returns ST_EPROTO with the reason in
 * st_errmsg() and bumps the counter of that reason. */
typedef struct st_wire_msg {
    st_wire_hdr hdr;
    const uint8_t *records; /* records_len bytes */
    const uint8_t *payload; /* payload_len bytes */
} st_wire_msg;

int st_wire_decode(const void *buf, size_t len, st_wire_msg *out);

/* Record i (0 <= i < n_seqs) of a message st_wire_decode accepted.
 * Iterating is O(i); use st_wire_seq_next to walk them all. */
int st_wire_seq_get(const st_wire_msg *m, uint32_t i, st_wire_seq *out);
/* Walk records: *off starts at 0; returns 1 and fills *out while records
 * remain, 0 at the end. Only for messages st_wire_decode accepted. */
int st_wire_seq_next(const st_wire_msg *m, size_t *off, st_wire_seq *out);
/* Block id j of a decoded record. */
uint32_t st_wire_block(const st_wire_seq *s, uint32_t j);

/* Rejection reasons, each with a process-wide counter. */
enum st_wire_reject {
    ST_WIRE_REJ_SHORT,    /* shorter than a header */
    ST_WIRE_REJ_MAGIC,
    ST_WIRE_REJ_VERSION,
    ST_WIRE_REJ_KIND,
    ST_WIRE_REJ_DTYPE,
    ST_WIRE_REJ_CRC,
    ST_WIRE_REJ_LENGTH,   /* records_len/payload_len disagree with the size */
    ST_WIRE_REJ_RECORDS,  /* a record or its blocks overrun, or counts disagree */
    ST_WIRE_REJ_PAYLOAD,  /* payload_len != n_tokens x hidden x dtype size */
    ST_WIRE_REJ_SAMPLING, /* NaN, infinite or out-of-range sampling numbers */
    ST_WIRE_REJ_END
};
uint64_t st_wire_rejects(int reason); /* count since process start */
const char *st_wire_reject_name(int reason);

/* ---- encoding ---------------------------------------------------------------
 * Build header + records into a caller buffer; the payload is written
 * separately (in place after them, or sent as its own scatter element from
 * registered memory):
 *
 *   st_wire_writer w;
 *   st_wire_writer_init(&w, buf, cap, &hdr);         // hdr: all but records_len/crc
 *   for each seq: st_wire_writer_add(&w, &seq, block_ids);
 *   st_wire_writer_finish(&w, &meta_len);            // buf[0, meta_len) is ready
 *
 * Bytes needed for the metadata: st_wire_meta_size(). */
typedef struct st_wire_writer {
    uint8_t *buf;
    size_t cap, off; /* off: end of the records written so far */
    st_wire_hdr hdr;
    uint32_t n_added, tokens_added;
    int err; /* sticky first error */
} st_wire_writer;

/* Header + records size for n_seqs records holding total_blocks block ids
 * altogether (an upper bound when per-record padding is counted). */
size_t st_wire_meta_size(uint32_t n_seqs, uint64_t total_blocks);

void st_wire_writer_init(st_wire_writer *w, void *buf, size_t cap, const st_wire_hdr *hdr);
/* s->blocks is ignored; the ids come from `blocks` (host order, n_blocks). */
int st_wire_writer_add(st_wire_writer *w, const st_wire_seq *s, const uint32_t *blocks);
/* Check counts against hdr (n_seqs, n_tokens, payload_len), pad, fill
 * records_len and crc. *meta_len = 64 + records_len = payload offset. */
int st_wire_writer_finish(st_wire_writer *w, size_t *meta_len);

#endif /* ST_WIRE_H */
