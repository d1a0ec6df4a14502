/* Hugging Face hub downloads: hf:ORG/NAME references, the repo file listing,
 * and a resumable, checksummed HTTP download of one file (libcurl).
 *
 * The hub is `https://huggingface.co` unless $HF_ENDPOINT overrides it;
 * $HF_TOKEN, when set, is sent as `Authorization: Bearer ...`. */
#ifndef ST_HUB_H
#define ST_HUB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- references --------------------------------------------------------
 * "hf:ORG/NAME[/FILE][@REVISION]" (the "hf:" prefix optional here; the
 * revision may also follow NAME: "ORG/NAME@REV/FILE.gguf"). */
typedef struct {
    char org[96];
    char name[128];
    char file[512]; /* "" = choose (see st_hub_resolve) */
    char rev[256];  /* "main" when not given */
} st_hub_ref;

/* Parse and validate a reference (names of [A-Za-z0-9._-], no "..", no
 * absolute or escaping FILE). ST_EINVAL naming what is wrong. */
int st_hub_parse_ref(const char *spec, st_hub_ref *ref);

/* The cache directory of a repo: "<models>/ORG--NAME" ("@REV" appended,
 * '/' in REV as '_', when REV is not main). */
int st_hub_cache_dir(const st_hub_ref *ref, char *out, size_t cap);

/* The hub base URL without a trailing '/' (static string). */
const char *st_hub_endpoint(void);

/* Resolve hf:... to a local path. When the cache already holds the named
 * file (or a completed pull of the repo) no request is made. Otherwise, with
 * allow_download, list the repo's files at the revision and fetch:
 *  - GGUF repo: FILE when named; else the only .gguf, or the first of
 *    Q4_1, Q4_0, Q8_0 by name; else an error listing the .gguf files;
 *  - safetensors repo: config.json, tokenizer.json, tokenizer_config.json,
 *    generation_config.json, model.safetensors.index.json and *.safetensors
 *    (those present; config.json required). The path is the directory.
 * Without allow_download a model that is not cached is ST_ENOENT. */
int st_hub_resolve(const char *spec, int allow_download, char *out, size_t cap);

/* ---- HTTP (hub_http.c) -------------------------------------------------- */

/* GET url into a NUL-terminated heap buffer (at most max bytes), following
 * redirects. *status is the final HTTP status; a transport failure (DNS,
 * refused, TLS, timeout) is ST_ECONN with a message, any status is ST_OK. */
int st_http_get(const char *url, size_t max, char **body, size_t *len, long *status);

/* Download url to dest: data goes to "dest.part" (resumed with a Range
 * request when it exists: a 206 appends, a 200 restarts from zero), a
 * progress bar (or, when stderr is not a terminal, a periodic line) goes to
 * stderr under `label`, and interrupted transfers (and 429/5xx replies)
 * are retried with resume, $STRAIT_HUB_RETRIES (default 4) times. When the
 * server names the content's SHA-256 (X-Linked-Etag, else ETag, as 64 hex
 * digits) the file must match it: a mismatch deletes the .part and fails
 * with ST_EPROTO. Another process downloading the same dest is waited for.
 * On success the file is fsynced and renamed to dest. Errors: ST_ENOENT
 * (404), ST_EPROTO (401/403 and other statuses, with advice), ST_ECONN
 * (network), ST_EIO (disk, e.g. full). */
int st_http_download(const char *url, const char *dest, const char *label);

/* SHA-256 of a file as 64 lowercase hex digits + NUL. */
int st_sha256_file(const char *path, char hex[65]);

/* snprintf into out[cap]; ST_ERANGE (naming the start of the text) when it
 * does not fit, so that a truncated path is never used. */
int st_pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Percent-encode s for a URL path (unreserved characters kept; '/' kept
 * when keep_slash). ST_ERANGE when it does not fit in cap. */
int st_url_escape(const char *s, int keep_slash, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* ST_HUB_H */
