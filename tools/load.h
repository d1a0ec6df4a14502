/* Shared CLI plumbing: resolving and loading a model with a backend, and
 * uniform error messages. */
#ifndef ST_LOAD_H
#define ST_LOAD_H

#include "engine/model.h"

typedef struct st_cli_model {
    st_model *model;
    st_backend *backend;
} st_cli_model;

/* Resolve MODEL (NULL = default; pulls it when missing), load every layer
 * and create the backend for `device` ("auto" or NULL, "cpu", "cuda",
 * "cuda:N") with `threads` CPU threads (0 = all cores). On failure prints
 * "strait VERB: error: ..." and returns the exit code (1). */
int st_cli_load_model(const char *verb, const char *ref, const char *device, int threads, st_cli_model *out);

/* The backend for a --device value, or NULL with st_err set. */
st_backend *st_cli_backend(const char *device, int threads);
void st_cli_unload(st_cli_model *cm);

/* Print "strait VERB: error: <st_errmsg()>" and return 1. */
int st_cli_fail(const char *verb, int rc);
/* getopt helpers: print a message naming the option and return 2. */
int st_cli_unknown_option(const char *verb, char **argv, int optopt_char);
int st_cli_missing_value(const char *verb, char **argv, int optopt_char);
int st_cli_extra_arg(const char *verb, const char *arg);

#endif
