/* Reading a model's weights in, with a progress bar (see prefault.h). */
#include "tools/prefault.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/st_common.h"

typedef struct bar {
    int tty;
    size_t done, total;
    double t_last, t0;
} bar;

static void bar_draw(bar *b, int final)
{
    if (!b->tty)
        return;
    double now = st_now_s();
    if (!final && now - b->t_last < 0.05)
        return;
    b->t_last = now;
    int w = 30, fill = b->total ? (int)((double)b->done / (double)b->total * w) : w;
    char s[64];
    for (int i = 0; i < w; i++)
        s[i] = i < fill ? '#' : ' ';
    s[w] = 0;
    fprintf(stderr, "\rloading weights [%s] %3d%% %7.1f / %.1f MB", s,
            b->total ? (int)(100.0 * (double)b->done / (double)b->total) : 100, (double)b->done / 1e6,
            (double)b->total / 1e6);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Touch t's pages (a volatile read of one byte per page), advancing the bar. */
static void touch(bar *b, const void *data, size_t n, volatile unsigned char *sink)
{
    if (!data || !n)
        return;
    const unsigned char *p = data;
    const size_t page = 4096, chunk = (size_t)8 << 20;
    madvise((void *)((uintptr_t)p & ~(uintptr_t)(page - 1)), n + ((uintptr_t)p & (page - 1)), MADV_WILLNEED);
    for (size_t off = 0; off < n; off += chunk) {
        size_t end = off + chunk < n ? off + chunk : n;
        for (size_t i = off; i < end; i += page)
            *sink ^= p[i];
        *sink ^= p[end - 1];
        b->done += end - off;
        bar_draw(b, 0);
    }
}

/* The model's large tensors (embedding, output, each layer's matrices),
 * each once; at most 2 + 7 per layer. */
static int big_tensors(const st_model *m, const st_tensor **out)
{
    int n = 0;
    const st_tensor *ends[2] = {m->tok_embd, m->output != m->tok_embd ? m->output : NULL};
    for (int i = 0; i < 2; i++)
        if (ends[i] && ends[i]->data)
            out[n++] = ends[i];
    for (int l = m->layer_start; l < m->layer_end; l++) {
        const st_layer_weights *w = &m->layers[l];
        const st_tensor *ts[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int i = 0; i < 7; i++)
            if (ts[i] && ts[i]->data)
                out[n++] = ts[i];
    }
    return n;
}

size_t st_cli_prefault(const st_model *m)
{
    bar b = {.tty = isatty(2), .t0 = st_now_s()};
    const st_tensor **ts = st_xmalloc(sizeof *ts * (size_t)(2 + 7 * (m->layer_end - m->layer_start)));
    int n = big_tensors(m, ts);
    for (int i = 0; i < n; i++)
        b.total += ts[i]->nbytes;
    volatile unsigned char sink = 0;
    for (int i = 0; i < n; i++)
        touch(&b, ts[i]->data, ts[i]->nbytes, &sink);
    free(ts);
    bar_draw(&b, 1);
    ST_INFO("weights read in: %.1f MB in %.2f s", (double)b.done / 1e6, st_now_s() - b.t0);
    return b.done;
}
