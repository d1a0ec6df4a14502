/* `strait chat`: the web UI and an API proxy on a machine that holds no
 * layers (http/chat_proxy.h does the serving; this file parses flags). */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/st_common.h"
#include "http/chat_proxy.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/opts.h"

static const char usage[] =
    "usage: strait chat [-s HOST[:PORT]] [--host H] [--port P]\n"
    "\n"
    "Serve the web UI (chat, setup and cluster views) on this machine and pass\n"
    "every API path (/v1/..., /health, /metrics, /cluster/...) to the scheduler\n"
    "started by `strait run`, streams included. SIGINT/SIGTERM stop it.\n"
    "\n"
    "  -s, --scheduler HOST[:PORT]  the scheduler's API (default 127.0.0.1:3001;\n"
    "                               port 3001 when none is given)\n"
    "      --host H                 address to listen on (default localhost)\n"
    "      --port P                 (default 3002; 0: any free port)\n"
    "      --upstream-timeout-ms N  cut an upstream silent this long (default 300000)\n"
    "  -v, --verbose                debug logging\n"
    "  -h, --help                   this help\n";

static st_chat_proxy *volatile running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        st_chat_proxy_stop(running); /* async-signal-safe */
}

enum { O_HOST = 256, O_PORT, O_TIMEOUT };

int st_cmd_chat(int argc, char **argv)
{
    static const struct option lo[] = {
        {"scheduler", 1, 0, 's'}, {"host", 1, 0, O_HOST}, {"port", 1, 0, O_PORT},
        {"upstream-timeout-ms", 1, 0, O_TIMEOUT}, {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *V = "chat";
    st_chat_proxy_config pc = st_chat_proxy_config_default();
    pc.host = "localhost";
    pc.port = 3002;
    int c, bad = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":s:vh", lo, NULL)) != -1) {
        switch (c) {
        case 's': pc.upstream = optarg; break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case O_HOST: pc.host = optarg; break;
        case O_PORT: bad = st_opt_int(V, "port", optarg, 0, 65535, &pc.port); break;
        case O_TIMEOUT: bad = st_opt_int(V, "upstream-timeout-ms", optarg, 1000, 86400000, &pc.io_timeout_ms); break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);

    st_chat_proxy *p = NULL;
    int rc = st_chat_proxy_create(&pc, &p);
    if (rc)
        return st_cli_fail(V, rc);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    running = p;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = st_chat_proxy_run(p);
    running = NULL;
    ST_INFO("stopped");
    st_chat_proxy_destroy(p);
    return rc ? st_cli_fail(V, rc) : 0;
}
