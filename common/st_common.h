/* Strait common definitions: error codes, the per-thread error message,
 * logging, and a few small helpers used everywhere.
 *
 * Convention: functions return ST_OK (0) on success or a negative ST_E*
 * code on failure, after calling st_err_set() with a readable reason.
 * Callers that only pass an error up do not set a new message. */
#ifndef ST_COMMON_H
#define ST_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes ------------------------------------------------------ */
enum {
    ST_OK = 0,
    ST_EINVAL = -1,   /* bad argument or malformed input */
    ST_ENOMEM = -2,   /* allocation failed */
    ST_EIO = -3,      /* read/write/mmap failure */
    ST_ENOTSUP = -4,  /* valid but unsupported (type, architecture, ...) */
    ST_ENOENT = -5,   /* file, key or tensor not found */
    ST_ERANGE = -6,   /* a count, offset or size out of bounds */
    ST_EAGAIN = -7,   /* try again (non-blocking paths) */
    ST_ETIMEDOUT = -8,
    ST_ECONN = -9,    /* peer gone, link broken */
    ST_EPROTO = -10,  /* protocol violation by a peer */
};

/* Set the calling thread's error message (printf-style) and return `code`,
 * so that `return st_err(ST_EINVAL, "bad %s", x);` reads naturally. */
int st_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last error message ("" if none). */
const char *st_errmsg(void);
/* Name of an error code ("EINVAL", ...). */
const char *st_strerror(int code);

/* ---- logging (stderr) --------------------------------------------------- */
enum { ST_LOG_DEBUG = 0, ST_LOG_INFO = 1, ST_LOG_WARN = 2, ST_LOG_ERROR = 3, ST_LOG_OFF = 4 };
void st_log_set_level(int level);
int st_log_get_level(void);
void st_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ST_DEBUG(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)
#define ST_INFO(...) st_log(ST_LOG_INFO, __VA_ARGS__)
#define ST_WARN(...) st_log(ST_LOG_WARN, __VA_ARGS__)
#define ST_ERROR(...) st_log(ST_LOG_ERROR, __VA_ARGS__)

/* ---- memory --------------------------------------------------------------
 * Out-of-memory is handled in one place: these abort with a message, so
 * call sites stay clean. Use plain malloc where a failure must be reported
 * to a peer instead (e.g. a size that came off the wire). */
void *st_xmalloc(size_t n);
void *st_xcalloc(size_t n, size_t sz);
void *st_xrealloc(void *p, size_t n);
char *st_xstrdup(const char *s);
/* 64-byte aligned allocation (cache line / AVX-512); free with free(). */
void *st_xaligned(size_t n);

/* ---- time ------------------------------------------------------------- */
uint64_t st_now_ns(void); /* CLOCK_MONOTONIC */
static inline double st_now_s(void) { return (double)st_now_ns() * 1e-9; }

/* ---- misc --------------------------------------------------------------- */
#define ST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ST_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ST_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ST_ALIGN_UP(x, a) (((x) + ((a)-1)) / (a) * (a))
#define ST_CACHELINE 64

/* Overflow-checked size arithmetic: return 0 on success, -1 on overflow. */
static inline int st_mul_ok(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out) ? -1 : 0; }
static inline int st_add_ok(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out) ? -1 : 0; }

/* Map a regular file read-only (MAP_PRIVATE). Fails with a message naming
 * the file when it is missing, not a regular file, or smaller than
 * min_size bytes (`what` names the expected format in that message).
 * Release with st_unmap_file(base, size). */
int st_map_file(const char *path, size_t min_size, const char *what, const void **base, size_t *size);
void st_unmap_file(const void *base, size_t size);

/* Read a whole file into a NUL-terminated heap buffer. */
int st_read_file(const char *path, char **out, size_t *len);

/* UTF-8: length of the valid sequence starting at s (1..4), or 0 if invalid
 * or truncated within n bytes. */
int st_utf8_seq_len(const unsigned char *s, size_t n);
/* 1 if the n bytes are entirely valid UTF-8. */
int st_utf8_valid(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* ST_COMMON_H */
