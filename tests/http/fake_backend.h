/* A stand-in generation back end for the HTTP tests: one thread that
 * "generates" a deterministic sequence of words for every request, round
 * robin, one word per request per turn, and a tiny byte-fallback
 * tokenizer, so the whole HTTP layer runs without a model.
 *
 * Word k of a request with n_prompt prompt tokens is
 * fake_words[(n_prompt + k) % FAKE_NWORDS], preceded by a space when k > 0;
 * a word equal to a stop string ends it with "stop" (not emitted);
 * max_tokens ends it with "length". With logprobs, each token's logprob is
 * -(k+1)/100 and its alternatives are "alt<j>" with -(j+1). */
#ifndef FAKE_BACKEND_H
#define FAKE_BACKEND_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/json.h"
#include "../../common/st_common.h"
#include "../../engine/tokenizer.h"
#include "../../http/gen_backend.h"

#define FAKE_NWORDS 8
static const char *const fake_words[FAKE_NWORDS] = {"alpha", "bravo", "charlie", "delta",
                                                    "echo",  "foxtrot", "golf", "hotel"};

typedef struct fake_req {
    uint64_t id;
    st_gen_cb cb;
    void *user;
    int n_prompt, max_tokens, n_gen;
    int logprobs, top_logprobs;
    char stop[ST_GEN_MAX_STOP][ST_GEN_MAX_STOP_LEN + 1];
    int n_stop;
    int aborted;
    struct fake_req *next;
} fake_req;

typedef struct fake_backend {
    st_gen_backend be;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fake_req *head;
    fake_req *cursor; /* next request to serve */
    uint64_t next_id;
    int ready, max_ctx, paused, pace_us, quit;
    int n_active;
    uint64_t n_submitted, n_aborted, n_finished; /* read with __atomic_load_n */
    pthread_t th;
} fake_backend;

/* The expected text of a request that generates n words. */
static inline void fake_expected(int n_prompt, int n, st_strbuf *sb)
{
    for (int k = 0; k < n; k++) {
        if (k)
            st_sb_puts(sb, " ");
        st_sb_puts(sb, fake_words[(n_prompt + k) % FAKE_NWORDS]);
    }
}

static void fake_unlink(fake_backend *f, fake_req *r)
{
    for (fake_req **p = &f->head; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    if (f->cursor == r)
        f->cursor = r->next;
    f->n_active--;
}

static void *fake_thread(void *arg)
{
    fake_backend *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->quit && (!f->head || f->paused))
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->quit && !f->head)
            break;
        if (!f->cursor)
            f->cursor = f->head;
        fake_req *r = f->cursor;
        f->cursor = r->next;
        /* build this turn's event while holding the lock (abort flags) */
        st_gen_event ev;
        memset(&ev, 0, sizeof ev);
        char piece[64] = "";
        char tops[ST_GEN_MAX_TOP_LOGPROBS][8];
        st_gen_top top[ST_GEN_MAX_TOP_LOGPROBS];
        ev.n_prompt = r->n_prompt;
        if (r->aborted || f->quit) {
            ev.finish = ST_GEN_ABORT;
        } else {
            const char *w = fake_words[(r->n_prompt + r->n_gen) % FAKE_NWORDS];
            int stop = 0;
            for (int s = 0; s < r->n_stop; s++)
                stop |= strcmp(r->stop[s], w) == 0;
            snprintf(piece, sizeof piece, "%s%s", r->n_gen ? " " : "", w);
            r->n_gen++;
            ev.has_token = 1;
            if (stop) {
                ev.finish = ST_GEN_STOP;
            } else {
                ev.text = piece;
                ev.text_len = strlen(piece);
                if (r->n_gen >= r->max_tokens)
                    ev.finish = ST_GEN_LENGTH;
            }
            if (r->logprobs) {
                ev.has_logprob = 1;
                ev.token = piece;
                ev.token_len = strlen(piece);
                ev.logprob = -(float)r->n_gen / 100.0f;
                for (int j = 0; j < r->top_logprobs; j++) {
                    snprintf(tops[j], sizeof tops[j], "alt%d", j);
                    top[j].token = tops[j];
                    top[j].token_len = strlen(tops[j]);
                    top[j].logprob = -(float)(j + 1);
                }
                ev.top = top;
                ev.n_top = r->top_logprobs;
            }
        }
        ev.n_generated = r->n_gen;
        if (ev.finish != ST_GEN_NONE)
            fake_unlink(f, r);
        int pace = f->pace_us;
        pthread_mutex_unlock(&f->mu);
        r->cb(&ev, r->user);
        if (ev.finish != ST_GEN_NONE) {
            __atomic_add_fetch(ev.finish == ST_GEN_ABORT ? &f->n_aborted : &f->n_finished, 1, __ATOMIC_SEQ_CST);
            free(r);
        }
        if (pace > 0)
            usleep((useconds_t)pace); /* pacing of the fake "model", not synchronization */
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int fake_submit(st_gen_backend *b, const st_gen_request *q, uint64_t *id)
{
    fake_backend *f = b->impl;
    if (q->n_prompt < 1 || q->max_tokens < 1)
        return st_err(ST_EINVAL, "fake: empty prompt or max_tokens < 1");
    fake_req *r = calloc(1, sizeof *r);
    r->cb = q->cb;
    r->user = q->user;
    r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->logprobs = q->logprobs;
    r->top_logprobs = q->top_logprobs;
    for (int s = 0; s < q->n_stop && s < ST_GEN_MAX_STOP; s++)
        snprintf(r->stop[r->n_stop++], sizeof r->stop[0], "%s", q->stop[s]);
    pthread_mutex_lock(&f->mu);
    r->id = *id = ++f->next_id;
    /* append, so that requests are served in arrival order */
    fake_req **p = &f->head;
    while (*p)
        p = &(*p)->next;
    *p = r;
    f->n_active++;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    __atomic_add_fetch(&f->n_submitted, 1, __ATOMIC_SEQ_CST);
    return ST_OK;
}

static void fake_abort(st_gen_backend *b, uint64_t id)
{
    fake_backend *f = b->impl;
    pthread_mutex_lock(&f->mu);
    for (fake_req *r = f->head; r; r = r->next)
        if (r->id == id)
            r->aborted = 1;
    pthread_mutex_unlock(&f->mu);
}

static void fake_stats(st_gen_backend *b, st_gen_stats *s)
{
    fake_backend *f = b->impl;
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&f->mu);
    s->ready = f->ready;
    s->max_ctx = f->max_ctx;
    s->n_running = f->n_active;
    s->kv_blocks_total = 100;
    s->kv_blocks_used = f->n_active;
    s->kv_blocks_free = 100 - f->n_active;
    pthread_mutex_unlock(&f->mu);
}

static void fake_set(fake_backend *f, int *field, int v)
{
    pthread_mutex_lock(&f->mu);
    *field = v;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static fake_backend *fake_create(int max_ctx)
{
    fake_backend *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->max_ctx = max_ctx;
    f->be.submit = fake_submit;
    f->be.abort = fake_abort;
    f->be.stats = fake_stats;
    f->be.impl = f;
    pthread_create(&f->th, NULL, fake_thread, f);
    return f;
}

/* Stops the thread after finishing what is queued with ABORT. */
static void fake_destroy(fake_backend *f)
{
    fake_set(f, &f->quit, 1);
    pthread_join(f->th, NULL);
    free(f);
}

/* A tokenizer with a byte-fallback vocabulary (every byte one token) and
 * ChatML special tokens, built in memory. */
static st_tokenizer *fake_tokenizer(void)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"added_tokens\":[");
    const char *special[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 5; i++)
        st_sb_printf(&sb, "%s{\"id\":%d,\"content\":\"%s\",\"special\":true}", i ? "," : "", i, special[i]);
    st_sb_puts(&sb, "],\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},"
                    "\"pre_tokenizer\":null,\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,"
                    "\"unk_token\":\"<unk>\",\"vocab\":{");
    for (int i = 0; i < 5; i++)
        st_sb_printf(&sb, "\"%s\":%d,", special[i], i);
    st_sb_puts(&sb, "\"\\u2581\":5");
    for (int b = 0; b < 256; b++)
        st_sb_printf(&sb, ",\"<0x%02X>\":%d", b, 6 + b);
    st_sb_puts(&sb, "},\"merges\":[]}}");
    st_tokenizer *t = NULL;
    if (st_tok_load_json_mem(sb.buf, sb.len, &t) != ST_OK)
        fprintf(stderr, "fake tokenizer: %s\n", st_errmsg());
    st_sb_free(&sb);
    return t;
}

#endif
