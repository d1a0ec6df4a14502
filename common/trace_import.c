/* Records made on other nodes, kept by the scheduler for its exports (see
 * trace.h, "cross-node"). A ring of ST_TRACE_IMPORT_MAX records under one
 * mutex: imports come from the cluster's control thread a few times a
 * second per node, exports from /debug/trace; neither is a hot path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_common.h"
#include "trace_internal.h"

#define IMPORT_THREADS 32 /* named tracks per node */

typedef struct imp_node {
    int pid;                  /* 0: slot free */
    char name[64];
    int64_t offset_ns;        /* node clock - ours, as of its last import */
    uint64_t uncertainty_ns;
    int n_threads;
    uint32_t tid[IMPORT_THREADS];
    char thread[IMPORT_THREADS][48];
} imp_node;

typedef struct imp_rec {
    st_trace_rec r;           /* on our clock */
    uint32_t tid;
    int pid;
} imp_rec;

static struct {
    pthread_mutex_t mu;
    imp_rec *ring;            /* (ST_TRACE_IMPORT_MAX,), allocated on the first import */
    uint64_t head;            /* records ever imported; the newest min(head, MAX) are held */
    imp_node nodes[ST_TRACE_IMPORT_NODES];
} im = {.mu = PTHREAD_MUTEX_INITIALIZER};

static imp_node *node_of(int pid)
{
    for (int i = 0; i < ST_TRACE_IMPORT_NODES; i++)
        if (im.nodes[i].pid == pid)
            return &im.nodes[i];
    return NULL;
}

/* The pids still owning a held record, so that a full node table can reuse
 * the slot of a node whose records have all been dropped. */
static int pid_held(int pid)
{
    uint64_t n = im.head < ST_TRACE_IMPORT_MAX ? im.head : ST_TRACE_IMPORT_MAX;
    for (uint64_t i = 0; i < n; i++)
        if (im.ring[i].pid == pid)
            return 1;
    return 0;
}

int st_trace_import(const st_trace_rec *recs, const uint32_t *tids, size_t n, int pid, const char *node_name,
                    int64_t offset_ns, uint64_t uncertainty_ns)
{
    if (!node_name || pid <= 0 || (n && !recs))
        return st_err(ST_EINVAL, "trace import: need records, a node name and a pid > 0");
    pthread_mutex_lock(&st_trace_g.mu);
    int local = st_trace_g.node_pid;
    pthread_mutex_unlock(&st_trace_g.mu);
    if (pid == local)
        return st_err(ST_EINVAL, "trace import: pid %d is this process's own", pid);
    pthread_mutex_lock(&im.mu);
    imp_node *nd = node_of(pid);
    if (!nd)
        nd = node_of(0);
    for (int i = 0; !nd && i < ST_TRACE_IMPORT_NODES; i++)
        if (!pid_held(im.nodes[i].pid))
            nd = &im.nodes[i];
    if (!nd) {
        pthread_mutex_unlock(&im.mu);
        return st_err(ST_ENOMEM, "trace import: records of %d other nodes are held already", ST_TRACE_IMPORT_NODES);
    }
    if (nd->pid != pid) {
        memset(nd, 0, sizeof *nd);
        nd->pid = pid;
    }
    snprintf(nd->name, sizeof nd->name, "%s", node_name);
    nd->offset_ns = offset_ns;
    nd->uncertainty_ns = uncertainty_ns;
    if (n && !im.ring)
        im.ring = st_xmalloc(ST_TRACE_IMPORT_MAX * sizeof *im.ring);
    for (size_t i = 0; i < n; i++) {
        imp_rec *d = &im.ring[im.head++ % ST_TRACE_IMPORT_MAX];
        d->r = recs[i];
        /* onto our clock; a record that would precede our clock's zero is pinned there */
        int64_t ts = (int64_t)(recs[i].ts_ns > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : recs[i].ts_ns);
        d->r.ts_ns = offset_ns > 0 && ts < offset_ns ? 0
                     : offset_ns < 0 && ts > INT64_MAX + offset_ns ? (uint64_t)INT64_MAX
                                                                   : (uint64_t)(ts - offset_ns);
        d->tid = tids ? tids[i] : 1;
        d->pid = pid;
    }
    pthread_mutex_unlock(&im.mu);
    return ST_OK;
}

void st_trace_import_thread(int pid, uint32_t tid, const char *name)
{
    pthread_mutex_lock(&im.mu);
    imp_node *nd = pid > 0 ? node_of(pid) : NULL;
    if (nd && name) {
        int k = 0;
        while (k < nd->n_threads && nd->tid[k] != tid)
            k++;
        if (k == nd->n_threads && k < IMPORT_THREADS)
            nd->n_threads++;
        if (k < nd->n_threads) {
            nd->tid[k] = tid;
            snprintf(nd->thread[k], sizeof nd->thread[k], "%s", name);
        }
    }
    pthread_mutex_unlock(&im.mu);
}

size_t st_trace_imported(void)
{
    pthread_mutex_lock(&im.mu);
    size_t n = (size_t)(im.head < ST_TRACE_IMPORT_MAX ? im.head : ST_TRACE_IMPORT_MAX);
    pthread_mutex_unlock(&im.mu);
    return n;
}

static int cmp_ts(const void *a, const void *b)
{
    const imp_rec *x = a, *y = b;
    if (x->r.ts_ns != y->r.ts_ns)
        return x->r.ts_ns < y->r.ts_ns ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid; /* qsort is not stable: ties are ordered by node */
}

void trace_import_snapshot(st_trace_rec **recs, uint32_t **tids, int **pids, size_t *n_out)
{
    pthread_mutex_lock(&im.mu);
    size_t n = (size_t)(im.head < ST_TRACE_IMPORT_MAX ? im.head : ST_TRACE_IMPORT_MAX);
    imp_rec *tmp = st_xmalloc((n + 1) * sizeof *tmp);
    if (n)
        memcpy(tmp, im.ring, n * sizeof *tmp);
    pthread_mutex_unlock(&im.mu);
    qsort(tmp, n, sizeof *tmp, cmp_ts);
    *recs = st_xmalloc((n + 1) * sizeof **recs);
    *tids = st_xmalloc((n + 1) * sizeof **tids);
    *pids = st_xmalloc((n + 1) * sizeof **pids);
    for (size_t i = 0; i < n; i++) {
        (*recs)[i] = tmp[i].r;
        (*tids)[i] = tmp[i].tid;
        (*pids)[i] = tmp[i].pid;
    }
    free(tmp);
    *n_out = n;
}

void trace_import_meta_json(st_strbuf *sb)
{
    pthread_mutex_lock(&im.mu);
    for (int i = 0; i < ST_TRACE_IMPORT_NODES; i++) {
        const imp_node *nd = &im.nodes[i];
        if (!nd->pid)
            continue;
        st_sb_printf(sb, ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":",
                     nd->pid);
        st_sb_json_str(sb, nd->name, strlen(nd->name));
        if (nd->uncertainty_ns == UINT64_MAX) /* no estimate yet */
            st_sb_puts(sb, ",\"clock_offset_us\":null,\"clock_uncertainty_us\":null}}");
        else
            st_sb_printf(sb, ",\"clock_offset_us\":%.3f,\"clock_uncertainty_us\":%.3f}}",
                         (double)nd->offset_ns * 1e-3, (double)nd->uncertainty_ns * 1e-3);
        for (int k = 0; k < nd->n_threads; k++) {
            st_sb_printf(sb, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":",
                         nd->pid, nd->tid[k]);
            st_sb_json_str(sb, nd->thread[k], strlen(nd->thread[k]));
            st_sb_puts(sb, "}}");
        }
    }
    pthread_mutex_unlock(&im.mu);
}

void trace_import_reset(void)
{
    pthread_mutex_lock(&im.mu);
    im.head = 0;
    memset(im.nodes, 0, sizeof im.nodes);
    pthread_mutex_unlock(&im.mu);
}
