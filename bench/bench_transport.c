/* strait bench transport: ping-pong latency and one-way throughput of a
 * transport between two processes (fork), beside a plain blocking-socket
 * baseline and single-core memcpy bandwidth, so results read as ratios.
 *
 *   strait bench transport [--transport tcp|shm|dpdk|rdma|tcp-baseline] [--size B | --sizes B,B,...]
 *                          [--count N] [--mode inline|poller] [--dataplane-cores C0,C1] [--json]
 *
 * Per size: ping-pong of one message each way (latency = RTT/2, p50/p99/p999),
 * then a stream of messages one way until the receiver acknowledges the
 * last (GB/s = payload bytes / time, msgs/s). Activation-sized messages
 * (2 KiB .. 32 MiB: hidden x tokens x 2 bytes) are marked. */
#define _GNU_SOURCE
#include "bench/bench_transport.h"

#include "common/st_common.h"
#include "dataplane/poller.h"
#include "dataplane/transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SIZES 32
#define MAX_SIZE (((size_t)64 << 20))

typedef struct bopts {
    const char *transport;
    size_t sizes[MAX_SIZES];
    int n_sizes;
    long count; /* 0: chosen per size */
    int json, poller;
    int role;         /* 0: both ends here (fork); 1: server only; 2: client only */
    const char *addr; /* --listen / --connect address */
    int cpus[2], n_cpus;
} bopts;

typedef struct result {
    size_t size;
    long pp_n, tp_n;
    double p50, p99, p999; /* one-way latency, microseconds */
    double gbps, mps;
} result;

static void usage(FILE *f)
{
    fprintf(f, "usage: strait bench transport [--transport tcp|shm|dpdk|rdma|tcp-baseline]\n"
               "                              [--size BYTES | --sizes B,B,...]\n"
               "                              [--count N] [--mode inline|poller] [--dataplane-cores C0[,C1]] [--json]\n"
               "                              [--listen ADDR | --connect ADDR]\n"
               "  sizes take K/M suffixes (KiB/MiB); default sweep 64 B .. 64 MiB\n"
               "  --listen/--connect run one end each (two hosts or namespaces; same size options\n"
               "  on both); the listening end prints the results\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-')
        return -1;
    unsigned long long mul = 1;
    if (!strcmp(end, "K") || !strcmp(end, "KiB") || !strcmp(end, "k"))
        mul = 1024;
    else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
        mul = 1024 * 1024;
    else if (*end)
        return -1;
    v *= mul;
    if (v < 1 || v > MAX_SIZE)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_sizes(const char *s, bopts *o)
{
    char buf[512];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    o->n_sizes = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_sizes == MAX_SIZES || parse_size(t, &o->sizes[o->n_sizes]) != 0)
            return -1;
        o->n_sizes++;
    }
    return o->n_sizes ? 0 : -1;
}

static int bad(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "strait bench transport: bad value '%s' for %s: %s\n", val ? val : "", opt, why);
    return 2;
}

static int parse(int argc, char **argv, bopts *o)
{
    memset(o, 0, sizeof *o);
    o->transport = "tcp";
    parse_sizes("64,256,1K,2K,8K,64K,256K,1M,4M,16M,32M,64M", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 ||
            (strcmp(a, "--transport") && strcmp(a, "--size") && strcmp(a, "--sizes") && strcmp(a, "--count") &&
             strcmp(a, "--mode") && strcmp(a, "--dataplane-cores") && strcmp(a, "--listen") &&
             strcmp(a, "--connect"))) {
            fprintf(stderr, "strait bench transport: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v)
            return bad(a, "", "missing value");
        i++;
        if (!strcmp(a, "--transport")) {
            if (strcmp(v, "tcp") && strcmp(v, "shm") && strcmp(v, "dpdk") && strcmp(v, "rdma") &&
                strcmp(v, "tcp-baseline"))
                return bad(a, v, "expected tcp, shm, dpdk, rdma or tcp-baseline");
            o->transport = v;
        } else if (!strcmp(a, "--size")) {
            if (parse_size(v, &o->sizes[0]) != 0)
                return bad(a, v, "expected 1 .. 64MiB bytes (K/M suffixes allowed)");
            o->n_sizes = 1;
        } else if (!strcmp(a, "--sizes")) {
            if (parse_sizes(v, o) != 0)
                return bad(a, v, "expected a comma list of 1 .. 64MiB sizes");
        } else if (!strcmp(a, "--count")) {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (end == v || *end || errno || n < 1 || n > 100000000)
                return bad(a, v, "expected an integer 1 .. 1e8");
            o->count = n;
        } else if (!strcmp(a, "--listen") || !strcmp(a, "--connect")) {
            if (!*v || o->role)
                return bad(a, v, "expected one address, and only one of --listen / --connect");
            o->role = !strcmp(a, "--listen") ? 1 : 2;
            o->addr = v;
        } else if (!strcmp(a, "--mode")) {
            if (strcmp(v, "inline") && strcmp(v, "poller"))
                return bad(a, v, "expected inline or poller");
            o->poller = !strcmp(v, "poller");
        } else if (!strcmp(a, "--dataplane-cores")) {
            int n = st_parse_cpu_list(v, o->cpus, 2);
            if (n < 0)
                return bad(a, v, st_errmsg());
            long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            for (int j = 0; j < n; j++)
                if (o->cpus[j] >= ncpu)
                    return bad(a, v, "CPU number beyond the online CPUs");
            o->n_cpus = n;
        }
    }
    if (o->role && !strcmp(o->transport, "tcp-baseline"))
        return bad(o->role == 1 ? "--listen" : "--connect", o->addr, "not available for tcp-baseline");
    if (o->poller && !strcmp(o->transport, "tcp-baseline"))
        return bad("--mode", "poller", "the blocking-socket baseline has no polling core");
    return 0;
}

static long pp_count(const bopts *o, size_t s) { return o->count ? o->count : ST_MAX(20L, ST_MIN(20000L, (long)((256u << 20) / s))); }
static long tp_count(const bopts *o, size_t s) { return o->count ? o->count : ST_MAX(16L, ST_MIN(200000L, (long)((1024u << 20) / s))); }

/* ---- endpoints: a link driven inline or through a polling core -----------------------------------
 * Waiting loops spin for SPIN_NS, then block in the transport's wait
 * (epoll / futex, woken by the peer) or, behind a polling core, yield: on a
 * machine with a core per process the spin covers a round trip, and on a
 * busy one a waiting process does not hold the core its peer needs. */
#define SPIN_NS 30000ull

typedef struct ep {
    st_link *k;
    st_poller *p;
    long pending; /* sends not yet completed */
} ep;

static void backoff(ep *e, uint64_t *since)
{
    uint64_t now = st_now_ns();
    if (!*since)
        *since = now;
    else if (now - *since > SPIN_NS) {
        if (e->p)
            sched_yield();
        else
            st_link_wait(e->k, st_link_wait_prepare(e->k), 1);
    }
}

/* Queue one message; push it to the wire now when flush is set (latency),
 * else let several accumulate so that one system call carries a batch,
 * as a polling core does when it drains its submission ring. */
static int ep_send(ep *e, const void *buf, size_t n, int flush)
{
    st_iov iov = {buf, n, NULL};
    st_completion c[64];
    for (uint64_t since = 0;;) {
        int rc = e->p ? st_poller_send(e->p, &iov, 1, 0) : st_link_send(e->k, &iov, 1, 0);
        if (rc == ST_OK) {
            e->pending++;
            if (!e->p && flush)
                st_link_progress(e->k);
            return ST_OK;
        }
        if (rc != ST_EAGAIN)
            return rc;
        if (!e->p && (rc = st_link_progress(e->k)) != ST_OK)
            return rc;
        int got = e->p ? st_poller_poll_cq(e->p, c, 64) : st_link_poll_cq(e->k, c, 64);
        e->pending -= got;
        if (!got)
            backoff(e, &since);
    }
}

static int ep_recv(ep *e, st_msg *m)
{
    st_completion c[64];
    uint64_t since = 0;
    for (uint64_t n = 1;; n++) {
        int rc = e->p ? st_poller_recv(e->p, m) : st_link_recv(e->k, m);
        if (rc != ST_EAGAIN)
            return rc;
        if (!e->p) {
            if ((rc = st_link_progress(e->k)) != ST_OK)
                return st_link_recv(e->k, m) == ST_OK ? ST_OK : rc;
            if ((rc = st_link_recv(e->k, m)) != ST_EAGAIN) /* before backing off */
                return rc;
        }
        if ((n & 63) == 0) /* keep completions reaped while waiting */
            e->pending -= e->p ? st_poller_poll_cq(e->p, c, 64) : st_link_poll_cq(e->k, c, 64);
        backoff(e, &since);
    }
}

static void ep_release(ep *e, st_msg *m)
{
    if (e->p)
        while (st_poller_release(e->p, m) == ST_EAGAIN)
            ;
    else
        st_link_release(e->k, m);
}

/* ---- one size, both roles ------------------------------------------------------------------------ */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_parent(ep *e, const uint8_t *buf, size_t s, long pp, long tp, result *r)
{
    uint64_t *rtt = st_xmalloc(sizeof *rtt * (size_t)pp);
    st_msg m;
    int rc = ST_OK;
    long warm = ST_MIN(pp / 10 + 1, 100L);
    for (long i = -warm; i < pp && !rc; i++) {
        uint64_t t0 = st_now_ns();
        if ((rc = ep_send(e, buf, s, 1)) || (rc = ep_recv(e, &m)))
            break;
        uint64_t t1 = st_now_ns();
        ep_release(e, &m);
        if (i >= 0)
            rtt[i] = t1 - t0;
    }
    if (!rc) {
        qsort(rtt, (size_t)pp, sizeof *rtt, cmp_u64);
        r->p50 = (double)rtt[pp / 2] / 2e3;
        r->p99 = (double)rtt[(size_t)((double)pp * 0.99)] / 2e3;
        r->p999 = (double)rtt[(size_t)((double)pp * 0.999)] / 2e3;
        uint64_t t0 = st_now_ns();
        for (long i = 0; i < tp && !rc; i++)
            rc = ep_send(e, buf, s, (i & 31) == 31 || i == tp - 1);
        if (!rc && !(rc = ep_recv(e, &m))) { /* the receiver's "got them all" */
            double sec = (double)(st_now_ns() - t0) * 1e-9;
            ep_release(e, &m);
            r->gbps = (double)s * (double)tp / sec / 1e9;
            r->mps = (double)tp / sec;
        }
    }
    free(rtt);
    return rc;
}

static int run_child(ep *e, const uint8_t *buf, size_t s, long pp, long tp)
{
    st_msg m;
    int rc = ST_OK;
    long warm = ST_MIN(pp / 10 + 1, 100L);
    for (long i = -warm; i < pp && !rc; i++) {
        if ((rc = ep_recv(e, &m)))
            break;
        ep_release(e, &m);
        rc = ep_send(e, buf, s, 1);
    }
    for (long i = 0; i < tp && !rc; i++) {
        if ((rc = ep_recv(e, &m)))
            break;
        ep_release(e, &m);
    }
    return rc ? rc : ep_send(e, buf, 8, 1);
}

/* ---- the blocking-socket baseline ------------------------------------------------------------------ */
static int io_all(int fd, void *b, size_t n, int wr)
{
    for (size_t d = 0; d < n;) {
        ssize_t r = wr ? write(fd, (uint8_t *)b + d, n - d) : read(fd, (uint8_t *)b + d, n - d);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        d += (size_t)r;
    }
    return 0;
}

static int bl_send(int fd, const uint8_t *buf, size_t n)
{
    uint64_t len = n;
    return io_all(fd, &len, 8, 1) || io_all(fd, (void *)buf, n, 1) ? -1 : 0;
}

static int bl_recv(int fd, uint8_t *buf)
{
    uint64_t len;
    if (io_all(fd, &len, 8, 0) || len > MAX_SIZE)
        return -1;
    return io_all(fd, buf, (size_t)len, 0);
}

static int bl_parent(int fd, uint8_t *buf, uint8_t *rbuf, size_t s, long pp, long tp, result *r)
{
    uint64_t *rtt = st_xmalloc(sizeof *rtt * (size_t)pp);
    long warm = ST_MIN(pp / 10 + 1, 100L);
    int rc = 0;
    for (long i = -warm; i < pp && !rc; i++) {
        uint64_t t0 = st_now_ns();
        rc = bl_send(fd, buf, s) || bl_recv(fd, rbuf);
        if (i >= 0)
            rtt[i] = st_now_ns() - t0;
    }
    if (!rc) {
        qsort(rtt, (size_t)pp, sizeof *rtt, cmp_u64);
        r->p50 = (double)rtt[pp / 2] / 2e3;
        r->p99 = (double)rtt[(size_t)((double)pp * 0.99)] / 2e3;
        r->p999 = (double)rtt[(size_t)((double)pp * 0.999)] / 2e3;
        uint64_t t0 = st_now_ns();
        for (long i = 0; i < tp && !rc; i++)
            rc = bl_send(fd, buf, s);
        rc = rc || bl_recv(fd, rbuf);
        double sec = (double)(st_now_ns() - t0) * 1e-9;
        r->gbps = (double)s * (double)tp / sec / 1e9;
        r->mps = (double)tp / sec;
    }
    free(rtt);
    return rc ? ST_ECONN : ST_OK;
}

static int bl_child(int fd, uint8_t *buf, uint8_t *rbuf, size_t s, long pp, long tp)
{
    long warm = ST_MIN(pp / 10 + 1, 100L);
    for (long i = -warm; i < pp; i++)
        if (bl_recv(fd, rbuf) || bl_send(fd, buf, s))
            return 1;
    for (long i = 0; i < tp; i++)
        if (bl_recv(fd, rbuf))
            return 1;
    return bl_send(fd, buf, 8) ? 1 : 0;
}

/* ---- memcpy reference --------------------------------------------------------------------------------- */
/* Single-core memcpy bandwidth copying `chunk` bytes at a time through
 * 64 MiB buffers (out of cache), GB/s of bytes copied. */
static double memcpy_gbps(size_t chunk)
{
    size_t total = (size_t)64 << 20;
    uint8_t *a = st_xaligned(total), *b = st_xaligned(total);
    memset(a, 1, total);
    memset(b, 2, total);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = st_now_ns();
        for (size_t off = 0; off + chunk <= total; off += chunk)
            memcpy(b + off, a + off, chunk);
        double sec = (double)(st_now_ns() - t0) * 1e-9;
        best = ST_MAX(best, (double)(total / chunk * chunk) / sec / 1e9);
    }
    free(a);
    free(b);
    return best;
}

/* ---- driver -------------------------------------------------------------------------------------------- */
/* ps: the listening end's polling-core counters (poller mode) */
static int bench_link(const bopts *o, result *res, st_poller_stats *ps)
{
    char addr[128];
    int is_shm = !strcmp(o->transport, "shm");
    if (o->role)
        snprintf(addr, sizeof addr, "%s", o->addr);
    else if (is_shm)
        snprintf(addr, sizeof addr, "@strait-bench-%d", (int)getpid());
    else if (!strcmp(o->transport, "dpdk")) /* two memif ports on one socket; the EAL starts after the fork */
        snprintf(addr, sizeof addr, "net_memif,socket=/strait-bench-%d,socket-abstract=yes", (int)getpid());
    else
        snprintf(addr, sizeof addr, "127.0.0.1:0");
    st_link_opts lo;
    st_link_opts_default(&lo);
    st_listener *l = NULL;
    if (o->role != 2) {
        if (st_listen(o->transport, addr, &lo, &l) != ST_OK) {
            fprintf(stderr, "strait bench transport: %s\n", st_errmsg());
            return 1;
        }
        snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    }
    st_mr *mr;
    if (st_mr_alloc(MAX_SIZE, ST_MR_PREFAULT | ST_MR_HUGEPAGE, &mr) != ST_OK) {
        fprintf(stderr, "strait bench transport: %s\n", st_errmsg());
        return 1;
    }
    fflush(stdout);
    pid_t pid = o->role ? -1 : fork(); /* pid 0: the forked client */
    int child = o->role == 2 || pid == 0, forked = pid == 0;
    ep e = {0};
    int rc;
    if (child) {
        if (l)
            st_listener_close(l);
        l = NULL;
        rc = st_connect(o->transport, addr, &lo, o->role ? 60000 : 10000, &e.k);
    } else {
        rc = st_accept(l, o->role ? 600000 : 10000, &e.k);
    }
    if (rc) {
        fprintf(stderr, "strait bench transport: link set-up: %s\n", st_errmsg());
        if (forked)
            _exit(1);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        if (l)
            st_listener_close(l);
        st_mr_free(mr);
        return 1;
    }
    int cpu = o->n_cpus ? o->cpus[child ? o->n_cpus - 1 : 0] : -1;
    if (o->poller) {
        st_poller_opts po;
        st_poller_opts_default(&po);
        po.cpu = cpu;
        st_poller_start(e.k, &po, &e.p);
    } else if (cpu >= 0) {
        st_pin_thread(cpu);
    }
    for (int i = 0; i < o->n_sizes && !rc; i++) {
        size_t s = o->sizes[i];
        if (child)
            rc = run_child(&e, mr->addr, s, pp_count(o, s), tp_count(o, s));
        else {
            res[i].size = s;
            res[i].pp_n = pp_count(o, s);
            res[i].tp_n = tp_count(o, s);
            rc = run_parent(&e, mr->addr, s, res[i].pp_n, res[i].tp_n, &res[i]);
        }
    }
    if (rc)
        fprintf(stderr, "strait bench transport: %s: %s\n", child ? "child" : "parent", st_errmsg());
    /* let the last completions drain so the peer is not cut off mid-message */
    uint64_t end = st_now_ns() + 2000000000ull;
    st_completion c[64];
    while (!rc && e.pending > 0 && st_now_ns() < end) {
        if (!e.p)
            st_link_progress(e.k);
        e.pending -= e.p ? st_poller_poll_cq(e.p, c, 64) : st_link_poll_cq(e.k, c, 64);
    }
    if (child) { /* wait for the parent to hang up, so our goodbye cannot overtake data */
        st_msg m;
        while (ep_recv(&e, &m) == ST_OK)
            ep_release(&e, &m);
    }
    if (e.p) {
        st_poller_get_stats(e.p, ps);
        st_poller_stop(e.p);
    }
    st_link_close(e.k);
    st_mr_free(mr);
    if (forked)
        _exit(rc ? 1 : 0);
    if (l)
        st_listener_close(l);
    if (pid <= 0)
        return rc ? 1 : 0;
    int status;
    waitpid(pid, &status, 0);
    return rc || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}

static int bench_baseline(const bopts *o, result *res)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sl) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&sa, &sl)) {
        fprintf(stderr, "strait bench transport: baseline socket: %s\n", strerror(errno));
        return 1;
    }
    uint8_t *buf = st_xaligned(MAX_SIZE), *rbuf = st_xaligned(MAX_SIZE);
    memset(buf, 1, MAX_SIZE);
    memset(rbuf, 0, MAX_SIZE);
    fflush(stdout);
    pid_t pid = fork();
    int fd, rc = 0;
    if (pid == 0) {
        close(ls);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sl) != 0)
            _exit(1);
    } else {
        fd = accept(ls, NULL, NULL);
        close(ls);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int cpu = o->n_cpus ? o->cpus[pid == 0 ? o->n_cpus - 1 : 0] : -1;
    if (cpu >= 0)
        st_pin_thread(cpu);
    for (int i = 0; i < o->n_sizes && !rc; i++) {
        size_t s = o->sizes[i];
        if (pid == 0)
            rc = bl_child(fd, buf, rbuf, s, pp_count(o, s), tp_count(o, s));
        else {
            res[i].size = s;
            res[i].pp_n = pp_count(o, s);
            res[i].tp_n = tp_count(o, s);
            rc = bl_parent(fd, buf, rbuf, s, res[i].pp_n, res[i].tp_n, &res[i]);
        }
    }
    close(fd);
    free(buf);
    free(rbuf);
    if (pid == 0)
        _exit(rc ? 1 : 0);
    int status;
    waitpid(pid, &status, 0);
    return rc || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}

int st_bench_transport_main(int argc, char **argv)
{
    bopts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    result res[MAX_SIZES];
    memset(res, 0, sizeof res);
    double mc_1m = memcpy_gbps((size_t)1 << 20);
    st_poller_stats ps;
    memset(&ps, 0, sizeof ps);
    rc = !strcmp(o.transport, "tcp-baseline") ? bench_baseline(&o, res) : bench_link(&o, res, &ps);
    if (rc)
        return 1;
    if (o.role == 2)
        return 0; /* the listening end reports */
    const char *mode = !strcmp(o.transport, "tcp-baseline") ? "blocking" : o.poller ? "poller" : "inline";
    printf("transport %s (%s), single-core memcpy %.2f GB/s (1 MiB chunks)\n", o.transport, mode, mc_1m);
    printf("%10s %9s %9s %9s %9s %10s %12s %s\n", "size", "p50 us", "p99 us", "p999 us", "GB/s", "msgs/s",
           "vs memcpy", "");
    for (int i = 0; i < o.n_sizes; i++) {
        result *r = &res[i];
        int act = r->size >= 2048 && r->size <= ((size_t)32 << 20);
        printf("%10zu %9.2f %9.2f %9.2f %9.3f %10.0f %11.1f%% %s\n", r->size, r->p50, r->p99, r->p999, r->gbps,
               r->mps, 100.0 * r->gbps / mc_1m, act ? "activation-sized" : "");
    }
    if (o.poller)
        printf("polling core (listening end): %llu msgs / %llu bytes received, %llu msgs / %llu bytes sent; "
               "idle passes: %llu spins, %llu yields, %llu sleeps\n",
               (unsigned long long)ps.msgs_rx, (unsigned long long)ps.bytes_rx, (unsigned long long)ps.msgs_tx,
               (unsigned long long)ps.bytes_tx, (unsigned long long)ps.spins, (unsigned long long)ps.yields,
               (unsigned long long)ps.sleeps);
    if (o.json) {
        printf("{\"bench\":\"transport\",\"transport\":\"%s\",\"mode\":\"%s\",\"memcpy_gbps\":%.3f,",
               o.transport, mode, mc_1m);
        if (o.poller)
            printf("\"poller\":{\"msgs_rx\":%llu,\"bytes_rx\":%llu,\"msgs_tx\":%llu,\"bytes_tx\":%llu,"
                   "\"spins\":%llu,\"yields\":%llu,\"sleeps\":%llu},",
                   (unsigned long long)ps.msgs_rx, (unsigned long long)ps.bytes_rx, (unsigned long long)ps.msgs_tx,
                   (unsigned long long)ps.bytes_tx, (unsigned long long)ps.spins, (unsigned long long)ps.yields,
                   (unsigned long long)ps.sleeps);
        printf("\"results\":[");
        for (int i = 0; i < o.n_sizes; i++) {
            result *r = &res[i];
            printf("%s{\"size\":%zu,\"pingpong_n\":%ld,\"stream_n\":%ld,\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,"
                   "\"lat_p999_us\":%.3f,\"gbps\":%.4f,\"msgs_per_s\":%.1f,\"activation\":%s}",
                   i ? "," : "", r->size, r->pp_n, r->tp_n, r->p50, r->p99, r->p999, r->gbps, r->mps,
                   r->size >= 2048 && r->size <= ((size_t)32 << 20) ? "true" : "false");
        }
        printf("]}\n");
    }
    return 0;
}
