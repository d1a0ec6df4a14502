/* Link keys on tcp and shm: a link comes up only when both ends hold the
 * same key; a wrong key, or a key on one end only, is refused by both with
 * an error that names the link key, without retrying; the listener keeps
 * serving honest peers; and a forged tcp RESUME for a live link's id is
 * turned away without disturbing that link. */
#define _GNU_SOURCE
#include "common/st_common.h"
#include "dataplane/tcp_impl.h"
#include "dataplane/transport.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct acc {
    st_listener *l;
    int ms;
    st_link *link;
    int rc;
} acc;

static void *acc_run(void *p)
{
    acc *a = p;
    a->rc = st_accept(a->l, a->ms, &a->link);
    return NULL;
}

static void opts_with(st_link_opts *o, const char *secret)
{
    st_link_opts_default(o);
    o->max_msg = 1 << 20;
    o->rx_bytes = 4 << 20;
    o->sq_depth = 64;
    o->credits = 16;
    if (secret) {
        st_link_key_from_secret(secret, o->key);
        o->has_key = 1;
    }
}

/* Send one message a -> b and wait (bounded) until b has it intact. */
static int pass_one(st_link *a, st_link *b, uint32_t tag)
{
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(tag * 31 + i);
    st_iov v = {buf, sizeof buf, NULL};
    if (st_link_send(a, &v, 1, tag) != ST_OK)
        return 0;
    uint64_t end = st_now_ns() + 5000000000ull;
    st_msg m;
    int got = 0, done = 0;
    st_completion c;
    while (st_now_ns() < end && (!got || !done)) {
        if (st_link_progress(a) != ST_OK || st_link_progress(b) != ST_OK) {
            fprintf(stderr, "link failed: %s / %s\n", st_link_errmsg(a), st_link_errmsg(b));
            return 0;
        }
        if (!got && st_link_recv(b, &m) == ST_OK) {
            got = m.len == sizeof buf && memcmp(m.data, buf, sizeof buf) == 0 ? 1 : -1;
            st_link_release(b, &m);
            if (got < 0)
                return 0;
        }
        if (st_link_poll_cq(a, &c, 1) == 1)
            done = c.status == ST_OK && c.cookie == tag;
        st_link_wait(b, st_link_wait_prepare(b), 1);
    }
    return got == 1 && done;
}

/* Connect with `copts` to a listener with `lopts` on transport tr. Returns
 * connect's code; *link_c / *link_l get both ends when it works. The
 * accept side waits at most accept_ms. */
static int try_link(const char *tr, st_listener *l, const st_link_opts *copts, int accept_ms, st_link **link_c,
                    st_link **link_l, int *accept_rc)
{
    acc a = {.l = l, .ms = accept_ms};
    pthread_t th;
    pthread_create(&th, NULL, acc_run, &a);
    int rc = st_connect(tr, st_listener_addr(l), copts, 10000, link_c);
    pthread_join(th, NULL);
    *link_l = a.link;
    *accept_rc = a.rc;
    return rc;
}

/* The connector's end of the resume check, on its own thread (its redial
 * blocks on the listener's answer, which the main thread's progress
 * gives): echo three messages, breaking the connection after the first. */
typedef struct echo_arg {
    st_link *c;
    int echoed;
    uint64_t reconnects;
} echo_arg;

static void *echo_run(void *p)
{
    echo_arg *e = p;
    st_link *c = e->c;
    uint64_t end = st_now_ns() + 10000000000ull;
    static uint8_t copy[4096];
    st_completion done;
    while (e->echoed < 3 && st_now_ns() < end && st_link_progress(c) == ST_OK) {
        st_msg m;
        if (st_link_recv(c, &m) == ST_OK) {
            size_t n = m.len < sizeof copy ? m.len : sizeof copy;
            memcpy(copy, m.data, n);
            st_link_release(c, &m);
            st_iov v = {copy, n, NULL};
            if (st_link_send(c, &v, 1, 0) != ST_OK)
                break;
            while (st_link_poll_cq(c, &done, 1) == 0 && st_now_ns() < end && st_link_progress(c) == ST_OK)
                st_link_wait(c, st_link_wait_prepare(c), 1);
            if (++e->echoed == 1)
                st_link_debug_drop(c);
            continue;
        }
        st_link_wait(c, st_link_wait_prepare(c), 1);
    }
    st_link_stats st;
    st_link_get_stats(c, &st);
    e->reconnects = st.reconnects;
    return NULL;
}

/* Main thread's end: send message i, wait for its echo. */
static int echo_once(st_link *s, uint32_t tag)
{
    uint8_t buf[700];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(tag * 7 + i);
    st_iov v = {buf, sizeof buf, NULL};
    if (st_link_send(s, &v, 1, tag) != ST_OK)
        return 0;
    uint64_t end = st_now_ns() + 5000000000ull;
    st_msg m;
    while (st_now_ns() < end && st_link_progress(s) == ST_OK) {
        if (st_link_recv(s, &m) == ST_OK) {
            int ok = m.len == sizeof buf && memcmp(m.data, buf, sizeof buf) == 0;
            st_link_release(s, &m);
            return ok;
        }
        st_link_wait(s, st_link_wait_prepare(s), 1);
    }
    fprintf(stderr, "echo %u: %s\n", tag, st_link_errmsg(s));
    return 0;
}

static void test_key_derivation(void)
{
    uint8_t a[32], b[32], c[32];
    st_link_key_from_secret("cluster-secret", a);
    st_link_key_from_secret("cluster-secret", b);
    st_link_key_from_secret("cluster-secreT", c);
    CHECK(memcmp(a, b, 32) == 0 && memcmp(a, c, 32) != 0);
    /* HMAC-SHA256("cluster-secret", "strait/v1/link"), from Python's hmac module */
    static const uint8_t want[4] = {0xc7, 0x75, 0x02, 0xc5};
    CHECK(memcmp(a, want, 4) == 0);
}

static void test_transport(const char *tr, const char *addr)
{
    fprintf(stderr, "-- %s\n", tr);
    st_link_opts ka, kb, none;
    opts_with(&ka, "secret-a");
    opts_with(&kb, "secret-b");
    opts_with(&none, NULL);
    st_listener *l;
    st_link *c = NULL, *s = NULL;
    int arc;
    CHECK(st_listen(tr, addr, &ka, &l) == ST_OK);
    if (!l)
        return;
    int refused_accept_rc = !strcmp(tr, "tcp") ? ST_ETIMEDOUT : ST_EPROTO; /* tcp drops inside the pump */

    /* the same key: a working link, both ways */
    CHECK(try_link(tr, l, &ka, 5000, &c, &s, &arc) == ST_OK && arc == ST_OK);
    CHECK(c && s && pass_one(c, s, 1) && pass_one(s, c, 2));
    if (!strcmp(tr, "tcp") && c && s) { /* a resume runs the key check again and still works */
        echo_arg e = {.c = c};
        pthread_t th;
        pthread_create(&th, NULL, echo_run, &e);
        int ok = 0;
        for (uint32_t i = 0; i < 3; i++)
            ok += echo_once(s, 10 + i);
        pthread_join(th, NULL);
        CHECKF(ok == 3 && e.echoed == 3, "%d echoes back, %d sent", ok, e.echoed);
        CHECKF(e.reconnects >= 1, "reconnects %llu", (unsigned long long)e.reconnects);
    }
    st_link_close(c);
    st_link_close(s);
    CHECK(st_listener_auth_refused(l) == 0);

    /* a different key: refused at once (no retry until the 10 s timeout) */
    uint64_t t0 = st_now_ns();
    int rc = try_link(tr, l, &kb, 500, &c, &s, &arc);
    CHECKF(rc == ST_EPROTO && c == NULL && strstr(st_errmsg(), "link key"), "rc %d: %s", rc, st_errmsg());
    CHECKF(st_now_ns() - t0 < 3000000000ull, "refusal took %.0f ms", (double)(st_now_ns() - t0) / 1e6);
    CHECK(arc == refused_accept_rc && s == NULL);
    CHECK(st_listener_auth_refused(l) == 1);

    /* no key on the connector */
    rc = try_link(tr, l, &none, 500, &c, &s, &arc);
    CHECKF(rc == ST_EPROTO && c == NULL && strstr(st_errmsg(), "requires a link key and this end has none"),
           "rc %d: %s", rc, st_errmsg());
    CHECK(arc == refused_accept_rc && s == NULL);
    CHECK(st_listener_auth_refused(l) == 2);

    /* the listener still serves an honest peer */
    CHECK(try_link(tr, l, &ka, 5000, &c, &s, &arc) == ST_OK && arc == ST_OK);
    CHECK(c && s && pass_one(c, s, 5));
    st_link_close(c);
    st_link_close(s);
    st_listener_close(l);

    /* a key on the connector only */
    CHECK(st_listen(tr, addr, &none, &l) == ST_OK);
    if (!l)
        return;
    rc = try_link(tr, l, &ka, 500, &c, &s, &arc);
    CHECKF(rc == ST_EPROTO && c == NULL && strstr(st_errmsg(), "refused the link key"), "rc %d: %s", rc,
           st_errmsg());
    CHECK(arc == refused_accept_rc && s == NULL);
    CHECK(st_listener_auth_refused(l) == 1);
    /* and without keys on both ends nothing changed */
    CHECK(try_link(tr, l, &none, 5000, &c, &s, &arc) == ST_OK && arc == ST_OK);
    CHECK(c && s && pass_one(c, s, 6));
    st_link_close(c);
    st_link_close(s);
    st_listener_close(l);
}

/* A raw socket that knows a live link's id sends RESUME without the key:
 * the listener answers BYE{KEY}, and the link keeps its connection. */
static void test_forged_resume(void)
{
    fprintf(stderr, "-- forged resume\n");
    st_link_opts k;
    opts_with(&k, "secret-a");
    st_listener *l;
    st_link *c = NULL, *s = NULL;
    int arc;
    CHECK(st_listen("tcp", "127.0.0.1:0", &k, &l) == ST_OK);
    CHECK(try_link("tcp", l, &k, 5000, &c, &s, &arc) == ST_OK && arc == ST_OK);
    if (!c || !s)
        return;
    CHECK(pass_one(c, s, 1));
    const char *la = st_listener_addr(l);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(la, ':') + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    tcp_frame h = {.type = TF_HELLO, .flags = TF_HELLO_RESUME, .credits = 16,
                   .seq = ((tcp_link *)s)->link_id}; /* what a sniffer of the first HELLO would know */
    tcp_frame_seal(&h);
    CHECK(send(fd, &h, sizeof h, MSG_NOSIGNAL) == (ssize_t)sizeof h);
    st_link *none = NULL;
    CHECK(st_accept(l, 300, &none) == ST_ETIMEDOUT && none == NULL); /* pumps the listener */
    tcp_frame r;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 2000) == 1 && recv(fd, &r, sizeof r, MSG_WAITALL) == (ssize_t)sizeof r);
    CHECK(tcp_frame_ok(&r) && r.type == TF_BYE && (r.flags & TF_BYE_KEY));
    CHECK(poll(&p, 1, 2000) == 1 && recv(fd, &r, sizeof r, 0) == 0); /* and closed */
    close(fd);
    CHECK(st_listener_auth_refused(l) == 1);

    /* the live link never noticed */
    CHECK(pass_one(c, s, 2) && pass_one(s, c, 3));
    st_link_stats sc, ss;
    st_link_get_stats(c, &sc);
    st_link_get_stats(s, &ss);
    CHECKF(sc.reconnects == 0 && ss.reconnects == 0, "reconnects %llu/%llu", (unsigned long long)sc.reconnects,
           (unsigned long long)ss.reconnects);
    CHECK(st_link_error(c) == 0 && st_link_error(s) == 0);

    /* a garbage challenge after a HELLO that offers a key is dropped too */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    h = (tcp_frame){.type = TF_HELLO, .flags = TF_HELLO_KEY, .credits = 16, .seq = 12345};
    tcp_frame_seal(&h);
    uint8_t junk[sizeof(tcp_auth)];
    memset(junk, 0xa5, sizeof junk);
    CHECK(send(fd, &h, sizeof h, MSG_NOSIGNAL) == (ssize_t)sizeof h);
    CHECK(send(fd, junk, sizeof junk, MSG_NOSIGNAL) == (ssize_t)sizeof junk);
    CHECK(st_accept(l, 300, &none) == ST_ETIMEDOUT && none == NULL);
    close(fd);
    CHECK(st_listener_auth_refused(l) == 2);
    CHECK(pass_one(c, s, 4));

    st_link_close(c);
    st_link_close(s);
    st_listener_close(l);
}

/* Transports without the handshake refuse a key instead of ignoring it. */
static void test_other_transports(void)
{
    st_link_opts k;
    opts_with(&k, "secret-a");
    st_listener *l = NULL;
    for (const char *const *n = st_transport_names(); *n; n++) {
        if (!strcmp(*n, "tcp") || !strcmp(*n, "shm"))
            continue;
        CHECKF(st_listen(*n, "x", &k, &l) == ST_ENOTSUP && l == NULL && strstr(st_errmsg(), "link key"), "%s: %s",
               *n, st_errmsg());
    }
}

int main(void)
{
    st_log_set_level(getenv("STRAIT_TEST_DEBUG") ? ST_LOG_DEBUG : ST_LOG_ERROR);
    test_key_derivation();
    test_transport("tcp", "127.0.0.1:0");
    char path[64];
    snprintf(path, sizeof path, "@strait-test-link-auth-%d", (int)getpid());
    test_transport("shm", path);
    test_forged_resume();
    test_other_transports();
    return test_done();
}
