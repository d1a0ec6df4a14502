/* A growable list of generated pieces (text + optional logprobs), the unit
 * that crosses from the back-end thread to the event loop: the callback
 * appends, the loop takes the whole list at once (coalescing whatever
 * arrived while a send was in flight) and formats it. Bytes of all
 * pieces live in one buffer; pieces hold offsets into it. */
#ifndef ST_PIECE_BUF_H
#define ST_PIECE_BUF_H

#include <stddef.h>

#include "../common/json.h"
#include "gen_backend.h"

typedef struct st_piece_top {
    size_t off, len; /* token bytes in st_piece_buf.bytes */
    float logprob;
} st_piece_top;

typedef struct st_piece {
    size_t text_off, text_len; /* final text bytes */
    int has_logprob;
    size_t tok_off, tok_len;   /* sampled token bytes */
    float logprob;
    int top0, n_top;           /* tops[top0 .. top0 + n_top) */
} st_piece;

typedef struct st_piece_buf {
    st_strbuf bytes;
    st_piece *p;      /* (n,) */
    int n, cap;
    st_piece_top *tops; /* (n_tops,) */
    int n_tops, cap_tops;
} st_piece_buf;

void st_piece_buf_init(st_piece_buf *b);
void st_piece_buf_free(st_piece_buf *b);
/* Forget the pieces, keep the memory. */
void st_piece_buf_clear(st_piece_buf *b);
/* Append the text and logprobs of one event (nothing when it carries
 * neither text nor a token). */
void st_piece_buf_add(st_piece_buf *b, const st_gen_event *ev);
/* Swap contents (O(1)). */
void st_piece_buf_swap(st_piece_buf *a, st_piece_buf *b);

#endif
