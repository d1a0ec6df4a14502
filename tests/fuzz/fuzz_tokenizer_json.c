/* libFuzzer target for the tokenizer.json loader: any bytes must be
 * rejected or give a tokenizer that encodes text into in-range ids, which
 * decode (whole and streamed) without reading outside any buffer. The text
 * encoded is a few fixed strings plus the input itself, so that the fuzzer
 * also drives the pre-tokenizers and the added-token matcher. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

static void roundtrip(const st_tokenizer *t, const char *s, size_t n, int special)
{
    int k = st_tok_encode(t, s, n, special, NULL, 0);
    if (k < 0)
        return;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(k + 1));
    if (st_tok_encode(t, s, n, special, ids, k) != k)
        abort();
    for (int i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= st_tok_vocab_size(t))
            abort();
    int need = st_tok_decode(t, ids, k, 0, NULL, 0);
    if (need >= 0) {
        char *out = malloc((size_t)need + 1);
        if (st_tok_decode(t, ids, k, 1, out, need) > need)
            abort(); /* skipping specials never makes the text longer */
        free(out);
    }
    st_detok d;
    char buf[4096];
    st_detok_init(&d, t, 0);
    for (int i = 0; i < k; i++)
        st_detok_feed(&d, ids[i], buf, sizeof buf);
    st_detok_flush(&d, buf, sizeof buf);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_tokenizer *t = NULL;
    if (st_tok_load_json_mem((const char *)data, size, &t) != 0)
        return 0;
    static const char *texts[] = {"Hello world", " 'll 12345\n\n\t x", "<s>a</s><|im_end|>", "\xC3\xA9\xFF\xE2\x96", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        roundtrip(t, texts[i], strlen(texts[i]), 0);
        roundtrip(t, texts[i], strlen(texts[i]), 1);
    }
    roundtrip(t, (const char *)data, size < 512 ? size : 512, 1);
    for (int32_t id = -1; id < 4; id++) {
        char p[64];
        st_tok_piece(t, id, p, sizeof p);
        st_tok_is_eog(t, id);
        st_tok_is_special(t, id);
    }
    st_tok_free(t);
    return 0;
}
