/* Errors, logging, checked allocation, time, files, UTF-8. */
#define _GNU_SOURCE
#include "st_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */
static _Thread_local char err_buf[1024];

int st_err(int code, const char *fmt, ...)
{
    /* format into a temporary first: callers may pass st_errmsg() itself
     * as an argument to wrap the previous message with context */
    char tmp[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(err_buf, tmp, sizeof tmp);
    return code;
}

const char *st_errmsg(void) { return err_buf; }

const char *st_strerror(int code)
{
    switch (code) {
    case ST_OK: return "OK";
    case ST_EINVAL: return "EINVAL";
    case ST_ENOMEM: return "ENOMEM";
    case ST_EIO: return "EIO";
    case ST_ENOTSUP: return "ENOTSUP";
    case ST_ENOENT: return "ENOENT";
    case ST_ERANGE: return "ERANGE";
    case ST_EAGAIN: return "EAGAIN";
    case ST_ETIMEDOUT: return "ETIMEDOUT";
    case ST_ECONN: return "ECONN";
    case ST_EPROTO: return "EPROTO";
    default: return "E?";
    }
}

/* ---- logging -------------------------------------------------------------- */
static int log_level = ST_LOG_INFO;

void st_log_set_level(int level) { log_level = level; }
int st_log_get_level(void) { return log_level; }

void st_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level || level > ST_LOG_ERROR)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* one write per line so that lines from threads do not interleave */
    fprintf(stderr, "strait %s: %s\n", names[level], line);
}

/* ---- memory --------------------------------------------------------------- */
static void oom(size_t n)
{
    fprintf(stderr, "strait: out of memory allocating %zu bytes\n", n);
    abort();
}

void *st_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *st_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        oom(n * sz);
    return p;
}

void *st_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *st_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = st_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *st_xaligned(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, ST_ALIGN_UP(n ? n : 1, 64)) != 0)
        oom(n);
    return p;
}

/* ---- time ------------------------------------------------------------------ */
uint64_t st_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- files ------------------------------------------------------------------ */
int st_read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_err(errno == ENOENT ? ST_ENOENT : ST_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = st_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = st_xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return st_err(ST_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len)
        *len = n;
    return ST_OK;
}

int st_map_file(const char *path, size_t min_size, const char *what, const void **base, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_err(errno == ENOENT ? ST_ENOENT : ST_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st_err(ST_EIO, "%s: not a regular file", path);
    }
    if ((size_t)sb.st_size < min_size) {
        close(fd);
        return st_err(ST_EINVAL, "%s: %lld bytes is too small for a %s file", path, (long long)sb.st_size, what);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED)
        return st_err(ST_EIO, "%s: mmap: %s", path, strerror(err));
    *base = p;
    *size = (size_t)sb.st_size;
    return ST_OK;
}

void st_unmap_file(const void *base, size_t size)
{
    if (base)
        munmap((void *)base, size);
}

/* ---- UTF-8 ------------------------------------------------------------------- */
int st_utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int len;
    unsigned cp;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* reject overlong forms, surrogates and values past U+10FFFF */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int st_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int l = st_utf8_seq_len(p + i, n - i);
        if (!l)
            return 0;
        i += (size_t)l;
    }
    return 1;
}
