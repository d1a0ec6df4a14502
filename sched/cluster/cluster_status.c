/* GET /cluster/status: the scheduler's view of nodes and pipelines as one
 * JSON object (format in cluster.h). Called on the HTTP event-loop thread:
 * it only copies under the cluster mutex and asks the router for per
 * pipeline counters, never waits on a node. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "sched/cluster/clock_sync.h"
#include "sched/cluster/cluster_internal.h"

static void put_str(st_strbuf *sb, const char *key, const char *v)
{
    st_sb_printf(sb, "\"%s\":", key);
    st_sb_json_str(sb, v, strlen(v));
}

static const st_router_pipe_info *find_info(const st_router_pipe_info *pi, int n, int router_id)
{
    for (int i = 0; router_id >= 0 && i < n; i++)
        if (pi[i].id == router_id)
            return &pi[i];
    return NULL;
}

static void put_pipe_counters(st_strbuf *sb, const st_router_pipe_info *ri)
{
    if (ri)
        st_sb_printf(sb, ",\"running\":%d,\"waiting\":%d,\"kv_blocks_free\":%d,\"kv_blocks_total\":%d,\"step_ms\":%.3f,"
                         "\"requests_routed\":%llu",
                     ri->n_running, ri->n_waiting, ri->kv_blocks_free, ri->kv_blocks_total, ri->step_ms,
                     (unsigned long long)ri->requests_routed);
    else
        st_sb_puts(sb, ",\"running\":0,\"waiting\":0,\"kv_blocks_free\":0,\"kv_blocks_total\":0,\"step_ms\":0,"
                       "\"requests_routed\":0");
}

void st_cluster_status_json(st_cluster *cl, st_strbuf *out)
{
    st_router_pipe_info ri[CL_MAX_PIPES];
    int n_ri = st_router_pipes(cl->router, ri, CL_MAX_PIPES);
    uint64_t now = st_now_ns();
    pthread_mutex_lock(&cl->mu);
    st_sb_puts(out, "{");
    put_str(out, "model", cl->model);
    st_sb_printf(out, ",\"n_nodes_expected\":%d,", cl->cfg.n_nodes);
    put_str(out, "join_command", cl->join_cmd);
    st_sb_puts(out, ",");
    put_str(out, "control", cl->bound);
    st_sb_printf(out, ",\"n_layers\":%d,\"planned\":%s,\"error\":", cl->am.n_layers,
                 cl->planned_once ? "true" : "false");
    if (cl->plan_error[0])
        st_sb_json_str(out, cl->plan_error, strlen(cl->plan_error));
    else
        st_sb_puts(out, "null");
    st_sb_printf(out, ",\"requests_moved\":%llu,\"nodes\":[", (unsigned long long)st_router_moved(cl->router));
    int first = 1;
    for (int i = 0; i < CL_MAX_NODES; i++) {
        const cl_node *n = &cl->nodes[i];
        if (n->state == NODE_FREE)
            continue;
        st_sb_puts(out, first ? "{" : ",{");
        first = 0;
        put_str(out, "id", n->id);
        st_sb_puts(out, ",");
        put_str(out, "name", n->name);
        st_sb_puts(out, ",");
        put_str(out, "address", n->peer);
        st_sb_puts(out, ",");
        put_str(out, "device", n->has_hw ? n->hw.device : "");
        st_sb_printf(out, ",\"memory_bytes\":%llu,\"usable_bytes\":%llu,\"flops\":%.4g,\"mem_bw\":%.4g",
                     (unsigned long long)n->hw.memory_bytes, (unsigned long long)n->hw.usable_bytes, n->hw.flops,
                     n->hw.mem_bw);
        const cl_pipe *p = n->pipe >= 0 ? &cl->pipes[n->pipe] : NULL;
        if (p && n->end > n->start)
            st_sb_printf(out, ",\"layers\":[%d,%d],\"pipeline\":%d,\"stage\":%d", n->start, n->end, p->id, n->stage);
        else
            st_sb_puts(out, ",\"layers\":null,\"pipeline\":null,\"stage\":null");
        const st_router_pipe_info *r = p ? find_info(ri, n_ri, p->router_id) : NULL;
        st_sb_printf(out, ",\"state\":\"%s\",\"load\":%d,\"rtt_ms\":%.3f,\"last_seen_ms\":%llu,",
                     cl_node_state_name(n->state), r ? r->n_running + r->n_waiting : 0, n->rtt_ms,
                     (unsigned long long)((now - n->last_seen_ns) / 1000000ull));
        put_str(out, "error", n->error);
        /* its clock minus ours, and the bound on that estimate (sched/cluster/clock_sync.h); null before a pong */
        int64_t off;
        uint64_t unc;
        if (st_clock_est_get(&n->clock, now, &off, &unc) == ST_OK)
            st_sb_printf(out, ",\"clock_offset_us\":%.3f,\"clock_uncertainty_us\":%.3f", (double)off * 1e-3,
                         (double)unc * 1e-3);
        else
            st_sb_puts(out, ",\"clock_offset_us\":null,\"clock_uncertainty_us\":null");
        st_sb_puts(out, "}");
    }
    st_sb_puts(out, "],\"pipelines\":[");
    first = 1;
    for (int i = 0; i < CL_MAX_PIPES; i++) {
        const cl_pipe *p = &cl->pipes[i];
        if (p->phase == PIPE_FREE)
            continue;
        st_sb_printf(out, "%s{\"id\":%d,\"epoch\":%llu,\"stages\":[", first ? "" : ",", p->id,
                     (unsigned long long)p->epoch);
        first = 0;
        for (int s = 0; s < p->n_stages; s++) {
            st_sb_puts(out, s ? "," : "");
            const char *id = cl->nodes[p->node[s]].id;
            st_sb_json_str(out, id, strlen(id));
        }
        st_sb_puts(out, "],\"layers\":[");
        for (int s = 0; s < p->n_stages; s++)
            st_sb_printf(out, "%s[%d,%d]", s ? "," : "", p->start[s], p->end[s]);
        st_sb_printf(out, "],\"state\":\"%s\",\"kv_tokens\":%llu,\"n_blocks\":%d,", cl_pipe_phase_name(p->phase),
                     (unsigned long long)p->kv_tokens, p->n_blocks);
        put_str(out, "transport_in", p->first.transport);
        st_sb_puts(out, ",");
        put_str(out, "transport_back", p->back_transport);
        put_pipe_counters(out, find_info(ri, n_ri, p->router_id));
        st_sb_puts(out, ",");
        put_str(out, "error", p->error);
        st_sb_puts(out, "}");
    }
    st_sb_puts(out, "]}");
    pthread_mutex_unlock(&cl->mu);
}

unsigned long st_cluster_status_version(st_cluster *cl)
{
    pthread_mutex_lock(&cl->mu);
    unsigned long v = cl->version;
    pthread_mutex_unlock(&cl->mu);
    return v;
}

void st_cluster_status_local_json(const char *model, const char *device, int n_layers, st_router *r, st_strbuf *out)
{
    st_router_pipe_info ri[4];
    int n_ri = st_router_pipes(r, ri, 4);
    st_sb_puts(out, "{");
    put_str(out, "model", model);
    st_sb_printf(out, ",\"n_nodes_expected\":1,\"join_command\":null,\"control\":null,\"n_layers\":%d,"
                      "\"planned\":true,\"error\":null,\"requests_moved\":0,\"nodes\":[{\"id\":\"local\","
                      "\"name\":\"local\",\"address\":\"\",",
                 n_layers);
    put_str(out, "device", device);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE); /* this machine's memory */
    unsigned long long mem = pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page : 0;
    st_sb_printf(out, ",\"memory_bytes\":%llu,\"usable_bytes\":%llu,\"flops\":0,\"mem_bw\":0,\"layers\":[0,%d],"
                      "\"pipeline\":0,\"stage\":0,\"state\":\"ready\",\"load\":%d,\"rtt_ms\":0,\"last_seen_ms\":0,"
                      "\"error\":\"\"}],\"pipelines\":[",
                 mem, mem, n_layers, n_ri > 0 ? ri[0].n_running + ri[0].n_waiting : 0);
    if (n_ri > 0) {
        st_sb_printf(out, "{\"id\":0,\"epoch\":0,\"stages\":[\"local\"],\"layers\":[[0,%d]],\"state\":\"%s\","
                          "\"kv_tokens\":0,\"n_blocks\":%d,\"transport_in\":\"local\",\"transport_back\":\"local\"",
                     n_layers, ri[0].healthy ? "serving" : "failed", ri[0].kv_blocks_total);
        put_pipe_counters(out, &ri[0]);
        st_sb_puts(out, ",\"error\":\"\"}");
    }
    st_sb_puts(out, "]}");
}
