/* The web UI embedded into the binary (the files of http/web/ turned into C by
 * tools/embed_web.py -> web_assets_data.c) and its routes:
 *   GET/HEAD /            index.html
 *   GET/HEAD /ui/NAME     the file NAME of http/web/ (/ui/ alone: index.html)
 * Every answer carries Content-Type, Cache-Control ("no-cache": the browser
 * revalidates, so a new binary's page is seen at once), a strict
 * Content-Security-Policy (only same-origin script, style and fetch; no
 * inline script; no framing) and X-Content-Type-Options: nosniff. The pages
 * need no API key: they hold no secrets, and the API calls they make do. */
#ifndef ST_HTTP_WEB_ASSETS_H
#define ST_HTTP_WEB_ASSETS_H

#include <stddef.h>

typedef struct st_web_asset {
    const char *name;               /* file name in http/web/, e.g. "app.js" */
    const char *content_type;       /* e.g. "text/javascript; charset=utf-8" */
    const unsigned char *data;      /* (len,) bytes, NUL-terminated for convenience */
    size_t len;
} st_web_asset;

/* (st_web_n_assets,) sorted by name, then a {0} row (web_assets_data.c). */
extern const st_web_asset st_web_assets[];
extern const int st_web_n_assets;

/* The asset for a URL path ("/", "/ui/", "/ui/app.js"; len bytes, no query
 * string), or NULL: not one of the routes above, or no such file. */
const st_web_asset *st_web_asset_for_path(const char *path, size_t len);

/* Answers GET/HEAD on "/", "/ui" (301 to "/ui/") and "/ui/..." (the asset,
 * or 404) and returns 1; returns 0 without answering for any other path or
 * method, which the caller then routes. */
struct st_h2o_req_t;
int st_http_web_serve(struct st_h2o_req_t *req);

/* The header values sent with every asset. */
#define ST_WEB_CSP                                                                                     \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
#define ST_WEB_CACHE_CONTROL "no-cache"

#endif
