/* Shared CLI plumbing: resolving and loading a model with a backend, and
 * uniform error messages. */
#ifndef ST_LOAD_H
#define ST_LOAD_H

#include "engine/model.h"
#include "http/server.h"
#include "sched/batcher.h"
#include "sched/cluster/router.h"

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
 * st_cli_serve_router / st_cli_serve_batcher (SIGPIPE is ignored). */
void st_cli_install_stop_signals(void);
volatile int *st_cli_stop_flag(void);

/* The API defaults of `strait run` and `strait serve`: localhost:3001,
 * 5 s shutdown grace, model name from the model's path. */
st_http_server_config st_cli_api_config_default(void);

/* Serve the OpenAI API in front of router rt (hc->tok and hc->backend are
 * filled here; a NULL hc->model_name becomes the base name of model_path)
 * until a stop signal, then stop the server. The router and its pipelines
 * stay the caller's. Returns the process exit code. */
int st_cli_serve_router(const char *verb, st_http_server_config *hc, st_router *rt, const char *model_path,
                        const st_tokenizer *tok);
/* The same in front of batcher b alone (a router with one pipeline): starts
 * b, and stops it at the end. The caller destroys b. */
int st_cli_serve_batcher(const char *verb, st_http_server_config *hc, st_batcher *b, const char *model_path,
                         const st_tokenizer *tok);

#endif
