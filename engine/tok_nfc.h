/* Unicode NFC normalization (the tokenizer.json "NFC" normalizer, as in
 * Qwen2/Qwen3): canonical decomposition, canonical ordering of combining
 * marks, canonical composition. Tables from tools/gen_unicode_tables.py. */
#ifndef ST_TOK_NFC_H
#define ST_TOK_NFC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t lo, hi;
    uint8_t ccc; /* canonical combining class (non-zero) */
} st_nfc_ccc;
typedef struct {
    uint32_t cp;
    uint32_t d[4]; /* full canonical decomposition, 0-padded */
} st_nfc_decomp;
typedef struct {
    uint32_t a, b, c; /* a + b compose to c (primary composites), sorted by (a, b) */
} st_nfc_pair;

extern const st_nfc_ccc st_nfc_ccc_ranges[];
extern const int st_nfc_n_ccc;
extern const st_nfc_decomp st_nfc_decomps[];
extern const int st_nfc_n_decomps;
extern const st_nfc_pair st_nfc_pairs[];
extern const int st_nfc_n_pairs;

/* 1 if s[0, n) is certainly unchanged by NFC (a quick check: no byte could
 * start a decomposable or combining character). */
int st_nfc_quick_yes(const char *s, size_t n);

/* NFC of s[0, n) into a new heap buffer (*out, *out_len). Invalid UTF-8
 * bytes are kept as they are and block composition across them. */
void st_nfc(const char *s, size_t n, char **out, size_t *out_len);

#endif
