/* The stage thread of a node (see worker_impl.h): load the assigned shard
 * (or keep the one already loaded), report ready or failed, then serve it:
 * accept the upstream on either listener, connect to the assignment's
 * `next`, and run st_pipe_stage_serve until the upstream leaves; then
 * accept again, since the scheduler may rebuild the pipeline around this
 * node with the same assignment. */
#define _GNU_SOURCE
#include "sched/cluster/worker_impl.h"

#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/st_common.h"
#include "sched/pipeline_stage.h"

#define ACCEPT_SLICE_MS 50   /* each listener in turn, so both are watched and stop is seen */
#define CONNECT_TRY_MS 1000  /* per attempt at reaching `next`; retried until stop */

static void post(worker_stage *s, const char *state, const char *error)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->state, sizeof s->state, "%s", state);
    snprintf(s->error, sizeof s->error, "%s", error ? error : "");
    s->epoch = s->a.epoch;
    s->posted = 1;
    pthread_mutex_unlock(&s->mu);
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof one) < 0) { /* counter full: a wake is pending anyway */
    }
}

static void unload(worker_stage *s)
{
    if (s->m || s->be)
        s->cfg->unload(s->cfg->load_ctx, s->m, s->be);
    s->m = NULL;
    s->be = NULL;
    s->m_ref[0] = 0;
}

static int load(worker_stage *s)
{
    const st_ctl_assign *a = &s->a;
    if (s->m && !strcmp(s->m_ref, a->model) && s->m_start == a->start && s->m_end == a->end) {
        ST_INFO("stage %d..%d: keeping the loaded shard", a->start, a->end);
        return ST_OK;
    }
    unload(s);
    uint64_t t0 = st_now_ns();
    ST_INFO("stage: loading layers %d..%d of %s", a->start, a->end, a->model);
    int rc = s->cfg->load(s->cfg->load_ctx, a->model, a->model_bytes, a->start, a->end, &s->m, &s->be);
    if (rc)
        return rc;
    if (!s->m || !s->be || s->m->layer_start != a->start || s->m->layer_end != a->end) {
        int got_s = s->m ? s->m->layer_start : -1, got_e = s->m ? s->m->layer_end : -1;
        unload(s);
        return st_err(ST_EINVAL, "the loader gave layers %d..%d for an assignment of %d..%d", got_s, got_e,
                      a->start, a->end);
    }
    snprintf(s->m_ref, sizeof s->m_ref, "%s", a->model);
    s->m_start = a->start;
    s->m_end = a->end;
    ST_INFO("stage %d..%d: loaded in %.2f s", a->start, a->end, (double)(st_now_ns() - t0) * 1e-9);
    return ST_OK;
}

/* The next upstream on either listener, or NULL once stopped. */
static st_link *accept_upstream(worker_stage *s)
{
    while (!s->stop) {
        st_listener *ls[2] = {s->tcp_l, s->shm_l};
        for (int i = 0; i < 2 && !s->stop; i++) {
            st_link *in;
            if (!ls[i])
                continue;
            int rc = st_accept(ls[i], ACCEPT_SLICE_MS, &in);
            if (rc == ST_OK)
                return in;
            if (rc != ST_ETIMEDOUT)
                ST_WARN("stage: accept on %s failed: %s", st_listener_addr(ls[i]), st_errmsg());
        }
    }
    return NULL;
}

static st_link *connect_next(worker_stage *s)
{
    const st_ctl_endpoint *n = &s->a.next;
    int warned = 0;
    st_link_opts o;
    st_link_opts_keyed(&o, n->transport, s->cfg->token);
    while (!s->stop) {
        st_link *out;
        int rc = st_connect(n->transport, n->addr, &o, CONNECT_TRY_MS, &out);
        if (rc == ST_OK)
            return out;
        if (rc == ST_EPROTO && strstr(st_errmsg(), "link key")) {
            /* refused at once, and again on every try: say so loudly, and
             * ask again only slowly (the scheduler may reassign us) */
            if (warned++ < 1 || warned % 60 == 0)
                ST_ERROR("stage %d..%d: the next stage %s %s does not share this cluster's token: %s", s->a.start,
                         s->a.end, n->transport, n->addr, st_errmsg());
            for (int i = 0; i < 10 && !s->stop; i++) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (!warned++)
            ST_WARN("stage %d..%d: cannot reach the next stage %s %s yet: %s (retrying)", s->a.start, s->a.end,
                    n->transport, n->addr, st_errmsg());
    }
    return NULL;
}

static void *stage_main(void *arg)
{
    worker_stage *s = arg;
    const st_ctl_assign *a = &s->a;
    if (load(s) != ST_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", st_errmsg());
        ST_ERROR("stage %d..%d: cannot load: %s", a->start, a->end, why);
        post(s, "failed", why);
        return NULL;
    }
    post(s, "ready", NULL);
    ST_INFO("stage %d..%d of pipeline %d (stage %d of %d): ready; next %s %s", a->start, a->end, a->pipeline,
            a->stage + 1, a->n_stages, a->next.transport, a->next.addr);
    while (!s->stop) {
        st_link *in = accept_upstream(s);
        if (!in)
            break;
        st_link *out = connect_next(s);
        if (!out) {
            st_link_close(in);
            break;
        }
        ST_INFO("stage %d..%d: upstream connected (%s), serving", a->start, a->end, st_link_transport(in));
        st_pipe_stage_stats st;
        int rc = st_pipe_stage_serve(in, out, s->m, s->be, &s->stop, &st);
        ST_INFO("stage %d..%d: pipeline ended after %llu steps%s%s", a->start, a->end,
                (unsigned long long)st.steps, rc ? ": " : "", rc ? st_errmsg() : "");
        st_link_close(out);
        st_link_close(in);
    }
    return NULL;
}

int worker_stage_init(worker_stage *s, const st_worker_config *cfg, st_listener *tcp_l, st_listener *shm_l)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->tcp_l = tcp_l;
    s->shm_l = shm_l;
    pthread_mutex_init(&s->mu, NULL);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0)
        return st_err(ST_EIO, "worker: eventfd: %s", strerror(errno));
    return ST_OK;
}

int worker_stage_start(worker_stage *s, const st_ctl_assign *a)
{
    s->a = *a;
    s->stop = 0;
    if (pthread_create(&s->th, NULL, stage_main, s) != 0)
        return st_err(ST_EIO, "worker: cannot start the stage thread");
    s->running = 1;
    return ST_OK;
}

void worker_stage_stop(worker_stage *s)
{
    if (!s->running)
        return;
    s->stop = 1;
    pthread_join(s->th, NULL);
    s->running = 0;
    pthread_mutex_lock(&s->mu);
    s->posted = 0; /* an outcome of the old assignment is stale now */
    pthread_mutex_unlock(&s->mu);
}

void worker_stage_free(worker_stage *s)
{
    worker_stage_stop(s);
    unload(s);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    s->wake_fd = -1;
    pthread_mutex_destroy(&s->mu);
}

int worker_stage_take(worker_stage *s, st_strbuf *sb)
{
    uint64_t v;
    if (read(s->wake_fd, &v, sizeof v) < 0) { /* nothing written: the flag below decides */
    }
    pthread_mutex_lock(&s->mu);
    int had = s->posted;
    if (had) {
        st_sb_printf(sb, "\"state\":\"%s\",\"epoch\":%llu", s->state, (unsigned long long)s->epoch);
        if (s->error[0]) {
            st_sb_puts(sb, ",\"error\":");
            st_sb_json_str(sb, s->error, strlen(s->error));
        }
        s->posted = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return had;
}
