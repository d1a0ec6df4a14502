/* Node clock offsets from ping/pong round trips (see clock_sync.h). */
#include "sched/cluster/clock_sync.h"

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

