/* The polling core loop and its engine-facing rings. */
#define _GNU_SOURCE
#include "poller.h"

#include "common/st_common.h"
#include "link_impl.h"
#include "ring.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sub_entry {
    st_iov iov[ST_LINK_IOV_MAX];
    int n;
    uint64_t cookie;
} sub_entry;

struct st_poller {
    st_link *link;
    st_poller_opts opts;
    st_spsc sub, rel, rx, cq; /* engine->core: sub, rel; core->engine: rx, cq */
    pthread_t thread;
    _Atomic int stop;
    _Atomic int sleeping;     /* core is (about to be) blocked in st_link_wait */
    _Atomic int err;
    _Atomic int started;      /* the core is running; pinned_cpu is set */
    int pinned_cpu;           /* CPU the core runs on, -1: unpinned */
    /* counters: written by the core only, read racily by st_poller_get_stats */
    _Alignas(64) _Atomic uint64_t msgs_rx, bytes_rx, msgs_tx, bytes_tx, spins, yields, sleeps;
    uint64_t *tx_len;         /* bytes per pending send, by link sequence (core only) */
    uint64_t tx_posted, tx_done, tx_mask;
};

void st_poller_opts_default(st_poller_opts *o)
{
    o->cpu = ST_POLLER_CPU_AUTO;
    o->spin_us = 50;
    o->yield_us = 500;
    o->ring = 1024;
}

int st_pin_thread(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return rc ? st_err(ST_EINVAL, "cannot pin to CPU %d: %s", cpu, strerror(rc)) : ST_OK;
}

/* one CPU number at p: digits only, < CPU_SETSIZE; -1 if not */
static long cpu_num(const char *p, char **end)
{
    if (*p < '0' || *p > '9') {
        *end = (char *)p;
        return -1;
    }
    long v = strtol(p, end, 10);
    return v < CPU_SETSIZE ? v : -1;
}

int st_parse_cpu_list(const char *s, int *cpus, int max)
{
    int n = 0;
    const char *p = s;
    if (!s || !*s)
        return st_err(ST_EINVAL, "empty CPU list");
    while (*p) {
        char *end;
        long lo = cpu_num(p, &end), hi = lo;
        if (lo >= 0 && *end == '-')
            hi = cpu_num(end + 1, &end);
        if (lo < 0 || hi < lo || (*end && *end != ',') || (*end == ',' && !end[1]))
            return st_err(ST_EINVAL, "bad CPU list '%s' at '%s'", s, p);
        for (long v = lo; v <= hi; v++) {
            if (n == max)
                return st_err(ST_EINVAL, "CPU list '%s' has more than %d entries", s, max);
            cpus[n++] = (int)v;
        }
        p = *end ? end + 1 : end;
    }
    return n;
}

/* ---- the process's polling-core list ------------------------------------------------ */
static pthread_mutex_t cores_mu = PTHREAD_MUTEX_INITIALIZER;
static int cores[64], n_cores, cores_next, cores_set;

int st_poller_set_cores(const char *list)
{
    int c[ST_ARRAY_LEN(cores)], n = 0;
    if (list && *list && (n = st_parse_cpu_list(list, c, (int)ST_ARRAY_LEN(cores))) < 0)
        return n;
    pthread_mutex_lock(&cores_mu);
    memcpy(cores, c, sizeof(int) * (size_t)n);
    n_cores = n;
    cores_next = 0;
    cores_set = 1;
    pthread_mutex_unlock(&cores_mu);
    return ST_OK;
}

/* The next CPU of the list, or -1 without one. */
static int next_core(void)
{
    int set;
    pthread_mutex_lock(&cores_mu);
    set = cores_set;
    pthread_mutex_unlock(&cores_mu);
    if (!set) {
        const char *e = getenv("STRAIT_DATAPLANE_CORES");
        if (st_poller_set_cores(e) != ST_OK) {
            ST_WARN("STRAIT_DATAPLANE_CORES: %s; polling cores stay unpinned", st_errmsg());
            st_poller_set_cores(NULL);
        }
    }
    pthread_mutex_lock(&cores_mu);
    int cpu = n_cores ? cores[cores_next++ % n_cores] : -1;
    pthread_mutex_unlock(&cores_mu);
    return cpu;
}

/* The single CPU the calling thread may run on, or -1. */
static int own_cpu(void)
{
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0 || CPU_COUNT(&set) != 1)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return -1;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void bump(_Atomic uint64_t *c, uint64_t v) { atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed); }

/* One pass over everything; returns how much work it found. */
static int pass(st_poller *p)
{
    st_link *k = p->link;
    int work = 0;
    sub_entry *e;
    while ((e = st_spsc_peek(&p->sub))) {
        size_t len = 0;
        for (int i = 0; i < e->n && i < ST_LINK_IOV_MAX; i++)
            len += e->iov[i].len;
        int rc = st_link_send(k, e->iov, e->n, e->cookie);
        if (rc == ST_EAGAIN)
            break;
        if (rc) { /* refused (too big, link failed): complete it with the error at once */
            st_completion c = {e->cookie, rc};
            if (st_spsc_push(&p->cq, &c) != 0)
                break;
        } else {
            p->tx_len[p->tx_posted++ & p->tx_mask] = len;
        }
        st_spsc_advance(&p->sub);
        work++;
    }
    st_msg m;
    while (st_spsc_pop(&p->rel, &m) == 0) {
        st_link_release(k, &m);
        work++;
    }
    int rc = st_link_progress(k);
    if (rc)
        atomic_store(&p->err, rc);
    while (st_spsc_space(&p->rx) > 0 && st_link_recv(k, &m) == ST_OK) {
        st_spsc_push(&p->rx, &m);
        bump(&p->msgs_rx, 1);
        bump(&p->bytes_rx, m.len);
        work++;
    }
    st_completion c[64];
    uint64_t space = st_spsc_space(&p->cq);
    int n = st_link_poll_cq(k, c, (int)ST_MIN(space, 64u));
    for (int i = 0; i < n; i++) {
        st_spsc_push(&p->cq, &c[i]);
        if (p->tx_done < p->tx_posted) {
            if (c[i].status == ST_OK) {
                bump(&p->msgs_tx, 1);
                bump(&p->bytes_tx, p->tx_len[p->tx_done & p->tx_mask]);
            }
            p->tx_done++;
        }
    }
    return work + n;
}

static void *core_main(void *arg)
{
    st_poller *p = arg;
    p->pinned_cpu = p->opts.cpu >= 0 ? own_cpu() : -1; /* pinned at creation (thread attribute) */
    atomic_store(&p->started, 1);
    uint64_t idle_since = 0;
    while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
        if (pass(p)) {
            idle_since = 0;
            continue;
        }
        uint64_t now = st_now_ns();
        if (!idle_since)
            idle_since = now;
        uint64_t idle = now - idle_since;
        if (idle < (uint64_t)p->opts.spin_us * 1000) {
            bump(&p->spins, 1);
            cpu_relax();
        } else if (idle < (uint64_t)(p->opts.spin_us + p->opts.yield_us) * 1000) {
            bump(&p->yields, 1);
            sched_yield();
        } else {
            /* announce the sleep, then look once more: an engine push after
             * this point sees sleeping and wakes us (both sides use seq_cst) */
            uint64_t ticket = st_link_wait_prepare(p->link);
            atomic_store(&p->sleeping, 1);
            if (st_spsc_count(&p->sub) == 0 && st_spsc_count(&p->rel) == 0 && !atomic_load(&p->stop))
                st_link_wait(p->link, ticket, -1);
            atomic_store(&p->sleeping, 0);
            bump(&p->sleeps, 1);
        }
    }
    return NULL;
}

int st_poller_start(st_link *k, const st_poller_opts *o, st_poller **out)
{
    *out = NULL;
    st_poller *p = st_xaligned(sizeof *p);
    memset(p, 0, sizeof *p);
    if (o)
        p->opts = *o;
    else
        st_poller_opts_default(&p->opts);
    if (!p->opts.ring)
        p->opts.ring = 1024;
    if (p->opts.cpu == ST_POLLER_CPU_AUTO)
        p->opts.cpu = next_core();
    if (p->opts.cpu < -1 || p->opts.cpu >= CPU_SETSIZE) {
        int cpu = p->opts.cpu;
        free(p);
        return st_err(ST_EINVAL, "polling core: CPU %d", cpu);
    }
    p->link = k;
    int rc = st_spsc_init(&p->sub, p->opts.ring, sizeof(sub_entry));
    if (!rc) rc = st_spsc_init(&p->rel, p->opts.ring, sizeof(st_msg));
    if (!rc) rc = st_spsc_init(&p->rx, p->opts.ring, sizeof(st_msg));
    if (!rc) rc = st_spsc_init(&p->cq, p->opts.ring, sizeof(st_completion));
    /* sends posted to the link and not yet completed: at most its sq_depth */
    uint64_t depth = 1;
    while (depth < k->opts.sq_depth)
        depth <<= 1;
    p->tx_len = st_xcalloc(depth, sizeof *p->tx_len);
    p->tx_mask = depth - 1;
    if (!rc) {
        /* pinned from its first instruction, and a CPU we may not use is
         * an error here rather than a warning from the thread */
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (p->opts.cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(p->opts.cpu, &set);
            pthread_attr_setaffinity_np(&attr, sizeof set, &set);
        }
        int e = pthread_create(&p->thread, &attr, core_main, p);
        pthread_attr_destroy(&attr);
        if (e)
            rc = st_err(e == EINVAL && p->opts.cpu >= 0 ? ST_EINVAL : ST_EIO, "polling core: start on CPU %d: %s",
                        p->opts.cpu, strerror(e));
    }
    if (rc) {
        st_spsc_free(&p->sub), st_spsc_free(&p->rel), st_spsc_free(&p->rx), st_spsc_free(&p->cq);
        free(p->tx_len);
        free(p);
        return rc;
    }
    *out = p;
    return ST_OK;
}

void st_poller_stop(st_poller *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    st_link_wake(p->link);
    pthread_join(p->thread, NULL);
    st_spsc_free(&p->sub), st_spsc_free(&p->rel), st_spsc_free(&p->rx), st_spsc_free(&p->cq);
    free(p->tx_len);
    free(p);
}

static void kick(st_poller *p)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&p->sleeping))
        st_link_wake(p->link);
}

int st_poller_send(st_poller *p, const st_iov *iov, int n, uint64_t cookie)
{
    if (n < 1 || n > ST_LINK_IOV_MAX)
        return st_err(ST_EINVAL, "poller send: %d pieces", n);
    sub_entry e = {.n = n, .cookie = cookie};
    memcpy(e.iov, iov, sizeof *iov * (size_t)n);
    if (st_spsc_push(&p->sub, &e) != 0)
        return ST_EAGAIN;
    kick(p);
    return ST_OK;
}

int st_poller_recv(st_poller *p, st_msg *out)
{
    if (st_spsc_pop(&p->rx, out) == 0)
        return ST_OK;
    int err = atomic_load(&p->err);
    return err ? err : ST_EAGAIN;
}

int st_poller_release(st_poller *p, const st_msg *m)
{
    if (st_spsc_push(&p->rel, m) != 0)
        return ST_EAGAIN;
    kick(p);
    return ST_OK;
}

int st_poller_poll_cq(st_poller *p, st_completion *out, int max)
{
    int n = 0;
    while (n < max && st_spsc_pop(&p->cq, &out[n]) == 0)
        n++;
    return n;
}

int st_poller_cpu(const st_poller *p)
{
    st_poller *q = (st_poller *)p;
    while (!atomic_load(&q->started)) /* the core sets it first thing */
        sched_yield();
    return q->pinned_cpu;
}

int st_poller_error(const st_poller *p) { return atomic_load(&((st_poller *)p)->err); }

void st_poller_get_stats(const st_poller *p, st_poller_stats *s)
{
    st_poller *q = (st_poller *)p;
    s->msgs_rx = atomic_load(&q->msgs_rx);
    s->bytes_rx = atomic_load(&q->bytes_rx);
    s->msgs_tx = atomic_load(&q->msgs_tx);
    s->bytes_tx = atomic_load(&q->bytes_tx);
    s->spins = atomic_load(&q->spins);
    s->yields = atomic_load(&q->yields);
    s->sleeps = atomic_load(&q->sleeps);
}
