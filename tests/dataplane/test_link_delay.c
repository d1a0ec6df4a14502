/* The slow-link test hook of the tcp transport (STRAIT_LINK_DELAY_MS, see
 * dataplane/transport.h): every data message arrives at least N ms after
 * it was sent, whole and in order; a link created without the variable is
 * not held; and a delay longer than the liveness timeout does not fail the
 * link, because heartbeats and acks are never held. Both ends live in this
 * process and share CLOCK_MONOTONIC, so a one-way time is measurable. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "dataplane/transport.h"
#include "tests/test.h"

typedef struct {
    const char *addr;
    st_link_opts o;
    st_link *k;
    int rc;
} dialer;

static void *dial(void *arg)
{
    dialer *d = arg;
    d->rc = st_connect("tcp", d->addr, &d->o, 5000, &d->k);
    return NULL;
}

/* A connected pair on loopback; the variable is read as the links are made. */
static int make_pair(const st_link_opts *o, st_link **tx, st_link **rx)
{
    st_listener *l;
    if (st_listen("tcp", "127.0.0.1:0", o, &l) != ST_OK)
        return -1;
    dialer d = {.addr = st_listener_addr(l), .o = *o};
    pthread_t th;
    pthread_create(&th, NULL, dial, &d);
    int rc = st_accept(l, 5000, rx);
    pthread_join(th, NULL);
    st_listener_close(l);
    if (rc || d.rc) {
        fprintf(stderr, "pair: %s\n", st_errmsg());
        if (!rc)
            st_link_close(*rx);
        if (!d.rc)
            st_link_close(d.k);
        return -1;
    }
    *tx = d.k;
    return 0;
}

/* Message i: 8 bytes of send time (ns), 4 bytes of i, then a pattern of i. */
static size_t msg_len(int i) { return 16 + (size_t)(i * 7919) % 100000; }

static void fill(uint8_t *p, int i, uint64_t now)
{
    size_t n = msg_len(i);
    memcpy(p, &now, 8);
    memcpy(p + 8, &i, 4);
    for (size_t j = 12; j < n; j++)
        p[j] = (uint8_t)(i * 31 + j);
}

static int intact(const st_msg *m, int i)
{
    int got;
    if (m->len != msg_len(i))
        return 0;
    memcpy(&got, m->data + 8, 4);
    if (got != i)
        return 0;
    for (size_t j = 12; j < m->len; j++)
        if (m->data[j] != (uint8_t)(i * 31 + j))
            return 0;
    return 1;
}

typedef struct {
    int received, intact, in_order;
    double min_ms, max_ms; /* one-way time of a message, send to receive */
    int link_err;
} result;

/* Send n messages, `burst` at a time, from tx to rx and measure each one's
 * trip; the whole run is bounded by deadline_ms. */
static result run(st_link *tx, st_link *rx, int n, int burst, int deadline_ms)
{
    result r = {.in_order = 1, .min_ms = 1e9};
    uint8_t **bufs = st_xcalloc((size_t)n, sizeof *bufs);
    int sent = 0, done = 0;
    uint64_t end = st_now_ns() + (uint64_t)deadline_ms * 1000000ull;
    while (r.received < n && st_now_ns() < end && !r.link_err) {
        /* a new burst once the previous one has arrived */
        if (sent == r.received && sent < n) {
            for (int b = 0; b < burst && sent < n; b++, sent++) {
                bufs[sent] = st_xaligned(msg_len(sent));
                fill(bufs[sent], sent, st_now_ns());
                st_iov v = {bufs[sent], msg_len(sent), NULL};
                CHECK(st_link_send(tx, &v, 1, (uint64_t)sent) == ST_OK);
            }
        }
        if (st_link_progress(tx) || st_link_progress(rx)) {
            r.link_err = 1;
            fprintf(stderr, "link failed: %s / %s\n", st_link_errmsg(tx), st_link_errmsg(rx));
            break;
        }
        st_msg m;
        while (st_link_recv(rx, &m) == ST_OK) {
            uint64_t t0, now = st_now_ns();
            memcpy(&t0, m.data, 8);
            double ms = (double)(now - t0) / 1e6;
            r.min_ms = ms < r.min_ms ? ms : r.min_ms;
            r.max_ms = ms > r.max_ms ? ms : r.max_ms;
            r.in_order &= m.seq == (uint64_t)r.received;
            r.intact += intact(&m, r.received);
            r.received++;
            st_link_release(rx, &m);
        }
        st_completion c[32];
        int k;
        while ((k = st_link_poll_cq(tx, c, 32)) > 0)
            for (int i = 0; i < k; i++, done++) {
                CHECK(c[i].status == ST_OK);
                free(bufs[c[i].cookie]);
                bufs[c[i].cookie] = NULL;
            }
        /* idle: block on the sender as a polling core would (it must wake when a message is due) */
        uint64_t tk = st_link_wait_prepare(tx);
        st_link_wait(tx, tk, 1);
    }
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    return r;
}

int main(void)
{
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = 1 << 20;
    o.rx_bytes = 4u << 20;
    o.heartbeat_ms = 50;
    o.timeout_ms = 400;
    st_link *tx, *rx;

    /* 1. delayed: every message >= 35 ms on the way, all whole and in order */
    const int N = 35;
    setenv("STRAIT_LINK_DELAY_MS", "35", 1);
    if (make_pair(&o, &tx, &rx))
        TEST_SKIP("cannot make a loopback tcp link pair");
    result r = run(tx, rx, 120, 8, 20000);
    CHECKF(!r.link_err && r.received == 120, "received %d of 120", r.received);
    CHECKF(r.intact == r.received && r.in_order, "intact %d of %d, in order %d", r.intact, r.received, r.in_order);
    CHECKF(r.min_ms >= N, "fastest one-way %.2f ms, delay %d ms", r.min_ms, N);
    fprintf(stderr, "delay %d ms: one-way %.2f .. %.2f ms\n", N, r.min_ms, r.max_ms);
    st_link_close(tx);
    st_link_close(rx);

    /* 2. the variable is read per link: without it messages are not held */
    unsetenv("STRAIT_LINK_DELAY_MS");
    if (make_pair(&o, &tx, &rx))
        TEST_SKIP("cannot make a loopback tcp link pair");
    r = run(tx, rx, 40, 4, 20000);
    CHECKF(!r.link_err && r.received == 40 && r.intact == 40 && r.in_order, "undelayed: %d received, %d intact",
           r.received, r.intact);
    CHECKF(r.min_ms < N, "undelayed fastest one-way %.2f ms", r.min_ms);
    fprintf(stderr, "no delay: one-way %.2f .. %.2f ms\n", r.min_ms, r.max_ms);
    st_link_close(tx);
    st_link_close(rx);

    /* 3. a delay longer than the liveness timeout (400 ms): heartbeats keep
     * flowing, the link stays up, messages still arrive */
    setenv("STRAIT_LINK_DELAY_MS", "600", 1);
    if (make_pair(&o, &tx, &rx))
        TEST_SKIP("cannot make a loopback tcp link pair");
    r = run(tx, rx, 3, 1, 20000);
    CHECKF(!r.link_err && r.received == 3 && r.intact == 3, "long delay: %d received, link error %d (%s)",
           r.received, r.link_err, st_link_errmsg(tx));
    CHECKF(r.min_ms >= 600, "long delay: fastest one-way %.2f ms", r.min_ms);
    st_link_close(tx);
    st_link_close(rx);

    /* 4. a malformed value is ignored with a warning, not a failure */
    setenv("STRAIT_LINK_DELAY_MS", "35ms", 1);
    if (make_pair(&o, &tx, &rx))
        TEST_SKIP("cannot make a loopback tcp link pair");
    r = run(tx, rx, 10, 2, 20000);
    CHECKF(!r.link_err && r.received == 10 && r.min_ms < N, "malformed value: %d received, fastest %.2f ms",
           r.received, r.min_ms);
    st_link_close(tx);
    st_link_close(rx);
    unsetenv("STRAIT_LINK_DELAY_MS");
    return test_done();
}
