/* Layer allocation internals shared by alloc.c (plan assembly, water-filling,
 * overrides) and alloc_dp.c (how many pipelines, and which nodes form each).
 * See alloc.c for the units (whole layers with their minimum KV) and roles. */
#ifndef ST_CLUSTER_ALLOC_INTERNAL_H
#define ST_CLUSTER_ALLOC_INTERNAL_H

#include <stdint.h>

#include "alloc.h"

typedef struct {
    int idx;          /* into the caller's nodes[] */
    int id;
    uint64_t mem;
    double t_layer;   /* seconds per layer per decode token */
} alloc_node_info;

typedef struct {
    const st_alloc_model *m;
    uint64_t unit;    /* bytes of one layer with its minimum KV (UINT64_MAX on overflow) */
    alloc_node_info *nodes; /* (n,) sorted: memory desc, faster first, id asc */
    int n;
} alloc_ctx;

/* Layers a node can hold in a role, clamped to [0, n_layers]. */
static inline int alloc_cap_role(const alloc_ctx *c, const alloc_node_info *nd, int with_embed, int with_head)
{
    uint64_t extra = with_embed ? c->m->embed_bytes : 0, head = with_head ? c->m->head_bytes : 0;
    if (__builtin_add_overflow(extra, head, &extra) || nd->mem < extra || c->unit == UINT64_MAX)
        return 0;
    uint64_t l = (nd->mem - extra) / c->unit;
    return l > (uint64_t)c->m->n_layers ? c->m->n_layers : (int)l;
}

/* Choose k pipelines from c->nodes[0..n) (in capacity order) minus those with
 * taken[i]: on success assign[i] is the pipeline (0..k-1, numbered in the
 * order they were opened) of node i or -1, and 1 is returned; 0 when the
 * nodes cannot form k pipelines. A pipeline's members in node order are its
 * stages in layer order (the first holds the embedding, the last the head). */
int st_alloc_dp_pipelines(const alloc_ctx *c, const int *taken, int k, int *assign);

#endif
