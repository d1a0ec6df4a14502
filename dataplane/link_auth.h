/* Link keys: the challenge/response that tcp and shm links run before they
 * carry anything, when st_link_opts.has_key is set.
 *
 * Each end draws a fresh 32-byte nonce; each proves the key with
 *   HMAC-SHA256(key, label | nonce_connector | nonce_listener | context)
 * where the label names the prover's role (so one side's proof can never be
 * replayed as the other's) and the context binds what the transport wants
 * bound (tcp: the connector's HELLO frame, which holds the link id and
 * whether it is a resume). The key itself never travels.
 *
 * What this is not: encryption. After the handshake the stream is neither
 * hidden nor integrity-protected; see dataplane/README.md. Private to
 * dataplane/. */
#ifndef ST_LINK_AUTH_H
#define ST_LINK_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define ST_LINK_NONCE 32
#define ST_LINK_MAC 32

#define ST_LINK_LABEL_LISTENER "strait/v1/link/listener"
#define ST_LINK_LABEL_CONNECTOR "strait/v1/link/connector"

/* A fresh random nonce (getrandom). ST_EIO when the kernel has none to give. */
int st_link_auth_nonce(uint8_t nonce[ST_LINK_NONCE]);

/* out = HMAC-SHA256(key, label | nc | nl | ctx[0, ctx_len)). ST_EIO if
 * OpenSSL fails. */
int st_link_auth_mac(const uint8_t key[32], const char *label, const uint8_t nc[ST_LINK_NONCE],
                     const uint8_t nl[ST_LINK_NONCE], const void *ctx, size_t ctx_len, uint8_t out[ST_LINK_MAC]);

/* Does `got` equal the proof expected from a holder of key? Constant time.
 * 1 yes, 0 no (also when the MAC cannot be computed). */
int st_link_auth_verify(const uint8_t key[32], const char *label, const uint8_t nc[ST_LINK_NONCE],
                        const uint8_t nl[ST_LINK_NONCE], const void *ctx, size_t ctx_len,
                        const uint8_t got[ST_LINK_MAC]);

#endif
