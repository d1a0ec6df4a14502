/* Block tables on both ends of a pipeline (sched/block_tables.h) and the
 * FORWARD records that carry only their deltas (sched/pipeline_msg.h):
 * the map against a plain reference under random operations, then a head
 * and two stages over many random steps (growth, preemption, release)
 * where every stage must see exactly the batcher's tables, then refusals. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/st_common.h"
#include "../../sched/block_tables.h"
#include "../../sched/pipeline_msg.h"
#include "../test.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* ---- the map against a reference ------------------------------------------------ */
enum { KEYS = 40, MAXB = 24 };

static void test_map_random(void)
{
    st_bt_map m;
    st_bt_init(&m, 30, MAXB);
    int held[KEYS] = {0}, len[KEYS] = {0}, n_held = 0;
    int32_t ref[KEYS][MAXB], ids[MAXB];
    int bad = 0;
    for (int it = 0; it < 200000; it++) {
        int k = (int)rnd(KEYS), op = (int)rnd(10);
        uint64_t key = (uint64_t)k * 0x100000001ull + 7; /* collide in low bits */
        int n = (int)rnd(MAXB + 3);
        for (int i = 0; i < n && i < MAXB; i++)
            ids[i] = (int32_t)rnd(1000);
        if (op < 3) {
            int rc = st_bt_reset(&m, key, ids, n);
            int want = n > MAXB || (!held[k] && n_held >= 30) ? ST_ERANGE : ST_OK;
            bad += rc != want;
            if (!rc) {
                n_held += !held[k];
                held[k] = 1, len[k] = n;
                memcpy(ref[k], ids, (size_t)n * sizeof *ids);
            }
        } else if (op < 7) {
            n %= 5;
            int rc = st_bt_append(&m, key, ids, n);
            int want = !held[k] ? ST_ENOENT : len[k] + n > MAXB ? ST_ERANGE : ST_OK;
            bad += rc != want;
            if (!rc) {
                memcpy(ref[k] + len[k], ids, (size_t)n * sizeof *ids);
                len[k] += n;
            }
        } else {
            st_bt_drop(&m, key);
            n_held -= held[k];
            held[k] = 0;
        }
        if (it % 97 == 0 || op >= 7) { /* everything still findable, nothing extra */
            for (int j = 0; j < KEYS; j++) {
                int got;
                const int32_t *t = st_bt_get(&m, (uint64_t)j * 0x100000001ull + 7, &got);
                if (held[j] != (t != NULL) || (t && (got != len[j] || memcmp(t, ref[j], (size_t)got * 4))))
                    bad++;
            }
            bad += m.n_used != (size_t)n_held;
        }
    }
    CHECKF(bad == 0, "%d disagreements with the reference", bad);
    st_bt_free(&m);
}

static void test_delta_start(void)
{
    st_bt_map m;
    st_bt_init(&m, 4, 8);
    int32_t a[4] = {3, 1, 4, 1}, b[4] = {3, 1, 5, 9};
    CHECK(st_bt_delta_start(&m, 9, a, 4) == -1); /* unknown: whole table */
    CHECK(st_bt_reset(&m, 9, a, 2) == ST_OK);
    CHECK(st_bt_delta_start(&m, 9, a, 4) == 2);  /* held {3,1}: send {4,1} */
    CHECK(st_bt_delta_start(&m, 9, b, 4) == 2);
    CHECK(st_bt_delta_start(&m, 9, a, 1) == -1); /* shrank: whole table */
    CHECK(st_bt_reset(&m, 9, a, 3) == ST_OK);
    CHECK(st_bt_delta_start(&m, 9, b, 4) == -1); /* {3,1,4} is not a prefix of b */
    CHECK(st_bt_reset(&m, 9, NULL, 0) == ST_OK);
    CHECK(st_bt_delta_start(&m, 9, b, 4) == 0);  /* an empty table is everyone's prefix */
    st_bt_free(&m);
}

/* ---- a head and two stages over random steps -------------------------------------- */
enum { NB = 64, BS = 4, MAX_TOK = 64, MAX_SEQ = 8, SEQS = 12 };

typedef struct sim_seq {
    int live;      /* holds blocks (its table below) */
    int n_tok;     /* tokens whose KV is placed */
    int32_t table[NB];
    int n_blocks;
} sim_seq;

static const st_pipe_setup SU = {4, 8, 100, NB, BS, MAX_TOK, MAX_SEQ, ST_ACT_F32, 0};

/* Decode buf on a stage holding `held`; every step record's table must be
 * the batch's. Returns the number of mismatches (or 1000 on an error). */
static int stage_check(const uint8_t *buf, size_t len, st_bt_map *held, const st_sched_batch *sb, st_pipe_batch *pb)
{
    st_wire_msg w;
    if (st_wire_decode(buf, len, &w) || st_pipe_batch_decode(&w, &SU, 1, held, pb)) {
        fprintf(stderr, "stage refused a step: %s\n", st_errmsg());
        return 1000;
    }
    int bad = pb->b.n_seqs != sb->b.n_seqs;
    for (int i = 0; !bad && i < sb->b.n_seqs; i++) {
        const st_batch_seq *x = &sb->seqs[i], *y = &pb->b.seqs[i];
        bad += x->n_blocks != y->n_blocks || x->pos0 != y->pos0 || x->n_tokens != y->n_tokens ||
               memcmp(x->block_table, y->block_table, (size_t)x->n_blocks * 4);
    }
    return bad;
}

static void test_head_and_stages(void)
{
    sim_seq q[SEQS] = {0};
    int owner[NB];
    for (int i = 0; i < NB; i++)
        owner[i] = -1;
    st_bt_map sent, held1, held2;
    int max_tables, max_blocks;
    st_pipe_bt_limits(NB, MAX_SEQ, &max_tables, &max_blocks);
    st_bt_init(&sent, max_tables, max_blocks);
    st_bt_init(&held1, max_tables, max_blocks);
    st_bt_init(&held2, max_tables, max_blocks);
    st_sched_batch sb;
    st_sched_batch_init(&sb);
    st_pipe_batch pb1 = {0}, pb2 = {0};
    size_t cap = 1 << 16;
    uint8_t *buf = st_xaligned(cap), *buf2 = st_xaligned(cap);
    uint64_t rel[SEQS];
    int n_rel = 0, bad = 0, steps = 0, resets = 0;
    uint64_t ids_sent = 0, ids_whole = 0;
    int32_t tok[MAX_TOK];
    for (int i = 0; i < MAX_TOK; i++)
        tok[i] = i % 100;
    st_sampling sp = st_sampling_default();
    for (int it = 0; it < 3000; it++) {
        st_sched_batch_reset(&sb, (uint64_t)it + 1);
        int rows = 0;
        for (int k = 0; k < SEQS && sb.b.n_seqs < MAX_SEQ; k++) {
            sim_seq *s = &q[k];
            int r = (int)rnd(8);
            if (r == 0 && s->live) { /* finished or preempted: blocks back, a release */
                for (int j = 0; j < s->n_blocks; j++)
                    owner[s->table[j]] = -1;
                s->live = 0, s->n_blocks = 0, s->n_tok = 0;
                rel[n_rel++] = (uint64_t)k + 1000;
                continue;
            }
            if (r == 7 && s->live) { /* its table replaced without a release: the head must notice */
                for (int j = 0; j < s->n_blocks; j++)
                    owner[s->table[j]] = -1;
                s->n_blocks = 0, s->n_tok = 0;
            } else if (r > 4) {
                continue; /* not in this step */
            }
            int n = s->live ? 1 + (int)rnd(3) : 1 + (int)rnd(12);
            if (rows + n > MAX_TOK)
                continue;
            int need = (s->n_tok + n + BS - 1) / BS;
            int ok = 1;
            while (ok && s->n_blocks < need) { /* take free blocks, lowest random start */
                int b0 = (int)rnd(NB), b;
                for (b = 0; b < NB && owner[(b0 + b) % NB] >= 0; b++)
                    ;
                if (b == NB)
                    ok = 0;
                else
                    owner[(b0 + b) % NB] = k, s->table[s->n_blocks++] = (int32_t)((b0 + b) % NB);
            }
            if (!ok)
                continue;
            s->live = 1;
            st_sched_batch_add(&sb, k, (uint64_t)k + 1000, tok, n, s->n_tok, s->table, s->n_blocks, 1, &sp);
            ids_whole += (uint64_t)s->n_blocks;
            s->n_tok += n;
            rows += n;
        }
        if (!sb.b.n_seqs)
            continue;
        st_sched_batch_seal(&sb);
        size_t meta;
        if (st_pipe_forward_meta_size(&sb, n_rel) + (size_t)rows * 4 > cap ||
            st_pipe_encode_forward(buf, cap, &sb, rel, n_rel, &sent, (uint64_t)it + 1, ST_WIRE_DT_I32, 1, &meta)) {
            bad++;
            break;
        }
        n_rel = 0;
        memcpy(buf + meta, tok, (size_t)rows * 4);
        steps++;
        st_wire_msg w;
        size_t off = 0;
        st_wire_seq rec;
        CHECK(st_wire_decode(buf, meta + (size_t)rows * 4, &w) == ST_OK);
        while (st_wire_seq_next(&w, &off, &rec)) {
            ids_sent += rec.n_blocks;
            resets += (rec.flags & ST_PIPE_REC_RESET) != 0;
        }
        bad += stage_check(buf, meta + (size_t)rows * 4, &held1, &sb, &pb1);
        /* the next stage gets the same records re-encoded (hidden states instead of ids) */
        size_t meta2;
        if (st_pipe_reencode_forward(buf2, cap, &w, ST_WIRE_DT_I32, 1, &meta2)) {
            bad++;
            break;
        }
        memcpy(buf2 + meta2, tok, (size_t)rows * 4);
        bad += stage_check(buf2, meta2 + (size_t)rows * 4, &held2, &sb, &pb2);
        if (bad)
            break;
    }
    CHECKF(bad == 0, "%d mismatches between the batcher's tables and a stage's", bad);
    CHECKF(steps > 1000 && resets > 50, "%d steps, %d resets: the simulation did too little", steps, resets);
    CHECKF(ids_sent * 2 < ids_whole, "%llu block ids sent for %llu in whole tables: deltas save too little",
           (unsigned long long)ids_sent, (unsigned long long)ids_whole);
    fprintf(stderr, "deltas: %d steps, %llu block ids sent instead of %llu, %d whole tables\n", steps,
            (unsigned long long)ids_sent, (unsigned long long)ids_whole, resets);
    /* everyone leaves: the releases reach both stages, nothing is held */
    st_sched_batch_reset(&sb, 99999);
    for (int k = 0; k < SEQS; k++)
        if (q[k].live)
            rel[n_rel++] = (uint64_t)k + 1000;
    int32_t t0 = 0;
    st_sched_batch_add(&sb, 99, 99, tok, 1, 0, &t0, 1, 1, &sp);
    st_sched_batch_seal(&sb);
    size_t meta;
    CHECK(st_pipe_encode_forward(buf, cap, &sb, rel, n_rel, &sent, 99999, ST_WIRE_DT_I32, 1, &meta) == ST_OK);
    memcpy(buf + meta, tok, 4);
    CHECK(stage_check(buf, meta + 4, &held1, &sb, &pb1) == 0);
    CHECKF(sent.n_used == 1 && held1.n_used == 1, "after the releases the head holds %zu tables, a stage %zu",
           sent.n_used, held1.n_used);
    st_pipe_batch_free(&pb1);
    st_pipe_batch_free(&pb2);
    st_sched_batch_free(&sb);
    st_bt_free(&sent);
    st_bt_free(&held1);
    st_bt_free(&held2);
    free(buf);
    free(buf2);
}

/* ---- refusals ---------------------------------------------------------------------- */
/* One hand-made FORWARD of token ids: records given as (seq, flags, rows,
 * blocks...). */
typedef struct rec_spec {
    uint64_t seq;
    uint32_t flags, pos, rows, n_blocks;
    uint32_t ids[4];
} rec_spec;

static int decode_specs(const rec_spec *r, int n, st_bt_map *held)
{
    static uint8_t buf[8192];
    uint32_t rows = 0;
    for (int i = 0; i < n; i++)
        rows += r[i].rows;
    st_wire_hdr h = {.version = ST_WIRE_VERSION, .kind = ST_WIRE_FORWARD, .n_seqs = (uint32_t)n, .step_id = 5,
                     .n_tokens = rows, .hidden = 1, .dtype = ST_WIRE_DT_I32, .payload_len = rows * 4ull};
    st_wire_writer w;
    st_wire_writer_init(&w, buf, sizeof buf, &h);
    for (int i = 0; i < n; i++) {
        st_wire_seq s = {.seq_id = r[i].seq,
                         .flags = r[i].flags,
                         .first_pos = r[i].pos,
                         .n_tokens = r[i].rows,
                         .n_blocks = r[i].n_blocks};
        s.sp.top_p = 1;
        st_wire_writer_add(&w, &s, r[i].ids);
    }
    size_t meta;
    if (st_wire_writer_finish(&w, &meta))
        return -100;
    memset(buf + meta, 0, rows * 4);
    st_wire_msg m;
    if (st_wire_decode(buf, meta + rows * 4, &m))
        return -101;
    st_pipe_batch pb = {0};
    int rc = st_pipe_batch_decode(&m, &SU, 1, held, &pb);
    st_pipe_batch_free(&pb);
    return rc;
}

static void test_refusals(void)
{
    st_bt_map held;
    st_bt_init(&held, 8, 8);
    const uint32_t R = ST_PIPE_REC_RESET, L = ST_PIPE_REC_RELEASE;
    rec_spec append_unknown[] = {{7, 0, 0, 1, 1, {2}}};
    CHECK(decode_specs(append_unknown, 1, &held) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "sequence 7") && strstr(st_errmsg(), "no table"), "%s", st_errmsg());
    rec_spec reset_ok[] = {{7, R, 0, 4, 1, {2}}};
    CHECKF(decode_specs(reset_ok, 1, &held) == ST_OK, "%s", st_errmsg());
    rec_spec past_table[] = {{7, 0, 4, 1, 0, {0}}}; /* position 4 needs a second block */
    CHECK(decode_specs(past_table, 1, &held) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "do not fit"), "%s", st_errmsg());
    rec_spec append_ok[] = {{7, 0, 4, 1, 1, {9}}};
    CHECK(decode_specs(append_ok, 1, &held) == ST_OK);
    int n;
    const int32_t *t = st_bt_get(&held, 7, &n);
    CHECK(t && n == 2 && t[0] == 2 && t[1] == 9);
    rec_spec bad_id[] = {{7, 0, 5, 1, 1, {NB}}};
    CHECK(decode_specs(bad_id, 1, &held) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "block id"), "%s", st_errmsg());
    t = st_bt_get(&held, 7, &n);
    CHECKF(n == 2, "a refused id changed the table (%d blocks)", n);
    rec_spec rel_rows[] = {{7, L, 0, 1, 0, {0}}, {8, R, 0, 1, 1, {1}}};
    CHECK(decode_specs(rel_rows, 2, &held) == ST_EPROTO);
    rec_spec rel_late[] = {{8, R, 0, 1, 1, {1}}, {7, L, 0, 0, 0, {0}}};
    CHECK(decode_specs(rel_late, 2, &held) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "after the step"), "%s", st_errmsg());
    rec_spec only_rel[] = {{7, L, 0, 0, 0, {0}}};
    CHECK(decode_specs(only_rel, 1, &held) == ST_EPROTO); /* a step needs rows */
    rec_spec rel_then_step[] = {{7, L, 0, 0, 0, {0}}, {8, R, 0, 2, 1, {1}}};
    CHECK(decode_specs(rel_then_step, 2, &held) == ST_OK);
    CHECK(st_bt_get(&held, 7, &n) == NULL && st_bt_get(&held, 8, &n) != NULL);
    rec_spec too_many[] = {{20, R, 0, 1, 4, {1, 2, 3, 4}}}; /* more ids than a table may hold */
    st_bt_map small;
    st_bt_init(&small, 1, 3);
    CHECK(decode_specs(too_many, 1, &small) == ST_EPROTO);
    CHECKF(strstr(st_errmsg(), "at most 3"), "%s", st_errmsg());
    st_bt_free(&small);
    st_bt_free(&held);
}

int main(void)
{
    test_map_random();
    test_delta_start();
    test_head_and_stages();
    test_refusals();
    return test_done();
}
