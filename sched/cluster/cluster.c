/* The cluster scheduler (cluster.h): lifecycle and the control thread.
 *
 * The control thread polls the control listener, a wake pipe (handshake
 * threads hand over authenticated connections through it) and every node's
 * connection, wakes at least every TICK_MS for timers (pings, evictions,
 * pipeline progress), and is the only writer of the node and pipeline
 * tables. Handshakes run on their own short-lived threads
 * (cluster_auth.c), so a slow or hostile peer never delays a heartbeat. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "common/st_common.h"
#include "engine/stage.h"
#include "common/trace.h"
#include "sched/cluster/clock_sync.h"
#include "sched/cluster/cluster_internal.h"

#define TICK_MS 100
#define SEND_TIMEOUT_MS 1000 /* a node that cannot take a small message in 1 s is failed */

st_cluster_config st_cluster_config_default(void)
{
    st_cluster_config c;
    memset(&c, 0, sizeof c);
    c.listen = "0.0.0.0:3003";
    c.n_nodes = 1;
    c.heartbeat_ms = 1000;
    c.heartbeat_timeout_ms = 5000;
    c.transport = "auto";
    c.act_dtype = ST_ACT_F32;
    c.announce = 1;
    c.batcher = st_batcher_config_default();
    return c;
}

void cl_touch(cl_state *cl) { cl->version++; }

/* This machine's identity as nodes report theirs: /etc/machine-id, else
 * the host name. */
static void read_host_id(char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen("/etc/machine-id", "r");
    if (f) {
        if (fgets(out, (int)cap, f))
            out[strcspn(out, " \r\n")] = 0;
        fclose(f);
    }
    if (!out[0] && gethostname(out, cap) != 0)
        snprintf(out, cap, "localhost");
    out[cap - 1] = 0;
}

/* Our own address on connection fd as the peer reached it (for links the
 * peer opens back to us): "127.0.0.1", "10.0.0.5", "[::1]"... */
static void local_host_of(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
        else if (ss.ss_family == AF_INET6) {
            char v6[INET6_ADDRSTRLEN];
            const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a))
                inet_ntop(AF_INET, &a->s6_addr[12], ip, sizeof ip);
            else if (inet_ntop(AF_INET6, a, v6, sizeof v6))
                snprintf(ip, sizeof ip, "[%.*s]", (int)sizeof ip - 3, v6);
        }
    }
    snprintf(out, cap, "%s", ip);
}

/* ---- nodes ------------------------------------------------------------------------ */

void cl_node_fail(cl_state *cl, int slot, node_state st, const char *why)
{
    cl_node *n = &cl->nodes[slot];
    if (n->state == NODE_FREE || (!n->conn && (n->state == NODE_FAILED || n->state == NODE_LEFT)))
        return;
    if (st == NODE_LEFT)
        ST_INFO("cluster: node %s (%.12s, %s) left", n->name, n->id, n->peer);
    else
        ST_WARN("cluster: node %s (%.12s, %s) failed: %s", n->name, n->id, n->peer, why);
    snprintf(n->error, sizeof n->error, "%s", why ? why : "");
    if (n->conn) {
        st_ctl_close(n->conn);
        n->conn = NULL;
    }
    n->state = st;
    n->gone_ns = st_now_ns();
    if (n->pipe >= 0) {
        char msg[320];
        snprintf(msg, sizeof msg, "stage %d (node %s) %s", n->stage + 1, n->name,
                 st == NODE_LEFT ? "left" : "failed");
        cl_pipe_fail(cl, n->pipe, msg);
    }
    n->pipe = -1;
    n->start = n->end = 0;
    cl->replan = 1;
    cl_touch(cl);
}

int cl_send(cl_state *cl, int slot, const char *json, size_t len)
{
    cl_node *n = &cl->nodes[slot];
    if (!n->conn)
        return ST_ECONN;
    int rc = st_ctl_send(n->conn, json, len, SEND_TIMEOUT_MS);
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "cannot send to it: %s", st_errmsg());
        cl_node_fail(cl, slot, NODE_FAILED, why);
    }
    return rc;
}

/* An authenticated connection: a new node record, or the same node_id
 * rejoining (its old record is replaced, so it is never listed twice). */
static void node_add(cl_state *cl, st_ctl_conn *c, const st_ctl_peer_info *info)
{
    int slot = -1, oldest = -1;
    for (int i = 0; i < CL_MAX_NODES; i++)
        if (cl->nodes[i].state != NODE_FREE && !strcmp(cl->nodes[i].id, info->node_id))
            slot = i;
    if (slot >= 0) {
        ST_INFO("cluster: node %.12s rejoined from %s; replacing its old record", info->node_id, st_ctl_peer(c));
        cl_node_fail(cl, slot, NODE_FAILED, "replaced by a new connection of the same node");
    } else {
        for (int i = 0; i < CL_MAX_NODES && slot < 0; i++)
            if (cl->nodes[i].state == NODE_FREE)
                slot = i;
        /* full: reuse the slot of the node gone longest ago */
        for (int i = 0; i < CL_MAX_NODES && slot < 0; i++) {
            cl_node *n = &cl->nodes[i];
            if ((n->state == NODE_FAILED || n->state == NODE_LEFT) &&
                (oldest < 0 || n->gone_ns < cl->nodes[oldest].gone_ns))
                oldest = i;
        }
        if (slot < 0)
            slot = oldest;
    }
    if (slot < 0) {
        ST_WARN("cluster: refused %s: too many nodes (%d)", st_ctl_peer(c), CL_MAX_NODES);
        st_ctl_send_simple(c, "error", "\"message\":\"the scheduler has too many nodes\"", 500);
        st_ctl_close(c);
        return;
    }
    cl_node *n = &cl->nodes[slot];
    memset(n, 0, sizeof *n);
    n->state = NODE_JOINING;
    snprintf(n->id, sizeof n->id, "%s", info->node_id);
    snprintf(n->name, sizeof n->name, "%s", info->name[0] ? info->name : info->node_id);
    snprintf(n->peer, sizeof n->peer, "%s", st_ctl_peer(c));
    local_host_of(st_ctl_fd(c), n->local_host, sizeof n->local_host);
    n->conn = c;
    n->pipe = -1;
    n->last_seen_ns = st_now_ns();
    n->last_ping_ns = 0; /* ping at once: its clock offset is known before its first spans arrive */
    ST_INFO("cluster: node %s (%.12s) joined from %s", n->name, n->id, n->peer);
    cl_touch(cl);
}

/* Trace processes of nodes: above any real process id (Linux's are < 2^22),
 * so a node never shares a track with the scheduler. */
#define NODE_TRACE_PID(slot) ((1 << 22) + 1 + (slot))

/* A node's trace records (ctl.h "trace"): validated, then kept by the
 * tracer shifted onto our clock by the node's offset estimate. Before the
 * first round trip there is none: they are kept unshifted, uncertainty
 * unknown (UINT64_MAX). A malformed message is logged and dropped: tracing
 * is not worth failing a node for. */
static void on_trace(cl_state *cl, int slot, const st_json *msg)
{
    cl_node *n = &cl->nodes[slot];
    st_ctl_trace t;
    if (st_ctl_trace_decode(msg, &t)) {
        ST_WARN("cluster: node %s: ignoring a malformed trace message: %s", n->name, st_errmsg());
        return;
    }
    int64_t off = 0;
    uint64_t unc = UINT64_MAX;
    if (st_clock_est_get(&n->clock, st_now_ns(), &off, &unc) != ST_OK) {
        off = 0;
        unc = UINT64_MAX;
    }
    int pid = NODE_TRACE_PID(slot);
    if (st_trace_import(t.recs, t.tids, t.n, pid, n->name, off, unc))
        ST_WARN("cluster: node %s: trace records not kept: %s", n->name, st_errmsg());
    else
        for (int i = 0; i < t.n_threads; i++)
            st_trace_import_thread(pid, t.thread_tid[i], t.thread_name[i]);
    st_ctl_trace_free(&t);
}

static void on_message(cl_state *cl, int slot, const st_json *msg)
{
    cl_node *n = &cl->nodes[slot];
    const char *type = st_json_get_str(msg, "type", "");
    n->last_seen_ns = st_now_ns();
    if (!strcmp(type, "ping")) {
        char members[96];
        snprintf(members, sizeof members, "\"t\":%.0f,\"t_peer\":%llu", st_json_get_num(msg, "t", 0),
                 (unsigned long long)st_now_ns());
        if (n->conn && st_ctl_send_simple(n->conn, "pong", members, SEND_TIMEOUT_MS))
            cl_node_fail(cl, slot, NODE_FAILED, "cannot answer its ping");
    } else if (!strcmp(type, "pong")) {
        /* t: our ping's send time echoed; t_peer: the node's clock when it answered (clock_sync.h) */
        uint64_t now = st_now_ns();
        double t = st_json_get_num(msg, "t", 0), tp = st_json_get_num(msg, "t_peer", 0);
        if (t > 0 && t <= (double)now) {
            n->rtt_ms = ((double)now - t) / 1e6;
            if (tp > 0 && tp < 9.2e18)
                (void)st_clock_est_add(&n->clock, (uint64_t)t, (uint64_t)tp, now);
        }
    } else if (!strcmp(type, "trace")) {
        on_trace(cl, slot, msg);
    } else if (!strcmp(type, "hw")) {
        st_node_hw hw;
        if (st_ctl_hw_decode(msg, &hw)) {
            char why[300];
            snprintf(why, sizeof why, "bad hardware report: %s", st_errmsg());
            if (n->conn)
                st_ctl_send_simple(n->conn, "error", "\"message\":\"bad hardware report\"", 200);
            cl_node_fail(cl, slot, NODE_FAILED, why);
            return;
        }
        n->hw = hw;
        n->has_hw = 1;
        if (n->state == NODE_JOINING)
            n->state = NODE_STANDBY;
        ST_INFO("cluster: node %s: %s, %.2f GB usable of %.2f GB, %.1f GFLOP/s, %.1f GB/s%s", n->name, hw.device,
                (double)hw.usable_bytes / 1e9, (double)hw.memory_bytes / 1e9, hw.flops / 1e9, hw.mem_bw / 1e9,
                hw.start_layer >= 0 ? " (fixed layer range)" : "");
        cl->replan = 1;
        cl_touch(cl);
    } else if (!strcmp(type, "state")) {
        int64_t ep = 0;
        const st_json *e = st_json_get(msg, "epoch");
        if (!e || !st_json_as_int(e, 0, INT64_MAX, &ep)) {
            ST_WARN("cluster: node %s sent a state without a valid epoch; ignored", n->name);
            return;
        }
        cl_node_state(cl, slot, st_json_get_str(msg, "state", ""), (uint64_t)ep, st_json_get_str(msg, "error", ""));
    } else if (!strcmp(type, "leave")) {
        cl_node_fail(cl, slot, NODE_LEFT, "left");
    } else if (!strcmp(type, "error")) {
        char why[300];
        snprintf(why, sizeof why, "it reported: %s", st_json_get_str(msg, "message", "(no message)"));
        cl_node_fail(cl, slot, NODE_FAILED, why);
    } else {
        ST_DEBUG("cluster: node %s: ignoring a '%s' message", n->name, type);
    }
}

/* Read every whole message buffered on node slot's connection. */
static void node_read(cl_state *cl, int slot)
{
    for (int k = 0; k < 64 && cl->nodes[slot].conn; k++) {
        st_json *msg = NULL;
        int rc = st_ctl_recv(cl->nodes[slot].conn, 0, &msg);
        if (rc == ST_ETIMEDOUT)
            return;
        if (rc) {
            char why[300];
            snprintf(why, sizeof why, "%s: %s", rc == ST_ECONN ? "control connection lost" : "protocol error",
                     st_errmsg());
            cl_node_fail(cl, slot, NODE_FAILED, why);
            return;
        }
        on_message(cl, slot, msg);
        st_json_free(msg);
        if (!cl->nodes[slot].conn || !st_ctl_pending(cl->nodes[slot].conn))
            return;
    }
}

/* Pings, evictions, forgetting long-gone nodes. */
static void node_timers(cl_state *cl)
{
    uint64_t now = st_now_ns();
    uint64_t hb = (uint64_t)cl->cfg.heartbeat_ms * 1000000ull, to = (uint64_t)cl->cfg.heartbeat_timeout_ms * 1000000ull;
    for (int i = 0; i < CL_MAX_NODES; i++) {
        cl_node *n = &cl->nodes[i];
        if (n->state == NODE_FREE)
            continue;
        if (!n->conn) {
            if (now - n->gone_ns > (uint64_t)CL_GONE_KEEP_MS * 1000000ull) {
                n->state = NODE_FREE;
                cl_touch(cl);
            }
            continue;
        }
        if (now - n->last_seen_ns > to) {
            char why[96];
            snprintf(why, sizeof why, "silent for %.1f s: evicted", (double)(now - n->last_seen_ns) / 1e9);
            cl_node_fail(cl, i, NODE_FAILED, why);
            continue;
        }
        if (now - n->last_ping_ns >= hb) {
            char t[32];
            snprintf(t, sizeof t, "\"t\":%llu", (unsigned long long)now);
            n->last_ping_ns = now;
            if (st_ctl_send_simple(n->conn, "ping", t, SEND_TIMEOUT_MS))
                cl_node_fail(cl, i, NODE_FAILED, "cannot send it a ping");
        }
    }
}

static void take_authed(cl_state *cl)
{
    char buf[64];
    while (read(cl->wake[0], buf, sizeof buf) > 0) {
    }
    for (int i = 0; i < cl->n_authed; i++)
        node_add(cl, cl->authed[i].conn, &cl->authed[i].info);
    cl->n_authed = 0;
}


/* Tell `strait join` without -s where we are: a UDP announcement every
 * second (ctl.h; it carries a hash of the token, never the token). */
static void announce(cl_state *cl)
{
    uint64_t now = st_now_ns();
    if (cl->announce_fd < 0 || now - cl->announced_ns < 1000000000ull)
        return;
    cl->announced_ns = now;
    if (st_ctl_announce_send(cl->announce_fd, cl->bound, cl->token))
        ST_DEBUG("cluster: announcement not sent: %s", st_errmsg());
}

static void *control_main(void *arg)
{
    cl_state *cl = arg;
    struct pollfd pf[CL_MAX_NODES + 2];
    int slot_of[CL_MAX_NODES + 2];
    while (!cl->stop) {
        int np = 0;
        pf[np].fd = cl->listen_fd, pf[np].events = POLLIN, slot_of[np++] = -1;
        pf[np].fd = cl->wake[0], pf[np].events = POLLIN, slot_of[np++] = -2;
        pthread_mutex_lock(&cl->mu);
        for (int i = 0; i < CL_MAX_NODES; i++)
            if (cl->nodes[i].conn) {
                pf[np].fd = st_ctl_fd(cl->nodes[i].conn), pf[np].events = POLLIN;
                slot_of[np++] = i;
            }
        pthread_mutex_unlock(&cl->mu);
        for (int i = 0; i < np; i++)
            pf[i].revents = 0;
        int r = poll(pf, (nfds_t)np, TICK_MS);
        if (r < 0 && errno != EINTR) {
            ST_ERROR("cluster: poll failed: %s", strerror(errno));
            break;
        }
        if (r > 0 && (pf[0].revents & POLLIN)) {
            st_ctl_conn *c = NULL;
            if (st_ctl_accept(cl->listen_fd, 0, &c) == ST_OK)
                cl_auth_spawn(cl, c);
        }
        pthread_mutex_lock(&cl->mu);
        if (r > 0 && (pf[1].revents & POLLIN))
            take_authed(cl);
        for (int i = 2; r > 0 && i < np; i++)
            if (pf[i].revents && cl->nodes[slot_of[i]].conn &&
                st_ctl_fd(cl->nodes[slot_of[i]].conn) == pf[i].fd)
                node_read(cl, slot_of[i]);
        node_timers(cl);
        announce(cl);
        cl_pipes_tick(cl);
        if (cl->replan) {
            cl->replan = 0;
            cl_plan(cl);
        }
        pthread_mutex_unlock(&cl->mu);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int st_cluster_create(const st_cluster_config *c, st_model *m, st_router *r, st_cluster **out)
{
    *out = NULL;
    if (!c || !m || !r)
        return st_err(ST_EINVAL, "cluster: config, model and router are required");
    if (!c->token || !c->token[0])
        return st_err(ST_EINVAL, "cluster: a cluster token is required");
    if (!c->model_path || !c->model_path[0])
        return st_err(ST_EINVAL, "cluster: model_path is required");
    if (c->n_nodes < 1 || c->n_nodes > CL_MAX_NODES)
        return st_err(ST_EINVAL, "cluster: n_nodes %d is not within [1, %d]", c->n_nodes, CL_MAX_NODES);
    const char *tr = c->transport ? c->transport : "auto";
    if (strcmp(tr, "auto") && strcmp(tr, "tcp") && strcmp(tr, "shm"))
        return st_err(ST_EINVAL, "cluster: transport '%s' is not auto, tcp or shm", tr);
    if (!m->tok)
        return st_err(ST_EINVAL, "cluster: %s has no tokenizer", c->model_path);
    struct stat sb;
    if (stat(c->model_path, &sb) != 0)
        return st_err(ST_EIO, "cluster: cannot stat %s: %s", c->model_path, strerror(errno));

    cl_state *cl = st_xcalloc(1, sizeof *cl);
    cl->cfg = *c;
    cl->model = st_xstrdup(c->model ? c->model : c->model_path);
    cl->model_path = st_xstrdup(c->model_path);
    cl->token = st_xstrdup(c->token);
    cl->transport = st_xstrdup(tr);
    cl->cfg.model = cl->model;
    cl->cfg.model_path = cl->model_path;
    cl->cfg.token = cl->token;
    cl->cfg.transport = cl->transport;
    if (cl->cfg.heartbeat_ms <= 0)
        cl->cfg.heartbeat_ms = 1000;
    if (cl->cfg.heartbeat_timeout_ms <= cl->cfg.heartbeat_ms)
        cl->cfg.heartbeat_timeout_ms = 5 * cl->cfg.heartbeat_ms;
    cl->model_bytes = S_ISDIR(sb.st_mode) ? 0 : (uint64_t)sb.st_size;
    cl->m = m;
    cl->router = r;
    cl->listen_fd = -1;
    cl->announce_fd = -1;
    cl->wake[0] = cl->wake[1] = -1;
    read_host_id(cl->host_id, sizeof cl->host_id);
    pthread_mutex_init(&cl->mu, NULL);
    pthread_mutex_init(&cl->router_mu, NULL);
    pthread_cond_init(&cl->pending_cv, NULL);
    pthread_cond_init(&cl->pipe_cv, NULL);
    for (int i = 0; i < CL_MAX_NODES; i++)
        cl->nodes[i].pipe = -1;

    int ctx = c->batcher.max_ctx > 0 ? c->batcher.max_ctx : m->cfg.ctx_len;
    int rc = st_alloc_model_from_file(c->model_path, ctx, &cl->am);
    if (rc) {
        st_cluster_destroy(cl);
        return rc;
    }
    cl->am_ok = 1;
    if (pipe2(cl->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        st_cluster_destroy(cl);
        return st_err(ST_EIO, "cluster: pipe: %s", strerror(errno));
    }
    if ((rc = st_ctl_listen(c->listen ? c->listen : "0.0.0.0:3003", &cl->listen_fd, cl->bound, sizeof cl->bound))) {
        st_cluster_destroy(cl);
        return rc;
    }
    if (c->announce && st_ctl_announce_open(&cl->announce_fd)) { /* discovery is a convenience: -s still works */
        ST_WARN("cluster: no LAN announcements (nodes need -s): %s", st_errmsg());
        cl->announce_fd = -1;
    }
    /* the join command names a host nodes can reach: the advertised one, or ours */
    char host[256];
    if (c->advertise_host && c->advertise_host[0])
        snprintf(host, sizeof host, "%s", c->advertise_host);
    else if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    const char *port = strrchr(cl->bound, ':');
    cl->advertise = st_xstrdup(host);
    snprintf(cl->join_cmd, sizeof cl->join_cmd, "strait join -s %s:%s --cluster-token %s", host,
             port ? port + 1 : "3003", cl->token);
    *out = cl;
    return ST_OK;
}

int st_cluster_start(st_cluster *cl)
{
    if (cl->started)
        return ST_OK;
    if (pthread_create(&cl->thread, NULL, control_main, cl) != 0)
        return st_err(ST_ENOMEM, "cluster: cannot start the control thread");
    cl->started = 1;
    ST_INFO("cluster: control channel on %s; waiting for %d node%s", cl->bound, cl->cfg.n_nodes,
            cl->cfg.n_nodes == 1 ? "" : "s");
    return ST_OK;
}

void st_cluster_destroy(st_cluster *cl)
{
    if (!cl)
        return;
    cl->stop = 1;
    if (cl->started)
        pthread_join(cl->thread, NULL);
    if (cl->listen_fd >= 0)
        close(cl->listen_fd);
    if (cl->announce_fd >= 0)
        close(cl->announce_fd);
    cl->listen_fd = -1;
    cl_auth_wait_all(cl);
    /* release every node, then stop the pipelines (their threads remove them from the router) */
    pthread_mutex_lock(&cl->mu);
    for (int i = 0; i < cl->n_authed; i++)
        st_ctl_close(cl->authed[i].conn);
    cl->n_authed = 0;
    for (int i = 0; i < CL_MAX_NODES; i++) {
        cl_node *n = &cl->nodes[i];
        if (!n->conn)
            continue;
        if (n->pipe >= 0) {
            st_ctl_assign a;
            memset(&a, 0, sizeof a);
            a.epoch = ++cl->epoch;
            a.pipeline = -1;
            snprintf(a.model, sizeof a.model, "%s", cl->model);
            a.model_bytes = cl->model_bytes;
            size_t len;
            char *j = st_ctl_assign_encode(&a, &len);
            if (j)
                st_ctl_send(n->conn, j, len, 200);
            free(j);
        }
        st_ctl_close(n->conn);
        n->conn = NULL;
    }
    for (int i = 0; i < CL_MAX_PIPES; i++)
        if (cl->pipes[i].phase != PIPE_FREE && cl->pipes[i].phase < PIPE_FAILED)
            cl_pipe_fail(cl, i, "the scheduler is stopping");
    pthread_mutex_unlock(&cl->mu);
    cl_pipes_shutdown(cl);
    if (cl->wake[0] >= 0)
        close(cl->wake[0]);
    if (cl->wake[1] >= 0)
        close(cl->wake[1]);
    pthread_cond_destroy(&cl->pending_cv);
    pthread_cond_destroy(&cl->pipe_cv);
    pthread_mutex_destroy(&cl->router_mu);
    pthread_mutex_destroy(&cl->mu);
    free(cl->model);
    free(cl->model_path);
    free(cl->token);
    free(cl->transport);
    free(cl->advertise);
    free(cl);
}

const char *st_cluster_join_command(const st_cluster *cl) { return cl->join_cmd; }
const char *st_cluster_listen_addr(const st_cluster *cl) { return cl->bound; }

/* ---- setup from the web page ---------------------------------------------------------- */

int st_cluster_setup(st_cluster *cl, const char *model, int n_nodes)
{
    if (n_nodes < 1 || n_nodes > CL_MAX_NODES)
        return st_err(ST_EINVAL, "n_nodes must be between 1 and %d (got %d)", CL_MAX_NODES, n_nodes);
    if (model && *model) {
        const char *base = strrchr(cl->model_path, '/');
        base = base ? base + 1 : cl->model_path;
        if (strcmp(model, cl->model) && strcmp(model, cl->model_path) && strcmp(model, base))
            return st_err(ST_EINVAL,
                          "this scheduler serves %s; another model needs a restart: strait run -m %s -n %d", cl->model,
                          model, n_nodes);
    }
    pthread_mutex_lock(&cl->mu);
    if (cl->cfg.n_nodes != n_nodes) {
        ST_INFO("cluster: now %s %d node%s (set from the web page)", cl->planned_once ? "expecting" : "waiting for",
                n_nodes, n_nodes == 1 ? "" : "s");
        cl->cfg.n_nodes = n_nodes;
        cl->replan = 1; /* the first plan may be possible now */
        cl_touch(cl);
    }
    pthread_mutex_unlock(&cl->mu);
    return ST_OK;
}
