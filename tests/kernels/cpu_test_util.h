/* Helpers shared by the CPU-backend tests: a seeded generator and random
 * weight tensors of every type (valid blocks with realistic scales). */
#ifndef ST_CPU_TEST_UTIL_H
#define ST_CPU_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "kernels/cpu/cpu.h"
#include "kernels/tensor.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
/* uniform in [lo, hi) */
static inline float rng_f(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() & 0xFFFFFF) / 16777216.0f; }

static inline void rand_fill(float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = rng_f(-amp, amp);
    /* an outlier now and then, as real activations have */
    for (size_t i = 0; i < n; i += 97)
        x[i] *= 8.0f;
}

/* A (O, K) weight tensor of type t with random content; free t->data. */
static inline st_tensor rand_tensor(st_dtype t, int K, int O)
{
    st_tensor w = {.name = "w", .type = t, .n_dims = 2, .ne = {K, O, 1, 1}};
    const size_t rb = st_dtype_row_bytes(t, K);
    w.nbytes = rb * (size_t)O;
    uint8_t *d = st_xaligned(w.nbytes);
    const size_t nb = w.nbytes / st_dtype_block_bytes(t);
    for (size_t i = 0; i < nb; i++) {
        switch (t) {
        case ST_F32: {
            float f = rng_f(-1, 1);
            memcpy(d + 4 * i, &f, 4);
            break;
        }
        case ST_F16: {
            uint16_t h = st_f32_to_f16(rng_f(-1, 1));
            memcpy(d + 2 * i, &h, 2);
            break;
        }
        case ST_BF16: {
            uint16_t h = st_f32_to_bf16(rng_f(-1, 1));
            memcpy(d + 2 * i, &h, 2);
            break;
        }
        case ST_Q8_0: {
            st_block_q8_0 *b = (st_block_q8_0 *)(d + i * sizeof *b);
            b->d = st_f32_to_f16(rng_f(0.001f, 0.02f));
            for (int j = 0; j < 32; j++)
                b->qs[j] = (int8_t)(rng_u32() & 0xFF); /* -128 included on purpose */
            break;
        }
        case ST_Q4_0: {
            st_block_q4_0 *b = (st_block_q4_0 *)(d + i * sizeof *b);
            b->d = st_f32_to_f16(rng_f(0.005f, 0.1f));
            for (int j = 0; j < 16; j++)
                b->qs[j] = (uint8_t)rng_u32();
            break;
        }
        case ST_Q4_1: {
            st_block_q4_1 *b = (st_block_q4_1 *)(d + i * sizeof *b);
            b->d = st_f32_to_f16(rng_f(0.005f, 0.1f));
            b->m = st_f32_to_f16(rng_f(-0.8f, 0.2f));
            for (int j = 0; j < 16; j++)
                b->qs[j] = (uint8_t)rng_u32();
            break;
        }
        default: break;
        }
    }
    w.data = d;
    return w;
}

static const st_dtype all_types[] = {ST_F32, ST_F16, ST_BF16, ST_Q8_0, ST_Q4_0, ST_Q4_1};
static inline int is_q(st_dtype t) { return t == ST_Q8_0 || t == ST_Q4_0 || t == ST_Q4_1; }

#endif
