/* `strait tokenize`: text on stdin -> token ids (or ids -> text with
 * --decode). Needs only the tokenizer, so a vocabulary-only GGUF works. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/st_common.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "tools/cli.h"
#include "tools/load.h"
#include "tools/models.h"

static const char usage[] =
    "usage: strait tokenize [-m MODEL] [--decode] [--special] < input\n"
    "\n"
    "Reads stdin exactly as given (no trimming) and prints its token ids, space\n"
    "separated, without BOS. With --decode reads ids (whitespace separated) and\n"
    "prints the text. MODEL may be a GGUF (a vocabulary-only one works), a\n"
    "Hugging Face directory or a tokenizer.json.\n"
    "\n"
    "  -m, --model MODEL   (default: the default model)\n"
    "  -d, --decode        ids -> text\n"
    "  -s, --special       match special-token text (\"<|im_start|>\") as single tokens\n"
    "  -h, --help          this help\n";

static char *slurp(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, r;
    char *buf = st_xmalloc(cap);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = st_xrealloc(buf, cap *= 2);
    }
    *len = n;
    return buf;
}

static int load_tokenizer(const char *path, st_tokenizer **tok, st_gguf **g)
{
    struct stat sb;
    char buf[4200];
    *g = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(buf, sizeof buf, "%.4096s/tokenizer.json", path);
        return st_tok_load_json(buf, tok);
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json"))
        return st_tok_load_json(path, tok);
    int rc = st_gguf_open(path, ST_GGUF_ALLOW_UNKNOWN_TYPES, g);
    if (rc)
        return rc;
    if ((rc = st_tok_load_gguf(*g, tok))) {
        st_gguf_close(*g);
        *g = NULL;
    }
    return rc;
}

int st_cmd_tokenize(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'}, {"decode", 0, 0, 'd'}, {"special", 0, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *ref = NULL;
    int decode = 0, special = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:dsh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': ref = optarg; break;
        case 'd': decode = 1; break;
        case 's': special = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case ':': return st_cli_missing_value("tokenize", argv, optopt);
        default: return st_cli_unknown_option("tokenize", argv, optopt);
        }
    }
    if (optind < argc)
        return st_cli_extra_arg("tokenize", argv[optind]);
    char path[4096];
    int rc = st_model_resolve(ref, 1, path, sizeof path);
    if (rc)
        return st_cli_fail("tokenize", rc);
    st_tokenizer *tok;
    st_gguf *g;
    if ((rc = load_tokenizer(path, &tok, &g)))
        return st_cli_fail("tokenize", rc);
    size_t len;
    char *in = slurp(stdin, &len);
    int status = 0;
    if (!decode) {
        int cap = (int)ST_MIN(len + 16, (size_t)1 << 28);
        int32_t *ids = st_xmalloc((size_t)cap * sizeof(int32_t));
        int n = st_tok_encode(tok, in, len, special, ids, cap);
        if (n > cap) {
            ids = st_xrealloc(ids, (size_t)n * sizeof(int32_t));
            n = st_tok_encode(tok, in, len, special, ids, n);
        }
        if (n < 0) {
            status = st_cli_fail("tokenize", n);
        } else {
            for (int i = 0; i < n; i++)
                printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        }
        free(ids);
    } else {
        int n = 0, cap = 1024;
        int32_t *ids = st_xmalloc((size_t)cap * sizeof(int32_t));
        char *p = in, *end = in + len;
        while (p < end && !status) {
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ','))
                p++;
            if (p == end)
                break;
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p || v < 0 || v >= st_tok_vocab_size(tok)) {
                status = st_cli_fail("tokenize", st_err(ST_EINVAL, "invalid token id near '%.16s' (vocab %d)", p,
                                                        st_tok_vocab_size(tok)));
                break;
            }
            if (n == cap)
                ids = st_xrealloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
            ids[n++] = (int32_t)v;
            p = q;
        }
        if (!status) {
            int need = st_tok_decode(tok, ids, n, 0, NULL, 0);
            char *text = st_xmalloc((size_t)need + 1);
            int k = st_tok_decode(tok, ids, n, 0, text, need);
            fwrite(text, 1, (size_t)(k < need ? k : need), stdout);
            free(text);
        }
        free(ids);
    }
    free(in);
    st_tok_free(tok);
    if (g)
        st_gguf_close(g);
    return status;
}
