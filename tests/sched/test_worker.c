/* The cluster node (sched/cluster/worker.h) against a scripted scheduler
 * made of the real control channel (ctl.h): a wrong token ends the node
 * with ST_EPROTO; a node joins, reports measured hardware and reachable
 * endpoints, answers an assignment with loading then ready, accepts its
 * upstream and connects to `next` (again after the upstream leaves),
 * answers and sends pings, reports a shard it cannot load as failed,
 * rejoins under the same id when the scheduler drops it, and leaves when
 * stopped. Needs the default model (skips without it). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "dataplane/transport.h"
#include "sched/cluster/worker.h"
#include "tests/test.h"

static int load_calls;

static int load(void *ctx, const char *ref, uint64_t model_bytes, int start, int end, st_model **m, st_backend **be)
{
    (void)ctx, (void)model_bytes;
    load_calls++;
    int rc = st_model_load(ref, start, end, m);
    if (rc)
        return rc;
    *be = st_backend_cpu_create(1);
    return ST_OK;
}

static void unload(void *ctx, st_model *m, st_backend *be)
{
    (void)ctx;
    st_backend_destroy(be);
    st_model_free(m);
}

typedef struct {
    st_worker_config c;
    volatile int stop;
    int rc;
    char err[512];
} node;

static void *node_main(void *arg)
{
    node *n = arg;
    n->rc = st_worker_run(&n->c, &n->stop);
    snprintf(n->err, sizeof n->err, "%.500s", st_errmsg());
    return NULL;
}

/* The next message of `type`, answering pings meanwhile; NULL after timeout. */
static st_json *expect(st_ctl_conn *c, const char *type, int timeout_ms, int *pings_seen)
{
    uint64_t end = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (st_now_ns() < end) {
        st_json *m;
        int rc = st_ctl_recv(c, 100, &m);
        if (rc == ST_ETIMEDOUT)
            continue;
        if (rc)
            return NULL;
        const char *t = st_json_get_str(m, "type", "");
        if (!strcmp(t, type))
            return m;
        if (!strcmp(t, "ping")) {
            char mem[64];
            snprintf(mem, sizeof mem, "\"t\":%.0f,\"t_peer\":1", st_json_get_num(m, "t", 0));
            st_ctl_send_simple(c, "pong", mem, 1000);
            if (pings_seen)
                (*pings_seen)++;
        } else {
            fprintf(stderr, "(skipping a '%s' message while waiting for '%s')\n", t, type);
        }
        st_json_free(m);
    }
    return NULL;
}

/* Accept and authenticate the node; its id into node_id. */
static st_ctl_conn *join(int lfd, const char *token, char *node_id)
{
    st_ctl_conn *c;
    if (st_ctl_accept(lfd, 20000, &c) != ST_OK)
        return NULL;
    st_ctl_peer_info peer;
    if (st_ctl_handshake_sched(c, token, 100, 1500, 5000, &peer) != ST_OK) {
        st_ctl_close(c);
        return NULL;
    }
    snprintf(node_id, 33, "%s", peer.node_id);
    return c;
}

/* A state message for epoch: its state string (static), or "" */
static const char *state_of(st_ctl_conn *c, uint64_t epoch, char *error, size_t cap)
{
    static char st[16];
    st[0] = 0;
    st_json *m = expect(c, "state", 30000, NULL);
    if (!m)
        return st;
    CHECKF((uint64_t)st_json_get_num(m, "epoch", -1) == epoch, "state for epoch %.0f, expected %llu",
           st_json_get_num(m, "epoch", -1), (unsigned long long)epoch);
    snprintf(st, sizeof st, "%s", st_json_get_str(m, "state", ""));
    if (error)
        snprintf(error, cap, "%s", st_json_get_str(m, "error", ""));
    st_json_free(m);
    return st;
}

int main(void)
{
    const char *model = test_default_model();
    if (!model)
        TEST_SKIP("the default model is not cached (strait models pull)");
    char dir[] = "/tmp/st_worker_XXXXXX";
    if (!mkdtemp(dir))
        TEST_SKIP("no temporary directory");
    char key[128];
    snprintf(key, sizeof key, "%s/node.key", dir);

    int lfd;
    char bound[128];
    CHECK(st_ctl_listen("127.0.0.1:0", &lfd, bound, sizeof bound) == ST_OK);

    /* 1. a wrong token: the node gives up with the scheduler's reason */
    node n = {.c = st_worker_config_default()};
    n.c.scheduler = bound;
    n.c.token = "the-right-token";
    n.c.key_file = key;
    n.c.name = "w1";
    n.c.port = 0;
    n.c.threads = 1;
    n.c.load = load;
    n.c.unload = unload;
    pthread_t th;
    pthread_create(&th, NULL, node_main, &n);
    char id[33], id2[33];
    st_ctl_conn *c = join(lfd, "another-token", id);
    CHECK(c == NULL);
    pthread_join(th, NULL);
    CHECKF(n.rc == ST_EPROTO, "wrong token: node returned %d (%s)", n.rc, n.err);
    CHECKF(strstr(n.err, "refused"), "wrong token: message '%s'", n.err);

    /* 2. join: hardware and endpoints */
    n.rc = 1;
    pthread_create(&th, NULL, node_main, &n);
    c = join(lfd, "the-right-token", id);
    CHECK(c != NULL);
    if (!c) {
        n.stop = 1;
        pthread_join(th, NULL);
        return test_done();
    }
    CHECK(strlen(id) == 32);
    st_json *m = expect(c, "hw", 10000, NULL);
    st_node_hw hw;
    CHECK(m && st_ctl_hw_decode(m, &hw) == ST_OK);
    st_json_free(m);
    CHECK(!strcmp(hw.name, "w1"));
    CHECKF(hw.flops > 1e6 && hw.mem_bw > 1e6, "flops %g bandwidth %g", hw.flops, hw.mem_bw);
    CHECK(hw.memory_bytes > 0 && hw.usable_bytes > 0 && hw.usable_bytes <= hw.memory_bytes);
    CHECK(hw.start_layer == -1 && hw.end_layer == -1);
    CHECK(hw.n_endpoints >= 1 && !strcmp(hw.endpoints[0].transport, "tcp"));
    CHECKF(!strncmp(hw.endpoints[0].addr, "127.0.0.1:", 10) && strcmp(hw.endpoints[0].addr, "127.0.0.1:0"),
           "advertised tcp endpoint %s", hw.endpoints[0].addr);

    /* 3. an assignment: loading, ready; the upstream is accepted and `next` is
     * dialled, both over links keyed by the cluster token */
    st_link_opts keyed;
    st_link_opts_keyed(&keyed, "tcp", "the-right-token");
    st_listener *next_l;
    CHECK(st_listen("tcp", "127.0.0.1:0", &keyed, &next_l) == ST_OK);
    st_ctl_assign a = {.epoch = 7, .pipeline = 0, .stage = 0, .n_stages = 1, .start = 0, .end = 2};
    snprintf(a.model, sizeof a.model, "%.500s", model);
    snprintf(a.next.transport, sizeof a.next.transport, "tcp");
    snprintf(a.next.addr, sizeof a.next.addr, "%s", st_listener_addr(next_l));
    size_t len;
    char *txt = st_ctl_assign_encode(&a, &len);
    CHECK(txt && st_ctl_send(c, txt, len, 1000) == ST_OK);
    free(txt);
    CHECK(!strcmp(state_of(c, 7, NULL, 0), "loading"));
    CHECK(!strcmp(state_of(c, 7, NULL, 0), "ready"));
    /* an upstream without the token's key is refused, and the node goes on */
    st_link *stranger = NULL;
    CHECK(st_connect("tcp", hw.endpoints[0].addr, NULL, 5000, &stranger) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "link key"), "unkeyed upstream: %s", st_errmsg());
    for (int round = 0; round < 2; round++) { /* again after the upstream left */
        st_link *up = NULL, *down = NULL;
        CHECKF(st_connect("tcp", hw.endpoints[0].addr, &keyed, 5000, &up) == ST_OK, "upstream: %s", st_errmsg());
        CHECKF(st_accept(next_l, 10000, &down) == ST_OK, "round %d: the node did not dial next", round);
        st_link_close(down);
        st_link_close(up);
    }

    /* 4. heartbeats both ways */
    int pings = 0;
    CHECK(st_ctl_send_simple(c, "ping", "\"t\":12345", 1000) == ST_OK);
    m = expect(c, "pong", 5000, &pings);
    CHECK(m && st_json_get_num(m, "t", 0) == 12345 && st_json_get_num(m, "t_peer", 0) > 0);
    st_json_free(m);
    uint64_t t0 = st_now_ns();
    while (pings < 2 && st_now_ns() - t0 < 3000000000ull) {
        m = expect(c, "never", 200, &pings);
        st_json_free(m);
    }
    CHECKF(pings >= 2, "the node sent %d pings in 3 s at a 100 ms heartbeat", pings);

    /* 5. a shard that cannot be loaded is reported, with the reason */
    int calls = load_calls;
    a.epoch = 8;
    snprintf(a.model, sizeof a.model, "%s/no-such-model.gguf", dir);
    txt = st_ctl_assign_encode(&a, &len);
    CHECK(txt && st_ctl_send(c, txt, len, 1000) == ST_OK);
    free(txt);
    char why[256];
    CHECK(!strcmp(state_of(c, 8, NULL, 0), "loading"));
    CHECK(!strcmp(state_of(c, 8, why, sizeof why), "failed"));
    CHECKF(strstr(why, "no-such-model"), "failure reason '%s'", why);
    CHECK(load_calls == calls + 1);

    /* 6. the scheduler drops the node: it rejoins as itself */
    st_ctl_close(c);
    c = join(lfd, "the-right-token", id2);
    CHECK(c != NULL);
    CHECKF(c && !strcmp(id, id2), "rejoined as %s, was %s", c ? id2 : "-", id);
    if (c) {
        m = expect(c, "hw", 10000, NULL);
        CHECK(m != NULL);
        st_json_free(m);
    }

    /* 7. stop: the node says goodbye and returns ST_OK */
    n.stop = 1;
    if (c) {
        m = expect(c, "leave", 5000, NULL);
        CHECK(m != NULL);
        st_json_free(m);
        st_ctl_close(c);
    }
    pthread_join(th, NULL);
    CHECKF(n.rc == ST_OK, "stopped node returned %d (%s)", n.rc, n.err);

    st_listener_close(next_l);
    close(lfd);
    unlink(key);
    char lock[160];
    snprintf(lock, sizeof lock, "%s.lock", key);
    unlink(lock);
    rmdir(dir);
    return test_done();
}
