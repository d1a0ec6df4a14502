/* Per-sequence block tables on both ends of a pipeline (see block_tables.h). */
#include "block_tables.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

static size_t slot_of(const st_bt_map *m, uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull; /* sequence ids are often consecutive: spread them */
    h ^= h >> 29;
    return (size_t)h & (m->n_slots - 1);
}

void st_bt_init(st_bt_map *m, int max_seqs, int max_blocks)
{
    memset(m, 0, sizeof *m);
    m->max_seqs = max_seqs < 1 ? 1 : max_seqs;
    m->max_blocks = max_blocks < 1 ? 1 : max_blocks;
    m->n_slots = 16;
    m->e = st_xcalloc(m->n_slots, sizeof *m->e);
}

void st_bt_clear(st_bt_map *m)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        free(m->e[i].ids);
        memset(&m->e[i], 0, sizeof m->e[i]);
    }
    m->n_used = 0;
}

void st_bt_free(st_bt_map *m)
{
    if (m->e)
        st_bt_clear(m);
    free(m->e);
    memset(m, 0, sizeof *m);
}

static st_bt_entry *find(const st_bt_map *m, uint64_t key)
{
    for (size_t i = slot_of(m, key);; i = (i + 1) & (m->n_slots - 1)) {
        st_bt_entry *e = &m->e[i];
        if (!e->used)
            return NULL;
        if (e->key == key)
            return e;
    }
}

/* The free slot key goes to (key not present). */
static st_bt_entry *free_slot(st_bt_map *m, uint64_t key)
{
    size_t i = slot_of(m, key);
    while (m->e[i].used)
        i = (i + 1) & (m->n_slots - 1);
    return &m->e[i];
}

static void grow(st_bt_map *m)
{
    st_bt_entry *old = m->e;
    size_t n_old = m->n_slots;
    m->n_slots *= 2;
    m->e = st_xcalloc(m->n_slots, sizeof *m->e);
    for (size_t i = 0; i < n_old; i++)
        if (old[i].used)
            *free_slot(m, old[i].key) = old[i];
    free(old);
}

const int32_t *st_bt_get(const st_bt_map *m, uint64_t key, int *n)
{
    const st_bt_entry *e = find(m, key);
    *n = e ? e->n : 0;
    return e ? e->ids : NULL;
}

static void set_ids(st_bt_entry *e, int at, const int32_t *ids, int n)
{
    if (at + n > e->cap) {
        int cap = e->cap;
        while (cap < at + n)
            cap *= 2;
        e->ids = st_xrealloc(e->ids, (size_t)cap * sizeof *e->ids);
        e->cap = cap;
    }
    if (n)
        memcpy(e->ids + at, ids, (size_t)n * sizeof *ids);
    e->n = at + n;
}

int st_bt_reset(st_bt_map *m, uint64_t key, const int32_t *ids, int n)
{
    if (n < 0 || n > m->max_blocks)
        return st_err(ST_ERANGE, "block tables: sequence %llu: a table of %d blocks (at most %d)",
                      (unsigned long long)key, n, m->max_blocks);
    st_bt_entry *e = find(m, key);
    if (!e) {
        if (m->n_used >= (size_t)m->max_seqs)
            return st_err(ST_ERANGE, "block tables: sequence %llu would be the %zu-th held (at most %d)",
                          (unsigned long long)key, m->n_used + 1, m->max_seqs);
        if (2 * (m->n_used + 1) > m->n_slots)
            grow(m);
        e = free_slot(m, key);
        *e = (st_bt_entry){.key = key, .used = 1, .cap = 8}; /* ids never NULL: st_bt_get's NULL means "not held" */
        e->ids = st_xmalloc(8 * sizeof *e->ids);
        m->n_used++;
    }
    set_ids(e, 0, ids, n);
    return ST_OK;
}

int st_bt_append(st_bt_map *m, uint64_t key, const int32_t *ids, int n)
{
    st_bt_entry *e = find(m, key);
    if (!e)
        return st_err(ST_ENOENT, "block tables: blocks appended to sequence %llu, which has no table here",
                      (unsigned long long)key);
    if (n < 0 || n > m->max_blocks - e->n)
        return st_err(ST_ERANGE, "block tables: sequence %llu: %d + %d blocks (at most %d)", (unsigned long long)key,
                      e->n, n, m->max_blocks);
    set_ids(e, e->n, ids, n);
    return ST_OK;
}

void st_bt_drop(st_bt_map *m, uint64_t key)
{
    st_bt_entry *e = find(m, key);
    if (!e)
        return;
    free(e->ids);
    size_t mask = m->n_slots - 1, i = (size_t)(e - m->e);
    /* backward shift: move later members of the probe run into the hole
     * when their home slot does not lie cyclically in (hole, j] */
    for (size_t j = (i + 1) & mask; m->e[j].used; j = (j + 1) & mask) {
        size_t home = slot_of(m, m->e[j].key);
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        m->e[i] = m->e[j];
        i = j;
    }
    memset(&m->e[i], 0, sizeof m->e[i]);
    m->n_used--;
}

int st_bt_delta_start(const st_bt_map *m, uint64_t key, const int32_t *table, int n)
{
    const st_bt_entry *e = find(m, key);
    if (!e || e->n > n || (e->n && memcmp(e->ids, table, (size_t)e->n * sizeof *table)))
        return -1;
    return e->n;
}
