/* The node's control conversation (see worker.h and ctl.h): open the
 * data-plane listeners, join the scheduler, report the hardware, then
 * answer heartbeats and assignments until stopped; when the scheduler goes
 * away, stop serving and rejoin (same key, so the same node id) with
 * back-off. The stage itself runs on its own thread (worker_stage.c). */
#define _GNU_SOURCE
#include "sched/cluster/worker_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/st_common.h"
#include "common/trace.h"

#define IO_TIMEOUT_MS 5000    /* one control send, the handshake */
#define POLL_SLICE_MS 100     /* longest wait before looking at the stop flag */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define TRACE_SHIP_NS (200ull * 1000000ull) /* how often trace records go to the scheduler */
#define MAX_KEY_SLOTS 16      /* node.key, node-2.key, ...: nodes sharing a host and a home */

st_worker_config st_worker_config_default(void)
{
    return (st_worker_config){.host = "0.0.0.0", .port = 3000, .shm = 1, .start_layer = -1, .end_layer = -1,
                              .device = "auto", .reconnect = 1};
}

typedef struct worker {
    const st_worker_config *c;
    const volatile int *stop;
    st_ctl_identity id;
    int have_id, lock_fd;
    st_node_hw hw;
    st_listener *tcp_l, *shm_l;
    worker_stage stage;
    int have_stage;
} worker;

/* ---- identity -------------------------------------------------------------------- */
/* Lock path.lock for the life of the process: two nodes must not share an
 * identity (the scheduler would take them for one node). */
static int lock_key(const char *path, int *fd_out)
{
    char lp[4200];
    snprintf(lp, sizeof lp, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return st_err(ST_EIO, "worker: cannot open %s: %s", lp, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return st_err(ST_EAGAIN, "worker: the key %s is in use by another node on this host", path);
    }
    *fd_out = fd;
    return ST_OK;
}

static int load_identity(worker *w)
{
    const char *kf = w->c->key_file;
    if (kf && *kf) {
        int rc = lock_key(kf, &w->lock_fd);
        if (!rc)
            rc = st_ctl_identity_load(kf, &w->id);
        return rc;
    }
    char dir[4096], path[4200];
    const char *sh = getenv("STRAIT_HOME"), *home = getenv("HOME");
    if (sh && *sh)
        snprintf(dir, sizeof dir, "%s", sh);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/strait", home);
    else
        return st_err(ST_ENOENT, "worker: no home directory for the node key: set STRAIT_HOME or --key-file");
    /* create the directory and its parents */
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || !*p) {
            char ch = *p;
            *p = 0;
            mkdir(dir, 0700);
            *p = ch;
            if (!ch)
                break;
        }
    }
    /* the first identity no other node of this host holds */
    for (int slot = 1; slot <= MAX_KEY_SLOTS; slot++) {
        if (slot == 1)
            snprintf(path, sizeof path, "%s/node.key", dir);
        else
            snprintf(path, sizeof path, "%s/node-%d.key", dir, slot);
        int rc = lock_key(path, &w->lock_fd);
        if (rc == ST_EAGAIN)
            continue;
        if (rc)
            return rc;
        return st_ctl_identity_load(path, &w->id);
    }
    return st_err(ST_EAGAIN, "worker: all %d node keys in %s are in use by nodes on this host", MAX_KEY_SLOTS, dir);
}

/* ---- listeners and endpoints ------------------------------------------------------- */
static int is_wildcard(const char *h) { return !h || !*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "::"); }

static int open_listeners(worker *w)
{
    const st_worker_config *c = w->c;
    char addr[256];
    const char *h = c->host && *c->host ? c->host : "0.0.0.0";
    snprintf(addr, sizeof addr, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, c->port);
    /* both listeners demand the link key of the cluster token: a peer that
     * does not hold the token cannot feed this stage activations */
    st_link_opts o;
    st_link_opts_keyed(&o, "tcp", c->token);
    int rc = st_listen("tcp", addr, &o, &w->tcp_l);
    if (rc)
        return st_err(rc, "worker: cannot listen on tcp %s: %s", addr, st_errmsg());
    if (c->shm) {
        snprintf(addr, sizeof addr, "@strait-%.16s-%d", w->id.node_id, (int)getpid());
        st_link_opts_keyed(&o, "shm", c->token);
        if (st_listen("shm", addr, &o, &w->shm_l)) {
            ST_WARN("worker: no shared-memory listener (%s); same-host peers use tcp", st_errmsg());
            w->shm_l = NULL;
        }
    }
    ST_INFO("node %s: data plane on tcp %s%s%s", w->id.node_id, st_listener_addr(w->tcp_l),
            w->shm_l ? ", shm " : "", w->shm_l ? st_listener_addr(w->shm_l) : "");
    return ST_OK;
}

/* The local address of the control socket: the one the scheduler (and so,
 * most likely, the other nodes) can reach us at. */
static int local_host(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap) ? 0 : -1;
    if (ss.ss_family == AF_INET6) {
        struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            return inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap) ? 0 : -1;
        return inet_ntop(AF_INET6, a, out, (socklen_t)cap) ? 0 : -1;
    }
    return -1;
}

/* hw.endpoints for this connection: tcp at the advertised host, shm as bound. */
static int fill_endpoints(worker *w, st_ctl_conn *conn)
{
    const st_worker_config *c = w->c;
    char host[128];
    if (c->advertise_host && *c->advertise_host)
        snprintf(host, sizeof host, "%s", c->advertise_host);
    else if (!is_wildcard(c->host))
        snprintf(host, sizeof host, "%s", c->host);
    else if (local_host(st_ctl_fd(conn), host, sizeof host) != 0)
        return st_err(ST_EIO, "worker: cannot tell the local address of the scheduler connection; use "
                              "--advertise-host");
    const char *bound = st_listener_addr(w->tcp_l), *port = strrchr(bound, ':');
    st_node_hw *hw = &w->hw;
    hw->n_endpoints = 0;
    st_ctl_endpoint *e = &hw->endpoints[hw->n_endpoints++];
    snprintf(e->transport, sizeof e->transport, "tcp");
    snprintf(e->addr, sizeof e->addr, strchr(host, ':') ? "[%s]%s" : "%s%s", host, port ? port : ":0");
    if (w->shm_l) {
        e = &hw->endpoints[hw->n_endpoints++];
        snprintf(e->transport, sizeof e->transport, "shm");
        snprintf(e->addr, sizeof e->addr, "%s", st_listener_addr(w->shm_l));
    }
    return ST_OK;
}

/* ---- the conversation -------------------------------------------------------------- */
static int send_state(st_ctl_conn *conn, const char *members)
{
    return st_ctl_send_simple(conn, "state", members, IO_TIMEOUT_MS);
}

static int on_assign(worker *w, st_ctl_conn *conn, const st_json *msg)
{
    st_ctl_assign a;
    if (st_ctl_assign_decode(msg, &a) != ST_OK) {
        ST_WARN("worker: ignoring a malformed assignment: %s", st_errmsg());
        return ST_OK;
    }
    worker_stage_stop(&w->stage);
    if (a.start >= a.end) {
        ST_INFO("node %s: released (epoch %llu): holding no layers", w->hw.name, (unsigned long long)a.epoch);
        return ST_OK;
    }
    ST_INFO("node %s: assigned layers %d..%d (pipeline %d, stage %d of %d, epoch %llu)", w->hw.name, a.start, a.end,
            a.pipeline, a.stage + 1, a.n_stages, (unsigned long long)a.epoch);
    char members[64];
    snprintf(members, sizeof members, "\"state\":\"loading\",\"epoch\":%llu", (unsigned long long)a.epoch);
    int rc = send_state(conn, members);
    if (rc)
        return rc;
    if ((rc = worker_stage_start(&w->stage, &a))) {
        st_strbuf sb;
        st_sb_init(&sb);
        st_sb_printf(&sb, "\"state\":\"failed\",\"epoch\":%llu,\"error\":", (unsigned long long)a.epoch);
        st_sb_json_str(&sb, st_errmsg(), strlen(st_errmsg()));
        rc = send_state(conn, sb.buf);
        st_sb_free(&sb);
    }
    return rc;
}

/* Handle one message; ST_ECONN ends the conversation. */
static int on_message(worker *w, st_ctl_conn *conn, const st_json *msg)
{
    const char *type = st_json_get_str(msg, "type", "");
    if (!strcmp(type, "ping")) {
        char members[96];
        snprintf(members, sizeof members, "\"t\":%.0f,\"t_peer\":%llu", st_json_get_num(msg, "t", 0),
                 (unsigned long long)st_now_ns());
        return st_ctl_send_simple(conn, "pong", members, IO_TIMEOUT_MS);
    }
    if (!strcmp(type, "pong")) {
        double t = st_json_get_num(msg, "t", 0);
        if (t > 0)
            ST_DEBUG("scheduler rtt %.2f ms", ((double)st_now_ns() - t) * 1e-6);
        return ST_OK;
    }
    if (!strcmp(type, "assign"))
        return on_assign(w, conn, msg);
    if (!strcmp(type, "error")) {
        ST_ERROR("scheduler: %s", st_json_get_str(msg, "message", "(no message)"));
        return st_err(ST_ECONN, "the scheduler reported an error: %s", st_json_get_str(msg, "message", "?"));
    }
    ST_DEBUG("worker: ignoring a '%s' message from the scheduler", type);
    return ST_OK;
}

/* Ship the trace records made since the last call ({"type":"trace"}, ctl.h)
 * in messages of at most ST_CTL_TRACE_MAX_EVENTS, with the names of this
 * process's tracks. Records exist only for traced steps (every recording
 * helper skips trace id 0), so an untraced node sends nothing. */
static int ship_trace(worker *w, st_ctl_conn *conn)
{
    enum { CAP = ST_CTL_TRACE_MAX_EVENTS };
    static __thread st_trace_rec buf[CAP]; /* 128 KiB: off the stack, one control thread per node */
    static __thread uint32_t tids[CAP];
    int rc = ST_OK;
    for (;;) {
        size_t n = st_trace_take_new(buf, tids, CAP);
        if (!n)
            break;
        uint32_t th_tid[ST_CTL_TRACE_MAX_THREADS];
        char th_name[ST_CTL_TRACE_MAX_THREADS][48];
        int n_th = st_trace_threads(th_tid, th_name, ST_CTL_TRACE_MAX_THREADS);
        size_t len;
        char *j = st_ctl_trace_encode(w->hw.name, buf, tids, n, th_tid, (const char(*)[48])th_name, n_th, &len);
        if (j)
            rc = st_ctl_send(conn, j, len, IO_TIMEOUT_MS);
        free(j);
        if (rc || n < CAP)
            break;
    }
    return rc;
}

/* Talk to a joined scheduler until *stop (leave, ST_OK) or it is gone (ST_ECONN). */
static int converse(worker *w, st_ctl_conn *conn, int hb_ms, int timeout_ms)
{
    if (hb_ms <= 0)
        hb_ms = 1000;
    if (timeout_ms <= hb_ms)
        timeout_ms = 5 * hb_ms;
    uint64_t now = st_now_ns(), last_rx = now, next_ping = now + (uint64_t)hb_ms * 1000000ull;
    uint64_t next_ship = now + TRACE_SHIP_NS;
    st_strbuf sb;
    st_sb_init(&sb);
    int rc = ST_OK;
    while (!rc) {
        if (*w->stop) {
            (void)ship_trace(w, conn); /* what the last steps recorded, best effort like leave */
            st_ctl_send_simple(conn, "leave", NULL, 1000); /* best effort: the scheduler also times us out */
            ST_INFO("node %s: left the cluster", w->hw.name);
            break;
        }
        sb.len = 0;
        if (worker_stage_take(&w->stage, &sb) && (rc = send_state(conn, sb.buf)))
            break;
        now = st_now_ns();
        if (!st_ctl_pending(conn)) {
            int wait_ms = next_ping > now ? (int)((next_ping - now) / 1000000ull) + 1 : 0;
            struct pollfd pf[2] = {{.fd = st_ctl_fd(conn), .events = POLLIN}, {.fd = w->stage.wake_fd, .events = POLLIN}};
            poll(pf, 2, ST_MIN(wait_ms, POLL_SLICE_MS));
        }
        st_json *msg = NULL;
        int r = st_ctl_recv(conn, 0, &msg);
        now = st_now_ns();
        if (r == ST_OK) {
            last_rx = now;
            rc = on_message(w, conn, msg);
            st_json_free(msg);
            continue;
        }
        if (r != ST_ETIMEDOUT && r != ST_EAGAIN) {
            rc = st_err(ST_ECONN, "scheduler connection: %s", st_errmsg());
            break;
        }
        if (now >= next_ship) {
            if ((rc = ship_trace(w, conn)))
                break;
            next_ship = now + TRACE_SHIP_NS;
        }
        if (now >= next_ping) {
            char members[48];
            snprintf(members, sizeof members, "\"t\":%llu", (unsigned long long)now);
            if ((rc = st_ctl_send_simple(conn, "ping", members, IO_TIMEOUT_MS)))
                break;
            next_ping = now + (uint64_t)hb_ms * 1000000ull;
        }
        if (now - last_rx > (uint64_t)timeout_ms * 1000000ull)
            rc = st_err(ST_ECONN, "the scheduler has been silent for %d ms", timeout_ms);
    }
    st_sb_free(&sb);
    if (rc)
        rc = ST_ECONN;
    return rc;
}

/* Wait ms (or until stop), in slices: a back-off between attempts, not a synchronization. */
static void pause_ms(const volatile int *stop, int ms)
{
    uint64_t end = st_now_ns() + (uint64_t)ms * 1000000ull;
    while (!*stop && st_now_ns() < end)
        poll(NULL, 0, ST_MIN(POLL_SLICE_MS, ms));
}

/* One attempt: find and join the scheduler and talk to it. ST_OK when
 * stopped, ST_EPROTO when refused, other errors when it could not be
 * reached or was lost (*joined says whether it got as far as welcome). */
static int session(worker *w, int *joined)
{
    const st_worker_config *c = w->c;
    char addr[256];
    *joined = 0;
    if (c->scheduler && *c->scheduler) {
        snprintf(addr, sizeof addr, "%s", c->scheduler);
    } else {
        int rc = st_ctl_discover(c->token, 2000, addr, sizeof addr);
        if (rc)
            return rc;
        ST_INFO("node %s: found the scheduler at %s", w->hw.name, addr);
    }
    st_ctl_conn *conn;
    int rc = st_ctl_connect(addr, IO_TIMEOUT_MS, &conn);
    if (rc)
        return rc;
    st_ctl_peer_info peer;
    rc = st_ctl_handshake_node(conn, c->token, &w->id, w->hw.name, IO_TIMEOUT_MS, &peer);
    if (rc) {
        st_ctl_close(conn);
        return rc;
    }
    *joined = 1;
    char *hw = NULL;
    size_t len;
    if (!(rc = fill_endpoints(w, conn)) && (hw = st_ctl_hw_encode(&w->hw, &len)) != NULL)
        rc = st_ctl_send(conn, hw, len, IO_TIMEOUT_MS);
    free(hw);
    if (!rc) {
        ST_INFO("node %s (%s): joined the scheduler at %s; data plane at %s", w->hw.name, w->id.node_id, addr,
                w->hw.endpoints[0].addr);
        rc = converse(w, conn, peer.heartbeat_ms, peer.timeout_ms);
    }
    worker_stage_stop(&w->stage); /* the pipeline around this node is gone with the scheduler */
    st_ctl_close(conn);
    return rc;
}

int st_worker_run(const st_worker_config *c, const volatile int *stop)
{
    if (!c->token || !*c->token)
        return st_err(ST_EINVAL, "worker: a cluster token is required (--cluster-token or STRAIT_CLUSTER_TOKEN)");
    if (!c->load || !c->unload)
        return st_err(ST_EINVAL, "worker: no shard loader configured");
    if (c->port < 0 || c->port > 65535)
        return st_err(ST_EINVAL, "worker: data-plane port %d is out of range", c->port);
    worker w = {.c = c, .stop = stop, .lock_fd = -1};
    int rc = load_identity(&w);
    if (rc)
        goto out;
    w.have_id = 1;
    if ((rc = st_worker_probe(c, &w.hw)) || (rc = open_listeners(&w)))
        goto out;
    if ((rc = worker_stage_init(&w.stage, c, w.tcp_l, w.shm_l)))
        goto out;
    w.have_stage = 1;
    int backoff = BACKOFF_MIN_MS, warned = 0;
    while (!*stop) {
        int joined;
        rc = session(&w, &joined);
        if (rc == ST_OK)
            break;
        if (rc == ST_EPROTO && !joined) {
            rc = st_err(ST_EPROTO, "the scheduler refused this node: %s", st_errmsg());
            break;
        }
        if (!c->reconnect)
            break;
        if (joined) {
            ST_WARN("node %s: lost the scheduler (%s); rejoining", w.hw.name, st_errmsg());
            backoff = BACKOFF_MIN_MS;
            warned = 0;
        } else if (!warned++) {
            ST_WARN("node %s: cannot join the scheduler yet (%s); retrying", w.hw.name, st_errmsg());
        } else {
            ST_DEBUG("node %s: join attempt failed: %s", w.hw.name, st_errmsg());
        }
        pause_ms(stop, backoff);
        backoff = ST_MIN(backoff * 2, BACKOFF_MAX_MS);
        rc = ST_OK;
    }
out:;
    char why[512];
    snprintf(why, sizeof why, "%s", st_errmsg()); /* the teardown below may overwrite it */
    if (w.have_stage)
        worker_stage_free(&w.stage);
    st_listener_close(w.shm_l);
    st_listener_close(w.tcp_l);
    if (w.have_id)
        st_ctl_identity_free(&w.id);
    if (w.lock_fd >= 0)
        close(w.lock_fd);
    return rc ? st_err(rc, "%s", why) : ST_OK;
}
