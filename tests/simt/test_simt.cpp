/* The SIMT emulator's own tests: reductions with shuffles and shared
 * memory agree with a double-precision sum under every schedule; each warp
 * collective matches the CUDA programming guide's definition lane by lane;
 * a block reduction with its barrier removed gives a wrong answer under
 * some schedule; misuse (divergent barrier, early exit before a barrier,
 * bad masks, bad launch configuration) is reported with file:line. */
#include "kernels/cuda/launch.cuh"

#include <string>
#include <vector>

#include "tests/test.h"

static const simt::schedule all_schedules[] = {simt::SCHED_INORDER, simt::SCHED_LOWEST, simt::SCHED_HIGHEST,
                                               simt::SCHED_RANDOM};

/* ---- test kernels ------------------------------------------------------------------ */
static __device__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(ST_FULL_MASK, v, o);
    return v;
}

/* out[blockIdx.x] = sum of in[i] for the block's slice; blockDim.x is a
 * multiple of 32. With_barrier = false plants the classic bug: warp 0
 * reads the other warps' partial sums without waiting for them. */
template <bool with_barrier> static __global__ void block_sum(const float *in, float *out, int n)
{
    ST_SHARED(float, partial, 32);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? in[i] : 0.0f;
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0)
        partial[threadIdx.x / 32] = v;
    if (with_barrier)
        __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
        v = warp_sum(v);
        if (threadIdx.x == 0)
            out[blockIdx.x] = v;
    }
}

/* Tree reduction in dynamic shared memory, no shuffles. */
static __global__ void tree_sum(const float *in, float *out, int n)
{
    ST_SHARED_DYN(float, s);
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h)
            s[t] += s[t + h];
        __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = s[0];
}

/* Every lane records the result of one collective of each kind. */
static __global__ void collectives(int *out, int src, int delta, int width, int xmask)
{
    const int lane = threadIdx.x % 32;
    const int v = 1000 + lane;
    int *o = out + (threadIdx.x / 32) * 32 * 7 + lane * 7;
    o[0] = __shfl_sync(ST_FULL_MASK, v, src, width);
    o[1] = __shfl_up_sync(ST_FULL_MASK, v, delta, width);
    o[2] = __shfl_down_sync(ST_FULL_MASK, v, delta, width);
    o[3] = __shfl_xor_sync(ST_FULL_MASK, v, xmask, width);
    o[4] = (int)__ballot_sync(ST_FULL_MASK, lane % 3 == 0);
    o[5] = __any_sync(ST_FULL_MASK, lane == src);
    o[6] = __all_sync(ST_FULL_MASK, lane < 32 - delta);
    __syncwarp();
}

/* Shuffle of 64-bit and half values inside a sub-mask of the warp. */
static __global__ void submask_shuffle(double *od, float *oh)
{
    const int lane = threadIdx.x;
    if (lane < 16) { /* lanes 0..15 only, their own mask */
        double d = __shfl_down_sync(0xffffu, 0.5 + lane, 1, 16);
        __half h = __shfl_xor_sync(0xffffu, __float2half((float)lane), 1);
        od[lane] = d;
        oh[lane] = __half2float(h);
    }
}

static const int divergent_line = __LINE__ + 4;
static __global__ void divergent_barrier(int *x)
{
    if (threadIdx.x < 16)
        __syncthreads();
    else
        __syncthreads();
    x[threadIdx.x] = 1;
}

static const int early_exit_line = __LINE__ + 6;
static __global__ void early_exit(int *x)
{
    if (threadIdx.x >= 40)
        return;
    x[threadIdx.x] = 1;
    __syncthreads();
}

static const int exited_lane_line = __LINE__ + 5;
static __global__ void shuffle_with_exited_lane(int *x)
{
    if (threadIdx.x % 32 >= 16)
        return;
    x[threadIdx.x] = __shfl_xor_sync(ST_FULL_MASK, (int)threadIdx.x, 1);
}

static const int not_in_mask_line = __LINE__ + 3;
static __global__ void caller_not_in_mask(int *x)
{
    x[threadIdx.x] = __shfl_sync(0x1u, (int)threadIdx.x, 0);
}

static const int partial_warp_line = __LINE__ + 3;
static __global__ void full_mask_in_partial_warp(int *x)
{
    x[threadIdx.x] = __shfl_xor_sync(ST_FULL_MASK, (int)threadIdx.x, 1);
}

static __global__ void shuffle_waits_on_barrier(int *x)
{
    if (threadIdx.x < 16) /* lanes 16..31 of warp 0 go straight to the barrier */
        x[threadIdx.x] = __shfl_xor_sync(ST_FULL_MASK, 1, 1);
    __syncthreads();
}

/* ---- helpers ----------------------------------------------------------------------- */
static std::vector<float> make_input(int n)
{
    std::vector<float> v((size_t)n);
    uint32_t s = 12345;
    for (auto &x : v) {
        s = s * 1664525u + 1013904223u;
        x = (float)((s >> 8) % 2001) / 1000.0f - 1.0f;
    }
    return v;
}

static float *to_dev(const std::vector<float> &h)
{
    float *d = nullptr;
    CHECK(cudaMalloc((void **)&d, h.size() * sizeof(float)) == cudaSuccess);
    CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static std::vector<float> from_dev(const float *d, size_t n)
{
    std::vector<float> h(n);
    CHECK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
}

static bool contains(const std::string &s, const std::string &what) { return s.find(what) != std::string::npos; }

/* Run a misuse kernel; expect a launch failure whose message holds all `needles`. */
static void expect_error(const char *label, cudaError_t rc, std::initializer_list<std::string> needles)
{
    std::string msg = simt::last_error();
    CHECKF(rc == cudaErrorLaunchFailure, "%s: launch returned %d", label, (int)rc);
    CHECKF(cudaGetLastError() == cudaErrorLaunchFailure, "%s: sticky error missing", label);
    for (const auto &n : needles)
        CHECKF(contains(msg, n), "%s: message \"%s\" lacks \"%s\"", label, msg.c_str(), n.c_str());
    simt::clear_error();
}

/* ---- tests ----------------------------------------------------------------------------- */
static void test_reductions()
{
    const int n = 5000, bs = 256, nb = (n + bs - 1) / bs;
    std::vector<float> in = make_input(n);
    std::vector<double> want((size_t)nb, 0.0);
    for (int i = 0; i < n; i++)
        want[(size_t)(i / bs)] += in[(size_t)i];
    float *din = to_dev(in), *dout = nullptr;
    cudaMalloc((void **)&dout, nb * sizeof(float));
    for (simt::schedule s : all_schedules) {
        for (int threads : {1, 3}) {
            simt::set_schedule(s, 7);
            simt::set_os_threads(threads);
            CHECK(ST_LAUNCH(block_sum<true>, nb, bs, 0, 0, din, dout, n) == cudaSuccess);
            std::vector<float> got = from_dev(dout, (size_t)nb);
            for (int b = 0; b < nb; b++)
                CHECKF(fabs(got[(size_t)b] - want[(size_t)b]) <= 1e-4 * 256, "shuffle sum, %s, block %d: %g vs %g",
                       simt::schedule_name(s), b, got[(size_t)b], want[(size_t)b]);
            CHECK(ST_LAUNCH(tree_sum, nb, bs, bs * sizeof(float), 0, din, dout, n) == cudaSuccess);
            got = from_dev(dout, (size_t)nb);
            for (int b = 0; b < nb; b++)
                CHECKF(fabs(got[(size_t)b] - want[(size_t)b]) <= 1e-4 * 256, "tree sum, %s, block %d: %g vs %g",
                       simt::schedule_name(s), b, got[(size_t)b], want[(size_t)b]);
        }
    }
    simt::set_os_threads(1);
    cudaFree(din);
    cudaFree(dout);
}

static void test_missing_barrier_is_caught()
{
    const int n = 512, bs = 256, nb = 2;
    std::vector<float> in = make_input(n);
    float *din = to_dev(in), *dout = nullptr;
    cudaMalloc((void **)&dout, nb * sizeof(float));
    double want = 0;
    for (int i = 0; i < bs; i++)
        want += in[(size_t)i];
    int wrong = 0;
    std::vector<float> per_schedule;
    for (simt::schedule s : all_schedules) {
        simt::set_schedule(s, 3);
        CHECK(ST_LAUNCH(block_sum<false>, nb, bs, 0, 0, din, dout, n) == cudaSuccess);
        float got = from_dev(dout, 1)[0];
        per_schedule.push_back(got);
        wrong += !(fabs(got - want) <= 1e-2);
    }
    CHECKF(wrong > 0, "the planted missing barrier went unnoticed under every schedule");
    /* lowest-first runs warp 0 to the end before any other warp writes */
    CHECKF(!(per_schedule[1] == per_schedule[2]), "lowest and highest schedules agree (%g)", per_schedule[1]);
    cudaFree(din);
    cudaFree(dout);
}

static void test_collectives_exact()
{
    const int nthreads = 64;
    int *dout = nullptr;
    cudaMalloc((void **)&dout, nthreads * 7 * sizeof(int));
    std::vector<int> got((size_t)nthreads * 7);
    for (int width : {32, 16, 8, 4, 2, 1})
        for (int src : {0, 3, 17, 31, 40, -1})
            for (int delta : {0, 1, 5, 16})
                for (int xm : {1, 6, 16, 31}) {
                    simt::set_schedule(all_schedules[(width + src + delta + xm) & 3], 11);
                    CHECK(ST_LAUNCH(collectives, 1, nthreads, 0, 0, dout, src, delta, width, xm) == cudaSuccess);
                    cudaMemcpy(got.data(), dout, got.size() * sizeof(int), cudaMemcpyDeviceToHost);
                    for (int t = 0; t < nthreads; t++) {
                        const int lane = t % 32, seg = lane / width * width;
                        const int *o = &got[(size_t)t * 7];
                        /* the programming guide's definitions, per lane */
                        int e_idx = 1000 + seg + ((src % width) + width) % width;
                        int e_up = 1000 + (lane - seg >= delta ? lane - delta : lane);
                        int e_down = 1000 + (lane - seg + delta < width ? lane + delta : lane);
                        int x = lane ^ xm;
                        int e_xor = 1000 + (x < seg + width ? x : lane);
                        unsigned e_ballot = 0;
                        for (int l = 0; l < 32; l++)
                            e_ballot |= (unsigned)(l % 3 == 0) << l;
                        int e_any = src >= 0 && src < 32;
                        int e_all = delta == 0;
                        CHECKF(o[0] == e_idx && o[1] == e_up && o[2] == e_down && o[3] == e_xor &&
                                   (unsigned)o[4] == e_ballot && o[5] == e_any && o[6] == e_all,
                               "lane %d width %d src %d delta %d xor %d: got %d %d %d %d %#x %d %d want %d %d %d %d "
                               "%#x %d %d",
                               t, width, src, delta, xm, o[0], o[1], o[2], o[3], o[4], o[5], o[6], e_idx, e_up, e_down,
                               e_xor, e_ballot, e_any, e_all);
                    }
                }
    cudaFree(dout);

    double *dd = nullptr;
    float *dh = nullptr;
    cudaMalloc((void **)&dd, 16 * sizeof(double));
    cudaMalloc((void **)&dh, 16 * sizeof(float));
    CHECK(ST_LAUNCH(submask_shuffle, 1, 32, 0, 0, dd, dh) == cudaSuccess);
    double hd[16];
    float hh[16];
    cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost);
    cudaMemcpy(hh, dh, sizeof hh, cudaMemcpyDeviceToHost);
    for (int l = 0; l < 16; l++) {
        CHECK(hd[l] == 0.5 + (l + 1 < 16 ? l + 1 : l));
        CHECK(hh[l] == (float)(l ^ 1));
    }
    cudaFree(dd);
    cudaFree(dh);
}

static void test_misuse_reported()
{
    int *dx = nullptr;
    cudaMalloc((void **)&dx, 256 * sizeof(int));
    const std::string file = "test_simt.cpp:";
    simt::set_schedule(simt::SCHED_INORDER);
    expect_error("divergent", ST_LAUNCH(divergent_barrier, 1, 64, 0, 0, dx),
                 {"divergent __syncthreads", file + std::to_string(divergent_line),
                  file + std::to_string(divergent_line + 2)});
    expect_error("early exit", ST_LAUNCH(early_exit, 1, 64, 0, 0, dx),
                 {"__syncthreads", file + std::to_string(early_exit_line), "exited"});
    for (simt::schedule s : all_schedules) {
        simt::set_schedule(s, 5);
        expect_error("exited lane", ST_LAUNCH(shuffle_with_exited_lane, 1, 32, 0, 0, dx),
                     {"__shfl_xor_sync", file + std::to_string(exited_lane_line)});
    }
    simt::set_schedule(simt::SCHED_INORDER);
    expect_error("not in mask", ST_LAUNCH(caller_not_in_mask, 1, 32, 0, 0, dx),
                 {"does not include it", file + std::to_string(not_in_mask_line)});
    expect_error("partial warp", ST_LAUNCH(full_mask_in_partial_warp, 1, 48, 0, 0, dx),
                 {"beyond the 16 threads", file + std::to_string(partial_warp_line)});
    expect_error("deadlock", ST_LAUNCH(shuffle_waits_on_barrier, 1, 64, 0, 0, dx), {"deadlock", "__syncthreads"});

    /* invalid configuration: reported, nothing runs */
    cudaError_t rc = ST_LAUNCH(early_exit, 1, 2048, 0, 0, dx);
    CHECK(rc == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    CHECK(contains(simt::last_error(), "invalid configuration"));
    simt::clear_error();

    /* a correct launch after all of that still works */
    std::vector<float> in = make_input(64);
    float *din = to_dev(in), *dout = nullptr;
    cudaMalloc((void **)&dout, sizeof(float));
    CHECK(ST_LAUNCH(block_sum<true>, 1, 64, 0, 0, din, dout, 64) == cudaSuccess);
    double want = 0;
    for (float v : in)
        want += v;
    CHECK_NEAR(from_dev(dout, 1)[0], want, 1e-4);
    CHECK(cudaGetLastError() == cudaSuccess);
    cudaFree(din);
    cudaFree(dout);
    cudaFree(dx);
}

static void test_memory_api()
{
    float *d = nullptr;
    CHECK(cudaMalloc((void **)&d, 10 * sizeof(float)) == cudaSuccess);
    float h[11] = {0};
    CHECK(cudaMemcpy(d, h, 10 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    /* one element past the allocation is refused, not copied */
    CHECK(cudaMemcpy(d, h, 11 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(h, d + 1, 10 * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaFree(h) == cudaErrorInvalidValue);
    CHECK(cudaFree(d) == cudaSuccess);
    cudaGetLastError();
}

int main()
{
    test_reductions();
    test_missing_barrier_is_caught();
    test_collectives_exact();
    test_misuse_reported();
    test_memory_api();
    return test_done();
}
