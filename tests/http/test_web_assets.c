/* The embedded web UI: the committed http/web_assets_data.c holds exactly
 * the files of http/web/ byte for byte (stale data fails here: run
 * python3 tools/embed_web.py), the URL -> asset mapping, and the answers of
 * a live server (fake back end, API keys on): Content-Type, Cache-Control,
 * the Content-Security-Policy, 404 for unknown files, and that the page
 * itself needs no key while the API still does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../http/server.h"
#include "../../http/web_assets.h"
#include "../test.h"
#include "fake_backend.h"

#define KEY "web-test-key"

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    st_strbuf sb;
    st_sb_init(&sb);
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0)
        st_sb_putn(&sb, buf, r);
    fclose(f);
    *n = sb.len;
    return sb.buf ? (unsigned char *)sb.buf : calloc(1, 1);
}

static void test_embedded_matches_sources(void)
{
    const char *dir = ST_SOURCE_DIR "/http/web";
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot open %s", dir);
    if (!d)
        return;
    int n_files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        n_files++;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = 0;
        unsigned char *want = slurp(path, &n);
        const st_web_asset *a = NULL;
        for (int k = 0; k < st_web_n_assets; k++)
            if (strcmp(st_web_assets[k].name, e->d_name) == 0)
                a = &st_web_assets[k];
        CHECKF(a != NULL, "http/web/%s is not embedded: run python3 tools/embed_web.py", e->d_name);
        CHECKF(a && want && a->len == n && memcmp(a->data, want, n) == 0,
               "embedded http/web/%s differs from the file: run python3 tools/embed_web.py", e->d_name);
        free(want);
    }
    closedir(d);
    CHECKF(n_files == st_web_n_assets, "%d files in http/web, %d embedded: run python3 tools/embed_web.py", n_files,
           st_web_n_assets);
}

static void test_paths(void)
{
    struct {
        const char *path;
        const char *name; /* NULL: no asset */
    } cases[] = {
        {"/", "index.html"},       {"/ui/", "index.html"},   {"/ui/index.html", "index.html"},
        {"/ui/app.js", "app.js"},  {"/ui/style.css", "style.css"}, {"/app.js", NULL},
        {"/ui/nope.js", NULL},     {"/ui/../app.js", NULL},  {"/ui/app.js/", NULL},
        {"/ui/app.j", NULL},       {"/ui/app.jsx", NULL},    {"/uiapp.js", NULL},
        {"", NULL},                {"//", NULL},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        const st_web_asset *a = st_web_asset_for_path(cases[i].path, strlen(cases[i].path));
        const char *got = a ? a->name : NULL;
        CHECKF(cases[i].name ? got && strcmp(got, cases[i].name) == 0 : got == NULL, "%s -> %s (want %s)",
               cases[i].path, got ? got : "none", cases[i].name ? cases[i].name : "none");
    }
    CHECK(st_web_asset_for_path(NULL, 0) == NULL);
    const st_web_asset *js = st_web_asset_for_path("/ui/app.js", 10);
    CHECK(js && strncmp(js->content_type, "text/javascript", 15) == 0);
    const st_web_asset *css = st_web_asset_for_path("/ui/style.css", 13);
    CHECK(css && strncmp(css->content_type, "text/css", 8) == 0);
    /* The page has no inline script or event-handler attributes (the CSP
     * would block them): every <script has a src. */
    const st_web_asset *html = st_web_asset_for_path("/", 1);
    CHECK(html && strncmp(html->content_type, "text/html", 9) == 0);
    for (const char *p = html ? (const char *)html->data : ""; (p = strstr(p, "<script")) != NULL; p++) {
        const char *end = strchr(p, '>');
        CHECKF(end && memmem(p, (size_t)(end - p), " src=", 5) != NULL, "inline script in index.html: %.40s", p);
    }
    CHECK(html && !strstr((const char *)html->data, " onclick=") && !strstr((const char *)html->data, " onload="));
    CHECK(strstr(ST_WEB_CSP, "script-src 'self'") && !strstr(ST_WEB_CSP, "unsafe"));
}

/* ---- against a live server ---------------------------------------------------- */

typedef struct {
    int status;
    st_strbuf raw; /* the whole response, headers lower-cased by h2o */
} resp;

/* One HTTP/1.1 request with Connection: close; reads to EOF (10 s cap). */
static int get(int port, const char *method, const char *path, const char *key, resp *r)
{
    memset(r, 0, sizeof *r);
    st_sb_init(&r->raw);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s\r\n", method, path,
                     key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1)
            break;
        char buf[8192];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0)
            break;
        st_sb_putn(&r->raw, buf, (size_t)got);
    }
    close(fd);
    if (!r->raw.buf || sscanf(r->raw.buf, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    return 0;
}

static int has(const resp *r, const char *s) { return r->raw.buf && strcasestr(r->raw.buf, s) != NULL; }

static void test_server(int port)
{
    resp r;
    CHECK(get(port, "GET", "/", NULL, &r) == 0 && r.status == 200);
    CHECK(has(&r, "content-type: text/html; charset=utf-8\r\n"));
    CHECK(has(&r, "cache-control: no-cache\r\n"));
    CHECK(has(&r, "content-security-policy: " ST_WEB_CSP "\r\n"));
    CHECK(has(&r, "x-content-type-options: nosniff\r\n"));
    const st_web_asset *html = st_web_asset_for_path("/", 1);
    const char *body = r.raw.buf ? strstr(r.raw.buf, "\r\n\r\n") : NULL;
    CHECK(html && body && strcmp(body + 4, (const char *)html->data) == 0);
    st_sb_free(&r.raw);

    CHECK(get(port, "GET", "/ui/app.js?v=1", NULL, &r) == 0 && r.status == 200);
    CHECK(has(&r, "content-type: text/javascript; charset=utf-8\r\n") && has(&r, "content-security-policy: "));
    st_sb_free(&r.raw);
    CHECK(get(port, "HEAD", "/ui/style.css", NULL, &r) == 0 && r.status == 200);
    CHECK(has(&r, "content-type: text/css; charset=utf-8\r\n"));
    st_sb_free(&r.raw);
    CHECK(get(port, "GET", "/ui", NULL, &r) == 0 && r.status == 301 && has(&r, "location: /ui/\r\n"));
    st_sb_free(&r.raw);
    CHECK(get(port, "GET", "/ui/missing.js", NULL, &r) == 0 && r.status == 404);
    CHECK(has(&r, "content-security-policy: ") && has(&r, "content-type: text/plain"));
    st_sb_free(&r.raw);
    CHECK(get(port, "GET", "/ui/sub/app.js", NULL, &r) == 0 && r.status == 404);
    st_sb_free(&r.raw);
    /* Other methods on "/" and unknown paths stay with the API router. */
    CHECK(get(port, "POST", "/", NULL, &r) == 0 && r.status == 404 && has(&r, "application/json"));
    st_sb_free(&r.raw);
    CHECK(get(port, "GET", "/nope", NULL, &r) == 0 && r.status == 404 && has(&r, "application/json"));
    st_sb_free(&r.raw);
    /* The page needs no key; the API still does. */
    CHECK(get(port, "GET", "/v1/models", NULL, &r) == 0 && r.status == 401);
    st_sb_free(&r.raw);
    CHECK(get(port, "GET", "/v1/models", KEY, &r) == 0 && r.status == 200);
    st_sb_free(&r.raw);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    test_embedded_matches_sources();
    test_paths();

    st_tokenizer *tok = fake_tokenizer();
    CHECK(tok != NULL);
    if (!tok)
        return test_done();
    fake_backend *fb = fake_create(4096);
    const char *keys[] = {KEY};
    st_http_server_config cfg = st_http_server_config_default();
    cfg.port = 0;
    cfg.api_keys = keys;
    cfg.n_api_keys = 1;
    cfg.tok = tok;
    cfg.backend = &fb->be;
    cfg.log_requests = 0;
    st_http_server *s = NULL;
    CHECKF(st_http_server_create(&cfg, &s) == ST_OK, "%s", st_errmsg());
    if (s && st_http_server_start(s) == ST_OK) {
        fake_set(fb, &fb->ready, 1);
        test_server(st_http_server_port(s));
    }
    st_http_server_destroy(s);
    fake_destroy(fb);
    st_tok_free(tok);
    return test_done();
}
