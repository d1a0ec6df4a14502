/* The SIMT emulator's scheduler: launches, blocks as sets of fibers,
 * __syncthreads, warp collectives and shared memory (contract in simt.h).
 *
 * One worker per OS thread runs whole blocks. Inside a block, exactly one
 * fiber runs at a time, so the per-block state needs no locks; only the
 * error record and the block counter of a launch are shared between
 * workers. */
#include "kernels/simt/simt.h"
#include "kernels/simt/simt_fiber.h"

#include <atomic>
#include <mutex>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string>
#include <thread>
#include <vector>

#if SIMT_ASAN
#include <sanitizer/asan_interface.h>
#endif

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread uint3 blockDim;
__thread uint3 gridDim;

namespace simt {

/* ---- settings and the error record ------------------------------------------ */
static std::atomic<int> g_schedule{-1};
static std::atomic<uint64_t> g_seed{1};
static std::atomic<int> g_os_threads{0};
static std::mutex g_err_mu;
static std::string g_err;
static std::atomic<long> g_err_count{0};

static const size_t STACK_BYTES = 256 << 10; /* ASan frames are large */
static const int MAX_THREADS = 1024;

const char *schedule_name(schedule s)
{
    static const char *names[] = {"inorder", "lowest", "highest", "random"};
    return (unsigned)s < 4 ? names[s] : "?";
}

static void load_env()
{
    if (g_schedule.load() >= 0)
        return;
    schedule s = SCHED_INORDER;
    uint64_t seed = 1;
    if (const char *e = getenv("ST_SIMT_SCHEDULE")) {
        for (int i = 0; i < 4; i++) {
            size_t n = strlen(schedule_name((schedule)i));
            if (!strncmp(e, schedule_name((schedule)i), n) && (e[n] == 0 || e[n] == ':')) {
                s = (schedule)i;
                if (e[n] == ':')
                    seed = strtoull(e + n + 1, nullptr, 0);
            }
        }
    }
    int expect = -1;
    if (g_schedule.compare_exchange_strong(expect, (int)s))
        g_seed = seed;
    if (g_os_threads.load() == 0) {
        const char *t = getenv("ST_SIMT_THREADS");
        int n = t ? atoi(t) : 1;
        g_os_threads = n < 1 ? 1 : n > 64 ? 64 : n;
    }
}

void set_schedule(schedule s, uint64_t seed)
{
    load_env();
    g_schedule = (int)s;
    g_seed = seed;
}

schedule get_schedule()
{
    load_env();
    return (schedule)g_schedule.load();
}

void set_os_threads(int n)
{
    load_env();
    g_os_threads = n < 1 ? 1 : n > 64 ? 64 : n;
}

const char *last_error()
{
    static thread_local std::string copy;
    std::lock_guard<std::mutex> g(g_err_mu);
    copy = g_err;
    return copy.c_str();
}

void clear_error()
{
    std::lock_guard<std::mutex> g(g_err_mu);
    g_err.clear();
}

long error_count() { return g_err_count.load(); }

/* ---- per-worker state ----------------------------------------------------------- */
enum fstate { F_READY, F_BARRIER, F_WARP, F_DONE };

struct fiber {
    context ctx;
    fiber_stack stack;
    uint3 tid;
    int lane, warp;
    fstate st;
    const char *file; /* where it waits (barrier or collective) */
    int line;
    /* the pending warp collective */
    warp_op op;
    unsigned mask;
    uint64_t bits, result;
    int param, width;
    /* bytes below the stack's top that may hold ASan poison from frames
     * that never returned; the whole stack unless the fiber last exited
     * normally (then only the frames live at its exit are poisoned, and
     * unpoisoning 256 KiB per thread per block would dominate run time) */
    size_t dirty = SIZE_MAX;
};

struct shared_block {
    const void *key;
    void *p;
};

struct worker {
    std::vector<fiber> fibers; /* stacks kept across blocks */
    int n = 0;                 /* threads in the current block */
    int live = 0;              /* not yet exited */
    int at_barrier = 0;
    fiber *cur = nullptr;
    context sched;
    const void *sched_lo = nullptr; /* the OS thread's stack, for ASan */
    size_t sched_bytes = 0;
    bool failed = false;
    uint64_t rng = 1;
    int rr = 0; /* round-robin cursor */
    body_fn body = nullptr;
    void *ctx = nullptr;
    dim3 grid, block;
    size_t dyn_bytes = 0;
    void *dyn = nullptr;
    std::vector<shared_block> shared;
    const char *launch_file = nullptr;
    int launch_line = 0;
};

static thread_local worker *W;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "simt: %s\n", msg);
    {
        std::lock_guard<std::mutex> g(g_err_mu);
        g_err = msg;
    }
    g_err_count++;
    const char *ab = getenv("ST_SIMT_ABORT");
    if (ab && *ab == '1')
        abort();
}

static void yield_to_scheduler(bool exiting);

/* An emulation error inside a fiber: record it, stop the block. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    worker *w = W;
    report("block (%u,%u,%u) of launch at %s:%d: %s", blockIdx.x, blockIdx.y, blockIdx.z, w->launch_file,
           w->launch_line, msg);
    w->failed = true;
}

static const char *op_name(warp_op op)
{
    static const char *n[] = {"__shfl_sync",   "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                              "__ballot_sync", "__any_sync",     "__all_sync",       "__syncwarp"};
    return n[op];
}

/* ---- fibers ------------------------------------------------------------------------ */
static void fiber_entry()
{
    worker *w = W;
    fiber *f = w->cur;
    context_arrived(&f->ctx, &w->sched_lo, &w->sched_bytes);
    w->body(w->ctx);
    f->st = F_DONE;
    w->live--;
    if (w->at_barrier > 0 && !w->failed) {
        fiber *b = nullptr;
        for (auto &g : w->fibers)
            if (g.st == F_BARRIER && !b)
                b = &g;
        fail("thread (%u,%u,%u) exited while other threads wait at __syncthreads %s:%d", f->tid.x, f->tid.y,
             f->tid.z, b ? b->file : "?", b ? b->line : 0);
    }
    yield_to_scheduler(true);
    __builtin_unreachable();
}

static void yield_to_scheduler(bool exiting)
{
    worker *w = W;
    fiber *f = w->cur;
    if (exiting) { /* poison can only sit in the frames live now, plus margin for the switch's own */
        const char *sp = static_cast<const char *>(__builtin_frame_address(0));
        f->dirty = (size_t)(f->stack.lo + f->stack.bytes - sp) + (16u << 10);
    }
    context_switch(&f->ctx, &w->sched, w->sched_lo, w->sched_bytes, exiting);
    /* resumed by the scheduler; W cannot change: fibers never migrate */
}

static void set_indices(const fiber *f) { threadIdx = f->tid; }

static fiber *pick(worker *w, schedule s)
{
    const int n = w->n;
    switch (s) {
    case SCHED_LOWEST:
        for (int i = 0; i < n; i++)
            if (w->fibers[i].st == F_READY)
                return &w->fibers[i];
        return nullptr;
    case SCHED_HIGHEST:
        for (int i = n - 1; i >= 0; i--)
            if (w->fibers[i].st == F_READY)
                return &w->fibers[i];
        return nullptr;
    case SCHED_RANDOM: {
        int ready = 0;
        for (int i = 0; i < n; i++)
            ready += w->fibers[i].st == F_READY;
        if (!ready)
            return nullptr;
        w->rng ^= w->rng << 13; /* xorshift64 */
        w->rng ^= w->rng >> 7;
        w->rng ^= w->rng << 17;
        int k = (int)(w->rng % (uint64_t)ready);
        for (int i = 0; i < n; i++)
            if (w->fibers[i].st == F_READY && k-- == 0)
                return &w->fibers[i];
        return nullptr;
    }
    default:
        for (int j = 0; j < n; j++) {
            int i = (w->rr + j) % n;
            if (w->fibers[i].st == F_READY) {
                w->rr = (i + 1) % n;
                return &w->fibers[i];
            }
        }
        return nullptr;
    }
}

static void report_deadlock(worker *w)
{
    std::string what;
    int shown = 0;
    for (int i = 0; i < w->n && shown < 6; i++) {
        fiber *f = &w->fibers[i];
        if (f->st != F_BARRIER && f->st != F_WARP)
            continue;
        /* one line per distinct wait site */
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = (w->fibers[j].st == f->st) && w->fibers[j].file == f->file && w->fibers[j].line == f->line;
        if (seen)
            continue;
        char buf[256];
        if (f->st == F_BARRIER)
            snprintf(buf, sizeof buf, "; thread (%u,%u,%u) waits at __syncthreads %s:%d", f->tid.x, f->tid.y,
                     f->tid.z, f->file, f->line);
        else
            snprintf(buf, sizeof buf, "; thread (%u,%u,%u) waits at %s(mask %#x) %s:%d", f->tid.x, f->tid.y,
                     f->tid.z, op_name(f->op), f->mask, f->file, f->line);
        what += buf;
        shown++;
    }
    report("block (%u,%u,%u) of launch at %s:%d: deadlock, %d of %d threads exited%s", blockIdx.x, blockIdx.y,
           blockIdx.z, w->launch_file, w->launch_line, w->n - w->live, w->n, what.c_str());
    w->failed = true;
}

/* Run one block to completion (or to its first emulation error). */
static void run_block(worker *w, schedule s)
{
    for (int i = 0; i < w->n; i++) {
        fiber *f = &w->fibers[i];
#if SIMT_ASAN
        /* frames of fibers that never returned may still be poisoned */
        const size_t d = f->dirty < f->stack.bytes ? f->dirty : f->stack.bytes;
        ASAN_UNPOISON_MEMORY_REGION(f->stack.lo + f->stack.bytes - d, d);
        f->dirty = SIZE_MAX; /* until it exits normally again */
#endif
        context_init(&f->ctx, &f->stack, fiber_entry);
        f->tid = make_uint3(i % w->block.x, i / w->block.x % w->block.y, i / (w->block.x * w->block.y));
        f->lane = i % 32;
        f->warp = i / 32;
        f->st = F_READY;
    }
    w->live = w->n;
    w->at_barrier = 0;
    w->rr = 0;
    w->failed = false;
    while (!w->failed) {
        fiber *f = pick(w, s);
        if (!f) {
            if (w->live > 0)
                report_deadlock(w);
            break;
        }
        w->cur = f;
        set_indices(f);
        context_switch(&w->sched, &f->ctx, f->stack.lo, f->stack.bytes, false);
        w->cur = nullptr;
    }
    for (auto &sb : w->shared)
        free(sb.p);
    w->shared.clear();
    free(w->dyn);
    w->dyn = nullptr;
}

/* ---- __syncthreads ------------------------------------------------------------------------ */
void syncthreads(const char *file, int line)
{
    worker *w = W;
    fiber *f = w->cur;
    f->st = F_BARRIER;
    f->file = file;
    f->line = line;
    w->at_barrier++;
    if (w->at_barrier == w->live) {
        /* everyone still running is here: were they at the same barrier,
         * and did nobody leave early? */
        fiber *other = nullptr;
        for (int i = 0; i < w->n && !other; i++) {
            fiber *g = &w->fibers[i];
            if (g->st == F_BARRIER && (g->file != file || g->line != line))
                other = g;
        }
        if (other) {
            fail("divergent __syncthreads: thread (%u,%u,%u) at %s:%d, thread (%u,%u,%u) at %s:%d", f->tid.x,
                 f->tid.y, f->tid.z, file, line, other->tid.x, other->tid.y, other->tid.z, other->file, other->line);
        } else if (w->live < w->n) {
            fail("__syncthreads at %s:%d reached by %d of %d threads; the others exited before it", file, line,
                 w->live, w->n);
        } else {
            for (int i = 0; i < w->n; i++)
                w->fibers[i].st = F_READY;
            w->at_barrier = 0;
        }
    }
    if (f->st == F_BARRIER || w->failed)
        yield_to_scheduler(false);
}

/* ---- warp collectives ---------------------------------------------------------------------- */
/* Source lane of a shuffle per PTX shfl.sync: c packs the segment mask
 * (32 - width) and the clamp; out-of-segment sources read the lane's own
 * value. */
static int shfl_source(warp_op op, int lane, int b, int width)
{
    const int segmask = 32 - width;
    const int min_lane = lane & segmask;
    const int max_lane = op == W_SHFL_UP ? min_lane : min_lane | (31 & ~segmask);
    int j;
    bool ok;
    switch (op) {
    case W_SHFL_UP: j = lane - b; ok = j >= max_lane; break;
    case W_SHFL_DOWN: j = lane + b; ok = j <= max_lane; break;
    case W_SHFL_XOR: j = lane ^ (b & 31); ok = j <= max_lane; break;
    default: j = min_lane | (b & 31 & ~segmask); ok = j <= max_lane; break;
    }
    return ok ? j : lane;
}

/* The collective of lanes `mask` of warp `wp` is complete: check that all
 * agree on what they execute, then hand each its result. */
static void complete_collective(worker *w, int wp, fiber *f)
{
    const unsigned mask = f->mask;
    fiber *lanes = &w->fibers[wp * 32];
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1))
            continue;
        fiber *g = &lanes[l];
        if (g->op != f->op || g->mask != f->mask || g->width != f->width) {
            fail("mismatched warp collectives in warp %d: lane %d at %s(mask %#x) %s:%d, lane %d at %s(mask %#x) %s:%d",
                 wp, f->lane, op_name(f->op), f->mask, f->file, f->line, l, op_name(g->op), g->mask, g->file,
                 g->line);
            return;
        }
    }
    unsigned votes = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1) && lanes[l].bits)
            votes |= 1u << l;
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1))
            continue;
        fiber *g = &lanes[l];
        switch (f->op) {
        case W_BALLOT: g->result = votes; break;
        case W_ANY: g->result = votes != 0; break;
        case W_ALL: g->result = votes == mask; break;
        case W_SYNCWARP: g->result = 0; break;
        default: {
            int j = shfl_source(f->op, l, g->param, f->width);
            /* undefined on hardware: make it visible */
            g->result = (mask >> j & 1) ? lanes[j].bits : ~(uint64_t)0;
        }
        }
        g->st = F_READY;
    }
}

uint64_t warp_collective(warp_op op, unsigned mask, uint64_t bits, int param, int width, const char *file, int line)
{
    worker *w = W;
    fiber *f = w->cur;
    f->file = file;
    f->line = line;
    if (!(mask >> f->lane & 1)) {
        fail("thread (%u,%u,%u) (lane %d) calls %s with mask %#x that does not include it, at %s:%d", f->tid.x,
             f->tid.y, f->tid.z, f->lane, op_name(op), mask, file, line);
        yield_to_scheduler(false);
    }
    const int exist = w->n - f->warp * 32; /* lanes of this warp that exist */
    if (exist < 32 && (mask >> exist) != 0) {
        fail("%s mask %#x at %s:%d names lanes beyond the %d threads of warp %d", op_name(op), mask, file, line,
             exist, f->warp);
        yield_to_scheduler(false);
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        fail("%s width %d at %s:%d is not a power of two in [1, 32]", op_name(op), width, file, line);
        yield_to_scheduler(false);
    }
    f->op = op;
    f->mask = mask;
    f->bits = bits;
    f->param = param;
    f->width = width;
    f->st = F_WARP;
    bool all = true;
    for (int l = 0; l < 32 && all; l++) {
        if (!(mask >> l & 1))
            continue;
        fiber *g = &w->fibers[f->warp * 32 + l];
        if (g->st == F_DONE) {
            fail("%s at %s:%d: lane %d named in mask %#x has exited", op_name(op), file, line, l, mask);
            yield_to_scheduler(false);
        }
        all = g->st == F_WARP;
    }
    if (all)
        complete_collective(w, f->warp, f);
    if (f->st == F_WARP || w->failed)
        yield_to_scheduler(false);
    return f->result;
}

unsigned activemask()
{
    worker *w = W;
    fiber *f = w->cur;
    unsigned m = 0;
    for (int l = 0; l < 32 && f->warp * 32 + l < w->n; l++)
        if (w->fibers[f->warp * 32 + l].st != F_DONE)
            m |= 1u << l;
    return m;
}

/* ---- shared memory ------------------------------------------------------------------------- */
void *shared_static(const void *key, size_t bytes, size_t align, const char *name, const char *file, int line)
{
    worker *w = W;
    for (auto &sb : w->shared)
        if (sb.key == key)
            return sb.p;
    if (bytes == 0 || bytes > (48u << 10)) {
        fail("shared array %s at %s:%d is %zu bytes (static shared memory holds 1..49152)", name, file, line, bytes);
        yield_to_scheduler(false);
    }
    /* exact size, so the allocator's redzone starts right after the end */
    void *p = nullptr;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, bytes) != 0)
        abort();
    memset(p, 0xff, bytes);
    w->shared.push_back({key, p});
    return p;
}

void *shared_dynamic(const char *file, int line)
{
    worker *w = W;
    if (!w->dyn) {
        if (w->dyn_bytes == 0) {
            fail("dynamic shared memory used at %s:%d but the launch gave 0 bytes", file, line);
            yield_to_scheduler(false);
        }
        if (posix_memalign(&w->dyn, 16, w->dyn_bytes) != 0)
            abort();
        memset(w->dyn, 0xff, w->dyn_bytes);
    }
    return w->dyn;
}

/* ---- launch ---------------------------------------------------------------------------------- */
struct launch_state {
    dim3 grid, block;
    size_t smem;
    const char *file;
    int line;
    body_fn body;
    void *ctx;
    schedule sched;
    uint64_t seed;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
};

static void run_blocks(launch_state *L)
{
    worker local;
    worker *w = &local;
    W = w;
    const int n = (int)(L->block.x * L->block.y * L->block.z);
    w->fibers.resize((size_t)n);
    for (auto &f : w->fibers)
        if (!stack_alloc(&f.stack, STACK_BYTES)) {
            fprintf(stderr, "simt: cannot map fiber stacks\n");
            abort();
        }
    w->n = n;
    w->body = L->body;
    w->ctx = L->ctx;
    w->grid = L->grid;
    w->block = L->block;
    w->dyn_bytes = L->smem;
    w->launch_file = L->file;
    w->launch_line = L->line;
    gridDim = make_uint3(L->grid.x, L->grid.y, L->grid.z);
    blockDim = make_uint3(L->block.x, L->block.y, L->block.z);
    const uint64_t total = (uint64_t)L->grid.x * L->grid.y * L->grid.z;
    for (;;) {
        if (L->failed.load())
            break;
        uint64_t b = L->next.fetch_add(1);
        if (b >= total)
            break;
        blockIdx = make_uint3((unsigned)(b % L->grid.x), (unsigned)(b / L->grid.x % L->grid.y),
                              (unsigned)(b / ((uint64_t)L->grid.x * L->grid.y)));
        /* a seed per block: the same whatever the OS thread count */
        w->rng = (L->seed + 1) * 0x9E3779B97F4A7C15ull ^ (b + 1) * 0xBF58476D1CE4E5B9ull;
        if (!w->rng)
            w->rng = 1;
        run_block(w, L->sched);
        if (w->failed)
            L->failed = true;
    }
    for (auto &f : w->fibers)
        stack_free(&f.stack);
    W = nullptr;
}

/* set by simt_cudart.cpp's cudaGetLastError */
void set_launch_error(cudaError_t e);

cudaError_t launch_impl(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char *file, int line,
                        body_fn body, void *ctx)
{
    (void)stream; /* launches run synchronously: any stream order holds */
    load_env();
    if (W) {
        report("launch at %s:%d from inside a kernel (dynamic parallelism is not emulated)", file, line);
        set_launch_error(cudaErrorLaunchFailure);
        return cudaErrorLaunchFailure;
    }
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads == 0 || threads > (uint64_t)MAX_THREADS || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu || smem > (227u << 10)) {
        report("launch at %s:%d: invalid configuration grid (%u,%u,%u) block (%u,%u,%u) shared %zu bytes", file,
               line, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        set_launch_error(cudaErrorInvalidConfiguration);
        return cudaErrorInvalidConfiguration;
    }
    launch_state L;
    L.grid = grid;
    L.block = block;
    L.smem = smem;
    L.file = file;
    L.line = line;
    L.body = body;
    L.ctx = ctx;
    L.sched = (schedule)g_schedule.load();
    L.seed = g_seed.load();
    const uint64_t total = (uint64_t)grid.x * grid.y * grid.z;
    int nt = g_os_threads.load();
    if ((uint64_t)nt > total)
        nt = (int)total;
    if (nt <= 1) {
        run_blocks(&L);
    } else {
        std::vector<std::thread> ts;
        for (int i = 0; i < nt; i++)
            ts.emplace_back(run_blocks, &L);
        for (auto &t : ts)
            t.join();
    }
    if (L.failed.load()) {
        set_launch_error(cudaErrorLaunchFailure);
        return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

} // namespace simt
