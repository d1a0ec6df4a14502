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
ST_STUB(st_cmd_generate, "generate")
ST_STUB(st_cmd_tokenize, "tokenize")
ST_STUB(st_cmd_inspect, "inspect")
ST_STUB(st_cmd_models, "models")
ST_STUB(st_cmd_bench, "bench")
