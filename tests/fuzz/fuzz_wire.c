/* libFuzzer target for the wire decoder: any byte string must either be
 * rejected or decode into records that all lie inside the input. Each input
 * is tried twice: as given (exercising the checksum) and with its checksum
 * recomputed, so that the fuzzer reaches the structural checks behind it. */
#include "dataplane/crc32c.h"
#include "dataplane/wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void check(const uint8_t *data, size_t size)
{
    st_wire_msg m;
    if (st_wire_decode(data, size, &m) != 0)
        return;
    if (m.payload + m.hdr.payload_len != data + size)
        abort();
    size_t off = 0;
    st_wire_seq s;
    uint32_t n = 0;
    uint64_t sum = 0;
    while (st_wire_seq_next(&m, &off, &s)) {
        for (uint32_t j = 0; j < s.n_blocks; j++)
            sum += st_wire_block(&s, j);
        n++;
    }
    if (n != m.hdr.n_seqs)
        abort();
    for (uint64_t i = 0; i < m.hdr.payload_len; i++)
        sum += m.payload[i];
    sink = sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    if (size < 64)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    uint32_t records_len = copy[52] | copy[53] << 8 | copy[54] << 16 | (uint32_t)copy[55] << 24;
    if (records_len <= size - 64) {
        memset(copy + 8, 0, 4);
        uint32_t c = st_crc32c(0, copy, 64 + (size_t)records_len);
        for (int i = 0; i < 4; i++)
            copy[8 + i] = (uint8_t)(c >> (8 * i));
        check(copy, size);
    }
    free(copy);
    return 0;
}
