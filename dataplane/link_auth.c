/* Link keys: nonces, proofs and their constant-time check (link_auth.h),
 * and the derivation of a key from a shared secret (transport.h). */
#define _GNU_SOURCE
#include "link_auth.h"

#include "common/st_common.h"
#include "dataplane/transport.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

void st_link_key_from_secret(const char *secret, uint8_t key[32])
{
    static const char label[] = "strait/v1/link";
    unsigned int ol = 32;
    const char *s = secret ? secret : "";
    if (!HMAC(EVP_sha256(), s, (int)strlen(s), (const uint8_t *)label, sizeof label - 1, key, &ol) || ol != 32)
        memset(key, 0, 32); /* cannot happen with a working libcrypto; an all-zero key still differs per end */
}

void st_link_opts_keyed(st_link_opts *o, const char *transport, const char *secret)
{
    st_link_opts_default(o);
    if (secret && *secret && transport && (!strcmp(transport, "tcp") || !strcmp(transport, "shm"))) {
        st_link_key_from_secret(secret, o->key);
        o->has_key = 1;
    }
}

int st_link_auth_nonce(uint8_t nonce[ST_LINK_NONCE])
{
    size_t got = 0;
    while (got < ST_LINK_NONCE) {
        ssize_t r = getrandom(nonce + got, ST_LINK_NONCE - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return st_err(ST_EIO, "link key: no random bytes for a nonce: %s", strerror(errno));
        got += (size_t)r;
    }
    return ST_OK;
}

int st_link_auth_mac(const uint8_t key[32], const char *label, const uint8_t nc[ST_LINK_NONCE],
                     const uint8_t nl[ST_LINK_NONCE], const void *ctx, size_t ctx_len, uint8_t out[ST_LINK_MAC])
{
    /* one buffer and the one-shot HMAC(): the streaming HMAC_CTX calls are
     * deprecated in OpenSSL 3 */
    uint8_t msg[256];
    size_t ll = strlen(label);
    if (ll + 2 * ST_LINK_NONCE + ctx_len > sizeof msg)
        return st_err(ST_EINVAL, "link key: %zu bytes of label and context is too much", ll + ctx_len);
    memcpy(msg, label, ll);
    memcpy(msg + ll, nc, ST_LINK_NONCE);
    memcpy(msg + ll + ST_LINK_NONCE, nl, ST_LINK_NONCE);
    if (ctx_len)
        memcpy(msg + ll + 2 * ST_LINK_NONCE, ctx, ctx_len);
    unsigned int ol = 0;
    if (!HMAC(EVP_sha256(), key, 32, msg, ll + 2 * ST_LINK_NONCE + ctx_len, out, &ol) || ol != ST_LINK_MAC)
        return st_err(ST_EIO, "link key: HMAC-SHA256 failed");
    return ST_OK;
}

int st_link_auth_verify(const uint8_t key[32], const char *label, const uint8_t nc[ST_LINK_NONCE],
                        const uint8_t nl[ST_LINK_NONCE], const void *ctx, size_t ctx_len,
                        const uint8_t got[ST_LINK_MAC])
{
    uint8_t want[ST_LINK_MAC];
    if (st_link_auth_mac(key, label, nc, nl, ctx, ctx_len, want) != ST_OK)
        return 0;
    int same = CRYPTO_memcmp(want, got, ST_LINK_MAC) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return same;
}
