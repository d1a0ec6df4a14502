/* RDMA device, port and GID selection, and the queue-pair state changes of
 * a reliable-connected (RC) pair. Without ST_HAVE_RDMA only the two
 * queries of rdma.h exist, answering "not built".
 *
 * NOT RUN ON HARDWARE: this code compiles against rdma-core 44 and its
 * no-device path is tested, but it has not yet run against a device (the
 * development machine's kernel has no RDMA support; see dataplane/README.md
 * for the soft-RoCE VM test that comes next). */
#include "dataplane/rdma.h"

#include "common/st_common.h"

#ifndef ST_HAVE_RDMA

int st_rdma_built(void) { return 0; }

int st_rdma_probe(void)
{
    return st_err(ST_ENOTSUP, "rdma: this build has no RDMA transport (libibverbs was not found); use another transport");
}

int st_rdma_debug_qp_error(struct st_link *k)
{
    (void)k;
    return st_err(ST_ENOTSUP, "rdma: this build has no RDMA transport");
}

#else

#include "dataplane/rdma_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int st_rdma_built(void) { return 1; }

int st_rdma_probe(void)
{
    st_rdma_opts ro;
    int rc = st_rdma_opts_from_env(&ro);
    if (rc)
        return rc;
    rdma_port p;
    if ((rc = rdma_port_open(&ro, &p)))
        return rc;
    rdma_port_close(&p);
    return ST_OK;
}

/* ::ffff:a.b.c.d — the GID the kernel derives from an interface's IPv4
 * address; RoCE v2 with it is routable over ordinary IP networks. */
static int gid_is_ipv4_mapped(const union ibv_gid *g)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(g->raw, prefix, 12) == 0;
}

static int gid_is_zero(const union ibv_gid *g)
{
    static const uint8_t zero[16];
    return memcmp(g->raw, zero, 16) == 0;
}

/* RoCE: the first RoCE v2 IPv4-mapped entry, else the first RoCE v2 entry.
 * Returns the index or -1. */
static int pick_gid(struct ibv_context *ctx, uint8_t port, int tbl_len)
{
    int any_v2 = -1;
    for (int i = 0; i < tbl_len; i++) {
        struct ibv_gid_entry e;
        if (ibv_query_gid_ex(ctx, port, (uint32_t)i, &e, 0) != 0 || gid_is_zero(&e.gid))
            continue;
        if (e.gid_type != IBV_GID_TYPE_ROCE_V2)
            continue;
        if (gid_is_ipv4_mapped(&e.gid))
            return i;
        if (any_v2 < 0)
            any_v2 = i;
    }
    return any_v2;
}

/* Fill p from an opened context; ST_ECONN if the port is not usable. */
static int port_setup(struct ibv_context *ctx, const char *name, const st_rdma_opts *ro, rdma_port *p)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->port = (uint8_t)ro->port;
    snprintf(p->name, sizeof p->name, "%s", name);
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0)
        return st_err(ST_EIO, "rdma: %s: ibv_query_device: %s", name, strerror(errno));
    if (ro->port > da.phys_port_cnt)
        return st_err(ST_EINVAL, "rdma: %s has %u ports; ST_RDMA_PORT=%d", name, da.phys_port_cnt, ro->port);
    p->max_qp_wr = da.max_qp_wr;
    struct ibv_port_attr pa;
    if (ibv_query_port(ctx, p->port, &pa) != 0)
        return st_err(ST_EIO, "rdma: %s port %d: ibv_query_port: %s", name, ro->port, strerror(errno));
    if (pa.state != IBV_PORT_ACTIVE)
        return st_err(ST_ECONN, "rdma: %s port %d is %s, not active", name, ro->port, ibv_port_state_str(pa.state));
    p->is_roce = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
    p->lid = pa.lid;
    p->mtu = pa.active_mtu;
    p->gid_index = ro->gid_index;
    if (p->gid_index < 0)
        p->gid_index = p->is_roce ? pick_gid(ctx, p->port, pa.gid_tbl_len) : 0;
    if (p->gid_index < 0)
        return st_err(ST_ENOTSUP, "rdma: %s port %d has no RoCE v2 GID (give one with ST_RDMA_GID_INDEX)", name,
                      ro->port);
    if (p->gid_index >= pa.gid_tbl_len || ibv_query_gid(ctx, p->port, p->gid_index, &p->gid) != 0)
        return st_err(ST_EINVAL, "rdma: %s port %d: GID index %d is not readable (table of %d)", name, ro->port,
                      p->gid_index, pa.gid_tbl_len);
    if (!p->is_roce && p->lid == 0)
        return st_err(ST_ECONN, "rdma: %s port %d has no LID (is a subnet manager running?)", name, ro->port);
    ST_DEBUG("rdma: %s port %d (%s), gid index %d, mtu %d", name, ro->port, p->is_roce ? "RoCE" : "InfiniBand",
             p->gid_index, 128 << p->mtu);
    return ST_OK;
}

int rdma_port_open(const st_rdma_opts *ro, rdma_port *out)
{
    memset(out, 0, sizeof *out);
    int n = 0;
    errno = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list)
        return st_err(ST_ENOTSUP,
                      "rdma: no RDMA device (the kernel has no RDMA support: ibv_get_device_list: %s); use another "
                      "transport",
                      strerror(errno ? errno : ENOSYS));
    if (n == 0) {
        ibv_free_device_list(list);
        return st_err(ST_ENOTSUP,
                      "rdma: no RDMA device (ibv_get_device_list found none; load a driver or add a soft-RoCE link "
                      "with `rdma link add`); use another transport");
    }
    int rc = ST_ENOENT, found = 0;
    for (int i = 0; i < n; i++) {
        const char *name = ibv_get_device_name(list[i]);
        if (ro->device[0] && strcmp(name, ro->device) != 0)
            continue;
        found = 1;
        struct ibv_context *ctx = ibv_open_device(list[i]);
        if (!ctx) {
            rc = st_err(ST_EIO, "rdma: ibv_open_device %s: %s", name, strerror(errno));
            continue;
        }
        if ((rc = port_setup(ctx, name, ro, out)) == ST_OK)
            break;
        ibv_close_device(ctx);
        memset(out, 0, sizeof *out);
    }
    if (!found)
        rc = st_err(ST_ENOENT, "rdma: no RDMA device named '%s' (ST_RDMA_DEVICE); %d device(s) present, first '%s'",
                    ro->device, n, ibv_get_device_name(list[0]));
    ibv_free_device_list(list);
    return rc;
}

void rdma_port_close(rdma_port *p)
{
    if (p->ctx)
        ibv_close_device(p->ctx);
    p->ctx = NULL;
}

int rdma_qp_init(struct ibv_qp *qp, const rdma_port *p)
{
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = p->port;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    int e = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (e)
        return st_err(ST_EIO, "rdma: queue pair to INIT: %s", strerror(e));
    return ST_OK;
}

int rdma_qp_connect(struct ibv_qp *qp, const rdma_port *p, const st_rdma_opts *ro, uint32_t my_psn,
                    const st_rdma_info *peer)
{
    if (peer->is_roce != p->is_roce)
        return st_err(ST_EPROTO, "rdma: link layers differ (this end %s, peer %s)", p->is_roce ? "RoCE" : "InfiniBand",
                      peer->is_roce ? "RoCE" : "InfiniBand");
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = (enum ibv_mtu)ST_MIN((int)p->mtu, (int)peer->mtu);
    a.dest_qp_num = peer->qpn;
    a.rq_psn = peer->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = (uint8_t)ro->min_rnr_timer;
    a.ah_attr.port_num = p->port;
    if (p->is_roce) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)p->gid_index;
        a.ah_attr.grh.hop_limit = 64;
    } else {
        a.ah_attr.dlid = peer->lid;
    }
    int e = ibv_modify_qp(qp, &a,
                          IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                              IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (e)
        return st_err(ST_EIO, "rdma: queue pair to RTR (peer qpn %u): %s", peer->qpn, strerror(e));
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = (uint8_t)ro->timeout;
    a.retry_cnt = (uint8_t)ro->retry_cnt;
    a.rnr_retry = (uint8_t)ro->rnr_retry;
    a.sq_psn = my_psn;
    a.max_rd_atomic = 1;
    e = ibv_modify_qp(qp, &a,
                      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                          IBV_QP_MAX_QP_RD_ATOMIC);
    if (e)
        return st_err(ST_EIO, "rdma: queue pair to RTS: %s", strerror(e));
    return ST_OK;
}

#endif /* ST_HAVE_RDMA */
