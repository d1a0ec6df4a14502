/* Layer allocation, part 2: the plan (see alloc.h for the policy).
 *
 * Units: a node's capacity is counted in whole layers of one "unit" u =
 * layer_bytes + min_kv_tokens x kv_bytes_per_token (a layer's weights plus
 * its share of the minimum KV). A chain of nodes covering layers [a, b) has
 * roles: its first node also holds the embedding when a == 0, its last node
 * the head when b == n_layers (one node alone holds both). The capacity of a
 * node depends on its role, and every step below uses the same role rules,
 * so a chain the DP accepts always water-fills into stages that fit.
 *
 * Speed: a node runs one layer for one decode token in
 * t = max(flops_per_token / flops, layer_bytes / mem_bw) seconds (the
 * slower of compute and weight streaming: decode is bandwidth-bound on
 * every machine we target, the max keeps a slow-compute node honest).
 *
 * How many pipelines: for every count k the free nodes might hold, the DP of
 * alloc_dp.c picks k groups, each is water-filled, and the k with the highest
 * total estimate (sum over pipelines of batch-1 decode tokens/s) wins; ties
 * go to more pipelines. Nodes left over that can still form a pipeline on
 * their own (greedily) form one: another pipeline only adds throughput. */
#include "alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/st_common.h"
#include "alloc_internal.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static int node_order(const void *pa, const void *pb)
{
    const alloc_node_info *a = pa, *b = pb;
    if (a->mem != b->mem)
        return a->mem > b->mem ? -1 : 1;
    if (a->t_layer != b->t_layer)
        return a->t_layer < b->t_layer ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* ---- water-filling within one chain ------------------------------------------ */

/* Split n layers over a chain of P nodes in proportion to speed (1/t), each
 * stage within [1, cap[s]]: find lambda with sum clamp(lambda*speed, 1, cap)
 * = n, then round down and hand the remaining layers to the largest
 * fractions. The caller guarantees P <= n <= sum(cap). */
static void water_fill(int n, int P, const alloc_node_info *const *chain, const int *cap, int *out)
{
    double lo = 0, hi = 0, *x = st_xmalloc((size_t)P * sizeof *x);
    for (int s = 0; s < P; s++)
        hi = ST_MAX(hi, (double)n * chain[s]->t_layer); /* lambda*speed >= n for every stage */
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi), sum = 0;
        for (int s = 0; s < P; s++)
            sum += ST_MIN((double)cap[s], ST_MAX(1.0, mid / chain[s]->t_layer));
        if (sum < n)
            lo = mid;
        else
            hi = mid;
    }
    int left = n;
    for (int s = 0; s < P; s++) {
        x[s] = ST_MIN((double)cap[s], ST_MAX(1.0, hi / chain[s]->t_layer));
        out[s] = ST_MIN(cap[s], ST_MAX(1, (int)floor(x[s])));
        left -= out[s];
    }
    while (left != 0) { /* a few steps at most: the floors lose < 1 layer per stage */
        int best = -1;
        for (int s = 0; s < P; s++) {
            int ok = left > 0 ? out[s] < cap[s] : out[s] > 1;
            double fa = x[s] - out[s];
            if (ok && (best < 0 || (left > 0 ? fa > x[best] - out[best] : fa < x[best] - out[best])))
                best = s;
        }
        if (best < 0)
            break; /* cannot happen when P <= n <= sum(cap), as every caller ensures */
        out[best] += left > 0 ? 1 : -1;
        left += left > 0 ? -1 : 1;
    }
    free(x);
}

/* Water-fill chain (P nodes, in stage order) over layers [a, b) into
 * stages[0..P); returns the chain's decode seconds per token. */
static double place_chain(const alloc_ctx *c, const alloc_node_info *const *chain, int P, int a, int b,
                          st_alloc_stage *stages)
{
    int *cap = st_xmalloc((size_t)P * sizeof *cap), *cnt = st_xmalloc((size_t)P * sizeof *cnt);
    for (int s = 0; s < P; s++)
        cap[s] = alloc_cap_role(c, chain[s], s == 0 && a == 0, s == P - 1 && b == c->m->n_layers);
    water_fill(b - a, P, chain, cap, cnt);
    double sec = 0;
    for (int s = 0, at = a; s < P; s++) {
        stages[s] = (st_alloc_stage){.node = chain[s]->id, .start = at, .end = at + cnt[s]};
        at += cnt[s];
        sec += cnt[s] * chain[s]->t_layer;
    }
    free(cap);
    free(cnt);
    return sec;
}

/* ---- assembling the plan ------------------------------------------------------ */

static uint64_t pipe_kv_tokens(const st_alloc_model *m, const alloc_ctx *c, const st_alloc_stage *st, int n)
{
    uint64_t best = UINT64_MAX;
    for (int s = 0; s < n; s++) {
        uint64_t mem = 0, w = st_alloc_stage_bytes(m, st[s].start, st[s].end, 0);
        for (int i = 0; i < c->n; i++)
            if (c->nodes[i].id == st[s].node)
                mem = c->nodes[i].mem;
        uint64_t per_tok;
        if (__builtin_mul_overflow((uint64_t)(st[s].end - st[s].start), m->kv_bytes_per_token, &per_tok))
            return 0;
        best = ST_MIN(best, mem > w ? (mem - w) / per_tok : 0);
    }
    return best;
}

/* Chains of one pipeline, k by pipeline number, from a DP assignment. */
static void build_pipes(const alloc_ctx *c, const int *assign, int k, st_alloc_pipeline *pipes)
{
    const alloc_node_info **chain = st_xcalloc((size_t)c->n, sizeof *chain);
    for (int p = 0; p < k; p++) {
        int P = 0;
        for (int i = 0; i < c->n; i++)
            if (assign[i] == p)
                chain[P++] = &c->nodes[i];
        pipes[p].stages = st_xcalloc((size_t)P, sizeof *pipes[p].stages);
        pipes[p].n_stages = P;
        pipes[p].est_tokens_per_s = 1.0 / place_chain(c, chain, P, 0, c->m->n_layers, pipes[p].stages);
        pipes[p].kv_tokens = pipe_kv_tokens(c->m, c, pipes[p].stages, P);
    }
    free(chain);
}

static void free_pipes(st_alloc_pipeline *pipes, int k)
{
    for (int p = 0; p < k; p++)
        free(pipes[p].stages);
    free(pipes);
}

/* ---- overrides ------------------------------------------------------------------ */

/* Chain the free nodes (capacity order, greedily: the largest first) over
 * layers [a, b) with the same role rules as the DP. Returns the chain length,
 * or 0 when the free nodes cannot cover the range. */
static int greedy_chain(const alloc_ctx *c, int *taken, int a, int b, const alloc_node_info **chain)
{
    int n = b - a, P = 0, r = n;
    int e = a == 0, h = b == c->m->n_layers;
    for (int i = 0; i < c->n; i++) {
        if (taken[i])
            continue;
        const alloc_node_info *nd = &c->nodes[i];
        if (P == 0 && alloc_cap_role(c, nd, e, h) >= n)
            return chain[P++] = nd, taken[i] = 1, P;
        if (P > 0 && alloc_cap_role(c, nd, 0, h) >= r)
            return chain[P++] = nd, taken[i] = 1, P;
        int cc = alloc_cap_role(c, nd, P == 0 && e, 0);
        if (cc >= 1 && (P == 0 ? n >= 2 : r >= 2)) {
            chain[P++] = nd;
            taken[i] = 1;
            r = ST_MAX(1, r - cc);
        }
    }
    for (int s = 0; s < P; s++) /* give the partial chain back */
        for (int i = 0; i < c->n; i++)
            if (&c->nodes[i] == chain[s])
                taken[i] = 0;
    return 0;
}

static int by_start(const void *pa, const void *pb)
{
    const st_alloc_stage *a = pa, *b = pb;
    return a->start - b->start;
}

/* The pipeline of the nodes with a fixed range: they are taken as given and
 * the layers between them are filled from the free nodes. */
static int fixed_pipeline(const alloc_ctx *c, const st_alloc_node *nodes, int *taken, st_alloc_pipeline *out)
{
    const st_alloc_model *m = c->m;
    const int L = m->n_layers;
    st_alloc_stage *st = st_xcalloc((size_t)c->n, sizeof *st);
    const alloc_node_info **chain = st_xcalloc((size_t)c->n, sizeof *chain);
    int n_st = 0, rc = ST_OK;
    double sec = 0;
    for (int i = 0; i < c->n; i++) {
        const st_alloc_node *nd = &nodes[c->nodes[i].idx];
        if (nd->fixed_start < 0)
            continue;
        uint64_t need = st_alloc_stage_bytes(m, nd->fixed_start, nd->fixed_end, (uint64_t)m->min_kv_tokens);
        if (need > nd->memory_bytes) {
            rc = st_err(ST_ENOMEM,
                        "node %d: its layers [%d, %d) with KV for %d tokens need %.2f GiB but it offers %.2f GiB",
                        nd->id, nd->fixed_start, nd->fixed_end, m->min_kv_tokens, need / GIB,
                        nd->memory_bytes / GIB);
            goto out;
        }
        taken[i] = 1;
        st[n_st++] = (st_alloc_stage){nd->id, nd->fixed_start, nd->fixed_end};
        sec += (nd->fixed_end - nd->fixed_start) * c->nodes[i].t_layer;
    }
    qsort(st, (size_t)n_st, sizeof *st, by_start);
    int n_fixed = n_st;
    for (int g = 0, at = 0; g <= n_fixed; g++) {
        int b = g < n_fixed ? st[g].start : L;
        if (b > at) {
            int P = greedy_chain(c, taken, at, b, chain);
            if (!P) {
                uint64_t need = st_alloc_stage_bytes(m, at, b, (uint64_t)m->min_kv_tokens), offer = 0;
                int n_free = 0;
                for (int i = 0; i < c->n; i++)
                    if (!taken[i])
                        offer += c->nodes[i].mem, n_free++;
                rc = st_err(ST_ENOMEM,
                            "layers [%d, %d) outside the fixed ranges need %.2f GiB (with KV for %d tokens) but "
                            "the %d nodes without one offer %.2f GiB: %.2f GiB missing%s",
                            at, b, need / GIB, m->min_kv_tokens, n_free, offer / GIB,
                            need > offer ? (need - offer) / GIB : 0.0,
                            need > offer ? "" : " (a layer cannot be split across nodes)");
                goto out;
            }
            st = st_xrealloc(st, (size_t)(n_st + P) * sizeof *st);
            sec += place_chain(c, chain, P, at, b, st + n_st);
            n_st += P;
        }
        if (g < n_fixed)
            at = st[g].end;
    }
    qsort(st, (size_t)n_st, sizeof *st, by_start);
    out->stages = st;
    out->n_stages = n_st;
    out->est_tokens_per_s = 1.0 / sec;
    out->kv_tokens = pipe_kv_tokens(m, c, st, n_st);
    st = NULL;
out:
    free(st);
    free(chain);
    return rc;
}

/* ---- entry points ------------------------------------------------------------- */

static int check_inputs(const st_alloc_model *m, const st_alloc_node *nodes, int n_nodes)
{
    if (!m || n_nodes < 0 || (n_nodes > 0 && !nodes))
        return st_err(ST_EINVAL, "alloc: model or nodes missing (%d nodes)", n_nodes);
    if (m->n_layers <= 0 || m->n_layers > 100000 || !m->layer_bytes || !m->kv_bytes_per_token ||
        m->min_kv_tokens < 0 || !(m->flops_per_token > 0) || !isfinite(m->flops_per_token))
        return st_err(ST_EINVAL,
                      "alloc: model costs are inconsistent (%d layers, %llu bytes a layer, %llu KV bytes a token, "
                      "%d KV tokens, %g FLOP a token)",
                      m->n_layers, (unsigned long long)m->layer_bytes, (unsigned long long)m->kv_bytes_per_token,
                      m->min_kv_tokens, m->flops_per_token);
    for (int i = 0; i < n_nodes; i++) {
        const st_alloc_node *a = &nodes[i];
        if (!(a->flops > 0) || !isfinite(a->flops) || !(a->mem_bw > 0) || !isfinite(a->mem_bw))
            return st_err(ST_EINVAL, "alloc: node %d: FLOP/s %g and bandwidth %g B/s must be positive", a->id,
                          a->flops, a->mem_bw);
        if (a->fixed_start != -1 || a->fixed_end != -1) {
            if (a->fixed_start < 0 || a->fixed_start >= a->fixed_end || a->fixed_end > m->n_layers)
                return st_err(ST_EINVAL, "alloc: node %d: layer range [%d, %d) is not within [0, %d)", a->id,
                              a->fixed_start, a->fixed_end, m->n_layers);
        }
        for (int j = 0; j < i; j++) {
            const st_alloc_node *b = &nodes[j];
            if (a->id == b->id)
                return st_err(ST_EINVAL, "alloc: two nodes have the id %d", a->id);
            if (a->fixed_start >= 0 && b->fixed_start >= 0 && a->fixed_start < b->fixed_end &&
                b->fixed_start < a->fixed_end)
                return st_err(ST_EINVAL, "alloc: node %d's layers [%d, %d) overlap node %d's [%d, %d)", a->id,
                              a->fixed_start, a->fixed_end, b->id, b->fixed_start, b->fixed_end);
        }
    }
    return ST_OK;
}

static int no_fit(const alloc_ctx *c)
{
    const st_alloc_model *m = c->m;
    const int L = m->n_layers;
    double weights = ((double)L * m->layer_bytes + m->embed_bytes + m->head_bytes) / GIB;
    double kv = (double)L * m->min_kv_tokens * m->kv_bytes_per_token / GIB, offer = 0;
    int most = 0;
    for (int i = 0; i < c->n; i++) {
        offer += c->nodes[i].mem / GIB;
        most = ST_MAX(most, alloc_cap_role(c, &c->nodes[i], 0, 0));
    }
    double need = weights + kv;
    if (need > offer)
        return st_err(ST_ENOMEM,
                      "the model needs %.2f GiB (weights %.2f + KV %.2f for %d tokens) but the %d nodes offer "
                      "%.2f GiB: %.2f GiB missing (%.0f MiB)",
                      need, weights, kv, m->min_kv_tokens, c->n, offer, need - offer, (need - offer) * 1024 + 0.5);
    return st_err(ST_ENOMEM,
                  "the model needs %.2f GiB (weights %.2f + KV %.2f for %d tokens) and the %d nodes offer %.2f GiB, "
                  "but no group of them holds every layer: a layer cannot be split across nodes, and the largest "
                  "node holds %d of %d layers",
                  need, weights, kv, m->min_kv_tokens, c->n, offer, most, L);
}

static int by_int(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    return (a > b) - (a < b);
}

int st_alloc_plan_make(const st_alloc_model *m, const st_alloc_node *nodes, int n_nodes, st_alloc_plan *out)
{
    if (!out)
        return st_err(ST_EINVAL, "alloc: no plan to fill");
    memset(out, 0, sizeof *out);
    int rc = check_inputs(m, nodes, n_nodes);
    if (rc)
        return rc;
    uint64_t kvb, unit;
    if (__builtin_mul_overflow((uint64_t)m->min_kv_tokens, m->kv_bytes_per_token, &kvb) ||
        __builtin_add_overflow(kvb, m->layer_bytes, &unit))
        unit = UINT64_MAX;
    alloc_ctx c = {.m = m, .unit = unit, .n = n_nodes};
    c.nodes = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *c.nodes);
    int has_fixed = 0;
    for (int i = 0; i < n_nodes; i++) {
        const st_alloc_node *a = &nodes[i];
        double t = ST_MAX(m->flops_per_token / a->flops, (double)m->layer_bytes / a->mem_bw);
        if (!(t > 1e-30 && t < 1e30)) { /* keeps every estimate below finite */
            free(c.nodes);
            return st_err(ST_EINVAL, "alloc: node %d: %g FLOP/s and %g B/s give %g s a layer", a->id, a->flops,
                          a->mem_bw, t);
        }
        c.nodes[i] = (alloc_node_info){.idx = i, .id = a->id, .mem = a->memory_bytes, .t_layer = t};
        has_fixed |= a->fixed_start >= 0;
    }
    qsort(c.nodes, (size_t)n_nodes, sizeof *c.nodes, node_order);
    int *taken = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *taken);
    int *assign = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *assign);
    int *best_assign = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *best_assign);
    st_alloc_pipeline fixed = {0};
    if (has_fixed && (rc = fixed_pipeline(&c, nodes, taken, &fixed)))
        goto out;

    /* how many more pipelines: every k the free nodes might hold, best total estimate wins (ties: more) */
    int64_t layers_free = 0;
    int n_free = 0;
    for (int i = 0; i < n_nodes; i++)
        if (!taken[i])
            layers_free += alloc_cap_role(&c, &c.nodes[i], 0, 0), n_free++;
    int k_max = (int)ST_MIN((int64_t)n_free, layers_free / m->n_layers), best_k = -1;
    double best = -1;
    for (int k = has_fixed ? 0 : 1; k <= k_max; k++) {
        for (int i = 0; i < n_nodes; i++)
            assign[i] = -1;
        if (k > 0 && !st_alloc_dp_pipelines(&c, taken, k, assign))
            continue;
        st_alloc_pipeline *pipes = st_xcalloc((size_t)ST_MAX(k, 1), sizeof *pipes);
        build_pipes(&c, assign, k, pipes);
        double total = has_fixed ? fixed.est_tokens_per_s : 0;
        for (int p = 0; p < k; p++)
            total += pipes[p].est_tokens_per_s;
        free_pipes(pipes, k);
        if (total >= best * (1 - 1e-9)) {
            best = total;
            best_k = k;
            memcpy(best_assign, assign, (size_t)n_nodes * sizeof *assign);
        }
    }
    if (best_k < 0) {
        rc = no_fit(&c);
        goto out;
    }
    /* the plan: the fixed pipeline, the DP's, then any pipeline the nodes left over still form */
    out->pipes = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *out->pipes); /* at most one per node */
    if (has_fixed)
        out->pipes[out->n_pipes++] = fixed, fixed.stages = NULL;
    build_pipes(&c, best_assign, best_k, out->pipes + out->n_pipes);
    out->n_pipes += best_k;
    for (int i = 0; i < n_nodes; i++)
        taken[i] |= best_assign[i] >= 0;
    const alloc_node_info **chain = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *chain);
    for (int P; (P = greedy_chain(&c, taken, 0, m->n_layers, chain)) > 0; out->n_pipes++) {
        st_alloc_pipeline *p = &out->pipes[out->n_pipes];
        p->stages = st_xcalloc((size_t)P, sizeof *p->stages);
        p->n_stages = P;
        p->est_tokens_per_s = 1.0 / place_chain(&c, chain, P, 0, m->n_layers, p->stages);
        p->kv_tokens = pipe_kv_tokens(m, &c, p->stages, P);
    }
    free(chain);
    out->unused = st_xcalloc((size_t)ST_MAX(n_nodes, 1), sizeof *out->unused);
    for (int i = 0; i < n_nodes; i++)
        if (!taken[i])
            out->unused[out->n_unused++] = c.nodes[i].id;
    qsort(out->unused, (size_t)out->n_unused, sizeof *out->unused, by_int);
out:
    free(fixed.stages);
    free(best_assign);
    free(assign);
    free(taken);
    free(c.nodes);
    return rc;
}

void st_alloc_plan_free(st_alloc_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_pipes; i++)
        free(p->pipes[i].stages);
    free(p->pipes);
    free(p->unused);
    memset(p, 0, sizeof *p);
}
