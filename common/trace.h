/* Latency tracing: per-request timelines at a cost low enough to leave on.
 *
 * Records. Every traced event is one fixed-size record (st_trace_rec, 64
 * bytes) written into the calling thread's ring buffer: a power-of-two
 * array with a single writer (that thread) and a published count `head`.
 * Writers never lock or wait; readers (the /debug/trace handler, the file
 * flusher) copy records concurrently and drop any that the writer may have
 * overwritten meanwhile (a seqlock check on `head`). When a ring laps a
 * reader, the oldest records are lost, counted by st_trace_dropped().
 *
 * Sampling. A request is traced or not, decided once at admission
 * (st_trace_admit, at rate --trace-sample: 0 = off, the default; 1 = all).
 * Its trace id is its request id when traced and 0 when not, and travels
 * with it: in the batcher's sequence, and in the wire header's trace_id
 * across pipeline stages (nonzero there when any request in the step is
 * traced). Every recording helper returns at once for trace id 0, so an
 * untraced request costs a compare per hook.
 *
 * Two kinds of records: request records (req = the request's id: received,
 * parsed, queued, each prefill chunk / decode step it took part in, ...)
 * and step records (req = 0, step = the batcher's step number, pipe = the
 * batcher instance: the step as a whole, pipeline hops, stage compute). A
 * request's export holds its own records and the step records of the steps
 * it took part in.
 *
 * Export: Chrome trace event JSON ({"traceEvents":[...]}, opens in Perfetto
 * and chrome://tracing): ph "X" (complete, with dur) or "i" (instant), ts
 * and dur in microseconds of CLOCK_MONOTONIC, pid = the node, tid = the
 * ring (one per thread; named by st_trace_thread_name), args carrying the
 * request id, step, tokens, sequences, stage and bytes.
 *
 * Aggregate histograms (queue wait, prefill and decode step time, stage
 * compute, per-link send time) are always on, sampled or not; /metrics
 * renders them.
 *
 * Environment: STRAIT_TRACE_SAMPLE=P and STRAIT_TRACE_FILE=F act like
 * --trace-sample / --trace-file in any process (read once, at the first
 * admission or named thread; the file is closed at exit).
 *
 * Clocks: timestamps are this node's CLOCK_MONOTONIC. Records made on
 * another node (a remote stage of a cluster) are on that node's clock: the
 * node ships them over the control channel (st_trace_take_new), and the
 * scheduler imports them (st_trace_import) shifted by its estimate of the
 * node's clock offset (sched/cluster/clock_sync.h). Imported records live
 * in a bounded store (ST_TRACE_IMPORT_MAX, oldest dropped) and appear in
 * the exports as one Chrome process per node, its process_name metadata
 * carrying the offset and its uncertainty. A remote step record joins the
 * request whose trace id marked its step (aux = the low 32 bits of that id;
 * see st_trace_step_span): when two traced requests share a step, the
 * other one sees only the scheduler's own records of it. */
#ifndef ST_TRACE_H
#define ST_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- span kinds --------------------------------------------------------------- */
typedef enum st_trace_kind {
    ST_TK_NONE = 0,
    /* request records, in the order a request meets them */
    ST_TK_RECEIVED,    /* i: the HTTP request reached the handler */
    ST_TK_PARSED,      /* X: JSON parse + validation */
    ST_TK_TEMPLATED,   /* X: chat template rendered (with its tokenization: one call today) */
    ST_TK_TOKENIZED,   /* i: prompt token ids ready (n_tokens = prompt length) */
    ST_TK_QUEUED,      /* X: submitted (or preempted) -> admitted */
    ST_TK_ADMITTED,    /* i: got KV blocks and a place in the running set (aux = cached tokens) */
    ST_TK_PREFILL,     /* X: a step in which it computed prompt rows (n_tokens = its rows) */
    ST_TK_DECODE,      /* X: a step in which it decoded one row */
    ST_TK_SAMPLED,     /* X: sampling its next token */
    ST_TK_DETOKENIZED, /* X: token -> text, stop checks, the event to the client's stream */
    ST_TK_WRITTEN,     /* i: bytes handed to the client connection (bytes) */
    ST_TK_PREEMPTED,   /* i: lost its KV blocks; will be recomputed */
    ST_TK_FINISHED,    /* i: final (aux = finish reason of the batcher) */
    ST_TK_ABORTED,     /* i: final, aborted (client gone, shutdown) */
    /* step records */
    ST_TK_STEP,        /* X: one batcher step's execution (n_tokens rows, n_seqs sequences) */
    ST_TK_HOP_SEND,    /* X: a message posted on a link -> its send completion (bytes) */
    ST_TK_HOP_RECV,    /* X: a message's reply / arrival waited for -> received */
    ST_TK_STAGE,       /* X: a pipeline stage computing its layers for a step (stage = first layer) */
    ST_TK_END
} st_trace_kind;

/* "received", "parsed", ... ("?" out of range). */
const char *st_trace_kind_name(int kind);

/* One record (64 bytes, one cache line). */
typedef struct st_trace_rec {
    uint64_t ts_ns;     /* CLOCK_MONOTONIC start (or the instant) */
    uint64_t dur_ns;    /* X: duration; 0 for instants */
    uint64_t req;       /* request id, 0 for step records */
    uint64_t step;      /* batcher step id, 0 if none */
    uint16_t kind;      /* st_trace_kind */
    uint8_t phase;      /* 'X' or 'i' */
    uint8_t pad;
    uint32_t n_seqs;    /* sequences in the step */
    uint32_t n_tokens;  /* rows / tokens concerned */
    uint32_t pipe;      /* batcher instance or pipeline id (with step: identifies the step) */
    uint64_t bytes;     /* bytes moved (hops, writes) */
    int32_t stage;      /* first layer of the stage, or -1 */
    uint32_t aux;       /* kind-specific: finish reason, cached tokens */
} st_trace_rec;

/* ---- configuration -------------------------------------------------------------- */
/* Parse a --trace-sample value: a number in [0, 1] (the whole string). */
int st_trace_parse_sample(const char *s, double *p);
/* Set the sampling rate (clamped to [0, 1]); process-wide, any time. */
void st_trace_set_sample(double p);
double st_trace_sample(void);
/* This node's id and name in exports (pid and process_name; default the
 * process id and "strait"). */
void st_trace_set_node(int pid, const char *name);
/* Name the calling thread's track ("http", "batcher", "stage 0..12"). */
void st_trace_thread_name(const char *name);

/* ---- admission and context -------------------------------------------------------- */
/* A new request: returns its id (> 0, unique in the process) and sets
 * *trace_id to that id if sampled (deterministically, so that rate p traces
 * exactly round(n * p) of n requests), else 0. */
uint64_t st_trace_admit(uint64_t *trace_id);
/* The trace decision the calling thread acts for, handed to code that
 * cannot take a parameter for it:
 *   - the HTTP handler sets it around the back end's submit, and the
 *     batcher's submit takes it (st_trace_take_current); a submit with
 *     nothing set decides for itself with st_trace_admit;
 *   - the batcher sets it around a traced step's execution, and a pipeline
 *     executor reads it (st_trace_current) to stamp the wire header. */
void st_trace_set_current(uint64_t trace_id);
void st_trace_clear_current(void);
/* The trace id set (0 if none or untraced). */
uint64_t st_trace_current(void);
/* 1 and the id if a decision was set (and clears it), else 0. */
int st_trace_take_current(uint64_t *trace_id);
/* The step being executed on this thread (step ids start at 1), so that an
 * executor's step records join the batcher's; cleared with the trace id. */
void st_trace_set_step(uint64_t step, uint32_t pipe);
void st_trace_current_step(uint64_t *step, uint32_t *pipe);

/* ---- recording (any thread; no-ops for req == 0 unless stated) -------------------------- */
/* Append a record to the calling thread's ring (always, whatever r->req). */
void st_trace_emit(const st_trace_rec *r);
/* A request span [t0, t1]. */
void st_trace_span(uint64_t req, int kind, uint64_t t0, uint64_t t1, uint32_t n_tokens, uint64_t bytes);
/* A request instant. */
void st_trace_instant(uint64_t req, int kind, uint64_t t, uint32_t aux, uint64_t bytes);
/* A request's part in a step (prefill/decode). */
void st_trace_step_part(uint64_t req, int kind, uint64_t step, uint32_t pipe, uint64_t t0, uint64_t t1,
                        uint32_t n_tokens, uint32_t n_seqs);
/* A step record (emitted only when `traced` is nonzero; its aux keeps the
 * low 32 bits of `traced`, so that a node's record names its request). */
void st_trace_step_span(uint64_t traced, int kind, uint64_t step, uint32_t pipe, int32_t stage, uint64_t t0,
                        uint64_t t1, uint32_t n_tokens, uint32_t n_seqs, uint64_t bytes);
/* A process-unique small id for a batcher or pipeline (the `pipe` field). */
uint32_t st_trace_new_pipe(void);

/* ---- reading ------------------------------------------------------------------------ */
/* Every record still held (each ring's newest TRACE_RING_N - 1 at most), from
 * all threads, sorted by ts_ns. *out is heap
 * (free()); *tids (heap, parallel to *out) is each record's ring index. */
int st_trace_snapshot(st_trace_rec **out, uint32_t **tids, size_t *n);
/* Records overwritten before any reader saw them (since process start). */
uint64_t st_trace_dropped(void);
/* Forget every record, imported ones too (tests). Only while no thread records. */
void st_trace_reset(void);

/* ---- cross-node: shipping (a node) and importing (the scheduler; trace_import.c) ------------ */
/* Records made since the previous call (a cursor per ring; the first call
 * starts at process start or the last st_trace_reset), at most cap, in ring
 * order (not sorted by time); tids (parallel, may be NULL) gets each one's
 * ring index. One caller at a time. Records overwritten before they were
 * taken are counted by st_trace_dropped. Cheap when nothing was recorded:
 * one load per ring. */
size_t st_trace_take_new(st_trace_rec *out, uint32_t *tids, size_t cap);
/* This process's named tracks: up to cap (tid, name) pairs; returns how many. */
int st_trace_threads(uint32_t *tids, char (*names)[48], int cap);

#define ST_TRACE_IMPORT_MAX 65536 /* imported records held (4.5 MiB); the oldest go first */
#define ST_TRACE_IMPORT_NODES 64  /* nodes named in the store */
/* Keep n records made on another node, identified in exports by pid (not
 * this process's; distinct per node) and node_name. Their times are on the
 * node's clock; they are stored shifted onto ours: ts - offset_ns, where
 * offset_ns = node clock - our clock and uncertainty_ns bounds its error
 * (both also shown in the node's metadata; uncertainty UINT64_MAX: no
 * estimate yet, shown as null). tids (may be NULL: track 1)
 * are the node's ring indexes. ST_EINVAL for a NULL name, pid <= 0 or the
 * local pid; ST_ENOMEM when ST_TRACE_IMPORT_NODES other pids are held. */
int st_trace_import(const st_trace_rec *recs, const uint32_t *tids, size_t n, int pid, const char *node_name,
                    int64_t offset_ns, uint64_t uncertainty_ns);
/* Name a track of an imported node (after st_trace_import for that pid). */
void st_trace_import_thread(int pid, uint32_t tid, const char *name);
/* Imported records held now. */
size_t st_trace_imported(void);

/* ---- export (trace_export.c) ---------------------------------------------------------- */
/* Chrome trace JSON of one request: its records and the step records of its
 * steps (imported ones: those that name it, see above), sorted by time.
 * ST_ENOENT naming the id when nothing of this process is held for it. */
int st_trace_export_request(uint64_t req, st_strbuf *out);
/* Chrome trace JSON of everything held. */
int st_trace_export_all(st_strbuf *out);
/* One record as a Chrome trace event object (no separator). */
void st_trace_event_json(st_strbuf *sb, const st_trace_rec *r, uint32_t tid);
/* The metadata events naming the process and the threads (leading comma per event). */
void st_trace_meta_json(st_strbuf *sb);

/* Whole-process trace file (strait run --trace-file F): a flusher thread
 * appends every record to F as it is made (woken when a ring is half
 * full, and every 200 ms), so nothing is lost to wrapping while the file
 * keeps up; st_trace_close_file writes the rest and closes the JSON.
 * Opening also turns on sampling at rate 1 unless a rate was set. */
int st_trace_open_file(const char *path);
int st_trace_close_file(void);

/* ---- aggregate histograms (always on) ----------------------------------------------- */
enum {
    ST_TH_QUEUE = 0,  /* submit (or preemption) -> admission */
    ST_TH_PREFILL,    /* a step with prompt rows: execution time */
    ST_TH_DECODE,     /* a decode-only step: execution time */
    ST_TH_STAGE,      /* a pipeline stage's compute for one step */
    ST_TH_FIXED,
    ST_TRACE_MAX_LINKS = 8,
    ST_TH_COUNT = ST_TH_FIXED + ST_TRACE_MAX_LINKS, /* then one per link: send posted -> completion */
};
#define ST_TRACE_HIST_BOUNDS 18
typedef struct st_trace_hist {
    uint64_t counts[ST_TRACE_HIST_BOUNDS + 1]; /* per bucket; last is +Inf */
    uint64_t sum_ns;
} st_trace_hist;
/* The common upper bounds in seconds ((ST_TRACE_HIST_BOUNDS,) ascending). */
const double *st_trace_hist_bounds(void);
void st_trace_observe(int hist, uint64_t ns);
/* The link histogram for a label ("head->stage", "stage 12..24 ->"): its
 * index (>= ST_TH_FIXED), registered on first use; -1 once all are taken. */
int st_trace_link(const char *label);
/* A copy of histogram i and its label (fixed ones: "queue", "prefill",
 * "decode", "stage"); ST_ENOENT for an unused link slot. */
int st_trace_hist_get(int i, st_trace_hist *out, const char **label);

#ifdef __cplusplus
}
#endif
#endif
