/* See serve_opts.h. */
#include "bench/serve_opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"

#define V "strait bench serve"

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: strait bench serve [--url http://HOST:PORT] [options]\n"
          "\n"
          "Load an OpenAI-compatible server with streaming completions and report\n"
          "request throughput, output tok/s, TTFT, TPOT, ITL and end-to-end latency.\n"
          "\n"
          "  --url URL              server base URL, plain http (default http://127.0.0.1:3001)\n"
          "  --model NAME           \"model\" of the requests (default: the first of GET /v1/models)\n"
          "  --api-key KEY          sent as Authorization: Bearer KEY\n"
          "  --endpoint E           completions | chat (default completions)\n"
          "  --dataset FILE         prompts, one JSON string per line (default: random words)\n"
          "  --input-len N          words per random prompt, about N tokens (default 128)\n"
          "  --output-len N         max_tokens of every request (default 128)\n"
          "  --no-ignore-eos        let requests stop at EOS (default: ignore_eos, full length)\n"
          "  --num-requests N       requests to measure (default 64)\n"
          "  --request-rate R       Poisson arrivals at R requests/s, or inf (default inf)\n"
          "  --max-concurrency C    requests in flight at most (default: unbounded)\n"
          "  --warmup N             unmeasured requests sent one at a time first (default 1)\n"
          "  --temperature T        sampling temperature (default 0)\n"
          "  --timeout S            seconds a request may take before it counts as failed (default 600)\n"
          "  --seed N               prompts and arrival times (default 0); the same seed sends the\n"
          "                         same prompts, which a server's prefix cache may serve from an\n"
          "                         earlier run: vary it between runs against one server\n"
          "  --json                 also print one JSON line\n"
          "  --trace                measure the tracing overhead of a strait server: run the load at\n"
          "                         trace sample 0, then (with other prompts) at 1, print the output\n"
          "                         tok/s ratio (JSON: \"bench\":\"serve_trace_overhead\"), keep the\n"
          "                         traced run's server trace (needs the server's /debug/trace)\n"
          "  --trace-out FILE       where that trace goes (default serve-trace.json)\n"
          "  --report FILE          write an HTML report: latency CDFs, throughput and batch size\n"
          "                         over time, time per span kind (from the server's trace)\n",
          f);
}

static int bad(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "%s: invalid value '%s' for %s (%s)\n", V, val, opt, why);
    return 2;
}

static int int_opt(const char *opt, const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        char why[64];
        snprintf(why, sizeof why, "an integer in [%ld, %ld]", lo, hi);
        return bad(opt, v, why);
    }
    *out = (int)x;
    return 0;
}

static int num_opt(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi)) {
        char why[64];
        snprintf(why, sizeof why, "a number in [%g, %g]", lo, hi);
        return bad(opt, v, why);
    }
    *out = x;
    return 0;
}

/* http://HOST[:PORT][/PREFIX], HOST may be [v6]. */
static int parse_url(sopts *o)
{
    const char *u = o->url;
    if (strncmp(u, "http://", 7))
        return bad("--url", u, strncmp(u, "https://", 8) ? "expected http://HOST[:PORT]" : "TLS is not supported");
    const char *h = u + 7, *he, *rest;
    if (*h == '[') {
        he = strchr(h, ']');
        if (!he)
            return bad("--url", u, "unterminated [IPv6 address]");
        h++;
        rest = he + 1;
    } else {
        he = h + strcspn(h, ":/");
        rest = he;
    }
    if (he == h || (size_t)(he - h) >= sizeof o->host)
        return bad("--url", u, "no host, or a host name too long");
    memcpy(o->host, h, (size_t)(he - h));
    o->host[he - h] = 0;
    snprintf(o->port, sizeof o->port, "80");
    if (*rest == ':') {
        const char *p = rest + 1, *pe = p + strcspn(p, "/");
        long port = 0;
        for (const char *c = p; c < pe; c++)
            port = port * 10 + (*c >= '0' && *c <= '9' ? *c - '0' : 100000);
        if (pe == p || port < 1 || port > 65535)
            return bad("--url", u, "bad port");
        snprintf(o->port, sizeof o->port, "%ld", port);
        rest = pe;
    } else if (*rest && *rest != '/') {
        return bad("--url", u, "expected http://HOST[:PORT]");
    }
    size_t bl = strlen(rest);
    while (bl && rest[bl - 1] == '/')
        bl--;
    if (bl >= sizeof o->base || memchr(rest, ' ', bl) || memchr(rest, '\r', bl) || memchr(rest, '\n', bl))
        return bad("--url", u, "bad path");
    memcpy(o->base, rest, bl);
    o->base[bl] = 0;
    return 0;
}

static int safe_header_value(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Returns 0 to run, 1 after --help, 2 on a bad option. */
int st_serve_opts_parse(int argc, char **argv, sopts *o)
{
    memset(o, 0, sizeof *o);
    o->url = "http://127.0.0.1:3001";
    o->input_len = 128;
    o->output_len = 128;
    o->num_requests = 64;
    o->warmup = 1;
    o->ignore_eos = 1;
    o->timeout_s = 600;
    o->trace_label = -1;
    static const char *const with_value[] = {"--url", "--model", "--api-key", "--endpoint", "--dataset",
                                             "--input-len", "--output-len", "--num-requests", "--request-rate",
                                             "--max-concurrency", "--warmup", "--temperature", "--timeout", "--seed",
                                             "--trace-out", "--report"};
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *a = argv[i], *v = NULL, *eq = strchr(a, '=');
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--no-ignore-eos")) {
            o->ignore_eos = 0;
            continue;
        }
        if (!strcmp(a, "--trace")) {
            o->trace = 1;
            continue;
        }
        size_t nl = eq && !strncmp(a, "--", 2) ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) {
            fprintf(stderr, "%s: unknown option '%s'\n", V, a);
            return 2;
        }
        memcpy(name, a, nl);
        name[nl] = 0;
        int known = 0;
        for (size_t k = 0; k < ST_ARRAY_LEN(with_value); k++)
            known |= !strcmp(name, with_value[k]);
        if (!known) {
            if (a[0] == '-')
                fprintf(stderr, "%s: unknown option '%s'\n", V, name);
            else
                fprintf(stderr, "%s: unexpected argument '%s'\n", V, a);
            return 2;
        }
        if (eq && !strncmp(a, "--", 2))
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "%s: option '%s' needs a value\n", V, name);
            return 2;
        }
        int rc = 0;
        double d;
        if (!strcmp(name, "--url")) {
            o->url = v;
            rc = parse_url(o);
        } else if (!strcmp(name, "--model")) {
            if (!*v || !safe_header_value(v))
                return bad(name, v, "a non-empty name");
            o->model = v;
        } else if (!strcmp(name, "--api-key")) {
            if (!*v || !safe_header_value(v))
                return bad(name, v, "a non-empty key without control characters");
            o->api_key = v;
        } else if (!strcmp(name, "--endpoint")) {
            if (strcmp(v, "completions") && strcmp(v, "chat"))
                return bad(name, v, "completions or chat");
            o->chat = !strcmp(v, "chat");
        } else if (!strcmp(name, "--dataset")) {
            if (!*v)
                return bad(name, v, "a file name");
            o->dataset = v;
        } else if (!strcmp(name, "--input-len")) {
            rc = int_opt(name, v, 1, 1 << 20, &o->input_len);
        } else if (!strcmp(name, "--output-len")) {
            rc = int_opt(name, v, 1, 1 << 20, &o->output_len);
        } else if (!strcmp(name, "--num-requests")) {
            rc = int_opt(name, v, 1, 10000000, &o->num_requests);
        } else if (!strcmp(name, "--max-concurrency")) {
            rc = int_opt(name, v, 1, 100000, &o->max_conc);
        } else if (!strcmp(name, "--warmup")) {
            rc = int_opt(name, v, 0, 10000, &o->warmup);
        } else if (!strcmp(name, "--request-rate")) {
            if (!strcmp(v, "inf"))
                o->rate = 0;
            else if (!(rc = num_opt(name, v, 1e-6, 1e9, &d)))
                o->rate = d;
        } else if (!strcmp(name, "--temperature")) {
            rc = num_opt(name, v, 0, 2, &o->temperature);
        } else if (!strcmp(name, "--timeout")) {
            rc = num_opt(name, v, 0.001, 1e7, &o->timeout_s);
        } else if (!strcmp(name, "--trace-out") || !strcmp(name, "--report")) {
            if (!*v)
                return bad(name, v, "a file name");
            *(name[2] == 't' ? &o->trace_out : &o->report_html) = v;
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-')
                return bad(name, v, "a non-negative integer");
            o->seed = s;
        }
        if (rc)
            return 2;
    }
    if (!o->host[0] && parse_url(o))
        return 2;
    return 0;
}

