/* The generation back end over the continuous batcher (sched/batcher.h).
 *
 * Create it before the model is loaded if the server should answer while
 * loading (/health 503, generations 503), then attach the batcher once it
 * exists; or attach at once. The batcher and tokenizer are borrowed and
 * must outlive the back end; its loop thread must be running
 * (st_batcher_start). */
#ifndef ST_GEN_BATCHER_H
#define ST_GEN_BATCHER_H

#include "../engine/tokenizer.h"
#include "../sched/batcher.h"
#include "gen_backend.h"

/* b may be NULL (not ready until st_gen_batcher_attach). Free with
 * be->destroy(be). */
int st_gen_batcher_create(st_batcher *b, const st_tokenizer *tok, st_gen_backend **out);
/* Make the back end ready (any thread). */
void st_gen_batcher_attach(st_gen_backend *be, st_batcher *b, const st_tokenizer *tok);

#endif
