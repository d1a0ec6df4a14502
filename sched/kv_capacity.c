/* KV cache sizing: blocks from a byte budget or a share of free memory
 * (see kv_blocks.h). */
#include "kv_blocks.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/st_common.h"

size_t st_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int elem_bytes, int block_size)
{
    if (n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0 || elem_bytes <= 0 || block_size <= 0)
        return 0;
    size_t b = 2; /* K and V */
    if (st_mul_ok(b, (size_t)n_layers, &b) || st_mul_ok(b, (size_t)n_kv_heads, &b) ||
        st_mul_ok(b, (size_t)head_dim, &b) || st_mul_ok(b, (size_t)elem_bytes, &b) ||
        st_mul_ok(b, (size_t)block_size, &b))
        return 0;
    return b;
}

int st_kv_blocks_for_bytes(size_t bytes, size_t block_bytes)
{
    if (!block_bytes)
        return 0;
    size_t n = bytes / block_bytes;
    return n > INT32_MAX / 2 ? INT32_MAX / 2 : (int)n;
}

int st_mem_available(uint64_t *bytes)
{
    *bytes = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return st_err(ST_EIO, "cannot open /proc/meminfo: %s", strerror(errno));
    char line[256];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
            *bytes = (uint64_t)kib * 1024;
            found = 1;
        }
    }
    fclose(f);
    /* the message is set only on failure: a caller's earlier one survives success */
    return found ? ST_OK : st_err(ST_ENOENT, "/proc/meminfo has no MemAvailable line");
}

int st_kv_blocks_for_share(double fraction, uint64_t avail, size_t block_bytes, int *n_blocks)
{
    *n_blocks = 0;
    if (!(fraction > 0.0 && fraction <= 1.0))
        return st_err(ST_EINVAL, "kv cache memory fraction %g is outside (0, 1]", fraction);
    *n_blocks = st_kv_blocks_for_bytes((size_t)((double)avail * fraction), block_bytes);
    return ST_OK;
}
