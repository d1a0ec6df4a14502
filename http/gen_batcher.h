/* The generation back end over the router (sched/cluster/router.h), which
 * stands in front of one batcher or of a cluster's pipelines.
 *
 * Create it before the model is loaded if the server should answer while
 * loading (/health 503, generations 503), then attach the router once it
 * exists; or attach at once. The router and tokenizer are borrowed and
 * must outlive the back end. It is ready once the router has had a
 * pipeline: while a cluster has none for a moment, requests wait in the
 * router (its wait_ms) instead of being refused. */
#ifndef ST_GEN_BATCHER_H
#define ST_GEN_BATCHER_H

#include "../engine/tokenizer.h"
#include "../sched/cluster/router.h"
#include "gen_backend.h"

/* r may be NULL (not ready until st_gen_batcher_attach). Free with
 * be->destroy(be). */
int st_gen_batcher_create(st_router *r, const st_tokenizer *tok, st_gen_backend **out);
/* Make the back end ready (any thread). */
void st_gen_batcher_attach(st_gen_backend *be, st_router *r, const st_tokenizer *tok);

#endif
