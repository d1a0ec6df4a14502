/* Node clock offsets from ping/pong round trips (see clock_sync.h). */
#include "sched/cluster/clock_sync.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/st_common.h"

int st_clock_est_add(st_clock_est *e, uint64_t t0, uint64_t t1, uint64_t t2)
{
    if (!t0 || t2 < t0 || !t1 || t1 > (uint64_t)INT64_MAX || t2 > (uint64_t)INT64_MAX)
        return st_err(ST_EINVAL, "clock sample t0 %llu, t1 %llu, t2 %llu: need 0 < t0 <= t2 and t1 > 0",
                      (unsigned long long)t0, (unsigned long long)t1, (unsigned long long)t2);
    unsigned i = e->next++ % ST_CLOCK_SAMPLES;
    /* midpoint without overflow: t0 + (t2 - t0) / 2 */
    uint64_t mid = t0 + (t2 - t0) / 2;
    e->t2[i] = t2;
    e->rtt[i] = t2 - t0;
    e->offset[i] = (int64_t)t1 - (int64_t)mid;
    return ST_OK;
}

int st_clock_est_get(const st_clock_est *e, uint64_t now, int64_t *offset_ns, uint64_t *uncertainty_ns)
{
    int best = -1;
    for (int i = 0; i < ST_CLOCK_SAMPLES; i++) {
        if (!e->t2[i] || e->t2[i] > now || now - e->t2[i] >= ST_CLOCK_WINDOW_NS)
            continue;
        if (best < 0 || e->rtt[i] < e->rtt[best])
            best = i;
    }
    if (best < 0)
        return ST_ENOENT;
    *offset_ns = e->offset[best];
    *uncertainty_ns = e->rtt[best] / 2;
    return ST_OK;
}

/* ---- the table -------------------------------------------------------------------- */
#define TABLE_N 128 /* nodes remembered; the least recently sampled one is replaced */

static struct {
    pthread_mutex_t mu;
    struct {
        char id[33];
        uint64_t used; /* t2 of its last sample; 0 = free */
        st_clock_est est;
    } e[TABLE_N];
} tab = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int find(const char *id)
{
    for (int i = 0; i < TABLE_N; i++)
        if (tab.e[i].used && !strncmp(tab.e[i].id, id, sizeof tab.e[i].id - 1))
            return i;
    return -1;
}

int st_clock_sync_add(const char *node_id, uint64_t t0, uint64_t t1, uint64_t t2)
{
    if (!node_id || !*node_id)
        return st_err(ST_EINVAL, "clock sample without a node id");
    pthread_mutex_lock(&tab.mu);
    int i = find(node_id);
    if (i < 0) {
        i = 0;
        for (int k = 1; k < TABLE_N; k++)
            if (tab.e[k].used < tab.e[i].used)
                i = k;
        memset(&tab.e[i], 0, sizeof tab.e[i]);
        snprintf(tab.e[i].id, sizeof tab.e[i].id, "%s", node_id);
    }
    int rc = st_clock_est_add(&tab.e[i].est, t0, t1, t2);
    if (!rc || !tab.e[i].used)
        tab.e[i].used = t2 ? t2 : 1;
    pthread_mutex_unlock(&tab.mu);
    return rc;
}

int st_clock_sync_get(const char *node_id, uint64_t now, int64_t *offset_ns, uint64_t *uncertainty_ns)
{
    if (!node_id)
        return ST_ENOENT;
    pthread_mutex_lock(&tab.mu);
    int i = find(node_id);
    int rc = i < 0 ? ST_ENOENT : st_clock_est_get(&tab.e[i].est, now, offset_ns, uncertainty_ns);
    pthread_mutex_unlock(&tab.mu);
    return rc;
}

void st_clock_sync_forget(const char *node_id)
{
    if (!node_id)
        return;
    pthread_mutex_lock(&tab.mu);
    int i = find(node_id);
    if (i >= 0)
        memset(&tab.e[i], 0, sizeof tab.e[i]);
    pthread_mutex_unlock(&tab.mu);
}
