/* Node clock offsets from round trips (sched/cluster/clock_sync.h) and the
 * trace message a node ships them with (ctl.h "trace"): the min-RTT sample
 * of the window wins, old samples age out, bad samples are refused; trace
 * messages round-trip and every malformed member is named. */
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"
#include "common/trace.h"
#include "sched/cluster/clock_sync.h"
#include "sched/cluster/ctl.h"
#include "tests/test.h"

static void test_estimate(void)
{
    st_clock_est e;
    memset(&e, 0, sizeof e);
    int64_t off;
    uint64_t unc;
    CHECK(st_clock_est_get(&e, 1000, &off, &unc) == ST_ENOENT);
    const uint64_t s = 1000000000ull, T = 100 * s;
    /* the node's clock is 5 ms ahead; a slow round trip with an asymmetric delay, then a fast one */
    CHECK(st_clock_est_add(&e, T, T + 5000000 + 9000000, T + 10000000) == ST_OK); /* rtt 10 ms, off 9 ms */
    CHECK(st_clock_est_get(&e, T + 10000000, &off, &unc) == ST_OK);
    CHECK(off == 9000000 && unc == 5000000);
    CHECK(st_clock_est_add(&e, T + s, T + s + 5000000 + 100000, T + s + 200000) == ST_OK); /* rtt 200 us */
    CHECK(st_clock_est_get(&e, T + 2 * s, &off, &unc) == ST_OK);
    CHECKF(off == 5000000 && unc == 100000, "offset %lld, uncertainty %llu", (long long)off, (unsigned long long)unc);
    /* a slower sample later does not replace the best one ... */
    CHECK(st_clock_est_add(&e, T + 2 * s, T + 2 * s + 5000000 + 400000, T + 2 * s + 1000000) == ST_OK);
    CHECK(st_clock_est_get(&e, T + 3 * s, &off, &unc) == ST_OK && unc == 100000);
    /* ... until the best one leaves the window */
    CHECK(st_clock_est_get(&e, T + s + 200000 + ST_CLOCK_WINDOW_NS, &off, &unc) == ST_OK);
    CHECKF(unc == 500000 && off == 4900000, "after the window: offset %lld, uncertainty %llu", (long long)off,
           (unsigned long long)unc);
    CHECK(st_clock_est_get(&e, T + 3 * s + ST_CLOCK_WINDOW_NS, &off, &unc) == ST_ENOENT);
    /* refused: received before sent, no send time, no peer time */
    CHECK(st_clock_est_add(&e, 10, 5, 9) == ST_EINVAL);
    CHECK(st_clock_est_add(&e, 0, 5, 9) == ST_EINVAL);
    CHECK(st_clock_est_add(&e, 1, 0, 9) == ST_EINVAL);
    /* a fresh estimate (a rejoined node's) knows nothing until its first sample */
    st_clock_est f;
    memset(&f, 0, sizeof f);
    CHECK(st_clock_est_get(&f, T, &off, &unc) == ST_ENOENT);
    CHECK(st_clock_est_add(&f, T, T - 3000, T + 2000) == ST_OK);
    CHECK(st_clock_est_get(&f, T + 2000, &off, &unc) == ST_OK && off == -4000 && unc == 1000);
}

static int decode_text(const char *text, st_ctl_trace *t)
{
    st_json *m = NULL;
    if (st_ctl_parse(text, strlen(text), &m) != ST_OK)
        return -1000;
    int rc = st_ctl_trace_decode(m, t);
    st_json_free(m);
    return rc;
}

static void test_trace_message(void)
{
    st_trace_rec r[2] = {
        {.ts_ns = 7000000123ull, .dur_ns = 55, .step = 3, .kind = ST_TK_STAGE, .phase = 'X', .stage = 15,
         .n_tokens = 4, .n_seqs = 1, .aux = 9},
        {.ts_ns = 6999999999ull, .req = 9, .kind = ST_TK_RECEIVED, .phase = 'i', .stage = -1, .bytes = 77},
    };
    uint32_t tids[2] = {2, 1}, th[1] = {2};
    char names[1][48] = {"stage 15..30"};
    size_t len;
    char *text = st_ctl_trace_encode("node-a", r, tids, 2, th, (const char(*)[48])names, 1, &len);
    CHECK(text && strstr(text, "\"t_s\":6,"));
    st_ctl_trace t;
    CHECK(text && decode_text(text, &t) == ST_OK);
    if (text && t.recs) {
        CHECK(!strcmp(t.node, "node-a") && t.n == 2 && t.n_threads == 1 && t.thread_tid[0] == 2);
        CHECK(!strcmp(t.thread_name[0], "stage 15..30"));
        CHECK(!memcmp(&t.recs[0], &r[0], sizeof r[0]) && !memcmp(&t.recs[1], &r[1], sizeof r[1]));
        CHECK(t.tids[0] == 2 && t.tids[1] == 1);
        st_ctl_trace_free(&t);
    }
    free(text);
    CHECK(st_ctl_trace_encode("n", r, NULL, ST_CTL_TRACE_MAX_EVENTS + 1, NULL, NULL, 0, &len) == NULL);
    struct {
        const char *text, *names;
    } bad[] = {
        {"{\"type\":\"trace\",\"t_s\":0,\"events\":[]}", "trace.node"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"events\":[]}", "trace.t_s"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":-1,\"events\":[]}", "trace.t_s"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0}", "trace.events"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[1,2,3]]}", "trace.events[0]"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0,0,99,88,0,0,0,0,0,0,0,0,1]]}", "kind"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0,0,18,77,0,0,0,0,0,0,0,0,1]]}", "phase"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0,0,18,88,0,0,0,-2,0,0,0,0,1]]}", "stage"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[-1,0,18,88,0,0,0,0,0,0,0,0,1]]}", "ts"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0.5,0,18,88,0,0,0,0,0,0,0,0,1]]}", "ts"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0,0,18,88,0,0,4294967296,0,0,0,0,0,1]]}", "pipe"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[[0,1e300,18,88,0,0,0,0,0,0,0,0,1]]}", "dur"},
        {"{\"type\":\"trace\",\"node\":\"a\",\"t_s\":0,\"events\":[],\"threads\":[[1]]}", "threads[0]"},
        {"{\"type\":\"trace\",\"node\":\"a\\u0001\",\"t_s\":0,\"events\":[]}", "trace.node"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        int rc = decode_text(bad[i].text, &t);
        CHECKF(rc == ST_EPROTO, "accepted (%d): %s", rc, bad[i].text);
        CHECKF(strstr(st_errmsg(), bad[i].names) != NULL, "%s: message '%s' does not name %s", bad[i].text,
               st_errmsg(), bad[i].names);
    }
}

int main(void)
{
    test_estimate();
    test_trace_message();
    return test_done();
}
