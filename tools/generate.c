/* `strait generate`: one-shot or interactive generation on this machine. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "engine/chat.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/opts.h"

static const char usage[] =
    "usage: strait generate [-m MODEL] [-p PROMPT] [options]\n"
    "\n"
    "Generate text; only the generated text goes to stdout (logs to stderr).\n"
    "\n"
    "  -m, --model MODEL          path, cached name or hf:ORG/NAME (default: the default model)\n"
    "  -p, --prompt TEXT          the prompt (or the user message with --chat); '-' reads stdin\n"
    "  -n, --max-tokens N         tokens to generate (default 128; capped by the context)\n"
    "      --chat                 apply the model's chat template; without -p: interactive chat\n"
    "      --system TEXT          system message for --chat\n"
    "      --no-think             qwen3: disable thinking (enable_thinking = false)\n"
    "      --temperature T        0 = greedy (default 0.8)\n"
    "      --top-k K              (default 40; 0 = off)\n"
    "      --top-p P              (default 0.95; 1 = off)\n"
    "      --min-p P              (default 0.05; 0 = off)\n"
    "      --repeat-penalty R     (default 1 = off)\n"
    "      --presence-penalty P   (default 0)\n"
    "      --frequency-penalty P  (default 0)\n"
    "      --seed S               RNG seed (default: from the clock; printed with -v)\n"
    "  -c, --ctx N                context to reserve (default: min(model's, 4096))\n"
    "  -t, --threads N            CPU threads (default: all cores)\n"
    "      --device D             auto | cpu | cuda | cuda:N (default auto)\n"
    "      --stats                print timings to stderr at the end\n"
    "  -v, --verbose              debug logging\n"
    "  -h, --help                 this help\n";

enum {
    O_CHAT = 256, O_DEVICE, O_SYSTEM, O_NOTHINK, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_PRES, O_FREQ, O_SEED, O_STATS,
};

typedef struct {
    const char *model, *prompt, *system, *device;
    int n_predict, chat, think, ctx, threads, stats;
    st_sampling sp;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'},       {"prompt", 1, 0, 'p'},           {"max-tokens", 1, 0, 'n'},
        {"chat", 0, 0, O_CHAT},     {"system", 1, 0, O_SYSTEM},      {"no-think", 0, 0, O_NOTHINK},
        {"temperature", 1, 0, O_TEMP}, {"top-k", 1, 0, O_TOPK},     {"top-p", 1, 0, O_TOPP},
        {"min-p", 1, 0, O_MINP},    {"repeat-penalty", 1, 0, O_REP}, {"presence-penalty", 1, 0, O_PRES},
        {"frequency-penalty", 1, 0, O_FREQ}, {"seed", 1, 0, O_SEED}, {"ctx", 1, 0, 'c'},
        {"threads", 1, 0, 't'},     {"device", 1, 0, O_DEVICE},     {"stats", 0, 0, O_STATS},        {"verbose", 0, 0, 'v'},
        {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *V = "generate";
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->think = 1;
    o->sp = st_sampling_default();
    o->sp.seed = st_now_ns();
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:n:c:t:vh", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'n': bad = st_opt_int(V, "max-tokens", optarg, 0, 1 << 30, &o->n_predict); break;
        case 'c': bad = st_opt_int(V, "ctx", optarg, 16, 1 << 22, &o->ctx); break;
        case 't': bad = st_opt_int(V, "threads", optarg, 0, 1024, &o->threads); break;
        case 'v': st_log_set_level(ST_LOG_DEBUG); break;
        case O_CHAT: o->chat = 1; break;
        case O_DEVICE: o->device = optarg; break;
        case O_SYSTEM: o->system = optarg; break;
        case O_NOTHINK: o->think = 0; break;
        case O_STATS: o->stats = 1; break;
        case O_TEMP: bad = st_opt_float(V, "temperature", optarg, 0, 100, &o->sp.temperature); break;
        case O_TOPK: bad = st_opt_int(V, "top-k", optarg, 0, 1 << 30, &o->sp.top_k); break;
        case O_TOPP: bad = st_opt_float(V, "top-p", optarg, 1e-6, 1, &o->sp.top_p); break;
        case O_MINP: bad = st_opt_float(V, "min-p", optarg, 0, 1, &o->sp.min_p); break;
        case O_REP: bad = st_opt_float(V, "repeat-penalty", optarg, 1e-3, 100, &o->sp.repetition_penalty); break;
        case O_PRES: bad = st_opt_float(V, "presence-penalty", optarg, -100, 100, &o->sp.presence_penalty); break;
        case O_FREQ: bad = st_opt_float(V, "frequency-penalty", optarg, -100, 100, &o->sp.frequency_penalty); break;
        case O_SEED: bad = st_opt_u64(V, "seed", optarg, &o->sp.seed); break;
        case 'h': fputs(usage, stdout); exit(0);
        case ':': return st_cli_missing_value(V, argv, optopt);
        default: return st_cli_unknown_option(V, argv, optopt);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return st_cli_extra_arg(V, argv[optind]);
    return 0;
}

/* Read all of stdin (for -p -). */
static char *read_stdin(void)
{
    size_t cap = 4096, n = 0;
    char *buf = st_xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 >= cap)
            buf = st_xrealloc(buf, cap *= 2);
    }
    buf[n] = 0;
    return buf;
}

typedef struct {
    st_session sess;
    st_sampler smp;
    int32_t *hist;   /* tokens in the cache, in order */
    int n_hist;
    float *logits;
    int n_gen;
    double t_prompt, t_gen;
    int n_prompt_eval;
} gen_state;

/* Evaluate the new suffix of `toks` after the longest prefix already cached. */
static int feed(gen_state *g, const int32_t *toks, int n)
{
    int common = 0;
    while (common < n && common < g->n_hist && toks[common] == g->hist[common])
        common++;
    if (common == n) /* re-evaluate the last token to get its logits */
        common = n - 1;
    g->sess.n_past = common;
    g->n_hist = common;
    double t0 = st_now_s();
    int rc = st_session_eval(&g->sess, toks + common, n - common, g->logits, 0);
    g->t_prompt += st_now_s() - t0;
    g->n_prompt_eval += n - common;
    if (rc)
        return rc;
    memcpy(g->hist + common, toks + common, (size_t)(n - common) * sizeof(int32_t));
    g->n_hist = n;
    return ST_OK;
}

/* Sample and print up to n_predict tokens; appends the generated text to
 * *reply when reply is non-NULL. */
static int run(gen_state *g, const st_tokenizer *tok, int n_predict, char **reply, size_t *reply_len)
{
    st_detok dt;
    st_detok_init(&dt, tok, 1);
    char piece[512];
    int vocab = g->sess.m->cfg.vocab_size;
    double t0 = st_now_s();
    for (int i = 0; i < n_predict; i++) {
        int32_t id = st_sampler_sample(&g->smp, g->logits, vocab, g->hist, g->n_hist, NULL);
        if (id < 0)
            return id;
        if (st_tok_is_eog(tok, id))
            break;
        g->n_gen++;
        int k = st_detok_feed(&dt, id, piece, sizeof piece);
        fwrite(piece, 1, (size_t)k, stdout);
        fflush(stdout);
        if (reply) {
            *reply = st_xrealloc(*reply, *reply_len + (size_t)k + 1);
            memcpy(*reply + *reply_len, piece, (size_t)k);
            *reply_len += (size_t)k;
            (*reply)[*reply_len] = 0;
        }
        if (g->n_hist >= g->sess.max_ctx) {
            ST_WARN("context of %d tokens is full; stopping", g->sess.max_ctx);
            break;
        }
        g->hist[g->n_hist++] = id;
        int rc = st_session_eval(&g->sess, &id, 1, g->logits, 0);
        if (rc)
            return rc;
    }
    int k = st_detok_flush(&dt, piece, sizeof piece);
    fwrite(piece, 1, (size_t)k, stdout);
    fflush(stdout);
    g->t_gen += st_now_s() - t0;
    return ST_OK;
}

/* Tokenize text, prepending BOS when the model wants it and the text did not
 * already start with it (a chat template may write BOS itself). */
static int encode(const st_tokenizer *tok, const char *text, size_t len, int special, int32_t **out, int *n)
{
    int cap = (int)ST_MIN(len + 16, (size_t)1 << 28);
    int32_t *ids = st_xmalloc((size_t)(cap + 1) * sizeof(int32_t));
    int k = st_tok_encode(tok, text, len, special, ids + 1, cap);
    if (k > cap) {
        ids = st_xrealloc(ids, (size_t)(k + 1) * sizeof(int32_t));
        k = st_tok_encode(tok, text, len, special, ids + 1, k);
    }
    if (k < 0) {
        free(ids);
        return k;
    }
    int32_t bos = st_tok_bos(tok);
    if (st_tok_add_bos(tok) && bos >= 0 && !(k > 0 && ids[1] == bos)) {
        ids[0] = bos;
        *n = k + 1;
    } else {
        memmove(ids, ids + 1, (size_t)k * sizeof(int32_t));
        *n = k;
    }
    *out = ids;
    return ST_OK;
}

typedef struct {
    st_chat_msg *v;
    int n;
} convo;

static void convo_add(convo *c, const char *role, const char *text)
{
    c->v = st_xrealloc(c->v, (size_t)(c->n + 1) * sizeof *c->v);
    c->v[c->n].role = role;
    c->v[c->n].content = st_xstrdup(text);
    c->v[c->n].content_len = strlen(text);
    c->n++;
}

static int chat_turn(gen_state *g, const st_tokenizer *tok, st_chat_format fmt, const char *dflt_system, convo *cv,
                     const gen_opts *o)
{
    /* bos_text stays NULL: the formatter omits BOS and encode() adds it */
    st_chat_opts co = st_chat_opts_default();
    co.enable_thinking = o->think;
    co.default_system = dflt_system;
    char *text;
    size_t len;
    int rc = st_chat_render(fmt, cv->v, cv->n, &co, &text, &len);
    if (rc)
        return rc;
    int32_t *ids;
    int n;
    rc = encode(tok, text, len, 1, &ids, &n);
    free(text);
    if (rc)
        return rc;
    if (n >= g->sess.max_ctx) {
        free(ids);
        return st_err(ST_ERANGE, "the conversation (%d tokens) does not fit the context (%d)", n, g->sess.max_ctx);
    }
    rc = feed(g, ids, n);
    free(ids);
    if (rc)
        return rc;
    char *reply = NULL;
    size_t reply_len = 0;
    int budget = ST_MIN(o->n_predict, g->sess.max_ctx - g->n_hist);
    rc = run(g, tok, budget, &reply, &reply_len);
    fputc('\n', stdout);
    convo_add(cv, "assistant", reply ? reply : "");
    free(reply);
    return rc;
}

int st_cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    if ((rc = st_sampling_validate(&o.sp)))
        return st_cli_fail("generate", rc);
    char *stdin_prompt = NULL;
    if (o.prompt && !strcmp(o.prompt, "-"))
        o.prompt = stdin_prompt = read_stdin();
    if (!o.prompt && !o.chat)
        return st_opt_usage_error("generate", "a prompt is required (-p TEXT, or --chat for interactive chat)");

    st_cli_model cm;
    if ((rc = st_cli_load_model("generate", o.model, o.device, o.threads, &cm)))
        return rc;
    st_model *m = cm.model;
    if (!m->tok) {
        st_cli_unload(&cm);
        return st_cli_fail("generate", st_err(ST_EINVAL, "%s has no tokenizer", m->path));
    }
    int ctx = o.ctx ? o.ctx : ST_MIN(m->cfg.ctx_len, 4096);
    gen_state g;
    memset(&g, 0, sizeof g);
    if ((rc = st_session_init(&g.sess, m, cm.backend, ctx, 256))) {
        st_cli_unload(&cm);
        return st_cli_fail("generate", rc);
    }
    g.hist = st_xmalloc((size_t)g.sess.max_ctx * sizeof(int32_t));
    g.logits = st_xmalloc((size_t)m->cfg.vocab_size * sizeof(float));
    st_sampler_init(&g.smp, &o.sp);
    ST_DEBUG("seed %llu", (unsigned long long)o.sp.seed);

    if (!o.chat) {
        int32_t *ids;
        int n;
        if (!(rc = encode(m->tok, o.prompt, strlen(o.prompt), 0, &ids, &n))) {
            if (n >= g.sess.max_ctx)
                rc = st_err(ST_ERANGE, "the prompt (%d tokens) does not fit the context (%d)", n, g.sess.max_ctx);
            else if (!(rc = feed(&g, ids, n)))
                rc = run(&g, m->tok, ST_MIN(o.n_predict, g.sess.max_ctx - g.n_hist), NULL, NULL);
            free(ids);
        }
    } else {
        const char *tmpl = st_tok_chat_template(m->tok);
        st_chat_format fmt = st_chat_detect(tmpl);
        if (fmt == ST_CHAT_UNKNOWN) {
            ST_WARN("%s chat template not recognised; falling back to ChatML", tmpl ? "the model's" : "no");
            fmt = ST_CHAT_CHATML;
        }
        ST_DEBUG("chat format %s", st_chat_format_name(fmt));
        char *dflt_system = NULL;
        if (fmt == ST_CHAT_CHATML && tmpl)
            st_chat_default_system(tmpl, &dflt_system);
        convo cv = {0};
        if (o.system)
            convo_add(&cv, "system", o.system);
        if (o.prompt) {
            convo_add(&cv, "user", o.prompt);
            rc = chat_turn(&g, m->tok, fmt, dflt_system, &cv, &o);
        } else {
            int tty = isatty(0);
            char *line = NULL;
            size_t cap = 0;
            ssize_t len;
            while (!rc) {
                if (tty)
                    fputs("> ", stderr);
                if ((len = getline(&line, &cap, stdin)) < 0)
                    break;
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                    line[--len] = 0;
                if (!len)
                    continue;
                convo_add(&cv, "user", line);
                rc = chat_turn(&g, m->tok, fmt, dflt_system, &cv, &o);
            }
            free(line);
        }
        for (int i = 0; i < cv.n; i++)
            free((char *)cv.v[i].content);
        free(cv.v);
        free(dflt_system);
    }
    if (!o.chat)
        fputc('\n', stdout);
    if (o.stats)
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s)\n",
                g.n_prompt_eval, g.t_prompt, g.n_prompt_eval / (g.t_prompt > 0 ? g.t_prompt : 1), g.n_gen, g.t_gen,
                g.n_gen / (g.t_gen > 0 ? g.t_gen : 1));
    st_sampler_free(&g.smp);
    free(g.hist);
    free(g.logits);
    st_session_free(&g.sess);
    st_cli_unload(&cm);
    free(stdin_prompt);
    return rc ? st_cli_fail("generate", rc) : 0;
}
