/* Node clock offsets from the control channel's ping/pong round trips
 * (NTP's estimate, kept per node).
 *
 * One sample: t0 = when we sent the ping (our CLOCK_MONOTONIC, ns), t1 =
 * the node's CLOCK_MONOTONIC when it answered (pong.t_peer), t2 = when the
 * pong arrived. If the two legs took equally long, the node answered at
 * our (t0 + t2) / 2, so
 *     offset      = t1 - (t0 + t2) / 2      (node clock - our clock)
 *     uncertainty = (t2 - t0) / 2            (the true offset is within +-)
 * whatever the asymmetry. The estimate is the sample with the smallest
 * round trip among those received in the last ST_CLOCK_WINDOW_NS: the
 * least queueing, hence the tightest bound, while still following drift.
 *
 * The scheduler keeps one estimate in each node's record (cluster_internal.h),
 * under its lock; a rejoining node starts a fresh one. */
#ifndef ST_CLUSTER_CLOCK_SYNC_H
#define ST_CLUSTER_CLOCK_SYNC_H

#include <stdint.h>

#define ST_CLOCK_WINDOW_NS (30ull * 1000000000ull)
#define ST_CLOCK_SAMPLES 64 /* per node: 30 s of 1 Hz pings, with room */

typedef struct st_clock_est {
    uint64_t t2[ST_CLOCK_SAMPLES];  /* (ST_CLOCK_SAMPLES,) arrival of each sample, our clock, ns; 0 = empty */
    int64_t offset[ST_CLOCK_SAMPLES]; /* node - us, ns */
    uint64_t rtt[ST_CLOCK_SAMPLES]; /* t2 - t0, ns */
    unsigned next;                  /* slot the next sample overwrites */
} st_clock_est;

/* Add one round trip. Returns ST_EINVAL (sample ignored) unless
 * 0 < t0 <= t2 and t1 > 0. */
int st_clock_est_add(st_clock_est *e, uint64_t t0, uint64_t t1, uint64_t t2);
/* The best sample received in (now - window, now]: ST_OK with its offset
 * and uncertainty (ns), or ST_ENOENT when there is none. */
int st_clock_est_get(const st_clock_est *e, uint64_t now, int64_t *offset_ns, uint64_t *uncertainty_ns);

#endif
