/* Registered memory regions: buffers set up once and reused for every
 * message, so that transports needing pinned or device-registered memory
 * (RDMA lkeys, DPDK external buffers, GPU memory) fit the same interface.
 * tcp and shm need no registration with a device; they use regions as
 * large, page-backed, pre-faulted buffers, and shm can map one in the peer
 * (ST_MR_SHARED gives it a memfd). */
#ifndef ST_MR_H
#define ST_MR_H

#include <stddef.h>
#include <stdint.h>

enum {
    ST_MR_SHARED = 1,   /* backed by a memfd another process can map (fd below) */
    ST_MR_HUGEPAGE = 2, /* try 2 MiB pages (falls back to normal pages) */
    ST_MR_PREFAULT = 4, /* touch every page now, not on first use */
};

typedef struct st_mr {
    uint8_t *addr;
    size_t len;
    uint32_t key;  /* process-unique id (a device key later) */
    int flags;
    int fd;        /* memfd for ST_MR_SHARED, else -1 */
    int owned;     /* 1: allocated by st_mr_alloc, unmapped on free */
} st_mr;

/* Allocate len bytes (rounded up to pages) and register them. */
int st_mr_alloc(size_t len, int flags, st_mr **out);
/* Register caller memory [addr, addr+len); the caller keeps ownership. */
int st_mr_register(void *addr, size_t len, st_mr **out);
/* Map a region another process shared (its fd, len); takes the fd.
 * ST_EPROTO unless the fd is a file of at least len bytes sealed against
 * shrinking (st_mr_alloc seals ST_MR_SHARED memfds so), so that the peer
 * cannot truncate it under the mapping and crash us with SIGBUS. */
int st_mr_import(int fd, size_t len, st_mr **out);
void st_mr_free(st_mr *mr);
/* 1 if [p, p+n) lies inside mr. */
int st_mr_contains(const st_mr *mr, const void *p, size_t n);

#endif
