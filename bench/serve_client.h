/* The HTTP/1.1 side of the serving load generator: an incremental parser of
 * one response (status line, headers, then a body framed by Content-Length,
 * chunked transfer coding, or the connection's end) that hands body bytes
 * to a server-sent-events splitter, which calls back once per `data:` line.
 *
 * No sockets here: the caller feeds whatever read() returned, so the same
 * code is driven by the epoll loop in serve_bench.c and by unit tests that
 * split a response at every byte. Untrusted input: every length is checked,
 * oversized heads and chunk-size lines are errors, never overreads. */
#ifndef ST_SERVE_CLIENT_H
#define ST_SERVE_CLIENT_H

#include <stddef.h>

#include "common/json.h"

/* Called for each SSE `data:` line with its payload (without "data:" and
 * the optional space; not NUL-terminated). */
typedef void (*st_sse_cb)(void *ctx, const char *data, size_t len);

typedef struct st_http_resp {
    /* results */
    int status;      /* HTTP status, 0 until the head is parsed */
    int keep_alive;  /* the connection may carry another request */
    int done;        /* the whole response has been read */
    st_strbuf body;  /* non-SSE bodies (error objects, /v1/models), capped */
    /* configuration */
    int sse;         /* split a 2xx body into events instead of keeping it */
    st_sse_cb on_event;
    void *ctx;
    /* parser state */
    int phase;             /* head, chunk size, chunk data, chunk CRLF, trailers, body, to-EOF */
    st_strbuf line;        /* a partial head, chunk-size or trailer line */
    st_strbuf sse_line;    /* a partial SSE line of the body */
    long long left;        /* bytes left in this chunk or Content-Length body */
    int chunked;
    int n_head_lines;
    long long content_length; /* -1 when absent */
} st_http_resp;

/* Ready to parse a response (sse: split events on 2xx). */
void st_http_resp_init(st_http_resp *r, int sse, st_sse_cb cb, void *ctx);
void st_http_resp_free(st_http_resp *r);

/* Feed n bytes as read from the socket. Returns ST_OK (r->done tells whether
 * the response is complete; bytes after its end are an error, since the
 * client never pipelines), or ST_EPROTO with a message on a malformed
 * response. */
int st_http_resp_feed(st_http_resp *r, const char *p, size_t n);

/* The connection reached EOF: completes a body read to EOF, else ST_ECONN
 * (the response was cut short). */
int st_http_resp_eof(st_http_resp *r);

#endif
