/* From an API request to prompt token ids: the model's chat template
 * (engine/chat.h) and tokenizer (engine/tokenizer.h), with BOS handled once
 * (templates that write BOS text get it as text, others get the id
 * prepended when the tokenizer asks for it). */
#ifndef ST_HTTP_PROMPT_H
#define ST_HTTP_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/chat.h"
#include "../engine/tokenizer.h"

typedef struct st_prompt_cfg {
    const st_tokenizer *tok; /* borrowed */
    st_chat_format fmt;
    char *default_system;    /* heap, or NULL */
    char *bos_text;          /* heap: BOS text for templates that write it, or NULL */
} st_prompt_cfg;

/* Recognise the template (tmpl, else the tokenizer's own; unknown ones are
 * rendered as ChatML with a warning). ST_OK or ST_EINVAL for a NULL tok. */
int st_prompt_init(st_prompt_cfg *p, const st_tokenizer *tok, const char *tmpl);
void st_prompt_free(st_prompt_cfg *p);

/* Render and tokenize. *ids is heap (free()). enable_thinking < 0: the
 * template's default. ST_OK, or ST_EINVAL naming the problem. */
int st_prompt_chat(const st_prompt_cfg *p, const st_chat_msg *msgs, int n, int enable_thinking, int32_t **ids,
                   int *n_ids);
int st_prompt_text(const st_prompt_cfg *p, const char *text, size_t len, int32_t **ids, int *n_ids);

#endif
