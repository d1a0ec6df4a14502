/* DPDK start-up failures are clear errors, never an exit, and a caller that
 * allows it falls back to tcp (st_dpdk_listen_or / st_dpdk_connect_or).
 *
 * rte_eal_init runs once per process, so every case runs in its own forked
 * child (the parent never starts the EAL); a child that dies instead of
 * returning -- rte_exit, abort -- fails its case. Cases:
 *   config        bad --dpdk-peer / core list / hugepage count: ST_EINVAL
 *   bad-args      --dpdk-args with an option the EAL does not know
 *   hugepages     --dpdk-hugepages 4 with none free (the kernel's files
 *                 replaced by stand-ins through ST_DPDK_PROC_DIR, so the
 *                 machine's hugepages are never touched)
 *   absent-vdev   a port whose driver does not exist, for connect and listen
 *   no-dpdk       a build without DPDK: ST_ENOTSUP, and the same fallback
 * Each failing case checks the code, that the message names the cause,
 * that a second attempt gives the same answer, and that the fallback
 * carries a message over tcp. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/dpdk.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct acc {
    st_listener *l;
    st_link *k;
    int rc;
} acc;

static void *accept_thread(void *arg)
{
    acc *a = arg;
    a->rc = st_accept(a->l, 10000, &a->k);
    return NULL;
}

/* One message each way between two links; 1 when both arrive intact. */
static int exchange(st_link *x, st_link *y)
{
    static const char ping[] = "ping over the fallback";
    st_iov iov = {ping, sizeof ping, NULL};
    if (st_link_send(x, &iov, 1, 7) != ST_OK)
        return 0;
    uint64_t end = st_now_ns() + 10000000000ull;
    while (st_now_ns() < end) {
        if (st_link_progress(x) || st_link_progress(y))
            return 0;
        st_msg m;
        if (st_link_recv(y, &m) == ST_OK) {
            int ok = m.len == sizeof ping && !memcmp(m.data, ping, sizeof ping);
            st_link_release(y, &m);
            return ok;
        }
    }
    return 0;
}

/* connect_or to a dpdk address that must fail at start-up, with a tcp
 * listener as the fallback: the link must be tcp and carry a message. */
static void check_connect_fallback(const char *case_name, const char *dpdk_addr)
{
    st_listener *l = NULL;
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &l) == ST_OK);
    if (!l)
        return;
    acc a = {l, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, accept_thread, &a);
    st_link *k = NULL;
    const char *used = NULL;
    int rc = st_dpdk_connect_or(dpdk_addr, "tcp", st_listener_addr(l), NULL, 5000, &k, &used);
    pthread_join(t, NULL);
    CHECKF(rc == ST_OK && a.rc == ST_OK, "%s: fallback connect %s / accept %s: %s", case_name, st_strerror(rc),
           st_strerror(a.rc), st_errmsg());
    CHECKF(used && !strcmp(used, "tcp"), "%s: transport in use '%s', want tcp", case_name, used ? used : "(none)");
    if (k && a.k) {
        CHECKF(!strcmp(st_link_transport(k), "tcp"), "%s: link is %s", case_name, st_link_transport(k));
        CHECKF(exchange(k, a.k), "%s: no message over the fallback link", case_name);
    }
    /* without a fallback the same call is the start-up error, not a link */
    st_link *none = NULL;
    int rc2 = st_dpdk_connect_or(dpdk_addr, NULL, NULL, NULL, 1000, &none, NULL);
    CHECKF(rc2 != ST_OK && st_dpdk_startup_failure(rc2) && !none, "%s: no fallback gave %s", case_name,
           st_strerror(rc2));
    if (k)
        st_link_close(k);
    if (a.k)
        st_link_close(a.k);
    st_listener_close(l);
}

/* The EAL start must fail with `code` and a message holding `needle`,
 * twice (the failure is remembered; rte_eal_init is not called again). */
static void check_eal_fails(const char *case_name, int code, const char *needle)
{
    int rc = st_dpdk_eal_init();
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", st_errmsg());
    CHECKF(rc == code, "%s: EAL start gave %s, want %s (%s)", case_name, st_strerror(rc), st_strerror(code), msg);
    CHECKF(strstr(msg, needle) != NULL, "%s: message '%s' does not name '%s'", case_name, msg, needle);
    CHECKF(st_dpdk_startup_failure(rc), "%s: %s is not a start-up failure", case_name, st_strerror(rc));
    int again = st_dpdk_eal_init();
    CHECKF(again == rc && !strcmp(st_errmsg(), msg), "%s: second start gave %s (%s)", case_name,
           st_strerror(again), st_errmsg());
    fprintf(stderr, "%s: %s\n", case_name, msg);
}

static int have_dpdk(void)
{
    for (const char *const *t = st_transport_names(); *t; t++)
        if (!strcmp(*t, "dpdk"))
            return 1;
    return 0;
}

static void case_config(void)
{
    st_dpdk_config c = {0};
    c.peer = "not-a-mac,10.0.0.1";
    CHECK(st_dpdk_configure(&c) == ST_EINVAL && strstr(st_errmsg(), "not-a-mac"));
    c.peer = "02:00:00:00:00:01,10.0.0.300";
    CHECK(st_dpdk_configure(&c) == ST_EINVAL && strstr(st_errmsg(), "10.0.0.300"));
    c.peer = NULL;
    c.cores = "2;3";
    CHECK(st_dpdk_configure(&c) == ST_EINVAL && strstr(st_errmsg(), "2;3"));
    c.cores = NULL;
    c.hugepages = 1 << 21;
    CHECK(st_dpdk_configure(&c) == ST_EINVAL && strstr(st_errmsg(), "dpdk-hugepages"));
    c.hugepages = 0;
    c.eal_args = "--no-huge -m 64";
    c.cores = "0";
    CHECK(st_dpdk_configure(&c) == ST_OK);
    const char *args = st_dpdk_eal_args();
    CHECKF(strstr(args, "-l 0") && strstr(args, "--no-huge") && strstr(args, "-m 64"), "EAL arguments '%s'", args);
}

static void case_bad_args(void)
{
    st_dpdk_config c = {.eal_args = "--no-huge --strait-no-such-eal-option"};
    CHECK(st_dpdk_configure(&c) == ST_OK);
    check_eal_fails("bad-args", ST_EINVAL, "--strait-no-such-eal-option");
    CHECK(strstr(st_errmsg(), "--dpdk-args") != NULL);
    check_connect_fallback("bad-args", "net_memif,socket=/strait-eal-bad,socket-abstract=yes");
}

static void case_hugepages(void)
{
    char dir[] = "/tmp/strait-hp-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/meminfo", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("MemTotal: 1000 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:    2048 kB\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/nr_hugepages", dir);
    if ((f = fopen(path, "w"))) {
        fputs("0\n", f);
        fclose(f);
    }
    setenv("ST_DPDK_PROC_DIR", dir, 1);
    st_dpdk_config c = {.hugepages = 4};
    CHECK(st_dpdk_configure(&c) == ST_OK);
    check_eal_fails("hugepages", ST_ENOMEM, "--dpdk-hugepages 4: only 0 free");
    if (geteuid() == 0) { /* it tried to raise the (stand-in) nr_hugepages */
        char buf[32] = "";
        if ((f = fopen(path, "r"))) {
            CHECK(fgets(buf, sizeof buf, f) != NULL);
            fclose(f);
        }
        CHECKF(atoi(buf) == 4, "nr_hugepages stand-in holds '%s', want 4", buf);
    } else {
        CHECK(strstr(st_errmsg(), "not root") != NULL);
    }
    unsetenv("ST_DPDK_PROC_DIR");
    check_connect_fallback("hugepages", "net_memif,socket=/strait-eal-hp,socket-abstract=yes");
    unlink(path);
    snprintf(path, sizeof path, "%s/meminfo", dir);
    unlink(path);
    rmdir(dir);
}

static void case_absent_vdev(void)
{
    const char *addr = "net_straitnosuchdrv,iface=none0";
    int rc = st_dpdk_eal_init();
    if (rc) {
        fprintf(stderr, "SKIP absent-vdev: the EAL does not start here: %s\n", st_errmsg());
        exit(77);
    }
    st_link *k = NULL;
    rc = st_connect("dpdk", addr, NULL, 2000, &k);
    CHECKF(rc == ST_EIO && strstr(st_errmsg(), "net_straitnosuchdrv") && strstr(st_errmsg(), "could not be created"),
           "absent vdev: %s (%s)", st_strerror(rc), st_errmsg());
    fprintf(stderr, "absent-vdev: %s\n", st_errmsg());
    check_connect_fallback("absent-vdev", addr);
    /* the listener side: the port is tried at listen, so the fallback
     * listener is tcp and a plain tcp connect reaches it */
    st_listener *l = NULL;
    const char *used = NULL;
    rc = st_dpdk_listen_or(addr, "tcp", "127.0.0.1:0", NULL, &l, &used);
    CHECKF(rc == ST_OK && used && !strcmp(used, "tcp"), "listen_or: %s, used %s", st_strerror(rc),
           used ? used : "(none)");
    if (l) {
        acc a = {l, NULL, 0};
        pthread_t t;
        pthread_create(&t, NULL, accept_thread, &a);
        rc = st_connect("tcp", st_listener_addr(l), NULL, 5000, &k);
        pthread_join(t, NULL);
        CHECK(rc == ST_OK && a.rc == ST_OK);
        if (k && a.k)
            CHECK(exchange(a.k, k));
        if (k)
            st_link_close(k);
        if (a.k)
            st_link_close(a.k);
        st_listener_close(l);
    }
    /* a live dpdk port is not a fallback: the memif server is dpdk */
    char memif[128];
    snprintf(memif, sizeof memif, "net_memif,socket=/strait-eal-ok-%d,socket-abstract=yes", (int)getpid());
    l = NULL;
    used = NULL;
    rc = st_dpdk_listen_or(memif, "tcp", "127.0.0.1:0", NULL, &l, &used);
    CHECKF(rc == ST_OK && used && !strcmp(used, "dpdk"), "listen_or on memif: %s (%s), used %s", st_strerror(rc),
           st_errmsg(), used ? used : "(none)");
    if (l)
        st_listener_close(l);
}

static void case_no_dpdk(void)
{
    check_eal_fails("no-dpdk", ST_ENOTSUP, "no DPDK");
    check_connect_fallback("no-dpdk", "net_memif,socket=/strait-eal-none,socket-abstract=yes");
}

/* Run one case in a child; its exit status is the verdict. */
static int run_case(const char *name, void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(test_done());
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        return 0;
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "case %s: %s %d", name,
           WIFEXITED(st) ? "exit status" : "killed by signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return 0;
}

int main(void)
{
    st_log_set_level(ST_LOG_ERROR);
    run_case("config", case_config);
    if (!have_dpdk()) {
        run_case("no-dpdk", case_no_dpdk);
        fprintf(stderr, "built without DPDK: only the configuration and the no-DPDK fallback ran\n");
        return test_done();
    }
    run_case("bad-args", case_bad_args);
    run_case("hugepages", case_hugepages);
    run_case("absent-vdev", case_absent_vdev);
    return test_done();
}
