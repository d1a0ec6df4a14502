/* The cluster control channel: membership, hardware reports, layer
 * assignments and heartbeats between the scheduler (`strait run -n`) and
 * its nodes (`strait join`). Activations never travel here (dataplane/).
 *
 * Framing: TCP; each message is a 4-byte little-endian length (1 ..
 * ST_CTL_MAX_MSG) followed by that many bytes of one JSON object with a
 * string member "type". Anything else (a bad length, bad JSON, a missing or
 * unknown type, a member of the wrong type) is ST_EPROTO naming the
 * problem; the receiver answers {"type":"error"} and closes, never crashes.
 * (st_ctl_recv checks the frame and that "type" is a short lowercase word,
 * and sends the error reply itself; which types are expected at a given
 * moment is the caller's state machine's call.)
 *
 * Conversation (node N, scheduler S; token = the cluster token, never sent):
 *   N: hello     {version, node_id, pubkey, name, role: "worker", nonce}
 *   S: challenge {nonce, mac}          mac = HMAC-SHA256(token, "strait/v1/sched" | N.nonce | S.nonce):
 *                                      the scheduler proves it knows the token too
 *   N: auth      {mac, sig}            mac = HMAC-SHA256(token, "strait/v1/node" | S.nonce | N.nonce |
 *                                      node_id | pubkey); sig = Ed25519(node key, "strait/v1/id" |
 *                                      S.nonce | pubkey): the node owns its identity
 *   S: welcome   {node_id, heartbeat_ms, timeout_ms}   or error {message} and close
 *   N: hw        {st_node_hw}
 *   S: assign    {st_ctl_assign}        whenever the plan gives N layers (start == end: hold none)
 *   N: state     {state: "loading"|"ready"|"failed", epoch, error}
 *   either: ping {t}  ->  pong {t, t_peer}   every heartbeat_ms; t, t_peer in ns of the sender's
 *                                      and the answerer's CLOCK_MONOTONIC (RTT and clock offset)
 *   N: leave     {}                     graceful: S re-plans without N and closes
 * A side that hears nothing for timeout_ms considers the other gone.
 *
 * MAC and signature inputs are the ASCII texts above concatenated with no
 * separator (every field has a fixed length in hex, so this is unambiguous).
 * Handshake refusals carry a specific reason: "wrong cluster token ...",
 * "bad signature ...", "node_id does not match ...", "version mismatch ...",
 * "malformed message ...", "timeout ...".
 *
 * node_id = the first 16 bytes of SHA-256(pubkey) in hex (32 characters);
 * nonces are 32 random bytes in hex; pubkey is the raw 32-byte Ed25519
 * public key in hex. A node's key lives in a file (default
 * $STRAIT_HOME/node.key, PEM, mode 0600), created on first use, so a
 * restarted node rejoins as itself. */
#ifndef ST_CLUSTER_CTL_H
#define ST_CLUSTER_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "common/json.h"

#define ST_CTL_VERSION 1
#define ST_CTL_MAX_MSG (1u << 20)
#define ST_CTL_DEFAULT_PORT 3003   /* the scheduler's control port */
#define ST_CTL_ANNOUNCE_PORT 3004  /* UDP: LAN announcements of a scheduler */

/* ---- connection --------------------------------------------------------------- */
/* Threads: one thread may receive while another sends (sends are
 * serialized inside); two receivers on one connection are not allowed. */
typedef struct st_ctl_conn st_ctl_conn;

/* Addresses: "HOST:PORT", "[V6]:PORT", or "HOST" (port ST_CTL_DEFAULT_PORT);
 * an empty host or "*" is the wildcard. */
/* Listen on "HOST:PORT" (port 0: ephemeral; "[::]:P" also takes IPv4).
 * Returns the fd; *bound gets "HOST:PORT" with the real port. */
int st_ctl_listen(const char *addr, int *fd, char *bound, size_t bound_cap);
/* Accept one connection (timeout_ms -1: forever). ST_ETIMEDOUT when none. */
int st_ctl_accept(int listen_fd, int timeout_ms, st_ctl_conn **out);
int st_ctl_connect(const char *addr, int timeout_ms, st_ctl_conn **out);
void st_ctl_close(st_ctl_conn *c);
int st_ctl_fd(const st_ctl_conn *c);          /* for poll() */
const char *st_ctl_peer(const st_ctl_conn *c); /* "HOST:PORT" of the other end */

/* Send one message (a JSON object text, whole). Blocks up to timeout_ms.
 * ST_ETIMEDOUT after part of a frame went out leaves the connection
 * unusable (later calls: ST_ECONN). */
int st_ctl_send(st_ctl_conn *c, const char *json, size_t len, int timeout_ms);
/* Receive one message: ST_OK and a parsed object with a string "type" in
 * *msg (free with st_json_free), ST_ETIMEDOUT, ST_ECONN (closed), or
 * ST_EPROTO (framing/JSON; the connection is then unusable). Bytes are
 * buffered, so a message split over many segments is fine. */
int st_ctl_recv(st_ctl_conn *c, int timeout_ms, st_json **msg);
/* Nonzero when a whole message is already buffered (call recv with timeout 0). */
int st_ctl_pending(const st_ctl_conn *c);
/* Validate one framed message's payload (no socket): what recv does after
 * the length. For the fuzz target. */
int st_ctl_parse(const char *buf, size_t len, st_json **msg);

/* ---- identity and authentication ---------------------------------------------- */
typedef struct st_ctl_identity {
    void *pkey;            /* EVP_PKEY (Ed25519) */
    char node_id[33];
    char pubkey_hex[65];
} st_ctl_identity;

/* Load the key at path, or create it (0600, parent directories 0700) when
 * absent; path NULL: $STRAIT_HOME/node.key, else ~/.cache/strait/node.key.
 * Two processes creating the same file at once end up with one key. */
int st_ctl_identity_load(const char *path, st_ctl_identity *out);
void st_ctl_identity_free(st_ctl_identity *id);

typedef struct st_ctl_peer_info {
    char node_id[33];
    char pubkey_hex[65];
    char name[64];
    char role[16];
    int heartbeat_ms, timeout_ms; /* from welcome (client side) */
} st_ctl_peer_info;

/* Node side: hello .. welcome within timeout_ms in all. Refusals come back
 * as ST_EPROTO with the reason (a wrong token: "cluster token rejected" when
 * the node notices, "... refused: wrong cluster token" when the scheduler
 * does); *sched gets node_id (this node's, as welcomed), role "scheduler",
 * heartbeat_ms and timeout_ms. */
int st_ctl_handshake_node(st_ctl_conn *c, const char *token, const st_ctl_identity *id, const char *name,
                          int timeout_ms, st_ctl_peer_info *sched);
/* Scheduler side: hello .. welcome within io_timeout_ms in all; heartbeat_ms
 * and timeout_ms go into welcome. On a refusal sends error, logs ST_WARN
 * with the peer address and returns ST_EPROTO naming the peer and the
 * reason (ST_ETIMEDOUT when the node went quiet). The caller closes. */
int st_ctl_handshake_sched(st_ctl_conn *c, const char *token, int heartbeat_ms, int timeout_ms, int io_timeout_ms,
                           st_ctl_peer_info *node);

/* ---- messages ---------------------------------------------------------------- */
#define ST_CTL_MAX_TRANSPORTS 6

typedef struct st_ctl_endpoint {
    char transport[16];    /* "tcp", "shm", "dpdk", "rdma" */
    char addr[128];        /* as st_connect takes it */
} st_ctl_endpoint;

/* What a node reports after welcome. */
typedef struct st_node_hw {
    char name[64];         /* --name or the host name */
    char host_id[64];      /* /etc/machine-id or the host name: equal => same host (shm possible) */
    char device[64];       /* "cpu", "cuda:0 NVIDIA H100", ... */
    uint64_t memory_bytes; /* total memory of the device */
    uint64_t usable_bytes; /* what it offers for weights + KV (--memory-limit, or free memory) */
    double flops;          /* measured matmul FLOP/s */
    double mem_bw;         /* measured memory read bytes/s */
    int start_layer, end_layer; /* the node's own override, or -1 */
    int n_endpoints;
    st_ctl_endpoint endpoints[ST_CTL_MAX_TRANSPORTS]; /* data-plane listeners it opened */
} st_node_hw;

/* A layer assignment. */
typedef struct st_ctl_assign {
    uint64_t epoch;        /* plan version; state messages echo it */
    int pipeline, stage, n_stages;
    int start, end;        /* layers [start, end); start == end: hold none (released) */
    char model[512];       /* what to load: as `strait run -m` was given (path, cached name, hf:) */
    uint64_t model_bytes;  /* size of the model file, to check the node loads the same one */
    st_ctl_endpoint next;  /* where this stage sends its output */
} st_ctl_assign;

/* Encode into a new JSON text (free with free()); decode a received object
 * (its "type" already checked by the caller), validating every member:
 * strings fit their arrays with no control characters, byte counts are
 * integers in [0, 2^53], hw start/end_layer are both -1 or 0 <= start < end,
 * 0 <= stage < n_stages, 0 <= start <= end, transports are tcp/shm/dpdk/rdma
 * with a non-empty addr; assign.next may be null (no next hop). *out is
 * written only on success; ST_EPROTO names the member. */
char *st_ctl_hw_encode(const st_node_hw *hw, size_t *len);
int st_ctl_hw_decode(const st_json *msg, st_node_hw *out);
char *st_ctl_assign_encode(const st_ctl_assign *a, size_t *len);
int st_ctl_assign_decode(const st_json *msg, st_ctl_assign *out);

/* Trace records a node ships to the scheduler (ctl_trace.c; see common/trace.h):
 *   N: trace {node, t_s, events: [[ts, dur, kind, phase, req, step, pipe, stage,
 *             n_tokens, n_seqs, bytes, aux, tid], ...], threads: [[tid, name], ...]}
 * ts is in ns after t_s seconds of the node's CLOCK_MONOTONIC (so every number
 * stays below 2^53, exact in JSON); phase is 'X' (88) or 'i' (105). Decode
 * checks every member: at most ST_CTL_TRACE_MAX_EVENTS events of exactly 13
 * integers, kind a known span kind, ts/dur/req/step/bytes in [0, 2^53],
 * stage in [-1, 2^31), the u32 fields in [0, 2^32), at most
 * ST_CTL_TRACE_MAX_THREADS named tracks. An encoded message of the most
 * events stays under ST_CTL_MAX_MSG (an event is at most ~300 bytes). */
#define ST_CTL_TRACE_MAX_EVENTS 2048
#define ST_CTL_TRACE_MAX_THREADS 32

typedef struct st_ctl_trace {
    char node[64];
    size_t n;                /* events */
    struct st_trace_rec *recs; /* (n,) on the node's clock (heap; st_ctl_trace_free) */
    uint32_t *tids;          /* (n,) the node's track of each */
    int n_threads;
    uint32_t thread_tid[ST_CTL_TRACE_MAX_THREADS];
    char thread_name[ST_CTL_TRACE_MAX_THREADS][48];
} st_ctl_trace;

/* n <= ST_CTL_TRACE_MAX_EVENTS records (tids parallel, may be NULL) and
 * n_threads <= ST_CTL_TRACE_MAX_THREADS track names (may be 0); NULL when
 * a count is out of range. */
char *st_ctl_trace_encode(const char *node, const struct st_trace_rec *recs, const uint32_t *tids, size_t n,
                          const uint32_t *thread_tids, const char (*thread_names)[48], int n_threads, size_t *len);
int st_ctl_trace_decode(const st_json *msg, st_ctl_trace *out);
void st_ctl_trace_free(st_ctl_trace *t);

/* Small messages: {"type":TYPE} plus optional members written by the
 * caller as JSON text ("\"state\":\"ready\",\"epoch\":3"), or NULL. The
 * result is parsed before sending: a malformed one is ST_EINVAL, unsent. */
int st_ctl_send_simple(st_ctl_conn *c, const char *type, const char *members, int timeout_ms);

/* ---- LAN discovery ---------------------------------------------------------------- */
/* The scheduler broadcasts {"type":"announce","addr":CONTROL_ADDR,"cluster":CID} on UDP
 * ST_CTL_ANNOUNCE_PORT (CID: first 8 hex of SHA-256("strait/v1/cluster" | token), so a
 * node finds its own cluster without learning the token). The environment variable
 * STRAIT_ANNOUNCE_ADDR ("HOST[:PORT]") replaces 255.255.255.255:3004 on both ends
 * (networks without broadcast; tests on 127.0.0.1). */
int st_ctl_announce_open(int *fd);
int st_ctl_announce_send(int fd, const char *control_addr, const char *token);
/* Node: wait up to timeout_ms for an announcement of the cluster with this
 * token; *addr gets the control address (its host replaced by the sender's
 * address when it was a wildcard). */
int st_ctl_discover(const char *token, int timeout_ms, char *addr, size_t cap);

#endif
