/* A minimal test harness: CHECK records a failure and goes on; a test
 * binary returns non-zero if any check failed, or 77 (ctest: skipped) via
 * TEST_SKIP when a fixture it needs is absent. */
#ifndef ST_TEST_H
#define ST_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_checks, test_failures;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        test_checks++;                                                                   \
        if (!(cond)) {                                                                   \
            test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECKF(cond, ...)                                                                \
    do {                                                                                 \
        test_checks++;                                                                   \
        if (!(cond)) {                                                                   \
            test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                            \
    CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

#define TEST_SKIP(...)                                                                   \
    do {                                                                                 \
        fprintf(stderr, "SKIP: ");                                                       \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fputc('\n', stderr);                                                             \
        exit(77);                                                                        \
    } while (0)

/* Print a summary and give the exit code. */
static inline int test_done(void)
{
    fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* Path of the shared fixtures directory, or NULL when absent. */
static inline const char *test_fixtures_dir(void)
{
    static char path[4096];
    const char *env = getenv("ST_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s", env ? env : ST_SOURCE_DIR "/../shared/fixtures");
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fclose(f);
    return path;
}

/* Path of the default model (set by the test runner through
 * ST_TEST_MODEL, else the cache), or NULL when not present. */
static inline const char *test_default_model(void)
{
    static char path[4096];
    const char *env = getenv("ST_TEST_MODEL");
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        const char *home = getenv("STRAIT_HOME");
        if (home)
            snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", home);
        else
            snprintf(path, sizeof path, "%s/.cache/strait/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                     getenv("HOME") ? getenv("HOME") : "/root");
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fclose(f);
    return path;
}

#endif
