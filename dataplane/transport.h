/* The transport interface: a link is one ordered, reliable, flow-controlled
 * message channel between two endpoints. Every transport (tcp, shm now;
 * dpdk, rdma later) implements the same contract, checked by one
 * conformance suite (tests/dataplane/test_conformance.c):
 *
 *  - Messages arrive whole, in send order, each exactly once, also across a
 *    dropped and resumed connection (TCP resends what was not acknowledged).
 *  - st_link_send() queues a message (scattered in up to ST_LINK_IOV_MAX
 *    pieces) and returns at once; its memory must stay untouched until the
 *    message's completion is reaped with st_link_poll_cq() (completion = the
 *    peer has it, or the transport has its own copy). At most
 *    opts.sq_depth messages are pending; beyond that send says ST_EAGAIN.
 *  - Credits: the receiver grants opts.credits messages; a sender never has
 *    more than that many unreleased messages at the peer, so a fast sender
 *    waits (its queue fills) instead of overrunning a slow stage.
 *  - A received message stays valid (pointing into the transport's receive
 *    region, no copy) until st_link_release(); release in receive order.
 *  - Liveness: both ends exchange heartbeats every opts.heartbeat_ms; a peer
 *    silent for opts.timeout_ms (dead, stalled, unreachable) fails the link
 *    with ST_ECONN. After a failure every call returns that error and all
 *    pending sends complete with it: no hang, no silent loss.
 *  - Nothing blocks except st_link_wait(), st_accept() and st_connect().
 *    st_link_progress() does the I/O; call it from one thread (the polling
 *    core, poller.h); only st_link_wake() may be called from another thread.
 *
 * Addresses: tcp "HOST:PORT" (port 0 = pick one; st_listener_addr tells),
 * shm a unix-socket path, or "@name" for the abstract namespace. */
#ifndef ST_TRANSPORT_H
#define ST_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/mr.h"

typedef struct st_link st_link;
typedef struct st_listener st_listener;

#define ST_LINK_IOV_MAX 8

typedef struct st_link_opts {
    uint32_t sq_depth;     /* pending sends per link, power of two (default 4096) */
    uint32_t credits;      /* unreleased messages the receiver accepts (default 256) */
    size_t max_msg;        /* largest message in bytes (default 64 MiB + 64 KiB). Ends may differ:
                              shm links carry the smaller (larger sends are ST_ERANGE); over tcp a
                              message above the receiver's max_msg fails the link (ST_EPROTO) */
    size_t rx_bytes;       /* receive region per link, bytes, >= 2 x (max_msg + 128)
                              (default 2 x max_msg + 2 MiB); touched lazily */
    uint32_t heartbeat_ms; /* default 100 */
    uint32_t timeout_ms;   /* silent peer -> ST_ECONN (default 3000) */
    /* Link key (tcp and shm; default: none). With has_key both ends prove
     * they hold `key` (HMAC-SHA256 challenge/response, fresh nonces each
     * way, the key never sent) before the link carries anything, on every
     * connect and every tcp resume. A key on one end only, or different
     * keys, is refused by both: the connector fails with ST_EPROTO naming
     * the link key, not retried; the listener drops that peer, counts it
     * (st_listener_auth_refused) and keeps listening. It authenticates the
     * peer only: the stream is not encrypted. dpdk and rdma refuse a key
     * (ST_ENOTSUP) rather than run unauthenticated. */
    uint8_t key[32];
    int has_key;
} st_link_opts;

void st_link_opts_default(st_link_opts *o);
/* key = HMAC-SHA256(secret, "strait/v1/link"): the link key of everyone who
 * shares `secret` (a cluster token, the first line of a key file). */
void st_link_key_from_secret(const char *secret, uint8_t key[32]);
/* Defaults, plus the key of `secret` when it is non-empty and `transport`
 * has the handshake (tcp, shm): what a caller holding a shared secret (the
 * cluster token) uses for every link, whichever transport it picked. */
void st_link_opts_keyed(st_link_opts *o, const char *transport, const char *secret);

/* One piece of an outgoing message; mr is the registered region holding it
 * (NULL: unregistered memory, which a transport may have to bounce). */
typedef struct st_iov {
    const void *base;
    size_t len;
    const st_mr *mr;
} st_iov;

typedef struct st_msg {
    const uint8_t *data; /* 64-byte aligned, valid until released */
    size_t len;
    uint64_t seq;        /* per-link message number, 0, 1, 2, ... */
} st_msg;

typedef struct st_completion {
    uint64_t cookie; /* as given to st_link_send */
    int status;      /* ST_OK, or the link's error */
} st_completion;

typedef struct st_link_stats {
    uint64_t msgs_tx, bytes_tx, msgs_rx, bytes_rx;
    uint64_t frames_rejected; /* corrupt or malformed frames from the peer */
    uint64_t reconnects, retransmits;
} st_link_stats;

/* ---- endpoints ------------------------------------------------------------------- */
/* Names of the transports built in ("tcp", "shm", ...), NULL-terminated. */
const char *const *st_transport_names(void);

int st_listen(const char *transport, const char *addr, const st_link_opts *opts, st_listener **out);
/* The bound address (with the real port for tcp port 0). */
const char *st_listener_addr(const st_listener *l);
/* Wait up to timeout_ms (-1: forever) for a new link. ST_ETIMEDOUT if none. */
int st_accept(st_listener *l, int timeout_ms, st_link **out);
/* Peers this listener turned away for the link key (none, wrong, or one
 * where the listener has none). */
uint64_t st_listener_auth_refused(const st_listener *l);
/* Stop accepting. Links already accepted stay usable. */
void st_listener_close(st_listener *l);

int st_connect(const char *transport, const char *addr, const st_link_opts *opts, int timeout_ms, st_link **out);

/* ---- data -------------------------------------------------------------------------- */
/* Queue one message of n pieces (total 1 .. opts.max_msg bytes). ST_EAGAIN:
 * the queue is full (reap completions, progress, retry); ST_ERANGE: too big. */
int st_link_send(st_link *k, const st_iov *iov, int n, uint64_t cookie);
/* In-place send: st_link_reserve gives len bytes of the transport's own
 * registered memory to build a message in (shm: directly in the shared
 * ring, so the payload is written once and never copied); st_link_commit
 * sends the first `len` bytes of it (len <= reserved). One reservation at a
 * time; ST_EAGAIN when there is no room now. Transports without a special
 * path hand out a buffer they send from and free at completion. */
int st_link_reserve(st_link *k, size_t len, void **buf);
int st_link_commit(st_link *k, size_t len, uint64_t cookie);
/* Do pending I/O without blocking: transmit, receive, acknowledge,
 * heartbeat, reconnect. Returns ST_OK or the link's (sticky) error. */
int st_link_progress(st_link *k);
/* Next received message in order, or ST_EAGAIN. Does not progress. */
int st_link_recv(st_link *k, st_msg *out);
/* Give a received message's memory back (and its credit to the sender).
 * Messages must be released in the order they were received. */
int st_link_release(st_link *k, const st_msg *m);
/* Reap up to max completions in send order; returns how many. */
int st_link_poll_cq(st_link *k, st_completion *out, int max);

/* Blocking for an idle polling core, without lost wake-ups:
 *   t = st_link_wait_prepare(k); <check own queues>; st_link_wait(k, t, ms);
 * st_link_wait returns when the peer sent something, st_link_wake() was
 * called after prepare, or timeout_ms (capped at the heartbeat period)
 * passed. */
uint64_t st_link_wait_prepare(st_link *k);
int st_link_wait(st_link *k, uint64_t ticket, int timeout_ms);
void st_link_wake(st_link *k); /* any thread */

int st_link_error(const st_link *k); /* 0 while healthy */
const char *st_link_errmsg(const st_link *k);
const char *st_link_transport(const st_link *k);
void st_link_get_stats(const st_link *k, st_link_stats *out);
/* Tell the peer goodbye (best effort) and free everything; the peer sees
 * ST_ECONN. Unreaped completions are dropped. */
void st_link_close(st_link *k);

/* ---- test hooks ------------------------------------------------------------------- */
/* Break the connection as a network fault would (tcp: shut the socket down;
 * the link then reconnects and resumes). ST_EAGAIN when there was no live
 * connection to break (a reconnect is under way); ST_ENOTSUP where
 * meaningless. */
int st_link_debug_drop(st_link *k);
/* Corrupt the header of the next frame this end sends (its receiver must
 * reject it and fail the link with ST_EPROTO). */
int st_link_debug_corrupt_next(st_link *k);
/* Environment STRAIT_LINK_DELAY_MS=N (tcp only; 0 .. 60000, read once when
 * a link is made): every data message is held N ms after it is queued
 * before it is written, as on a long path (the due time is checked in
 * st_link_progress; st_link_wait wakes for it). Acks and heartbeats are not
 * held, so liveness is unaffected. For tests of slow links. */

#endif /* ST_TRANSPORT_H */
