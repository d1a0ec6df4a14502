/* Shared-memory transport: two processes on one host.
 *
 * The connecting side creates one memfd holding two rings (one per
 * direction) and passes it over a unix socket (SCM_RIGHTS). Each ring is a
 * control block (producer and consumer indices on separate cache lines, a
 * futex doorbell, the producer's liveness stamp) and a byte area of
 * records:
 *   record = 64-byte header {magic, crc, len, seq, flags} + payload padded to 64
 * A record that would not fit before the end of the area is preceded by a
 * WRAP marker and written at the start. The producer copies the message in
 * place, then publishes head (release); the consumer hands out pointers
 * into the ring (no copy) and moves tail when messages are released.
 *
 * Flow control: the receiver grants `credits` messages (in its control
 * block); a sender never publishes message seq >= released + credits, and
 * never overwrites unreleased bytes. Wake-up: a consumer about to sleep
 * raises `waiters` and futex-waits on the doorbell of its receive ring; producers (and releases,
 * which free space) bump the doorbell and wake it. Liveness: each side
 * stamps its ring every heartbeat; the unix socket stays open so a dead
 * peer is seen at once (EOF), a stalled one after timeout_ms. */
#define _GNU_SOURCE
#include "link_impl.h"

#include "common/st_common.h"
#include "crc32c.h"
#include "link_auth.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC 0x4d485353u /* "SSHM" */
#define REC_MAGIC 0x52485353u
#define REC_WRAP 1u
#define CTL_SIZE 4096
#define RESTART ((uint64_t)1 << 20) /* see tx_room */

typedef struct ring_ctl {
    _Alignas(64) _Atomic uint64_t head;  /* producer: bytes published */
    _Alignas(64) _Atomic uint64_t tail;  /* consumer: bytes freed */
    _Atomic uint64_t released;           /* consumer: messages released */
    uint32_t credits;                    /* consumer grants, set at handshake */
    _Alignas(64) _Atomic uint32_t doorbell;
    _Atomic uint32_t waiters;    /* this ring's consumer sleeps on this doorbell */
    _Atomic uint32_t space_wait; /* this ring's producer sleeps (on its own receive
                                    ring's doorbell) until space or credits free up */
    _Alignas(64) _Atomic uint64_t stamp_ns; /* producer's last sign of life */
    _Atomic uint32_t closed;                /* producer said goodbye */
} ring_ctl;

typedef struct rec_hdr {
    uint32_t magic, crc; /* crc of bytes 8..32 */
    uint64_t len, seq;
    uint32_t flags, pad;
    uint8_t fill[32];
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == 64, "record header is one cache line");

/* Handshake on the unix socket (C = connector, L = listener). Every
 * message starts with a 24-byte hello whose magic says what it is:
 *   without keys  C: hello{SHM_MAGIC} + the memfd    L: hello{SHM_MAGIC} (its credits, max_msg)
 *   with keys     C: hello{HS_KEYED} + memfd, proof{Nc}
 *                 L: hello{HS_PROOF}, proof{Nl, mac}
 *                 C: hello{HS_PROVE}, proof{mac}     L: hello{SHM_MAGIC} (its credits, max_msg)
 *   refusal       either side: hello{HS_REFUSED}, credits = 1 when it holds a key
 * mac = HMAC-SHA256(key, role label | Nc | Nl | C's first hello)
 * (link_auth.h). L maps the memfd only after C has proven the key. */
#define HS_KEYED 0x4b485353u   /* "SSHK" */
#define HS_PROOF 0x50485353u   /* "SSHP" */
#define HS_PROVE 0x56485353u   /* "SSHV" */
#define HS_REFUSED 0x58485353u /* "SSHX" */

typedef struct hello {
    uint32_t magic, credits;
    uint64_t area, max_msg;
} hello;

typedef struct proof {
    uint8_t nonce[ST_LINK_NONCE];
    uint8_t mac[ST_LINK_MAC];
} proof;

typedef struct shm_link {
    st_link base;
    int sock;            /* unix socket to the peer, kept for death detection */
    st_mr *mr;           /* the shared mapping */
    ring_ctl *tx, *rx;
    uint8_t *tx_area, *rx_area;
    uint64_t area;       /* bytes per ring area */
    uint64_t tx_head;    /* producer's unpublished head */
    uint64_t rx_pos;     /* consumer: next record to deliver */
    uint64_t *rel_end;   /* per delivered message: ring position after it (credits entries) */
    uint64_t delivered, released, rx_seq;
    uint64_t last_stamp_ns, peer_stamp, peer_seen_ns, last_sock_check_ns;
    uint64_t seen_tail, seen_released; /* the consumer's progress at our last transmit pass */
} shm_link;

typedef struct shm_listener {
    st_listener base;
    int fd;
} shm_listener;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static void bell(ring_ctl *c)
{
    atomic_fetch_add(&c->doorbell, 1);
    futex(&c->doorbell, FUTEX_WAKE, 1, NULL);
}

/* After publishing into `c`: wake its consumer if it sleeps. */
static void ring_bell(ring_ctl *c)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&c->waiters))
        bell(c);
}

static int unix_addr(const char *addr, struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(addr);
    if (n == 0 || n >= sizeof sa->sun_path)
        return st_err(ST_EINVAL, "shm: address '%s' is empty or too long", addr);
    memcpy(sa->sun_path, addr, n);
    if (addr[0] == '@')
        sa->sun_path[0] = 0; /* abstract namespace: no file to clean up */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return ST_OK;
}

/* ---- link set-up ------------------------------------------------------------------- */
static shm_link *link_new(const st_link_opts *o, int sock, st_mr *mr, uint64_t area, int is_connector)
{
    shm_link *s = st_xcalloc(1, sizeof *s);
    st_link_base_init(&s->base, &st_shm_ops, o);
    s->sock = sock;
    s->mr = mr;
    s->area = area;
    ring_ctl *a = (ring_ctl *)mr->addr, *b = (ring_ctl *)(mr->addr + CTL_SIZE + area);
    uint8_t *aa = mr->addr + CTL_SIZE, *ba = mr->addr + 2 * CTL_SIZE + area;
    /* ring a: connector -> listener; ring b: listener -> connector */
    s->tx = is_connector ? a : b;
    s->tx_area = is_connector ? aa : ba;
    s->rx = is_connector ? b : a;
    s->rx_area = is_connector ? ba : aa;
    s->rel_end = st_xcalloc(o->credits, sizeof *s->rel_end);
    s->peer_seen_ns = st_now_ns();
    return s;
}

static int shm_listen(const char *addr, const st_link_opts *o, st_listener **out)
{
    struct sockaddr_un sa;
    socklen_t sl;
    int rc = unix_addr(addr, &sa, &sl);
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (addr[0] != '@')
        unlink(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 16) != 0) {
        rc = st_err(ST_EIO, "shm: listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    shm_listener *l = st_xcalloc(1, sizeof *l);
    l->base.ops = &st_shm_ops;
    l->base.opts = *o;
    snprintf(l->base.addr, sizeof l->base.addr, "%s", addr);
    l->fd = fd;
    *out = &l->base;
    return ST_OK;
}

static void shm_listener_close(st_listener *base)
{
    shm_listener *l = (shm_listener *)base;
    close(l->fd);
    if (base->addr[0] != '@')
        unlink(base->addr);
    free(l);
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int n = poll(&p, 1, timeout_ms);
    return n == 1 ? ST_OK : st_err(ST_ETIMEDOUT, "shm: peer did not answer within %d ms", timeout_ms);
}

/* Send or receive exactly n handshake bytes within timeout_ms. */
static int hs_io(int fd, void *buf, size_t n, int is_write, int timeout_ms)
{
    size_t done = 0;
    while (done < n) {
        if (wait_fd(fd, is_write ? POLLOUT : POLLIN, timeout_ms) != ST_OK)
            return ST_ETIMEDOUT;
        ssize_t r = is_write ? send(fd, (uint8_t *)buf + done, n - done, MSG_NOSIGNAL)
                             : recv(fd, (uint8_t *)buf + done, n - done, 0);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            return ST_ECONN;
        if (r > 0)
            done += (size_t)r;
    }
    return ST_OK;
}

static void hs_refuse(int fd, const st_link_opts *o)
{
    hello r = {.magic = HS_REFUSED, .credits = o->has_key ? 1 : 0};
    hs_io(fd, &r, sizeof r, 1, 100);
}

/* Listener's half of the key check (see hello). ST_OK: the peer proved the
 * key, or neither end has one; ST_ECONN: it left mid-way; ST_EPROTO: it
 * was refused, logged and counted, and the error says why. */
static int accept_auth(shm_listener *l, int c, const hello *h)
{
    const st_link_opts *o = &l->base.opts;
    int offers = h->magic == HS_KEYED;
    const char *why = NULL;
    struct ucred cr = {0};
    socklen_t crl = sizeof cr;
    getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &crl);
    proof pc, pl;
    /* read its challenge even when refusing: the refusal should reach it */
    if (offers && hs_io(c, &pc, sizeof pc, 0, 2000) != ST_OK)
        return st_err(ST_ECONN, "shm: a peer left during the link-key handshake on %s", l->base.addr);
    if (!offers && !o->has_key)
        return ST_OK;
    if (!offers)
        why = "it has no link key and this listener requires one";
    else if (!o->has_key)
        why = "it has a link key and this listener has none";
    else if (st_link_auth_nonce(pl.nonce) != ST_OK ||
             st_link_auth_mac(o->key, ST_LINK_LABEL_LISTENER, pc.nonce, pl.nonce, h, sizeof *h, pl.mac) != ST_OK)
        why = "cannot compute a proof";
    else {
        hello m = {.magic = HS_PROOF};
        proof pv;
        if (hs_io(c, &m, sizeof m, 1, 2000) != ST_OK || hs_io(c, &pl, sizeof pl, 1, 2000) != ST_OK ||
            hs_io(c, &m, sizeof m, 0, 2000) != ST_OK ||
            (m.magic == HS_PROVE && hs_io(c, &pv, sizeof pv, 0, 2000) != ST_OK))
            return st_err(ST_ECONN, "shm: a peer left during the link-key handshake on %s", l->base.addr);
        if (m.magic == HS_REFUSED)
            why = "it holds a different link key (our proof did not match)";
        else if (m.magic != HS_PROVE ||
                 !st_link_auth_verify(o->key, ST_LINK_LABEL_CONNECTOR, pc.nonce, pl.nonce, h, sizeof *h, pv.mac))
            why = "it did not prove the link key (a different key)";
    }
    if (!why)
        return ST_OK;
    hs_refuse(c, o);
    l->base.auth_refused++;
    ST_WARN("shm listener %s: refused a link from pid %d (uid %u): %s", l->base.addr, (int)cr.pid,
            (unsigned)cr.uid, why);
    return st_err(ST_EPROTO, "shm: refused a link on %s from pid %d: %s", l->base.addr, (int)cr.pid, why);
}

static int shm_accept(st_listener *base, int timeout_ms, st_link **out)
{
    shm_listener *l = (shm_listener *)base;
    if (wait_fd(l->fd, POLLIN, timeout_ms) != ST_OK)
        return st_err(ST_ETIMEDOUT, "shm: no connection on %s within %d ms", base->addr, timeout_ms);
    int c = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return st_err(ST_EIO, "shm: accept: %s", strerror(errno));
    hello h;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec v = {&h, sizeof h};
    struct msghdr mh = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    int memfd = -1;
    if (wait_fd(c, POLLIN, 2000) == ST_OK && recvmsg(c, &mh, MSG_CMSG_CLOEXEC) == (ssize_t)sizeof h) {
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&memfd, CMSG_DATA(cm), sizeof memfd);
    }
    /* The connector sized the rings for its max_msg; both ends send at most
     * the smaller of the two max_msg values, and at most half a ring less a
     * record header, so that a record that must wrap always fits once the
     * ring has drained (see tx_room). Larger sends are ST_ERANGE at the
     * sender instead of a failed link. */
    st_link_opts o = base->opts;
    if (memfd < 0 || (h.magic != SHM_MAGIC && h.magic != HS_KEYED) || h.area < 2 * (64 + 128) ||
        h.area > ((uint64_t)1 << 40) || h.area % 64 || h.credits == 0 || h.max_msg == 0) {
        if (memfd >= 0)
            close(memfd);
        close(c);
        return st_err(ST_EPROTO, "shm: bad handshake from a connecting peer");
    }
    o.max_msg = ST_MIN(o.max_msg, ST_MIN(h.max_msg, h.area / 2 - 128));
    hello reply = {SHM_MAGIC, o.credits, h.area, o.max_msg};
    int rc = accept_auth(l, c, &h);
    if (rc) {
        close(memfd);
        close(c);
        return rc;
    }
    st_mr *mr;
    rc = st_mr_import(memfd, 2 * (CTL_SIZE + h.area), &mr);
    if (rc) {
        close(c);
        return rc;
    }
    shm_link *s = link_new(&o, c, mr, h.area, 0);
    s->rx->credits = o.credits;
    if (hs_io(c, &reply, sizeof reply, 1, 2000) != ST_OK) {
        st_link_close(&s->base);
        return st_err(ST_ECONN, "shm: peer left during the handshake");
    }
    *out = &s->base;
    return ST_OK;
}

/* Connector's half (see hello), after its first hello went out; leaves
 * the listener's final hello (its credits and max_msg) in *reply. Errors
 * name the address. */
static int connect_auth(int c, const char *addr, const st_link_opts *o, const hello *h, const proof *pc,
                        hello *reply, int ms)
{
    int rc = hs_io(c, reply, sizeof *reply, 0, ms);
    if (rc)
        return st_err(rc, "shm: handshake with %s failed", addr);
    if (reply->magic == HS_REFUSED) {
        if (!o->has_key)
            return st_err(ST_EPROTO, "shm: %s refused the link: it requires a link key and this end has none", addr);
        return st_err(ST_EPROTO, "shm: %s refused the link key (it has none, or a different one)", addr);
    }
    if (o->has_key) {
        proof pl, pv;
        if (reply->magic != HS_PROOF) {
            hs_refuse(c, o);
            return st_err(ST_EPROTO, "shm: %s: the peer did not prove the link key (it has none)", addr);
        }
        if ((rc = hs_io(c, &pl, sizeof pl, 0, ms)))
            return st_err(rc, "shm: handshake with %s failed", addr);
        if (!st_link_auth_verify(o->key, ST_LINK_LABEL_LISTENER, pc->nonce, pl.nonce, h, sizeof *h, pl.mac)) {
            hs_refuse(c, o);
            return st_err(ST_EPROTO, "shm: %s: the peer did not prove the link key (a different key)", addr);
        }
        hello m = {.magic = HS_PROVE};
        memset(&pv, 0, sizeof pv);
        if ((rc = st_link_auth_mac(o->key, ST_LINK_LABEL_CONNECTOR, pc->nonce, pl.nonce, h, sizeof *h, pv.mac)) ||
            (rc = hs_io(c, &m, sizeof m, 1, ms)) || (rc = hs_io(c, &pv, sizeof pv, 1, ms)) ||
            (rc = hs_io(c, reply, sizeof *reply, 0, ms)))
            return st_err(rc, "shm: handshake with %s failed", addr);
        if (reply->magic == HS_REFUSED)
            return st_err(ST_EPROTO, "shm: %s refused the link key (it has a different one)", addr);
    }
    if (reply->magic != SHM_MAGIC || reply->max_msg == 0)
        return st_err(ST_EPROTO, "shm: %s answered the handshake with garbage", addr);
    return ST_OK;
}

static int shm_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out)
{
    struct sockaddr_un sa;
    socklen_t sl;
    int rc = unix_addr(addr, &sa, &sl);
    if (rc)
        return rc;
    uint64_t deadline = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
    int c;
    for (;;) { /* the listener may not be up yet */
        c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c >= 0 && connect(c, (struct sockaddr *)&sa, sl) == 0)
            break;
        rc = st_err(ST_ECONN, "shm: connect %s: %s", addr, strerror(errno));
        if (c >= 0)
            close(c);
        if (timeout_ms >= 0 && st_now_ns() >= deadline)
            return rc;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    /* whole 2 MiB pages per ring (control block + area), so that the
     * mapping can be hugepage-backed */
    uint64_t area = ST_ALIGN_UP((uint64_t)o->rx_bytes + CTL_SIZE, (uint64_t)2 << 20) - CTL_SIZE;
    st_mr *mr;
    if ((rc = st_mr_alloc(2 * (CTL_SIZE + area), ST_MR_SHARED | ST_MR_HUGEPAGE, &mr)) != ST_OK) {
        close(c);
        return rc;
    }
    shm_link *s = link_new(o, c, mr, area, 1);
    s->rx->credits = o->credits;
    hello h = {o->has_key ? HS_KEYED : SHM_MAGIC, o->credits, area, o->max_msg}, reply;
    proof pc;
    memset(&pc, 0, sizeof pc);
    if (o->has_key && (rc = st_link_auth_nonce(pc.nonce)) != ST_OK) {
        st_link_close(&s->base);
        return rc;
    }
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec v = {&h, sizeof h};
    struct msghdr mh = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &mr->fd, sizeof(int));
    int ms = timeout_ms < 0 ? 5000 : timeout_ms;
    if (sendmsg(c, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof h ||
        (o->has_key && hs_io(c, &pc, sizeof pc, 1, ms) != ST_OK)) {
        st_link_close(&s->base);
        return st_err(ST_ECONN, "shm: handshake with %s failed", addr);
    }
    if ((rc = connect_auth(c, addr, o, &h, &pc, &reply, ms)) != ST_OK) {
        st_link_close(&s->base); /* closes c too */
        return rc;
    }
    if (reply.max_msg < s->base.opts.max_msg) /* what the listener agreed to */
        s->base.opts.max_msg = reply.max_msg;
    *out = &s->base;
    return ST_OK;
}

/* ---- transmit: copy queued messages into the ring ------------------------------------ */
/* Room for a record of `need` bytes at the producer head: writes the WRAP
 * marker if the record must start over at the beginning, and returns the
 * record's head position in *pos; 0 when the consumer has not freed enough. */
static int tx_room(shm_link *s, uint64_t need, uint64_t tail, uint64_t *pos)
{
    uint64_t h = s->tx_head, off = h % s->area;
    uint64_t wrap = off + need > s->area ? s->area - off : 0;
    /* When the consumer has released everything, start over at the front
     * once past RESTART: a link that is not streaming then keeps reusing the
     * same few pages (hot in cache, faulted in once) instead of walking the
     * whole area and faulting fresh pages all the way. */
    if (!wrap && tail == h && off >= RESTART && need <= off)
        wrap = s->area - off;
    if (h + wrap + need - tail > s->area)
        return 0;
    if (wrap) {
        rec_hdr *w = (rec_hdr *)(s->tx_area + off);
        w->magic = REC_MAGIC;
        w->flags = REC_WRAP;
        w->len = 0;
        w->seq = 0;
        w->crc = st_crc32c(0, &w->len, 24);
        s->tx_head = h + wrap; /* unpublished until the record after it is */
    }
    *pos = s->tx_head;
    return 1;
}

static void rec_seal(st_link *k, rec_hdr *r, uint64_t len, uint64_t seq)
{
    r->magic = REC_MAGIC;
    r->len = len;
    r->seq = seq;
    r->flags = 0;
    r->pad = 0;
    r->crc = st_crc32c(0, &r->len, 24);
    if (k->corrupt_next) {
        r->crc ^= 1;
        k->corrupt_next = 0;
    }
}

static int shm_progress(st_link *k)
{
    shm_link *s = (shm_link *)k;
    uint64_t now = st_now_ns();
    /* liveness: stamp ours, check theirs, and look at the socket now and then */
    if (now - s->last_stamp_ns > (uint64_t)k->opts.heartbeat_ms * 250000ull) {
        atomic_store_explicit(&s->tx->stamp_ns, now, memory_order_relaxed);
        s->last_stamp_ns = now;
        uint64_t ps = atomic_load_explicit(&s->rx->stamp_ns, memory_order_relaxed);
        if (ps != s->peer_stamp)
            s->peer_stamp = ps, s->peer_seen_ns = now;
        else if (now - s->peer_seen_ns > (uint64_t)k->opts.timeout_ms * 1000000ull)
            return st_link_fail(k, ST_ECONN, "peer silent for %u ms", k->opts.timeout_ms);
        char b;
        ssize_t r = recv(s->sock, &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return st_link_fail(k, ST_ECONN, "peer process is gone");
    }
    if (atomic_load_explicit(&s->rx->closed, memory_order_acquire))
        return st_link_fail(k, ST_ECONN, "peer closed the link");
    s->seen_released = atomic_load_explicit(&s->tx->released, memory_order_acquire);
    uint64_t credit_end = s->seen_released + s->tx->credits;
    uint64_t tail = s->seen_tail = atomic_load_explicit(&s->tx->tail, memory_order_acquire);
    uint64_t seq = k->sq_acked, published = 0;
    for (; seq < k->sq_tail && seq < credit_end; seq++) {
        st_sq_entry *e = st_sq_at(k, seq);
        uint64_t need = sizeof(rec_hdr) + ST_ALIGN_UP(e->len, 64), h;
        if (!tx_room(s, need, tail, &h))
            break; /* full: the consumer has not released enough */
        rec_hdr *r = (rec_hdr *)(s->tx_area + h % s->area);
        uint8_t *dst = (uint8_t *)(r + 1);
        for (int i = 0; i < e->n; i++) {
            memcpy(dst, e->iov[i].base, e->iov[i].len);
            dst += e->iov[i].len;
        }
        rec_seal(k, r, e->len, seq);
        s->tx_head = h + need;
        k->stats.msgs_tx++;
        k->stats.bytes_tx += e->len;
        published++;
    }
    if (published) {
        atomic_store_explicit(&s->tx->head, s->tx_head, memory_order_release);
        st_link_ack(k, seq); /* copied: the sender's buffers are free */
        ring_bell(s->tx);
    }
    return ST_OK;
}

/* In place: the reservation is the payload area of the next record. Only
 * when no copied send is queued ahead of it, so order is kept. */
static int shm_reserve(st_link *k, size_t len, void **buf)
{
    shm_link *s = (shm_link *)k;
    uint64_t h, tail = atomic_load_explicit(&s->tx->tail, memory_order_acquire);
    uint64_t credit_end = atomic_load_explicit(&s->tx->released, memory_order_acquire) + s->tx->credits;
    if (k->sq_acked != k->sq_tail || k->sq_tail >= credit_end || k->sq_tail - k->sq_head >= k->opts.sq_depth ||
        !tx_room(s, sizeof(rec_hdr) + ST_ALIGN_UP(len, 64), tail, &h))
        return st_err(ST_EAGAIN, "shm reserve: no room now");
    *buf = s->tx_area + h % s->area + sizeof(rec_hdr);
    return ST_OK;
}

static int shm_commit(st_link *k, size_t len, uint64_t cookie)
{
    shm_link *s = (shm_link *)k;
    rec_hdr *r = (rec_hdr *)(s->tx_area + s->tx_head % s->area);
    uint64_t seq = k->sq_tail;
    st_sq_entry *e = st_sq_at(k, seq);
    memset(e, 0, sizeof *e);
    e->cookie = cookie;
    e->len = len;
    k->sq_tail++;
    rec_seal(k, r, len, seq);
    s->tx_head += sizeof(rec_hdr) + ST_ALIGN_UP(len, 64);
    k->stats.msgs_tx++;
    k->stats.bytes_tx += len;
    atomic_store_explicit(&s->tx->head, s->tx_head, memory_order_release);
    st_link_ack(k, k->sq_tail);
    ring_bell(s->tx);
    return ST_OK;
}

/* ---- receive ------------------------------------------------------------------------------- */
static int shm_recv(st_link *k, st_msg *out)
{
    shm_link *s = (shm_link *)k;
    for (;;) {
        uint64_t head = atomic_load_explicit(&s->rx->head, memory_order_acquire);
        if (s->rx_pos == head || s->delivered - s->released >= k->opts.credits)
            return k->err ? st_err(k->err, "shm link: %s", k->errmsg) : ST_EAGAIN;
        uint64_t off = s->rx_pos % s->area;
        const rec_hdr *r = (const rec_hdr *)(s->rx_area + off);
        rec_hdr h; /* one snapshot: the peer could rewrite shared memory after we checked it */
        memcpy(&h, r, sizeof h);
        uint64_t avail = head - s->rx_pos;
        if (avail < sizeof h || h.magic != REC_MAGIC || h.crc != st_crc32c(0, &h.len, 24)) {
            k->stats.frames_rejected++;
            return st_link_fail(k, ST_EPROTO, "corrupt record header in the shared ring");
        }
        if (h.flags & REC_WRAP) {
            /* a producer wraps only from inside the area, and publishes the
             * marker together with the record after it: anything else (a
             * marker at offset 0 would send us around the ring for ever)
             * is a broken or hostile peer */
            if (off == 0 || avail <= s->area - off) {
                k->stats.frames_rejected++;
                return st_link_fail(k, ST_EPROTO, "wrap marker at ring offset %llu with %llu bytes published",
                                    (unsigned long long)off, (unsigned long long)avail);
            }
            s->rx_pos += s->area - off;
            continue;
        }
        uint64_t need = sizeof h + ST_ALIGN_UP(h.len, 64);
        if (h.len == 0 || h.len > k->opts.max_msg || need > avail || off + need > s->area || h.seq != s->rx_seq) {
            k->stats.frames_rejected++;
            return st_link_fail(k, ST_EPROTO, "malformed record (len %llu, seq %llu) in the shared ring",
                                (unsigned long long)h.len, (unsigned long long)h.seq);
        }
        out->data = (const uint8_t *)(r + 1);
        out->len = h.len;
        out->seq = h.seq;
        s->rx_pos += need;
        s->rel_end[s->delivered % k->opts.credits] = s->rx_pos;
        s->delivered++;
        s->rx_seq++;
        k->stats.msgs_rx++;
        k->stats.bytes_rx += h.len;
        return ST_OK;
    }
}

static int shm_release(st_link *k, const st_msg *m)
{
    shm_link *s = (shm_link *)k;
    if (s->released == s->delivered || m->seq != s->released)
        return st_err(ST_EINVAL, "shm link: release of message %llu out of order (next is %llu)",
                      (unsigned long long)m->seq, (unsigned long long)s->released);
    atomic_store_explicit(&s->rx->tail, s->rel_end[s->released % k->opts.credits], memory_order_release);
    s->released++;
    atomic_store_explicit(&s->rx->released, s->released, memory_order_release);
    /* a producer waiting for space or credits sleeps on its receive ring,
     * which is our transmit ring */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&s->rx->space_wait))
        bell(s->tx);
    return ST_OK;
}

/* ---- blocking ------------------------------------------------------------------------------ */
/* A side sleeps on the doorbell of its receive ring. Its peer rings it
 * after publishing there (when `waiters` is up) and after releasing space in
 * the other ring (when `space_wait` is up: sends are queued for lack of
 * room or credits); st_link_wake rings it from this process. The ticket
 * (doorbell value read after raising the flags) makes a ring between
 * prepare and wait return at once instead of being lost. */
static uint64_t shm_wait_prepare(st_link *k)
{
    shm_link *s = (shm_link *)k;
    atomic_store(&s->rx->waiters, 1);
    if (k->sq_acked < k->sq_tail)
        atomic_store(&s->tx->space_wait, 1);
    return atomic_load(&s->rx->doorbell);
}

static int shm_wait(st_link *k, uint64_t ticket, int timeout_ms)
{
    shm_link *s = (shm_link *)k;
    int ms = (int)k->opts.heartbeat_ms / 4 + 1; /* liveness stamps keep going while idle */
    if (timeout_ms >= 0 && timeout_ms < ms)
        ms = timeout_ms;
    int data = atomic_load(&s->rx->head) != s->rx_pos && s->delivered - s->released < k->opts.credits;
    int room = k->sq_acked < k->sq_tail && (atomic_load(&s->tx->tail) != s->seen_tail ||
                                           atomic_load(&s->tx->released) != s->seen_released);
    if (!data && !room) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        futex(&s->rx->doorbell, FUTEX_WAIT, (uint32_t)ticket, &ts);
    }
    atomic_store(&s->rx->waiters, 0);
    atomic_store(&s->tx->space_wait, 0);
    return ST_OK;
}

static void shm_wake(st_link *k)
{
    shm_link *s = (shm_link *)k;
    atomic_fetch_add(&s->rx->doorbell, 1);
    futex(&s->rx->doorbell, FUTEX_WAKE, 1, NULL);
}

static void shm_close(st_link *k)
{
    shm_link *s = (shm_link *)k;
    if (s->tx) {
        atomic_store(&s->tx->closed, 1);
        ring_bell(s->tx);
    }
    if (s->sock >= 0)
        close(s->sock);
    st_mr_free(s->mr);
    free(s->rel_end);
    st_link_base_free(k);
    free(s);
}

const st_transport_ops st_shm_ops = {
    .name = "shm",
    .listen = shm_listen,
    .accept = shm_accept,
    .listener_close = shm_listener_close,
    .connect = shm_connect,
    .progress = shm_progress,
    .recv = shm_recv,
    .release = shm_release,
    .wait_prepare = shm_wait_prepare,
    .wait = shm_wait,
    .wake = shm_wake,
    .close = shm_close,
    .debug_drop = NULL,
    .reserve = shm_reserve,
    .commit = shm_commit,
};
