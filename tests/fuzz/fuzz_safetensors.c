/* libFuzzer target for the safetensors reader: open arbitrary bytes; on
 * success read every tensor's metadata and the first and last byte of its
 * data, and look every name up again. */
#include <stdint.h>
#include <stdlib.h>

#include "common/st_common.h"
#include "engine/safetensors.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_safetensors *st = NULL;
    if (st_safetensors_open_mem(data, size, &st) != ST_OK)
        return 0;
    for (size_t i = 0; i < st_safetensors_n_tensors(st); i++) {
        const st_tensor *t = st_safetensors_tensor(st, i);
        if (st_safetensors_find(st, t->name) != t || t->n_dims < 1 || t->n_dims > ST_MAX_DIMS)
            abort();
        sink ^= (uint8_t)t->name[0];
        if (t->nbytes) {
            const uint8_t *d = t->data;
            sink ^= (uint8_t)(d[0] ^ d[t->nbytes - 1]);
        }
    }
    st_safetensors_close(st);
    return 0;
}
