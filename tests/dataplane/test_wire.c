/* Wire format: round trip, then every kind of damage is rejected with the
 * right reason (and counted), never read out of bounds. */
#include "common/st_common.h"
#include "dataplane/crc32c.h"
#include "dataplane/wire.h"
#include "tests/test.h"

#include <stdint.h>

/* A FORWARD message: 3 sequences, 7 tokens, hidden 4, bf16. */
static size_t build(uint8_t *buf, size_t cap)
{
    st_wire_hdr h = {.kind = ST_WIRE_FORWARD, .pipeline_id = 2, .n_seqs = 3, .step_id = 99, .trace_id = 0xabcdef,
                     .n_tokens = 7, .hidden = 4, .dtype = ST_WIRE_DT_BF16, .payload_len = 7 * 4 * 2};
    st_wire_writer w;
    st_wire_writer_init(&w, buf, cap, &h);
    uint32_t b0[] = {10, 11, 12}, b2[] = {40};
    st_wire_seq s = {.seq_id = 1000, .first_pos = 0, .n_tokens = 5, .n_blocks = 3,
                     .sp = {.temperature = 0.7f, .top_p = 0.9f, .min_p = 0.05f, .repeat_penalty = 1.1f, .top_k = 40, .seed = 42}};
    CHECK(st_wire_writer_add(&w, &s, b0) == ST_OK);
    s = (st_wire_seq){.seq_id = 1001, .first_pos = 17, .n_tokens = 1, .n_blocks = 0};
    CHECK(st_wire_writer_add(&w, &s, NULL) == ST_OK);
    s = (st_wire_seq){.seq_id = 1002, .first_pos = 3, .n_tokens = 1, .n_blocks = 1, .sp = {.presence_penalty = -0.5f}};
    CHECK(st_wire_writer_add(&w, &s, b2) == ST_OK);
    size_t meta = 0;
    CHECK(st_wire_writer_finish(&w, &meta) == ST_OK);
    CHECK(meta % 64 == 0 && meta <= st_wire_meta_size(3, 4));
    for (size_t i = 0; i < 56; i++)
        buf[meta + i] = (uint8_t)(i * 3);
    return meta + 56;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* recompute the checksum after a deliberate edit, so that the check under
 * test is the structural one, not the CRC */
static void reseal(uint8_t *buf)
{
    uint32_t records_len = buf[52] | buf[53] << 8 | buf[54] << 16 | (uint32_t)buf[55] << 24;
    put32(buf + 8, 0);
    uint32_t c = st_crc32c(0, buf, 64 + (records_len < 4096 ? records_len : 0));
    put32(buf + 8, c);
}

static void expect_reject(const uint8_t *buf, size_t len, int reason, const char *what)
{
    uint64_t before = st_wire_rejects(reason);
    st_wire_msg m;
    int rc = st_wire_decode(buf, len, &m);
    CHECKF(rc == ST_EPROTO, "%s: rc %d", what, rc);
    CHECKF(st_wire_rejects(reason) == before + 1, "%s: reason %s not counted (msg: %s)", what,
           st_wire_reject_name(reason), st_errmsg());
}

int main(void)
{
    /* known CRC32C vector: "123456789" -> 0xE3069283 */
    CHECK(st_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(st_crc32c(st_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);

    static uint8_t buf[4096], bad[4096];
    size_t len = build(buf, sizeof buf);
    st_wire_msg m;
    CHECKF(st_wire_decode(buf, len, &m) == ST_OK, "%s", st_errmsg());
    CHECK(m.hdr.kind == ST_WIRE_FORWARD && m.hdr.pipeline_id == 2 && m.hdr.step_id == 99);
    CHECK(m.hdr.trace_id == 0xabcdef && m.hdr.n_seqs == 3 && m.hdr.n_tokens == 7 && m.hdr.hidden == 4);
    CHECK(m.hdr.payload_len == 56 && m.payload == buf + 64 + m.hdr.records_len);
    CHECK(((uintptr_t)(m.payload - buf)) % 64 == 0);
    CHECK(m.payload[55] == (uint8_t)(55 * 3));

    st_wire_seq s;
    size_t off = 0;
    uint64_t ids = 0;
    int n = 0;
    while (st_wire_seq_next(&m, &off, &s)) {
        ids += s.seq_id;
        n++;
    }
    CHECK(n == 3 && ids == 3003);
    CHECK(st_wire_seq_get(&m, 0, &s) == ST_OK);
    CHECK(s.n_blocks == 3 && st_wire_block(&s, 0) == 10 && st_wire_block(&s, 2) == 12);
    CHECK(s.sp.top_k == 40 && s.sp.seed == 42 && fabsf(s.sp.temperature - 0.7f) < 1e-7f);
    CHECK(st_wire_seq_get(&m, 1, &s) == ST_OK && s.first_pos == 17 && s.n_blocks == 0);
    CHECK(st_wire_seq_get(&m, 2, &s) == ST_OK && st_wire_block(&s, 0) == 40 && s.sp.presence_penalty == -0.5f);
    CHECK(st_wire_seq_get(&m, 3, &s) == ST_ERANGE);

    /* damage, one kind at a time */
    expect_reject(buf, 63, ST_WIRE_REJ_SHORT, "short");
    expect_reject(NULL, 0, ST_WIRE_REJ_SHORT, "null");
    memcpy(bad, buf, len), bad[0] ^= 1;
    expect_reject(bad, len, ST_WIRE_REJ_MAGIC, "magic");
    memcpy(bad, buf, len), bad[4] = 9, reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_VERSION, "version");
    memcpy(bad, buf, len), bad[6] = 77, reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_KIND, "kind");
    memcpy(bad, buf, len), bad[48] = 33, reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_DTYPE, "dtype");
    memcpy(bad, buf, len), bad[20] ^= 0x40; /* n_seqs flipped, no reseal */
    expect_reject(bad, len, ST_WIRE_REJ_CRC, "crc header");
    memcpy(bad, buf, len), bad[64 + 8] ^= 1; /* first_pos of record 0 */
    expect_reject(bad, len, ST_WIRE_REJ_CRC, "crc records");
    expect_reject(buf, len - 1, ST_WIRE_REJ_LENGTH, "truncated payload");
    memcpy(bad, buf, len), put32(bad + 52, 0xffffffc0u), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_LENGTH, "huge records_len");
    memcpy(bad, buf, len), put32(bad + 20, 100000), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_RECORDS, "too many seqs");
    memcpy(bad, buf, len), put32(bad + 64 + 16, 1u << 20), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_RECORDS, "block count overruns");
    memcpy(bad, buf, len), put32(bad + 64 + 16, 30), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_RECORDS, "block count just overruns");
    memcpy(bad, buf, len), put32(bad + 40, 8), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_RECORDS, "token sum");
    memcpy(bad, buf, len), put32(bad + 44, 5), reseal(bad);
    expect_reject(bad, len, ST_WIRE_REJ_PAYLOAD, "payload size");
    memcpy(bad, buf, len), put32(bad + 64 + 28, 0x7fc00000u), reseal(bad); /* top_p = NaN */
    expect_reject(bad, len, ST_WIRE_REJ_SAMPLING, "nan top_p");

    /* the encoder refuses what the decoder would reject */
    st_wire_hdr h = {.kind = ST_WIRE_FORWARD, .n_seqs = 1, .n_tokens = 2, .hidden = 3, .dtype = ST_WIRE_DT_F32,
                     .payload_len = 5};
    st_wire_writer w;
    st_wire_writer_init(&w, bad, sizeof bad, &h);
    st_wire_seq one = {.seq_id = 1, .n_tokens = 2};
    CHECK(st_wire_writer_add(&w, &one, NULL) == ST_OK);
    size_t meta;
    CHECK(st_wire_writer_finish(&w, &meta) == ST_EINVAL);
    st_wire_writer_init(&w, bad, 100, &h);
    one.n_blocks = 20;
    uint32_t many[20] = {0};
    CHECK(st_wire_writer_add(&w, &one, many) == ST_ERANGE);
    one = (st_wire_seq){.seq_id = 1, .n_tokens = 2, .sp = {.temperature = -1}};
    st_wire_writer_init(&w, bad, sizeof bad, &h);
    CHECK(st_wire_writer_add(&w, &one, NULL) == ST_EINVAL);

    /* record token counts that wrap a u32 back onto the header's n_tokens
     * (0xffffffff + 3 == 2) are refused, not encoded into a message the
     * decoder would then reject */
    h = (st_wire_hdr){.kind = ST_WIRE_FORWARD, .n_seqs = 2, .n_tokens = 2, .dtype = ST_WIRE_DT_NONE};
    st_wire_writer_init(&w, bad, sizeof bad, &h);
    one = (st_wire_seq){.seq_id = 1, .n_tokens = 0xffffffffu};
    CHECK(st_wire_writer_add(&w, &one, NULL) == ST_OK);
    one.n_tokens = 3;
    CHECK(st_wire_writer_add(&w, &one, NULL) == ST_ERANGE);
    CHECK(st_wire_writer_finish(&w, &meta) == ST_ERANGE);

    /* heartbeat: header only */
    st_wire_hdr hb = {.kind = ST_WIRE_HEARTBEAT, .step_id = 5};
    st_wire_writer_init(&w, bad, sizeof bad, &hb);
    CHECK(st_wire_writer_finish(&w, &meta) == ST_OK && meta == 64);
    CHECK(st_wire_decode(bad, 64, &m) == ST_OK && m.hdr.kind == ST_WIRE_HEARTBEAT && m.hdr.step_id == 5);

    /* every single-bit flip of the metadata is caught (by the CRC or earlier) */
    int missed = 0;
    size_t meta_len = 64 + (size_t)(buf[52] | buf[53] << 8);
    for (size_t i = 0; i < meta_len * 8; i++) {
        memcpy(bad, buf, len);
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (st_wire_decode(bad, len, &m) == ST_OK)
            missed++;
    }
    CHECKF(missed == 0, "%d bit flips accepted", missed);
    return test_done();
}
