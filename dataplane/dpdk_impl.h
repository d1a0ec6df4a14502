/* Private to the dpdk transport: the port a link owns and the
 * process-wide settings dpdk_eal.c keeps for dpdk.c. Compiled only with
 * ST_HAVE_DPDK. */
#ifndef ST_DPDK_IMPL_H
#define ST_DPDK_IMPL_H

#include "dataplane/dpdk.h"

#include <stdint.h>

struct rte_mempool;

/* One DPDK port with one rx/tx queue pair and its own mbuf pool. */
typedef struct st_dpdk_port {
    uint16_t id;
    char name[64];             /* the unique device name given to the EAL */
    struct rte_mempool *pool;  /* mbufs of data room `room` bytes */
    uint8_t mac[6];
    uint32_t mtu;              /* largest IPv4 packet the port carries, bytes */
    uint32_t room;             /* mbuf data room, bytes */
    int ip_csum_offload;       /* the port computes IPv4 header checksums */
    char kept_addr[256];       /* memif server: kept for reuse on close (dpdk_eal.c) */
} st_dpdk_port;

/* Create and start the port named by a dpdk address (see dpdk.h); memif
 * gets role=server when listening, role=client otherwise. ST_EIO naming the
 * device and the driver's reason when it cannot be created. */
int st_dpdk_port_open(const char *addr, int listening, st_dpdk_port *p);
void st_dpdk_port_close(st_dpdk_port *p);
/* 1 when the port's link is up (memif: the peer is attached). */
int st_dpdk_port_up(const st_dpdk_port *p);

/* Addresses from the configuration (network byte order for IPs). */
uint32_t st_dpdk_local_ip(int listening);
/* 1 and the neighbour when --dpdk-peer was given, else 0. */
int st_dpdk_static_peer(uint8_t mac[6], uint32_t *ip);
void st_dpdk_fault_rates(double *drop, double *reorder, double *dup);

#endif
