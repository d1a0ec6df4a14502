/* A small fork-join thread pool for the CPU kernels.
 *
 * One op (a matmul, an attention step) is one job: st_tp_run() hands
 * fn(arg, ith, nth) to every thread, ith in [0, nth), the caller running
 * ith = 0 itself, and returns when all have finished. A batch-1 decode runs
 * ~300 jobs per token, so dispatch must cost well under a microsecond:
 * workers spin on an atomic generation counter (with `pause`) and only fall
 * asleep on a futex after ~2 ms without work; the caller spins for the
 * join. Workers are pinned to distinct cores of the process's CPU set. */
#ifndef ST_CPU_THREADPOOL_H
#define ST_CPU_THREADPOOL_H

typedef struct st_tp st_tp;

typedef void (*st_tp_fn)(void *arg, int ith, int nth);

/* A pool of n_threads threads in all, the caller included (n_threads - 1
 * workers); n_threads <= 0 means the number of online cores. Never NULL. */
st_tp *st_tp_create(int n_threads);
void st_tp_destroy(st_tp *tp);
/* Threads taking part in every job (caller included). */
int st_tp_size(const st_tp *tp);
/* Run fn on all threads and wait. Not reentrant: fn must not call st_tp_run
 * on the same pool, and one caller thread at a time uses a pool. */
void st_tp_run(st_tp *tp, st_tp_fn fn, void *arg);

#endif
