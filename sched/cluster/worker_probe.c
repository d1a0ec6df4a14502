/* What a node tells the scheduler about itself (see worker.h): memory from
 * /proc/meminfo, f32 matmul FLOP/s and read bandwidth measured on the CPU
 * kernels the node will run, identity of the host from /etc/machine-id.
 * The allocator turns these into layer counts, so they are measured, not
 * guessed from a CPU model name; the whole probe takes ~0.2 s. */
#define _GNU_SOURCE
#include "sched/cluster/worker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "kernels/cpu/cpu.h"

#define USABLE_SHARE 0.75               /* of MemAvailable, when no --memory-limit */
#define FLOPS_BUDGET_NS 80000000ull     /* time spent measuring matmul */
#define BW_BYTES ((size_t)64 << 20)     /* streamed buffer: far beyond any last-level cache */

/* A field of /proc/meminfo ("MemTotal:" ...) in bytes, 0 when absent. */
static uint64_t meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            unsigned long long kb = 0;
            if (sscanf(line + kl + 1, "%llu", &kb) == 1)
                v = (uint64_t)kb * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* /etc/machine-id (same on every process of a host, also across network
 * namespaces), else the host name. */
static void host_id(char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen("/etc/machine-id", "r");
    if (f) {
        if (fgets(out, (int)cap, f)) {
            size_t n = strlen(out);
            while (n && isspace((unsigned char)out[n - 1]))
                out[--n] = 0;
        }
        fclose(f);
    }
    if (!out[0] && gethostname(out, cap) != 0)
        snprintf(out, cap, "unknown");
    out[cap - 1] = 0;
}

/* f32 matmul FLOP/s of the CPU backend: y (64, 1024) = x (64, 1024) @ W^T
 * with W (1024, 1024), repeated for ~80 ms; the best call counts (the first
 * one warms caches and the thread pool). */
static double matmul_flops(int threads)
{
    enum { N = 64, K = 1024, M = 1024 };
    st_backend *be = st_backend_cpu_create(threads);
    if (!be)
        return 0;
    float *w = st_xaligned(sizeof(float) * K * M);
    float *x = be->ops->alloc(be, sizeof(float) * N * K);
    float *y = be->ops->alloc(be, sizeof(float) * N * M);
    if (!x || !y) {
        be->ops->free(be, x);
        be->ops->free(be, y);
        free(w);
        st_backend_destroy(be);
        return 0;
    }
    for (size_t i = 0; i < (size_t)K * M; i++)
        w[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    float *xh = st_xmalloc(sizeof(float) * N * K);
    for (int i = 0; i < N * K; i++)
        xh[i] = (float)(i % 17) * 0.01f;
    be->ops->to_device(be, x, xh, sizeof(float) * N * K);
    free(xh);
    st_tensor W = {.name = "probe", .type = ST_F32, .n_dims = 2, .ne = {K, M, 1, 1}, .data = w,
                   .nbytes = sizeof(float) * K * M};
    uint64_t start = st_now_ns(), best = UINT64_MAX;
    int calls = 0;
    while (calls < 3 || st_now_ns() - start < FLOPS_BUDGET_NS) {
        uint64_t t0 = st_now_ns();
        be->ops->matmul(be, y, x, &W, NULL, N);
        be->ops->sync(be);
        uint64_t dt = st_now_ns() - t0;
        best = dt < best ? dt : best;
        if (++calls >= 10000)
            break;
    }
    be->ops->free(be, x);
    be->ops->free(be, y);
    free(w);
    st_backend_destroy(be);
    return best ? 2.0 * N * K * M / ((double)best * 1e-9) : 0;
}

int st_worker_probe(const st_worker_config *c, st_node_hw *hw)
{
    memset(hw, 0, sizeof *hw);
    if (c->name && *c->name)
        snprintf(hw->name, sizeof hw->name, "%s", c->name);
    else if (gethostname(hw->name, sizeof hw->name) != 0 || !hw->name[0])
        snprintf(hw->name, sizeof hw->name, "node");
    hw->name[sizeof hw->name - 1] = 0;
    host_id(hw->host_id, sizeof hw->host_id);
    /* a GPU is described by the program that creates its backend; this
     * layer only knows the CPU (the device string is passed through) */
    snprintf(hw->device, sizeof hw->device, "%s",
             c->device && !strncmp(c->device, "cuda", 4) ? c->device : "cpu");
    hw->memory_bytes = meminfo("MemTotal");
    if (!hw->memory_bytes)
        return st_err(ST_EIO, "worker probe: cannot read MemTotal from /proc/meminfo");
    uint64_t avail = meminfo("MemAvailable");
    if (!avail)
        avail = hw->memory_bytes / 2;
    if (c->memory_limit) {
        if (c->memory_limit > hw->memory_bytes)
            ST_WARN("--memory-limit %llu bytes is more than this machine's %llu bytes of memory",
                    (unsigned long long)c->memory_limit, (unsigned long long)hw->memory_bytes);
        hw->usable_bytes = c->memory_limit;
    } else {
        hw->usable_bytes = (uint64_t)((double)avail * USABLE_SHARE);
    }
    hw->flops = matmul_flops(c->threads);
    hw->mem_bw = st_cpu_read_bandwidth_gbs(c->threads, BW_BYTES) * 1e9;
    if (hw->flops <= 0 || hw->mem_bw <= 0)
        return st_err(ST_EIO, "worker probe: could not measure the CPU (flops %g, bandwidth %g)", hw->flops,
                      hw->mem_bw);
    hw->start_layer = c->start_layer;
    hw->end_layer = c->end_layer;
    hw->n_endpoints = 0;
    ST_INFO("node %s: %s, memory %.1f GiB (offers %.1f GiB), matmul %.1f GFLOP/s, read %.1f GB/s", hw->name,
            hw->device, (double)hw->memory_bytes / (1 << 30), (double)hw->usable_bytes / (1 << 30), hw->flops * 1e-9,
            hw->mem_bw * 1e-9);
    return ST_OK;
}
