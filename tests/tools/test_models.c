/* MODEL argument resolution and hf: reference parsing, on a temporary cache
 * (no network: every case here is answered from disk or refused). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/st_common.h"
#include "tests/test.h"
#include "tools/hub.h"
#include "tools/models.h"

static char home[256], md[512];

static void touch(const char *rel, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", md, rel);
    FILE *f = fopen(p, "w");
    CHECKF(f != NULL, "create %s", p);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void mkd(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", md, rel);
    CHECKF(mkdir(p, 0755) == 0, "mkdir %s", p);
}

/* resolve(ref) must give md/want (want NULL: must fail with `code`, message containing `text`) */
static void expect(const char *ref, int allow, const char *want, int code, const char *text)
{
    char out[1024], full[1024];
    int rc = st_model_resolve(ref, allow, out, sizeof out);
    if (want) {
        snprintf(full, sizeof full, "%s/%s", md, want);
        CHECKF(rc == ST_OK && !strcmp(out, full), "resolve '%s': rc %d out '%s' (%s), want %s", ref ? ref : "(null)",
               rc, rc ? "" : out, st_errmsg(), full);
    } else {
        CHECKF(rc == code, "resolve '%s': rc %d, want %d (%s)", ref ? ref : "(null)", rc, code, st_errmsg());
        CHECKF(strstr(st_errmsg(), text) != NULL, "resolve '%s': message '%s' lacks '%s'", ref ? ref : "(null)",
               st_errmsg(), text);
    }
}

static void test_parse_ref(void)
{
    st_hub_ref r;
    CHECK(st_hub_parse_ref("hf:org/name", &r) == ST_OK);
    CHECK(!strcmp(r.org, "org") && !strcmp(r.name, "name") && !r.file[0] && !strcmp(r.rev, "main"));
    CHECK(st_hub_parse_ref("hf:HuggingFaceTB/SmolLM2-135M-Instruct@v1.0", &r) == ST_OK);
    CHECK(!strcmp(r.name, "SmolLM2-135M-Instruct") && !strcmp(r.rev, "v1.0") && !r.file[0]);
    CHECK(st_hub_parse_ref("hf:o/n/sub/m.Q4_0.gguf", &r) == ST_OK);
    CHECK(!strcmp(r.file, "sub/m.Q4_0.gguf") && !strcmp(r.rev, "main"));
    CHECK(st_hub_parse_ref("hf:o/n/m.gguf@refs/pr/1", &r) == ST_OK);
    CHECK(!strcmp(r.file, "m.gguf") && !strcmp(r.rev, "refs/pr/1"));
    CHECK(st_hub_parse_ref("hf:o/n@abc123/m.gguf", &r) == ST_OK);
    CHECK(!strcmp(r.file, "m.gguf") && !strcmp(r.rev, "abc123"));

    static const char *const bad[] = {"hf:", "hf:org", "hf:/name", "hf:org/", "hf:../x", "hf:o/n/../../etc/passwd",
                                      "hf:o/n/a//b.gguf", "hf:o/n@", "hf:o/n@a b", "hf:o/n@../x", "hf:o$/n",
                                      "hf:o/n/x.gguf@r/y.gguf", "hf:o/n/"};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++)
        CHECKF(st_hub_parse_ref(bad[i], &r) == ST_EINVAL, "'%s' accepted", bad[i]);
}

static void test_helpers(void)
{
    char out[64];
    CHECK(st_url_escape("refs/pr/1", 0, out, sizeof out) == ST_OK && !strcmp(out, "refs%2Fpr%2F1"));
    CHECK(st_url_escape("a b/c.gguf", 1, out, sizeof out) == ST_OK && !strcmp(out, "a%20b/c.gguf"));
    CHECK(st_url_escape("abcdef", 0, out, 4) == ST_ERANGE);

    char p[1024], hex[65];
    snprintf(p, sizeof p, "%s/abc.txt", home);
    FILE *f = fopen(p, "w");
    fputs("abc", f);
    fclose(f);
    CHECK(st_sha256_file(p, hex) == ST_OK);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK(st_sha256_file("/nonexistent/x", hex) == ST_ENOENT);

    setenv("HF_ENDPOINT", "http://127.0.0.1:9/", 1);
    CHECK(!strcmp(st_hub_endpoint(), "http://127.0.0.1:9"));
    unsetenv("HF_ENDPOINT");
    CHECK(!strcmp(st_hub_endpoint(), "https://huggingface.co"));
}

static void test_resolve(void)
{
    /* the default model, under its names */
    expect(NULL, 0, NULL, ST_ENOENT, "strait models pull");
    touch(ST_DEFAULT_MODEL_FILE, "GGUF");
    expect(NULL, 0, ST_DEFAULT_MODEL_FILE, 0, NULL);
    expect("", 0, ST_DEFAULT_MODEL_FILE, 0, NULL);
    expect("default", 0, ST_DEFAULT_MODEL_FILE, 0, NULL);
    expect("SmolLM2-135M-Instruct", 0, ST_DEFAULT_MODEL_FILE, 0, NULL); /* the alias, any case */
    expect("SmolLM2", 1, NULL, ST_ENOENT, "unknown model"); /* and no pull for a bad name */
    expect("smollm2-135m-instruct", 0, ST_DEFAULT_MODEL_FILE, 0, NULL);
    expect("SmolLM2-135M-Instruct.Q4_1", 0, ST_DEFAULT_MODEL_FILE, 0, NULL);

    /* cached GGUF files and repo directories */
    touch("other.gguf", "GGUF");
    expect("other", 0, "other.gguf", 0, NULL);
    expect("other.gguf", 0, "other.gguf", 0, NULL);
    mkd("org--gg");
    touch("org--gg/gg.Q4_0.gguf", "GGUF");
    expect("org--gg", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    expect("org/gg", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    expect("gg", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    expect("gg.Q4_0", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    expect("org--gg/gg.Q4_0", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    touch("org--gg/gg.Q8_0.gguf", "GGUF");
    expect("org--gg", 0, NULL, ST_EINVAL, "gg.Q8_0.gguf");
    touch("org--gg/.strait-complete", "gg.Q8_0.gguf\n");
    expect("org--gg", 0, "org--gg/gg.Q8_0.gguf", 0, NULL);
    /* hf: forms answered from the cache, without a request */
    expect("hf:org/gg", 0, "org--gg/gg.Q8_0.gguf", 0, NULL);
    expect("hf:org/gg/gg.Q4_0.gguf", 0, "org--gg/gg.Q4_0.gguf", 0, NULL);
    expect("hf:org/gg/gg.Q5_0.gguf", 0, NULL, ST_ENOENT, "not cached");
    expect("hf:org/gg@v2", 0, NULL, ST_ENOENT, "strait models pull hf:org/gg@v2");

    mkd("org--st");
    touch("org--st/config.json", "{}");
    touch("org--st/model.safetensors", "");
    expect("st", 0, "org--st", 0, NULL);
    expect("org/st", 0, "org--st", 0, NULL);

    /* a NAME in two repos is ambiguous */
    mkd("else--st");
    touch("else--st/config.json", "{}");
    expect("st", 0, NULL, ST_EINVAL, "matches 2");

    /* paths are themselves; a directory needs config.json */
    char p[1024], out[1024];
    snprintf(p, sizeof p, "%s/org--st", md);
    CHECK(st_model_resolve(p, 0, out, sizeof out) == ST_OK && !strcmp(out, p));
    snprintf(p, sizeof p, "%s/empty", home);
    mkdir(p, 0755);
    CHECK(st_model_resolve(p, 0, out, sizeof out) == ST_EINVAL);
    CHECK(strstr(st_errmsg(), "config.json") != NULL);

    /* unknown names list the cache and suggest a pull; no escaping the cache */
    expect("nope", 0, NULL, ST_ENOENT, "org--gg/gg.Q4_0.gguf");
    expect("nope", 0, NULL, ST_ENOENT, "strait models pull");
    expect("../models/other.gguf", 0, NULL, ST_ENOENT, "unknown model");
    CHECK(st_model_resolve("other", 0, out, 8) == ST_ERANGE);

    /* allow_download fetches a missing default (here with a python that is not there) */
    snprintf(p, sizeof p, "%s/%s", md, ST_DEFAULT_MODEL_FILE);
    unlink(p);
    setenv("STRAIT_PYTHON", "/nonexistent/python3", 1);
    expect(NULL, 1, NULL, ST_ENOENT, "cannot run /nonexistent/python3");
    unsetenv("STRAIT_PYTHON");
}

int main(void)
{
    snprintf(home, sizeof home, "/tmp/strait-test-models-XXXXXX");
    CHECK(mkdtemp(home) != NULL);
    setenv("STRAIT_HOME", home, 1);
    const char *d = st_models_dir();
    CHECK(d != NULL);
    snprintf(md, sizeof md, "%s/models", home);
    CHECKF(d && !strcmp(d, md), "models dir %s", d ? d : "(null)");
    struct stat sb;
    CHECK(stat(md, &sb) == 0 && S_ISDIR(sb.st_mode));

    test_parse_ref();
    test_helpers();
    test_resolve();

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", home);
    return test_done();
}
