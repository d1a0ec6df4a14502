/* Private state of the tracer, shared by trace.c (rings, sampling,
 * histograms) and trace_export.c (JSON, the trace file). */
#ifndef ST_TRACE_INTERNAL_H
#define ST_TRACE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "trace.h"

#define TRACE_RING_N 8192 /* records per thread (512 KiB); a power of two */

typedef struct trace_ring {
    uint64_t slots[TRACE_RING_N][8]; /* records as words (relaxed atomic copies) */
    uint64_t head;                   /* records ever written (published with release) */
    uint64_t base;                   /* readers ignore records before this (st_trace_reset) */
    uint64_t flushed;                /* the trace file's cursor (flusher thread only) */
    uint64_t shipped;                /* st_trace_take_new's cursor (its caller only) */
    int owned;                       /* a live thread writes it */
    uint32_t tid;                    /* 1, 2, ...: the track in exports */
    char name[48];                   /* under trace_global.mu */
    struct trace_ring *next;
} trace_ring;

typedef struct trace_global {
    pthread_mutex_t mu;              /* the ring list, names, node, link labels */
    trace_ring *rings;
    int n_rings;
    int node_pid;                    /* the process id until st_trace_set_node */
    int node_set;
    char node_name[64];
    uint64_t rate_q32;               /* sampling rate in parts of 2^32 */
    int rate_set;                    /* st_trace_set_sample was called */
    uint64_t next_req, next_pipe;
    uint64_t dropped;
    int file_on;
    st_trace_hist hist[ST_TH_COUNT];
    char link_label[ST_TRACE_MAX_LINKS][48];
} trace_global;

extern trace_global st_trace_g;

/* Copy records [from, head) of r (at most cap) into out; *next is the
 * cursor after them, *lost counts records already overwritten. */
size_t trace_ring_read(trace_ring *r, uint64_t from, st_trace_rec *out, size_t cap, uint64_t *next,
                       uint64_t *lost);
/* Ask the trace file's flusher to drain the rings now. */
void st_trace_file_wake(void);

/* trace_import.c: a copy of the imported records sorted by time, with each
 * one's pid (tids and pids parallel; all heap); the process and thread
 * metadata of the imported nodes (leading comma per event); forget all. */
void trace_import_snapshot(st_trace_rec **recs, uint32_t **tids, int **pids, size_t *n);
void trace_import_meta_json(st_strbuf *sb);
void trace_import_reset(void);
/* One record as an event of process pid. */
void trace_event_json_pid(st_strbuf *sb, const st_trace_rec *r, int pid, uint32_t tid);

#endif
