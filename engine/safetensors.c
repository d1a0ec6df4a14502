/* safetensors reader.
 *
 * A file is: header length N (u64 little-endian) | N bytes of JSON |
 * data. The JSON object maps each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end)} with offsets relative to the first data
 * byte, plus an optional "__metadata__" object of strings. A Hugging Face
 * directory holds one model.safetensors, or shards listed by
 * model.safetensors.index.json ({"weight_map": {tensor: shard file}}),
 * and usually config.json. Every shard is mmapped once; tensors point into
 * the mappings. */
#define _GNU_SOURCE
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/name_index.h"
#include "../common/st_common.h"

#define ST_MAX_HEADER (100u << 20) /* 100 MB: far above any real header */

typedef struct {
    const uint8_t *base;
    size_t size;
    int mapped;
    char *file; /* file name within the directory (for weight_map checks) */
} shard;

struct st_safetensors {
    shard *shards;
    size_t n_shards;
    st_tensor *tensors;  /* names are owned copies */
    uint32_t *shard_of;  /* (n_tensors,) index into shards */
    size_t n_tensors, cap_tensors;
    st_name_index index; /* tensor names */
    st_json *config;
    char *dir;
};

/* ---- name index ----------------------------------------------------------------------- */
static const char *tensor_name_at(const void *ctx, uint32_t i, size_t *len)
{
    const char *name = ((const st_safetensors *)ctx)->tensors[i].name;
    *len = strlen(name);
    return name;
}

static void index_build(st_safetensors *st)
{
    st_name_index_free(&st->index);
    st_name_index_init(&st->index, st->n_tensors, tensor_name_at, st);
    for (size_t i = 0; i < st->n_tensors; i++)
        st_name_index_add(&st->index, (uint32_t)i);
}

static int64_t find_index(const st_safetensors *st, const char *name)
{
    return name ? st_name_index_find(&st->index, name, strlen(name)) : -1;
}

/* ---- one file's header ------------------------------------------------------------------ */
static int bad(const char *file, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(const char *file, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_err(code, "%s: %s", file, msg);
}

static int dtype_of(const char *name, st_dtype *t, size_t *size)
{
    static const struct {
        const char *name;
        st_dtype t;
        size_t size;
    } known[] = {{"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}};
    for (size_t i = 0; i < ST_ARRAY_LEN(known); i++)
        if (strcmp(name, known[i].name) == 0) {
            *t = known[i].t;
            *size = known[i].size;
            return 0;
        }
    return -1;
}

/* A JSON number that is an integer in [0, 2^53] (exact in a double). */
static int as_size(const st_json *j, uint64_t *out)
{
    int64_t v;
    if (!st_json_as_int(j, 0, (int64_t)1 << 53, &v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

typedef struct {
    uint64_t begin, end;
    size_t tensor;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Parse one tensor entry `name: {...}` of shard `si`, appending it. */
static int parse_entry(st_safetensors *st, size_t si, const char *file, const char *name, size_t name_len,
                       const st_json *v, const uint8_t *data, size_t data_size, span *sp)
{
    if (name_len == 0 || strlen(name) != name_len)
        return bad(file, ST_EINVAL, "tensor name is empty or contains a NUL byte");
    if (v->type != ST_JSON_OBJECT)
        return bad(file, ST_EINVAL, "tensor %s: entry is not an object", name);
    const st_json *dt = st_json_get(v, "dtype"), *shape = st_json_get(v, "shape"), *offs = st_json_get(v, "data_offsets");
    if (!dt || dt->type != ST_JSON_STRING)
        return bad(file, ST_EINVAL, "tensor %s: missing or non-string \"dtype\"", name);
    if (!shape || shape->type != ST_JSON_ARRAY)
        return bad(file, ST_EINVAL, "tensor %s: missing or non-array \"shape\"", name);
    if (!offs || offs->type != ST_JSON_ARRAY || offs->u.arr.n != 2)
        return bad(file, ST_EINVAL, "tensor %s: \"data_offsets\" must be [begin, end]", name);
    st_dtype t;
    size_t esize;
    if (strlen(dt->u.str.s) != dt->u.str.len || dtype_of(dt->u.str.s, &t, &esize))
        return bad(file, ST_ENOTSUP, "tensor %s: dtype %.32s is not supported (F32, F16, BF16)", name, dt->u.str.s);
    size_t nd = shape->u.arr.n;
    if (nd > ST_MAX_DIMS)
        return bad(file, ST_ENOTSUP, "tensor %s: %zu dimensions (at most %d)", name, nd, ST_MAX_DIMS);
    int64_t ne[ST_MAX_DIMS] = {1, 1, 1, 1};
    size_t nbytes = esize;
    for (size_t d = 0; d < nd; d++) {
        uint64_t dim;
        if (!as_size(&shape->u.arr.items[d], &dim))
            return bad(file, ST_EINVAL, "tensor %s: shape[%zu] is not a non-negative integer", name, d);
        ne[nd - 1 - d] = (int64_t)dim; /* HF (out, in) -> ne[0] = in, ne[1] = out */
        if (st_mul_ok(nbytes, (size_t)dim, &nbytes))
            return bad(file, ST_EINVAL, "tensor %s: byte size overflows", name);
    }
    uint64_t begin, end;
    if (!as_size(&offs->u.arr.items[0], &begin) || !as_size(&offs->u.arr.items[1], &end))
        return bad(file, ST_EINVAL, "tensor %s: data_offsets are not non-negative integers", name);
    if (end < begin || end > data_size)
        return bad(file, ST_ERANGE, "tensor %s: data_offsets [%llu, %llu) outside the %zu data bytes", name,
                   (unsigned long long)begin, (unsigned long long)end, data_size);
    if (end - begin != nbytes)
        return bad(file, ST_EINVAL, "tensor %s: data_offsets span %llu bytes but shape and dtype %s need %zu", name,
                   (unsigned long long)(end - begin), dt->u.str.s, nbytes);
    /* kernels read elements through typed pointers (and the compiler may
     * vectorize those loops assuming natural alignment): a tensor must start
     * on a multiple of its element size. Writers pad the header with spaces
     * to 8 bytes, so the files they write pass. */
    if (nbytes && (uintptr_t)(data + begin) % esize)
        return bad(file, ST_EINVAL,
                   "tensor %s: data (offset %llu after the header) is not aligned to its %zu-byte %s elements; "
                   "the header length must keep tensors aligned (writers pad it to 8 bytes)",
                   name, (unsigned long long)begin, esize, dt->u.str.s);
    if (st->n_tensors >= UINT32_MAX - 1)
        return bad(file, ST_EINVAL, "too many tensors");
    if (st->n_tensors == st->cap_tensors) {
        st->cap_tensors = st->cap_tensors ? st->cap_tensors * 2 : 64;
        st->tensors = st_xrealloc(st->tensors, st->cap_tensors * sizeof *st->tensors);
        st->shard_of = st_xrealloc(st->shard_of, st->cap_tensors * sizeof *st->shard_of);
    }
    st_tensor *ten = &st->tensors[st->n_tensors];
    memset(ten, 0, sizeof *ten);
    ten->name = st_xstrdup(name);
    ten->type = t;
    ten->n_dims = nd ? (int)nd : 1;
    memcpy(ten->ne, ne, sizeof ne);
    ten->data = data + begin;
    ten->nbytes = nbytes;
    st->shard_of[st->n_tensors] = (uint32_t)si;
    sp->begin = begin;
    sp->end = end;
    sp->tensor = st->n_tensors;
    st->n_tensors++;
    return ST_OK;
}

/* Validate shard si's header and append its tensors. */
static int parse_shard(st_safetensors *st, size_t si, const char *file)
{
    const shard *sh = &st->shards[si];
    if (sh->size < 8)
        return bad(file, ST_EINVAL, "%zu bytes is too small for a safetensors file", sh->size);
    uint64_t n;
    memcpy(&n, sh->base, 8);
    if (n > sh->size - 8 || n > ST_MAX_HEADER)
        return bad(file, ST_EINVAL, "header length %llu exceeds the file (%zu bytes) or the %u byte limit",
                   (unsigned long long)n, sh->size, ST_MAX_HEADER);
    st_json *h = NULL;
    int rc = st_json_parse((const char *)sh->base + 8, (size_t)n, &h);
    if (rc)
        return bad(file, rc, "header: %s", st_errmsg());
    const uint8_t *data = sh->base + 8 + n;
    size_t data_size = sh->size - 8 - (size_t)n;
    span *spans = NULL;
    size_t n_spans = 0;
    if (h->type != ST_JSON_OBJECT) {
        rc = bad(file, ST_EINVAL, "header is not a JSON object");
        goto out;
    }
    spans = st_xmalloc((h->u.obj.n ? h->u.obj.n : 1) * sizeof *spans);
    for (size_t i = 0; i < h->u.obj.n; i++) {
        const char *key = h->u.obj.keys[i];
        const st_json *v = &h->u.obj.vals[i];
        if (strcmp(key, "__metadata__") == 0) {
            int ok = v->type == ST_JSON_OBJECT;
            for (size_t m = 0; ok && m < v->u.obj.n; m++)
                ok = v->u.obj.vals[m].type == ST_JSON_STRING;
            if (!ok) {
                rc = bad(file, ST_EINVAL, "__metadata__ must be an object of strings");
                goto out;
            }
            continue;
        }
        if ((rc = parse_entry(st, si, file, key, h->u.obj.key_lens[i], v, data, data_size, &spans[n_spans])))
            goto out;
        n_spans++;
    }
    /* tensors must not share bytes (empty tensors share nothing) */
    qsort(spans, n_spans, sizeof *spans, cmp_span);
    uint64_t prev_end = 0;
    size_t prev = 0;
    for (size_t i = 0; i < n_spans; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (spans[i].begin < prev_end) {
            rc = bad(file, ST_EINVAL, "tensors %s and %s overlap", st->tensors[prev].name,
                     st->tensors[spans[i].tensor].name);
            goto out;
        }
        prev_end = spans[i].end;
        prev = spans[i].tensor;
    }
out:
    free(spans);
    st_json_free(h);
    return rc;
}

/* ---- open / close ----------------------------------------------------------------------------- */
void st_safetensors_close(st_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++)
        free((void *)st->tensors[i].name);
    free(st->tensors);
    free(st->shard_of);
    st_name_index_free(&st->index);
    for (size_t i = 0; i < st->n_shards; i++) {
        if (st->shards[i].mapped)
            st_unmap_file(st->shards[i].base, st->shards[i].size);
        free(st->shards[i].file);
    }
    free(st->shards);
    st_json_free(st->config);
    free(st->dir);
    free(st);
}

/* Index all tensors, rejecting a name seen twice (within or across shards). */
static int finish(st_safetensors *st)
{
    index_build(st);
    for (size_t i = 0; i < st->n_tensors; i++)
        if (find_index(st, st->tensors[i].name) != (int64_t)i)
            return st_err(ST_EINVAL, "%s: duplicate tensor name %s", st->shards[st->shard_of[i]].file,
                          st->tensors[i].name);
    return ST_OK;
}

static shard *add_shard(st_safetensors *st, const char *file)
{
    st->shards = st_xrealloc(st->shards, (st->n_shards + 1) * sizeof *st->shards);
    shard *sh = &st->shards[st->n_shards++];
    memset(sh, 0, sizeof *sh);
    sh->file = st_xstrdup(file);
    return sh;
}

int st_safetensors_open_mem(const void *buf, size_t len, st_safetensors **out)
{
    if (!buf && len)
        return st_err(ST_EINVAL, "safetensors: NULL buffer");
    st_safetensors *st = st_xcalloc(1, sizeof *st);
    st->dir = st_xstrdup("");
    shard *sh = add_shard(st, "<memory>");
    static const uint8_t empty[1];
    sh->base = buf ? buf : empty;
    sh->size = len;
    int rc = parse_shard(st, 0, "<memory>");
    if (rc == ST_OK)
        rc = finish(st);
    if (rc) {
        st_safetensors_close(st);
        return rc;
    }
    *out = st;
    return ST_OK;
}

static int map_file(const char *path, shard *sh)
{
    const void *p;
    size_t size;
    int rc = st_map_file(path, 8, "safetensors", &p, &size);
    if (rc)
        return rc;
    sh->base = p;
    sh->size = size;
    sh->mapped = 1;
    return ST_OK;
}

/* Map file `file` of st->dir as a new shard and parse it. */
static int open_shard(st_safetensors *st, const char *file)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", st->dir, file) >= sizeof path)
        return st_err(ST_EINVAL, "%s/%s: path too long", st->dir, file);
    shard *sh = add_shard(st, file);
    int rc = map_file(path, sh);
    if (rc)
        return rc;
    return parse_shard(st, st->n_shards - 1, path);
}

static int load_json(const char *path, const char *what, st_json **out)
{
    char *text;
    size_t len;
    int rc = st_read_file(path, &text, &len);
    if (rc)
        return rc;
    rc = st_json_parse(text, len, out);
    free(text);
    if (rc)
        return st_err(rc, "%s: %s", path, st_errmsg());
    if ((*out)->type != ST_JSON_OBJECT) {
        st_json_free(*out);
        *out = NULL;
        return st_err(ST_EINVAL, "%s: %s is not a JSON object", path, what);
    }
    return ST_OK;
}

/* model.safetensors.index.json: open each shard named in weight_map once,
 * then check that every listed tensor is in the shard it is listed in. */
static int open_sharded(st_safetensors *st, const char *index_path)
{
    st_json *ix = NULL;
    int rc = load_json(index_path, "the index", &ix);
    if (rc)
        return rc;
    const st_json *wm = st_json_get(ix, "weight_map");
    if (!wm || wm->type != ST_JSON_OBJECT || wm->u.obj.n == 0) {
        rc = st_err(ST_EINVAL, "%s: missing or empty \"weight_map\" object", index_path);
        goto out;
    }
    for (size_t i = 0; i < wm->u.obj.n; i++) {
        const st_json *f = &wm->u.obj.vals[i];
        if (f->type != ST_JSON_STRING || f->u.str.len == 0 || strlen(f->u.str.s) != f->u.str.len ||
            strchr(f->u.str.s, '/') || strstr(f->u.str.s, "..")) {
            rc = st_err(ST_EINVAL, "%s: tensor %s: shard file name must be a plain file name in the directory",
                        index_path, wm->u.obj.keys[i]);
            goto out;
        }
        size_t s = 0;
        while (s < st->n_shards && strcmp(st->shards[s].file, f->u.str.s) != 0)
            s++;
        if (s == st->n_shards && (rc = open_shard(st, f->u.str.s)))
            goto out;
    }
    if ((rc = finish(st)))
        goto out;
    for (size_t i = 0; i < wm->u.obj.n; i++) {
        const char *name = wm->u.obj.keys[i], *file = wm->u.obj.vals[i].u.str.s;
        int64_t t = find_index(st, name);
        if (t < 0 || strcmp(st->shards[st->shard_of[t]].file, file) != 0) {
            rc = st_err(ST_ENOENT, "%s: tensor %s is not in its shard %s", index_path, name, file);
            goto out;
        }
    }
out:
    st_json_free(ix);
    return rc;
}

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int st_safetensors_open(const char *path, st_safetensors **out)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return st_err(errno == ENOENT ? ST_ENOENT : ST_EIO, "%s: %s", path, strerror(errno));
    st_safetensors *st = st_xcalloc(1, sizeof *st);
    char p[4096];
    int rc;
    if (S_ISDIR(sb.st_mode)) {
        st->dir = st_xstrdup(path);
        size_t dl = strlen(st->dir);
        while (dl > 1 && st->dir[dl - 1] == '/') /* "m/" -> "m" */
            st->dir[--dl] = 0;
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", st->dir);
        if (is_file(p)) {
            rc = open_sharded(st, p);
        } else {
            snprintf(p, sizeof p, "%s/model.safetensors", st->dir);
            if (is_file(p))
                rc = open_shard(st, "model.safetensors");
            else
                rc = st_err(ST_ENOENT, "%s: no model.safetensors or model.safetensors.index.json", st->dir);
            if (rc == ST_OK)
                rc = finish(st);
        }
        snprintf(p, sizeof p, "%s/config.json", st->dir);
        if (rc == ST_OK && is_file(p))
            rc = load_json(p, "config", &st->config);
    } else {
        /* a bare file: its directory is everything before the last '/' */
        const char *slash = strrchr(path, '/');
        const char *file = slash ? slash + 1 : path;
        if (!slash)
            st->dir = st_xstrdup(".");
        else if (slash == path)
            st->dir = st_xstrdup("/");
        else
            st->dir = strndup(path, (size_t)(slash - path));
        if (!st->dir)
            st->dir = st_xstrdup(".");
        shard *sh = add_shard(st, file);
        rc = map_file(path, sh);
        if (rc == ST_OK)
            rc = parse_shard(st, 0, path);
        if (rc == ST_OK)
            rc = finish(st);
    }
    if (rc) {
        st_safetensors_close(st);
        return rc;
    }
    *out = st;
    return ST_OK;
}

/* ---- access ----------------------------------------------------------------------------------- */
size_t st_safetensors_n_tensors(const st_safetensors *st) { return st->n_tensors; }

const st_tensor *st_safetensors_tensor(const st_safetensors *st, size_t i)
{
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const st_tensor *st_safetensors_find(const st_safetensors *st, const char *name)
{
    int64_t i = find_index(st, name);
    return i < 0 ? NULL : &st->tensors[i];
}

const st_json *st_safetensors_config(const st_safetensors *st) { return st->config; }

const char *st_safetensors_dir(const st_safetensors *st) { return st->dir; }
