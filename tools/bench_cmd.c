/* `strait bench engine|transport|kernels`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/engine_bench.h"
#include "bench/serve_bench.h"
#include "common/json.h"
#include "common/st_common.h"
#include "engine/tokenizer.h"
#include "kernels/backend.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/opts.h"

int st_bench_transport_main(int argc, char **argv);
int st_bench_kernels_main(int argc, char **argv);

static const char usage[] = "usage: strait bench engine|serve|transport|kernels [options]   (strait bench KIND --help)\n";

static const char engine_usage[] =
    "usage: strait bench engine [-m MODEL] [options]\n"
    "\n"
    "Prompt processing (tok/s over an N-token prompt) and decode (tok/s over M\n"
    "tokens), with achieved GB/s of weight traffic beside the measured read\n"
    "bandwidth, and the tokenizer's time on a ~4096-token text beside the time\n"
    "its prefill takes. Prints a table, and a JSON line with --json.\n"
    "\n"
    "  -m, --model MODEL       (default: the default model)\n"
    "  -p, --n-prompt N        prompt tokens (default 512)\n"
    "  -n, --n-gen N           decode tokens (default 128)\n"
    "  -r, --reps N            repetitions, best and mean reported (default 3)\n"
    "  -t, --threads N         (default: all cores)\n"
    "      --device D          auto | cpu | cuda | cuda:N (default auto)\n"
    "      --json              also print one JSON line\n"
    "      --llama-bench PATH  run llama.cpp's llama-bench on the same GGUF with the\n"
    "                          same settings in this run and report the ratios\n";

/* Run llama-bench and read its avg_ts for the pp and tg tests. */
static int run_llama_bench(const char *bin, const char *model, const st_bench_engine_opts *o, double *pp, double *tg)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -p %d -n %d -r %d -t %d -o json 2>/dev/null", bin, model, o->n_prompt,
             o->n_gen, o->reps, o->threads);
    FILE *p = popen(cmd, "r");
    if (!p)
        return st_err(ST_EIO, "cannot run %s", bin);
    st_strbuf sb;
    st_sb_init(&sb);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, p)) > 0)
        st_sb_putn(&sb, buf, k);
    int status = pclose(p);
    st_json *j = NULL;
    int rc = st_json_parse(sb.buf ? sb.buf : "", sb.len, &j);
    st_sb_free(&sb);
    if (status != 0 || rc || j->type != ST_JSON_ARRAY) {
        if (j)
            st_json_free(j);
        return st_err(ST_EIO, "llama-bench failed (exit status %d) or printed no JSON", status);
    }
    *pp = *tg = 0;
    for (size_t i = 0; i < j->u.arr.n; i++) {
        const st_json *e = &j->u.arr.items[i];
        double ts = st_json_get_num(e, "avg_ts", 0);
        if (st_json_get_num(e, "n_prompt", 0) > 0)
            *pp = ts;
        else if (st_json_get_num(e, "n_gen", 0) > 0)
            *tg = ts;
    }
    st_json_free(j);
    return *pp > 0 && *tg > 0 ? ST_OK : st_err(ST_EIO, "llama-bench output lacks pp or tg results");
}

/* Tokenizer speed beside prompt processing: the tokenizer must not show in
 * a profile of a long prompt. The text is `n` random vocabulary ids
 * detokenized (specials skipped), so it does not repeat and holds every
 * kind of piece the vocabulary has; it is encoded `reps` times and the best
 * time kept. Returns the tokens it encodes to, or -1. */
static int bench_tokenizer(const st_tokenizer *t, int n, int reps, double *best_ms)
{
    int V = st_tok_vocab_size(t);
    int32_t *ids = st_xmalloc(sizeof(int32_t) * (size_t)n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    int len = st_tok_decode(t, ids, n, 1, NULL, 0);
    char *text = len > 0 ? st_xmalloc((size_t)len) : NULL;
    int k = -1;
    if (text && st_tok_decode(t, ids, n, 1, text, len) == len) {
        int cap = len + 16;
        int32_t *out = st_xrealloc(ids, sizeof(int32_t) * (size_t)cap);
        ids = out;
        *best_ms = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = st_now_s();
            k = st_tok_encode(t, text, (size_t)len, 0, out, cap);
            double ms = (st_now_s() - t0) * 1e3;
            if (ms < *best_ms)
                *best_ms = ms;
        }
    }
    free(text);
    free(ids);
    return k;
}

static int bench_engine(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'}, {"n-prompt", 1, 0, 'p'}, {"n-gen", 1, 0, 'n'}, {"reps", 1, 0, 'r'},
        {"threads", 1, 0, 't'}, {"json", 0, 0, 'J'}, {"llama-bench", 1, 0, 'L'}, {"device", 1, 0, 'D'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    const char *V = "bench engine", *ref = NULL, *llama = NULL, *device = NULL;
    st_bench_engine_opts o = {.n_prompt = 512, .n_gen = 128, .reps = 3, .threads = 0, .seed = 42};
    int json = 0, c, bad = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:n:r:t:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': ref = optarg; break;
        case 'p': bad = st_opt_int(V, "n-prompt", optarg, 1, 65536, &o.n_prompt); break;
        case 'n': bad = st_opt_int(V, "n-gen", optarg, 1, 65536, &o.n_gen); break;
        case 'r': bad = st_opt_int(V, "reps", optarg, 1, 1000, &o.reps); break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &o.threads); break;
        case 'J': json = 1; break;
        case 'L': llama = optarg; break;
        case 'D': device = optarg; break;
        case 'h': fputs(engine_usage, stdout); return 0;
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);
    st_cli_model cm;
    int rc = st_cli_load_model(V, ref, device, o.threads, &cm);
    if (rc)
        return rc;
    o.threads = cm.backend->n_threads;
    st_bench_engine_result r;
    if ((rc = st_bench_engine(cm.model, cm.backend, &o, &r))) {
        st_cli_unload(&cm);
        return st_cli_fail(V, rc);
    }
    double lpp = 0, ltg = 0;
    if (llama && (rc = run_llama_bench(llama, cm.model->path, &o, &lpp, &ltg)))
        ST_WARN("%s", st_errmsg());
    const st_model_config *k = &cm.model->cfg;
    printf("model       %s (%s, %d layers, %.1f MB weights)\n", cm.model->path, st_arch_name(k->arch), k->n_layers,
           (double)cm.model->weight_bytes / 1e6);
    printf("backend     cpu/%s, %d threads\n", st_cpu_isa(), o.threads);
    printf("%-12s %12s %12s %12s\n", "test", "best tok/s", "mean tok/s", "llama.cpp");
    printf("%-12s %12.1f %12.1f %12s\n", "pp", r.pp_tok_s, r.pp_tok_s_mean, "");
    printf("%-12s %12.1f %12.1f %12s\n", "tg", r.tg_tok_s, r.tg_tok_s_mean, "");
    if (lpp > 0)
        printf("llama.cpp   pp %.1f tok/s, tg %.1f tok/s (means) -> ratio of means pp %.2f, tg %.2f\n", lpp, ltg,
               r.pp_tok_s_mean / lpp, r.tg_tok_s_mean / ltg);
    printf("decode      %.1f MB/token -> %.1f GB/s of weights; read bandwidth %.1f GB/s (%.0f%%)\n",
           (double)r.decode_bytes / 1e6, r.tg_gbs, r.read_bw_gbs, 100.0 * r.tg_gbs / r.read_bw_gbs);
    printf("prompt      %.1f GFLOP/s in matmuls\n", r.pp_gflops);
    double tok_ms = 0, pp_ms = 0;
    int tok_n = cm.model->tok ? bench_tokenizer(cm.model->tok, 4096, o.reps, &tok_ms) : -1;
    if (tok_n > 0) {
        pp_ms = tok_n / r.pp_tok_s_mean * 1e3; /* what prefilling those tokens takes at the measured rate */
        printf("tokenizer   %d tokens (random vocabulary text) in %.2f ms; their prefill ~%.0f ms (%.3f%%)\n", tok_n,
               tok_ms, pp_ms, 100.0 * tok_ms / pp_ms);
    }
    if (json) {
        printf("{\"bench\":\"engine\",\"model\":\"%s\",\"arch\":\"%s\",\"isa\":\"%s\",\"threads\":%d,"
               "\"n_prompt\":%d,\"n_gen\":%d,\"reps\":%d,\"pp_tok_s\":%.2f,\"pp_tok_s_mean\":%.2f,"
               "\"tg_tok_s\":%.2f,\"tg_tok_s_mean\":%.2f,\"decode_bytes\":%zu,\"tg_gbs\":%.3f,"
               "\"read_bw_gbs\":%.3f,\"pp_gflops\":%.3f",
               cm.model->path, st_arch_name(k->arch), st_cpu_isa(), o.threads, o.n_prompt, o.n_gen, o.reps,
               r.pp_tok_s, r.pp_tok_s_mean, r.tg_tok_s, r.tg_tok_s_mean, r.decode_bytes, r.tg_gbs, r.read_bw_gbs,
               r.pp_gflops);
        if (tok_n > 0)
            printf(",\"tokenize_tokens\":%d,\"tokenize_ms\":%.3f,\"tokenize_prefill_ratio\":%.5f", tok_n, tok_ms,
                   tok_ms / pp_ms);
        if (lpp > 0)
            printf(",\"llama_pp_tok_s\":%.2f,\"llama_tg_tok_s\":%.2f,\"pp_ratio\":%.3f,\"tg_ratio\":%.3f", lpp, ltg,
                   r.pp_tok_s_mean / lpp, r.tg_tok_s_mean / ltg);
        printf("}\n");
    }
    st_cli_unload(&cm);
    return 0;
}

int st_cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *kind = argv[1];
    if (!strcmp(kind, "--help") || !strcmp(kind, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(kind, "engine"))
        return bench_engine(argc - 1, argv + 1);
    if (!strcmp(kind, "serve"))
        return st_bench_serve_main(argc - 1, argv + 1);
    if (!strcmp(kind, "transport"))
        return st_bench_transport_main(argc - 1, argv + 1);
    if (!strcmp(kind, "kernels"))
        return st_bench_kernels_main(argc - 1, argv + 1);
    fprintf(stderr, "strait bench: unknown benchmark '%s' (engine, serve, transport, kernels)\n", kind);
    return 2;
}
