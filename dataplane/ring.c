/* SPSC ring set-up (the hot paths are inline in ring.h). */
#include "ring.h"

#include "common/st_common.h"

#include <stdlib.h>

int st_spsc_init(st_spsc *r, uint64_t cap, size_t elem)
{
    memset(r, 0, sizeof *r);
    if (cap < 2 || (cap & (cap - 1)) || cap > ((uint64_t)1 << 30) || elem == 0)
        return st_err(ST_EINVAL, "spsc ring: capacity %llu must be a power of two >= 2", (unsigned long long)cap);
    r->mask = cap - 1;
    r->elem = elem;
    r->buf = st_xaligned(cap * elem);
    return ST_OK;
}

void st_spsc_free(st_spsc *r)
{
    free(r->buf);
    r->buf = NULL;
}
