/* Detokenization: token pieces -> bytes, with UTF-8 repair. Both the
 * streaming st_detok_* and st_tok_decode run the same byte state machine,
 * so that feeding ids one at a time gives exactly the bytes of a whole
 * decode: a valid multi-byte character is held until complete, and each
 * maximal invalid subsequence becomes one U+FFFD (as from_utf8_lossy). */
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "tok_internal.h"

static const char REPL[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Total length of a sequence starting with lead byte c, or 0 if c cannot start one. */
static int lead_len(unsigned c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* May byte c follow the held prefix p[0..n)? */
static int cont_ok(const unsigned char *p, int n, unsigned c)
{
    if ((c & 0xC0) != 0x80)
        return 0;
    if (n == 1) {
        switch (p[0]) {
        case 0xE0: return c >= 0xA0;
        case 0xED: return c <= 0x9F;
        case 0xF0: return c >= 0x90;
        case 0xF4: return c <= 0x8F;
        default: return 1;
        }
    }
    return 1;
}

/* Push bytes s[0..n) through the state machine into out (room checked by caller). */
static int push_bytes(st_detok *d, const unsigned char *s, int n, char *out)
{
    int w = 0;
    for (int i = 0; i < n; i++) {
        unsigned c = s[i];
        if (d->n_pend) {
            if (cont_ok(d->pend, d->n_pend, c)) {
                d->pend[d->n_pend++] = (unsigned char)c;
                if (d->n_pend == lead_len(d->pend[0])) {
                    memcpy(out + w, d->pend, (size_t)d->n_pend);
                    w += d->n_pend;
                    d->n_pend = 0;
                }
                continue;
            }
            memcpy(out + w, REPL, 3); /* the held prefix was a maximal invalid subpart */
            w += 3;
            d->n_pend = 0;
        }
        int l = lead_len(c);
        if (l == 1) {
            out[w++] = (char)c;
        } else if (l == 0) {
            memcpy(out + w, REPL, 3);
            w += 3;
        } else {
            d->pend[0] = (unsigned char)c;
            d->n_pend = 1;
        }
    }
    return w;
}

void st_detok_init(st_detok *d, const st_tokenizer *t, int skip_special)
{
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->skip_special = skip_special;
}

int st_detok_feed(st_detok *d, int32_t id, char *out, int cap)
{
    const st_tokenizer *t = d->tok;
    if (id < 0 || id >= t->n_vocab)
        return st_err(ST_EINVAL, "detokenizer: token id %d out of range [0, %d)", (int)id, t->n_vocab);
    const tok_entry *e = &t->tok[id];
    if (d->skip_special && (e->type == TOK_CONTROL || e->type == TOK_UNKNOWN)) {
        d->n_seen++;
        return 0;
    }
    const unsigned char *s = (const unsigned char *)tok_raw(t, id);
    int n = (int)e->raw_len;
    /* worst case: every byte (and the held prefix) becomes U+FFFD */
    if ((long)n * 3 + 3 + d->n_pend > (long)cap)
        return st_err(ST_ERANGE, "detokenizer: token %d needs up to %d bytes, buffer has %d", (int)id,
                      n * 3 + 3 + d->n_pend, cap);
    if (!d->any_out && n > 0) {
        /* SPM: the space the "▁" prefix put before the first word is not text */
        if (t->kind == ST_TOK_SPM && t->add_space_prefix && s[0] == ' ')
            s++, n--;
        d->any_out = 1;
    }
    d->n_seen++;
    return push_bytes(d, s, n, out);
}

int st_detok_flush(st_detok *d, char *out, int cap)
{
    if (!d->n_pend)
        return 0;
    if (cap < 3)
        return st_err(ST_ERANGE, "detokenizer: flush needs 3 bytes");
    memcpy(out, REPL, 3);
    d->n_pend = 0;
    return 3;
}

int st_tok_decode(const st_tokenizer *t, const int32_t *ids, int n, int skip_special, char *out, int cap)
{
    if (!t || n < 0 || (!ids && n) || cap < 0 || (!out && cap))
        return st_err(ST_EINVAL, "st_tok_decode: bad arguments");
    st_detok d;
    st_detok_init(&d, t, skip_special);
    size_t tmp_cap = 64;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab && t->tok[ids[i]].raw_len * 3 + 16 > tmp_cap)
            tmp_cap = t->tok[ids[i]].raw_len * 3 + 16;
    char *tmp = st_xmalloc(tmp_cap);
    long total = 0;
    for (int i = 0; i <= n; i++) {
        int w = i < n ? st_detok_feed(&d, ids[i], tmp, (int)tmp_cap) : st_detok_flush(&d, tmp, (int)tmp_cap);
        if (w < 0) {
            free(tmp);
            return w;
        }
        if (total < cap)
            memcpy(out + total, tmp, (size_t)ST_MIN((long)w, cap - total));
        total += w;
        if (total > INT32_MAX - 1024) {
            free(tmp);
            return st_err(ST_ERANGE, "st_tok_decode: output too long");
        }
    }
    free(tmp);
    return (int)total;
}
