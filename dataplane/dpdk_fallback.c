/* Falling back from dpdk to another transport when dpdk cannot start in
 * this process (dpdk.h: st_dpdk_listen_or / st_dpdk_connect_or). Built
 * with or without DPDK: without it every dpdk attempt is a start-up
 * failure (ST_ENOTSUP) and the fallback is taken. */
#include "dataplane/dpdk.h"

#include "common/st_common.h"

#ifdef ST_HAVE_DPDK
#include "dataplane/dpdk_impl.h"
#endif

int st_dpdk_startup_failure(int rc)
{
    /* ST_EINVAL also covers a malformed dpdk address, which is as local a
     * cause as a refused EAL argument: the other transport may still work */
    return rc == ST_ENOTSUP || rc == ST_EINVAL || rc == ST_ENOMEM || rc == ST_EIO;
}

static void fall_back(const char *what, const char *addr, const char *fb_transport)
{
    ST_WARN("dpdk: cannot %s on '%s' (%s): falling back to %s", what, addr, st_errmsg(), fb_transport);
}

int st_dpdk_listen_or(const char *addr, const char *fb_transport, const char *fb_addr, const st_link_opts *opts,
                      st_listener **out, const char **used)
{
    if (!addr || !out || (fb_transport && !fb_addr))
        return st_err(ST_EINVAL, "dpdk: listen_or needs an address (and a fallback address with a fallback transport)");
    int rc = st_dpdk_eal_init();
#ifdef ST_HAVE_DPDK
    if (rc == ST_OK)
        rc = st_dpdk_port_check(addr, 1);
#endif
    if (rc == ST_OK)
        rc = st_listen("dpdk", addr, opts, out);
    if (rc == ST_OK || !fb_transport || !st_dpdk_startup_failure(rc)) {
        if (rc == ST_OK && used)
            *used = "dpdk";
        return rc;
    }
    fall_back("listen", addr, fb_transport);
    if ((rc = st_listen(fb_transport, fb_addr, opts, out)) == ST_OK && used)
        *used = fb_transport;
    return rc;
}

int st_dpdk_connect_or(const char *addr, const char *fb_transport, const char *fb_addr, const st_link_opts *opts,
                       int timeout_ms, st_link **out, const char **used)
{
    if (!addr || !out || (fb_transport && !fb_addr))
        return st_err(ST_EINVAL, "dpdk: connect_or needs an address (and a fallback address with a fallback transport)");
    int rc = st_dpdk_eal_init();
    if (rc == ST_OK)
        rc = st_connect("dpdk", addr, opts, timeout_ms, out);
    if (rc == ST_OK || !fb_transport || !st_dpdk_startup_failure(rc)) {
        if (rc == ST_OK && used)
            *used = "dpdk";
        return rc;
    }
    fall_back("connect", addr, fb_transport);
    if ((rc = st_connect(fb_transport, fb_addr, opts, timeout_ms, out)) == ST_OK && used)
        *used = fb_transport;
    return rc;
}
