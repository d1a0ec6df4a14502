/* JSON parser and writer: valid documents, every class of malformed input,
 * escapes and surrogates, depth limit, and writer round trips. */
#include <stdint.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"
#include "tests/test.h"

static st_json *parse_ok(const char *s)
{
    st_json *j = NULL;
    int rc = st_json_parse(s, strlen(s), &j);
    CHECKF(rc == ST_OK, "parse of %s failed: %s", s, st_errmsg());
    return rc == ST_OK ? j : NULL;
}

static void parse_bad(const char *s, size_t len, const char *why)
{
    st_json *j = (st_json *)(uintptr_t)1; /* must be left untouched */
    int rc = st_json_parse(s, len, &j);
    CHECKF(rc == ST_EINVAL, "expected failure (%s) for \"%.*s\"", why, (int)len, s);
    CHECKF(j == (st_json *)(uintptr_t)1, "out written on failure (%s)", why);
    CHECKF(strstr(st_errmsg(), "byte ") != NULL, "message lacks offset: %s", st_errmsg());
}
#define BAD(s) parse_bad(s, strlen(s), s)

static void test_values(void)
{
    st_json *j = parse_ok(" {\"a\": 1, \"b\": [true, false, null, -2.5e3, \"x\"], \"c\": {}, \"d\": []}\n");
    if (!j)
        return;
    CHECK(j->type == ST_JSON_OBJECT && j->u.obj.n == 4);
    CHECK(strcmp(j->u.obj.keys[0], "a") == 0 && strcmp(j->u.obj.keys[3], "d") == 0); /* order kept */
    CHECK(st_json_get_num(j, "a", 0) == 1);
    const st_json *b = st_json_get(j, "b");
    CHECK(b && b->type == ST_JSON_ARRAY && b->u.arr.n == 5);
    if (b && b->u.arr.n == 5) {
        CHECK(b->u.arr.items[0].type == ST_JSON_BOOL && b->u.arr.items[0].u.boolean == 1);
        CHECK(b->u.arr.items[1].type == ST_JSON_BOOL && b->u.arr.items[1].u.boolean == 0);
        CHECK(b->u.arr.items[2].type == ST_JSON_NULL);
        CHECK(b->u.arr.items[3].type == ST_JSON_NUMBER && b->u.arr.items[3].u.number == -2500.0);
        CHECK(b->u.arr.items[4].type == ST_JSON_STRING && strcmp(b->u.arr.items[4].u.str.s, "x") == 0);
    }
    const st_json *c = st_json_get(j, "c");
    CHECK(c && c->type == ST_JSON_OBJECT && c->u.obj.n == 0);
    CHECK(st_json_get(j, "zz") == NULL);
    CHECK(st_json_get(b, "a") == NULL); /* not an object */
    CHECK(strcmp(st_json_get_str(j, "a", "dflt"), "dflt") == 0); /* wrong type -> default */
    CHECK(st_json_get_bool(j, "a", 7) == 7);
    st_json_free(j);

    /* scalars at top level, duplicate keys (last wins) */
    j = parse_ok("42");
    CHECK(j && j->type == ST_JSON_NUMBER && j->u.number == 42);
    st_json_free(j);
    j = parse_ok("{\"k\":1,\"k\":2}");
    CHECK(st_json_get_num(j, "k", 0) == 2);
    st_json_free(j);

    /* numbers */
    const char *nums[] = {"0", "-0", "1.5", "1e3", "1E-2", "-12345678901234567890", "0.1", "123456789012345"};
    double want[] = {0, -0.0, 1.5, 1000, 0.01, -12345678901234567890.0, 0.1, 123456789012345.0};
    for (size_t i = 0; i < ST_ARRAY_LEN(nums); i++) {
        j = parse_ok(nums[i]);
        CHECKF(j && j->type == ST_JSON_NUMBER && j->u.number == want[i], "%s", nums[i]);
        st_json_free(j);
    }
}

static void test_strings(void)
{
    st_json *j = parse_ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
    const char want[] = "a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    CHECK(j && j->type == ST_JSON_STRING && j->u.str.len == sizeof want - 1 && memcmp(j->u.str.s, want, sizeof want) == 0);
    st_json_free(j);

    /* embedded NUL: len counts past it */
    j = parse_ok("\"a\\u0000b\"");
    CHECK(j && j->u.str.len == 3 && j->u.str.s[1] == 0 && j->u.str.s[2] == 'b' && j->u.str.s[3] == 0);
    st_json_free(j);

    /* raw UTF-8 passes through; keys are unescaped too */
    j = parse_ok("{\"\\u0067\xC4\xA0\": \"\xE4\xBD\xA0\"}");
    CHECK(j && j->u.obj.key_lens[0] == 3 && strcmp(j->u.obj.keys[0], "g\xC4\xA0") == 0);
    CHECK(strcmp(st_json_get_str(j, "g\xC4\xA0", ""), "\xE4\xBD\xA0") == 0);
    st_json_free(j);
}

static void test_errors(void)
{
    BAD("");
    BAD("   ");
    BAD("{");
    BAD("[1,]");
    BAD("{\"a\":1,}");
    BAD("{\"a\" 1}");
    BAD("{a:1}");
    BAD("[1 2]");
    BAD("01");
    BAD("1.");
    BAD(".5");
    BAD("1e");
    BAD("+1");
    BAD("-");
    BAD("1e999");
    BAD("tru");
    BAD("nul");
    BAD("True");
    BAD("{} x");
    BAD("[] []");
    BAD("\"abc");
    BAD("\"abc\\");
    BAD("\"\\x\"");
    BAD("\"\\u12\"");
    BAD("\"\\u12G4\"");
    BAD("\"\\ud800\"");         /* lone high surrogate */
    BAD("\"\\ud800x\"");
    BAD("\"\\ud800\\u0041\""); /* high + non-low */
    BAD("\"\\udc00\"");         /* lone low surrogate */
    BAD("\"a\tb\"");            /* raw control char */
    BAD("\"\xC3\"");            /* truncated UTF-8 */
    BAD("\"\xC0\xAF\"");        /* overlong */
    BAD("\"\xED\xA0\x80\"");    /* encoded surrogate */
    BAD("\"\xFF\"");
    BAD("[\"a\"\xFF]");
    /* NUL byte inside the buffer is not whitespace */
    parse_bad("[1]\0", 4, "NUL after value");
    parse_bad("\"a\0b\"", 5, "raw NUL in string");

    /* the error names the offset of the problem */
    st_json *j;
    CHECK(st_json_parse("[1, 2, x]", 9, &j) == ST_EINVAL);
    CHECKF(strstr(st_errmsg(), "byte 7") != NULL, "%s", st_errmsg());

    /* every strict prefix of a document that is an object is invalid */
    const char *doc = "{\"a\": [1, -2.5e-1, \"\\u00e9\\ud83d\\ude00\", {\"b\": null}], \"c\": true}";
    size_t n = strlen(doc);
    for (size_t len = 0; len < n; len++)
        parse_bad(doc, len, "prefix");
    j = parse_ok(doc);
    st_json_free(j);
}

static void test_depth(void)
{
    char buf[2 * (ST_JSON_MAX_DEPTH + 1) + 1];
    for (int d = ST_JSON_MAX_DEPTH; d <= ST_JSON_MAX_DEPTH + 1; d++) {
        for (int i = 0; i < d; i++) {
            buf[i] = '[';
            buf[2 * d - 1 - i] = ']';
        }
        st_json *j = NULL;
        int rc = st_json_parse(buf, (size_t)(2 * d), &j);
        if (d <= ST_JSON_MAX_DEPTH)
            CHECKF(rc == ST_OK, "depth %d: %s", d, st_errmsg());
        else
            CHECKF(rc == ST_EINVAL && strstr(st_errmsg(), "nesting"), "depth %d", d);
        st_json_free(j);
    }
    /* a deep document that fails deep inside frees what it built */
    st_json *j = NULL;
    CHECK(st_json_parse("[[[[{\"a\":[\"x\",{\"b\":\"y\"", 22, &j) == ST_EINVAL);
}

static void test_as_int(void)
{
    int64_t v = -1;
    st_json *j = parse_ok("[3, 3.5, -7, 1e20, 9007199254740992, \"3\"]");
    if (!j)
        return;
    st_json *it = j->u.arr.items;
    CHECK(st_json_as_int(&it[0], 0, 10, &v) == 1 && v == 3);
    CHECK(st_json_as_int(&it[0], 4, 10, &v) == 0);
    CHECK(st_json_as_int(&it[1], 0, 10, &v) == 0);
    CHECK(st_json_as_int(&it[2], -10, 10, &v) == 1 && v == -7);
    CHECK(st_json_as_int(&it[2], 0, 10, &v) == 0);
    CHECK(st_json_as_int(&it[3], INT64_MIN, INT64_MAX, &v) == 0);
    CHECK(st_json_as_int(&it[4], INT64_MIN, INT64_MAX, &v) == 1 && v == 9007199254740992LL);
    CHECK(st_json_as_int(&it[5], INT64_MIN, INT64_MAX, &v) == 0);
    CHECK(st_json_as_int(NULL, 0, 1, &v) == 0);
    st_json_free(j);
}

static void test_big_object(void)
{
    /* a vocabulary-sized object: 150k members, checked member by member */
    const int n = 150000;
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{");
    for (int i = 0; i < n; i++)
        st_sb_printf(&sb, "%s\"tok%d\\u0120\":%d", i ? "," : "", i, i);
    st_sb_puts(&sb, "}");
    st_json *j = NULL;
    CHECKF(st_json_parse(sb.buf, sb.len, &j) == ST_OK, "%s", st_errmsg());
    if (j) {
        CHECK(j->type == ST_JSON_OBJECT && j->u.obj.n == (size_t)n);
        int good = 1;
        char key[32];
        for (int i = 0; i < n && good; i++) {
            int kl = snprintf(key, sizeof key, "tok%d\xC4\xA0", i);
            good = j->u.obj.key_lens[i] == (size_t)kl && strcmp(j->u.obj.keys[i], key) == 0 &&
                   j->u.obj.vals[i].type == ST_JSON_NUMBER && j->u.obj.vals[i].u.number == i;
        }
        CHECK(good);
        CHECK(st_json_get_num(j, "tok149999\xC4\xA0", -1) == 149999);
    }
    st_json_free(j);
    st_sb_free(&sb);
}

static void test_writer(void)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "x=");
    st_sb_printf(&sb, "%d:%s", 42, "y");
    CHECK(sb.len == 6 && strcmp(sb.buf, "x=42:y") == 0);
    /* printf that needs the buffer to grow */
    char big[300];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    st_sb_printf(&sb, "[%s]", big);
    CHECK(sb.len == 6 + 301 && sb.buf[sb.len] == 0 && sb.buf[sb.len - 1] == ']');
    st_sb_free(&sb);
    CHECK(sb.buf == NULL && sb.len == 0);

    /* escaping: round trip through the parser for every byte 0..0x7f and UTF-8 */
    char src[160];
    size_t n = 0;
    for (int c = 0; c < 0x80; c++)
        src[n++] = (char)c;
    memcpy(src + n, "\xC3\xA9\xF0\x9F\x98\x80\"\\", 8);
    n += 8;
    st_sb_json_str(&sb, src, n);
    st_json *j = NULL;
    CHECKF(st_json_parse(sb.buf, sb.len, &j) == ST_OK, "%s: %s", sb.buf, st_errmsg());
    CHECK(j && j->type == ST_JSON_STRING && j->u.str.len == n && memcmp(j->u.str.s, src, n) == 0);
    CHECK(strstr(sb.buf, "\\n") && strstr(sb.buf, "\\u001f") && strstr(sb.buf, "\\\"") && strstr(sb.buf, "\xC3\xA9"));
    st_json_free(j);
    st_sb_free(&sb);

    /* invalid UTF-8 becomes U+FFFD: the output stays valid JSON */
    st_sb_json_str(&sb, "a\xFF" "b\xC3", 4);
    CHECKF(strcmp(sb.buf, "\"a\\ufffdb\\ufffd\"") == 0, "%s", sb.buf);
    CHECK(st_json_parse(sb.buf, sb.len, &j) == ST_OK);
    st_json_free(j);
    st_sb_free(&sb);
}

int main(void)
{
    test_values();
    test_strings();
    test_errors();
    test_depth();
    test_as_int();
    test_big_object();
    test_writer();
    return test_done();
}
