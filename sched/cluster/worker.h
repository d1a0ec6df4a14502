/* A cluster node (`strait join`): joins the scheduler over the control
 * channel, reports its hardware, and serves whatever layer range it is
 * assigned as a pipeline stage (sched/pipeline_stage.h) until released,
 * re-assigned, or told to leave.
 *
 * Threads: the caller's thread runs the control conversation (heartbeats,
 * assignments); a stage thread loads the assigned shard (only that layer
 * range is mapped), accepts its upstream on the node's data-plane
 * listener, connects to `next`, and serves. A new assignment stops the
 * stage first. If the scheduler goes away the node keeps trying to
 * reconnect (and rejoins as itself: same key, same id) until stopped. */
#ifndef ST_CLUSTER_WORKER_H
#define ST_CLUSTER_WORKER_H

#include <stdint.h>

#include "engine/model.h"
#include "kernels/backend.h"
#include "sched/cluster/ctl.h"

typedef struct st_worker_config {
    const char *scheduler;      /* control "HOST:PORT", or NULL: discover on the LAN */
    const char *token;          /* cluster token (required) */
    const char *key_file;       /* identity (default $STRAIT_HOME/node.key) */
    const char *name;           /* default: host name */
    const char *host;           /* data-plane listen host (default 0.0.0.0) */
    int port;                   /* data-plane TCP port (default 3000; 0 = ephemeral) */
    const char *advertise_host; /* host others connect to (default: the address used to reach
                                   the scheduler) */
    int shm;                    /* 1 (default): also listen on shared memory for same-host peers */
    uint64_t memory_limit;      /* bytes offered for weights + KV (0: from free memory) */
    int start_layer, end_layer; /* override, -1: the scheduler decides */
    int threads;                /* CPU threads (0: all) */
    const char *device;         /* "auto" | "cpu" | "cuda[:N]" */
    int reconnect;              /* 1 (default): rejoin when the scheduler connection drops */

    /* Loading a shard is the program's business (sched/ does not resolve
     * model names, download, or pick devices): load layers [start, end) of
     * model_ref (a path, cached name or hf:, as the scheduler was given it)
     * with a backend for `device` and `threads`; model_bytes (0: unknown) is
     * the size of the scheduler's copy, so a different file is refused.
     * ST_OK with *m and *be, or an error code with st_err set (sent to the
     * scheduler as the failure reason). Called on the stage thread. */
    int (*load)(void *ctx, const char *model_ref, uint64_t model_bytes, int start, int end, st_model **m,
                st_backend **be);
    void (*unload)(void *ctx, st_model *m, st_backend *be);
    void *load_ctx;
} st_worker_config;

st_worker_config st_worker_config_default(void);

/* Measure this machine (device, memory, matmul FLOP/s, read bandwidth) in
 * well under a second. Endpoints are left for the caller. */
int st_worker_probe(const st_worker_config *c, st_node_hw *hw);

/* Join and serve until *stop becomes nonzero (then leave gracefully:
 * ST_OK) or the scheduler refuses the node (wrong token: ST_EPROTO with
 * the scheduler's reason). Errors before joining (a listener that cannot
 * bind, an unreadable key, no load callback) return at once; a scheduler
 * that cannot be reached or goes silent is retried with back-off while
 * c->reconnect, else returns ST_ECONN. */
int st_worker_run(const st_worker_config *c, const volatile int *stop);

#endif
