/* Chat templates: the model's template (GGUF tokenizer.chat_template or
 * tokenizer_config.json chat_template) is recognised as one of the known
 * families and rendered by a built-in formatter. An unrecognised template
 * falls back to ChatML with a logged warning (st_chat_detect reports it). */
#ifndef ST_CHAT_H
#define ST_CHAT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_CHAT_CHATML = 0,   /* <|im_start|>role\n...<|im_end|>\n (Qwen2) */
    ST_CHAT_QWEN3,        /* ChatML + <think> handling, enable_thinking */
    ST_CHAT_SMOLLM2,      /* ChatML with SmolLM's default system prompt */
    ST_CHAT_LLAMA3,       /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    ST_CHAT_LLAMA2,       /* <s>[INST] <<SYS>>...<</SYS>> ... [/INST] (also Mistral) */
    ST_CHAT_UNKNOWN,
} st_chat_format;

typedef struct st_chat_msg {
    const char *role;     /* "system" | "user" | "assistant" */
    const char *content;
    size_t content_len;
} st_chat_msg;

/* Recognise a template's family from its text (NULL -> ST_CHAT_UNKNOWN). */
st_chat_format st_chat_detect(const char *tmpl);
const char *st_chat_format_name(st_chat_format f);

typedef struct st_chat_opts {
    int add_generation_prompt; /* append the assistant header (default 1) */
    int enable_thinking;       /* qwen3: 0 adds an empty think block (default 1) */
    const char *bos_text;      /* BOS token text for formats that write it ("<s>"), or NULL */
} st_chat_opts;

/* Render messages into *out (heap, NUL-terminated; free()). The output
 * contains special-token text to be tokenized with parse_special = 1.
 * Returns ST_OK or ST_EINVAL (unknown role, empty message list). */
int st_chat_render(st_chat_format f, const st_chat_msg *msgs, int n, const st_chat_opts *opts, char **out,
                   size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
