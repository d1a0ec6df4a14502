/* Fuzz target: the OpenAI request parser and validator (untrusted HTTP
 * bodies). The first byte picks the endpoint; every outcome must be a
 * request or an error object with a 4xx/5xx status, and the error JSON
 * must serialize. */
#include <stdint.h>
#include <stdlib.h>

#include "common/json.h"
#include "http/api_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    st_api_kind kind = (data[0] & 1) ? ST_API_COMPLETION : ST_API_CHAT;
    st_api_limits lim = {.max_body_bytes = 1 << 20, .max_ctx = 8192, .n_vocab = 49152};
    st_api_request req;
    st_api_error err;
    int status = st_api_parse(kind, (const char *)data + 1, size - 1, &lim, &req, &err);
    if (status) {
        if (status < 400 || status > 599)
            abort();
        st_strbuf sb;
        st_sb_init(&sb);
        st_api_error_json(&err, &sb);
        st_sb_free(&sb);
    }
    st_api_request_free(&req);
    return 0;
}
