/* Trace rings, sampling and aggregate histograms (see trace.h; the JSON
 * export and the trace file are in trace_export.c).
 *
 * Ring protocol (one writer per ring, any number of readers):
 *   writer, record j:  fence(release); store the 8 words of slot j % N;
 *                      store head = j + 1 (release)
 *   reader:            h = load head (acquire); copy slots i in [h - N, h);
 *                      fence(acquire); h2 = load head;
 *                      a copy of i is good iff i + N > h2
 * While the writer fills record j = i + N (the one that overwrites i), head
 * already equals j, so any copy that could have seen those words fails the
 * check. Words are moved with relaxed atomics: no torn word, no data race. */
#include "trace.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "st_common.h"
#include "trace_internal.h"

#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

_Static_assert(sizeof(st_trace_rec) == 64, "a trace record is one cache line");

static const char *const kind_names[ST_TK_END] = {
    "none",     "received", "parsed",    "templated",   "tokenized", "queued",   "admitted",
    "prefill",  "decode",   "sampled",   "detokenized", "written",   "preempted", "finished",
    "aborted",  "step",     "hop_send",  "hop_recv",    "stage_compute",
};

const char *st_trace_kind_name(int kind) { return kind > 0 && kind < ST_TK_END ? kind_names[kind] : "?"; }

/* ---- global state -------------------------------------------------------------------- */
trace_global st_trace_g = {.mu = PTHREAD_MUTEX_INITIALIZER, .node_pid = 1, .node_name = "strait"};

static void env_init(void);

static __thread trace_ring *tls_ring;
static __thread uint64_t tls_current;
static __thread char tls_name[48];
static __thread int tls_current_set;
static __thread uint64_t tls_step;
static __thread uint32_t tls_pipe;
static pthread_key_t ring_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* A thread that recorded is gone: its ring (and records) stay readable and
 * the next new recording thread takes it over. */
static void ring_release(void *p)
{
    trace_ring *r = p;
    __atomic_store_n(&r->owned, 0, __ATOMIC_RELEASE);
}

static void make_key(void) { (void)pthread_key_create(&ring_key, ring_release); }

static trace_ring *ring_acquire(void)
{
    pthread_once(&key_once, make_key);
    trace_global *g = &st_trace_g;
    pthread_mutex_lock(&g->mu);
    trace_ring *r = NULL;
    for (trace_ring *q = g->rings; q && !r; q = q->next)
        if (!__atomic_load_n(&q->owned, __ATOMIC_ACQUIRE))
            r = q;
    if (!r) {
        r = st_xaligned(sizeof *r);
        memset(r, 0, sizeof *r);
        r->tid = (uint32_t)++g->n_rings;
        r->next = g->rings;
        g->rings = r;
    }
    r->owned = 1;
    if (tls_name[0])
        snprintf(r->name, sizeof r->name, "%s", tls_name);
    else
        snprintf(r->name, sizeof r->name, "thread %u", r->tid);
    pthread_mutex_unlock(&g->mu);
    tls_ring = r;
    pthread_setspecific(ring_key, r);
    return r;
}

/* Kept until the thread's first record takes a ring: a thread that never
 * records costs no ring. */
void st_trace_thread_name(const char *name)
{
    env_init();
    snprintf(tls_name, sizeof tls_name, "%s", name ? name : "");
    trace_ring *r = tls_ring;
    if (r) {
        pthread_mutex_lock(&st_trace_g.mu);
        snprintf(r->name, sizeof r->name, "%s", tls_name);
        pthread_mutex_unlock(&st_trace_g.mu);
    }
}

/* ---- configuration ------------------------------------------------------------------- */
/* STRAIT_TRACE_SAMPLE and STRAIT_TRACE_FILE, read once by the first
 * admission or named thread: tracing for any process (a pipeline stage, a
 * test) without a flag; flags set later win. */
static void close_at_exit(void) { (void)st_trace_close_file(); }

static void init_from_env(void)
{
    const char *p = getenv("STRAIT_TRACE_SAMPLE"), *f = getenv("STRAIT_TRACE_FILE");
    double v;
    pthread_mutex_lock(&st_trace_g.mu);
    if (!st_trace_g.node_set) /* processes of one host get distinct tracks when their files are merged */
        st_trace_g.node_pid = (int)getpid();
    pthread_mutex_unlock(&st_trace_g.mu);
    if (p && *p && !__atomic_load_n(&st_trace_g.rate_set, __ATOMIC_RELAXED)) {
        if (st_trace_parse_sample(p, &v) == ST_OK)
            st_trace_set_sample(v);
        else
            ST_WARN("STRAIT_TRACE_SAMPLE ignored: %s", st_errmsg());
    }
    if (f && *f) {
        if (st_trace_open_file(f) == ST_OK)
            atexit(close_at_exit);
        else
            ST_WARN("STRAIT_TRACE_FILE ignored: %s", st_errmsg());
    }
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static void env_init(void) { pthread_once(&env_once, init_from_env); }

int st_trace_parse_sample(const char *s, double *p)
{
    if (!s || !*s)
        return st_err(ST_EINVAL, "--trace-sample: empty value (a number in [0, 1])");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0.0 && v <= 1.0))
        return st_err(ST_EINVAL, "--trace-sample '%s': expected a number in [0, 1] (0 = off, 1 = every request)", s);
    *p = v;
    return ST_OK;
}

/* The rate is stored as parts per 2^32, read with one relaxed load. */
void st_trace_set_sample(double p)
{
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    ST(&st_trace_g.rate_q32, (uint64_t)llround(p * 4294967296.0));
    ST(&st_trace_g.rate_set, 1);
}

double st_trace_sample(void) { return (double)LD(&st_trace_g.rate_q32) / 4294967296.0; }

void st_trace_set_node(int pid, const char *name)
{
    pthread_mutex_lock(&st_trace_g.mu);
    st_trace_g.node_pid = pid;
    st_trace_g.node_set = 1;
    snprintf(st_trace_g.node_name, sizeof st_trace_g.node_name, "%s", name ? name : "strait");
    pthread_mutex_unlock(&st_trace_g.mu);
}

uint64_t st_trace_admit(uint64_t *trace_id)
{
    env_init();
    uint64_t id = ADD(&st_trace_g.next_req, 1);
    uint64_t q = LD(&st_trace_g.rate_q32);
    /* request n is traced when floor(n * p) steps up: exactly floor(N * p) of the first N */
    unsigned __int128 hi = (unsigned __int128)id * q, lo = (unsigned __int128)(id - 1) * q;
    int traced = q && (q >= (1ull << 32) || hi >> 32 != lo >> 32);
    *trace_id = traced ? id : 0;
    return id;
}

void st_trace_set_current(uint64_t trace_id)
{
    tls_current = trace_id;
    tls_current_set = 1;
}

void st_trace_clear_current(void)
{
    tls_current = 0;
    tls_current_set = 0;
    tls_step = 0;
    tls_pipe = 0;
}

void st_trace_set_step(uint64_t step, uint32_t pipe)
{
    tls_step = step;
    tls_pipe = pipe;
}

void st_trace_current_step(uint64_t *step, uint32_t *pipe)
{
    *step = tls_step;
    *pipe = tls_pipe;
}

uint64_t st_trace_current(void) { return tls_current; }

int st_trace_take_current(uint64_t *trace_id)
{
    *trace_id = tls_current;
    int set = tls_current_set;
    st_trace_clear_current();
    return set;
}

uint32_t st_trace_new_pipe(void) { return (uint32_t)ADD(&st_trace_g.next_pipe, 1); }

/* ---- recording ------------------------------------------------------------------------- */
void st_trace_emit(const st_trace_rec *rec)
{
    trace_ring *r = tls_ring ? tls_ring : ring_acquire();
    uint64_t h = r->head; /* only this thread writes it */
    uint64_t w[8];
    memcpy(w, rec, sizeof w);
    uint64_t *slot = r->slots[h & (TRACE_RING_N - 1)];
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (int k = 0; k < 8; k++)
        ST(&slot[k], w[k]);
    __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
    if (((h + 1) & (TRACE_RING_N / 2 - 1)) == 0 && LD(&st_trace_g.file_on))
        st_trace_file_wake();
}

void st_trace_span(uint64_t req, int kind, uint64_t t0, uint64_t t1, uint32_t n_tokens, uint64_t bytes)
{
    if (!req)
        return;
    st_trace_rec r = {.ts_ns = t0, .dur_ns = t1 > t0 ? t1 - t0 : 0, .req = req, .kind = (uint16_t)kind,
                      .phase = 'X', .n_tokens = n_tokens, .bytes = bytes, .stage = -1};
    st_trace_emit(&r);
}

void st_trace_instant(uint64_t req, int kind, uint64_t t, uint32_t aux, uint64_t bytes)
{
    if (!req)
        return;
    st_trace_rec r = {.ts_ns = t, .req = req, .kind = (uint16_t)kind, .phase = 'i', .aux = aux, .bytes = bytes,
                      .stage = -1};
    st_trace_emit(&r);
}

void st_trace_step_part(uint64_t req, int kind, uint64_t step, uint32_t pipe, uint64_t t0, uint64_t t1,
                        uint32_t n_tokens, uint32_t n_seqs)
{
    if (!req)
        return;
    st_trace_rec r = {.ts_ns = t0, .dur_ns = t1 > t0 ? t1 - t0 : 0, .req = req, .step = step, .pipe = pipe,
                      .kind = (uint16_t)kind, .phase = 'X', .n_tokens = n_tokens, .n_seqs = n_seqs, .stage = -1};
    st_trace_emit(&r);
}

void st_trace_step_span(uint64_t traced, int kind, uint64_t step, uint32_t pipe, int32_t stage, uint64_t t0,
                        uint64_t t1, uint32_t n_tokens, uint32_t n_seqs, uint64_t bytes)
{
    if (!traced)
        return;
    st_trace_rec r = {.ts_ns = t0, .dur_ns = t1 > t0 ? t1 - t0 : 0, .step = step, .pipe = pipe,
                      .kind = (uint16_t)kind, .phase = 'X', .n_tokens = n_tokens, .n_seqs = n_seqs,
                      .bytes = bytes, .stage = stage, .aux = (uint32_t)traced};
    st_trace_emit(&r);
}

/* ---- reading ---------------------------------------------------------------------------- */
size_t trace_ring_read(trace_ring *r, uint64_t from, st_trace_rec *out, size_t cap, uint64_t *next,
                       uint64_t *lost)
{
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint64_t lo = h > TRACE_RING_N ? h - TRACE_RING_N : 0;
    *lost = 0;
    if (from < lo) {
        *lost = lo - from;
        from = lo;
    }
    if (h - from > cap)
        h = from + cap;
    size_t n = 0;
    uint64_t (*w)[8] = (uint64_t(*)[8])out;
    for (uint64_t i = from; i < h; i++, n++) {
        const uint64_t *slot = r->slots[i & (TRACE_RING_N - 1)];
        for (int k = 0; k < 8; k++)
            w[n][k] = LD(&slot[k]);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint64_t h2 = LD(&r->head);
    /* drop the copies the writer may have overwritten meanwhile */
    size_t skip = 0;
    while (skip < n && from + skip + TRACE_RING_N <= h2)
        skip++;
    if (skip) {
        memmove(out, out + skip, (n - skip) * sizeof *out);
        *lost += skip;
        n -= skip;
    }
    *next = from + skip + n;
    return n;
}

typedef struct sort_key {
    uint64_t ts;
    size_t i; /* index before sorting: ties keep their per-thread order */
} sort_key;

static int cmp_key(const void *a, const void *b)
{
    const sort_key *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int st_trace_snapshot(st_trace_rec **out, uint32_t **tids, size_t *n_out)
{
    trace_global *g = &st_trace_g;
    pthread_mutex_lock(&g->mu);
    size_t cap = (size_t)g->n_rings * TRACE_RING_N + 1, n = 0;
    st_trace_rec *recs = st_xmalloc(cap * sizeof *recs);
    uint32_t *t = st_xmalloc(cap * sizeof *t);
    for (trace_ring *r = g->rings; r; r = r->next) {
        uint64_t next, lost;
        size_t k = trace_ring_read(r, r->base, recs + n, TRACE_RING_N, &next, &lost);
        for (size_t i = 0; i < k; i++)
            t[n + i] = r->tid;
        n += k;
    }
    pthread_mutex_unlock(&g->mu);
    sort_key *keys = st_xmalloc((n + 1) * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = (sort_key){recs[i].ts_ns, i};
    qsort(keys, n, sizeof *keys, cmp_key);
    st_trace_rec *sorted = st_xmalloc((n + 1) * sizeof *sorted);
    uint32_t *t2 = st_xmalloc((n + 1) * sizeof *t2);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = recs[keys[i].i];
        t2[i] = t[keys[i].i];
    }
    free(keys);
    free(recs);
    free(t);
    *out = sorted;
    *tids = t2;
    *n_out = n;
    return ST_OK;
}

uint64_t st_trace_dropped(void) { return LD(&st_trace_g.dropped); }

size_t st_trace_take_new(st_trace_rec *out, uint32_t *tids, size_t cap)
{
    trace_global *g = &st_trace_g;
    pthread_mutex_lock(&g->mu);
    trace_ring *rings = g->rings; /* only ever prepended to: the rest of the list is fixed */
    pthread_mutex_unlock(&g->mu);
    size_t n = 0;
    for (trace_ring *r = rings; r && n < cap; r = r->next) {
        uint64_t from = r->shipped > r->base ? r->shipped : r->base, next, lost;
        if (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == from)
            continue;
        size_t k = trace_ring_read(r, from, out + n, cap - n, &next, &lost);
        if (lost)
            ADD(&g->dropped, lost);
        r->shipped = next;
        for (size_t i = 0; tids && i < k; i++)
            tids[n + i] = r->tid;
        n += k;
    }
    return n;
}

int st_trace_threads(uint32_t *tids, char (*names)[48], int cap)
{
    int n = 0;
    pthread_mutex_lock(&st_trace_g.mu);
    for (trace_ring *r = st_trace_g.rings; r && n < cap; r = r->next, n++) {
        tids[n] = r->tid;
        snprintf(names[n], 48, "%s", r->name);
    }
    pthread_mutex_unlock(&st_trace_g.mu);
    return n;
}

void st_trace_reset(void)
{
    pthread_mutex_lock(&st_trace_g.mu);
    for (trace_ring *r = st_trace_g.rings; r; r = r->next)
        r->base = r->flushed = r->shipped = LD(&r->head);
    pthread_mutex_unlock(&st_trace_g.mu);
    trace_import_reset();
}

/* ---- aggregate histograms ------------------------------------------------------------------ */
/* 50 us .. 20 s: a decode step of a small model to a long queue. */
static const double hist_bounds[ST_TRACE_HIST_BOUNDS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                         0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                         0.5,     1.0,    2.5,     5.0,    10.0,  20.0};
static const char *const fixed_labels[ST_TH_FIXED] = {"queue", "prefill", "decode", "stage"};

const double *st_trace_hist_bounds(void) { return hist_bounds; }

void st_trace_observe(int i, uint64_t ns)
{
    if (i < 0 || i >= ST_TH_COUNT)
        return;
    double s = (double)ns * 1e-9;
    int k = 0;
    while (k < ST_TRACE_HIST_BOUNDS && s > hist_bounds[k])
        k++;
    st_trace_hist *h = &st_trace_g.hist[i];
    ADD(&h->counts[k], 1);
    ADD(&h->sum_ns, ns);
}

int st_trace_link(const char *label)
{
    trace_global *g = &st_trace_g;
    int found = -1;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < ST_TRACE_MAX_LINKS && found < 0; i++) {
        if (!g->link_label[i][0]) {
            snprintf(g->link_label[i], sizeof g->link_label[i], "%s", label);
            found = i;
        } else if (!strncmp(g->link_label[i], label, sizeof g->link_label[i] - 1)) {
            found = i;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return found < 0 ? -1 : ST_TH_FIXED + found;
}

int st_trace_hist_get(int i, st_trace_hist *out, const char **label)
{
    if (i < 0 || i >= ST_TH_COUNT)
        return st_err(ST_ENOENT, "trace: no histogram %d", i);
    if (i >= ST_TH_FIXED) {
        const char *l = st_trace_g.link_label[i - ST_TH_FIXED];
        pthread_mutex_lock(&st_trace_g.mu);
        int used = l[0] != 0; /* a label never changes once set */
        pthread_mutex_unlock(&st_trace_g.mu);
        if (!used)
            return st_err(ST_ENOENT, "trace: link histogram %d unused", i);
        *label = l;
    } else {
        *label = fixed_labels[i];
    }
    const st_trace_hist *h = &st_trace_g.hist[i];
    for (int k = 0; k <= ST_TRACE_HIST_BOUNDS; k++)
        out->counts[k] = LD(&h->counts[k]);
    out->sum_ns = LD(&h->sum_ns);
    return ST_OK;
}
