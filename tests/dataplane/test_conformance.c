/* The transport conformance suite: every transport (tcp and shm now, dpdk
 * and rdma later) must pass every case, written once against transport.h.
 *
 * Each case runs as two processes: this one listens ("parent role"), a
 * forked child connects ("child role"). With arguments the two roles run
 * in separate programs (tests/dataplane/test_netns.sh uses this between two
 * network namespaces):
 *   test_conformance --role parent|child --transport T --addr A
 * Every wait is bounded by a deadline: a broken transport fails, never hangs. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static const char *transport;
static int fork_mode = 1;

/* ---- helpers --------------------------------------------------------------------- */
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

static uint64_t msg_id(const st_msg *m)
{
    uint64_t id = UINT64_MAX;
    if (m->len >= 8)
        memcpy(&id, m->data, 8);
    return id;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Called when a loop made no progress: spin a little, then sleep in the
 * transport's wait (CI machines have few cores; pure spinning starves the
 * peer process). */
static void idle(st_link *k, int *spins)
{
    if (++*spins < 64)
        return;
    *spins = 0;
    st_link_wait(k, st_link_wait_prepare(k), 1);
}

/* Progress until a message arrives; ST_OK, the link error, or ST_ETIMEDOUT. */
static int recv_wait(st_link *k, st_msg *m, int timeout_ms)
{
    uint64_t end = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int spins = 0;
    for (;;) {
        int rc = st_link_recv(k, m);
        if (rc != ST_EAGAIN)
            return rc;
        rc = st_link_progress(k);
        if (st_link_recv(k, m) == ST_OK)
            return ST_OK;
        if (rc)
            return rc;
        if (st_now_ns() > end)
            return ST_ETIMEDOUT;
        idle(k, &spins);
    }
}

/* Send, progressing and reaping completions while the queue is full.
 * *done counts completions with ST_OK. */
static int send_wait(st_link *k, const st_iov *iov, int n, uint64_t cookie, uint64_t *done, int timeout_ms)
{
    uint64_t end = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    st_completion c[64];
    int spins = 0;
    for (;;) {
        int rc = st_link_send(k, iov, n, cookie);
        if (rc != ST_EAGAIN)
            return rc;
        if ((rc = st_link_progress(k)) != ST_OK)
            return rc;
        int got = st_link_poll_cq(k, c, 64);
        for (int i = 0; i < got; i++)
            *done += c[i].status == ST_OK;
        if (st_now_ns() > end)
            return ST_ETIMEDOUT;
        idle(k, &spins);
    }
}

/* Progress until every queued send has completed. */
static int drain(st_link *k, uint64_t *done, uint64_t want, int timeout_ms)
{
    uint64_t end = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    st_completion c[64];
    int spins = 0;
    while (*done < want) {
        int rc = st_link_progress(k);
        int got = st_link_poll_cq(k, c, 64);
        for (int i = 0; i < got; i++)
            *done += c[i].status == ST_OK;
        if (*done >= want)
            break;
        if (rc)
            return rc;
        if (st_now_ns() > end)
            return ST_ETIMEDOUT;
        idle(k, &spins);
    }
    return ST_OK;
}

/* Child: run until the parent goes away (ECONN), the normal end of a case. */
static int await_close(st_link *k, int timeout_ms)
{
    st_msg m;
    for (;;) {
        int rc = recv_wait(k, &m, timeout_ms);
        if (rc == ST_OK) {
            st_link_release(k, &m);
            continue;
        }
        return rc == ST_ECONN ? 0 : 1;
    }
}

/* ---- cases: each a parent half and a child half ------------------------------------- */
static const size_t sizes[] = {1, 2, 63, 64, 65, 4095, 4096, 65536, MIB + 3, 8 * MIB, 64 * MIB};

/* ST_CONFORMANCE_MAX_SIZE (bytes; both roles must be given the same) caps
 * the echo sizes and the links' max_msg and receive regions, for runs under
 * emulation where 64 MiB messages, and registering 130 MiB rings per link,
 * take minutes (tests/dataplane/test_rdma_vm.sh). Unset: no cap. */
static size_t size_cap(void)
{
    const char *e = getenv("ST_CONFORMANCE_MAX_SIZE");
    size_t cap = e && *e ? (size_t)strtoull(e, NULL, 10) : 0;
    return cap ? cap : SIZE_MAX;
}

/* how many of sizes[] the echo case sends */
static size_t n_sizes(void)
{
    size_t n = 0;
    while (n < ST_ARRAY_LEN(sizes) && sizes[n] <= size_cap())
        n++;
    return n;
}

/* default options with max_msg and rx_bytes cut down to the size cap */
static void capped_opts(st_link_opts *o)
{
    st_link_opts_default(o);
    size_t cap = size_cap();
    if (cap < o->max_msg) {
        o->max_msg = cap + ((size_t)64 << 10); /* the frame header and alignment fit under it */
        o->rx_bytes = 2 * o->max_msg + 2 * MIB;
    }
}

/* echo: every size arrives intact and in order, and comes back */
static void echo_parent(st_link *k)
{
    static st_mr *mr; /* as large as the largest size sent (prefaulting 64 MiB is slow when emulated) */
    if (!mr && st_mr_alloc(n_sizes() ? sizes[n_sizes() - 1] : 1, ST_MR_PREFAULT, &mr) != ST_OK)
        {
        CHECKF(0, "mr: %s", st_errmsg());
        return;
    }
    uint64_t done = 0;
    for (size_t i = 0; i < n_sizes(); i++) {
        fill(mr->addr, sizes[i], i);
        /* scatter: two pieces when big enough */
        st_iov iov[2] = {{mr->addr, sizes[i] / 3, mr}, {mr->addr + sizes[i] / 3, sizes[i] - sizes[i] / 3, mr}};
        int n = sizes[i] / 3 ? 2 : 1;
        if (n == 1)
            iov[0].len = sizes[i];
        CHECKF(send_wait(k, iov, n, i, &done, 10000) == ST_OK, "send %zu: %s", sizes[i], st_errmsg());
        st_msg m;
        int rc = recv_wait(k, &m, 20000);
        CHECKF(rc == ST_OK, "echo of %zu bytes: %s", sizes[i], st_strerror(rc));
        if (rc)
            return;
        CHECKF(m.len == sizes[i] && m.seq == i, "echo %zu: len %zu seq %llu", i, m.len, (unsigned long long)m.seq);
        CHECKF(m.len == sizes[i] && verify(m.data, m.len, i), "echo of %zu bytes corrupted", sizes[i]);
        CHECK(((uintptr_t)m.data & 63) == 0);
        st_link_release(k, &m);
        if (getenv("ST_CONFORMANCE_VERBOSE"))
            fprintf(stderr, "echo %zu bytes ok at %.3f s\n", sizes[i], st_now_s());
    }
    CHECK(drain(k, &done, n_sizes(), 10000) == ST_OK);
}

static int echo_child(st_link *k)
{
    st_msg m;
    uint64_t expect = 0, done = 0;
    for (;;) {
        int rc = recv_wait(k, &m, 20000);
        if (rc)
            return rc == ST_ECONN && expect == n_sizes() ? 0 : 10;
        if (m.seq != expect || expect >= n_sizes() || m.len != sizes[expect] || !verify(m.data, m.len, expect))
            return 11;
        /* forward straight out of the receive region: release only after
         * the send completed (the transport may read it until then) */
        st_iov iov = {m.data, m.len, NULL};
        uint64_t before = done;
        if (send_wait(k, &iov, 1, expect, &done, 10000) || drain(k, &done, before + 1, 20000))
            return 12;
        st_link_release(k, &m);
        expect++;
    }
}

/* inflight: thousands queued at once, delivered exactly once in order */
#define INFLIGHT 6000
static void inflight_parent(st_link *k)
{
    static uint8_t bufs[INFLIGHT][72];
    uint64_t done = 0;
    for (uint64_t i = 0; i < INFLIGHT; i++) {
        size_t len = 8 + i % 64;
        fill(bufs[i], len, i);
        st_iov iov = {bufs[i], len, NULL};
        if (send_wait(k, &iov, 1, i, &done, 10000) != ST_OK)
            {
        CHECKF(0, "send %llu: %s", (unsigned long long)i, st_errmsg());
        return;
    }
    }
    CHECKF(drain(k, &done, INFLIGHT, 10000) == ST_OK, "completions: %llu of %d", (unsigned long long)done, INFLIGHT);
    st_msg m;
    CHECK(recv_wait(k, &m, 10000) == ST_OK && msg_id(&m) == INFLIGHT);
}

static int inflight_child(st_link *k)
{
    st_msg m;
    for (uint64_t i = 0; i < INFLIGHT; i++) {
        if (recv_wait(k, &m, 10000) != ST_OK)
            return 20;
        if (msg_id(&m) != i || m.len != 8 + i % 64 || !verify(m.data, m.len, i))
            return 21;
        st_link_release(k, &m);
    }
    uint64_t n = INFLIGHT, done = 0;
    st_iov iov = {&n, 8, NULL};
    if (send_wait(k, &iov, 1, 0, &done, 5000))
        return 22;
    return await_close(k, 10000);
}

/* flow: a receiver that holds its messages gets no more than its credits */
#define FLOW_CREDITS 8
#define FLOW_N 300
static void flow_parent(st_link *k)
{
    static uint8_t buf[FLOW_N][1024];
    uint64_t done = 0;
    for (uint64_t i = 0; i < FLOW_N; i++) {
        fill(buf[i], sizeof buf[i], i);
        st_iov iov = {buf[i], sizeof buf[i], NULL};
        CHECK(send_wait(k, &iov, 1, i, &done, 10000) == ST_OK);
    }
    CHECKF(drain(k, &done, FLOW_N, 10000) == ST_OK, "flow: %llu of %d complete", (unsigned long long)done, FLOW_N);
    st_msg m;
    CHECK(recv_wait(k, &m, 10000) == ST_OK && msg_id(&m) == FLOW_N);
}

static int flow_child(st_link *k)
{
    st_msg held[FLOW_CREDITS], m;
    for (int i = 0; i < FLOW_CREDITS; i++)
        if (recv_wait(k, &held[i], 10000) != ST_OK || msg_id(&held[i]) != (uint64_t)i)
            return 30;
    /* hold them: for 300 ms nothing more may arrive (a bounded observation
     * window, not synchronisation) */
    if (recv_wait(k, &m, 300) != ST_ETIMEDOUT)
        return 31;
    for (int i = 0; i < FLOW_CREDITS; i++)
        st_link_release(k, &held[i]);
    for (uint64_t i = FLOW_CREDITS; i < FLOW_N; i++) {
        if (recv_wait(k, &m, 10000) != ST_OK || msg_id(&m) != i || !verify(m.data, m.len, i))
            return 32;
        st_link_release(k, &m);
    }
    uint64_t n = FLOW_N, done = 0;
    st_iov iov = {&n, 8, NULL};
    if (send_wait(k, &iov, 1, 0, &done, 5000))
        return 33;
    return await_close(k, 10000);
}

/* corrupt: a damaged frame header is rejected and fails the link */
static void corrupt_parent(st_link *k)
{
    uint64_t done = 0, ids[4] = {0, 1, 2, 3};
    for (int i = 0; i < 3; i++) {
        st_iov iov = {&ids[i], 8, NULL};
        CHECK(send_wait(k, &iov, 1, (uint64_t)i, &done, 5000) == ST_OK);
    }
    CHECK(drain(k, &done, 3, 5000) == ST_OK);
    st_link_debug_corrupt_next(k);
    st_iov iov = {&ids[3], 8, NULL};
    CHECK(send_wait(k, &iov, 1, 3, &done, 5000) == ST_OK);
    st_msg m;
    int rc = recv_wait(k, &m, 10000); /* ends when the child, having rejected it, hangs up */
    CHECKF(rc == ST_ECONN, "corrupt: parent saw %s", st_strerror(rc));
}

static int corrupt_child(st_link *k)
{
    st_msg m;
    for (uint64_t i = 0; i < 3; i++) {
        if (recv_wait(k, &m, 5000) != ST_OK || msg_id(&m) != i)
            return 40;
        st_link_release(k, &m);
    }
    int rc = recv_wait(k, &m, 5000);
    st_link_stats s;
    st_link_get_stats(k, &s);
    if (rc != ST_EPROTO || s.frames_rejected < 1)
        return 41;
    return 0;
}

/* reconnect (tcp): connections shut down mid-stream from both ends; the
 * receiver sees ids exactly 0..N-1 */
#define RC_N 3000
#define RC_CHILD_BREAKS ((RC_N + 349) / 700) /* the child breaks at 350, 1050, ... */
static void reconnect_parent(st_link *k)
{
    static uint8_t buf[RC_N % 2 + 70000];
    uint64_t done = 0, breaks = 0;
    for (uint64_t i = 0; i < RC_N; i++) {
        size_t len = 8 + (i * 7919) % 65000;
        uint8_t *p = malloc(len); /* kept until completion: a resend reads it again */
        fill(p, len, i);
        st_iov iov = {p, len, NULL};
        CHECK(send_wait(k, &iov, 1, (uint64_t)(uintptr_t)p, &done, 10000) == ST_OK);
        if (i % 400 == 399) { /* a send may be queued while a reconnect is under way: nothing to break then */
            int rc = st_link_debug_drop(k);
            CHECK(rc == ST_OK || rc == ST_EAGAIN);
            breaks += rc == ST_OK;
        }
        st_completion c[64];
        int got;
        while ((got = st_link_poll_cq(k, c, 64)) > 0)
            for (int j = 0; j < got; j++)
                done += c[j].status == ST_OK, free((void *)(uintptr_t)c[j].cookie);
    }
    (void)buf;
    uint64_t end = st_now_ns() + 20000000000ull;
    while (done < RC_N && st_now_ns() < end && st_link_progress(k) == ST_OK) {
        st_completion c[64];
        int got = st_link_poll_cq(k, c, 64);
        for (int j = 0; j < got; j++)
            done += c[j].status == ST_OK, free((void *)(uintptr_t)c[j].cookie);
    }
    CHECKF(done == RC_N, "reconnect: %llu of %d completed: %s", (unsigned long long)done, RC_N, st_link_errmsg(k));
    st_msg m;
    CHECK(recv_wait(k, &m, 10000) == ST_OK && msg_id(&m) == RC_N);
    st_link_stats s;
    st_link_get_stats(k, &s);
    /* every connection this end broke was replaced, except where it broke
     * one the child had already broken (at most one per child break) */
    CHECKF(breaks >= 1 && s.reconnects >= 1 && s.reconnects + RC_CHILD_BREAKS >= breaks,
           "%llu reconnects after %llu breaks of a live connection", (unsigned long long)s.reconnects,
           (unsigned long long)breaks);
}

static int reconnect_child(st_link *k)
{
    st_msg m;
    for (uint64_t i = 0; i < RC_N; i++) {
        int rc = recv_wait(k, &m, 10000);
        if (rc != ST_OK) {
            fprintf(stderr, "reconnect child: message %llu: %s %s\n", (unsigned long long)i, st_strerror(rc),
                    st_link_errmsg(k));
            return 50;
        }
        if (msg_id(&m) != i || m.len != 8 + (i * 7919) % 65000 || !verify(m.data, m.len, i)) {
            fprintf(stderr, "reconnect child: expected id %llu, got %llu\n", (unsigned long long)i,
                    (unsigned long long)msg_id(&m));
            return 51;
        }
        st_link_release(k, &m);
        if (i % 700 == 350)
            st_link_debug_drop(k);
    }
    uint64_t n = RC_N, done = 0;
    st_iov iov = {&n, 8, NULL};
    if (send_wait(k, &iov, 1, 0, &done, 5000))
        return 52;
    return await_close(k, 10000);
}

/* inplace: messages built in the transport's memory (st_link_reserve),
 * mixed with ordinary sends, keep their order */
#define IP_N 2000
static size_t ip_len(uint64_t i) { return 8 + (i * 104729) % 100000; }

static void inplace_parent(st_link *k)
{
    static uint8_t buf[100008];
    uint64_t done = 0;
    for (uint64_t i = 0; i < IP_N; i++) {
        size_t len = ip_len(i);
        if (i % 3 == 0) { /* an ordinary send from our buffer */
            fill(buf, len, i);
            st_iov iov = {buf, len, NULL};
            CHECK(send_wait(k, &iov, 1, i, &done, 10000) == ST_OK);
            CHECK(drain(k, &done, i + 1, 10000) == ST_OK); /* buf is reused next time: all up to i complete */
            continue;
        }
        void *p = NULL;
        uint64_t end = st_now_ns() + 10000000000ull;
        int rc, spins = 0;
        while ((rc = st_link_reserve(k, len + 100, &p)) == ST_EAGAIN && st_now_ns() < end) {
            st_completion c[64];
            if (st_link_progress(k))
                break;
            int got = st_link_poll_cq(k, c, 64);
            for (int j = 0; j < got; j++)
                done += c[j].status == ST_OK;
            idle(k, &spins);
        }
        if (rc != ST_OK) {
            CHECKF(0, "reserve %llu: %s", (unsigned long long)i, st_errmsg());
            return;
        }
        void *q;
        CHECK(st_link_reserve(k, 8, &q) == ST_EINVAL && q == NULL); /* one at a time */
        fill(p, len, i);
        CHECK(st_link_commit(k, len, i) == ST_OK);
        CHECK(st_link_commit(k, len, i) == ST_EINVAL); /* nothing reserved any more */
    }
    CHECKF(drain(k, &done, IP_N, 10000) == ST_OK, "inplace: %llu of %d", (unsigned long long)done, IP_N);
    st_msg m;
    CHECK(recv_wait(k, &m, 10000) == ST_OK && msg_id(&m) == IP_N);
}

static int inplace_child(st_link *k)
{
    st_msg m;
    for (uint64_t i = 0; i < IP_N; i++) {
        if (recv_wait(k, &m, 10000) != ST_OK)
            return 80;
        if (msg_id(&m) != i || m.len != ip_len(i) || !verify(m.data, m.len, i))
            return 81;
        st_link_release(k, &m);
    }
    uint64_t n = IP_N, done = 0;
    st_iov iov = {&n, 8, NULL};
    if (send_wait(k, &iov, 1, 0, &done, 5000))
        return 82;
    return await_close(k, 10000);
}

/* small-ring: a receive region of ~2 MiB, messages up to 48 KiB, bursts
 * of up to 24 in flight echoed back: the rings wrap many times, with and
 * without draining in between */
#define SR_N 3000
#define SR_MAX (48 * 1024)
static size_t sr_len(uint64_t i) { return 1 + (i * 2654435761u) % SR_MAX; }

static void small_ring_parent(st_link *k)
{
    static uint8_t buf[24][SR_MAX];
    uint64_t done = 0, sent = 0, got = 0;
    while (got < SR_N) {
        uint64_t burst = 1 + (sent * 7) % 24;
        for (uint64_t j = 0; j < burst && sent < SR_N; j++, sent++) {
            fill(buf[j], sr_len(sent), sent);
            st_iov iov = {buf[j], sr_len(sent), NULL};
            if (send_wait(k, &iov, 1, sent, &done, 10000) != ST_OK) {
                CHECKF(0, "small-ring send %llu: %s", (unsigned long long)sent, st_errmsg());
                return;
            }
        }
        for (; got < sent; got++) {
            st_msg m;
            if (recv_wait(k, &m, 10000) != ST_OK) {
                CHECKF(0, "small-ring echo %llu missing", (unsigned long long)got);
                return;
            }
            CHECKF(m.len == sr_len(got) && verify(m.data, m.len, got), "small-ring echo %llu wrong",
                   (unsigned long long)got);
            st_link_release(k, &m);
        }
        CHECK(drain(k, &done, sent, 10000) == ST_OK); /* buffers are refilled next burst */
    }
}

static int small_ring_child(st_link *k)
{
    static uint8_t copy[SR_MAX];
    st_msg m;
    uint64_t done = 0;
    for (uint64_t i = 0; i < SR_N; i++) {
        if (recv_wait(k, &m, 10000) != ST_OK)
            return 90;
        if (m.len != sr_len(i) || !verify(m.data, m.len, i))
            return 91;
        memcpy(copy, m.data, m.len);
        st_iov iov = {copy, m.len, NULL};
        st_link_release(k, &m);
        uint64_t before = done;
        if (send_wait(k, &iov, 1, i, &done, 10000) || drain(k, &done, before + 1, 10000)) {
            fprintf(stderr, "small-ring child: echo %llu: %s\n", (unsigned long long)i, st_link_errmsg(k));
            return 92;
        }
    }
    return await_close(k, 10000);
}

/* ---- peer death -------------------------------------------------------------------------------
 * In fork mode the parent knows the child's pid from fork(). In split mode
 * (one case, --case NAME --peer-pid-file F) the child writes its pid to F
 * before it connects, so by the time the parent has received anything from
 * it the file is complete (written whole and renamed into place). */
static const char *peer_pid_file;

static void write_peer_pid(void)
{
    if (!peer_pid_file)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", peer_pid_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, peer_pid_file) != 0)
        fprintf(stderr, "child: cannot write %s\n", peer_pid_file);
}

static pid_t read_peer_pid(void)
{
    int pid = 0;
    FILE *f = peer_pid_file ? fopen(peer_pid_file, "r") : NULL;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

#define DEATH_TIMEOUT_MS 400

/* the child streams until killed; the parent must see ECONN in bounded time */
static int stream_child(st_link *k)
{
    static uint8_t buf[4096];
    uint64_t done = 0;
    for (uint64_t i = 0;; i++) {
        fill(buf, sizeof buf, i);
        st_iov iov = {buf, sizeof buf, NULL};
        if (send_wait(k, &iov, 1, i, &done, 10000))
            return 60;
        if (drain(k, &done, i + 1, 10000))
            return 61;
    }
}

static void lost_sender(st_link *k, pid_t child, int sig)
{
    st_msg m;
    for (int i = 0; i < 50; i++) {
        int rc = recv_wait(k, &m, 5000);
        if (rc != ST_OK) {
            CHECKF(0, "lost peer (signal %d): message %d before the signal: %s", sig, i, st_strerror(rc));
            return;
        }
        st_link_release(k, &m);
    }
    if (child <= 0 && (child = read_peer_pid()) <= 0) {
        CHECKF(0, "lost peer (signal %d): no peer pid in %s", sig, peer_pid_file ? peer_pid_file : "(none)");
        return;
    }
    kill(child, sig);
    uint64_t t0 = st_now_ns();
    int rc;
    while ((rc = recv_wait(k, &m, 10000)) == ST_OK)
        st_link_release(k, &m);
    double ms = (double)(st_now_ns() - t0) / 1e6;
    fprintf(stderr, "lost peer (signal %d): %s after %.0f ms\n", sig, st_strerror(rc), ms);
    CHECKF(rc == ST_ECONN, "lost peer (signal %d): %s", sig, st_strerror(rc));
    CHECKF(ms < 2.0 * DEATH_TIMEOUT_MS + 1000, "lost peer (signal %d) noticed after %.0f ms", sig, ms);
    if (sig != SIGKILL)
        kill(child, SIGKILL);
}

static void killed_sender_parent(st_link *k, pid_t child) { lost_sender(k, child, SIGKILL); }
/* a stalled peer (alive, silent) is noticed through missing heartbeats */
static void stalled_sender_parent(st_link *k, pid_t child) { lost_sender(k, child, SIGSTOP); }

/* the child receives a little, then dies; the parent's sends all complete
 * with an error, in bounded time */
static int die_child(st_link *k)
{
    st_msg m;
    for (int i = 0; i < 20; i++)
        if (recv_wait(k, &m, 5000) == ST_OK)
            st_link_release(k, &m);
    raise(SIGKILL);
    return 70;
}

static void dead_receiver_parent(st_link *k, pid_t child)
{
    static uint8_t buf[4096];
    uint64_t sent = 0, completions = 0, done = 0, t0 = st_now_ns();
    int rc = ST_OK;
    while (st_now_ns() - t0 < 10000000000ull) {
        st_iov iov = {buf, sizeof buf, NULL};
        rc = st_link_send(k, &iov, 1, sent);
        if (rc == ST_OK)
            sent++;
        else if (rc != ST_EAGAIN)
            break;
        rc = st_link_progress(k);
        st_completion c[64];
        int got;
        while ((got = st_link_poll_cq(k, c, 64)) > 0)
            for (int i = 0; i < got; i++)
                completions++, done += c[i].status == ST_OK;
        if (rc)
            break;
    }
    double ms = (double)(st_now_ns() - t0) / 1e6;
    fprintf(stderr, "dead receiver: %s after %.0f ms, %llu sent\n", st_strerror(rc), ms, (unsigned long long)sent);
    CHECKF(rc == ST_ECONN, "dead receiver: %s", st_strerror(rc));
    CHECKF(ms < 2.0 * DEATH_TIMEOUT_MS + 2000, "dead receiver noticed after %.0f ms", ms);
    st_completion c[64];
    int got;
    while ((got = st_link_poll_cq(k, c, 64)) > 0)
        completions += (uint64_t)got;
    CHECKF(completions == sent, "%llu sends, %llu completions", (unsigned long long)sent,
           (unsigned long long)completions);
    CHECK(done < sent);
    (void)child;
}

/* ---- the table ------------------------------------------------------------------------------ */
typedef struct tcase {
    const char *name;
    void (*parent)(st_link *k);
    int (*child)(st_link *k);
    void (*parent_kill)(st_link *k, pid_t child); /* fork mode only */
    uint32_t credits, timeout_ms;
    int needs_drop; /* only where st_link_debug_drop is supported */
    size_t max_msg; /* 0: default */
} tcase;

static const tcase cases[] = {
    {"echo-sizes", echo_parent, echo_child, NULL, 0, 0, 0},
    {"inflight", inflight_parent, inflight_child, NULL, 0, 0, 0},
    {"flow-control", flow_parent, flow_child, NULL, FLOW_CREDITS, 0, 0},
    {"inplace", inplace_parent, inplace_child, NULL, 0, 0, 0},
    {"small-ring", small_ring_parent, small_ring_child, NULL, 0, 0, 0, SR_MAX},
    {"corrupt-header", corrupt_parent, corrupt_child, NULL, 0, 0, 0},
    {"reconnect", reconnect_parent, reconnect_child, NULL, 64, 0, 1},
    {"killed-sender", NULL, stream_child, killed_sender_parent, 0, DEATH_TIMEOUT_MS, 0},
    {"stalled-sender", NULL, stream_child, stalled_sender_parent, 0, DEATH_TIMEOUT_MS, 0},
    {"dead-receiver", NULL, die_child, dead_receiver_parent, 0, DEATH_TIMEOUT_MS, 0},
};

static void case_opts(const tcase *c, st_link_opts *o)
{
    capped_opts(o);
    if (c->credits)
        o->credits = c->credits;
    if (c->max_msg) {
        o->max_msg = c->max_msg;
        o->rx_bytes = 2 * (c->max_msg + 128);
    }
    if (c->timeout_ms) {
        o->timeout_ms = c->timeout_ms;
        o->heartbeat_ms = c->timeout_ms / 8;
    }
}

static int supports_drop(void) { return strcmp(transport, "tcp") == 0; }

static int run_child(const tcase *c, const char *addr)
{
    st_link_opts o;
    case_opts(c, &o);
    st_link *k;
    write_peer_pid();
    /* split mode: the parent may be busy with the previous case or slow (a VM
     * under emulation); dial as long as it would accept */
    if (st_connect(transport, addr, &o, fork_mode ? 5000 : 20000, &k) != ST_OK) {
        fprintf(stderr, "child: connect %s: %s\n", addr, st_errmsg());
        return 2;
    }
    int rc = c->child(k);
    st_link_close(k);
    return rc;
}

static void run_case_fork(const tcase *c, const char *listen_addr)
{
    st_link_opts o;
    case_opts(c, &o);
    int fds0 = count_fds();
    st_listener *l;
    if (st_listen(transport, listen_addr, &o, &l) != ST_OK)
        {
        CHECKF(0, "%s listen %s: %s", transport, listen_addr, st_errmsg());
        return;
    }
    char addr[128];
    snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        st_listener_close(l);
        _exit(run_child(c, addr));
    }
    st_link *k = NULL;
    uint64_t t0 = st_now_ns();
    int rc = st_accept(l, 5000, &k);
    CHECKF(rc == ST_OK, "%s/%s: accept: %s", transport, c->name, st_errmsg());
    if (rc == ST_OK) {
        if (c->parent)
            c->parent(k);
        else
            c->parent_kill(k, pid);
        st_link_close(k);
    }
    st_listener_close(l);
    /* bounded wait for the child */
    int status = 0;
    uint64_t end = st_now_ns() + 15000000000ull;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (st_now_ns() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            CHECKF(0, "%s/%s: child hung", transport, c->name);
            break;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (c->parent)
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s/%s: child failed (status %d)", transport, c->name,
               WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    CHECKF(count_fds() == fds0, "%s/%s: %d fds before, %d after", transport, c->name, fds0, count_fds());
    fprintf(stderr, "%s/%s: %.0f ms\n", transport, c->name, (double)(st_now_ns() - t0) / 1e6);
}

/* Split mode, one named case (the peer-death cases need one child process
 * each): the parent listens with the case's options. The fd count is not
 * compared here: a transport may start per-process machinery at its first
 * accept (the DPDK EAL) that outlives the link. */
static int run_split_one(const char *role, const char *addr, const char *name)
{
    const tcase *c = NULL;
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++)
        if (!strcmp(cases[i].name, name))
            c = &cases[i];
    if (!c) {
        fprintf(stderr, "no case named '%s'\n", name);
        return 2;
    }
    if (strcmp(role, "parent") != 0) {
        int rc = run_child(c, addr);
        /* a peer-death child ends by being killed; returning means it failed */
        CHECKF(rc == 0, "%s: child role failed with %d", c->name, rc);
        return test_done();
    }
    st_link_opts o;
    case_opts(c, &o);
    st_listener *l;
    if (st_listen(transport, addr, &o, &l) != ST_OK) {
        fprintf(stderr, "listen %s: %s\n", addr, st_errmsg());
        return 1;
    }
    st_link *k;
    uint64_t t0 = st_now_ns();
    int rc = st_accept(l, 20000, &k);
    CHECKF(rc == ST_OK, "%s: accept: %s", c->name, st_errmsg());
    if (rc == ST_OK) {
        if (c->parent)
            c->parent(k);
        else
            c->parent_kill(k, 0);
        st_link_close(k);
    }
    st_listener_close(l);
    fprintf(stderr, "%s/%s: %.0f ms\n", transport, c->name, (double)(st_now_ns() - t0) / 1e6);
    return test_done();
}

/* Split mode: one role per process, cases in table order. */
static int run_split(const char *role, const char *addr)
{
    int parent = strcmp(role, "parent") == 0;
    st_listener *l = NULL;
    if (parent) {
        st_link_opts o;
        capped_opts(&o);
        o.credits = 64; /* the cases' credits are granted by the child */
        if (st_listen(transport, addr, &o, &l) != ST_OK) {
            fprintf(stderr, "listen %s: %s\n", addr, st_errmsg());
            return 1;
        }
    }
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        const tcase *c = &cases[i];
        if (!c->parent || (c->needs_drop && !supports_drop()))
            continue;
        if (parent) {
            st_link *k;
            int rc = st_accept(l, 20000, &k);
            CHECKF(rc == ST_OK, "%s: accept: %s", c->name, st_errmsg());
            if (rc)
                break;
            c->parent(k);
            st_link_close(k);
            fprintf(stderr, "%s/%s: done\n", transport, c->name);
        } else {
            int rc = run_child(c, addr);
            CHECKF(rc == 0, "%s: child role failed with %d", c->name, rc);
        }
    }
    if (l)
        st_listener_close(l);
    return test_done();
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 7 && !strcmp(argv[1], "--role") && !strcmp(argv[3], "--transport") && !strcmp(argv[5], "--addr")) {
        transport = argv[4];
        fork_mode = 0;
        const char *one = NULL;
        int i = 7;
        for (; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--case"))
                one = argv[i + 1];
            else if (!strcmp(argv[i], "--peer-pid-file"))
                peer_pid_file = argv[i + 1];
            else
                break;
        }
        if (i == argc)
            return one ? run_split_one(argv[2], argv[6], one) : run_split(argv[2], argv[6]);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--role parent|child --transport T --addr A [--case NAME] [--peer-pid-file F]]\n",
                argv[0]);
        return 2;
    }
    const char *only = getenv("ST_CONFORMANCE_TRANSPORT");
    const char *const *names = st_transport_names();
    for (int t = 0; names[t]; t++) {
        transport = names[t];
        if (only && strcmp(only, transport) != 0)
            continue;
        /* dpdk's EAL starts once per process and does not survive fork:
         * tests/dataplane/test_dpdk_memif.sh runs the cases in split mode */
        if (!strcmp(transport, "dpdk"))
            continue;
        for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
            if (cases[i].needs_drop && !supports_drop())
                continue;
            char addr[128];
            /* rdma's address is its TCP control channel's */
            if (!strcmp(transport, "tcp") || !strcmp(transport, "rdma"))
                snprintf(addr, sizeof addr, "127.0.0.1:0");
            else
                snprintf(addr, sizeof addr, "@strait-conf-%d-%zu", (int)getpid(), i);
            run_case_fork(&cases[i], addr);
        }
    }
    return test_done();
}
