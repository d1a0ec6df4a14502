/* Layer allocation, part 3: how many pipelines, and which nodes form each
 * (a dynamic program over the nodes in capacity order, after Parallax). */
#include <stdlib.h>
#include <string.h>

#include "../../common/st_common.h"
#include "alloc_internal.h"

/* Over the nodes in capacity order, for a target of k pipelines: each node
 * is skipped, opens a pipeline (as its first stage, or as all of it), joins
 * an open one in the middle, or closes one as its last stage. A state is the
 * multiset of the open pipelines' missing layers plus the count of closed
 * ones; among paths to the same state the fewest stages win (fewer hops and
 * a faster batch-1 decode), then the most total speed. The number of states
 * kept per node is bounded (a beam, ordered by layers still missing, that
 * narrows as k grows), so the cost stays polynomial: a plan for 64 nodes
 * takes well under a second; a few nodes are solved exactly. */

typedef struct {
    int32_t r, pid;   /* missing layers; pipeline number in opening order */
} slot;

typedef struct {
    slot *open;       /* (n_open,) sorted by (r, pid) */
    int n_open, f, stages, order;
    double speed;     /* sum of 1/t_layer of the nodes used */
    int64_t deficit;  /* layers still to place: open residuals + unopened pipelines */
    int parent, pid;  /* back-pointer: previous state, pipeline joined (-1: skipped) */
} dstate;

typedef struct {
    int parent, pid;
} trail_rec;

static int cmp_key(const dstate *a, const dstate *b)
{
    if (a->f != b->f)
        return a->f - b->f;
    if (a->n_open != b->n_open)
        return a->n_open - b->n_open;
    for (int i = 0; i < a->n_open; i++)
        if (a->open[i].r != b->open[i].r)
            return a->open[i].r - b->open[i].r;
    return 0;
}

static int cmp_value(const dstate *a, const dstate *b)
{
    if (a->stages != b->stages)
        return a->stages - b->stages;
    if (a->speed != b->speed)
        return a->speed > b->speed ? -1 : 1;
    return a->order - b->order;
}

static int by_key_then_value(const void *pa, const void *pb)
{
    int k = cmp_key(pa, pb);
    return k ? k : cmp_value(pa, pb);
}

static int by_promise(const void *pa, const void *pb)
{
    const dstate *a = pa, *b = pb;
    if (a->deficit != b->deficit)
        return a->deficit < b->deficit ? -1 : 1;
    int v = cmp_value(a, b);
    return v ? v : cmp_key(a, b);
}

/* Emit a successor of `s` with `open` (n entries, sorted) as its open list. */
static void emit(dstate *cand, int *n_cand, slot *pool, int *pool_used, const dstate *s, int parent,
                 const slot *open, int n, int f, int pid, int stages_add, double speed_add, int k, int L)
{
    dstate *d = &cand[*n_cand];
    d->open = pool + *pool_used;
    memcpy(d->open, open, (size_t)n * sizeof *open);
    *pool_used += n;
    d->n_open = n;
    d->f = f;
    d->stages = s->stages + stages_add;
    d->speed = s->speed + speed_add;
    d->order = *n_cand;
    d->parent = parent;
    d->pid = pid;
    d->deficit = (int64_t)(k - f - n) * L;
    for (int i = 0; i < n; i++)
        d->deficit += open[i].r;
    (*n_cand)++;
}

/* Insert (r, pid) into a sorted copy of `src` without entry `skip` (-1: none). */
static int open_edit(const slot *src, int n, int skip, int r, int pid, slot *dst)
{
    int m = 0, placed = r <= 0;
    for (int i = 0; i < n; i++) {
        if (i == skip)
            continue;
        if (!placed && (r < src[i].r || (r == src[i].r && pid < src[i].pid))) {
            dst[m++] = (slot){r, pid};
            placed = 1;
        }
        dst[m++] = src[i];
    }
    if (!placed)
        dst[m++] = (slot){r, pid};
    return m;
}

int st_alloc_dp_pipelines(const alloc_ctx *c, const int *taken, int k, int *assign)
{
    const int n = c->n, L = c->m->n_layers;
    int beam = (int)ST_MIN(4096, ST_MAX(16, (1 << 15) / ((k + 2) * (k + 1))));
    size_t max_cand = (size_t)beam * (size_t)(2 * k + 2);
    dstate *cur = st_xcalloc((size_t)beam, sizeof *cur), *cand = st_xcalloc(max_cand, sizeof *cand);
    slot *cur_pool = st_xcalloc((size_t)beam * (size_t)(k + 1), sizeof *cur_pool);
    slot *cand_pool = st_xcalloc(max_cand * (size_t)(k + 1), sizeof *cand_pool);
    slot *tmp = st_xcalloc((size_t)k + 1, sizeof *tmp);
    trail_rec **trail = st_xcalloc((size_t)n, sizeof *trail);
    int64_t *suffix = st_xcalloc((size_t)n + 1, sizeof *suffix); /* layers the nodes from i on can hold */
    int *left_nodes = st_xcalloc((size_t)n + 1, sizeof *left_nodes);
    for (int i = n - 1; i >= 0; i--) {
        suffix[i] = suffix[i + 1] + (taken[i] ? 0 : alloc_cap_role(c, &c->nodes[i], 0, 0));
        left_nodes[i] = left_nodes[i + 1] + !taken[i];
    }
    int n_cur = 1;
    cur[0] = (dstate){.open = cur_pool, .deficit = (int64_t)k * L, .parent = -1, .pid = -1};
    for (int i = 0; i < n; i++) {
        const alloc_node_info *nd = &c->nodes[i];
        int cm = alloc_cap_role(c, nd, 0, 0), cf = alloc_cap_role(c, nd, 1, 0), cl = alloc_cap_role(c, nd, 0, 1);
        int cb = alloc_cap_role(c, nd, 1, 1);
        double sp = 1.0 / nd->t_layer;
        int n_cand = 0, pool_used = 0;
        for (int si = 0; si < n_cur; si++) {
            const dstate *s = &cur[si];
            emit(cand, &n_cand, cand_pool, &pool_used, s, si, s->open, s->n_open, s->f, -1, 0, 0, k, L);
            if (taken[i])
                continue;
            int pid_new = s->f + s->n_open;
            if (pid_new < k) {
                if (cb >= L)
                    emit(cand, &n_cand, cand_pool, &pool_used, s, si, s->open, s->n_open, s->f + 1, pid_new, 1,
                         sp, k, L);
                else if (cf >= 1 && L >= 2) {
                    int m = open_edit(s->open, s->n_open, -1, ST_MAX(1, L - cf), pid_new, tmp);
                    emit(cand, &n_cand, cand_pool, &pool_used, s, si, tmp, m, s->f, pid_new, 1, sp, k, L);
                }
            }
            for (int j = 0; j < s->n_open; j++) {
                if (j > 0 && s->open[j].r == s->open[j - 1].r)
                    continue; /* same residual: the same successor states */
                int r = s->open[j].r, pid = s->open[j].pid;
                if (cl >= r) {
                    int m = open_edit(s->open, s->n_open, j, 0, pid, tmp);
                    emit(cand, &n_cand, cand_pool, &pool_used, s, si, tmp, m, s->f + 1, pid, 1, sp, k, L);
                } else if (cm >= 1 && r >= 2) {
                    int m = open_edit(s->open, s->n_open, j, ST_MAX(1, r - cm), pid, tmp);
                    emit(cand, &n_cand, cand_pool, &pool_used, s, si, tmp, m, s->f, pid, 1, sp, k, L);
                }
            }
        }
        /* drop states that cannot finish, keep the best path to each state */
        int w = 0;
        for (int ci = 0; ci < n_cand; ci++)
            if (cand[ci].deficit <= suffix[i + 1] && k - cand[ci].f <= left_nodes[i + 1])
                cand[w++] = cand[ci];
        n_cand = w;
        qsort(cand, (size_t)n_cand, sizeof *cand, by_key_then_value);
        w = 0;
        for (int ci = 0; ci < n_cand; ci++)
            if (w == 0 || cmp_key(&cand[w - 1], &cand[ci]))
                cand[w++] = cand[ci];
        n_cand = w;
        if (n_cand > beam) {
            qsort(cand, (size_t)n_cand, sizeof *cand, by_promise);
            n_cand = beam;
        }
        trail[i] = st_xcalloc((size_t)ST_MAX(n_cand, 1), sizeof **trail);
        int used = 0;
        for (int ci = 0; ci < n_cand; ci++) {
            cur[ci] = cand[ci];
            cur[ci].open = cur_pool + used;
            memcpy(cur[ci].open, cand[ci].open, (size_t)cand[ci].n_open * sizeof(slot));
            used += cand[ci].n_open;
            trail[i][ci] = (trail_rec){cand[ci].parent, cand[ci].pid};
        }
        n_cur = n_cand;
    }
    int found = -1;
    for (int si = 0; si < n_cur; si++)
        if (cur[si].f == k && cur[si].n_open == 0 && (found < 0 || cmp_value(&cur[si], &cur[found]) < 0))
            found = si;
    for (int i = n - 1, at = found; found >= 0 && i >= 0; i--) {
        assign[i] = trail[i][at].pid;
        at = trail[i][at].parent;
    }
    for (int i = 0; i < n; i++)
        free(trail[i]);
    free(trail);
    free(suffix);
    free(left_nodes);
    free(tmp);
    free(cand_pool);
    free(cur_pool);
    free(cand);
    free(cur);
    return found >= 0;
}
