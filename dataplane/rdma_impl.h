/* What rdma.c (the link) and rdma_dev.c (device, port, GID and queue-pair
 * state changes) share. Only compiled with ST_HAVE_RDMA. */
#ifndef ST_RDMA_IMPL_H
#define ST_RDMA_IMPL_H

#include <infiniband/verbs.h>

#include "dataplane/rdma_proto.h"

/* An opened device port: what this end puts in its connection info. */
typedef struct rdma_port {
    struct ibv_context *ctx;
    uint8_t port;
    int is_roce;           /* Ethernet link layer: address by GID */
    int gid_index;         /* chosen source GID (RoCE) */
    union ibv_gid gid;
    uint16_t lid;
    enum ibv_mtu mtu;      /* active MTU of the port */
    int max_qp_wr;         /* device limit on work requests per queue */
    char name[64];
} rdma_port;

/* Open the device and port the options select; pick the GID (RoCE v2,
 * IPv4-mapped first). ST_ENOTSUP without kernel support or devices,
 * ST_ENOENT for an absent named device, ST_ECONN for a port that is not
 * active. */
int rdma_port_open(const st_rdma_opts *ro, rdma_port *out);
void rdma_port_close(rdma_port *p);

/* RESET -> INIT (remote writes allowed). */
int rdma_qp_init(struct ibv_qp *qp, const rdma_port *p);
/* INIT -> RTR -> RTS towards the peer described by `peer`. */
int rdma_qp_connect(struct ibv_qp *qp, const rdma_port *p, const st_rdma_opts *ro, uint32_t my_psn,
                    const st_rdma_info *peer);

#endif
