/* A small, strict JSON (RFC 8259) DOM parser and a string-builder writer.
 *
 * Parsing is for untrusted bytes (HTTP bodies, tokenizer.json, config.json,
 * safetensors headers): it validates UTF-8, rejects trailing garbage, limits
 * nesting depth, and never reads past `len`. Strings are unescaped into
 * NUL-terminated heap copies (`len` is kept since "\u0000" may appear).
 * Object member order is preserved (tokenizer.json vocab order matters
 * for nothing, but merges arrays and added_tokens do). */
#ifndef ST_JSON_H
#define ST_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_JSON_NULL,
    ST_JSON_BOOL,
    ST_JSON_NUMBER,
    ST_JSON_STRING,
    ST_JSON_ARRAY,
    ST_JSON_OBJECT,
} st_json_type;

typedef struct st_json st_json;
struct st_json {
    st_json_type type;
    union {
        int boolean;
        double number;
        struct {
            char *s; /* NUL-terminated, may contain NUL */
            size_t len;
        } str;
        struct {
            st_json *items; /* (n,) */
            size_t n;
        } arr;
        struct {
            char **keys;     /* (n,) NUL-terminated */
            size_t *key_lens; /* (n,) */
            st_json *vals;   /* (n,) */
            size_t n;
        } obj;
    } u;
};

#define ST_JSON_MAX_DEPTH 128

/* Parse `len` bytes. On success *out is a heap tree to free with
 * st_json_free(). On error returns ST_EINVAL with a message giving the byte
 * offset and reason; *out is untouched. */
int st_json_parse(const char *buf, size_t len, st_json **out);
void st_json_free(st_json *j);

/* Member lookup (NULL when absent or when j is not an object). A linear
 * scan, last duplicate wins: fine for configs and request bodies; to look
 * up many names in a large object (a 150k-entry vocab) iterate u.obj once
 * into a hash map instead. */
const st_json *st_json_get(const st_json *j, const char *key);
/* Typed member access with defaults. */
const char *st_json_get_str(const st_json *j, const char *key, const char *dflt);
double st_json_get_num(const st_json *j, const char *key, double dflt);
int st_json_get_bool(const st_json *j, const char *key, int dflt);
/* 1 if j is a number holding an integer within [lo, hi], storing it. */
int st_json_as_int(const st_json *j, int64_t lo, int64_t hi, int64_t *out);

/* ---- writer --------------------------------------------------------------- */
typedef struct {
    char *buf;
    size_t len, cap;
} st_strbuf;

void st_sb_init(st_strbuf *sb);
void st_sb_free(st_strbuf *sb);
void st_sb_putn(st_strbuf *sb, const char *s, size_t n);
void st_sb_puts(st_strbuf *sb, const char *s);
void st_sb_printf(st_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a quoted, escaped JSON string. */
void st_sb_json_str(st_strbuf *sb, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
