/* Activation compression between pipeline stages (sched/act_codec.h).
 *
 * Codec: int8 rows round-trip within scale/2 per element (random rows,
 * zero rows, values near FLT_MAX, subnormals); non-finite input is refused;
 * bf16 and f32 are the engine's conversions, bit for bit; a receiver
 * refuses a payload of the wrong length or with a bad scale.
 * Messages: a FORWARD with int8 hidden states decodes against an int8
 * setup, with its length and scales checked.
 * End to end (when the default model is cached): a head in this test runs
 * layers [0,a) and sends hidden states through two stage servers ([a,b)
 * and [b,n), threads behind tcp links, so the middle stage both takes and
 * sends int8), teacher-forced on the single-machine greedy tokens of four
 * prompts (16 steps each). f32 must agree at every step. int8 is lossy, and
 * more than one might hope: SmolLM2's residual stream has an outlier
 * channel (|x| ~ 60-95 where the row's rms is ~5), so the per-row step is
 * ~0.6 and small channels lose precision. Measured with the default model:
 * top-1 agreement 56/64 steps, first greedy difference after 5, 1, 5 and
 * 16+ tokens, the reference token at worst 5th in the int8 logits. The
 * test asserts margins below that: >= 80% agreement, the first token of
 * every prompt, the reference token in the top 10 at every step.
 * The bytes the head sends per token must drop >= 3x against f32 (the
 * payload alone: 4 dim / (dim + 4), ~3.97x; headers and block tables of
 * one-token decode steps take the rest). */
#define _GNU_SOURCE
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/st_common.h"
#include "../../engine/tokenizer.h"
#include "../../sched/act_codec.h"
#include "../../sched/pipeline_msg.h"
#include "../../sched/batch.h"
#include "../../sched/pipeline_stage.h"
#include "../test.h"

/* ---- codec ------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

static float scale_of(const uint8_t *p, int r)
{
    float s;
    memcpy(&s, p + (size_t)r * 4, 4);
    return s;
}

/* Encode x (n, h) as int8, decode, check the contract of every row: scale
 * ~ max|x|/127, |x - x'| <= scale/2 (+ one f32 rounding of q * scale),
 * codes in [-127, 127]. Returns the worst |x - x'| / scale seen. */
static double roundtrip_i8(const char *what, const float *x, int n, int h)
{
    size_t len = st_act_bytes(ST_ACT_I8, n, h);
    CHECK(len == (size_t)n * 4 + (size_t)n * h);
    uint8_t *p = malloc(len + 1);
    float *y = malloc((size_t)n * h * sizeof(float) + 1);
    CHECKF(st_act_encode(p, x, n, h, ST_ACT_I8) == ST_OK, "%s: encode: %s", what, st_errmsg());
    CHECKF(st_act_decode(y, p, len, n, h, ST_ACT_I8) == ST_OK, "%s: decode: %s", what, st_errmsg());
    double worst = 0;
    for (int r = 0; r < n; r++) {
        double amax = 0, s = scale_of(p, r);
        for (int j = 0; j < h; j++)
            amax = fmax(amax, fabs((double)x[(size_t)r * h + j]));
        if (amax == 0) {
            CHECKF(s == 0, "%s: row %d of zeros has scale %g", what, r, s);
        } else {
            CHECKF(s >= amax / 127.5 && s <= amax / 127 * (1 + 1e-6) + FLT_TRUE_MIN, "%s: row %d scale %g for max %g",
                   what, r, s, amax);
        }
        for (int j = 0; j < h; j++) {
            size_t i = (size_t)r * h + j;
            int8_t q = (int8_t)p[(size_t)n * 4 + i];
            CHECKF(q >= -127, "%s: code -128 at %d/%d", what, r, j);
            double err = fabs((double)x[i] - (double)y[i]);
            CHECKF(isfinite(y[i]) && err <= s / 2 + fabs((double)y[i]) * 0x1p-24,
                   "%s: row %d elem %d: %g -> %g (scale %g)", what, r, j, (double)x[i], (double)y[i], s);
            if (s > 0)
                worst = fmax(worst, err / s);
        }
    }
    free(p);
    free(y);
    return worst;
}

static void test_int8_roundtrip(void)
{
    enum { N = 7, H = 96 };
    static float x[N * H];
    /* rows of different magnitudes, one of them all zero, one a lone spike */
    const float mag[N] = {1, 1e-3f, 250, 0, 3e4f, 1e-30f, 1};
    for (int r = 0; r < N; r++)
        for (int j = 0; j < H; j++)
            x[r * H + j] = mag[r] * frand();
    for (int j = 0; j < H; j++)
        x[6 * H + j] = j == 17 ? -5.0f : 0.0f;
    double worst = roundtrip_i8("random rows", x, N, H);
    CHECKF(worst > 0.3 && worst <= 0.5 + 1e-5, "worst error / scale %g (rounding should reach ~0.5)", worst);

    /* the lone spike is exact: -5 -> code -127 */
    uint8_t p[N * 4 + N * H];
    CHECK(st_act_encode(p, x, N, H, ST_ACT_I8) == ST_OK);
    CHECK((int8_t)p[N * 4 + 6 * H + 17] == -127 && (int8_t)p[N * 4 + 6 * H + 16] == 0);

    /* the float range's ends */
    float big[4] = {FLT_MAX, -FLT_MAX, 1.0f, 3e38f};
    roundtrip_i8("near FLT_MAX", big, 1, 4);
    float tiny[5] = {FLT_TRUE_MIN, -3 * FLT_TRUE_MIN, 0, 2 * FLT_TRUE_MIN, FLT_MIN};
    roundtrip_i8("subnormals", tiny, 1, 4);
    roundtrip_i8("subnormals and FLT_MIN", tiny, 1, 5);
    float one_sub[1] = {FLT_TRUE_MIN};
    roundtrip_i8("one subnormal", one_sub, 1, 1);
    CHECK(roundtrip_i8("zero rows", (float[6]){0}, 2, 3) == 0);
}

static void test_nonfinite_refused(void)
{
    float x[2 * 4] = {1, 2, 3, 4, 5, NAN, 7, 8};
    uint8_t p[2 * 4 + 2 * 4];
    CHECK(st_act_encode(p, x, 2, 4, ST_ACT_I8) == ST_EINVAL);
    CHECKF(strstr(st_errmsg(), "row 1") != NULL, "message names the row: %s", st_errmsg());
    x[5] = -INFINITY;
    CHECK(st_act_encode(p, x, 2, 4, ST_ACT_I8) == ST_EINVAL);
    x[5] = 6;
    CHECK(st_act_encode(p, x, 2, 4, ST_ACT_I8) == ST_OK);
}

static void test_bf16_f32_unchanged(void)
{
    enum { N = 3, H = 40 };
    float x[N * H], y[N * H], z[N * H];
    for (int i = 0; i < N * H; i++)
        x[i] = 100 * frand();
    x[5] = NAN; /* f32 and bf16 pass any value, as before */
    uint16_t a[N * H], b[N * H];
    CHECK(st_act_bytes(ST_ACT_BF16, N, H) == sizeof a);
    CHECK(st_act_encode(a, x, N, H, ST_ACT_BF16) == ST_OK);
    st_act_f32_to_bf16(b, x, N * H);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(st_act_decode(y, a, sizeof a, N, H, ST_ACT_BF16) == ST_OK);
    st_act_bf16_to_f32(z, b, N * H);
    CHECK(memcmp(y, z, sizeof y) == 0);
    CHECK(st_act_bytes(ST_ACT_F32, N, H) == sizeof x);
    CHECK(st_act_encode(y, x, N, H, ST_ACT_F32) == ST_OK && memcmp(x, y, sizeof x) == 0);
    CHECK(st_act_decode(z, y, sizeof y, N, H, ST_ACT_F32) == ST_OK && memcmp(x, z, sizeof x) == 0);
    CHECK(st_act_decode(z, y, sizeof y - 4, N, H, ST_ACT_F32) == ST_EPROTO);
    CHECK(st_act_bytes(7, N, H) == 0 && st_act_encode(y, x, N, H, 7) == ST_EINVAL && !st_act_dtype_known(7));
    CHECK(!strcmp(st_act_dtype_name(ST_ACT_I8), "int8"));
}

static void test_receiver_checks(void)
{
    enum { N = 2, H = 8 };
    float x[N * H];
    for (int i = 0; i < N * H; i++)
        x[i] = frand();
    uint8_t p[N * 4 + N * H + 1];
    CHECK(st_act_encode(p, x, N, H, ST_ACT_I8) == ST_OK);
    size_t len = N * 4 + N * H;
    float y[N * H];
    CHECK(st_act_check(p, len, N, H, ST_ACT_I8) == ST_OK);
    CHECK(st_act_check(p, len - 1, N, H, ST_ACT_I8) == ST_EPROTO);
    CHECK(st_act_check(p, len + 1, N, H, ST_ACT_I8) == ST_EPROTO);
    CHECK(st_act_check(p, len, N, H + 1, ST_ACT_I8) == ST_EPROTO);
    const float bad[] = {NAN, -NAN, INFINITY, -1.0f, -FLT_MIN, 3e36f};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        uint8_t q[sizeof p];
        memcpy(q, p, sizeof p);
        memcpy(q + 4, &bad[k], 4); /* row 1's scale */
        for (int i = 0; i < N * H; i++)
            y[i] = 42;
        CHECKF(st_act_decode(y, q, len, N, H, ST_ACT_I8) == ST_EPROTO, "scale %g accepted", (double)bad[k]);
        CHECKF(strstr(st_errmsg(), "row 1") != NULL, "names the row: %s", st_errmsg());
        CHECK(y[0] == 42 && y[N * H - 1] == 42); /* untouched */
    }
    /* the largest accepted scale times the largest code stays finite; -0 is a zero scale */
    float edge[2] = {0x1.020406p+121f, -0.0f};
    memcpy(p, edge, 8);
    memset(p + 8, 0x81, N * H); /* code -127 everywhere */
    CHECK(st_act_decode(y, p, len, N, H, ST_ACT_I8) == ST_OK);
    CHECKF(isfinite(y[0]) && y[0] < -3e38f && y[H] == 0, "edge scales decode to %g, %g", (double)y[0],
           (double)y[H]);
    edge[0] = nextafterf(edge[0], INFINITY);
    memcpy(p, edge, 4);
    CHECK(st_act_decode(y, p, len, N, H, ST_ACT_I8) == ST_EPROTO);
}

/* ---- messages ------------------------------------------------------------------ */

static void test_forward_messages(void)
{
    CHECK(st_pipe_wire_dt(ST_ACT_I8) == ST_WIRE_DT_U8 && st_pipe_act_dt(ST_WIRE_DT_U8) == ST_ACT_I8);
    CHECK(st_pipe_act_dt(st_pipe_wire_dt(ST_ACT_BF16)) == ST_ACT_BF16 && st_pipe_wire_dt(3) == -1);
    CHECK(st_pipe_wire_hidden(ST_ACT_I8, 64) == 68 && st_pipe_wire_hidden(ST_ACT_F32, 64) == 64);

    enum { DIM = 64, NT = 3 };
    static uint8_t buf[1 << 14] __attribute__((aligned(64)));
    size_t meta;
    /* setup naming int8 is accepted; an unknown dtype is not */
    int32_t v[ST_PIPE_SETUP_N] = {4, DIM, 100, 8, 16, 8, 2, ST_ACT_I8, 2};
    st_wire_msg w;
    st_pipe_setup su;
    CHECK(st_pipe_encode_plain(buf, sizeof buf, ST_WIRE_FORWARD, ST_PIPE_F_SETUP, 0, ST_WIRE_DT_I32, 1,
                               ST_PIPE_SETUP_N, &meta) == ST_OK);
    memcpy(buf + meta, v, sizeof v);
    CHECK(st_wire_decode(buf, meta + sizeof v, &w) == ST_OK && st_pipe_setup_decode(&w, &su) == ST_OK);
    CHECK(su.act_dtype == ST_ACT_I8);
    ((int32_t *)(buf + meta))[7] = 3;
    CHECK(st_wire_decode(buf, meta + sizeof v, &w) == ST_OK && st_pipe_setup_decode(&w, &su) == ST_EPROTO);
    su.act_dtype = ST_ACT_I8;

    st_sched_batch sb;
    st_sched_batch_init(&sb);
    st_sched_batch_reset(&sb, 1);
    int32_t tok[NT] = {1, 2, 3}, table[1] = {5};
    st_sampling sp = st_sampling_default();
    st_sched_batch_add(&sb, 1, 1, tok, NT, 0, table, 1, 1, &sp);
    st_sched_batch_seal(&sb);
    float x[NT * DIM];
    for (int i = 0; i < NT * DIM; i++)
        x[i] = frand();
    size_t pay = st_act_bytes(ST_ACT_I8, NT, DIM);
    st_bt_map sent, held; /* the head's and the stage's block tables */
    st_bt_init(&sent, 16, 16);
    st_bt_init(&held, 16, 16);
    CHECK(st_pipe_encode_forward(buf, sizeof buf, &sb, NULL, 0, &sent, 1, ST_WIRE_DT_U8,
                                 st_pipe_wire_hidden(ST_ACT_I8, DIM), &meta) == ST_OK);
    CHECK(st_act_encode(buf + meta, x, NT, DIM, ST_ACT_I8) == ST_OK);
    st_pipe_batch pb = {0};
    CHECK(st_wire_decode(buf, meta + pay, &w) == ST_OK);
    CHECKF(st_pipe_batch_decode(&w, &su, 0, &held, &pb) == ST_OK, "int8 forward: %s", st_errmsg());
    CHECK(pb.act == buf + meta && pb.act_len == pay && pb.act_dtype == ST_ACT_I8 && pb.n_rows == 1);
    float y[NT * DIM];
    CHECK(st_act_decode(y, pb.act, pb.act_len, NT, DIM, ST_ACT_I8) == ST_OK && fabsf(y[7] - x[7]) < 0.01f);

    /* a negative scale in an otherwise valid message: refused, naming the step */
    float neg = -0.5f;
    memcpy(buf + meta + 8, &neg, 4);
    CHECK(st_wire_decode(buf, meta + pay, &w) == ST_OK); /* the payload is outside the checksum */
    CHECK(st_pipe_batch_decode(&w, &su, 0, &held, &pb) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "step 1") && strstr(st_errmsg(), "scale"), "%s", st_errmsg());
    /* int8 data sized as if hidden were dim: refused */
    CHECK(st_pipe_encode_forward(buf, sizeof buf, &sb, NULL, 0, &sent, 2, ST_WIRE_DT_U8, DIM, &meta) == ST_OK);
    CHECK(st_wire_decode(buf, meta + (size_t)NT * DIM, &w) == ST_OK && st_pipe_batch_decode(&w, &su, 0, &held, &pb) ==
                                                                           ST_EPROTO);
    /* bf16 into an int8 stage: refused */
    CHECK(st_pipe_encode_forward(buf, sizeof buf, &sb, NULL, 0, &sent, 3, ST_WIRE_DT_BF16, DIM, &meta) == ST_OK);
    CHECK(st_wire_decode(buf, meta + (size_t)NT * DIM * 2, &w) == ST_OK &&
          st_pipe_batch_decode(&w, &su, 0, &held, &pb) == ST_EPROTO);
    st_pipe_batch_free(&pb);
    st_sched_batch_free(&sb);
    st_bt_free(&sent);
    st_bt_free(&held);
}

/* ---- end to end ----------------------------------------------------------------- */


#define GEN 16      /* greedy steps per prompt */
/* int8 bounds, from measurement (see the header comment) */
#define MATCH_MIN 1      /* first tokens of every prompt that must match */
#define MIN_AGREE_PCT 80 /* top-1 agreement over all steps, percent */
#define MAX_RANK 9       /* the reference token is among the int8 logits' top 10 */
#define BS 16       /* KV block size */

typedef struct stage_thr {
    st_model *m;
    st_backend *be;
    st_listener *l;
    char next[128];
    volatile int stop;
    int rc;
    pthread_t th;
} stage_thr;

static void *stage_main(void *arg)
{
    stage_thr *t = arg;
    st_link *in = NULL, *out = NULL;
    t->rc = st_accept(t->l, 20000, &in);
    if (!t->rc)
        t->rc = st_connect("tcp", t->next, NULL, 20000, &out);
    if (!t->rc)
        t->rc = st_pipe_stage_serve(in, out, t->m, t->be, &t->stop, NULL);
    if (out)
        st_link_close(out);
    if (in)
        st_link_close(in);
    return NULL;
}

static int recv_one(st_link *k, st_msg *m)
{
    for (int spins = 0; spins < 2000; spins++) {
        int rc = st_link_progress(k);
        if (rc)
            return rc;
        if (st_link_recv(k, m) == ST_OK)
            return ST_OK;
        st_link_wait(k, st_link_wait_prepare(k), 50);
    }
    return ST_ETIMEDOUT;
}

static int send_wait(st_link *k, const void *p, size_t n)
{
    st_iov iov = {p, n, NULL};
    int rc;
    while ((rc = st_link_send(k, &iov, 1, 0)) == ST_EAGAIN)
        if ((rc = st_link_progress(k)))
            return rc;
    st_completion c;
    for (int spins = 0; !rc && spins < 2000; spins++) {
        if ((rc = st_link_progress(k)))
            break;
        if (st_link_poll_cq(k, &c, 1) == 1)
            return c.status;
        st_link_wait(k, st_link_wait_prepare(k), 5);
    }
    return rc ? rc : ST_ETIMEDOUT;
}

/* The head of the test pipeline: layers [0, a) here, the rest on two stage
 * threads, act dtype dt on every hop. */
typedef struct rig {
    st_model *head, *mid, *tail;
    st_backend *be;
    st_stage hs;
    stage_thr st[2];
    st_listener *back_l;
    st_link *next, *back;
    int dt, dim, vocab;
    float *h;     /* (max_tokens, dim) head output */
    uint8_t *buf; /* one message */
    size_t cap;
    uint64_t step;
    st_bt_map sent; /* block tables as the stages hold them */
} rig;

enum { MAX_TOKENS = 64, N_BLOCKS = 8 };

static int rig_up(rig *r, const char *path, int a, int b, int dt)
{
    memset(r, 0, sizeof *r);
    st_bt_init(&r->sent, 64, 64);
    r->dt = dt;
    r->be = st_backend_cpu_create(1);
    if (st_model_load(path, 0, a, &r->head) || st_model_load(path, a, b, &r->mid) ||
        st_model_load(path, b, -1, &r->tail))
        return st_err(ST_EINVAL, "loading the three layer ranges: %s", st_errmsg());
    r->dim = r->head->cfg.dim;
    r->vocab = r->head->cfg.vocab_size;
    CHECK(st_stage_init(&r->hs, r->head, r->be, N_BLOCKS, BS, MAX_TOKENS, 0) == ST_OK);
    CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &r->back_l) == ST_OK);
    st_model *ms[2] = {r->mid, r->tail};
    for (int i = 0; i < 2; i++) {
        r->st[i].m = ms[i];
        r->st[i].be = st_backend_cpu_create(1);
        CHECK(st_listen("tcp", "127.0.0.1:0", NULL, &r->st[i].l) == ST_OK);
    }
    snprintf(r->st[0].next, sizeof r->st[0].next, "%s", st_listener_addr(r->st[1].l));
    snprintf(r->st[1].next, sizeof r->st[1].next, "%s", st_listener_addr(r->back_l));
    for (int i = 0; i < 2; i++)
        pthread_create(&r->st[i].th, NULL, stage_main, &r->st[i]);
    CHECK(st_connect("tcp", st_listener_addr(r->st[0].l), NULL, 20000, &r->next) == ST_OK);
    CHECK(st_accept(r->back_l, 20000, &r->back) == ST_OK);
    r->cap = st_pipe_max_msg(r->dim, r->vocab, MAX_TOKENS, 1, N_BLOCKS);
    r->buf = st_xaligned(r->cap);
    r->h = st_xmalloc((size_t)MAX_TOKENS * r->dim * sizeof(float));
    /* the setup round */
    size_t meta;
    int32_t v[ST_PIPE_SETUP_N] = {r->head->cfg.n_layers, r->dim, r->vocab, N_BLOCKS, BS, MAX_TOKENS, 1, dt, a};
    st_pipe_encode_plain(r->buf, r->cap, ST_WIRE_FORWARD, ST_PIPE_F_SETUP, 0, ST_WIRE_DT_I32, 1, ST_PIPE_SETUP_N,
                         &meta);
    memcpy(r->buf + meta, v, sizeof v);
    st_msg m;
    st_wire_msg w;
    int rc = send_wait(r->next, r->buf, meta + sizeof v);
    if (!rc)
        rc = recv_one(r->back, &m);
    if (rc)
        return rc;
    rc = st_wire_decode(m.data, m.len, &w);
    CHECKF(!rc && (w.hdr.flags & ST_PIPE_F_SETUP) && !(w.hdr.flags & ST_PIPE_F_ERROR), "setup with dtype %d: %.*s",
           dt, (int)ST_MIN(w.hdr.payload_len, 300), (const char *)w.payload);
    st_link_release(r->back, &m);
    return ST_OK;
}

static void rig_down(rig *r)
{
    st_link_close(r->next); /* the first stage sees its upstream leave, then the second */
    for (int i = 0; i < 2; i++) {
        pthread_join(r->st[i].th, NULL);
        CHECKF(r->st[i].rc == ST_OK, "stage %d ended with %d", i, r->st[i].rc);
        st_listener_close(r->st[i].l);
        st_backend_destroy(r->st[i].be);
    }
    st_link_close(r->back);
    st_listener_close(r->back_l);
    st_stage_free(&r->hs);
    st_bt_free(&r->sent);
    st_backend_destroy(r->be);
    st_model_free(r->head);
    st_model_free(r->mid);
    st_model_free(r->tail);
    free(r->h);
    free(r->buf);
}

/* One step of one sequence through the pipeline: tokens at positions
 * pos0.., argmax of the last row's logits into *top (-1 on error) and the
 * rank of token `want` among them into *rank (0: it is the top). */
static int rig_step(rig *r, const int32_t *tok, int n, int pos0, int32_t want, int32_t *top, int *rank)
{
    st_sched_batch sb;
    st_sched_batch_init(&sb);
    st_sched_batch_reset(&sb, ++r->step);
    int32_t table[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++)
        table[i] = i;
    st_sampling sp = st_sampling_default();
    st_sched_batch_add(&sb, 1, 1, tok, n, pos0, table, (pos0 + n + BS - 1) / BS, 1, &sp);
    st_sched_batch_seal(&sb);
    size_t meta, pay = st_act_bytes(r->dt, n, r->dim);
    int rc = st_stage_run(&r->hs, &sb.b, NULL, 0, NULL, 0, r->h, ST_ACT_F32);
    if (!rc)
        rc = st_pipe_encode_forward(r->buf, r->cap, &sb, NULL, 0, &r->sent, r->step, st_pipe_wire_dt(r->dt),
                                    st_pipe_wire_hidden(r->dt, r->dim), &meta);
    if (!rc)
        rc = st_act_encode(r->buf + meta, r->h, n, r->dim, r->dt);
    st_sched_batch_free(&sb);
    st_msg m;
    st_wire_msg w;
    if (rc || (rc = send_wait(r->next, r->buf, meta + pay)) || (rc = recv_one(r->back, &m)))
        return rc;
    *top = -1;
    if (!st_wire_decode(m.data, m.len, &w) && !w.hdr.flags && w.hdr.n_tokens == 1 &&
        w.hdr.hidden == (uint32_t)r->vocab) {
        const float *lg = (const float *)w.payload;
        *top = 0;
        *rank = 0;
        for (int i = 1; i < r->vocab; i++)
            if (lg[i] > lg[*top])
                *top = i;
        for (int i = 0; i < r->vocab; i++)
            *rank += lg[i] > lg[want];
    } else {
        fprintf(stderr, "step %llu: reply %.*s\n", (unsigned long long)r->step, (int)ST_MIN(w.hdr.payload_len, 300),
                (const char *)w.payload);
    }
    st_link_release(r->back, &m);
    return *top >= 0 ? ST_OK : ST_EPROTO;
}

static const char *PROMPTS[] = {"The capital of France is", "Once upon a time, in a small village,",
                                "def fibonacci(n):", "1, 2, 3, 4,"};
#define NP ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))

typedef struct ref_seq {
    int32_t tok[MAX_TOKENS]; /* prompt, then GEN greedy tokens of the whole model */
    int n_prompt;
} ref_seq;

/* Single machine: the whole model on one stage. */
static void reference(const char *path, ref_seq *ref)
{
    st_model *m;
    CHECK(st_model_load(path, 0, -1, &m) == ST_OK);
    st_backend *be = st_backend_cpu_create(1);
    st_stage s;
    CHECK(st_stage_init(&s, m, be, N_BLOCKS, BS, MAX_TOKENS, 1) == ST_OK);
    float *lg = st_xmalloc((size_t)m->cfg.vocab_size * sizeof(float));
    for (int p = 0; p < NP; p++) {
        ref_seq *q = &ref[p];
        int n = 0;
        if (st_tok_add_bos(m->tok) && st_tok_bos(m->tok) >= 0)
            q->tok[n++] = st_tok_bos(m->tok);
        n += st_tok_encode(m->tok, PROMPTS[p], strlen(PROMPTS[p]), 0, q->tok + n, MAX_TOKENS - GEN - n);
        q->n_prompt = n;
        for (int g = 0, pos = 0; g < GEN; g++) {
            int len = g == 0 ? n : 1;
            st_sched_batch sb;
            st_sched_batch_init(&sb);
            st_sched_batch_reset(&sb, 1);
            int32_t table[N_BLOCKS] = {0, 1, 2, 3, 4, 5, 6, 7}, row;
            st_sampling sp = st_sampling_default();
            st_sched_batch_add(&sb, 1, 1, q->tok + pos, len, pos, table, (pos + len + BS - 1) / BS, 1, &sp);
            st_sched_batch_seal(&sb);
            row = len - 1;
            CHECK(st_stage_run(&s, &sb.b, NULL, 0, &row, 1, lg, ST_ACT_F32) == ST_OK);
            st_sched_batch_free(&sb);
            int top = 0;
            for (int i = 1; i < m->cfg.vocab_size; i++)
                if (lg[i] > lg[top])
                    top = i;
            q->tok[n + g] = top;
            pos += len;
        }
    }
    free(lg);
    st_stage_free(&s);
    st_backend_destroy(be);
    st_model_free(m);
}

/* Teacher-forced on ref: top-1 agreement per step, first mismatch per
 * prompt, the worst rank of the reference's token among this pipeline's
 * logits, and the head's bytes on the wire per token sent. */
static void run_pipeline(const char *path, int a, int b, int dt, const ref_seq *ref, int *agree, int *steps,
                         int first_miss[NP], int *worst_rank, double *bytes_per_tok)
{
    rig r;
    int rc = rig_up(&r, path, a, b, dt);
    CHECKF(rc == ST_OK, "pipeline up (%s): %s", st_act_dtype_name(dt), st_errmsg());
    if (rc)
        return;
    st_link_stats s0, s1;
    st_link_get_stats(r.next, &s0);
    long tokens = 0;
    *agree = *steps = *worst_rank = 0;
    for (int p = 0; p < NP; p++) {
        const ref_seq *q = &ref[p];
        first_miss[p] = GEN;
        for (int g = 0, pos = 0; g < GEN; g++) {
            int len = g == 0 ? q->n_prompt : 1;
            int32_t top;
            int rank = 0;
            rc = rig_step(&r, q->tok + pos, len, pos, q->tok[q->n_prompt + g], &top, &rank);
            CHECKF(rc == ST_OK, "%s step: %s", st_act_dtype_name(dt), st_errmsg());
            if (rc)
                break;
            tokens += len;
            pos += len;
            (*steps)++;
            *worst_rank = ST_MAX(*worst_rank, rank);
            if (top == q->tok[q->n_prompt + g])
                (*agree)++;
            else if (first_miss[p] == GEN)
                first_miss[p] = g;
        }
    }
    st_link_get_stats(r.next, &s1);
    *bytes_per_tok = tokens ? (double)(s1.bytes_tx - s0.bytes_tx) / (double)tokens : 0;
    rig_down(&r);
}

static int e2e(void)
{
    const char *path = test_default_model();
    if (access(path, R_OK) != 0)
        return 77;
    static ref_seq ref[NP];
    reference(path, ref);
    st_model *m;
    CHECK(st_model_load(path, 0, 1, &m) == ST_OK);
    int n = m->cfg.n_layers, dim = m->cfg.dim;
    st_model_free(m);
    int a = n / 3, b = (2 * n) / 3;
    const int dts[3] = {ST_ACT_F32, ST_ACT_BF16, ST_ACT_I8};
    double bpt[3];
    int agree[3], steps[3], miss[3][NP], rank[3];
    for (int d = 0; d < 3; d++) {
        run_pipeline(path, a, b, dts[d], ref, &agree[d], &steps[d], miss[d], &rank[d], &bpt[d]);
        fprintf(stderr, "%-5s layers [0,%d) [%d,%d) [%d,%d): top-1 agreement %d/%d steps, first mismatch per prompt:",
                st_act_dtype_name(dts[d]), a, a, b, b, n, agree[d], steps[d]);
        for (int p = 0; p < NP; p++)
            fprintf(stderr, " %d", miss[d][p]);
        fprintf(stderr, " (of %d), reference token's worst rank %d, head sends %.1f bytes/token\n", GEN, rank[d],
                bpt[d]);
    }
    CHECKF(agree[0] == steps[0] && steps[0] == NP * GEN, "f32 pipeline is exact: %d/%d", agree[0], steps[0]);
    CHECKF(agree[2] * 100 >= steps[2] * MIN_AGREE_PCT && steps[2] == NP * GEN, "int8 top-1 agreement %d/%d < %d%%",
           agree[2], steps[2], MIN_AGREE_PCT);
    CHECKF(rank[2] <= MAX_RANK, "int8: the single machine's token ranks %d in the int8 logits (> %d)", rank[2],
           MAX_RANK);
    for (int p = 0; p < NP; p++)
        CHECKF(miss[2][p] >= MATCH_MIN, "int8: prompt %d differs at token %d (< %d)", p, miss[2][p], MATCH_MIN);
    double ratio = bpt[0] / bpt[2];
    fprintf(stderr, "bytes per token f32/int8 = %.2f (payload alone %.2f), f32/bf16 = %.2f\n", ratio,
            4.0 * dim / (dim + 4), bpt[0] / bpt[1]);
    CHECKF(ratio >= 3.0, "int8 saves only %.2fx of the head's bytes against f32", ratio);
    return 0;
}
int main(void)
{
    test_int8_roundtrip();
    test_nonfinite_refused();
    test_bf16_f32_unchanged();
    test_receiver_checks();
    test_forward_messages();
    if (e2e() == 77)
        fprintf(stderr, "SKIP end to end: the default model is not cached (%s; run: strait models pull)\n",
                test_default_model());
    return test_done();
}

