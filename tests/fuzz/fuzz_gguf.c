/* libFuzzer target for the GGUF reader: open arbitrary bytes (strict, then
 * with unknown types allowed); on success read every key through every
 * getter, every array element, every tensor's metadata and the first and
 * last byte of its data, and look every name up again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "engine/gguf.h"

static volatile uint8_t sink;

static void touch_kvs(const st_gguf *g)
{
    for (size_t i = 0; i < st_gguf_n_kv(g); i++) {
        const char *key = st_gguf_kv_key(g, i);
        if (!key || st_gguf_find_key(g, key) != (int64_t)i)
            abort();
        uint32_t u;
        int64_t v;
        float f;
        int b;
        const char *s;
        size_t len, n;
        st_gguf_type et;
        (void)st_gguf_get_u32(g, key, &u);
        (void)st_gguf_get_i64(g, key, &v);
        (void)st_gguf_get_f32(g, key, &f);
        (void)st_gguf_get_bool(g, key, &b);
        if (st_gguf_get_str(g, key, &s, &len) == ST_OK && len)
            sink ^= (uint8_t)(s[0] ^ s[len - 1]);
        if (st_gguf_get_arr(g, key, &et, &n) != ST_OK)
            continue;
        const void *data;
        if (st_gguf_get_arr_data(g, key, &data) == ST_OK && n)
            sink ^= *(const uint8_t *)data;
        for (size_t k = 0; k < n && et == ST_GGUF_STRING; k++)
            if (st_gguf_get_arr_str(g, key, k, &s, &len) == ST_OK && len)
                sink ^= (uint8_t)(s[0] ^ s[len - 1]);
    }
}

static void touch_tensors(const st_gguf *g)
{
    for (size_t i = 0; i < st_gguf_n_tensors(g); i++) {
        const st_tensor *t = st_gguf_tensor(g, i);
        if (st_gguf_find_tensor(g, t->name) != t || t->nbytes == 0)
            abort();
        const uint8_t *d = t->data;
        sink ^= (uint8_t)(d[0] ^ d[t->nbytes - 1] ^ (uint8_t)t->name[0]);
        sink ^= (uint8_t)st_gguf_type_name(st_gguf_tensor_raw_type(g, i))[0];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int flags = 0; flags <= ST_GGUF_ALLOW_UNKNOWN_TYPES; flags++) {
        st_gguf *g = NULL;
        if (st_gguf_open_mem(data, size, flags, &g) != ST_OK)
            continue;
        touch_kvs(g);
        touch_tensors(g);
        st_gguf_close(g);
    }
    return 0;
}
