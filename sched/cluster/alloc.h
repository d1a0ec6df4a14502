/* Layer allocation: which node holds which layers, in how many pipelines.
 *
 * A pure function of the model's per-layer costs and the nodes' declared
 * capacity and measured speed, so that it can be tested without a cluster.
 *
 * Policy (after Parallax): first choose how many pipelines the nodes can
 * form, each able to hold every layer plus a minimum KV cache, preferring
 * the plan with the highest estimated total throughput (dynamic programming
 * over the nodes sorted by capacity); then, inside each pipeline, split the
 * layers in proportion to each node's speed, capped by its memory
 * ("water-filling": a node that runs out of memory keeps what fits and the
 * rest flows to the others). A node's --start-layer/--end-layer override
 * is taken as given: the nodes with one form the first pipeline together
 * (their ranges may not overlap) and free nodes fill the layers between
 * them. Nodes left over (not enough for another pipeline) are
 * reported as unused; the caller keeps them as standby. */
#ifndef ST_CLUSTER_ALLOC_H
#define ST_CLUSTER_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"

/* What one layer range costs. */
typedef struct st_alloc_model {
    int n_layers;
    uint64_t layer_bytes;       /* weights of one transformer layer (the largest one) */
    uint64_t embed_bytes;       /* token embedding table: on the first stage */
    uint64_t head_bytes;        /* final norm + output matrix: on the last stage (the
                                   embedding again when tied) */
    uint64_t kv_bytes_per_token; /* K + V of ONE layer for one token, as a stage stores it */
    int min_kv_tokens;          /* tokens of KV every stage must hold at least (one full context) */
    double flops_per_token;     /* per layer, for the speed estimate (~2 x parameters of a layer) */
} st_alloc_model;

/* One node as the scheduler knows it. */
typedef struct st_alloc_node {
    int id;                     /* the caller's handle, echoed in stages */
    uint64_t memory_bytes;      /* usable for weights + KV */
    double flops;               /* measured FLOP/s (> 0) */
    double mem_bw;              /* measured memory read bandwidth, bytes/s (> 0) */
    int fixed_start, fixed_end; /* the node's own layer range, or -1, -1 to let the plan decide */
} st_alloc_node;

typedef struct st_alloc_stage {
    int node;                   /* st_alloc_node.id */
    int start, end;             /* layers [start, end) */
} st_alloc_stage;

typedef struct st_alloc_pipeline {
    st_alloc_stage *stages;     /* (n_stages,) in layer order: stages[0].start == 0 */
    int n_stages;
    uint64_t kv_tokens;         /* KV capacity: the minimum over its stages */
    double est_tokens_per_s;    /* decode estimate at batch 1 (bandwidth-bound) */
} st_alloc_pipeline;

typedef struct st_alloc_plan {
    st_alloc_pipeline *pipes;   /* (n_pipes,) */
    int n_pipes;
    int *unused;                /* (n_unused,) node ids holding nothing */
    int n_unused;
} st_alloc_plan;

/* Costs of the model file at `path` (GGUF, or safetensors file/directory:
 * only the tensor table is read, not the weights), with weights as stored
 * there and the KV cache in f16 as every backend keeps it (engine/forward.h
 * st_kv_init): kv_bytes_per_token = 2 x kv_dim x 2. min_kv_tokens = ctx. */
int st_alloc_model_from_file(const char *path, int ctx, st_alloc_model *out);

/* Plan. ST_OK with at least one pipeline, or ST_ENOMEM with a message saying
 * how many bytes the model needs, how many the nodes offer and how many are
 * missing; ST_EINVAL for inconsistent overrides (overlap, beyond n_layers). */
int st_alloc_plan_make(const st_alloc_model *m, const st_alloc_node *nodes, int n_nodes, st_alloc_plan *out);
void st_alloc_plan_free(st_alloc_plan *p);

/* Bytes a node needs to hold layers [start, end) with kv_tokens of KV
 * (plus the embedding when start == 0, the head when end == n_layers);
 * UINT64_MAX for a range outside [0, n_layers) or on overflow. */
uint64_t st_alloc_stage_bytes(const st_alloc_model *m, int start, int end, uint64_t kv_tokens);

#endif
