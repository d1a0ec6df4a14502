/* Node identity (an Ed25519 key in a PEM file) and the join handshake
 * (hello, challenge, auth, welcome; see ctl.h).
 *
 * What each side proves, and why the token never travels:
 *   - the scheduler's challenge carries HMAC(token, "strait/v1/sched" | Nn | Sn):
 *     only a holder of the token can answer the node's fresh nonce Nn, so a
 *     node never hands its proof to an impostor scheduler;
 *   - the node's auth carries HMAC(token, "strait/v1/node" | Sn | Nn | node_id |
 *     pubkey), which binds the proof to this session and to the identity it
 *     claims, and Ed25519(key, "strait/v1/id" | Sn | pubkey), which shows it
 *     holds the private key behind node_id = SHA-256(pubkey)[0:16].
 * The labels differ, so neither MAC can be replayed as the other. Every
 * field in the MAC and signature inputs has a fixed length in hex (nonces
 * 64, node_id 32, pubkey 64), so their concatenation is unambiguous. */
#define _GNU_SOURCE
#include "sched/cluster/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/st_common.h"
#include "sched/cluster/ctl_impl.h"

#define NONCE_BYTES 32
#define MAC_BYTES 32
#define SIG_BYTES 64

/* ---- hex ------------------------------------------------------------------------ */

void st_ctl_hex(const uint8_t *b, size_t n, char *out)
{
    static const char dig[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = dig[b[i] >> 4];
        out[2 * i + 1] = dig[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

int st_ctl_is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (hexval(s[i]) < 0)
            return 0;
    return 1;
}

int st_ctl_unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return st_err(ST_EINVAL, "ctl: bad hex digit");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return ST_OK;
}

/* ---- identity ------------------------------------------------------------------- */

static int fill_ids(EVP_PKEY *pk, st_ctl_identity *out)
{
    uint8_t raw[32], dig[32];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(pk, raw, &n) != 1 || n != sizeof raw)
        return st_err(ST_EINVAL, "ctl: cannot read the Ed25519 public key");
    unsigned dn = 0;
    if (EVP_Digest(raw, sizeof raw, dig, &dn, EVP_sha256(), NULL) != 1)
        return st_err(ST_EIO, "ctl: SHA-256 failed");
    st_ctl_hex(raw, sizeof raw, out->pubkey_hex);
    st_ctl_hex(dig, 16, out->node_id);
    out->pkey = pk;
    return ST_OK;
}

/* node_id of a public key given in hex (65 bytes incl. NUL) into id (33). */
static int node_id_of(const char *pubkey_hex, char *id)
{
    uint8_t raw[32], dig[32];
    unsigned dn = 0;
    if (st_ctl_unhex(pubkey_hex, raw, sizeof raw) || EVP_Digest(raw, sizeof raw, dig, &dn, EVP_sha256(), NULL) != 1)
        return ST_EINVAL;
    st_ctl_hex(dig, 16, id);
    return ST_OK;
}

static int mkdir_parents(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return ST_OK;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return st_err(ST_EIO, "ctl: cannot create directory %s: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return st_err(ST_EIO, "ctl: cannot create directory %s: %s", dir, strerror(errno));
    return ST_OK;
}

static int read_key(const char *path, int fd, st_ctl_identity *out)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        ST_WARN("ctl: key file %s is readable by others (mode %03o); chmod 600 it", path,
                (unsigned)(st.st_mode & 0777));
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return st_err(ST_EIO, "ctl: cannot read key file %s: %s", path, strerror(errno));
    }
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!pk)
        return st_err(ST_EINVAL, "ctl: key file %s is not a PEM private key", path);
    if (EVP_PKEY_get_id(pk) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(pk);
        return st_err(ST_EINVAL, "ctl: key file %s does not hold an Ed25519 key", path);
    }
    int rc = fill_ids(pk, out);
    if (rc)
        EVP_PKEY_free(pk);
    return rc;
}

/* Write a new key to a private temporary file, then link it into place:
 * link fails when another process created the key meanwhile, and then
 * that key wins (ST_EAGAIN: load it). */
static int create_key(const char *path, st_ctl_identity *out)
{
    int rc = mkdir_parents(path);
    if (rc)
        return rc;
    uint8_t r[8];
    char rnd[17], tmp[PATH_MAX];
    if (RAND_bytes(r, sizeof r) != 1)
        return st_err(ST_EIO, "ctl: no randomness for the key file name");
    st_ctl_hex(r, sizeof r, rnd);
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%s", path, rnd) >= (int)sizeof tmp)
        return st_err(ST_EINVAL, "ctl: key path too long: %s", path);

    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!kc || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_keygen(kc, &pk) != 1) {
        EVP_PKEY_CTX_free(kc);
        return st_err(ST_EIO, "ctl: Ed25519 key generation failed");
    }
    EVP_PKEY_CTX_free(kc);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        EVP_PKEY_free(pk);
        return st_err(ST_EIO, "ctl: cannot create key file %s: %s", tmp, strerror(errno));
    }
    FILE *f = fdopen(fd, "w");
    int ok = f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1 && fflush(f) == 0 &&
             fsync(fd) == 0;
    if (f)
        fclose(f);
    else
        close(fd);
    if (!ok) {
        unlink(tmp);
        EVP_PKEY_free(pk);
        return st_err(ST_EIO, "ctl: cannot write key file %s", tmp);
    }
    if (link(tmp, path) != 0) {
        int e = errno;
        if (e == EEXIST) {
            unlink(tmp);
            EVP_PKEY_free(pk);
            return ST_EAGAIN;
        }
        /* file systems without hard links: rename (last writer wins) */
        if (rename(tmp, path) != 0) {
            unlink(tmp);
            EVP_PKEY_free(pk);
            return st_err(ST_EIO, "ctl: cannot install key file %s: %s", path, strerror(e));
        }
    } else {
        unlink(tmp);
    }
    rc = fill_ids(pk, out);
    if (rc)
        EVP_PKEY_free(pk);
    else
        ST_INFO("ctl: created node key %s (node %s)", path, out->node_id);
    return rc;
}

int st_ctl_identity_load(const char *path, st_ctl_identity *out)
{
    if (!out)
        return st_err(ST_EINVAL, "ctl: identity_load: NULL output");
    memset(out, 0, sizeof *out);
    char def[PATH_MAX];
    if (!path || !*path) {
        const char *sh = getenv("STRAIT_HOME"), *home = getenv("HOME");
        if (sh && *sh)
            snprintf(def, sizeof def, "%s/node.key", sh);
        else if (home && *home)
            snprintf(def, sizeof def, "%s/.cache/strait/node.key", home);
        else
            return st_err(ST_ENOENT, "ctl: no key path and no home directory: set STRAIT_HOME");
        path = def;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            return read_key(path, fd, out);
        if (errno != ENOENT)
            return st_err(ST_EIO, "ctl: cannot open key file %s: %s", path, strerror(errno));
        int rc = create_key(path, out);
        if (rc != ST_EAGAIN)
            return rc;
    }
    return st_err(ST_EIO, "ctl: key file %s keeps changing", path);
}

void st_ctl_identity_free(st_ctl_identity *id)
{
    if (!id)
        return;
    EVP_PKEY_free(id->pkey);
    memset(id, 0, sizeof *id);
}

/* ---- proofs -------------------------------------------------------------------- */

/* HMAC-SHA256(token, concatenation of the NULL-terminated list of strings) */
static int mac_of(const char *token, uint8_t out[MAC_BYTES], const char *a, const char *b, const char *c,
                  const char *d, const char *e)
{
    const char *parts[] = {a, b, c, d, e};
    char buf[512];
    size_t n = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(parts) && parts[i]; i++) {
        size_t l = strlen(parts[i]);
        if (n + l > sizeof buf)
            return st_err(ST_EINVAL, "ctl: MAC input too long");
        memcpy(buf + n, parts[i], l);
        n += l;
    }
    unsigned ol = 0;
    if (!HMAC(EVP_sha256(), token, (int)strlen(token), (const uint8_t *)buf, n, out, &ol) || ol != MAC_BYTES)
        return st_err(ST_EIO, "ctl: HMAC-SHA256 failed");
    return ST_OK;
}

static int sig_input(const char *sched_nonce, const char *pubkey_hex, char *buf, size_t cap, size_t *n)
{
    int w = snprintf(buf, cap, "strait/v1/id%s%s", sched_nonce, pubkey_hex);
    if (w < 0 || (size_t)w >= cap)
        return st_err(ST_EINVAL, "ctl: signature input too long");
    *n = (size_t)w;
    return ST_OK;
}

static int sign(const st_ctl_identity *id, const char *sched_nonce, uint8_t sig[SIG_BYTES])
{
    char in[256];
    size_t n = 0, sl = SIG_BYTES;
    int rc = sig_input(sched_nonce, id->pubkey_hex, in, sizeof in, &n);
    if (rc)
        return rc;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, (EVP_PKEY *)id->pkey) == 1 &&
             EVP_DigestSign(md, sig, &sl, (const uint8_t *)in, n) == 1 && sl == SIG_BYTES;
    EVP_MD_CTX_free(md);
    return ok ? ST_OK : st_err(ST_EIO, "ctl: Ed25519 signing failed");
}

/* 1 when sig is a valid signature of the identity statement by pubkey_hex. */
static int verify(const char *pubkey_hex, const char *sched_nonce, const uint8_t sig[SIG_BYTES])
{
    uint8_t raw[32];
    char in[256];
    size_t n = 0;
    if (st_ctl_unhex(pubkey_hex, raw, sizeof raw) || sig_input(sched_nonce, pubkey_hex, in, sizeof in, &n))
        return 0;
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, sizeof raw);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = pk && md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(md, sig, SIG_BYTES, (const uint8_t *)in, n) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    return ok;
}

static int new_nonce(char hex[2 * NONCE_BYTES + 1])
{
    uint8_t b[NONCE_BYTES];
    if (RAND_bytes(b, sizeof b) != 1)
        return st_err(ST_EIO, "ctl: RAND_bytes failed");
    st_ctl_hex(b, sizeof b, hex);
    return ST_OK;
}

/* Compare a received MAC in hex with the expected bytes in constant time. */
static int mac_matches(const char *hex, const uint8_t want[MAC_BYTES])
{
    uint8_t got[MAC_BYTES];
    if (!st_ctl_is_hex(hex, 2 * MAC_BYTES) || st_ctl_unhex(hex, got, sizeof got))
        return 0;
    return CRYPTO_memcmp(got, want, MAC_BYTES) == 0;
}

/* ---- handshake helpers ------------------------------------------------------------ */

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = st_now_ns();
    return now >= deadline ? 0 : (int)ST_MIN((deadline - now) / 1000000 + 1, (uint64_t)INT32_MAX);
}

/* Receive the next message and require its type; an "error" from the peer
 * becomes ST_EPROTO "<who> refused: <its message>". */
static int expect(st_ctl_conn *c, const char *type, const char *who, uint64_t deadline, st_json **out)
{
    st_json *m = NULL;
    int rc = st_ctl_recv(c, remaining_ms(deadline), &m);
    if (rc == ST_ETIMEDOUT)
        return st_err(ST_ETIMEDOUT, "timeout: no %s from %s %s", type, who, st_ctl_peer(c));
    if (rc)
        return rc;
    const char *t = st_json_get_str(m, "type", "");
    if (!strcmp(t, "error")) {
        const char *why = st_json_get_str(m, "message", "(no reason given)");
        rc = st_err(ST_EPROTO, "%s %s refused: %.300s", who, st_ctl_peer(c), why);
        st_json_free(m);
        return rc;
    }
    if (strcmp(t, type) != 0) {
        rc = st_err(ST_EPROTO, "malformed message: expected %s from %s %s, got %.32s", type, who, st_ctl_peer(c), t);
        st_json_free(m);
        return rc;
    }
    *out = m;
    return ST_OK;
}

/* Copy string member key of m into out (cap bytes incl. NUL); hex_len > 0:
 * it must be exactly that many lowercase hex digits. */
static int get_str(const st_json *m, const char *key, char *out, size_t cap, size_t hex_len)
{
    const st_json *v = st_json_get(m, key);
    if (!v || v->type != ST_JSON_STRING || v->u.str.len >= cap || strlen(v->u.str.s) != v->u.str.len)
        return st_err(ST_EPROTO, "malformed message: member \"%s\" missing, not a string, or too long", key);
    if (hex_len && !st_ctl_is_hex(v->u.str.s, hex_len))
        return st_err(ST_EPROTO, "malformed message: member \"%s\" is not %zu hex digits", key, hex_len);
    for (size_t i = 0; i < v->u.str.len; i++)
        if ((unsigned char)v->u.str.s[i] < 0x20)
            return st_err(ST_EPROTO, "malformed message: member \"%s\" has a control character", key);
    memcpy(out, v->u.str.s, v->u.str.len + 1);
    return ST_OK;
}

static int send_sb(st_ctl_conn *c, st_strbuf *sb, uint64_t deadline)
{
    int rc = st_ctl_send(c, sb->buf, sb->len, remaining_ms(deadline));
    st_sb_free(sb);
    return rc;
}

static void send_error(st_ctl_conn *c, const char *why)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":\"error\",\"message\":");
    st_sb_json_str(&sb, why, strlen(why));
    st_sb_puts(&sb, "}");
    st_ctl_send(c, sb.buf, sb.len, 200);
    st_sb_free(&sb);
}

/* ---- node side ---------------------------------------------------------------------- */

int st_ctl_handshake_node(st_ctl_conn *c, const char *token, const st_ctl_identity *id, const char *name,
                          int timeout_ms, st_ctl_peer_info *sched)
{
    if (!c || !token || !id || !id->pkey || !sched)
        return st_err(ST_EINVAL, "ctl: handshake_node: NULL argument");
    if (!*token)
        return st_err(ST_EINVAL, "ctl: the cluster token is empty");
    if (!name)
        name = "";
    if (strlen(name) >= sizeof sched->name)
        return st_err(ST_EINVAL, "ctl: node name '%s' longer than %zu bytes", name, sizeof sched->name - 1);
    uint64_t deadline = st_ctl_deadline(timeout_ms < 0 ? 3600000 : timeout_ms);
    char nn[2 * NONCE_BYTES + 1], sn[2 * NONCE_BYTES + 1];
    int rc = new_nonce(nn);
    if (rc)
        return rc;

    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_printf(&sb, "{\"type\":\"hello\",\"version\":%d,\"node_id\":\"%s\",\"pubkey\":\"%s\",\"name\":",
                 ST_CTL_VERSION, id->node_id, id->pubkey_hex);
    st_sb_json_str(&sb, name, strlen(name));
    st_sb_printf(&sb, ",\"role\":\"worker\",\"nonce\":\"%s\"}", nn);
    if ((rc = send_sb(c, &sb, deadline)))
        return rc;

    st_json *m = NULL;
    if ((rc = expect(c, "challenge", "scheduler", deadline, &m)))
        return rc;
    char smac[2 * MAC_BYTES + 1];
    rc = get_str(m, "nonce", sn, sizeof sn, 2 * NONCE_BYTES);
    if (!rc)
        rc = get_str(m, "mac", smac, sizeof smac, 2 * MAC_BYTES);
    st_json_free(m);
    if (rc) {
        send_error(c, st_errmsg());
        return st_err(ST_EPROTO, "scheduler %s: %s", st_ctl_peer(c), st_errmsg());
    }
    uint8_t want[MAC_BYTES];
    if ((rc = mac_of(token, want, "strait/v1/sched", nn, sn, NULL, NULL)))
        return rc;
    if (!mac_matches(smac, want)) {
        send_error(c, "cluster token rejected: the scheduler's proof does not match the node's token");
        return st_err(ST_EPROTO, "cluster token rejected: scheduler %s does not know this cluster's token",
                      st_ctl_peer(c));
    }

    uint8_t mac[MAC_BYTES], sig[SIG_BYTES];
    char mac_hex[2 * MAC_BYTES + 1], sig_hex[2 * SIG_BYTES + 1];
    if ((rc = mac_of(token, mac, "strait/v1/node", sn, nn, id->node_id, id->pubkey_hex)) ||
        (rc = sign(id, sn, sig)))
        return rc;
    st_ctl_hex(mac, sizeof mac, mac_hex);
    st_ctl_hex(sig, sizeof sig, sig_hex);
    st_sb_init(&sb);
    st_sb_printf(&sb, "{\"type\":\"auth\",\"mac\":\"%s\",\"sig\":\"%s\"}", mac_hex, sig_hex);
    if ((rc = send_sb(c, &sb, deadline)))
        return rc;

    if ((rc = expect(c, "welcome", "scheduler", deadline, &m)))
        return rc;
    memset(sched, 0, sizeof *sched);
    int64_t hb = 0, to = 0;
    rc = get_str(m, "node_id", sched->node_id, sizeof sched->node_id, 32);
    if (!rc && (!st_json_as_int(st_json_get(m, "heartbeat_ms"), 1, 3600000, &hb) ||
                !st_json_as_int(st_json_get(m, "timeout_ms"), 1, 36000000, &to)))
        rc = st_err(ST_EPROTO, "malformed message: welcome needs heartbeat_ms and timeout_ms in ms");
    if (!rc && strcmp(sched->node_id, id->node_id) != 0)
        rc = st_err(ST_EPROTO, "malformed message: welcome names node %s, not this node %s", sched->node_id,
                    id->node_id);
    st_json_free(m);
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "%s", st_errmsg());
        send_error(c, why);
        return st_err(ST_EPROTO, "scheduler %s: %s", st_ctl_peer(c), why);
    }
    sched->heartbeat_ms = (int)hb;
    sched->timeout_ms = (int)to;
    snprintf(sched->role, sizeof sched->role, "scheduler");
    return ST_OK;
}

/* ---- scheduler side -------------------------------------------------------------------- */

/* Refuse the node: tell it why, log it with its address, return ST_EPROTO. */
static int refuse(st_ctl_conn *c, const char *why)
{
    char msg[384];
    snprintf(msg, sizeof msg, "%s", why);
    send_error(c, msg);
    ST_WARN("ctl: refused node at %s: %s", st_ctl_peer(c), msg);
    return st_err(ST_EPROTO, "ctl: refused node at %s: %s", st_ctl_peer(c), msg);
}

int st_ctl_handshake_sched(st_ctl_conn *c, const char *token, int heartbeat_ms, int timeout_ms, int io_timeout_ms,
                           st_ctl_peer_info *node)
{
    if (!c || !token || !node)
        return st_err(ST_EINVAL, "ctl: handshake_sched: NULL argument");
    if (!*token)
        return st_err(ST_EINVAL, "ctl: the cluster token is empty");
    if (heartbeat_ms < 1 || heartbeat_ms > 3600000 || timeout_ms < 1 || timeout_ms > 36000000)
        return st_err(ST_EINVAL, "ctl: heartbeat_ms %d (1..3600000) or timeout_ms %d (1..36000000) out of range",
                      heartbeat_ms, timeout_ms);
    uint64_t deadline = st_ctl_deadline(io_timeout_ms < 0 ? 3600000 : io_timeout_ms);
    memset(node, 0, sizeof *node);

    st_json *m = NULL;
    int rc = expect(c, "hello", "node", deadline, &m);
    if (rc == ST_ETIMEDOUT) {
        ST_WARN("ctl: refused node at %s: %s", st_ctl_peer(c), st_errmsg());
        return rc;
    }
    if (rc)
        return refuse(c, st_errmsg());
    char nn[2 * NONCE_BYTES + 1], sn[2 * NONCE_BYTES + 1];
    int64_t version = 0;
    if (!st_json_as_int(st_json_get(m, "version"), INT32_MIN, INT32_MAX, &version))
        rc = st_err(ST_EPROTO, "malformed message: hello has no integer version");
    else if (version != ST_CTL_VERSION)
        rc = st_err(ST_EPROTO, "version mismatch: the node speaks control protocol v%lld, this scheduler v%d",
                    (long long)version, ST_CTL_VERSION);
    if (!rc)
        rc = get_str(m, "node_id", node->node_id, sizeof node->node_id, 32);
    if (!rc)
        rc = get_str(m, "pubkey", node->pubkey_hex, sizeof node->pubkey_hex, 64);
    if (!rc)
        rc = get_str(m, "name", node->name, sizeof node->name, 0);
    if (!rc)
        rc = get_str(m, "role", node->role, sizeof node->role, 0);
    if (!rc)
        rc = get_str(m, "nonce", nn, sizeof nn, 2 * NONCE_BYTES);
    st_json_free(m);
    if (rc)
        return refuse(c, st_errmsg());
    char want_id[33];
    if (node_id_of(node->pubkey_hex, want_id) || strcmp(want_id, node->node_id) != 0)
        return refuse(c, "node_id does not match the node's public key");

    uint8_t mac[MAC_BYTES];
    char mac_hex[2 * MAC_BYTES + 1];
    if ((rc = new_nonce(sn)) || (rc = mac_of(token, mac, "strait/v1/sched", nn, sn, NULL, NULL)))
        return rc;
    st_ctl_hex(mac, sizeof mac, mac_hex);
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_printf(&sb, "{\"type\":\"challenge\",\"nonce\":\"%s\",\"mac\":\"%s\"}", sn, mac_hex);
    if ((rc = send_sb(c, &sb, deadline)))
        return rc;

    rc = expect(c, "auth", "node", deadline, &m);
    if (rc == ST_ETIMEDOUT) {
        ST_WARN("ctl: refused node at %s: %s", st_ctl_peer(c), st_errmsg());
        return rc;
    }
    if (rc) {
        /* the node refuses us when our proof of the token did not match its token */
        char why[400];
        snprintf(why, sizeof why, "%s", st_errmsg());
        if (strstr(why, "cluster token rejected"))
            snprintf(why, sizeof why, "wrong cluster token: the node's token differs from this scheduler's");
        return refuse(c, why);
    }
    char nmac[2 * MAC_BYTES + 1], sig_hex[2 * SIG_BYTES + 1];
    rc = get_str(m, "mac", nmac, sizeof nmac, 2 * MAC_BYTES);
    if (!rc)
        rc = get_str(m, "sig", sig_hex, sizeof sig_hex, 2 * SIG_BYTES);
    st_json_free(m);
    if (rc)
        return refuse(c, st_errmsg());
    uint8_t want[MAC_BYTES], sig[SIG_BYTES];
    if ((rc = mac_of(token, want, "strait/v1/node", sn, nn, node->node_id, node->pubkey_hex)))
        return rc;
    if (!mac_matches(nmac, want))
        return refuse(c, "wrong cluster token: the node's proof does not match this scheduler's token");
    if (st_ctl_unhex(sig_hex, sig, sizeof sig) || !verify(node->pubkey_hex, sn, sig))
        return refuse(c, "bad signature: the node does not hold the key of its node_id");

    st_sb_init(&sb);
    st_sb_printf(&sb, "{\"type\":\"welcome\",\"node_id\":\"%s\",\"heartbeat_ms\":%d,\"timeout_ms\":%d}",
                 node->node_id, heartbeat_ms, timeout_ms);
    if ((rc = send_sb(c, &sb, deadline)))
        return rc;
    node->heartbeat_ms = heartbeat_ms;
    node->timeout_ms = timeout_ms;
    return ST_OK;
}
