/* `strait status`: the cluster as a running `strait run` sees it (GET
 * /cluster/status), printed as a table of nodes and pipelines, or the raw
 * JSON with --json. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/opts.h"

static const char usage[] =
    "usage: strait status [--url URL] [--api-key KEY] [--json]\n"
    "\n"
    "Show the nodes and pipelines of a running `strait run` (single machine or\n"
    "cluster): each node's device, memory, layers, state and heartbeat round\n"
    "trip; each pipeline's stages, queue and free KV blocks.\n"
    "\n"
    "      --url URL      the API of `strait run` (default http://localhost:3001)\n"
    "      --api-key KEY  sent as Authorization: Bearer KEY\n"
    "      --json         print the JSON of GET /cluster/status as it came\n"
    "  -h, --help         this help\n";

#define MAX_BODY (8u << 20)

typedef struct body {
    char *buf;
    size_t len;
} body;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    body *b = ud;
    size_t k = sz * n;
    if (b->len + k > MAX_BODY)
        return 0; /* aborts the transfer */
    b->buf = st_xrealloc(b->buf, b->len + k + 1);
    memcpy(b->buf + b->len, p, k);
    b->len += k;
    b->buf[b->len] = 0;
    return k;
}

static int fetch(const char *url, const char *key, body *b, long *status)
{
    CURL *c = curl_easy_init();
    if (!c)
        return st_err(ST_ENOMEM, "cannot create an HTTP client");
    struct curl_slist *h = NULL;
    char auth[600];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK)
        return st_err(ST_ECONN, "cannot GET %s: %s", url, curl_easy_strerror(cc));
    return ST_OK;
}

static void human_bytes(double v, char *out, size_t cap)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (v >= 1000 && i < 4)
        v /= 1000, i++;
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* "[a,b]" of a two-number array member, or "-" */
static void range_of(const st_json *j, char *out, size_t cap)
{
    int64_t a, b;
    if (j && j->type == ST_JSON_ARRAY && j->u.arr.n == 2 && st_json_as_int(&j->u.arr.items[0], 0, 1 << 30, &a) &&
        st_json_as_int(&j->u.arr.items[1], 0, 1 << 30, &b))
        snprintf(out, cap, "%lld-%lld", (long long)a, (long long)b);
    else
        snprintf(out, cap, "-");
}

static void print_table(const st_json *s)
{
    const st_json *err = st_json_get(s, "error");
    printf("model     %s\n", st_json_get_str(s, "model", "?"));
    if (st_json_get(s, "join_command") && st_json_get(s, "join_command")->type == ST_JSON_STRING)
        printf("join      %s\n", st_json_get_str(s, "join_command", ""));
    printf("nodes     %d expected before the first plan%s\n", (int)st_json_get_num(s, "n_nodes_expected", 0),
           st_json_get_bool(s, "planned", 0) ? " (planned)" : " (waiting)");
    if (err && err->type == ST_JSON_STRING)
        printf("error     %s\n", err->u.str.s);
    printf("\n%-14s %-18s %-10s %9s %9s %-9s %4s %-8s %8s %6s\n", "NODE", "NAME", "DEVICE", "MEMORY", "USABLE",
           "LAYERS", "PIPE", "STATE", "RTT ms", "LOAD");
    const st_json *nodes = st_json_get(s, "nodes");
    for (size_t i = 0; nodes && nodes->type == ST_JSON_ARRAY && i < nodes->u.arr.n; i++) {
        const st_json *n = &nodes->u.arr.items[i];
        char mem[32], use[32], lay[32], pipe[16] = "-";
        human_bytes(st_json_get_num(n, "memory_bytes", 0), mem, sizeof mem);
        human_bytes(st_json_get_num(n, "usable_bytes", 0), use, sizeof use);
        range_of(st_json_get(n, "layers"), lay, sizeof lay);
        const st_json *p = st_json_get(n, "pipeline");
        if (p && p->type == ST_JSON_NUMBER)
            snprintf(pipe, sizeof pipe, "%d", (int)p->u.number);
        printf("%-14.12s %-18.18s %-10.10s %9s %9s %-9s %4s %-8s %8.2f %6d\n", st_json_get_str(n, "id", "?"),
               st_json_get_str(n, "name", "?"), st_json_get_str(n, "device", ""), mem, use, lay, pipe,
               st_json_get_str(n, "state", "?"), st_json_get_num(n, "rtt_ms", 0), (int)st_json_get_num(n, "load", 0));
        const char *e = st_json_get_str(n, "error", "");
        if (*e)
            printf("    %s\n", e);
    }
    printf("\n%-4s %-9s %-8s %8s %8s %10s %9s  %s\n", "PIPE", "STATE", "STAGES", "RUNNING", "WAITING", "KV FREE",
           "STEP ms", "LAYERS");
    const st_json *pipes = st_json_get(s, "pipelines");
    for (size_t i = 0; pipes && pipes->type == ST_JSON_ARRAY && i < pipes->u.arr.n; i++) {
        const st_json *p = &pipes->u.arr.items[i];
        const st_json *st = st_json_get(p, "stages"), *ly = st_json_get(p, "layers");
        int ns = st && st->type == ST_JSON_ARRAY ? (int)st->u.arr.n : 0;
        char kv[32], lay[256] = "";
        snprintf(kv, sizeof kv, "%d/%d", (int)st_json_get_num(p, "kv_blocks_free", 0),
                 (int)st_json_get_num(p, "kv_blocks_total", 0));
        size_t l = 0;
        for (size_t k = 0; ly && ly->type == ST_JSON_ARRAY && k < ly->u.arr.n && l < sizeof lay - 40; k++) {
            char r[32];
            range_of(&ly->u.arr.items[k], r, sizeof r);
            l += (size_t)snprintf(lay + l, sizeof lay - l, "%s%s", k ? " | " : "", r);
        }
        printf("%-4d %-9s %-8d %8d %8d %10s %9.2f  %s\n", (int)st_json_get_num(p, "id", 0),
               st_json_get_str(p, "state", "?"), ns, (int)st_json_get_num(p, "running", 0),
               (int)st_json_get_num(p, "waiting", 0), kv, st_json_get_num(p, "step_ms", 0), lay);
        const char *e = st_json_get_str(p, "error", "");
        if (*e)
            printf("    %s\n", e);
    }
}

int st_cmd_status(int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'}, {"api-key", 1, 0, 'k'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *V = "status", *url = "http://localhost:3001", *key = NULL;
    int json = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'k': key = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    char full[2048];
    if (ul > sizeof full - 32)
        return st_opt_usage_error(V, "--url is too long");
    snprintf(full, sizeof full, "%.*s/cluster/status", (int)ul, url);
    body b = {0};
    long status = 0;
    int rc = fetch(full, key, &b, &status);
    if (rc) {
        free(b.buf);
        return st_cli_fail(V, rc);
    }
    if (status != 200) {
        rc = st_err(ST_EIO, "GET %s: HTTP %ld%s%.300s", full, status, b.len ? ": " : "", b.len ? b.buf : "");
        free(b.buf);
        return st_cli_fail(V, rc);
    }
    st_json *s = NULL;
    if ((rc = st_json_parse(b.buf ? b.buf : "", b.len, &s))) {
        free(b.buf);
        return st_cli_fail(V, rc);
    }
    if (json)
        printf("%s\n", b.buf);
    else
        print_table(s);
    st_json_free(s);
    free(b.buf);
    return 0;
}
