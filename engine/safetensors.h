/* safetensors reader: one file, or a Hugging Face directory with
 * model.safetensors (single) or model.safetensors.index.json (sharded:
 * weight_map name -> shard file) plus config.json. Every shard is mmapped
 * read-only; the JSON header is parsed strictly and each tensor's dtype,
 * shape and [begin, end) offsets are validated against the shard size and
 * the shape's byte count before use. Dtypes F32, F16, BF16 are accepted;
 * anything else is an error naming it. Shapes are reversed into GGUF
 * order (ne[0] innermost). */
#ifndef ST_SAFETENSORS_H
#define ST_SAFETENSORS_H

#include <stddef.h>

#include "../common/json.h"
#include "../kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_safetensors st_safetensors;

/* path: a .safetensors file, or a directory as above. When a directory
 * holds config.json it is parsed and available via st_safetensors_config(). */
int st_safetensors_open(const char *path, st_safetensors **out);
/* One file's bytes in memory (used by the fuzz target and tests). */
int st_safetensors_open_mem(const void *buf, size_t len, st_safetensors **out);
void st_safetensors_close(st_safetensors *st);

size_t st_safetensors_n_tensors(const st_safetensors *st);
const st_tensor *st_safetensors_tensor(const st_safetensors *st, size_t i);
const st_tensor *st_safetensors_find(const st_safetensors *st, const char *name);
/* Parsed config.json of the directory, or NULL. */
const st_json *st_safetensors_config(const st_safetensors *st);
/* Directory the model was opened from: the directory given, or the
 * directory part of a file path ("." for a bare file name, "" after
 * st_safetensors_open_mem). */
const char *st_safetensors_dir(const st_safetensors *st);

#ifdef __cplusplus
}
#endif
#endif
