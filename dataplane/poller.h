/* A polling core: one thread per link that owns the link and does all its
 * I/O, handing messages to and from the engine through lock-free SPSC
 * rings (engine -> core: sends, releases; core -> engine: received
 * messages, completions).
 *
 * When there is nothing to do it backs off adaptively: spin for spin_us,
 * then sched_yield() for yield_us, then block in st_link_wait() (epoll or
 * futex), so an idle node does not burn a core. Engine calls that queue
 * work wake a blocked core.
 *
 * Threads: st_poller_send/release/recv/poll_cq are for ONE engine thread
 * (each ring has one producer and one consumer). */
#ifndef ST_POLLER_H
#define ST_POLLER_H

#include "dataplane/transport.h"

typedef struct st_poller st_poller;

/* opts.cpu: take the next CPU of the process's polling-core list
 * (st_poller_set_cores / STRAIT_DATAPLANE_CORES), unpinned without one. */
#define ST_POLLER_CPU_AUTO (-2)

typedef struct st_poller_opts {
    int cpu;          /* pin to this CPU; -1 = leave unpinned; ST_POLLER_CPU_AUTO (the default) */
    uint32_t spin_us; /* busy-poll this long after the last work (default 50) */
    uint32_t yield_us;/* then yield this long before blocking (default 500) */
    uint32_t ring;    /* entries per SPSC ring, power of two (default 1024) */
} st_poller_opts;

void st_poller_opts_default(st_poller_opts *o);

typedef struct st_poller_stats {
    uint64_t msgs_rx, bytes_rx, msgs_tx, bytes_tx; /* tx counted at completion */
    uint64_t spins, yields, sleeps;                /* idle loop iterations by phase */
} st_poller_stats;

/* Start a core driving link k (the caller keeps ownership; stop the
 * poller before closing the link). */
int st_poller_start(st_link *k, const st_poller_opts *o, st_poller **out);
void st_poller_stop(st_poller *p);

/* The CPU the core is pinned to, -1 when unpinned (as the core thread saw
 * its own affinity when it started). */
int st_poller_cpu(const st_poller *p);

/* The process's polling-core list (`--dataplane-cores LIST`, see
 * st_parse_cpu_list): pollers started with cpu == ST_POLLER_CPU_AUTO take
 * its CPUs in turn, round-robin. NULL or "" clears it. Without a call, the
 * environment variable STRAIT_DATAPLANE_CORES is read once, at the first
 * AUTO start. ST_EINVAL (list unchanged) on a bad list. */
int st_poller_set_cores(const char *list);

/* Engine side. send: ST_EAGAIN when the ring is full; memory rules as
 * st_link_send. Completions carry the link's error if it failed. */
int st_poller_send(st_poller *p, const st_iov *iov, int n, uint64_t cookie);
int st_poller_recv(st_poller *p, st_msg *out);          /* ST_EAGAIN: none yet */
int st_poller_release(st_poller *p, const st_msg *m);   /* ST_EAGAIN: ring full */
int st_poller_poll_cq(st_poller *p, st_completion *out, int max);
/* The link's error as the core saw it (0 while healthy). */
int st_poller_error(const st_poller *p);
void st_poller_get_stats(const st_poller *p, st_poller_stats *out);

/* Parse a CPU list "3", "2,5" or "2-5,8" (as --dataplane-cores takes it)
 * into at most max entries; returns the count or ST_EINVAL naming the bad
 * part. */
int st_parse_cpu_list(const char *s, int *cpus, int max);
/* Pin the calling thread. */
int st_pin_thread(int cpu);

#endif
