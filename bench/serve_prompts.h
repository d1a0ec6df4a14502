/* Prompts for the serving benchmark: random ones of a chosen length, or a
 * dataset file. */
#ifndef ST_SERVE_PROMPTS_H
#define ST_SERVE_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_prompt_set {
    char **text; /* (n,) NUL-terminated UTF-8 */
    int n;
} st_prompt_set;

/* n prompts of n_words common English words each, drawn with `seed`. Each
 * word after a space is one token in the usual BPE vocabularies (GPT-2,
 * Llama 3, SmolLM, Qwen), so n_words approximates the prompt's token count;
 * a chat template or a BOS adds a few more. The first words differ between
 * prompts, so that prefix caches cannot share them. */
void st_prompts_random(int n, int n_words, uint64_t seed, st_prompt_set *out);

/* A dataset: one JSON string per line (blank lines skipped). Returns ST_OK,
 * or ST_EIO / ST_EINVAL with a message naming the file and line. */
int st_prompts_load(const char *path, st_prompt_set *out);

void st_prompts_free(st_prompt_set *p);

#endif
