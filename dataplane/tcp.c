/* TCP transport: framing, non-blocking I/O, acknowledgements, credits,
 * heartbeats and liveness (connection set-up lives in tcp_conn.c).
 *
 * Sending writes frame headers and the caller's pieces with one sendmsg per
 * batch of messages, straight from the caller's memory: no copy. Receiving
 * reads in 64 KiB bites into a staging buffer; a payload's first bytes are
 * copied from there into the receive region, and the rest of a large
 * payload is read (readv) directly into its place in the region. */
#define _GNU_SOURCE
#include "tcp_impl.h"

#include "common/st_common.h"
#include "crc32c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ACK_DELAY_NS 50000ull /* owe an ack at most this long when no data flows back */
#define TX_IOV 64

/* ---- frames ---------------------------------------------------------------------- */
void tcp_frame_seal(tcp_frame *f)
{
    f->magic = TCP_MAGIC;
    f->pad0 = 0;
    f->pad1 = 0;
    f->crc = st_crc32c(0, f, 40);
}

int tcp_frame_ok(const tcp_frame *f) { return f->magic == TCP_MAGIC && f->crc == st_crc32c(0, f, 40); }

static void frame_acks(tcp_link *t, tcp_frame *f)
{
    f->rcvd = t->rx_next;
    f->released = t->rx_released;
    t->sent_rcvd = t->rx_next;
    t->sent_released = t->rx_released;
    t->ack_due_ns = 0;
}

void tcp_fill_hello(tcp_link *t, tcp_frame *f, int resume)
{
    memset(f, 0, sizeof *f);
    f->type = TF_HELLO;
    f->flags = (uint8_t)((resume ? TF_HELLO_RESUME : 0) | (t->base.opts.has_key ? TF_HELLO_KEY : 0));
    f->credits = t->base.opts.credits;
    f->seq = t->link_id;
    frame_acks(t, f);
    tcp_frame_seal(f);
}

/* ---- slow-link test hook ------------------------------------------------------------- */
/* STRAIT_LINK_DELAY_MS=N (0 .. 60000), read once per link: every data
 * message waits N ms between being queued and being written, as on a long
 * path. Anything else in the variable is ignored with a warning. */
static uint64_t delay_from_env(void)
{
    const char *s = getenv("STRAIT_LINK_DELAY_MS");
    if (!s || !*s)
        return 0;
    char *end;
    long ms = strtol(s, &end, 10);
    if (*end || ms < 0 || ms > 60000) {
        ST_WARN("STRAIT_LINK_DELAY_MS='%s' is not a number of milliseconds in [0, 60000]: ignored", s);
        return 0;
    }
    return (uint64_t)ms * 1000000ull;
}

/* Give messages queued since the last call their due time. */
static void delay_stamp(tcp_link *t, uint64_t now)
{
    st_link *k = &t->base;
    for (; t->stamped < k->sq_tail; t->stamped++)
        t->due_ns[t->stamped & k->sq_mask] = now + t->delay_ns;
}

/* May message seq be written at `now`? */
static int delay_due(const tcp_link *t, uint64_t seq, uint64_t now)
{
    return !t->delay_ns || (seq < t->stamped && t->due_ns[seq & t->base.sq_mask] <= now);
}

/* ---- link lifecycle ------------------------------------------------------------------ */
tcp_link *tcp_link_new(const st_link_opts *o, int is_client)
{
    tcp_link *t = st_xcalloc(1, sizeof *t);
    st_link_base_init(&t->base, &st_tcp_ops, o);
    t->delay_ns = delay_from_env();
    if (t->delay_ns)
        t->due_ns = st_xcalloc(o->sq_depth, sizeof *t->due_ns);
    t->fd = -1;
    t->is_client = is_client;
    t->txh = st_xaligned(sizeof(tcp_frame) * o->sq_depth);
    t->stage = st_xaligned(TCP_STAGE);
    t->slots = st_xcalloc(o->credits, sizeof *t->slots);
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st_mr_alloc(o->rx_bytes, ST_MR_HUGEPAGE, &t->rx_mr) != ST_OK || t->epfd < 0 || t->evfd < 0) {
        st_link_fail(&t->base, ST_ENOMEM, "cannot set up receive region or epoll: %s", st_errmsg());
        return t;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->evfd};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev);
    return t;
}

int tcp_attach(tcp_link *t, int fd, const tcp_frame *h)
{
    st_link *k = &t->base;
    if (h->rcvd < k->sq_acked || h->rcvd > k->sq_tail || h->released > h->rcvd)
        return st_link_fail(k, ST_EPROTO, "peer resumed at message %llu, but %llu..%llu are unacknowledged",
                            (unsigned long long)h->rcvd, (unsigned long long)k->sq_acked,
                            (unsigned long long)k->sq_tail);
    if (t->fd >= 0)
        tcp_detach(t, "replaced by a newer connection");
    if (t->tx_seq > h->rcvd)
        k->stats.retransmits += t->tx_seq - h->rcvd;
    st_link_ack(k, h->rcvd);
    t->tx_seq = h->rcvd;
    t->tx_off = 0;
    t->ctrl_len = t->ctrl_off = 0;
    t->peer_released = h->released;
    t->peer_credits = h->credits;
    t->have_hdr = t->have_slot = 0; /* a half-received frame is resent whole */
    t->stage_off = t->stage_len = 0;
    t->fd = fd;
    t->last_rx_ns = t->last_tx_ns = st_now_ns();
    if (t->lis_in_ep) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, t->lis->fd, NULL);
        t->lis_in_ep = 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = fd};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
    return ST_OK;
}

void tcp_detach(tcp_link *t, const char *why)
{
    if (t->fd < 0)
        return;
    ST_DEBUG("tcp link %016llx: connection lost (%s)", (unsigned long long)t->link_id, why);
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, t->fd, NULL);
    close(t->fd);
    t->fd = -1;
    t->retry_ns = 0;
    if (t->lis && t->lis->fd >= 0 && !t->lis_in_ep) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->lis->fd};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lis->fd, &ev) == 0)
            t->lis_in_ep = 1;
    }
}

/* ---- transmit --------------------------------------------------------------------------- */
static void queue_ctrl(tcp_link *t, int type)
{
    memset(&t->ctrl, 0, sizeof t->ctrl);
    t->ctrl.type = (uint8_t)type;
    frame_acks(t, &t->ctrl);
    tcp_frame_seal(&t->ctrl);
    if (t->base.corrupt_next) {
        t->ctrl.seq ^= 0x10; /* after sealing: the CRC no longer matches */
        t->base.corrupt_next = 0;
    }
    t->ctrl_len = sizeof t->ctrl;
    t->ctrl_off = 0;
}

static size_t frame_bytes(st_link *k, uint64_t seq) { return sizeof(tcp_frame) + st_sq_at(k, seq)->len; }

/* Gather as many whole frames as fit in one writev, starting mid-frame if
 * the last write stopped there. Returns the iovec count. */
static int gather(tcp_link *t, struct iovec *v, uint64_t *limit, uint64_t now)
{
    st_link *k = &t->base;
    int n = 0;
    if (t->ctrl_len) {
        v[n++] = (struct iovec){(uint8_t *)&t->ctrl + t->ctrl_off, t->ctrl_len - t->ctrl_off};
        return n; /* a control frame goes alone: data frames wait for it */
    }
    uint64_t credit_end = t->peer_released + t->peer_credits;
    uint64_t seq = t->tx_seq;
    size_t skip = t->tx_off;
    for (; seq < k->sq_tail && n + 1 + ST_LINK_IOV_MAX <= TX_IOV; seq++, skip = 0) {
        if (skip == 0 && (seq >= credit_end || !delay_due(t, seq, now)))
            break;
        st_sq_entry *e = st_sq_at(k, seq);
        tcp_frame *h = &t->txh[seq & k->sq_mask];
        if (skip == 0) { /* frame not started: (re)build its header now */
            memset(h, 0, sizeof *h);
            h->type = TF_DATA;
            h->len = (uint32_t)e->len;
            h->seq = seq;
            frame_acks(t, h);
            tcp_frame_seal(h);
            if (k->corrupt_next) {
                h->len ^= 0x100;
                k->corrupt_next = 0;
            }
        }
        size_t off = skip;
        if (off < sizeof *h)
            v[n++] = (struct iovec){(uint8_t *)h + off, sizeof *h - off}, off = 0;
        else
            off -= sizeof *h;
        for (int i = 0; i < e->n; i++) {
            if (off >= e->iov[i].len) {
                off -= e->iov[i].len;
                continue;
            }
            v[n++] = (struct iovec){(uint8_t *)e->iov[i].base + off, e->iov[i].len - off};
            off = 0;
        }
    }
    *limit = seq;
    return n;
}

/* Write until the socket is full or nothing is left; ST_OK, or 1 when the
 * connection broke (detached). */
static int tx(tcp_link *t, uint64_t now)
{
    st_link *k = &t->base;
    for (;;) {
        if (!t->ctrl_len && t->tx_off == 0) {
            int credit_ok = t->tx_seq < k->sq_tail && t->tx_seq < t->peer_released + t->peer_credits &&
                            delay_due(t, t->tx_seq, now);
            int ack_owed = t->ack_due_ns && now >= t->ack_due_ns;
            int ack_big = t->rx_released - t->sent_released >= ST_MAX(1u, k->opts.credits / 4);
            if (!credit_ok && (ack_owed || ack_big))
                queue_ctrl(t, TF_ACK);
            else if (!credit_ok && now - t->last_tx_ns >= (uint64_t)k->opts.heartbeat_ms * 1000000ull)
                queue_ctrl(t, TF_HB);
        }
        struct iovec v[TX_IOV];
        uint64_t limit = t->tx_seq;
        int n = gather(t, v, &limit, now);
        if (n == 0)
            return ST_OK;
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(t->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT); /* writev that cannot raise SIGPIPE */
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return ST_OK;
            tcp_detach(t, strerror(errno));
            return 1;
        }
        t->last_tx_ns = now;
        size_t left = (size_t)w;
        if (t->ctrl_len) {
            t->ctrl_off += left;
            if (t->ctrl_off == t->ctrl_len)
                t->ctrl_len = t->ctrl_off = 0;
            continue;
        }
        while (left && t->tx_seq < limit) {
            size_t rest = frame_bytes(k, t->tx_seq) - t->tx_off;
            if (left < rest) {
                t->tx_off += left;
                break;
            }
            left -= rest;
            k->stats.msgs_tx++;
            k->stats.bytes_tx += st_sq_at(k, t->tx_seq)->len;
            t->tx_seq++;
            t->tx_off = 0;
        }
    }
}

/* ---- receive ---------------------------------------------------------------------------- */
/* Space for a payload of len bytes in the receive region (64-byte aligned,
 * contiguous: skip to the start when it would wrap). 0 when full. */
static int ring_alloc(tcp_link *t, size_t len, uint64_t *pos)
{
    uint64_t cap = t->rx_mr->len, need = ST_ALIGN_UP(len, 64), p = t->ring_head;
    /* wrap when it does not fit, and also when everything was released and
     * we are past 1 MiB: an idle-ish link keeps reusing the same warm pages */
    if (p % cap + need > cap || (t->ring_tail == p && p % cap >= ((uint64_t)1 << 20) && need <= p % cap))
        p += cap - p % cap;
    if (p + need - t->ring_tail > cap)
        return 0;
    *pos = p;
    return 1;
}

static int on_header(tcp_link *t)
{
    st_link *k = &t->base;
    tcp_frame *h = &t->rh;
    if (!tcp_frame_ok(h)) {
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "corrupt frame header from peer (bad magic or checksum)");
    }
    if (h->released > h->rcvd || h->rcvd > k->sq_tail) {
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "peer acknowledged %llu messages of %llu sent",
                            (unsigned long long)h->rcvd, (unsigned long long)k->sq_tail);
    }
    st_link_ack(k, h->rcvd);
    if (h->released > t->peer_released)
        t->peer_released = h->released;
    switch (h->type) {
    case TF_ACK:
    case TF_HB: return ST_OK;
    case TF_BYE: return st_link_fail(k, ST_ECONN, "peer closed the link");
    case TF_DATA:
        if (h->len == 0 || h->len > k->opts.max_msg) {
            k->stats.frames_rejected++;
            return st_link_fail(k, ST_EPROTO, "peer sent a %u-byte message (max %zu)", h->len, k->opts.max_msg);
        }
        if (h->seq > t->rx_next || (h->seq == t->rx_next && t->rx_next - t->rx_released >= k->opts.credits)) {
            k->stats.frames_rejected++;
            return st_link_fail(k, ST_EPROTO, "peer sent message %llu out of order or beyond its credits",
                                (unsigned long long)h->seq);
        }
        t->have_hdr = 1;
        t->have_slot = 0;
        t->rx_got = 0;
        t->rx_big = h->len >= TCP_BIG;
        return ST_OK;
    default:
        k->stats.frames_rejected++;
        return st_link_fail(k, ST_EPROTO, "unexpected frame type %u", h->type);
    }
}

static void on_payload_done(tcp_link *t)
{
    st_link *k = &t->base;
    t->have_hdr = t->have_slot = 0;
    if (t->rh.seq < t->rx_next) { /* already have it: a resend after reconnect */
        k->stats.retransmits++;
        return;
    }
    uint64_t need = ST_ALIGN_UP((uint64_t)t->rh.len, 64);
    tcp_slot *s = &t->slots[t->rx_next % k->opts.credits];
    *s = (tcp_slot){.pos = t->rx_pos, .end = t->rx_pos + need, .seq = t->rh.seq, .len = t->rh.len};
    t->ring_head = s->end;
    t->rx_next++;
    k->stats.msgs_rx++;
    k->stats.bytes_rx += t->rh.len;
    if (!t->ack_due_ns)
        t->ack_due_ns = st_now_ns() + ACK_DELAY_NS;
}

/* Read until the socket is empty or the receive region is full. ST_OK,
 * 1 when the connection broke, or a link error. */
static int rx(tcp_link *t, uint64_t now)
{
    for (;;) {
        size_t avail = t->stage_len - t->stage_off;
        if (!t->have_hdr) {
            if (avail >= sizeof(tcp_frame)) {
                memcpy(&t->rh, t->stage + t->stage_off, sizeof t->rh);
                t->stage_off += sizeof t->rh;
                int rc = on_header(t);
                if (rc)
                    return rc;
                continue;
            }
            memmove(t->stage, t->stage + t->stage_off, avail);
            t->stage_off = 0;
            t->stage_len = avail;
            /* after a big payload expect another: read just its header, so
             * that the payload goes straight into place instead of via here */
            size_t want = t->rx_big ? sizeof(tcp_frame) - avail : TCP_STAGE - avail;
            ssize_t r = read(t->fd, t->stage + avail, want);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                tcp_detach(t, r == 0 ? "peer closed the connection" : strerror(errno));
                return 1;
            }
            if (r < 0)
                return ST_OK;
            t->stage_len += (size_t)r;
            t->last_rx_ns = now;
            continue;
        }
        if (!t->have_slot) {
            if (!ring_alloc(t, t->rh.len, &t->rx_pos)) {
                t->last_rx_ns = now; /* stalled by our own consumer, not by the peer */
                return ST_OK;
            }
            t->have_slot = 1;
        }
        uint8_t *dst = t->rx_mr->addr + t->rx_pos % t->rx_mr->len;
        size_t need = t->rh.len - t->rx_got, take = ST_MIN(avail, need);
        memcpy(dst + t->rx_got, t->stage + t->stage_off, take);
        t->rx_got += take;
        t->stage_off += take;
        if (t->rx_got == t->rh.len) {
            on_payload_done(t);
            continue;
        }
        /* the rest of the payload straight into place, what follows into the stage */
        t->stage_off = t->stage_len = 0;
        struct iovec v[2] = {{dst + t->rx_got, t->rh.len - t->rx_got},
                             {t->stage, t->rx_big ? sizeof(tcp_frame) : TCP_STAGE}};
        ssize_t r = readv(t->fd, v, 2);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            tcp_detach(t, r == 0 ? "peer closed the connection" : strerror(errno));
            return 1;
        }
        if (r < 0)
            return ST_OK;
        t->last_rx_ns = now;
        size_t got = (size_t)r, into_payload = ST_MIN(got, v[0].iov_len);
        t->rx_got += into_payload;
        t->stage_len = got - into_payload;
        if (t->rx_got == t->rh.len)
            on_payload_done(t);
    }
}

/* ---- progress ------------------------------------------------------------------------------- */
static int tcp_progress(st_link *k)
{
    tcp_link *t = (tcp_link *)k;
    uint64_t now = st_now_ns();
    uint64_t timeout_ns = (uint64_t)k->opts.timeout_ms * 1000000ull;
    if (t->delay_ns)
        delay_stamp(t, now);
    if (t->fd < 0) {
        if (t->is_client) {
            if (now >= t->retry_ns) {
                if (tcp_reconnect(t, tcp_redial_ms(t)) != ST_OK)
                    t->retry_ns = st_now_ns() + 20000000ull; /* next try in 20 ms */
            }
        } else if (t->lis) {
            tcp_lis_pump(t->lis, 0);
        }
        if (k->err)
            return k->err;
        if (t->fd < 0) {
            if (now - t->last_rx_ns > timeout_ns)
                return st_link_fail(k, ST_ECONN, "peer unreachable for %u ms", k->opts.timeout_ms);
            return ST_OK;
        }
        k->stats.reconnects++;
        /* the handshake took time and stamped last_rx_ns after `now`: an
         * older `now` would make the new connection look silent for ages
         * (unsigned difference) and drop it at once */
        now = st_now_ns();
    }
    int rc = rx(t, now);
    if (rc < 0)
        return rc;
    if (rc == 0 && tx(t, now) < 0)
        return k->err;
    if (t->fd >= 0 && now - t->last_rx_ns > timeout_ns) {
        tcp_detach(t, "peer silent"); /* a stall: try a fresh connection; fail if that stays silent too */
        t->last_rx_ns = now - timeout_ns / 2;
    }
    return k->err;
}

/* ---- receive side API --------------------------------------------------------------------- */
static int tcp_recv(st_link *k, st_msg *out)
{
    tcp_link *t = (tcp_link *)k;
    if (t->rx_delivered == t->rx_next)
        return k->err ? st_err(k->err, "tcp link: %s", k->errmsg) : ST_EAGAIN;
    tcp_slot *s = &t->slots[t->rx_delivered % k->opts.credits];
    out->data = t->rx_mr->addr + s->pos % t->rx_mr->len;
    out->len = s->len;
    out->seq = s->seq;
    t->rx_delivered++;
    return ST_OK;
}

static int tcp_release(st_link *k, const st_msg *m)
{
    tcp_link *t = (tcp_link *)k;
    if (t->rx_released == t->rx_delivered || m->seq != t->rx_released)
        return st_err(ST_EINVAL, "tcp link: release of message %llu out of order (next is %llu)",
                      (unsigned long long)m->seq, (unsigned long long)t->rx_released);
    t->ring_tail = t->slots[t->rx_released % k->opts.credits].end;
    t->rx_released++;
    if (!t->ack_due_ns)
        t->ack_due_ns = st_now_ns() + ACK_DELAY_NS;
    return ST_OK;
}

/* ---- blocking ------------------------------------------------------------------------------ */
static uint64_t tcp_wait_prepare(st_link *k) { return 0; }

static int tcp_wait(st_link *k, uint64_t ticket, int timeout_ms)
{
    tcp_link *t = (tcp_link *)k;
    int ms = (int)k->opts.heartbeat_ms;
    if (t->ack_due_ns)
        ms = 1;
    if (t->delay_ns && t->tx_seq < t->stamped && t->tx_off == 0) { /* wake when the next held message is due */
        uint64_t now = st_now_ns(), due = t->due_ns[t->tx_seq & k->sq_mask];
        int left = due > now ? (int)((due - now + 999999) / 1000000) : 0;
        if (left < ms)
            ms = left;
    }
    if (timeout_ms >= 0 && timeout_ms < ms)
        ms = timeout_ms;
    struct epoll_event ev[4];
    int n = epoll_wait(t->epfd, ev, 4, ms);
    for (int i = 0; i < n; i++)
        if (ev[i].data.fd == t->evfd) {
            uint64_t v;
            if (read(t->evfd, &v, sizeof v) < 0) { /* already drained by another wait */
            }
        }
    return ST_OK;
}

static void tcp_wake(st_link *k)
{
    tcp_link *t = (tcp_link *)k;
    uint64_t one = 1;
    if (write(t->evfd, &one, sizeof one) < 0) { /* counter saturated: a wake is pending anyway */
    }
}

/* ---- close ---------------------------------------------------------------------------------- */
static void tcp_close(st_link *k)
{
    tcp_link *t = (tcp_link *)k;
    if (t->fd >= 0 && t->tx_off == 0 && t->ctrl_len == 0) {
        tcp_frame bye = {.type = TF_BYE};
        frame_acks(t, &bye);
        tcp_frame_seal(&bye);
        ssize_t w = send(t->fd, &bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    if (t->fd >= 0)
        close(t->fd);
    if (t->lis) {
        tcp_link **pp = &t->lis->links;
        while (*pp && *pp != t)
            pp = &(*pp)->lis_next;
        if (*pp)
            *pp = t->lis_next;
        tcp_lis_unref(t->lis);
    }
    if (t->epfd >= 0)
        close(t->epfd);
    if (t->evfd >= 0)
        close(t->evfd);
    st_mr_free(t->rx_mr);
    free(t->txh);
    free(t->due_ns);
    free(t->stage);
    free(t->slots);
    st_link_base_free(k);
    free(t);
}

static int tcp_debug_drop(st_link *k)
{
    tcp_link *t = (tcp_link *)k;
    if (t->fd < 0)
        return ST_EAGAIN; /* already down: nothing to break */
    shutdown(t->fd, SHUT_RDWR); /* both ends see the break on their next I/O */
    return ST_OK;
}

int tcp_listen(const char *addr, const st_link_opts *o, st_listener **out);
int tcp_accept(st_listener *l, int timeout_ms, st_link **out);
void tcp_listener_close(st_listener *l);
int tcp_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out);

const st_transport_ops st_tcp_ops = {
    .name = "tcp",
    .listen = tcp_listen,
    .accept = tcp_accept,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .progress = tcp_progress,
    .recv = tcp_recv,
    .release = tcp_release,
    .wait_prepare = tcp_wait_prepare,
    .wait = tcp_wait,
    .wake = tcp_wake,
    .close = tcp_close,
    .debug_drop = tcp_debug_drop,
};
