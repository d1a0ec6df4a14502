/* Layer allocation: the costs read from a model file, and plans checked
 * against their contract (every layer exactly once per pipeline, stages
 * contiguous, every stage fits its node's memory with the minimum KV) plus
 * the policy's intent (proportional splits, several pipelines when nodes
 * allow, overrides kept, a readable error when the model does not fit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/st_common.h"
#include "../../engine/model.h"
#include "../../sched/cluster/alloc.h"
#include "../test.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

/* Llama-3-8B at Q4_0 (4.5 bits a weight): 32 layers of 218M parameters,
 * 8 KV heads of 128, f16 KV; embedding and output 128256 x 4096. */
static st_alloc_model llama3_8b_q4(int ctx)
{
    double layer_params = 2.0 * 4096 * 4096 + 2.0 * 4096 * 1024 + 3.0 * 4096 * 14336;
    return (st_alloc_model){
        .n_layers = 32,
        .layer_bytes = (uint64_t)(layer_params * 4.5 / 8),
        .embed_bytes = (uint64_t)(128256.0 * 4096 * 4.5 / 8),
        .head_bytes = (uint64_t)(128256.0 * 4096 * 4.5 / 8) + 4096 * 4,
        .kv_bytes_per_token = 2 * 8 * 128 * 2,
        .min_kv_tokens = ctx,
        .flops_per_token = 2 * layer_params,
    };
}

static st_alloc_node node(int id, double mem_gib, double tflops, double bw_gbs)
{
    return (st_alloc_node){.id = id, .memory_bytes = (uint64_t)(mem_gib * GIB), .flops = tflops * 1e12,
                           .mem_bw = bw_gbs * 1e9, .fixed_start = -1, .fixed_end = -1};
}

static const st_alloc_node *find_node(const st_alloc_node *nodes, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (nodes[i].id == id)
            return &nodes[i];
    return NULL;
}

static double layer_seconds(const st_alloc_model *m, const st_alloc_node *nd)
{
    return ST_MAX(m->flops_per_token / nd->flops, (double)m->layer_bytes / nd->mem_bw);
}

/* The contract of a plan; returns the number of failed checks. */
static int check_plan(const st_alloc_model *m, const st_alloc_node *nodes, int n, const st_alloc_plan *p)
{
    int before = test_failures;
    int *seen = calloc((size_t)n + 1, sizeof *seen);
    CHECK(p->n_pipes >= 1);
    for (int q = 0; q < p->n_pipes; q++) {
        const st_alloc_pipeline *pp = &p->pipes[q];
        CHECK(pp->n_stages >= 1);
        int at = 0;
        double sec = 0;
        uint64_t kv_min = UINT64_MAX;
        for (int s = 0; s < pp->n_stages; s++) {
            const st_alloc_stage *st = &pp->stages[s];
            const st_alloc_node *nd = find_node(nodes, n, st->node);
            CHECKF(nd != NULL, "pipeline %d stage %d: unknown node %d", q, s, st->node);
            if (!nd)
                continue;
            seen[nd - nodes]++;
            CHECKF(st->start == at && st->end > st->start, "pipeline %d stage %d: [%d, %d) after %d", q, s,
                   st->start, st->end, at);
            uint64_t need = st_alloc_stage_bytes(m, st->start, st->end, (uint64_t)m->min_kv_tokens);
            CHECKF(need <= nd->memory_bytes, "node %d: [%d, %d) needs %llu > %llu", nd->id, st->start, st->end,
                   (unsigned long long)need, (unsigned long long)nd->memory_bytes);
            if (nd->fixed_start >= 0)
                CHECK(st->start == nd->fixed_start && st->end == nd->fixed_end);
            uint64_t w = st_alloc_stage_bytes(m, st->start, st->end, 0);
            uint64_t kv = (nd->memory_bytes - w) / ((uint64_t)(st->end - st->start) * m->kv_bytes_per_token);
            kv_min = ST_MIN(kv_min, kv);
            sec += (st->end - st->start) * layer_seconds(m, nd);
            at = st->end;
        }
        CHECKF(at == m->n_layers, "pipeline %d ends at %d of %d layers", q, at, m->n_layers);
        CHECK(pp->kv_tokens == kv_min && pp->kv_tokens >= (uint64_t)m->min_kv_tokens);
        CHECK_NEAR(pp->est_tokens_per_s * sec, 1.0, 1e-9);
    }
    for (int u = 0; u < p->n_unused; u++) {
        const st_alloc_node *nd = find_node(nodes, n, p->unused[u]);
        CHECK(nd != NULL);
        if (nd) {
            seen[nd - nodes]++;
            /* a leftover node that could hold the model alone would have formed a pipeline */
            CHECK(st_alloc_stage_bytes(m, 0, m->n_layers, (uint64_t)m->min_kv_tokens) > nd->memory_bytes);
        }
    }
    for (int i = 0; i < n; i++)
        CHECKF(seen[i] == 1, "node %d appears %d times in the plan", nodes[i].id, seen[i]);
    free(seen);
    return test_failures - before;
}

static int layers_of(const st_alloc_plan *p, int id)
{
    for (int q = 0; q < p->n_pipes; q++)
        for (int s = 0; s < p->pipes[q].n_stages; s++)
            if (p->pipes[q].stages[s].node == id)
                return p->pipes[q].stages[s].end - p->pipes[q].stages[s].start;
    return 0;
}

/* ---- costs from files ------------------------------------------------------ */

static void test_model_from_gguf(void)
{
    const char *path = test_default_model();
    if (!path) {
        fprintf(stderr, "skip: the default model is not installed (strait models pull)\n");
        return;
    }
    st_alloc_model am;
    int rc = st_alloc_model_from_file(path, 2048, &am);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    st_model *all = NULL, *one = NULL;
    CHECKF(st_model_load(path, 0, -1, &all) == ST_OK, "%s", st_errmsg());
    CHECKF(st_model_load(path, 1, 2, &one) == ST_OK, "%s", st_errmsg());
    if (rc || !all || !one)
        goto out;
    const st_model_config *c = &all->cfg;
    CHECK(am.n_layers == c->n_layers);
    CHECK(am.min_kv_tokens == 2048);
    CHECK(am.kv_bytes_per_token == 2ull * (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim * 2);
    CHECK(am.embed_bytes == all->tok_embd->nbytes);
    /* the engine counts a layer's matrices; the table adds its norm vectors (f32 or f16 in the file) */
    uint64_t norms = 2ull * (uint64_t)c->dim * 4;
    CHECKF(am.layer_bytes >= one->weight_bytes && am.layer_bytes <= one->weight_bytes + norms,
           "layer %llu vs engine %zu", (unsigned long long)am.layer_bytes, one->weight_bytes);
    uint64_t out_bytes = c->tied_output ? all->tok_embd->nbytes : all->output->nbytes;
    CHECK(am.head_bytes >= out_bytes && am.head_bytes <= out_bytes + (uint64_t)c->dim * 4);
    double layer_params = (double)c->dim * c->n_heads * c->head_dim * 2 +
                          (double)c->dim * c->n_kv_heads * c->head_dim * 2 + 3.0 * c->dim * c->ffn_dim;
    CHECKF(am.flops_per_token >= 2 * layer_params && am.flops_per_token <= 2 * layer_params + 8.0 * c->dim,
           "%g vs %g", am.flops_per_token, 2 * layer_params);
out:
    st_model_free(all);
    st_model_free(one);
    CHECK(st_alloc_model_from_file(path, 0, &am) == ST_EINVAL);
    CHECK(st_alloc_model_from_file("/nonexistent/model.gguf", 2048, &am) < 0);
}

/* A two-layer safetensors file written here: exact byte counts, HF names, a
 * tied output (no lm_head), and a non-layer tensor that must not count. */
static void test_model_from_safetensors(void)
{
    struct {
        const char *name;
        int rows, cols;
    } t[] = {
        {"model.embed_tokens.weight", 10, 8},
        {"model.layers.0.self_attn.k_proj.weight", 4, 8},
        {"model.layers.0.self_attn.q_proj.weight", 8, 8},
        {"model.layers.0.input_layernorm.weight", 1, 8},
        {"model.layers.1.self_attn.k_proj.weight", 4, 8},
        {"model.layers.1.self_attn.q_proj.weight", 8, 8},
        {"model.layers.1.mlp.up_proj.weight", 16, 8}, /* layer 1 is the larger */
        {"model.norm.weight", 1, 8},
        {"model.rotary.inv_freq", 1, 4},
    };
    char hdr[2048];
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{");
    for (size_t i = 0; i < ST_ARRAY_LEN(t); i++) {
        size_t nb = (size_t)t[i].rows * (size_t)t[i].cols * 2;
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%d,%d],"
                               "\"data_offsets\":[%zu,%zu]}", i ? "," : "", t[i].name, t[i].rows, t[i].cols,
                               off, off + nb);
        off += nb;
    }
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
    while (hl % 8) /* pad with spaces as writers do, so the tensors stay aligned */
        hdr[hl++] = ' ';
    char path[] = "/tmp/strait_alloc_XXXXXX.safetensors";
    int fd = mkstemps(path, 12);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "wb");
    uint64_t len = hl;
    fwrite(&len, 8, 1, f); /* little-endian on every host we build for */
    fwrite(hdr, 1, hl, f);
    for (size_t i = 0; i < off; i++)
        fputc(0, f);
    fclose(f);
    st_alloc_model am;
    int rc = st_alloc_model_from_file(path, 100, &am);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (!rc) {
        CHECK(am.n_layers == 2);
        CHECK(am.layer_bytes == (4 * 8 + 8 * 8 + 16 * 8) * 2);
        CHECK(am.embed_bytes == 10 * 8 * 2);
        CHECK(am.head_bytes == 8 * 2 + 10 * 8 * 2); /* norm + the tied embedding */
        CHECK(am.kv_bytes_per_token == 2 * 4 * 2);
        CHECK(am.flops_per_token == 2.0 * (4 * 8 + 8 * 8 + 16 * 8));
        CHECK(am.min_kv_tokens == 100);
    }
    unlink(path);
}

/* ---- plans ------------------------------------------------------------------- */

/* Equal speed, memory 1:2, and together barely enough: the small node is
 * filled to its memory and the rest flows to the large one. */
static void test_memory_binds(void)
{
    st_alloc_model m = llama3_8b_q4(2048);
    uint64_t need = st_alloc_stage_bytes(&m, 0, m.n_layers, 2048);
    st_alloc_node nodes[2] = {node(1, need / GIB * 0.38, 50, 500), node(2, need / GIB * 0.76, 50, 500)};
    st_alloc_plan p;
    int rc = st_alloc_plan_make(&m, nodes, 2, &p);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (rc)
        return;
    check_plan(&m, nodes, 2, &p);
    CHECK(p.n_pipes == 1 && p.pipes[0].n_stages == 2);
    int a = layers_of(&p, 1), b = layers_of(&p, 2);
    CHECKF(a + b == 32 && a >= 9 && a <= 12, "split %d:%d (expected about 1:2)", a, b);
    /* memory is what binds: the small node holds as many layers as fit in its role */
    const st_alloc_stage *st = &p.pipes[0].stages[p.pipes[0].stages[0].node == 1 ? 0 : 1];
    int most = 0;
    for (int k = 1; k < m.n_layers; k++) {
        int s0 = st->start == 0 ? 0 : m.n_layers - k;
        if (st_alloc_stage_bytes(&m, s0, s0 + k, 2048) <= nodes[0].memory_bytes)
            most = k;
    }
    CHECKF(a == most, "the small node holds %d layers of the %d it could", a, most);
    st_alloc_plan_free(&p);
}

/* Memory ample within the pipeline (each node holds 80% of the model, so
 * neither alone), bandwidth 1:3: the layers split about 1:3. */
static void test_speed_split(void)
{
    st_alloc_model m = llama3_8b_q4(4096);
    double need = st_alloc_stage_bytes(&m, 0, m.n_layers, 4096) / GIB;
    st_alloc_node nodes[2] = {node(7, need * 0.8, 100, 100), node(3, need * 0.8, 100, 300)};
    st_alloc_plan p;
    int rc = st_alloc_plan_make(&m, nodes, 2, &p);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (rc)
        return;
    check_plan(&m, nodes, 2, &p);
    CHECK(p.n_pipes == 1 && p.n_unused == 0);
    int slow = layers_of(&p, 7), fast = layers_of(&p, 3);
    CHECKF(slow >= 7 && slow <= 9 && slow + fast == 32, "split %d:%d (expected about 8:24)", slow, fast);
    st_alloc_plan_free(&p);
}

/* Two nodes that each hold the model, and one that holds a third of it:
 * two single-stage pipelines, the small node left as standby. */
static void test_two_pipelines(void)
{
    st_alloc_model m = llama3_8b_q4(8192);
    st_alloc_node nodes[3] = {node(10, 24, 80, 900), node(11, 2, 10, 100), node(12, 24, 80, 900)};
    st_alloc_plan p;
    int rc = st_alloc_plan_make(&m, nodes, 3, &p);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (rc)
        return;
    check_plan(&m, nodes, 3, &p);
    CHECK(p.n_pipes == 2);
    for (int q = 0; q < p.n_pipes; q++)
        CHECK(p.pipes[q].n_stages == 1 && p.pipes[q].stages[0].node != 11);
    CHECK(p.n_unused == 1 && p.unused[0] == 11);
    /* bandwidth-bound decode: 900 GB/s over ~4.3 GB of layers */
    double expect = 900e9 / (32.0 * (double)m.layer_bytes);
    CHECK_NEAR(p.pipes[0].est_tokens_per_s / expect, 1.0, 1e-9);
    st_alloc_plan_free(&p);
}

static void test_too_small(void)
{
    st_alloc_model m = llama3_8b_q4(2048);
    st_alloc_node nodes[2] = {node(1, 1.5, 10, 100), node(2, 2.0, 10, 100)};
    st_alloc_plan p;
    CHECK(st_alloc_plan_make(&m, nodes, 2, &p) == ST_ENOMEM);
    CHECK(p.n_pipes == 0 && p.pipes == NULL);
    double weights = (32.0 * m.layer_bytes + m.embed_bytes + m.head_bytes) / GIB;
    double kv = 32.0 * 2048 * m.kv_bytes_per_token / GIB;
    char want[128];
    snprintf(want, sizeof want, "%.2f GiB missing", weights + kv - 3.5);
    CHECKF(strstr(st_errmsg(), want) != NULL, "'%s' lacks '%s'", st_errmsg(), want);
    snprintf(want, sizeof want, "weights %.2f + KV %.2f for 2048 tokens", weights, kv);
    CHECKF(strstr(st_errmsg(), want) != NULL, "'%s' lacks '%s'", st_errmsg(), want);
    CHECK(st_alloc_plan_make(&m, NULL, 0, &p) == ST_ENOMEM);
    st_alloc_plan_free(&p);
}

static void test_overrides(void)
{
    st_alloc_model m = llama3_8b_q4(2048);
    st_alloc_node nodes[4] = {node(1, 3, 20, 200), node(2, 8, 20, 200), node(3, 8, 20, 200), node(4, 8, 20, 200)};
    nodes[0].fixed_start = 10, nodes[0].fixed_end = 14; /* a middle range on a small node */
    st_alloc_plan p;
    int rc = st_alloc_plan_make(&m, nodes, 4, &p);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (!rc) {
        check_plan(&m, nodes, 4, &p);
        CHECK(p.pipes[0].n_stages >= 3); /* [0, 10) and [14, 32) come from the others */
        st_alloc_plan_free(&p);
    }
    nodes[1].fixed_start = 0, nodes[1].fixed_end = 10; /* two fixed nodes meeting edge to edge */
    rc = st_alloc_plan_make(&m, nodes, 4, &p);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    if (!rc) {
        check_plan(&m, nodes, 4, &p);
        CHECK(p.pipes[0].stages[0].node == 2 && p.pipes[0].stages[1].node == 1);
        st_alloc_plan_free(&p);
    }
    nodes[1].fixed_end = 11; /* overlaps [10, 14) */
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_EINVAL);
    CHECKF(strstr(st_errmsg(), "overlap") != NULL, "%s", st_errmsg());
    nodes[1].fixed_start = 30, nodes[1].fixed_end = 33; /* beyond the last layer */
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_EINVAL);
    nodes[1].fixed_start = -1, nodes[1].fixed_end = 5; /* half an override */
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_EINVAL);
    nodes[1].fixed_start = 0, nodes[1].fixed_end = 32; /* the whole model on 3 GiB */
    nodes[1].memory_bytes = (uint64_t)(3 * GIB);
    nodes[0].fixed_start = nodes[0].fixed_end = -1;
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_ENOMEM);
    CHECKF(strstr(st_errmsg(), "node 2") != NULL, "%s", st_errmsg());
    nodes[1] = node(2, 8, 20, 200);
    nodes[2].id = 2; /* duplicate id */
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_EINVAL);
    nodes[2] = node(3, 8, 0, 200); /* no speed */
    CHECK(st_alloc_plan_make(&m, nodes, 4, &p) == ST_EINVAL);
}

/* Extreme numbers are an error or a valid plan, never a crash. */
static void test_extremes(void)
{
    st_alloc_model m = llama3_8b_q4(2048);
    st_alloc_node nodes[3] = {node(1, 64, 10, 100), node(2, 64, 10, 100), node(3, 64, 10, 100)};
    st_alloc_plan p;
    nodes[0].memory_bytes = UINT64_MAX;
    CHECK(st_alloc_plan_make(&m, nodes, 3, &p) == ST_OK && check_plan(&m, nodes, 3, &p) == 0);
    st_alloc_plan_free(&p);
    nodes[1].flops = 1e-320; /* a layer would take forever */
    CHECK(st_alloc_plan_make(&m, nodes, 3, &p) == ST_EINVAL);
    nodes[1] = node(2, 64, 10, 100);
    m.embed_bytes = m.head_bytes = UINT64_MAX - 1;
    CHECK(st_alloc_plan_make(&m, nodes, 3, &p) == ST_ENOMEM);
    m = llama3_8b_q4(2048);
    m.min_kv_tokens = INT32_MAX;
    m.kv_bytes_per_token = UINT64_MAX / 4;
    CHECK(st_alloc_plan_make(&m, nodes, 3, &p) == ST_ENOMEM);
    m = llama3_8b_q4(2048);
    m.n_layers = 0;
    CHECK(st_alloc_plan_make(&m, nodes, 3, &p) == ST_EINVAL);
    CHECK(st_alloc_stage_bytes(&m, 0, 1, 0) == UINT64_MAX);
    CHECK(st_alloc_plan_make(NULL, nodes, 3, &p) == ST_EINVAL);
    CHECK(st_alloc_plan_make(&m, nodes, 3, NULL) == ST_EINVAL);
    st_alloc_plan_free(NULL);
}

/* ---- property test ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform(void) /* [0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int same_plan(const st_alloc_plan *a, const st_alloc_plan *b)
{
    if (a->n_pipes != b->n_pipes || a->n_unused != b->n_unused)
        return 0;
    for (int q = 0; q < a->n_pipes; q++) {
        if (a->pipes[q].n_stages != b->pipes[q].n_stages || a->pipes[q].kv_tokens != b->pipes[q].kv_tokens)
            return 0;
        if (memcmp(a->pipes[q].stages, b->pipes[q].stages, (size_t)a->pipes[q].n_stages * sizeof(st_alloc_stage)))
            return 0;
    }
    return !memcmp(a->unused, b->unused, (size_t)a->n_unused * sizeof(int));
}

static void test_random_clusters(void)
{
    int ok = 0, nomem = 0, multi = 0;
    for (int trial = 0; trial < 400; trial++) {
        st_alloc_model m = {
            .n_layers = 1 + (int)(uniform() * 80),
            .layer_bytes = (uint64_t)((0.01 + uniform()) * GIB),
            .embed_bytes = (uint64_t)(uniform() * GIB),
            .head_bytes = (uint64_t)(uniform() * GIB),
            .kv_bytes_per_token = 1024 * (1 + (uint64_t)(uniform() * 64)),
            .min_kv_tokens = (int)(uniform() * 8192),
            .flops_per_token = (0.01 + uniform()) * 2e9,
        };
        double model_gib = st_alloc_stage_bytes(&m, 0, m.n_layers, (uint64_t)m.min_kv_tokens) / GIB;
        int n = 1 + trial % 16;
        st_alloc_node nodes[16], shuffled[16];
        for (int i = 0; i < n; i++)
            nodes[i] = node(100 + i, model_gib * (0.05 + 1.2 * uniform() * uniform()), 1 + 100 * uniform(),
                            50 + 2000 * uniform());
        if (trial % 5 == 4 && m.n_layers >= 4) { /* one node with a range of its own */
            nodes[0].fixed_start = m.n_layers / 4;
            nodes[0].fixed_end = m.n_layers / 2;
            nodes[0].memory_bytes = st_alloc_stage_bytes(&m, nodes[0].fixed_start, nodes[0].fixed_end,
                                                         (uint64_t)m.min_kv_tokens);
        }
        st_alloc_plan p, q;
        int rc = st_alloc_plan_make(&m, nodes, n, &p);
        CHECKF(rc == ST_OK || rc == ST_ENOMEM, "trial %d: %d %s", trial, rc, st_errmsg());
        if (rc == ST_ENOMEM) {
            nomem++;
            CHECKF(strstr(st_errmsg(), "GiB") != NULL, "%s", st_errmsg());
            /* a node that holds the whole model alone is always enough (when no override is set) */
            for (int i = 0; i < n && nodes[0].fixed_start < 0; i++)
                CHECKF(st_alloc_stage_bytes(&m, 0, m.n_layers, (uint64_t)m.min_kv_tokens) > nodes[i].memory_bytes,
                       "trial %d: node %d fits the model yet: %s", trial, nodes[i].id, st_errmsg());
            continue;
        }
        if (rc)
            continue;
        ok++;
        multi += p.n_pipes > 1;
        if (check_plan(&m, nodes, n, &p))
            fprintf(stderr, "  in trial %d (%d nodes, %d layers)\n", trial, n, m.n_layers);
        /* the same nodes in another order give the same plan */
        for (int i = 0; i < n; i++)
            shuffled[i] = nodes[n - 1 - i];
        CHECK(st_alloc_plan_make(&m, shuffled, n, &q) == ST_OK);
        CHECKF(same_plan(&p, &q), "trial %d: the plan depends on the input order", trial);
        st_alloc_plan_free(&q);
        st_alloc_plan_free(&p);
    }
    fprintf(stderr, "random clusters: %d planned (%d with several pipelines), %d too small\n", ok, multi, nomem);
    CHECK(ok > 100 && nomem > 10 && multi > 20); /* the generator exercises every outcome */
}

int main(void)
{
    test_model_from_gguf();
    test_model_from_safetensors();
    test_memory_binds();
    test_speed_split();
    test_two_pipelines();
    test_too_small();
    test_overrides();
    test_extremes();
    test_random_clusters();
    return test_done();
}
