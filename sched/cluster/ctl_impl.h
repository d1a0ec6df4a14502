/* Control-channel internals shared by ctl.c, ctl_auth.c, ctl_msg.c and
 * ctl_discover.c: address parsing, poll deadlines, hex. Not for other
 * modules (they use ctl.h). */
#ifndef ST_CLUSTER_CTL_IMPL_H
#define ST_CLUSTER_CTL_IMPL_H

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Split "HOST:PORT", "[V6]:PORT", "HOST" or a bare IPv6 literal; a missing
 * port becomes default_port (<0: a missing port is an error). */
int st_ctl_split_addr(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap,
                      int default_port);
/* getaddrinfo of such an address; an empty host or "*" is the wildcard when
 * passive, localhost otherwise. Free *res with freeaddrinfo. */
int st_ctl_resolve(const char *addr, int passive, int socktype, int default_port, struct addrinfo **res);
/* "A.B.C.D:PORT" or "[V6]:PORT". */
void st_ctl_format_sockaddr(const struct sockaddr *sa, char *out, size_t cap);

/* Absolute CLOCK_MONOTONIC deadline for a timeout in ms (<0: none, 0 is returned). */
uint64_t st_ctl_deadline(int timeout_ms);
/* poll() fd for ev until the deadline: 1 ready, 0 timed out, -1 error (errno). */
int st_ctl_wait(int fd, short ev, uint64_t deadline_ns);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void st_ctl_hex(const uint8_t *b, size_t n, char *out);
/* 1 when s is exactly n lowercase hex characters. */
int st_ctl_is_hex(const char *s, size_t n);
/* Decode 2n hex characters into n bytes; ST_EINVAL on a bad character. */
int st_ctl_unhex(const char *s, uint8_t *out, size_t n);

#endif
