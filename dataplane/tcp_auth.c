/* TCP link keys: both halves of the challenge/response that runs between a
 * connector's HELLO and the listener's answer (protocol in tcp_impl.h).
 * Nothing of the link (its id's lookup, a resume, a new link) is touched on
 * the listener before the connector has proven the key, so knowing a live
 * link's id is not enough to take it over. */
#define _GNU_SOURCE
#include "tcp_impl.h"

#include "common/st_common.h"
#include "crc32c.h"
#include "link_auth.h"

#include <string.h>
#include <sys/socket.h>

static void auth_fill(tcp_auth *a, int step, uint64_t link_id, const uint8_t *nonce, const uint8_t *mac)
{
    memset(a, 0, sizeof *a);
    a->h.type = TF_AUTH;
    a->h.flags = (uint8_t)step;
    a->h.len = (uint32_t)TCP_AUTH_BODY;
    a->h.seq = link_id;
    tcp_frame_seal(&a->h);
    if (nonce)
        memcpy(a->nonce, nonce, sizeof a->nonce);
    if (mac)
        memcpy(a->mac, mac, sizeof a->mac);
    a->crc = st_crc32c(0, a->nonce, sizeof a->nonce + sizeof a->mac);
}

/* Is the header a valid AUTH header of this step for this link? */
static int auth_head_ok(const tcp_frame *h, int step, uint64_t link_id)
{
    return tcp_frame_ok(h) && h->type == TF_AUTH && h->flags == step && h->len == TCP_AUTH_BODY &&
           h->seq == link_id;
}

static int auth_body_ok(const tcp_auth *a)
{
    return a->pad == 0 && a->crc == st_crc32c(0, a->nonce, sizeof a->nonce + sizeof a->mac);
}

static int is_key_bye(const tcp_frame *h) { return tcp_frame_ok(h) && h->type == TF_BYE && (h->flags & TF_BYE_KEY); }

static void send_key_bye(int fd)
{
    tcp_frame bye = {.type = TF_BYE, .flags = TF_BYE_KEY};
    tcp_frame_seal(&bye);
    ssize_t w = send(fd, &bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

/* ---- listener ------------------------------------------------------------------------ */
static int refuse(tcp_listener *l, int fd, const char *peer, const char *why)
{
    send_key_bye(fd);
    l->base.auth_refused++;
    ST_WARN("tcp listener %s: refused a link from %s: %s", l->base.addr, peer, why);
    return ST_EPROTO;
}

int tcp_auth_listen_side(tcp_listener *l, int fd, const tcp_frame *hello, const char *peer, int timeout_ms)
{
    const st_link_opts *o = &l->base.opts;
    int offers = (hello->flags & TF_HELLO_KEY) != 0;
    tcp_auth a;
    /* read the challenge even when refusing: unread bytes would turn our
     * close into a reset, and the peer would miss the reason */
    if (offers && (tcp_io_full(fd, &a, sizeof a, 0, timeout_ms) != ST_OK ||
                   !auth_head_ok(&a.h, TA_CHALLENGE, hello->seq) || !auth_body_ok(&a)))
        return refuse(l, fd, peer, "malformed link-key challenge");
    if (!offers && !o->has_key)
        return ST_OK;
    if (!offers)
        return refuse(l, fd, peer, "it has no link key and this listener requires one");
    if (!o->has_key)
        return refuse(l, fd, peer, "it has a link key and this listener has none");
    uint8_t nc[ST_LINK_NONCE], nl[ST_LINK_NONCE], mac[ST_LINK_MAC];
    memcpy(nc, a.nonce, sizeof nc);
    if (st_link_auth_nonce(nl) != ST_OK ||
        st_link_auth_mac(o->key, ST_LINK_LABEL_LISTENER, nc, nl, hello, sizeof *hello, mac) != ST_OK)
        return refuse(l, fd, peer, st_errmsg());
    auth_fill(&a, TA_PROOF, hello->seq, nl, mac);
    /* its answer: PROVE, or BYE{KEY} when our proof did not match its key.
     * A peer that just goes away (its own timeout) is not a refusal. */
    if (tcp_io_full(fd, &a, sizeof a, 1, timeout_ms) != ST_OK ||
        tcp_io_full(fd, &a.h, sizeof a.h, 0, timeout_ms) != ST_OK) {
        ST_DEBUG("tcp listener %s: %s left during the link-key handshake", l->base.addr, peer);
        return ST_ECONN;
    }
    if (is_key_bye(&a.h))
        return refuse(l, fd, peer, "it holds a different link key (our proof did not match)");
    if (!auth_head_ok(&a.h, TA_PROVE, hello->seq) ||
        tcp_io_full(fd, a.nonce, TCP_AUTH_BODY, 0, timeout_ms) != ST_OK || !auth_body_ok(&a))
        return refuse(l, fd, peer, "malformed link-key answer");
    if (!st_link_auth_verify(o->key, ST_LINK_LABEL_CONNECTOR, nc, nl, hello, sizeof *hello, a.mac))
        return refuse(l, fd, peer, "it did not prove the link key (a different key)");
    return ST_OK;
}

/* ---- connector ----------------------------------------------------------------------- */
int tcp_auth_connect_side(tcp_link *t, int fd, const tcp_frame *hello, int timeout_ms)
{
    st_link *k = &t->base;
    const st_link_opts *o = &k->opts;
    uint8_t nc[ST_LINK_NONCE], nl[ST_LINK_NONCE], mac[ST_LINK_MAC];
    tcp_auth a;
    int rc;
    if (!o->has_key)
        return ST_OK;
    if ((rc = st_link_auth_nonce(nc)) != ST_OK)
        return rc;
    auth_fill(&a, TA_CHALLENGE, hello->seq, nc, NULL);
    if ((rc = tcp_io_full(fd, &a, sizeof a, 1, timeout_ms)) != ST_OK ||
        (rc = tcp_io_full(fd, &a.h, sizeof a.h, 0, timeout_ms)) != ST_OK)
        return rc;
    if (is_key_bye(&a.h))
        return st_link_fail(k, ST_EPROTO, "%s refused the link key (it has none, or a different one)", t->addr);
    if (!auth_head_ok(&a.h, TA_PROOF, hello->seq) ||
        (rc = tcp_io_full(fd, a.nonce, TCP_AUTH_BODY, 0, timeout_ms)) != ST_OK || !auth_body_ok(&a)) {
        if (rc)
            return rc;
        k->stats.frames_rejected++;
        /* an old listener without link keys answers the HELLO itself */
        if (tcp_frame_ok(&a.h) && a.h.type == TF_HELLO)
            return st_link_fail(k, ST_EPROTO, "%s: the peer did not prove the link key (it has none)", t->addr);
        return st_err(ST_EPROTO, "tcp: %s answered the link-key challenge with garbage", t->addr);
    }
    memcpy(nl, a.nonce, sizeof nl);
    if (!st_link_auth_verify(o->key, ST_LINK_LABEL_LISTENER, nc, nl, hello, sizeof *hello, a.mac)) {
        send_key_bye(fd);
        return st_link_fail(k, ST_EPROTO, "%s: the peer did not prove the link key (a different key)", t->addr);
    }
    if ((rc = st_link_auth_mac(o->key, ST_LINK_LABEL_CONNECTOR, nc, nl, hello, sizeof *hello, mac)) != ST_OK)
        return rc;
    auth_fill(&a, TA_PROVE, hello->seq, NULL, mac);
    return tcp_io_full(fd, &a, sizeof a, 1, timeout_ms);
}
