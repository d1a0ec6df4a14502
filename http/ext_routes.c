/* Extra endpoints registered by the embedding program (server.h
 * st_http_route): exact-path dispatch, the API key check, and the reply. */
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "http_internal.h"

static int eq(h2o_iovec_t v, const char *s) { return h2o_memis(v.base, v.len, s, strlen(s)); }

static void reply(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

static void reply_error(h2o_req_t *req, int status, const char *msg)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"error\":{\"message\":");
    st_sb_json_str(&sb, msg, strlen(msg));
    st_sb_puts(&sb, ",\"type\":\"");
    st_sb_puts(&sb, status < 500 ? "invalid_request_error" : "server_error");
    st_sb_puts(&sb, "\"}}");
    reply(req, status, "application/json", sb.buf, sb.len);
    st_sb_free(&sb);
}

static int status_of(int rc)
{
    switch (rc) {
    case ST_EINVAL: return 400;
    case ST_ENOENT: return 404;
    case ST_EAGAIN: return 503;
    default: return 500;
    }
}

const st_http_route *st_http_ext_find(struct st_http_server *srv, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    for (int i = 0; i < srv->cfg.n_routes; i++)
        if (eq(path, srv->cfg.routes[i].path))
            return &srv->cfg.routes[i];
    return NULL;
}

int st_http_ext_serve(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt)
{
    int post = strcmp(rt->method, "POST") == 0;
    if (post ? !eq(req->method, "POST") : !(eq(req->method, "GET") || eq(req->method, "HEAD"))) {
        const char *allow = post ? "POST" : "GET, HEAD";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        reply_error(req, 405, "method not allowed on this path");
        return 0;
    }
    const char *query = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX && req->query_at + 1 < req->path.len) {
        query = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    if (rt->stream)
        return st_http_ext_stream(srv, req, rt, query, qlen);
    st_http_reply out = {.status = 200, .content_type = "application/json"};
    int rc = rt->handle(rt->ctx, query, qlen, req->entity.base ? req->entity.base : "", req->entity.len, &out);
    if (rc) {
        free(out.body);
        reply_error(req, status_of(rc), st_errmsg());
        return 0;
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, out.body ? out.body : "", out.body ? out.len : 0);
    free(out.body);
    reply(req, out.status ? out.status : 200, out.content_type ? out.content_type : "application/json", body.base,
          body.len);
    return 0;
}

int st_http_ext_stream(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt, const char *query,
                       size_t query_len)
{
    (void)srv, (void)rt, (void)query, (void)query_len;
    reply_error(req, 501, "streaming routes are not supported yet");
    return 0;
}
