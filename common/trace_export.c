/* Chrome trace event JSON from trace records, for one request or all of
 * them, and the whole-process trace file with its flusher thread (see
 * trace.h). Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
 * ("Trace Event Format"): {"traceEvents":[{name, cat, ph, ts, dur, pid, tid, args}, ...]}. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "st_common.h"
#include "trace_internal.h"

/* aux of finished/aborted: the batcher's st_finish_reason */
static const char *const finish_names[] = {"", "stop", "length", "abort", "error"};

void st_trace_event_json(st_strbuf *sb, const st_trace_rec *r, uint32_t tid)
{
    trace_event_json_pid(sb, r, st_trace_g.node_pid, tid);
}

void trace_event_json_pid(st_strbuf *sb, const st_trace_rec *r, int pid, uint32_t tid)
{
    int kind = r->kind;
    st_sb_printf(sb, "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"%c\",\"ts\":%.3f,", st_trace_kind_name(kind),
                 r->req ? "request" : "step", r->phase == 'i' ? 'i' : 'X', (double)r->ts_ns * 1e-3);
    if (r->phase == 'i')
        st_sb_puts(sb, "\"s\":\"t\",");
    else
        st_sb_printf(sb, "\"dur\":%.3f,", (double)r->dur_ns * 1e-3);
    st_sb_printf(sb, "\"pid\":%d,\"tid\":%u,\"args\":{", pid, tid);
    const char *sep = "";
#define ARG(...)                                                                                                       \
    do {                                                                                                               \
        st_sb_puts(sb, sep);                                                                                           \
        st_sb_printf(sb, __VA_ARGS__);                                                                                 \
        sep = ",";                                                                                                     \
    } while (0)
    if (r->req)
        ARG("\"request_id\":%llu", (unsigned long long)r->req);
    if (r->step)
        ARG("\"step\":%llu,\"pipe\":%u", (unsigned long long)r->step, r->pipe);
    if (r->n_tokens)
        ARG("\"tokens\":%u", r->n_tokens);
    if (r->n_seqs)
        ARG("\"seqs\":%u", r->n_seqs);
    if (r->stage >= 0)
        ARG("\"stage\":%d", r->stage);
    if (r->bytes)
        ARG("\"bytes\":%llu", (unsigned long long)r->bytes);
    if (kind == ST_TK_FINISHED || kind == ST_TK_ABORTED)
        ARG("\"reason\":\"%s\"", r->aux < ST_ARRAY_LEN(finish_names) ? finish_names[r->aux] : "?");
    else if (kind == ST_TK_ADMITTED)
        ARG("\"cached_tokens\":%u", r->aux);
#undef ARG
    st_sb_puts(sb, "}}");
}

void st_trace_meta_json(st_strbuf *sb)
{
    trace_global *g = &st_trace_g;
    pthread_mutex_lock(&g->mu);
    st_sb_printf(sb, ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":",
                 g->node_pid);
    st_sb_json_str(sb, g->node_name, strlen(g->node_name));
    st_sb_puts(sb, "}}");
    for (trace_ring *r = g->rings; r; r = r->next) {
        st_sb_printf(sb, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":",
                     g->node_pid, r->tid);
        st_sb_json_str(sb, r->name, strlen(r->name));
        st_sb_puts(sb, "}}");
    }
    pthread_mutex_unlock(&g->mu);
}

static void open_doc(st_strbuf *sb)
{
    st_sb_puts(sb, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"CLOCK_MONOTONIC\"},\"traceEvents\":[\n");
}

/* The trailing metadata carries the leading comma, so a document with no
 * event still needs one element first: the process name. */
static void close_doc(st_strbuf *sb, int any, int imports)
{
    if (!any)
        st_sb_printf(sb, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"strait\"}}",
                     st_trace_g.node_pid);
    st_trace_meta_json(sb);
    if (imports)
        trace_import_meta_json(sb);
    st_sb_puts(sb, "\n]}\n");
}

typedef struct step_key {
    uint64_t step;
    uint32_t pipe;
} step_key;

static int cmp_step(const void *a, const void *b)
{
    const step_key *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return x->pipe < y->pipe ? -1 : x->pipe > y->pipe;
}

/* Every record held, this process's and the imported ones, merged by
 * time: (n,) records, their tracks and their processes (heap). */
typedef struct ev_set {
    st_trace_rec *r;
    uint32_t *tid;
    int *pid;
    size_t n;
    int local_pid; /* r[i] is this process's iff pid[i] == local_pid */
} ev_set;

static void collect(ev_set *e)
{
    st_trace_rec *lr, *ir;
    uint32_t *lt, *it;
    int *ip;
    size_t ln, in;
    st_trace_snapshot(&lr, &lt, &ln);
    trace_import_snapshot(&ir, &it, &ip, &in);
    pthread_mutex_lock(&st_trace_g.mu);
    e->local_pid = st_trace_g.node_pid;
    pthread_mutex_unlock(&st_trace_g.mu);
    e->n = ln + in;
    e->r = st_xmalloc((e->n + 1) * sizeof *e->r);
    e->tid = st_xmalloc((e->n + 1) * sizeof *e->tid);
    e->pid = st_xmalloc((e->n + 1) * sizeof *e->pid);
    size_t a = 0, b = 0;
    for (size_t k = 0; k < e->n; k++) {
        int take_local = b == in || (a < ln && lr[a].ts_ns <= ir[b].ts_ns);
        if (take_local) {
            e->r[k] = lr[a], e->tid[k] = lt[a], e->pid[k] = e->local_pid;
            a++;
        } else {
            e->r[k] = ir[b], e->tid[k] = it[b], e->pid[k] = ip[b];
            b++;
        }
    }
    free(lr), free(lt), free(ir), free(it), free(ip);
}

static void ev_free(ev_set *e)
{
    free(e->r), free(e->tid), free(e->pid);
}

int st_trace_export_request(uint64_t req, st_strbuf *out)
{
    if (!req)
        return st_err(ST_EINVAL, "trace: request id 0 is never traced");
    ev_set e;
    collect(&e);
    /* the steps it took part in (of this process's batchers) */
    step_key *steps = st_xmalloc((e.n + 1) * sizeof *steps);
    size_t n_steps = 0, n_own = 0;
    for (size_t i = 0; i < e.n; i++)
        if (e.r[i].req == req && e.pid[i] == e.local_pid) {
            n_own++;
            if (e.r[i].step)
                steps[n_steps++] = (step_key){e.r[i].step, e.r[i].pipe};
        }
    if (!n_own) {
        free(steps);
        ev_free(&e);
        return st_err(ST_ENOENT, "trace: nothing is held for request %llu (not sampled, or overwritten)",
                      (unsigned long long)req);
    }
    qsort(steps, n_steps, sizeof *steps, cmp_step);
    open_doc(out);
    int any = 0;
    for (size_t i = 0; i < e.n; i++) {
        const st_trace_rec *r = &e.r[i];
        step_key k = {r->step, r->pipe};
        int mine;
        if (e.pid[i] != e.local_pid) /* a node's step ids are the wire's: it names its request in aux */
            mine = r->req == req || (!r->req && r->aux && r->aux == (uint32_t)req);
        else
            mine = r->req == req ||
                   (!r->req && r->step && n_steps && bsearch(&k, steps, n_steps, sizeof *steps, cmp_step));
        if (!mine)
            continue;
        if (any++)
            st_sb_puts(out, ",\n");
        trace_event_json_pid(out, r, e.pid[i], e.tid[i]);
    }
    close_doc(out, any, 1);
    free(steps);
    ev_free(&e);
    return ST_OK;
}

int st_trace_export_all(st_strbuf *out)
{
    ev_set e;
    collect(&e);
    open_doc(out);
    for (size_t i = 0; i < e.n; i++) {
        if (i)
            st_sb_puts(out, ",\n");
        trace_event_json_pid(out, &e.r[i], e.pid[i], e.tid[i]);
    }
    close_doc(out, e.n > 0, 1);
    ev_free(&e);
    return ST_OK;
}

/* ---- the trace file ---------------------------------------------------------------------- */
static struct {
    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t cv;
    int open, stop, wake;
    FILE *f;
    char *path;
    uint64_t n_events;
    pthread_t thread;
} tf = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* From a recording thread: never blocks. If the flusher holds the lock it
 * is awake already, and sees the flag before it sleeps again. */
void st_trace_file_wake(void)
{
    __atomic_store_n(&tf.wake, 1, __ATOMIC_RELAXED);
    if (pthread_mutex_trylock(&tf.mu) == 0) {
        pthread_cond_signal(&tf.cv);
        pthread_mutex_unlock(&tf.mu);
    }
}

/* Append every record not yet written (the flusher thread, or close after
 * joining it: one of them at a time owns tf.f and the cursors). */
static void drain_to_file(void)
{
    enum { CHUNK = 512 };
    st_trace_rec *buf = st_xmalloc(CHUNK * sizeof *buf);
    st_strbuf sb;
    st_sb_init(&sb);
    pthread_mutex_lock(&st_trace_g.mu);
    trace_ring *rings = st_trace_g.rings; /* rings are only ever prepended: the rest of the list is fixed */
    pthread_mutex_unlock(&st_trace_g.mu);
    for (trace_ring *r = rings; r; r = r->next) {
        if (r->flushed < r->base)
            r->flushed = r->base;
        for (;;) {
            uint64_t next, lost;
            size_t k = trace_ring_read(r, r->flushed, buf, CHUNK, &next, &lost);
            if (lost)
                __atomic_add_fetch(&st_trace_g.dropped, lost, __ATOMIC_RELAXED);
            r->flushed = next;
            if (!k)
                break;
            sb.len = 0;
            for (size_t i = 0; i < k; i++) {
                if (tf.n_events++)
                    st_sb_puts(&sb, ",\n");
                st_trace_event_json(&sb, &buf[i], r->tid);
            }
            fwrite(sb.buf, 1, sb.len, tf.f);
        }
    }
    st_sb_free(&sb);
    free(buf);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&tf.mu);
    while (!tf.stop) {
        if (!__atomic_load_n(&tf.wake, __ATOMIC_RELAXED)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L)
                ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&tf.cv, &tf.mu, &ts);
        }
        __atomic_store_n(&tf.wake, 0, __ATOMIC_RELAXED);
        if (tf.stop)
            break;
        pthread_mutex_unlock(&tf.mu);
        drain_to_file();
        pthread_mutex_lock(&tf.mu);
    }
    pthread_mutex_unlock(&tf.mu);
    return NULL;
}

int st_trace_open_file(const char *path)
{
    if (!path || !*path)
        return st_err(ST_EINVAL, "--trace-file: empty path");
    pthread_mutex_lock(&tf.mu);
    if (tf.open) {
        pthread_mutex_unlock(&tf.mu);
        return st_err(ST_EINVAL, "--trace-file %s: a trace file (%s) is already open", path, tf.path);
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        pthread_mutex_unlock(&tf.mu);
        return st_err(ST_EIO, "--trace-file %s: cannot create the file", path);
    }
    tf.f = f;
    tf.path = st_xstrdup(path);
    tf.n_events = 0;
    tf.stop = tf.wake = 0;
    st_strbuf sb;
    st_sb_init(&sb);
    open_doc(&sb);
    fwrite(sb.buf, 1, sb.len, f);
    st_sb_free(&sb);
    /* only what is recorded from now on goes to the file */
    pthread_mutex_lock(&st_trace_g.mu);
    for (trace_ring *r = st_trace_g.rings; r; r = r->next)
        r->flushed = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&st_trace_g.mu);
    int e = pthread_create(&tf.thread, NULL, flusher_main, NULL);
    if (e) {
        fclose(f);
        free(tf.path);
        tf.path = NULL;
        pthread_mutex_unlock(&tf.mu);
        return st_err(ST_ENOMEM, "--trace-file: cannot start the flusher thread (error %d)", e);
    }
    tf.open = 1;
    __atomic_store_n(&st_trace_g.file_on, 1, __ATOMIC_RELAXED);
    if (!__atomic_load_n(&st_trace_g.rate_set, __ATOMIC_RELAXED))
        st_trace_set_sample(1.0);
    pthread_mutex_unlock(&tf.mu);
    ST_INFO("trace: writing Chrome trace events to %s (sampling %.3g of requests)", path, st_trace_sample());
    return ST_OK;
}

int st_trace_close_file(void)
{
    pthread_mutex_lock(&tf.mu);
    if (!tf.open) {
        pthread_mutex_unlock(&tf.mu);
        return ST_OK;
    }
    tf.stop = 1;
    pthread_cond_signal(&tf.cv);
    pthread_mutex_unlock(&tf.mu);
    pthread_join(tf.thread, NULL);
    pthread_mutex_lock(&tf.mu);
    __atomic_store_n(&st_trace_g.file_on, 0, __ATOMIC_RELAXED);
    drain_to_file();
    st_strbuf sb;
    st_sb_init(&sb);
    close_doc(&sb, tf.n_events > 0, 0);
    fwrite(sb.buf, 1, sb.len, tf.f);
    st_sb_free(&sb);
    int bad = ferror(tf.f) | fclose(tf.f);
    int rc = bad ? st_err(ST_EIO, "--trace-file %s: write failed", tf.path) : ST_OK;
    if (!bad)
        ST_INFO("trace: wrote %llu events to %s", (unsigned long long)tf.n_events, tf.path);
    free(tf.path);
    tf.path = NULL;
    tf.f = NULL;
    tf.open = 0;
    pthread_mutex_unlock(&tf.mu);
    return rc;
}
