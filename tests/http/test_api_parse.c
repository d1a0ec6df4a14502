/* Request validation: a table of bodies with the status and error param
 * each must produce, well-formed requests parsed into the right fields,
 * and the response writers' shapes checked by parsing their output. */
#include <string.h>

#include "../../common/json.h"
#include "../../common/st_common.h"
#include "../../http/api_request.h"
#include "../../http/api_response.h"
#include "../test.h"

typedef struct {
    st_api_kind kind;
    const char *body;
    int status;
    const char *param; /* "" for none */
} bad_case;

static const bad_case bad_cases[] = {
    {ST_API_CHAT, "", 400, ""},
    {ST_API_CHAT, "{", 400, ""},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]} x", 400, ""},
    {ST_API_CHAT, "[1,2]", 400, ""},
    {ST_API_CHAT, "{}", 400, "messages"},
    {ST_API_CHAT, "{\"messages\":[]}", 400, "messages"},
    {ST_API_CHAT, "{\"messages\":\"hi\"}", 400, "messages"},
    {ST_API_CHAT, "{\"messages\":[1]}", 400, "messages[0]"},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400, "messages[0].role"},
    {ST_API_CHAT, "{\"messages\":[{\"content\":\"hi\"}]}", 400, "messages[0].role"},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":5}]}", 400,
     "messages[1].content"},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
     "messages[0].content[0]"},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"assistant\"}]}", 400, "messages[0].content"},
    /* invalid UTF-8 inside a string */
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\xff\xfe\"}]}", 400, ""},
    {ST_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}", 400, ""},
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
    {ST_API_CHAT, "{" MSG ",\"n\":2}", 400, "n"},
    {ST_API_CHAT, "{" MSG ",\"n\":0}", 400, "n"},
    {ST_API_CHAT, "{" MSG ",\"max_tokens\":100000000}", 400, "max_tokens"},
    {ST_API_CHAT, "{" MSG ",\"max_completion_tokens\":5000}", 400, "max_completion_tokens"},
    {ST_API_CHAT, "{" MSG ",\"max_tokens\":0}", 400, "max_tokens"},
    {ST_API_CHAT, "{" MSG ",\"max_tokens\":1.5}", 400, "max_tokens"},
    {ST_API_CHAT, "{" MSG ",\"max_tokens\":\"10\"}", 400, "max_tokens"},
    {ST_API_CHAT, "{" MSG ",\"temperature\":-0.5}", 400, "temperature"},
    {ST_API_CHAT, "{" MSG ",\"temperature\":\"hot\"}", 400, "temperature"},
    {ST_API_CHAT, "{" MSG ",\"top_p\":0}", 400, "top_p"},
    {ST_API_CHAT, "{" MSG ",\"top_p\":1.5}", 400, "top_p"},
    {ST_API_CHAT, "{" MSG ",\"min_p\":2}", 400, "min_p"},
    {ST_API_CHAT, "{" MSG ",\"top_k\":-5}", 400, "top_k"},
    {ST_API_CHAT, "{" MSG ",\"presence_penalty\":3}", 400, "presence_penalty"},
    {ST_API_CHAT, "{" MSG ",\"frequency_penalty\":-3}", 400, "frequency_penalty"},
    {ST_API_CHAT, "{" MSG ",\"repetition_penalty\":0}", 400, "repetition_penalty"},
    {ST_API_CHAT, "{" MSG ",\"seed\":0.5}", 400, "seed"},
    {ST_API_CHAT, "{" MSG ",\"stop\":5}", 400, "stop"},
    {ST_API_CHAT, "{" MSG ",\"stop\":[\"a\",3]}", 400, "stop"},
    {ST_API_CHAT, "{" MSG ",\"stop\":[\"\"]}", 400, "stop"},
    {ST_API_CHAT, "{" MSG ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\","
                  "\"15\",\"16\",\"17\"]}",
     400, "stop"},
    {ST_API_CHAT, "{" MSG ",\"stream\":\"yes\"}", 400, "stream"},
    {ST_API_CHAT, "{" MSG ",\"stream_options\":{\"include_usage\":1}}", 400, "stream_options.include_usage"},
    {ST_API_CHAT, "{" MSG ",\"logprobs\":1}", 400, "logprobs"},
    {ST_API_CHAT, "{" MSG ",\"top_logprobs\":3}", 400, "top_logprobs"},
    {ST_API_CHAT, "{" MSG ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs"},
    {ST_API_CHAT, "{" MSG ",\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}}", 400,
     "chat_template_kwargs.enable_thinking"},
    {ST_API_CHAT, "{" MSG ",\"tools\":[{\"type\":\"function\"}]}", 400, "tools"},
    {ST_API_CHAT, "{" MSG ",\"model\":7}", 400, "model"},
    {ST_API_COMPLETION, "{}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":5}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":[]}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":[1,-2]}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":[1,1000]}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
    {ST_API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs"},
    {ST_API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", 400, "echo"},
};

static void test_bad_table(void)
{
    st_api_limits lim = {1 << 20, 4096, 1000};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad_cases); i++) {
        const bad_case *c = &bad_cases[i];
        st_api_request r;
        st_api_error e;
        memset(&e, 0, sizeof e);
        int st = st_api_parse(c->kind, c->body, strlen(c->body), &lim, &r, &e);
        CHECKF(st == c->status, "case %zu (%s): status %d, want %d", i, c->body, st, c->status);
        CHECKF(st == 0 || strcmp(e.param, c->param) == 0, "case %zu (%s): param '%s', want '%s' (%s)", i, c->body,
               e.param, c->param, e.message);
        CHECKF(st == 0 || e.message[0], "case %zu: empty message", i);
        /* the error object is valid JSON holding the same param */
        if (st) {
            st_strbuf sb;
            st_sb_init(&sb);
            st_api_error_json(&e, &sb);
            st_json *j = NULL;
            CHECK(st_json_parse(sb.buf, sb.len, &j) == ST_OK);
            const st_json *err = st_json_get(j, "error");
            CHECK(err && st_json_get_str(err, "message", NULL));
            const st_json *p = st_json_get(err, "param");
            CHECK(p && (c->param[0] ? p->type == ST_JSON_STRING && strcmp(p->u.str.s, c->param) == 0
                                    : p->type == ST_JSON_NULL));
            st_json_free(j);
            st_sb_free(&sb);
        }
        st_api_request_free(&r);
    }
}

static void test_oversized_body(void)
{
    st_api_limits lim = {64, 4096, 0};
    char body[200];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%0100d\"}]}", 7);
    st_api_request r;
    st_api_error e;
    CHECK(st_api_parse(ST_API_CHAT, body, strlen(body), &lim, &r, &e) == 413);
    CHECK(e.status == 413);
    lim.max_body_bytes = sizeof body;
    CHECK(st_api_parse(ST_API_CHAT, body, strlen(body), &lim, &r, &e) == 0);
    st_api_request_free(&r);
}

static void test_good_chat(void)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"he\"},{\"type\":\"text\",\"text\":\"llo\"}]},"
                       "{\"role\":\"developer\",\"content\":\"x\"}],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_completion_tokens\":12,"
                       "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"min_p\":0.1,\"seed\":42,\"stop\":\"END\","
                       "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"repetition_penalty\":1.1,"
                       "\"logprobs\":true,\"top_logprobs\":3,\"n\":1,\"chat_template_kwargs\":{\"enable_thinking\":false},"
                       "\"user\":\"ignored\",\"tools\":[]}";
    st_api_request r;
    st_api_error e;
    st_api_limits lim = {0, 4096, 0};
    int st = st_api_parse(ST_API_CHAT, body, strlen(body), &lim, &r, &e);
    CHECKF(st == 0, "%s", e.message);
    if (st)
        return;
    CHECK(r.n_msgs == 3);
    CHECK(strcmp(r.msgs[0].role, "system") == 0 && strcmp(r.msgs[2].role, "system") == 0);
    CHECK(r.msgs[1].content_len == 5 && memcmp(r.msgs[1].content, "hello", 5) == 0);
    CHECK(r.stream == 1 && r.include_usage == 1 && r.max_tokens == 12);
    CHECK_NEAR(r.sampling.temperature, 0.5, 1e-6);
    CHECK_NEAR(r.sampling.top_p, 0.9, 1e-6);
    CHECK(r.sampling.top_k == 40 && r.sampling.seed == 42);
    CHECK_NEAR(r.sampling.min_p, 0.1, 1e-6);
    CHECK_NEAR(r.sampling.repetition_penalty, 1.1, 1e-6);
    CHECK(r.n_stop == 1 && strcmp(r.stop[0], "END") == 0);
    CHECK(r.logprobs == 1 && r.top_logprobs == 3 && r.enable_thinking == 0);
    CHECK(r.model && strcmp(r.model, "m") == 0);
    st_api_request_free(&r);

    /* defaults: OpenAI's temperature 1 / top_p 1, no top_k, random seed */
    const char *minimal = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    CHECK(st_api_parse(ST_API_CHAT, minimal, strlen(minimal), &lim, &r, &e) == 0);
    CHECK(r.stream == 0 && r.max_tokens == 0 && r.n_stop == 0 && r.logprobs == 0 && r.enable_thinking == -1);
    CHECK_NEAR(r.sampling.temperature, 1.0, 0);
    CHECK(r.sampling.top_k == 0);
    uint64_t seed1 = r.sampling.seed;
    st_api_request_free(&r);
    CHECK(st_api_parse(ST_API_CHAT, minimal, strlen(minimal), &lim, &r, &e) == 0);
    CHECK(r.sampling.seed != seed1);
    st_api_request_free(&r);
}

static void test_good_completion(void)
{
    st_api_request r;
    st_api_error e;
    st_api_limits lim = {0, 4096, 1000};
    const char *b1 = "{\"prompt\":[1,2,999],\"logprobs\":2,\"stop\":[\"a\",\"b\"]}";
    CHECK(st_api_parse(ST_API_COMPLETION, b1, strlen(b1), &lim, &r, &e) == 0);
    CHECK(r.n_prompt_ids == 3 && r.prompt_ids[2] == 999 && !r.prompt);
    CHECK(r.logprobs == 1 && r.top_logprobs == 2 && r.n_stop == 2);
    st_api_request_free(&r);
    const char *b2 = "{\"prompt\":[\"once upon\"]}";
    CHECK(st_api_parse(ST_API_COMPLETION, b2, strlen(b2), &lim, &r, &e) == 0);
    CHECK(r.prompt && r.prompt_len == 9 && !r.prompt_ids);
    st_api_request_free(&r);
}

/* The writers produce parseable JSON in OpenAI's shape. */
static void test_writers(void)
{
    st_piece_buf b;
    st_piece_buf_init(&b);
    st_gen_top top[2] = {{"x", 1, -1.0f}, {"\xff", 1, -2.0f}};
    st_gen_event ev = {0};
    ev.text = "Hi";
    ev.text_len = 2;
    ev.has_token = ev.has_logprob = 1;
    ev.token = "Hi";
    ev.token_len = 2;
    ev.logprob = -0.25f;
    ev.top = top;
    ev.n_top = 2;
    st_piece_buf_add(&b, &ev);
    ev.text = " there";
    ev.text_len = 6;
    ev.token = " there";
    ev.token_len = 6;
    ev.logprob = -1.0f / 0.0f; /* -inf must still give valid JSON */
    st_piece_buf_add(&b, &ev);
    st_api_resp_meta m = {ST_API_CHAT, "chatcmpl-1", 1700000000, "tiny", 1, 1};
    st_api_usage u = {5, 2, 1};
    st_strbuf sb;
    st_sb_init(&sb);
    st_api_full_response(&sb, &m, &b, "stop", &u);
    st_json *j = NULL;
    CHECKF(st_json_parse(sb.buf, sb.len, &j) == ST_OK, "%s", sb.buf);
    if (j) {
        CHECK(strcmp(st_json_get_str(j, "object", ""), "chat.completion") == 0);
        const st_json *ch = st_json_get(j, "choices");
        CHECK(ch && ch->type == ST_JSON_ARRAY && ch->u.arr.n == 1);
        const st_json *c0 = &ch->u.arr.items[0];
        const st_json *msg = st_json_get(c0, "message");
        CHECK(strcmp(st_json_get_str(msg, "content", ""), "Hi there") == 0);
        CHECK(strcmp(st_json_get_str(msg, "role", ""), "assistant") == 0);
        CHECK(strcmp(st_json_get_str(c0, "finish_reason", ""), "stop") == 0);
        const st_json *lc = st_json_get(st_json_get(c0, "logprobs"), "content");
        CHECK(lc && lc->type == ST_JSON_ARRAY && lc->u.arr.n == 2);
        if (lc && lc->u.arr.n == 2) {
            CHECK_NEAR(st_json_get_num(&lc->u.arr.items[0], "logprob", 0), -0.25, 1e-6);
            CHECK_NEAR(st_json_get_num(&lc->u.arr.items[1], "logprob", 0), -9999, 1e-6);
            const st_json *bytes = st_json_get(&lc->u.arr.items[0], "bytes");
            CHECK(bytes && bytes->u.arr.n == 2 && bytes->u.arr.items[0].u.number == 'H');
            const st_json *tl = st_json_get(&lc->u.arr.items[0], "top_logprobs");
            CHECK(tl && tl->u.arr.n == 2);
            if (tl && tl->u.arr.n == 2) {
                const st_json *b1 = st_json_get(&tl->u.arr.items[1], "bytes");
                CHECK(b1 && b1->u.arr.n == 1 && b1->u.arr.items[0].u.number == 255);
            }
        }
        const st_json *us = st_json_get(j, "usage");
        CHECK(st_json_get_num(us, "prompt_tokens", 0) == 5 && st_json_get_num(us, "completion_tokens", 0) == 2 &&
              st_json_get_num(us, "total_tokens", 0) == 7);
    }
    st_json_free(j);

    /* completions' legacy logprobs */
    sb.len = 0;
    m.kind = ST_API_COMPLETION;
    st_api_full_response(&sb, &m, &b, "length", &u);
    j = NULL;
    CHECKF(st_json_parse(sb.buf, sb.len, &j) == ST_OK, "%s", sb.buf);
    if (j) {
        CHECK(strcmp(st_json_get_str(j, "object", ""), "text_completion") == 0);
        const st_json *c0 = &st_json_get(j, "choices")->u.arr.items[0];
        CHECK(strcmp(st_json_get_str(c0, "text", ""), "Hi there") == 0);
        const st_json *lp = st_json_get(c0, "logprobs");
        const st_json *off = st_json_get(lp, "text_offset");
        CHECK(off && off->u.arr.n == 2 && off->u.arr.items[1].u.number == 2);
        const st_json *tl = st_json_get(lp, "top_logprobs");
        CHECK(tl && tl->u.arr.n == 2 && tl->u.arr.items[0].type == ST_JSON_OBJECT);
    }
    st_json_free(j);

    /* streaming: every event a parseable chunk */
    sb.len = 0;
    m.kind = ST_API_CHAT;
    st_api_sse_role(&sb, &m);
    st_api_sse_pieces(&sb, &m, &b);
    st_api_sse_finish(&sb, &m, "stop");
    st_api_sse_usage(&sb, &m, &u);
    st_api_sse_done(&sb);
    int n_events = 0, n_json = 0;
    for (char *p = sb.buf; (p = strstr(p, "data: ")); n_events++) {
        p += 6;
        char *end = strstr(p, "\n\n");
        if (!end)
            break;
        st_json *c = NULL;
        if (st_json_parse(p, (size_t)(end - p), &c) == ST_OK) {
            n_json++;
            CHECK(strcmp(st_json_get_str(c, "object", ""), "chat.completion.chunk") == 0);
        }
        st_json_free(c);
        p = end;
    }
    CHECK(n_events == 6 && n_json == 5); /* role, 2 pieces, finish, usage + [DONE] */
    CHECK(sb.len > 14 && strcmp(sb.buf + sb.len - 14, "data: [DONE]\n\n") == 0);
    st_sb_free(&sb);
    st_piece_buf_free(&b);
}

int main(void)
{
    st_log_set_level(ST_LOG_WARN);
    test_bad_table();
    test_oversized_body();
    test_good_chat();
    test_good_completion();
    test_writers();
    return test_done();
}
