/* Code point classes: an ASCII table, then a binary search over the
 * generated category ranges. */
#include "tok_unicode.h"

static int is_white_space(uint32_t c)
{
    /* Unicode White_Space property (what \s means in the tokenizers' regexes) */
    if (c >= 0x09 && c <= 0x0D)
        return 1;
    switch (c) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

unsigned st_ucp_class(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp == '\r' || cp == '\n')
            return ST_UC_WS | ST_UC_CRLF;
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return ST_UC_L;
        if (cp >= '0' && cp <= '9')
            return ST_UC_N;
        return is_white_space(cp) ? ST_UC_WS : 0;
    }
    if (cp == ST_UCP_INVALID)
        return 0;
    if (is_white_space(cp))
        return ST_UC_WS;
    int lo = 0, hi = st_ucat_n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < st_ucat_ranges[mid].lo)
            hi = mid - 1;
        else if (cp > st_ucat_ranges[mid].hi)
            lo = mid + 1;
        else
            return st_ucat_ranges[mid].flag;
    }
    return 0;
}

int st_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        *cp = ST_UCP_INVALID;
        return 1;
    }
    if ((size_t)len > n || s[1] < lo || s[1] > hi) {
        *cp = ST_UCP_INVALID;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = ST_UCP_INVALID;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

int st_utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
