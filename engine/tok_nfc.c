/* NFC: decompose fully, order combining marks by class, recompose (the
 * algorithm of Unicode UAX #15, with Hangul syllables done arithmetically). */
#include "tok_nfc.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "tok_unicode.h"

/* An invalid UTF-8 byte travels as RAW | byte: class 0, never composes. */
#define RAW 0x80000000u

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
enum { NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(uint32_t cp)
{
    if (cp < 0x300 || cp & RAW)
        return 0;
    int lo = 0, hi = st_nfc_n_ccc - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < st_nfc_ccc_ranges[mid].lo)
            hi = mid - 1;
        else if (cp > st_nfc_ccc_ranges[mid].hi)
            lo = mid + 1;
        else
            return st_nfc_ccc_ranges[mid].ccc;
    }
    return 0;
}

static const st_nfc_decomp *decomp_of(uint32_t cp)
{
    int lo = 0, hi = st_nfc_n_decomps - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < st_nfc_decomps[mid].cp)
            hi = mid - 1;
        else if (cp > st_nfc_decomps[mid].cp)
            lo = mid + 1;
        else
            return &st_nfc_decomps[mid];
    }
    return NULL;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = st_nfc_n_pairs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const st_nfc_pair *p = &st_nfc_pairs[mid];
        if (a < p->a || (a == p->a && b < p->b))
            hi = mid - 1;
        else if (a > p->a || b > p->b)
            lo = mid + 1;
        else
            return p->c;
    }
    return 0;
}

int st_nfc_quick_yes(const char *s, size_t n)
{
    /* every code point below U+0300 is stable under NFC; 0xCC leads U+0300 */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0xCC)
            return 0;
    return 1;
}

void st_nfc(const char *s, size_t n, char **out, size_t *out_len)
{
    /* a code point decomposes into at most 4 */
    uint32_t *cp = st_xmalloc((n * 4 + 1) * sizeof *cp);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = st_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (c == ST_UCP_INVALID) {
            cp[m++] = RAW | (unsigned char)s[i];
        } else if (c >= SBASE && c < SBASE + SCOUNT) {
            uint32_t k = c - SBASE;
            cp[m++] = LBASE + k / NCOUNT;
            cp[m++] = VBASE + (k % NCOUNT) / TCOUNT;
            if (k % TCOUNT)
                cp[m++] = TBASE + k % TCOUNT;
        } else {
            const st_nfc_decomp *d = c >= 0xC0 ? decomp_of(c) : NULL;
            if (d)
                for (int j = 0; j < 4 && d->d[j]; j++)
                    cp[m++] = d->d[j];
            else
                cp[m++] = c;
        }
        i += (size_t)l;
    }
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < m; i++) {
        int ci = ccc_of(cp[i]);
        if (!ci)
            continue;
        uint32_t c = cp[i];
        size_t j = i;
        while (j > 0 && ccc_of(cp[j - 1]) > ci) {
            cp[j] = cp[j - 1];
            j--;
        }
        cp[j] = c;
    }
    /* composition */
    size_t w = 0;
    if (m > 0) {
        size_t starter = 0;
        int last = ccc_of(cp[0]) ? 256 : 0; /* a leading non-starter blocks everything */
        w = 1;
        for (size_t i = 1; i < m; i++) {
            uint32_t c = cp[i];
            int cc = ccc_of(c);
            uint32_t comp = (cp[starter] & RAW) || (c & RAW) ? 0 : compose(cp[starter], c);
            if (comp && (last < cc || last == 0)) {
                cp[starter] = comp;
                continue;
            }
            if (cc == 0)
                starter = w;
            last = cc;
            cp[w++] = c;
        }
    }
    char *o = st_xmalloc(w * 4 + 1);
    size_t ol = 0;
    for (size_t i = 0; i < w; i++) {
        if (cp[i] & RAW)
            o[ol++] = (char)(cp[i] & 0xFF);
        else
            ol += (size_t)st_utf8_put(cp[i], o + ol);
    }
    free(cp);
    *out = o;
    *out_len = ol;
}
