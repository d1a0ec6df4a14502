/* The dpdk protocol under packet loss, reordering and duplication: two
 * links over net_memif in one process (server and client ports on one
 * abstract socket), faults injected by the transmitters' test hook
 * (st_dpdk_debug_faults). Every message must arrive exactly once, in order,
 * byte-identical, within a bounded time, in both directions at once.
 * Skips (77) when the build has no DPDK or the EAL cannot start here. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/dpdk.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fill(uint8_t *p, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(id * 131 + i * 7 + (i >> 9));
    if (n >= 8)
        memcpy(p, &id, 8);
}

static int verify(const uint8_t *p, size_t n, uint64_t id)
{
    if (n >= 8 && memcmp(p, &id, 8) != 0)
        return 0;
    for (size_t i = n >= 8 ? 8 : 0; i < n; i++)
        if (p[i] != (uint8_t)(id * 131 + i * 7 + (i >> 9)))
            return 0;
    return 1;
}

/* sizes from 1 B to ~300 KiB: single packets and long trains */
static size_t msg_len(uint64_t i) { return i % 5 == 4 ? 1 + (i * 7919) % 300000 : 1 + (i * 2654435761u) % 6000; }

typedef struct acc {
    st_listener *l;
    st_link *k;
    int rc;
    char err[256];
} acc;

static void *accept_thread(void *arg)
{
    acc *a = arg;
    a->rc = st_accept(a->l, 10000, &a->k);
    snprintf(a->err, sizeof a->err, "%s", st_errmsg());
    return NULL;
}

/* One end's sending and receiving state. */
typedef struct side {
    st_link *k;
    uint8_t *buf;       /* send buffers, one per message in flight */
    uint64_t sent, done, got;
} side;

#define N_MSGS 600
#define SLOT (320 * 1024)
#define IN_FLIGHT 16

static int pump(side *s, int *bad)
{
    while (s->sent < N_MSGS && s->sent - s->done < IN_FLIGHT) {
        uint8_t *b = s->buf + (s->sent % IN_FLIGHT) * SLOT;
        size_t len = msg_len(s->sent);
        fill(b, len, s->sent);
        st_iov iov = {b, len, NULL};
        int rc = st_link_send(s->k, &iov, 1, s->sent);
        if (rc == ST_EAGAIN)
            break;
        if (rc)
            return rc;
        s->sent++;
    }
    int rc = st_link_progress(s->k);
    if (rc)
        return rc;
    st_completion c[32];
    int n;
    while ((n = st_link_poll_cq(s->k, c, 32)) > 0)
        for (int i = 0; i < n; i++) {
            if (c[i].status != ST_OK || c[i].cookie != s->done)
                (*bad)++;
            s->done++;
        }
    st_msg m;
    while (st_link_recv(s->k, &m) == ST_OK) {
        if (m.seq != s->got || m.len != msg_len(s->got) || !verify(m.data, m.len, s->got)) {
            fprintf(stderr, "message %llu: seq %llu len %zu (want %zu) %s\n", (unsigned long long)s->got,
                    (unsigned long long)m.seq, m.len, msg_len(s->got),
                    m.len == msg_len(s->got) ? "bytes differ" : "");
            (*bad)++;
        }
        s->got++;
        st_link_release(s->k, &m);
    }
    return ST_OK;
}

static void run(const char *name, double drop, double reorder, double dup)
{
    st_dpdk_debug_faults(drop, reorder, dup);
    char addr[128];
    snprintf(addr, sizeof addr, "net_memif,socket=/strait-loss-%d,socket-abstract=yes", (int)getpid());
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = SLOT;
    o.rx_bytes = 4 * (SLOT + 128);
    o.credits = 8;
    o.timeout_ms = 5000;
    acc a = {0};
    CHECK(st_listen("dpdk", addr, &o, &a.l) == ST_OK);
    pthread_t t;
    pthread_create(&t, NULL, accept_thread, &a);
    st_link *ck = NULL;
    int rc = st_connect("dpdk", addr, &o, 10000, &ck);
    pthread_join(t, NULL);
    CHECKF(rc == ST_OK && a.rc == ST_OK, "%s: link set-up: connect %s, accept %s (%s)", name, st_strerror(rc),
           st_strerror(a.rc), rc ? st_errmsg() : a.err);
    if (rc || a.rc) {
        st_link_close(ck);
        st_link_close(a.k);
        st_listener_close(a.l);
        return;
    }
    side s[2] = {{.k = a.k}, {.k = ck}};
    for (int i = 0; i < 2; i++)
        s[i].buf = st_xmalloc((size_t)IN_FLIGHT * SLOT);
    int bad = 0;
    uint64_t t0 = st_now_ns(), end = t0 + 60000000000ull;
    rc = ST_OK;
    while (!rc && !bad && st_now_ns() < end &&
           (s[0].got < N_MSGS || s[1].got < N_MSGS || s[0].done < N_MSGS || s[1].done < N_MSGS))
        for (int i = 0; i < 2 && !rc; i++)
            rc = pump(&s[i], &bad);
    st_link_stats st;
    st_link_get_stats(ck, &st);
    double sec = (double)(st_now_ns() - t0) * 1e-9;
    fprintf(stderr, "%s: %llu+%llu messages received, %llu+%llu completed, %llu retransmits by one end, %.2f s\n",
            name, (unsigned long long)s[0].got, (unsigned long long)s[1].got, (unsigned long long)s[0].done,
            (unsigned long long)s[1].done, (unsigned long long)st.retransmits, sec);
    CHECKF(rc == ST_OK, "%s: link failed: %s", name, st_errmsg());
    CHECKF(!bad, "%s: %d messages or completions wrong", name, bad);
    CHECKF(s[0].got == N_MSGS && s[1].got == N_MSGS, "%s: received %llu and %llu of %d", name,
           (unsigned long long)s[0].got, (unsigned long long)s[1].got, N_MSGS);
    /* nothing more arrives: each message exactly once */
    for (int i = 0; i < 20; i++) {
        st_link_progress(s[0].k);
        st_link_progress(s[1].k);
    }
    st_msg m;
    CHECK(st_link_recv(s[0].k, &m) == ST_EAGAIN && st_link_recv(s[1].k, &m) == ST_EAGAIN);
    if (drop > 0)
        CHECKF(st.retransmits > 0, "%s: loss without a retransmission", name);
    st_link_close(ck);
    st_link_close(a.k);
    st_listener_close(a.l);
    free(s[0].buf);
    free(s[1].buf);
}

int main(void)
{
    int rc = st_dpdk_eal_init();
    if (rc == ST_ENOTSUP)
        TEST_SKIP("built without DPDK");
    if (rc)
        TEST_SKIP("the DPDK EAL does not start here: %s", st_errmsg());
    run("clean", 0, 0, 0);
    run("drop1", 0.01, 0.01, 0.01);
    run("drop10", 0.10, 0.05, 0.02);
    return test_done();
}
