/* One remote stage of a manual pipeline (`strait serve` without the API):
 * receives FORWARD messages on `in`, runs its layer range, sends the hidden
 * states on `out` (or, on the last stage, RESULT logits back to the head).
 * See pipeline_msg.h for the messages. */
#ifndef ST_PIPELINE_STAGE_H
#define ST_PIPELINE_STAGE_H

#include "../dataplane/transport.h"
#include "../engine/model.h"

typedef struct st_pipe_stage_stats {
    uint64_t steps;      /* FORWARD messages run */
    uint64_t rejected;   /* messages refused (malformed, before setup, ...) */
} st_pipe_stage_stats;

/* Serve until the input link fails or closes (the upstream node left:
 * returns ST_OK), the output link fails (returns its error), or *stop
 * becomes nonzero (ST_OK). m is this stage's layer range (not the first:
 * the head embeds). Drives both links with polling cores for the duration;
 * the caller owns and closes them afterwards. stats may be NULL. */
int st_pipe_stage_serve(st_link *in, st_link *out, const st_model *m, st_backend *be, const volatile int *stop,
                        st_pipe_stage_stats *stats);

#endif
