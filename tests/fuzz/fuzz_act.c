/* libFuzzer target for received activations (sched/act_codec.h) and the
 * stage's FORWARD decode with int8 hidden states (sched/pipeline_msg.h).
 *   byte 0: mode (even: a bare payload, odd: a whole wire message)
 *   bare payload: byte 1 = hidden - 1 (1..64), byte 2 = n_tokens (0..15),
 *                 byte 3 = dtype; the rest is the payload
 * Whatever st_act_check or st_pipe_batch_decode accept must decode to
 * finite values (int8) without reading outside the input. */
#include "dataplane/crc32c.h"
#include "dataplane/wire.h"
#include "sched/act_codec.h"
#include "sched/pipeline_msg.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 16, MAX_TOKENS = 8 };

static void bare(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    int hidden = (data[1] & 63) + 1, n = data[2] & 15, dt = data[3] % 4;
    const uint8_t *p = data + 4;
    size_t len = size - 4;
    float *y = malloc((size_t)n * hidden * sizeof(float) + 1);
    if (!y)
        return;
    if (st_act_decode(y, p, len, n, hidden, dt) == 0 && dt == ST_ACT_I8)
        for (size_t i = 0; i < (size_t)n * hidden; i++)
            if (!isfinite(y[i]))
                abort();
    free(y);
}

static void message(const uint8_t *data, size_t size)
{
    /* a copy with its checksum recomputed, so the fuzzer gets past it */
    if (size < 65)
        return;
    uint8_t *m = malloc(size - 1);
    if (!m)
        return;
    memcpy(m, data + 1, size - 1);
    size_t len = size - 1;
    uint32_t records_len = m[52] | m[53] << 8 | m[54] << 16 | (uint32_t)m[55] << 24;
    if (records_len <= len - 64) {
        memset(m + 8, 0, 4);
        uint32_t c = st_crc32c(0, m, 64 + (size_t)records_len);
        for (int i = 0; i < 4; i++)
            m[8 + i] = (uint8_t)(c >> (8 * i));
    }
    st_wire_msg w;
    st_pipe_setup su = {4, DIM, 100, 16, 16, MAX_TOKENS, 4, ST_ACT_I8, 2};
    st_pipe_batch pb = {0};
    st_bt_map held; /* the stage's block tables; a fresh one per input */
    st_bt_init(&held, 20, 16);
    if (st_wire_decode(m, len, &w) == 0 && st_pipe_batch_decode(&w, &su, 0, &held, &pb) == 0) {
        float y[MAX_TOKENS * DIM];
        if (pb.act_len != st_act_bytes(ST_ACT_I8, pb.b.n_tokens, DIM))
            abort();
        if (st_act_decode(y, pb.act, pb.act_len, pb.b.n_tokens, DIM, ST_ACT_I8) != 0)
            abort(); /* accepted once, accepted again */
        for (int i = 0; i < pb.b.n_tokens * DIM; i++)
            if (!isfinite(y[i]))
                abort();
    }
    st_pipe_batch_free(&pb);
    st_bt_free(&held);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        message(data, size);
    else
        bare(data, size);
    return 0;
}
