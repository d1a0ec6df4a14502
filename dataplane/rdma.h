/* The RDMA verbs transport ("rdma" in transport.h terms). Built only where
 * libibverbs is found (ST_HAVE_RDMA); these two queries exist in every
 * build so that callers and tests can ask without #ifdefs.
 *
 * Options come from the environment (rdma_proto.h, st_rdma_opts):
 * ST_RDMA_DEVICE, ST_RDMA_PORT, ST_RDMA_GID_INDEX, ST_RDMA_RETRY_CNT,
 * ST_RDMA_RNR_RETRY, ST_RDMA_TIMEOUT, ST_RDMA_MIN_RNR_TIMER. Addresses are
 * the TCP control channel's "HOST:PORT". */
#ifndef ST_RDMA_H
#define ST_RDMA_H

/* 1 if this build has the verbs transport. */
int st_rdma_built(void);
/* ST_OK if a device with an active port can be opened with the current
 * options. Otherwise ST_ENOTSUP (not built, no kernel support, no device:
 * use another transport), ST_ENOENT (the named device is absent) or
 * ST_EINVAL (bad ST_RDMA_* variable), with the reason in st_errmsg(). */
int st_rdma_probe(void);

/* Test hook: move the link's queue pair into the error state, as a fatal
 * transport fault would. Both ends then fail with ST_ECONN (no
 * re-establishment yet). ST_EINVAL for a link of another transport,
 * ST_ENOTSUP in a build without rdma. */
struct st_link;
int st_rdma_debug_qp_error(struct st_link *k);

#endif
