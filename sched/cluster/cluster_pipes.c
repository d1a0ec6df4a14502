/* Planning, assignments, and the life of each pipeline.
 *
 *   plan (alloc.h) -> LOADING: assign sent to every stage
 *   every stage "ready" -> STARTING: its thread connects to stage 1, accepts
 *       the last stage's back link, makes batcher + st_pipeline, starts the
 *       batcher and adds it to the router -> SERVING
 *   a stage fails (eviction, lost connection, load error, data-link error)
 *       -> FAILED: survivors released at once, the thread removes the
 *       pipeline from the router (its requests move) and tears down -> DONE
 *       -> the control thread joins the thread and frees the slot.
 * Everything here but pipe_main runs on the control thread with mu held. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/st_common.h"
#include "sched/cluster/cluster_internal.h"

#define START_TIMEOUT_MS 60000 /* connect + accept of a starting pipeline */

const char *cl_node_state_name(node_state s)
{
    switch (s) {
    case NODE_JOINING: return "joining";
    case NODE_STANDBY: return "standby";
    case NODE_ASSIGNED:
    case NODE_LOADING: return "loading";
    case NODE_READY: return "ready";
    case NODE_FAILED: return "failed";
    case NODE_LEFT: return "left";
    default: return "unknown";
    }
}

const char *cl_pipe_phase_name(pipe_phase p)
{
    switch (p) {
    case PIPE_LOADING:
    case PIPE_STARTING: return "starting";
    case PIPE_SERVING: return "serving";
    default: return "failed";
    }
}

/* ---- endpoints ------------------------------------------------------------------------ */

static const st_ctl_endpoint *find_ep(const cl_node *n, const char *transport)
{
    for (int i = 0; i < n->hw.n_endpoints && i < ST_CTL_MAX_TRANSPORTS; i++)
        if (!strcmp(n->hw.endpoints[i].transport, transport))
            return &n->hw.endpoints[i];
    return NULL;
}

/* Where a sender on host `from_host` reaches node `to`: shm when both are on
 * one host and `to` offers it (transport "auto"), else tcp. A wildcard tcp
 * host is replaced by the address the node's control connection came from. */
static int pick_endpoint(const cl_state *cl, const char *from_host, const cl_node *to, st_ctl_endpoint *out)
{
    int same = !strcmp(from_host, to->hw.host_id);
    const st_ctl_endpoint *shm = find_ep(to, "shm"), *tcp = find_ep(to, "tcp");
    const char *t = cl->transport;
    const st_ctl_endpoint *e = NULL;
    if (!strcmp(t, "shm")) {
        if (!shm || !same)
            return st_err(ST_ENOTSUP, "node %s cannot be reached over shm (%s)", to->name,
                          !same ? "it is on another host" : "it offers no shm endpoint");
        e = shm;
    } else if (!strcmp(t, "tcp")) {
        e = tcp;
    } else {
        e = same && shm ? shm : tcp;
    }
    if (!e)
        return st_err(ST_ENOTSUP, "node %s offers no %s endpoint", to->name, !strcmp(t, "shm") ? "shm" : "tcp");
    *out = *e;
    if (!strcmp(e->transport, "tcp")) {
        const char *colon = strrchr(e->addr, ':');
        size_t hl = colon ? (size_t)(colon - e->addr) : 0;
        int wild = hl == 0 || (hl == 7 && !strncmp(e->addr, "0.0.0.0", 7)) || (hl == 2 && !strncmp(e->addr, "::", 2)) ||
                   (hl == 4 && !strncmp(e->addr, "[::]", 4));
        if (wild && colon) {
            const char *pc = strrchr(to->peer, ':');
            int phl = pc ? (int)(pc - to->peer) : (int)strlen(to->peer);
            snprintf(out->addr, sizeof out->addr, "%.*s%s", phl, to->peer, colon);
        }
    }
    return ST_OK;
}

/* The head's back listener for the last stage `last`: shm when it can use
 * it, else tcp on an ephemeral port of the address the node reached us at. */
static int open_back(cl_state *cl, cl_pipe *p, const cl_node *last, st_ctl_endpoint *ep)
{
    int same = !strcmp(cl->host_id, last->hw.host_id), offers_shm = find_ep(last, "shm") != NULL;
    int shm = !strcmp(cl->transport, "shm") || (!strcmp(cl->transport, "auto") && same && offers_shm);
    int rc;
    memset(ep, 0, sizeof *ep);
    if (shm) {
        snprintf(ep->transport, sizeof ep->transport, "shm");
        snprintf(ep->addr, sizeof ep->addr, "@strait-sched-%d-p%d-e%llu", (int)getpid(), p->id,
                 (unsigned long long)p->epoch);
        st_link_opts o;
        st_link_opts_keyed(&o, "shm", cl->token);
        rc = st_listen("shm", ep->addr, &o, &p->back_l);
    } else {
        const char *colon = strrchr(cl->bound, ':');
        char bind[160];
        snprintf(bind, sizeof bind, "%.*s:0", colon ? (int)(colon - cl->bound) : 7, colon ? cl->bound : "0.0.0.0");
        snprintf(ep->transport, sizeof ep->transport, "tcp");
        st_link_opts o;
        st_link_opts_keyed(&o, "tcp", cl->token); /* every data-plane link proves the cluster token */
        rc = st_listen("tcp", bind, &o, &p->back_l);
        if (!rc) {
            const char *la = st_listener_addr(p->back_l), *pc = strrchr(la, ':');
            snprintf(ep->addr, sizeof ep->addr, "%s:%s", last->local_host, pc ? pc + 1 : "0");
        }
    }
    if (!rc)
        snprintf(p->back_transport, sizeof p->back_transport, "%s", ep->transport);
    return rc;
}

/* ---- assignments ------------------------------------------------------------------------ */

static int send_assign(cl_state *cl, int slot, int pipe_id, int stage, int n_stages, int start, int end,
                       const st_ctl_endpoint *next, uint64_t epoch)
{
    st_ctl_assign a;
    memset(&a, 0, sizeof a);
    a.epoch = epoch;
    a.pipeline = pipe_id;
    a.stage = stage;
    a.n_stages = n_stages;
    a.start = start;
    a.end = end;
    snprintf(a.model, sizeof a.model, "%s", cl->model);
    a.model_bytes = cl->model_bytes;
    if (next)
        a.next = *next;
    size_t len = 0;
    char *j = st_ctl_assign_encode(&a, &len);
    if (!j)
        return st_err(ST_EINVAL, "cannot encode an assignment: %s", st_errmsg());
    int rc = cl_send(cl, slot, j, len);
    free(j);
    return rc;
}

/* Tell a node it holds nothing now (start == end) and count it as standby. */
static void release_node(cl_state *cl, int slot)
{
    cl_node *n = &cl->nodes[slot];
    n->pipe = -1;
    n->stage = n->start = n->end = 0;
    if (!n->conn)
        return;
    n->epoch = ++cl->epoch;
    if (n->state == NODE_ASSIGNED || n->state == NODE_LOADING || n->state == NODE_READY)
        n->state = NODE_STANDBY;
    send_assign(cl, slot, 0, 0, 1, 0, 0, NULL, n->epoch); /* an empty range: pipeline/stage mean nothing */
}

/* KV blocks for a pipeline whose stages can hold kv_tokens: no more than the
 * batcher could use (max_batch_size full contexts, twice, as its own
 * default), nor more than an explicit n_blocks / kv_cache_bytes allows. */
static int pipe_blocks(const cl_state *cl, uint64_t kv_tokens)
{
    const st_batcher_config *bc = &cl->cfg.batcher;
    uint64_t bs = bc->block_size > 0 ? (uint64_t)bc->block_size : 16;
    uint64_t ctx = bc->max_ctx > 0 ? (uint64_t)bc->max_ctx : (uint64_t)cl->m->cfg.ctx_len;
    uint64_t cap = 2 * (uint64_t)(bc->max_batch_size > 0 ? bc->max_batch_size : 16) * ctx;
    if (bc->n_blocks > 0 && (uint64_t)bc->n_blocks * bs < cap)
        cap = (uint64_t)bc->n_blocks * bs;
    uint64_t per_tok = cl->am.kv_bytes_per_token * (uint64_t)cl->am.n_layers;
    if (bc->kv_cache_bytes > 0 && per_tok && bc->kv_cache_bytes / per_tok < cap)
        cap = bc->kv_cache_bytes / per_tok;
    uint64_t t = kv_tokens < cap ? kv_tokens : cap;
    uint64_t nb = t / bs;
    if (nb < 1)
        nb = 1;
    return nb > (1u << 28) ? (1 << 28) : (int)nb;
}

/* Make pipeline slot pi from a planned pipeline: listeners, endpoints, assignments. */
static void pipe_create(cl_state *cl, const st_alloc_pipeline *ap)
{
    int pi = -1;
    for (int i = 0; i < CL_MAX_PIPES && pi < 0; i++)
        if (cl->pipes[i].phase == PIPE_FREE)
            pi = i;
    if (pi < 0 || ap->n_stages < 1 || ap->n_stages > CL_MAX_STAGES) {
        ST_ERROR("cluster: cannot start a pipeline of %d stages (%s)", ap->n_stages,
                 pi < 0 ? "too many pipelines" : "too many stages");
        return;
    }
    cl_pipe *p = &cl->pipes[pi];
    memset(p, 0, sizeof *p);
    p->id = cl->next_pipe_id++;
    p->epoch = ++cl->epoch;
    p->n_stages = ap->n_stages;
    p->kv_tokens = ap->kv_tokens;
    p->n_blocks = pipe_blocks(cl, ap->kv_tokens);
    p->router_id = -1;
    p->started_ns = st_now_ns();
    for (int s = 0; s < ap->n_stages; s++) {
        p->node[s] = ap->stages[s].node;
        p->start[s] = ap->stages[s].start;
        p->end[s] = ap->stages[s].end;
    }
    /* every link of the ring: head -> stage 1 -> ... -> stage n -> head */
    st_ctl_endpoint next[CL_MAX_STAGES];
    int rc = pick_endpoint(cl, cl->host_id, &cl->nodes[p->node[0]], &p->first);
    for (int s = 0; !rc && s + 1 < p->n_stages; s++)
        rc = pick_endpoint(cl, cl->nodes[p->node[s]].hw.host_id, &cl->nodes[p->node[s + 1]], &next[s]);
    if (!rc)
        rc = open_back(cl, p, &cl->nodes[p->node[p->n_stages - 1]], &next[p->n_stages - 1]);
    if (rc) {
        snprintf(cl->plan_error, sizeof cl->plan_error, "pipeline %d: %s", p->id, st_errmsg());
        ST_ERROR("cluster: cannot wire pipeline %d: %s", p->id, st_errmsg());
        if (p->back_l)
            st_listener_close(p->back_l);
        memset(p, 0, sizeof *p);
        return;
    }
    p->phase = PIPE_LOADING;
    char desc[1024];
    size_t dl = 0;
    desc[0] = 0;
    for (int s = 0; s < p->n_stages; s++) {
        cl_node *n = &cl->nodes[p->node[s]];
        n->pipe = pi;
        n->stage = s;
        n->start = p->start[s];
        n->end = p->end[s];
        n->epoch = p->epoch;
        n->state = NODE_ASSIGNED;
        n->error[0] = 0;
        if (dl < sizeof desc)
            dl += (size_t)snprintf(desc + dl, sizeof desc - dl, "%s%s [%d, %d) -> %s %s", s ? "; " : "", n->name,
                                   p->start[s], p->end[s], next[s].transport, next[s].addr);
    }
    ST_INFO("cluster: pipeline %d (epoch %llu, %d KV blocks): head -> %s %s; %s", p->id,
            (unsigned long long)p->epoch, p->n_blocks, p->first.transport, p->first.addr, desc);
    for (int s = 0; s < p->n_stages && p->phase == PIPE_LOADING; s++)
        send_assign(cl, p->node[s], p->id, s, p->n_stages, p->start[s], p->end[s], &next[s], p->epoch);
    cl_touch(cl);
}

void cl_plan(cl_state *cl)
{
    st_alloc_node an[CL_MAX_NODES];
    int n = 0, n_ready = 0;
    for (int i = 0; i < CL_MAX_NODES; i++) {
        cl_node *x = &cl->nodes[i];
        if (x->conn && x->has_hw && !x->unplannable && x->state == NODE_STANDBY)
            n_ready++;
    }
    if (!n_ready || (!cl->planned_once && n_ready < cl->cfg.n_nodes))
        return;
    for (int i = 0; i < CL_MAX_NODES; i++) {
        cl_node *x = &cl->nodes[i];
        if (!(x->conn && x->has_hw && !x->unplannable && x->state == NODE_STANDBY))
            continue;
        an[n].id = i;
        an[n].memory_bytes = x->hw.usable_bytes;
        an[n].flops = x->hw.flops > 0 ? x->hw.flops : 1e9;
        an[n].mem_bw = x->hw.mem_bw > 0 ? x->hw.mem_bw : 1e9;
        an[n].fixed_start = x->hw.start_layer;
        an[n].fixed_end = x->hw.end_layer;
        n++;
    }
    st_alloc_plan plan;
    memset(&plan, 0, sizeof plan);
    int rc = st_alloc_plan_make(&cl->am, an, n, &plan);
    if (rc) {
        if (strcmp(cl->plan_error, st_errmsg())) {
            snprintf(cl->plan_error, sizeof cl->plan_error, "%s", st_errmsg());
            ST_ERROR("cluster: cannot plan the model over %d idle node%s: %s; waiting for more nodes", n,
                     n == 1 ? "" : "s", cl->plan_error);
            cl_touch(cl);
        }
        return;
    }
    cl->plan_error[0] = 0;
    cl->planned_once = 1;
    for (int k = 0; k < plan.n_pipes; k++)
        pipe_create(cl, &plan.pipes[k]);
    if (plan.n_unused)
        ST_INFO("cluster: %d node%s kept as standby", plan.n_unused, plan.n_unused == 1 ? "" : "s");
    st_alloc_plan_free(&plan);
    cl_touch(cl);
}

/* ---- pipeline threads ------------------------------------------------------------------ */

typedef struct pipe_arg {
    cl_state *cl;
    int pi;
} pipe_arg;

static int pipe_down(void *ctx) { return st_pipeline_error((const st_pipeline *)ctx); }

/* Connect, accept, set up and add to the router. Returns ST_OK or an error
 * (message set on this thread). */
static int pipe_start(cl_state *cl, cl_pipe *p)
{
    uint64_t deadline = st_now_ns() + (uint64_t)START_TIMEOUT_MS * 1000000ull;
    int rc = ST_ETIMEDOUT;
    st_link_opts o;
    st_link_opts_keyed(&o, p->first.transport, cl->token);
    while (!p->stop && st_now_ns() < deadline) {
        rc = st_connect(p->first.transport, p->first.addr, &o, 2000, &p->next);
        if (rc == ST_OK)
            break;
        if (rc == ST_EPROTO && strstr(st_errmsg(), "link key"))
            break; /* a wrong key does not get better by retrying */
        struct timespec ts = {0, 100 * 1000000L}; /* a refused connect returns at once */
        nanosleep(&ts, NULL);
    }
    if (rc)
        return p->stop ? ST_ECONN : st_err(rc, "cannot connect to stage 1 at %s %s: %s", p->first.transport,
                                               p->first.addr, st_errmsg());
    rc = ST_ETIMEDOUT;
    while (!p->stop && st_now_ns() < deadline) {
        rc = st_accept(p->back_l, 500, &p->back);
        if (rc != ST_ETIMEDOUT)
            break;
    }
    if (rc)
        return p->stop ? ST_ECONN : st_err(rc, "the last stage did not connect back to %s: %s",
                                               st_listener_addr(p->back_l), st_errmsg());
    st_batcher_config bc = cl->cfg.batcher;
    bc.external_exec = 1;
    bc.n_blocks = p->n_blocks;
    bc.kv_cache_bytes = 0;
    /* a batch on every stage, unless `strait run --max-inflight` said otherwise */
    bc.max_inflight = cl->cfg.batcher.max_inflight > 0 ? cl->cfg.batcher.max_inflight
                                                       : ST_MIN(p->n_stages, ST_BATCHER_MAX_INFLIGHT);
    if ((rc = st_batcher_create(cl->m, NULL, &bc, &p->b)))
        return rc;
    st_batcher_stats bs;
    st_batcher_get_stats(p->b, &bs);
    st_pipeline_config pc;
    memset(&pc, 0, sizeof pc);
    pc.model = &cl->m->cfg;
    pc.next = p->next;
    pc.back = p->back;
    pc.act_dtype = cl->cfg.act_dtype;
    pc.n_blocks = bs.kv_blocks_total;
    pc.block_size = bs.block_size;
    pc.max_tokens = bc.max_num_tokens_per_batch;
    pc.max_seqs = bc.max_batch_size;
    if ((rc = st_pipeline_create(&pc, &p->p)))
        return rc;
    st_batch_async_exec x = st_pipeline_async_exec(p->p);
    st_batcher_set_async_executor(p->b, &x);
    if ((rc = st_batcher_start(p->b)))
        return rc;
    pthread_mutex_lock(&cl->router_mu);
    rc = p->stop ? ST_ECONN : st_router_add(cl->router, p->b, pipe_down, p->p, &p->router_id);
    pthread_mutex_unlock(&cl->router_mu);
    return rc;
}

static void *pipe_main(void *arg)
{
    pipe_arg *a = arg;
    cl_state *cl = a->cl;
    cl_pipe *p = &cl->pipes[a->pi];
    free(a);
    int rc = pipe_start(cl, p);
    char err[256];
    snprintf(err, sizeof err, "%s", rc ? st_errmsg() : "");
    pthread_mutex_lock(&cl->mu);
    if (rc && !p->stop) {
        snprintf(p->error, sizeof p->error, "%s", err);
        ST_ERROR("cluster: pipeline %d did not start: %s", p->id, err);
    } else if (!rc && !p->stop) {
        p->phase = PIPE_SERVING;
        p->serving_ns = st_now_ns();
        ST_INFO("cluster: pipeline %d serving (%d stage%s, %d KV blocks, started in %.1f s)", p->id, p->n_stages,
                p->n_stages == 1 ? "" : "s", p->n_blocks, (double)(p->serving_ns - p->started_ns) / 1e9);
        cl_touch(cl);
        while (!p->stop)
            pthread_cond_wait(&cl->pipe_cv, &cl->mu);
    }
    pthread_mutex_unlock(&cl->mu);

    if (p->router_id >= 0) {
        pthread_mutex_lock(&cl->router_mu);
        st_router_remove(cl->router, p->router_id); /* moves its requests to the other pipelines */
        pthread_mutex_unlock(&cl->router_mu);
    }
    if (p->b)
        st_batcher_destroy(p->b); /* stops its loop */
    st_pipeline_destroy(p->p);
    if (p->next)
        st_link_close(p->next);
    if (p->back)
        st_link_close(p->back);
    if (p->back_l)
        st_listener_close(p->back_l);
    pthread_mutex_lock(&cl->mu);
    p->b = NULL, p->p = NULL, p->next = p->back = NULL, p->back_l = NULL, p->router_id = -1;
    p->phase = PIPE_DONE;
    cl_touch(cl);
    pthread_mutex_unlock(&cl->mu);
    char one = 1;
    if (write(cl->wake[1], &one, 1) < 0) {
        /* a wake-up is pending already */
    }
    return NULL;
}

/* ---- state changes ---------------------------------------------------------------------- */

void cl_pipe_fail(cl_state *cl, int pi, const char *why)
{
    cl_pipe *p = &cl->pipes[pi];
    if (p->phase == PIPE_FREE || p->released)
        return;
    p->released = 1;
    if (p->phase != PIPE_DONE) {
        ST_WARN("cluster: pipeline %d down: %s", p->id, why);
        if (!p->error[0])
            snprintf(p->error, sizeof p->error, "%s", why);
    }
    for (int s = 0; s < p->n_stages; s++)
        if (cl->nodes[p->node[s]].pipe == pi)
            release_node(cl, p->node[s]);
    if (p->phase == PIPE_LOADING) {
        if (p->back_l)
            st_listener_close(p->back_l);
        p->back_l = NULL;
        p->phase = PIPE_FREE;
    } else if (p->phase == PIPE_STARTING || p->phase == PIPE_SERVING) {
        p->phase = PIPE_FAILED;
        p->stop = 1;
        pthread_cond_broadcast(&cl->pipe_cv);
    }
    cl->replan = 1;
    cl_touch(cl);
}

void cl_node_state(cl_state *cl, int slot, const char *state, uint64_t epoch, const char *err)
{
    cl_node *n = &cl->nodes[slot];
    if (epoch != n->epoch) {
        ST_DEBUG("cluster: node %s: state '%s' of epoch %llu ignored (now %llu)", n->name, state,
                 (unsigned long long)epoch, (unsigned long long)n->epoch);
        return;
    }
    if (!strcmp(state, "loading")) {
        if (n->pipe >= 0)
            n->state = NODE_LOADING;
    } else if (!strcmp(state, "ready")) {
        if (n->pipe < 0) {
            if (n->state != NODE_FAILED)
                n->state = NODE_STANDBY;
        } else {
            n->state = NODE_READY;
            cl_pipe *p = &cl->pipes[n->pipe];
            int all = p->phase == PIPE_LOADING;
            for (int s = 0; all && s < p->n_stages; s++)
                all = cl->nodes[p->node[s]].state == NODE_READY;
            if (all) {
                pipe_arg *a = st_xmalloc(sizeof *a);
                a->cl = cl;
                a->pi = n->pipe;
                p->phase = PIPE_STARTING;
                if (pthread_create(&p->thread, NULL, pipe_main, a) != 0) {
                    free(a);
                    p->phase = PIPE_LOADING;
                    cl_pipe_fail(cl, n->pipe, "cannot start a pipeline thread");
                } else {
                    p->has_thread = 1;
                }
            }
        }
    } else if (!strcmp(state, "failed")) {
        ST_ERROR("cluster: node %s failed to load layers [%d, %d): %s", n->name, n->start, n->end,
                 err && *err ? err : "(no reason given)");
        snprintf(n->error, sizeof n->error, "%s", err && *err ? err : "failed to load its layers");
        n->unplannable = 1; /* until it rejoins: planning it again would fail the same way */
        if (n->pipe >= 0) {
            char why[300];
            snprintf(why, sizeof why, "node %s could not load its layers", n->name);
            cl_pipe_fail(cl, n->pipe, why);
        }
        n->state = NODE_FAILED;
    } else {
        ST_WARN("cluster: node %s reported an unknown state '%s'; ignored", n->name, state);
        return;
    }
    cl_touch(cl);
}

void cl_pipes_tick(cl_state *cl)
{
    for (int i = 0; i < CL_MAX_PIPES; i++) {
        cl_pipe *p = &cl->pipes[i];
        if (p->phase == PIPE_SERVING && p->p && st_pipeline_error(p->p)) {
            char why[200];
            int e = st_pipeline_error(p->p);
            snprintf(why, sizeof why, "its data plane failed (%s)", st_strerror(e));
            cl_pipe_fail(cl, i, why);
        }
        if (p->phase == PIPE_DONE) {
            if (!p->released) /* it did not start: release its nodes */
                cl_pipe_fail(cl, i, p->error[0] ? p->error : "it did not start");
            if (p->has_thread) {
                pthread_mutex_unlock(&cl->mu); /* the thread is past its last lock, but never join under mu */
                pthread_join(p->thread, NULL);
                pthread_mutex_lock(&cl->mu);
            }
            memset(p, 0, sizeof *p);
            p->router_id = -1;
            cl->replan = 1;
            cl_touch(cl);
        }
    }
}

void cl_pipes_shutdown(cl_state *cl)
{
    for (int i = 0; i < CL_MAX_PIPES; i++) {
        cl_pipe *p = &cl->pipes[i];
        if (p->has_thread)
            pthread_join(p->thread, NULL);
        else if (p->back_l)
            st_listener_close(p->back_l);
        memset(p, 0, sizeof *p);
    }
}
