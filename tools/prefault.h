/* Reading a model's weights in before serving: every page of the tensors
 * the loaded layer range uses is touched once, so the first request does
 * not pay for page faults on the mapping (which, for a model on a slow or
 * network disk, is the real load time). On a terminal (stderr a tty) a
 * progress bar shows bytes read; elsewhere only the final log line. */
#ifndef ST_TOOLS_PREFAULT_H
#define ST_TOOLS_PREFAULT_H

#include "engine/model.h"

/* Touch every page of m's tensors; returns the bytes touched. */
size_t st_cli_prefault(const st_model *m);

#endif
