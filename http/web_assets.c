/* Serving the embedded web UI (see web_assets.h). */
#include <string.h>

#include <h2o.h>

#include "web_assets.h"

const st_web_asset *st_web_asset_for_path(const char *path, size_t len)
{
    const char *name;
    size_t n;
    if (!path)
        return NULL;
    if ((len == 1 && path[0] == '/') || (len == 4 && memcmp(path, "/ui/", 4) == 0)) {
        name = "index.html";
        n = strlen(name);
    } else if (len > 4 && memcmp(path, "/ui/", 4) == 0) {
        name = path + 4;
        n = len - 4;
    } else {
        return NULL;
    }
    /* Names are flat (no '/'), so "/ui/../x" or "/ui/a/b" match nothing. */
    for (int k = 0; k < st_web_n_assets; k++)
        if (strlen(st_web_assets[k].name) == n && memcmp(st_web_assets[k].name, name, n) == 0)
            return &st_web_assets[k];
    return NULL;
}

static void add(h2o_req_t *req, const h2o_token_t *tok, const char *v)
{
    h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v, strlen(v));
}

static void add_str(h2o_req_t *req, const char *name, const char *v)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v, strlen(v));
}

static int is_prefix(h2o_iovec_t v, const char *p)
{
    size_t n = strlen(p);
    return v.len >= n && memcmp(v.base, p, n) == 0;
}

int st_http_web_serve(struct st_h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    int root = path.len == 1 && path.base[0] == '/';
    if (!root && !is_prefix(path, "/ui/") && !h2o_memis(path.base, path.len, H2O_STRLIT("/ui")))
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 0; /* the caller answers: no such route for this method */
    static h2o_generator_t none = {NULL, NULL};
    add_str(req, "content-security-policy", ST_WEB_CSP);
    add_str(req, "x-content-type-options", "nosniff");
    add(req, H2O_TOKEN_CACHE_CONTROL, ST_WEB_CACHE_CONTROL);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/ui"))) {
        add(req, H2O_TOKEN_LOCATION, "/ui/");
        req->res.status = 301;
        req->res.reason = "Moved Permanently";
        req->res.content_length = 0;
        h2o_start_response(req, &none);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return 1;
    }
    const st_web_asset *a = st_web_asset_for_path(path.base, path.len);
    h2o_iovec_t body;
    if (a) {
        req->res.status = 200;
        req->res.reason = "OK";
        add(req, H2O_TOKEN_CONTENT_TYPE, a->content_type);
        body = h2o_iovec_init(a->data, a->len); /* static: outlives the request */
    } else {
        static const char msg[] = "not found\n";
        req->res.status = 404;
        req->res.reason = "Not Found";
        add(req, H2O_TOKEN_CONTENT_TYPE, "text/plain; charset=utf-8");
        body = h2o_iovec_init(msg, sizeof msg - 1);
    }
    req->res.content_length = body.len;
    h2o_start_response(req, &none);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 1;
}
