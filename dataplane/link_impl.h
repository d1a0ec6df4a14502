/* What transports share behind transport.h: the base structs every
 * transport embeds first, its vtable, and the send queue (sq), whose slots
 * are indexed by message sequence number:
 *
 *   [sq_head, sq_acked)  acknowledged by the peer, completion not yet reaped
 *   [sq_acked, sq_tail)  queued or on the wire, kept for a resend
 *
 * Private to dataplane/. */
#ifndef ST_LINK_IMPL_H
#define ST_LINK_IMPL_H

#include "dataplane/transport.h"

typedef struct st_sq_entry {
    st_iov iov[ST_LINK_IOV_MAX];
    int n;
    size_t len;      /* total bytes */
    uint64_t cookie;
    void *owned;     /* bounce buffer from the generic st_link_reserve, freed at completion */
} st_sq_entry;

typedef struct st_transport_ops {
    const char *name;
    int (*listen)(const char *addr, const st_link_opts *o, st_listener **out);
    int (*accept)(st_listener *l, int timeout_ms, st_link **out);
    void (*listener_close)(st_listener *l);
    int (*connect)(const char *addr, const st_link_opts *o, int timeout_ms, st_link **out);
    int (*progress)(st_link *k);       /* after st_link_send too, to push at once */
    int (*recv)(st_link *k, st_msg *out);
    int (*release)(st_link *k, const st_msg *m);
    uint64_t (*wait_prepare)(st_link *k);
    int (*wait)(st_link *k, uint64_t ticket, int timeout_ms);
    void (*wake)(st_link *k);
    void (*close)(st_link *k);         /* transport part; base freed by caller */
    int (*debug_drop)(st_link *k);
    /* optional in-place sends (NULL: the generic bounce buffer in link.c) */
    int (*reserve)(st_link *k, size_t len, void **buf);
    int (*commit)(st_link *k, size_t len, uint64_t cookie);
} st_transport_ops;

struct st_listener {
    const st_transport_ops *ops;
    st_link_opts opts;
    char addr[128];
    uint64_t auth_refused; /* peers dropped for the link key */
};

struct st_link {
    const st_transport_ops *ops;
    st_link_opts opts;
    int err;             /* sticky first error, 0 while healthy */
    char errmsg[200];
    st_sq_entry *sq;     /* sq_depth slots, slot = seq & sq_mask */
    uint64_t sq_mask, sq_head, sq_acked, sq_tail;
    int corrupt_next;    /* test hook */
    void *resv;          /* outstanding reservation (generic path) */
    size_t resv_len;
    st_link_stats stats;
};

/* Base set-up/tear-down for transports. */
void st_link_base_init(st_link *k, const st_transport_ops *ops, const st_link_opts *o);
void st_link_base_free(st_link *k);
/* Fail the link (first error wins); returns code. Records st_errmsg()-style
 * text so later calls report the cause. */
int st_link_fail(st_link *k, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Complete sends with seq < upto (the peer has them). */
void st_link_ack(st_link *k, uint64_t upto);
static inline st_sq_entry *st_sq_at(st_link *k, uint64_t seq) { return &k->sq[seq & k->sq_mask]; }
/* Fill opts with defaults where zero, validate; ST_EINVAL naming the field. */
int st_link_opts_check(const st_link_opts *in, st_link_opts *out);

extern const st_transport_ops st_tcp_ops;
extern const st_transport_ops st_shm_ops;
#ifdef ST_HAVE_DPDK
extern const st_transport_ops st_dpdk_ops;
#endif
#ifdef ST_HAVE_RDMA
extern const st_transport_ops st_rdma_ops;
#endif

#endif
