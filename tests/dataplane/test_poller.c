/* SPSC ring and polling cores: order across threads, back-off to sleeping
 * when idle, wake-up by new work, counters. Runs over tcp and shm. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/poller.h"
#include "dataplane/ring.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#define RING_N 2000000

static void *ring_producer(void *arg)
{
    st_spsc *r = arg;
    for (uint64_t i = 0; i < RING_N; i++)
        while (st_spsc_push(r, &i) != 0)
            sched_yield();
    return NULL;
}

static void test_ring(void)
{
    st_spsc r;
    CHECK(st_spsc_init(&r, 3, 8) == ST_EINVAL);
    CHECK(st_spsc_init(&r, 4, 8) == ST_OK);
    uint64_t v = 1;
    for (int i = 0; i < 4; i++)
        CHECK(st_spsc_push(&r, &v) == 0);
    CHECK(st_spsc_push(&r, &v) == -1 && st_spsc_count(&r) == 4);
    for (int i = 0; i < 4; i++)
        CHECK(st_spsc_pop(&r, &v) == 0);
    CHECK(st_spsc_pop(&r, &v) == -1);
    st_spsc_free(&r);

    CHECK(st_spsc_init(&r, 256, 8) == ST_OK);
    pthread_t th;
    pthread_create(&th, NULL, ring_producer, &r);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < RING_N; i++) {
        while (st_spsc_pop(&r, &v) != 0)
            sched_yield();
        bad += v != i;
    }
    pthread_join(th, NULL);
    CHECKF(bad == 0, "%llu elements out of order", (unsigned long long)bad);
    st_spsc_free(&r);
}

static void test_cpu_list(void)
{
    int c[4];
    CHECK(st_parse_cpu_list("3", c, 4) == 1 && c[0] == 3);
    CHECK(st_parse_cpu_list("0,1,5", c, 4) == 3 && c[2] == 5);
    CHECK(st_parse_cpu_list("", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("1,x", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("1,", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("-1", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("1,2,3,4,5", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("2-4,7", c, 4) == 4 && c[0] == 2 && c[2] == 4 && c[3] == 7);
    CHECK(st_parse_cpu_list("3-3", c, 4) == 1 && c[0] == 3);
    CHECK(st_parse_cpu_list("4-2", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("1-", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("0-9", c, 4) == ST_EINVAL);
    CHECK(st_parse_cpu_list("+1", c, 4) == ST_EINVAL);
    CHECK(st_poller_set_cores("1,x") == ST_EINVAL);
}

/* ---- pollers over a real link pair ----------------------------------------------------------- */
typedef struct conn_arg {
    const char *transport, *addr;
    st_link *link;
    int rc;
} conn_arg;

static void *connector(void *arg)
{
    conn_arg *a = arg;
    a->rc = st_connect(a->transport, a->addr, NULL, 5000, &a->link);
    return NULL;
}

#define N 20000

static int wait_recv(st_poller *p, st_msg *m, int ms)
{
    uint64_t end = st_now_ns() + (uint64_t)ms * 1000000ull;
    int rc;
    while ((rc = st_poller_recv(p, m)) == ST_EAGAIN && st_now_ns() < end)
        sched_yield();
    return rc;
}

static void test_pollers(const char *transport, const char *addr)
{
    st_listener *l;
    if (st_listen(transport, addr, NULL, &l) != ST_OK) {
        CHECKF(0, "listen: %s", st_errmsg());
        return;
    }
    conn_arg a = {transport, st_listener_addr(l), NULL, 0};
    pthread_t th;
    pthread_create(&th, NULL, connector, &a);
    st_link *server = NULL;
    int rc = st_accept(l, 5000, &server);
    pthread_join(th, NULL);
    CHECKF(rc == ST_OK && a.rc == ST_OK, "%s: link set-up: %s", transport, st_errmsg());
    if (rc || a.rc)
        return;
    st_poller_opts o;
    st_poller_opts_default(&o);
    o.spin_us = 20;
    o.yield_us = 100;
    /* a CPU this process may not run on is refused, not silently ignored */
    st_poller *tx, *rx;
    st_poller_opts bad_cpu = o;
    bad_cpu.cpu = CPU_SETSIZE - 1;
    CHECK(st_poller_start(a.link, &bad_cpu, &tx) == ST_EINVAL);
    /* default options take the cores from the --dataplane-cores list in
     * turn (tcp), or stay unpinned without one (shm) */
    int allowed[2], n_allowed = 0;
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    for (int c = CPU_SETSIZE - 1; c >= 0 && n_allowed < 2; c--)
        if (CPU_ISSET(c, &set))
            allowed[n_allowed++] = c;
    char list[32];
    if (n_allowed == 2)
        snprintf(list, sizeof list, "%d,%d", allowed[0], allowed[1]);
    else
        snprintf(list, sizeof list, "%d", allowed[0]);
    int pin = !strcmp(transport, "tcp");
    CHECK(st_poller_set_cores(pin ? list : NULL) == ST_OK);
    CHECK(st_poller_start(a.link, &o, &tx) == ST_OK);
    CHECK(st_poller_start(server, &o, &rx) == ST_OK);
    CHECKF(st_poller_cpu(tx) == (pin ? allowed[0] : -1), "%s: sender core on CPU %d", transport, st_poller_cpu(tx));
    CHECKF(st_poller_cpu(rx) == (pin ? allowed[n_allowed - 1] : -1), "%s: receiver core on CPU %d", transport,
           st_poller_cpu(rx));

    static uint64_t payload[N][4];
    uint64_t sent = 0, got = 0, bad = 0, completions = 0;
    uint64_t end = st_now_ns() + 20000000000ull;
    while ((got < N || completions < N) && st_now_ns() < end) {
        if (sent < N) {
            for (int j = 0; j < 4; j++)
                payload[sent][j] = sent * 4 + (uint64_t)j;
            st_iov iov = {payload[sent], sizeof payload[sent], NULL};
            if (st_poller_send(tx, &iov, 1, sent) == ST_OK)
                sent++;
        }
        st_msg m;
        while (st_poller_recv(rx, &m) == ST_OK) {
            uint64_t v[4];
            memcpy(v, m.data, sizeof v);
            bad += m.len != sizeof v || v[0] != got * 4 || v[3] != got * 4 + 3 || m.seq != got;
            got++;
            while (st_poller_release(rx, &m) == ST_EAGAIN)
                sched_yield();
        }
        st_completion c[64];
        int n = st_poller_poll_cq(tx, c, 64);
        for (int i = 0; i < n; i++)
            bad += c[i].status != ST_OK || c[i].cookie != completions++;
    }
    CHECKF(got == N && completions == N && bad == 0, "%s: got %llu, completions %llu, bad %llu", transport,
           (unsigned long long)got, (unsigned long long)completions, (unsigned long long)bad);

    /* idle: the receiving core must fall back to blocking */
    st_poller_stats s0, s1;
    st_poller_get_stats(rx, &s0);
    CHECK(s0.msgs_rx == N && s0.bytes_rx == (uint64_t)N * 32);
    end = st_now_ns() + 5000000000ull;
    do {
        usleep(1000); /* letting time pass is the point here: the core is idle */
        st_poller_get_stats(rx, &s1);
    } while (s1.sleeps < s0.sleeps + 3 && st_now_ns() < end);
    CHECKF(s1.sleeps >= s0.sleeps + 3, "%s: idle core never slept", transport);
    CHECK(s1.spins > 0 && s1.yields > 0);
    /* and a message must still get through (wake-up of a sleeping core) */
    uint64_t one = 4 * (uint64_t)N;
    st_iov iov = {&one, 8, NULL};
    CHECK(st_poller_send(tx, &iov, 1, N) == ST_OK);
    st_msg m;
    CHECKF(wait_recv(rx, &m, 5000) == ST_OK && m.seq == N, "%s: message after idle not delivered", transport);
    st_poller_stats stx;
    st_poller_get_stats(tx, &stx);
    CHECK(stx.msgs_tx >= N && stx.bytes_tx >= (uint64_t)N * 32);

    st_poller_stop(tx);
    st_poller_stop(rx);
    st_link_close(a.link);
    st_link_close(server);
    st_listener_close(l);
}

int main(void)
{
    test_ring();
    test_cpu_list();
    test_pollers("tcp", "127.0.0.1:0");
    char addr[64];
    snprintf(addr, sizeof addr, "@strait-poller-%d", (int)getpid());
    test_pollers("shm", addr);
    return test_done();
}
