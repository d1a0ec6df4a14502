/* The RDMA verbs transport: one reliable-connected queue pair per link.
 *
 * NOT RUN ON HARDWARE. This compiles against rdma-core 44 and its
 * no-device path and protocol pieces are tested, but the data path below
 * has not yet moved a byte through a device: the development machine's
 * kernel has no RDMA support. dataplane/README.md says what the soft-RoCE
 * VM test needs.
 *
 * Data path (each direction independent):
 *   receiver  owns a receive ring (rx, ring_len bytes) registered for remote
 *             writes, and posts one empty receive per credit;
 *   sender    copies a message into a staging ring (tx) laid out exactly
 *             like the peer's ring, and RDMA-writes it from there to the
 *             same offset in the peer's ring in chunks of ST_RDMA_CHUNK, the
 *             last WITH IMMEDIATE; the immediate carries slot (wrapped or
 *             not) and length (rdma_proto.h). At most MAX_OUT_BYTES are in
 *             flight, so credit and heartbeat writes, which share the send
 *             queue, never wait behind a whole large message. The last
 *             chunk's completion means the peer has every byte: that is the
 *             message's completion (st_link_ack).
 *   receiver  polls its CQ; each RECV_RDMA_WITH_IMM is checked against the
 *             placement rule, queued for st_link_recv, and its receive
 *             reposted. st_link_release advances a release counter that
 *             progress RDMA-writes into the sender's control block: one
 *             8-byte counter returns both message credits and ring space
 *             (the sender knows where each message ended).
 *   liveness  every heartbeat_ms each end RDMA-writes a tick counter into
 *             the peer's control block; a tick that does not move for
 *             timeout_ms, a failed completion (retry/rnr exhausted: the QP
 *             is in error) or the peer closing the TCP control channel
 *             fails the link with ST_ECONN. A link is not re-established
 *             (yet): the caller reconnects.
 *
 * Set-up over the TCP control channel: both ends open the device, create
 * CQ and QP (INIT), register the ring and control block, post receives,
 * exchange st_rdma_info (QPN, PSN, GID/LID, MTU, ring and control block
 * addresses and rkeys), go RTR/RTS, then exchange one "ready" byte so that
 * neither writes before the other can receive. */
#define _GNU_SOURCE
#include "dataplane/link_impl.h"
#include "dataplane/rdma.h"

#ifdef ST_HAVE_RDMA

#include "common/st_common.h"
#include "dataplane/rdma_impl.h"
#include "dataplane/tcp_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* work request ids: kind in the top byte, message number below */
enum { WR_DATA = 1, WR_CREDIT = 2, WR_TICK = 3, WR_CHUNK = 4 };
#define WR_ID(kind, n) ((uint64_t)(kind) << 56 | ((n) & ((1ull << 56) - 1)))
#define WR_KIND(id) ((int)((id) >> 56))

#define CREDIT_SLOTS 8 /* credit writes in flight, each from its own source word */
#define MAX_OUT_BYTES (4 * ST_RDMA_CHUNK) /* data bytes in flight before control writes, per link */

/* The control block (one page, registered): words the peer writes, and the
 * source words of this end's own small writes (kept until completion). */
typedef struct ctl_block {
    volatile uint64_t released; /* written by the peer: messages it released */
    volatile uint64_t tick;     /* written by the peer: its heartbeat count */
    uint64_t pad[6];
    uint64_t credit_src[CREDIT_SLOTS];
    uint64_t tick_src;
} ctl_block;

typedef struct rx_entry {
    uint64_t start, end; /* virtual positions in the ring */
} rx_entry;

typedef struct rdma_link {
    st_link base;
    st_rdma_opts ro;
    rdma_port port;
    int ctl_fd;                  /* TCP control channel */
    int wake_fd;                 /* eventfd for st_link_wake */
    atomic_uint_fast64_t wakes;
    struct ibv_pd *pd;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    uint32_t psn;
    st_rdma_info peer;
    /* receive side */
    st_mr *rx;                   /* the ring the peer writes into */
    struct ibv_mr *rx_mr;
    uint64_t ring_len;           /* bytes, multiple of 64 */
    uint32_t credits;            /* advertised: unreleased messages accepted */
    rx_entry *rxq;               /* slot = message number & rxq_mask */
    uint64_t rxq_mask;
    uint64_t rx_n, dlv_n, rel_n; /* received, delivered, released */
    uint64_t rx_pos, rel_pos;    /* virtual end of last received / released */
    uint64_t rel_sent;           /* release count last written to the peer */
    uint64_t credit_posted, credit_done;
    /* send side */
    st_mr *tx;                   /* staging, same layout as the peer's ring */
    struct ibv_mr *tx_mr;
    uint64_t *tx_end;            /* slot = message number & tx_mask */
    uint64_t tx_mask;
    uint64_t posted;             /* messages posted (sq_acked <= posted <= sq_tail) */
    uint64_t tx_pos;             /* virtual end of the last posted message */
    uint64_t peer_rel, free_pos; /* peer's release count, and where its free space starts */
    uint32_t data_cap, data_out; /* data writes allowed / outstanding */
    uint64_t cur_off, cur_start; /* message `posted`: bytes written so far, its virtual start */
    int cur_wrapped;             /* ... and whether it moved to the ring start */
    uint64_t bytes_out;          /* data bytes written, not yet completed */
    size_t rx_max;               /* largest message this end accepts (its own max_msg) */
    /* control block and liveness */
    ctl_block *ctl;
    st_mr *ctl_mr_mem;
    struct ibv_mr *ctl_mr;
    uint64_t next_tick_ns, last_alive_ns, peer_tick;
    int tick_out;
    int pend_code;   /* a failure held back until the messages before it are delivered */
    char pend_why[128];
    /* completions taken by st_link_wait before sleeping, handled by progress */
    struct ibv_wc stash[16];
    int n_stash;
} rdma_link;

typedef struct rdma_listener {
    st_listener base;
    int fd;
} rdma_listener;

static int rdma_fail(rdma_link *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rdma_fail(rdma_link *r, int code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_link_fail(&r->base, code, "rdma: %s", msg);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---- posting ------------------------------------------------------------------ */
/* An 8-byte RDMA WRITE of *src (in the control block) to the peer's control
 * block at `off`; the source word stays untouched until completion. */
static int post_word(rdma_link *r, uint64_t *src, size_t off, uint64_t wr_id)
{
    struct ibv_sge sge = {.addr = (uintptr_t)src, .length = 8, .lkey = r->ctl_mr->lkey};
    struct ibv_send_wr wr = {0}, *bad;
    wr.wr_id = wr_id;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.wr.rdma.remote_addr = r->peer.credit_addr + off;
    wr.wr.rdma.rkey = r->peer.credit_rkey;
    int e = ibv_post_send(r->qp, &wr, &bad);
    return e ? rdma_fail(r, ST_ECONN, "ibv_post_send (control word): %s", strerror(e)) : ST_OK;
}

static int post_recv(rdma_link *r, int n)
{
    for (int i = 0; i < n; i++) {
        struct ibv_recv_wr wr = {0}, *bad;
        wr.wr_id = 0;
        wr.sg_list = NULL; /* RDMA WRITE WITH IMM places data itself; the receive only carries the immediate */
        wr.num_sge = 0;
        int e = ibv_post_recv(r->qp, &wr, &bad);
        if (e)
            return st_err(ST_EIO, "rdma: ibv_post_recv: %s", strerror(e));
    }
    return ST_OK;
}

/* Copy queued messages into the staging ring and write them to the peer
 * in chunks while credits, ring space, work-request slots and the in-flight
 * byte budget allow. */
static int post_data(rdma_link *r)
{
    st_link *k = &r->base;
    while (r->posted < k->sq_tail && r->data_out < r->data_cap && (r->bytes_out < MAX_OUT_BYTES || !r->bytes_out)) {
        st_sq_entry *e = st_sq_at(k, r->posted);
        if (r->cur_off == 0) { /* a new message: place and stage it */
            if (r->posted - r->peer_rel >= r->peer.credits)
                break;
            st_rdma_place p = st_rdma_place_next(r->tx_pos, e->len, r->peer.ring_len);
            if (p.end - r->free_pos > r->peer.ring_len)
                break; /* wait for the peer to release */
            uint8_t *dst = r->tx->addr + p.start % r->peer.ring_len;
            for (int i = 0; i < e->n; i++) {
                memcpy(dst, e->iov[i].base, e->iov[i].len);
                dst += e->iov[i].len;
            }
            r->cur_start = p.start;
            r->cur_wrapped = p.wrapped;
            r->tx_end[r->posted & r->tx_mask] = p.end;
        }
        uint64_t off = r->cur_start % r->peer.ring_len + r->cur_off;
        uint64_t piece = ST_MIN(ST_RDMA_CHUNK, e->len - r->cur_off);
        int last = r->cur_off + piece == e->len;
        struct ibv_sge sge = {.addr = (uintptr_t)(r->tx->addr + off), .length = (uint32_t)piece,
                              .lkey = r->tx_mr->lkey};
        struct ibv_send_wr wr = {0}, *bad;
        wr.wr_id = last ? WR_ID(WR_DATA, r->posted) : WR_ID(WR_CHUNK, piece);
        wr.opcode = last ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
        wr.send_flags = IBV_SEND_SIGNALED;
        if (last) {
            int wrapped = r->cur_wrapped;
            if (k->corrupt_next) { /* test hook: a wrong slot must be rejected by the peer */
                k->corrupt_next = 0;
                wrapped = !wrapped;
            }
            wr.imm_data = htonl(st_rdma_imm_encode(wrapped, (uint32_t)e->len));
        }
        wr.sg_list = &sge;
        wr.num_sge = 1;
        wr.wr.rdma.remote_addr = r->peer.ring_addr + off;
        wr.wr.rdma.rkey = r->peer.ring_rkey;
        int err = ibv_post_send(r->qp, &wr, &bad);
        if (err)
            return rdma_fail(r, ST_ECONN, "ibv_post_send (message %llu): %s", (unsigned long long)r->posted,
                             strerror(err));
        r->data_out++;
        r->bytes_out += piece;
        r->cur_off += piece;
        if (last) {
            r->tx_pos = r->tx_end[r->posted & r->tx_mask];
            r->posted++;
            r->cur_off = 0;
        }
    }
    return ST_OK;
}

/* ---- completions ---------------------------------------------------------------- */
/* A failure that the messages received before it must not share (a rejected
 * message, the peer's hang-up): they are delivered first, and the link fails
 * with `code` once the application has taken them all (as a TCP reader gets
 * the bytes before a bad frame or a FIN). The first such failure wins. */
static int fail_when_delivered(rdma_link *r, int code, const char *why)
{
    if (!r->pend_code) {
        r->pend_code = code;
        snprintf(r->pend_why, sizeof r->pend_why, "%s", why);
    }
    return r->dlv_n == r->rx_n ? rdma_fail(r, r->pend_code, "%s", r->pend_why) : ST_OK;
}

static int on_recv(rdma_link *r, const struct ibv_wc *wc)
{
    int wrapped;
    uint32_t len;
    st_rdma_imm_decode(ntohl(wc->imm_data), &wrapped, &len);
    st_rdma_place p = st_rdma_place_next(r->rx_pos, len, r->ring_len);
    const char *why = NULL;
    if (len == 0 || len > r->rx_max)
        why = "length out of range";
    else if (st_rdma_last_piece(len) != wc->byte_len)
        why = "immediate length does not match the bytes written";
    else if (wrapped != p.wrapped)
        why = "slot does not match the ring placement";
    else if (r->rx_n - r->rel_n >= r->credits)
        why = "more messages than credits granted";
    else if (p.end - r->rel_pos > r->ring_len)
        why = "message overruns unreleased ring space";
    if (why) {
        char msg[sizeof r->pend_why];
        r->base.stats.frames_rejected++;
        snprintf(msg, sizeof msg, "message %llu rejected (%u bytes): %s", (unsigned long long)r->rx_n, len, why);
        return fail_when_delivered(r, ST_EPROTO, msg);
    }
    r->rxq[r->rx_n & r->rxq_mask] = (rx_entry){p.start, p.end};
    r->rx_n++;
    r->rx_pos = p.end;
    int rc = post_recv(r, 1);
    return rc ? rdma_fail(r, ST_ECONN, "%s", st_errmsg()) : ST_OK;
}

static int on_wc(rdma_link *r, const struct ibv_wc *wc)
{
    if (wc->status != IBV_WC_SUCCESS) {
        if (wc->status == IBV_WC_WR_FLUSH_ERR && r->base.err)
            return r->base.err;
        return rdma_fail(r, ST_ECONN, "completion failed: %s (vendor error %u); the queue pair is in error",
                         ibv_wc_status_str(wc->status), wc->vendor_err);
    }
    if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) /* nothing is taken after a held-back failure */
        return r->pend_code ? ST_OK : on_recv(r, wc);
    switch (WR_KIND(wc->wr_id)) {
    case WR_CHUNK:
        r->data_out--;
        r->bytes_out -= wc->wr_id & ((1ull << 56) - 1);
        break;
    case WR_DATA: {
        uint64_t seq = wc->wr_id & ((1ull << 56) - 1);
        r->data_out--;
        r->bytes_out -= st_rdma_last_piece(st_sq_at(&r->base, seq)->len);
        r->base.stats.msgs_tx++;
        r->base.stats.bytes_tx += st_sq_at(&r->base, seq)->len;
        st_link_ack(&r->base, seq + 1); /* RC completes in order */
        break;
    }
    case WR_CREDIT: r->credit_done++; break;
    case WR_TICK: r->tick_out = 0; break;
    default: return rdma_fail(r, ST_EPROTO, "completion with unknown id %llx", (unsigned long long)wc->wr_id);
    }
    return ST_OK;
}

static int poll_cq(rdma_link *r)
{
    for (int i = 0; i < r->n_stash; i++)
        on_wc(r, &r->stash[i]);
    r->n_stash = 0;
    struct ibv_wc wc[32];
    int n;
    while ((n = ibv_poll_cq(r->cq, 32, wc)) > 0)
        for (int i = 0; i < n; i++)
            on_wc(r, &wc[i]);
    if (n < 0)
        return rdma_fail(r, ST_ECONN, "ibv_poll_cq failed");
    return r->base.err;
}

/* ---- progress --------------------------------------------------------------------- */
/* The peer hung up (EOF or goodbye on the control channel). A sender closes
 * after its writes completed, and the responder raises the receive
 * completion before it acknowledges the write, so everything the peer sent
 * is in our CQ by now, though maybe not yet polled: take it, and fail with
 * ST_ECONN once the application has received it all, so that a close right
 * after the last send loses nothing. */
static int peer_hung_up(rdma_link *r)
{
    if (!r->pend_code) {
        int rc = poll_cq(r);
        if (rc)
            return rc;
    }
    return fail_when_delivered(r, ST_ECONN, "peer closed the link");
}

static int liveness(rdma_link *r, uint64_t now)
{
    r->next_tick_ns = now + (uint64_t)r->base.opts.heartbeat_ms * 1000000ull;
    uint64_t t = r->ctl->tick;
    if (t != r->peer_tick)
        r->peer_tick = t, r->last_alive_ns = now;
    else if (now - r->last_alive_ns > (uint64_t)r->base.opts.timeout_ms * 1000000ull)
        return rdma_fail(r, ST_ECONN, "peer silent for %u ms", r->base.opts.timeout_ms);
    char b;
    ssize_t n = recv(r->ctl_fd, &b, 1, MSG_DONTWAIT);
    if (n == 0 || (n == 1 && b == 'B'))
        return peer_hung_up(r);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        return rdma_fail(r, ST_ECONN, "control channel: %s", strerror(errno));
    if (!r->tick_out) {
        r->ctl->tick_src++;
        int rc = post_word(r, &r->ctl->tick_src, offsetof(ctl_block, tick), WR_ID(WR_TICK, 0));
        if (rc)
            return rc;
        r->tick_out = 1;
    }
    return ST_OK;
}

static int rdma_progress(st_link *k)
{
    rdma_link *r = (rdma_link *)k;
    int rc = poll_cq(r);
    if (rc)
        return rc;
    if (r->pend_code) /* nothing more to send or acknowledge: deliver, then fail */
        return fail_when_delivered(r, r->pend_code, r->pend_why);
    uint64_t rel = __atomic_load_n(&r->ctl->released, __ATOMIC_ACQUIRE);
    if (rel != r->peer_rel) {
        if (rel < r->peer_rel || rel > r->posted)
            return rdma_fail(r, ST_EPROTO, "peer released %llu of %llu messages (was %llu)",
                             (unsigned long long)rel, (unsigned long long)r->posted, (unsigned long long)r->peer_rel);
        r->peer_rel = rel;
        r->free_pos = r->tx_end[(rel - 1) & r->tx_mask];
    }
    if ((rc = post_data(r)))
        return rc;
    if (r->rel_sent != r->rel_n && r->credit_posted - r->credit_done < CREDIT_SLOTS) {
        uint64_t *src = &r->ctl->credit_src[r->credit_posted % CREDIT_SLOTS];
        *src = r->rel_n;
        if ((rc = post_word(r, src, offsetof(ctl_block, released), WR_ID(WR_CREDIT, r->credit_posted))))
            return rc;
        r->credit_posted++;
        r->rel_sent = r->rel_n;
    }
    uint64_t now = st_now_ns();
    if (now >= r->next_tick_ns && (rc = liveness(r, now)))
        return rc;
    return k->err;
}

static int rdma_recv(st_link *k, st_msg *out)
{
    rdma_link *r = (rdma_link *)k;
    if (k->err)
        return k->err;
    if (r->dlv_n == r->rx_n)
        return r->pend_code ? fail_when_delivered(r, r->pend_code, r->pend_why) : ST_EAGAIN;
    const rx_entry *e = &r->rxq[r->dlv_n & r->rxq_mask];
    out->data = r->rx->addr + e->start % r->ring_len;
    out->len = (size_t)(e->end - e->start);
    out->seq = r->dlv_n++;
    k->stats.msgs_rx++;
    k->stats.bytes_rx += out->len;
    return ST_OK;
}

static int rdma_release(st_link *k, const st_msg *m)
{
    rdma_link *r = (rdma_link *)k;
    if (!m || m->seq != r->rel_n || r->rel_n >= r->dlv_n)
        return st_err(ST_EINVAL, "rdma: release of message %llu out of order (next is %llu)",
                      m ? (unsigned long long)m->seq : 0ull, (unsigned long long)r->rel_n);
    r->rel_pos = r->rxq[r->rel_n & r->rxq_mask].end;
    r->rel_n++;
    return ST_OK; /* progress returns the credit */
}

/* ---- waiting ------------------------------------------------------------------------ */
static uint64_t rdma_wait_prepare(st_link *k) { return atomic_load(&((rdma_link *)k)->wakes); }

static int rdma_wait(st_link *k, uint64_t ticket, int timeout_ms)
{
    rdma_link *r = (rdma_link *)k;
    if (k->err)
        return k->err;
    if (atomic_load(&r->wakes) != ticket || r->pend_code) /* the link fails once drained */
        return ST_OK;
    /* arm first, then look once more: a completion that arrived before the
     * arming raises no event, so it is taken here and handled by progress */
    if (ibv_req_notify_cq(r->cq, 0) != 0)
        return rdma_fail(r, ST_ECONN, "ibv_req_notify_cq failed");
    if (r->n_stash == 0) {
        int n = ibv_poll_cq(r->cq, (int)ST_ARRAY_LEN(r->stash), r->stash);
        if (n > 0) {
            r->n_stash = n;
            return ST_OK;
        }
    } else {
        return ST_OK;
    }
    int cap = (int)k->opts.heartbeat_ms;
    if (timeout_ms < 0 || timeout_ms > cap)
        timeout_ms = cap;
    struct pollfd p[3] = {{.fd = r->ch->fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN},
                          {.fd = r->ctl_fd, .events = POLLIN}};
    if (poll(p, 3, timeout_ms) > 0) {
        struct ibv_cq *cq;
        void *ctx;
        if ((p[0].revents & POLLIN) && ibv_get_cq_event(r->ch, &cq, &ctx) == 0)
            ibv_ack_cq_events(cq, 1);
        uint64_t v;
        if (p[1].revents & POLLIN)
            (void)!read(r->wake_fd, &v, sizeof v);
        if (p[2].revents)
            r->next_tick_ns = 0; /* the control channel spoke: let progress look now */
    }
    return ST_OK;
}

static void rdma_wake(st_link *k)
{
    rdma_link *r = (rdma_link *)k;
    atomic_fetch_add(&r->wakes, 1);
    uint64_t one = 1;
    (void)!write(r->wake_fd, &one, sizeof one);
}

/* ---- set-up and tear-down -------------------------------------------------------------- */
static void rdma_free(rdma_link *r)
{
    if (r->qp)
        ibv_destroy_qp(r->qp);
    if (r->rx_mr)
        ibv_dereg_mr(r->rx_mr);
    if (r->tx_mr)
        ibv_dereg_mr(r->tx_mr);
    if (r->ctl_mr)
        ibv_dereg_mr(r->ctl_mr);
    if (r->cq)
        ibv_destroy_cq(r->cq);
    if (r->ch)
        ibv_destroy_comp_channel(r->ch);
    if (r->pd)
        ibv_dealloc_pd(r->pd);
    rdma_port_close(&r->port);
    st_mr_free(r->rx);
    st_mr_free(r->tx);
    st_mr_free(r->ctl_mr_mem);
    free(r->rxq);
    free(r->tx_end);
    if (r->ctl_fd >= 0)
        close(r->ctl_fd);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    st_link_base_free(&r->base);
    free(r);
}

static void rdma_close(st_link *k)
{
    rdma_link *r = (rdma_link *)k;
    char bye = 'B';
    (void)!send(r->ctl_fd, &bye, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    rdma_free(r);
}

static struct ibv_mr *reg(rdma_link *r, st_mr *m, int remote)
{
    int access = IBV_ACCESS_LOCAL_WRITE | (remote ? IBV_ACCESS_REMOTE_WRITE : 0);
    struct ibv_mr *mr = ibv_reg_mr(r->pd, m->addr, m->len, access);
    if (!mr)
        st_err(ST_EIO, "rdma: ibv_reg_mr of %zu bytes: %s (is the locked-memory limit, ulimit -l, too low?)", m->len,
               strerror(errno));
    return mr;
}

/* Everything up to RTS on a connected control socket (takes fd). */
static int rdma_setup(int fd, const st_link_opts *o, int timeout_ms, st_link **out)
{
    rdma_link *r = st_xcalloc(1, sizeof *r);
    st_link_base_init(&r->base, &st_rdma_ops, o);
    r->ctl_fd = fd;
    r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = st_rdma_opts_from_env(&r->ro);
    if (rc == ST_OK && o->max_msg > ST_RDMA_IMM_MAX_LEN)
        rc = st_err(ST_EINVAL, "rdma: max_msg %zu > 2^31 - 1 (the immediate's length field)", o->max_msg);
    if (rc == ST_OK && r->wake_fd < 0)
        rc = st_err(ST_EIO, "rdma: eventfd: %s", strerror(errno));
    if (rc == ST_OK)
        rc = rdma_port_open(&r->ro, &r->port);
    if (rc)
        goto fail;
    /* queue sizes within the device's limits */
    uint32_t dev_wr = (uint32_t)ST_MAX(r->port.max_qp_wr, 64);
    r->credits = ST_MIN(o->credits, dev_wr - 16);
    r->data_cap = ST_MIN(ST_MIN(o->sq_depth, o->credits), dev_wr - 16 - CREDIT_SLOTS);
    r->ring_len = o->rx_bytes / 64 * 64;
    rc = ST_EIO;
    if (!(r->pd = ibv_alloc_pd(r->port.ctx)) || !(r->ch = ibv_create_comp_channel(r->port.ctx))) {
        st_err(ST_EIO, "rdma: %s: protection domain / completion channel: %s", r->port.name, strerror(errno));
        goto fail;
    }
    fcntl(r->ch->fd, F_SETFL, fcntl(r->ch->fd, F_GETFL) | O_NONBLOCK);
    int cqe = (int)(r->data_cap + CREDIT_SLOTS + 2 + r->credits);
    if (!(r->cq = ibv_create_cq(r->port.ctx, cqe, NULL, r->ch, 0))) {
        st_err(ST_EIO, "rdma: ibv_create_cq(%d): %s", cqe, strerror(errno));
        goto fail;
    }
    struct ibv_qp_init_attr qa = {0};
    qa.send_cq = qa.recv_cq = r->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = r->data_cap + CREDIT_SLOTS + 2;
    qa.cap.max_recv_wr = r->credits;
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    if (!(r->qp = ibv_create_qp(r->pd, &qa))) {
        st_err(ST_EIO, "rdma: ibv_create_qp (RC, %u send / %u receive): %s", qa.cap.max_send_wr, qa.cap.max_recv_wr,
               strerror(errno));
        goto fail;
    }
    if ((rc = st_mr_alloc(r->ring_len, ST_MR_HUGEPAGE, &r->rx)) || (rc = st_mr_alloc(4096, ST_MR_PREFAULT, &r->ctl_mr_mem)))
        goto fail;
    rc = ST_EIO;
    r->ctl = (ctl_block *)r->ctl_mr_mem->addr;
    if (!(r->rx_mr = reg(r, r->rx, 1)) || !(r->ctl_mr = reg(r, r->ctl_mr_mem, 1)))
        goto fail;
    r->rxq_mask = pow2_at_least(r->credits) - 1;
    r->rxq = st_xcalloc(r->rxq_mask + 1, sizeof *r->rxq);
    if ((rc = rdma_qp_init(r->qp, &r->port)) || (rc = post_recv(r, (int)r->credits)))
        goto fail;

    /* exchange connection info */
    r->psn = (uint32_t)(st_now_ns() ^ (uint64_t)getpid() << 8) & 0xffffff;
    st_rdma_info me = {0};
    me.qpn = r->qp->qp_num;
    me.psn = r->psn;
    me.lid = r->port.lid;
    me.mtu = (uint8_t)r->port.mtu;
    me.is_roce = (uint8_t)r->port.is_roce;
    memcpy(me.gid, r->port.gid.raw, 16);
    me.ring_addr = (uintptr_t)r->rx->addr;
    me.ring_len = r->ring_len;
    me.ring_rkey = r->rx_mr->rkey;
    me.credit_addr = (uintptr_t)r->ctl;
    me.credit_rkey = r->ctl_mr->rkey;
    me.credits = r->credits;
    me.max_msg = o->max_msg;
    uint8_t buf[ST_RDMA_INFO_BYTES];
    st_rdma_info_encode(&me, buf);
    if ((rc = tcp_io_full(fd, buf, sizeof buf, 1, timeout_ms)) || (rc = tcp_io_full(fd, buf, sizeof buf, 0, timeout_ms)) ||
        (rc = st_rdma_info_decode(buf, sizeof buf, &r->peer)))
        goto fail;
    /* send no more than the peer accepts (st_link_send says ST_ERANGE) */
    r->rx_max = o->max_msg;
    r->base.opts.max_msg = (size_t)ST_MIN((uint64_t)o->max_msg, r->peer.max_msg);
    /* the staging ring mirrors the peer's ring, so space frees in both at once */
    if ((rc = st_mr_alloc(r->peer.ring_len, ST_MR_HUGEPAGE, &r->tx)))
        goto fail;
    if (!(r->tx_mr = reg(r, r->tx, 0))) {
        rc = ST_EIO;
        goto fail;
    }
    r->tx_mask = pow2_at_least((uint64_t)r->peer.credits + 1) - 1;
    r->tx_end = st_xcalloc(r->tx_mask + 1, sizeof *r->tx_end);
    if ((rc = rdma_qp_connect(r->qp, &r->port, &r->ro, r->psn, &r->peer)))
        goto fail;
    char ready = 'R';
    if ((rc = tcp_io_full(fd, &ready, 1, 1, timeout_ms)) || (rc = tcp_io_full(fd, &ready, 1, 0, timeout_ms)))
        goto fail;
    if (ready != 'R') {
        rc = st_err(ST_EPROTO, "rdma: peer sent %#x instead of the ready byte", (unsigned)(uint8_t)ready);
        goto fail;
    }
    r->last_alive_ns = st_now_ns();
    ST_INFO("rdma: link up on %s port %u (%s, gid index %d), peer qpn %u", r->port.name, r->port.port,
            r->port.is_roce ? "RoCE" : "InfiniBand", r->port.gid_index, r->peer.qpn);
    *out = &r->base;
    return ST_OK;
fail:
    rdma_free(r);
    return rc ? rc : ST_EIO;
}

static int rdma_listen(const char *addr, const st_link_opts *o, st_listener **out)
{
    /* fail here, not at the first accept, when there is nothing to run on */
    int rc = st_rdma_probe();
    if (rc)
        return rc;
    int fd;
    char name[sizeof ((st_listener *)0)->addr];
    if ((rc = tcp_listen_socket("rdma", addr, &fd, name, sizeof name)))
        return rc;
    rdma_listener *l = st_xcalloc(1, sizeof *l);
    l->base.ops = &st_rdma_ops;
    l->base.opts = *o;
    l->fd = fd;
    memcpy(l->base.addr, name, sizeof name);
    *out = &l->base;
    return ST_OK;
}

static int rdma_accept(st_listener *base, int timeout_ms, st_link **out)
{
    rdma_listener *l = (rdma_listener *)base;
    struct pollfd p = {.fd = l->fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n == 0)
        return st_err(ST_ETIMEDOUT, "rdma: no connection on %s within %d ms", base->addr, timeout_ms);
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return errno == EAGAIN ? st_err(ST_ETIMEDOUT, "rdma: no connection on %s", base->addr)
                               : st_err(ST_EIO, "rdma: accept on %s: %s", base->addr, strerror(errno));
    tcp_set_sockopts(fd, &base->opts);
    return rdma_setup(fd, &base->opts, timeout_ms < 0 ? 10000 : ST_MAX(timeout_ms, 1000), out);
}

static void rdma_listener_close(st_listener *base)
{
    rdma_listener *l = (rdma_listener *)base;
    close(l->fd);
    free(l);
}

/* Dial until the deadline: the listening end may not be up yet. */
static int rdma_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out)
{
    int rc = st_rdma_probe();
    if (rc)
        return rc;
    struct addrinfo *res;
    if ((rc = tcp_resolve(addr, 0, &res)))
        return rc;
    if (timeout_ms < 0)
        timeout_ms = 10000;
    uint64_t deadline = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int fd = -1, err = 0;
    for (;;) {
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
        if (st_now_ns() >= deadline || (err != ECONNREFUSED && err != EINTR))
            break;
        usleep(20000); /* retry pacing, not synchronisation */
    }
    freeaddrinfo(res);
    if (fd < 0)
        return st_err(err == ECONNREFUSED ? ST_ETIMEDOUT : ST_ECONN, "rdma: connect to %s: %s", addr,
                      strerror(err ? err : errno));
    tcp_set_sockopts(fd, o);
    int left = (int)((deadline - ST_MIN(deadline, st_now_ns())) / 1000000ull);
    return rdma_setup(fd, o, ST_MAX(left, 1000), out);
}

int st_rdma_debug_qp_error(st_link *k)
{
    if (!k || k->ops != &st_rdma_ops)
        return st_err(ST_EINVAL, "rdma: debug_qp_error on a link of another transport");
    rdma_link *r = (rdma_link *)k;
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};
    int e = ibv_modify_qp(r->qp, &a, IBV_QP_STATE);
    return e ? st_err(ST_EIO, "rdma: queue pair to ERR: %s", strerror(e)) : ST_OK;
}

const st_transport_ops st_rdma_ops = {
    .name = "rdma",
    .listen = rdma_listen,
    .accept = rdma_accept,
    .listener_close = rdma_listener_close,
    .connect = rdma_connect,
    .progress = rdma_progress,
    .recv = rdma_recv,
    .release = rdma_release,
    .wait_prepare = rdma_wait_prepare,
    .wait = rdma_wait,
    .wake = rdma_wake,
    .close = rdma_close,
    .debug_drop = NULL, /* TODO: move the QP to error, then re-establish */
};

#endif /* ST_HAVE_RDMA */
