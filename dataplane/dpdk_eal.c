/* The DPDK environment: the process-wide configuration (dpdk.h), starting
 * the EAL once with sane defaults, and opening/closing the port of a link.
 *
 * Default EAL arguments, each left out when the user's --dpdk-args already
 * decide the matter:
 *   --in-memory          no shared files in /var/run, so any number of
 *                        processes (and tests) run side by side
 *                        (--no-shconf with --no-huge, which refuses it)
 *   --no-huge -m 512     when /proc/meminfo shows no free hugepages and
 *                        none were required (--dpdk-hugepages N: N free
 *                        pages are a start-up condition, see dpdk.h)
 *   --no-pci             unless the first address is a PCI device (then -a it)
 *   -l CORES             the --dataplane-cores list; without one the EAL is
 *                        started on the current CPU and the thread's
 *                        affinity is restored afterwards
 *   --no-telemetry --log-level=lib.eal:warning
 * Without ST_HAVE_DPDK only the configuration calls exist; starting says
 * ST_ENOTSUP. */
#define _GNU_SOURCE
#include "dataplane/dpdk.h"

#include "common/st_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ST_HAVE_DPDK
#include "dataplane/dpdk_impl.h"

#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_alarm.h>
#include <rte_ethdev.h>
#include <rte_interrupts.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#endif

static struct {
    char args[1024], cores[256];
    int have_peer;
    uint8_t peer_mac[6];
    uint32_t peer_ip, ip;  /* network order; ip 0: by role */
    int hugepages;         /* required free 2 MiB pages; 0: use what is free */
    int configured;
    double drop, reorder, dup;
    int faults_set;
    int eal_state;         /* 0 not started, 1 running, <0 the error it failed with */
    char eal_err[2048];
    char argv_text[1600];
} g;

/* ---- configuration --------------------------------------------------------------------- */
static int parse_peer(const char *s, uint8_t mac[6], uint32_t *ip)
{
    unsigned m[6];
    char ipbuf[64];
    int n = 0;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x,%63s%n", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], ipbuf, &n) != 7 ||
        s[n] != 0)
        return st_err(ST_EINVAL, "dpdk: --dpdk-peer '%s' is not MAC,IP (aa:bb:cc:dd:ee:ff,10.0.0.2)", s);
    struct in_addr a;
    if (inet_pton(AF_INET, ipbuf, &a) != 1)
        return st_err(ST_EINVAL, "dpdk: --dpdk-peer '%s': '%s' is not an IPv4 address", s, ipbuf);
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)m[i];
    *ip = a.s_addr;
    return ST_OK;
}

static int parse_cores(const char *s)
{
    if (!*s || strlen(s) >= sizeof g.cores)
        return st_err(ST_EINVAL, "dpdk: core list '%s' is empty or too long", s);
    for (const char *p = s; *p; p++)
        if (!(*p >= '0' && *p <= '9') && *p != ',' && *p != '-')
            return st_err(ST_EINVAL, "dpdk: core list '%s': only digits, ',' and '-' are allowed", s);
    return ST_OK;
}


static int configure_from(const st_dpdk_config *c)
{
    const char *args = c && c->eal_args ? c->eal_args : getenv("ST_DPDK_ARGS");
    const char *cores = c && c->cores ? c->cores : getenv("ST_DPDK_CORES");
    const char *peer = c && c->peer ? c->peer : getenv("ST_DPDK_PEER");
    const char *ip = c && c->ip ? c->ip : getenv("ST_DPDK_IP");
    const char *hp = getenv("ST_DPDK_HUGEPAGES");
    int hugepages = c && c->hugepages >= 0 ? c->hugepages : 0, rc;
    if ((!c || c->hugepages < 0) && hp && *hp) {
        char *end;
        long v = strtol(hp, &end, 10);
        if (*end || v < 0 || v > (1 << 20))
            return st_err(ST_EINVAL, "dpdk: ST_DPDK_HUGEPAGES '%s' is not a count of pages (0 .. 1048576)", hp);
        hugepages = (int)v;
    }
    if (hugepages > (1 << 20))
        return st_err(ST_EINVAL, "dpdk: --dpdk-hugepages %d is more than 1048576 pages", hugepages);
    if (args && strlen(args) >= sizeof g.args)
        return st_err(ST_EINVAL, "dpdk: --dpdk-args longer than %zu bytes", sizeof g.args - 1);
    if (cores && *cores && (rc = parse_cores(cores)))
        return rc;
    uint8_t mac[6];
    uint32_t pip = 0, lip = 0;
    if (peer && *peer && (rc = parse_peer(peer, mac, &pip)))
        return rc;
    struct in_addr a;
    if (ip && *ip) {
        if (inet_pton(AF_INET, ip, &a) != 1)
            return st_err(ST_EINVAL, "dpdk: local address '%s' is not an IPv4 address", ip);
        lip = a.s_addr;
    }
    snprintf(g.args, sizeof g.args, "%s", args ? args : "");
    snprintf(g.cores, sizeof g.cores, "%s", cores ? cores : "");
    g.have_peer = peer && *peer;
    if (g.have_peer)
        memcpy(g.peer_mac, mac, 6), g.peer_ip = pip;
    g.ip = lip;
    g.hugepages = hugepages;
    g.configured = 1;
    return ST_OK;
}

int st_dpdk_configure(const st_dpdk_config *c)
{
    if (g.eal_state)
        return st_err(ST_EINVAL, "dpdk: configure after the EAL started");
    return configure_from(c);
}

void st_dpdk_debug_faults(double drop, double reorder, double dup)
{
    g.drop = drop, g.reorder = reorder, g.dup = dup;
    g.faults_set = 1;
}

#ifndef ST_HAVE_DPDK
int st_dpdk_eal_init(void) { return st_err(ST_ENOTSUP, "dpdk: this build has no DPDK (STRAIT_WITH_DPDK=OFF)"); }
const char *st_dpdk_eal_args(void) { return ""; }
#else

/* ---- EAL ------------------------------------------------------------------------------------- */
static double env_rate(const char *name)
{
    const char *v = getenv(name);
    double r = v ? atof(v) : 0;
    return r < 0 ? 0 : r > 1 ? 1 : r;
}

static int has_arg(const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = g.args; (p = strstr(p, prefix)) != NULL; p += n)
        if ((p == g.args || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '='))
            return 1;
    return 0;
}

/* The kernel's files, or a test's stand-ins: ST_DPDK_PROC_DIR names a
 * folder with "meminfo" and "nr_hugepages" (test hook). */
static void proc_path(char *out, size_t cap, const char *name, const char *real)
{
    const char *dir = getenv("ST_DPDK_PROC_DIR");
    if (dir && *dir)
        snprintf(out, cap, "%s/%s", dir, name);
    else
        snprintf(out, cap, "%s", real);
}

/* Free and total 2 MiB hugepages (0 when unknown). */
static long hugepages_read(long *total)
{
    char path[512], line[128];
    proc_path(path, sizeof path, "meminfo", "/proc/meminfo");
    FILE *f = fopen(path, "r");
    long n = 0, t = 0;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "HugePages_Free: %ld", &n);
        sscanf(line, "HugePages_Total: %ld", &t);
    }
    if (f)
        fclose(f);
    if (total)
        *total = t;
    return n;
}

static int hugepages_free(void) { return hugepages_read(NULL) > 0; }

/* --dpdk-hugepages N: make N pages free, raising nr_hugepages when root.
 * ST_ENOMEM naming what is missing when it cannot. */
static int hugepages_ensure(int want)
{
    long total, have = hugepages_read(&total);
    if (have >= want)
        return ST_OK;
    char path[512], why[768] = "";
    proc_path(path, sizeof path, "nr_hugepages", "/proc/sys/vm/nr_hugepages");
    if (geteuid() != 0) {
        snprintf(why, sizeof why, "not root, so %s was left alone", path);
    } else {
        FILE *f = fopen(path, "w");
        int ok = f && fprintf(f, "%ld\n", total + (want - have)) > 0;
        if (f && fclose(f) != 0)
            ok = 0;
        if (!ok)
            snprintf(why, sizeof why, "writing %ld to %s failed: %s", total + (want - have), path, strerror(errno));
        else if ((have = hugepages_read(NULL)) >= want)
            return ST_OK;
        else
            snprintf(why, sizeof why, "after raising %s the kernel has only %ld free", path, have);
    }
    return st_err(ST_ENOMEM,
                  "dpdk: --dpdk-hugepages %d: only %ld free 2 MiB hugepages (%s); free memory or reserve them "
                  "as root (sysctl vm.nr_hugepages), or leave --dpdk-hugepages out to run without hugepages",
                  want, have, why);
}

static int is_pci(const char *addr)
{
    unsigned d, b, s, fn;
    char end;
    return sscanf(addr, "%x:%x:%x.%x%c", &d, &b, &s, &fn, &end) == 4 || sscanf(addr, "%x:%x.%x%c", &b, &s, &fn, &end) == 3;
}

/* Build argv into g.argv_text (NUL-separated words in `store`). */
static int build_argv(const char *first_addr, char *store, size_t cap, char **argv, int max)
{
    int argc = 0;
    size_t used = 0;
    char text[1600];
    text[0] = 0;
#define ADD(s)                                                                                                      \
    do {                                                                                                            \
        size_t l_ = strlen(s);                                                                                      \
        if (argc >= max - 1 || used + l_ + 1 > cap)                                                                 \
            return st_err(ST_EINVAL, "dpdk: too many EAL arguments");                                              \
        memcpy(store + used, s, l_ + 1);                                                                            \
        argv[argc++] = store + used;                                                                                \
        used += l_ + 1;                                                                                             \
        if (argc > 1)                                                                                               \
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s", argc > 2 ? " " : "", s);              \
    } while (0)
    ADD("strait");
    char cpu[32];
    if (g.cores[0]) {
        if (!has_arg("-l") && !has_arg("--lcores") && !has_arg("-c")) {
            ADD("-l");
            ADD(g.cores);
        }
    } else if (!has_arg("-l") && !has_arg("--lcores") && !has_arg("-c")) {
        int c = sched_getcpu();
        snprintf(cpu, sizeof cpu, "%d", c < 0 ? 0 : c);
        ADD("-l");
        ADD(cpu);
    }
    int nohuge = has_arg("--no-huge") || (!g.hugepages && !hugepages_free());
    /* --in-memory refuses -m (legacy memory); without hugepages there are
     * no hugepage files anyway, and --no-shconf keeps the rest private */
    if (!has_arg("--in-memory") && !has_arg("--file-prefix") && !has_arg("--no-shconf"))
        ADD(nohuge ? "--no-shconf" : "--in-memory");
    if (nohuge && !has_arg("--no-huge")) {
        ADD("--no-huge");
        if (!has_arg("-m") && !has_arg("--socket-mem")) {
            ADD("-m");
            ADD("512");
        }
    }
    if (first_addr && is_pci(first_addr)) {
        if (!has_arg("-a") && !has_arg("--allow")) {
            ADD("-a");
            ADD(first_addr);
        }
    } else if (!has_arg("--no-pci") && !has_arg("-a") && !has_arg("--allow")) {
        ADD("--no-pci");
    }
    if (!has_arg("--telemetry"))
        ADD("--no-telemetry");
    if (!has_arg("--log-level"))
        ADD("--log-level=lib.eal:warning");
    char words[sizeof g.args];
    snprintf(words, sizeof words, "%s", g.args);
    for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        ADD(w);
#undef ADD
    argv[argc] = NULL;
    snprintf(g.argv_text, sizeof g.argv_text, "%s", text);
    return argc;
}

const char *st_dpdk_eal_args(void)
{
    if (!g.configured)
        configure_from(NULL);
    char store[2048], *argv[64];
    if (!g.eal_state)
        build_argv(NULL, store, sizeof store, argv, 64);
    return g.argv_text;
}

static int nohuge_in(const char *text) { return strstr(text, "--no-huge") != NULL; }

static int eal_start(const char *first_addr)
{
    if (g.eal_state == 1)
        return ST_OK;
    if (g.eal_state < 0)
        return st_err(g.eal_state, "%s", g.eal_err);
    int rc;
    if (!g.configured && (rc = configure_from(NULL)) != ST_OK)
        return rc;
    if (g.hugepages && (rc = hugepages_ensure(g.hugepages)) != ST_OK) {
        snprintf(g.eal_err, sizeof g.eal_err, "%s", st_errmsg());
        g.eal_state = rc;
        return rc;
    }
    char store[2048], *argv[64];
    int argc = build_argv(first_addr, store, sizeof store, argv, 64);
    if (argc < 0)
        return argc;
    cpu_set_t saved;
    int restore = !g.cores[0] && sched_getaffinity(0, sizeof saved, &saved) == 0;
    int r = rte_eal_init(argc, argv);
    if (r < 0) {
        /* rte_eal_init has printed its own reason on stderr; the codes it
         * sets are few: EINVAL bad arguments, EACCES/ENOMEM memory */
        int e = rte_errno;
        const char *hint = "";
        g.eal_state = ST_EIO;
        if (e == EINVAL) {
            g.eal_state = ST_EINVAL;
            hint = "; an argument was refused: check --dpdk-args";
        } else if (e == EACCES || e == ENOMEM) {
            g.eal_state = ST_ENOMEM;
            hint = nohuge_in(g.argv_text) ? "; more -m memory?"
                                          : "; no usable hugepages: reserve them (--dpdk-hugepages N) or pass --no-huge";
        }
        snprintf(g.eal_err, sizeof g.eal_err, "dpdk: the EAL did not start (%s) with arguments '%.1600s'%s",
                 rte_strerror(e), g.argv_text, hint);
        return st_err(g.eal_state, "%s", g.eal_err);
    }
    if (restore)
        sched_setaffinity(0, sizeof saved, &saved);
    if (!g.faults_set) {
        g.drop = env_rate("ST_DPDK_DROP");
        g.reorder = env_rate("ST_DPDK_REORDER");
        g.dup = env_rate("ST_DPDK_DUP");
    }
    g.eal_state = 1;
    ST_DEBUG("dpdk: EAL started: %s", g.argv_text);
    return ST_OK;
}

int st_dpdk_eal_init(void) { return eal_start(NULL); }

uint32_t st_dpdk_local_ip(int listening)
{
    if (g.ip)
        return g.ip;
    return htonl(listening ? 0x0a4d0001u : 0x0a4d0002u); /* 10.77.0.1 / 10.77.0.2 */
}

int st_dpdk_static_peer(uint8_t mac[6], uint32_t *ip)
{
    if (!g.have_peer)
        return 0;
    memcpy(mac, g.peer_mac, 6);
    *ip = g.peer_ip;
    return 1;
}

void st_dpdk_fault_rates(double *drop, double *reorder, double *dup)
{
    *drop = g.drop, *reorder = g.reorder, *dup = g.dup;
}

/* ---- ports ----------------------------------------------------------------------------------- */
#define RX_DESC 1024
#define TX_DESC 1024
#define POOL_MBUFS 8191 /* rx + tx rings, bursts in hand, the memif refill */
#define JUMBO_MBUFS 4095
#define JUMBO_ROOM 9216 /* frame bytes of a jumbo mbuf (data room less headroom) */
#define JUMBO_MTU 9000  /* IPv4 packet bytes on a jumbo link */

/* memif carries frames of any length (it chains its 2 KiB buffers, or uses
 * bsize): both ends are ours, so memif links use jumbo frames -- one frame
 * for an 8 KiB activation instead of six. ST_DPDK_MTU overrides (1500:
 * ordinary frames); other ports keep the MTU they report. */
static uint32_t wanted_mtu(const char *addr)
{
    const char *v = getenv("ST_DPDK_MTU");
    if (v && *v) {
        long m = atol(v);
        return m < 576 ? 576 : m > JUMBO_MTU ? JUMBO_MTU : (uint32_t)m;
    }
    return !strncmp(addr, "net_memif", 9) ? JUMBO_MTU : 0;
}

/* memif servers are kept (stopped) after their link closes and started
 * again by the next link on the same address: DPDK 22.11's memif does not
 * release a removed server's listening socket cleanly (its interrupt
 * handler keeps firing on a closed socket), so the socket is created once
 * per process and address. */
#define KEPT_MAX 16
static struct {
    char addr[256];
    st_dpdk_port port;
} kept[KEPT_MAX];

static int keep_port(const char *addr, int listening) { return listening && !strncmp(addr, "net_memif", 9); }

/* Device creation and removal are not thread-safe in the EAL: links
 * opened from several threads take turns. */
static pthread_mutex_t port_lock = PTHREAD_MUTEX_INITIALIZER;

static int port_open(const char *addr, int listening, st_dpdk_port *p);
static void port_close(st_dpdk_port *p);

/* Port control (probe, configure, start, stop, remove) runs on the EAL's
 * interrupt thread. A PMD's control plane lives on that thread -- memif's
 * socket handlers answer the peer's hello, rings and disconnect there --
 * and DPDK 22.11's memif does not lock against a stop from another thread:
 * a peer's disconnect handled there while this process stops the same
 * port here freed the port's regions twice (a heap crash seconds later).
 * Run on that thread, every control step is serialized with the driver's
 * own. The caller waits on a condition variable for the result; the
 * error text (thread-local) is carried back. */
typedef struct ctl_call {
    int (*fn)(void *);
    void *arg;
    int rc, done;
    char err[1024];
    pthread_mutex_t mu;
    pthread_cond_t cv;
} ctl_call;

static void ctl_run(void *arg)
{
    ctl_call *c = arg;
    int rc = c->fn(c->arg);
    snprintf(c->err, sizeof c->err, "%s", rc ? st_errmsg() : "");
    pthread_mutex_lock(&c->mu);
    c->rc = rc;
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int on_ctl_thread(int (*fn)(void *), void *arg)
{
    if (rte_thread_is_intr())
        return fn(arg);
    ctl_call c = {.fn = fn, .arg = arg};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int rc = rte_eal_alarm_set(1, ctl_run, &c);
    if (rc == 0) {
        pthread_mutex_lock(&c.mu);
        while (!c.done)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
        rc = c.rc;
        if (rc)
            st_err(rc, "%s", c.err);
    } else {
        /* no alarm (it cannot fail once the EAL runs, short of memory):
         * the step runs here, as without the interrupt thread */
        rc = fn(arg);
    }
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    return rc;
}

typedef struct open_args {
    const char *addr;
    int listening;
    st_dpdk_port *p;
} open_args;

static int open_step(void *arg)
{
    open_args *a = arg;
    return port_open(a->addr, a->listening, a->p);
}

static int close_step(void *arg)
{
    port_close(arg);
    return ST_OK;
}

int st_dpdk_port_open(const char *addr, int listening, st_dpdk_port *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_lock(&port_lock);
    int rc = eal_start(addr);
    if (rc == ST_OK) {
        open_args a = {addr, listening, p};
        rc = on_ctl_thread(open_step, &a);
    }
    pthread_mutex_unlock(&port_lock);
    return rc;
}

void st_dpdk_port_close(st_dpdk_port *p)
{
    if (!p->name[0])
        return;
    pthread_mutex_lock(&port_lock);
    on_ctl_thread(close_step, p);
    pthread_mutex_unlock(&port_lock);
}

static int port_open(const char *addr, int listening, st_dpdk_port *p)
{
    static int counter;
    int rc;
    for (int i = 0; keep_port(addr, listening) && i < KEPT_MAX; i++)
        if (kept[i].port.name[0] && !strcmp(kept[i].addr, addr)) {
            if ((rc = rte_eth_dev_start(kept[i].port.id)) != 0)
                return st_err(ST_EIO, "dpdk: port '%s' did not start again: %s", kept[i].port.name,
                              rte_strerror(rc < 0 ? -rc : rc));
            *p = kept[i].port;
            memset(&kept[i], 0, sizeof kept[i]);
            return ST_OK;
        }
    size_t nlen = strcspn(addr, ",");
    if (nlen == 0 || nlen >= 40)
        return st_err(ST_EINVAL, "dpdk: address '%s' does not start with a device name", addr);
    char devargs[512];
    int vdev = strncmp(addr, "net_", 4) == 0;
    int n = counter++;
    if (vdev) {
        /* a vdev name must start with its driver's; the suffix keeps it
         * unique when several links use the same driver */
        snprintf(p->name, sizeof p->name, "%.*s_st%d_%d", (int)nlen, addr, (int)getpid() % 100000, n);
        const char *role = "";
        if (!strncmp(addr, "net_memif", 9) && !strstr(addr, "role="))
            role = listening ? ",role=server" : ",role=client";
        /* memif: buffers as large as a jumbo frame, so that a frame is one
         * descriptor and one mbuf at both ends */
        const char *bsize = !strncmp(addr, "net_memif", 9) && !strstr(addr, "bsize=") && wanted_mtu(addr) > 1500
                                ? ",bsize=9216" : "";
        snprintf(devargs, sizeof devargs, "%s%s%s%s", p->name, addr + nlen, role, bsize);
    } else {
        snprintf(p->name, sizeof p->name, "%.*s", (int)nlen, addr);
        snprintf(devargs, sizeof devargs, "%s", addr);
    }
    rc = rte_dev_probe(devargs);
    if (rc < 0 && !(rc == -EEXIST && !vdev))
        return st_err(ST_EIO, "dpdk: device '%s' could not be created: %s (%s)", devargs, rte_strerror(-rc),
                      vdev ? "is the driver in this DPDK build, and the interface or socket it names there?"
                           : "is the PCI device present and bound to a DPDK-capable driver?");
    if (rte_eth_dev_get_port_by_name(p->name, &p->id) != 0) {
        rte_eal_hotplug_remove(vdev ? "vdev" : "pci", p->name);
        return st_err(ST_EIO, "dpdk: device '%s' has no ethernet port", devargs);
    }
    struct rte_eth_dev_info info;
    if ((rc = rte_eth_dev_info_get(p->id, &info)) != 0)
        goto fail;
    char pool[RTE_MEMPOOL_NAMESIZE];
    snprintf(pool, sizeof pool, "stp%d_%d", (int)getpid() % 100000, n);
    uint32_t want = wanted_mtu(addr);
    int jumbo = want > 1500;
    p->pool = rte_pktmbuf_pool_create(pool, jumbo ? JUMBO_MBUFS : POOL_MBUFS, 128, 0,
                                      jumbo ? RTE_PKTMBUF_HEADROOM + JUMBO_ROOM : RTE_MBUF_DEFAULT_BUF_SIZE,
                                      (int)rte_socket_id());
    if (!p->pool) {
        st_err(ST_ENOMEM, "dpdk: mbuf pool for '%s': %s (more -m memory or hugepages?)", devargs,
               rte_strerror(rte_errno));
        port_close(p);
        return ST_ENOMEM;
    }
    p->room = jumbo ? JUMBO_ROOM : RTE_MBUF_DEFAULT_DATAROOM;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) {
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
        p->ip_csum_offload = 1;
    }
    uint16_t nrx = RX_DESC, ntx = TX_DESC;
    if ((rc = rte_eth_dev_configure(p->id, 1, 1, &conf)) != 0 ||
        (rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->id, &nrx, &ntx)) != 0 ||
        (rc = rte_eth_rx_queue_setup(p->id, 0, nrx, rte_eth_dev_socket_id(p->id), NULL, p->pool)) != 0 ||
        (rc = rte_eth_tx_queue_setup(p->id, 0, ntx, rte_eth_dev_socket_id(p->id), NULL)) != 0 ||
        (rc = rte_eth_dev_start(p->id)) != 0)
        goto fail;
    rte_eth_promiscuous_enable(p->id); /* not every PMD has it; frames are filtered by UDP port anyway */
    struct rte_ether_addr mac;
    rte_eth_macaddr_get(p->id, &mac);
    memcpy(p->mac, mac.addr_bytes, 6);
    uint16_t mtu = 1500;
    if (rte_eth_dev_get_mtu(p->id, &mtu) != 0 || mtu < 576)
        mtu = 1500;
    if (want)
        mtu = (uint16_t)want;
    p->mtu = ST_MIN((uint32_t)mtu, p->room - (uint32_t)RTE_ETHER_HDR_LEN);
    if (keep_port(addr, listening))
        snprintf(p->kept_addr, sizeof p->kept_addr, "%s", addr);
    p->peer_rings = !strncmp(addr, "net_memif", 9);
    return ST_OK;
fail:
    st_err(ST_EIO, "dpdk: port '%s' could not be set up: %s", devargs, rte_strerror(rc < 0 ? -rc : rc));
    port_close(p);
    return ST_EIO;
}

static void port_close(st_dpdk_port *p)
{
    if (!p->name[0])
        return;
    for (int i = 0; p->kept_addr[0] && i < KEPT_MAX; i++)
        if (!kept[i].port.name[0]) {
            rte_eth_dev_stop(p->id); /* disconnects the peer */
            snprintf(kept[i].addr, sizeof kept[i].addr, "%s", p->kept_addr);
            kept[i].port = *p;
            memset(p, 0, sizeof *p);
            return;
        }
    struct rte_eth_dev_info info;
    struct rte_device *dev = NULL;
    if (rte_eth_dev_info_get(p->id, &info) == 0)
        dev = info.device;
    rte_eth_dev_stop(p->id);
    if (!dev || rte_dev_remove(dev) != 0)
        rte_eth_dev_close(p->id);
    if (p->pool)
        rte_mempool_free(p->pool);
    memset(p, 0, sizeof *p);
}

int st_dpdk_port_check(const char *addr, int listening)
{
    st_dpdk_port p;
    int rc = st_dpdk_port_open(addr, listening, &p);
    if (rc == ST_OK)
        st_dpdk_port_close(&p);
    return rc;
}

int st_dpdk_port_up(const st_dpdk_port *p)
{
    struct rte_eth_link l;
    memset(&l, 0, sizeof l);
    return rte_eth_link_get_nowait(p->id, &l) == 0 && l.link_status == RTE_ETH_LINK_UP;
}
#endif /* ST_HAVE_DPDK */
