/* Endpoints and regions: option and address validation, listeners that
 * survive garbage connections, registered regions shared between
 * mappings, argument checks on the data calls. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/crc32c.h"
#include "dataplane/mr.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_mr(void)
{
    st_mr *a, *b, *r;
    CHECK(st_mr_alloc(0, 0, &a) == ST_EINVAL && a == NULL);
    CHECK(st_mr_alloc(10000, ST_MR_SHARED | ST_MR_PREFAULT, &a) == ST_OK);
    CHECK(a->len >= 10000 && a->fd >= 0 && a->key != 0);
    CHECK(st_mr_import(dup(a->fd), a->len, &b) == ST_OK);
    a->addr[4097] = 0x5a; /* the same pages through two mappings */
    CHECK(b->addr != a->addr && b->addr[4097] == 0x5a);
    CHECK(st_mr_contains(a, a->addr, a->len) && st_mr_contains(a, a->addr + 10, 5));
    CHECK(!st_mr_contains(a, a->addr + a->len - 4, 5) && !st_mr_contains(a, a->addr - 1, 1));
    CHECK(!st_mr_contains(a, a->addr + 1, SIZE_MAX));
    static uint8_t mine[256];
    CHECK(st_mr_register(mine, sizeof mine, &r) == ST_OK && r->addr == mine && r->key != a->key);
    st_mr *none = (st_mr *)1;
    CHECK(st_mr_register(NULL, 5, &none) == ST_EINVAL && none == NULL);
    st_mr_free(r);
    st_mr_free(a);
    st_mr_free(b);
}

static void test_validation(void)
{
    st_listener *l;
    st_link *k;
    st_link_opts o;
    st_link_opts_default(&o);
    CHECK(st_listen("carrier-pigeon", "x", NULL, &l) == ST_ENOTSUP);
    o.sq_depth = 3;
    CHECK(st_listen("tcp", "127.0.0.1:0", &o, &l) == ST_EINVAL && strstr(st_errmsg(), "sq_depth"));
    st_link_opts_default(&o);
    o.heartbeat_ms = 100, o.timeout_ms = 150;
    CHECK(st_listen("tcp", "127.0.0.1:0", &o, &l) == ST_EINVAL && strstr(st_errmsg(), "timeout_ms"));
    st_link_opts_default(&o);
    o.max_msg = 1 << 20, o.rx_bytes = (1 << 20) + 4096;
    CHECK(st_listen("tcp", "127.0.0.1:0", &o, &l) == ST_EINVAL && strstr(st_errmsg(), "rx_bytes"));
    CHECK(st_listen("tcp", "", NULL, &l) == ST_EINVAL);
    CHECK(st_listen("tcp", "127.0.0.1", NULL, &l) == ST_EINVAL);
    CHECK(st_listen("tcp", "127.0.0.1:99999", NULL, &l) == ST_EINVAL);
    CHECK(st_listen("tcp", "127.0.0.1:http", NULL, &l) == ST_EINVAL);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    CHECK(st_listen("shm", longpath, NULL, &l) == ST_EINVAL);

    /* nobody listening: a bounded failure */
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &l) == ST_OK);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", st_listener_addr(l));
    st_listener_close(l);
    uint64_t t0 = st_now_ns();
    CHECK(st_connect("tcp", addr, NULL, 200, &k) == ST_ECONN && k == NULL);
    CHECKF(st_now_ns() - t0 < 2000000000ull, "connect to nobody took %.0f ms", (double)(st_now_ns() - t0) / 1e6);
}

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

/* A listener given garbage refuses it and still accepts a real peer; then
 * the data calls check their arguments. */
static void test_garbage(const char *transport, const char *listen_addr)
{
    st_listener *l;
    if (st_listen(transport, listen_addr, NULL, &l) != ST_OK) {
        CHECKF(0, "%s listen: %s", transport, st_errmsg());
        return;
    }
    const char *addr = st_listener_addr(l);
    int fd;
    if (!strcmp(transport, "tcp")) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        sa.sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1));
        fd = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    } else {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, addr, strlen(addr));
        sa.sun_path[0] = 0;
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr))) == 0);
    }
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    st_link *k = NULL;
    int rc = st_accept(l, 300, &k);
    CHECKF(rc != ST_OK && k == NULL, "%s: garbage accepted as a link", transport);
    close(fd);

    conn_arg a = {transport, addr, NULL, 0};
    pthread_t th;
    pthread_create(&th, NULL, connector, &a);
    rc = st_accept(l, 5000, &k);
    pthread_join(th, NULL);
    CHECKF(rc == ST_OK && a.rc == ST_OK, "%s: real peer after garbage: %s", transport, st_errmsg());
    if (rc == ST_OK && a.rc == ST_OK) {
        uint8_t b[16] = {0};
        st_iov iov = {b, sizeof b, NULL}, none = {NULL, 5, NULL};
        CHECK(st_link_send(a.link, &iov, 0, 0) == ST_EINVAL);
        CHECK(st_link_send(a.link, &iov, ST_LINK_IOV_MAX + 1, 0) == ST_EINVAL);
        CHECK(st_link_send(a.link, &none, 1, 0) == ST_EINVAL);
        st_iov big = {b, ((size_t)1 << 30), NULL};
        CHECK(st_link_send(a.link, &big, 1, 0) == ST_ERANGE);
        st_msg m = {.seq = 7};
        CHECK(st_link_recv(k, &m) == ST_EAGAIN);
        CHECK(st_link_release(k, &m) == ST_EINVAL);
        CHECK(st_link_error(k) == 0 && !strcmp(st_link_transport(k), transport));
        st_link_close(a.link);
        /* the survivor learns of the goodbye */
        uint64_t end = st_now_ns() + 5000000000ull;
        while (st_link_progress(k) == ST_OK && st_now_ns() < end)
            st_link_wait(k, st_link_wait_prepare(k), 5);
        CHECKF(st_link_error(k) == ST_ECONN, "%s: close not seen: %s", transport, st_strerror(st_link_error(k)));
        CHECK(st_link_send(k, &iov, 1, 0) == ST_ECONN);
        st_link_close(k);
    }
    st_listener_close(l);
}

/* A peer process that vanishes while we write: the link fails with ECONN
 * in bounded time, and the library never raises SIGPIPE (this test leaves
 * SIGPIPE at its default, which would kill it). */
static void test_no_sigpipe(void)
{
    st_link_opts o;
    st_link_opts_default(&o);
    o.timeout_ms = 400, o.heartbeat_ms = 50;
    st_listener *l;
    if (st_listen("tcp", "127.0.0.1:0", &o, &l) != ST_OK) {
        CHECKF(0, "listen: %s", st_errmsg());
        return;
    }
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        st_link *c;
        _exit(st_connect("tcp", st_listener_addr(l), &o, 5000, &c) == ST_OK ? 0 : 1); /* no goodbye */
    }
    st_link *k = NULL;
    CHECK(st_accept(l, 5000, &k) == ST_OK);
    int status;
    waitpid(pid, &status, 0);
    if (!k) {
        st_listener_close(l);
        return;
    }
    static uint8_t big[1 << 20];
    st_iov iov = {big, sizeof big, NULL};
    uint64_t t0 = st_now_ns();
    int rc = ST_OK;
    while (st_now_ns() - t0 < 10000000000ull) {
        rc = st_link_send(k, &iov, 1, 0);
        if (rc != ST_OK && rc != ST_EAGAIN)
            break;
        if ((rc = st_link_progress(k)) != ST_OK)
            break;
        st_completion c[16];
        st_link_poll_cq(k, c, 16);
    }
    CHECKF(rc == ST_ECONN, "vanished peer: %s", st_strerror(rc));
    CHECKF(st_now_ns() - t0 < 3000000000ull, "vanished peer noticed after %.0f ms", (double)(st_now_ns() - t0) / 1e6);
    st_link_close(k);
    st_listener_close(l);
}


/* ---- a hostile shm peer ----------------------------------------------------------------
 * The connector of an shm link hands the listener a memfd and then writes
 * the shared ring directly, so the listener must check both. These tests
 * play such a connector by hand; the layout they forge is shm.c's: the
 * handshake {u32 magic "SSHM", u32 credits, u64 area, u64 max_msg} with the
 * fd, ring a (connector -> listener) = a 4096-byte control block (head: u64
 * at 0) then `area` bytes of records with 64-byte headers {u32 magic, u32
 * crc32c of bytes 8..32, u64 len, u64 seq, u32 flags (1 = wrap)}. */
#define FORGE_AREA ((uint64_t)2 << 20)

static int forge_connect(const char *addr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, addr, strlen(addr));
    sa.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr))) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int forge_hello(int sock, int memfd, uint64_t area)
{
    struct {
        uint32_t magic, credits;
        uint64_t area, max_msg;
    } h = {0x4d485353u, 16, area, 1 << 20};
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec v = {&h, sizeof h};
    struct msghdr mh = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
    return sendmsg(sock, &mh, 0) == (ssize_t)sizeof h ? 0 : -1;
}

/* One forged connection; returns st_accept's code (and the link on ST_OK). */
static int forge_accept(st_listener *l, int memfd, uint64_t area, int *sock, st_link **k)
{
    *sock = forge_connect(st_listener_addr(l));
    if (*sock < 0 || forge_hello(*sock, memfd, area) != 0)
        return -999;
    return st_accept(l, 3000, k);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: shm receive looped on a forged wrap marker\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(1);
}

static void test_shm_hostile(void)
{
    st_link_opts o;
    st_link_opts_default(&o);
    o.max_msg = 1 << 20, o.rx_bytes = 2 * ((1 << 20) + 128);
    char addr[64];
    snprintf(addr, sizeof addr, "@strait-hostile-%d", (int)getpid());
    st_listener *l;
    if (st_listen("shm", addr, &o, &l) != ST_OK) {
        CHECKF(0, "shm listen: %s", st_errmsg());
        return;
    }
    size_t full = 2 * (4096 + FORGE_AREA);
    int sock, rc;
    st_link *k = NULL;

    /* a memfd far smaller than the rings it claims: mapping it and touching
     * the control block would be SIGBUS */
    int small = memfd_create("forged-small", MFD_ALLOW_SEALING);
    CHECK(small >= 0 && ftruncate(small, 4096) == 0 && fcntl(small, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    rc = forge_accept(l, small, FORGE_AREA, &sock, &k);
    CHECKF(rc == ST_EPROTO && k == NULL, "short memfd: %s (%s)", st_strerror(rc), st_errmsg());
    close(small), close(sock);

    /* the right size but not sealed: the peer could shrink it later */
    int loose = memfd_create("forged-loose", 0);
    CHECK(loose >= 0 && ftruncate(loose, (off_t)full) == 0);
    rc = forge_accept(l, loose, FORGE_AREA, &sock, &k);
    CHECKF(rc == ST_EPROTO && k == NULL, "unsealed memfd: %s (%s)", st_strerror(rc), st_errmsg());
    close(loose), close(sock);

    /* a proper region, then a wrap marker at offset 0 with a huge head:
     * the receiver must refuse it, not go round the ring 2^41 times */
    int good = memfd_create("forged-good", MFD_ALLOW_SEALING);
    CHECK(good >= 0 && ftruncate(good, (off_t)full) == 0 && fcntl(good, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    uint8_t *map = mmap(NULL, full, PROT_READ | PROT_WRITE, MAP_SHARED, good, 0);
    CHECK(map != MAP_FAILED);
    rc = forge_accept(l, good, FORGE_AREA, &sock, &k);
    CHECKF(rc == ST_OK && k, "sealed memfd refused: %s", st_errmsg());
    if (rc == ST_OK && k && map != MAP_FAILED) {
        uint8_t *rec = map + 4096;
        memset(rec, 0, 64);
        uint32_t magic = 0x52485353u, flags = 1;
        memcpy(rec, &magic, 4);
        memcpy(rec + 24, &flags, 4);
        uint32_t crc = st_crc32c(0, rec + 8, 24);
        memcpy(rec + 4, &crc, 4);
        uint64_t head = (uint64_t)1 << 62;
        __atomic_store_n((uint64_t *)map, head, __ATOMIC_RELEASE);
        signal(SIGALRM, on_alarm);
        alarm(20);
        st_msg m;
        rc = st_link_recv(k, &m);
        alarm(0);
        CHECKF(rc == ST_EPROTO, "forged wrap marker: %s", st_strerror(rc));
        CHECK(st_link_error(k) == ST_EPROTO && strstr(st_link_errmsg(k), "wrap"));
        st_link_stats ls;
        st_link_get_stats(k, &ls);
        CHECK(ls.frames_rejected == 1);
        st_link_close(k);
    }
    if (map != MAP_FAILED)
        munmap(map, full);
    close(good), close(sock);
    st_listener_close(l);
}

/* shm ends with different max_msg: the link carries the smaller, and a
 * larger send is refused at the sender (ST_ERANGE), never a stuck ring or
 * a failed link. */
typedef struct opts_conn {
    const char *addr;
    st_link_opts o;
    st_link *link;
    int rc;
} opts_conn;

static void *opts_connector(void *arg)
{
    opts_conn *a = arg;
    a->rc = st_connect("shm", a->addr, &a->o, 5000, &a->link);
    return NULL;
}

static void test_shm_max_msg(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "@strait-maxmsg-%d", (int)getpid());
    st_listener *l;
    if (st_listen("shm", addr, NULL, &l) != ST_OK) { /* default: 64 MiB + 64 KiB */
        CHECKF(0, "shm listen: %s", st_errmsg());
        return;
    }
    opts_conn a = {.addr = addr};
    st_link_opts_default(&a.o);
    a.o.max_msg = 1 << 20, a.o.rx_bytes = 2 * ((1 << 20) + 128);
    pthread_t th;
    pthread_create(&th, NULL, opts_connector, &a);
    st_link *k = NULL;
    int rc = st_accept(l, 5000, &k);
    pthread_join(th, NULL);
    CHECKF(rc == ST_OK && a.rc == ST_OK, "shm max_msg link: %s", st_errmsg());
    if (rc == ST_OK && a.rc == ST_OK) {
        static uint8_t big[(2 << 20) + 1];
        st_iov too_big = {big, sizeof big, NULL}, fits = {big, 1 << 20, NULL};
        CHECK(st_link_send(k, &too_big, 1, 1) == ST_ERANGE);
        CHECK(st_link_send(a.link, &too_big, 1, 1) == ST_ERANGE);
        CHECK(st_link_send(k, &fits, 1, 2) == ST_OK);
        st_msg m;
        uint64_t end = st_now_ns() + 5000000000ull;
        rc = ST_EAGAIN;
        while (rc == ST_EAGAIN && st_now_ns() < end) {
            st_link_progress(k);
            st_link_progress(a.link);
            rc = st_link_recv(a.link, &m);
        }
        CHECKF(rc == ST_OK && m.len == (1u << 20), "1 MiB over the negotiated link: %s", st_strerror(rc));
        CHECK(st_link_error(k) == 0 && st_link_error(a.link) == 0);
        st_link_close(a.link);
        st_link_close(k);
    }
    st_listener_close(l);
}

int main(void)
{
    test_mr();
    test_validation();
    test_garbage("tcp", "127.0.0.1:0");
    char addr[64];
    snprintf(addr, sizeof addr, "@strait-endpoints-%d", (int)getpid());
    test_garbage("shm", addr);
    test_no_sigpipe();
    test_shm_hostile();
    test_shm_max_msg();
    return test_done();
}
