/* Verbs not built yet (weak: a real definition replaces each). */
#include <stdio.h>

#include "tools/cli.h"

#define ST_STUB(fn, name)                                                      \
    __attribute__((weak)) int fn(int argc, char **argv)                        \
    {                                                                          \
        (void)argc;                                                            \
        (void)argv;                                                            \
        fprintf(stderr, "strait: '%s' is not available in this build\n", name); \
        return 2;                                                              \
    }

/* Benchmarks of modules still being built. */
__attribute__((weak)) int st_bench_transport_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "strait bench: 'transport' is not available in this build\n");
    return 2;
}
__attribute__((weak)) int st_bench_kernels_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "strait bench: 'kernels' is not available in this build\n");
    return 2;
}
