/* The listening socket of an h2o front end (the API server, the chat
 * proxy): resolved, SO_REUSEADDR, bound, listening, non-blocking. */
#ifndef ST_HTTP_LISTEN_H
#define ST_HTTP_LISTEN_H

/* Listen on host:port (port 0: an ephemeral one). ST_OK with the socket in
 * *fd and the bound port in *bound_port; ST_EINVAL (host does not resolve)
 * or ST_EIO (bind/listen), the message starting with `who` ("http", "chat"). */
int st_http_listen_socket(const char *who, const char *host, int port, int *fd, int *bound_port);

#endif
