/* Chat templates: the built-in formatters against the real Jinja templates'
 * output (tests/golden/chat, made by tools/golden/chat_golden.py), byte for
 * byte; family detection on the fixture templates (../shared/fixtures). */
#include "engine/chat.h"

#include "common/json.h"
#include "common/st_common.h"
#include "engine/gguf.h"
#include "tests/test.h"

static st_chat_format family(const char *name)
{
    static const st_chat_format all[] = {ST_CHAT_CHATML, ST_CHAT_QWEN3, ST_CHAT_SMOLLM2, ST_CHAT_LLAMA3,
                                         ST_CHAT_LLAMA2};
    for (size_t i = 0; i < ST_ARRAY_LEN(all); i++)
        if (!strcmp(name, st_chat_format_name(all[i])))
            return all[i];
    return ST_CHAT_UNKNOWN;
}

/* Where two texts first differ, for a readable failure. */
static void show_diff(const char *name, const char *got, size_t gn, const char *want, size_t wn)
{
    size_t i = 0;
    while (i < gn && i < wn && got[i] == want[i])
        i++;
    size_t from = i > 20 ? i - 20 : 0;
    fprintf(stderr, "%s: differs at byte %zu (got %zu bytes, want %zu)\n  got:  '%.*s'\n  want: '%.*s'\n", name, i,
            gn, wn, (int)ST_MIN(gn - from, 60), got + from, (int)ST_MIN(wn - from, 60), want + from);
}

static void test_goldens(void)
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/tests/golden/chat/cases.json", ST_SOURCE_DIR);
    CHECKF(st_read_file(path, &text, &len) == ST_OK, "%s", st_errmsg());
    st_json *cases = NULL;
    CHECKF(st_json_parse(text, len, &cases) == ST_OK, "%s", st_errmsg());
    free(text);
    if (!cases)
        return;
    CHECK(cases->type == ST_JSON_ARRAY && cases->u.arr.n >= 50);
    int rendered = 0, errors = 0;
    for (size_t c = 0; c < cases->u.arr.n; c++) {
        const st_json *k = &cases->u.arr.items[c];
        const char *name = st_json_get_str(k, "name", "?");
        st_chat_format f = family(st_json_get_str(k, "family", ""));
        CHECKF(f != ST_CHAT_UNKNOWN, "%s: unknown family", name);
        const st_json *ms = st_json_get(k, "messages");
        if (!ms || ms->type != ST_JSON_ARRAY || ms->u.arr.n == 0) {
            CHECKF(0, "%s: no messages", name);
            continue;
        }
        int n = (int)ms->u.arr.n;
        st_chat_msg *msgs = st_xcalloc((size_t)n, sizeof *msgs);
        for (int i = 0; i < n; i++) {
            const st_json *m = &ms->u.arr.items[i];
            const st_json *content = st_json_get(m, "content");
            msgs[i].role = st_json_get_str(m, "role", "");
            msgs[i].content = content ? content->u.str.s : "";
            msgs[i].content_len = content ? content->u.str.len : 0;
        }
        st_chat_opts o = st_chat_opts_default();
        o.add_generation_prompt = st_json_get_bool(k, "add_generation_prompt", 1);
        o.enable_thinking = st_json_get_bool(k, "enable_thinking", 1);
        o.bos_text = st_json_get_str(k, "bos_text", NULL);
        o.eos_text = st_json_get_str(k, "eos_text", NULL);
        o.default_system = st_json_get_str(k, "default_system", NULL);

        char *out = NULL;
        size_t out_len = 0;
        int rc = st_chat_render(f, msgs, n, &o, &out, &out_len);
        if (st_json_get(k, "expect_error")) {
            CHECKF(rc == ST_EINVAL, "%s: the template raises, render returned %d", name, rc);
            errors++;
        } else {
            char *want;
            size_t want_len;
            snprintf(path, sizeof path, "%s/tests/golden/chat/%s.txt", ST_SOURCE_DIR, name);
            int frc = st_read_file(path, &want, &want_len);
            CHECKF(frc == ST_OK, "%s", st_errmsg());
            CHECKF(rc == ST_OK, "%s: %s", name, st_errmsg());
            if (frc == ST_OK && rc == ST_OK) {
                int same = out_len == want_len && memcmp(out, want, want_len) == 0;
                CHECKF(same, "%s: rendering differs from the real template", name);
                if (!same)
                    show_diff(name, out, out_len, want, want_len);
                CHECK(strlen(out) == out_len); /* NUL-terminated */
                rendered++;
            }
            if (frc == ST_OK)
                free(want);
        }
        free(out);
        free(msgs);
    }
    fprintf(stderr, "goldens: %d rendered identically checked, %d expected errors\n", rendered, errors);
    CHECK(rendered >= 50 && errors >= 1);
    st_json_free(cases);
}

/* BOS handling: with bos_text NULL the leading BOS is left to the tokenizer. */
static void test_bos(void)
{
    st_chat_msg m[3] = {{"user", "a", 1}, {"assistant", "b", 1}, {"user", "c", 1}};
    st_chat_opts o = st_chat_opts_default();
    char *out;
    CHECK(st_chat_render(ST_CHAT_LLAMA3, m, 1, &o, &out, NULL) == ST_OK);
    CHECK(!strcmp(out, "<|start_header_id|>user<|end_header_id|>\n\na<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n"));
    free(out);
    CHECK(st_chat_render(ST_CHAT_LLAMA2, m, 3, &o, &out, NULL) == ST_OK);
    CHECK(!strcmp(out, "[INST] a [/INST] b </s><s>[INST] c [/INST]"));
    free(out);
    o.bos_text = "<s>";
    CHECK(st_chat_render(ST_CHAT_LLAMA2, m, 3, &o, &out, NULL) == ST_OK);
    CHECK(!strncmp(out, "<s>[INST] a", 11));
    free(out);
    /* ChatML never writes BOS */
    CHECK(st_chat_render(ST_CHAT_CHATML, m, 1, &o, &out, NULL) == ST_OK);
    CHECK(!strcmp(out, "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n"));
    free(out);
}

static void test_errors(void)
{
    st_chat_msg ok = {"user", "hi", 2};
    char *out = (char *)"untouched";
    CHECK(st_chat_render(ST_CHAT_CHATML, &ok, 0, NULL, &out, NULL) == ST_EINVAL);
    CHECK(st_chat_render(ST_CHAT_CHATML, NULL, 1, NULL, &out, NULL) == ST_EINVAL);
    st_chat_msg tool = {"tool", "{}", 2};
    CHECK(st_chat_render(ST_CHAT_QWEN3, &tool, 1, NULL, &out, NULL) == ST_EINVAL);
    CHECK(strstr(st_errmsg(), "tool") != NULL);
    st_chat_msg norole = {NULL, "x", 1};
    CHECK(st_chat_render(ST_CHAT_LLAMA3, &norole, 1, NULL, &out, NULL) == ST_EINVAL);
    st_chat_msg nullc = {"user", NULL, 5};
    CHECK(st_chat_render(ST_CHAT_LLAMA3, &nullc, 1, NULL, &out, NULL) == ST_EINVAL);
    CHECK(st_chat_render((st_chat_format)99, &ok, 1, NULL, &out, NULL) == ST_EINVAL);
    CHECK(!strcmp(out, "untouched"));
    /* content_len is honoured: the bytes after it are not read */
    st_chat_msg part = {"user", "hello world", 5};
    size_t len;
    CHECK(st_chat_render(ST_CHAT_CHATML, &part, 1, NULL, &out, &len) == ST_OK);
    CHECK(!strcmp(out, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n") && len == strlen(out));
    free(out);
    /* an unknown family renders as ChatML (with a warning) */
    CHECK(st_chat_render(ST_CHAT_UNKNOWN, &part, 1, NULL, &out, NULL) == ST_OK);
    CHECK(!strncmp(out, "<|im_start|>user\nhello", 22));
    free(out);
}

static void check_detect(const char *what, const char *tmpl, st_chat_format want, const char *want_system)
{
    st_chat_format got = st_chat_detect(tmpl);
    CHECKF(got == want, "%s: detected %s, want %s", what, st_chat_format_name(got), st_chat_format_name(want));
    char *sys = (char *)"unset";
    CHECK(st_chat_default_system(tmpl, &sys) == ST_OK);
    CHECKF(want_system ? sys && !strcmp(sys, want_system) : sys == NULL, "%s: default system '%s'", what,
           sys ? sys : "(none)");
    free(sys);
}

static char *config_template(const char *dir, const char *model)
{
    char path[4400], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer_config.json", dir, model);
    if (st_read_file(path, &text, &len) != ST_OK)
        return NULL;
    st_json *j = NULL;
    st_json_parse(text, len, &j);
    free(text);
    const char *t = j ? st_json_get_str(j, "chat_template", NULL) : NULL;
    char *copy = t ? st_xstrdup(t) : NULL;
    st_json_free(j);
    return copy;
}

static char *gguf_template(const char *path)
{
    st_gguf *g;
    if (st_gguf_open(path, ST_GGUF_ALLOW_UNKNOWN_TYPES, &g) != ST_OK)
        return NULL;
    const char *s;
    size_t n;
    char *copy = NULL;
    if (st_gguf_get_str(g, "tokenizer.chat_template", &s, &n) == ST_OK) {
        copy = st_xmalloc(n + 1);
        memcpy(copy, s, n);
        copy[n] = 0;
    }
    st_gguf_close(g);
    return copy;
}

static void test_detect(void)
{
    CHECK(st_chat_detect(NULL) == ST_CHAT_UNKNOWN);
    CHECK(st_chat_detect("") == ST_CHAT_UNKNOWN);
    CHECK(st_chat_detect("{{ messages }}") == ST_CHAT_UNKNOWN);
    check_detect("inline chatml", "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                                  "'<|im_end|>\\n'}}{% endfor %}",
                 ST_CHAT_CHATML, NULL);
    check_detect("inline default system",
                 "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}",
                 ST_CHAT_CHATML, "Be brief.");

    const char *dir = test_fixtures_dir();
    if (!dir) {
        fprintf(stderr, "detection on fixture templates skipped: ../shared/fixtures absent\n");
        return;
    }
    char *t = config_template(dir, "qwen3");
    CHECK(t != NULL);
    check_detect("qwen3 tokenizer_config", t, ST_CHAT_QWEN3, NULL);
    free(t);
    t = config_template(dir, "llama3");
    CHECK(t != NULL);
    check_detect("llama3 tokenizer_config", t, ST_CHAT_LLAMA3, NULL);
    free(t);
    char path[4400]; /* dir is at most 4095 bytes */
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-qwen2.gguf", dir);
    t = gguf_template(path);
    CHECKF(t != NULL, "%s: %s", path, st_errmsg());
    check_detect("qwen2 gguf", t, ST_CHAT_CHATML, "You are a helpful assistant");
    free(t);
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-phi-3.gguf", dir);
    t = gguf_template(path);
    CHECKF(t != NULL, "%s: %s", path, st_errmsg());
    check_detect("phi-3 gguf", t, ST_CHAT_UNKNOWN, NULL);
    free(t);

    const char *smol = test_default_model();
    if (smol) {
        t = gguf_template(smol);
        CHECKF(t != NULL, "%s: %s", smol, st_errmsg());
        check_detect("smollm2 gguf", t, ST_CHAT_SMOLLM2,
                     "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
        free(t);
    } else {
        fprintf(stderr, "SmolLM2 detection skipped: default model not installed\n");
    }
}

int main(void)
{
    st_log_set_level(ST_LOG_ERROR);
    test_goldens();
    test_bos();
    test_errors();
    test_detect();
    return test_done();
}
