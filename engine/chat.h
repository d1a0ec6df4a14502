/* Chat templates: the model's template (GGUF tokenizer.chat_template or
 * tokenizer_config.json chat_template) is recognised as one of the known
 * families and rendered by a built-in formatter that produces exactly what
 * the real Jinja template produces (checked byte for byte against
 * tests/golden/chat, made by tools/golden/chat_golden.py) for system, user
 * and assistant messages.
 *
 * Unrecognised templates: st_chat_detect returns ST_CHAT_UNKNOWN; the caller
 * then renders with ST_CHAT_CHATML and logs a warning naming the model
 * (st_chat_render itself also accepts ST_CHAT_UNKNOWN as ChatML, warning).
 *
 * Not supported (ST_EINVAL "unknown role"): tool messages, tool calls and
 * tool definitions, reasoning_content fields, multimodal content. Llama 3.1+
 * templates (date preamble, ipython role) are rendered as plain Llama 3,
 * and Mistral [INST] templates in the Llama 2 form (Mistral differs in
 * details: BOS once, system text prepended without <<SYS>>). */
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

/* BOS: the Llama 3 and Llama 2 templates write the BOS token text
 * themselves. With bos_text set (e.g. "<|begin_of_text|>", the tokenizer's
 * BOS text) the output holds it where the template puts it, and the caller
 * must tokenize WITHOUT adding BOS (else BOS is doubled). With bos_text NULL
 * the leading BOS is left out and the caller must let the tokenizer add it;
 * Llama 2 still writes "<s>" before later user turns. ChatML families never
 * write BOS (bos_text is ignored); the tokenizer's add_bos setting applies. */
typedef struct st_chat_opts {
    int add_generation_prompt; /* append the assistant header (default 1). Llama 2 has none;
                                  Llama 3 base templates always append it (use 1 to match) */
    int enable_thinking;       /* qwen3: 0 adds an empty think block (default 1) */
    const char *bos_text;      /* BOS token text for formats that write it, or NULL (see above) */
    const char *eos_text;      /* llama2: EOS text after assistant turns (NULL: "</s>") */
    const char *default_system; /* chatml: system prompt injected when the first message is not
                                   a system message, as Qwen2 templates do (NULL: none; see
                                   st_chat_default_system). smollm2: NULL means SmolLM's own */
} st_chat_opts;

/* Defaults: add_generation_prompt 1, enable_thinking 1, texts NULL. */
st_chat_opts st_chat_opts_default(void);

/* The default system prompt a ChatML template injects (a literal
 * '<|im_start|>system\n...<|im_end|>' in the template text): *out gets a
 * heap copy (free()), or NULL when the template injects none. ST_OK, or
 * ST_EINVAL for a NULL template. */
int st_chat_default_system(const char *tmpl, char **out);

/* Render messages into *out (heap, NUL-terminated; free()); out_len may be
 * NULL. opts NULL means st_chat_opts_default(). Each content is content_len
 * bytes (not necessarily NUL-terminated; NULL allowed when 0). The output
 * contains special-token text to be tokenized with parse_special = 1.
 * Returns ST_OK, or ST_EINVAL naming the problem (unknown role, empty
 * message list, Llama 2 roles not alternating user/assistant - the real
 * template raises an exception there too). *out is untouched on error. */
int st_chat_render(st_chat_format f, const st_chat_msg *msgs, int n, const st_chat_opts *opts, char **out,
                   size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
