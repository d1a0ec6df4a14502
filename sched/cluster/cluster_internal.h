/* Private state of the cluster scheduler (cluster.h), shared by its files:
 *   cluster.c        lifecycle, the control thread, node messages
 *   cluster_auth.c   handshakes off the control loop
 *   cluster_pipes.c  planning, assignments, pipeline start and teardown
 *   cluster_status.c /cluster/status JSON
 *
 * Locking: `mu` guards the node and pipeline tables and everything in them
 * that the status reader or a pipeline thread looks at. The control thread
 * is the only writer of the tables; it takes `mu` around each change. A
 * pipeline thread owns its data-plane objects (links, batcher, pipeline)
 * and publishes progress through `pipe.phase` under `mu`. Router add and
 * remove are serialised by `router_mu`. */
#ifndef ST_CLUSTER_INTERNAL_H
#define ST_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "dataplane/transport.h"
#include "sched/cluster/alloc.h"
#include "sched/cluster/cluster.h"
#include "sched/cluster/clock_sync.h"
#include "sched/cluster/ctl.h"
#include "sched/pipeline.h"

#define CL_MAX_NODES 64
#define CL_MAX_PIPES 32
#define CL_MAX_STAGES 16
#define CL_MAX_PENDING 8          /* handshakes in progress at once */
#define CL_GONE_KEEP_MS 120000    /* how long left/failed nodes stay listed */

typedef enum {
    NODE_FREE = 0,   /* slot unused */
    NODE_JOINING,    /* authenticated, no hardware report yet */
    NODE_STANDBY,    /* reported hardware, holds no layers */
    NODE_ASSIGNED,   /* assigned layers, no state reported yet */
    NODE_LOADING,
    NODE_READY,
    NODE_FAILED,     /* evicted, connection lost, or failed to load */
    NODE_LEFT,
} node_state;

typedef struct cl_node {
    node_state state;
    char id[33];              /* node_id (hex of its key) */
    char name[64];
    char peer[80];            /* "HOST:PORT" of its control connection */
    char local_host[64];      /* our address as the node reached it (for its back link) */
    st_clock_est clock;       /* its clock's offset from ours, from ping/pong (clock_sync.h) */
    st_ctl_conn *conn;        /* NULL once failed or left */
    st_node_hw hw;
    int has_hw;
    int unplannable;          /* reported a load failure: not planned again until it rejoins */
    int pipe;                 /* index into pipes[], or -1 */
    int stage, start, end;    /* its assignment (start == end: none) */
    uint64_t epoch;           /* of its assignment */
    uint64_t last_seen_ns;    /* last message received */
    uint64_t last_ping_ns;    /* last ping sent */
    uint64_t gone_ns;         /* when it failed or left */
    double rtt_ms;
    char error[256];          /* why it failed */
} cl_node;

typedef enum {
    PIPE_FREE = 0,
    PIPE_LOADING,    /* assignments sent, waiting for every stage to be ready */
    PIPE_STARTING,   /* its thread connects and sets up */
    PIPE_SERVING,    /* in the router */
    PIPE_FAILED,     /* stopping: its thread removes it and tears down */
    PIPE_DONE,       /* thread finished; the control thread joins and frees the slot */
} pipe_phase;

typedef struct cl_pipe {
    pipe_phase phase;
    int id;                   /* cluster-wide pipeline number (status, assign.pipeline) */
    uint64_t epoch;
    int n_stages;
    int node[CL_MAX_STAGES];  /* (n_stages,) node slots */
    int start[CL_MAX_STAGES], end[CL_MAX_STAGES];   /* (n_stages,) layer ranges */
    uint64_t kv_tokens;
    int n_blocks;             /* KV blocks of the batcher and of every stage */
    st_ctl_endpoint first;    /* stage 1's endpoint the head connects to */
    st_listener *back_l;      /* where the last stage sends results */
    char back_transport[16];
    /* owned by its thread */
    pthread_t thread;
    int has_thread;
    volatile int stop;        /* set by the control thread: tear down */
    st_link *next, *back;
    st_pipeline *p;
    st_batcher *b;
    int router_id;            /* -1 until added */
    uint64_t started_ns, serving_ns;
    int released;             /* its nodes were released (cl_pipe_fail ran) */
    char error[256];
} cl_pipe;

typedef struct st_cluster cl_state;

struct st_cluster {
    st_cluster_config cfg;
    char *model, *model_path, *token, *transport, *advertise;
    uint64_t model_bytes;     /* size of the model file (sent in assignments) */
    st_model *m;              /* borrowed geometry + tokenizer */
    st_router *router;
    st_alloc_model am;
    int am_ok;
    char host_id[64];         /* this machine, as nodes report theirs */

    int listen_fd;
    int announce_fd;          /* UDP socket for LAN announcements, or -1 */
    uint64_t announced_ns;    /* when the last one went out */
    char bound[128];          /* control address with the real port */
    char join_cmd[512];
    int wake[2];              /* pipe: handshake threads wake the control thread */

    pthread_mutex_t mu;
    cl_node nodes[CL_MAX_NODES];
    cl_pipe pipes[CL_MAX_PIPES];
    int next_pipe_id;
    uint64_t epoch;
    int planned_once;         /* the first plan (n_nodes nodes) happened */
    int replan;               /* something changed: try to plan idle nodes */
    char plan_error[512];     /* the last plan's failure ("" when it fit) */
    unsigned long version;

    /* authenticated connections waiting for the control thread */
    struct cl_auth {
        st_ctl_conn *conn;
        st_ctl_peer_info info;
    } authed[CL_MAX_PENDING];
    int n_authed;
    int n_pending;            /* handshake threads alive */
    pthread_cond_t pending_cv;

    pthread_cond_t pipe_cv;   /* signalled (under mu) when a pipeline is told to stop */
    pthread_mutex_t router_mu;
    pthread_t thread;
    int started;
    volatile int stop;
};

/* cluster.c */
void cl_touch(cl_state *cl);                      /* version++ (mu held) */
void cl_node_fail(cl_state *cl, int slot, node_state st, const char *why); /* mu held */
int cl_send(cl_state *cl, int slot, const char *json, size_t len);      /* mu held; fails the node on error */

/* cluster_auth.c */
void cl_auth_spawn(cl_state *cl, st_ctl_conn *c);  /* takes c */
void cl_auth_wait_all(cl_state *cl);

/* cluster_pipes.c */
void cl_plan(cl_state *cl);                        /* mu held */
void cl_pipes_tick(cl_state *cl);                  /* mu held: state changes, errors, joins */
void cl_node_state(cl_state *cl, int slot, const char *state, uint64_t epoch, const char *err); /* mu held */
void cl_pipe_fail(cl_state *cl, int pi, const char *why); /* mu held */
void cl_pipes_shutdown(cl_state *cl);              /* mu NOT held: stop and join every pipeline */
const char *cl_node_state_name(node_state s);
const char *cl_pipe_phase_name(pipe_phase p);

#endif
