/* TCP transport: addresses, socket options, the listener, and the HELLO
 * handshake that both starts a link and resumes it after a dropped
 * connection.
 *
 * A link has a random 64-bit id chosen by the connecting side. On a drop
 * the connector dials again and sends HELLO{id, resume, rcvd, released};
 * the listener finds the link with that id, answers with its own counts,
 * and each side resends from what the other says it has received. When
 * the listener has a link key, the HELLO exchange waits for the
 * challenge/response of tcp_auth.c, on a resume too. */
#define _GNU_SOURCE
#include "tcp_impl.h"

#include "common/st_common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

/* "host:port" or "[v6]:port" -> getaddrinfo result (see tcp_impl.h) */
int tcp_resolve(const char *addr, int passive, struct addrinfo **res)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || strlen(addr) >= sizeof host)
        return st_err(ST_EINVAL, "tcp: address '%s' is not HOST:PORT", addr);
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']')
        h++, hl -= 2;
    memcpy(host, h, hl);
    host[hl] = 0;
    const char *port = colon + 1;
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        return st_err(ST_EINVAL, "tcp: bad port in '%s'", addr);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    int rc = getaddrinfo(hl ? host : NULL, port, &hints, res);
    if (rc != 0)
        return st_err(ST_EINVAL, "tcp: cannot resolve '%s': %s", addr, gai_strerror(rc));
    return ST_OK;
}

int tcp_set_sockopts(int fd, const st_link_opts *o)
{
    int one = 1;
    int idle = (int)ST_MAX(1u, o->timeout_ms / 1000), intvl = 1, cnt = 3;
    unsigned int user_to = o->timeout_ms;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* keepalive catches a vanished host while idle; the user timeout bounds
     * how long unacknowledged data may sit; heartbeats do the rest */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_to, sizeof user_to);
    return ST_OK;
}

/* Read or write exactly n bytes on a non-blocking socket within timeout_ms. */
int tcp_io_full(int fd, void *buf, size_t n, int is_write, int timeout_ms)
{
    uint64_t deadline = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    size_t done = 0;
    while (done < n) {
        ssize_t r = is_write ? send(fd, (uint8_t *)buf + done, n - done, MSG_NOSIGNAL)
                             : recv(fd, (uint8_t *)buf + done, n - done, 0);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (r == 0)
            return st_err(ST_ECONN, "tcp: peer closed during handshake");
        if (errno != EAGAIN && errno != EINTR)
            return st_err(ST_ECONN, "tcp: handshake: %s", strerror(errno));
        uint64_t now = st_now_ns();
        if (now >= deadline)
            return st_err(ST_ETIMEDOUT, "tcp: handshake timed out");
        struct pollfd p = {.fd = fd, .events = is_write ? POLLOUT : POLLIN};
        poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
    }
    return ST_OK;
}

/* ---- listener ------------------------------------------------------------------------- */
int tcp_listen_socket(const char *who, const char *addr, int *fd_out, char *name, size_t cap)
{
    struct addrinfo *res;
    int rc = tcp_resolve(addr, 1, &res);
    if (rc)
        return rc;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        rc = st_err(ST_EIO, "%s: listen on %s: %s", who, addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return rc;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64] = "?", port[16] = "0";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(name, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    *fd_out = fd;
    return ST_OK;
}

int tcp_listen(const char *addr, const st_link_opts *o, st_listener **out)
{
    int fd;
    char name[sizeof ((st_listener *)0)->addr];
    int rc = tcp_listen_socket("tcp", addr, &fd, name, sizeof name);
    if (rc)
        return rc;
    tcp_listener *l = st_xcalloc(1, sizeof *l);
    l->base.ops = &st_tcp_ops;
    l->base.opts = *o;
    l->fd = fd;
    l->refs = 1;
    memcpy(l->base.addr, name, sizeof name);
    *out = &l->base;
    return ST_OK;
}

static void send_bye(int fd)
{
    tcp_frame bye = {.type = TF_BYE};
    tcp_frame_seal(&bye);
    ssize_t w = send(fd, &bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

/* "host:port" of the peer of a connected socket, for log lines. */
static void peer_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64], port[16];
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* One accepted socket: read its HELLO, check the link key, and route it. */
static void lis_route(tcp_listener *l, int fd)
{
    tcp_set_sockopts(fd, &l->base.opts);
    tcp_frame h, reply;
    int hs_ms = (int)ST_MIN(1000u, l->base.opts.timeout_ms);
    if (tcp_io_full(fd, &h, sizeof h, 0, hs_ms) != ST_OK || !tcp_frame_ok(&h) || h.type != TF_HELLO ||
        h.credits == 0) {
        ST_DEBUG("tcp listener %s: dropped a connection without a valid HELLO", l->base.addr);
        close(fd);
        return;
    }
    char peer[80] = "?";
    peer_name(fd, peer, sizeof peer);
    if (tcp_auth_listen_side(l, fd, &h, peer, hs_ms) != ST_OK) {
        close(fd);
        return;
    }
    tcp_link *t = NULL;
    if (h.flags & TF_HELLO_RESUME) {
        for (t = l->links; t && t->link_id != h.seq; t = t->lis_next)
            ;
        if (!t || t->base.err) {
            send_bye(fd);
            close(fd);
            return;
        }
    } else {
        if (l->closed) {
            send_bye(fd);
            close(fd);
            return;
        }
        t = tcp_link_new(&l->base.opts, 0);
        t->link_id = h.seq;
        t->lis = l;
        l->refs++;
        t->lis_next = l->links;
        l->links = t;
        if (l->n_pending == l->cap_pending) {
            l->cap_pending = l->cap_pending ? 2 * l->cap_pending : 8;
            l->pending = st_xrealloc(l->pending, sizeof *l->pending * (size_t)l->cap_pending);
        }
        l->pending[l->n_pending++] = t;
    }
    tcp_fill_hello(t, &reply, (h.flags & TF_HELLO_RESUME) != 0);
    if (tcp_io_full(fd, &reply, sizeof reply, 1, hs_ms) != ST_OK) {
        close(fd);
        return;
    }
    if (tcp_attach(t, fd, &h) != ST_OK)
        close(fd);
    else
        ST_DEBUG("tcp listener %s: link %016llx %s from %s", l->base.addr, (unsigned long long)t->link_id,
                 (h.flags & TF_HELLO_RESUME) ? "resumed" : "accepted", peer);
}

void tcp_lis_pump(tcp_listener *l, int wait_ms)
{
    if (l->fd < 0)
        return;
    for (int waited = 0;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            lis_route(l, fd);
            continue;
        }
        if (waited || wait_ms <= 0 || (errno != EAGAIN && errno != EINTR))
            return;
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        poll(&p, 1, wait_ms);
        waited = 1;
    }
}

int tcp_accept(st_listener *base, int timeout_ms, st_link **out)
{
    tcp_listener *l = (tcp_listener *)base;
    uint64_t deadline = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
    for (;;) {
        if (l->n_pending) {
            *out = &l->pending[0]->base;
            memmove(l->pending, l->pending + 1, sizeof *l->pending * (size_t)--l->n_pending);
            return ST_OK;
        }
        uint64_t now = st_now_ns();
        if (timeout_ms >= 0 && now >= deadline)
            return st_err(ST_ETIMEDOUT, "tcp: no connection on %s within %d ms", base->addr, timeout_ms);
        int ms = timeout_ms < 0 ? 100 : (int)ST_MIN(100ull, (deadline - now) / 1000000ull + 1);
        tcp_lis_pump(l, ms);
    }
}

void tcp_lis_unref(tcp_listener *l)
{
    if (--l->refs > 0)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->pending);
    free(l);
}

void tcp_listener_close(st_listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    l->closed = 1;
    while (l->n_pending) /* accepted by the kernel, never by the application */
        st_link_close(&l->pending[--l->n_pending]->base);
    tcp_lis_unref(l);
}

/* ---- connecting ------------------------------------------------------------------------- */
/* One attempt: connect, HELLO both ways, attach. */
static int dial(tcp_link *t, int resume, int timeout_ms)
{
    uint64_t t0 = st_now_ns();
    struct addrinfo *res;
    int rc = tcp_resolve(t->addr, 0, &res);
    if (rc)
        return rc;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return st_err(ST_EIO, "tcp: socket: %s", strerror(errno));
    }
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno != EINPROGRESS) {
        rc = st_err(ST_ECONN, "tcp: connect %s: %s", t->addr, strerror(errno));
        close(fd);
        return rc;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
        close(fd);
        return st_err(ST_ECONN, "tcp: connect %s: %s", t->addr, err ? strerror(err) : "timed out");
    }
    tcp_set_sockopts(fd, &t->base.opts);
    tcp_frame hello, reply;
    tcp_fill_hello(t, &hello, resume);
    if ((rc = tcp_io_full(fd, &hello, sizeof hello, 1, timeout_ms)) != ST_OK ||
        (rc = tcp_auth_connect_side(t, fd, &hello, timeout_ms)) != ST_OK ||
        (rc = tcp_io_full(fd, &reply, sizeof reply, 0, timeout_ms)) != ST_OK) {
        close(fd);
        return rc;
    }
    if (!tcp_frame_ok(&reply) || (reply.type != TF_HELLO && reply.type != TF_BYE)) {
        close(fd);
        t->base.stats.frames_rejected++;
        return st_err(ST_EPROTO, "tcp: %s answered the handshake with garbage", t->addr);
    }
    if (reply.type == TF_BYE && (reply.flags & TF_BYE_KEY)) {
        close(fd);
        return st_link_fail(&t->base, ST_EPROTO, "%s refused the link: it requires a link key and this end has none",
                            t->addr);
    }
    if (reply.type == TF_BYE) {
        close(fd);
        return st_link_fail(&t->base, ST_ECONN, "%s refused the link (%s)", t->addr,
                            resume ? "it no longer knows it" : "closed");
    }
    rc = tcp_attach(t, fd, &reply);
    if (rc)
        close(fd);
    else
        t->dial_ns = ST_MAX(t->dial_ns, st_now_ns() - t0);
    return rc;
}

/* A redial runs inside st_link_progress, so it is bounded: 50 ms on a
 * near peer, four handshakes' worth on a far one (across the internet a
 * handshake is several round trips), never more than half the link's
 * timeout. */
int tcp_redial_ms(const tcp_link *t)
{
    uint64_t ms = 50 + 4 * t->dial_ns / 1000000ull;
    return (int)ST_MIN(ms, (uint64_t)ST_MAX(50u, t->base.opts.timeout_ms / 2));
}

int tcp_reconnect(tcp_link *t, int timeout_ms) { return dial(t, 1, timeout_ms); }

int tcp_connect(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out)
{
    if (strlen(addr) >= sizeof((tcp_link *)0)->addr)
        return st_err(ST_EINVAL, "tcp: address too long");
    tcp_link *t = tcp_link_new(o, 1);
    if (t->base.err) {
        int rc = st_err(t->base.err, "%s", t->base.errmsg);
        st_link_close(&t->base);
        return rc;
    }
    snprintf(t->addr, sizeof t->addr, "%s", addr);
    if (getrandom(&t->link_id, sizeof t->link_id, 0) != sizeof t->link_id)
        t->link_id = st_now_ns() ^ ((uint64_t)getpid() << 32);
    uint64_t deadline = st_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
    for (;;) { /* the listener may not be up yet: retry until the deadline */
        uint64_t now = st_now_ns();
        int left = timeout_ms < 0 ? 1000 : (int)((deadline > now ? deadline - now : 0) / 1000000ull) + 1;
        int rc = dial(t, 0, left);
        if (rc == ST_OK) {
            *out = &t->base;
            return ST_OK;
        }
        if (t->base.err || rc == ST_EINVAL || (timeout_ms >= 0 && st_now_ns() >= deadline)) {
            if (t->base.err)
                rc = st_err(t->base.err, "tcp: %s", t->base.errmsg);
            st_link_close(&t->base);
            return rc;
        }
        struct timespec ts = {0, 20000000}; /* the listener is not there yet: retry in 20 ms */
        nanosleep(&ts, NULL);
    }
}
