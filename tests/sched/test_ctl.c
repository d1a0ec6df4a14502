/* The cluster control channel: framing over loopback TCP (split and
 * coalesced frames, bad lengths, bad JSON), the join handshake between a
 * real node and a real scheduler (and through a tampering relay), the
 * identity file, the hw/assign messages, and LAN discovery on loopback. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../common/json.h"
#include "../../common/st_common.h"
#include "../../sched/cluster/ctl.h"
#include "../test.h"

#define IO_MS 5000

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct pair {
    int lfd;
    char bound[96];
    st_ctl_conn *a, *b; /* a: connecting side, b: accepted side */
} pair;

static int pair_open(pair *p, const char *listen_addr)
{
    memset(p, 0, sizeof *p);
    if (st_ctl_listen(listen_addr, &p->lfd, p->bound, sizeof p->bound) != ST_OK)
        return -1;
    if (st_ctl_connect(p->bound, IO_MS, &p->a) != ST_OK || st_ctl_accept(p->lfd, IO_MS, &p->b) != ST_OK) {
        fprintf(stderr, "pair_open %s: %s\n", p->bound, st_errmsg());
        return -1;
    }
    return 0;
}

static void pair_close(pair *p)
{
    st_ctl_close(p->a);
    st_ctl_close(p->b);
    close(p->lfd);
}

static void put_len(uint8_t *h, uint32_t l)
{
    h[0] = (uint8_t)l;
    h[1] = (uint8_t)(l >> 8);
    h[2] = (uint8_t)(l >> 16);
    h[3] = (uint8_t)(l >> 24);
}

static void write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Receive one message and return its type (static buffer), or "" on error. */
static const char *recv_type(st_ctl_conn *c, int *rc_out, st_json **keep)
{
    static char type[64];
    st_json *m = NULL;
    int rc = st_ctl_recv(c, IO_MS, &m);
    if (rc_out)
        *rc_out = rc;
    type[0] = '\0';
    if (rc == ST_OK) {
        snprintf(type, sizeof type, "%s", st_json_get_str(m, "type", ""));
        if (keep)
            *keep = m;
        else
            st_json_free(m);
    }
    return type;
}

/* ---- framing ------------------------------------------------------------------------- */

static void test_split_and_coalesced(void)
{
    pair p;
    CHECK(pair_open(&p, "127.0.0.1:0") == 0);
    if (!p.a || !p.b)
        return;
    CHECK(strncmp(p.bound, "127.0.0.1:", 10) == 0 && strcmp(p.bound, "127.0.0.1:0") != 0);
    CHECK(strncmp(st_ctl_peer(p.b), "127.0.0.1:", 10) == 0);

    /* one frame, one byte per write: no message until the last byte */
    const char *msg = "{\"type\":\"ping\",\"t\":12345}";
    uint8_t frame[64];
    put_len(frame, (uint32_t)strlen(msg));
    memcpy(frame + 4, msg, strlen(msg));
    size_t n = 4 + strlen(msg);
    int early = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        write_all(st_ctl_fd(p.a), frame + i, 1);
        st_json *m = NULL;
        int rc = st_ctl_recv(p.b, 0, &m);
        early += rc != ST_ETIMEDOUT;
        if (rc == ST_OK)
            st_json_free(m);
    }
    CHECKF(early == 0, "%d partial reads did not report ST_ETIMEDOUT", early);
    write_all(st_ctl_fd(p.a), frame + n - 1, 1);
    st_json *m = NULL;
    CHECK(st_ctl_recv(p.b, IO_MS, &m) == ST_OK);
    if (m) {
        CHECK(strcmp(st_json_get_str(m, "type", ""), "ping") == 0);
        CHECK(st_json_get_num(m, "t", 0) == 12345);
        st_json_free(m);
    }

    /* two frames (and the start of a third) in one write */
    char buf[256];
    const char *m1 = "{\"type\":\"state\",\"state\":\"ready\",\"epoch\":3}", *m2 = "{\"type\":\"leave\"}";
    size_t l1 = strlen(m1), l2 = strlen(m2);
    put_len((uint8_t *)buf, (uint32_t)l1);
    memcpy(buf + 4, m1, l1);
    put_len((uint8_t *)buf + 4 + l1, (uint32_t)l2);
    memcpy(buf + 8 + l1, m2, l2);
    put_len((uint8_t *)buf + 8 + l1 + l2, (uint32_t)l2);
    write_all(st_ctl_fd(p.a), buf, 8 + l1 + l2 + 2);
    int rc;
    CHECK(strcmp(recv_type(p.b, &rc, NULL), "state") == 0);
    CHECK(st_ctl_pending(p.b));
    m = NULL;
    CHECK(st_ctl_recv(p.b, 0, &m) == ST_OK && m && !strcmp(st_json_get_str(m, "type", ""), "leave"));
    st_json_free(m);
    CHECK(!st_ctl_pending(p.b)); /* half a header is not a message */
    write_all(st_ctl_fd(p.a), buf + 8 + l1 + l2 + 2, 2);
    write_all(st_ctl_fd(p.a), m2, l2);
    CHECK(strcmp(recv_type(p.b, &rc, NULL), "leave") == 0);

    /* the API both ways, including a message near the size limit (needs a reader thread
     * for the socket buffers: the other direction is read below after the send) */
    CHECK(st_ctl_send_simple(p.b, "pong", "\"t\":1,\"t_peer\":2", IO_MS) == ST_OK);
    st_json *pm = NULL;
    CHECK(strcmp(recv_type(p.a, &rc, &pm), "pong") == 0);
    if (pm) {
        CHECK(st_json_get_num(pm, "t_peer", 0) == 2);
        st_json_free(pm);
    }
    CHECK(st_ctl_send_simple(p.b, "pong", "\"t\":1,", IO_MS) == ST_EINVAL); /* caller's bad JSON: not sent */
    CHECK(st_ctl_send(p.b, "{}", 0, IO_MS) == ST_EINVAL);
    CHECK(st_ctl_send(p.b, "{}", ST_CTL_MAX_MSG + 1, IO_MS) == ST_EINVAL);

    /* the peer closing is ST_ECONN */
    st_ctl_close(p.a);
    p.a = NULL;
    m = NULL;
    CHECK(st_ctl_recv(p.b, IO_MS, &m) == ST_ECONN);
    pair_close(&p);
}

typedef struct big_rx {
    st_ctl_conn *c;
    int rc;
    size_t len;
} big_rx;

static void *big_reader(void *arg)
{
    big_rx *r = arg;
    st_json *m = NULL;
    r->rc = st_ctl_recv(r->c, IO_MS * 2, &m);
    if (m) {
        const st_json *pad = st_json_get(m, "pad");
        r->len = pad && pad->type == ST_JSON_STRING ? pad->u.str.len : 0;
        st_json_free(m);
    }
    return NULL;
}

static void test_big_message(void)
{
    pair p;
    CHECK(pair_open(&p, "127.0.0.1:0") == 0);
    if (!p.a || !p.b)
        return;
    size_t pad = ST_CTL_MAX_MSG - 64;
    char *msg = malloc(pad + 64);
    int h = snprintf(msg, 64, "{\"type\":\"blob\",\"pad\":\"");
    memset(msg + h, 'x', pad);
    size_t len = (size_t)h + pad;
    memcpy(msg + len, "\"}", 2);
    len += 2;
    big_rx r = {.c = p.b};
    pthread_t t;
    pthread_create(&t, NULL, big_reader, &r);
    CHECK(st_ctl_send(p.a, msg, len, IO_MS * 2) == ST_OK);
    pthread_join(t, NULL);
    CHECKF(r.rc == ST_OK && r.len == pad, "rc %d len %zu: %s", r.rc, r.len, st_errmsg());
    free(msg);
    pair_close(&p);
}

/* Each bad stream makes recv fail with ST_EPROTO, and the peer hears why. */
static void bad_stream(const uint8_t *bytes, size_t n, const char *what, const char *expect_in_msg)
{
    pair p;
    CHECK(pair_open(&p, "127.0.0.1:0") == 0);
    if (!p.a || !p.b)
        return;
    write_all(st_ctl_fd(p.a), bytes, n);
    st_json *m = NULL;
    int rc = st_ctl_recv(p.b, IO_MS, &m);
    CHECKF(rc == ST_EPROTO, "%s: rc %d", what, rc);
    CHECKF(strstr(st_errmsg(), expect_in_msg) != NULL, "%s: message '%s' lacks '%s'", what, st_errmsg(),
           expect_in_msg);
    st_json *e = NULL;
    CHECKF(st_ctl_recv(p.a, IO_MS, &e) == ST_OK && e && !strcmp(st_json_get_str(e, "type", ""), "error"),
           "%s: no error reply", what);
    st_json_free(e);
    CHECK(st_ctl_recv(p.b, 0, &m) == ST_ECONN); /* unusable afterwards */
    pair_close(&p);
}

static void test_bad_frames(void)
{
    uint8_t b[64];
    put_len(b, ST_CTL_MAX_MSG + 1);
    bad_stream(b, 4, "oversize", "length");
    put_len(b, 0xffffffffu);
    bad_stream(b, 4, "huge", "length");
    put_len(b, 0);
    bad_stream(b, 4, "zero", "length");
    const char *cases[][2] = {
        {"{\"type\":\"ping\"", "JSON"},  {"[1,2]", "object"}, {"{\"t\":1}", "type"},
        {"{\"type\":7}", "type"},        {"{\"type\":\"\"}", "type"}, {"{\"type\":\"ok\"} x", "JSON"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        size_t l = strlen(cases[i][0]);
        put_len(b, (uint32_t)l);
        memcpy(b + 4, cases[i][0], l);
        bad_stream(b, 4 + l, cases[i][0], cases[i][1]);
    }
    st_json *m = NULL;
    CHECK(st_ctl_parse("{\"type\":\"hw\"}", 13, &m) == ST_OK);
    st_json_free(m);
    CHECK(st_ctl_parse("{\"type\":\"hw\"}", 0, &m) == ST_EPROTO);
    CHECK(st_ctl_parse("null", 4, &m) == ST_EPROTO);
}

static void test_ipv6(void)
{
    pair p;
    int lfd;
    char bound[96];
    if (st_ctl_listen("[::1]:0", &lfd, bound, sizeof bound) != ST_OK) {
        fprintf(stderr, "note: no IPv6 loopback (%s); IPv6 case skipped\n", st_errmsg());
        return;
    }
    close(lfd);
    CHECK(pair_open(&p, "[::1]:0") == 0);
    CHECK(strncmp(p.bound, "[::1]:", 6) == 0);
    if (p.a && p.b) {
        CHECK(st_ctl_send_simple(p.a, "leave", NULL, IO_MS) == ST_OK);
        int rc;
        CHECK(strcmp(recv_type(p.b, &rc, NULL), "leave") == 0);
        CHECK(strncmp(st_ctl_peer(p.b), "[::1]:", 6) == 0);
    }
    pair_close(&p);

    /* a "[::]" listener takes IPv4 too, and names such a peer in IPv4 form */
    CHECK(st_ctl_listen("[::]:0", &lfd, bound, sizeof bound) == ST_OK);
    char v4[64];
    snprintf(v4, sizeof v4, "127.0.0.1%s", strrchr(bound, ':'));
    st_ctl_conn *c = NULL, *s = NULL;
    CHECKF(st_ctl_connect(v4, IO_MS, &c) == ST_OK && st_ctl_accept(lfd, IO_MS, &s) == ST_OK, "%s", st_errmsg());
    CHECKF(s && strncmp(st_ctl_peer(s), "127.0.0.1:", 10) == 0, "peer %s", st_ctl_peer(s));
    st_ctl_close(c);
    st_ctl_close(s);
    close(lfd);
    c = NULL;
    CHECK(st_ctl_connect("[::1", 100, &c) == ST_EINVAL);
    CHECK(st_ctl_connect("127.0.0.1:99999", 100, &c) == ST_EINVAL);
}

/* ---- identity ---------------------------------------------------------------------------- */

static char tmpdir[256];

static void test_identity(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/a/b/node.key", tmpdir);
    st_ctl_identity id1, id2;
    CHECKF(st_ctl_identity_load(path, &id1) == ST_OK, "%s", st_errmsg());
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(strlen(id1.node_id) == 32 && strlen(id1.pubkey_hex) == 64);
    CHECK(st_ctl_identity_load(path, &id2) == ST_OK);
    CHECK(strcmp(id1.node_id, id2.node_id) == 0 && strcmp(id1.pubkey_hex, id2.pubkey_hex) == 0);
    st_ctl_identity_free(&id2);
    char other[512];
    snprintf(other, sizeof other, "%s/other.key", tmpdir);
    CHECK(st_ctl_identity_load(other, &id2) == ST_OK);
    CHECK(strcmp(id1.node_id, id2.node_id) != 0);
    st_ctl_identity_free(&id2);
    st_ctl_identity_free(&id1);
    FILE *f = fopen(other, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    CHECK(st_ctl_identity_load(other, &id2) == ST_EINVAL);
}

/* Several processes' first start at once (here: threads) must agree on one key. */
typedef struct racer {
    const char *path;
    int rc;
    char node_id[33];
} racer;

static void *race_load(void *arg)
{
    racer *r = arg;
    st_ctl_identity id;
    r->rc = st_ctl_identity_load(r->path, &id);
    if (r->rc == ST_OK) {
        snprintf(r->node_id, sizeof r->node_id, "%s", id.node_id);
        st_ctl_identity_free(&id);
    }
    return NULL;
}

static void test_identity_race(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/race/node.key", tmpdir);
    racer r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (racer){.path = path};
        pthread_create(&t[i], NULL, race_load, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        CHECKF(r[i].rc == ST_OK && !strcmp(r[i].node_id, r[0].node_id), "racer %d: rc %d id %s vs %s", i, r[i].rc,
               r[i].node_id, r[0].node_id);
}

/* ---- handshake --------------------------------------------------------------------------- */

typedef struct sched_side {
    int lfd;
    const char *token;
    int io_ms;
    int rc;
    char err[512];
    st_ctl_peer_info node;
    st_ctl_conn *conn;
} sched_side;

static void *sched_thread(void *arg)
{
    sched_side *s = arg;
    s->rc = st_ctl_accept(s->lfd, IO_MS, &s->conn);
    if (s->rc == ST_OK)
        s->rc = st_ctl_handshake_sched(s->conn, s->token, 250, 1500, s->io_ms, &s->node);
    snprintf(s->err, sizeof s->err, "%s", st_errmsg());
    if (s->rc) { /* a refused node is hung up on */
        st_ctl_close(s->conn);
        s->conn = NULL;
    }
    return NULL;
}

typedef struct node_side {
    const char *addr, *token;
    const st_ctl_identity *id;
    int rc;
    char err[512];
    st_ctl_peer_info sched;
} node_side;

static void run_node(node_side *n)
{
    st_ctl_conn *c = NULL;
    n->rc = st_ctl_connect(n->addr, IO_MS, &c);
    if (n->rc == ST_OK)
        n->rc = st_ctl_handshake_node(c, n->token, n->id, "node-a", IO_MS, &n->sched);
    snprintf(n->err, sizeof n->err, "%s", st_errmsg());
    st_ctl_close(c);
}

/* Relay between a node and the scheduler, rewriting one message kind. */
typedef enum { TAMPER_SIG, TAMPER_NODE_ID, TAMPER_VERSION, TAMPER_FOREIGN_KEY, TAMPER_MALFORMED } tamper;

typedef struct relay {
    int lfd;
    const char *sched_addr;
    tamper what;
    const st_ctl_identity *foreign;
} relay;

static char *rewrite(const st_json *m, tamper what, const st_ctl_identity *foreign)
{
    st_strbuf sb;
    st_sb_init(&sb);
    const char *type = st_json_get_str(m, "type", "");
    if (!strcmp(type, "hello")) {
        const char *id = st_json_get_str(m, "node_id", ""), *pk = st_json_get_str(m, "pubkey", "");
        char id2[33];
        snprintf(id2, sizeof id2, "%s", id);
        if (what == TAMPER_NODE_ID)
            id2[0] = id2[0] == '0' ? '1' : '0';
        if (what == TAMPER_FOREIGN_KEY) { /* a consistent identity whose key the node lacks */
            snprintf(id2, sizeof id2, "%s", foreign->node_id);
            pk = foreign->pubkey_hex;
        }
        if (what == TAMPER_MALFORMED) {
            st_sb_printf(&sb, "{\"type\":\"hello\",\"version\":1,\"node_id\":\"%s\"}", id2);
            return sb.buf;
        }
        st_sb_printf(&sb,
                     "{\"type\":\"hello\",\"version\":%d,\"node_id\":\"%s\",\"pubkey\":\"%s\",\"name\":\"%s\","
                     "\"role\":\"%s\",\"nonce\":\"%s\"}",
                     what == TAMPER_VERSION ? 2 : (int)st_json_get_num(m, "version", 0), id2, pk,
                     st_json_get_str(m, "name", ""), st_json_get_str(m, "role", ""), st_json_get_str(m, "nonce", ""));
    } else if (!strcmp(type, "auth")) {
        char sig[129];
        snprintf(sig, sizeof sig, "%s", st_json_get_str(m, "sig", ""));
        if (what == TAMPER_SIG)
            sig[10] = sig[10] == 'a' ? 'b' : 'a';
        st_sb_printf(&sb, "{\"type\":\"auth\",\"mac\":\"%s\",\"sig\":\"%s\"}", st_json_get_str(m, "mac", ""), sig);
    } else {
        st_sb_puts(&sb, "{\"type\":\"bogus\"}");
    }
    return sb.buf;
}

static void forward_raw(st_ctl_conn *from, st_ctl_conn *to)
{
    st_json *m = NULL;
    if (st_ctl_recv(from, IO_MS, &m) != ST_OK)
        return;
    /* re-send the same members: only error/challenge/welcome pass this way */
    const char *type = st_json_get_str(m, "type", "");
    st_strbuf sb;
    st_sb_init(&sb);
    if (!strcmp(type, "challenge"))
        st_sb_printf(&sb, "{\"type\":\"challenge\",\"nonce\":\"%s\",\"mac\":\"%s\"}", st_json_get_str(m, "nonce", ""),
                     st_json_get_str(m, "mac", ""));
    else {
        st_sb_puts(&sb, "{\"type\":\"error\",\"message\":");
        const char *msg = st_json_get_str(m, "message", "relayed");
        st_sb_json_str(&sb, msg, strlen(msg));
        st_sb_puts(&sb, "}");
    }
    st_ctl_send(to, sb.buf, sb.len, IO_MS);
    st_sb_free(&sb);
    st_json_free(m);
}

static void forward_tampered(st_ctl_conn *from, st_ctl_conn *to, tamper what, const st_ctl_identity *foreign)
{
    st_json *m = NULL;
    if (st_ctl_recv(from, IO_MS, &m) != ST_OK)
        return;
    char *t = rewrite(m, what, foreign);
    st_ctl_send(to, t, strlen(t), IO_MS);
    free(t);
    st_json_free(m);
}

static void *relay_thread(void *arg)
{
    relay *r = arg;
    st_ctl_conn *n = NULL, *s = NULL;
    if (st_ctl_accept(r->lfd, IO_MS, &n) != ST_OK || st_ctl_connect(r->sched_addr, IO_MS, &s) != ST_OK)
        goto out;
    forward_tampered(n, s, r->what, r->foreign); /* hello */
    forward_raw(s, n);                           /* challenge or error */
    forward_tampered(n, s, r->what, r->foreign); /* auth */
    forward_raw(s, n);                           /* welcome (as error: the relay never lets a node in) */
out:
    st_ctl_close(n);
    st_ctl_close(s);
    return NULL;
}

static void test_handshake(const st_ctl_identity *id, const st_ctl_identity *foreign)
{
    int lfd;
    char addr[96];
    CHECK(st_ctl_listen("127.0.0.1:0", &lfd, addr, sizeof addr) == ST_OK);

    /* success: both ends agree on who is who */
    sched_side s = {.lfd = lfd, .token = "sesame", .io_ms = IO_MS};
    pthread_t t;
    pthread_create(&t, NULL, sched_thread, &s);
    node_side n = {.addr = addr, .token = "sesame", .id = id};
    run_node(&n);
    pthread_join(t, NULL);
    CHECKF(n.rc == ST_OK, "node: %s", n.err);
    CHECKF(s.rc == ST_OK, "sched: %s", s.err);
    CHECK(strcmp(s.node.node_id, id->node_id) == 0);
    CHECK(strcmp(s.node.pubkey_hex, id->pubkey_hex) == 0);
    CHECK(strcmp(s.node.name, "node-a") == 0 && strcmp(s.node.role, "worker") == 0);
    CHECK(n.sched.heartbeat_ms == 250 && n.sched.timeout_ms == 1500);
    CHECK(strcmp(n.sched.node_id, id->node_id) == 0);
    st_ctl_close(s.conn);

    /* wrong token: refused on both sides, and both say it is the token */
    s = (sched_side){.lfd = lfd, .token = "sesame", .io_ms = IO_MS};
    pthread_create(&t, NULL, sched_thread, &s);
    n = (node_side){.addr = addr, .token = "open-barley", .id = id};
    run_node(&n);
    pthread_join(t, NULL);
    CHECKF(n.rc == ST_EPROTO && strstr(n.err, "token"), "node: %d %s", n.rc, n.err);
    CHECKF(s.rc == ST_EPROTO && strstr(s.err, "wrong cluster token"), "sched: %d %s", s.rc, s.err);
    st_ctl_close(s.conn);

    /* tampering relays */
    struct {
        tamper what;
        const char *sched_says;
    } cases[] = {
        {TAMPER_SIG, "bad signature"},
        {TAMPER_FOREIGN_KEY, "bad signature"}, /* also breaks the MAC: whichever is checked first */
        {TAMPER_NODE_ID, "node_id does not match"},
        {TAMPER_VERSION, "version mismatch"},
        {TAMPER_MALFORMED, "malformed"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        int rl;
        char raddr[96];
        CHECK(st_ctl_listen("127.0.0.1:0", &rl, raddr, sizeof raddr) == ST_OK);
        relay r = {.lfd = rl, .sched_addr = addr, .what = cases[i].what, .foreign = foreign};
        s = (sched_side){.lfd = lfd, .token = "sesame", .io_ms = IO_MS};
        pthread_t tr;
        pthread_create(&t, NULL, sched_thread, &s);
        pthread_create(&tr, NULL, relay_thread, &r);
        n = (node_side){.addr = raddr, .token = "sesame", .id = id};
        run_node(&n);
        pthread_join(t, NULL);
        pthread_join(tr, NULL);
        int sched_ok = s.rc == ST_EPROTO && (strstr(s.err, cases[i].sched_says) ||
                                            (cases[i].what == TAMPER_FOREIGN_KEY && strstr(s.err, "wrong cluster token")));
        CHECKF(sched_ok, "case %zu: sched rc %d: %s", i, s.rc, s.err);
        CHECKF(n.rc != ST_OK && strstr(n.err, "refused"), "case %zu: node rc %d: %s", i, n.rc, n.err);
        st_ctl_close(s.conn);
        close(rl);
    }

    /* a node that connects and says nothing: the scheduler gives up, naming a timeout */
    s = (sched_side){.lfd = lfd, .token = "sesame", .io_ms = 200};
    pthread_create(&t, NULL, sched_thread, &s);
    st_ctl_conn *mute = NULL;
    CHECK(st_ctl_connect(addr, IO_MS, &mute) == ST_OK);
    pthread_join(t, NULL);
    CHECKF(s.rc == ST_ETIMEDOUT && strstr(s.err, "timeout"), "mute: %d %s", s.rc, s.err);
    st_ctl_close(mute);
    st_ctl_close(s.conn);
    close(lfd);
}

/* ---- hw and assign ------------------------------------------------------------------------ */

static st_node_hw sample_hw(void)
{
    st_node_hw hw;
    memset(&hw, 0, sizeof hw);
    snprintf(hw.name, sizeof hw.name, "gpu-box \"2\"");
    snprintf(hw.host_id, sizeof hw.host_id, "0123456789abcdef");
    snprintf(hw.device, sizeof hw.device, "cuda:0 NVIDIA H100");
    hw.memory_bytes = 85899345920ull;
    hw.usable_bytes = 80000000001ull;
    hw.flops = 3.25e14;
    hw.mem_bw = 2.0e12 / 3.0;
    hw.start_layer = -1;
    hw.end_layer = -1;
    hw.n_endpoints = 2;
    snprintf(hw.endpoints[0].transport, 16, "tcp");
    snprintf(hw.endpoints[0].addr, 128, "10.0.0.7:3000");
    snprintf(hw.endpoints[1].transport, 16, "shm");
    snprintf(hw.endpoints[1].addr, 128, "/strait-node-7");
    return hw;
}

static int decode_text(const char *text, int is_hw, void *out)
{
    st_json *m = NULL;
    int rc = st_ctl_parse(text, strlen(text), &m);
    if (rc)
        return rc;
    rc = is_hw ? st_ctl_hw_decode(m, out) : st_ctl_assign_decode(m, out);
    st_json_free(m);
    return rc;
}

/* Replace the first `from` in text by `to`, decode, and expect ST_EPROTO naming `member`. */
static void expect_bad(const char *text, int is_hw, const char *from, const char *to, const char *member)
{
    const char *at = strstr(text, from);
    CHECKF(at != NULL, "'%s' not in %s", from, text);
    if (!at)
        return;
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_putn(&sb, text, (size_t)(at - text));
    st_sb_puts(&sb, to);
    st_sb_puts(&sb, at + strlen(from));
    union {
        st_node_hw hw;
        st_ctl_assign a;
    } out;
    int rc = decode_text(sb.buf, is_hw, &out);
    CHECKF(rc == ST_EPROTO && strstr(st_errmsg(), member), "%s -> %s: rc %d '%s' (want it to name %s)", from, to,
           rc, st_errmsg(), member);
    st_sb_free(&sb);
}

static void test_hw(void)
{
    st_node_hw hw = sample_hw(), back;
    size_t len;
    char *text = st_ctl_hw_encode(&hw, &len);
    CHECK(text && len == strlen(text));
    memset(&back, 0x55, sizeof back);
    CHECKF(decode_text(text, 1, &back) == ST_OK, "%s", st_errmsg());
    CHECK(strcmp(back.name, hw.name) == 0 && strcmp(back.host_id, hw.host_id) == 0);
    CHECK(strcmp(back.device, hw.device) == 0);
    CHECK(back.memory_bytes == hw.memory_bytes && back.usable_bytes == hw.usable_bytes);
    CHECK(back.flops == hw.flops && back.mem_bw == hw.mem_bw);
    CHECK(back.start_layer == -1 && back.end_layer == -1 && back.n_endpoints == 2);
    for (int i = 0; i < 2; i++)
        CHECK(!strcmp(back.endpoints[i].transport, hw.endpoints[i].transport) &&
              !strcmp(back.endpoints[i].addr, hw.endpoints[i].addr));

    hw.start_layer = 4;
    hw.end_layer = 9;
    hw.n_endpoints = ST_CTL_MAX_TRANSPORTS;
    for (int i = 0; i < ST_CTL_MAX_TRANSPORTS; i++) {
        snprintf(hw.endpoints[i].transport, 16, "rdma");
        snprintf(hw.endpoints[i].addr, 128, "mlx5_%d:1", i);
    }
    free(text);
    text = st_ctl_hw_encode(&hw, &len);
    CHECK(decode_text(text, 1, &back) == ST_OK && back.start_layer == 4 && back.end_layer == 9 &&
          back.n_endpoints == ST_CTL_MAX_TRANSPORTS && !strcmp(back.endpoints[5].addr, "mlx5_5:1"));
    free(text);

    hw = sample_hw();
    text = st_ctl_hw_encode(&hw, &len);
    char long_name[80];
    memset(long_name, 'n', 64);
    snprintf(long_name + 64, 16, "\"");
    char name_field[100];
    snprintf(name_field, sizeof name_field, "\"name\":\"%s", long_name);
    expect_bad(text, 1, "\"name\":\"gpu-box \\\"2\\\"\"", name_field, "name");
    expect_bad(text, 1, "\"name\":", "\"nam\":", "name");
    expect_bad(text, 1, "\"device\":\"cuda", "\"device\":7,\"x\":\"", "device");
    expect_bad(text, 1, "\"memory_bytes\":85899345920", "\"memory_bytes\":-1", "memory_bytes");
    expect_bad(text, 1, "\"usable_bytes\":80000000001", "\"usable_bytes\":1.5", "usable_bytes");
    expect_bad(text, 1, "\"flops\":", "\"flops\":\"fast\",\"x\":", "flops");
    expect_bad(text, 1, "\"mem_bw\":", "\"mem_bw\":-", "mem_bw");
    expect_bad(text, 1, "\"start_layer\":-1", "\"start_layer\":-2", "start_layer");
    expect_bad(text, 1, "\"end_layer\":-1", "\"end_layer\":3", "end_layer");
    expect_bad(text, 1, "\"transport\":\"shm\"", "\"transport\":\"udp\"", "transport");
    expect_bad(text, 1, "\"addr\":\"10.0.0.7:3000\"", "\"addr\":\"\"", "addr");
    expect_bad(text, 1, "\"endpoints\":[", "\"endpoints\":\"none\",\"x\":[", "endpoints");
    expect_bad(text, 1, "\"endpoints\":[",
               "\"endpoints\":[{\"transport\":\"tcp\",\"addr\":\"a\"},{\"transport\":\"tcp\",\"addr\":\"a\"},"
               "{\"transport\":\"tcp\",\"addr\":\"a\"},{\"transport\":\"tcp\",\"addr\":\"a\"},"
               "{\"transport\":\"tcp\",\"addr\":\"a\"},",
               "endpoints");
    free(text);
}

static void test_assign(void)
{
    st_ctl_assign a, back;
    memset(&a, 0, sizeof a);
    a.epoch = 42;
    a.pipeline = 1;
    a.stage = 2;
    a.n_stages = 3;
    a.start = 20;
    a.end = 30;
    snprintf(a.model, sizeof a.model, "hf:Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf");
    a.model_bytes = 639446688;
    snprintf(a.next.transport, 16, "tcp");
    snprintf(a.next.addr, 128, "[fe80::1]:3000");
    size_t len;
    char *text = st_ctl_assign_encode(&a, &len);
    memset(&back, 0x33, sizeof back);
    CHECKF(decode_text(text, 0, &back) == ST_OK, "%s", st_errmsg());
    CHECK(back.epoch == 42 && back.pipeline == 1 && back.stage == 2 && back.n_stages == 3);
    CHECK(back.start == 20 && back.end == 30 && back.model_bytes == a.model_bytes);
    CHECK(!strcmp(back.model, a.model) && !strcmp(back.next.transport, "tcp") &&
          !strcmp(back.next.addr, a.next.addr));

    expect_bad(text, 0, "\"stage\":2", "\"stage\":3", "stage");
    expect_bad(text, 0, "\"n_stages\":3", "\"n_stages\":0", "n_stages");
    expect_bad(text, 0, "\"end\":30", "\"end\":19", "end");
    expect_bad(text, 0, "\"start\":20", "\"start\":-1", "start");
    expect_bad(text, 0, "\"epoch\":42", "\"epoch\":\"42\"", "epoch");
    expect_bad(text, 0, "\"pipeline\":1", "\"pipeline\":true", "pipeline");
    expect_bad(text, 0, "\"transport\":\"tcp\"", "\"transport\":\"carrier-pigeon\"", "next");
    expect_bad(text, 0, "\"model_bytes\":639446688", "\"model_bytes\":1e300", "model_bytes");
    free(text);

    /* a release: start == end, no next hop, and a model name at its limit */
    memset(&a, 0, sizeof a);
    a.epoch = 43;
    a.n_stages = 1;
    a.start = a.end = 0;
    memset(a.model, 'm', sizeof a.model - 1);
    text = st_ctl_assign_encode(&a, &len);
    CHECKF(decode_text(text, 0, &back) == ST_OK, "%s", st_errmsg());
    CHECK(back.start == back.end && back.next.transport[0] == 0 && strlen(back.model) == sizeof a.model - 1);
    char longer[600];
    memset(longer, 'm', 512);
    longer[512] = '\0';
    char field[620];
    snprintf(field, sizeof field, "\"model\":\"m%s", longer + 1);
    expect_bad(text, 0, "\"model\":\"", field, "model");
    free(text);
}

/* ---- discovery ------------------------------------------------------------------------------ */

typedef struct announcer {
    _Atomic int stop;
    int rc;
} announcer;

static void *announce_thread(void *arg)
{
    announcer *a = arg;
    int fd;
    a->rc = st_ctl_announce_open(&fd);
    if (a->rc)
        return NULL;
    /* announce periodically, as a scheduler does, until the node has heard us */
    while (!a->stop) {
        st_ctl_announce_send(fd, "10.9.9.9:1", "another-cluster");
        a->rc = st_ctl_announce_send(fd, "0.0.0.0:3003", "sesame");
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    close(fd);
    return NULL;
}

static void test_discover(void)
{
    /* a free UDP port on loopback for this run */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    getsockname(s, (struct sockaddr *)&sa, &sl);
    close(s);
    char env[64];
    snprintf(env, sizeof env, "127.0.0.1:%d", ntohs(sa.sin_port));
    setenv("STRAIT_ANNOUNCE_ADDR", env, 1);

    announcer a = {0};
    pthread_t t;
    pthread_create(&t, NULL, announce_thread, &a);
    char addr[128] = "";
    int rc = st_ctl_discover("sesame", IO_MS, addr, sizeof addr);
    CHECKF(rc == ST_OK && !strcmp(addr, "127.0.0.1:3003"), "rc %d addr '%s': %s", rc, addr, st_errmsg());
    rc = st_ctl_discover("no-such-cluster", 150, addr, sizeof addr);
    CHECK(rc == ST_ETIMEDOUT);
    a.stop = 1;
    pthread_join(t, NULL);
    CHECKF(a.rc == ST_OK, "announce: %d", a.rc);
    unsetenv("STRAIT_ANNOUNCE_ADDR");
}

int main(void)
{
    st_log_set_level(ST_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/strait-test-ctl-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_split_and_coalesced();
    test_big_message();
    test_bad_frames();
    test_ipv6();
    test_identity();
    test_identity_race();

    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/node1.key", tmpdir);
    snprintf(p2, sizeof p2, "%s/node2.key", tmpdir);
    st_ctl_identity id, foreign;
    CHECK(st_ctl_identity_load(p1, &id) == ST_OK && st_ctl_identity_load(p2, &foreign) == ST_OK);
    test_handshake(&id, &foreign);
    st_ctl_identity_free(&id);
    st_ctl_identity_free(&foreign);

    test_hw();
    test_assign();
    test_discover();

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return test_done();
}
