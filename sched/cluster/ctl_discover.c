/* LAN discovery: the scheduler announces its control address over UDP and
 * a node started without -s waits for the announcement of its cluster.
 *
 * The datagram is one JSON object {"type":"announce","addr":A,"cluster":CID}
 * (no length prefix: a datagram has one). CID = the first 8 hex digits of
 * SHA-256("strait/v1/cluster" | token): it tells clusters apart without
 * revealing the token; it proves nothing, the handshake does that.
 *
 * Where announcements go: STRAIT_ANNOUNCE_ADDR ("HOST" or "HOST:PORT",
 * default port ST_CTL_ANNOUNCE_PORT) when set, else the IPv4 broadcast
 * address 255.255.255.255. The listener binds the port of that same
 * setting, so a test (or a network without broadcast) sets it to e.g.
 * "127.0.0.1:40123" on both ends. */
#define _GNU_SOURCE
#include "sched/cluster/ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/st_common.h"
#include "sched/cluster/ctl_impl.h"

static const char *announce_target(void)
{
    const char *e = getenv("STRAIT_ANNOUNCE_ADDR");
    return e && *e ? e : "255.255.255.255";
}

static int cluster_id(const char *token, char out[9])
{
    static const char label[] = "strait/v1/cluster";
    uint8_t dig[32];
    unsigned dn = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, label, sizeof label - 1) == 1 &&
             EVP_DigestUpdate(md, token, strlen(token)) == 1 && EVP_DigestFinal_ex(md, dig, &dn) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return st_err(ST_EIO, "ctl: SHA-256 failed");
    st_ctl_hex(dig, 4, out);
    return ST_OK;
}

int st_ctl_announce_open(int *fd)
{
    struct addrinfo *res;
    int rc = st_ctl_resolve(announce_target(), 0, SOCK_DGRAM, ST_CTL_ANNOUNCE_PORT, &res);
    if (rc)
        return rc;
    int s = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    freeaddrinfo(res);
    if (s < 0)
        return st_err(ST_EIO, "ctl: announce socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    *fd = s;
    return ST_OK;
}

int st_ctl_announce_send(int fd, const char *control_addr, const char *token)
{
    if (fd < 0 || !control_addr || !token || !*token)
        return st_err(ST_EINVAL, "ctl: announce_send: bad socket, address or empty token");
    char cid[9];
    int rc = cluster_id(token, cid);
    if (rc)
        return rc;
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"type\":\"announce\",\"addr\":");
    st_sb_json_str(&sb, control_addr, strlen(control_addr));
    st_sb_printf(&sb, ",\"cluster\":\"%s\"}", cid);
    struct addrinfo *res;
    rc = st_ctl_resolve(announce_target(), 0, SOCK_DGRAM, ST_CTL_ANNOUNCE_PORT, &res);
    if (!rc) {
        ssize_t w = sendto(fd, sb.buf, sb.len, MSG_NOSIGNAL, res->ai_addr, res->ai_addrlen);
        if (w != (ssize_t)sb.len)
            rc = st_err(ST_EIO, "ctl: announce to %s: %s", announce_target(), w < 0 ? strerror(errno) : "short send");
        freeaddrinfo(res);
    }
    st_sb_free(&sb);
    return rc;
}

static int is_wildcard(const char *host)
{
    return !*host || !strcmp(host, "*") || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

/* Use one announcement if it is for our cluster: 1 taken, 0 ignored. */
static int take(const char *buf, size_t n, const struct sockaddr *from, const char *cid, char *addr, size_t cap)
{
    st_json *m = NULL;
    if (st_ctl_parse(buf, n, &m) != ST_OK)
        return 0;
    int taken = 0;
    const char *a = st_json_get_str(m, "addr", NULL);
    char host[256], port[16];
    if (!strcmp(st_json_get_str(m, "type", ""), "announce") && !strcmp(st_json_get_str(m, "cluster", ""), cid) &&
        a && st_ctl_split_addr(a, host, sizeof host, port, sizeof port, ST_CTL_DEFAULT_PORT) == ST_OK) {
        if (is_wildcard(host)) {
            char src[96], shost[64], sport[16];
            st_ctl_format_sockaddr(from, src, sizeof src);
            if (st_ctl_split_addr(src, shost, sizeof shost, sport, sizeof sport, 0) == ST_OK)
                snprintf(host, sizeof host, "%s", shost);
        }
        int w = strchr(host, ':') ? snprintf(addr, cap, "[%s]:%s", host, port) : snprintf(addr, cap, "%s:%s", host, port);
        taken = w > 0 && (size_t)w < cap;
    }
    st_json_free(m);
    return taken;
}

int st_ctl_discover(const char *token, int timeout_ms, char *addr, size_t cap)
{
    if (!token || !*token || !addr || !cap)
        return st_err(ST_EINVAL, "ctl: discover: empty token or no room for the address");
    char cid[9];
    int rc = cluster_id(token, cid);
    if (rc)
        return rc;
    struct addrinfo *res;
    if ((rc = st_ctl_resolve(announce_target(), 0, SOCK_DGRAM, ST_CTL_ANNOUNCE_PORT, &res)))
        return rc;
    /* listen on the announcement port on every address of the target's family:
     * broadcasts arrive addressed to 255.255.255.255, not to us */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    int fam = res->ai_family;
    if (fam == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = ((struct sockaddr_in6 *)res->ai_addr)->sin6_port;
        s6->sin6_addr = in6addr_any;
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = ((struct sockaddr_in *)res->ai_addr)->sin_port;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        sl = sizeof *s4;
    }
    freeaddrinfo(res);
    int s = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return st_err(ST_EIO, "ctl: discover socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&ss, sl) != 0) {
        int e = errno;
        close(s);
        return st_err(ST_EIO, "ctl: discover: cannot listen for announcements (%s): %s", announce_target(),
                      strerror(e));
    }
    uint64_t deadline = st_ctl_deadline(timeout_ms);
    rc = ST_ETIMEDOUT;
    for (;;) {
        char buf[2048];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n > 0) {
            if (take(buf, (size_t)n, (struct sockaddr *)&from, cid, addr, cap)) {
                rc = ST_OK;
                break;
            }
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            rc = st_err(ST_EIO, "ctl: discover: %s", strerror(errno));
            break;
        }
        int w = st_ctl_wait(s, POLLIN, deadline);
        if (w == 0) {
            rc = st_err(ST_ETIMEDOUT, "ctl: no scheduler of this cluster announced itself within %d ms", timeout_ms);
            break;
        }
        if (w < 0) {
            rc = st_err(ST_EIO, "ctl: discover: poll: %s", strerror(errno));
            break;
        }
    }
    close(s);
    return rc;
}
