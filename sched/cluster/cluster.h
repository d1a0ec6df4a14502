/* The cluster scheduler of `strait run -n N`: membership, the plan, and the
 * pipelines it drives. It holds no layers itself.
 *
 *   nodes --ctl (sched/cluster/ctl.h)--> scheduler: hello/auth, hw, state, ping
 *   scheduler --assign--> nodes           layer ranges (sched/cluster/alloc.h)
 *   scheduler (head) --dataplane--> stage 1 --> ... --> stage n --> head
 *
 * One thread runs the control plane: it accepts and authenticates nodes,
 * answers heartbeats, evicts a node silent for heartbeat_timeout_ms, and
 * re-plans. The first plan waits for n_nodes ready-to-plan nodes. Re-plan
 * policy: healthy pipelines are left alone; nodes without layers (new
 * joiners, survivors of a broken pipeline) are planned into new pipelines
 * when they can form one, otherwise they wait as standby.
 *
 * For every pipeline the scheduler makes a batcher with external_exec and
 * an st_pipeline (no local layers: it sends token ids to stage 1), starts
 * it once every stage reports ready, and adds it to the router. When a
 * stage dies (its control connection or data link fails), the pipeline is
 * removed from the router (which moves its requests elsewhere), torn
 * down, and its survivors released. */
#ifndef ST_CLUSTER_H
#define ST_CLUSTER_H

#include <stddef.h>

#include "common/json.h"
#include "engine/model.h"
#include "sched/batcher.h"
#include "sched/cluster/router.h"

typedef struct st_cluster_config {
    const char *model;          /* as given to `strait run -m`: sent to nodes in assignments */
    const char *model_path;     /* its resolved local file (geometry, allocation costs) */
    const char *listen;         /* control address "HOST:PORT" (default "0.0.0.0:3003") */
    const char *advertise_host; /* host put in the join command (default: the host name) */
    const char *token;          /* cluster token (required) */
    int n_nodes;                /* nodes to wait for before the first plan (>= 1) */
    int heartbeat_ms;           /* default 1000 */
    int heartbeat_timeout_ms;   /* default 5000 */
    const char *transport;      /* data plane: "auto" (shm on one host, else tcp), "tcp", "shm" */
    int act_dtype;              /* enum st_act_dtype on the wire (default f32) */
    int announce;               /* 1: UDP announcements for `strait join` without -s */
    st_batcher_config batcher;  /* per pipeline (external_exec is set by the cluster) */
} st_cluster_config;

st_cluster_config st_cluster_config_default(void);

typedef struct st_cluster st_cluster;

/* m: the model's geometry and tokenizer (any layer range, e.g. 0..0); it
 * and the router are borrowed. Binds the control listener. */
int st_cluster_create(const st_cluster_config *c, st_model *m, st_router *r, st_cluster **out);
int st_cluster_start(st_cluster *cl);   /* the control thread */
/* Release every node, tear pipelines down (removing them from the router). */
void st_cluster_destroy(st_cluster *cl);

/* The command a node runs to join, e.g. "strait join -s host:3003 --cluster-token T". */
const char *st_cluster_join_command(const st_cluster *cl);
const char *st_cluster_listen_addr(const st_cluster *cl);

/* GET /cluster/status: {"model":..,"n_nodes_expected":..,"join_command":..,
 * "control":"HOST:PORT","n_layers":..,"planned":bool,"error":null or why the
 * model does not fit (the ST_ENOMEM message: bytes needed, offered, missing),
 * "requests_moved":..,
 * "nodes":[{"id","name","address","device","memory_bytes","usable_bytes","flops",
 * "mem_bw","layers":[start,end] or null,"pipeline","stage",
 * "state":"joining|standby|loading|ready|failed|left","load","rtt_ms",
 * "last_seen_ms","error"}],"pipelines":[{"id","epoch","stages":[node ids],
 * "layers":[[start,end],..],"state":"starting|serving|failed","kv_tokens",
 * "n_blocks","transport_in","transport_back","running","waiting",
 * "kv_blocks_free","kv_blocks_total","step_ms","requests_routed","error"}]}.
 * "standby": reported its hardware, holds no layers. Nodes that left or
 * failed stay listed for two minutes. */
void st_cluster_status_json(st_cluster *cl, st_strbuf *out);
/* The same object for a single machine (`strait run` without -n): one node
 * "local" holding all n_layers, the router's one pipeline. */
void st_cluster_status_local_json(const char *model, const char *device, int n_layers, st_router *r,
                                  st_strbuf *out);
/* POST /cluster/setup from the web page: the number of nodes to wait for
 * (before the first plan; afterwards shown only, since re-plans happen as
 * nodes come and go). The model is fixed when the scheduler starts: a
 * different one is ST_EINVAL saying how to restart with it. */
int st_cluster_setup(st_cluster *cl, const char *model, int n_nodes);

/* Changes whenever the status does (for streaming it). */
unsigned long st_cluster_status_version(st_cluster *cl);

#endif
