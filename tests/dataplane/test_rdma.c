/* The RDMA transport without (and, where present, with) a device:
 *  - ring placement, immediate data, connection-info encode/decode with
 *    corrupt and truncated messages, ST_RDMA_* option parsing;
 *  - no device: listen/connect fail with ST_ENOTSUP and a message saying
 *    why and to use another transport, "rdma" is not offered by
 *    st_transport_names(), and tcp still works (the fall-back);
 *  - a device: messages of several sizes cross a link whole and in order. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/rdma.h"
#include "dataplane/rdma_proto.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <stdint.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* Placements never leave the ring, start 64-byte aligned, never overlap the
 * previous message, and say "wrapped" exactly when they moved to a ring start. */
static void test_placement(void)
{
    const uint64_t ring = 64 * 1000;
    uint64_t pos = 0;
    int wraps = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t len = 1 + next_rand() % (ring / 2);
        st_rdma_place p = st_rdma_place_next(pos, len, ring);
        CHECK(p.start % 64 == 0);
        CHECK(p.start >= pos);
        CHECK(p.end == p.start + len);
        CHECK(p.start % ring + len <= ring);
        uint64_t aligned = ST_ALIGN_UP(pos, 64);
        CHECKF(p.wrapped == (p.start != aligned), "i=%d pos=%llu start=%llu", i, (unsigned long long)pos,
               (unsigned long long)p.start);
        if (p.wrapped)
            CHECK(p.start % ring == 0);
        wraps += p.wrapped;
        pos = p.end;
    }
    CHECK(wraps > 100);
    /* a message exactly filling the ring's tail does not wrap */
    st_rdma_place p = st_rdma_place_next(ring - 128, 128, ring);
    CHECK(!p.wrapped && p.start == ring - 128);
    p = st_rdma_place_next(ring - 128, 129, ring);
    CHECK(p.wrapped && p.start == ring);
}

static void test_immediate(void)
{
    uint32_t lens[] = {1, 63, 64, 4096, 1u << 20, (64u << 20) + (64u << 10), ST_RDMA_IMM_MAX_LEN};
    for (size_t i = 0; i < ST_ARRAY_LEN(lens); i++)
        for (int w = 0; w < 2; w++) {
            uint32_t imm = st_rdma_imm_encode(w, lens[i]);
            int w2 = -1;
            uint32_t l2 = 0;
            st_rdma_imm_decode(imm, &w2, &l2);
            CHECKF(w2 == w && l2 == lens[i], "len %u wrapped %d -> %u %d", lens[i], w, l2, w2);
            CHECK((imm >> 31) == (uint32_t)w);
        }
}

static st_rdma_info sample_info(void)
{
    st_rdma_info i = {0};
    i.qpn = 0x123456;
    i.psn = 0xabcdef;
    i.lid = 0;
    i.mtu = 3;
    i.is_roce = 1;
    for (int b = 0; b < 16; b++)
        i.gid[b] = (uint8_t)(b < 10 ? 0 : b < 12 ? 0xff : 10 + b);
    i.max_msg = (64u << 20) + (64u << 10);
    i.ring_len = ST_ALIGN_UP(2 * i.max_msg + (2u << 20), 64);
    i.ring_addr = 0x7f0012340000ull;
    i.ring_rkey = 0xdeadbeef;
    i.credit_addr = 0x7f0056780000ull;
    i.credit_rkey = 0x01020304;
    i.credits = 256;
    return i;
}

static void put_crc(uint8_t *buf);

static void test_info(void)
{
    st_rdma_info in = sample_info(), out;
    uint8_t buf[ST_RDMA_INFO_BYTES];
    st_rdma_info_encode(&in, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_OK);
    CHECK(memcmp(&in, &out, sizeof in) == 0);

    /* truncated or over-long */
    for (size_t n = 0; n < sizeof buf; n += 7)
        CHECKF(st_rdma_info_decode(buf, n, &out) == ST_EPROTO, "%zu bytes accepted", n);
    CHECK(st_rdma_info_decode(NULL, sizeof buf, &out) == ST_EPROTO);
    uint8_t big[ST_RDMA_INFO_BYTES + 1];
    memcpy(big, buf, sizeof buf);
    big[sizeof buf] = 0;
    CHECK(st_rdma_info_decode(big, sizeof big, &out) == ST_EPROTO);

    /* any corrupted byte is caught (checksum, or the field checks for the checksum itself) */
    for (size_t b = 0; b < sizeof buf; b++) {
        uint8_t c[ST_RDMA_INFO_BYTES];
        memcpy(c, buf, sizeof c);
        c[b] ^= (uint8_t)(1u << (b % 8));
        CHECKF(st_rdma_info_decode(c, sizeof c, &out) == ST_EPROTO, "flip in byte %zu accepted", b);
    }

    /* well-checksummed but invalid fields are named */
    st_rdma_info x;
    x = in, x.mtu = 9, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "mtu"));
    x = in, x.qpn = 1u << 24, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "qpn"));
    x = in, x.ring_len = x.max_msg, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "ring_len"));
    x = in, x.ring_len += 1, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "ring_len"));
    x = in, x.credit_addr += 4, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "credit address"));
    x = in, x.credits = 0, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "credits"));
    x = in, x.max_msg = 1ull << 31, x.ring_len = 1ull << 33, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "max_msg"));
    x = in, x.is_roce = 0, x.lid = 0, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "LID"));
    x = in, x.is_roce = 0, x.lid = 7, st_rdma_info_encode(&x, buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_OK && out.lid == 7);
    /* a foreign peer: right checksum, wrong magic / version / reserved bytes */
    st_rdma_info_encode(&in, buf);
    buf[0] = 'X', put_crc(buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "magic"));
    st_rdma_info_encode(&in, buf);
    buf[8] = 2, put_crc(buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "version"));
    st_rdma_info_encode(&in, buf);
    buf[100] = 1, put_crc(buf);
    CHECK(st_rdma_info_decode(buf, sizeof buf, &out) == ST_EPROTO && strstr(st_errmsg(), "reserved"));
}

#include "dataplane/crc32c.h"
static void put_crc(uint8_t *buf)
{
    uint32_t c = st_crc32c(0, buf, 124);
    for (int i = 0; i < 4; i++)
        buf[124 + i] = (uint8_t)(c >> (8 * i));
}

static void test_opts(void)
{
    st_rdma_opts o;
    unsetenv("ST_RDMA_DEVICE");
    CHECK(st_rdma_opts_from_env(&o) == ST_OK);
    CHECK(o.port == 1 && o.gid_index == -1 && o.retry_cnt == 7 && o.rnr_retry == 7 && !o.device[0]);
    setenv("ST_RDMA_RETRY_CNT", "3", 1);
    setenv("ST_RDMA_DEVICE", "rxe0", 1);
    CHECK(st_rdma_opts_from_env(&o) == ST_OK && o.retry_cnt == 3 && !strcmp(o.device, "rxe0"));
    setenv("ST_RDMA_RETRY_CNT", "8", 1);
    CHECK(st_rdma_opts_from_env(&o) == ST_EINVAL && strstr(st_errmsg(), "ST_RDMA_RETRY_CNT"));
    setenv("ST_RDMA_RETRY_CNT", "3x", 1);
    CHECK(st_rdma_opts_from_env(&o) == ST_EINVAL);
    unsetenv("ST_RDMA_RETRY_CNT");
    setenv("ST_RDMA_TIMEOUT", "0", 1);
    CHECK(st_rdma_opts_from_env(&o) == ST_EINVAL && strstr(st_errmsg(), "ST_RDMA_TIMEOUT"));
    unsetenv("ST_RDMA_TIMEOUT");
    char longname[100];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    setenv("ST_RDMA_DEVICE", longname, 1);
    CHECK(st_rdma_opts_from_env(&o) == ST_EINVAL && strstr(st_errmsg(), "ST_RDMA_DEVICE"));
    unsetenv("ST_RDMA_DEVICE");
}

static int names_have_rdma(void)
{
    for (const char *const *t = st_transport_names(); *t; t++)
        if (!strcmp(*t, "rdma"))
            return 1;
    return 0;
}

/* No device (or no verbs in this build): a clear error, and tcp still works. */
static void test_no_device(void)
{
    st_listener *l = NULL;
    st_link *k = NULL;
    CHECK(!names_have_rdma());
    CHECK(st_listen("rdma", "127.0.0.1:0", NULL, &l) == ST_ENOTSUP && l == NULL);
    fprintf(stderr, "listen: %s\n", st_errmsg());
    if (st_rdma_built()) {
        CHECKF(strstr(st_errmsg(), "no RDMA device") && strstr(st_errmsg(), "use another transport"), "%s",
               st_errmsg());
        if (strstr(st_errmsg(), "kernel has no RDMA support"))
            CHECKF(strstr(st_errmsg(), "ibv_get_device_list: "), "%s", st_errmsg());
    }
    CHECK(st_connect("rdma", "127.0.0.1:1", NULL, 1000, &k) == ST_ENOTSUP && k == NULL);
    CHECK(strstr(st_errmsg(), "another transport") || strstr(st_errmsg(), "not built in"));
    /* the fall-back */
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &l) == ST_OK);
    st_listener_close(l);
}

/* With a device: messages of several sizes arrive whole and in order. */
static void test_with_device(void)
{
    CHECK(names_have_rdma());
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = 1 << 20;
    o.rx_bytes = 4 << 20;
    o.credits = 16;
    st_listener *l;
    if (st_listen("rdma", "127.0.0.1:0", &o, &l) != ST_OK) {
        CHECKF(0, "listen: %s", st_errmsg());
        return;
    }
    char addr[128];
    snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    const int n = 200;
    pid_t pid = fork();
    if (pid == 0) {
        st_listener_close(l);
        st_link *k;
        if (st_connect("rdma", addr, &o, 10000, &k) != ST_OK)
            _exit(3);
        static uint8_t msg[1 << 20];
        int sent = 0, done = 0;
        while (done < n && !st_link_error(k)) {
            if (sent < n) {
                size_t len = 1 + (size_t)(sent * 7919) % sizeof msg;
                memset(msg, sent & 0xff, len); /* safe: one message in flight at a time below */
                st_iov iov = {msg, len, NULL};
                if (sent == done && st_link_send(k, &iov, 1, (uint64_t)sent) == ST_OK)
                    sent++;
            }
            st_link_progress(k);
            st_completion c[8];
            int m = st_link_poll_cq(k, c, 8);
            for (int i = 0; i < m; i++)
                done += c[i].status == ST_OK;
        }
        int ok = done == n;
        st_link_close(k);
        _exit(ok ? 0 : 4);
    }
    st_link *k = NULL;
    CHECKF(st_accept(l, 10000, &k) == ST_OK, "accept: %s", st_errmsg());
    int got = 0, bad = 0;
    uint64_t end = st_now_ns() + 30000000000ull;
    while (k && got < n && !st_link_error(k) && st_now_ns() < end) {
        st_link_progress(k);
        st_msg m;
        while (st_link_recv(k, &m) == ST_OK) {
            size_t want = 1 + (size_t)(got * 7919) % (1 << 20);
            bad += m.len != want || m.seq != (uint64_t)got || m.data[0] != (got & 0xff) ||
                   m.data[m.len - 1] != (got & 0xff);
            st_link_release(k, &m);
            got++;
        }
    }
    CHECKF(got == n && bad == 0, "received %d of %d, %d bad; %s", got, n, bad, k ? st_link_errmsg(k) : "");
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sender exit status %d", status);
    st_link_close(k);
    st_listener_close(l);
}

/* With a device: a peer that is killed, or stopped, fails the link with
 * ST_ECONN in bounded time (control channel closed / heartbeat ticks stop). */
static void test_peer_loss(int stop)
{
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = 1 << 16;
    o.rx_bytes = 1 << 20;
    o.heartbeat_ms = 100;
    o.timeout_ms = 1000;
    st_listener *l;
    if (st_listen("rdma", "127.0.0.1:0", &o, &l) != ST_OK) {
        CHECKF(0, "listen: %s", st_errmsg());
        return;
    }
    char addr[128];
    snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    pid_t pid = fork();
    if (pid == 0) {
        st_listener_close(l);
        st_link *k;
        if (st_connect("rdma", addr, &o, 10000, &k) != ST_OK)
            _exit(3);
        for (;;) { /* healthy until killed or stopped */
            st_link_progress(k);
            uint64_t t = st_link_wait_prepare(k);
            st_link_wait(k, t, 50);
        }
    }
    st_link *k = NULL;
    CHECKF(st_accept(l, 10000, &k) == ST_OK, "accept: %s", st_errmsg());
    st_listener_close(l);
    if (!k) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return;
    }
    /* healthy for a while first: heartbeats flow */
    uint64_t t0 = st_now_ns();
    while (st_now_ns() - t0 < 1500000000ull && st_link_progress(k) == ST_OK) {
        uint64_t t = st_link_wait_prepare(k);
        st_link_wait(k, t, 50);
    }
    CHECKF(st_link_error(k) == 0, "link failed while the peer was healthy: %s", st_link_errmsg(k));
    kill(pid, stop ? SIGSTOP : SIGKILL);
    uint64_t t1 = st_now_ns();
    while (st_now_ns() - t1 < 10000000000ull && st_link_progress(k) == ST_OK) {
        uint64_t t = st_link_wait_prepare(k);
        st_link_wait(k, t, 50);
    }
    double ms = (double)(st_now_ns() - t1) / 1e6;
    CHECKF(st_link_error(k) == ST_ECONN, "%s peer: link error %d after %.0f ms", stop ? "stopped" : "killed",
           st_link_error(k), ms);
    fprintf(stderr, "%s peer detected after %.0f ms: %s\n", stop ? "stopped" : "killed", ms, st_link_errmsg(k));
    st_link_close(k);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* With a device: a queue pair forced into error mid-stream fails both ends
 * with ST_ECONN, and the sends still pending complete with that error. */
static void test_qp_error(void)
{
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = 1 << 16;
    o.rx_bytes = 1 << 20;
    o.timeout_ms = 2000;
    st_listener *l;
    if (st_listen("rdma", "127.0.0.1:0", &o, &l) != ST_OK) {
        CHECKF(0, "listen: %s", st_errmsg());
        return;
    }
    char addr[128];
    snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    pid_t pid = fork();
    if (pid == 0) { /* sender: streams until its link fails; exit 0 iff that is ST_ECONN */
        st_listener_close(l);
        st_link *k;
        if (st_connect("rdma", addr, &o, 10000, &k) != ST_OK)
            _exit(3);
        static uint8_t msg[4096];
        uint64_t end = st_now_ns() + 20000000000ull, failed = 0;
        st_iov iov = {msg, sizeof msg, NULL};
        while (!st_link_error(k) && st_now_ns() < end) {
            st_link_send(k, &iov, 1, 0);
            st_link_progress(k);
            st_completion c[64];
            st_link_poll_cq(k, c, 64);
        }
        st_completion c[64];
        int n;
        while ((n = st_link_poll_cq(k, c, 64)) > 0)
            for (int i = 0; i < n; i++)
                failed += c[i].status == ST_ECONN;
        int ok = st_link_error(k) == ST_ECONN;
        fprintf(stderr, "sender: %s (%llu sends completed with the error)\n", st_link_errmsg(k),
                (unsigned long long)failed);
        st_link_close(k);
        _exit(ok ? 0 : 5);
    }
    st_link *k = NULL;
    CHECKF(st_accept(l, 10000, &k) == ST_OK, "accept: %s", st_errmsg());
    st_listener_close(l);
    int got = 0;
    uint64_t end = st_now_ns() + 20000000000ull;
    while (k && got < 100 && !st_link_error(k) && st_now_ns() < end) {
        st_link_progress(k);
        st_msg m;
        while (st_link_recv(k, &m) == ST_OK)
            st_link_release(k, &m), got++;
    }
    CHECKF(got >= 100, "only %d messages before the fault: %s", got, k ? st_link_errmsg(k) : "");
    if (k) {
        CHECK(st_rdma_debug_qp_error(k) == ST_OK);
        uint64_t t0 = st_now_ns();
        while (st_link_progress(k) == ST_OK && st_now_ns() - t0 < 10000000000ull) {
            st_msg m;
            while (st_link_recv(k, &m) == ST_OK)
                st_link_release(k, &m);
        }
        CHECKF(st_link_error(k) == ST_ECONN, "after the fault: error %d (%s)", st_link_error(k), st_link_errmsg(k));
        fprintf(stderr, "receiver: %s\n", st_link_errmsg(k));
        st_link_close(k);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sender exit status %d", status);
    CHECK(st_rdma_debug_qp_error(NULL) == ST_EINVAL);
}

int main(void)
{
    test_placement();
    test_immediate();
    test_info();
    test_opts();
    int rc = st_rdma_probe();
    fprintf(stderr, "probe: %s\n", rc ? st_errmsg() : "ok");
    if (rc == ST_OK) {
        test_with_device();
        test_peer_loss(0);
        test_peer_loss(1);
        test_qp_error();
    }
    else if (rc == ST_ENOTSUP)
        test_no_device();
    else
        CHECKF(0, "unexpected probe error %d: %s", rc, st_errmsg());
    return test_done();
}
