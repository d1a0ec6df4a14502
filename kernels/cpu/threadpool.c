/* Spinning fork-join pool: see threadpool.h for the contract.
 *
 * Protocol. The caller publishes (fn, arg), resets `pending` to the number
 * of workers, then increments `gen` (release). A worker that sees `gen`
 * move runs its share and decrements `pending` (release); the caller spins
 * until `pending` is 0 (acquire). A worker idle for longer than SPIN_NS
 * registers in `sleepers` and futex-waits on `gen`; the caller wakes the
 * futex only when someone sleeps, so the hot path is two atomics. Both
 * sides use seq_cst on gen/sleepers so that either the sleeper sees the new
 * generation or the caller sees the sleeper (no lost wake-up). */
#define _GNU_SOURCE
#include "threadpool.h"

#include "common/st_common.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPIN_NS 2000000ull /* idle spin before sleeping: ~2 ms */
#define YIELD_NS 200000ull /* after this, spinning threads also yield */

typedef struct {
    st_tp *tp;
    int ith;
    int cpu; /* core to pin to, or -1 */
    pthread_t thread;
} worker;

struct st_tp {
    int n; /* threads in all, caller included */
    int oversubscribed; /* more threads than cores: yield instead of spinning */
    worker *workers; /* (n - 1,) */
    st_tp_fn fn;
    void *arg;
    _Alignas(64) atomic_uint gen;
    _Alignas(64) atomic_int pending;
    _Alignas(64) atomic_int sleepers;
    atomic_int caller_sleeping; /* the caller futex-waits on pending */
    atomic_int quit;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(atomic_uint *addr, unsigned val)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void *worker_main(void *p)
{
    worker *w = p;
    st_tp *tp = w->tp;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        sched_setaffinity(0, sizeof set, &set); /* best effort */
    }
    /* gen is 0 at creation; a job may be posted before this thread runs */
    unsigned seen = 0;
    for (;;) {
        /* wait for a new generation: spin, then sleep */
        uint64_t t0 = 0;
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen) {
            cpu_relax();
            if (++spins < 1024)
                continue;
            spins = 0;
            uint64_t now = st_now_ns();
            if (!t0) {
                t0 = now;
            } else if ((tp->oversubscribed || now - t0 > YIELD_NS) && now - t0 <= SPIN_NS) {
                sched_yield(); /* let an oversubscribed machine run others */
            } else if (now - t0 > SPIN_NS) {
                atomic_fetch_add(&tp->sleepers, 1);
                if (atomic_load(&tp->gen) == seen)
                    futex_wait(&tp->gen, seen);
                atomic_fetch_sub(&tp->sleepers, 1);
                t0 = 0;
            }
        }
        seen = g;
        if (atomic_load_explicit(&tp->quit, memory_order_acquire))
            break;
        tp->fn(tp->arg, w->ith, tp->n);
        /* seq_cst pairs with the caller's sleep: either it sees pending 0
         * or we see it sleeping and wake it */
        if (atomic_fetch_sub(&tp->pending, 1) == 1 && atomic_load(&tp->caller_sleeping))
            syscall(SYS_futex, (int *)&tp->pending, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return NULL;
}

st_tp *st_tp_create(int n_threads)
{
    cpu_set_t allowed;
    int cpus[CPU_SETSIZE], n_cpus = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &allowed))
                cpus[n_cpus++] = c;
    if (n_threads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n_cpus > 0 ? n_cpus : (online > 0 ? (int)online : 1);
    }
    if (n_threads > 1024)
        n_threads = 1024;
    st_tp *tp = st_xcalloc(1, sizeof *tp);
    tp->n = n_threads;
    tp->oversubscribed = n_threads > (n_cpus > 0 ? n_cpus : 1);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->sleepers, 0);
    atomic_init(&tp->caller_sleeping, 0);
    atomic_init(&tp->quit, 0);
    tp->workers = st_xcalloc((size_t)(n_threads > 1 ? n_threads - 1 : 1), sizeof(worker));
    for (int i = 1; i < n_threads; i++) {
        worker *w = &tp->workers[i - 1];
        w->tp = tp;
        w->ith = i;
        /* worker i on the i-th allowed core; the caller keeps core 0's
         * share (it is not pinned: it belongs to the engine). Pin only when
         * there are enough cores for one thread each. */
        w->cpu = n_threads <= n_cpus ? cpus[i] : -1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            ST_WARN("cpu: could not start worker thread %d; using %d threads", i, i);
            tp->n = i;
            break;
        }
    }
    return tp;
}

void st_tp_destroy(st_tp *tp)
{
    if (!tp)
        return;
    atomic_store(&tp->quit, 1);
    atomic_fetch_add(&tp->gen, 1);
    futex_wake_all(&tp->gen);
    for (int i = 1; i < tp->n; i++)
        pthread_join(tp->workers[i - 1].thread, NULL);
    free(tp->workers);
    free(tp);
}

int st_tp_size(const st_tp *tp) { return tp->n; }

void st_tp_run(st_tp *tp, st_tp_fn fn, void *arg)
{
    if (tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->pending, tp->n - 1, memory_order_relaxed);
    atomic_fetch_add(&tp->gen, 1); /* seq_cst: publishes fn/arg/pending */
    if (atomic_load(&tp->sleepers) > 0)
        futex_wake_all(&tp->gen);
    fn(arg, 0, tp->n);
    /* join: spin; if a worker was preempted (more runnable threads than
     * cores), yield so that it can finish instead of burning its core, and
     * past SPIN_NS sleep on the futex until the last worker wakes us */
    uint64_t t0 = 0;
    int left;
    for (unsigned spins = 0; (left = atomic_load_explicit(&tp->pending, memory_order_acquire)) > 0; spins++) {
        cpu_relax();
        if (spins < 4096 && !tp->oversubscribed)
            continue;
        uint64_t now = st_now_ns();
        if (!t0)
            t0 = now;
        if (now - t0 <= SPIN_NS) {
            sched_yield();
            continue;
        }
        atomic_store(&tp->caller_sleeping, 1);
        if ((left = atomic_load(&tp->pending)) > 0)
            syscall(SYS_futex, (int *)&tp->pending, FUTEX_WAIT_PRIVATE, left, NULL, NULL, 0);
        atomic_store(&tp->caller_sleeping, 0);
    }
}
