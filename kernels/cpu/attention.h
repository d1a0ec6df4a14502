/* Paged attention and KV-cache checks of the CPU backend (attention.c). */
#ifndef ST_CPU_ATTENTION_H
#define ST_CPU_ATTENTION_H

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

/* ST_OK, or ST_EINVAL when layer is not allocated or the geometry is unsupported. */
int st_cpu_check_kv(const st_kv_cache *kv, int layer);
/* ST_OK when every row belongs to exactly one sequence whose block table
 * covers its position with valid block ids; fills row_seq (n_tokens,). */
int st_cpu_check_batch(const st_kv_cache *kv, const st_batch *b, int32_t *row_seq);

/* out = attention(q) over the cache (see backend.h); *row_seq is a
 * reusable scratch array (grown here). ST_OK or ST_EINVAL. */
int st_cpu_attention(const st_cpu_kernels *k, st_tp *tp, int32_t **row_seq, size_t *row_seq_cap, float *out,
                     const float *q, const st_kv_cache *kv, int layer, const st_batch *b, int n_heads, float scale);

#endif
