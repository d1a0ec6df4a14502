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

#include <stddef.h>
#include <stdint.h>

#include "dataplane/transport.h"

typedef struct st_dpdk_config {
    const char *eal_args; /* extra EAL arguments, space separated (--dpdk-args); NULL: none */
    const char *cores;    /* core list for the EAL, "2,3" or "2-5" (--dataplane-cores); NULL: not pinned */
    const char *peer;     /* static neighbour "MAC,IP" (--dpdk-peer); NULL: learnt from the handshake */
    const char *ip;       /* this end's IPv4 address; NULL: 10.77.0.1 listening, 10.77.0.2 connecting */
    int hugepages;        /* 2 MiB hugepages the EAL must have (--dpdk-hugepages): when fewer are
                             free, root raises /proc/sys/vm/nr_hugepages, and still too few is
                             ST_ENOMEM; 0: use free hugepages if any, else --no-huge; -1: the
                             environment's ST_DPDK_HUGEPAGES (0 when unset) */
} st_dpdk_config;

/* Set the configuration before the first dpdk link (later calls after the
 * EAL started return ST_EINVAL). Fields left NULL fall back to the
 * environment: ST_DPDK_ARGS, ST_DPDK_CORES, ST_DPDK_PEER, ST_DPDK_IP.
 * Validates the strings (ST_EINVAL naming the bad one). */
int st_dpdk_configure(const st_dpdk_config *c);

/* Start the EAL if not yet started. ST_OK, or a start-up failure whose
 * message names the cause -- the caller may then fall back to another
 * transport (st_dpdk_connect_or):
 *   ST_ENOTSUP  this build has no DPDK
 *   ST_EINVAL   the EAL refused an argument (the message quotes --dpdk-args)
 *   ST_ENOMEM   hugepages were requested (--dpdk-hugepages) and too few are
 *               free, or the EAL could not reserve its memory
 *   ST_EIO      the EAL failed for another reason (its rte_errno text)
 * Never exits or aborts the process. rte_eal_init runs at most once per
 * process: a failed start is remembered and later calls return the same
 * error and message. */
int st_dpdk_eal_init(void);

/* The EAL argument vector the next start would use, space separated
 * (for logs and tests). */
const char *st_dpdk_eal_args(void);

/* ---- falling back to another transport -------------------------------------------------
 * For callers that allow it: try dpdk at `addr`; when dpdk cannot start in
 * this process -- no DPDK built in, the EAL refused (st_dpdk_eal_init's
 * errors), or the port cannot be created (absent vdev or interface, no such
 * PCI device: ST_EIO) -- log the reason as a warning and use transport
 * fb_transport at fb_addr instead. A dpdk that started but whose peer did
 * not answer (ST_ETIMEDOUT) or misbehaved is returned as is: both ends must
 * use the same transport, and only a start-up failure is local knowledge.
 * fb_transport NULL: no fallback (plain dpdk). *used, when not NULL, gets
 * the name of the transport in use ("dpdk" or fb_transport).
 * The listener variant starts the EAL and creates (and keeps) the port at
 * once, so that start-up failures show at listen rather than at accept. */
int st_dpdk_listen_or(const char *addr, const char *fb_transport, const char *fb_addr, const st_link_opts *opts,
                      st_listener **out, const char **used);
int st_dpdk_connect_or(const char *addr, const char *fb_transport, const char *fb_addr, const st_link_opts *opts,
                       int timeout_ms, st_link **out, const char **used);

/* 1 when rc, returned by a dpdk listen/accept/connect or st_dpdk_eal_init,
 * is a start-up failure (the cases above), 0 otherwise. */
int st_dpdk_startup_failure(int rc);

/* ---- GPUDirect (build-time optional, dpdk_gpu.c) -----------------------------------------
 * A GPU-resident buffer is registered with DPDK gpudev (rte_gpu_mem_register)
 * when the build has rte_gpudev.h and a gpudev device exists, so payloads can
 * go NIC <-> GPU memory; otherwise the registration records host staging
 * (the caller copies through host memory). ops NULL: the real gpudev calls;
 * tests pass fakes. Registering never fails for want of a GPU: it falls back
 * and logs the reason. */
typedef enum { ST_DPDK_GPU_NONE = 0, ST_DPDK_GPU_GPUDEV = 1, ST_DPDK_GPU_STAGING = 2 } st_dpdk_gpu_path;

typedef struct st_dpdk_gpu_ops {
    int (*count)(void);                               /* gpudev devices available */
    int (*reg)(int16_t dev, size_t len, void *ptr);   /* 0 when registered */
    int (*unreg)(int16_t dev, void *ptr);
} st_dpdk_gpu_ops;

typedef struct st_dpdk_gpu_reg {
    st_dpdk_gpu_path path;
    int16_t dev;
    void *ptr;
    size_t len;
    const st_dpdk_gpu_ops *ops;
} st_dpdk_gpu_reg;

/* 1 when this build compiled the gpudev path. */
int st_dpdk_gpu_built(void);
/* ST_OK with out->path GPUDEV or STAGING; ST_EINVAL for a bad argument. */
int st_dpdk_gpu_register(const st_dpdk_gpu_ops *ops, int16_t dev, void *ptr, size_t len, st_dpdk_gpu_reg *out);
void st_dpdk_gpu_unregister(st_dpdk_gpu_reg *r);
const char *st_dpdk_gpu_path_name(st_dpdk_gpu_path p);

/* ---- test hooks ----------------------------------------------------------------------
 * Network faults applied by the transmitter of every dpdk link created
 * afterwards in this process, each frame independently: drop with
 * probability drop, hold back and send after the next frame with
 * probability reorder, send twice with probability dup. The environment
 * variables ST_DPDK_DROP, ST_DPDK_REORDER, ST_DPDK_DUP give the defaults. */
void st_dpdk_debug_faults(double drop, double reorder, double dup);

#endif /* ST_DPDK_H */
