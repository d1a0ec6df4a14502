/* A lock-free single-producer single-consumer ring of fixed-size elements,
 * for handing work between one polling core and one engine thread.
 *
 * Head and tail live on their own cache lines; each side keeps a cached
 * copy of the other's index so that the shared line is read only when the
 * ring looks full (producer) or empty (consumer). Capacity is a power of
 * two; indices grow without wrapping (64-bit). */
#ifndef ST_RING_H
#define ST_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct st_spsc {
    _Alignas(64) _Atomic uint64_t head; /* written by the producer */
    uint64_t tail_cache;                /* producer's view of tail */
    _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
    uint64_t head_cache;                /* consumer's view of head */
    _Alignas(64) uint64_t mask;
    size_t elem;                        /* bytes per element */
    uint8_t *buf;                       /* (mask + 1) x elem */
} st_spsc;

/* cap: a power of two >= 2. Returns ST_OK or ST_EINVAL. */
int st_spsc_init(st_spsc *r, uint64_t cap, size_t elem);
void st_spsc_free(st_spsc *r);

/* Producer: copy one element in; 0, or -1 when full. */
static inline int st_spsc_push(st_spsc *r, const void *e)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h - r->tail_cache > r->mask) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache > r->mask)
            return -1;
    }
    memcpy(r->buf + (h & r->mask) * r->elem, e, r->elem);
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 0;
}

/* Consumer: pointer to the oldest element without removing it, or NULL. */
static inline void *st_spsc_peek(st_spsc *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t == r->head_cache) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t == r->head_cache)
            return NULL;
    }
    return r->buf + (t & r->mask) * r->elem;
}

/* Consumer: drop the element st_spsc_peek returned. */
static inline void st_spsc_advance(st_spsc *r)
{
    atomic_store_explicit(&r->tail, atomic_load_explicit(&r->tail, memory_order_relaxed) + 1, memory_order_release);
}

/* Consumer: copy the oldest element out; 0, or -1 when empty. */
static inline int st_spsc_pop(st_spsc *r, void *e)
{
    void *p = st_spsc_peek(r);
    if (!p)
        return -1;
    memcpy(e, p, r->elem);
    st_spsc_advance(r);
    return 0;
}

/* Either side: elements currently queued (a snapshot). */
static inline uint64_t st_spsc_count(st_spsc *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire) - atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Producer: free slots (a lower bound). */
static inline uint64_t st_spsc_space(st_spsc *r) { return r->mask + 1 - st_spsc_count(r); }

#endif
