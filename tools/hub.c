/* hf:ORG/NAME references: parsing, the repo listing
 * (GET {endpoint}/api/models/{org}/{name}/revision/{rev} -> siblings[].rfilename),
 * the choice of files to fetch, and their download into the cache. */
#define _GNU_SOURCE
#include "tools/hub.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/st_common.h"
#include "tools/models.h"

#define MARKER ".strait-complete"

/* ---- references ------------------------------------------------------------ */

static int name_ok(const char *s)
{
    if (!*s || !strcmp(s, ".") || strstr(s, ".."))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return 0;
    return 1;
}

/* A repo path: no "..", no leading '/', no empty segment, printable. */
static int file_ok(const char *s)
{
    if (!*s || *s == '/' || s[strlen(s) - 1] == '/' || strstr(s, "//"))
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\')
            return 0;
    for (const char *seg = s; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
        if (!strncmp(seg, "..", 2) && (seg[2] == '/' || seg[2] == 0))
            return 0;
    return 1;
}

static int rev_ok(const char *s)
{
    if (!*s || strstr(s, "..") || *s == '/')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_./", *s))
            return 0;
    return 1;
}

static int copy_str(char *dst, size_t cap, const char *src, size_t n, const char *what, const char *spec)
{
    if (n >= cap)
        return st_err(ST_EINVAL, "hf reference '%s': %s is too long", spec, what);
    memcpy(dst, src, n);
    dst[n] = 0;
    return ST_OK;
}

int st_hub_parse_ref(const char *spec, st_hub_ref *r)
{
    const char *full = spec;
    if (!strncmp(spec, "hf:", 3))
        spec += 3;
    memset(r, 0, sizeof *r);
    strcpy(r->rev, "main");
    char buf[1024];
    if (strlen(spec) >= sizeof buf)
        return st_err(ST_EINVAL, "hf reference too long: '%.64s...'", full);
    strcpy(buf, spec);

    char *at = strchr(buf, '@');
    const char *at_file = NULL;
    if (at) {
        *at = 0;
        char *rv = at + 1;
        size_t n = strlen(rv);
        /* ORG/NAME@REV/FILE.gguf */
        if (n > 5 && !strcasecmp(rv + n - 5, ".gguf")) {
            char *sl = strrchr(rv, '/');
            if (!sl)
                return st_err(ST_EINVAL, "hf reference '%s': expected @REVISION after the repo name", full);
            *sl = 0;
            at_file = sl + 1;
        }
        if (!rev_ok(rv))
            return st_err(ST_EINVAL, "hf reference '%s': bad revision '%s'", full, rv);
        if (copy_str(r->rev, sizeof r->rev, rv, strlen(rv), "the revision", full))
            return ST_EINVAL;
    }
    char *s1 = strchr(buf, '/');
    if (!s1)
        return st_err(ST_EINVAL, "hf reference '%s': expected hf:ORG/NAME[/FILE.gguf][@REVISION]", full);
    char *s2 = strchr(s1 + 1, '/');
    size_t name_len = s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1);
    if (copy_str(r->org, sizeof r->org, buf, (size_t)(s1 - buf), "the organization", full) ||
        copy_str(r->name, sizeof r->name, s1 + 1, name_len, "the repo name", full))
        return ST_EINVAL;
    if (!name_ok(r->org) || !name_ok(r->name))
        return st_err(ST_EINVAL, "hf reference '%s': ORG and NAME take letters, digits, '-', '_' and '.'", full);
    if (s2 && at_file)
        return st_err(ST_EINVAL, "hf reference '%s': two file names", full);
    const char *file = s2 ? s2 + 1 : at_file;
    if (file) {
        if (copy_str(r->file, sizeof r->file, file, strlen(file), "the file name", full))
            return ST_EINVAL;
        if (!file_ok(r->file))
            return st_err(ST_EINVAL, "hf reference '%s': bad file name '%s'", full, r->file);
    }
    return ST_OK;
}

const char *st_hub_endpoint(void)
{
    static char ep[1024];
    const char *e = getenv("HF_ENDPOINT");
    snprintf(ep, sizeof ep, "%s", e && *e ? e : "https://huggingface.co");
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        ep[--n] = 0;
    return ep;
}

int st_hub_cache_dir(const st_hub_ref *r, char *out, size_t cap)
{
    const char *md = st_models_dir();
    if (!md)
        return ST_EIO;
    char rev[sizeof r->rev];
    snprintf(rev, sizeof rev, "%s", r->rev);
    for (char *p = rev; *p; p++)
        if (*p == '/')
            *p = '_';
    int n = strcmp(r->rev, "main") ? snprintf(out, cap, "%s/%s--%s@%s", md, r->org, r->name, rev)
                                   : snprintf(out, cap, "%s/%s--%s", md, r->org, r->name);
    if (n < 0 || (size_t)n >= cap)
        return st_err(ST_ERANGE, "cache path too long for %s/%s", r->org, r->name);
    return ST_OK;
}

/* ---- choosing files ------------------------------------------------------------ */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* 1 when the name holds `quant` as a whole token: "x.Q4_0.gguf" matches
 * Q4_0, but neither "x.IQ4_0.gguf" nor "x.Q4_0_4_4.gguf" do. */
static int has_quant(const char *name, const char *quant)
{
    size_t m = strlen(quant);
    for (const char *p = name; *p; p++) {
        if (strncasecmp(p, quant, m))
            continue;
        int before = p > name && (isalnum((unsigned char)p[-1]));
        int after = isalnum((unsigned char)p[m]) || p[m] == '_';
        if (!before && !after)
            return 1;
    }
    return 0;
}

typedef struct {
    const char **v;
    size_t n;
} strlist;

static void list_add(strlist *l, const char *s)
{
    l->v = st_xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = s;
}

static int in_list(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s))
            return 1;
    return 0;
}

/* Pick the files to fetch from the repo listing (strings point into it).
 * *is_dir = 1 for a safetensors repo (the model is the directory). */
static int choose_files(const st_hub_ref *r, const strlist *all, strlist *pick, int *is_dir)
{
    *is_dir = 0;
    if (r->file[0]) {
        if (!in_list(all, r->file))
            goto not_there;
        list_add(pick, r->file);
        return ST_OK;
    }
    strlist gg = {0};
    for (size_t i = 0; i < all->n; i++)
        if (ends_with(all->v[i], ".gguf"))
            list_add(&gg, all->v[i]);
    if (gg.n) {
        const char *best = gg.n == 1 ? gg.v[0] : NULL;
        static const char *const prefs[] = {"Q4_1", "Q4_0", "Q8_0"};
        for (size_t q = 0; !best && q < ST_ARRAY_LEN(prefs); q++)
            for (size_t i = 0; !best && i < gg.n; i++)
                if (has_quant(base_name(gg.v[i]), prefs[q]))
                    best = gg.v[i];
        if (!best) {
            st_strbuf sb;
            st_sb_init(&sb);
            for (size_t i = 0; i < gg.n; i++)
                st_sb_printf(&sb, "\n  %s", gg.v[i]);
            st_err(ST_EINVAL,
                   "%s/%s has %zu GGUF files and none is Q4_1, Q4_0 or Q8_0; name one, "
                   "e.g. hf:%s/%s/%s. The GGUF files:%s",
                   r->org, r->name, gg.n, r->org, r->name, gg.v[0], sb.buf);
            st_sb_free(&sb);
            free(gg.v);
            return ST_EINVAL;
        }
        list_add(pick, best);
        free(gg.v);
        return ST_OK;
    }
    static const char *const meta[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                       "generation_config.json", "model.safetensors.index.json"};
    int n_st = 0;
    for (size_t i = 0; i < all->n; i++)
        n_st += !strchr(all->v[i], '/') && ends_with(all->v[i], ".safetensors");
    if (!n_st)
        return st_err(ST_ENOTSUP, "%s/%s@%s has neither .gguf nor .safetensors files", r->org, r->name, r->rev);
    if (!in_list(all, "config.json"))
        return st_err(ST_ENOTSUP, "%s/%s@%s has .safetensors files but no config.json", r->org, r->name, r->rev);
    for (size_t k = 0; k < ST_ARRAY_LEN(meta); k++)
        for (size_t i = 0; i < all->n; i++)
            if (!strcmp(all->v[i], meta[k]))
                list_add(pick, all->v[i]);
    for (size_t i = 0; i < all->n; i++)
        if (!strchr(all->v[i], '/') && ends_with(all->v[i], ".safetensors"))
            list_add(pick, all->v[i]);
    *is_dir = 1;
    return ST_OK;

not_there:;
    st_strbuf sb;
    st_sb_init(&sb);
    size_t shown = 0;
    for (size_t i = 0; i < all->n && shown < 40; i++)
        if (ends_with(all->v[i], ".gguf") || ends_with(all->v[i], ".safetensors") || ends_with(all->v[i], ".json")) {
            st_sb_printf(&sb, "\n  %s", all->v[i]);
            shown++;
        }
    st_err(ST_ENOENT, "%s/%s@%s has no file '%s'; its model files:%s", r->org, r->name, r->rev, r->file,
           shown ? sb.buf : " (none)");
    st_sb_free(&sb);
    return ST_ENOENT;
}

/* ---- listing -------------------------------------------------------------------- */

static int fetch_listing(const st_hub_ref *r, st_json **root, strlist *all)
{
    char rev[sizeof r->rev * 3], url[2048];
    int rc = st_url_escape(r->rev, 0, rev, sizeof rev);
    if (rc)
        return rc;
    if ((rc = st_pathf(url, sizeof url, "%s/api/models/%s/%s/revision/%s", st_hub_endpoint(), r->org, r->name, rev)))
        return rc;
    char *body;
    size_t len;
    long status;
    if ((rc = st_http_get(url, 64u << 20, &body, &len, &status)) != ST_OK)
        return rc;
    if (status != 200) {
        free(body);
        if (status == 401 || status == 404)
            return st_err(ST_ENOENT,
                          "%s/%s (revision %s) not found on %s (HTTP %ld); a private or gated repo "
                          "needs HF_TOKEN",
                          r->org, r->name, r->rev, st_hub_endpoint(), status);
        if (status == 403)
            return st_err(ST_EPROTO,
                          "access to %s/%s denied (HTTP 403): accept the model's license on the hub "
                          "and set HF_TOKEN",
                          r->org, r->name);
        return st_err(ST_EPROTO, "listing %s/%s: HTTP %ld from %s", r->org, r->name, status, url);
    }
    rc = st_json_parse(body, len, root);
    free(body);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", st_errmsg());
        return st_err(rc, "listing %s/%s: bad JSON from %s: %s", r->org, r->name, url, why);
    }
    const st_json *sib = st_json_get(*root, "siblings");
    if (!sib || sib->type != ST_JSON_ARRAY) {
        st_json_free(*root);
        *root = NULL;
        return st_err(ST_EPROTO, "listing %s/%s: no siblings[] in the reply from %s", r->org, r->name, url);
    }
    for (size_t i = 0; i < sib->u.arr.n; i++) {
        /* names that could escape the cache directory are skipped */
        const st_json *f = st_json_get(&sib->u.arr.items[i], "rfilename");
        if (f && f->type == ST_JSON_STRING && strlen(f->u.str.s) == f->u.str.len && file_ok(f->u.str.s))
            list_add(all, f->u.str.s);
    }
    return ST_OK;
}

/* ---- resolve / pull ----------------------------------------------------------- */

static int write_marker(const char *dir, const strlist *files)
{
    char tmp[4096], path[4096];
    int rc = st_pathf(path, sizeof path, "%s/" MARKER, dir);
    /* per-process temporary name: two pulls of one repo may finish together */
    if (rc || (rc = st_pathf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid())))
        return rc;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return st_err(ST_EIO, "cannot write %s: %s", tmp, strerror(errno));
    for (size_t i = 0; i < files->n; i++)
        fprintf(f, "%s\n", base_name(files->v[i]));
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) {
        unlink(tmp);
        return st_err(ST_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return ST_OK;
}

static int put(char *out, size_t cap, const char *s)
{
    if (strlen(s) >= cap)
        return st_err(ST_ERANGE, "path does not fit in %zu bytes: %s", cap, s);
    strcpy(out, s);
    return ST_OK;
}

int st_hub_resolve(const char *spec, int allow_download, char *out, size_t cap)
{
    st_hub_ref r;
    char dir[4096], path[4096];
    int rc = st_hub_parse_ref(spec, &r);
    if (rc || (rc = st_hub_cache_dir(&r, dir, sizeof dir)))
        return rc;
    struct stat sb;
    if (r.file[0]) {
        if ((rc = st_pathf(path, sizeof path, "%s/%s", dir, base_name(r.file))))
            return rc;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            return put(out, cap, path);
    } else {
        if ((rc = st_pathf(path, sizeof path, "%s/" MARKER, dir)))
            return rc;
        if (access(path, F_OK) == 0 && st_models_dir_model(dir, out, cap) == ST_OK)
            return ST_OK;
    }
    if (!allow_download)
        return st_err(ST_ENOENT, "%s is not cached; fetch it with: strait models pull %s", spec, spec);

    ST_INFO("listing hf:%s/%s@%s on %s", r.org, r.name, r.rev, st_hub_endpoint());
    st_json *root = NULL;
    strlist all = {0}, pick = {0};
    int is_dir = 0, created = 0;
    if ((rc = fetch_listing(&r, &root, &all)) != ST_OK)
        return rc;
    if ((rc = choose_files(&r, &all, &pick, &is_dir)) != ST_OK)
        goto out;
    created = mkdir(dir, 0755) == 0;
    if (!created && errno != EEXIST) {
        rc = st_err(ST_EIO, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    char rev[sizeof r.rev * 3], file[1600], url[4096];
    if ((rc = st_url_escape(r.rev, 0, rev, sizeof rev)) != ST_OK)
        goto out;
    for (size_t i = 0; i < pick.n; i++) {
        if ((rc = st_pathf(path, sizeof path, "%s/%s", dir, base_name(pick.v[i]))))
            goto out;
        if (stat(path, &sb) == 0) {
            ST_INFO("%s: already cached", base_name(pick.v[i]));
            continue;
        }
        if ((rc = st_url_escape(pick.v[i], 1, file, sizeof file)) != ST_OK)
            goto out;
        if ((rc = st_pathf(url, sizeof url, "%s/%s/%s/resolve/%s/%s", st_hub_endpoint(), r.org, r.name, rev, file)))
            goto out;
        ST_INFO("fetching %s/%s/%s (%zu of %zu)", r.org, r.name, pick.v[i], i + 1, pick.n);
        if ((rc = st_http_download(url, path, base_name(pick.v[i]))) != ST_OK)
            goto out;
    }
    if (!r.file[0] && (rc = write_marker(dir, &pick)) != ST_OK)
        goto out;
    if (is_dir) {
        rc = put(out, cap, dir);
    } else {
        if ((rc = st_pathf(path, sizeof path, "%s/%s", dir, base_name(pick.v[0]))) == ST_OK)
            rc = put(out, cap, path);
    }
out:
    if (rc != ST_OK && created)
        rmdir(dir); /* only when empty: a failed first pull leaves no clutter */
    free(all.v);
    free(pick.v);
    st_json_free(root);
    return rc;
}
