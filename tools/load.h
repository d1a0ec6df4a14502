/* Shared CLI plumbing: resolving and loading a model with a backend, and
 * uniform error messages. */
#ifndef ST_LOAD_H
#define ST_LOAD_H

#include "engine/model.h"
#include "http/server.h"
#include "sched/batcher.h"

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

/* SIGINT/SIGTERM set the stop flag and stop the API server being run by
 * st_cli_serve_batcher (SIGPIPE is ignored). */
void st_cli_install_stop_signals(void);
volatile int *st_cli_stop_flag(void);

/* The API defaults of `strait run` and `strait serve`: localhost:3001,
 * 5 s shutdown grace, model name from the model's path. */
st_http_server_config st_cli_api_config_default(void);

/* Start batcher b, serve the OpenAI API in front of it (hc->tok and
 * hc->backend are filled here; a NULL hc->model_name becomes the base name
 * of model_path) until a stop signal, then stop the server and the batcher.
 * The caller destroys b. Returns the process exit code. */
int st_cli_serve_batcher(const char *verb, st_http_server_config *hc, st_batcher *b, const char *model_path,
                         const st_tokenizer *tok);

#endif
