/* The DPDK transport: links over any DPDK port (memif, af_packet, af_xdp,
 * a PCI NIC), with a reliable protocol over Ethernet/IPv4/UDP frames
 * (dpdk.c). This header is the process-wide set-up shared by every dpdk
 * link: EAL arguments, the core list, the static neighbour, test hooks.
 *
 * Addresses: the DPDK device arguments of the port the link uses, e.g.
 *   "net_memif,socket=/run/strait.sock"        (memif; role= is added: server
 *                                               when listening, client when
 *                                               connecting)
 *   "net_af_packet,iface=veth0"                (a kernel interface)
 *   "0000:3b:00.0"                             (a PCI NIC; then --no-pci is not added)
 * Each link gets its own port (a vdev name made unique per process) and one
 * rx/tx queue pair.
 *
 * The EAL is started once per process, on the first dpdk listen or connect
 * (never at load time, so a process that forks before using dpdk gives
 * each side its own EAL). Without ST_HAVE_DPDK the transport is not built
 * and st_dpdk_eal_init() says so. */
#ifndef ST_DPDK_H
#define ST_DPDK_H

#include <stdint.h>

typedef struct st_dpdk_config {
    const char *eal_args; /* extra EAL arguments, space separated (--dpdk-args); NULL: none */
    const char *cores;    /* core list for the EAL, "2,3" or "2-5" (--dataplane-cores); NULL: not pinned */
    const char *peer;     /* static neighbour "MAC,IP" (--dpdk-peer); NULL: learnt from the handshake */
    const char *ip;       /* this end's IPv4 address; NULL: 10.77.0.1 listening, 10.77.0.2 connecting */
} st_dpdk_config;

/* Set the configuration before the first dpdk link (later calls after the
 * EAL started return ST_EINVAL). Fields left NULL fall back to the
 * environment: ST_DPDK_ARGS, ST_DPDK_CORES, ST_DPDK_PEER, ST_DPDK_IP.
 * Validates the strings (ST_EINVAL naming the bad one). */
int st_dpdk_configure(const st_dpdk_config *c);

/* Start the EAL if not yet started. ST_OK, or ST_ENOTSUP (not built with
 * DPDK) / ST_EIO (the EAL refused: the message names the arguments and the
 * reason) -- the caller may then fall back to another transport. A failed
 * start is remembered: later calls return the same error. */
int st_dpdk_eal_init(void);

/* The EAL argument vector the next start would use, space separated
 * (for logs and tests). */
const char *st_dpdk_eal_args(void);

/* ---- test hooks ----------------------------------------------------------------------
 * Network faults applied by the transmitter of every dpdk link created
 * afterwards in this process, each frame independently: drop with
 * probability drop, hold back and send after the next frame with
 * probability reorder, send twice with probability dup. The environment
 * variables ST_DPDK_DROP, ST_DPDK_REORDER, ST_DPDK_DUP give the defaults. */
void st_dpdk_debug_faults(double drop, double reorder, double dup);

#endif /* ST_DPDK_H */
