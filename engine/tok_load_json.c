/* Tokenizer from a Hugging Face tokenizer.json (+ tokenizer_config.json).
 *
 * Supported: model BPE; byte-level (ByteLevel pre-tokenizer, alone or after
 * a Split whose regex is one of the known families, or after
 * Digits(individual_digits)); SentencePiece style (normalizer Prepend "▁" +
 * Replace " " -> "▁", or a Metaspace pre-tokenizer without splitting, with
 * byte_fallback); the NFC normalizer (tok_nfc.c). Anything else is an
 * ST_ENOTSUP error naming the part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/json.h"
#include "../common/st_common.h"
#include "tok_internal.h"

#define MAX_VOCAB (1 << 24)

static int type_is(const st_json *j, const char *type)
{
    const char *t = st_json_get_str(j, "type", NULL);
    return t && strcmp(t, type) == 0;
}

static int str_eq(const st_json *j, const char *s)
{
    return j && j->type == ST_JSON_STRING && j->u.str.len == strlen(s) && memcmp(j->u.str.s, s, j->u.str.len) == 0;
}

/* What the normalizer and pre-tokenizer describe. */
typedef struct {
    int byte_level, byte_level_regex;
    int split; /* st_pretok_kind of a Split regex, 0 = none */
    int digits;
    int prepend, replace_space, metaspace, prepend_first;
    int nfc;
} shape;

static int walk_normalizer(const st_json *n, shape *s)
{
    if (!n || n->type == ST_JSON_NULL)
        return ST_OK;
    if (type_is(n, "Sequence")) {
        const st_json *list = st_json_get(n, "normalizers");
        if (!list || list->type != ST_JSON_ARRAY)
            return st_err(ST_EINVAL, "tokenizer.json: normalizer Sequence without a normalizers array");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            int rc = walk_normalizer(&list->u.arr.items[i], s);
            if (rc)
                return rc;
        }
        return ST_OK;
    }
    if (type_is(n, "NFC")) {
        s->nfc = 1;
        return ST_OK;
    }
    if (type_is(n, "Prepend") && str_eq(st_json_get(n, "prepend"), "\xE2\x96\x81")) {
        s->prepend = 1;
        return ST_OK;
    }
    if (type_is(n, "Replace")) {
        const st_json *pat = st_json_get(n, "pattern");
        if (str_eq(st_json_get(pat, "String"), " ") && str_eq(st_json_get(n, "content"), "\xE2\x96\x81")) {
            s->replace_space = 1;
            return ST_OK;
        }
    }
    return st_err(ST_ENOTSUP, "tokenizer.json: normalizer %s is not supported",
                  st_json_get_str(n, "type", "(no type)"));
}

static int walk_pretok(const st_json *p, shape *s)
{
    if (!p || p->type == ST_JSON_NULL)
        return ST_OK;
    if (type_is(p, "Sequence")) {
        const st_json *list = st_json_get(p, "pretokenizers");
        if (!list || list->type != ST_JSON_ARRAY)
            return st_err(ST_EINVAL, "tokenizer.json: pre_tokenizer Sequence without a pretokenizers array");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            int rc = walk_pretok(&list->u.arr.items[i], s);
            if (rc)
                return rc;
        }
        return ST_OK;
    }
    if (type_is(p, "ByteLevel")) {
        if (st_json_get_bool(p, "add_prefix_space", 0))
            return st_err(ST_ENOTSUP, "tokenizer.json: ByteLevel add_prefix_space is not supported");
        s->byte_level = 1;
        s->byte_level_regex = st_json_get_bool(p, "use_regex", 1);
        return ST_OK;
    }
    if (type_is(p, "Split")) {
        const st_json *re = st_json_get(st_json_get(p, "pattern"), "Regex");
        const char *beh = st_json_get_str(p, "behavior", "");
        if (!re || re->type != ST_JSON_STRING || strcmp(beh, "Isolated") || st_json_get_bool(p, "invert", 0))
            return st_err(ST_ENOTSUP, "tokenizer.json: only Split with an isolated Regex pattern is supported");
        int k = st_pretok_from_regex(re->u.str.s, re->u.str.len);
        if (k < 0)
            return st_err(ST_ENOTSUP, "tokenizer.json: pre-tokenizer regex not recognised: %.120s", re->u.str.s);
        if (s->split)
            return st_err(ST_ENOTSUP, "tokenizer.json: more than one Split pre-tokenizer");
        s->split = k;
        return ST_OK;
    }
    if (type_is(p, "Digits")) {
        if (!st_json_get_bool(p, "individual_digits", 0))
            return st_err(ST_ENOTSUP, "tokenizer.json: Digits without individual_digits is not supported");
        s->digits = 1;
        return ST_OK;
    }
    if (type_is(p, "Metaspace")) {
        if (!str_eq(st_json_get(p, "replacement"), "\xE2\x96\x81") || st_json_get_bool(p, "split", 1))
            return st_err(ST_ENOTSUP, "tokenizer.json: Metaspace other than \"▁\" without split is not supported");
        const char *scheme = st_json_get_str(p, "prepend_scheme", "always");
        s->metaspace = 1;
        s->replace_space = 1;
        s->prepend = strcmp(scheme, "never") != 0 && st_json_get_bool(p, "add_prefix_space", 1);
        s->prepend_first = strcmp(scheme, "first") == 0;
        return ST_OK;
    }
    return st_err(ST_ENOTSUP, "tokenizer.json: pre_tokenizer %s is not supported", st_json_get_str(p, "type", "(no type)"));
}

/* "<0x0A>" -> 1 */
static int is_byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && memcmp(s, "<0x", 3) == 0 && strchr(hex, s[3]) && strchr(hex, s[4]) && s[5] == '>' && s[3] && s[4];
}

/* An AddedToken in tokenizer_config.json: "text" or {"content": "text"}. */
static const st_json *token_text(const st_json *j)
{
    if (j && j->type == ST_JSON_OBJECT)
        j = st_json_get(j, "content");
    return j && j->type == ST_JSON_STRING ? j : NULL;
}

static int32_t find_json_token(const st_tokenizer *t, const st_json *j)
{
    const st_json *s = token_text(j);
    return s ? tok_find(t, s->u.str.s, s->u.str.len) : -1;
}

static void apply_config(st_tokenizer *t, const st_json *cfg)
{
    if (!cfg || cfg->type != ST_JSON_OBJECT)
        return;
    int32_t id;
    if ((id = find_json_token(t, st_json_get(cfg, "bos_token"))) >= 0)
        t->bos = id;
    if ((id = find_json_token(t, st_json_get(cfg, "eos_token"))) >= 0)
        t->eos = id;
    if ((id = find_json_token(t, st_json_get(cfg, "unk_token"))) >= 0)
        t->unk = id;
    const st_json *ab = st_json_get(cfg, "add_bos_token");
    if (ab && ab->type == ST_JSON_BOOL)
        t->add_bos = ab->u.boolean;
    const st_json *ct = st_json_get(cfg, "chat_template");
    if (ct && ct->type == ST_JSON_ARRAY) {
        /* [{name, template}, ...]: "default", else the first */
        const st_json *pick = NULL;
        for (size_t i = 0; i < ct->u.arr.n; i++) {
            const st_json *e = &ct->u.arr.items[i];
            if (!st_json_get_str(e, "template", NULL))
                continue;
            if (!pick || str_eq(st_json_get(e, "name"), "default"))
                pick = e;
            if (str_eq(st_json_get(e, "name"), "default"))
                break;
        }
        ct = pick ? st_json_get(pick, "template") : NULL;
    }
    if (ct && ct->type == ST_JSON_STRING) {
        free(t->chat_template);
        t->chat_template = st_xstrdup(ct->u.str.s);
    }
}

/* The BOS a TemplateProcessing post-processor puts first, or -1. */
static int32_t post_processor_bos(const st_tokenizer *t, const st_json *pp)
{
    if (!pp || pp->type != ST_JSON_OBJECT)
        return -1;
    if (type_is(pp, "Sequence")) {
        const st_json *list = st_json_get(pp, "processors");
        for (size_t i = 0; list && list->type == ST_JSON_ARRAY && i < list->u.arr.n; i++) {
            int32_t id = post_processor_bos(t, &list->u.arr.items[i]);
            if (id >= 0)
                return id;
        }
        return -1;
    }
    const st_json *single = st_json_get(pp, "single");
    if (!type_is(pp, "TemplateProcessing") || !single || single->type != ST_JSON_ARRAY || !single->u.arr.n)
        return -1;
    return find_json_token(t, st_json_get(st_json_get(&single->u.arr.items[0], "SpecialToken"), "id"));
}

static int load_tree(const st_json *root, const st_json *cfg, st_tokenizer **out)
{
    const st_json *model = st_json_get(root, "model");
    if (!model || model->type != ST_JSON_OBJECT)
        return st_err(ST_EINVAL, "tokenizer.json: no model object");
    const char *mtype = st_json_get_str(model, "type", "BPE"); /* older files omit it */
    if (strcmp(mtype, "BPE"))
        return st_err(ST_ENOTSUP, "tokenizer.json: model type %.40s is not supported (BPE only)", mtype);
    const st_json *vocab = st_json_get(model, "vocab"), *merges = st_json_get(model, "merges");
    const st_json *added = st_json_get(root, "added_tokens");
    if (!vocab || vocab->type != ST_JSON_OBJECT)
        return st_err(ST_EINVAL, "tokenizer.json: model.vocab is not an object");
    if (merges && merges->type != ST_JSON_ARRAY)
        return st_err(ST_EINVAL, "tokenizer.json: model.merges is not an array");
    if (added && added->type != ST_JSON_ARRAY)
        added = NULL;

    shape sh = {0};
    int rc;
    if ((rc = walk_normalizer(st_json_get(root, "normalizer"), &sh)) || (rc = walk_pretok(st_json_get(root, "pre_tokenizer"), &sh)))
        return rc;
    st_tok_kind kind = ST_TOK_BPE;
    int pre = ST_PRE_NONE;
    if (sh.byte_level) {
        if (sh.prepend || sh.replace_space)
            return st_err(ST_ENOTSUP, "tokenizer.json: byte-level BPE with a SentencePiece normalizer");
        if (sh.split)
            pre = sh.split;
        else if (sh.byte_level_regex)
            pre = sh.digits ? ST_PRE_STARCODER : ST_PRE_GPT2;
        else if (sh.digits)
            return st_err(ST_ENOTSUP, "tokenizer.json: Digits without the ByteLevel regex");
    } else if (sh.prepend || sh.replace_space || st_json_get_bool(model, "byte_fallback", 0)) {
        if (sh.split || sh.digits)
            return st_err(ST_ENOTSUP, "tokenizer.json: SentencePiece-style BPE with a regex pre-tokenizer");
        kind = ST_TOK_SPM;
    } else {
        return st_err(ST_ENOTSUP, "tokenizer.json: BPE that is neither byte-level nor SentencePiece-style");
    }

    /* vocabulary size: the largest id of the vocab and the added tokens */
    int64_t max_id = -1, id;
    for (size_t i = 0; i < vocab->u.obj.n; i++) {
        if (!st_json_as_int(&vocab->u.obj.vals[i], 0, MAX_VOCAB - 1, &id))
            return st_err(ST_EINVAL, "tokenizer.json: vocab entry %zu has no valid id", i);
        max_id = ST_MAX(max_id, id);
    }
    for (size_t i = 0; added && i < added->u.arr.n; i++) {
        const st_json *a = &added->u.arr.items[i];
        if (!st_json_as_int(st_json_get(a, "id"), 0, MAX_VOCAB - 1, &id) || !st_json_get_str(a, "content", NULL))
            return st_err(ST_EINVAL, "tokenizer.json: added_tokens[%zu] needs an id and a content", i);
        max_id = ST_MAX(max_id, id);
    }
    if (max_id < 0)
        return st_err(ST_EINVAL, "tokenizer.json: empty vocabulary");
    st_tokenizer *t = tok_new(kind, (int)max_id + 1);
    t->pre = (st_pretok_kind)pre;
    for (int32_t i = 0; i <= max_id; i++)
        t->tok[i].type = TOK_UNUSED; /* holes in the id space */
    size_t total = 0;
    for (size_t i = 0; i < vocab->u.obj.n; i++) {
        st_json_as_int(&vocab->u.obj.vals[i], 0, MAX_VOCAB - 1, &id);
        const char *s = vocab->u.obj.keys[i];
        size_t n = vocab->u.obj.key_lens[i];
        if ((total += n + 1) > (1u << 30))
            goto too_big;
        tok_set(t, (int32_t)id, s, n, 0, kind == ST_TOK_SPM && is_byte_token(s, n) ? TOK_BYTE : TOK_NORMAL);
    }
    for (size_t i = 0; added && i < added->u.arr.n; i++) {
        const st_json *a = &added->u.arr.items[i], *c = st_json_get(a, "content");
        st_json_as_int(st_json_get(a, "id"), 0, MAX_VOCAB - 1, &id);
        if ((total += c->u.str.len + 1) > (1u << 30))
            goto too_big;
        tok_set(t, (int32_t)id, c->u.str.s, c->u.str.len, 0, st_json_get_bool(a, "special", 0) ? TOK_CONTROL : TOK_USER);
        t->tok[id].lstrip = (uint8_t)st_json_get_bool(a, "lstrip", 0);
        t->tok[id].rstrip = (uint8_t)st_json_get_bool(a, "rstrip", 0);
    }
    tok_index(t);

    size_t nm = merges ? merges->u.arr.n : 0;
    tok_pairmap_init(&t->merges, nm);
    for (size_t i = 0; i < nm && i < INT32_MAX; i++) {
        const st_json *m = &merges->u.arr.items[i];
        if (m->type == ST_JSON_STRING) { /* "left right" */
            const char *sp = m->u.str.len > 1 ? memchr(m->u.str.s + 1, ' ', m->u.str.len - 1) : NULL;
            if (sp)
                tok_add_merge(t, m->u.str.s, (size_t)(sp - m->u.str.s), sp + 1, m->u.str.len - (size_t)(sp - m->u.str.s) - 1,
                              (int32_t)i);
        } else if (m->type == ST_JSON_ARRAY && m->u.arr.n == 2 && m->u.arr.items[0].type == ST_JSON_STRING &&
                   m->u.arr.items[1].type == ST_JSON_STRING) { /* ["left", "right"] */
            const st_json *a = &m->u.arr.items[0], *b = &m->u.arr.items[1];
            tok_add_merge(t, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len, (int32_t)i);
        }
    }
    t->ignore_merges = st_json_get_bool(model, "ignore_merges", 0);
    t->nfc = sh.nfc;
    if (kind == ST_TOK_SPM) {
        t->add_space_prefix = sh.prepend;
        t->prefix_first_only = sh.prepend_first;
        t->escape_spaces = sh.replace_space;
    }
    const st_json *unk = st_json_get(model, "unk_token");
    if (unk && unk->type == ST_JSON_STRING)
        t->unk = tok_find(t, unk->u.str.s, unk->u.str.len);
    t->bos = post_processor_bos(t, st_json_get(root, "post_processor"));
    t->add_bos = t->bos >= 0 || (kind == ST_TOK_SPM);
    apply_config(t, cfg);
    if (t->bos < 0 && kind == ST_TOK_SPM)
        t->bos = tok_find(t, "<s>", 3);
    if (t->bos < 0 && pre == ST_PRE_LLAMA3)
        t->bos = tok_find(t, "<|begin_of_text|>", 17);
    if (pre == ST_PRE_LLAMA3 && !st_json_get(cfg, "add_bos_token"))
        t->add_bos = 1;
    if ((rc = tok_finish(t))) {
        st_tok_free(t);
        return rc;
    }
    *out = t;
    return ST_OK;
too_big:
    st_tok_free(t);
    return st_err(ST_ERANGE, "tokenizer.json: vocabulary text over 1 GiB");
}

static int load_mem(const char *buf, size_t len, const st_json *cfg, st_tokenizer **out)
{
    st_json *root;
    int rc = st_json_parse(buf, len, &root);
    if (rc)
        return rc;
    rc = load_tree(root, cfg, out);
    st_json_free(root);
    return rc;
}

int st_tok_load_json_mem(const char *buf, size_t len, st_tokenizer **out)
{
    if (!buf || !out)
        return st_err(ST_EINVAL, "st_tok_load_json_mem: bad arguments");
    return load_mem(buf, len, NULL, out);
}

int st_tok_load_json(const char *path, st_tokenizer **out)
{
    char *buf, *cbuf;
    size_t len, clen;
    int rc = st_read_file(path, &buf, &len);
    if (rc)
        return rc;
    /* tokenizer_config.json beside it: bos/eos, add_bos, chat template */
    st_json *cfg = NULL;
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *cpath = st_xmalloc(dir + 32);
    memcpy(cpath, path, dir);
    strcpy(cpath + dir, "tokenizer_config.json");
    if (st_read_file(cpath, &cbuf, &clen) == ST_OK) {
        if (st_json_parse(cbuf, clen, &cfg))
            ST_WARN("tokenizer: ignoring %s: %s", cpath, st_errmsg());
        free(cbuf);
    }
    free(cpath);
    rc = load_mem(buf, len, cfg, out);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", st_errmsg());
        st_err(rc, "%s: %s", path, msg);
    }
    st_json_free(cfg);
    free(buf);
    return rc;
}
