/* HTTP for the model cache: a small GET into memory and a resumable,
 * checksummed file download, both over libcurl (easy interface, blocking).
 *
 * A download writes to "dest.part" under an flock, so two processes pulling
 * the same file take turns and the second finds it done. The SHA-256 is
 * computed while writing (the bytes already in a resumed .part are hashed
 * from disk first), so a verified file is read from the network once. */
#define _GNU_SOURCE
#include "tools/hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/st_common.h"

int st_pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return st_err(ST_ERANGE, "path too long (over %zu bytes): %.80s...", cap, out);
    return ST_OK;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int st_url_escape(const char *s, int keep_slash, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/');
        if (o + (keep ? 1 : 3) >= cap)
            return st_err(ST_ERANGE, "URL component too long: '%.64s...'", s);
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= cap)
        return st_err(ST_ERANGE, "URL component too long");
    out[o] = 0;
    return ST_OK;
}

static void hex_digest(const unsigned char *d, char hex[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Feed bytes [0, n) of fd into ctx. */
static int hash_prefix(EVP_MD_CTX *ctx, int fd, long long n, const char *path)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = n > 0 ? st_xmalloc(CHUNK) : NULL;
    long long done = 0;
    int rc = ST_OK;
    while (done < n) {
        size_t want = (size_t)ST_MIN((long long)CHUNK, n - done);
        ssize_t r = pread(fd, buf, want, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = st_err(ST_EIO, "reading %s: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        done += r;
    }
    free(buf);
    return rc;
}

int st_sha256_file(const char *path, char hex[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_err(errno == ENOENT ? ST_ENOENT : ST_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return st_err(ST_EIO, "cannot stat %s: %s", path, strerror(errno));
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    int rc = hash_prefix(ctx, fd, (long long)sb.st_size, path);
    close(fd);
    if (rc == ST_OK) {
        unsigned char d[32];
        unsigned dl = 0;
        EVP_DigestFinal_ex(ctx, d, &dl);
        hex_digest(d, hex);
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Common easy-handle setup: redirects, timeouts, user agent, HF_TOKEN. */
static CURL *easy_new(const char *url, struct curl_slist **hdrs)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled connection (< 1 B/s for a minute) counts as interrupted */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "strait/" ST_VERSION);
    *hdrs = NULL;
    const char *tok = getenv("HF_TOKEN");
    if (tok && *tok) {
        char h[1024];
        snprintf(h, sizeof h, "Authorization: Bearer %s", tok);
        *hdrs = curl_slist_append(*hdrs, h);
        /* libcurl does not forward custom headers to another host on a
         * redirect, so the token never reaches the CDN */
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    }
    return c;
}

/* ---- GET into memory ------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap, max;
    int too_big;
} membuf;

static size_t mem_write(char *p, size_t sz, size_t n, void *ud)
{
    membuf *m = ud;
    size_t k = sz * n;
    if (m->len + k > m->max) {
        m->too_big = 1;
        return 0;
    }
    if (m->len + k + 1 > m->cap) {
        m->cap = ST_MAX(m->cap * 2, m->len + k + 1);
        m->buf = st_xrealloc(m->buf, m->cap);
    }
    memcpy(m->buf + m->len, p, k);
    m->len += k;
    m->buf[m->len] = 0;
    return k;
}

int st_http_get(const char *url, size_t max, char **body, size_t *len, long *status)
{
    struct curl_slist *hdrs;
    CURL *c = easy_new(url, &hdrs);
    if (!c)
        return st_err(ST_ENOMEM, "curl_easy_init failed");
    membuf m = {st_xmalloc(1), 0, 1, max, 0};
    m.buf[0] = 0;
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        free(m.buf);
        if (m.too_big)
            return st_err(ST_ERANGE, "response from %s is larger than %zu bytes", url, max);
        return st_err(ST_ECONN, "cannot fetch %s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(cc));
    }
    *body = m.buf;
    *len = m.len;
    *status = code;
    return ST_OK;
}

/* ---- download -------------------------------------------------------------- */

typedef struct {
    /* of the current response (reset at each status line of the redirect chain) */
    long status;
    long long range_start; /* Content-Range first byte, -1 when absent */
    long long total;       /* full size of the file when known, else -1 */
    char etag[160];
    /* from any response of the chain: the hub puts it on the redirect */
    char linked_etag[160];
    /* output */
    int fd;
    const char *part;
    long long offset;  /* bytes of the file before this response's body */
    long long written; /* body bytes written by this response */
    int mode;          /* 0 undecided, 1 writing, 2 discarding (error status) */
    int bad_range;     /* a 206 for a range we did not ask for */
    int write_errno;
    EVP_MD_CTX *sha;
    /* progress */
    const char *label;
    int tty;
    int shown; /* a progress line or bar was drawn */
    double t_start, t_last;
    long long at_start; /* bytes present when this attempt began */
} dl;

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
}

static size_t dl_header(char *p, size_t sz, size_t n, void *ud)
{
    dl *d = ud;
    size_t k = sz * n;
    char line[512];
    size_t m = ST_MIN(k, sizeof line - 1);
    memcpy(line, p, m);
    line[m] = 0;
    trim(line);
    if (!strncmp(line, "HTTP/", 5)) {
        const char *sp = strchr(line, ' ');
        d->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        d->range_start = -1;
        d->total = -1;
        d->etag[0] = 0;
        return k;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return k;
    *colon = 0;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strcasecmp(line, "content-range")) {
        long long a, b, t;
        if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &t) == 3) {
            d->range_start = a;
            d->total = t;
        }
    } else if (!strcasecmp(line, "content-length") && d->status == 200) {
        d->total = strtoll(v, NULL, 10);
    } else if (!strcasecmp(line, "etag")) {
        snprintf(d->etag, sizeof d->etag, "%s", v);
    } else if (!strcasecmp(line, "x-linked-etag")) {
        snprintf(d->linked_etag, sizeof d->linked_etag, "%s", v);
    }
    return k;
}

static size_t dl_write(char *p, size_t sz, size_t n, void *ud)
{
    dl *d = ud;
    size_t k = sz * n;
    if (d->mode == 0) {
        if (d->status == 206) {
            if (d->range_start != d->offset) {
                d->bad_range = 1;
                return 0;
            }
            d->mode = 1;
        } else if (d->status == 200) {
            if (d->offset > 0) {
                /* the server ignored the Range: start over */
                ST_INFO("%s: server does not resume; restarting from zero", d->label);
                if (ftruncate(d->fd, 0) < 0) {
                    d->write_errno = errno;
                    return 0;
                }
                d->offset = 0;
                d->at_start = 0;
                EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL);
            }
            d->mode = 1;
        } else {
            d->mode = 2;
        }
    }
    if (d->mode == 2)
        return k;
    size_t done = 0;
    while (done < k) {
        ssize_t w = pwrite(d->fd, p + done, k - done, (off_t)(d->offset + d->written));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            d->write_errno = w < 0 ? errno : EIO;
            return 0;
        }
        EVP_DigestUpdate(d->sha, p + done, (size_t)w);
        done += (size_t)w;
        d->written += w;
    }
    return k;
}

/* n bytes as "12.3 MiB" style text. */
static void human(double n, char *buf, size_t cap)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t k = 0;
    while (n >= 1024.0 && k + 1 < ST_ARRAY_LEN(u)) {
        n /= 1024.0;
        k++;
    }
    snprintf(buf, cap, k ? "%.1f %s" : "%.0f %s", n, u[k]);
}

/* A bar redrawn in place (10/s) on a terminal; otherwise a line every 5 s.
 * The final call closes the bar, or prints a last line when one was shown
 * or the file is large. */
static void draw_progress(dl *d, int final)
{
    double now = st_now_s();
    if (!final && now - d->t_last < (d->tty ? 0.1 : 5.0))
        return;
    long long have_b = d->offset + d->written;
    if (final && !d->shown && have_b < (8 << 20))
        return;
    d->t_last = now;
    d->shown = 1;
    char have[32], total[32], rate[32];
    human((double)have_b, have, sizeof have);
    human(d->total > 0 ? (double)d->total : 0, total, sizeof total);
    human((double)(have_b - d->at_start) / ST_MAX(now - d->t_start, 1e-3), rate, sizeof rate);
    double frac = d->total > 0 ? (double)have_b / (double)d->total : 0;
    if (d->tty) {
        char bar[31];
        int fill = (int)(30.0 * ST_MIN(frac, 1.0));
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        if (d->total > 0)
            fprintf(stderr, "\r%-28.28s [%s] %10s / %-10s %10s/s ", d->label, bar, have, total, rate);
        else
            fprintf(stderr, "\r%-28.28s %10s %10s/s ", d->label, have, rate);
        if (final)
            fputc('\n', stderr);
    } else if (d->total > 0) {
        fprintf(stderr, "strait: %s: %s of %s (%.0f%%), %s/s\n", d->label, have, total, 100.0 * frac, rate);
    } else {
        fprintf(stderr, "strait: %s: %s, %s/s\n", d->label, have, rate);
    }
    fflush(stderr);
}

static int dl_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    dl *d = ud;
    if (d->mode == 1)
        draw_progress(d, 0);
    return 0;
}

/* "W/\"abc\"" -> abc; 1 when it is 64 hex digits (a SHA-256), lowercased. */
static int etag_sha256(const char *etag, char out[65])
{
    const char *s = etag;
    if (!strncmp(s, "W/", 2))
        s += 2;
    if (*s == '"')
        s++;
    size_t n = 0;
    while (isxdigit((unsigned char)s[n]) && n < 64) {
        out[n] = (char)tolower((unsigned char)s[n]);
        n++;
    }
    out[n] = 0;
    return n == 64 && (s[n] == 0 || s[n] == '"');
}

static int retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

static int http_status_error(long status, const char *url)
{
    switch (status) {
    case 401:
        return st_err(ST_EPROTO,
                      "401 Unauthorized for %s: the repo is private, gated or does not exist "
                      "(set HF_TOKEN to a token that can read it)",
                      url);
    case 403:
        return st_err(ST_EPROTO,
                      "403 Forbidden for %s: access denied (a gated model needs its license accepted "
                      "on the hub and HF_TOKEN set)",
                      url);
    case 404:
        return st_err(ST_ENOENT, "404 Not Found: %s (check the repo name, revision and file name)", url);
    default:
        return st_err(ST_EPROTO, "HTTP %ld from %s", status, url);
    }
}

/* Open and lock dest.part; *done = 1 when another process finished dest
 * while we waited for the lock. */
static int open_part(const char *part, const char *dest, const char *label, int *fd_out, int *done)
{
    *done = 0;
    for (;;) {
        int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return st_err(ST_EIO, "cannot create %s: %s", part, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            ST_INFO("%s: waiting for another download of the same file", label);
            if (flock(fd, LOCK_EX) < 0) {
                close(fd);
                return st_err(ST_EIO, "cannot lock %s: %s", part, strerror(errno));
            }
        }
        if (access(dest, F_OK) == 0) {
            close(fd);
            *done = 1;
            return ST_OK;
        }
        /* the holder may have renamed or deleted the file we opened */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(part, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            *fd_out = fd;
            return ST_OK;
        }
        close(fd);
    }
}

static void fsync_parent(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int dfd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

/* One transfer attempt from the current end of the .part file. */
static CURLcode attempt(const char *url, dl *d, char *ebuf)
{
    struct curl_slist *hdrs;
    CURL *c = easy_new(url, &hdrs);
    if (!c)
        return CURLE_FAILED_INIT;
    char range[64];
    if (d->offset > 0) {
        snprintf(range, sizeof range, "%lld-", d->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    return cc;
}

int st_http_download(const char *url, const char *dest, const char *label)
{
    char part[4096];
    if ((size_t)snprintf(part, sizeof part, "%s.part", dest) >= sizeof part)
        return st_err(ST_ERANGE, "path too long: %s", dest);
    int fd = -1, done;
    int rc = open_part(part, dest, label, &fd, &done);
    if (rc != ST_OK || done)
        return rc;

    const char *re = getenv("STRAIT_HUB_RETRIES");
    int retries = re ? atoi(re) : 4;
    dl d = {0};
    d.fd = fd;
    d.part = part;
    d.label = label;
    d.tty = isatty(2);
    d.sha = EVP_MD_CTX_new();
    d.linked_etag[0] = 0;
    long status = 0;
    rc = ST_OK;
    for (int try = 0;; try++) {
        struct stat sb;
        if (fstat(fd, &sb) < 0) {
            rc = st_err(ST_EIO, "cannot stat %s: %s", part, strerror(errno));
            break;
        }
        d.offset = (long long)sb.st_size;
        d.written = 0;
        d.mode = 0;
        d.bad_range = 0;
        d.write_errno = 0;
        d.status = 0;
        d.total = -1;
        d.at_start = d.offset;
        d.t_start = d.t_last = st_now_s();
        EVP_DigestInit_ex(d.sha, EVP_sha256(), NULL);
        if ((rc = hash_prefix(d.sha, fd, d.offset, part)) != ST_OK)
            break;
        if (d.offset > 0)
            ST_INFO("%s: resuming at %.1f MiB", label, (double)d.offset / (1024.0 * 1024.0));
        char ebuf[CURL_ERROR_SIZE] = "";
        CURLcode cc = attempt(url, &d, ebuf);
        status = d.status;
        const char *why = ebuf[0] ? ebuf : curl_easy_strerror(cc);

        if (d.write_errno) {
            rc = st_err(ST_EIO, "writing %s: %s%s", part, strerror(d.write_errno),
                        d.write_errno == ENOSPC ? " (disk full: free some space; the download resumes)" : "");
            break;
        }
        int again = 0;
        if (cc == CURLE_OK && (status == 200 || status == 206)) {
            if (d.mode == 0 && status == 200 && d.offset > 0) {
                /* an empty 200 body after a resume: the file is empty */
                if (ftruncate(fd, 0) < 0)
                    rc = st_err(ST_EIO, "truncating %s: %s", part, strerror(errno));
                EVP_DigestInit_ex(d.sha, EVP_sha256(), NULL);
            }
            break;
        } else if (cc == CURLE_OK && status == 416 && d.offset > 0) {
            /* our .part is not a prefix of what is served now */
            if (ftruncate(fd, 0) < 0) {
                rc = st_err(ST_EIO, "truncating %s: %s", part, strerror(errno));
                break;
            }
            again = 1;
        } else if (cc == CURLE_OK) {
            if ((status >= 500 || status == 429) && try < retries) {
                ST_WARN("%s: HTTP %ld, retrying", label, status);
                again = 1;
            } else {
                rc = http_status_error(status, url);
                break;
            }
        } else if (d.bad_range) {
            if (ftruncate(fd, 0) < 0) {
                rc = st_err(ST_EIO, "truncating %s: %s", part, strerror(errno));
                break;
            }
            again = 1;
        } else if (retryable(cc) && try < retries) {
            if (d.mode == 1)
                draw_progress(&d, 1);
            ST_WARN("%s: transfer interrupted (%s); resuming (retry %d of %d)", label, why, try + 1, retries);
            again = 1;
        } else {
            rc = st_err(ST_ECONN, "download of %s failed: %s (the partial file is kept; run the pull again to resume)",
                        url, why);
            break;
        }
        if (again && try >= retries) {
            rc = st_err(ST_ECONN, "download of %s failed after %d retries", url, retries);
            break;
        }
        /* back off only when the attempt made no progress */
        if (again && d.written == 0 && try > 0) {
            struct timespec ts = {ST_MIN(1 << (try - 1), 8), 0};
            nanosleep(&ts, NULL);
        }
    }
    if (rc == ST_OK && d.mode == 1)
        draw_progress(&d, 1);

    if (rc == ST_OK) {
        unsigned char dg[32];
        unsigned dlen = 0;
        char got[65], want[65];
        EVP_DigestFinal_ex(d.sha, dg, &dlen);
        hex_digest(dg, got);
        int have = etag_sha256(d.linked_etag, want) || etag_sha256(d.etag, want);
        if (have && strcmp(got, want) != 0) {
            unlink(part);
            rc = st_err(ST_EPROTO,
                        "checksum mismatch for %s: the hub says sha256 %s, the download has %s "
                        "(deleted the bad file; try again)",
                        label, want, got);
        } else if (!have) {
            ST_DEBUG("%s: no sha256 from the server; not verified", label);
        }
    }
    if (rc == ST_OK && fsync(fd) < 0)
        rc = st_err(ST_EIO, "fsync %s: %s", part, strerror(errno));
    if (rc == ST_OK && rename(part, dest) < 0)
        rc = st_err(ST_EIO, "rename %s -> %s: %s", part, dest, strerror(errno));
    if (rc == ST_OK)
        fsync_parent(dest);
    /* an empty .part (the request failed before any byte) is not worth keeping */
    struct stat sb;
    if (rc != ST_OK && fstat(fd, &sb) == 0 && sb.st_size == 0)
        unlink(part);
    EVP_MD_CTX_free(d.sha);
    close(fd); /* drops the lock, after the rename */
    return rc;
}
