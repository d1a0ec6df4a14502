/* Handshakes off the control loop: each accepted control connection is
 * authenticated (st_ctl_handshake_sched) on a short-lived detached thread,
 * at most CL_MAX_PENDING at once, so that a slow or hostile peer costs one
 * thread for at most the handshake timeout and never delays the control
 * thread's heartbeats. Every refusal is logged with the peer's address and
 * the reason. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "sched/cluster/cluster_internal.h"

#define HANDSHAKE_IO_MS 3000 /* per message: a peer gets at most a few of these */

typedef struct auth_job {
    cl_state *cl;
    st_ctl_conn *conn;
    char peer[80];
} auth_job;

static void auth_done(cl_state *cl)
{
    pthread_mutex_lock(&cl->mu);
    cl->n_pending--;
    pthread_cond_broadcast(&cl->pending_cv);
    pthread_mutex_unlock(&cl->mu);
}

static void *auth_main(void *arg)
{
    auth_job *j = arg;
    cl_state *cl = j->cl;
    st_ctl_peer_info info;
    memset(&info, 0, sizeof info);
    int rc = st_ctl_handshake_sched(j->conn, cl->token, cl->cfg.heartbeat_ms, cl->cfg.heartbeat_timeout_ms,
                                    HANDSHAKE_IO_MS, &info);
    if (rc == ST_OK && strcmp(info.role, "worker") && info.role[0]) {
        ST_WARN("cluster: refused %s: role '%s' is not a worker", j->peer, info.role);
        st_ctl_send_simple(j->conn, "error", "\"message\":\"only workers may join\"", 200);
        rc = ST_EPROTO;
    } else if (rc) {
        ST_WARN("cluster: refused %s: %s", j->peer, st_errmsg());
    }
    if (rc) {
        st_ctl_close(j->conn);
        free(j);
        auth_done(cl);
        return NULL;
    }
    pthread_mutex_lock(&cl->mu);
    if (cl->stop || cl->n_authed >= CL_MAX_PENDING) {
        pthread_mutex_unlock(&cl->mu);
        ST_WARN("cluster: refused %s: the scheduler is %s", j->peer, cl->stop ? "stopping" : "busy");
        st_ctl_close(j->conn);
    } else {
        cl->authed[cl->n_authed].conn = j->conn;
        cl->authed[cl->n_authed].info = info;
        cl->n_authed++;
        pthread_mutex_unlock(&cl->mu);
        char one = 1;
        if (write(cl->wake[1], &one, 1) < 0) {
            /* the pipe is full: the control thread has a wake-up pending anyway */
        }
    }
    free(j);
    auth_done(cl);
    return NULL;
}

void cl_auth_spawn(cl_state *cl, st_ctl_conn *c)
{
    auth_job *j = st_xcalloc(1, sizeof *j);
    j->cl = cl;
    j->conn = c;
    snprintf(j->peer, sizeof j->peer, "%s", st_ctl_peer(c));
    pthread_mutex_lock(&cl->mu);
    int full = cl->n_pending >= CL_MAX_PENDING;
    if (!full)
        cl->n_pending++;
    pthread_mutex_unlock(&cl->mu);
    if (full) {
        ST_WARN("cluster: refused %s: %d handshakes already in progress", j->peer, CL_MAX_PENDING);
        st_ctl_close(c);
        free(j);
        return;
    }
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, auth_main, j) != 0) {
        ST_WARN("cluster: refused %s: cannot start a handshake thread", j->peer);
        st_ctl_close(c);
        free(j);
        auth_done(cl);
    }
    pthread_attr_destroy(&at);
}

/* Wait for every handshake thread to finish (each is bounded by its I/O
 * timeouts). */
void cl_auth_wait_all(cl_state *cl)
{
    pthread_mutex_lock(&cl->mu);
    while (cl->n_pending > 0)
        pthread_cond_wait(&cl->pending_cv, &cl->mu);
    pthread_mutex_unlock(&cl->mu);
}
