/* Device sampling (kernels/cuda/sample.cu through st_cuda_sample) on the
 * SIMT emulator, under the three deterministic schedules, against a host
 * reference in double that follows the contract of cuda.h:
 *  - greedy rows must equal st_argmax (engine/sampler.h) exactly, ties to
 *    the lowest id included;
 *  - sampled rows: the reference computes the kept set (top-k with ties at
 *    the k-th value kept, then top-p), the weights exp((l - max) / T) and
 *    the target u * Z_kept; the device's token must be kept and its
 *    cumulative interval [before, after) in id order must contain the
 *    target, within 1e-4 x Z_kept (the device sums in f32, in another
 *    order, so a target that close to a boundary may go either way).
 * Bad parameters are refused with a message, not launched. */
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"

#include "common/st_common.h"
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "tests/test.h"

static uint32_t rng = 12345;
static float frand(float lo, float hi)
{
    rng = rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(rng >> 8) / (float)(1u << 24);
}

/* Checks the device's token for one row against the reference. */
static void check_row(const char *what, const float *l, int vocab, const st_cuda_sample_params &p, int32_t got)
{
    CHECKF(got >= 0 && got < vocab, "%s: token %d outside vocab %d", what, got, vocab);
    if (got < 0 || got >= vocab)
        return;
    if (!(p.temperature > 0.0f)) {
        CHECKF(got == st_argmax(l, vocab), "%s: greedy %d, argmax %d", what, got, st_argmax(l, vocab));
        return;
    }
    std::vector<float> sorted(l, l + vocab);
    std::sort(sorted.begin(), sorted.end(), [](float a, float b) { return a > b; });
    const double mx = sorted[0];
    float thr = sorted[(size_t)vocab - 1];
    if (p.top_k > 0 && p.top_k < vocab)
        thr = sorted[(size_t)p.top_k - 1];
    auto w = [&](float v) { return exp(((double)v - mx) / p.temperature); };
    if (p.top_p < 1.0f) {
        double z = 0;
        for (int i = 0; i < vocab; i++)
            z += l[i] >= thr ? w(l[i]) : 0.0;
        double run = 0;
        for (float v : sorted) { /* smallest descending prefix with mass >= p z; ties at the end kept */
            if (v < thr)
                break;
            run += w(v);
            if (run >= p.top_p * z) {
                thr = v;
                break;
            }
        }
    }
    double z = 0, before = -1, after = -1;
    for (int i = 0; i < vocab; i++) {
        if (l[i] < thr)
            continue;
        if (i == got)
            before = z;
        z += w(l[i]);
        if (i == got)
            after = z;
    }
    CHECKF(before >= 0, "%s: token %d (logit %g) is not kept (threshold %g)", what, got, (double)l[got], (double)thr);
    const double target = p.u * z, slack = 1e-4 * z;
    CHECKF(before - slack <= target && target < after + slack,
           "%s: token %d covers [%g, %g) of %g, target %g", what, got, before, after, z, target);
}

int main()
{
    st_log_set_level(ST_LOG_WARN);
    st_backend *gpu = st_backend_cuda_create(0);
    CHECK(gpu != nullptr);
    if (!gpu)
        return test_done();

    const int vocab = 5003; /* not a multiple of the block */
    struct row {
        const char *what;
        st_cuda_sample_params p;
    };
    const row rows[] = {
        {"greedy", {0.0f, 0, 1.0f, 0.0f}},
        {"greedy with ties", {-1.0f, 40, 0.5f, 0.3f}},
        {"T 0.8 top-k 40 top-p 0.95", {0.8f, 40, 0.95f, 0.37f}},
        {"T 1 top-p 0.9", {1.0f, 0, 0.9f, 0.81f}},
        {"T 1.3 no truncation", {1.3f, 0, 1.0f, 0.5f}},
        {"T 1.3 no truncation, u near 1", {1.3f, 0, 1.0f, 0.99999f}},
        {"T 0.7 top-k 1", {0.7f, 1, 1.0f, 0.9f}},
        {"T 2 top-k 7 with ties", {2.0f, 7, 1.0f, 0.0f}},
        {"T 0.5 top-k 5000 top-p 0.5", {0.5f, 5000, 0.5f, 0.66f}},
    };
    const int n = (int)(sizeof rows / sizeof rows[0]);
    std::vector<float> logits((size_t)n * vocab);
    for (auto &v : logits)
        v = frand(-8.0f, 8.0f);
    /* ties: row 1 has its maximum twice (ids 17 and 4000), row 7 its top values repeated */
    logits[(size_t)1 * vocab + 4000] = logits[(size_t)1 * vocab + 17] = 20.0f;
    for (int i = 100; i < 110; i++)
        logits[(size_t)7 * vocab + (size_t)i * 37] = 9.0f;

    float *d = static_cast<float *>(gpu->ops->alloc(gpu, logits.size() * sizeof(float)));
    gpu->ops->to_device(gpu, d, logits.data(), logits.size() * sizeof(float));
    std::vector<st_cuda_sample_params> ps;
    for (const row &r : rows)
        ps.push_back(r.p);

    const simt::schedule schedules[] = {simt::SCHED_INORDER, simt::SCHED_LOWEST, simt::SCHED_HIGHEST};
    for (simt::schedule s : schedules) {
        simt::set_schedule(s, 3);
        std::vector<int32_t> ids((size_t)n, -7);
        CHECKF(st_cuda_sample(gpu, ids.data(), d, n, vocab, ps.data()) == ST_OK, "sample: %s", st_errmsg());
        for (int r = 0; r < n; r++) {
            char what[160];
            snprintf(what, sizeof what, "%s (%s)", rows[r].what, simt::schedule_name(s));
            check_row(what, logits.data() + (size_t)r * vocab, vocab, rows[r].p, ids[(size_t)r]);
        }
        CHECKF(ids[1] == 17, "greedy tie: %d, want 17", ids[1]);
        CHECKF(ids[6] == st_argmax(logits.data() + (size_t)6 * vocab, vocab), "top-k 1 must be the argmax");
    }

    /* refusals */
    int32_t id = -1;
    st_cuda_sample_params bad = {1.0f, 0, 1.0f, 1.0f}; /* u must be < 1 */
    CHECK(st_cuda_sample(gpu, &id, d, 1, vocab, &bad) == ST_EINVAL);
    CHECK(strstr(st_errmsg(), "row 0") != nullptr);
    bad.u = 0.5f;
    bad.top_p = 0.0f;
    CHECK(st_cuda_sample(gpu, &id, d, 1, vocab, &bad) == ST_EINVAL);
    CHECK(st_cuda_sample(gpu, &id, d, 1, 0, ps.data()) == ST_EINVAL);
    CHECK(id == -1);

    gpu->ops->free(gpu, d);
    CHECKF(simt::error_count() == 0, "emulation errors: %s", simt::last_error());
    st_backend_destroy(gpu);
    return test_done();
}
