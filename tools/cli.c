/* `strait` verb dispatch, --help and --version. */
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

#include "common/st_common.h"

static const char usage[] =
    "usage: strait [--version] [--help] VERB [ARGS]\n"
    "\n"
    "Verbs:\n"
    "  run        serve a model: continuous batching + OpenAI-compatible API\n"
    "  serve      one stage of a manual pipeline (--start-layer/--end-layer/--next)\n"
    "  chat       the web UI here, the API proxied to a scheduler (-s HOST:PORT)\n"
    "  join       run this machine as a cluster node (-s SCHEDULER)\n"
    "  status     nodes and pipelines of a running `strait run` (--url)\n"
    "  generate   generate text from a prompt on this machine\n"
    "  tokenize   print the token ids of stdin (--decode: the reverse)\n"
    "  inspect    print a model file's architecture, dims and tensors\n"
    "  models     manage the model cache: pull | list | path [NAME]\n"
    "  bench      benchmarks: engine | serve | transport | kernels\n"
    "\n"
    "MODEL arguments take a path (GGUF file or Hugging Face directory), a cached\n"
    "name, or hf:ORG/NAME. Without -m the default model (SmolLM2-135M-Instruct\n"
    "Q4_1) is used. `strait VERB --help` describes a verb.\n";

typedef struct {
    const char *name;
    int (*fn)(int, char **);
} verb;

int st_cli_main(int argc, char **argv)
{
    static const verb verbs[] = {
        {"run", st_cmd_run},           {"generate", st_cmd_generate}, {"tokenize", st_cmd_tokenize}, {"inspect", st_cmd_inspect},
        {"models", st_cmd_models},     {"bench", st_cmd_bench},
        {"serve", st_cmd_serve},       {"chat", st_cmd_chat},       {"status", st_cmd_status},     {"join", st_cmd_join},
    };
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *v = argv[1];
    if (!strcmp(v, "--help") || !strcmp(v, "-h") || !strcmp(v, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(v, "--version") || !strcmp(v, "-V")) {
        printf("strait %s\n", ST_VERSION);
        return 0;
    }
    for (size_t i = 0; i < ST_ARRAY_LEN(verbs); i++)
        if (!strcmp(v, verbs[i].name))
            return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "strait: unknown verb '%s' (see strait --help)\n", v);
    return 2;
}
