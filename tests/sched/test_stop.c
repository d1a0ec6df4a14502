/* Stop strings: the text before the first match is streamed, the stop
 * string itself never is; bytes that could start a stop string are held
 * back and released once they turn out not to match. Runs on the tiny
 * qwen3 with the Qwen3 tokenizer from ../shared/fixtures attached (token
 * ids < 512 are byte-level pieces there), and on the default model when it
 * is installed. */
#include "../../common/st_common.h"
#include "../../engine/tokenizer.h"
#include "../../sched/batcher.h"
#include "../test.h"
#include "batcher_util.h"

static const st_tokenizer *tok;

/* Collects like bu_collect and measures how far the streamed text lags the
 * decode of the tokens seen so far. */
typedef struct {
    bu_result r;
    size_t max_lag;
} lag_result;

static void lag_collect(const st_batcher_event *ev, void *user)
{
    lag_result *l = user;
    bu_collect(ev, &l->r);
    static char full[16384];
    int n = st_tok_decode(tok, l->r.tokens, l->r.n_tokens, 1, full, (int)sizeof full);
    if (ev->finish == ST_FINISH_NONE && n >= 0 && (size_t)n > l->r.text_len && (size_t)n - l->r.text_len > l->max_lag)
        l->max_lag = (size_t)n - l->r.text_len;
}

static lag_result run(st_batcher *b, const int32_t *prompt, int n_prompt, int max_tokens, const char **stop,
                      int n_stop)
{
    lag_result l;
    memset(&l, 0, sizeof l);
    st_request r = st_request_default();
    r.prompt = prompt;
    r.n_prompt = n_prompt;
    r.max_tokens = max_tokens;
    r.ignore_eos = 1;
    /* seeded sampling: varied text (greedy random weights loop), same tokens every run */
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 1.0f;
    r.sampling.min_p = 0.0f;
    r.sampling.seed = 7;
    r.stop = stop;
    r.n_stop = n_stop;
    r.cb = lag_collect;
    r.user = &l;
    int rc = st_batcher_submit(b, &r, NULL);
    CHECKF(rc == ST_OK, "%s", st_errmsg());
    CHECK(st_batcher_run_until_idle(b) == ST_OK);
    CHECK(l.r.n_final == 1 && l.r.late_events == 0);
    l.r.text[l.r.text_len] = 0;
    return l;
}

/* Stop-string behaviour for one model, given a prompt. */
static void check_model(st_model *m, st_backend *be, const int32_t *prompt, int n_prompt, const char *label)
{
    tok = m->tok;
    st_batcher_config c = st_batcher_config_default();
    c.n_blocks = 64;
    c.max_batch_size = 4;
    st_batcher *b;
    CHECK(st_batcher_create(m, be, &c, &b) == ST_OK);
    const int N = 48;

    /* the reference: no stop strings; the stream is the whole decode */
    lag_result base = run(b, prompt, n_prompt, N, NULL, 0);
    CHECK(base.r.n_tokens == N && base.r.finish == ST_FINISH_LENGTH);
    char full[16384];
    int n_full = st_tok_decode(tok, base.r.tokens, base.r.n_tokens, 1, full, (int)sizeof full);
    CHECKF(n_full == (int)base.r.text_len && !memcmp(full, base.r.text, base.r.text_len),
           "%s: streamed text differs from the decode", label);
    CHECK(base.max_lag == 0 || base.max_lag < 4); /* only an incomplete UTF-8 character waits */

    /* a stop string across the boundary of tokens 9 and 10 (decoded lengths) */
    int cut = st_tok_decode(tok, base.r.tokens, 10, 1, full, (int)sizeof full);
    if (cut < 4 || (size_t)cut + 3 > base.r.text_len) {
        fprintf(stderr, "%s: text too short for the stop tests (%zu bytes)\n", label, base.r.text_len);
        st_batcher_destroy(b);
        return;
    }
    char stop[8];
    memcpy(stop, base.r.text + cut - 2, 4);
    stop[4] = 0;
    const char *first = strstr(base.r.text, stop);
    size_t at = (size_t)(first - base.r.text);
    const char *stops1[] = {stop};
    lag_result hit = run(b, prompt, n_prompt, N, stops1, 1);
    CHECKF(hit.r.finish == ST_FINISH_STOP, "%s: stop string \"%s\" did not stop", label, stop);
    CHECKF(hit.r.text_len == at && !memcmp(hit.r.text, base.r.text, at),
           "%s: streamed \"%s\", want the %zu bytes before \"%s\"", label, hit.r.text, at, stop);
    CHECK(strstr(hit.r.text, stop) == NULL);
    CHECK(hit.r.n_tokens <= N && bu_same(hit.r.tokens, hit.r.n_tokens, base.r.tokens, hit.r.n_tokens));

    /* a stop string that begins with the 4 bytes ending at the token-10
     * boundary and never completes (bytes that are not UTF-8 are never
     * decoded): when token 10 arrives they must be held back, then released */
    char never[16];
    snprintf(never, sizeof never, "%.4s\xff\xfe", base.r.text + cut - 4);
    const char *stops2[] = {never};
    lag_result miss = run(b, prompt, n_prompt, N, stops2, 1);
    CHECK(miss.r.finish == ST_FINISH_LENGTH);
    CHECKF(miss.r.text_len == base.r.text_len && !memcmp(miss.r.text, base.r.text, base.r.text_len),
           "%s: text with a non-matching stop string differs", label);
    CHECKF(miss.max_lag >= 4, "%s: a partial match of 4 bytes was not held back (lag %zu)", label, miss.max_lag);

    /* several stop strings: the earliest match in the text wins */
    const char *stops3[] = {never, base.r.text + at + 1 /* the rest of the text: matches later */, stop};
    char tail[64];
    snprintf(tail, sizeof tail, "%.20s", base.r.text + at + 1);
    stops3[1] = tail;
    lag_result multi = run(b, prompt, n_prompt, N, stops3, 3);
    CHECK(multi.r.finish == ST_FINISH_STOP && multi.r.text_len == at);

    /* a stop string equal to the very first bytes: nothing is streamed */
    char head[8];
    snprintf(head, sizeof head, "%.2s", base.r.text);
    const char *stops4[] = {head};
    lag_result none = run(b, prompt, n_prompt, N, stops4, 1);
    CHECK(none.r.finish == ST_FINISH_STOP && none.r.text_len == 0);

    st_batcher_stats st;
    st_batcher_get_stats(b, &st);
    CHECK(st.kv_blocks_used == 0);
    st_batcher_destroy(b);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    st_backend *be = st_backend_cpu_create(1); /* the tiny model gains nothing from more */
    int ran = 0;

    const char *fx = test_fixtures_dir();
    st_model *m = NULL;
    if (fx && st_model_load(ST_SOURCE_DIR "/tests/golden/qwen3-tiny", 0, -1, &m) == ST_OK) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tokenizers/qwen3/tokenizer.json", fx);
        st_tokenizer *t;
        if (st_tok_load_json(path, &t) == ST_OK) {
            m->tok = t;
            uint64_t rng = 4;
            int32_t prompt[20];
            for (int i = 0; i < 20; i++)
                prompt[i] = (int32_t)(bu_rand(&rng) % 500);
            check_model(m, be, prompt, 20, "qwen3-tiny");
            m->tok = NULL;
            st_tok_free(t);
            ran++;
        } else {
            fprintf(stderr, "note: %s: %s\n", path, st_errmsg());
        }
        st_model_free(m);
    }

    const char *dm = test_default_model();
    if (dm && st_model_load(dm, 0, -1, &m) == ST_OK && m->tok) {
        const char *text = "Once upon a time, in a small village by the sea,";
        int32_t prompt[64];
        int n = st_tok_encode(m->tok, text, strlen(text), 0, prompt, 64);
        CHECK(n > 0 && n <= 64);
        if (n > 0 && n <= 64)
            check_model(m, be, prompt, n, "default model");
        st_model_free(m);
        ran++;
    }
    st_backend_destroy(be);
    if (!ran)
        TEST_SKIP("neither ../shared/fixtures (Qwen3 tokenizer) with the tiny model nor the default model present");
    return test_done();
}
