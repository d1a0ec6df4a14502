/* A tcp link to a far peer resumes after a dropped connection. The peer
 * is made far by a relay in this process that holds every byte for
 * DELAY_MS in each direction (a round trip of 2 x DELAY_MS), so a
 * handshake -- connect, the link-key proofs, the HELLOs -- takes several
 * round trips. The redial inside st_link_progress must allow for that: a
 * fixed short bound never completes one, and the link fails once the peer
 * has been unreachable for its timeout. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/st_common.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#define DELAY_MS 60
#define MAX_PUMPS 64

/* ---- the relay: one listening socket; each accepted connection is joined
 * to a new connection to the target by two pumps, one per direction. A pump
 * forwards each chunk DELAY_MS after it was read (the link's latency). */
typedef struct relay {
    int lfd;
    struct sockaddr_in target;
    pthread_t acceptor, pumps[MAX_PUMPS];
    int n_pumps;
    atomic_int accepted;
} relay;

typedef struct pump {
    int from, to;
} pump;

static void wait_until(uint64_t t_ns)
{
    for (uint64_t now = st_now_ns(); now < t_ns; now = st_now_ns()) {
        struct timespec ts = {0, (long)(t_ns - now)};
        nanosleep(&ts, NULL);
    }
}

static void *pump_run(void *arg)
{
    pump p = *(pump *)arg;
    free(arg);
    static _Thread_local uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(p.from, buf, sizeof buf);
        if (n <= 0)
            break;
        wait_until(st_now_ns() + DELAY_MS * 1000000ull);
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = send(p.to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    shutdown(p.to, SHUT_WR);
    shutdown(p.from, SHUT_RD);
    return NULL;
}

static void *relay_accept(void *arg)
{
    relay *r = arg;
    for (;;) {
        int c = accept(r->lfd, NULL, NULL);
        if (c < 0)
            return NULL; /* the listening socket was shut down */
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&r->target, sizeof r->target) != 0 || r->n_pumps + 2 > MAX_PUMPS) {
            close(c);
            if (s >= 0)
                close(s);
            continue;
        }
        atomic_fetch_add(&r->accepted, 1);
        for (int dir = 0; dir < 2; dir++) {
            pump *p = st_xmalloc(sizeof *p);
            p->from = dir ? s : c;
            p->to = dir ? c : s;
            pthread_create(&r->pumps[r->n_pumps++], NULL, pump_run, p);
        }
    }
}

/* "127.0.0.1:PORT" of a listener -> the relay's target */
static int relay_start(relay *r, const char *target, char *addr, size_t cap)
{
    memset(r, 0, sizeof *r);
    const char *colon = strrchr(target, ':');
    if (!colon)
        return -1;
    r->target.sin_family = AF_INET;
    r->target.sin_port = htons((uint16_t)atoi(colon + 1));
    r->target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(r->lfd, 16) != 0 ||
        getsockname(r->lfd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    snprintf(addr, cap, "127.0.0.1:%d", ntohs(a.sin_port));
    pthread_create(&r->acceptor, NULL, relay_accept, r);
    return 0;
}

static void relay_stop(relay *r)
{
    shutdown(r->lfd, SHUT_RDWR); /* wakes accept */
    pthread_join(r->acceptor, NULL);
    close(r->lfd);
    for (int i = 0; i < r->n_pumps; i++)
        pthread_join(r->pumps[i], NULL);
}

/* ---- the far end: accepts the link, then echoes each message's first
 * byte count back as one 8-byte message, until it has seen `want` */
typedef struct server {
    st_listener *l;
    int want, got, rc;
    char err[256];
} server;

static void *server_run(void *arg)
{
    server *s = arg;
    st_link *k = NULL;
    s->rc = st_accept(s->l, 10000, &k);
    if (s->rc) {
        snprintf(s->err, sizeof s->err, "accept: %s", st_errmsg());
        return NULL;
    }
    uint64_t end = st_now_ns() + 20000000000ull;
    while (s->got < s->want && st_now_ns() < end) {
        uint64_t tk = st_link_wait_prepare(k);
        int rc = st_link_progress(k);
        if (rc) {
            s->rc = rc;
            snprintf(s->err, sizeof s->err, "progress: %s", st_link_errmsg(k));
            break;
        }
        st_msg m;
        if (st_link_recv(k, &m) == ST_OK) {
            uint64_t len = m.len;
            s->got += m.len == 1000u + (size_t)s->got && m.data[0] == (uint8_t)s->got;
            st_link_release(k, &m);
            st_iov iov = {&len, 8, NULL};
            st_link_send(k, &iov, 1, 0);
        } else {
            st_link_wait(k, tk, 1);
        }
    }
    /* stay until the client has its last echo (it closes first) */
    for (uint64_t tk = st_link_wait_prepare(k); st_now_ns() < end && st_link_progress(k) == ST_OK;
         tk = st_link_wait_prepare(k))
        st_link_wait(k, tk, 5);
    st_link_close(k);
    return NULL;
}

/* send message i (1000 + i bytes, first byte i) and wait for its echo */
static int round_trip(st_link *k, int i, uint64_t timeout_ns)
{
    static uint8_t buf[4096];
    memset(buf, i, sizeof buf);
    st_iov iov = {buf, 1000 + (size_t)i, NULL};
    int rc = st_link_send(k, &iov, 1, (uint64_t)i);
    if (rc)
        return rc;
    uint64_t end = st_now_ns() + timeout_ns;
    while (st_now_ns() < end) {
        uint64_t tk = st_link_wait_prepare(k);
        if ((rc = st_link_progress(k)))
            return rc;
        st_completion c[8];
        st_link_poll_cq(k, c, 8);
        st_msg m;
        if (st_link_recv(k, &m) == ST_OK) {
            uint64_t len = 0;
            memcpy(&len, m.data, m.len >= 8 ? 8 : 0);
            st_link_release(k, &m);
            return len == 1000u + (uint64_t)i ? ST_OK : ST_EPROTO;
        }
        st_link_wait(k, tk, 1);
    }
    return ST_ETIMEDOUT;
}

int main(void)
{
    st_link_opts o;
    st_link_opts_keyed(&o, "tcp", "far-peer-secret");
    o.timeout_ms = 3000;
    server s = {.want = 3};
    CHECK(st_listen("tcp", "127.0.0.1:0", &o, &s.l) == ST_OK);
    if (!s.l)
        return test_done();
    relay r;
    char via[64];
    CHECK(relay_start(&r, st_listener_addr(s.l), via, sizeof via) == 0);
    pthread_t th;
    pthread_create(&th, NULL, server_run, &s);
    st_link *k = NULL;
    uint64_t t0 = st_now_ns();
    int rc = st_connect("tcp", via, &o, 10000, &k);
    CHECKF(rc == ST_OK, "connect through the relay: %s", st_errmsg());
    if (rc == ST_OK) {
        fprintf(stderr, "handshake through the relay: %.0f ms (round trip %d ms)\n",
                (double)(st_now_ns() - t0) * 1e-6, 2 * DELAY_MS);
        CHECKF((rc = round_trip(k, 0, 10000000000ull)) == ST_OK, "message 0: %s %s", st_strerror(rc),
               st_link_errmsg(k));
        for (int i = 1; i < 3 && rc == ST_OK; i++) {
            CHECK(st_link_debug_drop(k) == ST_OK);
            t0 = st_now_ns();
            rc = round_trip(k, i, 10000000000ull);
            CHECKF(rc == ST_OK, "message %d after a dropped connection: %s (%s)", i, st_strerror(rc),
                   st_link_errmsg(k));
            fprintf(stderr, "resumed and echoed in %.0f ms\n", (double)(st_now_ns() - t0) * 1e-6);
        }
        st_link_stats st;
        st_link_get_stats(k, &st);
        CHECKF(st.reconnects >= 2, "%llu reconnects", (unsigned long long)st.reconnects);
        CHECKF(atomic_load(&r.accepted) >= 3, "%d connections through the relay", atomic_load(&r.accepted));
        st_link_close(k);
    }
    pthread_join(th, NULL);
    CHECKF(s.got == 3, "the far end got %d of 3 messages (%s)", s.got, s.err);
    st_listener_close(s.l);
    relay_stop(&r);
    return test_done();
}
