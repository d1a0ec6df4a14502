/* The control channel's connection and framing (contract in ctl.h).
 *
 * A frame is a 4-byte little-endian length L (1 .. ST_CTL_MAX_MSG) and L
 * bytes of one JSON object with a string "type". Sockets are non-blocking;
 * every wait is a poll() bounded by the caller's timeout. Received bytes go
 * to a per-connection buffer, so one read may hold many frames (coalesced)
 * and one frame may take many reads (split); the buffer only grows to the
 * length a validated header asks for, never to what the peer merely sends.
 *
 * Threads: one receiver and one sender may use a connection at the same
 * time (sends are serialized by a mutex, the receive buffer has one owner).
 */
#define _GNU_SOURCE
#include "sched/cluster/ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/st_common.h"
#include "sched/cluster/ctl_impl.h"

#define RX_INITIAL 4096

struct st_ctl_conn {
    int fd;
    char peer[96];        /* "HOST:PORT" of the other end */
    uint8_t *rx;          /* received bytes: [rx_off, rx_len) not yet consumed */
    size_t rx_off, rx_len, rx_cap;
    _Atomic int broken;   /* a framing error or a half-written frame: unusable (set by either thread) */
    pthread_mutex_t tx_lock;
};

/* ---- addresses ------------------------------------------------------------------ */

int st_ctl_split_addr(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap,
                      int default_port)
{
    if (!addr || !*addr)
        return st_err(ST_EINVAL, "ctl: empty address (want HOST:PORT)");
    const char *h = addr, *p = NULL;
    size_t hn;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close)
            return st_err(ST_EINVAL, "ctl: address '%s': '[' without ']'", addr);
        h = addr + 1;
        hn = (size_t)(close - h);
        if (close[1] == ':')
            p = close + 2;
        else if (close[1] != '\0')
            return st_err(ST_EINVAL, "ctl: address '%s': junk after ']'", addr);
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon && strchr(addr, ':') != colon) {
            hn = strlen(addr); /* bare IPv6 literal, no port */
        } else if (colon) {
            hn = (size_t)(colon - addr);
            p = colon + 1;
        } else {
            hn = strlen(addr);
        }
    }
    if (hn >= host_cap)
        return st_err(ST_EINVAL, "ctl: address '%s': host too long", addr);
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (!*p || *end || errno || v < 0 || v > 65535)
            return st_err(ST_EINVAL, "ctl: address '%s': bad port '%s'", addr, p);
        snprintf(port, port_cap, "%ld", v);
    } else {
        if (default_port < 0)
            return st_err(ST_EINVAL, "ctl: address '%s' has no port (want HOST:PORT)", addr);
        snprintf(port, port_cap, "%d", default_port);
    }
    return ST_OK;
}

void st_ctl_format_sockaddr(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(s6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* an IPv4 peer of a dual-stack listener */
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(out, cap, "%s:%d", host, port);
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            snprintf(out, cap, "[%s]:%d", host, port);
        }
    } else {
        snprintf(out, cap, "?");
    }
}

int st_ctl_resolve(const char *addr, int passive, int socktype, int default_port, struct addrinfo **res)
{
    char host[256], port[16];
    int rc = st_ctl_split_addr(addr, host, sizeof host, port, sizeof port, default_port);
    if (rc)
        return rc;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    const char *hp = host;
    if (!*host || !strcmp(host, "*"))
        hp = passive ? NULL : "localhost";
    int g = getaddrinfo(hp, port, &hints, res);
    if (g)
        return st_err(ST_EINVAL, "ctl: cannot resolve '%s': %s", addr, gai_strerror(g));
    return ST_OK;
}

/* Wait for ev on fd until the deadline (0: forever). 1 ready, 0 timed out, <0 error. */
int st_ctl_wait(int fd, short ev, uint64_t deadline_ns)
{
    for (;;) {
        int ms = -1;
        if (deadline_ns) {
            uint64_t now = st_now_ns();
            if (now >= deadline_ns)
                ms = 0;
            else
                ms = (int)ST_MIN((deadline_ns - now + 999999) / 1000000, (uint64_t)1 << 30);
        }
        struct pollfd p = {.fd = fd, .events = ev};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0) {
            if (ms == 0 || (deadline_ns && st_now_ns() >= deadline_ns))
                return 0;
            continue; /* poll rounds down: wait out the rest */
        }
        if (errno != EINTR)
            return -1;
    }
}

uint64_t st_ctl_deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return 0;
    return st_now_ns() + (uint64_t)timeout_ms * 1000000u + 1; /* +1: never 0 */
}

/* ---- connection ------------------------------------------------------------------ */

static st_ctl_conn *conn_new(int fd)
{
    st_ctl_conn *c = st_xcalloc(1, sizeof *c);
    c->fd = fd;
    pthread_mutex_init(&c->tx_lock, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        st_ctl_format_sockaddr((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "?");
    return c;
}

int st_ctl_listen(const char *addr, int *fd, char *bound, size_t bound_cap)
{
    struct addrinfo *res;
    int rc = st_ctl_resolve(addr, 1, SOCK_STREAM, ST_CTL_DEFAULT_PORT, &res);
    if (rc)
        return rc;
    int err = 0, s = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) { /* "[::]:P" also takes IPv4, whatever the sysctl says */
            int zero = 0;
            setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        }
        if (bind(s, ai->ai_addr, ai->ai_addrlen) == 0 && listen(s, 64) == 0)
            break;
        err = errno;
        close(s);
        s = -1;
    }
    freeaddrinfo(res);
    if (s < 0)
        return st_err(ST_EIO, "ctl: cannot listen on '%s': %s", addr, strerror(err));
    if (bound && bound_cap) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(s, (struct sockaddr *)&ss, &sl);
        st_ctl_format_sockaddr((struct sockaddr *)&ss, bound, bound_cap);
    }
    *fd = s;
    return ST_OK;
}

int st_ctl_accept(int listen_fd, int timeout_ms, st_ctl_conn **out)
{
    uint64_t deadline = st_ctl_deadline(timeout_ms);
    for (;;) {
        int s = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s >= 0) {
            *out = conn_new(s);
            return ST_OK;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return st_err(ST_EIO, "ctl: accept: %s", strerror(errno));
        int w = st_ctl_wait(listen_fd, POLLIN, deadline);
        if (w == 0)
            return st_err(ST_ETIMEDOUT, "ctl: no connection within %d ms", timeout_ms);
        if (w < 0)
            return st_err(ST_EIO, "ctl: poll on listener: %s", strerror(errno));
    }
}

int st_ctl_connect(const char *addr, int timeout_ms, st_ctl_conn **out)
{
    struct addrinfo *res;
    int rc = st_ctl_resolve(addr, 0, SOCK_STREAM, ST_CTL_DEFAULT_PORT, &res);
    if (rc)
        return rc;
    uint64_t deadline = st_ctl_deadline(timeout_ms);
    int err = ECONNREFUSED, timed_out = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0) {
            err = errno;
            continue;
        }
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            int w = st_ctl_wait(s, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (w > 0 && getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(res);
                *out = conn_new(s);
                return ST_OK;
            }
            if (w == 0)
                timed_out = 1;
            err = soerr ? soerr : errno;
        } else {
            err = errno;
        }
        close(s);
        if (timed_out)
            break;
    }
    freeaddrinfo(res);
    if (timed_out)
        return st_err(ST_ETIMEDOUT, "ctl: connect to %s: no answer within %d ms", addr, timeout_ms);
    return st_err(ST_ECONN, "ctl: connect to %s: %s", addr, strerror(err));
}

void st_ctl_close(st_ctl_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->tx_lock);
    free(c->rx);
    free(c);
}

int st_ctl_fd(const st_ctl_conn *c) { return c ? c->fd : -1; }
const char *st_ctl_peer(const st_ctl_conn *c) { return c ? c->peer : "?"; }

/* ---- send ---------------------------------------------------------------------- */

int st_ctl_send(st_ctl_conn *c, const char *json, size_t len, int timeout_ms)
{
    if (!c || !json)
        return st_err(ST_EINVAL, "ctl: send: NULL connection or message");
    if (len == 0 || len > ST_CTL_MAX_MSG)
        return st_err(ST_EINVAL, "ctl: send to %s: message length %zu not in 1..%u", c->peer, len,
                      ST_CTL_MAX_MSG);
    uint8_t hdr[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    uint64_t deadline = st_ctl_deadline(timeout_ms);
    int rc = ST_OK;
    pthread_mutex_lock(&c->tx_lock);
    if (c->broken) {
        pthread_mutex_unlock(&c->tx_lock);
        return st_err(ST_ECONN, "ctl: connection to %s is no longer usable", c->peer);
    }
    size_t total = 4 + len, done = 0;
    while (done < total) {
        struct iovec iov[2];
        int n = 0;
        if (done < 4) {
            iov[n++] = (struct iovec){hdr + done, 4 - done};
            iov[n++] = (struct iovec){(void *)json, len};
        } else {
            iov[n++] = (struct iovec){(void *)(json + (done - 4)), total - done};
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = st_ctl_wait(c->fd, POLLOUT, deadline);
            if (r > 0)
                continue;
            if (r == 0) {
                rc = st_err(ST_ETIMEDOUT, "ctl: send to %s: not writable within %d ms", c->peer, timeout_ms);
                break;
            }
        }
        rc = st_err(ST_ECONN, "ctl: send to %s: %s", c->peer, w < 0 ? strerror(errno) : "closed");
        break;
    }
    if (rc && done > 0)
        c->broken = 1; /* half a frame is on the wire: the stream is out of step */
    pthread_mutex_unlock(&c->tx_lock);
    return rc;
}

/* ---- receive ------------------------------------------------------------------- */

int st_ctl_parse(const char *buf, size_t len, st_json **msg)
{
    if (!buf || len == 0 || len > ST_CTL_MAX_MSG)
        return st_err(ST_EPROTO, "ctl: message length %zu not in 1..%u", len, ST_CTL_MAX_MSG);
    st_json *j = NULL;
    if (st_json_parse(buf, len, &j) != ST_OK)
        return st_err(ST_EPROTO, "ctl: message is not JSON: %s", st_errmsg());
    if (j->type != ST_JSON_OBJECT) {
        st_json_free(j);
        return st_err(ST_EPROTO, "ctl: message is not a JSON object");
    }
    const st_json *t = st_json_get(j, "type");
    if (!t || t->type != ST_JSON_STRING) {
        st_json_free(j);
        return st_err(ST_EPROTO, "ctl: message has no string member \"type\"");
    }
    /* a type is a short lowercase word; which ones are expected is up to the receiver's state */
    int ok = t->u.str.len > 0 && t->u.str.len <= 32;
    for (size_t i = 0; ok && i < t->u.str.len; i++) {
        char ch = t->u.str.s[i];
        ok = (ch >= 'a' && ch <= 'z') || ch == '_' || (ch >= '0' && ch <= '9');
    }
    if (!ok) {
        st_json_free(j);
        return st_err(ST_EPROTO, "ctl: message type is not a short lowercase word");
    }
    *msg = j;
    return ST_OK;
}

static uint32_t frame_len(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int st_ctl_pending(const st_ctl_conn *c)
{
    if (!c || c->broken)
        return 0;
    size_t have = c->rx_len - c->rx_off;
    if (have < 4)
        return 0;
    uint32_t l = frame_len(c->rx + c->rx_off);
    /* a bad length is "pending" too: recv reports it at once */
    return l == 0 || l > ST_CTL_MAX_MSG || have >= 4 + (size_t)l;
}

/* Protocol failure: tell the peer why (best effort, no waiting) and make
 * the connection unusable. Returns ST_EPROTO with the message already set. */
static int fail_proto(st_ctl_conn *c)
{
    char reason[384];
    snprintf(reason, sizeof reason, "%s", st_errmsg());
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":\"error\",\"message\":");
    st_sb_json_str(&sb, reason, strlen(reason));
    st_sb_puts(&sb, "}");
    st_ctl_send(c, sb.buf, sb.len, 0);
    st_sb_free(&sb);
    c->broken = 1;
    return st_err(ST_EPROTO, "%s (from %s)", reason, c->peer);
}

int st_ctl_recv(st_ctl_conn *c, int timeout_ms, st_json **msg)
{
    if (!c || !msg)
        return st_err(ST_EINVAL, "ctl: recv: NULL argument");
    if (c->broken)
        return st_err(ST_ECONN, "ctl: connection to %s is no longer usable", c->peer);
    uint64_t deadline = st_ctl_deadline(timeout_ms);
    for (;;) {
        size_t have = c->rx_len - c->rx_off;
        size_t need = 4;
        if (have >= 4) {
            uint32_t l = frame_len(c->rx + c->rx_off);
            if (l == 0 || l > ST_CTL_MAX_MSG) {
                st_err(ST_EPROTO, "ctl: frame length %u not in 1..%u", l, ST_CTL_MAX_MSG);
                return fail_proto(c);
            }
            need = 4 + (size_t)l;
            if (have >= need) {
                int rc = st_ctl_parse((const char *)c->rx + c->rx_off + 4, l, msg);
                c->rx_off += need;
                if (c->rx_off == c->rx_len)
                    c->rx_off = c->rx_len = 0;
                return rc ? fail_proto(c) : ST_OK;
            }
        }
        /* room for the rest of this frame, plus read-ahead of whatever else is there */
        if (c->rx_off > 0) {
            memmove(c->rx, c->rx + c->rx_off, have);
            c->rx_len = have;
            c->rx_off = 0;
        }
        size_t want = ST_MAX(need, (size_t)RX_INITIAL);
        if (c->rx_cap < want) {
            uint8_t *nb = realloc(c->rx, want);
            if (!nb)
                return st_err(ST_ENOMEM, "ctl: no memory for a %zu-byte message from %s", need, c->peer);
            c->rx = nb;
            c->rx_cap = want;
        }
        ssize_t r = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
        if (r > 0) {
            c->rx_len += (size_t)r;
            continue;
        }
        if (r == 0) {
            c->broken = 1;
            return st_err(ST_ECONN, "ctl: %s closed the connection%s", c->peer,
                          have ? " in the middle of a message" : "");
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c->broken = 1;
            return st_err(ST_ECONN, "ctl: receive from %s: %s", c->peer, strerror(errno));
        }
        int w = timeout_ms == 0 ? 0 : st_ctl_wait(c->fd, POLLIN, deadline);
        if (w == 0)
            return st_err(ST_ETIMEDOUT, "ctl: nothing from %s within %d ms", c->peer, timeout_ms);
        if (w < 0) {
            c->broken = 1;
            return st_err(ST_ECONN, "ctl: poll on %s: %s", c->peer, strerror(errno));
        }
    }
}
