/* Private to the node (worker.c: control conversation; worker_stage.c: the
 * stage thread). The control thread owns the struct; the stage thread
 * reads its assignment and the listeners, and hands its outcome back
 * through the mailbox, so that only the control thread ever writes to the
 * scheduler connection. */
#ifndef ST_CLUSTER_WORKER_IMPL_H
#define ST_CLUSTER_WORKER_IMPL_H

#include <pthread.h>

#include "dataplane/transport.h"
#include "sched/cluster/worker.h"

typedef struct worker_stage {
    const st_worker_config *cfg;
    st_listener *tcp_l, *shm_l; /* the node's data-plane listeners (borrowed; shm_l may be NULL) */

    /* the assignment being served; valid while running */
    st_ctl_assign a;
    pthread_t th;
    int running;                /* a thread was started and not yet joined */
    volatile int stop;          /* set by the control thread: serve no more */

    /* the loaded shard, kept across assignments that ask for the same one */
    st_model *m;
    st_backend *be;
    char m_ref[512];
    int m_start, m_end;

    /* mailbox: the outcome of loading, for the control thread to send */
    pthread_mutex_t mu;
    int posted;                 /* 1: state/error/epoch below are unsent */
    char state[16];             /* "ready" | "failed" */
    char error[256];
    uint64_t epoch;
    int wake_fd;                /* eventfd written when something is posted */
} worker_stage;

int worker_stage_init(worker_stage *s, const st_worker_config *cfg, st_listener *tcp_l, st_listener *shm_l);
/* Start serving assignment a (start < end) on a new thread. The caller has
 * stopped the previous one and has told the scheduler "loading". */
int worker_stage_start(worker_stage *s, const st_ctl_assign *a);
/* Stop the stage thread if any and wait for it; the shard stays loaded. */
void worker_stage_stop(worker_stage *s);
/* Stop and unload everything; close the wake fd. */
void worker_stage_free(worker_stage *s);
/* Take what the stage thread posted: 1 and the members of a "state"
 * message ("\"state\":\"ready\",\"epoch\":3,...") in sb, or 0. */
int worker_stage_take(worker_stage *s, st_strbuf *sb);

#endif
