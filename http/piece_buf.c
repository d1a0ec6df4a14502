/* Generated pieces crossing threads (see piece_buf.h). */
#include "piece_buf.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

void st_piece_buf_init(st_piece_buf *b)
{
    memset(b, 0, sizeof *b);
    st_sb_init(&b->bytes);
}

void st_piece_buf_free(st_piece_buf *b)
{
    st_sb_free(&b->bytes);
    free(b->p);
    free(b->tops);
    memset(b, 0, sizeof *b);
}

void st_piece_buf_clear(st_piece_buf *b)
{
    b->bytes.len = 0;
    b->n = 0;
    b->n_tops = 0;
}

void st_piece_buf_add(st_piece_buf *b, const st_gen_event *ev)
{
    int with_lp = ev->has_token && ev->has_logprob;
    if (ev->text_len == 0 && !with_lp)
        return;
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16;
        b->p = st_xrealloc(b->p, sizeof *b->p * (size_t)b->cap);
    }
    st_piece *p = &b->p[b->n++];
    memset(p, 0, sizeof *p);
    p->text_off = b->bytes.len;
    p->text_len = ev->text_len;
    st_sb_putn(&b->bytes, ev->text, ev->text_len);
    p->top0 = b->n_tops;
    if (!with_lp)
        return;
    p->has_logprob = 1;
    p->logprob = ev->logprob;
    p->tok_off = b->bytes.len;
    p->tok_len = ev->token_len;
    st_sb_putn(&b->bytes, ev->token, ev->token_len);
    int n_top = ST_MAX(0, ST_MIN(ev->n_top, ST_GEN_MAX_TOP_LOGPROBS));
    if (b->n_tops + n_top > b->cap_tops) {
        b->cap_tops = ST_MAX(2 * b->cap_tops, b->n_tops + n_top + 16);
        b->tops = st_xrealloc(b->tops, sizeof *b->tops * (size_t)b->cap_tops);
    }
    for (int k = 0; k < n_top; k++) {
        st_piece_top *t = &b->tops[b->n_tops++];
        t->off = b->bytes.len;
        t->len = ev->top[k].token_len;
        t->logprob = ev->top[k].logprob;
        st_sb_putn(&b->bytes, ev->top[k].token, ev->top[k].token_len);
    }
    p->n_top = n_top;
}

void st_piece_buf_swap(st_piece_buf *a, st_piece_buf *b)
{
    st_piece_buf t = *a;
    *a = *b;
    *b = t;
}
